//! The documented error shape for the framework's own rejections. axum's extractors (path,
//! query, form, the body limit) answer a malformed request with a plain-text 4xx; on the API
//! surfaces (`/v1`, `/api`, `/auth`, `/webhooks`) this layer turns such an answer into the
//! route's documented error body: OpenAI's shape on `/v1`, Anthropic's on `/v1/messages`,
//! RFC 6749's on the token and device-code endpoints, and `{"error":{"message","type","code"}}`
//! everywhere else. Answers that are already JSON, successes and HTML pages pass untouched.
//! A path or query string holding an encoded NUL (`%00`) is refused here with a 400 on those
//! surfaces, since no name or id contains one and PostgreSQL cannot even compare against it.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use serde_json::{Value, json};

/// Longest rejection text read back (axum's are one short line).
const MAX_READ: usize = 16 * 1024;
/// Longest message passed on: serde's messages may quote the client's input.
const MAX_MESSAGE: usize = 300;

/// Which error shape a path answers in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Surface {
    OpenAi,
    Anthropic,
    OAuth,
    Api,
}

impl Surface {
    fn of(path: &str) -> Option<Surface> {
        if path == "/v1/messages" || path.starts_with("/v1/messages/") {
            Some(Surface::Anthropic)
        } else if path.starts_with("/v1/") {
            Some(Surface::OpenAi)
        } else if path == "/api/v1/auth/token" || path == "/api/v1/auth/device/code" {
            Some(Surface::OAuth)
        } else if ["/api/", "/auth/", "/webhooks/"]
            .iter()
            .any(|p| path.starts_with(p))
        {
            Some(Surface::Api)
        } else {
            None
        }
    }

    fn body(self, status: StatusCode, message: String) -> Value {
        let (kind, code) = classify(status);
        match self {
            Surface::OpenAi => json!({"error": {"message": message, "type": kind,
                "param": null, "code": code}}),
            Surface::Anthropic => {
                let kind = match status {
                    StatusCode::NOT_FOUND => "not_found_error",
                    StatusCode::PAYLOAD_TOO_LARGE => "request_too_large",
                    _ => kind,
                };
                json!({"type": "error", "error": {"type": kind, "message": message}})
            }
            Surface::OAuth => json!({"error": "invalid_request", "error_description": message}),
            Surface::Api => json!({"error": {"message": message, "type": kind, "code": code}}),
        }
    }
}

/// The error type and code of a framework rejection with `status`.
fn classify(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::UNAUTHORIZED => ("authentication_error", "unauthorized"),
        StatusCode::FORBIDDEN => ("permission_error", "forbidden"),
        StatusCode::NOT_FOUND => ("invalid_request_error", "not_found"),
        StatusCode::METHOD_NOT_ALLOWED => ("invalid_request_error", "method_not_allowed"),
        StatusCode::PAYLOAD_TOO_LARGE => ("invalid_request_error", "request_too_large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ("invalid_request_error", "unsupported_media_type"),
        StatusCode::TOO_MANY_REQUESTS => ("rate_limit_error", "rate_limit_exceeded"),
        _ => ("invalid_request_error", "invalid_request"),
    }
}

