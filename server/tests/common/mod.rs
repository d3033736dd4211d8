//! Shared harness of the integration tests: starts the real server in-process on a random
//! port against SQLite (a temporary data dir) or a fresh PostgreSQL database, creates
//! customers with credit and keys, and offers small HTTP and log helpers.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokengate_core::accounts::{self, EntryKind};
use tokengate_core::keys::{self, NewKey};
use tokengate_core::money::Prices;
use tokengate_core::usage;
use tokengate_server::Server;
use tokengate_server::config::Config;

pub struct Running {
    pub base: String,
    pub server_state: tokengate_server::AppState,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: tokio::task::JoinHandle<()>,
    _dir: TempDir,
}

pub struct TempDir(std::path::PathBuf);
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a server with the demo mock catalog, configured by `TOKENGATE_*` pairs.
pub async fn start(database_url: Option<String>, extra: &[(&str, &str)]) -> Running {
    start_with(database_url, extra, |_| {}).await
}

/// Like [`start`], with the public URL set to the address the server listens on, so that
/// the URLs it advertises (discovery, verification URI) and the CSRF origin check match
/// what a client sees.
pub async fn start_public(database_url: Option<String>, extra: &[(&str, &str)]) -> Running {
    start_public_with(database_url, extra, |_| {}).await
}

/// Like [`start_public`], with a last change to the loaded [`Config`] before the server
/// starts.
pub async fn start_public_with(
    database_url: Option<String>,
    extra: &[(&str, &str)],
    tweak: impl FnOnce(&mut Config),
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let mut extra = extra.to_vec();
    extra.push(("TOKENGATE_PUBLIC_URL", &base));
    start_on(listener, database_url, &extra, tweak).await
}

/// Like [`start`], with a last change to the loaded [`Config`] before the server starts.
pub async fn start_with(
    database_url: Option<String>,
    extra: &[(&str, &str)],
    tweak: impl FnOnce(&mut Config),
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    start_on(listener, database_url, extra, tweak).await
}

/// Starts the server on `listener`.
async fn start_on(
    listener: tokio::net::TcpListener,
    database_url: Option<String>,
    extra: &[(&str, &str)],
    tweak: impl FnOnce(&mut Config),
) -> Running {
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
    let mut config = Config::load(None, |k| {
        env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    })
    .unwrap();
    tweak(&mut config);
    let server = Server::start(config).await.unwrap();
    tokengate_core::demo::seed_mock_catalog(&server.state.db)
        .await
        .unwrap();
    server.state.gateway.reload_routes().await.unwrap();
    let state = server.state.clone();
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

/// Each scenario `$scenario(database_url)` as a SQLite test and a PostgreSQL test (own
/// database, dropped after).
#[macro_export]
macro_rules! on_both {
    ($scenario:ident, $sqlite:ident, $postgres:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $scenario(None).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            common::on_postgres($scenario).await;
        }
    };
}

impl Running {
    /// Registers (or replaces) a provider of `kind` (`mock`, `openai`, `anthropic`).
    pub async fn provider(&self, name: &str, kind: &str, base_url: Option<String>, config: Value) {
        tokengate_core::catalog::upsert_provider(
            &self.server_state.db,
            &tokengate_core::catalog::ProviderSpec {
                name: name.into(),
                kind: kind.parse().unwrap(),
                base_url,
                api_key_enc: None,
                config,
                enabled: true,
            },
        )
        .await
        .unwrap();
    }

    /// Registers (or replaces) the model `name` on `provider` at `prices` with `max_out`
    /// output tokens (its upstream id is the last segment of `name`), and reloads routes.
    pub async fn model(&self, name: &str, provider: &str, prices: Prices, max_out: i64) {
        tokengate_core::catalog::upsert_model(
            &self.server_state.db,
            &tokengate_core::catalog::ModelSpec {
                name: name.into(),
                provider: provider.into(),
                upstream_model: name.rsplit('/').next().unwrap_or(name).into(),
                input_price_nano: prices.input_per_m,
                output_price_nano: prices.output_per_m,
                cache_read_price_nano: prices.cache_read_per_m,
                cache_write_price_nano: prices.cache_write_per_m,
                max_output_tokens: max_out,
                complexity_tier: "fast".into(),
                enabled: true,
            },
        )
        .await
        .unwrap();
        self.server_state.gateway.reload_routes().await.unwrap();
    }

