//! `POST /v1/messages`: the Anthropic Messages endpoint (`x-api-key` or bearer key, any
//! `anthropic-version`). Errors use Anthropic's shape `{"type":"error","error":{...}}`;
//! the body is validated as Anthropic requires and handed to the metered
//! [`pipeline`](super::pipeline), which may serve it from an Anthropic or an
//! OpenAI-compatible provider.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;

use super::Gateway;
use super::chat::{positive_int, require_messages, stream_flag};
use super::error::GatewayError;
use super::pipeline::{self, Call, Op};
use super::translate::Format;

pub async fn messages(State(gw): State<Arc<Gateway>>, headers: HeaderMap, body: Body) -> Response {
    let id = pipeline::request_id();
    match handle(gw, headers, body, id.clone()).await {
        Ok(r) => r,
        Err(e) => pipeline::with_request_id(e.into_anthropic_response(), &id),
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
    require_messages(&obj)?;
    let stream = stream_flag(&obj)?;
    let max_out = positive_int(&obj, "max_tokens")?.ok_or_else(|| GatewayError::BadRequest {
        message: "max_tokens: Field required".into(),
        param: Some("max_tokens".into()),
    })?;
    let call = Call {
        op: Op::Chat,
        client: Format::Anthropic,
        endpoint: "/v1/messages",
        model,
        body: obj,
        stream,
        client_wants_usage: true,
        max_out: Some(max_out),
        body_bytes: bytes.len(),
        request_id,
    };
    pipeline::run(gw, key, started, call).await
}
