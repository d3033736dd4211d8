//! Recorded streams of real providers (`tests/fixtures/streams/`, listed with what each one
//! must deliver in `manifest.json`) replayed through the SSE parser and the stream
//! converter for both client formats, whole and cut into small chunks, and served by a
//! fake upstream through the real router (SQLite and PostgreSQL): the text, the tool
//! calls, the stop reason and the usage must reach an OpenAI client and an Anthropic client
//! intact, read the way their SDKs read them, and the usage tokengate bills must be the
//! upstream's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::path::PathBuf;

use axum::body::Body;
use axum::extract::Path;
use axum::response::Response;
use axum::routing::post;
use bytes::Bytes;
use common::{Running, client, start};
use serde_json::{Value, json};
use tokengate_core::keys::NewKey;
use tokengate_core::money::{NANOS_PER_USD, Usage};
use tokengate_server::gateway::sse::{Event, Parser};
use tokengate_server::gateway::translate::Format;
use tokengate_server::gateway::translate::stream::Converter;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/streams")
}

struct Fixture {
    file: String,
    format: Format,
    bytes: Vec<u8>,
    text: String,
    tool_calls: Vec<(String, String, Value)>,
    finish_reason: String,
    usage: Option<Usage>,
}

fn fixtures() -> Vec<Fixture> {
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(fixtures_dir().join("manifest.json")).unwrap())
            .unwrap();
    manifest
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let file = m["file"].as_str().unwrap().to_string();
            Fixture {
                bytes: std::fs::read(fixtures_dir().join(&file)).unwrap(),
                file,
                format: match m["format"].as_str().unwrap() {
                    "openai" => Format::OpenAi,
                    _ => Format::Anthropic,
                },
                text: m["text"].as_str().unwrap().to_string(),
                tool_calls: m["tool_calls"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| {
                        (
                            t["id"].as_str().unwrap().to_string(),
                            t["name"].as_str().unwrap().to_string(),
                            t["arguments"].clone(),
                        )
                    })
                    .collect(),
                finish_reason: m["finish_reason"].as_str().unwrap().to_string(),
                usage: m["usage"].as_object().map(|u| Usage {
                    input: u["input"].as_i64().unwrap(),
                    output: u["output"].as_i64().unwrap(),
                    cache_read: u["cache_read"].as_i64().unwrap(),
                    cache_write: u["cache_write"].as_i64().unwrap(),
                }),
            }
        })
        .collect()
}

/// Runs `bytes`, cut into `chunk`-byte pieces, through a converter; returns the events
/// the client received and the converter.
fn replay(
    bytes: &[u8],
    chunk: usize,
    upstream: Format,
    client: Format,
    wants_usage: bool,
) -> (Vec<Event>, Converter) {
    let mut conv = Converter::new(upstream, client, wants_usage, 1_749_560_000);
    let mut parser = Parser::default();
    let mut out = Vec::new();
    for piece in bytes.chunks(chunk) {
        for ev in parser.push(piece) {
            conv.event(ev, &mut out);
        }
    }
    if let Some(ev) = parser.finish() {
        conv.event(ev, &mut out);
    }
    assert!(!conv.malformed(), "stream judged malformed");
    conv.finish(&mut out);
    let mut client_parser = Parser::default();
    let mut events = client_parser.push(&out);
    events.extend(client_parser.finish());
    (events, conv)
}

/// What an OpenAI SDK assembles from a chat completion stream.
#[derive(Debug, Default)]
struct OpenAiView {
    text: String,
    /// tool-call index → (id, name, arguments)
    tools: BTreeMap<i64, (String, String, String)>,
    finish_reason: Option<String>,
    usage: Option<Value>,
    done: bool,
}

