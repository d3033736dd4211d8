//! The metered path every `/v1` call takes once its endpoint has parsed it: resolve the
//! model or alias, check the key's policy and rate limits, hold the worst-case cost, try
//! the targets in order (translating to each provider's wire format, skipping targets
//! whose breaker is open, within per-attempt and total time budgets, falling back only
//! before the first byte reached the client), then meter the answer and queue the charge.
//! Streams are relayed event by event and settled when they end or the client goes away.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::Response;
use futures::StreamExt;
use serde_json::{Map, Value, json};
use tokengate_core::keys::ApiKey;
use tokengate_core::money::Usage;
use tokengate_core::now_ms;
use tokengate_core::usage::{AttemptOutcome, FailureKind, RequestRecord, UpstreamAttempt};

use super::Gateway;
use super::error::GatewayError;
use super::health::Admission;
use super::limits::RateTicket;
use super::money::{Hold, Refusal};
use super::providers::{ByteStream, UpstreamError, UpstreamReply};
use super::routes::Target;
use super::sse;
use super::translate::{self, Format, stream::Converter};

/// What the client asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Chat,
    Embeddings,
}

/// A parsed, validated `/v1` call.
pub struct Call {
    pub op: Op,
    /// The client's wire format.
    pub client: Format,
    pub endpoint: &'static str,
    pub model: String,
    /// The body in the client's format.
    pub body: Map<String, Value>,
    pub stream: bool,
    pub client_wants_usage: bool,
    /// The client's output-token cap, if it gave one.
    pub max_out: Option<i64>,
    /// Choices asked for (`n`); each is held and billed.
    pub choices: i64,
    /// Size of the request body, the bound on its prompt tokens.
    pub body_bytes: usize,
    /// Sent as `x-request-id` and stored in the request log.
    pub request_id: String,
}

/// A request that has been admitted: everything needed to log and charge it.
struct Ticket {
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    hold: Option<Hold>,
    rate: Option<RateTicket>,
    endpoint: &'static str,
    model: String,
    request_id: String,
    stream: bool,
    started: Instant,
    created_at: i64,
    attempts: Vec<UpstreamAttempt>,
    body_bytes: usize,
}

impl Ticket {
    /// Settles the hold at `cost`, the rate ticket at the tokens used, and queues the row.
    fn finish(
        &mut self,
        target: Option<&Target>,
        status: u16,
        usage: Usage,
        cost: i64,
        err: Option<(FailureKind, String)>,
        ttfb_ms: Option<i64>,
    ) {
        // The hold covers every output token the upstream was allowed to produce, so the
        // actual cost fits in it. If an upstream still bills more (a price or usage the
        // hold could not foresee), the request is charged what it cost and the balance
        // may go below zero by that overrun, which is logged and counted.
        if let Some(hold) = self.hold.take() {
            if cost > hold.amount {
                self.gw
                    .meter
                    .stats()
                    .overruns
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    request_id = %self.request_id,
                    cost,
                    hold = hold.amount,
                    overrun = cost - hold.amount,
                    "cost above the request's hold; charged in full"
                );
            }
            self.gw.money.settle(hold, cost);
        }
        if let Some(rate) = self.rate.take() {
            self.gw
                .limits
                .settle(rate, usage.total_input() + usage.output, Instant::now());
        }
        // A single successful attempt is the row itself; the attempt list is kept when it
        // says more (fallbacks, skips, failures).
        let keep_attempts = self.attempts.len() > 1 || err.is_some();
        let (error_type, error_message) = match err {
            Some((t, m)) => (Some(t), Some(m)),
            None => (None, None),
        };
        self.gw.meter.record(RequestRecord {
            request_id: self.request_id.clone(),
            user_id: self.key.user_id,
            key_id: self.key.id,
            endpoint: self.endpoint.into(),
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
            attempts_json: (keep_attempts && !self.attempts.is_empty())
                .then(|| std::mem::take(&mut self.attempts)),
            created_at: self.created_at,
        });
    }

    /// Prompt tokens to bill when the upstream reported no usage (4 bytes of body per
    /// token, rounded up).
    fn estimated_prompt(&self) -> i64 {
        self.body_bytes.div_ceil(4) as i64
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket dropped without `finish` (a client that vanished while we waited for
        // the upstream) still releases its hold and is logged, uncharged.
        if self.hold.is_some() {
            self.finish(
                None,
                499,
                Usage::default(),
                0,
                Some((FailureKind::ClientClosed, "request cancelled".into())),
                None,
            );
        }
    }
}

