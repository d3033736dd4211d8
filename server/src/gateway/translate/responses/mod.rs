//! Translation between OpenAI's Responses API (`/v1/responses`) and the two chat wire
//! formats upstreams speak: requests to Chat Completions or Anthropic Messages
//! ([`request`]), whole answers back to a Response object ([`response`]), and streams back
//! to Responses events ([`stream`]). The endpoint, storage and native passthrough live in
//! the pipeline; this module is pure.
//!
//! Parameter rule (the one of [`super`], applied to the Responses fields):
//! - Gateway-side or bookkeeping fields are not sent upstream and never an error: `store`,
//!   `include`, `prompt_cache_key`, `prompt_cache_retention`, `safety_identifier`,
//!   `truncation`, `service_tier`, `metadata`, `max_tool_calls`, `stream_options`,
//!   `text.verbosity`, and `reasoning` towards Anthropic (a thinking budget).
//! - Rejected (400): `background: true`, `conversation`, `prompt` templates,
//!   `top_logprobs` > 0, `item_reference` and other input items the gateway cannot
//!   resolve, file ids (`file_id` on images and files), a `tool_choice` that forces a
//!   hosted tool, `text.format` other than `text` towards Anthropic, `temperature` above 1
//!   towards Anthropic.
//! - Mapped: `instructions` and system/developer messages to the system prompt (one
//!   leading system message for chat), `max_output_tokens` to the provider's output cap,
//!   `temperature`, `top_p`, `user`, `parallel_tool_calls`, `tool_choice`, `text.format`
//!   to chat `response_format`, `reasoning.effort` to chat `reasoning_effort`; a chat
//!   stream always asks for usage.
//! - Hosted tools (`web_search`, `file_search`, `code_interpreter`, `image_generation`,
//!   `mcp`, `local_shell`, `computer_use_preview`, …) only offered in `tools` are dropped:
//!   no upstream can run them, and the model answers without them (Codex offers
//!   `web_search` on every request).
//! - Custom (free-form) tools become function tools taking one string argument named
//!   `input` (the grammar, if any, is given in its description); a call to one comes back
//!   as a `custom_tool_call` item, and `custom_tool_call` / `custom_tool_call_output`
//!   history items go back upstream as that function's calls and results.
//! - Reasoning items: an Anthropic thinking block comes back as a `reasoning` item whose
//!   `summary` is the thinking text and whose `encrypted_content` is the block's signature
//!   marked `ant-sig:` (`ant-redacted:` for redacted thinking), always present (whatever
//!   `include` asks, so stored responses can be continued). Sent back
//!   to Anthropic, such items become thinking blocks again; reasoning items without that
//!   mark (OpenAI's own encrypted reasoning, summaries only) are dropped, and towards a
//!   Chat Completions upstream every reasoning item is dropped (chat servers take no
//!   reasoning input). Chat `reasoning_content` / `reasoning` text comes back as a
//!   `reasoning` item with a `summary_text`.

#[cfg(test)]
mod props;
pub mod request;
pub mod response;
pub mod stream;

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use tokengate_core::money::Usage;

pub type Obj = Map<String, Value>;

/// What a Responses answer needs besides the upstream's answer.
#[derive(Debug, Clone)]
pub struct ResponseCtx {
    /// `resp_` + hex, from [`new_response_id`].
    pub id: String,
    /// Unix seconds.
    pub created_at: i64,
    /// The client's request, echoed in the response as OpenAI does.
    pub request: Obj,
}

/// The mark of an Anthropic thinking signature carried in `encrypted_content`.
pub const SIGNATURE_MARK: &str = "ant-sig:";
/// The mark of Anthropic redacted thinking carried in `encrypted_content`.
pub const REDACTED_MARK: &str = "ant-redacted:";

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    for b in buf.iter_mut() {
        *b = rand::random();
    }
    hex::encode(buf)
}

/// A new response id: `resp_` and 48 hex digits, like OpenAI's.
pub fn new_response_id() -> String {
    format!("resp_{}", random_hex(24))
}

/// A new item id with `prefix` (`msg`, `fc`, `ctc`, `rs`, with or without the `_`).
pub fn new_item_id(prefix: &str) -> String {
    let sep = if prefix.ends_with('_') { "" } else { "_" };
    format!("{prefix}{sep}{}", random_hex(24))
}

