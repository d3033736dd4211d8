//! Device-flow login for command-line clients (RFC 8628), served by tokengate itself:
//! `GET /api/v1/auth/discovery`, the device authorization endpoint and the token endpoint
//! (device-code and refresh-token grants). The person approving signs in to the portal and
//! approves at `/device`. Device codes and refresh tokens are stored only as keyed hashes;
//! refresh tokens rotate on use and reuse of a rotated one revokes its family.

use std::collections::HashMap;
use std::net::SocketAddr;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::HeaderMap;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng;
use tokengate_api::device::{
    DeviceAuthorization, DeviceCodeForm, Discovery, GrantType, OAuthError, OAuthErrorCode as E,
    TokenForm, TokenResponse,
};
use tokengate_core::accounts;
use tokengate_core::auth::{
    self as store, DeviceGrant, NewGrant, Poll, RefreshGrant, RefreshRefusal,
};
use tokengate_core::{keys, now_ms};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::login::client_ip;
use super::token;
use crate::AppState;
use crate::http::error::ApiErrorBody;

/// The device-flow routes of `/api/v1` (discovery, device authorization, token), each
/// registered from its handler's `#[utoipa::path]`.
pub fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(discovery))
        .routes(routes!(device_authorization))
        .routes(routes!(token_endpoint))
}

/// The client id command-line clients use (from discovery).
pub const CLI_CLIENT_ID: &str = "tokengate-cli";
/// Scopes a device grant may ask for. `admin` is granted only when an administrator ticks
/// it on the approval page; otherwise the grant is approved without it.
pub const SCOPES: &[&str] = &["account", "keys", "billing", "admin", "offline_access"];
const DEVICE_CODE_TTL_SECS: i64 = 600;
const POLL_INTERVAL_SECS: i64 = 5;
const ACCESS_TTL_SECS: i64 = 3600;
const REFRESH_TTL_MS: i64 = 30 * 86_400_000;
/// User-code alphabet: no vowels (no words), no 0/O/1/I look-alikes.
const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

fn oauth_error(status: StatusCode, error: E, description: &str) -> Response {
    let mut r = (status, Json(OAuthError::new(error, description))).into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The typed form of a request, or `None` if the body is not a form. A field given twice
/// counts once, as its last value (what a map of the fields held before the forms were
/// typed).
fn form<T: serde::de::DeserializeOwned>(body: &Bytes) -> Option<T> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).ok()?;
    let fields: HashMap<String, String> = pairs.into_iter().collect();
    serde_json::to_value(fields)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
}

fn not_a_form() -> Response {
    oauth_error(
        StatusCode::BAD_REQUEST,
        E::InvalidRequest,
        "The body must be application/x-www-form-urlencoded.",
    )
}

/// Failed user-code lookups (approval page, API, approval form) allowed per signed-in
/// user in the window: a guessing oracle for other people's codes is closed after a few.
const LOOKUP_FAILURES_PER_USER: i64 = 10;
const LOOKUP_WINDOW_MS: i64 = 15 * 60 * 1000;
/// Device codes one client address may request in the window.
const CODES_PER_ADDRESS: i64 = 20;
const CODES_WINDOW_MS: i64 = 15 * 60 * 1000;

/// What a signed-in user's lookup of a typed user code found.
#[derive(Debug)]
pub enum Lookup {
    /// A pending, unexpired grant.
    Found(DeviceGrant),
    /// No such pending grant (unknown, malformed, expired or decided); counted.
    Unknown,
    /// Too many failed lookups by this user lately; nothing was looked up.
    Throttled,
}

/// Looks up a typed user code for `user_id`, throttled per user: each lookup is counted
/// before it runs and forgotten when it finds a pending grant, so only failures count.
pub async fn lookup(
    db: &tokengate_core::Db,
    user_id: i64,
    typed: &str,
) -> Result<Lookup, tokengate_core::Error> {
    let subject = format!("devlookup:{user_id}");
    let (attempt, allowed) = store::attempt(
        db,
        &[(&subject, LOOKUP_FAILURES_PER_USER)],
        now_ms() - LOOKUP_WINDOW_MS,
    )
    .await?;
    if !allowed {
        store::release(db, attempt).await?;
        return Ok(Lookup::Throttled);
    }
    let found = match normalise_user_code(typed) {
        Some(code) => store::grant_by_user_code(db, &code)
            .await?
            .filter(|g| g.status == store::GrantStatus::Pending && g.expires_at > now_ms()),
        None => None,
    };
    Ok(match found {
        Some(g) => {
            store::release(db, attempt).await?;
            Lookup::Found(g)
        }
        None => Lookup::Unknown,
    })
}

