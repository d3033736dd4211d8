//! Routing, resilience and policy on the real router, each scenario on SQLite and on
//! PostgreSQL: weighted aliases and priority tiers, fallback before the first byte, circuit
//! breakers opening and healing, no retry once a stream has started, billing of cut-off
//! and abandoned streams, RPM/TPM limits, key and key-group policies, the Anthropic
//! endpoint over an OpenAI-speaking provider, and embeddings.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Running, assert_error, chat, client, start, start_with};
use futures::StreamExt;
use serde_json::{Value, json};
use tokengate_core::accounts;
use tokengate_core::catalog::{self, ModelSpec, TargetSpec};
use tokengate_core::keys::{self, NewKey};
use tokengate_core::money::{NANOS_PER_USD, Prices, Usage};
use tokengate_core::now_ms;
use tokengate_core::usage::RequestRecord;
use tokengate_server::gateway::health::TargetHealth;

/// Prices of the models the scenarios create: $1/M in, $2/M out (1000 and 2000 nano per
/// token).
const IN_PER_M: i64 = NANOS_PER_USD;
const OUT_PER_M: i64 = 2 * NANOS_PER_USD;
const PRICES: Prices = Prices {
    input_per_m: IN_PER_M,
    output_per_m: OUT_PER_M,
    cache_read_per_m: None,
    cache_write_per_m: None,
};
/// `mock/fast-1` of the demo catalog.
const FAST: Prices = Prices {
    input_per_m: 150_000_000,
    output_per_m: 600_000_000,
    cache_read_per_m: Some(75_000_000),
    cache_write_per_m: None,
};
/// The mock's fixed preamble: 8 words, before it echoes the last user message.
const PREAMBLE: &str = "Hello from the tokengate mock provider. You said:";

// ---------------------------------------------------------------------------------------
// Catalog and HTTP helpers

async fn provider(r: &Running, name: &str, kind: &str, base_url: Option<String>, config: Value) {
    r.provider(name, kind, base_url, config).await;
}

async fn mock_provider(r: &Running, name: &str, config: Value) {
    provider(r, name, "mock", None, config).await;
}

/// A model `<provider>/m`-style name on `provider` at [`PRICES`].
async fn model(r: &Running, name: &str, provider: &str) {
    r.model(name, provider, PRICES, 256).await;
}

/// An alias over (model, priority, weight) targets.
async fn alias(r: &Running, name: &str, targets: &[(&str, i64, i64)]) {
    let targets: Vec<TargetSpec> = targets
        .iter()
        .map(|(m, p, w)| TargetSpec {
            model: (*m).into(),
            priority: *p,
            weight: *w,
        })
        .collect();
    catalog::upsert_alias(&r.server_state.db, name, "", "fast", &targets)
        .await
        .unwrap();
}

async fn reload(r: &Running) {
    r.server_state.gateway.reload_routes().await.unwrap();
}

/// A customer with $1 of credit and an unrestricted key.
async fn funded(r: &Running, email: &str) -> (i64, String) {
    r.customer(
        email,
        NANOS_PER_USD,
        NewKey {
            name: "k".into(),
            ..NewKey::default()
        },
    )
    .await
}

fn user_msg(model: &str, content: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": content}]})
}

fn header(h: &reqwest::header::HeaderMap, name: &str) -> String {
    h.get(name)
        .unwrap_or_else(|| panic!("no {name} header in {h:?}"))
        .to_str()
        .unwrap()
        .to_string()
}

/// Posts exactly `body` (so tests know its size) to `path`.
async fn post_bytes(base: &str, key: &str, path: &str, body: &[u8]) -> reqwest::Response {
    client()
        .post(format!("{base}{path}"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
}

/// Prompt tokens the gateway bills for a stream without upstream usage: 4 body bytes per
/// token, rounded up.
fn estimated_prompt(body: &[u8]) -> i64 {
    body.len().div_ceil(4) as i64
}

/// The `data:` payloads of an SSE text, in order.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|block| {
            block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .map(str::to_string)
        })
        .collect()
}

/// Text deltas of OpenAI chunks among SSE payloads.
fn content_deltas(data: &[String]) -> Vec<String> {
    data.iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| {
            v.pointer("/choices/0/delta/content")
                .and_then(Value::as_str)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
        })
        .collect()
}

