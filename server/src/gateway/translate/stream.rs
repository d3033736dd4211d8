//! Streams from the upstream's wire format to the client's, one SSE event at a time, never
//! buffering the answer. Every converter also records the upstream's reported usage and
//! counts what reached the client, so a cut-off stream can be billed on what was delivered.
//!
//! Same format both sides: events pass through byte for byte (OpenAI's usage chunk, which
//! tokengate always asks for, is removed again unless the client asked for it). Across
//! formats: OpenAI chunks become Anthropic's `message_start`, `ping`,
//! `content_block_start`/`_delta`/`_stop`, `message_delta`, `message_stop` sequence, and
//! Anthropic events become `chat.completion.chunk`s ending in `data: [DONE]`.
//!
//! Usage is taken from wherever an OpenAI-compatible upstream puts it: a trailing chunk
//! with empty choices (OpenAI), the chunk carrying `finish_reason` (OpenRouter, DeepSeek,
//! Mistral, vLLM), every chunk cumulatively (vLLM's continuous usage, xAI), or Groq's
//! `x_groq.usage`; the last report wins. It reaches the client in the client's own
//! position: Anthropic's `message_delta` (all counts, cumulative, as Anthropic sends them),
//! or for an OpenAI client that asked for usage a `usage` object on some chunk, added as a
//! trailing chunk before `[DONE]` when the upstream had put it nowhere the SDKs read.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};
use tokengate_core::money::Usage;

use super::{
    Format, anthropic_usage, anthropic_usage_json, finish_reason, openai_usage, openai_usage_json,
    stop_reason,
};
use crate::gateway::sse::Event;

/// What reached the client so far.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Delivered {
    /// Characters of generated text and tool-call arguments.
    pub chars: usize,
    /// Events that carried any of them.
    pub events: usize,
}

impl Delivered {
    pub(super) fn add(&mut self, text: &str) {
        if !text.is_empty() {
            self.chars += text.len();
            self.events += 1;
        }
    }

    /// Output tokens to bill when the upstream reported none: 4 characters per token,
    /// rounded up, but never more than the number of events that carried text (each event
    /// holds at least one token), so the estimate cannot exceed what was delivered.
    pub fn estimated_tokens(&self) -> i64 {
        (self.chars.div_ceil(4)).min(self.events) as i64
    }
}

/// Whether an SSE event holds nothing but comment lines.
fn comments_only(raw: &[u8]) -> bool {
    raw.split(|b| *b == b'\n' || *b == b'\r')
        .all(|line| line.is_empty() || line.starts_with(b":"))
}

/// The usage object of an OpenAI-format chunk, wherever the upstream put it.
pub(super) fn chunk_usage(v: &Value) -> Option<&Value> {
    v.get("usage")
        .filter(|u| u.is_object())
        .or_else(|| v.pointer("/x_groq/usage").filter(|u| u.is_object()))
}

fn openai_event(v: &Value) -> Bytes {
    Bytes::from(format!("data: {v}\n\n"))
}

fn anthropic_event(v: &Value) -> Bytes {
    let ty = v.get("type").and_then(Value::as_str).unwrap_or("message");
    Bytes::from(format!("event: {ty}\ndata: {v}\n\n"))
}

/// The error event that ends a stream interrupted upstream, in the client's format.
pub fn error_event(client: Format, message: &str) -> Bytes {
    match client {
        Format::OpenAi => openai_event(&json!({"error": {"message": message, "type": "api_error",
            "param": null, "code": "upstream_error"}})),
        Format::Anthropic => anthropic_event(&json!({"type": "error",
            "error": {"type": "api_error", "message": message}})),
    }
}

/// Converts one upstream stream for one client.
pub struct Converter {
    mode: Mode,
    usage: Option<Usage>,
    delivered: Delivered,
    /// The client's terminator (`[DONE]` / `message_stop`) has been sent.
    done: bool,
    /// The upstream sent an event that is not valid JSON.
    malformed: bool,
}

enum Mode {
    OpenAiPassthrough(Passthrough),
    AnthropicPassthrough,
    OpenAiToAnthropic(O2A),
    AnthropicToOpenAi(A2O),
}

