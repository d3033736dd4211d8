//! Every command but `login`: what it asks the server and how it shows the answer — the
//! server's JSON unchanged with `--json` (`models` gives the `data` array), tables and short
//! lines for people. Gateway commands (`env`, `test`, `models`) use an API key; the others
//! the signed-in account.

use reqwest::Method;
use serde_json::{Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Date, Duration, Month, OffsetDateTime, Time};

use tokengate_api::account::{
    ApiKeyView, Balance, CreateKeyRequest, CreatedKey, Me, RevokedKey, UsageSummary,
};
use tokengate_api::billing::{Checkout, TopupRequest};
use tokengate_api::kinds::KeyStatus;
use tokengate_api::{Timestamp, Usd};

use crate::Ctx;
use crate::args::{EnvArgs, KeysCreateArgs, KeysRevokeArgs, TestArgs, TopupArgs, UsageArgs};
use crate::auth;
use crate::error::CliError;
use crate::ui::{self, cell, opt};

/// The model `tokengate test` asks for unless told otherwise (the demo alias).
pub const DEFAULT_TEST_MODEL: &str = "tokengate-fast";

const TOPUP_HINT: &str =
    "Run `tokengate topup --amount 5` and hand the checkout URL to a person (agents must not pay).";

/// An `--expires` value as RFC 3339: a duration from now (`30d`, `12h`, `2w`, `90m`), a
/// date (midnight UTC), an RFC 3339 time or unix seconds.
pub fn parse_expires(s: &str, now: OffsetDateTime) -> Result<String, CliError> {
    let s = s.trim();
    let bad = || {
        CliError::user_hint(
            format!("cannot read --expires {s:?}"),
            "Use a duration (30d, 12h, 2w, 90m), a date (2030-01-31), an RFC 3339 time or unix seconds.",
        )
    };
    let at = if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        let secs: i64 = s.parse().map_err(|_| bad())?;
        OffsetDateTime::from_unix_timestamp(secs).map_err(|_| bad())?
    } else if let Some(unit) = s.chars().last().filter(|c| "mhdw".contains(*c)) {
        let n: i64 = s[..s.len() - 1].parse().map_err(|_| bad())?;
        if n <= 0 {
            return Err(bad());
        }
        let d = match unit {
            'm' => Duration::minutes(n),
            'h' => Duration::hours(n),
            'd' => Duration::days(n),
            _ => Duration::weeks(n),
        };
        now.checked_add(d).ok_or_else(bad)?
    } else if let [y, m, d] = s.split('-').collect::<Vec<_>>()[..]
        && y.len() == 4
        && m.len() == 2
        && d.len() == 2
    {
        let month = m
            .parse::<u8>()
            .ok()
            .and_then(|m| Month::try_from(m).ok())
            .ok_or_else(bad)?;
        let date = Date::from_calendar_date(
            y.parse().map_err(|_| bad())?,
            month,
            d.parse().map_err(|_| bad())?,
        )
        .map_err(|_| bad())?;
        date.with_time(Time::MIDNIGHT).assume_utc()
    } else {
        OffsetDateTime::parse(s, &Rfc3339).map_err(|_| bad())?
    };
    if at <= now {
        return Err(CliError::user(format!("--expires {s:?} is in the past")));
    }
    at.format(&Rfc3339).map_err(|_| bad())
}

/// The API key for gateway calls: `--key`, `TOKENGATE_API_KEY`, then `last_key.txt`.
fn api_key(ctx: &Ctx) -> Result<String, CliError> {
    if let Some(k) = &ctx.key {
        return Ok(k.clone());
    }
    ctx.store.load_last_key()?.ok_or_else(|| {
        CliError::user_hint(
            "no API key available",
            "Run `tokengate keys create --name <project>` first, or pass --key / set TOKENGATE_API_KEY.",
        )
    })
}

/// Hints for gateway refusals.
fn gateway_error(e: CliError) -> CliError {
    match e.status() {
        Some(401) => e.with_hint(
            "The API key was refused (wrong, revoked, disabled or expired). `tokengate keys list` shows your keys; `tokengate keys create --name <project>` makes a new one.",
        ),
        Some(402) => CliError::Api {
            status: 402,
            code: e.code().map(str::to_string),
            message: "The balance is empty (or this key's spend limit is used up)".into(),
            hint: Some(TOPUP_HINT.into()),
        },
        _ => e,
    }
}

pub async fn logout(ctx: &Ctx) -> Result<(), CliError> {
    let had = ctx.store.delete_credentials()?;
    if ctx.out.json {
        ctx.out
            .json(&json!({"logged_out": true, "had_credentials": had}));
    } else if had {
        ctx.out.line("Logged out.");
    } else {
        ctx.out.line("Not logged in.");
    }
    Ok(())
}

