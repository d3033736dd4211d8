//! Drives the real router on a random port against SQLite and PostgreSQL: auth, errors in
//! the contract's shapes, metering (balance moves by exactly the logged costs), streaming,
//! revocation taking effect on the next request, and the ledger invariant.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::{Value, json};
use tokengate_core::accounts::{self, EntryKind};
use tokengate_core::keys::{self, NewKey};
use tokengate_core::money::NANOS_PER_USD;
use tokengate_core::usage;
use tokengate_server::Server;
use tokengate_server::config::Config;

struct Running {
    base: String,
    server_state: tokengate_server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn start(database_url: Option<String>, extra: &[(&str, &str)]) -> Running {
    let dir = std::env::temp_dir().join(format!(
        "tg-it-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let mut env: Vec<(String, String)> = vec![
        ("TOKENGATE_DATA_DIR".into(), dir.display().to_string()),
        ("TOKENGATE_LISTEN".into(), "127.0.0.1:0".into()),
        ("TOKENGATE_FLUSH_INTERVAL_MS".into(), "50".into()),
    ];
    if let Some(url) = database_url {
        env.push(("TOKENGATE_DATABASE_URL".into(), url));
    }
    for (k, v) in extra {
        env.push(((*k).into(), (*v).into()));
    }
    let config = Config::load(None, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    let server = Server::start(config).await.unwrap();
    tokengate_core::demo::seed_mock_catalog(&server.state.db)
        .await
        .unwrap();
    server.state.gateway.reload_routes().await.unwrap();
    let state = server.state.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let done = tokio::spawn(async move {
        server
            .serve(listener, async {
                let _ = rx.await;
            })
            .await
            .unwrap();
    });
    Running {
        base,
        server_state: state,
        stop: Some(tx),
        done,
        _dir: TempDir(dir),
    }
}

impl Running {
    /// A user with `usd` of credit and one key.
    async fn customer(&self, email: &str, nanos: i64, new: NewKey) -> (i64, String) {
        let db = &self.server_state.db;
        let user = accounts::create_user(db, email, "Test", None, "user")
            .await
            .unwrap();
        if nanos > 0 {
            accounts::apply_entry(
                db,
                user.id,
                EntryKind::Promo,
                nanos,
                None,
                Some("test"),
                None,
                false,
            )
            .await
            .unwrap();
        }
        let secret = self.server_state.config.secret_bytes();
        let (key, raw) = keys::create(db, &secret, user.id, &new).await.unwrap();
        self.server_state.gateway.refresh().await.unwrap();
        self.server_state.gateway.key_changed(key);
        (user.id, raw)
    }

    /// Stops the server (graceful: drain, then flush); returns the data dir to keep it alive.
    async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.done).await;
        self._dir
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn chat(base: &str, key: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = client()
        .post(format!("{base}/v1/chat/completions"))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let v: Value = r.json().await.unwrap_or(Value::Null);
    (status, headers, v)
}

fn assert_error(v: &Value, typ: &str, code: &str) {
    assert_eq!(v["error"]["type"], typ, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"].as_object().unwrap().contains_key("param"), "{v}");
}

async fn wait_for_logs(r: &Running, user_id: i64, n: usize) -> Vec<usage::RequestRecord> {
    for _ in 0..100 {
        let logs = usage::recent_logs(&r.server_state.db, user_id, 1000)
            .await
            .unwrap();
        if logs.len() >= n {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("request logs did not arrive");
}

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
    let (s, _, v) = chat(&base, &key, json!({"model": "mock/fast-1", "messages": [{"role": "user", "content": "fail [mock:status:503]"}]})).await;
    assert_eq!(s, 502, "{v}");
    assert_error(&v, "api_error", "upstream_error");

    let logs = wait_for_logs(&r, user_id, 4).await;
    assert_eq!(logs.len(), 4);
    let failed = logs.iter().find(|l| l.status == 502).unwrap();
    assert_eq!(failed.cost_nano, 0);
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
    let admin_url = std::env::var("TOKENGATE_TEST_PG")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("tg_it_{}_{}", std::process::id(), rand::random::<u32>());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (set TOKENGATE_TEST_PG)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    suite(Some(format!("{base}/{name}"))).await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
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