/// A new request id (`req_` + 24 hex digits).
pub fn request_id() -> String {
    let bytes: [u8; 12] = rand::random();
    format!("req_{}", hex::encode(bytes))
}

/// The body to send to `target`, in its wire format, with its upstream model name.
fn upstream_body(call: &Call, target: &Target) -> Result<Value, GatewayError> {
    let native = match call.op {
        Op::Embeddings => Format::OpenAi,
        Op::Chat => target.adapter.format(),
    };
    let mut body = if native == call.client {
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
    if call.op == Op::Chat && call.max_out.is_none() && native == Format::OpenAi {
        // The hold assumed the model's output allowance: make the upstream keep to it.
        let field = target.adapter.output_cap_field();
        if body.get("max_tokens").is_none_or(Value::is_null)
            && body.get("max_completion_tokens").is_none_or(Value::is_null)
        {
            body[field] = json!(target.model.max_output_tokens);
        }
    }
    if call.op == Op::Chat && call.stream && native == Format::OpenAi {
        // Always ask for usage; the relay removes it again unless the client asked.
        let opts = &mut body["stream_options"];
        if !opts.is_object() {
            *opts = json!({});
        }
        opts["include_usage"] = Value::Bool(true);
    }
    Ok(body)
}

/// Prompt tokens assumed for each image, audio or file part on top of its bytes: a part
/// given by URL or file id has few bytes but costs the model real tokens.
pub const MEDIA_PART_TOKENS: i64 = 4096;

/// Image, audio and file parts in the messages of a chat body (either format).
fn media_parts(body: &Map<String, Value>) -> i64 {
    let Some(messages) = body.get("messages").and_then(Value::as_array) else {
        return 0;
    };
    let mut n = 0;
    for m in messages {
        for part in m
            .get("content")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(t) = part.get("type").and_then(Value::as_str)
                && matches!(
                    t,
                    "image_url"
                        | "input_image"
                        | "input_audio"
                        | "file"
                        | "input_file"
                        | "image"
                        | "document"
                )
            {
                n += 1;
            }
        }
    }
    n
}

/// The worst-case cost of `call` on `target`: every body byte a prompt token, plus
/// [`MEDIA_PART_TOKENS`] per media part, plus the whole output allowance of every choice.
fn worst_case(call: &Call, target: &Target, media: i64) -> i64 {
    let output = match call.op {
        Op::Chat => call
            .max_out
            .unwrap_or(target.model.max_output_tokens)
            .saturating_mul(call.choices.max(1)),
        Op::Embeddings => 0,
    };
    target.model.prices().cost(&Usage {
        input: (call.body_bytes as i64 + 16)
            .saturating_add(media.saturating_mul(MEDIA_PART_TOKENS)),
        output,
        ..Usage::default()
    })
}

/// Runs an admitted-for-auth call to the end, in a task of its own: a client that goes
/// away does not cancel it, so the upstream's answer is still read and billed (a stream
/// is then settled as abandoned when its response is dropped).
pub async fn run(
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    started: Instant,
    call: Call,
) -> Result<Response, GatewayError> {
    match tokio::spawn(run_to_end(gw, key, started, call)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "request task failed");
            Err(GatewayError::Upstream {
                status: 500,
                message: "The request failed inside the gateway.".into(),
            })
        }
    }
}

