//! Metered usage: request-log rows, written in batches together with the balance debits
//! and ledger entries they cause (one transaction per batch, so a row and its charge are
//! never written apart), and the summaries built from them.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};

pub use tokengate_api::attempt::{AttemptOutcome, UpstreamAttempt};
pub use tokengate_api::kinds::FailureKind;

use crate::accounts::EntryKind;
use crate::statements::Month;
use crate::{Db, DbKind, Error, now_ms};

/// One finished `/v1` request as the gateway reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RequestRecord {
    pub request_id: String,
    pub user_id: i64,
    pub key_id: i64,
    pub endpoint: String,
    /// The model or alias the client asked for.
    pub model: String,
    /// The provider-qualified model that served it, if any did.
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    pub status: i64,
    /// Why it failed, when it did.
    pub error_type: Option<FailureKind>,
    pub error_message: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cached_tokens: i64,
    pub cost_nano: i64,
    pub latency_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub attempts: i64,
    /// The upstream attempts, when they say more than the row (fallbacks, skips,
    /// failures); stored as JSON in the column of the same name.
    #[serde(default, deserialize_with = "attempts_from_json")]
    pub attempts_json: Option<Vec<UpstreamAttempt>>,
    pub created_at: i64,
}

/// Reads the attempt list as a JSON array, or as the JSON text it once was (write-ahead
/// logs written before it was typed). A list that does not parse is dropped, not the
/// record: the row and its charge matter more than its attempt detail.
fn attempts_from_json<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<Vec<UpstreamAttempt>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Stored {
        List(Vec<UpstreamAttempt>),
        Text(String),
        Other(serde::de::IgnoredAny),
    }
    Ok(match Option::<Stored>::deserialize(d)? {
        None => None,
        Some(Stored::List(list)) => Some(list),
        Some(Stored::Text(text)) => parse_attempts(&text),
        Some(Stored::Other(_)) => None,
    })
}

/// The attempt list stored as JSON text; `None` (logged) when it does not parse.
fn parse_attempts(text: &str) -> Option<Vec<UpstreamAttempt>> {
    match serde_json::from_str(text) {
        Ok(list) => Some(list),
        Err(e) => {
            tracing::warn!(error = %e, "stored attempt list does not parse; left out");
            None
        }
    }
}

/// The new balance of each user a batch charged.
pub type BalanceUpdates = Vec<(i64, i64)>;

/// Longest stored error text, in bytes.
pub const MAX_ERROR_TEXT: usize = 1024;
/// Longest stored name (model, served model, provider, endpoint), in bytes.
pub const MAX_NAME_TEXT: usize = 256;
/// Longest stored attempt list (JSON), in bytes; a longer one is replaced by a note.
pub const MAX_ATTEMPTS_JSON: usize = 16 * 1024;

/// `s` without NUL characters (PostgreSQL's TEXT cannot hold them) and cut to at most
/// `max` bytes on a character boundary (an ellipsis marks the cut).
pub fn clean_text(s: &str, max: usize) -> String {
    let mut out: String = if s.contains('\0') {
        s.chars().filter(|c| *c != '\0').collect()
    } else {
        s.to_string()
    };
    if out.len() > max {
        let mut end = max.saturating_sub('…'.len_utf8());
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push('…');
    }
    out
}

impl RequestRecord {
    /// Makes every free-text field storable in any supported database: no NULs, and each
    /// within its cap, so no client input can make a row unwritable or large.
    pub fn sanitize(&mut self) {
        let name = |s: &mut String| {
            if s.len() > MAX_NAME_TEXT || s.contains('\0') {
                *s = clean_text(s, MAX_NAME_TEXT);
            }
        };
        name(&mut self.request_id);
        name(&mut self.endpoint);
        name(&mut self.model);
        for s in [&mut self.served_model, &mut self.provider]
            .into_iter()
            .flatten()
        {
            name(s);
        }
        if let Some(m) = &mut self.error_message
            && (m.len() > MAX_ERROR_TEXT || m.contains('\0'))
        {
            *m = clean_text(m, MAX_ERROR_TEXT);
        }
        if let Some(list) = &mut self.attempts_json {
            for a in list.iter_mut() {
                let texts = [&mut a.provider, &mut a.model];
                let note = match &mut a.outcome {
                    AttemptOutcome::Note(n) => Some(n),
                    AttemptOutcome::Status(_) => None,
                };
                for t in texts.into_iter().chain(note) {
                    if t.contains('\0') {
                        *t = t.replace('\0', "");
                    }
                }
            }
            if !serde_json::to_string(list).is_ok_and(|j| j.len() <= MAX_ATTEMPTS_JSON) {
                *list = vec![UpstreamAttempt::too_long()];
            }
        }
    }

