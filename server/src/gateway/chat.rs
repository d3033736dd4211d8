//! `POST /v1/chat/completions`: validate, authorize, hold, forward with fallback before the
//! first byte, then meter. Streams are passed through event by event as they arrive; the
//! upstream is always asked for usage and that extra chunk is removed again unless the
//! client asked for it. A stream's charge is settled when it ends or when the client goes
//! away (the body is dropped), whichever comes first.

use std::sync::Arc;
use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde_json::{Value, json};
use tokengate_core::keys::ApiKey;
use tokengate_core::money::Usage;
use tokengate_core::now_ms;
use tokengate_core::usage::RequestRecord;

use super::Gateway;
use super::error::GatewayError;
use super::money::{Hold, Refusal};
use super::providers::{ByteStream, UpstreamError, UpstreamReply};
use super::routes::{Target, allowed};
use super::sse;

const ENDPOINT: &str = "/v1/chat/completions";

/// Token usage from an OpenAI `usage` object; cached prompt tokens are split out.
pub fn parse_usage(usage: &Value) -> Option<Usage> {
    let prompt = usage.get("prompt_tokens")?.as_i64()?;
    let output = usage
        .get("completion_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    let cached = usage
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .clamp(0, prompt.max(0));
    Some(Usage {
        input: prompt - cached,
        output,
        cache_read: cached,
        cache_write: 0,
    })
}

/// Rough token count for text when the upstream reported none (4 characters per token,
/// rounded up): used only to bill a cut-off stream, never above what was delivered.
fn estimate_tokens(chars: usize) -> i64 {
    chars.div_ceil(4) as i64
}

/// A request that has been admitted: everything needed to log and charge it.
struct Ticket {
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    hold: Option<Hold>,
    model: String,
    request_id: String,
    stream: bool,
    started: Instant,
    created_at: i64,
    attempts: Vec<Value>,
    prompt_chars: usize,
}

impl Ticket {
    /// Settles the hold at `cost` and queues the log row.
    fn finish(
        &mut self,
        target: Option<&Target>,
        status: u16,
        usage: Usage,
        cost: i64,
        err: Option<(&str, String)>,
        ttfb_ms: Option<i64>,
    ) {
        if let Some(hold) = self.hold.take() {
            self.gw.money.settle(hold, cost);
        }
        let (error_type, error_message) = match err {
            Some((t, m)) => (Some(t.to_string()), Some(m)),
            None => (None, None),
        };
        self.gw.meter.record(RequestRecord {
            request_id: self.request_id.clone(),
            user_id: self.key.user_id,
            key_id: self.key.id,
            endpoint: ENDPOINT.into(),
            model: self.model.clone(),
            served_model: target.map(|t| t.model.name.clone()),
            provider: target.map(|t| t.provider.clone()),
            stream: self.stream,
            status: i64::from(status),
            error_type,
            error_message,
            tokens_in: usage.total_input(),
            tokens_out: usage.output,
            cached_tokens: usage.cache_read + usage.cache_write,
            cost_nano: cost,
            latency_ms: self.started.elapsed().as_millis() as i64,
            ttfb_ms,
            attempts: self.attempts.len().max(1) as i64,
            attempts_json: (!self.attempts.is_empty())
                .then(|| Value::Array(self.attempts.clone()).to_string()),
            created_at: self.created_at,
        });
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket dropped without `finish` (a panic, or a client that vanished while we
        // waited for the upstream) still releases its hold and is logged, uncharged.
        if self.hold.is_some() {
            self.finish(
                None,
                499,
                Usage::default(),
                0,
                Some(("client_closed", "request cancelled".into())),
                None,
            );
        }
    }
}

fn request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("req_{}", hex::encode(bytes))
}

fn positive_int(
    obj: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, GatewayError> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_i64() {
            Some(n) if n > 0 => Ok(Some(n)),
            _ => Err(GatewayError::BadRequest {
                message: format!("'{name}' must be a positive integer."),
                param: Some(name.into()),
            }),
        },
    }
}

