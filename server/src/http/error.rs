//! The error boundary of `/api/v1` and the device flow's non-OAuth answers: [`ApiError`],
//! answered as `tokengate_api::error::ApiErrorBody` (`{"error":{"message","type","code"}}`)
//! with 400/401/403/404/409/422/429/503, never a plain-text rejection, and the error
//! response sets the routes' `#[utoipa::path]` annotations list.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
pub use tokengate_api::error::ApiErrorBody;
use utoipa::IntoResponses;

/// A failure of the account or admin API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// Missing, malformed, expired or revoked credentials.
    Unauthorized,
    Forbidden(String),
    /// A bearer token without the scope the route needs (named).
    InsufficientScope(&'static str),
    NotFound(String),
    /// Malformed request (bad JSON, wrong types).
    BadRequest(String),
    Conflict(String),
    /// Well-formed but invalid values.
    Unprocessable(String),
    Unavailable(String),
    /// Too many attempts lately (a throttle); try again later.
    RateLimited(String),
    /// Top-ups cannot be taken now (no provider configured, or it cannot be reached).
    PaymentsUnavailable(String),
    /// Logged, never sent.
    Internal(String),
}

impl ApiError {
    fn parts(&self) -> (StatusCode, &'static str, &'static str, String) {
        match self {
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "authentication_error",
                "unauthorized",
                "Sign in or present a valid access token.".into(),
            ),
            ApiError::Forbidden(m) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "forbidden",
                m.clone(),
            ),
            ApiError::InsufficientScope(scope) => (
                StatusCode::FORBIDDEN,
                "permission_error",
                "insufficient_scope",
                format!("This access token lacks the `{scope}` scope this endpoint needs."),
            ),
            ApiError::NotFound(m) => (
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "not_found",
                m.clone(),
            ),
            ApiError::BadRequest(m) => (
                StatusCode::BAD_REQUEST,
                "invalid_request_error",
                "invalid_request",
                m.clone(),
            ),
            ApiError::Conflict(m) => (
                StatusCode::CONFLICT,
                "invalid_request_error",
                "conflict",
                m.clone(),
            ),
            ApiError::Unprocessable(m) => (
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request_error",
                "validation_error",
                m.clone(),
            ),
            ApiError::Unavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "unavailable",
                m.clone(),
            ),
            ApiError::RateLimited(m) => (
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_error",
                "rate_limited",
                m.clone(),
            ),
            ApiError::PaymentsUnavailable(m) => (
                StatusCode::SERVICE_UNAVAILABLE,
                "api_error",
                "payments_unavailable",
                m.clone(),
            ),
            ApiError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "api_error",
                "internal_error",
                "The server had an error processing your request.".into(),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let ApiError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error on /api/v1");
        }
        let (status, kind, code, message) = self.parts();
        (status, axum::Json(ApiErrorBody::new(message, kind, code))).into_response()
    }
}

impl From<tokengate_core::Error> for ApiError {
    fn from(e: tokengate_core::Error) -> Self {
        use tokengate_core::Error as E;
        match e {
            E::Invalid(m) => ApiError::Unprocessable(m),
            E::NotFound => ApiError::NotFound("Not found.".into()),
            E::Conflict(m) => ApiError::Conflict(m),
            E::InsufficientBalance => ApiError::Unprocessable("Insufficient balance.".into()),
            // PostgreSQL refuses text it cannot hold (a NUL, a byte its encoding lacks):
            // the caller's input, not the server's fault.
            E::Db(sqlx::Error::Database(d))
                if matches!(d.code().as_deref(), Some("22021" | "22P05")) =>
            {
                ApiError::BadRequest("Text may not contain NUL characters.".into())
            }
            other => ApiError::Internal(other.to_string()),
        }
    }
}

// ---------------------------------------------------------------------------------------
// Error response sets of the OpenAPI document

/// No valid access token or portal session (missing, expired, revoked by "sign out
/// everywhere", or the account is suspended). Sign in again or refresh the token.
#[derive(IntoResponses)]
#[response(status = 401, example = json!({"error": {"message": "Sign in or present a valid access token.",
    "type": "authentication_error", "code": "unauthorized"}}))]
pub struct Unauthorized(pub ApiErrorBody);

/// The admin API needs an administrator's access token or session.
#[derive(IntoResponses)]
pub enum AdminErrors {
    /// No valid access token or session.
    #[response(status = 401, example = json!({"error": {"message": "Sign in or present a valid access token.",
        "type": "authentication_error", "code": "unauthorized"}}))]
    Unauthorized(ApiErrorBody),
    /// Signed in, but not an administrator.
    #[response(status = 403, example = json!({"error": {"message": "This endpoint requires an administrator.",
        "type": "permission_error", "code": "forbidden"}}))]
    Forbidden(ApiErrorBody),
}

/// The body is not JSON of the expected shape (or the query string is malformed).
#[derive(IntoResponses)]
#[response(status = 400, example = json!({"error": {"message": "The request body is not valid JSON.",
    "type": "invalid_request_error", "code": "invalid_request"}}))]
pub struct BadRequest(pub ApiErrorBody);

/// Nothing of that id or name belongs to the caller (another user's key is a 404
/// too).
#[derive(IntoResponses)]
#[response(status = 404, example = json!({"error": {"message": "No such key.",
    "type": "invalid_request_error", "code": "not_found"}}))]
pub struct NotFound(pub ApiErrorBody);

/// The change conflicts with the current state (e.g. deleting something still in
/// use, a debit below zero).
#[derive(IntoResponses)]
#[response(status = 409, example = json!({"error": {"message": "The model is used by an alias.",
    "type": "invalid_request_error", "code": "conflict"}}))]
pub struct Conflict(pub ApiErrorBody);

/// Well-formed, but a value is invalid; the message names the field.
#[derive(IntoResponses)]
#[response(status = 422, example = json!({"error": {"message": "amount_usd must be at least 1.00",
    "type": "invalid_request_error", "code": "validation_error"}}))]
pub struct Unprocessable(pub ApiErrorBody);

/// Top-ups are not available (no payment provider configured, or it cannot be
/// reached).
#[derive(IntoResponses)]
#[response(status = 503, example = json!({"error": {"message": "Top-ups are not available: no payment provider is configured on this server.",
    "type": "api_error", "code": "payments_unavailable"}}))]
pub struct PaymentsUnavailable(pub ApiErrorBody);