    /// The row with every free-text field that could have made it fail removed: what is
    /// written for a row the database refused (its money and counts are kept).
    pub fn quarantined(&self) -> RequestRecord {
        RequestRecord {
            model: self
                .model
                .chars()
                .filter(char::is_ascii_graphic)
                .take(64)
                .collect(),
            served_model: None,
            provider: None,
            error_type: self.error_type.map(|_| FailureKind::Quarantined),
            error_message: Some("free-text fields removed: the database refused this row".into()),
            attempts_json: None,
            ..self.clone()
        }
    }
}

/// Whether an error is about the rows themselves (a value the database refuses), so
/// retrying the same rows can never succeed, rather than about reaching the database.
pub fn is_data_error(e: &Error) -> bool {
    matches!(
        e,
        Error::Db(sqlx::Error::Database(_) | sqlx::Error::Encode(_))
            | Error::Invalid(_)
            | Error::Json(_)
    )
}

const LOG_COLUMNS: &str = "request_id, user_id, key_id, endpoint, model, served_model, provider, \
     stream, status, error_type, error_message, tokens_in, tokens_out, cached_tokens, cost_nano, \
     latency_ms, ttfb_ms, attempts, attempts_json, created_at";
const LOG_COLUMN_COUNT: usize = 20;
/// Rows per INSERT statement. On SQLite the parameters are anonymous (`?`): with `$N`
/// every bind looks its name up by a linear scan, making large statements quadratic.
/// Measured with `cargo run --release -p tokengate-core --example flushbench`: 64 rows of
/// `?` write ~248k rows/s; 500 rows of `$N` wrote ~4.5k.
const ROWS_PER_INSERT: usize = 64;

