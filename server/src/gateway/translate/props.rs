//! Property tests of the translators: requests, whole answers and streams of arbitrary
//! shape never make them panic, and a valid request translated to the other format and
//! back keeps its meaning (turns, text, tool calls and results, tools, limits, sampling).

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use tokengate_core::money::Usage;

use super::stream::Converter;
use super::{Format, request, response};
use crate::gateway::sse::Parser;

/// Field names the translators look at, so arbitrary values reach their deeper paths.
const KEYS: &[&str] = &[
    "type",
    "role",
    "content",
    "text",
    "choices",
    "delta",
    "message",
    "tool_calls",
    "index",
    "id",
    "function",
    "name",
    "arguments",
    "usage",
    "prompt_tokens",
    "completion_tokens",
    "input_tokens",
    "output_tokens",
    "finish_reason",
    "stop_reason",
    "content_block",
    "partial_json",
    "input",
    "tool_use_id",
    "source",
    "image_url",
    "url",
    "messages",
    "system",
    "tools",
    "tool_choice",
    "max_tokens",
    "temperature",
    "stop",
    "n",
    "x_groq",
    "prompt_tokens_details",
    "cached_tokens",
    "cache_read_input_tokens",
    "model",
];

const WORDS: &[&str] = &[
    "text",
    "tool_use",
    "tool_result",
    "image",
    "image_url",
    "function",
    "user",
    "assistant",
    "system",
    "tool",
    "message_start",
    "content_block_start",
    "content_block_delta",
    "message_delta",
    "message_stop",
    "text_delta",
    "input_json_delta",
    "stop",
    "tool_calls",
    "end_turn",
    "data:image/png;base64,AAAA",
    "{\"a\":",
    "",
];

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..5).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        prop::sample::select(WORDS).prop_map(|s| json!(s)),
        ".{0,8}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|kv| {
                Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
            }),
        ]
    })
}

