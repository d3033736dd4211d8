//! The admin API against the real router on SQLite and PostgreSQL: access-token auth
//! (401 without, 403 for a non-admin), providers with write-only sealed keys that reach the
//! upstream, models and aliases applied to the running gateway without restart, 409 on
//! deletes that would orphan, key groups, suspension taking effect on the next request,
//! health and the alias dry run, and errors in the account-API shape.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::Json;
use axum::http::HeaderMap;
use axum::routing::post;
use common::{Running, client, on_postgres, start};
use serde_json::{Value, json};
use sqlx::Row;
use tokengate_core::accounts;
use tokengate_core::keys::NewKey;

/// An OpenAI-compatible upstream that records the Authorization header it was sent.
async fn recording_upstream() -> (String, Arc<Mutex<Vec<String>>>) {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(move |headers: HeaderMap, Json(body): Json<Value>| {
            let s = s.clone();
            async move {
                let auth = headers
                    .get("authorization")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                s.lock().unwrap().push(auth.to_string());
                Json(
                    json!({"id": "chatcmpl-rec", "object": "chat.completion", "created": 1,
                    "model": body["model"], "choices": [{"index": 0, "finish_reason": "stop",
                    "message": {"role": "assistant", "content": "recorded"}}],
                    "usage": {"prompt_tokens": 10, "completion_tokens": 2, "total_tokens": 12}}),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

async fn token_for(r: &Running, user_id: i64) -> String {
    r.token(user_id, "admin").await
}

async fn call(
    r: &Running,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let url = format!("{}/api/v1/admin{path}", r.base);
    let mut req = client().request(method.parse().unwrap(), url);
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

fn assert_api_error(v: &Value, code: &str) {
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        v["error"]["message"].is_string() && v["error"]["type"].is_string(),
        "{v}"
    );
}

async fn suite(database_url: Option<String>) {
    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let admin = accounts::create_user(&db, "ops@example.com", "Ops", None, accounts::Role::Admin)
        .await
        .unwrap();
    let admin_token = token_for(&r, admin.id).await;
    let (user_id, user_key) = r
        .customer(
            "cust@example.com",
            1_000_000_000,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let user_token = token_for(&r, user_id).await;
    let t = Some(admin_token.as_str());

    // Auth: none → 401, non-admin → 403, forged → 401, admin → 200; all in the API shape.
    let (s, v) = call(&r, "GET", "/providers", None, None).await;
    assert_eq!(s, 401);
    assert_api_error(&v, "unauthorized");
    let (s, v) = call(&r, "GET", "/providers", Some(&user_token), None).await;
    assert_eq!(s, 403);
    assert_api_error(&v, "forbidden");
    let (s, _) = call(
        &r,
        "GET",
        "/providers",
        Some(&format!("{admin_token}x")),
        None,
    )
    .await;
    assert_eq!(s, 401);
    let (s, v) = call(&r, "GET", "/providers", t, None).await;
    assert_eq!(s, 200);
    assert!(
        v.as_array().unwrap().iter().any(|p| p["name"] == "mock"),
        "{v}"
    );

    // A provider with a write-only key: shown as set, stored sealed, sent upstream.
    let (up_url, seen) = recording_upstream().await;
    let secret_key = "sk-upstream-admin-test-0123456789";
    let (s, v) = call(
        &r,
        "PUT",
        "/providers/rec",
        t,
        Some(json!({"kind": "openai", "base_url": up_url, "api_key": secret_key})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["api_key"], "set");
    assert!(!v.to_string().contains(secret_key));
    let (_, list) = call(&r, "GET", "/providers", t, None).await;
    assert!(!list.to_string().contains(secret_key));
    let stored: Option<String> =
        sqlx::query("SELECT api_key_enc FROM providers WHERE name = 'rec'")
            .fetch_one(db.pool())
            .await
            .unwrap()
            .try_get(0)
            .unwrap();
    let stored = stored.unwrap();
    assert!(stored.starts_with("v1:") && !stored.contains(secret_key));

    // Model and alias apply to the running gateway at once.
    let (s, v) = call(
        &r,
        "PUT",
        "/models/rec/model-a",
        t,
        Some(json!({"provider": "rec", "upstream_model": "up-a",
        "input_usd_per_m": "1.5", "output_usd_per_m": "3"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["name"], "rec/model-a");
    assert_eq!(v["input_usd_per_m"], "1.50");
    let (s, v) = call(
        &r,
        "PUT",
        "/aliases/rec-alias",
        t,
        Some(json!({"targets": [{"model": "rec/model-a"}]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["targets"][0]["model"], "rec/model-a");
    let (s, h, body) = common::chat(
        &r.base,
        &user_key,
        json!({"model": "rec-alias", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(h["x-tokengate-provider"], "rec");
    assert_eq!(body["choices"][0]["message"]["content"], "recorded");
    assert_eq!(
        seen.lock().unwrap().as_slice(),
        [format!("Bearer {secret_key}")]
    );

    // Prices changed through the API are what the next request is billed at.
    let logs = common::wait_for_logs(&r, user_id, 1).await;
    // 10 in × 1.5 USD/M + 2 out × 3 USD/M = 21 µUSD = 21_000 nano-USD.
    assert_eq!(logs[0].cost_nano, 21_000);

    // Clearing the key stops sending it.
    let (s, v) = call(
        &r,
        "PUT",
        "/providers/rec",
        t,
        Some(json!({"kind": "openai", "base_url": up_url, "api_key": null})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(v["api_key"], "unset");

    // Deletes that would orphan are refused; in order they succeed.
    let (s, v) = call(&r, "DELETE", "/providers/rec", t, None).await;
    assert_eq!(s, 409, "{v}");
    assert_api_error(&v, "conflict");
    let (s, _) = call(&r, "DELETE", "/models/rec/model-a", t, None).await;
    assert_eq!(s, 409);

    // Dry run names the serving tier.
    let (s, v) = call(&r, "GET", "/aliases/rec-alias/dry-run", t, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["serving_priority"], 0);
    assert_eq!(v["tiers"][0]["targets"][0]["usable"], true);

    // Health lists the target that served traffic.
    let (s, v) = call(&r, "GET", "/health", t, None).await;
    assert_eq!(s, 200);
    let target = v["targets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["target"] == "rec/model-a")
        .cloned()
        .unwrap();
    assert_eq!(target["state"], "closed");
    assert_eq!(target["total_requests"], 1);

    assert_eq!(
        call(&r, "DELETE", "/aliases/rec-alias", t, None).await.0,
        200
    );
    assert_eq!(
        call(&r, "DELETE", "/models/rec/model-a", t, None).await.0,
        200
    );
    assert_eq!(call(&r, "DELETE", "/providers/rec", t, None).await.0, 200);
    let (s, v) = call(&r, "DELETE", "/providers/rec", t, None).await;
    assert_eq!(s, 404);
    assert_api_error(&v, "not_found");
    let (s, _, _) = common::chat(
        &r.base,
        &user_key,
        json!({"model": "rec-alias", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(s, 404, "a deleted alias is gone at once");

    // Key groups restrict keys in them.
    let (s, v) = call(
        &r,
        "PUT",
        "/key-groups/fast-only",
        t,
        Some(json!({"allowed_models": ["mock/fast-1"]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let group_id = v["id"].as_i64().unwrap();
    let (_, grouped) = r
        .customer(
            "grp@example.com",
            1_000_000_000,
            NewKey {
                name: "g".into(),
                group_id: Some(group_id),
                ..NewKey::default()
            },
        )
        .await;
    let msg = json!([{"role": "user", "content": "hi"}]);
    assert_eq!(
        common::chat(
            &r.base,
            &grouped,
            json!({"model": "mock/fast-1", "messages": msg})
        )
        .await
        .0,
        200
    );
    let (s, _, v) = common::chat(
        &r.base,
        &grouped,
        json!({"model": "mock/smart-1", "messages": msg}),
    )
    .await;
    assert_eq!(s, 403, "{v}");
    assert_eq!(
        call(&r, "DELETE", "/key-groups/fast-only", t, None).await.0,
        409
    );

    // Suspension stops the account's keys on the very next request; reactivation restores.
    let (s, v) = call(&r, "POST", &format!("/users/{user_id}/suspend"), t, None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "suspended");
    let (s, _, v) = common::chat(
        &r.base,
        &user_key,
        json!({"model": "mock/fast-1", "messages": msg}),
    )
    .await;
    assert_eq!(s, 401, "{v}");
    let (s, _) = call(&r, "GET", "/providers", Some(&user_token), None).await;
    assert_eq!(s, 401, "a suspended user's access token stops working");
    assert_eq!(
        call(&r, "POST", &format!("/users/{user_id}/reactivate"), t, None)
            .await
            .0,
        200
    );
    assert_eq!(
        common::chat(
            &r.base,
            &user_key,
            json!({"model": "mock/fast-1", "messages": msg})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        call(&r, "POST", &format!("/users/{}/suspend", admin.id), t, None)
            .await
            .0,
        409
    );
    assert_eq!(
        call(&r, "POST", "/users/999999/suspend", t, None).await.0,
        404
    );

    // Validation: malformed JSON 400, unknown field 400, bad values 422, unknown route 404.
    let resp = client()
        .put(format!("{}/api/v1/admin/providers/x", r.base))
        .bearer_auth(&admin_token)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 400);
    assert_api_error(&resp.json::<Value>().await.unwrap(), "invalid_request");
    let (s, _) = call(
        &r,
        "PUT",
        "/providers/x",
        t,
        Some(json!({"kind": "openai", "base_url": "http://x", "bogus": 1})),
    )
    .await;
    assert_eq!(s, 400);
    let (s, v) = call(
        &r,
        "PUT",
        "/providers/x",
        t,
        Some(json!({"kind": "nope", "base_url": "http://x"})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    assert_api_error(&v, "validation_error");
    let (s, _) = call(
        &r,
        "PUT",
        "/models/mock/x",
        t,
        Some(json!({"provider": "mock", "upstream_model": "x",
        "input_usd_per_m": "abc", "output_usd_per_m": "1"})),
    )
    .await;
    assert_eq!(s, 422);
    let (s, _) = call(
        &r,
        "PUT",
        "/aliases/bad",
        t,
        Some(json!({"targets": [{"model": "nope/none"}]})),
    )
    .await;
    assert_eq!(s, 422);
    let (s, v) = call(&r, "GET", "/nope", t, None).await;
    assert_eq!(s, 404);
    assert_api_error(&v, "not_found");
    r.stop().await;
}

#[tokio::test]
async fn admin_api_on_sqlite() {
    suite(None).await;
}

#[tokio::test]
async fn admin_api_on_postgres() {
    on_postgres(suite).await;
}

/// Every admin answer reads as its `tokengate_api::admin` type, and every time in it is an
/// RFC 3339 string in UTC (providers, models, aliases and key groups answered unix
/// milliseconds before), close to now.
async fn answers_are_typed_with_rfc3339_times(database_url: Option<String>) {
    use tokengate_api::Timestamp;
    use tokengate_api::admin as t;

    let r = start(database_url, &[]).await;
    let db = r.server_state.db.clone();
    let admin = accounts::create_user(&db, "ops@example.com", "Ops", None, accounts::Role::Admin)
        .await
        .unwrap();
    let tok = token_for(&r, admin.id).await;
    let tk = Some(tok.as_str());
    let (uid, _) = r
        .customer(
            "typed@example.com",
            1_000_000_000,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let now = tokengate_core::now_ms();
    let recent = |at: &Value, what: &str| {
        let text = at
            .as_str()
            .unwrap_or_else(|| panic!("{what}: {at} is not a string"));
        assert!(text.ends_with('Z'), "{what}: {text} is not UTC");
        let ms = Timestamp::parse_rfc3339(text).unwrap().millis();
        assert!(
            (ms - now).abs() < 3_600_000,
            "{what}: {text} is not about now"
        );
    };
    async fn get<T: serde::de::DeserializeOwned>(
        r: &Running,
        path: &str,
        tk: Option<&str>,
        body: Option<Value>,
    ) -> (T, Value) {
        let method = if body.is_some() { "PUT" } else { "GET" };
        let (s, v) = call(r, method, path, tk, body).await;
        assert_eq!(s, 200, "{path}: {v}");
        (serde_json::from_value(v.clone()).unwrap(), v)
    }

    let (p, v): (t::ProviderView, _) = get(
        &r,
        "/providers/typed",
        tk,
        Some(json!({"kind": "mock", "api_key": "k"})),
    )
    .await;
    assert_eq!((p.api_key, p.kind.as_str()), (t::SecretState::Set, "mock"));
    recent(&v["created_at"], "provider");
    let (m, v): (t::AdminModelView, _) = get(
        &r,
        "/models/typed/m-1",
        tk,
        Some(json!({"provider": "typed", "upstream_model": "m-1",
            "input_usd_per_m": "0.150", "output_usd_per_m": 2})),
    )
    .await;
    assert_eq!(v["input_usd_per_m"], "0.15");
    assert_eq!(m.output_usd_per_m.nanos(), 2_000_000_000);
    recent(&v["created_at"], "model");
    let (_, v): (t::AliasView, _) = get(
        &r,
        "/aliases/typed-alias",
        tk,
        Some(json!({"targets": [{"model": "typed/m-1"}]})),
    )
    .await;
    recent(&v["created_at"], "alias");
    let (_, v): (t::KeyGroupView, _) = get(
        &r,
        "/key-groups/typed-group",
        tk,
        Some(json!({"allowed_providers": ["typed"]})),
    )
    .await;
    recent(&v["created_at"], "key group");
    for (path, what) in [
        ("/providers", "providers"),
        ("/models", "models"),
        ("/aliases", "aliases"),
        ("/key-groups", "key groups"),
        ("/users?q=typed", "users"),
    ] {
        let (_, v) = call(&r, "GET", path, tk, None).await;
        let list = v.as_array().unwrap_or_else(|| panic!("{path}: {v}"));
        assert!(!list.is_empty(), "{path}");
        for x in list {
            assert!(x["created_at"].is_string(), "{what}: {x}");
        }
    }
    let (_, v): (Vec<t::AdminUserView>, _) = get(&r, "/users?q=typed", tk, None).await;
    recent(&v[0]["created_at"], "user");

    let (s, v) = call(
        &r,
        "POST",
        &format!("/users/{uid}/credit"),
        tk,
        Some(json!({"amount_usd": "0.000150", "reason": "typed"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let c: t::CreditResult = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(v["amount_usd"], "0.00015");
    assert_eq!(v["balance_usd"], "1.00015", "exact, not rounded to cents");
    let (ledger, v): (t::UserLedger, _) = get(&r, &format!("/users/{uid}/ledger"), tk, None).await;
    assert_eq!(ledger.entries[0].id, c.entry_id);
    recent(&v["entries"][0]["created_at"], "ledger entry");
    let (s, v) = call(&r, "POST", &format!("/users/{uid}/suspend"), tk, None).await;
    assert_eq!(s, 200, "{v}");
    let st: t::UserStatusChange = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(st.status, accounts::UserStatus::Suspended);
    recent(&v["updated_at"], "status change");

    let _: (t::HealthReport, _) = get(&r, "/health", tk, None).await;
    let _: (t::AdminRequestLogPage, _) = get(&r, "/request-logs", tk, None).await;
    let _: (t::LedgerVerify, _) = get(&r, "/ledger/verify", tk, None).await;
    let _: (t::DryRun, _) = get(&r, "/aliases/typed-alias/dry-run", tk, None).await;
    r.stop().await;
}

on_both!(
    answers_are_typed_with_rfc3339_times,
    answers_are_typed_on_sqlite,
    answers_are_typed_on_postgres
);
