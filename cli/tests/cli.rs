//! The `tokengate` binary against a real `tokengate-server` (demo mode, SQLite, a temp data
//! dir, a free port) started by each test: device login approved through the portal route
//! with a signed-in session, the key lifecycle (create → env → test → models → usage →
//! revoke → 401), `--json` on every command, 0600 files, token refresh (expired and
//! refused access tokens, rotation, a reused refresh token), denial, and the exit codes
//! against a closed port (2), a server answering 500 (3), a bad key (401 → 1) and an empty
//! balance (402 → 1). The server binary is the one cargo builds next to `tokengate`
//! (`cargo build -p tokengate-server`), or `TOKENGATE_BIN`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

const CLI: &str = env!("CARGO_BIN_EXE_tokengate");

// ----- plumbing ---------------------------------------------------------------------------

/// A directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let p = std::env::temp_dir().join(format!(
            "tokengate-cli-{label}-{}-{}-{nanos}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Removes every inherited `TOKENGATE_*` variable, so the caller's shell cannot leak in.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TOKENGATE_") {
            cmd.env_remove(k);
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn server_binary() -> PathBuf {
    if let Some(b) = std::env::var_os("TOKENGATE_BIN") {
        return PathBuf::from(b);
    }
    let bin = Path::new(CLI).with_file_name("tokengate-server");
    assert!(
        bin.exists(),
        "{} is missing: build it first with `cargo build -p tokengate-server` \
         (scripts/test.sh does), or point TOKENGATE_BIN at it",
        bin.display()
    );
    bin
}

/// A `tokengate-server` in demo mode on a free port; killed when dropped.
struct Server {
    child: Child,
    url: String,
    admin_email: String,
    admin_password: String,
    dir: TempDir,
}

impl Server {
    fn start() -> Server {
        let dir = TempDir::new("server");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let stdout = dir.path().join("stdout.log");
        let stderr = dir.path().join("stderr.log");
        let mut cmd = Command::new(server_binary());
        clean_env(&mut cmd);
        cmd.env("TOKENGATE_DATA_DIR", dir.path().join("data"))
            .env("TOKENGATE_LISTEN", format!("127.0.0.1:{port}"))
            .env("TOKENGATE_PUBLIC_URL", &url)
            .env("TOKENGATE_DEMO", "1")
            .env("TOKENGATE_LOG", "warn")
            .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(".."))
            .stdin(Stdio::null())
            .stdout(fs::File::create(&stdout).unwrap())
            .stderr(fs::File::create(&stderr).unwrap());
        let child = cmd.spawn().unwrap();
        let mut server = Server {
            child,
            url,
            admin_email: String::new(),
            admin_password: String::new(),
            dir,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "tokengate-server exited with {status}:\n{}",
                    fs::read_to_string(&stderr).unwrap_or_default()
                );
            }
            let out = fs::read_to_string(&stdout).unwrap_or_default();
            // The value is the first word (the banner marks demo secrets after it).
            let field = |label: &str| {
                out.lines()
                    .find_map(|l| l.strip_prefix(label))
                    .and_then(|v| v.split_whitespace().next())
                    .map(str::to_string)
            };
            if let (Some(email), Some(pw), Some(_key)) = (
                field("Admin email:"),
                field("Admin password:"),
                field("API key:"),
            ) {
                let healthy = block_on(async {
                    http()
                        .get(format!("{}/healthz", server.url))
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200)
                });
                if healthy {
                    server.admin_email = email;
                    server.admin_password = pw;
                    return server;
                }
            }
            assert!(
                Instant::now() < deadline,
                "tokengate-server not ready:\n{}",
                fs::read_to_string(&stderr).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Signs in at the portal (`POST /auth/login`); the session cookie's value.
    fn sign_in(&self, email: &str, password: &str) -> String {
        self.session_from("/auth/login", &[("email", email), ("password", password)])
    }

    /// Creates a customer account (`POST /auth/signup`); the session cookie's value.
    fn sign_up(&self, email: &str, password: &str) -> String {
        self.session_from(
            "/auth/signup",
            &[
                ("email", email),
                ("password", password),
                ("display_name", "Zero"),
            ],
        )
    }

    fn session_from(&self, path: &str, form: &[(&str, &str)]) -> String {
        block_on(async {
            let resp = http()
                .post(format!("{}{path}", self.url))
                .header("origin", &self.url)
                .form(form)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303, "{path}");
            assert_eq!(location(&resp), "/console", "{path}");
            resp.headers()
                .get_all("set-cookie")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|c| c.strip_prefix("tg_session="))
                .and_then(|c| c.split(';').next())
                .expect("a session cookie")
                .to_string()
        })
    }

    /// Approves or denies a device code at the portal route, as the signed-in `cookie`.
    fn decide_device(&self, cookie: &str, user_code: &str, action: &str) {
        block_on(async {
            let resp = http()
                .post(format!("{}/auth/device", self.url))
                .header("origin", &self.url)
                .header("cookie", format!("tg_session={cookie}"))
                .form(&[("user_code", user_code), ("action", action)])
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303);
            let done = if action == "approve" {
                "approved"
            } else {
                "denied"
            };
            assert_eq!(location(&resp), format!("/device?done={done}"));
        })
    }

    /// A new API key of the signed-in `cookie`'s account, through the account API.
    fn create_key(&self, cookie: &str, name: &str) -> String {
        block_on(async {
            let resp = http()
                .post(format!("{}/api/v1/me/keys", self.url))
                .header("origin", &self.url)
                .header("cookie", format!("tg_session={cookie}"))
                .json(&json!({"name": name}))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201);
            let v: Value = resp.json().await.unwrap();
            v["raw"].as_str().unwrap().to_string()
        })
    }

    /// One refresh-token grant straight at the token endpoint: (status, body).
    fn refresh_grant(&self, refresh_token: &str) -> (u16, Value) {
        block_on(async {
            let resp = http()
                .post(format!("{}/api/v1/auth/token", self.url))
                .form(&[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("client_id", "tokengate-cli"),
                ])
                .send()
                .await
                .unwrap();
            (resp.status().as_u16(), resp.json().await.unwrap())
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = &self.dir;
    }
}

fn location(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// One finished `tokengate` run.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// Stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    #[track_caller]
    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }

    #[track_caller]
    fn fails(self, code: i32) -> Run {
        assert_eq!(self.code, code, "{self:?}");
        self
    }
}

