//! The metered path every `/v1` call takes once its endpoint has parsed it. It reads top
//! to bottom as its stages, one module each:
//!
//! 1. **parse**: the endpoint (`chat`, `messages`, `embeddings`) validates the body into a
//!    [`Call`] in the client's wire format.
//! 2. **plan** ([`plan`]): resolve the model or alias to its targets, in order, and narrow
//!    them by the key's policy.
//! 3. **admit** ([`admit`]): take a rate-limit ticket and hold the worst-case cost; the
//!    admitted call is a [`Ticket`](settle::Ticket).
//! 4. **attempt** ([`attempt`]): try the targets in order within the per-attempt and total
//!    time budgets, skipping those whose breaker is open, each in its native format
//!    ([`native_format`], computed once per target).
//! 5. **classify** ([`classify`]): decide, purely from what came back, whether a reply is
//!    served, passed through as the request's fault, or fallen back from; fallback happens
//!    only before the first byte reached the client.
//! 6. **answer** ([`answer`]) a whole answer, or **relay** ([`relay`]) a stream event by
//!    event, translated to the client's format and metered.
//! 7. **settle** ([`settle`]): the ticket releases the hold at the cost, settles the rate
//!    ticket and queues the request-log row, exactly once, however the call ended (a
//!    stream when it ends or the client goes away).

mod admit;
mod answer;
mod attempt;
mod classify;
mod plan;
mod relay;
mod settle;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::HeaderValue;
use axum::response::Response;
use serde_json::{Map, Value};
use tokengate_core::keys::ApiKey;

use super::Gateway;
use super::error::GatewayError;
use super::responses::Turn;
use super::routes::Target;
use super::translate::Format;

pub use admit::MEDIA_PART_TOKENS;

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
    /// OpenAI Responses (`/v1/responses`): sent to the provider's chat endpoint translated
    /// (see [`Call::turn`]), answered as a Response object or Responses events.
    Responses,
}

/// A parsed, validated `/v1` call.
pub struct Call {
    pub op: Op,
    /// The client's wire format.
    pub client: Format,
    pub endpoint: &'static str,
    pub model: String,
    /// The body in the client's format.
    pub body: Map<String, Value>,
    pub stream: bool,
    pub client_wants_usage: bool,
    /// The client's output-token cap, if it gave one.
    pub max_out: Option<i64>,
    /// Choices asked for (`n`); each is held and billed.
    pub choices: i64,
    /// Size of the request body, the bound on its prompt tokens.
    pub body_bytes: usize,
    /// Sent as `x-request-id` and stored in the request log.
    pub request_id: String,
    /// For [`Op::Responses`]: the response being created (its id, history, storage).
    pub turn: Option<Arc<Turn>>,
}

/// The wire format `op` is sent to a provider whose chat endpoint speaks `chat_format`
/// in: embeddings are OpenAI's everywhere.
pub(super) fn native_format(op: Op, chat_format: Format) -> Format {
    match op {
        Op::Embeddings => Format::OpenAi,
        Op::Chat | Op::Responses => chat_format,
    }
}

/// A new request id (`req_` + 24 hex digits).
pub fn request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("req_{}", hex::encode(bytes))
}

/// Runs an admitted-for-auth call to the end, in a task of its own: a client that goes
/// away does not cancel it, so the upstream's answer is still read and billed (a stream
/// is then settled as abandoned when its response is dropped).
pub async fn run(
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    started: Instant,
    call: Call,
) -> Result<Response, GatewayError> {
    match tokio::spawn(run_to_end(gw, key, started, call)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            Err(GatewayError::Upstream {
                status: 500,
                message: "The request failed inside the gateway.".into(),
            })
        }
    }
}

/// The stages after parsing, in order.
async fn run_to_end(
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    started: Instant,
    call: Call,
) -> Result<Response, GatewayError> {
    let mut candidates = plan::plan(&gw.routes.load(), &key, &call.model)?;
    if let Some(pin) = call.turn.as_ref().and_then(|t| t.pin.as_deref()) {
        // A continuation goes to the provider that served the previous response, or fails.
        candidates.retain(|t| t.provider == pin);
        if candidates.is_empty() {
            return Err(GatewayError::BadRequest {
                message: format!(
                    "The previous response was served by provider `{pin}`, which does not \
                     serve the model `{}`; continue it with a model that provider serves.",
                    call.model
                ),
                param: Some("previous_response_id".into()),
            });
        }
    }
    let ticket = admit::admit(&gw, key, started, &call, &candidates).await?;
    attempt::attempt(ticket, &call, &candidates).await
}

/// Adds `x-request-id` to a response (errors included, so a failed request can be
/// matched to its log row).
pub fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

pub fn gateway_headers(resp: &mut Response, target: &Target, attempts: usize, request_id: &str) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("x-tokengate-provider", &target.provider);
    set("x-tokengate-model", &target.model.name);
    set("x-tokengate-attempts", &attempts.to_string());
    set("x-request-id", request_id);
}

/// Per-attempt and total time budgets until an upstream's first byte.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub attempt: Duration,
    pub total: Duration,
    /// Longest silence of an upstream stream before it is ended (and its hold settled).
    pub stream_idle: Duration,
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// A chat or embeddings call of `body` from an OpenAI client.
    pub(in super::super) fn call(op: Op, body: Map<String, Value>) -> Call {
        Call {
            op,
            client: Format::OpenAi,
            endpoint: "/v1/chat/completions",
            model: "m".into(),
            body_bytes: Value::Object(body.clone()).to_string().len(),
            body,
            stream: false,
            client_wants_usage: false,
            max_out: None,
            choices: 1,
            request_id: request_id(),
            turn: None,
        }
    }

    #[test]
    fn the_native_format_is_the_providers_for_chat_and_openai_for_embeddings() {
        for (op, chat_format, want) in [
            (Op::Chat, Format::OpenAi, Format::OpenAi),
            (Op::Chat, Format::Anthropic, Format::Anthropic),
            (Op::Embeddings, Format::OpenAi, Format::OpenAi),
            (Op::Embeddings, Format::Anthropic, Format::OpenAi),
        ] {
            assert_eq!(
                native_format(op, chat_format),
                want,
                "{op:?} on {chat_format:?}"
            );
        }
    }

    #[test]
    fn request_ids_are_req_and_24_hex_digits() {
        let a = request_id();
        assert_eq!(a.len(), 28);
        assert!(a.starts_with("req_"));
        assert!(a[4..].chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, request_id());
    }
}
