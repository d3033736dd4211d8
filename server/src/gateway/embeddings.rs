//! `POST /v1/embeddings`: OpenAI embeddings (`encoding_format` float or base64, passed to
//! the provider, which encodes), metered on input tokens through the
//! [`pipeline`](super::pipeline).

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::Gateway;
use super::error::GatewayError;
use super::pipeline::{self, Call, Op};
use super::translate::Format;
use super::wire::{EmbeddingsRequest, EmbeddingsResponse, GatewayErrors};

/// Create embeddings (OpenAI embeddings)
///
/// OpenAI's embeddings API, `encoding_format` `float` (default) or `base64`. Billed on
/// input tokens.
#[utoipa::path(
    post,
    path = "/embeddings",
    tag = "Gateway",
    operation_id = "create_embeddings",
    security(("api_key" = [])),
    request_body(content = EmbeddingsRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "One embedding per input, in input order.",
            body = EmbeddingsResponse,
            headers(
                ("x-request-id" = String, description = "The request log's id"),
                ("x-tokengate-provider" = String, description = "Provider that served the request"),
                ("x-tokengate-model" = String, description = "Model that served the request"),
            )),
        GatewayErrors,
    ),
)]
pub async fn embeddings(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let id = pipeline::request_id();
    match handle(gw, headers, body, id.clone()).await {
        Ok(r) => r,
        Err(e) => pipeline::with_request_id(e.into_response(), &id),
    }
}

fn valid_input(input: &Value) -> bool {
    match input {
        Value::String(s) => !s.is_empty(),
        Value::Array(items) if !items.is_empty() => items.iter().all(|i| match i {
            Value::String(s) => !s.is_empty(),
            Value::Number(n) => n.is_u64(),
            Value::Array(tokens) => !tokens.is_empty() && tokens.iter().all(Value::is_u64),
            _ => false,
        }),
        _ => false,
    }
}

async fn handle(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    body: Body,
    request_id: String,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (key, bytes, obj, model) = gw.begin(&headers, body).await?;
    if !obj.get("input").is_some_and(valid_input) {
        return Err(GatewayError::BadRequest {
            message: "'input' must be a non-empty string, an array of non-empty strings, or an array of token arrays.".into(),
            param: Some("input".into()),
        });
    }
    match obj.get("encoding_format") {
        None | Some(Value::Null) => {}
        Some(Value::String(f)) if f == "float" || f == "base64" => {}
        Some(_) => {
            return Err(GatewayError::BadRequest {
                message: "'encoding_format' must be 'float' or 'base64'.".into(),
                param: Some("encoding_format".into()),
            });
        }
    }
    let call = Call {
        op: Op::Embeddings,
        client: Format::OpenAi,
        endpoint: "/v1/embeddings",
        model,
        body: obj,
        stream: false,
        client_wants_usage: false,
        max_out: None,
        choices: 1,
        body_bytes: bytes.len(),
        request_id,
        turn: None,
    };
    pipeline::run(gw, key, started, call).await
}
