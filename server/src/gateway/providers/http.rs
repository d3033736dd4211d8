//! The one HTTP call shape every remote adapter shares: POST a JSON body over the pooled
//! keep-alive client, wait at most `timeout` for the headers, and return either the SSE
//! body as a byte stream (when streaming succeeded) or the whole body. Failures are
//! classified without ever carrying a URL, header or key.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{UpstreamError, UpstreamReply};

fn classify(e: &reqwest::Error) -> UpstreamError {
    if e.is_timeout() {
        UpstreamError::Timeout
    } else if e.is_connect() {
        UpstreamError::Connect
    } else {
        // reqwest's Display can include the URL, never headers; keep only the kind.
        UpstreamError::Transport(
            if e.is_body() || e.is_decode() {
                "body"
            } else {
                "request"
            }
            .into(),
        )
    }
}

/// Sends `req` (a prepared POST) with `body` as JSON.
pub async fn post_json(
    req: reqwest::RequestBuilder,
    body: &Value,
    stream: bool,
    timeout: Duration,
) -> Result<UpstreamReply, UpstreamError> {
    let bytes = serde_json::to_vec(body).map_err(|e| UpstreamError::Transport(e.to_string()))?;
    let req = req
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes);
    let resp = tokio::time::timeout(timeout, req.send())
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|e| classify(&e))?;
    let status = resp.status().as_u16();
    let is_sse = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    if stream && is_sse && (200..300).contains(&status) {
        let body = resp.bytes_stream().map(|r| r.map_err(|e| classify(&e)));
        return Ok(UpstreamReply::Stream {
            status,
            body: Box::pin(body),
        });
    }
    let body = tokio::time::timeout(timeout, resp.bytes())
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|e| classify(&e))?;
    Ok(UpstreamReply::Json { status, body })
}

/// Sends `req` (a prepared GET) and returns the status: a connection check.
pub async fn probe(req: reqwest::RequestBuilder, timeout: Duration) -> Result<u16, UpstreamError> {
    let resp = tokio::time::timeout(timeout, req.send())
        .await
        .map_err(|_| UpstreamError::Timeout)?
        .map_err(|e| classify(&e))?;
    Ok(resp.status().as_u16())
}

/// `base` and `path` joined with exactly one slash.
pub fn join(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}