impl Converter {
    /// A converter from `upstream` format to `client` format.
    pub fn new(upstream: Format, client: Format, client_wants_usage: bool, created: i64) -> Self {
        let mode = match (upstream, client) {
            (Format::OpenAi, Format::OpenAi) => Mode::OpenAiPassthrough(Passthrough {
                client_wants_usage,
                created,
                ..Passthrough::default()
            }),
            (Format::Anthropic, Format::Anthropic) => Mode::AnthropicPassthrough,
            (Format::OpenAi, Format::Anthropic) => Mode::OpenAiToAnthropic(O2A::default()),
            (Format::Anthropic, Format::OpenAi) => Mode::AnthropicToOpenAi(A2O {
                client_wants_usage,
                created,
                ..A2O::default()
            }),
        };
        Converter {
            mode,
            usage: None,
            delivered: Delivered::default(),
            done: false,
            malformed: false,
        }
    }

    /// Whether the client has received the stream's terminator: the answer is complete
    /// and nothing more needs to be read from the upstream.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the upstream sent an event that is not valid JSON; the stream must end
    /// with an error event instead of passing it on.
    pub fn malformed(&self) -> bool {
        self.malformed
    }

    /// The usage the upstream reported, if it did.
    pub fn usage(&self) -> Option<Usage> {
        self.usage
    }

    pub fn delivered(&self) -> Delivered {
        self.delivered
    }

    /// Converts one upstream event, appending what the client should receive to `out`.
    pub fn event(&mut self, ev: Event, out: &mut Vec<u8>) {
        if self.done || self.malformed {
            return;
        }
        // Servers differ in the whitespace around the payload; JSON ignores it, and so
        // does the `[DONE]` check.
        let data = ev.data.trim();
        let is_done = data == "[DONE]";
        let parsed: Option<Value> = if data.is_empty() || is_done {
            None
        } else {
            match serde_json::from_str::<Value>(data) {
                Ok(v) if v.is_object() => Some(v),
                _ => {
                    self.malformed = true;
                    return;
                }
            }
        };
        if let Some(v) = &parsed
            && matches!(self.mode, Mode::AnthropicPassthrough)
            && v.get("type").and_then(Value::as_str) == Some("message_stop")
        {
            self.done = true;
        }
        match &mut self.mode {
            Mode::OpenAiPassthrough(p) => {
                if is_done {
                    p.add_usage(&self.usage, out);
                    self.done = true;
                }
                let Some(mut v) = parsed else {
                    // `[DONE]` and keep-alive comments pass; an event without data but with
                    // other fields (`retry:`, `id:`, a bare `event:`) is dropped, since the
                    // OpenAI SDKs try to parse its empty data as JSON and fail.
                    if is_done || comments_only(&ev.raw) {
                        out.extend_from_slice(&ev.raw);
                    }
                    return;
                };
                p.remember(&v);
                for c in v
                    .get("choices")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if let Some(t) = c.pointer("/delta/content").and_then(Value::as_str) {
                        self.delivered.add(t);
                    }
                    for tc in c
                        .pointer("/delta/tool_calls")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                    {
                        if let Some(a) = tc.pointer("/function/arguments").and_then(Value::as_str) {
                            self.delivered.add(a);
                        }
                    }
                }
                let Some(u) = chunk_usage(&v) else {
                    out.extend_from_slice(&ev.raw);
                    return;
                };
                if let Some(u) = openai_usage(u) {
                    self.usage = Some(u);
                }
                if p.client_wants_usage {
                    p.usage_sent |= v.get("usage").is_some_and(Value::is_object);
                    out.extend_from_slice(&ev.raw);
                    return;
                }
                if v.get("usage").is_none_or(|u| !u.is_object()) {
                    // Only in a provider-specific field (x_groq): forwarded as it came.
                    out.extend_from_slice(&ev.raw);
                    return;
                }
                let no_choices = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_none_or(Vec::is_empty);
                if no_choices {
                    return;
                }
                if let Some(o) = v.as_object_mut() {
                    o.remove("usage");
                }
                out.extend_from_slice(&openai_event(&v));
            }
            Mode::AnthropicPassthrough => {
                if let Some(v) = &parsed {
                    merge_anthropic_usage(&mut self.usage, v);
                    if v.get("type").and_then(Value::as_str) == Some("content_block_delta") {
                        let d = v.get("delta").unwrap_or(&Value::Null);
                        let text = d
                            .get("text")
                            .or_else(|| d.get("partial_json"))
                            .and_then(Value::as_str);
                        self.delivered.add(text.unwrap_or(""));
                    }
                }
                out.extend_from_slice(&ev.raw);
            }
            Mode::OpenAiToAnthropic(s) => {
                if is_done {
                    s.finish(&self.usage, out);
                    self.done = true;
                } else if let Some(v) = parsed {
                    if let Some(u) = chunk_usage(&v).and_then(openai_usage) {
                        self.usage = Some(u);
                    }
                    s.chunk(&v, &self.usage, &mut self.delivered, out);
                }
            }
            Mode::AnthropicToOpenAi(s) => {
                if let Some(v) = parsed {
                    merge_anthropic_usage(&mut self.usage, &v);
                    s.event(&v, &self.usage, &mut self.delivered, out);
                    self.done = s.finished;
                }
            }
        }
    }

    /// Called when the upstream stream ended cleanly: closes a translated stream that the
    /// upstream ended without its terminator.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.malformed {
            return;
        }
        if self.done {
            return;
        }
        match &mut self.mode {
            Mode::OpenAiToAnthropic(s) => s.finish(&self.usage, out),
            Mode::AnthropicToOpenAi(s) => s.finish(&self.usage, out),
            // An upstream that closed without `[DONE]`: its usage still reaches a client
            // that asked for it (the terminator itself is left out, as the upstream did).
            Mode::OpenAiPassthrough(p) => p.add_usage(&self.usage, out),
            Mode::AnthropicPassthrough => {}
        }
        self.done = true;
    }
}