async fn run_to_end(
    gw: Arc<Gateway>,
    key: Arc<ApiKey>,
    started: Instant,
    call: Call,
) -> Result<Response, GatewayError> {
    let routes = gw.routes.load();
    let candidates = routes.candidates(&call.model).ok_or_else(|| {
        GatewayError::ModelNotFound(format!(
            "The model `{}` does not exist or you do not have access to it.",
            call.model
        ))
    })?;
    let candidates = routes
        .permitted(&key, &call.model, candidates)
        .ok_or_else(|| {
            GatewayError::ModelNotAllowed(format!(
                "This API key is not allowed to use the model `{}`.",
                call.model
            ))
        })?;
    if candidates.is_empty() {
        return Err(GatewayError::Upstream {
            status: 503,
            message: "No provider is available for this model.".into(),
        });
    }

    let est_tokens = (call.body_bytes / 4) as i64 + call.max_out.unwrap_or(0);
    let rate = gw
        .limits
        .admit(key.id, key.rpm, key.tpm, est_tokens, Instant::now())
        .map_err(|r| GatewayError::RateLimited {
            message: format!(
                "Rate limit reached for this API key ({} per minute). Retry after {} s.",
                r.which.counted(),
                r.secs
            ),
            retry_after_secs: r.secs,
        })?;
    let media = match call.op {
        Op::Chat => media_parts(&call.body),
        Op::Embeddings => 0,
    };
    let hold_amount = candidates
        .iter()
        .map(|t| worst_case(&call, t, media))
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

    let mut ticket = Ticket {
        gw: gw.clone(),
        key,
        hold: Some(hold),
        rate: Some(rate),
        endpoint: call.endpoint,
        model: call.model.clone(),
        request_id: call.request_id.clone(),
        stream: call.stream,
        started,
        created_at: now_ms(),
        attempts: Vec::new(),
        body_bytes: call.body_bytes,
    };

    let deadline = started + gw.timeouts.total;
    let mut last_error: Option<GatewayError> = None;
    let mut skipped = 0usize;
    for target in &candidates {
        let now = Instant::now();
        if now >= deadline {
            last_error = Some(GatewayError::Upstream {
                status: 504,
                message: "The upstream providers did not answer in time.".into(),
            });
            break;
        }
        let admission = gw.health.admit(&target.model.name, now);
        if admission == Admission::Rejected {
            skipped += 1;
            ticket.attempts.push(UpstreamAttempt::new(
                target.provider.as_str(),
                target.model.name.as_str(),
                "skipped: circuit open".into(),
                0,
            ));
            continue;
        }
        let body = match upstream_body(&call, target) {
            Ok(b) => b,
            Err(e) => {
                gw.health.release(&target.model.name, admission);
                ticket.finish(
                    Some(target),
                    400,
                    Usage::default(),
                    0,
                    Some((FailureKind::InvalidRequest, e.message())),
                    None,
                );
                return Err(e);
            }
        };
        let timeout = gw.timeouts.attempt.min(deadline - now);
        let result = match call.op {
            Op::Chat => target.adapter.chat(&body, call.stream, timeout).await,
            Op::Embeddings => target.adapter.embeddings(&body, timeout).await,
        };
        let elapsed = now.elapsed();
        let note = |outcome: AttemptOutcome| {
            UpstreamAttempt::new(
                target.provider.as_str(),
                target.model.name.as_str(),
                outcome,
                elapsed.as_millis() as i64,
            )
        };
        let record = |ok: bool| {
            gw.health
                .record(&target.model.name, admission, ok, elapsed, Instant::now())
        };
        match result {
            Ok(UpstreamReply::Json { status, body }) if (200..300).contains(&status) => {
                match parse_success(&call, target, &body) {
                    Some(parsed) => {
                        record(true);
                        ticket.attempts.push(note(status.into()));
                        return Ok(finish_json(ticket, &call, target, status, body, parsed));
                    }
                    None => {
                        record(false);
                        ticket.attempts.push(note("malformed response".into()));
                        tracing::warn!(provider = %target.provider, "upstream sent a malformed answer; trying next target");
                        last_error = Some(GatewayError::Upstream {
                            status: 502,
                            message: "The upstream provider sent a malformed response.".into(),
                        });
                    }
                }
            }
            Ok(UpstreamReply::Stream { status, body }) if (200..300).contains(&status) => {
                record(true);
                ticket.attempts.push(note(status.into()));
                let native = target.adapter.format();
                return Ok(stream_response(ticket, &call, target.clone(), native, body));
            }
            Ok(reply) => {
                let (status, body) = match reply {
                    UpstreamReply::Json { status, body } => (status, body),
                    UpstreamReply::Stream { status, .. } => (status, Bytes::new()),
                };
                ticket.attempts.push(note(status.into()));
                let message = translate::error_message(&body)
                    .unwrap_or_else(|| format!("The upstream provider answered {status}."));
                if status == 429 || status >= 500 || status == 401 || status == 403 {
                    // Worth another target: overload, outage, or our provider credentials.
                    record(false);
                    tracing::warn!(provider = %target.provider, status, "upstream failed; trying next target");
                    last_error = Some(if status == 429 {
                        GatewayError::Upstream {
                            status: 503,
                            message: "The upstream provider is rate limiting; try again shortly."
                                .into(),
                        }
                    } else {
                        GatewayError::Upstream {
                            status: 502,
                            message: format!("The upstream provider failed ({status})."),
                        }
                    });
                    continue;
                }
                record(true);
                let err = GatewayError::UpstreamClient { status, message };
                ticket.finish(
                    Some(target),
                    status,
                    Usage::default(),
                    0,
                    Some((FailureKind::UpstreamRejected, err.message())),
                    None,
                );
                return Err(err);
            }
            Err(UpstreamError::Unsupported(m)) => {
                gw.health.release(&target.model.name, admission);
                ticket.attempts.push(note(m.into()));
                last_error = Some(GatewayError::BadRequest {
                    message: m.into(),
                    param: Some("model".into()),
                });
            }
            Err(e) => {
                record(false);
                ticket.attempts.push(note(e.to_string().into()));
                tracing::warn!(provider = %target.provider, error = %e, "upstream unreachable; trying next target");
                last_error = Some(match e {
                    UpstreamError::Timeout => GatewayError::Upstream {
                        status: 504,
                        message: "The upstream provider timed out.".into(),
                    },
                    UpstreamError::TooLarge { .. } => GatewayError::Upstream {
                        status: 502,
                        message: e.to_string(),
                    },
                    _ => GatewayError::Upstream {
                        status: 502,
                        message: "The upstream provider could not be reached.".into(),
                    },
                });
            }
        }
    }
    let err = last_error.unwrap_or_else(|| GatewayError::Upstream {
        status: 503,
        message: if skipped > 0 {
            "Every provider for this model is failing right now; try again shortly.".into()
        } else {
            "No upstream could answer.".into()
        },
    });
    let status = err.status().as_u16();
    ticket.finish(
        candidates.last().map(|t| t.as_ref()),
        status,
        Usage::default(),
        0,
        Some((FailureKind::UpstreamError, err.message())),
        None,
    );
    Err(err)
}

