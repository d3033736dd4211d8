//! The account API for the signed-in user (`/api/v1`, bearer access token or portal
//! session): profile, balance, API keys (create with the secret shown once, list, get,
//! update, rotate, revoke), usage summary, sign-out everywhere, and the device-approval
//! lookup. Every query is scoped to the caller: another user's key is a 404, never a 403.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate_core::catalog;
use tokengate_core::keys::{self, ApiKey, KeyPatch, NewKey};
use tokengate_core::money::{format_balance, format_exact, parse_usd_json};
use tokengate_core::{auth as store, now_ms, usage};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiPath};
use crate::AppState;
use crate::auth::CurrentUser;
use crate::auth::device;
use crate::docs::schemas::{
    ApiErrorBody, ApiKeyView, BadRequest, Balance, CreatedKey, DeviceRequestView, Me, NotFound,
    RevokedKey, SessionInfo, SignedOut, Unauthorized, Unprocessable, UsageDaily, UsageSummary,
};

/// The account routes; each handler's `#[utoipa::path]` names its method and path.
pub fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(me, patch_me))
        .routes(routes!(list_sessions))
        .routes(routes!(usage_daily))
        .routes(routes!(balance))
        .routes(routes!(list_keys, create_key))
        .routes(routes!(get_key, patch_key, revoke_key))
        .routes(routes!(rotate_key))
        .routes(routes!(usage_summary))
        .routes(routes!(logout_everywhere))
        .routes(routes!(device_request))
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
        "models": k.allowed_models, "group_id": k.group_id,
        "group": k.group_id.and_then(|g| state.gateway.routes.load().group_name(g)),
        "rpm": k.rpm, "tpm": k.tpm,
        "created_at": rfc3339(k.created_at), "last_used_at": k.last_used_at.and_then(rfc3339),
        "expires_at": k.expires_at.and_then(rfc3339),
    })
}

/// The signed-in user
///
/// Profile and balance (less what running requests hold) of the account the access token
/// or session belongs to.
#[utoipa::path(get, path = "/me", tag = "Account", operation_id = "get_me",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The user.", body = Me), Unauthorized))]
async fn me(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    let verified = store::email_verified(&state.db, u.id).await?;
    Ok(Json(
        json!({"id": u.id, "display_name": u.display_name, "email": u.email,
        "email_verified": verified,
        "balance_usd": format_balance(u.balance_nano - pending), "status": u.status, "role": u.role,
        "created_at": rfc3339(u.created_at)}),
    ))
}

/// Profile changes.
#[derive(Deserialize, ToSchema)]
#[schema(as = ProfilePatch)]
struct MePatch {
    /// 1 to 100 characters.
    #[schema(example = "Ada Lovelace")]
    display_name: Option<String>,
}

/// Change the profile
///
/// Changes the display name; answers with the updated user.
#[utoipa::path(patch, path = "/me", tag = "Account", operation_id = "update_me",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body = MePatch,
    responses((status = 200, description = "The updated user.", body = Me), BadRequest,
        Unauthorized, Unprocessable))]
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
    me(CurrentUser(u), State(state)).await
}

/// List portal sessions
///
/// The user's live portal sessions.
#[utoipa::path(get, path = "/me/sessions", tag = "Account", operation_id = "list_sessions",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Live sessions.", body = Vec<SessionInfo>), Unauthorized))]
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

/// Balance
///
/// The account's balance in USD, less what running requests hold.
#[utoipa::path(get, path = "/balance", tag = "Account", operation_id = "get_balance",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The balance.", body = Balance), Unauthorized))]
async fn balance(CurrentUser(u): CurrentUser, State(state): State<AppState>) -> Json<Value> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    Json(json!({"balance_usd": format_balance(u.balance_nano - pending), "currency": "USD"}))
}

