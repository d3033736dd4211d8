//! The OpenAI-compatible adapter: `POST {base_url}/chat/completions` with a bearer provider
//! key, over the shared pooled keep-alive HTTP client. Works against OpenAI, vLLM, Ollama
//! and any server that speaks the same API.

use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;

use super::{UpstreamError, UpstreamReply};
use crate::config::Secret;

/// One OpenAI-compatible upstream.
pub struct OpenAiAdapter {
    pub client: reqwest::Client,
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    /// Time allowed until the response headers arrive.
    pub timeout: Duration,
}

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

impl OpenAiAdapter {
    pub async fn chat(&self, body: &Value, stream: bool) -> Result<UpstreamReply, UpstreamError> {
        let url = format!("{}/chat/completions", self.base_url.trim_end_matches('/'));
        let mut req = self
            .client
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(serde_json::to_vec(body).map_err(|e| UpstreamError::Transport(e.to_string()))?);
        if let Some(key) = &self.api_key {
            req = req.bearer_auth(key.expose());
        }
        let resp = tokio::time::timeout(self.timeout, req.send())
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
        let body = tokio::time::timeout(self.timeout, resp.bytes())
            .await
            .map_err(|_| UpstreamError::Timeout)?
            .map_err(|e| classify(&e))?;
        Ok(UpstreamReply::Json { status, body })
    }
}