    /// An access token for `user_id` with `scope`, as the device flow would issue it (valid
    /// for an hour, at the account's current sign-out epoch).
    pub async fn token(&self, user_id: i64, scope: &str) -> String {
        let c = &self.server_state.config;
        let epoch = accounts::get_user(&self.server_state.db, user_id)
            .await
            .unwrap()
            .auth_epoch;
        tokengate_server::auth::token::mint(
            &c.secret_bytes(),
            user_id,
            epoch,
            &c.api_audience(),
            scope,
            tokengate_core::now_ms() / 1000,
            3600,
        )
    }

    /// A user with `nanos` of credit and one key.
    pub async fn customer(&self, email: &str, nanos: i64, new: NewKey) -> (i64, String) {
        let db = &self.server_state.db;
        let user = accounts::create_user(db, email, "Test", None, accounts::Role::User)
            .await
            .unwrap();
        if nanos > 0 {
            accounts::apply_entry(
                db,
                accounts::Entry {
                    user_id: user.id,
                    kind: EntryKind::Promo,
                    amount_nano: nanos,
                    reference: None,
                    note: Some("test"),
                    created_by: None,
                    refuse_negative: false,
                },
            )
            .await
            .unwrap();
        }
        let secret = self.server_state.config.secret_bytes();
        let (key, raw) = keys::create(db, &secret, user.id, &new).await.unwrap();
        let gw = &self.server_state.gateway;
        gw.refresh().await.unwrap();
        // The gateway drops a balance refresh that overlapped a usage flush, so a new
        // account can stay unknown (401) until a later refresh; wait for it to be loaded.
        for _ in 0..100 {
            if gw.money.is_active(user.id) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
            gw.refresh().await.unwrap();
        }
        assert!(
            gw.money.is_active(user.id),
            "account {} never loaded",
            user.id
        );
        gw.key_changed(key);
        (user.id, raw)
    }

    /// Stops the server (graceful: drain, then flush); returns the data dir to keep it alive.
    pub async fn stop(mut self) -> TempDir {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.done).await;
        self._dir
    }
}

pub fn client() -> reqwest::Client {
    // A request that hangs fails its test instead of stalling the whole run.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

pub async fn chat(base: &str, key: &str, body: Value) -> (u16, reqwest::header::HeaderMap, Value) {
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

pub fn assert_error(v: &Value, typ: &str, code: &str) {
    assert_eq!(v["error"]["type"], typ, "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(v["error"]["message"].is_string(), "{v}");
    assert!(v["error"].as_object().unwrap().contains_key("param"), "{v}");
}

/// Waits until at least `n` request logs of `user_id` are stored; newest first.
pub async fn wait_for_logs(r: &Running, user_id: i64, n: usize) -> Vec<usage::RequestRecord> {
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

/// Runs `suite` against a PostgreSQL database of its own, created on the server named by
/// `TOKENGATE_TEST_PG` (e.g. `postgres://postgres@127.0.0.1:5432/test`, which
/// `scripts/test.sh` sets) and dropped afterwards. Without the variable the case is skipped
/// with a printed reason, so `cargo test` by hand works without a PostgreSQL server.
pub async fn on_postgres<F, Fut>(suite: F)
where
    F: FnOnce(Option<String>) -> Fut,
    Fut: Future<Output = ()>,
{
    let Ok(admin_url) = std::env::var("TOKENGATE_TEST_PG") else {
        eprintln!(
            "skipped: the PostgreSQL case needs TOKENGATE_TEST_PG \
             (e.g. postgres://postgres@127.0.0.1:5432/test); scripts/test.sh sets it"
        );
        return;
    };
    let name = format!("tg_it_{}_{}", std::process::id(), rand::random::<u32>());
    let admin = sqlx::PgPool::connect(&admin_url)
        .await
        .expect("PostgreSQL at 127.0.0.1:5432 (set TOKENGATE_TEST_PG)");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    let base = admin_url.rsplit_once('/').unwrap().0;
    // The database is dropped even when the suite fails; the failure is re-raised after.
    let outcome = AssertUnwindSafe(suite(Some(format!("{base}/{name}"))))
        .catch_unwind()
        .await;
    sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
        .execute(&admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
