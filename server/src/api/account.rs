//! The account API for the signed-in user (`/api/v1`, bearer access token or portal
//! session): profile, balance, API keys (create with the secret shown once, list, get,
//! update, rotate, revoke), usage summary, sign-out everywhere, and the device-approval
//! lookup. Every query is scoped to the caller: another user's key is a 404, never a 403.

use axum::Json;
use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate_core::catalog;
use tokengate_core::keys::{self, ApiKey, KeyPatch, NewKey};
use tokengate_core::money::{format_balance, format_exact, parse_usd_json};
use tokengate_core::{auth as store, now_ms, usage};

use super::{ApiError, ApiJson, ApiPath};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::auth::device::normalise_user_code;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/me", get(me).patch(patch_me))
        .route("/me/sessions", get(list_sessions))
        .route("/me/usage/daily", get(usage_daily))
        .route("/balance", get(balance))
        .route("/me/keys", get(list_keys).post(create_key))
        .route(
            "/me/keys/{id}",
            get(get_key).patch(patch_key).delete(revoke_key),
        )
        .route("/me/keys/{id}/rotate", post(rotate_key))
        .route("/me/usage", get(usage_summary))
        .route("/me/logout-everywhere", post(logout_everywhere))
        .route("/auth/device/request", get(device_request))
}

/// Unix milliseconds as RFC 3339 (UTC).
pub fn rfc3339(ms: i64) -> Option<String> {
    OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
}

/// A time given as RFC 3339 or as unix seconds, in unix milliseconds.
fn parse_time(field: &str, v: &Value) -> Result<i64, ApiError> {
    let bad =
        || ApiError::Unprocessable(format!("{field} must be an RFC 3339 time or unix seconds"));
    match v {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
            .map_err(|_| bad()),
        Value::Number(n) => n
            .as_i64()
            .filter(|s| *s > 0)
            .map(|s| s * 1000)
            .ok_or_else(bad),
        _ => Err(bad()),
    }
}

fn opt_time(field: &str, v: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => parse_time(field, v).map(Some),
    }
}

fn amount(field: &str, v: &Value) -> Result<i64, ApiError> {
    parse_usd_json(v).map_err(|_| ApiError::Unprocessable(format!("{field} must be a USD amount")))
}

fn key_json(state: &AppState, k: &ApiKey) -> Value {
    let spent = k.spent_nano + state.gateway.money.key_pending(k.id);
    let account = state.gateway.money.account_funds(k.user_id);
    let account_left = account.persisted - account.pending;
    let left = match k.spend_limit_nano {
        Some(limit) => (limit - spent).min(account_left),
        None => account_left,
    };
    json!({
        "id": k.id, "name": k.name, "key_prefix": k.key_prefix, "status": k.status,
        "balance_usd": format_balance(left.max(0)),
        "spend_limit_usd": k.spend_limit_nano.map(format_exact),
        "spent_usd": format_exact(spent),
        "models": k.allowed_models, "group_id": k.group_id, "rpm": k.rpm, "tpm": k.tpm,
        "created_at": rfc3339(k.created_at), "last_used_at": k.last_used_at.and_then(rfc3339),
        "expires_at": k.expires_at.and_then(rfc3339),
    })
}

async fn me(CurrentUser(u): CurrentUser, State(state): State<AppState>) -> Json<Value> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    Json(
        json!({"id": u.id, "display_name": u.display_name, "email": u.email,
        "balance_usd": format_balance(u.balance_nano - pending), "status": u.status, "role": u.role,
        "created_at": rfc3339(u.created_at)}),
    )
}

#[derive(Deserialize)]
struct MePatch {
    display_name: Option<String>,
}

/// Changes the profile (the display name).
async fn patch_me(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(p): ApiJson<MePatch>,
) -> Result<Json<Value>, ApiError> {
    if let Some(name) = p.display_name {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(ApiError::Unprocessable(
                "display_name must be 1 to 100 characters".into(),
            ));
        }
        tokengate_core::accounts::set_display_name(&state.db, u.id, name).await?;
    }
    let u = tokengate_core::accounts::get_user(&state.db, u.id).await?;
    Ok(me(CurrentUser(u), State(state)).await)
}

/// The user's live portal sessions.
async fn list_sessions(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list = store::user_sessions(&state.db, u.id).await?;
    Ok(Json(Value::Array(
        list.iter()
            .map(|(_, created, expires)| {
                json!({"created_at": rfc3339(*created), "expires_at": rfc3339(*expires)})
            })
            .collect(),
    )))
}

