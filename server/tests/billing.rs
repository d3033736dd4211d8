//! Billing against the real router on SQLite and PostgreSQL: holds that never overspend
//! under 200 concurrent requests (account balance and key spend limit), a cost above its
//! hold charged in full and counted, silent streams ended and their holds released, signed idempotent Stripe
//! webhooks that credit only sessions this server created, refunds and disputes that debit
//! (below zero too) and show on the statement, the admin credit API and ledger verification, monthly statements that
//! reconcile across a month boundary (JSON, CSV, PDF), and the request-log listing and
//! CSV export with filters, pagination, tenant isolation and formula neutralisation; every
//! JSON answer read as its `tokengate_api::billing` type, and the log query's integers.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokengate_core::accounts::{self, EntryKind};
use tokengate_core::catalog::{self, ProviderSpec};
use tokengate_core::keys::{self, NewKey};
use tokengate_core::money::NANOS_PER_USD;
use tokengate_core::payments::{self, NewPayment, PaymentStatus};
use tokengate_core::statements::{self, Month};
use tokengate_core::usage::{self, RequestRecord};
use tokengate_core::{Db, now_ms};
use tokengate_server::gateway::money::Funds;

use common::{Running, assert_error, client, on_postgres, start, wait_for_logs};

// ----- helpers ------------------------------------------------------------------------

/// An access token for `user_id` as the device flow would issue it.
async fn token_for(r: &Running, user_id: i64) -> String {
    r.token(user_id, tokengate_server::auth::scope::ALL).await
}

/// An admin account and its access token.
async fn admin(r: &Running, email: &str) -> (i64, String) {
    let a = accounts::create_user(
        &r.server_state.db,
        email,
        "Ops",
        None,
        accounts::Role::Admin,
    )
    .await
    .unwrap();
    (a.id, token_for(r, a.id).await)
}

/// A JSON call to the account API; the answer as (status, JSON or Null).
async fn api(
    r: &Running,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = client().request(method.parse().unwrap(), format!("{}{path}", r.base));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// A GET with query pairs; (status, content type, body bytes).
async fn get_raw(
    r: &Running,
    path: &str,
    token: &str,
    query: &[(&str, &str)],
) -> (u16, String, Vec<u8>) {
    let resp = client()
        .get(format!("{}{path}", r.base))
        .bearer_auth(token)
        .query(query)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ct = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, ct, resp.bytes().await.unwrap().to_vec())
}

fn assert_api_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].is_string() && v["error"]["type"].is_string(),
        "{v}"
    );
}