/// OpenAI chunks relayed to an OpenAI client.
#[derive(Default)]
struct Passthrough {
    client_wants_usage: bool,
    created: i64,
    id: Value,
    model: Value,
    /// A chunk with a top-level `usage` object has reached the client.
    usage_sent: bool,
}

impl Passthrough {
    fn remember(&mut self, v: &Value) {
        if self.id.is_null()
            && let Some(id) = v.get("id")
        {
            self.id = id.clone();
            self.model = v.get("model").cloned().unwrap_or(Value::Null);
            if let Some(c) = v.get("created").and_then(Value::as_i64) {
                self.created = c;
            }
        }
    }

    /// Before the terminator: the usage chunk the client asked for, if the upstream's
    /// usage was not in a place the client reads.
    fn add_usage(&mut self, usage: &Option<Usage>, out: &mut Vec<u8>) {
        if let Some(u) = usage
            && self.client_wants_usage
            && !self.usage_sent
        {
            self.usage_sent = true;
            out.extend_from_slice(&openai_event(&json!({"id": self.id,
                "object": "chat.completion.chunk", "created": self.created,
                "model": self.model, "choices": [], "usage": openai_usage_json(u)})));
        }
    }
}

/// Folds the usage of an Anthropic `message_start` or `message_delta` event into `usage`
/// (later counts are cumulative and replace earlier ones field by field).
pub(super) fn merge_anthropic_usage(usage: &mut Option<Usage>, v: &Value) {
    let u = match v.get("type").and_then(Value::as_str) {
        Some("message_start") => v.pointer("/message/usage"),
        Some("message_delta") => v.get("usage"),
        _ => None,
    };
    let Some(u) = u.filter(|u| u.is_object()) else {
        return;
    };
    let Some(new) = anthropic_usage(u) else {
        return;
    };
    let cur = usage.get_or_insert_with(Usage::default);
    let has = |k: &str| u.get(k).is_some_and(Value::is_i64);
    if has("input_tokens") {
        cur.input = new.input;
    }
    if has("output_tokens") {
        cur.output = new.output;
    }
    if has("cache_read_input_tokens") {
        cur.cache_read = new.cache_read;
    }
    if has("cache_creation_input_tokens") {
        cur.cache_write = new.cache_write;
    }
}

/// OpenAI chunks → Anthropic events.
#[derive(Default)]
struct O2A {
    started: bool,
    finished: bool,
    /// The open content block: its index and whether it is text.
    open: Option<(usize, bool)>,
    next_index: usize,
    /// OpenAI tool-call index → its id and Anthropic block index.
    tools: HashMap<i64, (Option<String>, usize)>,
    stop_reason: Option<&'static str>,
}

