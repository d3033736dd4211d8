//! Stage 6b, relay: a streamed upstream answer is relayed event by event, converted to
//! the client's format, and settled when it ends, fails midway, goes silent, or the client
//! goes away. A stream that failed upstream before any output costs nothing; one the
//! client abandoned is billed for what the upstream did.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, header};
use axum::response::Response;
use futures::StreamExt;
use tokengate_core::money::Usage;
use tokengate_core::now_ms;
use tokengate_core::usage::FailureKind;

use super::super::providers::{ByteStream, UpstreamError};
use super::super::responses::Turn;
use super::super::routes::Target;
use super::super::sse;
use super::super::sse::Event;
use super::super::translate::responses::End;
use super::super::translate::responses::stream::ResponsesStream;
use super::super::translate::stream::Delivered;
use super::super::translate::{self, Format, stream::Converter};
use super::settle::Ticket;
use super::{Call, gateway_headers};

/// State of a stream being relayed; settles the charge when dropped.
struct Relay {
    ticket: Option<Ticket>,
    target: Arc<Target>,
    client: Format,
    upstream: ByteStream,
    parser: sse::Parser,
    conv: Conv,
    ttfb_ms: Option<i64>,
    /// How the stream ended: `None` while running.
    outcome: Option<(u16, Option<(FailureKind, String)>)>,
}

/// The converter of a relayed stream: to a chat format, or to Responses events (with the
/// response being created, stored when it ends).
enum Conv {
    Chat(Converter),
    Responses(Box<ResponsesStream>, Arc<Turn>),
}

impl Conv {
    fn event(&mut self, ev: Event, out: &mut Vec<u8>) {
        match self {
            Conv::Chat(c) => c.event(ev, out),
            Conv::Responses(c, _) => c.event(ev, out),
        }
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        match self {
            Conv::Chat(c) => c.finish(out),
            Conv::Responses(c, _) => c.finish(out),
        }
    }

    /// Ends the stream for the client with an error: the chat format's error event, or
    /// `response.failed` (`server_error`) with its whole response.
    fn fail(&mut self, client: Format, message: &str, out: &mut Vec<u8>) {
        match self {
            Conv::Chat(_) => {
                out.extend_from_slice(&translate::stream::error_event(client, message))
            }
            Conv::Responses(c, _) => c.fail("server_error", message, out),
        }
    }

    fn done(&self) -> bool {
        match self {
            Conv::Chat(c) => c.done(),
            Conv::Responses(c, _) => c.done(),
        }
    }

    fn malformed(&self) -> bool {
        match self {
            Conv::Chat(c) => c.malformed(),
            Conv::Responses(c, _) => c.malformed(),
        }
    }

    /// The upstream's own failure that ended a Responses stream (an `error` event): the
    /// stream is settled as failed, not as a completed 200.
    fn upstream_failure(&self) -> Option<String> {
        match self {
            Conv::Chat(_) => None,
            Conv::Responses(c, _) => failure_of(c),
        }
    }

    fn usage(&self) -> Option<Usage> {
        match self {
            Conv::Chat(c) => c.usage(),
            Conv::Responses(c, _) => c.usage(),
        }
    }

    fn delivered(&self) -> Delivered {
        match self {
            Conv::Chat(c) => c.delivered(),
            Conv::Responses(c, _) => c.delivered(),
        }
    }
}

/// The failure a Responses stream ended with, as the request log records it.
fn failure_of(c: &ResponsesStream) -> Option<String> {
    match c.outcome() {
        Some(End::Failed(code, message)) => Some(format!("{code}: {message}")),
        _ => None,
    }
}