/// A new user code, `XXXX-XXXX`.
pub fn user_code() -> String {
    let mut rng = rand::thread_rng();
    let mut c: String = (0..8)
        .map(|_| USER_CODE_ALPHABET[rng.gen_range(0..USER_CODE_ALPHABET.len())] as char)
        .collect();
    c.insert(4, '-');
    c
}

/// A user code as typed by a person, normalised (`abcd efgh` → `ABCD-EFGH`), or `None`.
pub fn normalise_user_code(input: &str) -> Option<String> {
    let chars: String = input
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .map(|c| c.to_ascii_uppercase())
        .collect();
    if chars.len() != 8 || !chars.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)) {
        return None;
    }
    Some(format!("{}-{}", &chars[..4], &chars[4..]))
}

pub(crate) fn opaque_secret() -> String {
    URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
}

pub(crate) fn hashed(state: &AppState, secret: &str) -> String {
    hex::encode(keys::hash(&state.config.secret_bytes(), secret))
}

/// Discover command-line login
///
/// Where and how a command-line client signs in: the device authorization and token
/// endpoints (OAuth 2.0 device flow, RFC 8628), the client id and the audience of the
/// access tokens. 503 when command-line login is disabled (`cli_login = false`).
#[utoipa::path(get, path = "/auth/discovery", tag = "Device flow", operation_id = "discovery",
    responses(
        (status = 200, description = "The login configuration.", body = Discovery),
        (status = 503, description = "Command-line login is disabled on this server.", body = ApiErrorBody,
            example = json!({"error": {"message": "Command-line login is disabled on this server.", "type": "api_error", "code": "unavailable"}})),
    ))]
pub async fn discovery(State(state): State<AppState>) -> Response {
    let c = &state.config;
    if !c.cli_login {
        return crate::http::ApiError::Unavailable(
            "Command-line login is disabled on this server.".into(),
        )
        .into_response();
    }
    Json(Discovery {
        issuer: c.public_url.clone(),
        client_id: CLI_CLIENT_ID.into(),
        resource: c.api_audience(),
        scopes: SCOPES.iter().map(|s| s.to_string()).collect(),
        device_authorization_endpoint: format!("{}/api/v1/auth/device/code", c.public_url),
        token_endpoint: format!("{}/api/v1/auth/token", c.public_url),
    })
    .into_response()
}

/// Start a device login
///
/// RFC 8628 device authorization request. Show `user_code` to the person and send them
/// to `verification_uri` (the portal's `/device` page), where they sign in and approve;
/// meanwhile poll the token endpoint every `interval` seconds. Codes expire after 10
/// minutes and work once.
#[utoipa::path(post, path = "/auth/device/code", tag = "Device flow", operation_id = "device_authorization",
    request_body(content = DeviceCodeForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The pending authorization.", body = DeviceAuthorization),
        (status = 400, description = "`invalid_request` (not a form), `invalid_scope` or `invalid_target`.", body = OAuthError,
            example = json!({"error": "invalid_scope", "error_description": "Unknown scope requested."})),
        (status = 401, description = "`invalid_client`: the client id is not `tokengate-cli`.", body = OAuthError,
            example = json!({"error": "invalid_client", "error_description": "Unknown client_id."})),
        (status = 429, description = "`slow_down`: more than 20 device codes from this address in 15 minutes.", body = OAuthError,
            example = json!({"error": "slow_down", "error_description": "Too many login requests from this address; try again in a few minutes."})),
        (status = 503, description = "`temporarily_unavailable`: command-line login is disabled.", body = OAuthError,
            example = json!({"error": "temporarily_unavailable", "error_description": "Command-line login is disabled."})),
    ))]
