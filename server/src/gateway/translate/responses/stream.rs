//! Upstream streams (Chat Completions chunks or Anthropic events) as Responses events, one
//! upstream event at a time: `response.created`, `response.in_progress`, then each output
//! item in OpenAI's order (`output_item.added`, its part / summary part, its deltas, their
//! `.done`, `output_item.done`), and exactly one terminal event (`response.completed`,
//! `response.incomplete` or `response.failed`) carrying the whole response with usage.
//! Every event has a `sequence_number`; there is no `[DONE]`.
//!
//! Items stream one at a time, as OpenAI's do. An upstream that interleaves parallel tool
//! calls (deltas of call 1 between deltas of call 0) has the later calls held back until
//! the live one is complete (its arguments are a whole JSON object), then sent in the
//! order they started; a text or reasoning item closes as soon as something else starts.
//! A call to a custom tool streams its decoded `input` string, not the JSON the upstream
//! sees it as.
//!
//! Usage and delivered output are tracked as [`super::super::stream::Converter`] does, so
//! the relay settles a Responses stream by the same rules.
//!
//! Driving it: [`ResponsesStream::start`] once (any first event starts it anyway), then
//! [`ResponsesStream::event`] per upstream event; when [`ResponsesStream::malformed`],
//! the upstream fails midway or goes silent, [`ResponsesStream::fail`]; when the upstream
//! closes, [`ResponsesStream::finish`]. [`ResponsesStream::done`] turns true with the
//! terminal event, whichever it was: [`ResponsesStream::outcome`] tells a completed or
//! incomplete answer from a failed one (an upstream `error` event fails the response
//! too), and [`ResponsesStream::response`] is then the object to store.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokengate_core::money::Usage;

use super::super::stream::{Delivered, chunk_usage, merge_anthropic_usage};
use super::super::{Format, openai_usage};
use super::response::{chat_reasoning, message_item, reasoning_item};
use super::{
    End, REDACTED_MARK, ResponseCtx, SIGNATURE_MARK, Tools, call_item, custom_input, finished,
    new_item_id, reasoning_tokens, skeleton,
};
use crate::gateway::sse::Event;

/// Where an item's content comes from upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Key {
    /// Chat `content`.
    Text,
    /// Chat `reasoning_content`.
    Reasoning,
    /// A chat tool call: its index and a generation (a new id at a known index is a new
    /// call).
    Call(i64, u32),
    /// An Anthropic content block.
    Block(i64),
}

/// Incremental decoder of the `input` string inside `{"input": "…"}` arguments, so a
/// custom tool's input streams as text. Falls back to sending the input whole at the end
/// when the arguments take another shape.
#[derive(Debug, Default)]
struct InputDecoder {
    state: Decoding,
    /// Byte offset in the raw arguments where decoding continues.
    pos: usize,
    /// Decoded text sent so far.
    sent: String,
}

#[derive(Debug, Default, PartialEq)]
enum Decoding {
    #[default]
    Prefix,
    InString,
    Done,
    Fallback,
}

impl InputDecoder {
    /// Matches `{ "input" :  "` (with any whitespace) at the start of `raw`: `Some(end)`
    /// when complete, `None` while `raw` is a prefix of it, `Err` when it cannot be.
    fn prefix(raw: &str) -> Result<Option<usize>, ()> {
        const TOKENS: [&str; 4] = ["{", "\"input\"", ":", "\""];
        let b = raw.as_bytes();
        let mut i = 0;
        for tok in TOKENS {
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            let rest = &b[i..];
            let n = rest.len().min(tok.len());
            if rest[..n] != tok.as_bytes()[..n] {
                return Err(());
            }
            if n < tok.len() {
                return Ok(None);
            }
            i += tok.len();
        }
        Ok(Some(i))
    }

    /// The text decoded from `raw` (the whole arguments so far) since the last call.
    fn feed(&mut self, raw: &str) -> String {
        if self.state == Decoding::Prefix {
            match Self::prefix(raw) {
                Ok(Some(end)) => {
                    self.state = Decoding::InString;
                    self.pos = end;
                }
                Ok(None) => return String::new(),
                Err(()) => {
                    self.state = Decoding::Fallback;
                    return String::new();
                }
            }
        }
        let mut new = String::new();
        while self.state == Decoding::InString {
            let rest = &raw[self.pos..];
            let Some(c) = rest.chars().next() else {
                break;
            };
            match c {
                '"' => self.state = Decoding::Done,
                '\\' => {
                    let len = match rest.as_bytes().get(1) {
                        None => break,
                        Some(b'u') => {
                            // A high surrogate needs its low half too.
                            let high = rest
                                .get(2..6)
                                .and_then(|h| u16::from_str_radix(h, 16).ok())
                                .is_some_and(|h| (0xD800..0xDC00).contains(&h));
                            if high { 12 } else { 6 }
                        }
                        Some(_) => 2,
                    };
                    let Some(esc) = rest.get(..len) else {
                        break;
                    };
                    match serde_json::from_str::<String>(&format!("\"{esc}\"")) {
                        Ok(s) => {
                            new.push_str(&s);
                            self.pos += len;
                        }
                        Err(_) => self.state = Decoding::Fallback,
                    }
                }
                c => {
                    new.push(c);
                    self.pos += c.len_utf8();
                }
            }
        }
        self.sent.push_str(&new);
        new
    }
}

#[derive(Debug)]
enum Kind {
    Message {
        text: String,
    },
    Reasoning {
        text: String,
        part_open: bool,
        encrypted: Option<String>,
    },
    Call {
        call_id: String,
        name: String,
        args: String,
        custom: Option<InputDecoder>,
    },
}

/// An output item being streamed (live) or held back (pending).
#[derive(Debug)]
struct Item {
    key: Key,
    id: String,
    output_index: usize,
    kind: Kind,
}

impl Item {
    fn new(key: Key, kind: Kind) -> Item {
        let prefix = match &kind {
            Kind::Message { .. } => "msg",
            Kind::Reasoning { .. } => "rs",
            Kind::Call {
                custom: Some(_), ..
            } => "ctc",
            Kind::Call { .. } => "fc",
        };
        Item {
            key,
            id: new_item_id(prefix),
            output_index: 0,
            kind,
        }
    }

    /// Whether the item can be closed for another to start: text and reasoning always; a
    /// call once its arguments are a whole JSON object.
    fn closable(&self) -> bool {
        match &self.kind {
            Kind::Call { args, .. } => {
                let a = args.trim_start();
                a.starts_with('{') && serde_json::from_str::<serde::de::IgnoredAny>(a).is_ok()
            }
            _ => true,
        }
    }
}