/// The stored log row of one request (by its `x-request-id`), once flushed.
async fn log_row(r: &Running, user_id: i64, request_id: &str) -> RequestRecord {
    for _ in 0..100 {
        let logs = tokengate_core::usage::recent_logs(&r.server_state.db, user_id, 1000)
            .await
            .unwrap();
        if let Some(row) = logs.into_iter().find(|l| l.request_id == request_id) {
            return row;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no log row for {request_id}");
}

async fn balance(r: &Running, user_id: i64) -> i64 {
    accounts::get_user(&r.server_state.db, user_id)
        .await
        .unwrap()
        .balance_nano
}

fn attempts_of(row: &RequestRecord) -> Vec<Value> {
    serde_json::to_value(&row.attempts_json)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_else(|| panic!("attempts_json is not a list: {row:?}"))
}

fn health(r: &Running, target: &str) -> Option<TargetHealth> {
    r.server_state
        .gateway
        .health
        .snapshot(Instant::now())
        .into_iter()
        .find(|h| h.target == target)
}

/// Upstream calls recorded for `target` since the process started.
fn calls(r: &Running, target: &str) -> u64 {
    health(r, target).map_or(0, |h| h.total_requests)
}

/// A localhost port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------------------------------
// Weighted routing inside a tier; lower tiers only on failure

on_both!(
    weighted_routing,
    weighted_routing_on_sqlite,
    weighted_routing_on_postgres
);

async fn weighted_routing(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    for p in ["heavy", "light", "reserve"] {
        mock_provider(&r, p, json!({})).await;
        model(&r, &format!("{p}/m"), p).await;
    }
    alias(
        &r,
        "weighted",
        &[("heavy/m", 0, 3), ("light/m", 0, 1), ("reserve/m", 1, 1)],
    )
    .await;
    reload(&r).await;
    let (_, key) = funded(&r, "weights@example.com").await;

    const N: usize = 400;
    let served: Vec<(String, String)> = futures::stream::iter(0..N)
        .map(|i| {
            let (base, key) = (r.base.clone(), key.clone());
            async move {
                let (s, h, v) = chat(&base, &key, user_msg("weighted", &format!("n{i}"))).await;
                assert_eq!(s, 200, "{v}");
                (
                    header(&h, "x-tokengate-provider"),
                    header(&h, "x-tokengate-attempts"),
                )
            }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    let count = |p: &str| served.iter().filter(|(s, _)| s == p).count();
    let (heavy, light, reserve) = (count("heavy"), count("light"), count("reserve"));
    assert_eq!(heavy + light + reserve, N, "{served:?}");
    // Binomial(400, 0.75): P(outside 0.75 ± 0.12, i.e. 252..=348) ≈ 4e-8.
    assert!(
        (252..=348).contains(&heavy),
        "weight-3 target served {heavy} of {N} (light {light})"
    );
    assert_eq!(reserve, 0, "tier 1 used while tier 0 was healthy");
    assert!(served.iter().all(|(_, a)| a == "1"), "{served:?}");
    assert_eq!(calls(&r, "reserve/m"), 0);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Fallback to the next tier before the first byte; client errors are not retried

on_both!(fallback, fallback_on_sqlite, fallback_on_postgres);

async fn fallback(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let down = format!("http://127.0.0.1:{}/v1", closed_port());
    provider(&r, "down", "openai", Some(down), json!({})).await;
    model(&r, "down/m", "down").await;
    mock_provider(&r, "sick", json!({"fail_status": 503})).await;
    model(&r, "sick/m", "sick").await;
    mock_provider(&r, "picky", json!({"fail_status": 400})).await;
    model(&r, "picky/m", "picky").await;
    mock_provider(&r, "backup", json!({})).await;
    model(&r, "backup/m", "backup").await;
    alias(&r, "via-down", &[("down/m", 0, 1), ("backup/m", 1, 1)]).await;
    alias(&r, "via-sick", &[("sick/m", 0, 1), ("backup/m", 1, 1)]).await;
    alias(&r, "via-picky", &[("picky/m", 0, 1), ("backup/m", 1, 1)]).await;
    reload(&r).await;
    let (user_id, key) = funded(&r, "fallback@example.com").await;

    // Unreachable tier 0 (connection refused): served by tier 1 on the second attempt.
    let (s, h, v) = chat(&r.base, &key, user_msg("via-down", "hello world")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(header(&h, "x-tokengate-provider"), "backup");
    assert_eq!(header(&h, "x-tokengate-model"), "backup/m");
    assert_eq!(header(&h, "x-tokengate-attempts"), "2");
    assert_eq!(
        v["choices"][0]["message"]["content"],
        format!("{PREAMBLE} hello world")
    );
    let row = log_row(&r, user_id, &header(&h, "x-request-id")).await;
    assert_eq!(row.status, 200);
    assert_eq!(row.attempts, 2);
    assert_eq!(row.provider.as_deref(), Some("backup"));
    assert_eq!(row.served_model.as_deref(), Some("backup/m"));
    let attempts = attempts_of(&row);
    assert_eq!(attempts.len(), 2, "{attempts:?}");
    assert_eq!(attempts[0]["provider"], "down");
    assert_eq!(attempts[0]["model"], "down/m");
    assert!(attempts[0]["outcome"].is_string(), "{attempts:?}");
    assert_ne!(attempts[0]["outcome"], json!(200));
    assert_eq!(attempts[1]["provider"], "backup");
    assert_eq!(attempts[1]["outcome"], 200);
    // Billed at the serving model's price on its own usage: 5 in, 10 out.
    assert_eq!((row.tokens_in, row.tokens_out), (5, 10));
    assert_eq!(row.cost_nano, 5 * 1000 + 10 * 2000);

    // Tier 0 answering 503: the same.
    let (s, h, v) = chat(&r.base, &key, user_msg("via-sick", "hi")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(header(&h, "x-tokengate-provider"), "backup");
    assert_eq!(header(&h, "x-tokengate-attempts"), "2");
    let row = log_row(&r, user_id, &header(&h, "x-request-id")).await;
    let attempts = attempts_of(&row);
    assert_eq!(row.attempts, 2);
    assert_eq!(attempts[0]["provider"], "sick");
    assert_eq!(attempts[0]["outcome"], 503);
    assert_eq!(attempts[1]["outcome"], 200);
    assert_eq!(calls(&r, "sick/m"), 1);
    assert_eq!(calls(&r, "backup/m"), 2);

    // Tier 0 answering 400: the caller's error, passed through, not retried, not charged.
    let before = balance(&r, user_id).await;
    let resp = client()
        .post(format!("{}/v1/chat/completions", r.base))
        .bearer_auth(&key)
        .json(&user_msg("via-picky", "hi"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_error(&v, "invalid_request_error", "upstream_rejected");
    assert_eq!(v["error"]["message"], "mock failure 400");
    assert_eq!(calls(&r, "picky/m"), 1);
    assert_eq!(calls(&r, "backup/m"), 2, "a client error fell back");
    let logs = common::wait_for_logs(&r, user_id, 3).await;
    let row = logs.iter().find(|l| l.model == "via-picky").unwrap();
    assert_eq!(row.status, 400);
    assert_eq!(row.cost_nano, 0);
    assert_eq!(row.attempts, 1);
    assert_eq!(row.provider.as_deref(), Some("picky"));
    assert_eq!(attempts_of(row).len(), 1);
    assert_eq!(balance(&r, user_id).await, before);

    // Every charge is a logged cost.
    let logs = common::wait_for_logs(&r, user_id, 3).await;
    assert_eq!(logs.len(), 3);
    let total: i64 = logs.iter().map(|l| l.cost_nano).sum();
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - total);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Circuit breaker: opens on errors, skips the target, probes and closes after healing

on_both!(
    circuit_breaker,
    circuit_breaker_on_sqlite,
    circuit_breaker_on_postgres
);

async fn circuit_breaker(database_url: Option<String>) {
    let r = start_with(database_url, &[], |c| {
        c.breaker.window_secs = 30;
        c.breaker.min_requests = 4;
        c.breaker.error_rate = 0.5;
        c.breaker.open_secs = 2;
        c.breaker.half_open_probes = 1;
    })
    .await;
    mock_provider(&r, "flaky", json!({"fail_status": 503})).await;
    model(&r, "flaky/m", "flaky").await;
    mock_provider(&r, "steady", json!({})).await;
    model(&r, "steady/m", "steady").await;
    alias(&r, "guarded", &[("flaky/m", 0, 1), ("steady/m", 1, 1)]).await;
    reload(&r).await;
    let (user_id, key) = funded(&r, "breaker@example.com").await;

    // Failures below the minimum volume leave the breaker closed.
    for i in 1..=4u64 {
        let (s, h, v) = chat(&r.base, &key, user_msg("guarded", "x")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(header(&h, "x-tokengate-provider"), "steady");
        assert_eq!(header(&h, "x-tokengate-attempts"), "2");
        let hl = health(&r, "flaky/m").unwrap();
        assert_eq!(hl.total_requests, i);
        assert_eq!(hl.total_errors, i);
        let expected = if i < 4 { "closed" } else { "open" };
        assert_eq!(hl.state, expected, "after {i} failures: {hl:?}");
    }

    // Open: the failing target is skipped without being called.
    for _ in 0..3 {
        let (s, h, v) = chat(&r.base, &key, user_msg("guarded", "x")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(header(&h, "x-tokengate-provider"), "steady");
        let row = log_row(&r, user_id, &header(&h, "x-request-id")).await;
        let attempts = attempts_of(&row);
        assert_eq!(attempts.len(), 2, "{attempts:?}");
        assert_eq!(attempts[0]["provider"], "flaky");
        assert_eq!(attempts[0]["outcome"], "skipped: circuit open");
        assert_eq!(attempts[1]["provider"], "steady");
        assert_eq!(attempts[1]["outcome"], 200);
        let hl = health(&r, "flaky/m").unwrap();
        assert_eq!(hl.total_requests, 4, "an open breaker let a call through");
        assert_eq!(hl.state, "open", "{hl:?}");
    }

    // Heal the provider; once the open time is over, the next request is a probe to it.
    mock_provider(&r, "flaky", json!({})).await;
    reload(&r).await;
    assert_eq!(health(&r, "flaky/m").unwrap().state, "open");
    let waited = Instant::now();
    while health(&r, "flaky/m").unwrap().state != "half_open" {
        assert!(waited.elapsed() < Duration::from_secs(6), "never half-open");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (s, h, v) = chat(&r.base, &key, user_msg("guarded", "x")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(header(&h, "x-tokengate-provider"), "flaky");
    assert_eq!(header(&h, "x-tokengate-attempts"), "1");
    let hl = health(&r, "flaky/m").unwrap();
    assert_eq!(hl.state, "closed", "{hl:?}");
    assert_eq!((hl.total_requests, hl.total_errors), (5, 4));
    // Closed again: traffic flows to tier 0.
    let (s, h, _) = chat(&r.base, &key, user_msg("guarded", "x")).await;
    assert_eq!(s, 200);
    assert_eq!(header(&h, "x-tokengate-provider"), "flaky");
    assert_eq!(calls(&r, "flaky/m"), 6);
    assert_eq!(calls(&r, "steady/m"), 7);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// A stream that breaks after its first bytes is not retried elsewhere

on_both!(
    no_retry_after_first_byte,
    no_retry_after_first_byte_on_sqlite,
    no_retry_after_first_byte_on_postgres
);

async fn no_retry_after_first_byte(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    mock_provider(&r, "cutter", json!({})).await;
    model(&r, "cutter/m", "cutter").await;
    mock_provider(&r, "spare", json!({})).await;
    model(&r, "spare/m", "spare").await;
    alias(&r, "fragile", &[("cutter/m", 0, 1), ("spare/m", 1, 1)]).await;
    reload(&r).await;
    let (user_id, key) = funded(&r, "cut@example.com").await;

    let body = serde_json::to_vec(&json!({"model": "fragile", "stream": true,
        "messages": [{"role": "user", "content": "tell me [mock:cut:2] more"}]}))
    .unwrap();
    let resp = post_bytes(&r.base, &key, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "x-tokengate-provider"), "cutter");
    let request_id = header(resp.headers(), "x-request-id");
    let text = resp.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.len(), 4, "{text}");
    let role: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(role["choices"][0]["delta"]["role"], "assistant");
    assert_eq!(content_deltas(&data), vec!["Hello", " from"], "{text}");
    let err: Value = serde_json::from_str(&data[3]).unwrap();
    assert_eq!(err["error"]["type"], "api_error", "{text}");
    assert_eq!(err["error"]["code"], "upstream_error", "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(!text.contains("finish_reason\":\"stop"), "{text}");

    let row = log_row(&r, user_id, &request_id).await;
    assert_eq!(row.status, 502);
    assert_eq!(row.error_type.map(|t| t.as_str()), Some("upstream_error"));
    assert_eq!(row.attempts, 1);
    assert_eq!(attempts_of(&row).len(), 1);
    assert_eq!(row.provider.as_deref(), Some("cutter"));
    assert!(row.tokens_out <= 2, "{row:?}");
    let bound = PRICES.cost(&Usage {
        input: estimated_prompt(&body),
        output: 2,
        ..Usage::default()
    });
    assert!(
        row.cost_nano > 0 && row.cost_nano <= bound,
        "cost {} not in 1..={bound}",
        row.cost_nano
    );
    assert_eq!(
        row.cost_nano,
        PRICES.cost(&Usage {
            input: row.tokens_in,
            output: row.tokens_out,
            ..Usage::default()
        })
    );
    assert_eq!(calls(&r, "spare/m"), 0, "the spare target was called");
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - row.cost_nano);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// A client that goes away mid-stream pays for what it received; failures cost nothing

on_both!(
    disconnect_billing,
    disconnect_billing_on_sqlite,
    disconnect_billing_on_postgres
);

async fn disconnect_billing(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    mock_provider(&r, "slow", json!({"chunk_delay_ms": 100})).await;
    model(&r, "slow/m", "slow").await;
    mock_provider(&r, "dead", json!({"fail_status": 503})).await;
    model(&r, "dead/m", "dead").await;
    reload(&r).await;
    let (user_id, key) = funded(&r, "gone@example.com").await;

    let body = serde_json::to_vec(&json!({"model": "slow/m", "stream": true,
        "messages": [{"role": "user", "content": "one two three four five six seven eight"}]}))
    .unwrap();
    let mut resp = post_bytes(&r.base, &key, "/v1/chat/completions", &body).await;
    assert_eq!(resp.status(), 200);
    let request_id = header(resp.headers(), "x-request-id");
    let mut text = String::new();
    let mut received = Vec::new();
    while received.len() < 2 {
        let chunk = resp.chunk().await.unwrap().expect("stream ended early");
        text.push_str(std::str::from_utf8(&chunk).unwrap());
        // Only whole events count as received.
        let complete = &text[..text.rfind("\n\n").map_or(0, |i| i + 2)];
        received = content_deltas(&sse_data(complete));
    }
    drop(resp);
    let delivered = received.len() as i64;

    let row = log_row(&r, user_id, &request_id).await;
    assert_eq!(row.status, 499, "{row:?}");
    assert_eq!(row.error_type.map(|t| t.as_str()), Some("client_closed"));
    assert!(
        (1..=delivered).contains(&row.tokens_out),
        "{} tokens billed for {delivered} chunks",
        row.tokens_out
    );
    assert_eq!(row.tokens_in, estimated_prompt(&body));
    let cost = PRICES.cost(&Usage {
        input: row.tokens_in,
        output: row.tokens_out,
        ..Usage::default()
    });
    assert!(cost > 0);
    assert_eq!(row.cost_nano, cost);
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - cost);

    // Failing before any output, streaming or not: free.
    for stream in [false, true] {
        let mut req = user_msg("dead/m", "hi");
        req["stream"] = json!(stream);
        let resp = client()
            .post(format!("{}/v1/chat/completions", r.base))
            .bearer_auth(&key)
            .json(&req)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 502);
        assert_error(
            &resp.json::<Value>().await.unwrap(),
            "api_error",
            "upstream_error",
        );
    }
    let logs = common::wait_for_logs(&r, user_id, 3).await;
    let failed: Vec<_> = logs.iter().filter(|l| l.model == "dead/m").collect();
    assert_eq!(failed.len(), 2);
    assert!(
        failed.iter().all(|l| l.status == 502 && l.cost_nano == 0),
        "{failed:?}"
    );
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - cost);
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Per-key RPM and TPM limits

on_both!(rate_limits, rate_limits_on_sqlite, rate_limits_on_postgres);

async fn rate_limits(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let (user_id, key) = r
        .customer(
            "rpm@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "rpm".into(),
                rpm: Some(10),
                ..NewKey::default()
            },
        )
        .await;

    // 50 at once against 10 per minute: exactly 10 pass.
    let http = client();
    let results = futures::future::join_all((0..50).map(|_| {
        let req = http
            .post(format!("{}/v1/chat/completions", r.base))
            .bearer_auth(&key)
            .json(&user_msg("mock/fast-1", "hi"));
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let retry_after = resp
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (status, retry_after, resp.json::<Value>().await.unwrap())
        }
    }))
    .await;
    let ok = results.iter().filter(|(s, _, _)| *s == 200).count();
    let limited: Vec<_> = results.iter().filter(|(s, _, _)| *s == 429).collect();
    assert_eq!((ok, limited.len()), (10, 40), "{results:?}");
    for (_, retry_after, v) in &limited {
        assert_error(v, "rate_limit_error", "rate_limit_exceeded");
        let secs = retry_after.expect("429 without Retry-After");
        assert!((1..=60).contains(&secs), "Retry-After {secs}");
    }
    // Refused requests are neither logged nor charged.
    let logs = common::wait_for_logs(&r, user_id, 10).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let logs_after = tokengate_core::usage::recent_logs(&r.server_state.db, user_id, 1000)
        .await
        .unwrap();
    assert_eq!(logs_after.len(), 10);
    let total: i64 = logs.iter().map(|l| l.cost_nano).sum();
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - total);

    // TPM 20: the first request (5 + 10 tokens) passes; anything after it would exceed.
    let (_, key) = r
        .customer(
            "tpm@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "tpm".into(),
                tpm: Some(20),
                ..NewKey::default()
            },
        )
        .await;
    let (s, _, v) = chat(&r.base, &key, user_msg("mock/fast-1", "hello world")).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["usage"]["total_tokens"], 15);
    let burst = futures::future::join_all(
        (0..5).map(|_| chat(&r.base, &key, user_msg("mock/fast-1", "hello world"))),
    )
    .await;
    for (s, h, v) in &burst {
        assert_eq!(*s, 429, "{v}");
        assert_error(v, "rate_limit_error", "rate_limit_exceeded");
        assert!(
            v["error"]["message"].as_str().unwrap().contains("tokens"),
            "{v}"
        );
        assert!(header(h, "retry-after").parse::<u64>().unwrap() >= 1);
    }
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Key policies: allowed models, key groups, expiry, spend limits

on_both!(policies, policies_on_sqlite, policies_on_postgres);

fn listed(v: &Value) -> Vec<String> {
    let mut ids: Vec<String> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn models_for(base: &str, key: &str) -> Value {
    let resp = client()
        .get(format!("{base}/v1/models"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn policies(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let base = r.base.clone();
    let db = r.server_state.db.clone();

    // An exact list.
    let (_, narrow) = r
        .customer(
            "narrow@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "n".into(),
                allowed_models: Some(vec!["mock/fast-1".into()]),
                ..NewKey::default()
            },
        )
        .await;
    let (s, _, v) = chat(&base, &narrow, user_msg("mock/fast-1", "x")).await;
    assert_eq!(s, 200, "{v}");
    for other in ["mock/smart-1", "tokengate-fast"] {
        let (s, _, v) = chat(&base, &narrow, user_msg(other, "x")).await;
        assert_eq!(s, 403, "{other}: {v}");
        assert_error(&v, "permission_error", "model_not_allowed");
        assert_eq!(v["error"]["param"], "model");
    }
    assert_eq!(
        listed(&models_for(&base, &narrow).await),
        vec!["mock/fast-1"]
    );

    // A provider pattern.
    let (_, pattern) = r
        .customer(
            "pattern@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "p".into(),
                allowed_models: Some(vec!["mock/*".into()]),
                ..NewKey::default()
            },
        )
        .await;
    for m in ["mock/fast-1", "mock/smart-1", "mock/coder-1"] {
        let (s, _, v) = chat(&base, &pattern, user_msg(m, "x")).await;
        assert_eq!(s, 200, "{m}: {v}");
    }
    let (s, _, v) = chat(&base, &pattern, user_msg("tokengate-fast", "x")).await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        listed(&models_for(&base, &pattern).await),
        vec!["mock/coder-1", "mock/fast-1", "mock/smart-1"]
    );

    // A key group limited to one provider of a two-provider alias.
    for p in ["provA", "provB"] {
        mock_provider(&r, p, json!({})).await;
        model(&r, &format!("{p}/m"), p).await;
    }
    model(&r, "provB/only", "provB").await;
    alias(&r, "both", &[("provA/m", 0, 1), ("provB/m", 0, 1)]).await;
    let group = catalog::upsert_key_group(&db, "a-only", Some(&["provA".to_string()]), None)
        .await
        .unwrap();
    reload(&r).await;
    let (_, grouped) = r
        .customer(
            "grouped@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "g".into(),
                group_id: Some(group),
                ..NewKey::default()
            },
        )
        .await;
    let (_, free) = funded(&r, "free@example.com").await;
    let mut free_providers = Vec::new();
    for _ in 0..40 {
        let (s, h, _) = chat(&base, &free, user_msg("both", "x")).await;
        assert_eq!(s, 200);
        free_providers.push(header(&h, "x-tokengate-provider"));
    }
    assert!(
        free_providers.iter().any(|p| p == "provB"),
        "control: provB never chosen in 40 tries"
    );
    for _ in 0..20 {
        let (s, h, v) = chat(&base, &grouped, user_msg("both", "x")).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(header(&h, "x-tokengate-provider"), "provA");
    }
    let (s, _, v) = chat(&base, &grouped, user_msg("provB/only", "x")).await;
    assert_eq!(s, 403, "{v}");
    assert_error(&v, "permission_error", "model_not_allowed");
    let (s, _, _) = chat(&base, &grouped, user_msg("mock/fast-1", "x")).await;
    assert_eq!(s, 403);
    assert_eq!(
        listed(&models_for(&base, &grouped).await),
        vec!["both", "provA/m"]
    );

    // Expiry takes effect on the next request.
    let (user_id, expiring) = funded(&r, "expiring@example.com").await;
    let (s, _, _) = chat(&base, &expiring, user_msg("mock/fast-1", "x")).await;
    assert_eq!(s, 200);
    let now = now_ms();
    sqlx::query("UPDATE api_keys SET expires_at = $1, updated_at = $2 WHERE user_id = $3")
        .bind(now - 1000)
        .bind(now)
        .bind(user_id)
        .execute(db.pool())
        .await
        .unwrap();
    for k in keys::list_for_user(&db, user_id).await.unwrap() {
        r.server_state.gateway.key_changed(k);
    }
    let (s, _, v) = chat(&base, &expiring, user_msg("mock/fast-1", "x")).await;
    assert_eq!(s, 401, "{v}");
    assert_error(&v, "authentication_error", "invalid_api_key");
    assert_eq!(v["error"]["message"], "Invalid API key provided.");

    // Spend limit: 20_000 nano. A request of about 80 bytes holds (bytes + 16) × 150 +
    // 5 × 600 ≈ 17_000 and costs 4 × 150 + 5 × 600 = 3_600, so after one the next cannot fit.
    let (user_id, limited) = r
        .customer(
            "limited@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "l".into(),
                spend_limit_nano: Some(20_000),
                ..NewKey::default()
            },
        )
        .await;
    let capped = json!({"model": "mock/fast-1", "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}]});
    let (s, _, v) = chat(&base, &limited, capped.clone()).await;
    assert_eq!(s, 200, "{v}");
    let (s, _, v) = chat(&base, &limited, capped.clone()).await;
    assert_eq!(s, 402, "{v}");
    assert_error(&v, "insufficient_quota", "insufficient_balance");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("spend limit"),
        "{v}"
    );
    let logs = common::wait_for_logs(&r, user_id, 1).await;
    assert_eq!(logs.len(), 1);
    assert_eq!(logs[0].cost_nano, 3_600);
    assert_eq!(
        FAST.cost(&Usage {
            input: 4,
            output: 5,
            ..Usage::default()
        }),
        3_600
    );
    let spent = keys::list_for_user(&db, user_id).await.unwrap()[0].spent_nano;
    assert_eq!(spent, 3_600);
    // The account itself still pays for another key.
    let (other, raw) = keys::create(
        &db,
        &r.server_state.config.secret_bytes(),
        user_id,
        &NewKey {
            name: "other".into(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    r.server_state.gateway.key_changed(other);
    let (s, _, v) = chat(&base, &raw, capped).await;
    assert_eq!(s, 200, "{v}");
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Anthropic Messages over an OpenAI-speaking provider

on_both!(
    anthropic_over_mock,
    anthropic_over_mock_on_sqlite,
    anthropic_over_mock_on_postgres
);

async fn messages(base: &str, key: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{base}/v1/messages"))
        .header("x-api-key", key)
        .header("anthropic-version", "2023-06-01")
        .json(body)
        .send()
        .await
        .unwrap()
}

fn assert_anthropic_error(v: &Value, typ: &str) {
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], typ, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
}

async fn anthropic_over_mock(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let (user_id, key) = funded(&r, "claude@example.com").await;
    let body = json!({"model": "mock/fast-1", "max_tokens": 100,
        "messages": [{"role": "user", "content": "hello world"}]});

    let resp = messages(&r.base, &key, &body).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "message", "{v}");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["content"][0]["text"], format!("{PREAMBLE} hello world"));
    assert_eq!(v["stop_reason"], "end_turn");
    // The mock counts 3 + 2 prompt tokens and 8 + 2 answer words.
    assert_eq!(v["usage"]["input_tokens"], 5);
    assert_eq!(v["usage"]["output_tokens"], 10);

    let mut streaming = body.clone();
    streaming["stream"] = json!(true);
    let resp = messages(&r.base, &key, &streaming).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(header(resp.headers(), "content-type"), "text/event-stream");
    let text = resp.text().await.unwrap();
    let mut types = Vec::new();
    let mut streamed_text = String::new();
    let mut final_usage = Value::Null;
    for block in text.split("\n\n").filter(|b| !b.trim().is_empty()) {
        let event = block
            .lines()
            .find_map(|l| l.strip_prefix("event: "))
            .unwrap_or_else(|| panic!("no event line in {block:?}"));
        let data: Value = serde_json::from_str(
            block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap(),
        )
        .unwrap();
        assert_eq!(data["type"], event, "{block}");
        if event == "content_block_delta" {
            assert_eq!(data["delta"]["type"], "text_delta");
            streamed_text.push_str(data["delta"]["text"].as_str().unwrap());
        }
        if event == "message_delta" {
            assert_eq!(data["delta"]["stop_reason"], "end_turn");
            final_usage = data["usage"].clone();
        }
        types.push(event.to_string());
    }
    let mut expected = vec!["message_start", "ping", "content_block_start"];
    expected.extend(std::iter::repeat_n("content_block_delta", 10));
    expected.extend(["content_block_stop", "message_delta", "message_stop"]);
    assert_eq!(types, expected, "{text}");
    assert_eq!(streamed_text, format!("{PREAMBLE} hello world"));
    assert_eq!(final_usage["output_tokens"], 10, "{text}");
    assert_eq!(final_usage["input_tokens"], 5, "{text}");

    // Both metered at the mock's counts.
    let logs = common::wait_for_logs(&r, user_id, 2).await;
    assert_eq!(logs.len(), 2);
    for l in &logs {
        assert_eq!(l.endpoint, "/v1/messages");
        assert_eq!((l.status, l.tokens_in, l.tokens_out), (200, 5, 10));
        assert_eq!(l.cost_nano, 6_750);
        assert_eq!(
            FAST.cost(&Usage {
                input: 5,
                output: 10,
                ..Usage::default()
            }),
            6_750
        );
    }
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - 2 * 6_750);

    // Errors in Anthropic's shape.
    let resp = messages(&r.base, "sk-tg-nope", &body).await;
    assert_eq!(resp.status(), 401);
    assert_anthropic_error(&resp.json().await.unwrap(), "authentication_error");
    let mut unknown = body.clone();
    unknown["model"] = json!("nope/none");
    let resp = messages(&r.base, &key, &unknown).await;
    assert_eq!(resp.status(), 404);
    assert_anthropic_error(&resp.json().await.unwrap(), "not_found_error");
    let mut no_max = body.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    let resp = messages(&r.base, &key, &no_max).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_anthropic_error(&v, "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens")
    );
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Embeddings over the mock

on_both!(
    embeddings_over_mock,
    embeddings_over_mock_on_sqlite,
    embeddings_over_mock_on_postgres
);

async fn embeddings_over_mock(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    const EMBED_IN_PER_M: i64 = 130_000_000; // 130 nano per token
    catalog::upsert_model(
        &r.server_state.db,
        &ModelSpec {
            name: "mock/embed-1".into(),
            provider: "mock".into(),
            upstream_model: "embed-1".into(),
            input_price_nano: EMBED_IN_PER_M,
            output_price_nano: 0,
            cache_read_price_nano: None,
            cache_write_price_nano: None,
            max_output_tokens: 1,
            complexity_tier: "embedding".into(),
            enabled: true,
        },
    )
    .await
    .unwrap();
    reload(&r).await;
    let (user_id, key) = funded(&r, "vectors@example.com").await;
    let embed = |body: Value| {
        client()
            .post(format!("{}/v1/embeddings", r.base))
            .bearer_auth(&key)
            .json(&body)
            .send()
    };

    let input = json!(["one two", "three"]);
    let resp = embed(json!({"model": "mock/embed-1", "input": input, "dimensions": 4}))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let floats: Value = resp.json().await.unwrap();
    assert_eq!(floats["object"], "list");
    assert_eq!(floats["usage"]["prompt_tokens"], 3);
    let data = floats["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    let resp = embed(
        json!({"model": "mock/embed-1", "input": input, "dimensions": 4,
        "encoding_format": "base64"}),
    )
    .await
    .unwrap();
    assert_eq!(resp.status(), 200);
    let b64: Value = resp.json().await.unwrap();
    assert_eq!(b64["usage"]["prompt_tokens"], 3);
    for (i, item) in data.iter().enumerate() {
        assert_eq!(item["index"], i);
        let expected: Vec<f32> = serde_json::from_value(item["embedding"].clone()).unwrap();
        assert_eq!(expected.len(), 4);
        let raw = base64::engine::general_purpose::STANDARD
            .decode(b64["data"][i]["embedding"].as_str().unwrap())
            .unwrap();
        assert_eq!(raw.len(), 16);
        let decoded: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        assert_eq!(decoded, expected, "vector {i}");
    }
    assert_ne!(data[0]["embedding"], data[1]["embedding"]);

    let logs = common::wait_for_logs(&r, user_id, 2).await;
    assert_eq!(logs.len(), 2);
    for l in &logs {
        assert_eq!(l.endpoint, "/v1/embeddings");
        assert_eq!(l.status, 200);
        assert_eq!((l.tokens_in, l.tokens_out), (3, 0));
        assert_eq!(l.cost_nano, 3 * 130);
    }
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - 2 * 3 * 130);

    // Invalid input never reaches the provider.
    for (body, param) in [
        (json!({"model": "mock/embed-1", "input": ""}), "input"),
        (json!({"model": "mock/embed-1", "input": []}), "input"),
        (json!({"model": "mock/embed-1", "input": 42}), "input"),
        (json!({"model": "mock/embed-1", "input": [1.5]}), "input"),
        (json!({"model": "mock/embed-1"}), "input"),
        (
            json!({"model": "mock/embed-1", "input": "x", "encoding_format": "hex"}),
            "encoding_format",
        ),
    ] {
        let resp = embed(body.clone()).await.unwrap();
        assert_eq!(resp.status(), 400, "{body}");
        let v: Value = resp.json().await.unwrap();
        assert_error(&v, "invalid_request_error", "invalid_request");
        assert_eq!(v["error"]["param"], param, "{body}");
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let logs = tokengate_core::usage::recent_logs(&r.server_state.db, user_id, 1000)
        .await
        .unwrap();
    assert_eq!(logs.len(), 2);
    r.stop().await;
}