pub async fn device_authorization(
    State(state): State<AppState>,
    ConnectInfo(addr): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let c = &state.config;
    if !c.cli_login {
        return oauth_error(
            StatusCode::SERVICE_UNAVAILABLE,
            E::TemporarilyUnavailable,
            "Command-line login is disabled.",
        );
    }
    let ip = client_ip(addr.ip(), &headers, &c.trusted_proxies);
    let subject = format!("devcode:{ip}");
    match store::attempt(
        &state.db,
        &[(&subject, CODES_PER_ADDRESS)],
        now_ms() - CODES_WINDOW_MS,
    )
    .await
    {
        Ok((_, true)) => {}
        Ok((a, false)) => {
            let _ = store::release(&state.db, a).await;
            return oauth_error(
                StatusCode::TOO_MANY_REQUESTS,
                E::SlowDown,
                "Too many login requests from this address; try again in a few minutes.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "device throttle failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                E::ServerError,
                "Try again.",
            );
        }
    }
    let Some(f) = form::<DeviceCodeForm>(&body) else {
        return not_a_form();
    };
    if f.client_id != CLI_CLIENT_ID {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            E::InvalidClient,
            "Unknown client_id.",
        );
    }
    let scope = f.scope.as_deref().unwrap_or("account keys offline_access");
    if scope.split_whitespace().any(|s| !SCOPES.contains(&s)) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            E::InvalidScope,
            "Unknown scope requested.",
        );
    }
    let resource = f.resource.clone().unwrap_or_else(|| c.api_audience());
    if resource != c.api_audience() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            E::InvalidTarget,
            "Unknown resource.",
        );
    }
    let device_code = opaque_secret();
    let expires_at = now_ms() + DEVICE_CODE_TTL_SECS * 1000;
    for _ in 0..5 {
        let code = user_code();
        let grant = NewGrant {
            device_code_hash: &hashed(&state, &device_code),
            user_code: &code,
            client_id: CLI_CLIENT_ID,
            scope,
            resource: &resource,
            interval_secs: POLL_INTERVAL_SECS,
            expires_at,
        };
        match store::create_grant(&state.db, &grant).await {
            Ok(()) => {
                let uri = format!("{}/device", c.public_url);
                return Json(DeviceAuthorization {
                    verification_uri_complete: format!("{uri}?user_code={code}"),
                    device_code,
                    user_code: code,
                    verification_uri: uri,
                    expires_in: DEVICE_CODE_TTL_SECS,
                    interval: POLL_INTERVAL_SECS,
                })
                .into_response();
            }
            Err(tokengate_core::Error::Conflict(_)) => continue,
            Err(e) => {
                tracing::error!(error = %e, "device grant could not be stored");
                break;
            }
        }
    }
    oauth_error(
        StatusCode::INTERNAL_SERVER_ERROR,
        E::ServerError,
        "Try again.",
    )
}

/// Issues an access token and a refresh token (in `family`) for an active user.
async fn issue(state: &AppState, grant: RefreshGrant) -> Response {
    let user = match accounts::get_user(&state.db, grant.user_id).await {
        Ok(u) if u.status == accounts::UserStatus::Active => u,
        Ok(_) | Err(tokengate_core::Error::NotFound) => {
            return oauth_error(
                StatusCode::BAD_REQUEST,
                E::InvalidGrant,
                "The account is not active.",
            );
        }
        Err(e) => {
            tracing::error!(error = %e, "token issue failed");
            return oauth_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                E::ServerError,
                "Try again.",
            );
        }
    };
    let now = now_ms() / 1000;
    let access = token::mint(
        &state.config.secret_bytes(),
        user.id,
        user.auth_epoch,
        &grant.resource,
        &grant.scope,
        now,
        ACCESS_TTL_SECS,
    );
    let refresh = opaque_secret();
    if let Err(e) = store::store_refresh(
        &state.db,
        &hashed(state, &refresh),
        &grant,
        now_ms() + REFRESH_TTL_MS,
    )
    .await
    {
        tracing::error!(error = %e, "refresh token could not be stored");
        return oauth_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            E::ServerError,
            "Try again.",
        );
    }
    let mut r = Json(TokenResponse {
        access_token: access,
        token_type: "Bearer".into(),
        expires_in: ACCESS_TTL_SECS,
        refresh_token: refresh,
        scope: grant.scope,
    })
    .into_response();
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// Get or refresh tokens
///
/// The token endpoint (form-encoded). With the device-code grant it answers 400
/// `authorization_pending` until the person approves (`slow_down` when polling faster
/// than `interval`, `expired_token`, `access_denied`), then 200 with an access token
/// (HS256 JWT, 1 hour, for `/api/v1`) and a refresh token (30 days). With
/// `grant_type=refresh_token` it returns new tokens; refresh tokens rotate, and
/// presenting a rotated one revokes its whole family.
#[utoipa::path(post, path = "/auth/token", tag = "Device flow", operation_id = "token",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded",
        example = json!({"grant_type": "urn:ietf:params:oauth:grant-type:device_code", "device_code": "vXq0…", "client_id": "tokengate-cli"})),
    responses(
        (status = 200, description = "Tokens (`Cache-Control: no-store`).", body = TokenResponse),
        (status = 400, description = "Not yet (`authorization_pending`, `slow_down`) or not at all (`expired_token`, \
            `access_denied`, `invalid_grant`, `invalid_request`, `invalid_target`, `unsupported_grant_type`).",
            body = OAuthError,
            example = json!({"error": "authorization_pending", "error_description": "The user has not approved yet."})),
        (status = 401, description = "`invalid_client`.", body = OAuthError,
            example = json!({"error": "invalid_client", "error_description": "Unknown client_id."})),
    ))]
