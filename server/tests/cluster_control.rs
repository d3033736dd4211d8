//! The cluster control plane (issue 15) on PostgreSQL: several in-process instances on one
//! database (and one Redis, with a prefix of their own) see a change made on any of them —
//! or written to the database by another process — within one second, pushed by NOTIFY
//! (the delays are measured and printed); a second instance without Redis is refused at
//! start while the first one's heartbeat moves, and starts once it is stale or gone; the
//! admin health report lists the live instances. The PostgreSQL cases are skipped (with the
//! reason printed) without TOKENGATE_TEST_PG; one SQLite case checks the guard on a shared
//! database file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Running, chat, on_postgres, start};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};
use tokengate_api::admin::HealthReport;
use tokengate_core::accounts::{self, Role, UserStatus};
use tokengate_core::keys::NewKey;
use tokengate_core::money::NANOS_PER_USD;
use tokengate_server::config::Config;
use tokengate_server::{Server, StartError};

const REDIS: &str = "redis://127.0.0.1:6379";
/// Longest a change may take to reach every instance (measured until a probe's answer
/// shows it: 2–27 ms on this machine).
const WITHIN: Duration = Duration::from_secs(1);

/// `n` instances in cluster mode on `url`, sharing one fresh Redis prefix and one server
/// secret (key hashes and access tokens must agree across instances).
async fn cluster(url: &str, n: usize) -> Vec<Running> {
    let prefix = format!("tg-cc-{}:", rand::random::<u32>());
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let mut all = Vec::new();
    for _ in 0..n {
        all.push(
            start(
                Some(url.to_string()),
                &[
                    ("TOKENGATE_REDIS_URL", REDIS),
                    ("TOKENGATE_REDIS_PREFIX", &prefix),
                    ("TOKENGATE_SECRET_KEY", &secret),
                ],
            )
            .await,
        );
    }
    all
}