fn arb_object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::vec((prop::sample::select(KEYS), arb_json()), 0..8)
        .prop_map(|kv| kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn arb_usage() -> impl Strategy<Value = Usage> {
    (0i64..1 << 40, 0i64..1 << 40, 0i64..1 << 40, 0i64..1 << 40).prop_map(
        |(input, output, cache_read, cache_write)| Usage {
            input,
            output,
            cache_read,
            cache_write,
        },
    )
}

/// `cases` cases; failures are reported with their minimal input, not written into the
/// source tree.
fn config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const FORMATS: [(Format, Format); 4] = [
    (Format::OpenAi, Format::OpenAi),
    (Format::OpenAi, Format::Anthropic),
    (Format::Anthropic, Format::OpenAi),
    (Format::Anthropic, Format::Anthropic),
];

proptest! {
    #![proptest_config(config(300))]

    #[test]
    fn request_translation_never_panics(req in arb_object(), cap in any::<i64>()) {
        let _ = request::openai_to_anthropic(&req, cap);
        let _ = request::anthropic_to_openai(&req);
    }

    #[test]
    fn answer_translation_never_panics(body in arb_json(), usage in arb_usage(), created in any::<i64>()) {
        let a = response::anthropic_to_openai(&body, &usage, created);
        let o = response::openai_to_anthropic(&body, &usage);
        prop_assert!(a.is_object() && o.is_object());
    }

    /// Any sequence of upstream events (JSON objects, `[DONE]`, garbage, comments) in any
    /// mode: no panic, and a translated stream that was not judged malformed ends with the
    /// client's terminator exactly once.
    #[test]
    fn stream_conversion_never_panics(events in prop::collection::vec(prop_oneof![
            6 => arb_object().prop_map(|o| format!("data: {}\n\n", Value::Object(o))),
            1 => Just("data: [DONE]\n\n".to_string()),
            1 => Just(": ping\n\n".to_string()),
            1 => ".{0,12}".prop_map(|s| format!("data: {s}\n\n")),
        ], 0..12), wants_usage in any::<bool>()) {
        for (up, client) in FORMATS {
            let mut conv = Converter::new(up, client, wants_usage, 0);
            let mut out = Vec::new();
            for ev in Parser::default().push(events.concat().as_bytes()) {
                conv.event(ev, &mut out);
            }
            conv.finish(&mut out);
            let _ = conv.delivered().estimated_tokens();
            if conv.malformed() || up == client {
                continue;
            }
            let evs = Parser::default().push(&out);
            let terminators = evs
                .iter()
                .filter(|e| e.data == "[DONE]" || e.event.as_deref() == Some("message_stop"))
                .count();
            prop_assert_eq!(terminators, 1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Round trips of valid requests

fn word() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9é漢 ,.!?]{1,16}"
}

fn arb_args() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(
        "[a-z]{1,6}",
        prop_oneof![
            any::<i32>().prop_map(|n| json!(n)),
            word().prop_map(|s| json!(s)),
            any::<bool>().prop_map(|b| json!(b)),
        ],
        0..3,
    )
    .prop_map(|m| json!(m))
}

fn arb_tools() -> impl Strategy<Value = Vec<(String, Option<String>)>> {
    prop::collection::vec(("[a-z_]{1,10}", prop::option::of(word())), 0..3)
}

/// One exchange: the user's text, then the assistant's text and tool calls.
type Exchange = (String, Option<String>, Vec<(String, Value)>);

fn arb_exchanges() -> impl Strategy<Value = Vec<Exchange>> {
    prop::collection::vec(
        (
            word(),
            prop::option::of(word()),
            prop::collection::vec(("[a-z_]{1,10}", arb_args()), 0..3),
        ),
        1..4,
    )
}

fn sampling() -> impl Strategy<Value = (Option<f64>, Option<f64>, Option<i64>, Vec<String>)> {
    (
        prop::option::of(prop::sample::select(vec![0.0, 0.25, 0.5, 1.0])),
        prop::option::of(prop::sample::select(vec![0.1, 0.9, 1.0])),
        prop::option::of(1i64..100_000),
        prop::collection::vec("[A-Z]{1,5}", 0..3),
    )
}

/// An OpenAI request valid in both formats: alternating turns, each tool call answered.
fn openai_request(
    system: &Option<String>,
    turns: &[Exchange],
    tools: &[(String, Option<String>)],
    choice: u8,
    parallel: Option<bool>,
    (temperature, top_p, max_tokens, stop): &(Option<f64>, Option<f64>, Option<i64>, Vec<String>),
) -> Map<String, Value> {
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(json!({"role": "system", "content": s}));
    }
    let mut call_no = 0;
    for (user, text, calls) in turns {
        messages.push(json!({"role": "user", "content": user}));
        // An assistant message needs content or tool calls.
        let text = match text {
            None if calls.is_empty() => Some("ok".to_string()),
            t => t.clone(),
        };
        let mut m = json!({"role": "assistant", "content": text});
        if !calls.is_empty() {
            let calls: Vec<Value> = calls
                .iter()
                .map(|(name, args)| {
                    call_no += 1;
                    json!({"id": format!("call_{call_no}"), "type": "function",
                        "function": {"name": name, "arguments": args.to_string()}})
                })
                .collect();
            m["tool_calls"] = json!(calls);
        }
        messages.push(m.clone());
        for c in m["tool_calls"].as_array().into_iter().flatten() {
            messages.push(json!({"role": "tool", "tool_call_id": c["id"],
                "content": format!("result of {}", c["function"]["name"])}));
        }
    }
    let mut req = json!({"model": "m", "messages": messages});
    if let Some(t) = temperature {
        req["temperature"] = json!(t);
    }
    if let Some(p) = top_p {
        req["top_p"] = json!(p);
    }
    if let Some(n) = max_tokens {
        req["max_tokens"] = json!(n);
    }
    if !stop.is_empty() {
        req["stop"] = json!(stop);
    }
    if !tools.is_empty() {
        req["tools"] = json!(
            tools
                .iter()
                .map(|(name, d)| {
                    let mut f = json!({"name": name, "parameters": {"type": "object",
                "properties": {"x": {"type": "string"}}}});
                    if let Some(d) = d {
                        f["description"] = json!(d);
                    }
                    json!({"type": "function", "function": f})
                })
                .collect::<Vec<_>>()
        );
        match choice % 5 {
            0 => {}
            1 => req["tool_choice"] = json!("auto"),
            2 => req["tool_choice"] = json!("none"),
            3 => req["tool_choice"] = json!("required"),
            _ => req["tool_choice"] = json!({"type": "function", "function": {"name": tools[0].0}}),
        }
        if let Some(p) = parallel {
            req["parallel_tool_calls"] = json!(p);
        }
    }
    req.as_object().cloned().unwrap_or_default()
}

/// What an OpenAI request means, independent of how it is spelled.
fn openai_meaning(req: &Value) -> Value {
    let mut turns = Vec::new();
    for m in req["messages"].as_array().into_iter().flatten() {
        let text = match &m["content"] {
            Value::String(s) => s.clone(),
            Value::Array(parts) => parts.iter().filter_map(|p| p["text"].as_str()).collect(),
            _ => String::new(),
        };
        let calls: Vec<Value> = m["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| {
                let args: Value =
                    serde_json::from_str(c["function"]["arguments"].as_str().unwrap_or("{}"))
                        .unwrap_or(Value::Null);
                json!([c["id"], c["function"]["name"], args])
            })
            .collect();
        turns.push(json!([m["role"], text, calls, m["tool_call_id"]]));
    }
    let tools: Vec<Value> = req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            json!([
                t["function"]["name"],
                t["function"]["description"],
                t["function"]["parameters"]
            ])
        })
        .collect();
    let has_tools = !tools.is_empty();
    let choice = if has_tools {
        req.get("tool_choice").cloned().unwrap_or(json!("auto"))
    } else {
        Value::Null
    };
    let parallel_off =
        has_tools && choice != json!("none") && req["parallel_tool_calls"] == json!(false);
    let stop = match &req["stop"] {
        Value::String(s) => json!([s]),
        other => other.clone(),
    };
    json!({"turns": turns, "tools": tools, "choice": choice, "parallel_off": parallel_off,
        "temperature": req["temperature"], "top_p": req["top_p"],
        "max_tokens": req.get("max_completion_tokens").unwrap_or(&req["max_tokens"]),
        "stop": stop, "model": req["model"]})
}

