//! `/v1/responses`: OpenAI's Responses API. `POST /v1/responses` validates the body,
//! rebuilds the history of a `previous_response_id` chain from the stored responses of
//! the key's account, and hands the call to the metered [`pipeline`](super::pipeline) as
//! [`Op::Responses`] (held, rate-limited, routed with fallback, billed and logged as chat
//! is; a continuation only goes to the provider that served the previous response).
//! `GET` / `DELETE /v1/responses/{id}` and `GET /v1/responses/{id}/input_items` read and
//! delete stored responses of the key's account (not billed); another account's id is a
//! 404 like an unknown one.
//!
//! Storage (`store`, default true) happens before the answer's last byte: a whole answer
//! is stored before it is returned, a stream's response before its terminal event is
//! sent, so a client's immediate continuation always finds it (one INSERT on the path;
//! a failed INSERT is logged and the answer still served).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokengate_core::{Db, now_ms};

use super::Gateway;
use super::chat::{positive_int, stream_flag};
use super::error::GatewayError;
use super::pipeline::{self, Call, Op};
use super::response_store::{self, Stored};
use super::responses_wire::{ResponseDeleted, ResponseItemList, ResponseObject, ResponsesRequest};
use super::translate::Format;
use super::translate::responses::{ResponseCtx, new_response_id, request};
use super::wire::GatewayErrors;

/// The response a Responses call creates, as the pipeline needs it.
#[derive(Debug)]
pub struct Turn {
    pub ctx: ResponseCtx,
    /// The stored chain before this turn (oldest first), input and output items.
    pub history: Vec<Value>,
    /// This turn's input items, as stored and listed.
    pub input_items: Vec<Value>,
    pub store: bool,
    /// The provider a continuation must go to.
    pub pin: Option<String>,
    pub previous_response_id: Option<String>,
    pub user_id: i64,
    pub key_id: i64,
    /// Image, audio and file parts in the history and input (each held as
    /// [`pipeline::MEDIA_PART_TOKENS`]).
    pub media_parts: i64,
}

impl Turn {
    /// The row to store for `response` served by `provider`, unless `store` is false.
    pub fn stored(
        &self,
        provider: &str,
        upstream_id: Option<String>,
        response: Value,
    ) -> Option<Stored> {
        if !self.store {
            return None;
        }
        Some(Stored {
            id: self.ctx.id.clone(),
            user_id: self.user_id,
            key_id: self.key_id,
            provider: provider.to_string(),
            upstream_id,
            model: self
                .ctx
                .request
                .get("model")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string(),
            previous_response_id: self.previous_response_id.clone(),
            input_items: self.input_items.clone(),
            output_items: response
                .get("output")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            response,
            created_at: now_ms(),
        })
    }
}

/// Stores a response; a failure is logged (the answer is still served).
pub async fn save(db: &Db, stored: &Stored) {
    if let Err(e) = response_store::insert(db, stored).await {
        tracing::error!(error = %e, id = %stored.id, "storing a response failed");
    }
}

fn not_found(id: &str) -> GatewayError {
    let message = if response_store::plausible_id(id) {
        format!("Response with id '{id}' not found.")
    } else {
        "No response has that id.".to_string()
    };
    GatewayError::Route {
        status: 404,
        message,
        code: "not_found",
    }
}

fn internal(e: tokengate_core::Error) -> GatewayError {
    GatewayError::Internal(format!("responses store: {e}"))
}

/// Media parts (images, audio, files) in the content of `items`.
fn media_parts<'a>(items: impl Iterator<Item = &'a Value>) -> i64 {
    let mut n = 0;
    for item in items {
        let parts = item
            .get("content")
            .or_else(|| item.get("output"))
            .and_then(Value::as_array);
        for part in parts.into_iter().flatten() {
            if matches!(
                part.get("type").and_then(Value::as_str),
                Some("input_image" | "input_file" | "input_audio")
            ) {
                n += 1;
            }
        }
    }
    n
}