/// The Responses `usage` object (every field always present): `input_tokens` counts every
/// input token, cached ones included, as OpenAI does; reasoning tokens are part of
/// `output_tokens`.
pub fn usage_json(u: &Usage, reasoning_tokens: i64) -> Value {
    json!({
        "input_tokens": u.total_input(),
        "input_tokens_details": {"cached_tokens": u.cache_read, "cache_write_tokens": u.cache_write},
        "output_tokens": u.output,
        "output_tokens_details": {"reasoning_tokens": reasoning_tokens.clamp(0, u.output.max(0))},
        "total_tokens": u.total_input() + u.output,
    })
}

/// Usage from a Responses `usage` object (native upstreams): cached and cache-written
/// tokens are split out of `input_tokens`, which includes them.
pub fn responses_usage(v: &Value) -> Option<Usage> {
    let input = v.get("input_tokens")?.as_i64()?.max(0);
    let output = v
        .get("output_tokens")
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0);
    let detail = |k: &str| {
        v.get("input_tokens_details")
            .and_then(|d| d.get(k))
            .and_then(Value::as_i64)
            .unwrap_or(0)
            .max(0)
    };
    let cache_read = detail("cached_tokens").min(input);
    let cache_write = detail("cache_write_tokens").min(input - cache_read);
    Some(Usage {
        input: input - cache_read - cache_write,
        output,
        cache_read,
        cache_write,
    })
}

/// The reasoning tokens inside a Responses or Chat Completions usage object, 0 if absent.
pub fn reasoning_tokens(usage: &Value) -> i64 {
    usage
        .pointer("/output_tokens_details/reasoning_tokens")
        .or_else(|| usage.pointer("/completion_tokens_details/reasoning_tokens"))
        .and_then(Value::as_i64)
        .unwrap_or(0)
        .max(0)
}

/// The `error.code` of a failed response for an upstream or gateway HTTP status, in
/// OpenAI's vocabulary.
pub fn error_code(status: u16) -> &'static str {
    match status {
        429 => "rate_limit_exceeded",
        402 => "insufficient_quota",
        _ => "server_error",
    }
}

/// For a native Responses upstream's stream event (parsed `data`): the usage of a
/// terminal event (`response.completed`, `.incomplete`, `.failed`), if it has one.
pub fn native_usage(event: &Value) -> Option<(Usage, i64)> {
    if !is_terminal(event) {
        return None;
    }
    let u = event.pointer("/response/usage").filter(|u| u.is_object())?;
    Some((responses_usage(u)?, reasoning_tokens(u)))
}

/// Whether a Responses stream event ends the response.
pub fn is_terminal(event: &Value) -> bool {
    matches!(
        event.get("type").and_then(Value::as_str),
        Some("response.completed" | "response.incomplete" | "response.failed")
    )
}

/// The generated text a Responses stream event carries (output text, refusal, tool
/// arguments or input, reasoning text), for counting what reached the client.
pub fn native_delta(event: &Value) -> Option<&str> {
    match event.get("type").and_then(Value::as_str)? {
        "response.output_text.delta"
        | "response.refusal.delta"
        | "response.function_call_arguments.delta"
        | "response.custom_tool_call_input.delta"
        | "response.reasoning_summary_text.delta"
        | "response.reasoning_text.delta" => event.get("delta").and_then(Value::as_str),
        _ => None,
    }
}

/// How the client's tools are called: a tool is a function (JSON arguments) or a custom
/// tool (one free-form string), possibly inside a namespace.
#[derive(Debug, Clone, Default)]
pub struct Tools {
    custom: HashMap<String, Option<String>>,
    function: HashMap<String, Option<String>>,
}

impl Tools {
    /// The client tools of a Responses request (namespaces flattened).
    pub fn of(req: &Obj) -> Tools {
        let mut t = Tools::default();
        for tool in req
            .get("tools")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            t.add(tool, None);
        }
        t
    }

    fn add(&mut self, tool: &Value, namespace: Option<&str>) {
        let name = tool.get("name").and_then(Value::as_str);
        match (tool.get("type").and_then(Value::as_str), name) {
            (Some("function"), Some(n)) => {
                self.function
                    .insert(n.to_string(), namespace.map(str::to_string));
            }
            (Some("custom"), Some(n)) => {
                self.custom
                    .insert(n.to_string(), namespace.map(str::to_string));
            }
            (Some("namespace"), Some(ns)) => {
                for inner in tool
                    .get("tools")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    self.add(inner, Some(ns));
                }
            }
            _ => {}
        }
    }

    /// Whether `name` is a custom (free-form) tool.
    pub fn is_custom(&self, name: &str) -> bool {
        self.custom.contains_key(name) && !self.function.contains_key(name)
    }

    /// The namespace of tool `name`, if it was declared inside one.
    pub fn namespace(&self, name: &str) -> Option<&str> {
        self.function
            .get(name)
            .or_else(|| self.custom.get(name))
            .and_then(|n| n.as_deref())
    }
}