/// Writes a batch of request logs, their ledger entries (one usage entry per account per
/// batch) and balance/key-spend updates in a single transaction. Idempotent by request
/// id: a record whose request id already has a row is skipped and charges nothing (in
/// cluster mode a charge can arrive both from the settling instance and from the shared
/// outbox; migration 0007 makes request ids unique).
pub async fn write_batch(db: &Db, records: &[RequestRecord]) -> Result<BalanceUpdates, Error> {
    if records.is_empty() {
        return Ok(Vec::new());
    }
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let mut inserted: std::collections::HashSet<String> =
        std::collections::HashSet::with_capacity(records.len());
    for chunk in records.chunks(ROWS_PER_INSERT) {
        let mut sql = format!("INSERT INTO request_logs ({LOG_COLUMNS}) VALUES ");
        for i in 0..chunk.len() {
            if i > 0 {
                sql.push(',');
            }
            sql.push('(');
            for c in 0..LOG_COLUMN_COUNT {
                if c > 0 {
                    sql.push(',');
                }
                match db.kind() {
                    // Anonymous parameters: SQLite looks named ones up by a linear scan
                    // per bind, which makes a many-row statement quadratic.
                    DbKind::Sqlite => sql.push('?'),
                    DbKind::Postgres => sql.push_str(&format!("${}", i * LOG_COLUMN_COUNT + c + 1)),
                }
            }
            sql.push(')');
        }
        sql.push_str(" ON CONFLICT (request_id) DO NOTHING RETURNING request_id");
        let attempts = chunk
            .iter()
            .map(|r| {
                r.attempts_json
                    .as_ref()
                    .map(serde_json::to_string)
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for (r, attempts_json) in chunk.iter().zip(attempts) {
            q = q
                .bind(&r.request_id)
                .bind(r.user_id)
                .bind(r.key_id)
                .bind(&r.endpoint)
                .bind(&r.model)
                .bind(&r.served_model)
                .bind(&r.provider)
                .bind(i64::from(r.stream))
                .bind(r.status)
                .bind(r.error_type.map(FailureKind::as_str))
                .bind(&r.error_message)
                .bind(r.tokens_in)
                .bind(r.tokens_out)
                .bind(r.cached_tokens)
                .bind(r.cost_nano)
                .bind(r.latency_ms)
                .bind(r.ttfb_ms)
                .bind(r.attempts)
                .bind(attempts_json)
                .bind(r.created_at);
        }
        inserted.extend(q.fetch_all(&mut *tx).await?);
    }

    // Per-account sums of what this batch charged, split by the calendar month of the
    // requests and dated at the month's last request in the batch, so a month's usage
    // entries sum to exactly its requests' costs even across a month boundary.
    let mut per_user: BTreeMap<(i64, Month), (i64, i64, i64)> = BTreeMap::new(); // cost, requests, last
    let mut per_key: BTreeMap<i64, (i64, i64)> = BTreeMap::new(); // cost, last used
    // A record appears once in `inserted` even if the batch repeats its request id.
    for r in records {
        if !inserted.remove(&r.request_id) {
            continue;
        }
        let u = per_user
            .entry((r.user_id, Month::of_ms(r.created_at)))
            .or_default();
        u.0 += r.cost_nano;
        u.1 += 1;
        u.2 = u.2.max(r.created_at);
        let k = per_key.entry(r.key_id).or_default();
        k.0 += r.cost_nano;
        k.1 = k.1.max(r.created_at);
    }
    let mut balances: BalanceUpdates = Vec::with_capacity(per_user.len());
    for ((user_id, _), (cost, requests, last)) in per_user {
        if cost == 0 {
            continue;
        }
        let balance: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET balance_nano = balance_nano - $1, updated_at = $3 WHERE id = $2 \
             RETURNING balance_nano",
        )
        .bind(cost)
        .bind(user_id)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(balance) = balance else { continue };
        sqlx::query(
            "INSERT INTO ledger_entries (user_id, kind, amount_nano, balance_after, reference, \
             note, created_by, created_at) VALUES ($1, $2, $3, $4, NULL, $5, NULL, $6)",
        )
        .bind(user_id)
        .bind(EntryKind::Usage.as_str())
        .bind(-cost)
        .bind(balance)
        .bind(format!("{requests} requests"))
        .bind(last)
        .execute(&mut *tx)
        .await?;
        match balances.iter_mut().find(|(u, _)| *u == user_id) {
            Some(b) => b.1 = balance,
            None => balances.push((user_id, balance)),
        }
    }
    for (key_id, (cost, last_used)) in per_key {
        // last_used_at is not part of updated_at: the key cache does not need to reload for it.
        sqlx::query(
            "UPDATE api_keys SET spent_nano = spent_nano + $1, \
             last_used_at = CASE WHEN last_used_at IS NULL OR last_used_at < $2 THEN $2 \
             ELSE last_used_at END WHERE id = $3",
        )
        .bind(cost)
        .bind(last_used)
        .bind(key_id)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(balances)
}

/// Which of `ids` already have a request-log row (used to replay a write-ahead log
/// without charging anything twice).
pub async fn existing_request_ids(
    db: &Db,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, Error> {
    let mut found = std::collections::HashSet::new();
    if ids.is_empty() {
        return Ok(found);
    }
    let placeholders: Vec<String> = (1..=ids.len()).map(|i| format!("${i}")).collect();
    let sql = format!(
        "SELECT request_id FROM request_logs WHERE request_id IN ({})",
        placeholders.join(",")
    );
    let mut q = sqlx::query_scalar::<_, String>(&sql);
    for id in ids {
        q = q.bind(id);
    }
    found.extend(q.fetch_all(db.pool()).await?);
    Ok(found)
}

/// Totals of a user's successful requests over a period.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default, sqlx::FromRow)]
pub struct UsageTotals {
    pub total_requests: i64,
    pub total_tokens_in: i64,
    pub total_tokens_out: i64,
    pub total_cost_nano: i64,
}

/// Sums the user's successful (2xx) requests created at or after `since` (ms).
pub async fn totals_since(db: &Db, user_id: i64, since: i64) -> Result<UsageTotals, Error> {
    Ok(sqlx::query_as(
        "SELECT CAST(COUNT(*) AS BIGINT) AS total_requests, \
         CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT) AS total_tokens_in, \
         CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT) AS total_tokens_out, \
         CAST(COALESCE(SUM(cost_nano), 0) AS BIGINT) AS total_cost_nano FROM request_logs \
         WHERE user_id = $1 AND created_at >= $2 AND status >= 200 AND status < 300",
    )
    .bind(user_id)
    .bind(since)
    .fetch_one(db.pool())
    .await?)
}

/// Usage of one bucket (a UTC day, a model or a key) over a period.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, Default)]
pub struct Bucket {
    /// The day (`YYYY-MM-DD`), model name or key id, as text.
    pub key: String,
    pub requests: i64,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cost_nano: i64,
}

/// A user's successful requests from `since` (ms), per UTC day, per model and per key.
/// The three breakdowns each sum to [`totals_since`] over the same period.
pub async fn breakdown_since(
    db: &Db,
    user_id: i64,
    since: i64,
) -> Result<(Vec<Bucket>, Vec<Bucket>, Vec<Bucket>), Error> {
    /// One bucket's sums, keyed by a day number, a model name or a key id.
    #[derive(sqlx::FromRow)]
    struct Sums<K> {
        k: K,
        requests: i64,
        tokens_in: i64,
        tokens_out: i64,
        cost_nano: i64,
    }
    impl<K> Sums<K> {
        fn bucket(self, key: impl FnOnce(K) -> String) -> Bucket {
            Bucket {
                key: key(self.k),
                requests: self.requests,
                tokens_in: self.tokens_in,
                tokens_out: self.tokens_out,
                cost_nano: self.cost_nano,
            }
        }
    }
    let by = |expr: &str| {
        format!(
            "SELECT {expr} AS k, CAST(COUNT(*) AS BIGINT) AS requests, \
             CAST(COALESCE(SUM(tokens_in), 0) AS BIGINT) AS tokens_in, \
             CAST(COALESCE(SUM(tokens_out), 0) AS BIGINT) AS tokens_out, \
             CAST(COALESCE(SUM(cost_nano), 0) AS BIGINT) AS cost_nano FROM request_logs \
             WHERE user_id = $1 AND created_at >= $2 AND status >= 200 AND status < 300 \
             GROUP BY {expr} ORDER BY {expr}"
        )
    };
    let days = sqlx::query_as::<_, Sums<i64>>(&by("CAST(created_at / 86400000 AS BIGINT)"))
        .bind(user_id)
        .bind(since)
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|s| s.bucket(|d| crate::statements::day_string(d * 86_400_000)))
        .collect();
    let models = sqlx::query_as::<_, Sums<String>>(&by("COALESCE(served_model, model)"))
        .bind(user_id)
        .bind(since)
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|s| s.bucket(|m| m))
        .collect();
    let keys = sqlx::query_as::<_, Sums<i64>>(&by("key_id"))
        .bind(user_id)
        .bind(since)
        .fetch_all(db.pool())
        .await?
        .into_iter()
        .map(|s| s.bucket(|k| k.to_string()))
        .collect();
    Ok((days, models, keys))
}

/// Which of a user's request logs to list or export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogFilter {
    /// Created at or after (unix ms).
    pub from: Option<i64>,
    /// Created before (unix ms).
    pub to: Option<i64>,
    pub key_id: Option<i64>,
    /// The model asked for or the model that served.
    pub model: Option<String>,
    pub status: Option<StatusFilter>,
}

