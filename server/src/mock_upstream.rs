//! `tokengate-server mock-upstream`: the mock provider as a standalone OpenAI-compatible
//! HTTP server (`/v1/chat/completions`, `/v1/models`). It is the fast local upstream of the
//! benchmark and a handy target for trying provider configuration (`--api-key` makes it
//! require a bearer key, as a real provider does).

use axum::Router;
use axum::body::Body;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::gateway::providers::mock;

async fn chat(body: axum::body::Bytes) -> Response {
    let Ok(req) = serde_json::from_slice::<Value>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({"error": {"message": "invalid JSON",
            "type": "invalid_request_error", "param": null, "code": null}})),
        )
            .into_response();
    };
    let answer = mock::answer(&req);
    if let Some(status) = answer.fail_status {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return (
            status,
            axum::Json(
                json!({"error": {"message": "mock failure", "type": "server_error",
            "param": null, "code": null}}),
            ),
        )
            .into_response();
    }
    if req.get("stream").and_then(Value::as_bool).unwrap_or(false) {
        let include_usage = req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        let chunks = answer.sse_chunks(include_usage);
        let stream = futures::stream::iter(chunks.into_iter().map(Ok::<_, std::io::Error>));
        return (
            [(header::CONTENT_TYPE, "text/event-stream")],
            Body::from_stream(stream),
        )
            .into_response();
    }
    axum::Json(answer.json()).into_response()
}

async fn models() -> axum::Json<Value> {
    axum::Json(json!({"object": "list", "data": [
        {"id": "fast-1", "object": "model", "created": 1_700_000_000, "owned_by": "mock"}]}))
}

/// The mock upstream's router.
pub fn router() -> Router {
    router_with_key(None)
}

/// The mock upstream's router; with `key`, every request without `Authorization: Bearer
/// <key>` is answered 401 as OpenAI does (for trying provider-key checks).
pub fn router_with_key(key: Option<String>) -> Router {
    let router = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models));
    match key {
        None => router,
        Some(key) => router.layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                let expected = format!("Bearer {key}");
                async move {
                    let given = req.headers().get(header::AUTHORIZATION);
                    if given.is_some_and(|v| v.as_bytes() == expected.as_bytes()) {
                        next.run(req).await
                    } else {
                        (
                            StatusCode::UNAUTHORIZED,
                            axum::Json(json!({"error": {"message": "Incorrect API key provided.",
                                "type": "invalid_request_error", "param": null,
                                "code": "invalid_api_key"}})),
                        )
                            .into_response()
                    }
                }
            },
        )),
    }
}
