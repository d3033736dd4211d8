//! Money under hostile customers (issue 13, findings 1–4), each on SQLite and PostgreSQL:
//! request text that the database cannot store never stops billing (NULs stripped, text
//! capped, a refused row quarantined instead of blocking the batch); `n` choices and a
//! missing output cap are held and sent upstream; a client that disconnects still pays
//! for the work it started; key spend limits are loaded from the database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Running, assert_error, client, start};
use serde_json::{Value, json};
use tokengate_core::keys::NewKey;
use tokengate_core::money::{NANOS_PER_USD, Prices, Usage};
use tokengate_core::usage::{self, RequestRecord};
use tokengate_core::{DbKind, now_ms};

const PRICES: Prices = Prices {
    input_per_m: NANOS_PER_USD,
    output_per_m: 2 * NANOS_PER_USD,
    cache_read_per_m: None,
    cache_write_per_m: None,
};

/// A mock provider `name` with `config`, and a model `<name>/m` on it at [`PRICES`] with
/// `max_out` output tokens.
async fn mock_model(r: &Running, name: &str, config: Value, max_out: i64) -> String {
    let model = format!("{name}/m");
    r.provider(name, "mock", None, config).await;
    r.model(&model, name, PRICES, max_out).await;
    model
}

fn named() -> NewKey {
    NewKey {
        name: "k".into(),
        ..NewKey::default()
    }
}

async fn post(r: &Running, key: &str, path: &str, body: &Value) -> (u16, Value) {
    let resp = client()
        .post(format!("{}{path}", r.base))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn balance(r: &Running, user_id: i64) -> i64 {
    tokengate_core::accounts::get_user(&r.server_state.db, user_id)
        .await
        .unwrap()
        .balance_nano
}

async fn ledger_ok(r: &Running, user_id: i64) {
    let entries: i64 =
        tokengate_core::accounts::ledger_entries(&r.server_state.db, user_id, None, 10_000)
            .await
            .unwrap()
            .iter()
            .map(|e| e.amount_nano)
            .sum();
    assert_eq!(
        entries,
        balance(r, user_id).await,
        "ledger sums to the balance"
    );
}

// ---------------------------------------------------------------------------------------
// Finding 1: a NUL in request text (reproduced on PostgreSQL) must not stop billing

on_both!(
    unstorable_text_never_blocks_billing,
    unstorable_text_never_blocks_billing_on_sqlite,
    unstorable_text_never_blocks_billing_on_postgres
);

async fn unstorable_text_never_blocks_billing(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let (user_id, key) = r.customer("nul@example.com", NANOS_PER_USD, named()).await;
    // The reproduction: an Anthropic content block whose type holds a NUL.
    let (status, v) = post(
        &r,
        &key,
        "/v1/messages",
        &json!({"model": "tokengate-fast", "max_tokens": 16, "messages": [
            {"role": "user", "content": [{"type": "\u{0}x"}]}]}),
    )
    .await;
    assert_eq!(status, 400, "{v}");
    // And a megabyte of block type: rejected, and stored at no more than the cap.
    let huge = "y".repeat(1 << 20);
    let (status, _) = post(
        &r,
        &key,
        "/v1/messages",
        &json!({"model": "tokengate-fast", "max_tokens": 16, "messages": [
            {"role": "user", "content": [{"type": huge}]}]}),
    )
    .await;
    assert_eq!(status, 400);
    for i in 0..3 {
        let (status, v) = post(
            &r,
            &key,
            "/v1/chat/completions",
            &json!({"model": "tokengate-fast", "messages": [{"role": "user", "content": format!("hi {i}")}]}),
        )
        .await;
        assert_eq!(status, 200, "{v}");
    }
    let logs = common::wait_for_logs(&r, user_id, 5).await;
    assert_eq!(logs.len(), 5, "every request is logged");
    for l in &logs {
        let text = format!("{l:?}");
        assert!(!text.contains('\u{0}'), "no NUL stored: {text}");
        assert!(
            l.error_message
                .as_ref()
                .is_none_or(|m| m.len() <= usage::MAX_ERROR_TEXT),
            "error text capped"
        );
    }
    let charged: i64 = logs.iter().map(|l| l.cost_nano).sum();
    assert!(charged > 0);
    assert_eq!(logs.iter().filter(|l| l.cost_nano > 0).count(), 3);
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - charged);
    ledger_ok(&r, user_id).await;
    r.stop().await;
}

