//! Drives the real router on a random port against SQLite and PostgreSQL: auth, errors in
//! the contract's shapes, metering (balance moves by exactly the logged costs), streaming,
//! revocation taking effect on the next request, and the ledger invariant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{assert_error, chat, client, start, wait_for_logs};
use serde_json::{Value, json};
use tokengate_core::accounts;
use tokengate_core::keys::{self, NewKey};
use tokengate_core::money::NANOS_PER_USD;
use tokengate_core::usage;

async fn suite(database_url: Option<String>) {
    let r = start(database_url.clone(), &[]).await;
    let base = r.base.clone();

    // Health and readiness.
    let h = client()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(h.status(), 200);
    let h = client().get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(h.status(), 200);

    // 401: missing, malformed, unknown key — exact contract body.
    for key in [
        "",
        "sk-tg-short",
        "sk-tg-0000000000000000000000000000000000000000000",
    ] {
        let (s, _, v) = chat(
            &base,
            key,
            json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(s, 401);
        assert_error(&v, "authentication_error", "invalid_api_key");
        assert_eq!(v["error"]["message"], "Invalid API key provided.");
    }
    let no_auth = client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_auth.status(), 401);

    let (user_id, key) = r
        .customer(
            "alice@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;

    // Models list with prices.
    let models: Value = client()
        .get(format!("{base}/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let fast = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "mock/fast-1")
        .unwrap();
    assert_eq!(fast["input_usd_per_1k"], "0.00015");
    assert_eq!(fast["output_usd_per_1k"], "0.0006");
    assert_eq!(fast["owned_by"], "mock");
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tokengate-fast")
    );

    // 400 malformed JSON, missing fields; 404 unknown model.
    let bad = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(&key)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_error(
        &bad.json::<Value>().await.unwrap(),
        "invalid_request_error",
        "invalid_request",
    );
    let (s, _, v) = chat(
        &base,
        &key,
        json!({"messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 400);
    assert_eq!(v["error"]["param"], "model");
    let (s, _, v) = chat(&base, &key, json!({"model": "mock/fast-1", "messages": []})).await;
    assert_eq!(s, 400, "{v}");
    let (s, _, v) = chat(
        &base,
        &key,
        json!({"model": "nope/none", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 404);
    assert_error(&v, "invalid_request_error", "model_not_found");

    // A metered non-streaming call.
    let (s, headers, v) = chat(&base, &key, json!({"model": "tokengate-fast", "messages": [{"role": "user", "content": "hello world"}]})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(headers["x-tokengate-provider"], "mock");
    assert_eq!(headers["x-tokengate-model"], "mock/fast-1");
    assert_eq!(headers["x-tokengate-attempts"], "1");
    assert_eq!(v["usage"]["prompt_tokens"], 5);
    assert_eq!(v["usage"]["completion_tokens"], 10);

    // A stream without include_usage: no usage chunk reaches the client, but it is metered.
    let resp = client().post(format!("{base}/v1/chat/completions")).bearer_auth(&key)
        .json(&json!({"model": "mock/fast-1", "stream": true, "messages": [{"role": "user", "content": "a b c"}]}))
        .send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(!text.contains("\"usage\""), "usage leaked: {text}");
    // With include_usage it is passed through.
    let text = client().post(format!("{base}/v1/chat/completions")).bearer_auth(&key)
        .json(&json!({"model": "mock/fast-1", "stream": true, "stream_options": {"include_usage": true},
            "messages": [{"role": "user", "content": "a b c"}]}))
        .send().await.unwrap().text().await.unwrap();
    assert!(
        text.contains("\"usage\":{\"completion_tokens\":11,\"prompt_tokens\":6"),
        "{text}"
    );

    // An upstream failure costs nothing and is logged as failed.
    let (s, failed_headers, v) = chat(&base, &key, json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "fail [mock:status:503]"}]})).await;
    assert_eq!(s, 502, "{v}");
    assert_error(&v, "api_error", "upstream_error");

    let logs = wait_for_logs(&r, user_id, 4).await;
    assert_eq!(logs.len(), 4);
    let failed = logs.iter().find(|l| l.status == 502).unwrap();
    assert_eq!(failed.cost_nano, 0);
    // The error response names its log row.
    assert_eq!(failed_headers["x-request-id"], failed.request_id.as_str());
    let ok: Vec<_> = logs.iter().filter(|l| l.status == 200).collect();
    assert_eq!(ok.len(), 3);
    // 5 in × $0.15/M + 10 out × $0.60/M = 750 + 6000 nano.
    let first = logs.iter().find(|l| l.model == "tokengate-fast").unwrap();
    assert_eq!(
        (first.tokens_in, first.tokens_out, first.cost_nano),
        (5, 10, 6750)
    );
    assert_eq!(first.served_model.as_deref(), Some("mock/fast-1"));
    let total: i64 = logs.iter().map(|l| l.cost_nano).sum();
    let user = accounts::get_user(&r.server_state.db, user_id)
        .await
        .unwrap();
    assert_eq!(user.balance_nano, NANOS_PER_USD - total);
    assert!(
        accounts::verify_ledger(&r.server_state.db, None)
            .await
            .unwrap()
            .is_empty()
    );

    // 402: an account with no money.
    let (_, broke) = r
        .customer(
            "bob@example.com",
            0,
            NewKey {
                name: "b".into(),
                ..NewKey::default()
            },
        )
        .await;
    let (s, _, v) = chat(
        &base,
        &broke,
        json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 402);
    assert_error(&v, "insufficient_quota", "insufficient_balance");

    // 403: key restricted to other models.
    let (_, narrow) = r
        .customer(
            "carol@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "n".into(),
                allowed_models: Some(vec!["mock/smart-1".into()]),
                ..NewKey::default()
            },
        )
        .await;
    let (s, _, v) = chat(
        &base,
        &narrow,
        json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 403);
    assert_error(&v, "permission_error", "model_not_allowed");

    // Revocation works on the very next request.
    let keys_of_user = keys::list_for_user(&r.server_state.db, user_id)
        .await
        .unwrap();
    let revoked = keys::revoke(&r.server_state.db, user_id, keys_of_user[0].id)
        .await
        .unwrap();
    r.server_state.gateway.key_changed(revoked);
    let (s, _, _) = chat(
        &base,
        &key,
        json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "x"}]}),
    )
    .await;
    assert_eq!(s, 401);

    // Unknown /v1 route: JSON 404, never plain text.
    let nf = client()
        .get(format!("{base}/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(nf.status(), 404);
    assert_eq!(
        nf.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );

    r.stop().await;
}

#[tokio::test]
async fn gateway_on_sqlite() {
    suite(None).await;
}

#[tokio::test]
async fn gateway_on_postgres() {
    common::on_postgres(suite).await;
}

#[tokio::test]
async fn body_limit_gives_413_in_contract_shape() {
    let r = start(None, &[("TOKENGATE_MAX_BODY_BYTES", "1000")]).await;
    let (_, key) = r
        .customer(
            "dave@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "d".into(),
                ..NewKey::default()
            },
        )
        .await;
    let big = "x".repeat(5000);
    let (s, _, v) = chat(
        &r.base,
        &key,
        json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": big}]}),
    )
    .await;
    assert_eq!(s, 413);
    assert_eq!(v["error"]["type"], "invalid_request_error");
    // Chunked (no Content-Length) bodies are limited too.
    let stream = futures::stream::iter(vec![Ok::<_, std::io::Error>(bytes::Bytes::from(vec![
        b' ';
        4000
    ]))]);
    let resp = client()
        .post(format!("{}/v1/chat/completions", r.base))
        .bearer_auth(&key)
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    r.stop().await;
}

