//! The account API for the signed-in user (`/api/v1`, bearer access token or portal
//! session): profile, balance, API keys (create with the secret shown once, list, get,
//! update, rotate, revoke), usage summary, sign-out everywhere, and the device-approval
//! lookup. Every query is scoped to the caller: another user's key is a 404, never a 403.

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use tokengate_api::account::{
    ApiKeyView, Balance, CreateKeyRequest, CreatedKey, DeviceRequestQuery, DeviceRequestView, Me,
    ProfilePatch, RevokedKey, SessionInfo, SignedOut, UpdateKeyRequest, UsageByKey, UsageByModel,
    UsageDaily, UsageDay, UsageQuery, UsageSummary,
};
use tokengate_api::kinds::KeyStatus;
use tokengate_api::{Timestamp, Usd};
use tokengate_core::catalog;
use tokengate_core::keys::{self, ApiKey, KeyPatch, NewKey};
use tokengate_core::{auth as store, now_ms, usage};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::auth::CurrentUser;
use crate::auth::device;
use crate::http::error::{ApiErrorBody, BadRequest, NotFound, Unauthorized, Unprocessable};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery, typed_object};

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

/// A model list from a request: names of 1 to 200 bytes.
fn models_list(models: Vec<String>) -> Result<Vec<String>, ApiError> {
    if models.iter().all(|s| !s.is_empty() && s.len() <= 200) {
        Ok(models)
    } else {
        Err(ApiError::Unprocessable(
            "models must be a list of model or alias names".into(),
        ))
    }
}

fn key_view(state: &AppState, k: &ApiKey) -> ApiKeyView {
    let spent = k.spent_nano + state.gateway.money.key_pending(k.id);
    let account = state.gateway.money.account_funds(k.user_id);
    let account_left = account.persisted - account.pending;
    let left = match k.spend_limit_nano {
        Some(limit) => (limit - spent).min(account_left),
        None => account_left,
    };
    ApiKeyView {
        id: k.id,
        name: k.name.clone(),
        key_prefix: k.key_prefix.clone(),
        status: k.status,
        balance_usd: Usd(left.max(0)),
        spend_limit_usd: k.spend_limit_nano.map(Usd),
        spent_usd: Usd(spent),
        models: k.allowed_models.clone(),
        group_id: k.group_id,
        group: k
            .group_id
            .and_then(|g| state.gateway.routes.load().group_name(g)),
        rpm: k.rpm,
        tpm: k.tpm,
        created_at: Timestamp(k.created_at),
        last_used_at: k.last_used_at.map(Timestamp),
        expires_at: k.expires_at.map(Timestamp),
    }
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
) -> Result<ApiJson<Me>, ApiError> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    let verified = store::email_verified(&state.db, u.id).await?;
    Ok(ApiJson(Me {
        id: u.id,
        display_name: u.display_name,
        email: u.email,
        email_verified: verified,
        balance_usd: Usd(u.balance_nano - pending),
        status: u.status,
        role: u.role,
        created_at: Timestamp(u.created_at),
    }))
}

/// Change the profile
///
/// Changes the display name; answers with the updated user.
#[utoipa::path(patch, path = "/me", tag = "Account", operation_id = "update_me",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body = ProfilePatch,
    responses((status = 200, description = "The updated user.", body = Me), BadRequest,
        Unauthorized, Unprocessable))]
async fn patch_me(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(p): ApiJson<ProfilePatch>,
) -> Result<ApiJson<Me>, ApiError> {
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
) -> Result<ApiJson<Vec<SessionInfo>>, ApiError> {
    let list = store::user_sessions(&state.db, u.id).await?;
    Ok(ApiJson(
        list.iter()
            .map(|(_, created, expires)| SessionInfo {
                created_at: Timestamp(*created),
                expires_at: Timestamp(*expires),
            })
            .collect(),
    ))
}

