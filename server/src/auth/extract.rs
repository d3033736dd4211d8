//! Request extractors for the account and admin APIs: a bearer access token, or else the
//! portal session cookie, resolved to a current, active user ([`CurrentUser`]);
//! [`AdminUser`] additionally requires role admin. The user's role, status and auth epoch
//! are read per request, so suspension, demotion and "sign out everywhere" apply at once.
//! A bearer token must also carry the scope its route needs ([`super::scope`]); a session
//! holds every scope.

use std::time::Duration;

use axum::extract::{FromRequestParts, MatchedPath};
use axum::http::header;
use axum::http::request::Parts;
use tokengate_core::accounts::{self, Role, User, UserStatus};
use tower_sessions::Session;

use super::scope::{self, Need};
use super::{session, token};
use crate::AppState;
use crate::http::ApiError;

/// The signed-in, active user making the request.
pub struct CurrentUser(pub User);

/// An active administrator.
pub struct AdminUser(pub User);

/// The bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

/// Refuses a token whose scopes do not cover the route of `parts`.
fn check_scope(parts: &Parts, scopes: &str) -> Result<(), ApiError> {
    let template = parts
        .extensions
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("");
    match scope::need(template) {
        Some(Need::Public) => Ok(()),
        Some(Need::Scope(s)) if scope::grants(scopes, s) => Ok(()),
        Some(Need::Scope(s)) => Err(ApiError::InsufficientScope(s.as_str())),
        None => {
            tracing::warn!(
                route = template,
                "a bearer token on a route without a scope classification was refused"
            );
            Err(ApiError::InsufficientScope("admin"))
        }
    }
}

async fn from_token(state: &AppState, parts: &Parts, raw: &str) -> Result<User, ApiError> {
    let now = tokengate_core::now_ms() / 1000;
    let claims = token::verify(
        &state.config.secret_bytes(),
        raw,
        &state.config.api_audience(),
        now,
    )
    .map_err(|_| ApiError::Unauthorized)?;
    check_scope(parts, &claims.scope)?;
    let id = claims.user_id().ok_or(ApiError::Unauthorized)?;
    let user = match accounts::get_user(&state.db, id).await {
        Ok(u) => u,
        Err(tokengate_core::Error::NotFound) => return Err(ApiError::Unauthorized),
        Err(e) => return Err(e.into()),
    };
    if user.status != UserStatus::Active || user.auth_epoch != claims.ep {
        return Err(ApiError::Unauthorized);
    }
    Ok(user)
}

/// The user of the portal session on this request, if any.
pub async fn session_user(parts: &Parts, state: &AppState) -> Result<Option<User>, ApiError> {
    let Some(s) = parts.extensions.get::<Session>() else {
        return Ok(None);
    };
    let absolute = Duration::from_secs(state.config.session_absolute_secs);
    Ok(session::current_user(s, &state.db, absolute).await?)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(raw) = bearer(parts) {
            return from_token(state, parts, raw).await.map(CurrentUser);
        }
        session_user(parts, state)
            .await?
            .map(CurrentUser)
            .ok_or(ApiError::Unauthorized)
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != Role::Admin {
            return Err(ApiError::Forbidden(
                "This endpoint requires an administrator.".into(),
            ));
        }
        Ok(AdminUser(user))
    }
}