fn openai_view(events: &[Event]) -> OpenAiView {
    let mut v = OpenAiView::default();
    for ev in events {
        assert!(!v.done, "event after [DONE]: {ev:?}");
        // As the SDKs check it.
        if ev.data.starts_with("[DONE]") {
            v.done = true;
            continue;
        }
        if ev.data.is_empty() {
            continue;
        }
        let c: Value = serde_json::from_str(&ev.data).unwrap();
        assert!(c.get("error").is_none(), "error chunk: {c}");
        if let Some(u) = c.get("usage").filter(|u| u.is_object()) {
            v.usage = Some(u.clone());
        }
        for ch in c["choices"].as_array().unwrap() {
            let d = &ch["delta"];
            if let Some(t) = d["content"].as_str() {
                v.text.push_str(t);
            }
            for tc in d["tool_calls"].as_array().into_iter().flatten() {
                let e = v.tools.entry(tc["index"].as_i64().unwrap()).or_default();
                if let Some(id) = tc["id"].as_str() {
                    e.0 = id.to_string();
                }
                if let Some(n) = tc["function"]["name"].as_str() {
                    e.1.push_str(n);
                }
                if let Some(a) = tc["function"]["arguments"].as_str() {
                    e.2.push_str(a);
                }
            }
            if let Some(f) = ch["finish_reason"].as_str() {
                v.finish_reason = Some(f.to_string());
            }
        }
    }
    v
}

/// What the Anthropic SDK's message stream accumulates: usage starts from
/// `message_start` and each `message_delta` overwrites `output_tokens` and whichever
/// input counts it carries.
#[derive(Debug, Default)]
struct AnthropicView {
    text: String,
    tools: Vec<(String, String, String)>,
    stop_reason: Option<String>,
    usage: Value,
    stopped: bool,
}

fn anthropic_view(events: &[Event]) -> AnthropicView {
    let mut v = AnthropicView::default();
    let mut blocks: BTreeMap<i64, (String, usize)> = BTreeMap::new();
    let mut open: Option<i64> = None;
    for (i, ev) in events.iter().enumerate() {
        assert!(!v.stopped, "event after message_stop: {ev:?}");
        let e: Value = serde_json::from_str(&ev.data).unwrap();
        let ty = e["type"].as_str().unwrap().to_string();
        assert_eq!(
            ev.event.as_deref(),
            Some(ty.as_str()),
            "event name matches type"
        );
        if i == 0 {
            assert_eq!(ty, "message_start", "first event");
        }
        match ty.as_str() {
            "message_start" => v.usage = e["message"]["usage"].clone(),
            "content_block_start" => {
                let index = e["index"].as_i64().unwrap();
                assert!(open.is_none(), "block {index} opened inside another");
                open = Some(index);
                let b = &e["content_block"];
                let kind = b["type"].as_str().unwrap().to_string();
                if kind == "tool_use" {
                    v.tools.push((
                        b["id"].as_str().unwrap().to_string(),
                        b["name"].as_str().unwrap().to_string(),
                        String::new(),
                    ));
                }
                blocks.insert(index, (kind, v.tools.len()));
            }
            "content_block_delta" => {
                let index = e["index"].as_i64().unwrap();
                assert_eq!(open, Some(index), "delta for a block that is not open");
                let d = &e["delta"];
                match d["type"].as_str().unwrap() {
                    "text_delta" => v.text.push_str(d["text"].as_str().unwrap()),
                    "input_json_delta" => {
                        let (_, n) = &blocks[&index];
                        v.tools[n - 1]
                            .2
                            .push_str(d["partial_json"].as_str().unwrap());
                    }
                    "thinking_delta" | "signature_delta" => {}
                    other => panic!("unexpected delta {other}"),
                }
            }
            "content_block_stop" => {
                assert_eq!(open.take(), Some(e["index"].as_i64().unwrap()));
            }
            "message_delta" => {
                v.stop_reason = e["delta"]["stop_reason"].as_str().map(str::to_string);
                let u = &e["usage"];
                v.usage["output_tokens"] = u["output_tokens"].clone();
                for k in [
                    "input_tokens",
                    "cache_read_input_tokens",
                    "cache_creation_input_tokens",
                ] {
                    if !u[k].is_null() {
                        v.usage[k] = u[k].clone();
                    }
                }
            }
            "message_stop" => v.stopped = true,
            "ping" => {}
            other => panic!("unexpected event {other}: {e}"),
        }
    }
    assert!(open.is_none(), "a block was left open");
    v
}