/// Balance
///
/// The account's balance in USD, less what running requests hold.
#[utoipa::path(get, path = "/balance", tag = "Account", operation_id = "get_balance",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "The balance.", body = Balance), Unauthorized))]
async fn balance(CurrentUser(u): CurrentUser, State(state): State<AppState>) -> ApiJson<Balance> {
    let pending = state.gateway.money.account_funds(u.id).pending;
    ApiJson(Balance {
        balance_usd: Usd(u.balance_nano - pending),
        currency: "USD".into(),
    })
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
) -> Result<ApiJson<Vec<ApiKeyView>>, ApiError> {
    let list = keys::list_for_user(&state.db, u.id).await?;
    Ok(ApiJson(list.iter().map(|k| key_view(&state, k)).collect()))
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
) -> Result<ApiJson<ApiKeyView>, ApiError> {
    let k = keys::get_for_user(&state.db, u.id, id)
        .await
        .map_err(key_not_found)?;
    Ok(ApiJson(key_view(&state, &k)))
}

fn key_not_found(e: tokengate_core::Error) -> ApiError {
    match e {
        tokengate_core::Error::NotFound => ApiError::NotFound("No such key.".into()),
        other => other.into(),
    }
}

/// Create an API key
///
/// Creates a key and returns its secret in `raw` — in this response only, ever. Store it
/// at once (e.g. as `OPENAI_API_KEY` in the project's environment).
#[utoipa::path(post, path = "/me/keys", tag = "Keys", operation_id = "create_key",
    security(("access_token" = []), ("session_cookie" = [])),
    request_body = CreateKeyRequest,
    responses((status = 201, description = "The key, with its secret in `raw`.", body = CreatedKey),
        BadRequest, Unauthorized, Unprocessable))]
async fn create_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<(StatusCode, ApiJson<CreatedKey>), ApiError> {
    let b: CreateKeyRequest = typed_object(body, CreateKeyRequest::VALUE_FIELDS)?;
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
        expires_at: b.expires_at.map(Timestamp::millis),
        spend_limit_nano: b.spend_limit_usd.map(Usd::nanos),
        allowed_models: b.models.map(models_list).transpose()?,
        rpm: b.rpm,
        tpm: b.tpm,
        group_id,
    };
    let (key, raw) = keys::create(&state.db, state.gateway.secret(), u.id, &new).await?;
    state.gateway.key_changed(key.clone());
    tracing::info!(user = u.id, key = key.id, "API key created");
    Ok((
        StatusCode::CREATED,
        ApiJson(CreatedKey::new(key_view(&state, &key), raw)),
    ))
}

/// Update an API key
///
/// Renames, disables or re-enables a key, or changes its limits. Applies to the running
/// gateway at once.
#[utoipa::path(patch, path = "/me/keys/{id}", tag = "Keys", operation_id = "update_key",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The key's id")),
    request_body = UpdateKeyRequest,
    responses((status = 200, description = "The updated key.", body = ApiKeyView), BadRequest,
        Unauthorized, NotFound, Unprocessable))]
async fn patch_key(
    CurrentUser(u): CurrentUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<Map<String, Value>>,
) -> Result<ApiJson<ApiKeyView>, ApiError> {
    let b: UpdateKeyRequest = typed_object(body, UpdateKeyRequest::VALUE_FIELDS)?;
    let patch = KeyPatch {
        name: b.name,
        status: b.status,
        expires_at: b.expires_at.map(|t| t.map(Timestamp::millis)),
        spend_limit_nano: b.spend_limit_usd.map(|v| v.map(Usd::nanos)),
        allowed_models: b
            .models
            .map(|m| m.map(models_list).transpose())
            .transpose()?,
        rpm: b.rpm,
        tpm: b.tpm,
    };
    let key = keys::update(&state.db, u.id, id, &patch)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    Ok(ApiJson(key_view(&state, &key)))
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
) -> Result<ApiJson<CreatedKey>, ApiError> {
    let (key, raw) = keys::rotate(&state.db, state.gateway.secret(), u.id, id)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    tracing::info!(user = u.id, key = key.id, "API key rotated");
    Ok(ApiJson(CreatedKey::new(key_view(&state, &key), raw)))
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
) -> Result<ApiJson<RevokedKey>, ApiError> {
    let key = keys::revoke(&state.db, u.id, id)
        .await
        .map_err(key_not_found)?;
    state.gateway.key_changed(key.clone());
    tracing::info!(user = u.id, key = key.id, "API key revoked");
    Ok(ApiJson(RevokedKey {
        id: key.id,
        status: KeyStatus::Revoked,
    }))
}

