//! Stage 4, attempt: the candidates are tried in order within the per-attempt and total
//! time budgets. Each target gets the body in its native format; what comes back is
//! [classified](super::classify) and the decision applied: the breaker is told, the
//! attempt noted, and the reply served (answered or relayed), passed through as the
//! request's fault, or put aside for the next target. When none serves, the call is
//! settled with the best reason why.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::response::Response;
use serde_json::{Value, json};
use tokengate_core::usage::{FailureKind, UpstreamAttempt};

use super::super::error::GatewayError;
use super::super::providers::{ByteStream, UpstreamError, UpstreamReply};
use super::super::routes::Target;
use super::super::translate::{self, Format};
use super::answer::{Parsed, answer, parse_success};
use super::classify::{Breaker, Gate, Reply, Verdict, classify, exhausted, gate, time_left};
use super::relay::relay;
use super::settle::Ticket;
use super::{Call, Op, native_format};

/// What one attempt brought back.
enum Came {
    /// A usable 2xx answer.
    Answer {
        status: u16,
        raw: Bytes,
        parsed: Parsed,
    },
    /// A 2xx answer that is not the JSON object it should be.
    Malformed { status: u16 },
    /// A 2xx stream.
    Stream { status: u16, body: ByteStream },
    /// Any other status, with its body (empty for a stream).
    Status { status: u16, body: Bytes },
    /// No answer.
    Failed(UpstreamError),
}

impl Came {
    fn new(call: &Call, native: Format, result: Result<UpstreamReply, UpstreamError>) -> Came {
        match result {
            Ok(UpstreamReply::Json { status, body }) if (200..300).contains(&status) => {
                match parse_success(call, native, &body) {
                    Some(parsed) => Came::Answer {
                        status,
                        raw: body,
                        parsed,
                    },
                    None => Came::Malformed { status },
                }
            }
            Ok(UpstreamReply::Stream { status, body }) if (200..300).contains(&status) => {
                Came::Stream { status, body }
            }
            Ok(UpstreamReply::Json { status, body }) => Came::Status { status, body },
            Ok(UpstreamReply::Stream { status, .. }) => Came::Status {
                status,
                body: Bytes::new(),
            },
            Err(e) => Came::Failed(e),
        }
    }

    /// What [`classify`] decides on.
    fn reply(&self) -> Reply<'_> {
        match self {
            Came::Answer { status, .. } | Came::Stream { status, .. } => Reply::Success {
                status: *status,
                usable: true,
            },
            Came::Malformed { status } => Reply::Success {
                status: *status,
                usable: false,
            },
            Came::Status { status, .. } => Reply::Status(*status),
            Came::Failed(e) => Reply::Transport(e),
        }
    }
}