fn hello(model: &str) -> Value {
    json!({"model": model, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
}

/// Sends requests to `base` with `key` until `done` holds for an answer; the time from
/// `since` to that answer. Panics after three seconds.
async fn until(
    base: &str,
    key: &str,
    model: &str,
    since: Instant,
    what: &str,
    done: impl Fn(u16, &HeaderMap) -> bool,
) -> Duration {
    loop {
        let (s, h, v) = chat(base, key, hello(model)).await;
        if done(s, &h) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < Duration::from_secs(3),
            "{what} never reached {base}: last answer {s} {v}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The time until every instance of `others` satisfies `done`, measured from `since`;
/// asserted below [`WITHIN`] and printed.
async fn propagated(
    others: &[&Running],
    key: &str,
    model: &str,
    since: Instant,
    what: &str,
    done: impl Fn(u16, &HeaderMap) -> bool + Copy,
) {
    for r in others {
        let took = until(&r.base, key, model, since, what, done).await;
        println!("{what}: reached {} after {} ms", r.base, took.as_millis());
        assert!(
            took < WITHIN,
            "{what} took {took:?} to reach {} (limit {WITHIN:?})",
            r.base
        );
    }
}

/// Waits (untimed, up to three seconds) until every instance of `nodes` serves `key`: a
/// new account's credit reaches other instances with the balance refresh, which is not a
/// pushed change.
async fn ready(nodes: &[&Running], key: &str) {
    for r in nodes {
        until(
            &r.base,
            key,
            "mock/fast-1",
            Instant::now(),
            "the new account",
            |s, _| s == 200,
        )
        .await;
    }
}

async fn api(
    r: &Running,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = common::client()
        .request(method.parse().unwrap(), format!("{}/api/v1{path}", r.base))
        .bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    let s = resp.status().as_u16();
    (s, resp.json().await.unwrap_or(Value::Null))
}

async fn admin_token(r: &Running, email: &str) -> String {
    let admin = accounts::create_user(&r.server_state.db, email, "Ops", None, Role::Admin)
        .await
        .unwrap();
    r.token(admin.id, "admin").await
}

fn model_is(want: &'static str) -> impl Fn(u16, &HeaderMap) -> bool + Copy {
    move |s, h| {
        s == 200
            && h.get("x-tokengate-model")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|m| m == want)
    }
}

async fn changes_reach_every_instance(url: Option<String>) {
    let url = url.unwrap();
    let nodes = cluster(&url, 3).await;
    let (a, b, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let others = [b, c];
    let ok = |s: u16, _: &HeaderMap| s == 200;
    let refused = |s: u16, _: &HeaderMap| s == 401;

    let (user_id, seed_key) = a
        .customer(
            "c@example.com",
            10 * NANOS_PER_USD,
            NewKey {
                name: "seed".into(),
                ..NewKey::default()
            },
        )
        .await;
    ready(&others, &seed_key).await;
    let token = a.token(user_id, "account keys").await;

    // A key created on A works on B and C.
    let since = Instant::now();
    let (s, v) = api(a, "POST", "/me/keys", &token, Some(json!({"name": "ci"}))).await;
    assert_eq!(s, 201, "{v}");
    let (key_id, key) = (
        v["id"].as_i64().unwrap(),
        v["raw"].as_str().unwrap().to_string(),
    );
    propagated(&others, &key, "mock/fast-1", since, "key creation", ok).await;

    // Revoked on A: 401 on B and C.
    let since = Instant::now();
    let (s, v) = api(a, "DELETE", &format!("/me/keys/{key_id}"), &token, None).await;
    assert_eq!(s, 200, "{v}");
    propagated(
        &others,
        &key,
        "mock/fast-1",
        since,
        "key revocation",
        refused,
    )
    .await;

    // An alias pointed elsewhere on A: B and C serve the new target.
    let admin = admin_token(a, "ops@example.com").await;
    propagated(
        &others,
        &seed_key,
        "tokengate-fast",
        Instant::now(),
        "the alias",
        model_is("mock/fast-1"),
    )
    .await;
    let since = Instant::now();
    let (s, v) = api(
        a,
        "PUT",
        "/admin/aliases/tokengate-fast",
        &admin,
        Some(json!({"complexity_tier": "fast", "targets": [{"model": "mock/smart-1"}]})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    propagated(
        &others,
        &seed_key,
        "tokengate-fast",
        since,
        "the alias change",
        model_is("mock/smart-1"),
    )
    .await;

    // The account suspended on A: its keys answer 401 on B and C.
    let since = Instant::now();
    let (s, v) = api(
        a,
        "POST",
        &format!("/admin/users/{user_id}/suspend"),
        &admin,
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    propagated(
        &others,
        &seed_key,
        "mock/fast-1",
        since,
        "the suspension",
        refused,
    )
    .await;

    // Written to the database by another process (as `tokengate-server admin …` does):
    // every instance, A included, picks it up.
    let outside = tokengate_core::Db::connect(&url).await.unwrap();
    let since = Instant::now();
    accounts::set_status(&outside, user_id, UserStatus::Active)
        .await
        .unwrap();
    propagated(
        &[a, b, c],
        &seed_key,
        "mock/fast-1",
        since,
        "a reactivation written outside",
        ok,
    )
    .await;
    outside.close().await;

    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn changes_on_one_instance_reach_the_others_within_a_second() {
    on_postgres(changes_reach_every_instance).await;
}

async fn reconnect_reloads(url: Option<String>) {
    let url = url.unwrap();
    let nodes = cluster(&url, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let (user_id, key) = a
        .customer(
            "r@example.com",
            NANOS_PER_USD,
            NewKey {
                name: "k".into(),
                ..NewKey::default()
            },
        )
        .await;
    ready(&[b], &key).await;

    // Every listening connection on this database is cut; the change made right after
    // still arrives (the listener reconnects and the instance reloads everything).
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let count = "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
                 AND application_name = $1";
    let listening: i64 = sqlx::query_scalar(count)
        .bind(tokengate_server::cluster::changes::LISTENER_APP_NAME)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert_eq!(listening, 2, "one listening connection per instance");
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = $1",
    )
    .bind(tokengate_server::cluster::changes::LISTENER_APP_NAME)
    .execute(&admin)
    .await
    .unwrap();
    let since = Instant::now();
    let token = a.token(user_id, "keys").await;
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_keys WHERE user_id = $1")
        .bind(user_id)
        .fetch_one(&admin)
        .await
        .unwrap();
    let (s, v) = api(a, "DELETE", &format!("/me/keys/{id}"), &token, None).await;
    assert_eq!(s, 200, "{v}");
    propagated(
        &[b],
        &key,
        "mock/fast-1",
        since,
        "a revocation after the listener was cut",
        |s, _| s == 401,
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let n: i64 = sqlx::query_scalar(count)
            .bind(tokengate_server::cluster::changes::LISTENER_APP_NAME)
            .fetch_one(&admin)
            .await
            .unwrap();
        if n == 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "listeners did not reconnect ({n})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    admin.close().await;
    for n in nodes {
        n.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_lost_listener_reconnects_and_misses_nothing() {
    on_postgres(reconnect_reloads).await;
}

/// A configuration as the harness builds it, for starts expected to fail.
fn config(url: &str, dir: &std::path::Path, redis_prefix: Option<&str>) -> Config {
    let mut env = vec![
        ("TOKENGATE_DATA_DIR", dir.display().to_string()),
        ("TOKENGATE_LISTEN", "127.0.0.1:0".to_string()),
        ("TOKENGATE_DATABASE_URL", url.to_string()),
    ];
    if let Some(p) = redis_prefix {
        env.push(("TOKENGATE_REDIS_URL", REDIS.to_string()));
        env.push(("TOKENGATE_REDIS_PREFIX", p.to_string()));
    }
    Config::load(None, |k| {
        env.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
    })
    .unwrap()
}

async fn start_and_stop(config: Config) -> Result<(), StartError> {
    let server = Server::start(config).await?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    server.serve(listener, async {}).await.unwrap();
    Ok(())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn guard(url: Option<String>) {
    let url = url.unwrap();
    let dir = std::env::temp_dir().join(format!("tg-guard-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();

    // A runs without Redis: a second instance is refused, with or without Redis, and says
    // why and how to fix it. A moving heartbeat is recognised quickly.
    let a = start(Some(url.clone()), &[]).await;
    for prefix in [None, Some("tg-guard:")] {
        let since = Instant::now();
        let err = start_and_stop(config(&url, &dir, prefix))
            .await
            .unwrap_err();
        let took = since.elapsed();
        println!(
            "refused (redis: {}) after {} ms",
            prefix.is_some(),
            took.as_millis()
        );
        assert!(took < Duration::from_secs(3), "{took:?}");
        assert!(matches!(err, StartError::Instance(_)), "{err}");
        let text = err.to_string();
        for needle in [
            "ANOTHER INSTANCE IS RUNNING ON THIS DATABASE",
            &*a.server_state.instance_id,
            "without Redis",
            "TOKENGATE_REDIS_URL",
            "stop the other instance",
            "older than 5 seconds",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        assert!(
            !text.contains(REDIS),
            "no connection string in the error: {text}"
        );
    }
    // The refused starts left nothing behind: A is the only live instance.
    let (_, live) = tokengate_core::instances::live(&a.server_state.db)
        .await
        .unwrap();
    assert_eq!(live.len(), 1, "{live:?}");

    // A stopped gracefully leaves the registry: the next instance starts at once.
    a.stop().await;
    let since = Instant::now();
    start_and_stop(config(&url, &dir, None)).await.unwrap();
    assert!(
        since.elapsed() < Duration::from_secs(2),
        "{:?}",
        since.elapsed()
    );

    // A crashed instance (the real binary, SIGKILLed) stops counting once its heartbeat
    // is stale: the next start waits for that, then succeeds.
    let port = free_port();
    let data = dir.join("crashing");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_tokengate-server"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENGATE_") {
            cmd.env_remove(k);
        }
    }
    let mut child = cmd
        .env("TOKENGATE_DATA_DIR", &data)
        .env("TOKENGATE_DATABASE_URL", &url)
        .env("TOKENGATE_LISTEN", format!("127.0.0.1:{port}"))
        .env("TOKENGATE_PUBLIC_URL", format!("http://127.0.0.1:{port}"))
        .env("TOKENGATE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_ok_and(|r| r.status() == 200)
        {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "the binary exited");
        assert!(Instant::now() < deadline, "the binary never became healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = Instant::now();
    start_and_stop(config(&url, &dir, None)).await.unwrap();
    let waited = killed.elapsed();
    println!(
        "started {} ms after the other instance was killed",
        waited.as_millis()
    );
    assert!(
        waited >= Duration::from_secs(3) && waited < Duration::from_secs(9),
        "waited {waited:?} for a heartbeat to go stale (5 s after its last beat)"
    );

    // Two instances started at the same moment: exactly one of them runs.
    let (one, two) = (dir.join("one"), dir.join("two"));
    let (x, y) = tokio::join!(
        Server::start(config(&url, &one, None)),
        Server::start(config(&url, &two, None))
    );
    assert_eq!(
        u8::from(x.is_ok()) + u8::from(y.is_ok()),
        1,
        "{:?} / {:?}",
        x.as_ref().err(),
        y.as_ref().err()
    );
    for server in [x, y].into_iter().flatten() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        server.serve(listener, async {}).await.unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_second_instance_without_redis_is_refused_until_the_first_is_gone() {
    on_postgres(guard).await;
}

async fn health(url: Option<String>) {
    let url = url.unwrap();
    let mut nodes = cluster(&url, 2).await;
    let b = nodes.pop().unwrap();
    let a = nodes.pop().unwrap();
    let admin = admin_token(&a, "ops@example.com").await;
    let report = |r: &Running| {
        let admin = admin.clone();
        let base = r.base.clone();
        async move {
            let resp = common::client()
                .get(format!("{base}/api/v1/admin/health"))
                .bearer_auth(admin)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200);
            resp.json::<HealthReport>().await.unwrap()
        }
    };
    let h = report(&a).await;
    let ids: Vec<&str> = h.instances.iter().map(|i| i.id.as_str()).collect();
    let (a_id, b_id) = (
        a.server_state.instance_id.to_string(),
        b.server_state.instance_id.to_string(),
    );
    assert_eq!(ids.len(), 2, "{h:?}");
    assert!(ids.contains(&&*a_id) && ids.contains(&&*b_id), "{h:?}");
    for i in &h.instances {
        assert_eq!(i.current, i.id == a_id, "{i:?}");
        assert!(i.cluster, "{i:?}");
        assert!((0..5000).contains(&i.last_seen_ms_ago), "{i:?}");
        assert_eq!(i.version, env!("CARGO_PKG_VERSION"));
        assert!(i.last_seen_at >= i.started_at, "{i:?}");
    }
    let mine = h.instances.iter().find(|i| i.current).unwrap();
    assert_eq!(
        format!("http://{}", mine.listen),
        a.base,
        "the bound address is recorded"
    );
    // B's own view marks B.
    let hb = report(&b).await;
    assert!(hb.instances.iter().any(|i| i.current && i.id == b_id));

    // Stopped gracefully, B leaves the list at once.
    b.stop().await;
    let h = report(&a).await;
    let ids: Vec<&str> = h.instances.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(ids, [a_id.as_str()]);
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_lists_the_live_instances() {
    on_postgres(health).await;
}

/// SQLite serves one instance: a second one on the same database file is refused too
/// (cluster mode, which needs PostgreSQL, is no way around it there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_instance_on_one_sqlite_file_is_refused() {
    let a = start(None, &[]).await;
    let url = a.server_state.config.database_url.clone();
    let dir = std::env::temp_dir().join(format!("tg-guard-lite-{}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let err = start_and_stop(config(&url, &dir, None)).await.unwrap_err();
    assert!(matches!(err, StartError::Instance(_)), "{err}");
    assert!(err.to_string().contains("TOKENGATE_REDIS_URL"), "{err}");
    // Stopped (its data directory kept), the file serves the next instance.
    let keep = a.stop().await;
    start_and_stop(config(&url, &dir, None)).await.unwrap();
    drop(keep);
    let _ = std::fs::remove_dir_all(&dir);
}
