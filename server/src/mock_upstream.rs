//! `tokengate-server mock-upstream`: the mock provider as a standalone OpenAI-compatible
//! HTTP server (`/v1/chat/completions`, `/v1/models`). It is the fast local upstream of the
//! benchmark and a handy target for trying provider configuration.

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
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/models", get(models))
}