fn arguments(raw: &str) -> Value {
    if raw.is_empty() {
        json!({})
    } else {
        serde_json::from_str(raw).unwrap_or_else(|e| panic!("arguments {raw:?}: {e}"))
    }
}

fn stop_reason_for(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" => "tool_use",
        _ => "end_turn",
    }
}

const CHUNKINGS: [usize; 4] = [usize::MAX, 1, 7, 64];

/// Runs `check` on every fixture and reports every one that fails, not just the first.
fn for_each_fixture(check: impl Fn(&Fixture)) {
    let all = fixtures();
    assert!(all.len() >= 12, "fixtures missing");
    let failed: Vec<String> = all
        .iter()
        .filter(|f| std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(f))).is_err())
        .map(|f| f.file.clone())
        .collect();
    assert!(failed.is_empty(), "failed: {failed:?}");
}

#[test]
fn recorded_streams_reach_openai_clients_intact() {
    for_each_fixture(|f| {
        for chunk in CHUNKINGS {
            let ctx = format!("{} (chunks of {chunk})", f.file);
            let (events, conv) = replay(&f.bytes, chunk, f.format, Format::OpenAi, true);
            let v = openai_view(&events);
            assert!(v.done, "{ctx}: no [DONE]");
            assert_eq!(v.text, f.text, "{ctx}: text");
            let tools: Vec<(String, String, Value)> = v
                .tools
                .values()
                .map(|(id, name, args)| (id.clone(), name.clone(), arguments(args)))
                .collect();
            assert_eq!(tools, f.tool_calls, "{ctx}: tool calls");
            assert_eq!(
                v.finish_reason.as_deref(),
                Some(f.finish_reason.as_str()),
                "{ctx}: finish_reason"
            );
            assert_eq!(conv.usage(), f.usage, "{ctx}: billed usage");
            if let Some(u) = f.usage {
                let got = v.usage.unwrap_or_else(|| panic!("{ctx}: no usage chunk"));
                assert_eq!(
                    got["prompt_tokens"],
                    u.total_input(),
                    "{ctx}: prompt_tokens"
                );
                assert_eq!(
                    got["completion_tokens"], u.output,
                    "{ctx}: completion_tokens"
                );
                let cached = got["prompt_tokens_details"]["cached_tokens"]
                    .as_i64()
                    .unwrap_or(0);
                assert_eq!(cached, u.cache_read, "{ctx}: cached_tokens");
            }
            // Without include_usage the client gets no usage from an OpenAI-format upstream
            // (tokengate asked for it on the client's behalf).
            let (events, _) = replay(&f.bytes, chunk, f.format, Format::OpenAi, false);
            let v = openai_view(&events);
            assert_eq!(v.text, f.text, "{ctx}: text without usage");
            if f.format == Format::OpenAi {
                assert!(
                    v.usage.is_none() || f.file.contains("continuous") || f.file.contains("x_groq"),
                    "{ctx}: usage the client did not ask for"
                );
            }
        }
    });
}

