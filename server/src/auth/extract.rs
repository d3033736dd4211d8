//! Request extractors for the account and admin APIs: a bearer access token resolved to a
//! current, active user ([`CurrentUser`]); [`AdminUser`] additionally requires role admin.
//! The user's role and status are read per request, so changes apply at once.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use tokengate_core::accounts::{self, User};

use super::token;
use crate::AppState;
use crate::api::ApiError;

/// The signed-in, active user making the request.
pub struct CurrentUser(pub User);

/// An active administrator.
pub struct AdminUser(pub User);

fn bearer(parts: &Parts) -> Option<&str> {
    let v = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    v.strip_prefix("Bearer ")
        .or_else(|| v.strip_prefix("bearer "))
        .map(str::trim)
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let raw = bearer(parts).ok_or(ApiError::Unauthorized)?;
        let now = tokengate_core::now_ms() / 1000;
        let claims = token::verify(
            &state.config.secret_bytes(),
            raw,
            &state.config.api_audience(),
            now,
        )
        .map_err(|_| ApiError::Unauthorized)?;
        let id = claims.user_id().ok_or(ApiError::Unauthorized)?;
        let user = match accounts::get_user(&state.db, id).await {
            Ok(u) => u,
            Err(tokengate_core::Error::NotFound) => return Err(ApiError::Unauthorized),
            Err(e) => return Err(e.into()),
        };
        if user.status != "active" {
            return Err(ApiError::Unauthorized);
        }
        Ok(CurrentUser(user))
    }
}

impl FromRequestParts<AppState> for AdminUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.role != "admin" {
            return Err(ApiError::Forbidden(
                "This endpoint requires an administrator.".into(),
            ));
        }
        Ok(AdminUser(user))
    }
}