/// What an Anthropic request means: each turn's text, tool uses and tool results.
fn anthropic_meaning(req: &Value) -> Value {
    let system: String = match &req["system"] {
        Value::String(s) => s.clone(),
        Value::Array(b) => b.iter().filter_map(|x| x["text"].as_str()).collect(),
        _ => String::new(),
    };
    let mut turns = Vec::new();
    for m in req["messages"].as_array().into_iter().flatten() {
        let blocks = match &m["content"] {
            Value::String(s) => vec![json!({"type": "text", "text": s})],
            Value::Array(b) => b.clone(),
            _ => Vec::new(),
        };
        let text: String = blocks.iter().filter_map(|b| b["text"].as_str()).collect();
        let uses: Vec<Value> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_use")
            .map(|b| json!([b["id"], b["name"], b["input"]]))
            .collect();
        let results: Vec<Value> = blocks
            .iter()
            .filter(|b| b["type"] == "tool_result")
            .map(|b| json!([b["tool_use_id"], b["content"]]))
            .collect();
        turns.push(json!([m["role"], text, uses, results]));
    }
    let tools: Vec<Value> = req["tools"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| json!([t["name"], t["description"], t["input_schema"]]))
        .collect();
    let mut choice = req.get("tool_choice").cloned().unwrap_or(Value::Null);
    if !tools.is_empty() && choice.is_null() {
        choice = json!({"type": "auto"});
    }
    json!({"system": system, "turns": turns, "tools": tools, "choice": choice,
        "temperature": req["temperature"], "top_p": req["top_p"],
        "max_tokens": req["max_tokens"], "stop": req["stop_sequences"], "model": req["model"]})
}

