//! Stored Responses API answers (`store`, the default): the `responses` table, owned per
//! account. A stored response keeps its turn's input items and output items, so a
//! `previous_response_id` chain is rebuilt as history for translated upstreams; the
//! provider that served it (a continuation is pinned to it) and the id that provider gave
//! it (sent on to a native Responses upstream); and the whole Response object for
//! `GET /v1/responses/{id}`. Rows of another account are never found. Old rows are purged
//! by [`purge_task`] after the retention period.

use std::time::Duration;

use serde_json::Value;
use tokengate_core::{Db, Error, now_ms};

/// The deepest `previous_response_id` chain rebuilt (a longer one is cut at its oldest
/// end: the history starts at the deepest response still reachable).
pub const MAX_CHAIN: usize = 1000;

/// One stored response.
#[derive(Debug, Clone)]
pub struct Stored {
    pub id: String,
    pub user_id: i64,
    pub key_id: i64,
    pub provider: String,
    pub upstream_id: Option<String>,
    pub model: String,
    pub previous_response_id: Option<String>,
    pub input_items: Vec<Value>,
    pub output_items: Vec<Value>,
    pub response: Value,
    pub created_at: i64,
}

type Row = (
    String,
    i64,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    String,
    String,
    i64,
);

const COLUMNS: &str = "id, user_id, key_id, provider, upstream_id, model, previous_response_id, \
                       input_items, output_items, response, created_at";

fn array(text: &str) -> Vec<Value> {
    match serde_json::from_str(text) {
        Ok(Value::Array(a)) => a,
        _ => Vec::new(),
    }
}

impl From<Row> for Stored {
    fn from(r: Row) -> Stored {
        Stored {
            id: r.0,
            user_id: r.1,
            key_id: r.2,
            provider: r.3,
            upstream_id: r.4,
            model: r.5,
            previous_response_id: r.6,
            input_items: array(&r.7),
            output_items: array(&r.8),
            response: serde_json::from_str(&r.9).unwrap_or(Value::Null),
            created_at: r.10,
        }
    }
}

/// Stores `s` (its id is new, so this never overwrites).
pub async fn insert(db: &Db, s: &Stored) -> Result<(), Error> {
    sqlx::query(&format!(
        "INSERT INTO responses ({COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&s.id)
    .bind(s.user_id)
    .bind(s.key_id)
    .bind(&s.provider)
    .bind(&s.upstream_id)
    .bind(&s.model)
    .bind(&s.previous_response_id)
    .bind(Value::Array(s.input_items.clone()).to_string())
    .bind(Value::Array(s.output_items.clone()).to_string())
    .bind(s.response.to_string())
    .bind(s.created_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether `id` can be a response id this gateway issued (`resp_` and letters or digits,
/// short): anything else is not looked up, so a NUL or megabytes of client text never
/// reach the database.
pub fn plausible_id(id: &str) -> bool {
    id.len() <= 64
        && id
            .strip_prefix("resp_")
            .is_some_and(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric()))
}

/// The response `id` of account `user_id`, if it is stored (another account's is not).
pub async fn get(db: &Db, user_id: i64, id: &str) -> Result<Option<Stored>, Error> {
    if !plausible_id(id) {
        return Ok(None);
    }
    let row: Option<Row> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM responses WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    Ok(row.map(Stored::from))
}

/// Deletes the response `id` of account `user_id`; whether there was one.
pub async fn delete(db: &Db, user_id: i64, id: &str) -> Result<bool, Error> {
    if !plausible_id(id) {
        return Ok(false);
    }
    let done = sqlx::query("DELETE FROM responses WHERE id = $1 AND user_id = $2")
        .bind(id)
        .bind(user_id)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected() > 0)
}

/// The history a continuation of `last` starts from: every response of its chain, oldest
/// first, each as its input items then its output items. A link that is gone (deleted or
/// purged) ends the chain there.
pub async fn history(db: &Db, last: &Stored) -> Result<Vec<Value>, Error> {
    let mut chain: Vec<Stored> = vec![last.clone()];
    while chain.len() < MAX_CHAIN {
        let Some(prev) = chain.last().and_then(|s| s.previous_response_id.clone()) else {
            break;
        };
        match get(db, last.user_id, &prev).await? {
            Some(s) => chain.push(s),
            None => break,
        }
    }
    Ok(chain
        .into_iter()
        .rev()
        .flat_map(|s| s.input_items.into_iter().chain(s.output_items))
        .collect())
}

/// Deletes responses created before `before_ms`; how many.
pub async fn purge(db: &Db, before_ms: i64) -> Result<u64, Error> {
    let done = sqlx::query("DELETE FROM responses WHERE created_at < $1")
        .bind(before_ms)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}

/// Purges responses older than `retention_days` every hour (the first time at once);
/// `retention_days` 0 keeps them forever.
pub async fn purge_task(db: Db, retention_days: u64) {
    if retention_days == 0 {
        return;
    }
    let keep_ms = (retention_days as i64).saturating_mul(86_400_000);
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    loop {
        tick.tick().await;
        match purge(&db, now_ms() - keep_ms).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "purged stored responses past retention"),
            Err(e) => tracing::warn!(error = %e, "purging stored responses failed"),
        }
    }
}