/// Just the `usage` of an answer: the rest is validated but skipped without building it.
#[derive(serde::Deserialize)]
struct UsageOnly {
    usage: Option<Value>,
}

/// A successful upstream body's usage, and the whole body parsed when it is needed (to
/// translate it, or to estimate usage the upstream did not report); `None` if the body is
/// not the JSON object it should be.
fn parse_success(
    call: &Call,
    target: &Target,
    body: &[u8],
) -> Option<(Option<Value>, Option<Usage>)> {
    let light: UsageOnly = serde_json::from_slice(body).ok()?;
    let native = match call.op {
        Op::Embeddings => Format::OpenAi,
        Op::Chat => target.adapter.format(),
    };
    let usage = light.usage.as_ref().filter(|u| u.is_object());
    let usage = match native {
        Format::OpenAi => usage.and_then(|u| {
            if call.op == Op::Embeddings {
                u.get("prompt_tokens")
                    .and_then(Value::as_i64)
                    .map(|p| Usage {
                        input: p,
                        ..Usage::default()
                    })
            } else {
                translate::openai_usage(u)
            }
        }),
        Format::Anthropic => usage.and_then(translate::anthropic_usage),
    };
    let full = if native != call.client || usage.is_none() {
        Some(serde_json::from_slice(body).ok()?)
    } else {
        None
    };
    Some((full, usage))
}