/// The range of a usage query in days: 30 by default, 1 to 365 (400 otherwise).
fn usage_days(q: &UsageQuery) -> Result<i64, ApiError> {
    match q.days {
        None => Ok(30),
        Some(d) if (1..=365).contains(&d) => Ok(d),
        Some(_) => Err(ApiError::BadRequest(
            "days must be an integer from 1 to 365".into(),
        )),
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
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<ApiJson<UsageSummary>, ApiError> {
    let days = usage_days(&q)?;
    let since = now_ms() - days * 86_400_000;
    let t = usage::totals_since(&state.db, u.id, since).await?;
    Ok(ApiJson(UsageSummary {
        range_days: days,
        total_requests: t.total_requests,
        total_tokens_in: t.total_tokens_in,
        total_tokens_out: t.total_tokens_out,
        total_cost_usd: Usd(t.total_cost_nano),
    }))
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
    ApiQuery(q): ApiQuery<UsageQuery>,
) -> Result<ApiJson<UsageDaily>, ApiError> {
    let days = usage_days(&q)?;
    let now = now_ms();
    let since = now - days * 86_400_000;
    let t = usage::totals_since(&state.db, u.id, since).await?;
    let (by_day, by_model, by_key) = usage::breakdown_since(&state.db, u.id, since).await?;
    let names: std::collections::HashMap<String, String> = keys::list_for_user(&state.db, u.id)
        .await?
        .into_iter()
        .map(|k| (k.id.to_string(), k.name))
        .collect();
    let zero = usage::Bucket::default();
    let first_day = since.div_euclid(86_400_000);
    let daily = (first_day..=now.div_euclid(86_400_000))
        .map(|d| {
            let date = tokengate_core::statements::day_string(d * 86_400_000);
            let b = by_day.iter().find(|b| b.key == date).unwrap_or(&zero);
            UsageDay {
                requests: b.requests,
                tokens_in: b.tokens_in,
                tokens_out: b.tokens_out,
                cost_usd: Usd(b.cost_nano),
                cost_nano: b.cost_nano,
                date,
            }
        })
        .collect();
    let models = by_model
        .iter()
        .map(|b| UsageByModel {
            model: b.key.clone(),
            requests: b.requests,
            tokens_in: b.tokens_in,
            tokens_out: b.tokens_out,
            cost_usd: Usd(b.cost_nano),
            cost_nano: b.cost_nano,
        })
        .collect();
    let per_key = by_key
        .iter()
        .map(|b| UsageByKey {
            key_id: b.key.parse::<i64>().ok(),
            key_name: names.get(&b.key).cloned(),
            requests: b.requests,
            tokens_in: b.tokens_in,
            tokens_out: b.tokens_out,
            cost_usd: Usd(b.cost_nano),
            cost_nano: b.cost_nano,
        })
        .collect();
    Ok(ApiJson(UsageDaily {
        range_days: days,
        total_requests: t.total_requests,
        total_tokens_in: t.total_tokens_in,
        total_tokens_out: t.total_tokens_out,
        total_cost_usd: Usd(t.total_cost_nano),
        total_cost_nano: t.total_cost_nano,
        days: daily,
        by_model: models,
        by_key: per_key,
    }))
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
) -> Result<ApiJson<SignedOut>, ApiError> {
    store::sign_out_everywhere(&state.db, u.id).await?;
    Ok(ApiJson(SignedOut { signed_out: true }))
}

/// Look up a device request
///
/// What a pending device request asks for, for the approval page.
#[utoipa::path(get, path = "/auth/device/request", tag = "Device flow", operation_id = "get_device_request",
    security(("access_token" = []), ("session_cookie" = [])),
    params(DeviceRequestQuery),
    responses((status = 200, description = "The pending request.", body = DeviceRequestView),
        BadRequest, Unauthorized, NotFound,
        (status = 429, description = "More than 10 unknown codes looked up by this user in 15 minutes.", body = ApiErrorBody,
            example = json!({"error": {"message": "Too many unknown codes looked up; try again in a few minutes.", "type": "rate_limit_error", "code": "rate_limited"}}))))]
async fn device_request(
    CurrentUser(user): CurrentUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<DeviceRequestQuery>,
) -> Result<ApiJson<DeviceRequestView>, ApiError> {
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
    Ok(ApiJson(DeviceRequestView {
        user_code: g.user_code,
        client_id: g.client_id,
        scope: g.scope,
        expires_in: (g.expires_at - now_ms()) / 1000,
    }))
}