impl Relay {
    /// Stores a Responses stream's final response (when the client asked to store it),
    /// before its terminal event is sent, so an immediate continuation finds it.
    async fn store(&mut self) {
        let Conv::Responses(conv, turn) = &self.conv else {
            return;
        };
        if !conv.done() {
            return;
        }
        let Some(stored) = turn.stored(&self.target.provider, None, conv.response()) else {
            return;
        };
        if let Some(t) = self.ticket.as_ref() {
            super::super::responses::save(&t.gw.db, &stored).await;
        }
    }

    fn settle(&mut self) {
        let Some(mut ticket) = self.ticket.take() else {
            return;
        };
        let (status, err) = self.outcome.clone().unwrap_or((
            499,
            Some((
                FailureKind::ClientClosed,
                "client disconnected mid-stream".into(),
            )),
        ));
        let delivered = self.conv.delivered();
        let complete = status == 200;
        // The client left while the upstream worked: the upstream bills the prompt (and
        // what it generated) whether or not any text reached the client.
        let abandoned = status == 499;
        // The upstream's own count when the stream completed; when it was cut short, its
        // count so far, with the output raised to what was delivered (never above it).
        let usage = match self.conv.usage() {
            Some(u) if complete => u,
            Some(u) => Usage {
                output: u.output.max(delivered.estimated_tokens()),
                ..u
            },
            None if delivered.events > 0 || complete || abandoned => Usage {
                input: ticket.estimated_prompt(),
                output: delivered.estimated_tokens(),
                ..Usage::default()
            },
            None => Usage::default(),
        };
        // A stream that failed upstream before any output costs nothing.
        let free = !abandoned && (self.ttfb_ms.is_none() || (!complete && delivered.events == 0));
        let cost = if free {
            0
        } else {
            self.target.model.prices().cost(&usage)
        };
        ticket.settle(Some(&self.target), status, usage, cost, err, self.ttfb_ms);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.settle();
    }
}