pub async fn whoami(ctx: &Ctx) -> Result<(), CliError> {
    let me: Me = auth::account_as(ctx, Method::GET, "/api/v1/me", None).await?;
    if ctx.out.json {
        ctx.out.json(&me);
        return Ok(());
    }
    ctx.out.line(&format!("{} <{}>", me.display_name, me.email));
    ctx.out.line(&format!("balance: ${} USD", me.balance_usd));
    ctx.out
        .line(&format!("account: {} ({}, {})", me.id, me.status, me.role));
    ctx.out.line(&format!("server:  {}", ctx.http.base));
    Ok(())
}

pub async fn keys_create(ctx: &Ctx, a: &KeysCreateArgs) -> Result<(), CliError> {
    let name = a.name.trim();
    if name.is_empty() {
        return Err(CliError::user("--name must not be empty"));
    }
    let expires_at = match &a.expires {
        Some(e) => {
            let at = parse_expires(e, OffsetDateTime::now_utc())?;
            Some(
                Timestamp::parse_rfc3339(&at)
                    .ok_or_else(|| CliError::user(format!("cannot read --expires {e:?}")))?,
            )
        }
        None => None,
    };
    let spend_limit_usd = match &a.spend_limit {
        Some(s) => Some(
            s.trim()
                .trim_start_matches('$')
                .parse::<Usd>()
                .map_err(|_| {
                    CliError::user_hint(
                        format!("--spend-limit {s:?} is not an amount in USD"),
                        "Example: --spend-limit 5 (or 0.50).",
                    )
                })?,
        ),
        None => None,
    };
    let models: Vec<String> = a
        .models
        .iter()
        .map(|m| m.trim().to_string())
        .filter(|m| !m.is_empty())
        .collect();
    let request = CreateKeyRequest {
        name: name.to_string(),
        expires_at,
        spend_limit_usd,
        models: (!models.is_empty()).then_some(models),
        rpm: a.rpm.map(i64::from),
        tpm: a.tpm.map(i64::from),
        group: None,
    };
    let body = serde_json::to_value(&request)
        .map_err(|e| CliError::user(format!("cannot encode the request: {e}")))?;
    let key: CreatedKey =
        auth::account_as(ctx, Method::POST, "/api/v1/me/keys", Some(&body)).await?;
    let raw = key.raw.as_str();
    if raw.is_empty() {
        return Err(CliError::Server {
            code: Some("bad_response".into()),
            message: "the server created a key but sent no raw value".into(),
        });
    }
    if !a.no_cache {
        ctx.store.save_last_key(raw)?;
    }
    if ctx.out.json {
        ctx.out.json(&key);
        return Ok(());
    }
    ctx.out.note(&format!(
        "Created key {} \"{}\" ({}…). This is the only time it is shown:",
        key.id, key.name, key.key_prefix
    ));
    ctx.out.line(raw);
    if a.no_cache {
        ctx.out.note("Not cached (--no-cache): store it now.");
    } else {
        ctx.out.note(&format!(
            "Cached in {} for `tokengate env`, `test` and `models`.",
            ctx.store.last_key_path().display()
        ));
    }
    Ok(())
}

async fn list_keys(ctx: &Ctx) -> Result<Vec<ApiKeyView>, CliError> {
    auth::account_as(ctx, Method::GET, "/api/v1/me/keys", None).await
}

pub async fn keys_list(ctx: &Ctx) -> Result<(), CliError> {
    let keys = list_keys(ctx).await?;
    if ctx.out.json {
        ctx.out.json(&keys);
        return Ok(());
    }
    if keys.is_empty() {
        ctx.out
            .line("No API keys yet. Create one: tokengate keys create --name <project>");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|k| {
            vec![
                k.id.to_string(),
                k.name.clone(),
                format!("{}…", k.key_prefix),
                k.status.to_string(),
                k.spent_usd.to_string(),
                opt(&k.spend_limit_usd),
                opt(&k.last_used_at),
                opt(&k.expires_at),
            ]
        })
        .collect();
    ctx.out.line(&ui::table(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "STATUS",
            "SPENT $",
            "LIMIT $",
            "LAST USED",
            "EXPIRES",
        ],
        &rows,
    ));
    Ok(())
}