/// An Anthropic request: alternating turns, tool results answering the previous turn's
/// tool uses ahead of the user's text.
fn anthropic_request(
    system: &Option<String>,
    turns: &[Exchange],
    tools: &[(String, Option<String>)],
    choice: u8,
    (temperature, top_p, max_tokens, stop): &(Option<f64>, Option<f64>, Option<i64>, Vec<String>),
) -> Map<String, Value> {
    let mut messages = Vec::new();
    let mut pending: Vec<Value> = Vec::new();
    let mut use_no = 0;
    for (user, text, calls) in turns {
        let mut blocks = std::mem::take(&mut pending);
        blocks.push(json!({"type": "text", "text": user}));
        messages.push(json!({"role": "user", "content": blocks}));
        let mut blocks = Vec::new();
        if let Some(t) = text {
            blocks.push(json!({"type": "text", "text": t}));
        }
        for (name, args) in calls {
            use_no += 1;
            let id = format!("toolu_{use_no}");
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": args}));
            pending.push(json!({"type": "tool_result", "tool_use_id": id,
                "content": format!("result of {name}")}));
        }
        if blocks.is_empty() {
            blocks.push(json!({"type": "text", "text": "ok"}));
        }
        messages.push(json!({"role": "assistant", "content": blocks}));
    }
    if !pending.is_empty() {
        messages.push(json!({"role": "user", "content": pending}));
    }
    let mut req = json!({"model": "m", "messages": messages,
        "max_tokens": max_tokens.unwrap_or(1024)});
    if let Some(s) = system {
        req["system"] = json!(s);
    }
    if let Some(t) = temperature {
        req["temperature"] = json!(t);
    }
    if let Some(p) = top_p {
        req["top_p"] = json!(p);
    }
    if !stop.is_empty() {
        req["stop_sequences"] = json!(stop);
    }
    if !tools.is_empty() {
        req["tools"] = json!(
            tools
                .iter()
                .map(|(name, d)| {
                    let mut t = json!({"name": name, "input_schema": {"type": "object",
                "properties": {"x": {"type": "string"}}}});
                    if let Some(d) = d {
                        t["description"] = json!(d);
                    }
                    t
                })
                .collect::<Vec<_>>()
        );
        match choice % 6 {
            0 => {}
            1 => req["tool_choice"] = json!({"type": "auto"}),
            2 => req["tool_choice"] = json!({"type": "none"}),
            3 => req["tool_choice"] = json!({"type": "any"}),
            4 => req["tool_choice"] = json!({"type": "any", "disable_parallel_tool_use": true}),
            _ => req["tool_choice"] = json!({"type": "tool", "name": tools[0].0}),
        }
    }
    req.as_object().cloned().unwrap_or_default()
}

fn as_obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

proptest! {
    #![proptest_config(config(200))]

    #[test]
    fn openai_request_survives_a_round_trip(system in prop::option::of(word()),
        turns in arb_exchanges(), tools in arb_tools(), choice in any::<u8>(),
        parallel in prop::option::of(any::<bool>()), s in sampling()) {
        let req = openai_request(&system, &turns, &tools, choice, parallel, &s);
        let anthropic = request::openai_to_anthropic(&req, 4096);
        prop_assert!(anthropic.is_ok(), "{:?}", anthropic);
        let anthropic = anthropic.unwrap_or_default();
        let back = request::anthropic_to_openai(&as_obj(anthropic.clone()));
        prop_assert!(back.is_ok(), "{:?}", back);
        let back = back.unwrap_or_default();
        let mut expected = openai_meaning(&Value::Object(req));
        if expected["max_tokens"].is_null() {
            expected["max_tokens"] = json!(4096);
        }
        prop_assert_eq!(openai_meaning(&back), expected, "via {}", anthropic);
    }

    #[test]
    fn anthropic_request_survives_a_round_trip(system in prop::option::of(word()),
        turns in arb_exchanges(), tools in arb_tools(), choice in any::<u8>(), s in sampling()) {
        let req = anthropic_request(&system, &turns, &tools, choice, &s);
        let openai = request::anthropic_to_openai(&req);
        prop_assert!(openai.is_ok(), "{:?}", openai);
        let openai = openai.unwrap_or_default();
        let back = request::openai_to_anthropic(&as_obj(openai.clone()), 1);
        prop_assert!(back.is_ok(), "{:?}", back);
        let back = back.unwrap_or_default();
        prop_assert_eq!(anthropic_meaning(&back), anthropic_meaning(&Value::Object(req)),
            "via {}", openai);
    }
}

/// The strategies above produce what they claim (a guard against a vacuous property).
#[test]
fn generated_requests_have_tools_and_turns() {
    let turns: Vec<Exchange> = vec![(
        "hi".into(),
        Some("calling".into()),
        vec![("f".into(), json!({"a": 1}))],
    )];
    let tools = vec![("f".to_string(), Some("d".to_string()))];
    let s = (Some(0.5), None, Some(10), vec!["X".to_string()]);
    let o = openai_request(&Some("sys".into()), &turns, &tools, 4, Some(false), &s);
    let m = openai_meaning(&Value::Object(o));
    assert_eq!(m["turns"].as_array().map(Vec::len), Some(4));
    let a = anthropic_request(&None, &turns, &tools, 5, &s);
    let m = anthropic_meaning(&Value::Object(a));
    assert_eq!(m["turns"].as_array().map(Vec::len), Some(3));
}