/// A piece of content for an item.
enum Piece<'a> {
    Text(&'a str),
    Args(&'a str),
    Signature(String),
}

/// Converts one upstream stream to Responses events for one client.
pub struct ResponsesStream {
    upstream: Format,
    ctx: ResponseCtx,
    tools: Tools,
    seq: u64,
    started: bool,
    /// The terminal event has been sent.
    done: bool,
    malformed: bool,
    usage: Option<Usage>,
    /// Usage to report instead of the upstream's ([`ResponsesStream::set_usage`]).
    billed: Option<Usage>,
    reasoning_tokens: i64,
    delivered: Delivered,
    /// Closed items, in output order.
    output: Vec<Value>,
    live: Option<Item>,
    /// Items seen but held back while the live one is incomplete, in the order they began.
    pending: Vec<Item>,
    /// Chat tool calls already closed: their key → output index.
    closed_calls: HashMap<Key, usize>,
    /// Chat tool-call index → current generation.
    generations: HashMap<i64, u32>,
    /// How the upstream said the answer ended.
    end: Option<End>,
    /// How the stream ended for the client, once the terminal event is sent.
    outcome: Option<End>,
    final_response: Option<Value>,
}

impl ResponsesStream {
    /// A converter from `upstream` (Chat Completions chunks or Anthropic events).
    pub fn new(upstream: Format, ctx: ResponseCtx) -> Self {
        ResponsesStream {
            upstream,
            tools: Tools::of(&ctx.request),
            ctx,
            seq: 0,
            started: false,
            done: false,
            malformed: false,
            usage: None,
            billed: None,
            reasoning_tokens: 0,
            delivered: Delivered::default(),
            output: Vec::new(),
            live: None,
            pending: Vec::new(),
            closed_calls: HashMap::new(),
            generations: HashMap::new(),
            end: None,
            outcome: None,
            final_response: None,
        }
    }

    /// Whether the terminal event has been sent: nothing more is read or written.
    pub fn done(&self) -> bool {
        self.done
    }

    /// Whether the upstream sent an event that is not a JSON object; the caller ends the
    /// stream with [`ResponsesStream::fail`].
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

    /// The usage the terminal event reports instead of the upstream's (which
    /// [`ResponsesStream::usage`] still returns): for a caller that bills an estimate
    /// because the upstream reported none, so the client sees what it is charged for.
    /// Call before `finish` / `fail`.
    pub fn set_usage(&mut self, usage: Usage) {
        self.billed = Some(usage);
    }

    /// How the stream ended for the client (`None` until the terminal event): completed,
    /// incomplete, or failed (an upstream error event, or [`ResponsesStream::fail`]).
    pub fn outcome(&self) -> Option<&End> {
        self.outcome.as_ref()
    }

    /// The final Response object (after the terminal event); before it, the response so
    /// far with status `in_progress`.
    pub fn response(&self) -> Value {
        if let Some(r) = &self.final_response {
            return r.clone();
        }
        let mut r = skeleton(&self.ctx, "in_progress");
        r["output"] = Value::Array(self.output.clone());
        r
    }

    fn emit(&mut self, ty: &str, mut body: Value, out: &mut Vec<u8>) {
        body["type"] = json!(ty);
        body["sequence_number"] = json!(self.seq);
        self.seq += 1;
        out.extend_from_slice(format!("event: {ty}\ndata: {body}\n\n").as_bytes());
    }

    /// `response.created` and `response.in_progress` (once).
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let r = skeleton(&self.ctx, "in_progress");
        self.emit("response.created", json!({"response": r}), out);
        self.emit("response.in_progress", json!({"response": r}), out);
    }

    /// Converts one upstream event, appending the client's events to `out`.
    pub fn event(&mut self, ev: Event, out: &mut Vec<u8>) {
        if self.done || self.malformed {
            return;
        }
        let data = ev.data.trim();
        if data.is_empty() {
            return;
        }
        if data == "[DONE]" {
            if self.upstream == Format::OpenAi {
                self.finish(out);
            }
            return;
        }
        let v = match serde_json::from_str::<Value>(data) {
            Ok(v) if v.is_object() => v,
            _ => {
                self.malformed = true;
                return;
            }
        };
        self.start(out);
        match self.upstream {
            Format::OpenAi => self.chat_chunk(&v, out),
            Format::Anthropic => self.anthropic_event(&v, out),
        }
    }

    // -----------------------------------------------------------------------------------
    // Chat Completions chunks

    fn chat_chunk(&mut self, v: &Value, out: &mut Vec<u8>) {
        if let Some(u) = chunk_usage(v) {
            if let Some(parsed) = openai_usage(u) {
                self.usage = Some(parsed);
            }
            let r = reasoning_tokens(u);
            if r > 0 {
                self.reasoning_tokens = r;
            }
        }
        if let Some(err) = v.get("error").filter(|e| e.is_object()) {
            let message = err
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("The upstream provider reported an error.")
                .to_string();
            let code = err
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| {
                    matches!(
                        *c,
                        "rate_limit_exceeded" | "insufficient_quota" | "context_length_exceeded"
                    )
                })
                .unwrap_or("server_error");
            self.fail(code, &message, out);
            return;
        }
        let Some(choice) = v.pointer("/choices/0") else {
            return;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = chat_reasoning(delta) {
            self.place(
                Key::Reasoning,
                || Kind::Reasoning {
                    text: String::new(),
                    part_open: false,
                    encrypted: None,
                },
                Piece::Text(r),
                out,
            );
        }
        if let Some(t) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            self.place(
                Key::Text,
                || Kind::Message {
                    text: String::new(),
                },
                Piece::Text(t),
                out,
            );
        }
        for tc in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = tc.get("index").and_then(Value::as_i64).unwrap_or(0);
            let id = tc
                .get("id")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty());
            let name = tc
                .pointer("/function/name")
                .and_then(Value::as_str)
                .unwrap_or("");
            let mut gen_ = *self.generations.get(&index).unwrap_or(&0);
            // A known index continues its call, whether or not the id is repeated; a
            // different id there is a new call.
            if let Some(id) = id
                && self
                    .call_id(Key::Call(index, gen_))
                    .is_some_and(|known| known != id)
            {
                gen_ += 1;
                self.generations.insert(index, gen_);
            }
            let key = Key::Call(index, gen_);
            let custom = self.tools.is_custom(name);
            let call_id = id.map_or_else(|| new_item_id("call"), str::to_string);
            self.place(
                key,
                || Kind::Call {
                    call_id,
                    name: name.to_string(),
                    args: String::new(),
                    custom: custom.then(InputDecoder::default),
                },
                Piece::Args(
                    tc.pointer("/function/arguments")
                        .and_then(Value::as_str)
                        .unwrap_or(""),
                ),
                out,
            );
            if !name.is_empty() {
                self.fill_name(key, name);
            }
        }
        if let Some(r) = choice.get("finish_reason").and_then(Value::as_str) {
            self.end = Some(End::from_finish_reason(Some(r)));
        }
    }

    /// The call id of the live or pending item with `key`, or of the closed call.
    fn call_id(&self, key: Key) -> Option<&str> {
        let item = self
            .live
            .iter()
            .chain(self.pending.iter())
            .find(|i| i.key == key);
        if let Some(Item {
            kind: Kind::Call { call_id, .. },
            ..
        }) = item
        {
            return Some(call_id);
        }
        self.closed_calls
            .get(&key)
            .and_then(|i| self.output.get(*i))
            .and_then(|item| item.get("call_id"))
            .and_then(Value::as_str)
    }

    /// A tool name that arrived after the call began.
    fn fill_name(&mut self, key: Key, name: &str) {
        let custom = self.tools.is_custom(name);
        for item in self.live.iter_mut().chain(self.pending.iter_mut()) {
            if item.key == key
                && let Kind::Call {
                    name: n,
                    custom: c,
                    args,
                    ..
                } = &mut item.kind
                && n.is_empty()
            {
                *n = name.to_string();
                if custom && c.is_none() && args.is_empty() {
                    *c = Some(InputDecoder::default());
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Anthropic events

    fn anthropic_event(&mut self, v: &Value, out: &mut Vec<u8>) {
        merge_anthropic_usage(&mut self.usage, v);
        let index = v.get("index").and_then(Value::as_i64).unwrap_or(0);
        let key = Key::Block(index);
        match v.get("type").and_then(Value::as_str) {
            Some("content_block_start") => {
                let b = v.get("content_block").unwrap_or(&Value::Null);
                let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("");
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => self.place(
                        key,
                        || Kind::Message {
                            text: String::new(),
                        },
                        Piece::Text(s("text")),
                        out,
                    ),
                    Some("thinking") => {
                        let sig = b
                            .get("signature")
                            .and_then(Value::as_str)
                            .filter(|x| !x.is_empty())
                            .map(|x| format!("{SIGNATURE_MARK}{x}"));
                        self.place(
                            key,
                            || Kind::Reasoning {
                                text: String::new(),
                                part_open: false,
                                encrypted: sig,
                            },
                            Piece::Text(s("thinking")),
                            out,
                        );
                    }
                    Some("redacted_thinking") => {
                        let data = format!("{REDACTED_MARK}{}", s("data"));
                        self.place(
                            key,
                            || Kind::Reasoning {
                                text: String::new(),
                                part_open: false,
                                encrypted: Some(data),
                            },
                            Piece::Text(""),
                            out,
                        );
                    }
                    Some("tool_use") => {
                        let name = s("name").to_string();
                        let custom = self.tools.is_custom(&name);
                        let call_id = s("id").to_string();
                        self.place(
                            key,
                            || Kind::Call {
                                call_id,
                                name,
                                args: String::new(),
                                custom: custom.then(InputDecoder::default),
                            },
                            Piece::Args(""),
                            out,
                        );
                    }
                    _ => {}
                }
            }
            Some("content_block_delta") => {
                let d = v.get("delta").unwrap_or(&Value::Null);
                let s = |k: &str| d.get(k).and_then(Value::as_str).unwrap_or("");
                let piece = match d.get("type").and_then(Value::as_str) {
                    Some("text_delta") => Piece::Text(s("text")),
                    Some("thinking_delta") => Piece::Text(s("thinking")),
                    Some("input_json_delta") => Piece::Args(s("partial_json")),
                    Some("signature_delta") => {
                        Piece::Signature(format!("{SIGNATURE_MARK}{}", s("signature")))
                    }
                    _ => return,
                };
                // Only blocks that were started make items.
                if self
                    .live
                    .iter()
                    .chain(self.pending.iter())
                    .any(|i| i.key == key)
                {
                    self.place(
                        key,
                        || Kind::Message {
                            text: String::new(),
                        },
                        piece,
                        out,
                    );
                }
            }
            Some("content_block_stop") if self.live.as_ref().is_some_and(|i| i.key == key) => {
                self.close_live("completed", out);
                self.advance(out);
            }
            Some("message_delta") => {
                if let Some(r) = v.pointer("/delta/stop_reason").and_then(Value::as_str) {
                    self.end = Some(End::from_stop_reason(Some(r)));
                }
            }
            Some("message_stop") => self.finish(out),
            Some("error") => {
                let message = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("The upstream provider reported an error.")
                    .to_string();
                let code = match v.pointer("/error/type").and_then(Value::as_str) {
                    Some("rate_limit_error") => "rate_limit_exceeded",
                    _ => "server_error",
                };
                self.fail(code, &message, out);
            }
            _ => {}
        }
    }

    // -----------------------------------------------------------------------------------
    // Items

    /// Adds `piece` to the item with `key` (made with `kind` when new), streaming it if
    /// that item is live, then lets held-back items through when they can go.
    fn place(&mut self, key: Key, kind: impl FnOnce() -> Kind, piece: Piece, out: &mut Vec<u8>) {
        if let Some(mut item) = self.live.take_if(|i| i.key == key) {
            self.stream_piece(&mut item, piece, out);
            self.live = Some(item);
        } else if let Some(item) = self.pending.iter_mut().find(|i| i.key == key) {
            add_piece(item, &piece);
        } else if self.closed_calls.contains_key(&key) {
            // More arguments for a call already closed: its arguments were a whole JSON
            // object, so this is not valid JSON text anyway; the client saw the call end,
            // and the stored item stays what the client saw.
        } else {
            let mut item = Item::new(key, kind());
            add_piece(&mut item, &piece);
            self.pending.push(item);
        }
        self.advance(out);
    }

    /// Promotes held-back items while the live one can close (or there is none).
    fn advance(&mut self, out: &mut Vec<u8>) {
        while !self.pending.is_empty() {
            match &self.live {
                Some(l) if !l.closable() => break,
                Some(_) => self.close_live("completed", out),
                None => {}
            }
            let item = self.pending.remove(0);
            self.open(item, out);
        }
    }

    /// Sends an item's `added` events, and what it holds so far as one delta.
    fn open(&mut self, mut item: Item, out: &mut Vec<u8>) {
        item.output_index = self.output.len();
        let (id, oi) = (item.id.clone(), item.output_index);
        let added = match &item.kind {
            Kind::Message { .. } => {
                json!({"id": id, "type": "message", "status": "in_progress", "role": "assistant", "content": []})
            }
            Kind::Reasoning { .. } => json!({"id": id, "type": "reasoning", "summary": []}),
            Kind::Call {
                call_id,
                name,
                custom: Some(_),
                ..
            } => {
                json!({"id": id, "type": "custom_tool_call", "status": "in_progress",
                    "call_id": call_id, "name": name, "input": ""})
            }
            Kind::Call { call_id, name, .. } => {
                json!({"id": id, "type": "function_call", "status": "in_progress",
                    "arguments": "", "call_id": call_id, "name": name})
            }
        };
        self.emit(
            "response.output_item.added",
            json!({"output_index": oi, "item": added}),
            out,
        );
        // What arrived while it was held back goes out as one delta.
        let (held, is_text) = match &mut item.kind {
            Kind::Message { text } | Kind::Reasoning { text, .. } => (std::mem::take(text), true),
            Kind::Call { args, custom, .. } => {
                if let Some(d) = custom {
                    *d = InputDecoder::default();
                }
                (std::mem::take(args), false)
            }
        };
        if let Kind::Message { .. } = item.kind {
            self.emit(
                "response.content_part.added",
                json!({"item_id": id, "output_index": oi, "content_index": 0,
                    "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": ""}}),
                out,
            );
        }
        let piece = if is_text {
            Piece::Text(&held)
        } else {
            Piece::Args(&held)
        };
        self.stream_piece(&mut item, piece, out);
        self.live = Some(item);
    }

    /// Adds `piece` to a live item and sends its delta.
    fn stream_piece(&mut self, item: &mut Item, piece: Piece, out: &mut Vec<u8>) {
        let (id, oi) = (item.id.clone(), item.output_index);
        match (&mut item.kind, piece) {
            (Kind::Message { text }, Piece::Text(t)) if !t.is_empty() => {
                text.push_str(t);
                self.delivered.add(t);
                self.emit(
                    "response.output_text.delta",
                    json!({"item_id": id, "output_index": oi, "content_index": 0, "delta": t, "logprobs": []}),
                    out,
                );
            }
            (
                Kind::Reasoning {
                    text, part_open, ..
                },
                Piece::Text(t),
            ) if !t.is_empty() => {
                text.push_str(t);
                self.delivered.add(t);
                if !*part_open {
                    *part_open = true;
                    self.emit(
                        "response.reasoning_summary_part.added",
                        json!({"item_id": id, "output_index": oi, "summary_index": 0,
                            "part": {"type": "summary_text", "text": ""}}),
                        out,
                    );
                }
                self.emit(
                    "response.reasoning_summary_text.delta",
                    json!({"item_id": id, "output_index": oi, "summary_index": 0, "delta": t}),
                    out,
                );
            }
            (Kind::Reasoning { encrypted, .. }, Piece::Signature(s)) => *encrypted = Some(s),
            (Kind::Call { args, custom, .. }, Piece::Args(a)) if !a.is_empty() => {
                args.push_str(a);
                self.delivered.add(a);
                match custom {
                    Some(dec) => {
                        let new = dec.feed(args);
                        if !new.is_empty() {
                            self.emit(
                                "response.custom_tool_call_input.delta",
                                json!({"item_id": id, "output_index": oi, "delta": new}),
                                out,
                            );
                        }
                    }
                    None => self.emit(
                        "response.function_call_arguments.delta",
                        json!({"item_id": id, "output_index": oi, "delta": a}),
                        out,
                    ),
                }
            }
            _ => {}
        }
    }

    /// Closes the live item with `status`: its `.done` events and `output_item.done`.
    fn close_live(&mut self, status: &str, out: &mut Vec<u8>) {
        let Some(mut item) = self.live.take() else {
            return;
        };
        let (id, oi) = (item.id.clone(), item.output_index);
        let done = match &mut item.kind {
            Kind::Message { text } => {
                let text = std::mem::take(text);
                self.emit(
                    "response.output_text.done",
                    json!({"item_id": id, "output_index": oi, "content_index": 0, "text": text, "logprobs": []}),
                    out,
                );
                self.emit(
                    "response.content_part.done",
                    json!({"item_id": id, "output_index": oi, "content_index": 0,
                        "part": {"type": "output_text", "annotations": [], "logprobs": [], "text": text}}),
                    out,
                );
                message_item(&id, &text, status)
            }
            Kind::Reasoning {
                text,
                part_open,
                encrypted,
            } => {
                if *part_open {
                    let text = text.clone();
                    self.emit(
                        "response.reasoning_summary_text.done",
                        json!({"item_id": id, "output_index": oi, "summary_index": 0, "text": text}),
                        out,
                    );
                    self.emit(
                        "response.reasoning_summary_part.done",
                        json!({"item_id": id, "output_index": oi, "summary_index": 0,
                            "part": {"type": "summary_text", "text": text}}),
                        out,
                    );
                }
                reasoning_item(&id, text, encrypted.as_deref())
            }
            Kind::Call {
                call_id,
                name,
                args,
                custom,
            } => {
                if args.trim().is_empty() {
                    // A call without arguments still has a JSON object for them.
                    args.clear();
                    args.push_str("{}");
                    if custom.is_none() {
                        self.emit(
                            "response.function_call_arguments.delta",
                            json!({"item_id": id, "output_index": oi, "delta": "{}"}),
                            out,
                        );
                    }
                }
                match custom {
                    Some(dec) => {
                        let input = custom_input(args);
                        if let Some(rest) = input
                            .strip_prefix(dec.sent.as_str())
                            .filter(|r| !r.is_empty())
                        {
                            self.emit(
                                "response.custom_tool_call_input.delta",
                                json!({"item_id": id, "output_index": oi, "delta": rest}),
                                out,
                            );
                        }
                        self.emit(
                            "response.custom_tool_call_input.done",
                            json!({"item_id": id, "output_index": oi, "input": input}),
                            out,
                        );
                    }
                    None => self.emit(
                        "response.function_call_arguments.done",
                        json!({"item_id": id, "output_index": oi, "arguments": args, "name": name}),
                        out,
                    ),
                }
                if matches!(item.key, Key::Call(..)) {
                    self.closed_calls.insert(item.key, oi);
                }
                call_item(&self.tools, Some(&id), call_id, name, args, status)
            }
        };
        self.emit(
            "response.output_item.done",
            json!({"output_index": oi, "item": done}),
            out,
        );
        self.output.push(done);
    }

    /// Closes every open item (live, then held back ones) with `status`.
    fn close_all(&mut self, status: &str, out: &mut Vec<u8>) {
        self.close_live(status, out);
        while !self.pending.is_empty() {
            let item = self.pending.remove(0);
            self.open(item, out);
            self.close_live(status, out);
        }
    }

    fn terminal(&mut self, end: End, out: &mut Vec<u8>) {
        let usage = self.billed.or(self.usage).unwrap_or_default();
        let r = finished(
            &self.ctx,
            std::mem::take(&mut self.output),
            &usage,
            self.reasoning_tokens,
            &end,
        );
        let ty = match end {
            End::Completed => "response.completed",
            End::Incomplete(_) => "response.incomplete",
            End::Failed(..) => "response.failed",
        };
        self.emit(ty, json!({"response": r}), out);
        self.output = r["output"].as_array().cloned().unwrap_or_default();
        self.final_response = Some(r);
        self.outcome = Some(end);
        self.done = true;
    }

    /// Ends the stream as the upstream ended it (its terminator, or its close): open items
    /// are closed, then `response.completed` or `response.incomplete` (the output cap or a
    /// content filter) with the whole response and usage. After a malformed event it
    /// fails instead. Does nothing once the terminal event is sent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if self.malformed {
            self.fail(
                "server_error",
                "The upstream provider sent a malformed stream.",
                out,
            );
            return;
        }
        self.start(out);
        let end = self.end.clone().unwrap_or(End::Completed);
        let status = if matches!(end, End::Incomplete(_)) {
            "incomplete"
        } else {
            "completed"
        };
        self.close_all(status, out);
        self.terminal(end, out);
    }

    /// Ends the stream with `response.failed`: open items are closed as incomplete and
    /// the error carries `code` (OpenAI's vocabulary: `server_error`,
    /// `rate_limit_exceeded`, `insufficient_quota`, `context_length_exceeded`) and
    /// `message`. Does nothing once the terminal event is sent.
    pub fn fail(&mut self, code: &str, message: &str, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close_all("incomplete", out);
        self.terminal(End::Failed(code.to_string(), message.to_string()), out);
    }
}