/// The input of a custom tool call from the JSON arguments of the function it was sent
/// upstream as: the `input` string, or the arguments themselves when they are not that
/// object (a model that ignored the schema).
pub fn custom_input(arguments: &str) -> String {
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) if o.is_empty() => String::new(),
        Ok(Value::Object(o)) => match o.get("input") {
            Some(Value::String(s)) => s.clone(),
            Some(other) if o.len() == 1 => other.to_string(),
            _ => arguments.to_string(),
        },
        Ok(Value::String(s)) => s,
        _ => arguments.to_string(),
    }
}

/// An output item for a tool call named `name` with JSON `arguments`: a `function_call`,
/// or a `custom_tool_call` when `name` is one of the client's custom tools.
pub fn call_item(
    tools: &Tools,
    id: Option<&str>,
    call_id: &str,
    name: &str,
    arguments: &str,
    status: &str,
) -> Value {
    let mut item = if tools.is_custom(name) {
        json!({"id": id.map_or_else(|| new_item_id("ctc"), str::to_string), "type": "custom_tool_call",
            "status": status, "call_id": call_id, "name": name, "input": custom_input(arguments)})
    } else {
        json!({"id": id.map_or_else(|| new_item_id("fc"), str::to_string), "type": "function_call",
            "status": status, "arguments": arguments, "call_id": call_id, "name": name})
    };
    if let Some(ns) = tools.namespace(name) {
        item["namespace"] = json!(ns);
    }
    item
}

fn merged(default: Value, given: Option<&Value>) -> Value {
    match (default, given) {
        (Value::Object(mut d), Some(Value::Object(g))) => {
            for (k, v) in g {
                d.insert(k.clone(), v.clone());
            }
            Value::Object(d)
        }
        (d, _) => d,
    }
}

/// The Response object for `ctx` with `status`, no output and no usage yet: the request's
/// parameters echoed with OpenAI's defaults where the client gave none.
pub fn skeleton(ctx: &ResponseCtx, status: &str) -> Value {
    let r = &ctx.request;
    let get = |k: &str, default: Value| {
        r.get(k)
            .filter(|v| !v.is_null())
            .cloned()
            .unwrap_or(default)
    };
    json!({
        "id": ctx.id,
        "object": "response",
        "created_at": ctx.created_at,
        "status": status,
        "background": false,
        "error": null,
        "incomplete_details": null,
        "instructions": get("instructions", Value::Null),
        "max_output_tokens": get("max_output_tokens", Value::Null),
        "max_tool_calls": get("max_tool_calls", Value::Null),
        "model": get("model", Value::Null),
        "output": [],
        "parallel_tool_calls": get("parallel_tool_calls", json!(true)),
        "previous_response_id": get("previous_response_id", Value::Null),
        "prompt_cache_key": get("prompt_cache_key", Value::Null),
        "reasoning": merged(json!({"effort": null, "summary": null}), r.get("reasoning")),
        "safety_identifier": get("safety_identifier", Value::Null),
        "service_tier": "default",
        "store": get("store", json!(true)),
        "temperature": get("temperature", json!(1.0)),
        "text": merged(json!({"format": {"type": "text"}, "verbosity": "medium"}), r.get("text")),
        "tool_choice": get("tool_choice", json!("auto")),
        "tools": get("tools", json!([])),
        "top_logprobs": get("top_logprobs", json!(0)),
        "top_p": get("top_p", json!(1.0)),
        "truncation": get("truncation", json!("disabled")),
        "usage": null,
        "user": get("user", Value::Null),
        "metadata": get("metadata", json!({})),
    })
}

/// Unix seconds now.
fn now_s() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Finishes a Response object: status, output, usage, and the details of an incomplete
/// (`incomplete_details.reason`) or failed (`error {code, message}`) one.
pub fn finished(
    ctx: &ResponseCtx,
    output: Vec<Value>,
    usage: &Usage,
    reasoning_tokens: i64,
    end: &End,
) -> Value {
    let mut r = skeleton(ctx, end.status());
    r["output"] = Value::Array(output);
    r["usage"] = usage_json(usage, reasoning_tokens);
    match end {
        End::Completed => r["completed_at"] = json!(now_s()),
        End::Incomplete(reason) => r["incomplete_details"] = json!({"reason": reason}),
        End::Failed(code, message) => r["error"] = json!({"code": code, "message": message}),
    }
    r
}