impl O2A {
    /// `message_start`, with the input counts when the upstream has already reported them
    /// (a running total on its first chunk); otherwise zeros, and the counts follow in
    /// `message_delta`.
    fn start(&mut self, id: &str, model: &Value, usage: &Option<Usage>, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let id = if id.starts_with("msg_") {
            id.to_string()
        } else {
            format!("msg_{id}")
        };
        out.extend_from_slice(&anthropic_event(
            &json!({"type": "message_start", "message": {
            "id": id, "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null,
            "usage": match usage {
                Some(u) => json!({"input_tokens": u.input, "output_tokens": 0,
                    "cache_read_input_tokens": u.cache_read,
                    "cache_creation_input_tokens": u.cache_write}),
                None => json!({"input_tokens": 0, "output_tokens": 0}),
            }}}),
        ));
        out.extend_from_slice(&anthropic_event(&json!({"type": "ping"})));
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            out.extend_from_slice(&anthropic_event(
                &json!({"type": "content_block_stop", "index": index}),
            ));
        }
    }

    fn open_block(&mut self, block: Value, text: bool, out: &mut Vec<u8>) -> usize {
        self.close_block(out);
        let index = self.next_index;
        self.next_index += 1;
        out.extend_from_slice(&anthropic_event(
            &json!({"type": "content_block_start", "index": index, "content_block": block}),
        ));
        self.open = Some((index, text));
        index
    }

    fn chunk(
        &mut self,
        v: &Value,
        usage: &Option<Usage>,
        delivered: &mut Delivered,
        out: &mut Vec<u8>,
    ) {
        self.start(
            v.get("id").and_then(Value::as_str).unwrap_or("tokengate"),
            v.get("model").unwrap_or(&Value::Null),
            usage,
            out,
        );
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = match self.open {
                Some((i, true)) => i,
                _ => self.open_block(json!({"type": "text", "text": ""}), true, out),
            };
            delivered.add(text);
            out.extend_from_slice(&anthropic_event(
                &json!({"type": "content_block_delta", "index": index,
                "delta": {"type": "text_delta", "text": text}}),
            ));
        }
        for tc in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let oi = tc.get("index").and_then(Value::as_i64).unwrap_or(0);
            let id = tc.get("id").and_then(Value::as_str);
            // A known index continues its call, whether or not the upstream repeats the
            // id on every delta (some proxies do); a new id at a known index is a new call.
            let index = match self.tools.get(&oi) {
                Some((known, i)) if id.is_none() || id == known.as_deref() => *i,
                _ => {
                    let block = json!({"type": "tool_use",
                        "id": tc.get("id").cloned().unwrap_or(json!(format!("toolu_{oi}"))),
                        "name": tc.pointer("/function/name").cloned().unwrap_or(json!("")),
                        "input": {}});
                    let i = self.open_block(block, false, out);
                    self.tools.insert(oi, (id.map(str::to_string), i));
                    i
                }
            };
            if let Some(args) = tc
                .pointer("/function/arguments")
                .and_then(Value::as_str)
                .filter(|a| !a.is_empty())
            {
                delivered.add(args);
                out.extend_from_slice(&anthropic_event(
                    &json!({"type": "content_block_delta", "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": args}}),
                ));
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.stop_reason = Some(stop_reason(r));
        }
    }

    fn finish(&mut self, usage: &Option<Usage>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start("tokengate", &Value::Null, usage, out);
        self.finished = true;
        self.close_block(out);
        out.extend_from_slice(&anthropic_event(&json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop_reason.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": anthropic_usage_json(&usage.unwrap_or_default())})));
        out.extend_from_slice(&anthropic_event(&json!({"type": "message_stop"})));
    }
}

/// Anthropic events → OpenAI chunks.
#[derive(Default)]
struct A2O {
    client_wants_usage: bool,
    created: i64,
    id: String,
    model: Value,
    /// Anthropic block index → OpenAI tool-call index.
    tools: HashMap<i64, usize>,
    /// `data: [DONE]` has been sent.
    finished: bool,
}

impl A2O {
    fn chunk(&self, delta: Value, finish: Option<&str>) -> Bytes {
        openai_event(
            &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
            "model": self.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]}),
        )
    }

    fn event(
        &mut self,
        v: &Value,
        usage: &Option<Usage>,
        delivered: &mut Delivered,
        out: &mut Vec<u8>,
    ) {
        match v.get("type").and_then(Value::as_str) {
            Some("message_start") => {
                let m = v.get("message").unwrap_or(&Value::Null);
                self.id = format!(
                    "chatcmpl-{}",
                    m.get("id").and_then(Value::as_str).unwrap_or("tokengate")
                );
                self.model = m.get("model").cloned().unwrap_or(Value::Null);
                out.extend_from_slice(
                    &self.chunk(json!({"role": "assistant", "content": ""}), None),
                );
            }
            Some("content_block_start") => {
                let block = v.get("content_block").unwrap_or(&Value::Null);
                match block.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let index = self.tools.len();
                        self.tools
                            .insert(v.get("index").and_then(Value::as_i64).unwrap_or(0), index);
                        out.extend_from_slice(&self.chunk(
                            json!({"tool_calls": [{"index": index,
                            "id": block.get("id"), "type": "function",
                            "function": {"name": block.get("name"), "arguments": ""}}]}),
                            None,
                        ));
                    }
                    Some("text") => {
                        if let Some(t) = block
                            .get("text")
                            .and_then(Value::as_str)
                            .filter(|t| !t.is_empty())
                        {
                            delivered.add(t);
                            out.extend_from_slice(&self.chunk(json!({"content": t}), None));
                        }
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => {
                        let t = d.get("text").and_then(Value::as_str).unwrap_or("");
                        delivered.add(t);
                        out.extend_from_slice(&self.chunk(json!({"content": t}), None));
                    }
                    Some("input_json_delta") => {
                        let a = d.get("partial_json").and_then(Value::as_str).unwrap_or("");
                        let block = v.get("index").and_then(Value::as_i64).unwrap_or(0);
                        if let Some(index) = self.tools.get(&block) {
                            delivered.add(a);
                            out.extend_from_slice(&self.chunk(
                                json!({"tool_calls": [{"index": index, "function": {"arguments": a}}]}), None));
                        }
                    }
                    _ => {}
                }
            }
            Some("message_delta") => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    out.extend_from_slice(&self.chunk(json!({}), Some(finish_reason(r))));
                }
            }
            Some("message_stop") => self.finish(usage, out),
            Some("error") => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("upstream error");
                out.extend_from_slice(&error_event(Format::OpenAi, msg));
            }
            _ => {}
        }
    }

    fn finish(&mut self, usage: &Option<Usage>, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.client_wants_usage {
            out.extend_from_slice(&openai_event(
                &json!({"id": self.id, "object": "chat.completion.chunk",
                "created": self.created, "model": self.model, "choices": [],
                "usage": openai_usage_json(&usage.unwrap_or_default())}),
            ));
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::sse::Parser;

    fn run(conv: &mut Converter, input: &str) -> Vec<Event> {
        let mut p = Parser::default();
        let mut out = Vec::new();
        for ev in p.push(input.as_bytes()) {
            conv.event(ev, &mut out);
        }
        conv.finish(&mut out);
        Parser::default().push(&out)
    }

    fn data(ev: &Event) -> Value {
        serde_json::from_str(&ev.data).unwrap()
    }

    const OPENAI_TOOL_STREAM: &str = concat!(
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Checking\"}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_1\",\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"arguments\":\"\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"{\\\"city\\\":\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"\\\"Paris\\\"}\"}}]}}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n",
        "data: {\"id\":\"c1\",\"model\":\"gpt\",\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":9,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\n",
        "data: [DONE]\n\n",
    );

    #[test]
    fn openai_stream_becomes_anthropic_event_sequence() {
        let mut c = Converter::new(Format::OpenAi, Format::Anthropic, false, 0);
        let evs = run(&mut c, OPENAI_TOOL_STREAM);
        let types: Vec<&str> = evs.iter().map(|e| e.event.as_deref().unwrap()).collect();
        assert_eq!(
            types,
            [
                "message_start",
                "ping",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(data(&evs[5])["content_block"]["name"], "get_weather");
        let args: String = evs[6..8]
            .iter()
            .map(|e| {
                data(e)["delta"]["partial_json"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(
            serde_json::from_str::<Value>(&args).unwrap(),
            json!({"city": "Paris"})
        );
        let md = data(&evs[9]);
        assert_eq!(md["delta"]["stop_reason"], "tool_use");
        assert_eq!(md["usage"]["input_tokens"], 10);
        assert_eq!(md["usage"]["cache_read_input_tokens"], 2);
        assert_eq!(
            c.usage(),
            Some(Usage {
                input: 10,
                output: 9,
                cache_read: 2,
                cache_write: 0
            })
        );
    }

    const ANTHROPIC_STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":30,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hello\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn anthropic_stream_becomes_openai_chunks() {
        let mut c = Converter::new(Format::Anthropic, Format::OpenAi, true, 5);
        let evs = run(&mut c, ANTHROPIC_STREAM);
        assert_eq!(evs.last().unwrap().data, "[DONE]");
        let chunks: Vec<Value> = evs[..evs.len() - 1].iter().map(data).collect();
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(chunks[1]["choices"][0]["delta"]["content"], "Hello");
        assert_eq!(
            chunks[2]["choices"][0]["delta"]["tool_calls"][0]["id"],
            "toolu_1"
        );
        assert_eq!(
            chunks[3]["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\": \"Paris\"}"
        );
        assert_eq!(chunks[4]["choices"][0]["finish_reason"], "tool_calls");
        let usage = &chunks[5]["usage"];
        assert_eq!(usage["prompt_tokens"], 55);
        assert_eq!(usage["completion_tokens"], 15);
        assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 30);
        assert_eq!(
            c.usage(),
            Some(Usage {
                input: 20,
                output: 15,
                cache_read: 30,
                cache_write: 5
            })
        );
    }

    #[test]
    fn passthroughs_keep_bytes_and_meter() {
        let mut a = Converter::new(Format::Anthropic, Format::Anthropic, false, 0);
        let mut out = Vec::new();
        for ev in Parser::default().push(ANTHROPIC_STREAM.as_bytes()) {
            a.event(ev, &mut out);
        }
        assert_eq!(out, ANTHROPIC_STREAM.as_bytes());
        assert_eq!(a.usage().unwrap().output, 15);
        assert_eq!(
            a.delivered(),
            Delivered {
                chars: 5 + 17,
                events: 2
            }
        );

        let mut o = Converter::new(Format::OpenAi, Format::OpenAi, false, 0);
        let evs = run(&mut o, OPENAI_TOOL_STREAM);
        assert!(evs.iter().all(|e| !e.data.contains("usage")));
        assert_eq!(evs.last().unwrap().data, "[DONE]");
        assert_eq!(o.usage().unwrap().output, 9);
        let mut keep = Converter::new(Format::OpenAi, Format::OpenAi, true, 0);
        assert!(
            run(&mut keep, OPENAI_TOOL_STREAM)
                .iter()
                .any(|e| e.data.contains("usage"))
        );
    }

    #[test]
    fn terminators_and_malformed_events_are_detected() {
        let mut o = Converter::new(Format::OpenAi, Format::OpenAi, false, 0);
        let mut out = Vec::new();
        for ev in Parser::default().push(OPENAI_TOOL_STREAM.as_bytes()) {
            assert!(!o.done());
            o.event(ev, &mut out);
        }
        assert!(o.done() && !o.malformed());
        let mut a = Converter::new(Format::Anthropic, Format::OpenAi, false, 0);
        for ev in Parser::default().push(ANTHROPIC_STREAM.as_bytes()) {
            a.event(ev, &mut out);
        }
        assert!(a.done());
        for (up, client) in [
            (Format::OpenAi, Format::OpenAi),
            (Format::Anthropic, Format::Anthropic),
            (Format::OpenAi, Format::Anthropic),
            (Format::Anthropic, Format::OpenAi),
        ] {
            let mut c = Converter::new(up, client, false, 0);
            let mut out = Vec::new();
            for ev in Parser::default().push(b"data: {\"choices\": [oops\n\n") {
                c.event(ev, &mut out);
            }
            assert!(c.malformed() && out.is_empty(), "{up:?} -> {client:?}");
        }
    }

    fn chunk(body: &str) -> String {
        format!("data: {{\"id\":\"c\",\"model\":\"m\",{body}}}\n\n")
    }

    /// Usage in the chunk that carries `finish_reason` (OpenRouter, DeepSeek, Mistral,
    /// vLLM) reaches an Anthropic client in `message_delta`, with every count.
    #[test]
    fn usage_in_the_finish_chunk_reaches_anthropic_clients() {
        let stream = [
            ": OPENROUTER PROCESSING\n\n".to_string(),
            chunk(r#""choices":[{"index":0,"delta":{"role":"assistant","content":"Hi"}}]"#),
            chunk(
                r#""choices":[{"index":0,"delta":{"content":""},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":9,"prompt_tokens_details":{"cached_tokens":4}}"#,
            ),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let mut c = Converter::new(Format::OpenAi, Format::Anthropic, true, 0);
        let evs = run(&mut c, &stream);
        let md = evs
            .iter()
            .find(|e| e.event.as_deref() == Some("message_delta"))
            .map(data)
            .unwrap();
        assert_eq!(md["usage"]["input_tokens"], 8);
        assert_eq!(md["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(md["usage"]["output_tokens"], 9);
        assert_eq!(evs.last().unwrap().event.as_deref(), Some("message_stop"));
    }

    /// A running total on the first chunk (vLLM continuous usage, xAI) already gives
    /// `message_start` the input counts.
    #[test]
    fn early_usage_reaches_message_start() {
        let stream = [
            chunk(
                r#""choices":[{"index":0,"delta":{"content":"Hi"}}],"usage":{"prompt_tokens":9,"completion_tokens":1,"prompt_tokens_details":{"cached_tokens":4}}"#,
            ),
            chunk(
                r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":{"prompt_tokens":9,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":4}}"#,
            ),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let mut c = Converter::new(Format::OpenAi, Format::Anthropic, true, 0);
        let evs = run(&mut c, &stream);
        let start = data(&evs[0]);
        assert_eq!(start["message"]["usage"]["input_tokens"], 5);
        assert_eq!(start["message"]["usage"]["cache_read_input_tokens"], 4);
        assert_eq!(start["message"]["usage"]["output_tokens"], 0);
        let md = evs.iter().rev().nth(1).map(data).unwrap();
        assert_eq!(md["usage"]["output_tokens"], 2);
        assert_eq!(md["usage"]["input_tokens"], 5);
    }

    /// Groq reports usage only in `x_groq.usage`: it is billed, reaches an Anthropic
    /// client, and reaches an OpenAI client that asked for usage as a usage chunk.
    #[test]
    fn groq_usage_is_read_and_relayed() {
        let stream = [
            chunk(r#""choices":[{"index":0,"delta":{"content":"Hi"}}],"x_groq":{"id":"req_1"}"#),
            chunk(
                r#""choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"x_groq":{"id":"req_1","usage":{"prompt_tokens":41,"completion_tokens":6,"total_tokens":47}}"#,
            ),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let expected = Usage {
            input: 41,
            output: 6,
            ..Usage::default()
        };
        let mut a = Converter::new(Format::OpenAi, Format::Anthropic, true, 0);
        let evs = run(&mut a, &stream);
        assert_eq!(a.usage(), Some(expected));
        let md = evs.iter().rev().nth(1).map(data).unwrap();
        assert_eq!(md["usage"]["output_tokens"], 6);
        let mut o = Converter::new(Format::OpenAi, Format::OpenAi, true, 0);
        let evs = run(&mut o, &stream);
        assert_eq!(o.usage(), Some(expected));
        let usage_chunk = data(&evs[evs.len() - 2]);
        assert_eq!(usage_chunk["choices"], json!([]));
        assert_eq!(usage_chunk["usage"]["prompt_tokens"], 41);
        assert_eq!(usage_chunk["id"], "c");
        assert_eq!(evs.last().unwrap().data, "[DONE]");
        // Not asked for: nothing added.
        let mut quiet = Converter::new(Format::OpenAi, Format::OpenAi, false, 0);
        let evs = run(&mut quiet, &stream);
        assert!(evs.iter().all(|e| !e.data.contains("\"choices\":[]")));
    }

    /// An upstream that closes without `[DONE]` still delivers its usage to an OpenAI
    /// client that asked for it when the usage was in a place the client does not read.
    #[test]
    fn usage_is_added_when_the_upstream_closes_without_done() {
        let stream = chunk(
            r#""choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":"stop"}],"x_groq":{"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
        );
        let mut o = Converter::new(Format::OpenAi, Format::OpenAi, true, 0);
        let evs = run(&mut o, &stream);
        assert_eq!(data(evs.last().unwrap())["usage"]["completion_tokens"], 1);
    }

    /// A later usage object without `prompt_tokens` does not erase the usage already
    /// reported; whitespace around `[DONE]` and the JSON is tolerated.
    #[test]
    fn partial_usage_and_whitespace_are_tolerated() {
        let stream = concat!(
            "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"}}],\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":2}} \t\n\n",
            "data:{\"choices\":[],\"usage\":{\"completion_tokens\":2}}\n\n",
            "data: [DONE]  \n\n",
        );
        for client in [Format::OpenAi, Format::Anthropic] {
            let mut c = Converter::new(Format::OpenAi, client, true, 0);
            run(&mut c, stream);
            assert!(!c.malformed() && c.done(), "{client:?}");
            assert_eq!(c.usage().map(|u| (u.input, u.output)), Some((5, 2)));
        }
    }

    /// A proxy that repeats the tool call's id on every delta still yields one tool_use
    /// block with the whole arguments; a new id at the same index starts a new call.
    #[test]
    fn repeated_tool_ids_do_not_split_a_call() {
        let delta = |id: &str, name: &str, args: &str| {
            chunk(&format!(
                r#""choices":[{{"index":0,"delta":{{"tool_calls":[{{"index":0,"id":"{id}","type":"function","function":{{"name":"{name}","arguments":{args:?}}}}}]}}}}]"#
            ))
        };
        let stream = [
            delta("call_1", "get_weather", ""),
            delta("call_1", "", "{\"city\":"),
            delta("call_1", "", "\"Paris\"}"),
            delta("call_2", "get_time", "{}"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let mut c = Converter::new(Format::OpenAi, Format::Anthropic, false, 0);
        let evs = run(&mut c, &stream);
        let starts: Vec<Value> = evs
            .iter()
            .filter(|e| e.event.as_deref() == Some("content_block_start"))
            .map(data)
            .collect();
        assert_eq!(starts.len(), 2);
        assert_eq!(starts[0]["content_block"]["id"], "call_1");
        assert_eq!(starts[1]["content_block"]["name"], "get_time");
        let args: String = evs
            .iter()
            .map(data_or_null)
            .filter(|d| d["index"] == starts[0]["index"] && d["type"] == "content_block_delta")
            .map(|d| d["delta"]["partial_json"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(args, "{\"city\":\"Paris\"}");
    }

    /// Comments reach an OpenAI client; an event with no data but other fields does not
    /// (the OpenAI SDKs would try to parse its empty data).
    #[test]
    fn dataless_events_other_than_comments_are_dropped() {
        let mut c = Converter::new(Format::OpenAi, Format::OpenAi, false, 0);
        let evs = run(
            &mut c,
            ": OPENROUTER PROCESSING\n\nretry: 3000\n\nid: 7\n\nevent: ping\n\ndata: [DONE]\n\n",
        );
        let raws: Vec<&[u8]> = evs.iter().map(|e| e.raw.as_ref()).collect();
        assert_eq!(
            raws,
            [
                &b": OPENROUTER PROCESSING\n\n"[..],
                &b"data: [DONE]\n\n"[..]
            ]
        );
    }

    fn data_or_null(ev: &Event) -> Value {
        serde_json::from_str(&ev.data).unwrap_or(Value::Null)
    }

    #[test]
    fn estimate_never_exceeds_events() {
        let d = Delivered {
            chars: 400,
            events: 3,
        };
        assert_eq!(d.estimated_tokens(), 3);
        let d = Delivered {
            chars: 5,
            events: 3,
        };
        assert_eq!(d.estimated_tokens(), 2);
    }
}