/// A status filter: one code, a class (`2xx`, `4xx`, `5xx`) or every failure (`error`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    Code(i64),
    Class(i64),
    Error,
}

impl StatusFilter {
    /// Parses `200`, `4xx` or `error`.
    pub fn parse(s: &str) -> Result<StatusFilter, Error> {
        let s = s.trim().to_ascii_lowercase();
        let bad = || {
            Error::Invalid(format!(
                "status must be a code (429), a class (4xx) or `error`, got {s:?}"
            ))
        };
        if s == "error" || s == "failed" {
            return Ok(StatusFilter::Error);
        }
        if let Some(class) = s.strip_suffix("xx") {
            let c: i64 = class.parse().map_err(|_| bad())?;
            return if (1..=5).contains(&c) {
                Ok(StatusFilter::Class(c))
            } else {
                Err(bad())
            };
        }
        let code: i64 = s.parse().map_err(|_| bad())?;
        if (100..=599).contains(&code) {
            Ok(StatusFilter::Code(code))
        } else {
            Err(bad())
        }
    }
}

/// A stored request log with its row id (the pagination cursor).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct LogRow {
    pub id: i64,
    #[serde(flatten)]
    pub record: RequestRecord,
}

/// A `request_logs` row as stored: `stream` is 0/1, the failure kind text, the attempt
/// list JSON text.
#[derive(sqlx::FromRow)]
struct LogDbRow {
    id: i64,
    request_id: String,
    user_id: i64,
    key_id: i64,
    endpoint: String,
    model: String,
    served_model: Option<String>,
    provider: Option<String>,
    stream: i64,
    status: i64,
    error_type: Option<String>,
    error_message: Option<String>,
    tokens_in: i64,
    tokens_out: i64,
    cached_tokens: i64,
    cost_nano: i64,
    latency_ms: i64,
    ttfb_ms: Option<i64>,
    attempts: i64,
    attempts_json: Option<String>,
    created_at: i64,
}