#[tokio::test]
async fn graceful_shutdown_flushes_queued_usage() {
    // A long flush interval: the rows can only reach the database through the shutdown flush.
    let r = start(None, &[("TOKENGATE_FLUSH_INTERVAL_MS", "250")]).await;
    let (user_id, key) = r
        .customer(
            "erin@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "e".into(),
                ..NewKey::default()
            },
        )
        .await;
    for _ in 0..5 {
        let (s, _, _) = chat(
            &r.base,
            &key,
            json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "x"}]}),
        )
        .await;
        assert_eq!(s, 200);
    }
    let url = r.server_state.config.database_url.clone();
    let keep = r.stop().await;
    let db = tokengate_core::Db::connect(&url).await.unwrap();
    let logs = usage::recent_logs(&db, user_id, 100).await.unwrap();
    assert_eq!(logs.len(), 5);
    let user = accounts::get_user(&db, user_id).await.unwrap();
    assert_eq!(
        user.balance_nano,
        NANOS_PER_USD - logs.iter().map(|l| l.cost_nano).sum::<i64>()
    );
    db.close().await;
    drop(keep);
}

/// A request refused with 401 leaves its keep-alive connection usable: the next request
/// on the same socket is answered.
#[tokio::test]
async fn rejected_request_keeps_the_connection_usable() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let r = start(None, &[]).await;
    let (_, key) = r
        .customer(
            "keepalive@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    let addr = r.base.trim_start_matches("http://").to_string();
    let mut sock = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let body = r#"{"model":"mock/fast-1","messages":[{"role":"user","content":"hi"}]}"#;
    let request = |auth: &str| {
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {auth}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Reads one response (headers + Content-Length body) and returns its status line.
    async fn read_response(sock: &mut tokio::net::TcpStream) -> String {
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = tokio::time::timeout(std::time::Duration::from_secs(5), sock.read(&mut chunk))
                .await
                .expect("response in time")
                .unwrap();
            assert!(
                n > 0,
                "connection closed; got {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&buf).to_string();
            if let Some(end) = text.find("\r\n\r\n") {
                let len = text[..end]
                    .lines()
                    .find_map(|l| {
                        l.to_ascii_lowercase()
                            .strip_prefix("content-length:")
                            .map(|v| v.trim().parse::<usize>().unwrap())
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return text.lines().next().unwrap().to_string();
                }
            }
        }
    }
    sock.write_all(request("sk-tg-wrong").as_bytes())
        .await
        .unwrap();
    assert!(read_response(&mut sock).await.contains(" 401 "));
    sock.write_all(request(&key).as_bytes()).await.unwrap();
    assert!(read_response(&mut sock).await.contains(" 200 "));
    r.stop().await;
}