// ---------------------------------------------------------------------------------------
// Streams: an OpenAI stream translated to Anthropic events and back keeps its answer

/// Where an OpenAI-compatible upstream reports usage.
#[derive(Debug, Clone, Copy)]
enum UsageAt {
    /// A trailing chunk with empty choices (OpenAI).
    Trailing,
    /// The chunk carrying `finish_reason` (OpenRouter, DeepSeek, Mistral).
    Finish,
    /// A running total on every chunk (vLLM continuous usage, xAI).
    Every,
    /// Only in `x_groq.usage` of the finish chunk (Groq).
    Groq,
    /// A chunk after the finish chunk that still has a choice.
    LaterWithChoice,
}

#[derive(Debug, Clone)]
struct Answer {
    text: Vec<String>,
    /// (id, name, argument fragments)
    tools: Vec<(String, String, Vec<String>)>,
    finish: &'static str,
    prompt: i64,
    cached: i64,
    completion: i64,
    usage_at: UsageAt,
}

fn arb_answer() -> impl Strategy<Value = Answer> {
    let tool = (
        "[a-z]{1,6}",
        arb_args(),
        prop::collection::vec(any::<usize>(), 0..4),
    )
        .prop_map(|(name, args, cuts)| {
            let json = args.to_string();
            let mut points: Vec<usize> = cuts
                .iter()
                .map(|c| c % (json.len() + 1))
                .filter(|p| json.is_char_boundary(*p))
                .collect();
            points.sort_unstable();
            let mut frags = Vec::new();
            let mut prev = 0;
            for p in points {
                frags.push(json[prev..p].to_string());
                prev = p;
            }
            frags.push(json[prev..].to_string());
            (name, frags)
        });
    (
        prop::collection::vec(word(), 0..5),
        prop::collection::vec(tool, 0..3),
        prop::sample::select(vec!["stop", "length"]),
        (1i64..100_000, 0i64..100_000, 1i64..10_000),
        prop::sample::select(vec![
            UsageAt::Trailing,
            UsageAt::Finish,
            UsageAt::Every,
            UsageAt::Groq,
            UsageAt::LaterWithChoice,
        ]),
    )
        .prop_map(
            |(text, tools, finish, (prompt, cached, completion), usage_at)| {
                let tools: Vec<(String, String, Vec<String>)> = tools
                    .into_iter()
                    .enumerate()
                    .map(|(i, (name, frags))| (format!("call_{i}"), name, frags))
                    .collect();
                Answer {
                    finish: if tools.is_empty() {
                        finish
                    } else {
                        "tool_calls"
                    },
                    text,
                    tools,
                    prompt,
                    cached: cached.min(prompt),
                    completion,
                    usage_at,
                }
            },
        )
}