/// Create a response (OpenAI Responses)
///
/// OpenAI's Responses API, for the OpenAI SDKs (`client.responses.create`), Codex CLI
/// (`wire_api = "responses"`) and the OpenAI Agents SDK. Any model or alias works,
/// whichever provider serves it: Chat Completions and Anthropic upstreams are translated
/// both ways (items, function and custom tools, reasoning, usage); a provider marked
/// `responses = "native"` gets the body as is. `stream: true` answers with Responses
/// events ending in exactly one `response.completed`, `response.incomplete` or
/// `response.failed`. Held and billed as chat is; the request log's endpoint is
/// `/v1/responses`. With `store` (the default) the response is kept for
/// `previous_response_id` and `GET /v1/responses/{id}`.
#[utoipa::path(
    post,
    path = "/responses",
    tag = "Gateway",
    operation_id = "create_response",
    security(("api_key" = [])),
    request_body(content = ResponsesRequest, content_type = "application/json",
        example = json!({"model": "tokengate-fast", "input": "Say hello"})),
    responses(
        (status = 200, description = "The Response (JSON), or with `stream: true` a stream of \
            Responses server-sent events (`event: <type>` + `data: {type, sequence_number, …}`, \
            no `[DONE]`).",
            headers(
                ("x-request-id" = String, description = "The request log's id"),
                ("x-tokengate-provider" = String, description = "Provider that served the request"),
                ("x-tokengate-model" = String, description = "Model that served the request"),
                ("x-tokengate-attempts" = u32, description = "Upstream attempts (more than 1 after fallback)"),
            ),
            content(
                (ResponseObject = "application/json"),
                (String = "text/event-stream", example = json!(
                    "event: response.created\ndata: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\"}}\n\nevent: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"Hello\"}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"sequence_number\":8,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"completed\"}}\n\n")),
            )),
        GatewayErrors,
    ),
)]
pub async fn create_response(
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

fn bad(message: impl Into<String>, param: &str) -> GatewayError {
    GatewayError::BadRequest {
        message: message.into(),
        param: Some(param.into()),
    }
}

/// Bookkeeping fields are echoed in the response and stored with it but are not part of
/// the prompt, so they are not paid for: held to OpenAI's limits (metadata: 16 pairs, keys
/// up to 64 characters, string values up to 512) and identifiers to 512 characters.
fn check_echoed(obj: &Map<String, Value>) -> Result<(), GatewayError> {
    match obj.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m))
            if m.len() <= 16
                && m.iter().all(|(k, v)| {
                    k.chars().count() <= 64 && v.as_str().is_some_and(|v| v.chars().count() <= 512)
                }) => {}
        Some(_) => {
            return Err(bad(
                "'metadata' must be an object of at most 16 string values, keys up to 64 \
                 characters and values up to 512.",
                "metadata",
            ));
        }
    }
    for name in ["user", "prompt_cache_key", "safety_identifier"] {
        match obj.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v.chars().count() <= 512 => {}
            Some(_) => {
                return Err(bad(
                    format!("'{name}' must be a string of at most 512 characters."),
                    name,
                ));
            }
        }
    }
    Ok(())
}

async fn handle(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    body: Body,
    request_id: String,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let (key, bytes, obj, model) = gw.begin(&headers, body).await?;
    let stream = stream_flag(&obj)?;
    let max_out = positive_int(&obj, "max_output_tokens")?;
    let store = match obj.get("store") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(bad("'store' must be a boolean.", "store")),
    };
    check_echoed(&obj)?;
    if obj.get("input").is_none_or(Value::is_null) {
        return Err(bad("Missing required parameter: 'input'.", "input"));
    }
    let input_items = request::input_items(&obj).map_err(|u| GatewayError::BadRequest {
        message: u.message,
        param: u.param,
    })?;
    let previous = match obj.get("previous_response_id") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(_) => {
            return Err(bad(
                "'previous_response_id' must be a response id.",
                "previous_response_id",
            ));
        }
    };
    let (history, pin) = match &previous {
        Some(prev) => {
            let last = response_store::get(&gw.db, key.user_id, prev)
                .await
                .map_err(internal)?
                .ok_or_else(|| not_found(prev))?;
            let history = response_store::history(&gw.db, &last)
                .await
                .map_err(internal)?;
            (history, Some(last.provider))
        }
        None => (Vec::new(), None),
    };
    // The history is part of the prompt: it is held and rate-counted like the body.
    let history_bytes: usize = history.iter().map(|v| v.to_string().len()).sum();
    let turn = Turn {
        ctx: ResponseCtx {
            id: new_response_id(),
            created_at: now_ms() / 1000,
            request: obj.clone(),
        },
        media_parts: media_parts(history.iter().chain(input_items.iter())),
        history,
        input_items,
        store,
        pin,
        previous_response_id: previous,
        user_id: key.user_id,
        key_id: key.id,
    };
    let call = Call {
        op: Op::Responses,
        client: Format::OpenAi,
        endpoint: "/v1/responses",
        model,
        body: obj,
        stream,
        client_wants_usage: true,
        max_out,
        choices: 1,
        body_bytes: bytes.len() + history_bytes,
        request_id,
        turn: Some(Arc::new(turn)),
    };
    pipeline::run(gw, key, started, call).await
}