#[test]
fn recorded_streams_reach_anthropic_clients_intact() {
    for_each_fixture(|f| {
        for chunk in CHUNKINGS {
            let ctx = format!("{} (chunks of {chunk})", f.file);
            let (events, conv) = replay(&f.bytes, chunk, f.format, Format::Anthropic, true);
            let v = anthropic_view(&events);
            assert!(v.stopped, "{ctx}: no message_stop");
            assert_eq!(v.text, f.text, "{ctx}: text");
            let tools: Vec<(String, String, Value)> = v
                .tools
                .iter()
                .map(|(id, name, args)| (id.clone(), name.clone(), arguments(args)))
                .collect();
            assert_eq!(tools, f.tool_calls, "{ctx}: tool calls");
            assert_eq!(
                v.stop_reason.as_deref(),
                Some(stop_reason_for(&f.finish_reason)),
                "{ctx}: stop_reason"
            );
            assert_eq!(conv.usage(), f.usage, "{ctx}: billed usage");
            if let Some(u) = f.usage {
                assert_eq!(v.usage["input_tokens"], u.input, "{ctx}: input_tokens");
                assert_eq!(v.usage["output_tokens"], u.output, "{ctx}: output_tokens");
                assert_eq!(
                    v.usage["cache_read_input_tokens"].as_i64().unwrap_or(0),
                    u.cache_read,
                    "{ctx}: cache_read_input_tokens"
                );
                assert_eq!(
                    v.usage["cache_creation_input_tokens"].as_i64().unwrap_or(0),
                    u.cache_write,
                    "{ctx}: cache_creation_input_tokens"
                );
            }
        }
    });
}

