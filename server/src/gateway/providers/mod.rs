//! Upstream provider adapters behind one enum: each turns an OpenAI-format chat body into
//! an upstream call and hands back the upstream's answer (JSON or an SSE byte stream) in
//! OpenAI wire format, or a classified failure the router can fall back on.

pub mod mock;
pub mod openai;

use std::pin::Pin;

use bytes::Bytes;
use futures::Stream;
use serde_json::Value;

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
}

/// One configured provider, ready to call.
pub enum Adapter {
    OpenAi(openai::OpenAiAdapter),
    Mock(mock::MockAdapter),
}

impl Adapter {
    /// Sends an OpenAI chat-completions body (model already rewritten).
    pub async fn chat(&self, body: &Value, stream: bool) -> Result<UpstreamReply, UpstreamError> {
        match self {
            Adapter::OpenAi(a) => a.chat(body, stream).await,
            Adapter::Mock(m) => m.chat(body, stream).await,
        }
    }
}