/// List API keys
///
/// Every key of the account, newest first, with what each can still spend. The secret is
/// never included.
#[utoipa::path(get, path = "/me/keys", tag = "Keys", operation_id = "list_keys",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The keys (a JSON array).", body = Vec<ApiKeyView>), Unauthorized))]
async fn list_keys(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    let list = keys::list_for_user(&state.db, u.id).await?;
    Ok(Json(Value::Array(
        list.iter().map(|k| key_json(&state, k)).collect(),
    )))
}

/// Get an API key
#[utoipa::path(get, path = "/me/keys/{id}", tag = "Keys", operation_id = "get_key",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    responses((status = 200, description = "The key.", body = ApiKeyView), Unauthorized, NotFound))]
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

/// A new API key.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = CreateKeyRequest)]
struct CreateKey {
    /// A name to recognise the key by, e.g. the project using it.
    #[schema(example = "fieryeye")]
    name: String,
    /// After this time the key answers 401.
    #[schema(value_type = Option<crate::docs::schemas::Timestamp>)]
    expires_at: Option<Value>,
    /// The most this key may spend in total (its requests are held against it).
    #[schema(value_type = Option<crate::docs::schemas::UsdAmount>)]
    spend_limit_usd: Option<Value>,
    /// Models and aliases the key may use (exact names or `provider/*`); absent = all.
    #[schema(value_type = Option<Vec<String>>, example = json!(["tokengate-fast", "openai/*"]))]
    models: Option<Value>,
    /// Requests per minute.
    #[schema(value_type = Option<i64>, minimum = 1)]
    rpm: Option<Value>,
    /// Tokens per minute.
    #[schema(value_type = Option<i64>, minimum = 1)]
    tpm: Option<Value>,
    /// A key group's name.
    group: Option<String>,
}

/// Create an API key
///
/// Creates a key and returns its secret in `raw` — in this response only, ever. Store it
/// at once (e.g. as `OPENAI_API_KEY` in the project's environment).
#[utoipa::path(post, path = "/me/keys", tag = "Keys", operation_id = "create_key",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body(content = CreateKey, example = json!({"name": "fieryeye"})),
    responses((status = 201, description = "The key, with its secret in `raw`.", body = CreatedKey),
        BadRequest, Unauthorized, Unprocessable))]
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

/// Changes to a key: absent fields stay, `null` clears a limit.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = UpdateKeyRequest)]
struct PatchKey {
    name: Option<String>,
    /// `active` or `disabled`.
    #[schema(example = "disabled")]
    status: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::docs::schemas::Timestamp>)]
    expires_at: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<crate::docs::schemas::UsdAmount>)]
    spend_limit_usd: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Vec<String>>)]
    models: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    rpm: Option<Value>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<i64>, minimum = 1)]
    tpm: Option<Value>,
}

/// A field that is present (even as `null`) deserializes to `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Update an API key
///
/// Renames, disables or re-enables a key, or changes its limits. Applies to the running
/// gateway at once.
#[utoipa::path(patch, path = "/me/keys/{id}", tag = "Keys", operation_id = "update_key",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    request_body(content = PatchKey, example = json!({"status": "disabled"})),
    responses((status = 200, description = "The updated key.", body = ApiKeyView), BadRequest,
        Unauthorized, NotFound, Unprocessable))]
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

/// Rotate an API key
///
/// Gives the key a new secret (in `raw`, shown once); the old secret fails at once.
#[utoipa::path(post, path = "/me/keys/{id}/rotate", tag = "Keys", operation_id = "rotate_key",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    responses((status = 200, description = "The key with its new secret in `raw`.", body = CreatedKey),
        Unauthorized, NotFound))]
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

/// Revoke an API key
///
/// Revokes the key for good: its next request gets 401.
#[utoipa::path(delete, path = "/me/keys/{id}", tag = "Keys", operation_id = "revoke_key",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    responses((status = 200, description = "The key is revoked.", body = RevokedKey), Unauthorized, NotFound))]
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

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct UsageQuery {
    /// Days back from now, 1 to 365 (default 30).
    #[param(value_type = Option<i64>, minimum = 1, maximum = 365, example = 7)]
    days: Option<String>,
}