pub async fn chat_completions(
    State(gw): State<Arc<Gateway>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match handle(gw, headers, body).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn handle(
    gw: Arc<Gateway>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, GatewayError> {
    let started = Instant::now();
    let key = gw.authenticate(&headers)?;
    let bytes = gw.read_body(&headers, body).await?;
    let mut req: Value = serde_json::from_slice(&bytes).map_err(|_| {
        GatewayError::bad_request(
            "We could not parse the JSON body of your request. The body must be a JSON object.",
        )
    })?;
    let obj = req
        .as_object_mut()
        .ok_or_else(|| GatewayError::bad_request("The request body must be a JSON object."))?;
    let model = obj
        .get("model")
        .and_then(Value::as_str)
        .filter(|m| !m.is_empty())
        .ok_or_else(|| GatewayError::BadRequest {
            message: "You must provide a model parameter.".into(),
            param: Some("model".into()),
        })?
        .to_string();
    match obj.get("messages") {
        Some(Value::Array(m)) if !m.is_empty() => {}
        _ => {
            return Err(GatewayError::BadRequest {
                message: "'messages' must be a non-empty array.".into(),
                param: Some("messages".into()),
            });
        }
    }
    let stream = match obj.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(GatewayError::BadRequest {
                message: "'stream' must be a boolean.".into(),
                param: Some("stream".into()),
            });
        }
    };
    let max_out = match positive_int(obj, "max_completion_tokens")? {
        Some(n) => Some(n),
        None => positive_int(obj, "max_tokens")?,
    };

    let routes = gw.routes.load();
    let candidates = routes.candidates(&model).ok_or_else(|| {
        GatewayError::ModelNotFound(format!(
            "The model `{model}` does not exist or you do not have access to it."
        ))
    })?;
    if !allowed(key.allowed_models.as_deref(), &model) {
        return Err(GatewayError::ModelNotAllowed(format!(
            "This API key is not allowed to use the model `{model}`."
        )));
    }
    if candidates.is_empty() {
        return Err(GatewayError::Upstream {
            status: 503,
            message: "No provider is available for this model.".into(),
        });
    }

    // Worst case over the candidates: every body byte a prompt token, the full output.
    let prompt_bound = bytes.len() as i64 + 16;
    let hold_amount = candidates
        .iter()
        .map(|t| {
            let out = max_out.unwrap_or(t.model.max_output_tokens);
            t.model.prices().cost(&Usage {
                input: prompt_bound,
                output: out,
                ..Usage::default()
            })
        })
        .max()
        .unwrap_or(0);
    let hold = gw
        .money
        .hold(key.user_id, key.id, key.spend_limit_nano, hold_amount)
        .map_err(|r| match r {
            Refusal::AccountInactive => GatewayError::InvalidKey,
            Refusal::Balance => GatewayError::InsufficientBalance(
                "Your balance is too low for this request. Top up your account to continue.".into(),
            ),
            Refusal::KeyLimit => GatewayError::InsufficientBalance(
                "This API key has reached its spend limit.".into(),
            ),
        })?;

    let client_wants_usage = obj
        .get("stream_options")
        .and_then(|o| o.get("include_usage"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    if stream {
        let opts = obj.entry("stream_options").or_insert_with(|| json!({}));
        if let Some(o) = opts.as_object_mut() {
            o.insert("include_usage".into(), Value::Bool(true));
        } else {
            *opts = json!({"include_usage": true});
        }
    }

    let mut ticket = Ticket {
        gw: gw.clone(),
        key,
        hold: Some(hold),
        model: model.clone(),
        request_id: request_id(),
        stream,
        started,
        created_at: now_ms(),
        attempts: Vec::new(),
        prompt_chars: bytes.len(),
    };

    let mut last_error: Option<GatewayError> = None;
    for target in &candidates {
        if let Some(o) = req.as_object_mut() {
            o.insert(
                "model".into(),
                Value::String(target.model.upstream_model.clone()),
            );
        }
        let attempt_start = Instant::now();
        let result = target.adapter.chat(&req, stream).await;
        let elapsed = attempt_start.elapsed().as_millis() as i64;
        let note = |outcome: Value| json!({"provider": target.provider, "model": target.model.name, "outcome": outcome, "latency_ms": elapsed});
        match result {
            Ok(UpstreamReply::Json { status, body }) if (200..300).contains(&status) => {
                ticket.attempts.push(note(json!(status)));
                return Ok(finish_json(ticket, target, status, body));
            }
            Ok(UpstreamReply::Stream { status, body }) if (200..300).contains(&status) => {
                ticket.attempts.push(note(json!(status)));
                return Ok(stream_response(
                    ticket,
                    target.clone(),
                    body,
                    client_wants_usage,
                ));
            }
            Ok(reply) => {
                let (status, body) = match reply {
                    UpstreamReply::Json { status, body } => (status, body),
                    UpstreamReply::Stream { status, .. } => (status, Bytes::new()),
                };
                ticket.attempts.push(note(json!(status)));
                let message = upstream_message(&body)
                    .unwrap_or_else(|| format!("The upstream provider answered {status}."));
                if status == 429 || status >= 500 || status == 401 || status == 403 {
                    // Worth another target: overload, outage, or our provider credentials.
                    tracing::warn!(provider = %target.provider, status, "upstream failed; trying next target");
                    last_error = Some(GatewayError::Upstream {
                        status: 502,
                        message: format!("The upstream provider failed ({status})."),
                    });
                    continue;
                }
                let err = GatewayError::UpstreamClient { status, message };
                ticket.finish(
                    Some(target),
                    status,
                    Usage::default(),
                    0,
                    Some(("upstream_rejected", err.message())),
                    None,
                );
                return Err(err);
            }
            Err(e) => {
                ticket.attempts.push(note(json!(e.to_string())));
                tracing::warn!(provider = %target.provider, error = %e, "upstream unreachable; trying next target");
                last_error = Some(match e {
                    UpstreamError::Timeout => GatewayError::Upstream {
                        status: 504,
                        message: "The upstream provider timed out.".into(),
                    },
                    _ => GatewayError::Upstream {
                        status: 502,
                        message: "The upstream provider could not be reached.".into(),
                    },
                });
            }
        }
    }
    let err = last_error.unwrap_or(GatewayError::Upstream {
        status: 502,
        message: "No upstream could answer.".into(),
    });
    ticket.finish(
        candidates.last().map(|t| t.as_ref()),
        err.status().as_u16(),
        Usage::default(),
        0,
        Some(("upstream_error", err.message())),
        None,
    );
    Err(err)
}

/// The `error.message` of an OpenAI-style error body.
fn upstream_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
}

fn gateway_headers(resp: &mut Response, target: &Target, attempts: usize, request_id: &str) {
    let h = resp.headers_mut();
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            h.insert(name, v);
        }
    };
    set("x-tokengate-provider", &target.provider);
    set("x-tokengate-model", &target.model.name);
    set("x-tokengate-attempts", &attempts.to_string());
    set("x-request-id", request_id);
}