/// The answer as an OpenAI-compatible upstream streams it.
fn openai_stream(a: &Answer) -> String {
    let usage = json!({"prompt_tokens": a.prompt, "completion_tokens": a.completion,
        "total_tokens": a.prompt + a.completion,
        "prompt_tokens_details": {"cached_tokens": a.cached}});
    let every = matches!(a.usage_at, UsageAt::Every);
    let chunk = |choices: Value, extra: Option<(&str, Value)>| {
        let mut c = json!({"id": "chatcmpl-p", "object": "chat.completion.chunk",
            "created": 1, "model": "m", "choices": choices});
        if every {
            c["usage"] = usage.clone();
        }
        if let Some((k, v)) = extra {
            c[k] = v;
        }
        format!("data: {c}\n\n")
    };
    let delta = |d: Value| json!([{"index": 0, "delta": d, "finish_reason": null}]);
    let mut s = chunk(delta(json!({"role": "assistant", "content": ""})), None);
    for t in &a.text {
        s += &chunk(delta(json!({"content": t})), None);
    }
    for (i, (id, name, frags)) in a.tools.iter().enumerate() {
        s += &chunk(
            delta(
                json!({"tool_calls": [{"index": i, "id": id, "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
            ),
            None,
        );
        for f in frags {
            s += &chunk(
                delta(json!({"tool_calls": [{"index": i, "function": {"arguments": f}}]})),
                None,
            );
        }
    }
    let finish = json!([{"index": 0, "delta": {}, "finish_reason": a.finish}]);
    s += &match a.usage_at {
        UsageAt::Finish => chunk(finish, Some(("usage", usage.clone()))),
        UsageAt::Groq => chunk(
            finish,
            Some(("x_groq", json!({"id": "req_1", "usage": usage}))),
        ),
        _ => chunk(finish, None),
    };
    match a.usage_at {
        UsageAt::Trailing => s += &chunk(json!([]), Some(("usage", usage.clone()))),
        UsageAt::LaterWithChoice => {
            s += &chunk(
                json!([{"index": 0, "delta": {"content": ""}, "finish_reason": null}]),
                Some(("usage", usage.clone())),
            )
        }
        _ => {}
    }
    s + "data: [DONE]\n\n"
}

fn convert(input: &[u8], up: Format, client: Format, chunk: usize) -> (Vec<u8>, Option<Usage>) {
    let mut conv = Converter::new(up, client, true, 0);
    let mut parser = Parser::default();
    let mut out = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        for ev in parser.push(piece) {
            conv.event(ev, &mut out);
        }
    }
    if let Some(ev) = parser.finish() {
        conv.event(ev, &mut out);
    }
    conv.finish(&mut out);
    (out, conv.usage())
}

/// (text, tool calls as (id, name, arguments), finish_reason, usage) as an OpenAI SDK
/// assembles them.
fn assemble_openai(bytes: &[u8]) -> (String, Vec<(String, String, String)>, Value, Value) {
    let mut text = String::new();
    let mut tools: std::collections::BTreeMap<i64, (String, String, String)> =
        std::collections::BTreeMap::new();
    let (mut finish, mut usage) = (Value::Null, Value::Null);
    for ev in Parser::default().push(bytes) {
        let Ok(c) = serde_json::from_str::<Value>(&ev.data) else {
            continue;
        };
        if c["usage"].is_object() {
            usage = c["usage"].clone();
        }
        for ch in c["choices"].as_array().into_iter().flatten() {
            text.push_str(ch["delta"]["content"].as_str().unwrap_or(""));
            for tc in ch["delta"]["tool_calls"].as_array().into_iter().flatten() {
                let e = tools.entry(tc["index"].as_i64().unwrap_or(-1)).or_default();
                if let Some(id) = tc["id"].as_str() {
                    e.0 = id.to_string();
                }
                e.1.push_str(tc["function"]["name"].as_str().unwrap_or(""));
                e.2.push_str(tc["function"]["arguments"].as_str().unwrap_or(""));
            }
            if ch["finish_reason"].is_string() {
                finish = ch["finish_reason"].clone();
            }
        }
    }
    (text, tools.into_values().collect(), finish, usage)
}

proptest! {
    #![proptest_config(config(200))]

    /// OpenAI upstream → Anthropic client → (as an Anthropic upstream) → OpenAI client:
    /// text, tool calls, finish reason and every usage count survive, wherever the usage
    /// was reported and however the bytes were chunked.
    #[test]
    fn openai_stream_survives_a_round_trip_through_anthropic(a in arb_answer(),
        chunk in 1usize..64) {
        let original = openai_stream(&a);
        let (anthropic, billed) =
            convert(original.as_bytes(), Format::OpenAi, Format::Anthropic, chunk);
        let expected_usage = Usage {
            input: a.prompt - a.cached,
            output: a.completion,
            cache_read: a.cached,
            cache_write: 0,
        };
        prop_assert_eq!(billed, Some(expected_usage));
        let (back, billed_back) =
            convert(&anthropic, Format::Anthropic, Format::OpenAi, chunk);
        prop_assert_eq!(billed_back, Some(expected_usage));
        let (text, tools, finish, usage) = assemble_openai(&back);
        prop_assert_eq!(text, a.text.concat());
        let expected_tools: Vec<(String, String, String)> = a
            .tools
            .iter()
            .map(|(id, name, frags)| (id.clone(), name.clone(), frags.concat()))
            .collect();
        prop_assert_eq!(tools, expected_tools);
        prop_assert_eq!(finish, json!(a.finish));
        prop_assert_eq!(&usage["prompt_tokens"], &json!(a.prompt));
        prop_assert_eq!(&usage["completion_tokens"], &json!(a.completion));
        prop_assert_eq!(&usage["prompt_tokens_details"]["cached_tokens"], &json!(a.cached));
    }
}