pub async fn token_endpoint(State(state): State<AppState>, body: Bytes) -> Response {
    let Some(f) = form::<TokenForm>(&body) else {
        return not_a_form();
    };
    let client_id = f.client_id.as_str();
    if client_id != CLI_CLIENT_ID {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            E::InvalidClient,
            "Unknown client_id.",
        );
    }
    match f.grant() {
        Some(GrantType::DeviceCode) => {
            let Some(code) = &f.device_code else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    E::InvalidRequest,
                    "device_code is required.",
                );
            };
            let poll = match store::poll_grant(&state.db, &hashed(&state, code), client_id).await {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "device poll failed");
                    return oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        E::ServerError,
                        "Try again.",
                    );
                }
            };
            let bad = |e: E, d: &str| oauth_error(StatusCode::BAD_REQUEST, e, d);
            match poll {
                Poll::Unknown => bad(E::InvalidGrant, "Unknown or already used device_code."),
                Poll::Pending => bad(E::AuthorizationPending, "The user has not approved yet."),
                Poll::SlowDown => bad(
                    E::SlowDown,
                    "Polling too fast; wait longer between requests.",
                ),
                Poll::Expired => bad(E::ExpiredToken, "The device code expired; start again."),
                Poll::Denied => bad(E::AccessDenied, "The user denied the request."),
                Poll::Approved(g) => {
                    if f.resource.as_ref().is_some_and(|r| *r != g.resource) {
                        return bad(E::InvalidTarget, "The resource does not match the request.");
                    }
                    let Some(user_id) = g.user_id else {
                        return bad(E::InvalidGrant, "The grant has no user.");
                    };
                    let grant = RefreshGrant {
                        family: opaque_secret(),
                        user_id,
                        client_id: g.client_id,
                        scope: g.scope,
                        resource: g.resource,
                    };
                    issue(&state, grant).await
                }
            }
        }
        Some(GrantType::RefreshToken) => {
            let Some(rt) = &f.refresh_token else {
                return oauth_error(
                    StatusCode::BAD_REQUEST,
                    E::InvalidRequest,
                    "refresh_token is required.",
                );
            };
            match store::rotate_refresh(&state.db, &hashed(&state, rt), client_id).await {
                Ok(Ok(grant)) => issue(&state, grant).await,
                Ok(Err(RefreshRefusal::Reused)) => {
                    tracing::warn!("a rotated refresh token was reused; its family is revoked");
                    oauth_error(
                        StatusCode::BAD_REQUEST,
                        E::InvalidGrant,
                        "The refresh token was already used.",
                    )
                }
                Ok(Err(_)) => oauth_error(
                    StatusCode::BAD_REQUEST,
                    E::InvalidGrant,
                    "Unknown or expired refresh token.",
                ),
                Err(e) => {
                    tracing::error!(error = %e, "refresh failed");
                    oauth_error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        E::ServerError,
                        "Try again.",
                    )
                }
            }
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            E::UnsupportedGrantType,
            "Use the device_code or refresh_token grant.",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_codes_are_unambiguous_and_normalise() {
        for _ in 0..200 {
            let c = user_code();
            assert_eq!(c.len(), 9);
            assert_eq!(&c[4..5], "-");
            assert_eq!(normalise_user_code(&c).as_deref(), Some(c.as_str()));
            assert!(!c.contains(['0', 'O', '1', 'I', 'A', 'E', 'U']));
        }
        assert_eq!(
            normalise_user_code("bcdf ghjk").as_deref(),
            Some("BCDF-GHJK")
        );
        assert_eq!(normalise_user_code("BCDF-GHJ"), None);
        assert_eq!(normalise_user_code("ABCD-EFGH"), None);
    }
}
