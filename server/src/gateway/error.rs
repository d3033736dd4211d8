//! The `/v1` error boundary: every failure of the gateway becomes an OpenAI-shaped body
//! `{"error":{"message","type","param","code"}}` with the contract's status. Internal
//! details are logged once and never sent.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A `/v1` failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GatewayError {
    /// Missing, malformed, unknown, revoked, disabled or expired key.
    InvalidKey,
    /// Balance or key spend limit cannot cover the request.
    InsufficientBalance(String),
    ModelNotAllowed(String),
    ModelNotFound(String),
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// Malformed request body or parameters.
    BadRequest {
        message: String,
        param: Option<String>,
    },
    PayloadTooLarge(usize),
    /// The upstream answered with a client error that is the caller's to fix.
    UpstreamClient {
        status: u16,
        message: String,
    },
    /// No upstream could answer: 502 (bad gateway), 503 (none available) or 504 (timeout).
    Upstream {
        status: u16,
        message: String,
    },
    /// An unknown route or method.
    Route {
        status: u16,
        message: String,
        code: &'static str,
    },
    /// A bug or infrastructure failure; the detail is logged, not returned.
    Internal(String),
}

impl GatewayError {
    pub fn status(&self) -> StatusCode {
        match self {
            GatewayError::InvalidKey => StatusCode::UNAUTHORIZED,
            GatewayError::InsufficientBalance(_) => StatusCode::PAYMENT_REQUIRED,
            GatewayError::ModelNotAllowed(_) => StatusCode::FORBIDDEN,
            GatewayError::ModelNotFound(_) => StatusCode::NOT_FOUND,
            GatewayError::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            GatewayError::BadRequest { .. } => StatusCode::BAD_REQUEST,
            GatewayError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            GatewayError::UpstreamClient { status, .. }
            | GatewayError::Upstream { status, .. }
            | GatewayError::Route { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_GATEWAY)
            }
            GatewayError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// (type, code) of the OpenAI error shape.
    pub fn kind(&self) -> (&'static str, &'static str) {
        match self {
            GatewayError::InvalidKey => ("authentication_error", "invalid_api_key"),
            GatewayError::InsufficientBalance(_) => ("insufficient_quota", "insufficient_balance"),
            GatewayError::ModelNotAllowed(_) => ("permission_error", "model_not_allowed"),
            GatewayError::ModelNotFound(_) => ("invalid_request_error", "model_not_found"),
            GatewayError::RateLimited { .. } => ("rate_limit_error", "rate_limit_exceeded"),
            GatewayError::BadRequest { .. } => ("invalid_request_error", "invalid_request"),
            GatewayError::PayloadTooLarge(_) => ("invalid_request_error", "request_too_large"),
            GatewayError::UpstreamClient { .. } => ("invalid_request_error", "upstream_rejected"),
            GatewayError::Upstream { .. } => ("api_error", "upstream_error"),
            GatewayError::Route { code, .. } => ("invalid_request_error", code),
            GatewayError::Internal(_) => ("api_error", "internal_error"),
        }
    }

    /// The message sent to the client.
    pub fn message(&self) -> String {
        match self {
            GatewayError::InvalidKey => "Invalid API key provided.".into(),
            GatewayError::InsufficientBalance(m)
            | GatewayError::ModelNotAllowed(m)
            | GatewayError::ModelNotFound(m) => m.clone(),
            GatewayError::RateLimited { message, .. } => message.clone(),
            GatewayError::BadRequest { message, .. } => message.clone(),
            GatewayError::PayloadTooLarge(limit) => {
                format!("Request body is larger than the limit of {limit} bytes.")
            }
            GatewayError::UpstreamClient { message, .. }
            | GatewayError::Upstream { message, .. }
            | GatewayError::Route { message, .. } => message.clone(),
            GatewayError::Internal(_) => "The server had an error processing your request.".into(),
        }
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> serde_json::Value {
        let (kind, code) = self.kind();
        let param = match self {
            GatewayError::BadRequest { param, .. } => param.clone(),
            GatewayError::ModelNotFound(_) | GatewayError::ModelNotAllowed(_) => {
                Some("model".to_string())
            }
            _ => None,
        };
        json!({ "error": { "message": self.message(), "type": kind, "param": param, "code": code } })
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        GatewayError::BadRequest {
            message: message.into(),
            param: None,
        }
    }
}

impl GatewayError {
    /// The error `type` of Anthropic's shape for this failure.
    pub fn anthropic_type(&self) -> &'static str {
        match self.status().as_u16() {
            401 => "authentication_error",
            402 => "billing_error",
            403 => "permission_error",
            404 => "not_found_error",
            413 => "request_too_large",
            429 => "rate_limit_error",
            503 | 529 => "overloaded_error",
            504 => "timeout_error",
            s if s >= 500 => "api_error",
            _ => "invalid_request_error",
        }
    }

    /// The response in Anthropic's shape `{"type":"error","error":{"type","message"}}`,
    /// for `/v1/messages`.
    pub fn into_anthropic_response(self) -> Response {
        let body = json!({"type": "error", "error": {"type": self.anthropic_type(), "message": self.message()}});
        self.respond(body)
    }

    fn respond(self, body: serde_json::Value) -> Response {
        if let GatewayError::Internal(detail) = &self {
            tracing::error!(error = %detail, "internal error on /v1");
        }
        let mut resp = (self.status(), Json(body)).into_response();
        if let GatewayError::RateLimited {
            retry_after_secs, ..
        } = &self
            && let Ok(v) = HeaderValue::from_str(&retry_after_secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if let GatewayError::PayloadTooLarge(_) = &self {
            // The body was not read: the connection cannot be reused, so say so.
            resp.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        resp
    }
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        let body = self.body();
        self.respond(body)
    }
}

impl From<tokengate_core::Error> for GatewayError {
    fn from(e: tokengate_core::Error) -> Self {
        match e {
            tokengate_core::Error::Invalid(m) => GatewayError::bad_request(m),
            tokengate_core::Error::InsufficientBalance => {
                GatewayError::InsufficientBalance("Insufficient balance.".into())
            }
            other => GatewayError::Internal(other.to_string()),
        }
    }
}
