//! Stage 3, admit: the key's rate limits take a ticket for the call's estimated tokens,
//! then the account (and the key's spend limit) holds the call's worst-case cost on the
//! most expensive of its targets. An admitted call becomes a [`Ticket`], which settles
//! both whatever happens next.

use std::sync::Arc;
use std::time::Instant;

use serde_json::{Map, Value};
use tokengate_core::keys::ApiKey;
use tokengate_core::money::Usage;
use tokengate_core::now_ms;

use super::super::Gateway;
use super::super::error::GatewayError;
use super::super::money::Refusal;
use super::super::routes::Target;
use super::settle::Ticket;
use super::{Call, Op};
use crate::cluster::backplane::{AdmitError, Ask};

/// Prompt tokens assumed for each image, audio or file part on top of its bytes: a part
/// given by URL or file id has few bytes but costs the model real tokens.
pub const MEDIA_PART_TOKENS: i64 = 4096;

/// Takes the rate ticket and the hold for `call` on `candidates`, or refuses it, through
/// the gateway's backplane (memory, or Redis in cluster mode).
pub(super) async fn admit(
    gw: &Arc<Gateway>,
    key: Arc<ApiKey>,
    started: Instant,
    call: &Call,
    candidates: &[Arc<Target>],
) -> Result<Ticket, GatewayError> {
    let ask = Ask {
        request_id: &call.request_id,
        user_id: key.user_id,
        key_id: key.id,
        rpm: key.rpm,
        tpm: key.tpm,
        key_limit: key.spend_limit_nano,
        est_tokens: rate_estimate(call),
        amount: hold_amount(call, candidates),
    };
    let admitted = gw
        .backplane
        .admit(&gw.money, &gw.limits, ask)
        .await
        .map_err(|e| match e {
            AdmitError::Rate(r) => GatewayError::RateLimited {
                message: format!(
                    "Rate limit reached for this API key ({} per minute). Retry after {} s.",
                    r.which.counted(),
                    r.secs
                ),
                retry_after_secs: r.secs,
            },
            AdmitError::Money(r) => refused(r),
            AdmitError::Unavailable => backplane_unavailable(),
        })?;
    Ok(Ticket {
        gw: gw.clone(),
        key,
        admitted: Some(admitted),
        settled: None,
        endpoint: call.endpoint,
        model: call.model.clone(),
        request_id: call.request_id.clone(),
        stream: call.stream,
        started,
        created_at: now_ms(),
        attempts: Vec::new(),
        body_bytes: call.body_bytes,
    })
}

/// The answer while the cluster backplane (Redis) cannot be reached: new requests are
/// refused rather than risk overspending (documented in docs/deploy.md).
fn backplane_unavailable() -> GatewayError {
    GatewayError::Route {
        status: 503,
        message: "The gateway's shared state is unavailable; retry shortly.".into(),
        code: "backplane_unavailable",
    }
}

/// The answer to a call the money side refused to hold.
fn refused(r: Refusal) -> GatewayError {
    match r {
        Refusal::AccountInactive => GatewayError::InvalidKey,
        Refusal::Balance => GatewayError::InsufficientBalance(
            "Your balance is too low for this request. Top up your account to continue.".into(),
        ),
        Refusal::KeyLimit => {
            GatewayError::InsufficientBalance("This API key has reached its spend limit.".into())
        }
    }
}

/// Tokens the rate limiter counts a call as before it is answered: a token per 4 body
/// bytes (rounded down) plus the client's output cap, if it gave one.
fn rate_estimate(call: &Call) -> i64 {
    (call.body_bytes / 4) as i64 + call.max_out.unwrap_or(0)
}