pub async fn keys_revoke(ctx: &Ctx, a: &KeysRevokeArgs) -> Result<(), CliError> {
    let wanted = a.id.trim();
    let id = if !wanted.is_empty() && wanted.bytes().all(|b| b.is_ascii_digit()) {
        wanted.to_string()
    } else {
        let keys = list_keys(ctx).await?;
        let matches: Vec<&ApiKeyView> = keys
            .iter()
            .filter(|k| {
                k.status != KeyStatus::Revoked
                    && (k.name == wanted || (wanted.len() >= 8 && k.key_prefix.starts_with(wanted)))
            })
            .collect();
        match matches[..] {
            [k] => k.id.to_string(),
            [] => {
                return Err(CliError::user_hint(
                    format!("no active key named or prefixed {wanted:?}"),
                    "`tokengate keys list` shows your keys and their ids.",
                ));
            }
            _ => {
                return Err(CliError::user_hint(
                    format!("{wanted:?} matches several keys"),
                    "Pass the id from `tokengate keys list`.",
                ));
            }
        }
    };
    let path = format!("/api/v1/me/keys/{id}");
    let v: RevokedKey = auth::account_as(ctx, Method::DELETE, &path, None).await?;
    if ctx.out.json {
        ctx.out.json(&v);
    } else {
        ctx.out
            .line(&format!("Revoked key {}; it now gets 401.", v.id));
    }
    Ok(())
}

pub async fn balance(ctx: &Ctx) -> Result<(), CliError> {
    let v: Balance = auth::account_as(ctx, Method::GET, "/api/v1/balance", None).await?;
    if ctx.out.json {
        ctx.out.json(&v);
    } else {
        ctx.out
            .line(&format!("Balance: ${} {}", v.balance_usd, v.currency));
    }
    Ok(())
}

pub async fn usage(ctx: &Ctx, a: &UsageArgs) -> Result<(), CliError> {
    let path = format!("/api/v1/me/usage?days={}", a.days);
    let v: UsageSummary = auth::account_as(ctx, Method::GET, &path, None).await?;
    if ctx.out.json {
        ctx.out.json(&v);
        return Ok(());
    }
    ctx.out.line(&format!(
        "Last {} days (successful requests):",
        v.range_days
    ));
    ctx.out.line(&ui::table(
        &["REQUESTS", "TOKENS IN", "TOKENS OUT", "COST $"],
        &[vec![
            v.total_requests.to_string(),
            v.total_tokens_in.to_string(),
            v.total_tokens_out.to_string(),
            v.total_cost_usd.to_string(),
        ]],
    ));
    Ok(())
}

async fn fetch_models(ctx: &Ctx, key: &str) -> Result<Vec<Value>, CliError> {
    let reply = ctx
        .http
        .send(
            ctx.http
                .client()
                .get(ctx.http.url("/v1/models"))
                .bearer_auth(key),
        )
        .await
        .map_err(gateway_error)?;
    Ok(reply
        .body
        .get("data")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default())
}

pub async fn models(ctx: &Ctx) -> Result<(), CliError> {
    let key = api_key(ctx)?;
    let models = fetch_models(ctx, &key).await?;
    if ctx.out.json {
        ctx.out.json(&Value::Array(models));
        return Ok(());
    }
    if models.is_empty() {
        ctx.out.line("This key may use no models.");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = models
        .iter()
        .map(|m| {
            vec![
                cell(&m["id"]),
                cell(&m["owned_by"]),
                cell(&m["complexity_tier"]),
                cell(&m["input_usd_per_1k"]),
                cell(&m["output_usd_per_1k"]),
            ]
        })
        .collect();
    ctx.out.line(&ui::table(
        &["MODEL", "OWNER", "TIER", "INPUT $/1K", "OUTPUT $/1K"],
        &rows,
    ));
    Ok(())
}

/// `--amount` as the decimal string the API takes (`5`, `12.50`; a leading `$` is fine).
fn parse_amount(s: &str) -> Result<String, CliError> {
    let a = s.trim().trim_start_matches('$');
    let mut parts = a.splitn(2, '.');
    let whole = parts.next().unwrap_or("");
    let frac = parts.next();
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err(CliError::user_hint(
            format!("--amount {s:?} is not an amount in USD"),
            "Example: tokengate topup --amount 5",
        ));
    }
    Ok(a.to_string())
}

pub async fn topup(ctx: &Ctx, a: &TopupArgs) -> Result<(), CliError> {
    let amount = parse_amount(&a.amount)?;
    let amount_usd: Usd = amount.parse().map_err(|_| {
        CliError::user_hint(
            format!("--amount {:?} is not an amount in USD", a.amount),
            "Example: tokengate topup --amount 5",
        )
    })?;
    let body = serde_json::to_value(TopupRequest { amount_usd })
        .map_err(|e| CliError::user(format!("cannot encode the request: {e}")))?;
    let v: Checkout = auth::account_as(ctx, Method::POST, "/api/v1/topup", Some(&body))
        .await
        .map_err(|e| {
            if e.code() == Some("payments_unavailable") {
                e.with_hint(
                    "This server takes no payments: ask its operator to add credit to your account.",
                )
            } else {
                e
            }
        })?;
    if ctx.out.json {
        ctx.out.json(&v);
        return Ok(());
    }
    let url = v.checkout_url.as_str();
    ctx.out.note(&format!(
        "Open this URL to pay ${} (the CLI never pays; credit arrives once the payment is done):",
        v.amount_usd
    ));
    ctx.out.line(url);
    if !a.no_open && ctx.out.interactive() && ui::open_browser(url) {
        ctx.out.note("Opened it in your browser.");
    }
    Ok(())
}