on_both!(
    refused_row_is_quarantined,
    refused_row_is_quarantined_on_sqlite,
    refused_row_is_quarantined_on_postgres
);

/// A row the database refuses for any reason (a trigger stands in for any constraint the
/// text cleaning cannot foresee) is written without its free text, and the rows around it
/// are written and charged.
async fn refused_row_is_quarantined(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let (user_id, _key) = r
        .customer("poison@example.com", NANOS_PER_USD, named())
        .await;
    let db = &r.server_state.db;
    match db.kind() {
        DbKind::Sqlite => {
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON request_logs \
                 WHEN NEW.error_message LIKE '%poison%' BEGIN SELECT RAISE(ABORT, 'poison'); END",
            )
            .execute(db.pool())
            .await
            .unwrap();
        }
        DbKind::Postgres => {
            sqlx::query(
                "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
                 IF NEW.error_message LIKE '%poison%' THEN RAISE EXCEPTION 'poison'; END IF; \
                 RETURN NEW; END $$ LANGUAGE plpgsql",
            )
            .execute(db.pool())
            .await
            .unwrap();
            sqlx::query(
                "CREATE TRIGGER poison BEFORE INSERT ON request_logs \
                 FOR EACH ROW EXECUTE FUNCTION poison()",
            )
            .execute(db.pool())
            .await
            .unwrap();
        }
    }
    let key_id = tokengate_core::keys::list_for_user(db, user_id)
        .await
        .unwrap()[0]
        .id;
    let meter = &r.server_state.gateway.meter;
    for i in 0..9 {
        meter.record(RequestRecord {
            request_id: format!("req_poison_{i}"),
            user_id,
            key_id,
            endpoint: "/v1/chat/completions".into(),
            model: "mock/fast-1".into(),
            status: 200,
            error_message: (i == 4).then(|| "poison".to_string()),
            cost_nano: 1_000,
            created_at: now_ms(),
            ..RequestRecord::default()
        });
    }
    let logs = common::wait_for_logs(&r, user_id, 9).await;
    assert_eq!(logs.len(), 9);
    let q = logs
        .iter()
        .find(|l| l.request_id == "req_poison_4")
        .unwrap();
    assert!(
        q.error_message.as_ref().unwrap().contains("removed"),
        "{q:?}"
    );
    assert_eq!(q.cost_nano, 1_000, "the quarantined row keeps its charge");
    assert_eq!(balance(&r, user_id).await, NANOS_PER_USD - 9_000);
    assert_eq!(meter.stats().quarantined.load(Ordering::Relaxed), 1);
    ledger_ok(&r, user_id).await;
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Finding 2: `n` choices and a missing output cap

on_both!(
    choices_and_output_cap_are_held,
    choices_and_output_cap_are_held_on_sqlite,
    choices_and_output_cap_are_held_on_postgres
);