async fn balance(CurrentUser(u): CurrentUser, State(state): State<AppState>) -> Json<Value> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    Json(json!({"balance_usd": format_balance(u.balance_nano - pending), "currency": "USD"}))
}

async fn list_keys(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list = keys::list_for_user(&state.db, u.id).await?;
    Ok(Json(Value::Array(
        list.iter().map(|k| key_json(&state, k)).collect(),
    )))
}

async fn get_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let k = keys::get_for_user(&state.db, u.id, id)
        .await
        .map_err(key_not_found)?;
    Ok(Json(key_json(&state, &k)))
}

fn key_not_found(e: tokengate_core::Error) -> ApiError {
    match e {
        tokengate_core::Error::NotFound => ApiError::NotFound("No such key.".into()),
        other => other.into(),
    }
}

fn models_list(v: &Option<Value>) -> Result<Option<Vec<String>>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|i| match i.as_str() {
                Some(s) if !s.is_empty() && s.len() <= 200 => Ok(s.to_string()),
                _ => Err(ApiError::Unprocessable(
                    "models must be a list of model or alias names".into(),
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(ApiError::Unprocessable(
            "models must be a list of model or alias names".into(),
        )),
    }
}

fn limit(field: &str, v: &Option<Value>) -> Result<Option<i64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            v.as_i64().filter(|n| *n > 0).map(Some).ok_or_else(|| {
                ApiError::Unprocessable(format!("{field} must be a positive integer"))
            })
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    expires_at: Option<Value>,
    spend_limit_usd: Option<Value>,
    models: Option<Value>,
    rpm: Option<Value>,
    tpm: Option<Value>,
    /// A key group's name.
    group: Option<String>,
}

async fn create_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(b): ApiJson<CreateKey>,
) -> Result<Response, ApiError> {
    let group_id = match &b.group {
        None => None,
        Some(name) => Some(
            catalog::load(&state.db)
                .await?
                .key_groups
                .iter()
                .find(|g| &g.name == name)
                .map(|g| g.id)
                .ok_or_else(|| ApiError::Unprocessable(format!("unknown key group {name:?}")))?,
        ),
    };
    let new = NewKey {
        name: b.name,
        expires_at: opt_time("expires_at", &b.expires_at)?,
        spend_limit_nano: b
            .spend_limit_usd
            .as_ref()
            .filter(|v| !v.is_null())
            .map(|v| amount("spend_limit_usd", v))
            .transpose()?,
        allowed_models: models_list(&b.models)?,
        rpm: limit("rpm", &b.rpm)?,
        tpm: limit("tpm", &b.tpm)?,
        group_id,
    };
    let (key, raw) = keys::create(&state.db, state.gateway.secret(), u.id, &new).await?;
    state.gateway.key_changed(key.clone());
    let mut body = key_json(&state, &key);
    body["raw"] = json!(raw);
    tracing::info!(user = u.id, key = key.id, "API key created");
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchKey {
    name: Option<String>,
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    expires_at: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    spend_limit_usd: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    models: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    rpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    tpm: Option<Value>,
}

/// A field that is present (even as `null`) deserializes to `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

async fn patch_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(b): ApiJson<PatchKey>,
) -> Result<Json<Value>, ApiError> {
    let patch = KeyPatch {
        name: b.name,
        status: b.status,
        expires_at: b
            .expires_at
            .as_ref()
            .map(|v| opt_time("expires_at", &Some(v.clone())))
            .transpose()?,
        spend_limit_nano: b
            .spend_limit_usd
            .as_ref()
            .map(|v| {
                if v.is_null() {
                    Ok(None)
                } else {
                    amount("spend_limit_usd", v).map(Some)
                }
            })
            .transpose()?,
        allowed_models: b
            .models
            .as_ref()
            .map(|v| models_list(&Some(v.clone())))
            .transpose()?,
        rpm: b
            .rpm
            .as_ref()
            .map(|v| limit("rpm", &Some(v.clone())))
            .transpose()?,
        tpm: b
            .tpm
            .as_ref()
            .map(|v| limit("tpm", &Some(v.clone())))
            .transpose()?,
    };
    let key = keys::update(&state.db, u.id, id, &patch)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    Ok(Json(key_json(&state, &key)))
}

async fn rotate_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let (key, raw) = keys::rotate(&state.db, state.gateway.secret(), u.id, id)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    let mut body = key_json(&state, &key);
    body["raw"] = json!(raw);
    tracing::info!(user = u.id, key = key.id, "API key rotated");
    Ok(Json(body))
}

