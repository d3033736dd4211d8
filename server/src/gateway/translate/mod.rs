//! Translation between the two chat wire formats tokengate speaks, OpenAI Chat Completions
//! and Anthropic Messages: requests ([`request`]), whole answers ([`response`]) and streams
//! event by event ([`stream`]). Token usage of either format maps to one [`Usage`], so
//! cached tokens are counted once whichever way a request travels.
//!
//! Parameter rule: a parameter the target format has no equivalent for is dropped when it
//! only tunes sampling or bookkeeping (penalties, seed, logit bias, `top_k`, service tier,
//! store, thinking budget), and rejected with 400 when dropping it would change the shape
//! or meaning of the answer (`n` > 1, log probabilities, `response_format`, server tools,
//! OpenAI `temperature` above Anthropic's maximum of 1).

#[cfg(test)]
mod props;
pub mod request;
pub mod response;
pub mod responses;
pub mod stream;

use serde_json::{Value, json};
use tokengate_core::money::Usage;

/// A chat wire format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAi,
    Anthropic,
}

/// A request the target format cannot express; becomes a 400 for the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsupported {
    pub message: String,
    pub param: Option<String>,
}

impl Unsupported {
    fn new(param: &str, message: impl Into<String>) -> Self {
        Unsupported {
            message: message.into(),
            param: Some(param.to_string()),
        }
    }
}

/// Usage from an OpenAI `usage` object; cached prompt tokens are split out of
/// `prompt_tokens` (which includes them).
pub fn openai_usage(usage: &Value) -> Option<Usage> {
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

/// Usage from an Anthropic `usage` object (`input_tokens` excludes cache reads and writes).
pub fn anthropic_usage(usage: &Value) -> Option<Usage> {
    let get = |k: &str| usage.get(k).and_then(Value::as_i64).unwrap_or(0).max(0);
    if usage.get("input_tokens").is_none() && usage.get("output_tokens").is_none() {
        return None;
    }
    Some(Usage {
        input: get("input_tokens"),
        output: get("output_tokens"),
        cache_read: get("cache_read_input_tokens"),
        cache_write: get("cache_creation_input_tokens"),
    })
}

/// The OpenAI `usage` object for `u`: every input token in `prompt_tokens`, cache reads
/// also in `prompt_tokens_details.cached_tokens`.
pub fn openai_usage_json(u: &Usage) -> Value {
    json!({
        "prompt_tokens": u.total_input(),
        "completion_tokens": u.output,
        "total_tokens": u.total_input() + u.output,
        "prompt_tokens_details": {"cached_tokens": u.cache_read},
    })
}

/// The Anthropic `usage` object for `u`.
pub fn anthropic_usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.input,
        "output_tokens": u.output,
        "cache_read_input_tokens": u.cache_read,
        "cache_creation_input_tokens": u.cache_write,
    })
}

/// OpenAI `finish_reason` for an Anthropic `stop_reason`.
pub fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Anthropic `stop_reason` for an OpenAI `finish_reason`.
pub fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// The error message inside an upstream error body of either format.
pub fn error_message(body: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(body).ok()?;
    v.pointer("/error/message")
        .and_then(Value::as_str)
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_round_trips_without_double_counting() {
        let a = anthropic_usage(&json!({"input_tokens": 10, "output_tokens": 5,
            "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20}))
        .unwrap();
        assert_eq!(
            a,
            Usage {
                input: 10,
                output: 5,
                cache_read: 100,
                cache_write: 20
            }
        );
        let o = openai_usage_json(&a);
        assert_eq!(o["prompt_tokens"], 130);
        assert_eq!(o["prompt_tokens_details"]["cached_tokens"], 100);
        let back = openai_usage(&o).unwrap();
        assert_eq!(back.total_input(), a.total_input());
        assert_eq!(back.cache_read, 100);
        assert_eq!(anthropic_usage_json(&a)["cache_creation_input_tokens"], 20);
        assert!(anthropic_usage(&json!({})).is_none());
    }

    #[test]
    fn openai_usage_splits_cached_tokens() {
        let u = openai_usage(&json!({"prompt_tokens": 100, "completion_tokens": 7,
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
        assert!(openai_usage(&json!({"completion_tokens": 1})).is_none());
    }

    #[test]
    fn reasons_map_both_ways() {
        for (a, o) in [
            ("end_turn", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
        ] {
            assert_eq!(finish_reason(a), o);
            assert_eq!(stop_reason(o), a);
        }
        assert_eq!(finish_reason("stop_sequence"), "stop");
    }
}
