//! The management REST API under `/api/v1`: its error boundary (`{"error":{"message",
//! "type","code"}}` with 400/401/403/404/409/422, never a plain-text rejection), its JSON
//! extractor, and its router. Handlers are thin over `tokengate-core` functions.

pub mod account;
pub mod admin;
pub mod billing;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;

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
        (
            status,
            axum::Json(json!({"error": {"message": message, "type": kind, "code": code}})),
        )
            .into_response()
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
            other => ApiError::Internal(other.to_string()),
        }
    }
}

/// A JSON body whose rejection is an [`ApiError`] (400), never axum's plain text.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(JsonRejection::JsonDataError(e)) => Err(ApiError::BadRequest(format!(
                "Invalid request body: {}",
                e.body_text()
            ))),
            Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::BadRequest(
                "Send the body as JSON with Content-Type: application/json.".into(),
            )),
            Err(_) => Err(ApiError::BadRequest(
                "The request body is not valid JSON.".into(),
            )),
        }
    }
}

/// A path parameter whose rejection is an [`ApiError`] (404: a malformed id names nothing),
/// never axum's plain text.
pub struct ApiPath<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiPath<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| ApiPath(v))
            .map_err(|_| ApiError::NotFound("Not found.".into()))
    }
}

/// A query string whose rejection is an [`ApiError`] (400), never axum's plain text.
pub struct ApiQuery<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| ApiQuery(v))
            .map_err(|e| ApiError::BadRequest(format!("Invalid query string: {}", e.body_text())))
    }
}

/// The route table of `/api/v1`: every route is registered with `routes!` from its
/// handler's `#[utoipa::path]`, so this router and the OpenAPI document (`crate::docs`)
/// are built from the same list.
pub fn route_table() -> OpenApiRouter<AppState> {
    use crate::auth::device;
    OpenApiRouter::new()
        .merge(account::route_table())
        .merge(billing::route_table())
        .routes(routes!(device::discovery))
        .routes(routes!(device::device_authorization))
        .routes(routes!(device::token_endpoint))
        .nest("/admin", admin::route_table())
}

/// Everything under `/api/v1`.
pub fn router() -> Router<AppState> {
    Router::from(route_table())
        .fallback(|| async { ApiError::NotFound("Unknown API route.".into()) })
}