/// The stored response `id` of the key's account.
async fn owned(gw: &Gateway, headers: &HeaderMap, id: &str) -> Result<Stored, GatewayError> {
    let key = gw.authenticate(headers)?;
    response_store::get(&gw.db, key.user_id, id)
        .await
        .map_err(internal)?
        .ok_or_else(|| not_found(id))
}

/// Get a stored response
///
/// A response created with `store` (the default) by a key of the same account, as it was
/// answered. Not billed.
#[utoipa::path(
    get,
    path = "/responses/{id}",
    tag = "Gateway",
    operation_id = "get_response",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The response's id (`resp_…`)")),
    responses(
        (status = 200, description = "The stored Response", body = ResponseObject),
        (status = 404, description = "No stored response of this account has that id",
            body = super::wire::OpenAiError),
    ),
)]
pub async fn get_response(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    match owned(&gw, &headers, &id).await {
        Ok(s) => Json(s.response).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Delete a stored response
///
/// Deletes a stored response of the key's account; continuing from it is then a 404.
#[utoipa::path(
    delete,
    path = "/responses/{id}",
    tag = "Gateway",
    operation_id = "delete_response",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The response's id (`resp_…`)")),
    responses(
        (status = 200, description = "Deleted", body = ResponseDeleted),
        (status = 404, description = "No stored response of this account has that id",
            body = super::wire::OpenAiError),
    ),
)]
pub async fn delete_response(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let key = gw.authenticate(&headers)?;
        if response_store::delete(&gw.db, key.user_id, &id)
            .await
            .map_err(internal)?
        {
            Ok(Json(json!({"id": id, "object": "response", "deleted": true})).into_response())
        } else {
            Err(not_found(&id))
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// Paging of `input_items`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ItemsQuery {
    /// Items after this item id (in the listing's order).
    pub after: Option<String>,
    /// 1 to 100 (default 20).
    pub limit: Option<i64>,
    /// `desc` (default, newest first) or `asc`.
    pub order: Option<String>,
}

/// List a stored response's input items
///
/// The input items of one stored response (this turn's, not those of the responses it
/// continues), paged with `after` / `limit` in `order`.
#[utoipa::path(
    get,
    path = "/responses/{id}/input_items",
    tag = "Gateway",
    operation_id = "list_response_input_items",
    security(("api_key" = [])),
    params(("id" = String, Path, description = "The response's id (`resp_…`)"), ItemsQuery),
    responses(
        (status = 200, description = "A page of input items", body = ResponseItemList),
        (status = 400, description = "A bad `limit` or `order`", body = super::wire::OpenAiError),
        (status = 404, description = "No stored response of this account has that id",
            body = super::wire::OpenAiError),
    ),
)]
pub async fn list_input_items(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Query<ItemsQuery>,
) -> Response {
    let result = async {
        let stored = owned(&gw, &headers, &id).await?;
        let page = page(stored.input_items, &q)?;
        Ok::<_, GatewayError>(Json(page).into_response())
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

/// One page of `items` (stored oldest first) as an OpenAI list.
fn page(mut items: Vec<Value>, q: &ItemsQuery) -> Result<Value, GatewayError> {
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(bad("'limit' must be between 1 and 100.", "limit"));
    }
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(_) => return Err(bad("'order' must be 'asc' or 'desc'.", "order")),
    }
    let id_of = |v: &Value| v.get("id").and_then(Value::as_str).map(str::to_string);
    let start = match &q.after {
        Some(after) => items
            .iter()
            .position(|v| id_of(v).as_deref() == Some(after))
            .map_or(items.len(), |i| i + 1),
        None => 0,
    };
    let rest = &items[start.min(items.len())..];
    let data: Vec<Value> = rest.iter().take(limit as usize).cloned().collect();
    let has_more = rest.len() > data.len();
    let mut list = Map::new();
    list.insert("object".into(), json!("list"));
    list.insert("first_id".into(), json!(data.first().and_then(id_of)));
    list.insert("last_id".into(), json!(data.last().and_then(id_of)));
    list.insert("has_more".into(), json!(has_more));
    list.insert("data".into(), Value::Array(data));
    Ok(Value::Object(list))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(n: usize) -> Vec<Value> {
        (0..n).map(|i| json!({"id": format!("i{i}")})).collect()
    }

    fn q(after: Option<&str>, limit: Option<i64>, order: Option<&str>) -> ItemsQuery {
        ItemsQuery {
            after: after.map(str::to_string),
            limit,
            order: order.map(str::to_string),
        }
    }

    #[test]
    fn only_plausible_ids_are_looked_up() {
        use super::super::response_store::plausible_id;
        assert!(plausible_id(
            &super::super::translate::responses::new_response_id()
        ));
        for bad in [
            "",
            "resp_",
            "resp_\0",
            "msg_abc",
            "resp_a b",
            &"resp_".repeat(20),
        ] {
            assert!(!plausible_id(bad), "{bad:?}");
        }
        let GatewayError::Route { message, .. } = not_found(&format!("resp_\0{}", "x".repeat(999)))
        else {
            panic!("not a 404");
        };
        assert_eq!(
            message, "No response has that id.",
            "a malformed id is not echoed"
        );
    }

    #[test]
    fn echoed_bookkeeping_fields_are_bounded() {
        let obj = |v: Value| v.as_object().unwrap().clone();
        assert!(check_echoed(&obj(json!({"metadata": {"a": "b"}, "user": "u"}))).is_ok());
        for body in [
            json!({"metadata": {"a": 1}}),
            json!({"metadata": {"a": "x".repeat(513)}}),
            json!({"metadata": (0..17).map(|i| (i.to_string(), json!("v"))).collect::<Map<_, _>>()}),
            json!({"user": "x".repeat(513)}),
            json!({"prompt_cache_key": 5}),
        ] {
            assert!(check_echoed(&obj(body.clone())).is_err(), "{body}");
        }
    }

    #[test]
    fn input_items_page_in_either_order() {
        let p = page(items(5), &q(None, Some(2), None)).unwrap();
        assert_eq!(p["first_id"], "i4");
        assert_eq!(p["last_id"], "i3");
        assert_eq!(p["has_more"], true);
        let p = page(items(5), &q(Some("i3"), Some(10), None)).unwrap();
        assert_eq!(p["data"].as_array().unwrap().len(), 3);
        assert_eq!(p["has_more"], false);
        let p = page(items(5), &q(Some("i1"), Some(2), Some("asc"))).unwrap();
        assert_eq!(p["first_id"], "i2");
        assert_eq!(p["last_id"], "i3");
        assert_eq!(p["has_more"], true);
        let p = page(Vec::new(), &q(None, None, None)).unwrap();
        assert_eq!(p["first_id"], Value::Null);
        assert!(page(items(1), &q(None, Some(0), None)).is_err());
        assert!(page(items(1), &q(None, None, Some("up"))).is_err());
    }

    #[test]
    fn media_parts_count_images_files_and_audio() {
        let v = [
            json!({"type": "message", "content": [{"type": "input_text"}, {"type": "input_image"}]}),
            json!({"type": "function_call_output", "output": [{"type": "input_file"}]}),
        ];
        assert_eq!(media_parts(v.iter()), 2);
    }
}