/// Same-format relays forward the upstream's bytes untouched, apart from a usage chunk
/// added for a client that asked for usage when the upstream reported it only in a
/// provider-specific field, and an OpenAI-format event without data that is not a
/// comment (a `retry:` line), which the OpenAI SDKs cannot parse.
#[test]
fn recorded_streams_pass_through_byte_for_byte() {
    for_each_fixture(|f| {
        let (events, _) = replay(&f.bytes, 5, f.format, f.format, true);
        let relayed: Vec<u8> = events.iter().flat_map(|e| e.raw.to_vec()).collect();
        let relayed = String::from_utf8_lossy(&relayed).into_owned();
        let original = String::from_utf8_lossy(&f.bytes).replacen("retry: 3000\n\n", "", 1);
        if f.file.contains("x_groq") {
            let body = original.strip_suffix("data: [DONE]\n\n").unwrap();
            let added = relayed
                .strip_prefix(body)
                .and_then(|r| r.strip_suffix("data: [DONE]\n\n"))
                .unwrap_or_else(|| panic!("{}: {relayed}", f.file));
            let chunk: Value =
                serde_json::from_str(added.trim().strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(chunk["choices"], json!([]));
            assert_eq!(chunk["usage"]["prompt_tokens"], 41);
            assert_eq!(chunk["usage"]["completion_tokens"], 6);
        } else {
            assert_eq!(relayed, original, "{}", f.file);
        }
    });
}

// ---------------------------------------------------------------------------------------
// The same streams served by a fake upstream through the real router

/// Serves `/{fixture}/v1/chat/completions` and `/{fixture}/v1/messages` as the recorded
/// bytes, in 13-byte chunks.
async fn replaying_upstream() -> String {
    async fn replay_file(Path(name): Path<String>) -> Response {
        let bytes = std::fs::read(fixtures_dir().join(format!("{name}.sse"))).unwrap();
        let chunks: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(13)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Response::builder()
            .header("content-type", "text/event-stream")
            .body(Body::from_stream(futures::stream::iter(chunks)))
            .unwrap()
    }
    let app = axum::Router::new()
        .route("/{name}/v1/chat/completions", post(replay_file))
        .route("/{name}/v1/messages", post(replay_file));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    base
}

fn stem(f: &Fixture) -> String {
    f.file.trim_end_matches(".sse").to_string()
}

async fn register(r: &Running, upstream: &str, f: &Fixture) {
    let name = stem(f);
    let kind = match f.format {
        Format::OpenAi => "openai",
        Format::Anthropic => "anthropic",
    };
    let base = format!("{upstream}/{name}/v1");
    r.provider(&name, kind, Some(base), json!({})).await;
    let prices = tokengate_core::money::Prices {
        input_per_m: NANOS_PER_USD,
        output_per_m: 2 * NANOS_PER_USD,
        cache_read_per_m: Some(NANOS_PER_USD / 10),
        cache_write_per_m: Some(NANOS_PER_USD),
    };
    r.model(&format!("{name}/m"), &name, prices, 4096).await;
}

/// The SSE events of a response body.
async fn events_of(resp: reqwest::Response) -> (String, Vec<Event>) {
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(resp.status(), 200);
    let body = resp.bytes().await.unwrap();
    let mut p = Parser::default();
    let mut events = p.push(&body);
    events.extend(p.finish());
    (id, events)
}

async fn billed(r: &Running, user: i64, request_id: &str) -> tokengate_core::usage::RequestRecord {
    for _ in 0..100 {
        let logs = tokengate_core::usage::recent_logs(&r.server_state.db, user, 1000)
            .await
            .unwrap();
        if let Some(row) = logs.into_iter().find(|l| l.request_id == request_id) {
            return row;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no log row for {request_id}");
}

fn assert_billed(row: &tokengate_core::usage::RequestRecord, f: &Fixture, ctx: &str) {
    assert_eq!(row.status, 200, "{ctx}: {row:?}");
    if let Some(u) = f.usage {
        assert_eq!(
            (row.tokens_in, row.tokens_out, row.cached_tokens),
            (u.total_input(), u.output, u.cache_read + u.cache_write),
            "{ctx}: billed usage"
        );
    }
}

async fn replay_through_the_router(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let upstream = replaying_upstream().await;
    let all = fixtures();
    for f in &all {
        register(&r, &upstream, f).await;
    }
    r.server_state.gateway.reload_routes().await.unwrap();
    let (user, key) = r
        .customer(
            "replay@example.com",
            100 * NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let msgs = json!([{"role": "user", "content": "What is the weather in Paris?"}]);
    for f in &all {
        let model = format!("{}/m", stem(f));
        let ctx = format!("{} via /v1/chat/completions", f.file);
        let resp = client()
            .post(format!("{}/v1/chat/completions", r.base))
            .bearer_auth(&key)
            .json(&json!({"model": model, "messages": msgs, "stream": true,
                "stream_options": {"include_usage": true}}))
            .send()
            .await
            .unwrap();
        let (id, events) = events_of(resp).await;
        let v = openai_view(&events);
        assert!(v.done, "{ctx}: no [DONE]");
        assert_eq!(v.text, f.text, "{ctx}: text");
        let tools: Vec<(String, String, Value)> = v
            .tools
            .values()
            .map(|(id, name, args)| (id.clone(), name.clone(), arguments(args)))
            .collect();
        assert_eq!(tools, f.tool_calls, "{ctx}: tool calls");
        if let Some(u) = f.usage {
            let got = v.usage.unwrap_or_else(|| panic!("{ctx}: no usage"));
            assert_eq!(
                (&got["prompt_tokens"], &got["completion_tokens"]),
                (&json!(u.total_input()), &json!(u.output)),
                "{ctx}: usage"
            );
        }
        assert_billed(&billed(&r, user, &id).await, f, &ctx);

        let ctx = format!("{} via /v1/messages", f.file);
        let resp = client()
            .post(format!("{}/v1/messages", r.base))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "max_tokens": 1024, "messages": msgs, "stream": true}))
            .send()
            .await
            .unwrap();
        let (id, events) = events_of(resp).await;
        let v = anthropic_view(&events);
        assert!(v.stopped, "{ctx}: no message_stop");
        assert_eq!(v.text, f.text, "{ctx}: text");
        let tools: Vec<(String, String, Value)> = v
            .tools
            .iter()
            .map(|(id, name, args)| (id.clone(), name.clone(), arguments(args)))
            .collect();
        assert_eq!(tools, f.tool_calls, "{ctx}: tool calls");
        if let Some(u) = f.usage {
            assert_eq!(
                (&v.usage["input_tokens"], &v.usage["output_tokens"]),
                (&json!(u.input), &json!(u.output)),
                "{ctx}: usage"
            );
        }
        assert_billed(&billed(&r, user, &id).await, f, &ctx);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_streams_through_the_router_on_sqlite() {
    replay_through_the_router(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_streams_through_the_router_on_postgres() {
    common::on_postgres(replay_through_the_router).await;
}
