//! The Anthropic adapter: the native Messages API, `POST {base_url}/messages` with
//! `x-api-key` and `anthropic-version`, over the shared pooled HTTP client. The base URL
//! includes the version path (default `https://api.anthropic.com/v1`).

use std::time::Duration;

use serde_json::Value;

use super::http::{UpstreamLimits, join, post_json};
use super::{UpstreamError, UpstreamReply};
use crate::config::Secret;

/// The API version tokengate speaks to Anthropic upstreams.
pub const ANTHROPIC_VERSION: &str = "2023-06-01";
/// Used when a provider of kind `anthropic` has no base URL.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com/v1";

/// One Anthropic upstream.
pub struct AnthropicAdapter {
    pub client: reqwest::Client,
    pub base_url: String,
    pub api_key: Option<Secret>,
    pub limits: UpstreamLimits,
}

impl AnthropicAdapter {
    pub async fn messages(
        &self,
        body: &Value,
        stream: bool,
        timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        let mut req = self
            .client
            .post(join(&self.base_url, "messages"))
            .header("anthropic-version", ANTHROPIC_VERSION);
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key.expose());
        }
        post_json(req, body, stream, timeout, self.limits).await
    }

    /// `GET /models` with the provider key: whether the provider answers and accepts it.
    pub async fn probe(&self, timeout: Duration) -> Result<u16, UpstreamError> {
        let mut req = self
            .client
            .get(join(&self.base_url, "models"))
            .header("anthropic-version", ANTHROPIC_VERSION);
        if let Some(key) = &self.api_key {
            req = req.header("x-api-key", key.expose());
        }
        super::http::probe(req, timeout).await
    }
}