/// Where `tokengate` runs: its HOME (or a config dir) and the server it talks to.
struct Cli {
    home: TempDir,
    api_url: String,
    /// Use TOKENGATE_CONFIG_DIR instead of HOME/.tokengate.
    config_dir: Option<PathBuf>,
}

impl Cli {
    fn new(api_url: &str) -> Cli {
        Cli {
            home: TempDir::new("home"),
            api_url: api_url.to_string(),
            config_dir: None,
        }
    }

    fn with_config_dir(api_url: &str) -> Cli {
        let mut c = Cli::new(api_url);
        c.config_dir = Some(c.home.path().join("cfg"));
        c
    }

    fn dir(&self) -> PathBuf {
        self.config_dir
            .clone()
            .unwrap_or_else(|| self.home.path().join(".tokengate"))
    }

    fn credentials(&self) -> PathBuf {
        self.dir().join("credentials.json")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(CLI);
        clean_env(&mut cmd);
        cmd.args(args)
            .env("HOME", self.home.path())
            .env("TOKENGATE_API_URL", &self.api_url)
            .stdin(Stdio::null());
        if let Some(d) = &self.config_dir {
            cmd.env("TOKENGATE_CONFIG_DIR", d);
        }
        cmd
    }

    fn run(&self, args: &[&str]) -> Run {
        self.run_env(args, &[])
    }

    fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        Run::from(cmd.output().unwrap())
    }

    /// `tokengate login` with `args`, decided in the portal by `decide(user_code)` once the
    /// code is printed. Returns the run and the first (pending) JSON line.
    fn login(
        &self,
        args: &[&str],
        env: &[(&str, &str)],
        decide: impl FnOnce(&str),
    ) -> (Run, Value) {
        let mut cmd = self.command(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        let pending: Value = match serde_json::from_str(&first) {
            Ok(v) => v,
            Err(e) => {
                let _ = child.kill();
                let mut err = String::new();
                let _ = child.stderr.take().unwrap().read_to_string(&mut err);
                panic!("first login line is not JSON ({e}): {first:?} {err}");
            }
        };
        decide(pending["user_code"].as_str().expect("a user_code"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("login did not finish");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let mut rest = String::new();
        stdout.read_to_string(&mut rest).unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let code = child.wait().unwrap().code().unwrap_or(-1);
        (
            Run {
                code,
                stdout: rest,
                stderr,
            },
            pending,
        )
    }
}

fn mode(p: &Path) -> u32 {
    fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

fn read_json(p: &Path) -> Value {
    serde_json::from_str(&fs::read_to_string(p).unwrap()).unwrap()
}

/// Rewrites some fields of the stored credentials (keeping the file's mode).
fn edit_credentials(p: &Path, f: impl FnOnce(&mut Value)) {
    let mut c = read_json(p);
    f(&mut c);
    fs::write(p, serde_json::to_vec(&c).unwrap()).unwrap();
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// A credentials file for `api_url` whose access token is still valid, so commands go
/// straight to the account API.
fn fake_credentials(cli: &Cli, api_url: &str) {
    fs::create_dir_all(cli.dir()).unwrap();
    let c = json!({
        "api_url": api_url,
        "client_id": "tokengate-cli",
        "token_endpoint": format!("{api_url}/api/v1/auth/token"),
        "resource": format!("{api_url}/api/v1"),
        "access_token": "not-a-real-token",
        "refresh_token": "not-a-real-refresh-token",
        "scope": "account keys billing offline_access",
        "expires_at": now() + 3600,
    });
    fs::write(cli.credentials(), c.to_string()).unwrap();
}

// ----- tests ------------------------------------------------------------------------------

#[test]
fn help_on_every_command_shows_examples() {
    let cli = Cli::new("http://127.0.0.1:9");
    let commands: &[&[&str]] = &[
        &[],
        &["login"],
        &["logout"],
        &["whoami"],
        &["keys"],
        &["keys", "create"],
        &["keys", "list"],
        &["keys", "revoke"],
        &["balance"],
        &["usage"],
        &["models"],
        &["topup"],
        &["env"],
        &["test"],
    ];
    for c in commands {
        let mut args = c.to_vec();
        args.push("--help");
        let r = cli.run(&args).ok();
        assert!(r.stdout.contains("Examples:"), "{c:?}: {}", r.stdout);
        assert!(r.stdout.contains("tokengate "), "{c:?}");
    }
    // A usage error is a user error (1), not clap's 2, and JSON when asked for.
    let r = cli.run(&["usage", "--days", "0"]).fails(1);
    assert!(r.stderr.contains("365"), "{r:?}");
    let r = cli.run(&["keys", "create", "--json"]).fails(1);
    assert!(r.json()["error"].as_str().unwrap().contains("--name"));
    let r = cli
        .run_env(&["frobnicate"], &[("TOKENGATE_JSON", "1")])
        .fails(1);
    assert!(r.json()["error"].is_string());
    // No key anywhere: a user error that says what to do.
    let r = cli.run(&["env"]).fails(1);
    assert!(r.stderr.contains("keys create"), "{r:?}");
    let r = cli.run(&["whoami", "--json"]).fails(1);
    assert_eq!(r.json()["error"], "not signed in");
}

#[test]
fn unreachable_server_exits_2() {
    let url = format!("http://127.0.0.1:{}", free_port());
    let cli = Cli::with_config_dir(&url);
    for args in [
        &["models", "--key", "sk-tg-x"][..],
        &["test", "--key", "sk-tg-x"],
        &["login", "--no-open"],
    ] {
        let r = cli.run(args).fails(2);
        assert!(r.stderr.contains("could not reach"), "{r:?}");
    }
    let r = cli.run(&["login", "--json"]).fails(2);
    assert_eq!(r.json()["code"], "network_error");
    fake_credentials(&cli, &url);
    let r = cli.run(&["whoami", "--json"]).fails(2);
    assert_eq!(r.json()["exit_code"], 2);
}

/// A server that answers every request with a 500.
fn failing_server() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || answer_500(stream));
        }
    });
    url
}