/// POSTs a chat body exactly as given (so its byte length, and with it the hold, is known).
async fn chat_raw(c: &reqwest::Client, base: &str, key: &str, body: &str) -> (u16, Value) {
    let resp = c
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Fires `n` copies of `body` at once.
async fn storm(base: &str, key: &str, body: &str, n: usize) -> Vec<(u16, Value)> {
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(n)
        .build()
        .unwrap();
    futures::future::join_all((0..n).map(|_| chat_raw(&c, base, key, body))).await
}

/// Waits until the account has no holds and no unflushed costs; its funds then.
async fn settled(r: &Running, user_id: i64) -> Funds {
    let money = &r.server_state.gateway.money;
    for _ in 0..400 {
        let f = money.account_funds(user_id);
        if f.held == 0 && f.pending == 0 {
            return f;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!(
        "holds or pending costs of account {user_id} never cleared: {:?}",
        money.account_funds(user_id)
    );
}

async fn balance(db: &Db, user_id: i64) -> i64 {
    accounts::get_user(db, user_id).await.unwrap().balance_nano
}

async fn ledger_ok(db: &Db) {
    let m = accounts::verify_ledger(db, None).await.unwrap();
    assert!(m.is_empty(), "ledger mismatches: {m:?}");
}

/// Gives `user_id` exactly `target` as balance (an adjustment) and tells the gateway.
async fn set_balance(r: &Running, user_id: i64, target: i64) {
    let db = &r.server_state.db;
    let delta = target - balance(db, user_id).await;
    if delta != 0 {
        accounts::apply_entry(
            db,
            accounts::Entry {
                user_id,
                kind: EntryKind::Adjustment,
                amount_nano: delta,
                reference: None,
                note: Some("test: exact balance"),
                created_by: None,
                refuse_negative: false,
            },
        )
        .await
        .unwrap();
    }
    r.server_state
        .gateway
        .reload_account(user_id)
        .await
        .unwrap();
    assert_eq!(
        r.server_state
            .gateway
            .money
            .account_funds(user_id)
            .persisted,
        target
    );
}

async fn add_provider(r: &Running, name: &str, config: Value) {
    r.provider(name, "mock", None, config).await;
}

async fn add_model(r: &Running, name: &str, provider: &str, input: i64, output: i64) {
    let prices = tokengate_core::money::Prices {
        input_per_m: input,
        output_per_m: output,
        cache_read_per_m: None,
        cache_write_per_m: None,
    };
    r.model(name, provider, prices, 4096).await;
}

/// The id of the user's key named `name`.
async fn key_id(db: &Db, user_id: i64, name: &str) -> i64 {
    keys::list_for_user(db, user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.name == name)
        .unwrap()
        .id
}

/// Unix ms of an RFC 3339 time.
fn ms(s: &str) -> i64 {
    (OffsetDateTime::parse(s, &Rfc3339)
        .unwrap()
        .unix_timestamp_nanos()
        / 1_000_000) as i64
}

/// A decimal USD string ("-1.50", "0.000000007") as nano-USD, exactly; no floats.
fn nanos(s: &str) -> i64 {
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (whole, frac) = body.split_once('.').unwrap_or_else(|| panic!("{s:?}"));
    assert!(
        !whole.is_empty()
            && whole.bytes().all(|b| b.is_ascii_digit())
            && (2..=9).contains(&frac.len())
            && frac.bytes().all(|b| b.is_ascii_digit()),
        "not an exact USD amount: {s:?}"
    );
    let v = whole.parse::<i64>().unwrap() * NANOS_PER_USD
        + format!("{frac:0<9}").parse::<i64>().unwrap();
    if neg { -v } else { v }
}

/// A strict RFC 4180 parser: CRLF record ends, quoted fields with doubled quotes.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            if c == '"' {
                if chars.peek() == Some(&'"') {
                    chars.next();
                    field.push('"');
                } else {
                    quoted = false;
                }
            } else {
                field.push(c);
            }
            continue;
        }
        match c {
            '"' if field.is_empty() && !was_quoted => {
                quoted = true;
                was_quoted = true;
            }
            '"' => panic!("stray quote in an unquoted field: {field:?}"),
            ',' => {
                row.push(std::mem::take(&mut field));
                was_quoted = false;
            }
            '\r' => {
                assert_eq!(chars.next(), Some('\n'), "CR without LF");
                row.push(std::mem::take(&mut field));
                rows.push(std::mem::take(&mut row));
                was_quoted = false;
            }
            '\n' => panic!("bare LF ends a record"),
            c => {
                assert!(!was_quoted, "text after a closing quote");
                field.push(c);
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty() && !quoted,
        "last record not ended by CRLF"
    );
    rows
}

/// Text as the CSV exports show it: a leading formula character gets a `'`.
fn neutral(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

fn hmac_hex(secret: &str, t: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{t}.{body}").as_bytes());
    hex::encode(mac.finalize().into_bytes())
}

// ----- 1. holds never overspend -----------------------------------------------------------

/// A chat body asking for at most `max_tokens` tokens; the mock answers "Hello from the
/// tokengate mock provider. You said: hi" (9 words), cut to `max_tokens`.
fn small_body(model: &str, max_tokens: i64) -> String {
    json!({"model": model, "max_tokens": max_tokens,
           "messages": [{"role": "user", "content": "hi"}]})
    .to_string()
}

/// Checks the answers of a storm: only 200s (complete answers) and 402s in the contract's
/// shape; returns the number admitted.
fn admitted(results: &[(u16, Value)], max_tokens: i64, refusal: &str) -> usize {
    let mut ok = 0;
    for (s, v) in results {
        match s {
            200 => {
                assert_eq!(v["usage"]["completion_tokens"], max_tokens, "{v}");
                assert_eq!(v["usage"]["prompt_tokens"], 4, "{v}");
                ok += 1;
            }
            402 => {
                assert_error(v, "insufficient_quota", "insufficient_balance");
                assert!(
                    v["error"]["message"].as_str().unwrap().contains(refusal),
                    "{v}"
                );
            }
            other => panic!("unexpected status {other}: {v}"),
        }
    }
    ok
}

/// The storm's bookkeeping after the flush: one log per admitted request at `cost`, the
/// balance moved by exactly the logged costs and never below zero, no holds left.
async fn check_after_storm(r: &Running, uid: i64, initial: i64, n: usize, cost: i64) -> i64 {
    let db = &r.server_state.db;
    wait_for_logs(r, uid, n).await;
    let funds = settled(r, uid).await;
    let logs = usage::recent_logs(db, uid, 1000).await.unwrap();
    assert_eq!(logs.len(), n, "one log per admitted request, no more");
    assert!(logs.iter().all(|l| l.status == 200 && l.cost_nano == cost));
    let spent: i64 = logs.iter().map(|l| l.cost_nano).sum();
    let b = balance(db, uid).await;
    assert!(b >= 0, "balance went negative: {b}");
    assert_eq!(b, initial - spent);
    assert_eq!(
        funds,
        Funds {
            persisted: b,
            pending: 0,
            held: 0
        }
    );
    assert!(
        accounts::verify_ledger(db, Some(uid))
            .await
            .unwrap()
            .is_empty()
    );
    b
}

async fn holds_suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let no_money = "balance is too low";

    // (a) mock/fast-1 at $0.15/M in and $0.60/M out: hold = (bytes + 16) × 150 + 8 × 600;
    // each answer costs 4 × 150 + 8 × 600 (prompt 3 + 1 words, output cut to 8).
    let body = small_body("mock/fast-1", 8);
    let hold = (body.len() as i64 + 16) * 150 + 8 * 600;
    let cost = 4 * 150 + 8 * 600;
    let initial = 3 * hold + hold / 2;
    let (uid, key) = r
        .customer(
            "storm@example.com",
            initial,
            NewKey {
                name: "storm".into(),
                ..NewKey::default()
            },
        )
        .await;
    let results = storm(&r.base, &key, &body, 200).await;
    let n = admitted(&results, 8, no_money);
    // Refusals only happen once holds (or costs ≤ holds) took all but less than one hold;
    // and the last admitted request found a hold's worth next to n − 1 settled costs.
    assert!(n >= 1);
    assert!(
        n as i64 >= initial / hold,
        "refused while money was there: {n}"
    );
    assert!(
        n as i64 <= (initial - hold) / cost + 1,
        "admitted more than the money allows: {n}"
    );
    assert!(n < 200, "nothing was refused");
    check_after_storm(&r, uid, initial, n, cost).await;

    // Funds for exactly one more hold: admitted, whatever the finished requests held.
    set_balance(&r, uid, hold).await;
    let c = client();
    let (s, v) = chat_raw(&c, &r.base, &key, &body).await;
    assert_eq!(s, 200, "a customer with money was refused: {v}");
    wait_for_logs(&r, uid, n + 1).await;
    settled(&r, uid).await;
    assert_eq!(balance(&db, uid).await, hold - cost);
    let (s, v) = chat_raw(&c, &r.base, &key, &body).await;
    assert_eq!(s, 402, "{v}");

    // (b) A model whose answer costs exactly its hold (no input price, output cut to
    // max_tokens): the number admitted is exactly ⌊initial / hold⌋, whatever the timing.
    add_model(&r, "mock/flat-1", "mock", 0, 1_000_000_000).await;
    let body = small_body("mock/flat-1", 8);
    let hold = 8 * 1000;
    let initial = 7 * hold + 5_000;
    let (uid, key) = r
        .customer(
            "flat@example.com",
            initial,
            NewKey {
                name: "flat".into(),
                ..NewKey::default()
            },
        )
        .await;
    let results = storm(&r.base, &key, &body, 200).await;
    let n = admitted(&results, 8, no_money);
    assert_eq!(n as i64, initial / hold);
    assert_eq!(check_after_storm(&r, uid, initial, n, hold).await, 5_000);
    set_balance(&r, uid, hold).await;
    let (s, v) = chat_raw(&c, &r.base, &key, &body).await;
    assert_eq!(s, 200, "{v}");
    wait_for_logs(&r, uid, n + 1).await;
    settled(&r, uid).await;
    assert_eq!(balance(&db, uid).await, 0);
    let (s, v) = chat_raw(&c, &r.base, &key, &body).await;
    assert_eq!(s, 402, "{v}");
    assert_error(&v, "insufficient_quota", "insufficient_balance");

    // (c) A key spend limit under 50 concurrent requests, on a rich account.
    let key_limit = "spend limit";
    for (model, hold, cost, limit, exact) in [
        (
            "mock/fast-1",
            (small_body("mock/fast-1", 8).len() as i64 + 16) * 150 + 8 * 600,
            4 * 150 + 8 * 600,
            0,
            false,
        ),
        ("mock/flat-1", 8000, 8000, 5 * 8000 + 1, true),
    ] {
        let limit = if limit == 0 {
            3 * hold + hold / 2
        } else {
            limit
        };
        let name = format!("limited-{}", model.replace('/', "-"));
        let (uid, key) = r
            .customer(
                &format!("{name}@example.com"),
                10 * NANOS_PER_USD,
                NewKey {
                    name: name.clone(),
                    spend_limit_nano: Some(limit),
                    ..NewKey::default()
                },
            )
            .await;
        let kid = key_id(&db, uid, &name).await;
        let results = storm(&r.base, &key, &small_body(model, 8), 50).await;
        let n = admitted(&results, 8, key_limit);
        if exact {
            assert_eq!(n as i64, limit / hold);
        } else {
            assert!(n as i64 >= limit / hold && n as i64 <= (limit - hold) / cost + 1);
        }
        check_after_storm(&r, uid, 10 * NANOS_PER_USD, n, cost).await;
        let k = keys::get_for_user(&db, uid, kid).await.unwrap();
        assert!(
            k.spent_nano <= limit,
            "key spent {} > limit {limit}",
            k.spent_nano
        );
        assert_eq!(k.spent_nano, n as i64 * cost);
        assert_eq!(r.server_state.gateway.money.key_pending(kid), 0);
    }
    ledger_ok(&db).await;
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_never_overspend_on_sqlite() {
    holds_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn holds_never_overspend_on_postgres() {
    on_postgres(holds_suite).await;
}

// ----- 2. a cost above its hold is charged in full and counted ---------------------------

/// An OpenAI-compatible upstream on a local port that reports `prompt_tokens` of usage
/// whatever it was sent (JSON, or a stream whose last chunk carries the usage).
async fn overreporting_upstream(prompt_tokens: i64) -> String {
    use axum::response::IntoResponse;
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |body: axum::Json<Value>| async move {
            let usage = json!({"prompt_tokens": prompt_tokens, "completion_tokens": 8,
                "total_tokens": prompt_tokens + 8});
            if body.get("stream").and_then(Value::as_bool) == Some(true) {
                let chunk = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                    "model": "m", "choices": [{"index": 0, "delta": {"role": "assistant",
                    "content": "hi"}, "finish_reason": "stop"}]});
                let last = json!({"id": "c1", "object": "chat.completion.chunk", "created": 1,
                    "model": "m", "choices": [], "usage": usage});
                (
                    [("content-type", "text/event-stream")],
                    format!("data: {chunk}\n\ndata: {last}\n\ndata: [DONE]\n\n"),
                )
                    .into_response()
            } else {
                axum::Json(
                    json!({"id": "c1", "object": "chat.completion", "created": 1,
                    "model": "m", "choices": [{"index": 0, "message": {"role": "assistant",
                    "content": "hi"}, "finish_reason": "stop"}], "usage": usage}),
                )
                .into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

async fn cost_cap_suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let (uid, key) = r
        .customer(
            "heavy@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "heavy".into(),
                ..NewKey::default()
            },
        )
        .await;
    // An upstream that bills far more prompt tokens than the request has bytes: more than
    // the hold's one token per body byte (+16) could foresee.
    let prompt = 50_000;
    catalog::upsert_provider(
        &db,
        &ProviderSpec {
            name: "greedy".into(),
            kind: catalog::ProviderKind::OpenAi,
            base_url: Some(overreporting_upstream(prompt).await),
            api_key_enc: None,
            config: json!({}),
            enabled: true,
        },
    )
    .await
    .unwrap();
    add_model(&r, "greedy/m", "greedy", 150_000_000, 600_000_000).await;
    let c = client();
    let mut expected = 0;
    for stream in [false, true] {
        let body = json!({"model": "greedy/m", "max_tokens": 8, "stream": stream,
            "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "x"}]})
        .to_string();
        let hold = (body.len() as i64 + 16) * 150 + 8 * 600;
        let uncapped = prompt * 150 + 8 * 600;
        assert!(
            uncapped > hold,
            "the construction must exceed the hold: {uncapped} ≤ {hold}"
        );
        let resp = c
            .post(format!("{}/v1/chat/completions", r.base))
            .bearer_auth(&key)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        assert!(
            text.contains(&format!("\"prompt_tokens\":{prompt}")),
            "the upstream's own count reaches the client: {text}"
        );
        let logs = wait_for_logs(&r, uid, usize::from(stream) + 1).await;
        let log = &logs[0];
        assert_eq!(log.stream, stream);
        assert_eq!((log.tokens_in, log.tokens_out), (prompt, 8));
        assert_eq!(
            log.cost_nano, uncapped,
            "an overrun is charged in full, not capped at the hold {hold}"
        );
        expected += uncapped;
        assert_eq!(
            r.server_state
                .gateway
                .meter
                .stats()
                .overruns
                .load(std::sync::atomic::Ordering::Relaxed),
            u64::from(stream) + 1
        );
    }
    settled(&r, uid).await;
    assert_eq!(balance(&db, uid).await, NANOS_PER_USD - expected);
    ledger_ok(&db).await;
    r.stop().await;
}

#[tokio::test]
async fn overrun_is_charged_and_counted_on_sqlite() {
    cost_cap_suite(None).await;
}

#[tokio::test]
async fn overrun_is_charged_and_counted_on_postgres() {
    on_postgres(cost_cap_suite).await;
}

// ----- 3. a silent stream is ended and its hold released ---------------------------------

async fn stream_suite(database_url: Option<String>) {
    let r = start(database_url.clone(), &[("TOKENGATE_STREAM_IDLE_SECS", "1")]).await;
    let db = r.server_state.db.clone();
    // A mock that sends its first chunk at once, then nothing for 30 s.
    add_provider(&r, "stall", json!({"chunk_delay_ms": 30_000})).await;
    add_model(&r, "stall/slow-1", "stall", 150_000_000, 600_000_000).await;
    let (uid, key) = r
        .customer(
            "stall@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "stall".into(),
                ..NewKey::default()
            },
        )
        .await;
    let body = json!({"model": "stall/slow-1", "stream": true, "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]})
    .to_string();
    let hold = (body.len() as i64 + 16) * 150 + 8 * 600;
    let money = &r.server_state.gateway.money;
    let t0 = Instant::now();
    let resp = client()
        .post(format!("{}/v1/chat/completions", r.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let held_during = money.account_funds(uid).held;
    if t0.elapsed() < Duration::from_millis(800) {
        assert_eq!(held_during, hold, "the stream holds its worst case");
    }
    let text = tokio::time::timeout(Duration::from_secs(10), resp.text())
        .await
        .expect("the silent stream was not ended")
        .unwrap();
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(5),
        "{took:?}"
    );
    assert!(text.contains("\"role\":\"assistant\""), "{text}");
    assert!(text.contains("stopped sending"), "{text}");
    assert_eq!(money.account_funds(uid).held, 0, "hold released at the end");
    let logs = wait_for_logs(&r, uid, 1).await;
    assert_eq!(logs[0].status, 504);
    assert_eq!(
        logs[0].error_type.map(|t| t.as_str()),
        Some("upstream_timeout")
    );
    assert!(logs[0].stream);
    assert!(logs[0].cost_nano <= hold);
    settled(&r, uid).await;
    assert_eq!(balance(&db, uid).await, NANOS_PER_USD - logs[0].cost_nano);
    r.stop().await;

    // With the default idle limit (5 minutes), a client that goes away releases the hold.
    let r = start(database_url, &[]).await;
    add_provider(&r, "stall", json!({"chunk_delay_ms": 30_000})).await;
    add_model(&r, "stall/slow-1", "stall", 150_000_000, 600_000_000).await;
    let (uid, key) = r
        .customer(
            "gone@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "gone".into(),
                ..NewKey::default()
            },
        )
        .await;
    let mut resp = client()
        .post(format!("{}/v1/chat/completions", r.base))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.chunk().await.unwrap().is_some());
    assert_eq!(r.server_state.gateway.money.account_funds(uid).held, hold);
    drop(resp);
    let t0 = Instant::now();
    while r.server_state.gateway.money.account_funds(uid).held != 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "hold of a disconnected stream not released"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let logs = wait_for_logs(&r, uid, 1).await;
    assert_eq!(logs[0].status, 499);
    settled(&r, uid).await;
    assert_eq!(
        balance(&r.server_state.db, uid).await,
        NANOS_PER_USD - logs[0].cost_nano
    );
    r.stop().await;
}

#[tokio::test]
async fn silent_stream_releases_its_hold_on_sqlite() {
    stream_suite(None).await;
}

#[tokio::test]
async fn silent_stream_releases_its_hold_on_postgres() {
    on_postgres(stream_suite).await;
}

// ----- 4. Stripe webhooks ---------------------------------------------------------------

const WHSEC: &str = "whsec_test";

fn event(id: &str, kind: &str, session: &str, object: Value) -> String {
    let mut obj = json!({"id": session, "object": "checkout.session"});
    for (k, v) in object.as_object().unwrap() {
        obj[k] = v.clone();
    }
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil",
           "created": now_ms() / 1000, "type": kind, "livemode": false,
           "data": {"object": obj}})
    .to_string()
}

fn paid(id: &str, session: &str, user_id: i64, cents: i64) -> String {
    event(
        id,
        "checkout.session.completed",
        session,
        json!({"payment_status": "paid", "status": "complete", "currency": "usd",
               "amount_total": cents, "client_reference_id": user_id.to_string(),
               "metadata": {"user_id": user_id.to_string()}, "mode": "payment"}),
    )
}

fn signature(secret: &str, t: i64, body: &str) -> String {
    format!("t={t},v1={}", hmac_hex(secret, t, body))
}

async fn deliver(base: &str, provider: &str, body: &str, sig: Option<&str>) -> (u16, Value) {
    let mut req = client()
        .post(format!("{base}/webhooks/payments/{provider}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(s) = sig {
        req = req.header("Stripe-Signature", s);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn deliver_signed(base: &str, body: &str) -> (u16, Value) {
    let sig = signature(WHSEC, now_ms() / 1000, body);
    deliver(base, "stripe", body, Some(&sig)).await
}

/// The account's top-up ledger entries, oldest first.
async fn topups(db: &Db, user_id: i64) -> Vec<accounts::LedgerEntry> {
    let mut v: Vec<_> = accounts::ledger_entries(db, user_id, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == EntryKind::Topup)
        .collect();
    v.reverse();
    v
}

async fn payment(db: &Db, user_id: i64, session: &str) -> Option<payments::Payment> {
    payments::list_for_user(db, user_id)
        .await
        .unwrap()
        .into_iter()
        .find(|p| p.session_id == session)
}

async fn pending(db: &Db, user_id: i64, session: &str, amount: i64) {
    payments::create_pending(
        db,
        &NewPayment {
            user_id,
            provider: "stripe",
            session_id: session,
            amount_nano: amount,
            checkout_url: &format!("https://checkout.stripe.com/c/pay/{session}"),
            expires_at: Some(now_ms() / 1000 + 3600),
        },
    )
    .await
    .unwrap();
}

async fn webhook_suite(database_url: Option<String>) {
    let r = start(
        database_url.clone(),
        &[
            ("TOKENGATE_STRIPE_SECRET_KEY", "sk_test_x"),
            ("TOKENGATE_STRIPE_WEBHOOK_SECRET", WHSEC),
            // Nothing listens there: creating a checkout fails.
            ("TOKENGATE_STRIPE_API_BASE", "http://127.0.0.1:9/"),
        ],
    )
    .await;
    let db = r.server_state.db.clone();
    let base = r.base.clone();
    let (uid, key) = r
        .customer(
            "payer@example.com",
            0,
            NewKey {
                name: "payer".into(),
                ..NewKey::default()
            },
        )
        .await;
    let tok = token_for(&r, uid).await;
    let c = client();
    let ask = small_body("mock/fast-1", 8);
    let (s, v) = chat_raw(&c, &base, &key, &ask).await;
    assert_eq!(s, 402, "no money yet: {v}");

    // Top-up amounts are checked before the provider is asked; a provider that cannot be
    // reached is a 503 and records nothing.
    for bad in [
        json!({}),
        json!({"amount_usd": "abc"}),
        json!({"amount_usd": "0.99"}),
        json!({"amount_usd": "10000.01"}),
        json!({"amount_usd": "5.001"}),
        json!({"amount_usd": "-5.00"}),
    ] {
        let (s, v) = api(&r, "POST", "/api/v1/topup", Some(&tok), Some(bad.clone())).await;
        assert_eq!(s, 422, "{bad}: {v}");
        assert_api_error(&v, "validation_error");
    }
    let (s, v) = api(
        &r,
        "POST",
        "/api/v1/topup",
        Some(&tok),
        Some(json!({"amount_usd": "5.00"})),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_api_error(&v, "payments_unavailable");
    assert!(payments::list_for_user(&db, uid).await.unwrap().is_empty());

    // 20 concurrent deliveries of one paid event: one credit.
    pending(&db, uid, "cs_test_a", 5 * NANOS_PER_USD).await;
    let body = paid("evt_a", "cs_test_a", uid, 500);
    let answers = futures::future::join_all((0..20).map(|_| deliver_signed(&base, &body))).await;
    let mut results: HashMap<String, usize> = HashMap::new();
    for (s, v) in &answers {
        assert_eq!(*s, 200, "{v}");
        assert_eq!(v["event"], "evt_a");
        *results
            .entry(v["result"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(results.get("credited"), Some(&1), "{results:?}");
    assert_eq!(results.get("duplicate"), Some(&19), "{results:?}");
    let t = topups(&db, uid).await;
    assert_eq!(t.len(), 1);
    assert_eq!(t[0].amount_nano, 5 * NANOS_PER_USD);
    assert_eq!(t[0].reference.as_deref(), Some("stripe:cs_test_a"));
    assert_eq!(balance(&db, uid).await, 5 * NANOS_PER_USD);
    let p = payment(&db, uid, "cs_test_a").await.unwrap();
    assert_eq!(p.status, PaymentStatus::Paid);
    assert_eq!(p.ledger_entry_id, Some(t[0].id));
    assert!(p.paid_at.is_some());

    // Usable at once.
    let (s, v) = chat_raw(&c, &base, &key, &ask).await;
    assert_eq!(s, 200, "credited balance not usable at once: {v}");

    // The payment as the customer sees it, with its receipt.
    let (s, list) = api(&r, "GET", "/api/v1/me/billing/payments", Some(&tok), None).await;
    assert_eq!(s, 200);
    let row = list
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["session_id"] == "cs_test_a")
        .unwrap()
        .clone();
    assert_eq!(row["status"], "paid");
    assert_eq!(row["amount_usd"], "5.00");
    let (s, ct, pdf) = get_raw(&r, row["receipt_url"].as_str().unwrap(), &tok, &[]).await;
    assert_eq!(s, 200);
    assert_eq!(ct, "application/pdf");
    assert!(pdf.starts_with(b"%PDF"));

    wait_for_logs(&r, uid, 1).await;
    settled(&r, uid).await;
    let snapshot = balance(&db, uid).await;
    let entries = accounts::ledger_entries(&db, uid, None, 1000)
        .await
        .unwrap()
        .len();

    // Replays, other events for the paid session, and events that change nothing.
    for (body, result) in [
        (body.clone(), "duplicate"),
        (paid("evt_a2", "cs_test_a", uid, 500), "already_paid"),
        (
            event(
                "evt_a3",
                "checkout.session.async_payment_succeeded",
                "cs_test_a",
                json!({"payment_status": "paid", "currency": "usd", "amount_total": 500,
                       "client_reference_id": uid.to_string()}),
            ),
            "already_paid",
        ),
        (
            event(
                "evt_a4",
                "checkout.session.expired",
                "cs_test_a",
                json!({"status": "expired"}),
            ),
            "unchanged",
        ),
        (
            event(
                "evt_a5",
                "checkout.session.async_payment_failed",
                "cs_test_a",
                json!({}),
            ),
            "unchanged",
        ),
        (
            event(
                "evt_cus",
                "customer.created",
                "cus_123",
                json!({"object": "customer"}),
            ),
            "ignored",
        ),
        (
            // Completed but not paid yet (a delayed payment method): nothing to do.
            event(
                "evt_unpaid",
                "checkout.session.completed",
                "cs_test_a",
                json!({"payment_status": "unpaid", "amount_total": 500}),
            ),
            "ignored",
        ),
    ] {
        let (s, v) = deliver_signed(&base, &body).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["result"], result, "{body}: {v}");
    }
    assert_eq!(balance(&db, uid).await, snapshot);
    assert_eq!(
        accounts::ledger_entries(&db, uid, None, 1000)
            .await
            .unwrap()
            .len(),
        entries
    );
    assert_eq!(
        payment(&db, uid, "cs_test_a").await.unwrap().status,
        PaymentStatus::Paid
    );

    // Rejected deliveries: 400, nothing changes, and the event id is not used up.
    pending(&db, uid, "cs_test_b", 3 * NANOS_PER_USD).await;
    // No receipt before the money arrived, and none for someone else's payment.
    let unpaid = payment(&db, uid, "cs_test_b").await.unwrap().id;
    let receipt = |id: i64| format!("/api/v1/me/billing/payments/{id}/receipt.pdf");
    let (s, _) = api(&r, "GET", &receipt(unpaid), Some(&tok), None).await;
    assert_eq!(s, 404);
    let (stranger, _) = r
        .customer(
            "stranger@example.com",
            0,
            NewKey {
                name: "s".into(),
                ..NewKey::default()
            },
        )
        .await;
    let stok = token_for(&r, stranger).await;
    let (s, _) = api(&r, "GET", &receipt(p.id), Some(&stok), None).await;
    assert_eq!(s, 404, "someone else's receipt");
    let body = paid("evt_b", "cs_test_b", uid, 300);
    let now = now_ms() / 1000;
    let tampered = body.replace("\"amount_total\":300", "\"amount_total\":30000");
    assert_ne!(tampered, body);
    for (sent, sig) in [
        (body.clone(), Some(signature("whsec_wrong", now, &body))),
        (body.clone(), Some(signature(WHSEC, now - 600, &body))),
        (body.clone(), Some(signature(WHSEC, now + 600, &body))),
        (tampered.clone(), Some(signature(WHSEC, now, &body))),
        (body.clone(), None),
        (body.clone(), Some("t=abc,v1=00".to_string())),
        (body.clone(), Some(format!("t={now}"))),
        (
            body.clone(),
            Some(format!("t={now},v0={}", hmac_hex(WHSEC, now, &body))),
        ),
    ] {
        let (s, v) = deliver(&base, "stripe", &sent, sig.as_deref()).await;
        assert_eq!(s, 400, "{sig:?}: {v}");
        assert_api_error(&v, "invalid_request");
    }
    // A malformed but correctly signed body is rejected too.
    let (s, v) = deliver_signed(&base, "not json").await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(balance(&db, uid).await, snapshot);
    assert_eq!(
        payment(&db, uid, "cs_test_b").await.unwrap().status,
        PaymentStatus::Pending
    );
    let (s, v) = deliver_signed(&base, &body).await;
    assert_eq!((s, v["result"].as_str()), (200, Some("credited")), "{v}");
    assert_eq!(balance(&db, uid).await, snapshot + 3 * NANOS_PER_USD);

    // Unknown provider: 404.
    let sig = signature(WHSEC, now_ms() / 1000, &body);
    let (s, v) = deliver(&base, "paypal", &body, Some(&sig)).await;
    assert_eq!(s, 404, "{v}");
    assert_api_error(&v, "not_found");

    // A paid session this server never created: acknowledged (so Stripe stops retrying),
    // logged, nothing credited and no payment row made up — whatever account it names.
    for (id, session, user) in [
        ("evt_nr1", "cs_elsewhere", uid),
        ("evt_ghost", "cs_ghost", 9_999_999),
    ] {
        let (s, v) = deliver_signed(&base, &paid(id, session, user, 250)).await;
        assert_eq!(
            (s, v["result"].as_str()),
            (200, Some("unknown_payment")),
            "{v}"
        );
        assert!(payment(&db, user, session).await.is_none());
    }
    assert_eq!(balance(&db, uid).await, snapshot + 3 * NANOS_PER_USD);

    // Different events for one session, concurrently: one credit.
    pending(&db, uid, "cs_test_c", NANOS_PER_USD).await;
    let bodies: Vec<String> = (0..10)
        .map(|i| paid(&format!("evt_c{i}"), "cs_test_c", uid, 100))
        .collect();
    let answers = futures::future::join_all(bodies.iter().map(|b| deliver_signed(&base, b))).await;
    let credited = answers
        .iter()
        .inspect(|(s, v)| assert_eq!(*s, 200, "{v}"))
        .filter(|(_, v)| v["result"] == "credited")
        .count();
    assert_eq!(credited, 1, "{answers:?}");

    let refs: Vec<String> = topups(&db, uid)
        .await
        .into_iter()
        .map(|e| e.reference.unwrap())
        .collect();
    assert_eq!(
        refs,
        ["stripe:cs_test_a", "stripe:cs_test_b", "stripe:cs_test_c"]
    );
    assert_eq!(
        balance(&db, uid).await,
        snapshot + 3 * NANOS_PER_USD + NANOS_PER_USD
    );
    assert_eq!(
        r.server_state.gateway.money.account_funds(uid).persisted,
        balance(&db, uid).await,
        "the gateway sees every credit"
    );
    ledger_ok(&db).await;
    r.stop().await;

    // Without Stripe configured: top-ups and the Stripe webhook answer 503.
    let r = start(database_url, &[]).await;
    let (uid, _) = r
        .customer(
            "nopay@example.com",
            0,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let tok = token_for(&r, uid).await;
    let (s, v) = api(
        &r,
        "POST",
        "/api/v1/topup",
        Some(&tok),
        Some(json!({"amount_usd": "5.00"})),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_api_error(&v, "payments_unavailable");
    let body = paid("evt_x", "cs_x", uid, 500);
    let (s, v) = deliver(
        &r.base,
        "stripe",
        &body,
        Some(&signature(WHSEC, now_ms() / 1000, &body)),
    )
    .await;
    assert_eq!(s, 503, "{v}");
    assert_eq!(balance(&r.server_state.db, uid).await, 0);
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_webhooks_on_sqlite() {
    webhook_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stripe_webhooks_on_postgres() {
    on_postgres(webhook_suite).await;
}

// ----- 4b. refunds and disputes ----------------------------------------------------------

/// `checkout.session.completed` for a paid session with its PaymentIntent.
fn paid_pi(id: &str, session: &str, user_id: i64, cents: i64, pi: &str) -> String {
    let mut v: Value = serde_json::from_str(&paid(id, session, user_id, cents)).unwrap();
    v["data"]["object"]["payment_intent"] = json!(pi);
    v.to_string()
}

/// `charge.refunded`: the Charge with everything refunded so far.
fn refunded(id: &str, charge: &str, pi: &str, cents: i64, refunded_cents: i64) -> String {
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil",
           "created": now_ms() / 1000, "type": "charge.refunded", "livemode": false,
           "data": {"object": {"id": charge, "object": "charge", "amount": cents,
               "amount_captured": cents, "amount_refunded": refunded_cents,
               "currency": "usd", "paid": true, "payment_intent": pi,
               "refunded": refunded_cents >= cents, "status": "succeeded"}}})
    .to_string()
}

/// `charge.dispute.created`: the Dispute.
fn disputed(id: &str, dispute: &str, pi: &str, cents: i64) -> String {
    json!({"id": id, "object": "event", "api_version": "2025-03-31.basil",
           "created": now_ms() / 1000, "type": "charge.dispute.created", "livemode": false,
           "data": {"object": {"id": dispute, "object": "dispute", "amount": cents,
               "charge": "ch_disputed", "currency": "usd", "payment_intent": pi,
               "reason": "fraudulent", "status": "needs_response"}}})
    .to_string()
}

async fn result_of(base: &str, body: &str) -> String {
    let (s, v) = deliver_signed(base, body).await;
    assert_eq!(s, 200, "{body}: {v}");
    assert_eq!(v["received"], true, "{v}");
    v["result"].as_str().unwrap().to_string()
}

/// The account's ledger entries of `kind`, oldest first, as (amount, reference, note).
async fn entries_of(db: &Db, user_id: i64, kind: &str) -> Vec<(i64, String, String)> {
    let mut v: Vec<_> = accounts::ledger_entries(db, user_id, None, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind.as_str() == kind)
        .map(|e| {
            (
                e.amount_nano,
                e.reference.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect();
    v.reverse();
    v
}

/// The text `pdftotext` (poppler-utils, installed by `scripts/setup.sh test`) reads back.
fn pdf_text(pdf: &[u8]) -> String {
    let path = std::env::temp_dir().join(format!(
        "tg-billing-{}-{}.pdf",
        std::process::id(),
        now_ms()
    ));
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .args([path.to_str().unwrap(), "-"])
        .output()
        .expect("pdftotext from poppler-utils (scripts/setup.sh test installs it)");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn reversals_suite(database_url: Option<String>) {
    let r = start(
        database_url,
        &[
            ("TOKENGATE_STRIPE_SECRET_KEY", "sk_test_x"),
            ("TOKENGATE_STRIPE_WEBHOOK_SECRET", WHSEC),
            ("TOKENGATE_STRIPE_API_BASE", "http://127.0.0.1:9/"),
        ],
    )
    .await;
    let db = r.server_state.db.clone();
    let base = r.base.clone();
    let money = &r.server_state.gateway.money;
    let new_key = |name: &str| NewKey {
        name: name.into(),
        ..NewKey::default()
    };
    let (uid, key) = r.customer("refunds@example.com", 0, new_key("r")).await;
    let (other, _) = r.customer("bystander@example.com", 0, new_key("o")).await;
    let tok = token_for(&r, uid).await;
    let usd = NANOS_PER_USD;

    // A session this server never created is acknowledged and credits nothing, even when
    // it names a real account; its replay is a duplicate.
    let unknown = paid_pi("evt_unknown", "cs_nobody", uid, 500, "pi_nobody");
    assert_eq!(result_of(&base, &unknown).await, "unknown_payment");
    assert_eq!(result_of(&base, &unknown).await, "duplicate");
    assert_eq!(balance(&db, uid).await, 0);
    assert!(payment(&db, uid, "cs_nobody").await.is_none());

    // An event that disagrees with the stored session (amount, account, currency, or no
    // account at all) credits nothing and leaves the payment pending.
    pending(&db, uid, "cs_m", 5 * usd).await;
    let mut eur: Value =
        serde_json::from_str(&paid_pi("evt_mm3", "cs_m", uid, 500, "pi_m")).unwrap();
    eur["data"]["object"]["currency"] = json!("eur");
    let mut anonymous: Value =
        serde_json::from_str(&paid_pi("evt_mm4", "cs_m", uid, 500, "pi_m")).unwrap();
    anonymous["data"]["object"]["client_reference_id"] = Value::Null;
    anonymous["data"]["object"]["metadata"] = json!({});
    for body in [
        paid_pi("evt_mm1", "cs_m", uid, 50_000, "pi_m"),
        paid_pi("evt_mm2", "cs_m", other, 500, "pi_m"),
        eur.to_string(),
        anonymous.to_string(),
    ] {
        assert_eq!(result_of(&base, &body).await, "mismatch", "{body}");
    }
    assert_eq!(balance(&db, uid).await, 0);
    assert_eq!(balance(&db, other).await, 0);
    let p = payment(&db, uid, "cs_m").await.unwrap();
    assert_eq!((p.status.as_str(), p.payment_intent), ("pending", None));

    // The genuine event credits and remembers the PaymentIntent.
    assert_eq!(
        result_of(&base, &paid_pi("evt_m", "cs_m", uid, 500, "pi_m")).await,
        "credited"
    );
    assert_eq!(balance(&db, uid).await, 5 * usd);
    let p = payment(&db, uid, "cs_m").await.unwrap();
    assert_eq!(p.status, PaymentStatus::Paid);
    assert_eq!(p.payment_intent.as_deref(), Some("pi_m"));

    // A full refund debits the whole top-up; the gateway sees it at once.
    assert_eq!(
        result_of(&base, &refunded("evt_rf1", "ch_m", "pi_m", 500, 500)).await,
        "refunded"
    );
    assert_eq!(balance(&db, uid).await, 0);
    assert_eq!(money.account_funds(uid).persisted, 0);
    let ask = small_body("mock/fast-1", 8);
    let c = client();
    let (s, v) = chat_raw(&c, &base, &key, &ask).await;
    assert_eq!(s, 402, "refunded money still spendable: {v}");
    // Another event for the same fully refunded charge takes nothing more.
    assert_eq!(
        result_of(&base, &refunded("evt_rf1b", "ch_m", "pi_m", 500, 500)).await,
        "unchanged"
    );
    assert_eq!(balance(&db, uid).await, 0);

    // Partial refunds debit the new part only; a replay is a duplicate; late or reordered
    // events (a smaller cumulative amount) take nothing; the total never exceeds what was
    // paid.
    pending(&db, uid, "cs_p", 10 * usd).await;
    assert_eq!(
        result_of(&base, &paid_pi("evt_p", "cs_p", uid, 1000, "pi_p")).await,
        "credited"
    );
    assert_eq!(balance(&db, uid).await, 10 * usd);
    let second = refunded("evt_p2", "ch_p", "pi_p", 1000, 700);
    assert_eq!(
        result_of(&base, &refunded("evt_p1", "ch_p", "pi_p", 1000, 300)).await,
        "refunded"
    );
    assert_eq!(balance(&db, uid).await, 7 * usd);
    assert_eq!(result_of(&base, &second).await, "refunded");
    assert_eq!(balance(&db, uid).await, 3 * usd);
    assert_eq!(money.account_funds(uid).persisted, 3 * usd);
    let answers = futures::future::join_all((0..10).map(|_| deliver_signed(&base, &second))).await;
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == 200 && v["result"] == "duplicate")
    );
    let late: Vec<String> = (0..10)
        .map(|i| refunded(&format!("evt_late{i}"), "ch_p", "pi_p", 1000, 300 + 40 * i))
        .collect();
    let answers = futures::future::join_all(late.iter().map(|b| deliver_signed(&base, b))).await;
    assert!(
        answers
            .iter()
            .all(|(s, v)| *s == 200 && v["result"] == "unchanged"),
        "{answers:?}"
    );
    assert_eq!(balance(&db, uid).await, 3 * usd);
    // Concurrent distinct events raising the cumulative amount debit each delta once.
    let raises: Vec<String> = (0..10)
        .map(|i| {
            refunded(
                &format!("evt_raise{i}"),
                "ch_p",
                "pi_p",
                1000,
                1000 + 100 * i,
            )
        })
        .collect();
    let answers = futures::future::join_all(raises.iter().map(|b| deliver_signed(&base, b))).await;
    let debits = answers
        .iter()
        .inspect(|(s, v)| assert_eq!(*s, 200, "{v}"))
        .filter(|(_, v)| v["result"] == "refunded")
        .count();
    assert_eq!(debits, 1, "{answers:?}");
    assert_eq!(balance(&db, uid).await, 0, "never more than was paid");
    let p = payment(&db, uid, "cs_p").await.unwrap();
    assert_eq!((p.refunded_nano, p.disputed_nano), (10 * usd, 0));
    let refunds = entries_of(&db, uid, "refund").await;
    assert_eq!(
        refunds.iter().map(|e| e.0).collect::<Vec<_>>(),
        [-5 * usd, -3 * usd, -4 * usd, -3 * usd]
    );
    assert_eq!(refunds[0].1, "stripe:ch_m");
    assert_eq!(
        refunds[0].2,
        "Refund to the payer of the 5.00 USD top-up stripe:cs_m"
    );
    assert_eq!(refunds[1].1, "stripe:ch_p");

    // A dispute debits the disputed amount even below zero, at once for the gateway, and
    // only once per dispute.
    pending(&db, uid, "cs_d", 4 * usd).await;
    assert_eq!(
        result_of(&base, &paid_pi("evt_d", "cs_d", uid, 400, "pi_d")).await,
        "credited"
    );
    // The customer spends most of it (here: an adjustment standing for usage).
    set_balance(&r, uid, usd).await;
    let dispute = disputed("evt_dp1", "dp_1", "pi_d", 400);
    assert_eq!(result_of(&base, &dispute).await, "disputed");
    assert_eq!(balance(&db, uid).await, -3 * usd);
    assert_eq!(money.account_funds(uid).persisted, -3 * usd);
    let (s, v) = chat_raw(&c, &base, &key, &ask).await;
    assert_eq!(s, 402, "{v}");
    assert_eq!(result_of(&base, &dispute).await, "duplicate");
    assert_eq!(
        result_of(&base, &disputed("evt_dp1b", "dp_1", "pi_d", 400)).await,
        "unchanged",
        "the same dispute through another event"
    );
    // A dispute of a fully refunded payment has nothing left to take; one of a charge
    // that is no top-up of this server is acknowledged and changes nothing.
    assert_eq!(
        result_of(&base, &disputed("evt_dp2", "dp_2", "pi_p", 1000)).await,
        "unchanged"
    );
    assert_eq!(
        result_of(&base, &disputed("evt_dp3", "dp_3", "pi_elsewhere", 1000)).await,
        "unknown_payment"
    );
    assert_eq!(
        result_of(
            &base,
            &refunded("evt_rf9", "ch_x", "pi_elsewhere", 1000, 1000)
        )
        .await,
        "unknown_payment"
    );
    assert_eq!(balance(&db, uid).await, -3 * usd);
    let disputes = entries_of(&db, uid, "dispute").await;
    assert_eq!(disputes.len(), 1);
    assert_eq!(disputes[0].0, -4 * usd);
    assert_eq!(disputes[0].1, "stripe:dp_1");
    assert_eq!(
        disputes[0].2,
        "Dispute (chargeback) by the payer of the 4.00 USD top-up stripe:cs_d, reason: fraudulent"
    );
    assert_eq!(balance(&db, other).await, 0);
    ledger_ok(&db).await;

    // The monthly statement shows every refund and the dispute: JSON, CSV and PDF.
    let st = statements::monthly(&db, uid, Month::of_ms(now_ms()))
        .await
        .unwrap();
    assert_eq!(st.closing_nano, -3 * usd);
    check_statement(&r, &tok, &st).await;
    let month = st.month.clone();
    let (_, v) = api(
        &r,
        "GET",
        &format!("/api/v1/me/billing/statement?month={month}"),
        Some(&tok),
        None,
    )
    .await;
    let shown: Vec<(String, String, String)> = v["credits"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["kind"] == "refund" || c["kind"] == "dispute")
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["amount_usd"].as_str().unwrap().to_string(),
                c["note"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        shown
            .iter()
            .map(|c| (c.0.as_str(), c.1.as_str()))
            .collect::<Vec<_>>(),
        [
            ("refund", "-5.00"),
            ("refund", "-3.00"),
            ("refund", "-4.00"),
            ("refund", "-3.00"),
            ("dispute", "-4.00")
        ]
    );
    assert!(shown[4].2.starts_with("Dispute (chargeback)"), "{shown:?}");
    let (_, _, csv) = get_raw(
        &r,
        "/api/v1/me/billing/statement.csv",
        &tok,
        &[("month", &month)],
    )
    .await;
    let rows = parse_csv(std::str::from_utf8(&csv).unwrap());
    let dispute_row = rows.iter().find(|row| row[0] == "dispute").unwrap();
    assert_eq!(dispute_row[2], disputes[0].2);
    assert_eq!(dispute_row[3], "stripe:dp_1");
    assert_eq!(dispute_row[8], "-4.00");
    assert_eq!(rows.iter().filter(|row| row[0] == "refund").count(), 4);
    assert_eq!(rows.last().unwrap()[8], "-3.00");
    let (_, _, pdf) = get_raw(
        &r,
        "/api/v1/me/billing/statement.pdf",
        &tok,
        &[("month", &month)],
    )
    .await;
    let text = pdf_text(&pdf)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    for want in [
        "dispute",
        "Dispute (chargeback)",
        "refund",
        "Refund to the payer",
        "-4.00",
        "-3.00",
    ] {
        assert!(
            text.contains(want),
            "{want:?} not in the statement PDF: {text}"
        );
    }
    r.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_and_disputes_debit_on_sqlite() {
    reversals_suite(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refunds_and_disputes_debit_on_postgres() {
    on_postgres(reversals_suite).await;
}

// ----- 5. admin credit and ledger verification --------------------------------------------

async fn admin_credit_suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let (admin_id, at) = admin(&r, "ops@example.com").await;
    let (uid, key) = r
        .customer(
            "cust@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let ut = token_for(&r, uid).await;
    let path = format!("/api/v1/admin/users/{uid}/credit");
    let entries = || async {
        accounts::ledger_entries(&db, uid, None, 1000)
            .await
            .unwrap()
            .len()
    };
    let before = entries().await;

    // Auth.
    let body = json!({"amount_usd": "1.00", "reason": "x"});
    let (s, v) = api(&r, "POST", &path, None, Some(body.clone())).await;
    assert_eq!(s, 401, "{v}");
    let (s, v) = api(&r, "POST", &path, Some(&ut), Some(body.clone())).await;
    assert_eq!(s, 403, "{v}");
    assert_api_error(&v, "forbidden");

    // Validation: 422 and nothing recorded.
    for bad in [
        json!({"amount_usd": "1.00"}),
        json!({"amount_usd": "1.00", "reason": "   "}),
        json!({"amount_usd": "1.00", "reason": null}),
        json!({"amount_usd": "0", "reason": "zero"}),
        json!({"amount_usd": "0.00", "reason": "zero"}),
        json!({"amount_usd": 0, "reason": "zero"}),
        json!({"reason": "no amount"}),
        json!({"amount_usd": "abc", "reason": "bad amount"}),
        json!({"amount_usd": "1.00", "reason": "bad kind", "kind": "gift"}),
        json!({"amount_usd": "1.00", "reason": "x".repeat(501)}),
    ] {
        let (s, v) = api(&r, "POST", &path, Some(&at), Some(bad.clone())).await;
        assert_eq!(s, 422, "{bad}: {v}");
        assert_api_error(&v, "validation_error");
    }
    assert_eq!(entries().await, before);
    assert_eq!(balance(&db, uid).await, NANOS_PER_USD);

    // A debit beyond the balance: 409 unless forced.
    let debit = json!({"amount_usd": "-2.00", "reason": "chargeback"});
    let (s, v) = api(&r, "POST", &path, Some(&at), Some(debit.clone())).await;
    assert_eq!(s, 409, "{v}");
    assert_api_error(&v, "conflict");
    assert_eq!(entries().await, before);
    assert_eq!(balance(&db, uid).await, NANOS_PER_USD);
    // A debit within the balance needs no force.
    let (s, v) = api(
        &r,
        "POST",
        &path,
        Some(&at),
        Some(json!({"amount_usd": "-1.00", "reason": "chargeback, part 1", "kind": "refund"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["balance_nano"], 0);
    let mut forced = debit.clone();
    forced["allow_negative"] = json!(true);
    let (s, v) = api(&r, "POST", &path, Some(&at), Some(forced)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["balance_nano"], -2 * NANOS_PER_USD);
    assert_eq!(v["balance_usd"], "-2.00");
    assert_eq!(
        r.server_state.gateway.money.account_funds(uid).persisted,
        -2 * NANOS_PER_USD
    );
    let (s, v) = chat_raw(&client(), &r.base, &key, &small_body("mock/fast-1", 8)).await;
    assert_eq!(s, 402, "{v}");

    // A credit, recorded with the admin's id and the reason; usable at once.
    let (s, v) = api(
        &r,
        "POST",
        &path,
        Some(&at),
        Some(json!({"amount_usd": "2.500000001", "reason": "  goodwill, ticket \"42\"  "})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["kind"], "adjustment");
    assert_eq!(v["amount_usd"], "2.500000001");
    assert_eq!(v["balance_nano"], 500_000_001);
    let entry_id = v["entry_id"].as_i64().unwrap();
    let e = accounts::ledger_entries(&db, uid, None, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(e.id, entry_id);
    assert_eq!(
        (e.kind.as_str(), e.amount_nano, e.balance_after),
        ("adjustment", 2_500_000_001, 500_000_001)
    );
    assert_eq!(e.created_by, Some(admin_id));
    assert_eq!(e.note.as_deref(), Some("goodwill, ticket \"42\""));
    assert_eq!(
        e.reference.as_deref(),
        Some(format!("admin:{admin_id}").as_str())
    );
    let (s, v) = chat_raw(&client(), &r.base, &key, &small_body("mock/fast-1", 8)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = api(
        &r,
        "POST",
        &path,
        Some(&at),
        Some(json!({"amount_usd": "0.25", "reason": "promo", "kind": "promo"})),
    )
    .await;
    assert_eq!((s, v["kind"].as_str()), (200, Some("promo")), "{v}");

    // The admin ledger view.
    let (s, v) = api(
        &r,
        "GET",
        &format!("/api/v1/admin/users/{uid}/ledger"),
        Some(&at),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let listed = v["entries"].as_array().unwrap();
    let mine = listed.iter().find(|x| x["id"] == entry_id).unwrap();
    assert_eq!(mine["created_by"], admin_id);
    assert_eq!(mine["note"], "goodwill, ticket \"42\"");
    let kinds: BTreeSet<&str> = listed.iter().map(|x| x["kind"].as_str().unwrap()).collect();
    assert!(kinds.is_superset(&BTreeSet::from(["adjustment", "refund", "promo"])));
    let (s, _) = api(
        &r,
        "GET",
        &format!("/api/v1/admin/users/{uid}/ledger"),
        Some(&ut),
        None,
    )
    .await;
    assert_eq!(s, 403);
    let (s, v) = api(
        &r,
        "POST",
        "/api/v1/admin/users/99999999/credit",
        Some(&at),
        Some(json!({"amount_usd": "1.00", "reason": "nobody"})),
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // Ledger verification: fine, then broken by a direct write.
    wait_for_logs(&r, uid, 1).await;
    settled(&r, uid).await;
    let (s, v) = api(&r, "GET", "/api/v1/admin/ledger/verify", Some(&at), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["mismatches"], json!([]));
    assert!(v["checked"].as_i64().unwrap() >= 2);
    let (s, _) = api(&r, "GET", "/api/v1/admin/ledger/verify", Some(&ut), None).await;
    assert_eq!(s, 403);
    sqlx::query("UPDATE users SET balance_nano = balance_nano + 1 WHERE id = $1")
        .bind(uid)
        .execute(db.pool())
        .await
        .unwrap();
    let stored = balance(&db, uid).await;
    for q in [String::new(), format!("?user_id={uid}")] {
        let (s, v) = api(
            &r,
            "GET",
            &format!("/api/v1/admin/ledger/verify{q}"),
            Some(&at),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["ok"], false, "{v}");
        let m = v["mismatches"].as_array().unwrap();
        assert_eq!(m.len(), 1, "{v}");
        assert_eq!(m[0]["user_id"], uid);
        assert_eq!(m[0]["difference_nano"], 1);
        assert_eq!(m[0]["balance_nano"], stored);
        assert_eq!(m[0]["ledger_sum_nano"], stored - 1);
    }
    let (s, v) = api(
        &r,
        "GET",
        &format!("/api/v1/admin/ledger/verify?user_id={admin_id}"),
        Some(&at),
        None,
    )
    .await;
    assert_eq!((s, &v["ok"]), (200, &json!(true)), "{v}");
    let m = accounts::verify_ledger(&db, None).await.unwrap();
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].user_id, uid);
    r.stop().await;
}

/// An admin debit "within the balance" checks only the stored balance, not the costs the
/// gateway has settled but not yet flushed (nor the holds in flight): once they are
/// flushed, the balance is negative although `allow_negative` was not given.
async fn admin_debit_vs_unflushed_usage(database_url: Option<String>) {
    let r = start(database_url, &[("TOKENGATE_FLUSH_INTERVAL_MS", "2000")]).await;
    let db = r.server_state.db.clone();
    let (_, at) = admin(&r, "ops@example.com").await;
    let (uid, key) = r
        .customer(
            "debit@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let (s, v) = chat_raw(&client(), &r.base, &key, &small_body("mock/fast-1", 8)).await;
    assert_eq!(s, 200, "{v}");
    assert!(r.server_state.gateway.money.account_funds(uid).pending > 0);
    let (s, v) = api(
        &r,
        "POST",
        &format!("/api/v1/admin/users/{uid}/credit"),
        Some(&at),
        Some(json!({"amount_usd": "-1.00", "reason": "chargeback"})),
    )
    .await;
    wait_for_logs(&r, uid, 1).await;
    settled(&r, uid).await;
    let b = balance(&db, uid).await;
    assert!(
        s == 409 || b >= 0,
        "debit accepted ({s} {v}) and the balance is now {b}"
    );
    r.stop().await;
}

#[tokio::test]
async fn admin_debit_never_leaves_a_negative_balance_on_sqlite() {
    admin_debit_vs_unflushed_usage(None).await;
}

#[tokio::test]
async fn admin_credit_and_ledger_verify_on_sqlite() {
    admin_credit_suite(None).await;
}

#[tokio::test]
async fn admin_credit_and_ledger_verify_on_postgres() {
    on_postgres(admin_credit_suite).await;
}

// ----- 6. statements across a month boundary -----------------------------------------------

#[allow(clippy::too_many_arguments)]
fn rec(
    id: &str,
    user_id: i64,
    key_id: i64,
    model: &str,
    served: Option<&str>,
    status: i64,
    cost: i64,
    at: i64,
) -> RequestRecord {
    RequestRecord {
        request_id: id.into(),
        user_id,
        key_id,
        endpoint: "/v1/chat/completions".into(),
        model: model.into(),
        served_model: served.map(str::to_string),
        provider: served.map(|_| "mock".to_string()),
        stream: false,
        status,
        error_type: (status >= 300).then_some(usage::FailureKind::UpstreamError),
        error_message: (status >= 300).then(|| "=1+1 upstream, failed".to_string()),
        tokens_in: 10 + cost % 7,
        tokens_out: 20 + cost % 11,
        cached_tokens: 0,
        cost_nano: cost,
        latency_ms: 5,
        ttfb_ms: Some(3),
        attempts: 1,
        attempts_json: None,
        created_at: at,
    }
}

async fn backdate(db: &Db, entry_id: i64, at: i64) {
    sqlx::query("UPDATE ledger_entries SET created_at = $1 WHERE id = $2")
        .bind(at)
        .bind(entry_id)
        .execute(db.pool())
        .await
        .unwrap();
}

/// The statement identity, and the JSON/CSV/PDF renderings agreeing with it.
async fn check_statement(r: &Running, tok: &str, s: &statements::Statement) {
    assert_eq!(
        s.closing_nano - s.opening_nano,
        s.topups_nano + s.adjustments_nano - s.usage_cost_nano,
        "{s:?}"
    );
    assert_eq!(
        s.usage_ledger_nano, -s.usage_cost_nano,
        "unreconciled: {s:?}"
    );
    let month = s.month.as_str();

    let (status, v) = api(
        r,
        "GET",
        &format!("/api/v1/me/billing/statement?month={month}"),
        Some(tok),
        None,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["month"], month);
    assert_eq!(v["reconciled"], true);
    for (field, want) in [
        ("opening_balance", s.opening_nano),
        ("closing_balance", s.closing_nano),
        ("topups", s.topups_nano),
        ("adjustments", s.adjustments_nano),
        ("usage", s.usage_cost_nano),
        ("net_change", s.closing_nano - s.opening_nano),
    ] {
        assert_eq!(v[format!("{field}_nano")], want, "{field}: {v}");
        assert_eq!(
            nanos(v[format!("{field}_usd")].as_str().unwrap()),
            want,
            "{field}: {v}"
        );
    }
    assert_eq!(v["usage_ledger_nano"], s.usage_ledger_nano);
    assert_eq!(v["usage_requests"], s.usage_requests);
    let by_model: i64 = v["usage_by_model"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| nanos(m["cost_usd"].as_str().unwrap()))
        .sum();
    assert_eq!(by_model, s.usage_cost_nano);
    let credits: i64 = v["credits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| nanos(c["amount_usd"].as_str().unwrap()))
        .sum();
    assert_eq!(credits, s.topups_nano + s.adjustments_nano);

    let (status, ct, csv) = get_raw(
        r,
        "/api/v1/me/billing/statement.csv",
        tok,
        &[("month", month)],
    )
    .await;
    assert_eq!(status, 200);
    assert!(ct.starts_with("text/csv"), "{ct}");
    let rows = parse_csv(std::str::from_utf8(&csv).unwrap());
    assert_eq!(
        rows[0],
        [
            "kind",
            "date",
            "description",
            "reference",
            "model",
            "requests",
            "tokens_in",
            "tokens_out",
            "amount_usd"
        ]
    );
    assert!(rows.iter().all(|row| row.len() == 9), "{rows:?}");
    let first = &rows[1];
    let last = rows.last().unwrap();
    assert_eq!(first[0], "opening_balance");
    assert_eq!(last[0], "closing_balance");
    assert_eq!(nanos(&first[8]), s.opening_nano);
    assert_eq!(nanos(&last[8]), s.closing_nano);
    let activity = &rows[2..rows.len() - 1];
    assert_eq!(activity.len(), s.credits.len() + s.usage.len());
    let sum: i64 = activity.iter().map(|row| nanos(&row[8])).sum();
    assert_eq!(
        s.opening_nano + sum,
        s.closing_nano,
        "CSV opening + rows ≠ closing"
    );
    let csv_usage: i64 = activity
        .iter()
        .filter(|row| row[0] == "usage")
        .map(|row| -nanos(&row[8]))
        .sum();
    assert_eq!(csv_usage, s.usage_cost_nano);
    for (row, e) in activity.iter().zip(&s.credits) {
        assert_eq!(row[0], e.kind.as_str());
        assert_eq!(nanos(&row[8]), e.amount_nano);
        assert_eq!(row[2], neutral(e.note.as_deref().unwrap_or("")));
    }

    let (status, ct, pdf) = get_raw(
        r,
        "/api/v1/me/billing/statement.pdf",
        tok,
        &[("month", month)],
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(ct, "application/pdf");
    assert!(pdf.starts_with(b"%PDF"), "not a PDF");
}

async fn statement_suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let (_, at) = admin(&r, "ops@example.com").await;
    let (uid, _) = r
        .customer(
            "stmt@example.com",
            0,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let kid = key_id(&db, uid, "k").await;
    let tok = token_for(&r, uid).await;
    // Someone else's traffic in the same months never shows.
    let (other, _) = r
        .customer(
            "other@example.com",
            0,
            NewKey {
                name: "o".into(),
                ..NewKey::default()
            },
        )
        .await;
    let other_key = key_id(&db, other, "o").await;

    // Ledger entries, dated into December, January, February and March.
    let direct = |kind: EntryKind, amount: i64, reference: &'static str| {
        let db = db.clone();
        async move {
            accounts::apply_entry(
                &db,
                accounts::Entry {
                    user_id: uid,
                    kind,
                    amount_nano: amount,
                    reference: Some(reference),
                    note: Some("seed"),
                    created_by: None,
                    refuse_negative: false,
                },
            )
            .await
            .unwrap()
            .1
        }
    };
    let credit_path = format!("/api/v1/admin/users/{uid}/credit");
    let by_admin = |body: Value| {
        let (r, at, path) = (&r, at.clone(), credit_path.clone());
        async move {
            let (s, v) = api(r, "POST", &path, Some(&at), Some(body)).await;
            assert_eq!(s, 200, "{v}");
            v["entry_id"].as_i64().unwrap()
        }
    };
    let dec_promo = direct(EntryKind::Promo, 2 * NANOS_PER_USD, "welcome").await;
    backdate(&db, dec_promo, ms("2025-12-24T09:00:00Z")).await;
    let jan_topup = direct(EntryKind::Topup, 10 * NANOS_PER_USD, "stripe:cs_jan").await;
    backdate(&db, jan_topup, ms("2026-01-05T10:00:00Z")).await;
    let jan_adj = by_admin(json!({"amount_usd": "0.123456789",
        "reason": "goodwill, ticket \"42\"\nsecond line"}))
    .await;
    backdate(&db, jan_adj, ms("2026-01-20T12:00:00Z")).await;
    let feb_refund =
        by_admin(json!({"amount_usd": "-1.5", "reason": "=refund unused", "kind": "refund"})).await;
    backdate(&db, feb_refund, ms("2026-02-03T08:00:00Z")).await;
    let feb_promo =
        by_admin(json!({"amount_usd": "0.000000007", "reason": "promo", "kind": "promo"})).await;
    backdate(&db, feb_promo, ms("2026-02-14T00:00:00Z")).await;
    let mar_adj = by_admin(json!({"amount_usd": "1", "reason": "march"})).await;
    backdate(&db, mar_adj, ms("2026-03-02T00:00:00Z")).await;

    // Usage: one batch straddling the January/February boundary, then more.
    let jan_edge = ms("2026-01-31T23:59:59.900Z");
    let feb_edge = ms("2026-02-01T00:00:00.100Z");
    assert_eq!(
        feb_edge - jan_edge,
        200,
        "the boundary is at 2026-02-01T00:00:00Z"
    );
    let straddle = vec![
        rec(
            "r1",
            uid,
            kid,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            6_750,
            ms("2026-01-15T10:00:00Z"),
        ),
        rec(
            "r2",
            uid,
            kid,
            "mock/smart-1",
            Some("mock/smart-1"),
            200,
            1_234_567,
            jan_edge,
        ),
        rec(
            "r3",
            uid,
            kid,
            "tokengate-fast",
            Some("mock/fast-1"),
            502,
            0,
            jan_edge + 50,
        ),
        rec(
            "r4",
            uid,
            kid,
            "tokengate-fast",
            Some("mock/fast-1"),
            200,
            7_777,
            feb_edge,
        ),
        rec(
            "r5",
            uid,
            kid,
            "mock/coder-1",
            Some("mock/coder-1"),
            499,
            333,
            feb_edge + 100,
        ),
        rec(
            "o1",
            other,
            other_key,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            50_000,
            jan_edge,
        ),
        rec(
            "o2",
            other,
            other_key,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            60_000,
            feb_edge,
        ),
    ];
    let later = vec![
        rec(
            "r6",
            uid,
            kid,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            999_999_999,
            ms("2026-02-10T00:00:00Z"),
        ),
        rec(
            "r7",
            uid,
            kid,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            0,
            ms("2026-02-11T00:00:00Z"),
        ),
        rec(
            "r8",
            uid,
            kid,
            "mock/smart-1",
            None,
            429,
            0,
            ms("2026-02-12T00:00:00Z"),
        ),
        rec(
            "r9",
            uid,
            kid,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            999,
            ms("2026-03-01T00:00:00Z"),
        ),
        rec(
            "r0",
            uid,
            kid,
            "mock/fast-1",
            Some("mock/fast-1"),
            200,
            1,
            ms("2025-12-31T23:59:59.999Z"),
        ),
    ];
    usage::write_batch(&db, &straddle).await.unwrap();
    usage::write_batch(&db, &later).await.unwrap();
    ledger_ok(&db).await;

    let mut all: Vec<RequestRecord> = straddle.clone();
    all.extend(later.clone());
    let mine: Vec<&RequestRecord> = all.iter().filter(|x| x.user_id == uid).collect();
    let month_of = |m: &str| {
        let m = Month::parse(m).unwrap();
        move |x: &&&RequestRecord| x.created_at >= m.start_ms() && x.created_at < m.end_ms()
    };
    let cost_in = |m: &str| -> i64 { mine.iter().filter(month_of(m)).map(|x| x.cost_nano).sum() };
    let billed_in = |m: &str| -> i64 {
        mine.iter()
            .filter(month_of(m))
            .filter(|x| x.cost_nano != 0 || (200..300).contains(&x.status))
            .count() as i64
    };

    let stmt = |m: &'static str| {
        let db = db.clone();
        async move {
            statements::monthly(&db, uid, Month::parse(m).unwrap())
                .await
                .unwrap()
        }
    };
    let dec = stmt("2025-12").await;
    let jan = stmt("2026-01").await;
    let feb = stmt("2026-02").await;
    let mar = stmt("2026-03").await;

    assert_eq!(dec.opening_nano, 0);
    assert_eq!(dec.closing_nano, 2 * NANOS_PER_USD - 1);
    let jan_usage: i64 = cost_in("2026-01");
    assert_eq!(jan_usage, 6_750 + 1_234_567);
    assert_eq!(jan.opening_nano, dec.closing_nano);
    assert_eq!(jan.topups_nano, 10 * NANOS_PER_USD);
    assert_eq!(jan.adjustments_nano, 123_456_789);
    assert_eq!(jan.usage_cost_nano, jan_usage);
    assert_eq!(jan.usage_requests, billed_in("2026-01"));
    assert_eq!(jan.usage_requests, 2);
    assert_eq!(
        jan.usage
            .iter()
            .map(|u| (u.model.as_str(), u.requests, u.cost_nano))
            .collect::<Vec<_>>(),
        [("mock/fast-1", 1, 6_750), ("mock/smart-1", 1, 1_234_567)]
    );
    assert_eq!(
        jan.closing_nano,
        2 * NANOS_PER_USD - 1 + 10 * NANOS_PER_USD + 123_456_789 - jan_usage
    );
    assert_eq!(
        feb.opening_nano, jan.closing_nano,
        "Jan closing = Feb opening"
    );
    let feb_usage: i64 = cost_in("2026-02");
    assert_eq!(feb_usage, 7_777 + 333 + 999_999_999);
    assert_eq!(feb.topups_nano, 0);
    assert_eq!(feb.adjustments_nano, -1_500_000_000 + 7);
    assert_eq!(feb.usage_cost_nano, feb_usage);
    assert_eq!(feb.usage_requests, billed_in("2026-02"));
    assert_eq!(
        feb.usage_requests, 4,
        "r4, r5 (charged 499), r6, r7 (free 200)"
    );
    assert_eq!(
        feb.closing_nano,
        jan.closing_nano - 1_500_000_000 + 7 - feb_usage
    );
    assert_eq!(mar.opening_nano, feb.closing_nano);
    assert_eq!(mar.closing_nano, balance(&db, uid).await);
    assert_eq!(
        [&dec, &jan, &feb, &mar]
            .iter()
            .map(|s| s.closing_nano - s.opening_nano)
            .sum::<i64>(),
        balance(&db, uid).await
    );
    for s in [&dec, &jan, &feb, &mar] {
        check_statement(&r, &tok, s).await;
    }
    // The JSON statement of another account's month is its own.
    let otok = token_for(&r, other).await;
    let (s, v) = api(
        &r,
        "GET",
        "/api/v1/me/billing/statement?month=2026-01",
        Some(&otok),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["usage_nano"], 50_000);
    assert_eq!(v["usage_requests"], 1);

    // The January CSV quotes the admin's reason (comma, quote, newline) per RFC 4180.
    let (_, _, csv) = get_raw(
        &r,
        "/api/v1/me/billing/statement.csv",
        &tok,
        &[("month", "2026-01")],
    )
    .await;
    let text = String::from_utf8(csv).unwrap();
    assert!(
        text.contains("\"goodwill, ticket \"\"42\"\"\nsecond line\""),
        "{text}"
    );
    let (_, _, csv) = get_raw(
        &r,
        "/api/v1/me/billing/statement.csv",
        &tok,
        &[("month", "2026-02")],
    )
    .await;
    let text = String::from_utf8(csv).unwrap();
    assert!(text.contains(",'=refund unused,"), "neutralised: {text}");

    // Bad months.
    for bad in ["2026-13", "2026-1", "january"] {
        let (s, v) = api(
            &r,
            "GET",
            &format!("/api/v1/me/billing/statement?month={bad}"),
            Some(&tok),
            None,
        )
        .await;
        assert_eq!(s, 422, "{bad}: {v}");
    }
    let (s, _) = api(&r, "GET", "/api/v1/me/billing/statement", None, None).await;
    assert_eq!(s, 401);
    r.stop().await;
}

#[tokio::test]
async fn statements_reconcile_across_months_on_sqlite() {
    statement_suite(None).await;
}

#[tokio::test]
async fn statements_reconcile_across_months_on_postgres() {
    on_postgres(statement_suite).await;
}

// ----- 7. request-log listing and export --------------------------------------------------

const LOG_HEADER: [&str; 14] = [
    "created_at",
    "request_id",
    "key_id",
    "key_name",
    "endpoint",
    "model",
    "served_model",
    "provider",
    "status",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "latency_ms",
    "error",
];

async fn export(r: &Running, tok: &str, query: &[(&str, &str)]) -> (String, Vec<Vec<String>>) {
    let (s, ct, body) = get_raw(r, "/api/v1/me/request-logs.csv", tok, query).await;
    let text = String::from_utf8(body).unwrap();
    assert_eq!(s, 200, "{query:?}: {text}");
    assert!(ct.starts_with("text/csv"), "{ct}");
    let rows = parse_csv(&text);
    assert_eq!(rows[0], LOG_HEADER);
    (text, rows[1..].to_vec())
}

/// Every page of the JSON listing: the request ids in order, checking the cursor.
async fn listing(r: &Running, tok: &str, query: &[(&str, &str)], limit: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut before: Option<i64> = None;
    let mut last_id = i64::MAX;
    let limit_s = limit.to_string();
    loop {
        let mut q: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        q.push(("limit", limit_s.clone()));
        if let Some(b) = before {
            q.push(("before", b.to_string()));
        }
        let resp = client()
            .get(format!("{}/api/v1/me/request-logs", r.base))
            .bearer_auth(tok)
            .query(&q)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let v: Value = resp.json().await.unwrap();
        let data = v["data"].as_array().unwrap();
        assert!(data.len() <= limit);
        for row in data {
            let id = row["id"].as_i64().unwrap();
            assert!(id < last_id, "ids must fall strictly: {id} after {last_id}");
            last_id = id;
            out.push(row["request_id"].as_str().unwrap().to_string());
        }
        match v["next_before"].as_i64() {
            Some(n) => {
                assert_eq!(data.len(), limit, "a cursor only after a full page");
                assert_eq!(n, last_id);
                before = Some(n);
            }
            None => {
                assert!(data.len() < limit, "a full page must offer a cursor");
                return out;
            }
        }
    }
}

async fn logs_suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let secret = r.server_state.config.secret_bytes();
    let (a, _) = r
        .customer(
            "logs-a@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "plain".into(),
                ..NewKey::default()
            },
        )
        .await;
    let evil_name = "=cmd|' /C calc'!A0";
    let quote_name = "ops, \"prod\" key";
    let (evil, _) = keys::create(
        &db,
        &secret,
        a,
        &NewKey {
            name: evil_name.into(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let (quoted, _) = keys::create(
        &db,
        &secret,
        a,
        &NewKey {
            name: quote_name.into(),
            ..NewKey::default()
        },
    )
    .await
    .unwrap();
    let plain = key_id(&db, a, "plain").await;
    let (b, _) = r
        .customer(
            "logs-b@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "b".into(),
                ..NewKey::default()
            },
        )
        .await;
    let bkey = key_id(&db, b, "b").await;
    let ta = token_for(&r, a).await;
    let tb = token_for(&r, b).await;

    let start_ms = ms("2026-03-01T00:00:00Z");
    let keys_a = [plain, evil.id, quoted.id];
    let a_rows: Vec<RequestRecord> = (0..5000_i64)
        .map(|i| {
            let (model, served) = match i % 4 {
                0 => ("mock/fast-1", "mock/fast-1"),
                1 => ("mock/smart-1", "mock/smart-1"),
                2 => ("tokengate-fast", "mock/fast-1"),
                _ => ("mock/coder-1", "mock/coder-1"),
            };
            let status = match i % 10 {
                7 => 502,
                9 => 429,
                _ => 200,
            };
            let cost = if status == 200 { 1_000 + i } else { 0 };
            rec(
                &format!("req_a_{i:05}"),
                a,
                keys_a[(i % 3) as usize],
                model,
                Some(served),
                status,
                cost,
                start_ms + i * 60_000,
            )
        })
        .collect();
    let b_rows: Vec<RequestRecord> = (0..300_i64)
        .map(|i| {
            rec(
                &format!("req_b_{i:05}"),
                b,
                bkey,
                "mock/fast-1",
                Some("mock/fast-1"),
                200,
                7,
                start_ms + i * 60_000,
            )
        })
        .collect();
    // Interleaved batches, so the other account's ids sit between this one's.
    for (i, chunk) in a_rows.chunks(1000).enumerate() {
        usage::write_batch(&db, chunk).await.unwrap();
        usage::write_batch(&db, &b_rows[i * 60..(i + 1) * 60])
            .await
            .unwrap();
    }

    // The whole export: header + 5,000 rows, newest first, only this account's.
    let (text, rows) = export(&r, &ta, &[]).await;
    assert_eq!(rows.len(), 5000);
    assert!(rows.iter().all(|row| row.len() == LOG_HEADER.len()));
    assert!(!text.contains("req_b_"));
    assert_eq!(rows[0][1], "req_a_04999");
    assert_eq!(rows[4999][1], "req_a_00000");
    let by_id: HashMap<&str, &RequestRecord> =
        a_rows.iter().map(|x| (x.request_id.as_str(), x)).collect();
    let names: HashMap<i64, &str> = HashMap::from([
        (plain, "plain"),
        (evil.id, evil_name),
        (quoted.id, quote_name),
    ]);
    let mut seen = BTreeSet::new();
    let mut total = 0;
    for row in &rows {
        let x = by_id[row[1].as_str()];
        assert!(seen.insert(row[1].clone()), "duplicate row {}", row[1]);
        assert_eq!(ms(&row[0]), x.created_at);
        assert_eq!(row[2], x.key_id.to_string());
        let name = names[&x.key_id];
        let shown = if x.key_id == evil.id {
            format!("'{name}")
        } else {
            name.to_string()
        };
        assert_eq!(row[3], shown);
        assert_eq!(row[5], x.model);
        assert_eq!(row[8], x.status.to_string());
        assert_eq!(nanos(&row[11]), x.cost_nano);
        let err = if x.status == 200 {
            ""
        } else {
            "'=1+1 upstream, failed"
        };
        assert_eq!(row[13], err);
        total += nanos(&row[11]);
    }
    assert_eq!(total, a_rows.iter().map(|x| x.cost_nano).sum::<i64>());
    // Raw text: the formula is neutralised, the comma-and-quote name RFC 4180-quoted.
    assert!(
        text.contains(",'=cmd|' /C calc'!A0,"),
        "neutralised key name"
    );
    assert!(!text.contains(",=cmd"));
    assert!(
        text.contains(",\"ops, \"\"prod\"\" key\","),
        "quoted key name"
    );
    assert!(text.contains(",\"'=1+1 upstream, failed\"\r\n"));

    // Filters, in the export and in the JSON listing.
    let count = |pred: &dyn Fn(&RequestRecord) -> bool| a_rows.iter().filter(|x| pred(x)).count();
    let evil_s = evil.id.to_string();
    let quoted_s = quoted.id.to_string();
    let bkey_s = bkey.to_string();
    let day2 = (ms("2026-03-02T00:00:00Z"), ms("2026-03-03T00:00:00Z"));
    let hour = (ms("2026-03-01T12:00:00Z"), ms("2026-03-01T13:00:00Z"));
    let cases: Vec<(Vec<(&str, &str)>, usize)> = vec![
        (
            vec![("model", "mock/fast-1")],
            count(&|x| x.served_model.as_deref() == Some("mock/fast-1")),
        ),
        (
            vec![("model", "tokengate-fast")],
            count(&|x| x.model == "tokengate-fast"),
        ),
        (vec![("model", "nope/none")], 0),
        (vec![("status", "2xx")], count(&|x| x.status == 200)),
        (vec![("status", "error")], count(&|x| x.status != 200)),
        (vec![("status", "429")], count(&|x| x.status == 429)),
        (vec![("status", "5xx")], count(&|x| x.status == 502)),
        (
            vec![("key_id", &quoted_s)],
            count(&|x| x.key_id == quoted.id),
        ),
        (vec![("key_id", &bkey_s)], 0),
        (
            vec![("from", "2026-03-02"), ("to", "2026-03-02")],
            count(&|x| x.created_at >= day2.0 && x.created_at < day2.1),
        ),
        (
            vec![
                ("from", "2026-03-01T12:00:00Z"),
                ("to", "2026-03-01T13:00:00Z"),
            ],
            count(&|x| x.created_at >= hour.0 && x.created_at < hour.1),
        ),
        (
            vec![
                ("from", "2026-03-01T14:00:00+02:00"),
                ("to", "2026-03-01T13:00:00Z"),
            ],
            count(&|x| x.created_at >= hour.0 && x.created_at < hour.1),
        ),
        (
            vec![
                ("key_id", &evil_s),
                ("status", "error"),
                ("model", "mock/coder-1"),
                ("from", "2026-03-02"),
            ],
            count(&|x| {
                x.key_id == evil.id
                    && x.status != 200
                    && x.model == "mock/coder-1"
                    && x.created_at >= day2.0
            }),
        ),
    ];
    for (query, want) in &cases {
        assert!(*want > 0 || query.iter().any(|(_, v)| *v == "nope/none" || *v == bkey_s));
        let (_, rows) = export(&r, &ta, query).await;
        assert_eq!(rows.len(), *want, "{query:?}");
        let listed = listing(&r, &ta, query, 500).await;
        assert_eq!(listed.len(), *want, "{query:?}");
        assert_eq!(
            listed,
            rows.iter().map(|row| row[1].clone()).collect::<Vec<_>>()
        );
    }
    assert_eq!(cases[0].1, 2500);
    assert_eq!(cases[9].1, 1440);
    assert_eq!(cases[10].1, 60);

    // Paging through everything: no duplicates, no gaps, newest first.
    for limit in [500, 333] {
        let listed = listing(&r, &ta, &[], limit).await;
        assert_eq!(listed.len(), 5000);
        let expected: Vec<String> = (0..5000).rev().map(|i| format!("req_a_{i:05}")).collect();
        assert_eq!(listed, expected);
    }

    // The other account sees only its own.
    let (text, rows) = export(&r, &tb, &[]).await;
    assert_eq!(rows.len(), 300);
    assert!(!text.contains("req_a_"));
    let (s, v) = api(
        &r,
        "GET",
        "/api/v1/me/request-logs/req_b_00001",
        Some(&ta),
        None,
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, v) = api(
        &r,
        "GET",
        "/api/v1/me/request-logs/req_b_00001",
        Some(&tb),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key_name"], "b");
    let (s, v) = api(
        &r,
        "GET",
        "/api/v1/me/request-logs/req_a_00001",
        Some(&ta),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["key_name"], evil_name, "JSON shows the name as it is");

    // Bad parameters: 422.
    for bad in [
        ("limit", "0"),
        ("limit", "501"),
        ("status", "abc"),
        ("status", "6xx"),
        ("from", "yesterday"),
        ("key_id", "x"),
        ("before", "x"),
    ] {
        let (s, _, body) = get_raw(&r, "/api/v1/me/request-logs", &ta, &[bad]).await;
        assert_eq!(s, 422, "{bad:?}: {}", String::from_utf8_lossy(&body));
    }
    let (s, _, _) = get_raw(&r, "/api/v1/me/request-logs.csv", &ta, &[("status", "abc")]).await;
    assert_eq!(s, 422);
    let (s, _) = api(&r, "GET", "/api/v1/me/request-logs.csv", None, None).await;
    assert_eq!(s, 401);
    r.stop().await;
}

#[tokio::test]
async fn request_log_export_on_sqlite() {
    logs_suite(None).await;
}

#[tokio::test]
async fn request_log_export_on_postgres() {
    on_postgres(logs_suite).await;
}

// ----- 8. typed answers (tokengate_api::billing) -------------------------------------------

/// A 200 answer read as the API type `T`; an answer that does not fit `T` fails the test.
async fn typed<T: serde::de::DeserializeOwned>(r: &Running, path: &str, tok: &str) -> (T, Value) {
    let (s, v) = api(r, "GET", path, Some(tok), None).await;
    assert_eq!(s, 200, "{path}: {v}");
    let t = serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{path} is no {e}: {v}"));
    (t, v)
}

on_both!(
    billing_answers_are_the_typed_shapes,
    billing_answers_are_the_typed_shapes_on_sqlite,
    billing_answers_are_the_typed_shapes_on_postgres
);

/// Payments, the webhook's acknowledgement, the statement and the request log read as the
/// `tokengate_api::billing` types; money is exact and every time RFC 3339 (a payment's
/// `expires_at` was unix seconds).
async fn billing_answers_are_the_typed_shapes(database_url: Option<String>) {
    use tokengate_api::billing::{
        PaymentView, RequestLog, RequestLogPage, StatementView, WebhookAck, WebhookResult,
    };
    use tokengate_api::kinds::{EntryKind as Kind, PaymentStatus as Status};
    use tokengate_api::{Timestamp, Usd};

    let r = start(
        database_url,
        &[
            ("TOKENGATE_STRIPE_SECRET_KEY", "sk_test_x"),
            ("TOKENGATE_STRIPE_WEBHOOK_SECRET", WHSEC),
        ],
    )
    .await;
    let db = r.server_state.db.clone();
    let (uid, key) = r
        .customer(
            "typed-billing@example.com",
            0,
            NewKey {
                name: "typed".into(),
                ..NewKey::default()
            },
        )
        .await;
    let tok = token_for(&r, uid).await;

    pending(&db, uid, "cs_typed", 12_500_000_000).await;
    let stored = payment(&db, uid, "cs_typed").await.unwrap();
    let (list, raw): (Vec<PaymentView>, Value) =
        typed(&r, "/api/v1/me/billing/payments", &tok).await;
    let p = &list[0];
    assert_eq!((p.id, p.status), (stored.id, Status::Pending));
    assert_eq!(p.amount_usd, Usd(12_500_000_000));
    assert_eq!(raw[0]["amount_usd"], "12.50");
    let secs = stored.expires_at.unwrap();
    assert_eq!(p.expires_at, Some(Timestamp(secs * 1000)));
    assert_eq!(raw[0]["expires_at"], Timestamp(secs * 1000).rfc3339());
    assert!(
        raw[0]["expires_at"].as_str().unwrap().ends_with('Z'),
        "{raw}"
    );
    assert!(p.checkout_url.is_some() && p.receipt_url.is_none() && p.paid_at.is_none());

    let (s, v) = deliver_signed(&r.base, &paid("evt_typed", "cs_typed", uid, 1250)).await;
    assert_eq!(s, 200, "{v}");
    let ack: WebhookAck = serde_json::from_value(v).unwrap();
    assert_eq!(
        (ack.event.as_str(), ack.result),
        ("evt_typed", WebhookResult::Credited)
    );
    let (list, _): (Vec<PaymentView>, Value) = typed(&r, "/api/v1/me/billing/payments", &tok).await;
    assert_eq!(list[0].status, Status::Paid);
    assert!(list[0].paid_at.is_some() && list[0].checkout_url.is_none());
    assert_eq!(
        list[0].receipt_url.as_deref(),
        Some(format!("/api/v1/me/billing/payments/{}/receipt.pdf", stored.id).as_str())
    );

    // One request: a cost of a fraction of a cent, written exactly everywhere.
    let (s, v) = chat_raw(&client(), &r.base, &key, &small_body("mock/fast-1", 8)).await;
    assert_eq!(s, 200, "{v}");
    wait_for_logs(&r, uid, 1).await;
    settled(&r, uid).await;

    let (page, _): (RequestLogPage, Value) = typed(&r, "/api/v1/me/request-logs", &tok).await;
    assert_eq!(page.data.len(), 1);
    assert_eq!(page.next_before, None);
    let row = &page.data[0];
    assert_eq!(row.key_name.as_deref(), Some("typed"));
    assert!(row.cost_nano > 0 && row.error_type.is_none());
    assert_eq!(row.cost_usd, Usd(row.cost_nano));
    let (one, _): (RequestLog, Value) = typed(
        &r,
        &format!("/api/v1/me/request-logs/{}", row.request_id),
        &tok,
    )
    .await;
    assert_eq!(&one, row);

    let (st, raw): (StatementView, Value) = typed(&r, "/api/v1/me/billing/statement", &tok).await;
    assert_eq!(st.account.id, uid);
    assert_eq!(st.topups_usd, Usd(12_500_000_000));
    assert_eq!(st.usage_nano, row.cost_nano);
    assert_eq!(st.usage_usd, Usd(row.cost_nano));
    assert_eq!(
        st.closing_balance_usd,
        Usd(12_500_000_000 - row.cost_nano),
        "exact, not rounded"
    );
    assert!(st.reconciled);
    assert_eq!(st.credits.len(), 1);
    assert_eq!(st.credits[0].kind, Kind::Topup);
    assert_eq!(st.usage_by_model.len(), 1);
    assert_eq!(st.usage_by_model[0].cost_usd, Usd(row.cost_nano));
    assert!(st.period_start < st.period_end);
    assert!(
        raw["period_start"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00Z"),
        "{raw}"
    );
    r.stop().await;
}

on_both!(
    log_query_integers_are_integers,
    log_query_integers_are_integers_on_sqlite,
    log_query_integers_are_integers_on_postgres
);

/// The request-log query as documented: `key_id`, `limit` and `before` are integers (a
/// value that is none is a 422 naming the field, on the listing and the export alike), an
/// empty value is no filter, and a repeated parameter is a 400 in the API's shape.
async fn log_query_integers_are_integers(database_url: Option<String>) {
    use tokengate_api::billing::RequestLogPage;

    let r = start(database_url, &[]).await;
    let (uid, _) = r
        .customer(
            "typed-query@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "q".into(),
                ..NewKey::default()
            },
        )
        .await;
    let tok = token_for(&r, uid).await;
    for path in ["/api/v1/me/request-logs", "/api/v1/me/request-logs.csv"] {
        for (field, bad) in [("key_id", "x"), ("key_id", "1.5"), ("before", "7e3")] {
            let (s, _, body) = get_raw(&r, path, &tok, &[(field, bad)]).await;
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(s, 422, "{path} {field}={bad}: {v}");
            assert_api_error(&v, "validation_error");
            assert!(
                v["error"]["message"].as_str().unwrap().starts_with(field),
                "{v}"
            );
        }
        let (s, _, body) = get_raw(&r, path, &tok, &[("key_id", "1"), ("key_id", "2")]).await;
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(s, 400, "{path}: {v}");
        assert_api_error(&v, "invalid_request");
        let (s, _, _) = get_raw(&r, path, &tok, &[("key_id", ""), ("before", "")]).await;
        assert_eq!(s, 200, "{path}: an empty value is no filter");
    }
    for (limit, want) in [
        ("1.5", 422),
        ("0", 422),
        ("501", 422),
        ("500", 200),
        ("", 200),
    ] {
        let (s, _, body) = get_raw(&r, "/api/v1/me/request-logs", &tok, &[("limit", limit)]).await;
        assert_eq!(s, want, "limit={limit}: {}", String::from_utf8_lossy(&body));
        if s == 200 {
            let page: RequestLogPage = serde_json::from_slice(&body).unwrap();
            assert!(page.data.is_empty() && page.next_before.is_none());
        }
    }
    r.stop().await;
}