/// Characters of generated text in a whole answer of either format.
fn answer_chars(v: &Value) -> usize {
    let openai: usize = v
        .get("choices")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.pointer("/message/content").and_then(Value::as_str))
        .map(str::len)
        .sum();
    let anthropic: usize = v
        .get("content")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|b| b.get("text").and_then(Value::as_str))
        .map(str::len)
        .sum();
    openai + anthropic
}

/// Adds `x-request-id` to a response (errors included, so a failed request can be
/// matched to its log row).
pub fn with_request_id(mut resp: Response, request_id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(request_id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

pub fn gateway_headers(resp: &mut Response, target: &Target, attempts: usize, request_id: &str) {
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

fn finish_json(
    mut ticket: Ticket,
    call: &Call,
    target: &Target,
    status: u16,
    raw: Bytes,
    (parsed, usage): (Option<Value>, Option<Usage>),
) -> Response {
    let parsed = parsed.unwrap_or(Value::Null);
    let usage = usage.unwrap_or_else(|| Usage {
        input: ticket.estimated_prompt(),
        output: (answer_chars(&parsed).div_ceil(4)) as i64,
        ..Usage::default()
    });
    let native = match call.op {
        Op::Embeddings => Format::OpenAi,
        Op::Chat => target.adapter.format(),
    };
    let body = if native == call.client {
        raw
    } else {
        let v = match call.client {
            Format::OpenAi => {
                translate::response::anthropic_to_openai(&parsed, &usage, now_ms() / 1000)
            }
            Format::Anthropic => translate::response::openai_to_anthropic(&parsed, &usage),
        };
        Bytes::from(v.to_string())
    };
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
    client: Format,
    upstream: ByteStream,
    parser: sse::Parser,
    conv: Converter,
    ttfb_ms: Option<i64>,
    /// How the stream ended: `None` while running.
    outcome: Option<(u16, Option<(FailureKind, String)>)>,
}

impl Relay {
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
        conv: Converter::new(
            native,
            call.client,
            call.client_wants_usage,
            now_ms() / 1000,
        ),
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
                    let out = translate::stream::error_event(
                        relay.client,
                        "The upstream provider stopped sending; the stream was ended.",
                    );
                    relay.settle();
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
                        out.extend_from_slice(&translate::stream::error_event(
                            relay.client,
                            "The upstream provider sent a malformed stream.",
                        ));
                        Some((
                            502,
                            Some((
                                FailureKind::UpstreamError,
                                "malformed stream event".to_string(),
                            )),
                        ))
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
                    out.extend_from_slice(&translate::stream::error_event(relay.client, &message));
                    relay.settle();
                    return Some((Ok(Bytes::from(out)), relay));
                }
                None => {
                    let mut out = Vec::new();
                    if let Some(ev) = relay.parser.finish() {
                        relay.conv.event(ev, &mut out);
                    }
                    relay.conv.finish(&mut out);
                    relay.outcome = Some((200, None));
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

/// Per-attempt and total time budgets until an upstream's first byte.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub attempt: Duration,
    pub total: Duration,
    /// Longest silence of an upstream stream before it is ended (and its hold settled).
    pub stream_idle: Duration,
}