/// Relays an upstream stream to the client, converting each event to the client's
/// format; the ticket is settled when the stream ends, fails, goes silent, or the client
/// goes away (the response is dropped).
pub(super) fn relay(
    ticket: Ticket,
    call: &Call,
    target: Arc<Target>,
    native: Format,
    upstream: ByteStream,
) -> Response {
    let attempts = ticket.attempts.len();
    let request_id = ticket.request_id.clone();
    let relay = Relay {
        ticket: Some(ticket),
        target: target.clone(),
        client: call.client,
        upstream,
        parser: sse::Parser::default(),
        conv: match call.turn.as_ref() {
            Some(turn) => Conv::Responses(
                Box::new(ResponsesStream::new(native, turn.ctx.clone())),
                turn.clone(),
            ),
            None => Conv::Chat(Converter::new(
                native,
                call.client,
                call.client_wants_usage,
                now_ms() / 1000,
            )),
        },
        ttfb_ms: None,
        outcome: None,
    };
    let body = futures::stream::unfold(relay, |mut relay| async move {
        if relay.outcome.is_some() {
            return None;
        }
        let idle = relay
            .ticket
            .as_ref()
            .map_or(Duration::from_secs(300), |t| t.gw.timeouts.stream_idle);
        loop {
            let next = match tokio::time::timeout(idle, relay.upstream.next()).await {
                Ok(next) => next,
                Err(_) => {
                    tracing::warn!(provider = %relay.target.provider, "upstream stream went silent; ending it");
                    relay.outcome = Some((
                        504,
                        Some((
                            FailureKind::UpstreamTimeout,
                            "upstream stream went silent".to_string(),
                        )),
                    ));
                    let mut out = Vec::new();
                    relay.conv.fail(
                        relay.client,
                        "The upstream provider stopped sending; the stream was ended.",
                        &mut out,
                    );
                    relay.store().await;
                    relay.settle();
                    let out = Bytes::from(out);
                    return Some((Ok(out), relay));
                }
            };
            match next {
                Some(Ok(chunk)) => {
                    let mut out = Vec::new();
                    for ev in relay.parser.push(&chunk) {
                        relay.conv.event(ev, &mut out);
                    }
                    let ending = if relay.conv.malformed() {
                        tracing::warn!(provider = %relay.target.provider, "upstream stream sent a malformed event");
                        relay.conv.fail(
                            relay.client,
                            "The upstream provider sent a malformed stream.",
                            &mut out,
                        );
                        Some((
                            502,
                            Some((
                                FailureKind::UpstreamError,
                                "malformed stream event".to_string(),
                            )),
                        ))
                    } else if let Some(message) = relay.conv.upstream_failure() {
                        Some((502, Some((FailureKind::UpstreamError, message))))
                    } else if relay.conv.done() {
                        // Complete as far as the client is concerned: settle now rather
                        // than wait for the upstream to close (the client may not).
                        Some((200, None))
                    } else {
                        None
                    };
                    if out.is_empty() && ending.is_none() {
                        continue;
                    }
                    if relay.ttfb_ms.is_none() {
                        relay.ttfb_ms = relay
                            .ticket
                            .as_ref()
                            .map(|t| t.started.elapsed().as_millis() as i64);
                    }
                    if let Some(outcome) = ending {
                        relay.outcome = Some(outcome);
                        relay.store().await;
                        relay.settle();
                    }
                    return Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), relay));
                }
                Some(Err(e)) => {
                    tracing::warn!(provider = %relay.target.provider, error = %e, "upstream stream failed midway");
                    relay.outcome = Some((
                        502,
                        Some((
                            FailureKind::UpstreamError,
                            format!("stream interrupted: {e}"),
                        )),
                    ));
                    let mut out = Vec::new();
                    // An oversized event is dropped unread, not parsed from its first part.
                    let too_large = matches!(e, UpstreamError::TooLarge { .. });
                    if !too_large && let Some(ev) = relay.parser.finish() {
                        relay.conv.event(ev, &mut out);
                    }
                    let message = if too_large {
                        e.to_string()
                    } else {
                        "The upstream provider stream was interrupted.".to_string()
                    };
                    relay.conv.fail(relay.client, &message, &mut out);
                    relay.store().await;
                    relay.settle();
                    return Some((Ok(Bytes::from(out)), relay));
                }
                None => {
                    let mut out = Vec::new();
                    if let Some(ev) = relay.parser.finish() {
                        relay.conv.event(ev, &mut out);
                    }
                    relay.conv.finish(&mut out);
                    relay.outcome = Some(match relay.conv.upstream_failure() {
                        Some(message) => (502, Some((FailureKind::UpstreamError, message))),
                        None => (200, None),
                    });
                    relay.store().await;
                    relay.settle();
                    return (!out.is_empty()).then(|| (Ok(Bytes::from(out)), relay));
                }
            }
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    gateway_headers(&mut resp, &target, attempts, &request_id);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::translate::responses::ResponseCtx;

    fn stream_of(events: &[&str]) -> ResponsesStream {
        let ctx = ResponseCtx {
            id: "resp_test".into(),
            created_at: 0,
            request: serde_json::Map::new(),
        };
        let mut s = ResponsesStream::new(Format::OpenAi, ctx);
        let mut parser = sse::Parser::default();
        let mut out = Vec::new();
        for e in events {
            for ev in parser.push(e.as_bytes()) {
                s.event(ev, &mut out);
            }
        }
        s
    }

    #[test]
    fn an_upstream_error_event_settles_a_responses_stream_as_failed() {
        let failed = stream_of(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}]}\n\n",
            "data: {\"error\":{\"message\":\"overloaded\"}}\n\n",
        ]);
        assert!(failed.done());
        let why = failure_of(&failed).expect("a failed stream");
        assert!(why.contains("overloaded"), "{why}");

        let mut ok = stream_of(&[
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":\"stop\"}]}\n\n",
        ]);
        ok.finish(&mut Vec::new());
        assert!(ok.done());
        assert_eq!(failure_of(&ok), None);
    }
}