impl TryFrom<LogDbRow> for LogRow {
    type Error = Error;
    fn try_from(r: LogDbRow) -> Result<LogRow, Error> {
        let error_type = r
            .error_type
            .map(FailureKind::try_from)
            .transpose()
            .map_err(|e| {
                Error::Db(sqlx::Error::ColumnDecode {
                    index: "error_type".into(),
                    source: Box::new(e),
                })
            })?;
        Ok(LogRow {
            id: r.id,
            record: RequestRecord {
                request_id: r.request_id,
                user_id: r.user_id,
                key_id: r.key_id,
                endpoint: r.endpoint,
                model: r.model,
                served_model: r.served_model,
                provider: r.provider,
                stream: r.stream != 0,
                status: r.status,
                error_type,
                error_message: r.error_message,
                tokens_in: r.tokens_in,
                tokens_out: r.tokens_out,
                cached_tokens: r.cached_tokens,
                cost_nano: r.cost_nano,
                latency_ms: r.latency_ms,
                ttfb_ms: r.ttfb_ms,
                attempts: r.attempts,
                attempts_json: r.attempts_json.as_deref().and_then(parse_attempts),
                created_at: r.created_at,
            },
        })
    }
}

/// One page of a user's request logs matching `filter`, newest first, with ids below
/// `before` (the previous page's last id). Pages are keyset-paginated, so an export walks
/// any number of rows in constant memory.
pub async fn logs_page(
    db: &Db,
    user_id: i64,
    filter: &LogFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LogRow>, Error> {
    logs_page_of(db, Some(user_id), filter, before, limit).await
}

/// [`logs_page`] across every account when `user_id` is `None` (for administrators).
pub async fn logs_page_of(
    db: &Db,
    user_id: Option<i64>,
    filter: &LogFilter,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LogRow>, Error> {
    let user_clause = if user_id.is_some() {
        "user_id = $1"
    } else {
        "$1 = $1"
    };
    let mut sql = format!(
        "SELECT id, {LOG_COLUMNS} FROM request_logs WHERE {user_clause} AND id < $2 \
         AND created_at >= $3 AND created_at < $4"
    );
    let mut n = 4;
    let mut next = || {
        n += 1;
        n
    };
    if filter.key_id.is_some() {
        sql.push_str(&format!(" AND key_id = ${}", next()));
    }
    if filter.model.is_some() {
        let i = next();
        sql.push_str(&format!(" AND (model = ${i} OR served_model = ${i})"));
    }
    match filter.status {
        Some(StatusFilter::Code(_)) => sql.push_str(&format!(" AND status = ${}", next())),
        Some(StatusFilter::Class(_)) => {
            let (a, b) = (next(), next());
            sql.push_str(&format!(" AND status >= ${a} AND status < ${b}"));
        }
        Some(StatusFilter::Error) => sql.push_str(" AND (status < 200 OR status >= 300)"),
        None => {}
    }
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", next()));
    let mut q = sqlx::query_as::<_, LogDbRow>(&sql)
        .bind(user_id.unwrap_or(0))
        .bind(before.unwrap_or(i64::MAX))
        .bind(filter.from.unwrap_or(i64::MIN))
        .bind(filter.to.unwrap_or(i64::MAX));
    if let Some(k) = filter.key_id {
        q = q.bind(k);
    }
    if let Some(m) = &filter.model {
        q = q.bind(m.clone());
    }
    match filter.status {
        Some(StatusFilter::Code(c)) => q = q.bind(c),
        Some(StatusFilter::Class(c)) => q = q.bind(c * 100).bind(c * 100 + 100),
        _ => {}
    }
    let rows = q.bind(limit.clamp(1, 5000)).fetch_all(db.pool()).await?;
    rows.into_iter().map(LogRow::try_from).collect()
}

/// One of a user's request logs by request id.
pub async fn log_by_request_id(db: &Db, user_id: i64, request_id: &str) -> Result<LogRow, Error> {
    sqlx::query_as::<_, LogDbRow>(&format!(
        "SELECT id, {LOG_COLUMNS} FROM request_logs WHERE user_id = $1 AND request_id = $2 \
         ORDER BY id DESC LIMIT 1"
    ))
    .bind(user_id)
    .bind(request_id)
    .fetch_optional(db.pool())
    .await?
    .ok_or(Error::NotFound)?
    .try_into()
}

/// A user's most recent request logs, newest first.
pub async fn recent_logs(db: &Db, user_id: i64, limit: i64) -> Result<Vec<RequestRecord>, Error> {
    Ok(logs_page(
        db,
        user_id,
        &LogFilter::default(),
        None,
        limit.clamp(1, 1000),
    )
    .await?
    .into_iter()
    .map(|r| r.record)
    .collect())
}
