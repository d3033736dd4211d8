//! `POST /v1/chat/completions`: the OpenAI Chat Completions endpoint. Validates the body
//! and hands it to the metered [`pipeline`](super::pipeline), which may serve it from an
//! OpenAI-compatible or an Anthropic provider.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};

use super::Gateway;
use super::error::GatewayError;
use super::pipeline::{self, Call, Op};
use super::translate::Format;
use super::wire::{ChatCompletion, ChatCompletionRequest, GatewayErrors};

/// `name` as a positive integer, if present.
pub fn positive_int(obj: &Map<String, Value>, name: &str) -> Result<Option<i64>, GatewayError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(GatewayError::BadRequest {
                message: format!("'{name}' must be a positive integer."),
                param: Some(name.into()),
            }),
        },
    }
}

/// The body as a JSON object.
pub fn json_object(bytes: &[u8]) -> Result<Map<String, Value>, GatewayError> {
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(o)) => Ok(o),
        Ok(_) => Err(GatewayError::bad_request(
            "The request body must be a JSON object.",
        )),
        Err(_) => Err(GatewayError::bad_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.",
        )),
    }
}

/// The non-empty `model` string.
pub fn model_of(obj: &Map<String, Value>) -> Result<String, GatewayError> {
    obj.get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .map(str::to_string)
        .ok_or_else(|| GatewayError::BadRequest {
            message: "You must provide a model parameter.".into(),
            param: Some("model".into()),
        })
}

/// `stream` as a boolean (absent = false).
pub fn stream_flag(obj: &Map<String, Value>) -> Result<bool, GatewayError> {
    match obj.get("stream") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(GatewayError::BadRequest {
            message: "'stream' must be a boolean.".into(),
            param: Some("stream".into()),
        }),
    }
}

/// A non-empty `messages` array of message objects, each with a string `role` (the rest of
/// each message is the upstream's to judge).
pub fn require_messages(obj: &Map<String, Value>) -> Result<(), GatewayError> {
    let ok = match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => m
            .iter()
            .all(|x| x.get("role").is_some_and(Value::is_string)),
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(GatewayError::BadRequest {
            message: "'messages' must be a non-empty array of message objects, each with a \
                      string 'role'."
                .into(),
            param: Some("messages".into()),
        })
    }
}

/// Create a chat completion (OpenAI Chat Completions)
///
/// OpenAI's Chat Completions API. Any model or alias from `GET /v1/models` works,
/// whichever provider serves it: requests served by an Anthropic provider are translated
/// both ways (system prompts, tools and tool calls, images, stop sequences, usage).
/// `stream: true` answers with server-sent events, `data: {chunk}` lines ending with
/// `data: [DONE]`. The request is held against the balance at its worst case before it
/// is forwarded and billed on the upstream's reported usage when it ends.
#[utoipa::path(
    post,
    path = "/chat/completions",
    tag = "Gateway",
    operation_id = "create_chat_completion",
    security(("api_key" = [])),
    request_body(content = ChatCompletionRequest, content_type = "application/json",
        example = json!({"model": "tokengate-fast", "messages": [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "Say hello"}]})),
    responses(
        (status = 200, description = "The completion (JSON), or with `stream: true` a stream of \
            server-sent events in OpenAI's chunk format ending with `data: [DONE]`.",
            headers(
                ("x-request-id" = String, description = "The request log's id"),
                ("x-tokengate-provider" = String, description = "Provider that served the request"),
                ("x-tokengate-model" = String, description = "Model that served the request"),
                ("x-tokengate-attempts" = u32, description = "Upstream attempts (more than 1 after fallback)"),
            ),
            content(
                (ChatCompletion = "application/json"),
                (String = "text/event-stream", example = json!(
                    "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1700000000,\"model\":\"mock/fast-1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hello\"},\"finish_reason\":null}]}\n\ndata: [DONE]\n\n")),
            )),
        GatewayErrors,
    ),
)]
pub async fn chat_completions(
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
    let max_out = match positive_int(&obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => positive_int(&obj, "max_tokens")?,
    };
    let choices = positive_int(&obj, "n")?.unwrap_or(1);
    if choices > gw.max_choices {
        return Err(GatewayError::BadRequest {
            message: format!(
                "'n' must be at most {} on this server (each choice is held and billed).",
                gw.max_choices
            ),
            param: Some("n".into()),
        });
    }
    let client_wants_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let call = Call {
        op: Op::Chat,
        client: Format::OpenAi,
        endpoint: "/v1/chat/completions",
        model,
        body: obj,
        stream,
        client_wants_usage,
        max_out,
        choices,
        body_bytes: bytes.len(),
        request_id,
        turn: None,
    };
    pipeline::run(gw, key, started, call).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn messages_are_objects_with_a_role() {
        let check = |v: Value| require_messages(v.as_object().unwrap()).is_ok();
        assert!(check(
            json!({"messages": [{"role": "user", "content": "hi"}]})
        ));
        assert!(check(
            json!({"messages": [{"role": "user", "content": [{"type": "text"}]}]})
        ));
        for bad in [
            json!({}),
            json!({"messages": []}),
            json!({"messages": {"role": "user"}}),
            json!({"messages": ["x", 1]}),
            json!({"messages": [{"content": "no role"}]}),
            json!({"messages": [{"role": -1, "content": "hi"}]}),
            json!({"messages": [{"role": "user"}, null]}),
        ] {
            assert!(!check(bad.clone()), "{bad}");
        }
    }
}
