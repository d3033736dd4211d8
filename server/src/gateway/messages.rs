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
use super::wire::{MessagesErrors, MessagesRequest, MessagesResponse};

/// Create a message (Anthropic Messages)
///
/// Anthropic's Messages API, for the Anthropic SDKs (`base_url` is the server's root URL;
/// the SDK appends `/v1/messages`). The key goes in `x-api-key` or
/// `Authorization: Bearer`; any `anthropic-version` is accepted. Any model or alias works,
/// whichever provider serves it. `stream: true` answers with Anthropic's event sequence
/// (`message_start` … `message_stop`). Errors use Anthropic's shape.
#[utoipa::path(
    post,
    path = "/messages",
    tag = "Gateway",
    operation_id = "create_message",
    security(("x_api_key" = []), ("api_key" = [])),
    params(
        ("anthropic-version" = Option<String>, Header, description = "Accepted and ignored (any version)", example = "2023-06-01"),
    ),
    request_body(content = MessagesRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The message (JSON), or with `stream: true` Anthropic's \
            server-sent events (`message_start`, `content_block_start`, `content_block_delta`, \
            `content_block_stop`, `message_delta`, `message_stop`).",
            headers(
                ("x-request-id" = String, description = "The request log's id"),
                ("x-tokengate-provider" = String, description = "Provider that served the request"),
                ("x-tokengate-model" = String, description = "Model that served the request"),
                ("x-tokengate-attempts" = u32, description = "Upstream attempts (more than 1 after fallback)"),
            ),
            content(
                (MessagesResponse = "application/json"),
                (String = "text/event-stream", example = json!(
                    "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":\"mock/fast-1\",\"usage\":{\"input_tokens\":9,\"output_tokens\":0}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")),
            )),
        MessagesErrors,
    ),
)]
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
        choices: 1,
        body_bytes: bytes.len(),
        request_id,
        turn: None,
    };
    pipeline::run(gw, key, started, call).await
}