async fn revoke_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> Result<Json<Value>, ApiError> {
    let key = keys::revoke(&state.db, u.id, id)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    tracing::info!(user = u.id, key = key.id, "API key revoked");
    Ok(Json(json!({"id": key.id, "status": "revoked"})))
}

#[derive(Deserialize)]
struct UsageQuery {
    days: Option<String>,
}

async fn usage_summary(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let days: i64 = match q.days.as_deref() {
        None => 30,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| ApiError::BadRequest("days must be an integer from 1 to 365".into()))?,
    };
    let since = now_ms() - days * 86_400_000;
    let t = usage::totals_since(&state.db, u.id, since).await?;
    Ok(Json(
        json!({"range_days": days, "total_requests": t.total_requests,
        "total_tokens_in": t.total_tokens_in, "total_tokens_out": t.total_tokens_out,
        "total_cost_usd": format_exact(t.total_cost_nano)}),
    ))
}

/// Usage per UTC day (every day of the range, zeros included), per model and per key,
/// with totals equal to `/me/usage` for the same `days`.
async fn usage_daily(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let days: i64 = match q.days.as_deref() {
        None => 30,
        Some(d) => d
            .parse()
            .ok()
            .filter(|d| (1..=365).contains(d))
            .ok_or_else(|| ApiError::BadRequest("days must be an integer from 1 to 365".into()))?,
    };
    let now = now_ms();
    let since = now - days * 86_400_000;
    let t = usage::totals_since(&state.db, u.id, since).await?;
    let (by_day, by_model, by_key) = usage::breakdown_since(&state.db, u.id, since).await?;
    let names: std::collections::HashMap<String, String> = keys::list_for_user(&state.db, u.id)
        .await?
        .into_iter()
        .map(|k| (k.id.to_string(), k.name))
        .collect();
    let bucket = |b: &usage::Bucket| {
        json!({"requests": b.requests, "tokens_in": b.tokens_in, "tokens_out": b.tokens_out,
               "cost_usd": format_exact(b.cost_nano), "cost_nano": b.cost_nano})
    };
    let mut daily = Vec::new();
    let first_day = since.div_euclid(86_400_000);
    for d in first_day..=now.div_euclid(86_400_000) {
        let date = tokengate_core::statements::day_string(d * 86_400_000);
        let mut v = match by_day.iter().find(|b| b.key == date) {
            Some(b) => bucket(b),
            None => bucket(&usage::Bucket::default()),
        };
        v["date"] = json!(date);
        daily.push(v);
    }
    let models: Vec<Value> = by_model
        .iter()
        .map(|b| {
            let mut v = bucket(b);
            v["model"] = json!(b.key);
            v
        })
        .collect();
    let per_key: Vec<Value> = by_key
        .iter()
        .map(|b| {
            let mut v = bucket(b);
            v["key_id"] = json!(b.key.parse::<i64>().ok());
            v["key_name"] = json!(names.get(&b.key));
            v
        })
        .collect();
    Ok(Json(json!({
        "range_days": days,
        "total_requests": t.total_requests,
        "total_tokens_in": t.total_tokens_in,
        "total_tokens_out": t.total_tokens_out,
        "total_cost_usd": format_exact(t.total_cost_nano),
        "total_cost_nano": t.total_cost_nano,
        "days": daily,
        "by_model": models,
        "by_key": per_key,
    })))
}

async fn logout_everywhere(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    store::sign_out_everywhere(&state.db, u.id).await?;
    Ok(Json(json!({"signed_out": true})))
}

#[derive(Deserialize)]
struct DeviceQuery {
    user_code: String,
}

/// What a pending device request asks for, for the approval page.
async fn device_request(
    CurrentUser(_): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> Result<Json<Value>, ApiError> {
    let code = normalise_user_code(&q.user_code)
        .ok_or_else(|| ApiError::NotFound("No such code.".into()))?;
    let g = store::grant_by_user_code(&state.db, &code)
        .await?
        .filter(|g| g.status == "pending" && g.expires_at > now_ms())
        .ok_or_else(|| {
            ApiError::NotFound("This code is unknown, expired or already used.".into())
        })?;
    Ok(Json(
        json!({"user_code": g.user_code, "client_id": g.client_id, "scope": g.scope,
        "expires_in": (g.expires_at - now_ms()) / 1000}),
    ))
}