/// Adds `piece` to an item that is not streaming yet.
fn add_piece(item: &mut Item, piece: &Piece) {
    match (&mut item.kind, piece) {
        (Kind::Message { text } | Kind::Reasoning { text, .. }, Piece::Text(t)) => text.push_str(t),
        (Kind::Reasoning { encrypted, .. }, Piece::Signature(s)) => *encrypted = Some(s.clone()),
        (Kind::Call { args, .. }, Piece::Args(a)) => args.push_str(a),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::gateway::sse::Parser;

    fn ctx() -> ResponseCtx {
        ResponseCtx {
            id: "resp_test".into(),
            created_at: 1,
            request: json!({"model": "client-model", "tools": [
                {"type": "function", "name": "get_weather", "parameters": {"type": "object"}},
                {"type": "custom", "name": "apply_patch"}]})
            .as_object()
            .unwrap()
            .clone(),
        }
    }

    /// Runs `input` through a converter (start, every event, finish) and returns the
    /// client's events as (type, data), after checking their framing: the `event:` name
    /// equals `type`, sequence numbers count from 0.
    fn run_with(s: &mut ResponsesStream, input: &str) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        s.start(&mut out);
        for ev in Parser::default().push(input.as_bytes()) {
            s.event(ev, &mut out);
        }
        s.finish(&mut out);
        parse(&out)
    }

    fn parse(out: &[u8]) -> Vec<(String, Value)> {
        let evs = Parser::default().push(out);
        evs.iter()
            .enumerate()
            .map(|(i, e)| {
                let v: Value = serde_json::from_str(&e.data).expect("JSON event");
                let ty = e.event.clone().expect("event name");
                assert_eq!(v["type"], ty.as_str());
                assert_eq!(v["sequence_number"], i as u64, "{ty}");
                (ty, v)
            })
            .collect()
    }

    fn run(upstream: Format, input: &str) -> (ResponsesStream, Vec<(String, Value)>) {
        let mut s = ResponsesStream::new(upstream, ctx());
        let evs = run_with(&mut s, input);
        (s, evs)
    }

    fn types(evs: &[(String, Value)]) -> Vec<&str> {
        evs.iter().map(|(t, _)| t.as_str()).collect()
    }

    fn chunk(delta: Value) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "object": "chat.completion.chunk", "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": null}]})
        )
    }

    fn finish_chunk(reason: &str) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": reason}]})
        )
    }

    fn usage_chunk(prompt: i64, cached: i64, completion: i64, reasoning: i64) -> String {
        format!(
            "data: {}\n\n",
            json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": prompt,
            "completion_tokens": completion, "prompt_tokens_details": {"cached_tokens": cached},
            "completion_tokens_details": {"reasoning_tokens": reasoning}}})
        )
    }

    fn call(index: i64, id: Option<&str>, name: Option<&str>, args: &str) -> String {
        let mut tc = json!({"index": index, "function": {"arguments": args}});
        if let Some(id) = id {
            tc["id"] = json!(id);
            tc["type"] = json!("function");
        }
        if let Some(n) = name {
            tc["function"]["name"] = json!(n);
        }
        chunk(json!({"tool_calls": [tc]}))
    }

    #[test]
    fn chat_text_stream_follows_openai_event_order() {
        let input = [
            chunk(json!({"role": "assistant", "content": ""})),
            chunk(json!({"content": "Hel"})),
            chunk(json!({"content": "lo"})),
            finish_chunk("stop"),
            usage_chunk(12, 4, 2, 0),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (s, evs) = run(Format::OpenAi, &input);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(evs[0].1["response"]["status"], "in_progress");
        assert_eq!(evs[0].1["response"]["model"], "client-model");
        let item_id = evs[2].1["item"]["id"].as_str().unwrap();
        assert!(item_id.starts_with("msg_"));
        for (_, e) in &evs[3..9] {
            assert_eq!(e["item_id"].as_str().unwrap_or(item_id), item_id);
            assert_eq!(e["output_index"], 0);
        }
        assert_eq!(evs[6].1["text"], "Hello");
        let done = &evs[9].1["response"];
        assert_eq!(done["status"], "completed");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][0]["status"], "completed");
        assert_eq!(
            done["usage"],
            json!({"input_tokens": 12, "input_tokens_details": {"cached_tokens": 4, "cache_write_tokens": 0},
                "output_tokens": 2, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 14})
        );
        assert!(s.done());
        assert_eq!(s.outcome(), Some(&End::Completed));
        assert_eq!(
            s.usage(),
            Some(Usage {
                input: 8,
                output: 2,
                cache_read: 4,
                cache_write: 0
            })
        );
        assert_eq!(
            s.delivered(),
            Delivered {
                chars: 5,
                events: 2
            }
        );
        assert_eq!(s.response(), *done);
    }

    #[test]
    fn chat_reasoning_then_text_and_reasoning_tokens() {
        let input = [
            chunk(json!({"reasoning_content": "Let me "})),
            chunk(json!({"reasoning_content": "think."})),
            chunk(json!({"content": "42"})),
            finish_chunk("stop"),
            usage_chunk(5, 0, 20, 15),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (_, evs) = run(Format::OpenAi, &input);
        assert_eq!(
            types(&evs)[2..],
            [
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(evs[6].1["text"], "Let me think.");
        assert_eq!(evs[9].1["output_index"], 1);
        let r = &evs.last().unwrap().1["response"];
        assert_eq!(r["output"][0]["type"], "reasoning");
        assert_eq!(r["output"][0]["summary"][0]["text"], "Let me think.");
        assert_eq!(r["output"][1]["content"][0]["text"], "42");
        assert_eq!(r["usage"]["output_tokens_details"]["reasoning_tokens"], 15);
    }

    #[test]
    fn interleaved_parallel_calls_come_out_one_item_at_a_time() {
        let input = [
            chunk(json!({"content": "Checking."})),
            call(0, Some("call_a"), Some("get_weather"), ""),
            call(1, Some("call_b"), Some("get_weather"), "{\"city\":"),
            call(0, None, None, "{\"city\":"),
            call(1, None, None, "\"Rome\"}"),
            call(0, None, None, "\"Paris\"}"),
            finish_chunk("tool_calls"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (_, evs) = run(Format::OpenAi, &input);
        // Every item's events sit between its added and done, and items do not overlap.
        let mut open: Option<u64> = None;
        let mut seen = Vec::new();
        for (t, e) in &evs {
            match t.as_str() {
                "response.output_item.added" => {
                    assert!(open.is_none(), "overlapping items");
                    open = e["output_index"].as_u64();
                    seen.push(open.unwrap());
                }
                "response.output_item.done" => {
                    assert_eq!(open, e["output_index"].as_u64());
                    open = None;
                }
                t if t.starts_with("response.") && e.get("output_index").is_some() => {
                    assert_eq!(open, e["output_index"].as_u64(), "{t}");
                }
                _ => {}
            }
        }
        assert_eq!(seen, [0, 1, 2]);
        let r = &evs.last().unwrap().1["response"];
        assert_eq!(r["output"][1]["call_id"], "call_a");
        assert_eq!(r["output"][1]["arguments"], "{\"city\":\"Paris\"}");
        assert_eq!(r["output"][2]["call_id"], "call_b");
        assert_eq!(r["output"][2]["arguments"], "{\"city\":\"Rome\"}");
        // Deltas of each call add up to its arguments.
        for (oi, want) in [(1, "{\"city\":\"Paris\"}"), (2, "{\"city\":\"Rome\"}")] {
            let joined: String = evs
                .iter()
                .filter(|(t, e)| {
                    t == "response.function_call_arguments.delta" && e["output_index"] == oi
                })
                .map(|(_, e)| e["delta"].as_str().unwrap().to_string())
                .collect();
            assert_eq!(joined, want);
            let done = evs
                .iter()
                .find(|(t, e)| {
                    t == "response.function_call_arguments.done" && e["output_index"] == oi
                })
                .unwrap();
            assert_eq!(done.1["arguments"], want);
            assert_eq!(done.1["name"], "get_weather");
        }
        let added = evs
            .iter()
            .find(|(t, e)| t == "response.output_item.added" && e["output_index"] == 1)
            .unwrap();
        assert_eq!(added.1["item"]["arguments"], "");
        assert_eq!(added.1["item"]["status"], "in_progress");
        assert!(added.1["item"]["id"].as_str().unwrap().starts_with("fc_"));
    }

    #[test]
    fn sequential_calls_stream_live_and_repeated_ids_do_not_split() {
        let input = [
            call(0, Some("call_a"), Some("get_weather"), "{\"ci"),
            call(0, Some("call_a"), None, "ty\":\"X\"}"),
            call(1, Some("call_b"), Some("get_weather"), "{}"),
            // A new id at a known index is a new call.
            call(1, Some("call_c"), Some("get_weather"), "{\"a\":1}"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (_, evs) = run(Format::OpenAi, &input);
        let r = &evs.last().unwrap().1["response"];
        let calls: Vec<(&str, &str)> = r["output"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| {
                (
                    i["call_id"].as_str().unwrap(),
                    i["arguments"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            calls,
            [
                ("call_a", "{\"city\":\"X\"}"),
                ("call_b", "{}"),
                ("call_c", "{\"a\":1}")
            ]
        );
        // The first call's two pieces were streamed as they came.
        let deltas = evs
            .iter()
            .filter(|(t, e)| {
                t == "response.function_call_arguments.delta" && e["output_index"] == 0
            })
            .count();
        assert_eq!(deltas, 2);
    }

    #[test]
    fn custom_tool_input_streams_decoded() {
        let input_text = "*** Begin Patch\n*** Add File: \"a b\".txt\n+café 😀\\n\n*** End Patch";
        let args = json!({"input": input_text}).to_string();
        // Split the JSON arguments at every 3 bytes (on char boundaries), so escapes and
        // the surrogate pair are cut.
        let escaped = args.replace('é', "\\u00e9").replace('😀', "\\ud83d\\ude00");
        let mut pieces = Vec::new();
        let mut cur = String::new();
        for c in escaped.chars() {
            cur.push(c);
            if cur.len() >= 3 {
                pieces.push(std::mem::take(&mut cur));
            }
        }
        pieces.push(cur);
        let mut input = vec![call(0, Some("call_p"), Some("apply_patch"), "")];
        input.extend(pieces.iter().map(|p| call(0, None, None, p)));
        input.push(finish_chunk("tool_calls"));
        input.push("data: [DONE]\n\n".into());
        let (_, evs) = run(Format::OpenAi, &input.concat());
        let streamed: String = evs
            .iter()
            .filter(|(t, _)| t == "response.custom_tool_call_input.delta")
            .map(|(_, e)| e["delta"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(streamed, input_text);
        assert!(
            evs.iter()
                .filter(|(t, _)| t == "response.custom_tool_call_input.delta")
                .count()
                > 10
        );
        assert!(
            evs.iter()
                .all(|(t, _)| !t.starts_with("response.function_call"))
        );
        let done = evs
            .iter()
            .find(|(t, _)| t == "response.custom_tool_call_input.done")
            .unwrap();
        assert_eq!(done.1["input"], input_text);
        let added = evs
            .iter()
            .find(|(t, _)| t == "response.output_item.added")
            .unwrap();
        assert_eq!(added.1["item"]["type"], "custom_tool_call");
        assert_eq!(added.1["item"]["input"], "");
        let item = &evs.last().unwrap().1["response"]["output"][0];
        assert_eq!(item["type"], "custom_tool_call");
        assert_eq!(item["input"], input_text);
        assert_eq!(item["call_id"], "call_p");
        assert!(item["id"].as_str().unwrap().starts_with("ctc_"));
    }

    #[test]
    fn custom_tool_with_unexpected_arguments_sends_them_whole() {
        let input = [
            call(
                0,
                Some("call_p"),
                Some("apply_patch"),
                "{\"patch\": \"x\", ",
            ),
            call(0, None, None, "\"input\": \"y\"}"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (_, evs) = run(Format::OpenAi, &input);
        let deltas: Vec<&Value> = evs
            .iter()
            .filter(|(t, _)| t == "response.custom_tool_call_input.delta")
            .map(|(_, e)| e)
            .collect();
        assert_eq!(deltas.len(), 1);
        assert_eq!(deltas[0]["delta"], "y");
    }

    #[test]
    fn decoder_handles_every_split() {
        let text = "a\"b\\c\n\t\u{1F600}é/z";
        let raw = json!({"input": text})
            .to_string()
            .replace('😀', "\\ud83d\\ude00");
        for cut in 0..=raw.len() {
            if !raw.is_char_boundary(cut) {
                continue;
            }
            let mut d = InputDecoder::default();
            let mut got = d.feed(&raw[..cut]);
            got.push_str(&d.feed(&raw));
            assert_eq!(got, text, "cut at {cut}");
            assert_eq!(d.state, Decoding::Done);
        }
        let mut spaced = InputDecoder::default();
        assert_eq!(spaced.feed(" { \"input\" :  \"hi\" }"), "hi");
        let mut other = InputDecoder::default();
        assert_eq!(other.feed("{\"cmd\": \"ls\"}"), "");
        assert_eq!(other.state, Decoding::Fallback);
    }

    #[test]
    fn length_ends_incomplete_with_the_item_marked() {
        let input = [
            chunk(json!({"content": "Once upon"})),
            finish_chunk("length"),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let (s, evs) = run(Format::OpenAi, &input);
        let (t, last) = evs.last().unwrap();
        assert_eq!(t, "response.incomplete");
        assert_eq!(last["response"]["status"], "incomplete");
        assert_eq!(
            last["response"]["incomplete_details"]["reason"],
            "max_output_tokens"
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(s.outcome(), Some(&End::Incomplete("max_output_tokens")));
    }

    #[test]
    fn upstream_close_without_done_still_ends_the_stream() {
        let (_, evs) = run(Format::OpenAi, &chunk(json!({"content": "Hi"})));
        assert_eq!(evs.last().unwrap().0, "response.completed");
        assert_eq!(
            evs.iter()
                .filter(|(t, _)| t == "response.output_item.done")
                .count(),
            1
        );
    }

    #[test]
    fn failure_midway_closes_items_and_fails_once() {
        let mut s = ResponsesStream::new(Format::OpenAi, ctx());
        let mut out = Vec::new();
        for ev in Parser::default().push(chunk(json!({"content": "Partial"})).as_bytes()) {
            s.event(ev, &mut out);
        }
        let estimate = Usage {
            input: 9,
            output: 2,
            ..Usage::default()
        };
        s.set_usage(estimate);
        s.fail("rate_limit_exceeded", "Please try again in 3s.", &mut out);
        s.finish(&mut out);
        assert_eq!(s.usage(), None);
        s.fail("server_error", "again", &mut out);
        let evs = parse(&out);
        assert_eq!(evs[0].0, "response.created");
        let terminals: Vec<&(String, Value)> = evs
            .iter()
            .filter(|(t, _)| t == "response.failed" || t == "response.completed")
            .collect();
        assert_eq!(terminals.len(), 1);
        let r = &terminals[0].1["response"];
        assert_eq!(r["status"], "failed");
        assert_eq!(
            r["error"],
            json!({"code": "rate_limit_exceeded", "message": "Please try again in 3s."})
        );
        assert_eq!(r["output"][0]["status"], "incomplete");
        assert_eq!(r["output"][0]["content"][0]["text"], "Partial");
        assert_eq!(r["usage"]["input_tokens"], 9);
        assert_eq!(r["usage"]["output_tokens"], 2);
        assert_eq!(s.delivered().chars, 7);
        assert!(matches!(s.outcome(), Some(End::Failed(..))));
        assert_eq!(s.response()["status"], "failed");
    }

    #[test]
    fn malformed_events_are_flagged_and_finish_fails() {
        let mut s = ResponsesStream::new(Format::OpenAi, ctx());
        let mut out = Vec::new();
        s.start(&mut out);
        let before = out.len();
        for ev in Parser::default().push(b"data: {\"choices\": [oops\n\n") {
            s.event(ev, &mut out);
        }
        assert!(s.malformed() && out.len() == before && !s.done());
        s.finish(&mut out);
        let evs = parse(&out);
        assert_eq!(evs.last().unwrap().0, "response.failed");
        assert_eq!(
            evs.last().unwrap().1["response"]["error"]["code"],
            "server_error"
        );
    }

    #[test]
    fn chat_error_chunk_fails_the_response() {
        let input = [
            chunk(json!({"content": "Hi"})),
            "data: {\"error\":{\"message\":\"overloaded\",\"code\":\"rate_limit_exceeded\"}}\n\n"
                .to_string(),
        ]
        .concat();
        let (s, evs) = run(Format::OpenAi, &input);
        assert_eq!(evs.last().unwrap().0, "response.failed");
        assert_eq!(
            evs.last().unwrap().1["response"]["error"]["code"],
            "rate_limit_exceeded"
        );
        assert!(s.done());
    }

    const ANTHROPIC: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":20,\"cache_read_input_tokens\":30,\"cache_creation_input_tokens\":5,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\",\"signature\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Weather first.\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"signature_delta\",\"signature\":\"SIG\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking.\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":3,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_2\",\"name\":\"apply_patch\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"input\\\": \\\"*** Begin\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":3,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\" Patch\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":3}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":15}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    #[test]
    fn anthropic_stream_becomes_responses_events() {
        let (s, evs) = run(Format::Anthropic, ANTHROPIC);
        assert_eq!(
            types(&evs),
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.reasoning_summary_part.added",
                "response.reasoning_summary_text.delta",
                "response.reasoning_summary_text.done",
                "response.reasoning_summary_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.delta",
                "response.custom_tool_call_input.done",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert!(s.done());
        let r = &evs.last().unwrap().1["response"];
        let out = r["output"].as_array().unwrap();
        assert_eq!(out[0]["encrypted_content"], "ant-sig:SIG");
        assert_eq!(out[0]["summary"][0]["text"], "Weather first.");
        assert_eq!(out[1]["content"][0]["text"], "Checking.");
        assert_eq!(out[2]["call_id"], "toolu_1");
        assert_eq!(out[2]["arguments"], "{\"city\": \"Paris\"}");
        assert_eq!(out[3]["type"], "custom_tool_call");
        assert_eq!(out[3]["input"], "*** Begin Patch");
        assert_eq!(r["usage"]["input_tokens"], 55);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 30);
        assert_eq!(r["usage"]["output_tokens"], 15);
        assert_eq!(
            s.usage(),
            Some(Usage {
                input: 20,
                output: 15,
                cache_read: 30,
                cache_write: 5
            })
        );
        // The stored output goes back to Anthropic as the same blocks.
        let req = json!({"model": "m", "input": "next"});
        let body = super::super::request::to_anthropic(req.as_object().unwrap(), out, 10).unwrap();
        assert_eq!(
            body["messages"][0]["content"][0],
            json!({"type": "thinking", "thinking": "Weather first.", "signature": "SIG"})
        );
        assert_eq!(
            body["messages"][0]["content"][3]["input"],
            json!({"input": "*** Begin Patch"})
        );
    }

    #[test]
    fn anthropic_error_event_fails_the_response() {
        let input = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":3,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        let (s, evs) = run(Format::Anthropic, input);
        let (t, last) = evs.last().unwrap();
        assert_eq!(t, "response.failed");
        assert_eq!(
            last["response"]["error"],
            json!({"code": "server_error", "message": "Overloaded"})
        );
        assert_eq!(last["response"]["output"][0]["status"], "incomplete");
        assert_eq!(last["response"]["usage"]["input_tokens"], 3);
        assert_eq!(s.outcome().map(End::status), Some("failed"));
    }

    #[test]
    fn redacted_thinking_is_an_item_without_summary() {
        let input = concat!(
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"redacted_thinking\",\"data\":\"RED\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let (_, evs) = run(Format::Anthropic, input);
        assert_eq!(
            types(&evs)[2..],
            [
                "response.output_item.added",
                "response.output_item.done",
                "response.completed"
            ]
        );
        assert_eq!(
            evs[3].1["item"],
            json!({"id": evs[3].1["item"]["id"], "type": "reasoning", "summary": [],
            "encrypted_content": "ant-redacted:RED"})
        );
    }

    // -----------------------------------------------------------------------------------
    // Properties

    fn arb_chat_event() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => "[a-z é\"\\\\{}]{0,6}".prop_map(|t| chunk(json!({"content": t}))),
            2 => "[a-z ]{0,6}".prop_map(|t| chunk(json!({"reasoning_content": t}))),
            4 => (0i64..3, prop::option::of(prop::sample::select(vec!["call_a", "call_b", "call_c"])),
                prop::option::of(prop::sample::select(vec!["get_weather", "apply_patch", "other"])),
                prop::sample::select(vec!["", "{", "}", "{\"input\":\"", "x\\n", "\"}", "{\"a\":1}", "\\u00e9", "\\"]))
                .prop_map(|(i, id, name, args)| call(i, id, name, args)),
            1 => prop::sample::select(vec!["stop", "length", "tool_calls", "content_filter"]).prop_map(finish_chunk),
            1 => (0i64..100, 0i64..100, 0i64..100).prop_map(|(p, c, o)| usage_chunk(p + c, c, o, o / 2)),
            1 => Just("data: [DONE]\n\n".to_string()),
            1 => Just(": keep-alive\n\n".to_string()),
            1 => Just("data: {\"error\":{\"message\":\"x\"}}\n\n".to_string()),
            1 => ".{0,8}".prop_map(|s| format!("data: {s}\n\n")),
        ]
    }

    fn arb_anthropic_event() -> impl Strategy<Value = String> {
        let ev = |v: Value| {
            format!(
                "event: {}\ndata: {v}\n\n",
                v["type"].as_str().unwrap_or("x")
            )
        };
        prop_oneof![
            3 => (0i64..4, prop::sample::select(vec![
                json!({"type": "text", "text": ""}), json!({"type": "thinking", "thinking": ""}),
                json!({"type": "redacted_thinking", "data": "R"}),
                json!({"type": "tool_use", "id": "toolu_1", "name": "apply_patch", "input": {}}),
                json!({"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}),
                json!({"type": "server_tool_use", "id": "s", "name": "web_search"})]))
                .prop_map(move |(i, b)| ev(json!({"type": "content_block_start", "index": i, "content_block": b}))),
            5 => (0i64..4, prop::sample::select(vec![
                json!({"type": "text_delta", "text": "hi "}), json!({"type": "thinking_delta", "thinking": "hm"}),
                json!({"type": "signature_delta", "signature": "S"}),
                json!({"type": "input_json_delta", "partial_json": "{\"input\":\"a"}),
                json!({"type": "input_json_delta", "partial_json": "b\"}"})]))
                .prop_map(move |(i, d)| ev(json!({"type": "content_block_delta", "index": i, "delta": d}))),
            2 => (0i64..4).prop_map(move |i| ev(json!({"type": "content_block_stop", "index": i}))),
            1 => prop::sample::select(vec!["end_turn", "max_tokens", "tool_use"]).prop_map(move |r|
                ev(json!({"type": "message_delta", "delta": {"stop_reason": r}, "usage": {"output_tokens": 9}}))),
            1 => Just(ev(json!({"type": "message_start", "message": {"usage": {"input_tokens": 4, "output_tokens": 1}}}))),
            1 => Just(ev(json!({"type": "message_stop"}))),
            1 => Just(ev(json!({"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}))),
            1 => Just(ev(json!({"type": "ping"}))),
        ]
    }

    /// Every client event is a JSON object named by its `event:` line with consecutive
    /// sequence numbers; items open and close one at a time with increasing output
    /// indexes; exactly one terminal event ends the stream, last, and its response holds
    /// exactly the items that were done.
    fn check_stream(out: &[u8]) -> Result<(), TestCaseError> {
        let evs = Parser::default().push(out);
        let mut terminal = 0;
        let mut open: Option<u64> = None;
        let mut done_items: Vec<Value> = Vec::new();
        for (i, e) in evs.iter().enumerate() {
            let v: Value = serde_json::from_str(&e.data)
                .map_err(|err| TestCaseError::fail(format!("{err}: {}", e.data)))?;
            prop_assert_eq!(v["type"].as_str(), e.event.as_deref());
            prop_assert_eq!(v["sequence_number"].as_u64(), Some(i as u64));
            prop_assert!(terminal == 0, "event after the terminal one");
            match v["type"].as_str().unwrap() {
                "response.completed" | "response.incomplete" | "response.failed" => {
                    terminal += 1;
                    prop_assert!(open.is_none());
                    prop_assert_eq!(v["response"]["output"].as_array().unwrap(), &done_items);
                    let u = &v["response"]["usage"];
                    for k in ["input_tokens", "output_tokens", "total_tokens"] {
                        prop_assert!(u[k].is_i64(), "{} missing", k);
                    }
                    prop_assert!(u["input_tokens_details"]["cached_tokens"].is_i64());
                    prop_assert!(u["output_tokens_details"]["reasoning_tokens"].is_i64());
                }
                "response.output_item.added" => {
                    prop_assert!(open.is_none());
                    prop_assert_eq!(v["output_index"].as_u64(), Some(done_items.len() as u64));
                    open = v["output_index"].as_u64();
                }
                "response.output_item.done" => {
                    prop_assert_eq!(open, v["output_index"].as_u64());
                    open = None;
                    done_items.push(v["item"].clone());
                }
                "response.created" | "response.in_progress" => prop_assert!(i < 2),
                _ => prop_assert_eq!(open, v["output_index"].as_u64()),
            }
        }
        prop_assert_eq!(terminal, 1);
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, failure_persistence: None, ..ProptestConfig::default() })]

        #[test]
        fn any_chat_stream_ends_with_exactly_one_terminal(events in prop::collection::vec(arb_chat_event(), 0..16),
            fail_at_end in any::<bool>()) {
            let mut s = ResponsesStream::new(Format::OpenAi, ctx());
            let mut out = Vec::new();
            s.start(&mut out);
            for ev in Parser::default().push(events.concat().as_bytes()) {
                s.event(ev, &mut out);
            }
            if fail_at_end || s.malformed() {
                s.fail("server_error", "cut", &mut out);
            }
            s.finish(&mut out);
            prop_assert!(s.done());
            check_stream(&out)?;
            let r = s.response();
            prop_assert_eq!(r["status"].as_str(), s.outcome().map(End::status));
        }

        #[test]
        fn any_anthropic_stream_ends_with_exactly_one_terminal(events in prop::collection::vec(arb_anthropic_event(), 0..16)) {
            let mut s = ResponsesStream::new(Format::Anthropic, ctx());
            let mut out = Vec::new();
            for ev in Parser::default().push(events.concat().as_bytes()) {
                s.event(ev, &mut out);
            }
            s.finish(&mut out);
            check_stream(&out)?;
        }

        /// Parallel calls split anywhere and interleaved in any order come out whole, each
        /// with its own id, in the order they started.
        #[test]
        fn interleaved_calls_keep_their_arguments(args in prop::collection::vec(
                prop::collection::btree_map("[a-z]{1,4}", "[a-zé\"\\\\ ]{0,6}", 0..3), 1..4),
            cuts in prop::collection::vec(1usize..6, 8), order in prop::collection::vec(0usize..4, 40)) {
            let texts: Vec<String> = args.iter().map(|m| json!(m).to_string()).collect();
            // Pieces of each call's arguments.
            let mut queues: Vec<Vec<String>> = texts.iter().enumerate().map(|(i, t)| {
                let chars: Vec<char> = t.chars().collect();
                let size = cuts[i % cuts.len()];
                chars.chunks(size).map(|c| c.iter().collect()).collect()
            }).collect();
            let mut input = Vec::new();
            let mut started = vec![false; texts.len()];
            for (k, o) in order.iter().enumerate() {
                // Calls start in index order; afterwards pieces interleave as `order` says.
                let i = if k < texts.len() { k } else { o % texts.len() };
                if !started[i] {
                    started[i] = true;
                    input.push(call(i as i64, Some(&format!("call_{i}")), Some("get_weather"), ""));
                }
                if !queues[i].is_empty() {
                    let piece = queues[i].remove(0);
                    input.push(call(i as i64, None, None, &piece));
                }
            }
            for (i, q) in queues.iter_mut().enumerate() {
                for piece in q.drain(..) {
                    input.push(call(i as i64, None, None, &piece));
                }
            }
            input.push("data: [DONE]\n\n".to_string());
            let mut s = ResponsesStream::new(Format::OpenAi, ctx());
            let mut out = Vec::new();
            for ev in Parser::default().push(input.concat().as_bytes()) {
                s.event(ev, &mut out);
            }
            s.finish(&mut out);
            check_stream(&out)?;
            let r = s.response();
            let got: Vec<(String, String)> = r["output"].as_array().unwrap().iter()
                .map(|i| (i["call_id"].as_str().unwrap().to_string(), i["arguments"].as_str().unwrap().to_string()))
                .collect();
            let want: Vec<(String, String)> = texts.iter().enumerate().map(|(i, t)| (format!("call_{i}"), t.clone())).collect();
            prop_assert_eq!(got, want);
            // And the streamed deltas of each item add up to its arguments.
            for (oi, t) in texts.iter().enumerate() {
                let joined: String = Parser::default().push(&out).iter()
                    .map(|e| serde_json::from_str::<Value>(&e.data).unwrap())
                    .filter(|v| v["type"] == "response.function_call_arguments.delta" && v["output_index"] == oi)
                    .map(|v| v["delta"].as_str().unwrap().to_string())
                    .collect();
                prop_assert_eq!(&joined, t);
            }
        }
    }
}