/// What to hold for `call`: its worst case on the most expensive of `candidates`, since
/// any of them may end up serving it.
pub(super) fn hold_amount(call: &Call, candidates: &[Arc<Target>]) -> i64 {
    let media = match call.op {
        Op::Chat => media_parts(&call.body),
        Op::Responses => call.turn.as_ref().map_or(0, |t| t.media_parts),
        Op::Embeddings => 0,
    };
    candidates
        .iter()
        .map(|t| worst_case(call, t, media))
        .max()
        .unwrap_or(0)
}

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
        Op::Chat | Op::Responses => call
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::super::providers::{Adapter, mock::MockAdapter};
    use super::super::plan::tests::model;
    use super::super::tests::call;
    use super::*;

    fn target(name: &str, input_per_m: i64, output_per_m: i64, max_out: i64) -> Arc<Target> {
        let mut m = model(1, 1, name);
        m.input_price_nano = input_per_m;
        m.output_price_nano = output_per_m;
        m.max_output_tokens = max_out;
        Arc::new(Target {
            model: m,
            provider: "mock".into(),
            adapter: Arc::new(Adapter::Mock(MockAdapter::from_config(&json!({})))),
        })
    }

    #[test]
    fn media_parts_count_in_either_format() {
        let body = json!({"messages": [
            {"role": "user", "content": "plain text"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "https://x/y.png"}},
                {"type": "input_audio"}, {"type": "file"}]},
            {"role": "user", "content": [{"type": "image"}, {"type": "document"},
                {"type": "input_image"}, {"type": "input_file"}, {"type": 3}]},
        ]});
        assert_eq!(media_parts(body.as_object().unwrap()), 7);
        assert_eq!(
            media_parts(json!({"messages": "x"}).as_object().unwrap()),
            0
        );
        assert_eq!(media_parts(json!({}).as_object().unwrap()), 0);
    }

    #[test]
    fn the_hold_is_the_worst_case_of_the_dearest_target() {
        // 1 nano-USD per million tokens would round away: price at 1e6 per million, i.e.
        // one nano-USD per token, so costs read as token counts.
        let cheap = target("mock/cheap", 1_000_000, 1_000_000, 100);
        let dear = target("mock/dear", 1_000_000, 3_000_000, 200);
        let text = json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]});
        let image = json!({"model": "m", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "u"}}]}]});
        // (what, op, body, output cap, choices, the hold given the body's input tokens)
        type Case<'a> = (&'a str, Op, &'a Value, Option<i64>, i64, fn(i64) -> i64);
        let cases: [Case<'_>; 4] = [
            (
                "chat, no cap: the dearest model's allowance",
                Op::Chat,
                &text,
                None,
                1,
                |input| input + 3 * 200,
            ),
            (
                "chat, capped, three choices",
                Op::Chat,
                &text,
                Some(10),
                3,
                |input| input + 3 * 30,
            ),
            (
                "chat with an image",
                Op::Chat,
                &image,
                Some(10),
                1,
                |input| input + MEDIA_PART_TOKENS + 3 * 10,
            ),
            (
                "embeddings: no output, media not counted",
                Op::Embeddings,
                &image,
                None,
                1,
                |input| input,
            ),
        ];
        for (what, op, body, max_out, choices, want) in cases {
            let mut call = call(op, body.as_object().unwrap().clone());
            call.max_out = max_out;
            call.choices = choices;
            let want = want(call.body_bytes as i64 + 16);
            assert_eq!(
                hold_amount(&call, &[cheap.clone(), dear.clone()]),
                want,
                "{what}"
            );
            assert_eq!(
                hold_amount(&call, &[dear.clone(), cheap.clone()]),
                want,
                "{what}"
            );
        }
        assert_eq!(hold_amount(&call(Op::Chat, Map::new()), &[]), 0);
    }

    #[test]
    fn rate_estimate_counts_body_quarters_and_the_cap() {
        let mut c = call(Op::Chat, Map::new());
        c.body_bytes = 7;
        assert_eq!(rate_estimate(&c), 1);
        c.max_out = Some(50);
        assert_eq!(rate_estimate(&c), 51);
    }

    #[test]
    fn refusals_map_to_their_answers() {
        assert_eq!(refused(Refusal::AccountInactive), GatewayError::InvalidKey);
        assert!(matches!(refused(Refusal::Balance),
            GatewayError::InsufficientBalance(m) if m.contains("balance is too low")));
        assert!(matches!(refused(Refusal::KeyLimit),
            GatewayError::InsufficientBalance(m) if m.contains("spend limit")));
    }
}