pub async fn env(ctx: &Ctx, a: &EnvArgs) -> Result<(), CliError> {
    let key = api_key(ctx)?;
    let base = &ctx.http.base;
    let mut vars = vec![
        ("OPENAI_API_KEY", key.clone()),
        ("OPENAI_BASE_URL", format!("{base}/v1")),
    ];
    if a.anthropic {
        // The Anthropic SDKs append /v1 themselves.
        vars.push(("ANTHROPIC_API_KEY", key));
        vars.push(("ANTHROPIC_BASE_URL", base.clone()));
    }
    if ctx.out.json {
        let obj: serde_json::Map<String, Value> = vars
            .into_iter()
            .map(|(k, v)| (k.to_string(), Value::String(v)))
            .collect();
        ctx.out.json(&Value::Object(obj));
    } else {
        for (k, v) in vars {
            ctx.out.line(&format!("{k}={v}"));
        }
    }
    Ok(())
}

async fn chat(
    ctx: &Ctx,
    key: &str,
    model: &str,
) -> Result<(Value, reqwest::header::HeaderMap), CliError> {
    let body = json!({
        "model": model,
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "Reply with the single word OK."}],
    });
    let reply = ctx
        .http
        .send(
            ctx.http
                .client()
                .post(ctx.http.url("/v1/chat/completions"))
                .bearer_auth(key)
                .json(&body),
        )
        .await?;
    Ok((reply.body, reply.headers))
}

pub async fn test(ctx: &Ctx, a: &TestArgs) -> Result<(), CliError> {
    let key = api_key(ctx)?;
    let mut model = a
        .model
        .clone()
        .unwrap_or_else(|| DEFAULT_TEST_MODEL.to_string());
    let started = std::time::Instant::now();
    let (body, headers) = match chat(ctx, &key, &model).await {
        // The default alias is not offered here: try the first model the key may use.
        Err(e) if a.model.is_none() && matches!(e.status(), Some(403 | 404)) => {
            let first = fetch_models(ctx, &key)
                .await?
                .first()
                .and_then(|m| m.get("id"))
                .and_then(Value::as_str)
                .map(str::to_string);
            let Some(first) = first else {
                return Err(gateway_error(e));
            };
            model = first;
            chat(ctx, &key, &model).await.map_err(gateway_error)?
        }
        other => other.map_err(gateway_error)?,
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let reply = body
        .pointer("/choices/0/message/content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let served = header("x-tokengate-model");
    if ctx.out.json {
        ctx.out.json(&json!({
            "ok": true,
            "model": model,
            "served_model": served,
            "provider": header("x-tokengate-provider"),
            "request_id": header("x-request-id"),
            "reply": reply,
            "usage": body.get("usage"),
            "latency_ms": latency_ms,
        }));
    } else {
        let via = served
            .filter(|s| *s != model)
            .map(|s| format!(" → {s}"))
            .unwrap_or_default();
        ctx.out
            .line(&format!("OK connected ({model}{via}, {latency_ms} ms)"));
        ctx.out.line(&format!("  reply: {}", reply.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_forms() {
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        assert_eq!(parse_expires("30d", now).unwrap(), "2027-02-14T08:00:00Z");
        assert_eq!(parse_expires("12h", now).unwrap(), "2027-01-15T20:00:00Z");
        assert_eq!(parse_expires("2w", now).unwrap(), "2027-01-29T08:00:00Z");
        assert_eq!(parse_expires("90m", now).unwrap(), "2027-01-15T09:30:00Z");
        assert_eq!(
            parse_expires("2030-01-31", now).unwrap(),
            "2030-01-31T00:00:00Z"
        );
        assert_eq!(
            parse_expires("2030-01-31T12:00:00+02:00", now).unwrap(),
            "2030-01-31T12:00:00+02:00"
        );
        assert_eq!(
            parse_expires("1900000000", now).unwrap(),
            "2030-03-17T17:46:40Z"
        );
        for bad in ["", "soon", "0d", "-1d", "2030-13-01", "2020-01-01", "1d2"] {
            assert!(parse_expires(bad, now).is_err(), "{bad}");
        }
    }

    #[test]
    fn amounts() {
        assert_eq!(parse_amount("5").unwrap(), "5");
        assert_eq!(parse_amount("$12.50").unwrap(), "12.50");
        for bad in ["", "five", "1.", ".5", "1.2.3", "-5", "1e3"] {
            assert!(parse_amount(bad).is_err(), "{bad}");
        }
    }
}
