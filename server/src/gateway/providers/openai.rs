//! The OpenAI-compatible adapter: `POST {base_url}/chat/completions` and
//! `{base_url}/embeddings` with a bearer provider key, over the shared pooled keep-alive
//! HTTP client. Works against OpenAI, vLLM, Ollama and any server that speaks the same API.

use std::time::Duration;

use serde_json::Value;

use super::http::{UpstreamLimits, join, post_json};
use super::{UpstreamError, UpstreamReply};
use crate::config::Secret;

/// One OpenAI-compatible upstream.
pub struct OpenAiAdapter {
    pub client: reqwest::Client,
    /// Base URL including the version path, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub limits: UpstreamLimits,
}

impl OpenAiAdapter {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let req = self.client.post(join(&self.base_url, path));
        match &self.api_key {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        }
    }

    pub async fn chat(
        &self,
        body: &Value,
        stream: bool,
        timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        post_json(
            self.post("chat/completions"),
            body,
            stream,
            timeout,
            self.limits,
        )
        .await
    }

    /// `GET /models` with the provider key: whether the provider answers and accepts it.
    pub async fn probe(&self, timeout: Duration) -> Result<u16, UpstreamError> {
        let req = self.client.get(join(&self.base_url, "models"));
        let req = match &self.api_key {
            Some(key) => req.bearer_auth(key.expose()),
            None => req,
        };
        super::http::probe(req, timeout).await
    }

    pub async fn embeddings(
        &self,
        body: &Value,
        timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        post_json(self.post("embeddings"), body, false, timeout, self.limits).await
    }
}
