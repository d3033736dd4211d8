//! Upstream provider adapters behind one enum. Each adapter speaks its provider's native
//! wire format ([`Format`]): the pipeline translates the client's request into that format
//! before calling, and the answer back afterwards. Adapters hand back the upstream's answer
//! (JSON or an SSE byte stream, any status) or a classified failure the router can fall
//! back on.

pub mod anthropic;
pub mod http;
pub mod mock;
pub mod openai;

use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;
use tokengate_api::kinds::ProviderKind;

use super::translate::Format;

/// A stream of upstream body bytes.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, UpstreamError>> + Send>>;

/// What an upstream answered (any status; the caller classifies it).
pub enum UpstreamReply {
    Json { status: u16, body: Bytes },
    Stream { status: u16, body: ByteStream },
}

/// An upstream failure before or during the answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    #[error("could not connect to the upstream")]
    Connect,
    #[error("the upstream timed out")]
    Timeout,
    #[error("the upstream connection failed: {0}")]
    Transport(String),
    /// The provider kind cannot serve this operation (e.g. embeddings on Anthropic).
    #[error("{0}")]
    Unsupported(&'static str),
    /// The upstream sent more than the configured size limit (a whole body or one stream
    /// event); the message is safe to show to clients.
    #[error("The upstream provider sent a {what} larger than the {limit}-byte limit.")]
    TooLarge { what: &'static str, limit: usize },
}

/// One configured provider, ready to call.
pub enum Adapter {
    OpenAi(openai::OpenAiAdapter),
    Anthropic(anthropic::AnthropicAdapter),
    Mock(mock::MockAdapter),
}

impl Adapter {
    /// An adapter of `kind`: the catalog's, the configuration's and this enum's kinds are
    /// one set ([`ProviderKind`]).
    pub fn kind(&self) -> ProviderKind {
        match self {
            Adapter::OpenAi(_) => ProviderKind::OpenAi,
            Adapter::Anthropic(_) => ProviderKind::Anthropic,
            Adapter::Mock(_) => ProviderKind::Mock,
        }
    }

    /// The wire format this provider's chat endpoint speaks.
    pub fn format(&self) -> Format {
        match self {
            Adapter::OpenAi(_) | Adapter::Mock(_) => Format::OpenAi,
            Adapter::Anthropic(_) => Format::Anthropic,
        }
    }

    /// The body field that caps output tokens on this provider's chat endpoint, filled in
    /// when the client gave none. OpenAI's own API (and Azure's) rejects `max_tokens` on
    /// reasoning models and wants `max_completion_tokens`; every other OpenAI-compatible
    /// server reads `max_tokens`.
    pub fn output_cap_field(&self) -> &'static str {
        match self {
            Adapter::OpenAi(a) => {
                let host = a
                    .base_url
                    .split("://")
                    .nth(1)
                    .unwrap_or(&a.base_url)
                    .split(['/', ':'])
                    .next()
                    .unwrap_or("");
                if host == "api.openai.com" || host.ends_with(".openai.azure.com") {
                    "max_completion_tokens"
                } else {
                    "max_tokens"
                }
            }
            Adapter::Anthropic(_) | Adapter::Mock(_) => "max_tokens",
        }
    }

    /// Sends a chat body already in [`Adapter::format`] (model already rewritten), allowing
    /// `timeout` until the response headers arrive.
    pub async fn chat(
        &self,
        body: &Value,
        stream: bool,
        timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        match self {
            Adapter::OpenAi(a) => a.chat(body, stream, timeout).await,
            Adapter::Anthropic(a) => a.messages(body, stream, timeout).await,
            Adapter::Mock(m) => m.chat(body, stream).await,
        }
    }

    /// Checks that the provider answers and accepts its key (HTTP status of a model
    /// listing; the mock always answers 200).
    pub async fn probe(&self, timeout: Duration) -> Result<u16, UpstreamError> {
        match self {
            Adapter::OpenAi(a) => a.probe(timeout).await,
            Adapter::Anthropic(a) => a.probe(timeout).await,
            Adapter::Mock(_) => Ok(200),
        }
    }

    /// Sends an OpenAI embeddings body (model already rewritten).
    pub async fn embeddings(
        &self,
        body: &Value,
        timeout: Duration,
    ) -> Result<UpstreamReply, UpstreamError> {
        match self {
            Adapter::OpenAi(a) => a.embeddings(body, timeout).await,
            Adapter::Mock(m) => m.embeddings(body).await,
            Adapter::Anthropic(_) => Err(UpstreamError::Unsupported(
                "This model's provider does not offer embeddings.",
            )),
        }
    }
}