/// How a response ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    Completed,
    /// `max_output_tokens` or `content_filter`.
    Incomplete(&'static str),
    /// Error code (OpenAI's vocabulary) and message.
    Failed(String, String),
}

impl End {
    pub fn status(&self) -> &'static str {
        match self {
            End::Completed => "completed",
            End::Incomplete(_) => "incomplete",
            End::Failed(..) => "failed",
        }
    }

    /// The end for a Chat Completions `finish_reason`.
    pub fn from_finish_reason(reason: Option<&str>) -> End {
        match reason {
            Some("length") => End::Incomplete("max_output_tokens"),
            Some("content_filter") => End::Incomplete("content_filter"),
            _ => End::Completed,
        }
    }

    /// The end for an Anthropic `stop_reason`.
    pub fn from_stop_reason(reason: Option<&str>) -> End {
        match reason {
            Some("max_tokens" | "model_context_window_exceeded") => {
                End::Incomplete("max_output_tokens")
            }
            Some("refusal") => End::Incomplete("content_filter"),
            _ => End::Completed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(req: Value) -> ResponseCtx {
        ResponseCtx {
            id: "resp_1".into(),
            created_at: 7,
            request: req.as_object().unwrap().clone(),
        }
    }

    #[test]
    fn ids_have_their_prefix_and_are_unique() {
        let a = new_response_id();
        assert!(a.starts_with("resp_") && a.len() == 5 + 48, "{a}");
        assert_ne!(a, new_response_id());
        for (p, want) in [
            ("msg", "msg_"),
            ("fc_", "fc_"),
            ("ctc", "ctc_"),
            ("rs_", "rs_"),
        ] {
            let id = new_item_id(p);
            assert!(
                id.starts_with(want) && !id[want.len()..].contains('_'),
                "{id}"
            );
        }
    }

    #[test]
    fn usage_counts_cached_tokens_inside_input_and_round_trips() {
        let u = Usage {
            input: 10,
            output: 20,
            cache_read: 100,
            cache_write: 5,
        };
        let j = usage_json(&u, 7);
        assert_eq!(
            j,
            json!({"input_tokens": 115, "input_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 5},
                "output_tokens": 20, "output_tokens_details": {"reasoning_tokens": 7}, "total_tokens": 135})
        );
        assert_eq!(responses_usage(&j), Some(u));
        assert_eq!(reasoning_tokens(&j), 7);
        // Reasoning tokens are part of the output, never more.
        assert_eq!(
            usage_json(&u, 99)["output_tokens_details"]["reasoning_tokens"],
            20
        );
        // OpenAI's own usage: no cache writes; details missing altogether.
        assert_eq!(
            responses_usage(&json!({"input_tokens": 50, "output_tokens": 3,
                "input_tokens_details": {"cached_tokens": 80}})),
            Some(Usage {
                input: 0,
                output: 3,
                cache_read: 50,
                cache_write: 0
            })
        );
        assert_eq!(
            responses_usage(&json!({"input_tokens": 4})),
            Some(Usage {
                input: 4,
                ..Usage::default()
            })
        );
        assert_eq!(responses_usage(&json!({"output_tokens": 4})), None);
    }

    #[test]
    fn skeleton_echoes_the_request_with_openai_defaults() {
        let r = skeleton(
            &ctx(
                json!({"model": "my-model", "instructions": "Be brief.", "temperature": 0.2,
                "text": {"verbosity": "low"}, "reasoning": {"effort": "high"}, "store": false,
                "tools": [{"type": "function", "name": "f"}], "metadata": {"k": "v"}}),
            ),
            "in_progress",
        );
        assert_eq!(r["id"], "resp_1");
        assert_eq!(r["object"], "response");
        assert_eq!(r["created_at"], 7);
        assert_eq!(r["status"], "in_progress");
        assert_eq!(r["model"], "my-model");
        assert_eq!(r["instructions"], "Be brief.");
        assert_eq!(r["temperature"], 0.2);
        assert_eq!(r["top_p"], 1.0);
        assert_eq!(
            r["text"],
            json!({"format": {"type": "text"}, "verbosity": "low"})
        );
        assert_eq!(r["reasoning"], json!({"effort": "high", "summary": null}));
        assert_eq!(r["store"], false);
        assert_eq!(r["parallel_tool_calls"], true);
        assert_eq!(r["tool_choice"], "auto");
        assert_eq!(r["tools"][0]["name"], "f");
        assert_eq!(r["metadata"], json!({"k": "v"}));
        assert_eq!(r["truncation"], "disabled");
        assert!(r["usage"].is_null() && r["error"].is_null() && r["incomplete_details"].is_null());
    }

    #[test]
    fn finished_responses_carry_their_end() {
        let c = ctx(json!({"model": "m"}));
        let u = Usage::default();
        let done = finished(&c, vec![], &u, 0, &End::Completed);
        assert_eq!(done["status"], "completed");
        assert!(done["completed_at"].is_i64());
        let inc = finished(&c, vec![], &u, 0, &End::Incomplete("max_output_tokens"));
        assert_eq!(inc["incomplete_details"]["reason"], "max_output_tokens");
        let f = finished(
            &c,
            vec![],
            &u,
            0,
            &End::Failed("server_error".into(), "boom".into()),
        );
        assert_eq!(f["status"], "failed");
        assert_eq!(
            f["error"],
            json!({"code": "server_error", "message": "boom"})
        );
        assert_eq!(f["usage"]["total_tokens"], 0);
        for (r, end) in [
            ("length", End::Incomplete("max_output_tokens")),
            ("content_filter", End::Incomplete("content_filter")),
            ("stop", End::Completed),
            ("tool_calls", End::Completed),
        ] {
            assert_eq!(End::from_finish_reason(Some(r)), end);
        }
        for (r, end) in [
            ("max_tokens", End::Incomplete("max_output_tokens")),
            ("refusal", End::Incomplete("content_filter")),
            ("end_turn", End::Completed),
            ("tool_use", End::Completed),
        ] {
            assert_eq!(End::from_stop_reason(Some(r)), end);
        }
        assert_eq!(error_code(429), "rate_limit_exceeded");
        assert_eq!(error_code(402), "insufficient_quota");
        assert_eq!(error_code(502), "server_error");
    }

    #[test]
    fn native_events_are_metered() {
        let done = json!({"type": "response.completed", "sequence_number": 9, "response": {"usage":
            {"input_tokens": 30, "input_tokens_details": {"cached_tokens": 10},
             "output_tokens": 8, "output_tokens_details": {"reasoning_tokens": 3}, "total_tokens": 38}}});
        assert_eq!(
            native_usage(&done),
            Some((
                Usage {
                    input: 20,
                    output: 8,
                    cache_read: 10,
                    cache_write: 0
                },
                3
            ))
        );
        assert!(is_terminal(&done));
        let created = json!({"type": "response.created", "response": {"usage": null}});
        assert_eq!(native_usage(&created), None);
        assert!(!is_terminal(&created));
        for ty in [
            "response.output_text.delta",
            "response.function_call_arguments.delta",
            "response.custom_tool_call_input.delta",
            "response.reasoning_summary_text.delta",
        ] {
            assert_eq!(
                native_delta(&json!({"type": ty, "delta": "ab"})),
                Some("ab")
            );
        }
        assert_eq!(
            native_delta(&json!({"type": "response.output_text.done", "text": "ab"})),
            None
        );
    }

    #[test]
    fn custom_tools_are_told_apart_and_their_input_unwrapped() {
        let t = Tools::of(
            json!({"tools": [{"type": "function", "name": "shell"},
                {"type": "custom", "name": "apply_patch", "format": {"type": "grammar"}},
                {"type": "namespace", "name": "mcp", "description": "d",
                 "tools": [{"type": "function", "name": "lookup"}]},
                {"type": "web_search"}]})
            .as_object()
            .unwrap(),
        );
        assert!(t.is_custom("apply_patch") && !t.is_custom("shell") && !t.is_custom("lookup"));
        assert_eq!(t.namespace("lookup"), Some("mcp"));
        assert_eq!(
            custom_input(r#"{"input":"*** Begin Patch\n"}"#),
            "*** Begin Patch\n"
        );
        assert_eq!(custom_input("not json"), "not json");
        assert_eq!(custom_input(r#""bare""#), "bare");
        assert_eq!(custom_input("{}"), "");
        let c = call_item(
            &t,
            None,
            "call_1",
            "apply_patch",
            r#"{"input":"x"}"#,
            "completed",
        );
        assert_eq!(c["type"], "custom_tool_call");
        assert!(c["id"].as_str().unwrap().starts_with("ctc_"));
        assert_eq!(c["input"], "x");
        let f = call_item(&t, Some("fc_1"), "call_2", "lookup", "{}", "completed");
        assert_eq!(
            f,
            json!({"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{}",
                "call_id": "call_2", "name": "lookup", "namespace": "mcp"})
        );
    }
}