/// The message for the client: the rejection's own line (cut short), or the status's reason.
fn message(status: StatusCode, text: &[u8]) -> String {
    let text = String::from_utf8_lossy(text);
    let text = text.trim();
    if text.is_empty() {
        return status
            .canonical_reason()
            .unwrap_or("Invalid request")
            .to_string()
            + ".";
    }
    match text.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn is_plain_text(resp: &Response) -> bool {
    match resp.headers().get(header::CONTENT_TYPE) {
        None => true,
        Some(v) => v.as_bytes().starts_with(b"text/plain"),
    }
}

/// Whether an encoded URI part holds `%00`.
fn has_encoded_nul(s: &str) -> bool {
    s.as_bytes().windows(3).any(|w| w == b"%00")
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut resp = Response::new(Body::from(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Middleware: a plain-text 4xx on an API surface becomes that surface's error body, and a
/// NUL in the path or query is refused.
pub async fn shape(req: Request, next: Next) -> Response {
    let surface = Surface::of(req.uri().path());
    if let Some(surface) = surface {
        let uri = req.uri();
        if has_encoded_nul(uri.path()) || uri.query().is_some_and(has_encoded_nul) {
            let status = StatusCode::BAD_REQUEST;
            let msg = "The path and query may not contain NUL characters.".to_string();
            return json_response(status, &surface.body(status, msg));
        }
    }
    let resp = next.run(req).await;
    let Some(surface) = surface else {
        return resp;
    };
    if !resp.status().is_client_error() || !is_plain_text(&resp) {
        return resp;
    }
    let status = resp.status();
    let (mut parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, MAX_READ)
        .await
        .unwrap_or_default();
    let body = surface.body(status, message(status, &text)).to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(body))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use axum::Router;
    use axum::extract::{Form, FromRequest, Query};
    use axum::response::IntoResponse;
    use tower::ServiceExt;

    #[derive(serde::Deserialize)]
    struct Q {
        #[allow(dead_code)]
        days: i64,
    }

    /// What the real extractors answer: a form on the token and sign-in paths, a path
    /// parameter that is not UTF-8 under `/api/v1/keys/`, a query everywhere else. (No
    /// `.route` here: the docs test allows route registrations in route tables only.)
    async fn answer(req: Request) -> Response {
        let path = req.uri().path().to_string();
        if path == "/api/v1/auth/token" || path == "/auth/login" {
            return match Form::<Q>::from_request(req, &()).await {
                Ok(_) => "ok".into_response(),
                Err(e) => e.into_response(),
            };
        }
        if path.starts_with("/api/v1/keys/") {
            // `Path` needs a matched route; this is its rejection's text.
            let text = "Invalid URL: Invalid UTF-8 in `id`";
            return (StatusCode::BAD_REQUEST, text).into_response();
        }
        match Query::<Q>::try_from_uri(req.uri()) {
            Ok(_) => "ok".into_response(),
            Err(e) => e.into_response(),
        }
    }

    fn app() -> Router {
        Router::new()
            .fallback(answer)
            .layer(axum::middleware::from_fn(shape))
    }

    async fn call(req: Request) -> (StatusCode, Option<Value>) {
        let resp = app().oneshot(req).await.unwrap();
        let status = resp.status();
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&bytes).ok())
    }

    fn get_req(uri: &str) -> Request {
        Request::builder().uri(uri).body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn rejections_take_the_shape_of_their_surface() {
        let (s, v) = call(get_req("/api/v1/usage?days=x")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        let v = v.unwrap();
        assert_eq!(v["error"]["code"], "invalid_request");
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert!(v["error"]["message"].as_str().unwrap().contains("days"));

        let (_, v) = call(get_req("/v1/models?days=1&days=2")).await;
        let v = v.unwrap();
        assert!(v["error"].as_object().unwrap().contains_key("param"));
        assert_eq!(v["error"]["code"], "invalid_request");

        let (_, v) = call(get_req("/v1/messages")).await;
        let v = v.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "invalid_request_error");

        let (s, v) = call(get_req("/api/v1/keys/%FF")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert_eq!(v.unwrap()["error"]["code"], "invalid_request");

        let form = |uri: &str, ct: &str| {
            Request::builder()
                .method("POST")
                .uri(uri)
                .header("content-type", ct)
                .body(Body::from("days=x"))
                .unwrap()
        };
        let (s, v) = call(form("/api/v1/auth/token", "text/plain")).await;
        assert_eq!(s, StatusCode::UNSUPPORTED_MEDIA_TYPE);
        let v = v.unwrap();
        assert_eq!(v["error"], "invalid_request");
        assert!(v["error_description"].is_string());
        let (s, v) = call(form("/auth/login", "application/x-www-form-urlencoded")).await;
        assert_eq!(s, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(v.unwrap()["error"]["type"], "invalid_request_error");
    }

    #[tokio::test]
    async fn other_paths_and_answers_pass_untouched() {
        let (s, v) = call(get_req("/plain?days=x")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
        assert!(v.is_none());
        let (s, v) = call(get_req("/api/v1/usage?days=1")).await;
        assert_eq!(s, StatusCode::OK);
        assert!(v.is_none());
    }

    #[tokio::test]
    async fn encoded_nuls_are_refused() {
        for uri in [
            "/api/v1/keys/a%00b",
            "/api/v1/usage?days=%00",
            "/v1/models?x=%00",
        ] {
            let (s, v) = call(get_req(uri)).await;
            assert_eq!(s, StatusCode::BAD_REQUEST, "{uri}");
            assert!(v.unwrap()["error"]["message"].is_string(), "{uri}");
        }
        let (s, _) = call(get_req("/plain?days=%00")).await;
        assert_eq!(s, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn long_messages_are_cut() {
        let m = message(StatusCode::BAD_REQUEST, "é".repeat(5000).as_bytes());
        assert_eq!(m.chars().count(), MAX_MESSAGE + 1);
        assert_eq!(message(StatusCode::NOT_FOUND, b" "), "Not Found.");
    }
}