impl UsageQuery {
    /// The range in days: 30 by default, 1 to 365 (400 otherwise).
    fn days(&self) -> Result<i64, ApiError> {
        match self.days.as_deref() {
            None => Ok(30),
            Some(d) => d
                .parse()
                .ok()
                .filter(|d| (1..=365).contains(d))
                .ok_or_else(|| {
                    ApiError::BadRequest("days must be an integer from 1 to 365".into())
                }),
        }
    }
}

/// Usage summary
///
/// Requests, tokens and cost over the last `days` days. Only successful requests count;
/// the cost is the exact sum of the requests' stored costs.
#[utoipa::path(get, path = "/me/usage", tag = "Account", operation_id = "get_usage",
    security(("access_token" = []), ("session_cookie" = [])),
    params(UsageQuery),
    responses((status = 200, description = "Totals.", body = UsageSummary), BadRequest, Unauthorized))]
async fn usage_summary(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days()?;
    let since = now_ms() - days * 86_400_000;
    let t = usage::totals_since(&state.db, u.id, since).await?;
    Ok(Json(
        json!({"range_days": days, "total_requests": t.total_requests,
        "total_tokens_in": t.total_tokens_in, "total_tokens_out": t.total_tokens_out,
        "total_cost_usd": format_exact(t.total_cost_nano)}),
    ))
}

/// Daily usage
///
/// Usage per UTC day (every day of the range, zeros included), per model and per key,
/// with totals equal to `/me/usage` for the same `days`.
#[utoipa::path(get, path = "/me/usage/daily", tag = "Account", operation_id = "get_usage_daily",
    security(("access_token" = []), ("session_cookie" = [])),
    params(UsageQuery),
    responses((status = 200, description = "Breakdown.", body = UsageDaily), BadRequest, Unauthorized))]
async fn usage_daily(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<UsageQuery>,
) -> Result<Json<Value>, ApiError> {
    let days = q.days()?;
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

/// Sign out everywhere
///
/// Ends every portal session, revokes every refresh token and invalidates every access
/// token of the account, this one included.
#[utoipa::path(post, path = "/me/logout-everywhere", tag = "Account", operation_id = "logout_everywhere",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Signed out.", body = SignedOut), Unauthorized))]
async fn logout_everywhere(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
) -> Result<Json<Value>, ApiError> {
    store::sign_out_everywhere(&state.db, u.id).await?;
    Ok(Json(json!({"signed_out": true})))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
struct DeviceQuery {
    /// The code the command-line client shows, e.g. `BCDF-GHJK`.
    user_code: String,
}

/// Look up a device request
///
/// What a pending device request asks for, for the approval page.
#[utoipa::path(get, path = "/auth/device/request", tag = "Device flow", operation_id = "get_device_request",
    security(("access_token" = []), ("session_cookie" = [])),
    params(DeviceQuery),
    responses((status = 200, description = "The pending request.", body = DeviceRequestView),
        Unauthorized, NotFound,
        (status = 429, description = "More than 10 unknown codes looked up by this user in 15 minutes.", body = ApiErrorBody,
            example = json!({"error": {"message": "Too many unknown codes looked up; try again in a few minutes.", "type": "rate_limit_error", "code": "rate_limited"}}))))]
async fn device_request(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    Query(q): Query<DeviceQuery>,
) -> Result<Json<Value>, ApiError> {
    let g = match device::lookup(&state.db, user.id, &q.user_code).await? {
        device::Lookup::Found(g) => g,
        device::Lookup::Unknown => {
            return Err(ApiError::NotFound(
                "This code is unknown, expired or already used.".into(),
            ));
        }
        device::Lookup::Throttled => {
            return Err(ApiError::RateLimited(
                "Too many unknown codes looked up; try again in a few minutes.".into(),
            ));
        }
    };
    Ok(Json(
        json!({"user_code": g.user_code, "client_id": g.client_id, "scope": g.scope,
        "expires_in": (g.expires_at - now_ms()) / 1000}),
    ))
}
