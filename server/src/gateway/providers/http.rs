//! The one HTTP call shape every remote adapter shares: POST a JSON body over the pooled
//! keep-alive client, wait at most `timeout` for the headers, and return either the SSE
//! body as a byte stream (when streaming succeeded) or the whole body. Failures are
//! classified without ever carrying a URL, header or key.
//!
//! A hostile or broken upstream cannot make tokengate hold unbounded data: a whole body is
//! read up to [`UpstreamLimits::max_body_bytes`] (a larger `Content-Length` is refused
//! before reading), and a stream fails with [`UpstreamError::TooLarge`] as soon as one SSE
//! event passes [`UpstreamLimits::max_event_bytes`]. A stream's total length is not capped:
//! it is relayed as it arrives, never held whole, and ends by the stream idle timeout.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use serde_json::Value;

use super::{ByteStream, UpstreamError, UpstreamReply};
use crate::gateway::sse::EventLimit;

/// Size caps on what an upstream may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpstreamLimits {
    /// Largest whole (non-streamed) response body read, after decompression.
    pub max_body_bytes: usize,
    /// Largest single SSE event of a streamed response.
    pub max_event_bytes: usize,
}

impl Default for UpstreamLimits {
    fn default() -> Self {
        UpstreamLimits {
            max_body_bytes: 32 * 1024 * 1024,
            max_event_bytes: 4 * 1024 * 1024,
        }
    }
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

/// Reads a whole body of at most `max` bytes.
async fn read_capped(resp: reqwest::Response, max: usize) -> Result<Bytes, UpstreamError> {
    let too_large = UpstreamError::TooLarge {
        what: "response body",
        limit: max,
    };
    if resp
        .content_length()
        .is_some_and(|n| n > u64::try_from(max).unwrap_or(u64::MAX))
    {
        return Err(too_large);
    }
    let mut body = BytesMut::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| classify(&e))?;
        if body.len() + chunk.len() > max {
            return Err(too_large);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

/// `body` with every SSE event checked against `max_event` bytes: the chunk that passes
/// the limit is replaced by [`UpstreamError::TooLarge`] and nothing follows it.
pub fn limit_events(body: ByteStream, max_event: usize) -> ByteStream {
    let state = (body, EventLimit::new(max_event), false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut body, mut limit, failed)| async move {
            if failed {
                return None;
            }
            match body.next().await? {
                Ok(chunk) if limit.check(&chunk) => Some((Ok(chunk), (body, limit, false))),
                Ok(_) => Some((
                    Err(UpstreamError::TooLarge {
                        what: "stream event",
                        limit: max_event,
                    }),
                    (body, limit, true),
                )),
                Err(e) => Some((Err(e), (body, limit, false))),
            }
        },
    ))
}

/// Sends `req` (a prepared POST) with `body` as JSON.
pub async fn post_json(
    req: reqwest::RequestBuilder,
    body: &Value,
    stream: bool,
    timeout: Duration,
    limits: UpstreamLimits,
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
        let body: ByteStream = Box::pin(resp.bytes_stream().map(|r| r.map_err(|e| classify(&e))));
        return Ok(UpstreamReply::Stream {
            status,
            body: limit_events(body, limits.max_event_bytes),
        });
    }
    let body = tokio::time::timeout(timeout, read_capped(resp, limits.max_body_bytes))
        .await
        .map_err(|_| UpstreamError::Timeout)??;
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

#[cfg(test)]
mod tests {
    use super::*;

    fn stream_of(chunks: &[&'static [u8]]) -> ByteStream {
        let items: Vec<Result<Bytes, UpstreamError>> =
            chunks.iter().map(|c| Ok(Bytes::from_static(c))).collect();
        Box::pin(futures::stream::iter(items))
    }

    #[tokio::test]
    async fn an_oversized_event_ends_the_stream_with_too_large() {
        let body = stream_of(&[
            b"data: 1\n\n",
            b"data: 0123456789",
            b"0123\n\n",
            b"data: 2\n\n",
        ]);
        let items: Vec<_> = limit_events(body, 20).collect().await;
        assert_eq!(items.len(), 3);
        assert!(items[0].is_ok() && items[1].is_ok());
        assert_eq!(
            items[2],
            Err(UpstreamError::TooLarge {
                what: "stream event",
                limit: 20
            })
        );
    }

    #[tokio::test]
    async fn events_under_the_limit_pass_unchanged() {
        let body = stream_of(&[b"data: 1\n", b"\ndata: 2\n\n"]);
        let items: Vec<_> = limit_events(body, 9).collect().await;
        let joined: Vec<u8> = items
            .into_iter()
            .flat_map(|r| r.map(|b| b.to_vec()).unwrap_or_default())
            .collect();
        assert_eq!(joined, b"data: 1\n\ndata: 2\n\n");
    }
}