fn answer_500(mut s: TcpStream) {
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Read the head and any body, so closing does not reset the connection.
    loop {
        let Ok(n) = s.read(&mut chunk) else { return };
        if n == 0 {
            return;
        }
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(end) = text.find("\r\n\r\n") {
            let len = text[..end]
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())
                        .flatten()
                })
                .unwrap_or(0);
            if buf.len() >= end + 4 + len {
                break;
            }
        }
    }
    let body = "Internal Server Error";
    let _ = write!(
        s,
        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

#[test]
fn server_errors_exit_3() {
    let url = failing_server();
    let cli = Cli::with_config_dir(&url);
    for args in [
        &["models", "--key", "sk-tg-x"][..],
        &["test", "--key", "sk-tg-x"],
        &["login", "--no-open"],
    ] {
        let r = cli.run(args).fails(3);
        assert!(r.stderr.contains("HTTP 500"), "{r:?}");
    }
    let r = cli.run(&["login", "--json"]).fails(3);
    assert_eq!(r.json()["status"], 500);
    fake_credentials(&cli, &url);
    for args in [&["whoami", "--json"][..], &["balance", "--json"]] {
        let r = cli.run(args).fails(3);
        assert_eq!(r.json()["exit_code"], 3);
    }
}

#[test]
fn device_login_and_key_lifecycle() {
    let server = Server::start();
    let admin = server.sign_in(&server.admin_email, &server.admin_password);
    // HOME only: the files go to $HOME/.tokengate.
    let cli = Cli::new(&server.url);

    // Login: the code printed, approved in the portal, the tokens stored 0600.
    let (run, pending) = cli.login(&["login", "--json"], &[], |code| {
        server.decide_device(&admin, code, "approve")
    });
    let run = run.ok();
    assert_eq!(pending["status"], "pending");
    assert_eq!(
        pending["verification_uri"],
        format!("{}/device", server.url)
    );
    assert!(
        pending["verification_uri_complete"]
            .as_str()
            .unwrap()
            .ends_with(pending["user_code"].as_str().unwrap())
    );
    let done = run.json();
    assert_eq!(done["status"], "logged_in");
    assert_eq!(done["user"]["email"], server.admin_email);
    let creds_path = cli.credentials();
    assert_eq!(
        creds_path,
        cli.home.path().join(".tokengate/credentials.json")
    );
    assert_eq!(mode(&creds_path), 0o600);
    assert_eq!(mode(&cli.dir()), 0o700);
    let creds = read_json(&creds_path);
    assert_eq!(creds["api_url"], server.url);
    assert!(creds["expires_at"].as_i64().unwrap() > now() + 3000);

    // Account.
    let me = cli.run(&["whoami", "--json"]).ok().json();
    assert_eq!(me["email"], server.admin_email);
    assert!(
        cli.run(&["whoami"])
            .ok()
            .stdout
            .contains(&server.admin_email)
    );
    let bal = cli.run(&["balance", "--json"]).ok().json();
    assert_eq!(bal, json!({"balance_usd": "5.00", "currency": "USD"}));
    assert!(cli.run(&["balance"]).ok().stdout.contains("$5.00"));

    // keys create: the raw key once, cached 0600.
    let key = cli
        .run(&[
            "keys",
            "create",
            "--name",
            "cli-test",
            "--expires",
            "30d",
            "--json",
        ])
        .ok()
        .json();
    let raw = key["raw"].as_str().unwrap().to_string();
    assert!(raw.starts_with("sk-tg-"), "{key}");
    assert_eq!(key["name"], "cli-test");
    assert!(key["expires_at"].is_string());
    let last_key = cli.dir().join("last_key.txt");
    assert_eq!(fs::read_to_string(&last_key).unwrap().trim(), raw);
    assert_eq!(mode(&last_key), 0o600);
    let human = cli
        .run(&["keys", "create", "--name", "uncached", "--no-cache"])
        .ok();
    assert!(human.stdout.trim().starts_with("sk-tg-"), "{human:?}");
    assert_eq!(fs::read_to_string(&last_key).unwrap().trim(), raw);

    // keys list: an array, never a raw key.
    let list = cli.run(&["keys", "list", "--json"]).ok();
    let keys = list.json();
    assert!(
        keys.as_array()
            .unwrap()
            .iter()
            .any(|k| k["id"] == key["id"] && k["status"] == "active")
    );
    assert!(!list.stdout.contains(&raw) && !list.stdout.contains("\"raw\""));
    let table = cli.run(&["keys", "list"]).ok().stdout;
    assert!(
        table.contains("cli-test") && !table.contains(&raw),
        "{table}"
    );

    // env: plain lines for .env, from the cached key.
    let env = cli.run(&["env"]).ok();
    assert_eq!(
        env.stdout,
        format!("OPENAI_API_KEY={raw}\nOPENAI_BASE_URL={}/v1\n", server.url)
    );
    let env = cli.run(&["env", "--anthropic", "--json"]).ok().json();
    assert_eq!(env["OPENAI_API_KEY"], raw.as_str());
    assert_eq!(env["OPENAI_BASE_URL"], format!("{}/v1", server.url));
    assert_eq!(env["ANTHROPIC_API_KEY"], raw.as_str());
    assert_eq!(env["ANTHROPIC_BASE_URL"], server.url);
    let other = cli
        .run_env(&["env"], &[("TOKENGATE_API_KEY", "sk-tg-from-env")])
        .ok();
    assert!(other.stdout.starts_with("OPENAI_API_KEY=sk-tg-from-env\n"));

    // test: one chat completion with the cached key.
    let t = cli.run(&["test", "--json"]).ok().json();
    assert_eq!(t["ok"], true);
    assert_eq!(t["model"], "tokengate-fast");
    assert_eq!(t["served_model"], "mock/fast-1");
    assert!(!t["reply"].as_str().unwrap().is_empty());
    let t = cli.run(&["test", "--model", "mock/smart-1"]).ok();
    assert!(t.stdout.starts_with("OK connected (mock/smart-1"), "{t:?}");

    // models: prices per 1k tokens.
    let models = cli.run(&["models", "--json"]).ok().json();
    let fast = models
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["id"] == "mock/fast-1")
        .unwrap()
        .clone();
    assert_eq!(fast["input_usd_per_1k"], "0.00015");
    assert_eq!(fast["output_usd_per_1k"], "0.0006");
    assert!(
        models
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == "tokengate-fast")
    );
    let table = cli.run(&["models"]).ok().stdout;
    assert!(
        table.contains("INPUT $/1K") && table.contains("0.00015"),
        "{table}"
    );

    // usage: the two test calls (the usage writer flushes every 250 ms).
    let mut usage = Value::Null;
    for _ in 0..40 {
        usage = cli.run(&["usage", "--days", "7", "--json"]).ok().json();
        if usage["total_requests"].as_i64() >= Some(2) {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(usage["range_days"], 7);
    assert!(usage["total_requests"].as_i64() >= Some(2), "{usage}");
    assert!(cli.run(&["usage"]).ok().stdout.contains("Last 30 days"));

    // topup: no payment provider here → 503 → 3, said plainly; bad amounts → 1.
    let r = cli.run(&["topup", "--amount", "5", "--json"]).fails(3);
    let e = r.json();
    assert_eq!(e["code"], "payments_unavailable");
    assert_eq!(e["status"], 503);
    let r = cli.run(&["topup", "--amount", "5"]).fails(3);
    assert!(r.stderr.contains("Top-ups are not available"), "{r:?}");
    assert_eq!(
        cli.run(&["topup", "--amount", "0.5", "--json"])
            .fails(1)
            .json()["status"],
        422
    );
    cli.run(&["topup", "--amount", "lots"]).fails(1);

    // revoke → the cached key gets 401 → exit 1.
    let id = key["id"].to_string();
    let r = cli.run(&["keys", "revoke", &id, "--json"]).ok().json();
    assert_eq!(r["status"], "revoked");
    let r = cli.run(&["test", "--json"]).fails(1).json();
    assert_eq!(r["status"], 401);
    assert_eq!(r["code"], "invalid_api_key");
    let r = cli.run(&["test"]).fails(1);
    assert!(r.stderr.contains("keys list"), "{r:?}");
    cli.run(&["keys", "revoke", "999999"]).fails(1);
    let r = cli
        .run(&["keys", "revoke", "uncached", "--json"])
        .ok()
        .json();
    assert_eq!(r["status"], "revoked");

    // Refresh shortly before expiry: the access token is replaced, the refresh token
    // rotates, and the file stays 0600. (The server's access tokens live an hour, so the
    // CLI's stored expiry is moved instead of waiting.)
    let before = read_json(&creds_path);
    edit_credentials(&creds_path, |c| c["expires_at"] = json!(now() + 30));
    cli.run(&["balance", "--json"]).ok();
    let mid = read_json(&creds_path);
    assert_ne!(mid["access_token"], before["access_token"]);
    assert_ne!(mid["refresh_token"], before["refresh_token"]);
    assert!(mid["expires_at"].as_i64().unwrap() > now() + 3000);
    assert_eq!(mode(&creds_path), 0o600);
    // And after expiry.
    edit_credentials(&creds_path, |c| c["expires_at"] = json!(now() - 10));
    // The balance is exact: $5 less the sub-cent cost of the calls above.
    let balance = cli.run(&["balance", "--json"]).ok().json()["balance_usd"].clone();
    let balance: tokengate_api::Usd = serde_json::from_value(balance).unwrap();
    assert!(
        balance < tokengate_api::Usd(5_000_000_000) && balance > tokengate_api::Usd(4_990_000_000),
        "{balance}"
    );
    let after = read_json(&creds_path);
    assert_ne!(after["refresh_token"], mid["refresh_token"]);
    assert!(after["expires_at"].as_i64().unwrap() > now() + 3000);

    // Several processes finding the token expired at once: the refresh lock lets one of
    // them refresh and the others reuse its tokens, so no rotated refresh token is ever
    // presented again (which would revoke the family and sign everyone out).
    edit_credentials(&creds_path, |c| c["expires_at"] = json!(now() - 10));
    let children: Vec<Child> = (0..4)
        .map(|_| {
            cli.command(&["balance", "--json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for c in children {
        Run::from(c.wait_with_output().unwrap()).ok();
    }
    // The family is intact: the next refresh works too.
    edit_credentials(&creds_path, |c| c["expires_at"] = json!(now() - 10));
    cli.run(&["balance", "--json"]).ok();
    let after = read_json(&creds_path);

    // An access token the server refuses (still "valid" locally): one refresh, one retry.
    edit_credentials(&creds_path, |c| c["access_token"] = json!("garbage"));
    assert_eq!(
        cli.run(&["whoami", "--json"]).ok().json()["email"],
        server.admin_email
    );
    let latest = read_json(&creds_path);
    assert_ne!(latest["refresh_token"], after["refresh_token"]);

    // The first refresh token was rotated away: reusing it is refused (and, by design,
    // revokes the family), after which the CLI asks for a new login: exit 1.
    let (status, body) = server.refresh_grant(before["refresh_token"].as_str().unwrap());
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_grant");
    edit_credentials(&creds_path, |c| c["expires_at"] = json!(now() - 10));
    let r = cli.run(&["balance"]).fails(1);
    assert!(r.stderr.contains("tokengate login"), "{r:?}");

    // logout.
    let r = cli.run(&["logout", "--json"]).ok().json();
    assert_eq!(r, json!({"logged_out": true, "had_credentials": true}));
    assert!(!creds_path.exists());
    cli.run(&["whoami"]).fails(1);
    assert_eq!(
        cli.run(&["logout", "--json"]).ok().json()["had_credentials"],
        false
    );
}

#[test]
fn denied_login_exits_3() {
    let server = Server::start();
    let admin = server.sign_in(&server.admin_email, &server.admin_password);
    let cli = Cli::with_config_dir(&server.url);
    let (run, pending) = cli.login(&["login"], &[("TOKENGATE_JSON", "1")], |code| {
        server.decide_device(&admin, code, "deny")
    });
    assert_eq!(pending["status"], "pending");
    let run = run.fails(3);
    let e = run.json();
    assert_eq!(e["code"], "access_denied");
    assert_eq!(e["exit_code"], 3);
    assert!(!cli.credentials().exists());
}

#[test]
fn refused_key_and_empty_balance_exit_1() {
    let server = Server::start();
    let cli = Cli::with_config_dir(&server.url);

    // 401: a key the server does not know.
    let r = cli
        .run(&["models", "--key", "sk-tg-bogus", "--json"])
        .fails(1)
        .json();
    assert_eq!(r["status"], 401);
    let r = cli.run(&["test", "--key", "sk-tg-bogus"]).fails(1);
    assert!(r.stderr.contains("Invalid API key"), "{r:?}");

    // 402: a new customer with no credit.
    let cookie = server.sign_up("zero@example.com", "a long enough password");
    let key = server.create_key(&cookie, "empty");
    let r = cli.run(&["test", "--key", &key]).fails(1);
    assert!(r.stderr.contains("balance is empty"), "{r:?}");
    assert!(r.stderr.contains("tokengate topup"), "{r:?}");
    let r = cli
        .run_env(&["test", "--json"], &[("TOKENGATE_API_KEY", &key)])
        .fails(1)
        .json();
    assert_eq!(r["status"], 402);
    assert_eq!(r["code"], "insufficient_balance");
    assert!(r["hint"].as_str().unwrap().contains("topup"));
    // The key itself is fine for listing models.
    let models = cli.run(&["models", "--key", &key, "--json"]).ok().json();
    assert!(!models.as_array().unwrap().is_empty());
}

// ----- logs export and completions --------------------------------------------------------

/// The API's CSV export, read with the portal session `cookie`.
fn api_csv(server: &Server, cookie: &str, query: &str) -> Vec<u8> {
    block_on(async {
        let resp = http()
            .get(format!("{}/api/v1/me/request-logs.csv?{query}", server.url))
            .header("cookie", format!("tg_session={cookie}"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        resp.bytes().await.unwrap().to_vec()
    })
}

#[test]
fn logs_export_is_the_api_csv_byte_for_byte_and_resumes() {
    let server = Server::start();
    let admin = server.sign_in(&server.admin_email, &server.admin_password);
    let cli = Cli::new(&server.url);
    cli.login(&["login", "--json"], &[], |code| {
        server.decide_device(&admin, code, "approve")
    })
    .0
    .ok();
    // Five requests.
    let key = server.create_key(&admin, "export");
    block_on(async {
        for model in ["tokengate-fast"; 5] {
            let _ = http()
                .post(format!("{}/v1/chat/completions", server.url))
                .bearer_auth(&key)
                .json(&json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}))
                .send()
                .await
                .unwrap();
        }
    });
    // Wait until the five rows are flushed to the log.
    let deadline = Instant::now() + Duration::from_secs(20);
    let full = loop {
        let csv = api_csv(&server, &admin, "from=2000-01-01");
        let rows = String::from_utf8(csv.clone())
            .unwrap()
            .matches("\r\n")
            .count();
        if rows >= 6 {
            break csv;
        }
        assert!(Instant::now() < deadline, "the log has {rows} lines");
        std::thread::sleep(Duration::from_millis(100));
    };

    // CSV: exactly the API's bytes, nothing else on stdout, no progress off a terminal.
    let out = Command::new(CLI)
        .args(["logs", "export", "--from", "2000-01-01"])
        .env("HOME", cli.home.path())
        .env("TOKENGATE_API_URL", &server.url)
        .env_remove("TOKENGATE_JSON")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, full, "the CLI's CSV differs from the API's");
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Resume after the second row: the rows after it, without a header.
    let text = String::from_utf8(full.clone()).unwrap();
    let rows: Vec<&str> = text.split_inclusive("\r\n").collect();
    let second_id = rows[2].split(',').nth(1).unwrap();
    let tail = cli
        .run(&[
            "logs",
            "export",
            "--from",
            "2000-01-01",
            "--after",
            second_id,
        ])
        .ok();
    assert_eq!(tail.stdout, rows[3..].concat());
    let unknown = cli.run(&["logs", "export", "--after", "req_nope"]);
    assert_eq!(unknown.code, 1, "{unknown:?}");

    // JSON Lines: one typed row per request, same order as the CSV.
    let jsonl = cli
        .run(&[
            "logs",
            "export",
            "--from",
            "2000-01-01",
            "--format",
            "jsonl",
        ])
        .ok();
    let ids: Vec<String> = jsonl
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["request_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let csv_ids: Vec<String> = rows[1..]
        .iter()
        .map(|r| r.split(',').nth(1).unwrap().to_string())
        .collect();
    assert_eq!(ids, csv_ids);
    let resumed = cli
        .run(&["logs", "export", "--format", "jsonl", "--after", second_id])
        .ok();
    assert_eq!(resumed.stdout.lines().count(), ids.len() - 2);
}

#[test]
fn completions_for_three_shells() {
    let cli = Cli::new("http://127.0.0.1:9");
    for (shell, marker) in [
        ("bash", "complete -F _tokengate"),
        ("zsh", "#compdef tokengate"),
        ("fish", "complete -c tokengate"),
    ] {
        let out = cli.run(&["completions", shell]).ok();
        assert!(out.stdout.contains(marker), "{shell}: {}", out.stdout);
        assert!(out.stdout.contains("export"), "{shell}: no logs export");
    }
    assert_eq!(cli.run(&["completions", "powershell-ish"]).code, 1);
}
