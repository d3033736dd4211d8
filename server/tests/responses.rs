//! `/v1/responses` end to end on SQLite and PostgreSQL, served by the mock provider
//! (translated to Chat Completions): the Response object and its usage, billing equal to
//! the upstream's usage in the request log and the balance, the request log's endpoint,
//! streams ending in one terminal event and stored, `store` / `previous_response_id`
//! (history rebuilt, pinned to the serving provider), retrieve / delete / input_items,
//! another account's id and a `store: false` id answering 404 in OpenAI's shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, client, start, wait_for_logs};
use serde_json::{Value, json};
use tokengate_core::accounts;
use tokengate_core::keys::NewKey;
use tokengate_core::money::{NANOS_PER_USD, Prices, Usage};

fn key_named() -> NewKey {
    NewKey {
        name: "k".into(),
        ..NewKey::default()
    }
}

const PRICES: Prices = Prices {
    input_per_m: 1_000_000_000,
    output_per_m: 2_000_000_000,
    cache_read_per_m: None,
    cache_write_per_m: None,
};

async fn create(base: &str, key: &str, body: Value) -> (u16, Value) {
    let r = client()
        .post(format!("{base}/v1/responses"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn get(base: &str, key: &str, path: &str) -> (u16, Value) {
    let r = client()
        .get(format!("{base}/v1/responses/{path}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn delete(base: &str, key: &str, id: &str) -> (u16, Value) {
    let r = client()
        .delete(format!("{base}/v1/responses/{id}"))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn output_text(resp: &Value) -> String {
    resp["output"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == "message")
        .flat_map(|i| i["content"].as_array().unwrap().iter())
        .filter_map(|p| p["text"].as_str())
        .collect()
}

/// The usage a Response reports, as the gateway bills it.
fn usage_of(resp: &Value) -> Usage {
    let u = &resp["usage"];
    for k in [
        "input_tokens",
        "output_tokens",
        "total_tokens",
        "input_tokens_details",
        "output_tokens_details",
    ] {
        assert!(!u[k].is_null(), "usage.{k} missing: {u}");
    }
    let cached = u["input_tokens_details"]["cached_tokens"].as_i64().unwrap();
    Usage {
        input: u["input_tokens"].as_i64().unwrap() - cached,
        output: u["output_tokens"].as_i64().unwrap(),
        cache_read: cached,
        cache_write: 0,
    }
}

async fn suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let base = r.base.clone();
    r.model("mock/resp-1", "mock", PRICES, 500).await;
    let (alice, key) = r
        .customer("alice@example.com", NANOS_PER_USD, key_named())
        .await;
    let (_bob, bob_key) = r
        .customer("bob@example.com", NANOS_PER_USD, key_named())
        .await;

    // A plain response: the Response object, billed exactly its usage.
    let (s, first) = create(
        &base,
        &key,
        json!({"model": "mock/resp-1", "input": "Tell me about otters",
               "instructions": "Be brief.", "metadata": {"k": "v"}}),
    )
    .await;
    assert_eq!(s, 200, "{first}");
    let id = first["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("resp_"), "{id}");
    assert_eq!(first["object"], "response");
    assert_eq!(first["status"], "completed");
    assert_eq!(first["model"], "mock/resp-1");
    assert_eq!(first["store"], true);
    assert_eq!(first["metadata"]["k"], "v");
    assert!(output_text(&first).contains("otters"), "{first}");
    let u1 = usage_of(&first);
    assert!(u1.input > 0 && u1.output > 0, "{first}");

    let logs = wait_for_logs(&r, alice, 1).await;
    let log = &logs[0];
    assert_eq!(log.endpoint, "/v1/responses");
    assert_eq!(log.status, 200);
    assert_eq!(log.provider.as_deref(), Some("mock"));
    assert_eq!(
        (log.tokens_in, log.tokens_out),
        (u1.total_input(), u1.output)
    );
    assert_eq!(log.cost_nano, PRICES.cost(&u1));

    // Stored: retrieved as answered, its input items listed.
    let (s, got) = get(&base, &key, &id).await;
    assert_eq!(s, 200);
    assert_eq!(got, first);
    let (s, items) = get(&base, &key, &format!("{id}/input_items")).await;
    assert_eq!(s, 200, "{items}");
    assert_eq!(items["object"], "list");
    assert_eq!(items["has_more"], false);
    let data = items["data"].as_array().unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[0]["role"], "user");
    assert_eq!(data[0]["content"][0]["text"], "Tell me about otters");
    assert_eq!(items["first_id"], data[0]["id"]);

    // Another account's id is a 404 like an unknown one (get, items, delete, continue).
    for path in [id.clone(), format!("{id}/input_items"), "resp_nope".into()] {
        let (s, v) = get(&base, &bob_key, &path).await;
        assert_eq!(s, 404, "{path}: {v}");
        assert_error(&v, "invalid_request_error", "not_found");
    }
    let (s, _) = delete(&base, &bob_key, &id).await;
    assert_eq!(s, 404);
    let (s, v) = create(
        &base,
        &bob_key,
        json!({"model": "mock/resp-1", "input": "go on", "previous_response_id": id}),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    assert_error(&v, "invalid_request_error", "not_found");

    // A continuation carries the stored history: the upstream sees the earlier turns
    // (more prompt tokens than the new input alone), and is billed on them.
    let (s, second) = create(
        &base,
        &key,
        json!({"model": "mock/resp-1", "input": [{"role": "user", "content": "And beavers?"}],
               "previous_response_id": id, "stream": false}),
    )
    .await;
    assert_eq!(s, 200, "{second}");
    assert_eq!(second["previous_response_id"], id.as_str());
    let (s, alone) = create(
        &base,
        &key,
        json!({"model": "mock/resp-1", "input": [{"role": "user", "content": "And beavers?"}],
               "store": false}),
    )
    .await;
    assert_eq!(s, 200, "{alone}");
    assert!(
        usage_of(&second).input > usage_of(&alone).input,
        "history not sent: {second} vs {alone}"
    );

    // store: false keeps nothing but the request-log row: continuing it is a 404.
    let alone_id = alone["id"].as_str().unwrap();
    assert_eq!(alone["store"], false);
    let (s, _) = get(&base, &key, alone_id).await;
    assert_eq!(s, 404);
    let (s, v) = create(
        &base,
        &key,
        json!({"model": "mock/resp-1", "input": "more", "previous_response_id": alone_id}),
    )
    .await;
    assert_eq!(s, 404, "{v}");

    // A continuation is pinned to the provider that served the previous response.
    r.provider("other", "mock", None, json!({})).await;
    r.model("other/resp-1", "other", PRICES, 500).await;
    let (s, v) = create(
        &base,
        &key,
        json!({"model": "other/resp-1", "input": "more", "previous_response_id": id}),
    )
    .await;
    assert_eq!(s, 400, "{v}");
    assert_eq!(v["error"]["param"], "previous_response_id");

    // A stream: Responses events in order, one terminal event, then stored.
    let resp = client()
        .post(format!("{base}/v1/responses"))
        .bearer_auth(&key)
        .json(&json!({"model": "mock/resp-1", "input": "Stream about otters", "stream": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let text = resp.text().await.unwrap();
    assert!(!text.contains("[DONE]"));
    let events: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types[0], "response.created", "{types:?}");
    assert_eq!(types[1], "response.in_progress", "{types:?}");
    assert!(types.contains(&"response.output_text.delta"), "{types:?}");
    assert_eq!(*types.last().unwrap(), "response.completed", "{types:?}");
    let terminals = types
        .iter()
        .filter(|t| {
            matches!(
                **t,
                "response.completed" | "response.failed" | "response.incomplete"
            )
        })
        .count();
    assert_eq!(terminals, 1);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["sequence_number"], i as u64);
    }
    let done = &events.last().unwrap()["response"];
    let streamed_id = done["id"].as_str().unwrap();
    let us = usage_of(done);
    // Stored before the terminal event was sent.
    let (s, got) = get(&base, &key, streamed_id).await;
    assert_eq!(s, 200);
    assert_eq!(got["status"], "completed");
    assert_eq!(got["output"], done["output"]);

    // Every request is logged as /v1/responses and billed exactly its reported usage; the
    // balance moved by exactly the logged costs.
    let logs = wait_for_logs(&r, alice, 4).await;
    let ok: Vec<_> = logs.iter().filter(|l| l.status == 200).collect();
    assert_eq!(ok.len(), 4, "{logs:?}");
    assert!(logs.iter().all(|l| l.endpoint == "/v1/responses"));
    let stream_log = ok.iter().find(|l| l.stream).unwrap();
    assert_eq!(
        (
            stream_log.tokens_in,
            stream_log.tokens_out,
            stream_log.cost_nano
        ),
        (us.total_input(), us.output, PRICES.cost(&us))
    );
    let user = accounts::get_user(&r.server_state.db, alice).await.unwrap();
    assert_eq!(
        user.balance_nano,
        NANOS_PER_USD - logs.iter().map(|l| l.cost_nano).sum::<i64>()
    );

    // Delete: then gone for retrieval and continuation.
    let (s, v) = delete(&base, &key, &id).await;
    assert_eq!(s, 200);
    assert_eq!(v, json!({"id": id, "object": "response", "deleted": true}));
    let (s, _) = get(&base, &key, &id).await;
    assert_eq!(s, 404);
    let (s, _) = delete(&base, &key, &id).await;
    assert_eq!(s, 404);

    // Errors before the stream use OpenAI's shape.
    let (s, v) = create(&base, &key, json!({"model": "mock/resp-1"})).await;
    assert_eq!(s, 400);
    assert_error(&v, "invalid_request_error", "invalid_request");
    let (s, v) = create(&base, &key, json!({"model": "nope", "input": "x"})).await;
    assert_eq!(s, 404);
    assert_error(&v, "invalid_request_error", "model_not_found");
    let (_poor, poor_key) = r.customer("poor@example.com", 0, key_named()).await;
    let (s, v) = create(
        &base,
        &poor_key,
        json!({"model": "mock/resp-1", "input": "x"}),
    )
    .await;
    assert_eq!(s, 402, "{v}");
    assert_eq!(v["error"]["type"], "insufficient_quota");
}

on_both!(suite, responses_on_sqlite, responses_on_postgres);
