//! Stage 6a, answer: a whole (non-streamed) upstream answer is parsed for its usage,
//! translated to the client's format when the provider speaks the other one, metered,
//! settled, and returned with the gateway's headers.

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use tokengate_core::money::Usage;
use tokengate_core::now_ms;

use super::super::response_store::Stored;
use super::super::routes::Target;
use super::super::translate::{self, Format};
use super::settle::Ticket;
use super::{Call, Op, gateway_headers};

/// A usable answer: the whole body when it had to be parsed, and the usage it reported.
pub(super) type Parsed = (Option<Value>, Option<Usage>);

/// Just the `usage` of an answer: the rest is validated but skipped without building it.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<Value>,
}

/// A successful upstream body's usage, and the whole body parsed when it is needed (to
/// translate it, or to estimate usage the upstream did not report); `None` if the body is
/// not the JSON object it should be.
pub(super) fn parse_success(call: &Call, native: Format, body: &[u8]) -> Option<Parsed> {
    let light: UsageOnly = serde_json::from_slice(body).ok()?;
    let usage = light.usage.as_ref().filter(|u| u.is_object());
    let usage = match native {
        Format::OpenAi => usage.and_then(|u| {
            if call.op == Op::Embeddings {
                u.get("prompt_tokens")
                    .and_then(Value::as_i64)
                    .map(|p| Usage {
                        input: p,
                        ..Usage::default()
                    })
            } else {
                translate::openai_usage(u)
            }
        }),
        Format::Anthropic => usage.and_then(translate::anthropic_usage),
    };
    let full = if native != call.client || call.turn.is_some() || usage.is_none() {
        Some(serde_json::from_slice(body).ok()?)
    } else {
        None
    };
    Some((full, usage))
}

/// Characters of generated text in a whole answer of either format.
fn answer_chars(v: &Value) -> usize {
    let openai: usize = v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str))
        .map(str::len)
        .sum();
    let anthropic: usize = v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(str::len)
        .sum();
    openai + anthropic
}

/// Answers with a whole upstream answer (translated to the client's format if needed),
/// billed on its reported usage or, if it reported none, on an estimate. A Responses
/// answer to be stored comes back with its row, for the caller to store before answering.
pub(super) fn answer(
    mut ticket: Ticket,
    call: &Call,
    target: &Target,
    native: Format,
    status: u16,
    raw: Bytes,
    (parsed, usage): Parsed,
) -> (Response, Option<Stored>) {
    let parsed = parsed.unwrap_or(Value::Null);
    let usage = usage.unwrap_or_else(|| Usage {
        input: ticket.estimated_prompt(),
        output: (answer_chars(&parsed).div_ceil(4)) as i64,
        ..Usage::default()
    });
    let mut stored = None;
    let body = if let Some(turn) = call.turn.as_ref() {
        let v = match native {
            Format::OpenAi => translate::responses::response::from_chat(&parsed, &usage, &turn.ctx),
            Format::Anthropic => {
                translate::responses::response::from_anthropic(&parsed, &usage, &turn.ctx)
            }
        };
        let body = Bytes::from(v.to_string());
        stored = turn.stored(&target.provider, None, v);
        body
    } else if native == call.client {
        raw
    } else {
        let v = match call.client {
            Format::OpenAi => {
                translate::response::anthropic_to_openai(&parsed, &usage, now_ms() / 1000)
            }
            Format::Anthropic => translate::response::openai_to_anthropic(&parsed, &usage),
        };
        Bytes::from(v.to_string())
    };
    let cost = target.model.prices().cost(&usage);
    let ttfb = ticket.started.elapsed().as_millis() as i64;
    let attempts = ticket.attempts.len();
    let request_id = ticket.request_id.clone();
    ticket.settle(Some(target), status, usage, cost, None, Some(ttfb));
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    gateway_headers(&mut resp, target, attempts, &request_id);
    (resp, stored)
}