fn finish_json(mut ticket: Ticket, target: &Target, status: u16, body: Bytes) -> Response {
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let usage = parsed
        .as_ref()
        .and_then(|v| v.get("usage"))
        .and_then(parse_usage)
        .unwrap_or_else(|| {
            let content_chars = parsed
                .as_ref()
                .and_then(|v| v.get("choices"))
                .and_then(Value::as_array)
                .map(|cs| {
                    cs.iter()
                        .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str))
                        .map(str::len)
                        .sum()
                })
                .unwrap_or(0);
            Usage {
                input: estimate_tokens(ticket.prompt_chars),
                output: estimate_tokens(content_chars),
                ..Usage::default()
            }
        });
    let cost = target.model.prices().cost(&usage);
    let ttfb = ticket.started.elapsed().as_millis() as i64;
    let attempts = ticket.attempts.len();
    let request_id = ticket.request_id.clone();
    ticket.finish(Some(target), status, usage, cost, None, Some(ttfb));
    let mut resp = Response::new(Body::from(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    gateway_headers(&mut resp, target, attempts, &request_id);
    resp
}

/// State of a stream being relayed; settles the charge when dropped.
struct Relay {
    ticket: Option<Ticket>,
    target: Arc<Target>,
    upstream: ByteStream,
    parser: sse::Parser,
    client_wants_usage: bool,
    usage: Option<Usage>,
    delivered_chars: usize,
    ttfb_ms: Option<i64>,
    /// How the stream ended: `None` while running.
    outcome: Option<(u16, Option<(&'static str, String)>)>,
}

impl Relay {
    /// Rewrites one upstream event for the client: records usage, drops or strips the usage
    /// the client did not ask for, counts delivered content. `None` drops the event.
    fn relay_event(&mut self, ev: sse::Event) -> Option<Bytes> {
        if ev.data.is_empty() || ev.data == "[DONE]" || !ev.data.starts_with('{') {
            return Some(ev.raw);
        }
        let Ok(mut v) = serde_json::from_str::<Value>(&ev.data) else {
            return Some(ev.raw);
        };
        if let Some(choices) = v.get("choices").and_then(Value::as_array) {
            for c in choices {
                if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                    self.delivered_chars += t.len();
                }
            }
        }
        let has_usage = v.get("usage").is_some_and(Value::is_object);
        if !has_usage {
            return Some(ev.raw);
        }
        self.usage = v.get("usage").and_then(parse_usage);
        if self.client_wants_usage {
            return Some(ev.raw);
        }
        let no_choices = v
            .get("choices")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if no_choices {
            return None;
        }
        if let Some(o) = v.as_object_mut() {
            o.remove("usage");
        }
        Some(Bytes::from(format!("data: {v}\n\n")))
    }

    fn settle(&mut self) {
        let Some(mut ticket) = self.ticket.take() else {
            return;
        };
        let (status, err) = self.outcome.take().unwrap_or((
            499,
            Some(("client_closed", "client disconnected mid-stream".into())),
        ));
        let usage = match self.usage {
            Some(u) => u,
            None if self.delivered_chars > 0 || status == 200 => Usage {
                input: estimate_tokens(ticket.prompt_chars),
                output: estimate_tokens(self.delivered_chars),
                ..Usage::default()
            },
            None => Usage::default(),
        };
        let cost = if self.ttfb_ms.is_some() {
            self.target.model.prices().cost(&usage)
        } else {
            0
        };
        ticket.finish(Some(&self.target), status, usage, cost, err, self.ttfb_ms);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.settle();
    }
}

fn stream_response(
    ticket: Ticket,
    target: Arc<Target>,
    upstream: ByteStream,
    client_wants_usage: bool,
) -> Response {
    let attempts = ticket.attempts.len();
    let request_id = ticket.request_id.clone();
    let relay = Relay {
        ticket: Some(ticket),
        target: target.clone(),
        upstream,
        parser: sse::Parser::default(),
        client_wants_usage,
        usage: None,
        delivered_chars: 0,
        ttfb_ms: None,
        outcome: None,
    };
    let body = futures::stream::unfold(relay, |mut relay| async move {
        if relay.outcome.is_some() {
            return None;
        }
        loop {
            match relay.upstream.next().await {
                Some(Ok(chunk)) => {
                    let events = relay.parser.push(&chunk);
                    let mut out = Vec::new();
                    for ev in events {
                        if let Some(b) = relay.relay_event(ev) {
                            out.extend_from_slice(&b);
                        }
                    }
                    if out.is_empty() {
                        continue;
                    }
                    if relay.ttfb_ms.is_none() {
                        relay.ttfb_ms = relay
                            .ticket
                            .as_ref()
                            .map(|t| t.started.elapsed().as_millis() as i64);
                    }
                    return Some((Ok::<Bytes, std::io::Error>(Bytes::from(out)), relay));
                }
                Some(Err(e)) => {
                    tracing::warn!(provider = %relay.target.provider, error = %e, "upstream stream failed midway");
                    relay.outcome = Some((
                        502,
                        Some(("upstream_error", format!("stream interrupted: {e}"))),
                    ));
                    let err = json!({"error": {"message": "The upstream provider stream was interrupted.",
                        "type": "api_error", "param": null, "code": "upstream_error"}});
                    relay.settle();
                    return Some((Ok(Bytes::from(format!("data: {err}\n\n"))), relay));
                }
                None => {
                    let tail = relay.parser.finish().and_then(|ev| relay.relay_event(ev));
                    relay.outcome = Some((200, None));
                    relay.settle();
                    return tail.map(|b| (Ok(b), relay));
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

    #[test]
    fn usage_splits_cached_tokens() {
        let u = parse_usage(&json!({"prompt_tokens": 100, "completion_tokens": 7,
            "prompt_tokens_details": {"cached_tokens": 40}}))
        .unwrap();
        assert_eq!(
            u,
            Usage {
                input: 60,
                output: 7,
                cache_read: 40,
                cache_write: 0
            }
        );
        assert_eq!(u.total_input(), 100);
        assert!(parse_usage(&json!({"completion_tokens": 1})).is_none());
    }
}