async fn choices_and_output_cap_are_held(database_url: Option<String>) {
    let r = start(database_url, &[("TOKENGATE_MAX_CHOICES", "8")]).await;
    let model = mock_model(&r, "capped", json!({}), 1000).await;
    let short = mock_model(&r, "short", json!({}), 5).await;
    // Enough for one choice's worst case (~1000 output tokens at 2000 nano), not for 4.
    let funds = 4_000_000;
    let (user_id, key) = r.customer("n@example.com", funds, named()).await;

    let body =
        |n: i64| json!({"model": model, "n": n, "messages": [{"role": "user", "content": "hi"}]});
    let (status, v) = post(&r, &key, "/v1/chat/completions", &body(9)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["param"], "n");
    let (status, v) = post(&r, &key, "/v1/chat/completions", &body(4)).await;
    assert_eq!(status, 402, "four choices are held at four times one: {v}");
    assert_error(&v, "insufficient_quota", "insufficient_balance");
    let (status, v) = post(&r, &key, "/v1/chat/completions", &body(1)).await;
    assert_eq!(status, 200, "{v}");

    // No max_tokens from the client: the upstream gets the model's cap the hold assumed.
    let (status, v) = post(
        &r,
        &key,
        "/v1/chat/completions",
        &json!({"model": short, "messages": [{"role": "user", "content": "one two three four five six"}]}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"][0]["finish_reason"], "length", "{v}");
    assert_eq!(v["usage"]["completion_tokens"], 5, "{v}");
    common::wait_for_logs(&r, user_id, 2).await;
    ledger_ok(&r, user_id).await;
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Finding 3: leaving early does not make a request free

on_both!(
    disconnecting_still_pays,
    disconnecting_still_pays_on_sqlite,
    disconnecting_still_pays_on_postgres
);

async fn disconnecting_still_pays(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let slow = mock_model(&r, "slowstart", json!({"latency_ms": 700}), 64).await;
    let (user_id, key) = r
        .customer("leaver@example.com", NANOS_PER_USD, named())
        .await;
    for stream in [false, true] {
        let body = json!({"model": slow, "stream": stream,
            "messages": [{"role": "user", "content": "think hard about this"}]});
        let err = client()
            .post(format!("{}/v1/chat/completions", r.base))
            .bearer_auth(&key)
            .timeout(Duration::from_millis(200))
            .json(&body)
            .send()
            .await
            .expect_err("the client gives up first");
        assert!(err.is_timeout(), "{err}");
    }
    let logs = common::wait_for_logs(&r, user_id, 2).await;
    let full = logs.iter().find(|l| !l.stream).unwrap();
    assert_eq!(full.status, 200, "the answer was read to the end: {full:?}");
    assert!(full.tokens_out > 0 && full.cost_nano > 0, "{full:?}");
    assert_eq!(
        full.cost_nano,
        PRICES.cost(&Usage {
            input: full.tokens_in,
            output: full.tokens_out,
            ..Usage::default()
        })
    );
    let cut = logs.iter().find(|l| l.stream).unwrap();
    assert_eq!(cut.status, 499, "{cut:?}");
    assert!(
        cut.tokens_in > 0 && cut.cost_nano > 0,
        "the prompt is billed: {cut:?}"
    );
    assert_eq!(
        balance(&r, user_id).await,
        NANOS_PER_USD - full.cost_nano - cut.cost_nano
    );
    ledger_ok(&r, user_id).await;
    r.stop().await;
}

// ---------------------------------------------------------------------------------------
// Finding 4: key spend limits are loaded, not reset

on_both!(
    key_spend_is_loaded,
    key_spend_is_loaded_on_sqlite,
    key_spend_is_loaded_on_postgres
);

async fn key_spend_is_loaded(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let limit = NANOS_PER_USD / 10;
    let (user_id, key) = r
        .customer(
            "limit@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "limited".into(),
                spend_limit_nano: Some(limit),
                ..NewKey::default()
            },
        )
        .await;
    let body = json!({"model": "tokengate-fast", "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, _) = post(&r, &key, "/v1/chat/completions", &body).await;
    assert_eq!(status, 200);
    // Another instance (or the run before a restart) spent the limit: the database says
    // so, and a refresh — also what a start does — must make this instance see it.
    let db = &r.server_state.db;
    common::wait_for_logs(&r, user_id, 1).await;
    sqlx::query("UPDATE api_keys SET spent_nano = $1 WHERE user_id = $2")
        .bind(limit)
        .bind(user_id)
        .execute(db.pool())
        .await
        .unwrap();
    r.server_state.gateway.refresh().await.unwrap();
    let (status, v) = post(&r, &key, "/v1/chat/completions", &body).await;
    assert_eq!(status, 402, "{v}");
    r.stop().await;
}
