//! `tokengate-server init` and `doctor`, driven as an operator would: the real binary,
//! a temp dir, the mock upstream requiring a key (in-process), a fake OpenID discovery
//! document (a tiny axum server), SQLite and PostgreSQL (`TOKENGATE_TEST_PG`).
//! `init --non-interactive` writes a config `serve` starts with (healthz, a chat completion
//! through the configured provider), with the env file 0600 and no secret in the TOML;
//! `doctor` passes that config (exit 0) and names each purpose-broken item with exit 1 or 2.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_tokengate-server");
const UPSTREAM_KEY: &str = "sk-upstream-Zq81";

/// A temp dir removed when dropped.
struct Dir(PathBuf);
impl Dir {
    fn new(label: &str) -> Dir {
        let p = std::env::temp_dir().join(format!(
            "tg-init-{label}-{}-{}",
            std::process::id(),
            rand::random::<u32>()
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn serve_router(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    format!("http://{addr}")
}

/// The mock provider as an OpenAI-compatible upstream that wants `UPSTREAM_KEY`.
async fn upstream() -> String {
    serve_router(tokengate_server::mock_upstream::router_with_key(Some(
        UPSTREAM_KEY.into(),
    )))
    .await
}

/// An OpenID provider that serves only its discovery document.
async fn fake_idp() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let issuer = format!("http://{}", listener.local_addr().unwrap());
    let doc = json!({
        "issuer": issuer,
        "authorization_endpoint": format!("{issuer}/authorize"),
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
    });
    let router = axum::Router::new().route(
        "/.well-known/openid-configuration",
        axum::routing::get(move || {
            let doc = doc.clone();
            async move { axum::Json(doc) }
        }),
    );
    tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    issuer
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .into()
}

/// The binary with no inherited `TOKENGATE_*` variable, run from the workspace root.
fn command(args: &[&str]) -> std::process::Command {
    let mut cmd = std::process::Command::new(BIN);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENGATE_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args)
        .current_dir(workspace_root())
        .stdin(Stdio::null());
    cmd
}

/// A child process killed when dropped (also when the test fails).
struct Killed(std::process::Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

async fn run(args: &[&str], env: &[(&str, &str)]) -> Out {
    let mut cmd = command(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let o = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap();
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into(),
        stderr: String::from_utf8_lossy(&o.stderr).into(),
    }
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

// ----- init → serve → doctor ------------------------------------------------------------

async fn init_then_serve(database_url: Option<String>) {
    let dir = Dir::new("serve");
    let up = upstream().await;
    let idp = fake_idp().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = dir.0.join("tokengate.toml");
    let env_file = dir.0.join("tokengate.env");
    let data = dir.0.join("data");
    let db = database_url
        .clone()
        .unwrap_or_else(|| format!("sqlite://{}/tokengate.db", data.display()));
    let secrets = [
        UPSTREAM_KEY,
        "sk_test_51InitStripeKey0123",
        "whsec_InitWebhookSecret0123",
        "oidc-client-Secret-77",
    ];
    let listen = format!("127.0.0.1:{port}");
    let upstream_v1 = format!("{up}/v1");
    let args = vec![
        "init",
        "--non-interactive",
        "--config",
        p(&config),
        "--listen",
        &listen,
        "--public-url",
        &url,
        "--data-dir",
        p(&data),
        "--database-url",
        &db,
        "--openai-base-url",
        &upstream_v1,
        "--openai-api-key",
        secrets[0],
        "--model",
        "openai/fast-1=0.50,1.50",
        "--stripe-secret-key",
        secrets[1],
        "--stripe-webhook-secret",
        secrets[2],
        "--oidc-issuer",
        &idp,
        "--oidc-client-id",
        "tokengate",
        "--oidc-client-secret",
        secrets[3],
        "--admin-email",
        "ops@example.com",
    ];
    let out = run(&args, &[]).await;
    assert_eq!(out.code, 0, "init failed:\n{}\n{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("✓ openai"), "{}", out.stderr);
    assert!(out.stderr.contains("✓ oidc"), "{}", out.stderr);
    assert!(
        out.stdout
            .contains(&format!("{url}/webhooks/payments/stripe")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .contains(&format!("{url}/auth/oidc/sso/callback")),
        "{}",
        out.stdout
    );
    let password = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("Password (shown once, change it after signing in): "))
        .expect("the administrator's password")
        .trim()
        .to_string();

    // Files: the env file private, the TOML free of every secret (and of the database URL
    // on PostgreSQL, which may carry a password).
    assert_eq!(mode(&env_file), 0o600);
    let toml_text = std::fs::read_to_string(&config).unwrap();
    let env_text = std::fs::read_to_string(&env_file).unwrap();
    for s in secrets {
        assert!(!toml_text.contains(s), "{s} in the TOML:\n{toml_text}");
        assert!(env_text.contains(s), "{s} missing from the env file");
    }
    assert!(env_text.contains("TOKENGATE_SECRET_KEY="));
    if database_url.is_some() {
        assert!(!toml_text.contains(&db), "{toml_text}");
        assert!(env_text.contains("TOKENGATE_DATABASE_URL="));
    }
    assert!(toml_text.contains("demo = false"));

    // A second init refuses to overwrite; --force would.
    let again = run(&args, &[]).await;
    assert_eq!(again.code, 1, "{}", again.stderr);
    assert!(again.stderr.contains("--force"), "{}", again.stderr);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), toml_text);

    // doctor: all good.
    let doc = run(
        &["--config", p(&config), "--env-file", p(&env_file), "doctor"],
        &[],
    )
    .await;
    assert_eq!(doc.code, 0, "doctor:\n{}\n{}", doc.stdout, doc.stderr);
    for line in [
        "✓ database",
        "✓ env file",
        "✓ secret key",
        "✓ demo mode: off",
        "✓ provider openai",
        "✓ prices: set for all 1 routable model(s)",
        "✓ stripe:",
        "✓ oidc sso",
    ] {
        assert!(doc.stdout.contains(line), "no {line:?} in\n{}", doc.stdout);
    }

    // serve starts with exactly these two files.
    let mut server = Killed(
        command(&["--config", p(&config), "--env-file", p(&env_file)])
            .env("TOKENGATE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let http = common::client();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(format!("{url}/healthz")).send().await
            && r.status() == 200
        {
            break;
        }
        if let Some(status) = server.0.try_wait().unwrap() {
            let mut err = String::new();
            use std::io::Read;
            server
                .0
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            panic!("serve exited with {status}:\n{err}");
        }
        assert!(Instant::now() < deadline, "serve did not become healthy");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The administrator init created signs in; credit and a key, then one chat completion
    // through the provider init configured.
    let token = run(
        &[
            "--config",
            p(&config),
            "--env-file",
            p(&env_file),
            "admin",
            "token",
            "--email",
            "ops@example.com",
        ],
        &[],
    )
    .await;
    assert_eq!(token.code, 0, "{}", token.stderr);
    let token = token.stdout.trim().to_string();
    let login = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!("{url}/auth/login"))
        .header("origin", &url)
        .form(&[
            ("email", "ops@example.com"),
            ("password", password.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303, "the printed password signs in");
    assert_eq!(
        login.headers()["location"].to_str().unwrap(),
        "/console",
        "the printed password signs in"
    );
    let me: Value = http
        .get(format!("{url}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = me["id"].as_i64().unwrap();
    let r = http
        .post(format!("{url}/api/v1/admin/users/{id}/credit"))
        .bearer_auth(&token)
        .json(&json!({"amount_usd": "5.00", "reason": "init test"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let key: Value = http
        .post(format!("{url}/api/v1/me/keys"))
        .bearer_auth(&token)
        .json(&json!({"name": "init-test"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let raw = key["raw"].as_str().expect("a raw key").to_string();
    let (status, _, body) = common::chat(
        &url,
        &raw,
        json!({"model": "openai/fast-1", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["choices"][0]["message"]["content"].is_string(),
        "{body}"
    );
    drop(server);
}

#[tokio::test]
async fn init_writes_a_config_serve_starts_with_on_sqlite() {
    init_then_serve(None).await;
}

#[tokio::test]
async fn init_writes_a_config_serve_starts_with_on_postgres() {
    common::on_postgres(|url| async move {
        if let Some(url) = url {
            init_then_serve(Some(url)).await;
        }
    })
    .await;
}

#[tokio::test]
async fn init_checks_before_writing() {
    let dir = Dir::new("refuse");
    let up = upstream().await;
    let config = dir.0.join("tokengate.toml");
    let data = dir.0.join("data");
    let base = [
        "init",
        "--non-interactive",
        "--config",
        p(&config),
        "--data-dir",
        p(&data),
    ];
    let upstream_v1 = format!("{up}/v1");
    for (extra, expect) in [
        (
            vec![
                "--openai-base-url",
                &upstream_v1,
                "--openai-api-key",
                "wrong",
            ],
            "key rejected (HTTP 401)",
        ),
        (
            vec![
                "--openai-base-url",
                &upstream_v1,
                "--openai-api-key",
                UPSTREAM_KEY,
                "--model",
                "openai/not-there=1,2",
            ],
            "does not offer \"not-there\"",
        ),
        (
            vec!["--stripe-secret-key", "sk_test_51InitStripeKey0123"],
            "set both",
        ),
        (
            vec![
                "--stripe-secret-key",
                "pk_test_51InitStripeKey0123",
                "--stripe-webhook-secret",
                "whsec_InitWebhookSecret0123",
            ],
            "sk_live_",
        ),
        (vec!["--redis-url", "redis://127.0.0.1:1"], "cannot connect"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra.iter().copied());
        let out = run(&args, &[]).await;
        assert_eq!(out.code, 1, "{args:?}: {}", out.stderr);
        assert!(out.stderr.contains(expect), "{args:?}: {}", out.stderr);
        assert!(!config.exists(), "{args:?} wrote a config");
        // Secrets given on the command line never come back in an error.
        assert!(!out.stderr.contains("wrong\""), "{}", out.stderr);
    }
}

// ----- doctor on purpose-broken configs ---------------------------------------------------

/// A good config (SQLite migrated, the mock upstream with its key, one priced model, the
/// secret key in a 0600 env file) that each case breaks in one place.
struct Setup {
    dir: Dir,
    up: String,
}

impl Setup {
    async fn new() -> Setup {
        let dir = Dir::new("doctor");
        let db = format!("sqlite://{}/data/tokengate.db", dir.0.display());
        std::fs::create_dir_all(dir.0.join("data")).unwrap();
        tokengate_core::Db::connect(&db)
            .await
            .unwrap()
            .close()
            .await;
        Setup {
            dir,
            up: upstream().await,
        }
    }

    /// Writes the config with `edit` applied to its text and the env file with `env`
    /// lines, runs doctor; (exit code, stdout).
    async fn doctor(
        &self,
        edit: impl Fn(String) -> String,
        env: &str,
        env_mode: u32,
    ) -> (i32, String) {
        let d = &self.dir.0;
        let toml_text = format!(
            "listen = \"127.0.0.1:3999\"\npublic_url = \"http://127.0.0.1:3999\"\n\
             data_dir = \"{data}\"\ndatabase_url = \"sqlite://{data}/tokengate.db\"\ndemo = false\n\n\
             [[providers]]\nname = \"up\"\nkind = \"openai\"\nbase_url = \"{up}/v1\"\n\
             api_key_env = \"UP_KEY\"\n\n\
             [[models]]\nname = \"up/fast-1\"\nprovider = \"up\"\nupstream_model = \"fast-1\"\n\
             input_usd_per_m = \"0.50\"\noutput_usd_per_m = \"1.50\"\n",
            data = d.join("data").display(),
            up = self.up
        );
        let config = d.join("tokengate.toml");
        let env_file = d.join("tokengate.env");
        std::fs::write(&config, edit(toml_text)).unwrap();
        let _ = std::fs::remove_file(&env_file);
        std::fs::write(&env_file, env).unwrap();
        std::fs::set_permissions(&env_file, std::fs::Permissions::from_mode(env_mode)).unwrap();
        let out = run(
            &["--config", p(&config), "--env-file", p(&env_file), "doctor"],
            &[],
        )
        .await;
        assert!(out.stderr.is_empty() || out.code >= 0, "{}", out.stderr);
        (out.code, out.stdout)
    }
}

const GOOD_ENV: &str = "TOKENGATE_SECRET_KEY=0123456789abcdef0123456789abcdef0123456789abcdef\n\
                        UP_KEY=sk-upstream-Zq81\n";

#[track_caller]
fn expect(out: &(i32, String), code: i32, line_start: &str) {
    assert_eq!(out.0, code, "exit code, report:\n{}", out.1);
    assert!(
        out.1
            .lines()
            .any(|l| l.starts_with(line_start) && (code == 0 || l.contains("fix:"))),
        "no line starting {line_start:?} (with its fix) in:\n{}",
        out.1
    );
}

#[tokio::test]
async fn doctor_names_each_broken_item() {
    let s = Setup::new().await;
    let same = |t: String| t;

    let good = s.doctor(same, GOOD_ENV, 0o600).await;
    expect(&good, 0, "✓ provider up:");
    assert!(
        !good.1.contains('✗') && !good.1.contains("\n! "),
        "{}",
        good.1
    );

    // Bad database URL.
    let out = s
        .doctor(
            |t| {
                let line = t.lines().find(|l| l.starts_with("database_url")).unwrap();
                t.replace(
                    line,
                    "database_url = \"postgres://nobody@127.0.0.1:1/none\"",
                )
            },
            GOOD_ENV,
            0o600,
        )
        .await;
    expect(
        &out,
        2,
        "✗ database: postgres://nobody@127.0.0.1:1/none unreachable",
    );

    // Unreachable provider.
    let closed = format!("http://127.0.0.1:{}", free_port());
    let up = s.up.clone();
    let out = s.doctor(|t| t.replace(&up, &closed), GOOD_ENV, 0o600).await;
    expect(&out, 2, "✗ provider up:");
    assert!(out.1.contains("unreachable"), "{}", out.1);

    // Wrong provider key.
    let out = s
        .doctor(
            same,
            &GOOD_ENV.replace("sk-upstream-Zq81", "sk-wrong"),
            0o600,
        )
        .await;
    expect(&out, 2, "✗ provider up:");
    assert!(out.1.contains("rejected the key (HTTP 401)"), "{}", out.1);
    assert!(out.1.contains("set UP_KEY"), "{}", out.1);
    assert!(
        !out.1.contains("sk-wrong"),
        "the key is printed:\n{}",
        out.1
    );

    // A model the provider does not offer.
    let out = s
        .doctor(
            |t| t.replace("upstream_model = \"fast-1\"", "upstream_model = \"gone-9\""),
            GOOD_ENV,
            0o600,
        )
        .await;
    expect(&out, 2, "✗ model up/fast-1: up does not offer \"gone-9\"");

    // World-readable secrets: the env file, and a secret.key file.
    let out = s.doctor(same, GOOD_ENV, 0o644).await;
    expect(&out, 2, "✗ env file:");
    assert!(out.1.contains("chmod 600"), "{}", out.1);
    let key_file = s.dir.0.join("data/secret.key");
    std::fs::write(&key_file, "f".repeat(64)).unwrap();
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = s.doctor(same, "UP_KEY=sk-upstream-Zq81\n", 0o600).await;
    expect(&out, 2, "✗ secret key:");
    std::fs::remove_file(&key_file).unwrap();

    // Demo mode on.
    let out = s
        .doctor(
            |t| t.replace("demo = false", "demo = true"),
            GOOD_ENV,
            0o600,
        )
        .await;
    expect(&out, 2, "✗ demo mode: on");

    // Stripe half-configured.
    let out = s
        .doctor(
            same,
            &format!("{GOOD_ENV}TOKENGATE_STRIPE_SECRET_KEY=sk_test_51InitStripeKey0123\n"),
            0o600,
        )
        .await;
    expect(&out, 2, "✗ configuration:");
    assert!(out.1.contains("stripe: set both"), "{}", out.1);
    assert!(!out.1.contains("sk_test_51Init"), "{}", out.1);

    // Warnings only: a free model and a public http URL is an error, a free model alone 1.
    let out = s
        .doctor(
            |t| t.replace("\"0.50\"", "\"0\"").replace("\"1.50\"", "\"0\""),
            GOOD_ENV,
            0o600,
        )
        .await;
    expect(&out, 1, "! price of up/fast-1:");
    let out = s
        .doctor(
            |t| {
                t.replace(
                    "public_url = \"http://127.0.0.1:3999\"",
                    "public_url = \"http://gw.example.com\"",
                )
            },
            GOOD_ENV,
            0o600,
        )
        .await;
    expect(&out, 2, "✗ public URL: http://gw.example.com is not https");
}