/// Tries `candidates` in order for the admitted call, to its answer or its error.
pub(super) async fn attempt(
    mut ticket: Ticket,
    call: &Call,
    candidates: &[Arc<Target>],
) -> Result<Response, GatewayError> {
    let gw = ticket.gw.clone();
    let deadline = ticket.started + gw.timeouts.total;
    let mut last_error: Option<GatewayError> = None;
    let mut skipped = 0usize;
    let mut out_of_time = false;
    for target in candidates {
        let now = Instant::now();
        let Some(timeout) = time_left(now, deadline, gw.timeouts.attempt) else {
            out_of_time = true;
            break;
        };
        let admission = gw.health.admit(&target.model.name, now);
        let timeout = match gate(admission, timeout) {
            Gate::Try(t) => t,
            Gate::Skip => {
                skipped += 1;
                ticket.attempts.push(UpstreamAttempt::new(
                    target.provider.as_str(),
                    target.model.name.as_str(),
                    "skipped: circuit open".into(),
                    0,
                ));
                continue;
            }
        };
        let native = native_format(call.op, target.adapter.format());
        let body = match upstream_body(call, target, native) {
            Ok(b) => b,
            Err(e) => {
                gw.health.release(&target.model.name, admission);
                ticket.settle_failed(Some(target), 400, FailureKind::InvalidRequest, e.message());
                return Err(e);
            }
        };
        let result = match call.op {
            Op::Chat | Op::Responses => target.adapter.chat(&body, call.stream, timeout).await,
            Op::Embeddings => target.adapter.embeddings(&body, timeout).await,
        };
        let elapsed = now.elapsed();
        let came = Came::new(call, native, result);
        let decision = classify(came.reply());
        match decision.breaker {
            Breaker::Success | Breaker::Failure => gw.health.record(
                &target.model.name,
                admission,
                decision.breaker == Breaker::Success,
                elapsed,
                Instant::now(),
            ),
            Breaker::Release => gw.health.release(&target.model.name, admission),
        }
        ticket.attempts.push(UpstreamAttempt::new(
            target.provider.as_str(),
            target.model.name.as_str(),
            decision.note,
            elapsed.as_millis() as i64,
        ));
        match (decision.verdict, came) {
            (
                Verdict::Serve,
                Came::Answer {
                    status,
                    raw,
                    parsed,
                },
            ) => {
                let settled = ticket.settled();
                let (resp, store) = answer(ticket, call, target, native, status, raw, parsed);
                if let Some(stored) = store {
                    // Stored before answering, so an immediate continuation finds it.
                    super::super::responses::save(&gw.db, &stored).await;
                }
                settled.await;
                return Ok(resp);
            }
            (Verdict::Serve, Came::Stream { body, .. }) => {
                return Ok(relay(ticket, call, target.clone(), native, body));
            }
            (Verdict::Refuse, Came::Status { status, body }) => {
                let message = translate::error_message(&body)
                    .unwrap_or_else(|| format!("The upstream provider answered {status}."));
                let err = GatewayError::UpstreamClient { status, message };
                ticket.settle_failed(
                    Some(target),
                    status,
                    FailureKind::UpstreamRejected,
                    err.message(),
                );
                return Err(err);
            }
            (Verdict::FallBack(err), came) => {
                match &came {
                    Came::Malformed { .. } => {
                        tracing::warn!(provider = %target.provider, "upstream sent a malformed answer; trying next target")
                    }
                    Came::Status { status, .. } => {
                        tracing::warn!(provider = %target.provider, status, "upstream failed; trying next target")
                    }
                    Came::Failed(UpstreamError::Unsupported(_)) => {}
                    Came::Failed(e) => {
                        tracing::warn!(provider = %target.provider, error = %e, "upstream unreachable; trying next target")
                    }
                    Came::Answer { .. } | Came::Stream { .. } => {}
                }
                last_error = Some(err);
            }
            (Verdict::Serve | Verdict::Refuse, _) => {
                unreachable!("classify serves only usable 2xx replies and refuses only statuses")
            }
        }
    }
    let err = exhausted(out_of_time, last_error, skipped);
    ticket.settle_failed(
        candidates.last().map(|t| t.as_ref()),
        err.status().as_u16(),
        FailureKind::UpstreamError,
        err.message(),
    );
    Err(err)
}

/// The body to send to `target`, in its wire format, with its upstream model name.
pub(super) fn upstream_body(
    call: &Call,
    target: &Target,
    native: Format,
) -> Result<Value, GatewayError> {
    let mut body = if let Some(turn) = call.turn.as_ref() {
        let translated = match native {
            Format::OpenAi => translate::responses::request::to_chat(
                &call.body,
                &turn.history,
                target.adapter.output_cap_field(),
            ),
            Format::Anthropic => translate::responses::request::to_anthropic(
                &call.body,
                &turn.history,
                call.max_out.unwrap_or(target.model.max_output_tokens),
            ),
        };
        translated.map_err(|u| GatewayError::BadRequest {
            message: u.message,
            param: u.param,
        })?
    } else if native == call.client {
        Value::Object(call.body.clone())
    } else {
        let translated = match call.client {
            Format::OpenAi => translate::request::openai_to_anthropic(
                &call.body,
                call.max_out.unwrap_or(target.model.max_output_tokens),
            ),
            Format::Anthropic => translate::request::anthropic_to_openai(&call.body),
        };
        translated.map_err(|u| GatewayError::BadRequest {
            message: u.message,
            param: u.param,
        })?
    };
    body["model"] = Value::String(target.model.upstream_model.clone());
    if call.op != Op::Embeddings && call.max_out.is_none() && native == Format::OpenAi {
        // The hold assumed the model's output allowance: make the upstream keep to it.
        let field = target.adapter.output_cap_field();
        if body.get("max_tokens").is_none_or(Value::is_null)
            && body.get("max_completion_tokens").is_none_or(Value::is_null)
        {
            body[field] = json!(target.model.max_output_tokens);
        }
    }
    if call.op != Op::Embeddings && call.stream && native == Format::OpenAi {
        // Always ask for usage; the relay removes it again unless the client asked.
        let opts = &mut body["stream_options"];
        if !opts.is_object() {
            *opts = json!({});
        }
        opts["include_usage"] = Value::Bool(true);
    }
    Ok(body)
}
