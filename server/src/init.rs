//! `tokengate-server init`: the guided first configuration. Asks on a terminal (or takes
//! flags with `--non-interactive`) for the listen address and public URL, the database
//! (SQLite path or a PostgreSQL URL, connected and migrated), an optional Redis for cluster
//! mode (`PING`ed), the first providers (each key tested by listing the provider's models;
//! the found models offered for import, their prices set by the operator), Stripe (format
//! checked; the webhook URL printed) and an OpenID provider (discovery fetched; the redirect
//! URL printed), and creates the first administrator (password printed once). It then
//! writes a commented `tokengate.toml` holding no secret and a mode-0600 env file holding
//! every secret. Nothing is written until every answer has been checked, and existing files
//! are kept unless `--force`.

use std::io::{BufRead, IsTerminal, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use tokengate_api::kinds::ProviderKind;
use tokengate_core::{Db, accounts, money, password};

use crate::envfile;
use crate::probe;

/// Flags of `tokengate-server init`. The output paths are the global `--config` (default
/// `tokengate.toml`) and `--env-file` (default: the config's name with `.env`).
#[derive(Debug, Default, clap::Args)]
pub struct InitArgs {
    /// Ask nothing: take every answer from flags (missing optional parts are left out).
    #[arg(long)]
    pub non_interactive: bool,
    /// Overwrite an existing config file and env file.
    #[arg(long)]
    pub force: bool,
    /// Address and port to listen on [default: 127.0.0.1:3000].
    #[arg(long, value_name = "HOST:PORT")]
    pub listen: Option<String>,
    /// The URL users reach the server at [default: http://<listen>].
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// Directory for SQLite, the server secret and the usage log [default: ./data].
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// A SQLite path or URL (`sqlite://…`), or a PostgreSQL URL (`postgres://…`)
    /// [default: sqlite://<data-dir>/tokengate.db].
    #[arg(long, value_name = "PATH|URL")]
    pub database_url: Option<String>,
    /// Redis URL for cluster mode (`redis://host:6379/0`); leave out for one instance.
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,
    /// Base URL of an OpenAI-compatible provider, including `/v1`.
    #[arg(long, value_name = "URL")]
    pub openai_base_url: Option<String>,
    /// Key of the OpenAI-compatible provider (written to the env file as OPENAI_API_KEY).
    #[arg(long, value_name = "KEY")]
    pub openai_api_key: Option<String>,
    /// Base URL of an Anthropic provider [default: https://api.anthropic.com/v1].
    #[arg(long, value_name = "URL")]
    pub anthropic_base_url: Option<String>,
    /// Key of the Anthropic provider (written to the env file as ANTHROPIC_API_KEY).
    #[arg(long, value_name = "KEY")]
    pub anthropic_api_key: Option<String>,
    /// A model to offer, with its prices in USD per million input and output tokens:
    /// `openai/gpt-4o-mini=0.15,0.60` (provider/upstream-model). Repeatable; the model must
    /// be in the provider's list. Found models not named are written commented out.
    #[arg(long = "model", value_name = "PROVIDER/MODEL=IN,OUT")]
    pub models: Vec<String>,
    /// Stripe secret key (`sk_live_…`, `sk_test_…` or a restricted `rk_…`).
    #[arg(long, value_name = "KEY")]
    pub stripe_secret_key: Option<String>,
    /// Stripe webhook signing secret (`whsec_…`).
    #[arg(long, value_name = "SECRET")]
    pub stripe_webhook_secret: Option<String>,
    /// OpenID Connect issuer URL for portal sign-in.
    #[arg(long, value_name = "URL")]
    pub oidc_issuer: Option<String>,
    /// OpenID client id.
    #[arg(long, value_name = "ID")]
    pub oidc_client_id: Option<String>,
    /// OpenID client secret (written to the env file).
    #[arg(long, value_name = "SECRET")]
    pub oidc_client_secret: Option<String>,
    /// Short id of the OpenID provider, used in its URLs [default: sso].
    #[arg(long, value_name = "ID")]
    pub oidc_id: Option<String>,
    /// The sign-in button's label [default: Single sign-on].
    #[arg(long, value_name = "LABEL")]
    pub oidc_name: Option<String>,
    /// Email of the first administrator (password generated and printed once).
    #[arg(long, value_name = "EMAIL")]
    pub admin_email: Option<String>,
    /// Display name of the first administrator.
    #[arg(long, value_name = "NAME", default_value = "Administrator")]
    pub admin_name: String,
}

/// A provider that answered its model list.
struct FoundProvider {
    name: &'static str,
    kind: ProviderKind,
    base_url: String,
    key_env: &'static str,
    key: Option<String>,
    models: Vec<String>,
}

/// A model chosen for import, with its prices (USD per million tokens, exact strings).
struct ChosenModel {
    provider: &'static str,
    upstream: String,
    input: String,
    output: String,
}

struct Oidc {
    id: String,
    name: String,
    issuer: String,
    client_id: String,
    client_secret: Option<String>,
}

/// Everything checked, ready to be written.
struct Answers {
    listen: SocketAddr,
    public_url: String,
    data_dir: PathBuf,
    database_url: String,
    redis_url: Option<String>,
    providers: Vec<FoundProvider>,
    models: Vec<ChosenModel>,
    stripe: Option<(String, String)>,
    oidc: Option<Oidc>,
}

/// Questions on the terminal, or the flags' values when not interactive.
struct Ask {
    interactive: bool,
}

impl Ask {
    fn line(&self, prompt: &str) -> Result<String, String> {
        eprint!("{prompt}");
        let _ = std::io::stderr().flush();
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut s)
            .map_err(|e| format!("reading the answer: {e}"))?;
        Ok(s.trim().to_string())
    }

    /// `given`, else (on a terminal) the answer, else `default`.
    fn text(
        &self,
        question: &str,
        given: Option<&String>,
        default: Option<&str>,
    ) -> Result<Option<String>, String> {
        if let Some(g) = given {
            return Ok(Some(g.clone()));
        }
        if !self.interactive {
            return Ok(default.map(str::to_string));
        }
        let prompt = match default {
            Some(d) => format!("{question} [{d}]: "),
            None => format!("{question} (blank: none): "),
        };
        let a = self.line(&prompt)?;
        Ok(if a.is_empty() {
            default.map(str::to_string)
        } else {
            Some(a)
        })
    }

    /// Like [`Ask::text`] without echoing the answer (`stty -echo` while reading).
    fn secret(&self, question: &str, given: Option<&String>) -> Result<Option<String>, String> {
        if given.is_some() || !self.interactive {
            return Ok(given.cloned());
        }
        let stty = |arg: &str| {
            std::process::Command::new("stty")
                .arg(arg)
                .stdin(std::process::Stdio::inherit())
                .status()
                .is_ok_and(|s| s.success())
        };
        let hidden = stty("-echo");
        let a = self.line(&format!("{question} (blank: none): "));
        if hidden {
            stty("echo");
            eprintln!();
        }
        let a = a?;
        Ok((!a.is_empty()).then_some(a))
    }

    fn yes(&self, question: &str, default: bool) -> Result<bool, String> {
        if !self.interactive {
            return Ok(default);
        }
        let hint = if default { "Y/n" } else { "y/N" };
        let a = self.line(&format!("{question} [{hint}]: "))?;
        Ok(match a.to_ascii_lowercase().as_str() {
            "" => default,
            "y" | "yes" => true,
            _ => false,
        })
    }

    /// After a failed check: on a terminal, whether to ask again; otherwise the error.
    fn retry(&self, what: &str, error: &str) -> Result<(), String> {
        eprintln!("✗ {what}: {error}");
        if self.interactive && self.yes("Try again?", true)? {
            Ok(())
        } else {
            Err(format!("{what}: {error}"))
        }
    }
}

fn ok(msg: &str) {
    eprintln!("✓ {msg}");
}

/// The env file next to `config`: `tokengate.toml` → `tokengate.env`.
pub fn default_env_file(config: &Path) -> PathBuf {
    config.with_extension("env")
}

/// Runs `init`, writing `config_path` and `env_path`.
pub async fn run(args: InitArgs, config_path: &Path, env_path: &Path) -> Result<(), String> {
    for p in [config_path, env_path] {
        if p.exists() && !args.force {
            return Err(format!(
                "{} already exists; pass --force to overwrite it",
                p.display()
            ));
        }
    }
    let interactive = !args.non_interactive && std::io::stdin().is_terminal();
    if !args.non_interactive && !interactive {
        eprintln!("stdin is not a terminal: taking every answer from flags");
    }
    let ask = Ask { interactive };
    if interactive {
        eprintln!(
            "tokengate init: a few questions, each answer checked before anything is written.\n\
             Secrets go to {} (mode 0600), the rest to {}.\n",
            env_path.display(),
            config_path.display()
        );
    }
    let (answers, db) = gather(&args, &ask).await?;
    let admin = match ask.text(
        "Email of the first administrator",
        args.admin_email.as_ref(),
        None,
    )? {
        Some(email) => Some(create_admin(&db, &email, &args.admin_name).await?),
        None => None,
    };
    db.close().await;
    let secret_key = hex::encode(rand::random::<[u8; 32]>());
    write_files(&answers, &secret_key, config_path, env_path, args.force)?;
    print_summary(&answers, config_path, env_path, admin.as_ref());
    Ok(())
}

async fn gather(args: &InitArgs, ask: &Ask) -> Result<(Answers, Db), String> {
    let listen: SocketAddr = loop {
        let s = ask
            .text(
                "Listen address",
                args.listen.as_ref(),
                Some("127.0.0.1:3000"),
            )?
            .unwrap_or_default();
        match s.parse() {
            Ok(a) => break a,
            Err(_) if args.listen.is_none() => {
                ask.retry("listen address", &format!("{s:?} is not host:port"))?
            }
            Err(_) => return Err(format!("--listen {s:?} is not host:port")),
        }
    };
    let default_url = if listen.ip().is_unspecified() {
        format!("http://127.0.0.1:{}", listen.port())
    } else {
        format!("http://{listen}")
    };
    let public_url = loop {
        let u = ask
            .text(
                "Public URL (what users type; https in production)",
                args.public_url.as_ref(),
                Some(&default_url),
            )?
            .unwrap_or_default();
        let u = u.trim_end_matches('/').to_string();
        if u.starts_with("https://") || u.starts_with("http://") {
            if !u.starts_with("https://") && !probe::is_local_url(&u) {
                eprintln!(
                    "! {u} is not https: browsers would send session cookies in the clear; \
                     put a TLS proxy in front and use its https URL"
                );
            }
            break u;
        }
        if args.public_url.is_some() {
            return Err(format!(
                "--public-url {u:?} must start with http:// or https://"
            ));
        }
        ask.retry("public URL", "must start with http:// or https://")?;
    };
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| PathBuf::from("./data"));
    let default_db = format!("sqlite://{}", data_dir.join("tokengate.db").display());

    let (database_url, db) = loop {
        let raw = ask
            .text(
                "Database: a SQLite path, or a postgres:// URL",
                args.database_url.as_ref(),
                Some(&default_db),
            )?
            .unwrap_or_default();
        let url = if raw.starts_with("sqlite:")
            || raw.starts_with("postgres://")
            || raw.starts_with("postgresql://")
        {
            raw
        } else {
            format!("sqlite://{raw}")
        };
        match connect(&url).await {
            Ok(db) => {
                ok(&format!(
                    "database {}: connected, migrations applied",
                    shown_db(&url)
                ));
                break (url, db);
            }
            Err(e) if args.database_url.is_none() || ask.interactive => {
                ask.retry("database", &e)?
            }
            Err(e) => return Err(format!("database: {e}")),
        }
    };

    let redis_url = loop {
        let Some(url) = ask.text(
            "Redis URL for cluster mode (several instances on one PostgreSQL)",
            args.redis_url.as_ref(),
            None,
        )?
        else {
            break None;
        };
        match probe::redis_ping(&url).await {
            Ok(()) => {
                ok("redis: PONG");
                break Some(url);
            }
            Err(e) if args.redis_url.is_none() => ask.retry("redis", &e)?,
            Err(e) => return Err(format!("redis: {e}")),
        }
    };
    if redis_url.is_some() && database_url.starts_with("sqlite:") {
        return Err(
            "cluster mode (a Redis URL) needs a PostgreSQL database: every instance must share it"
                .into(),
        );
    }

    let http = probe::client();
    let mut providers = Vec::new();
    for kind in [ProviderKind::OpenAi, ProviderKind::Anthropic] {
        if let Some(p) = provider(args, ask, &http, kind).await? {
            providers.push(p);
        }
    }
    let models = choose_models(args, ask, &providers)?;

    let stripe = stripe(args, ask)?;
    let oidc = oidc(args, ask, &http, &public_url).await?;
    Ok((
        Answers {
            listen,
            public_url,
            data_dir,
            database_url,
            redis_url,
            providers,
            models,
            stripe,
            oidc,
        },
        db,
    ))
}

/// Connects and migrates, creating a SQLite file's directory first.
async fn connect(url: &str) -> Result<Db, String> {
    if let Some(path) = url
        .strip_prefix("sqlite://")
        .or(url.strip_prefix("sqlite:"))
    {
        let path = Path::new(path.split('?').next().unwrap_or(""));
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
    }
    Db::connect(url).await.map_err(|e| e.to_string())
}

/// A database URL without its password, for printing.
fn shown_db(url: &str) -> String {
    probe::redact_url(url)
}

async fn provider(
    args: &InitArgs,
    ask: &Ask,
    http: &reqwest::Client,
    kind: ProviderKind,
) -> Result<Option<FoundProvider>, String> {
    let (name, label, key_env, given_url, given_key) = match kind {
        ProviderKind::OpenAi => (
            "openai",
            "an OpenAI-compatible provider (OpenAI, vLLM, Ollama, …)",
            "OPENAI_API_KEY",
            args.openai_base_url.as_ref(),
            args.openai_api_key.as_ref(),
        ),
        ProviderKind::Anthropic => (
            "anthropic",
            "Anthropic",
            "ANTHROPIC_API_KEY",
            args.anthropic_base_url.as_ref(),
            args.anthropic_api_key.as_ref(),
        ),
        ProviderKind::Mock => return Ok(None),
    };
    let flagged = given_url.is_some() || given_key.is_some();
    if !flagged && !ask.yes(&format!("Add {label}?"), false)? {
        return Ok(None);
    }
    loop {
        let base_url = ask
            .text(
                &format!("{name} base URL"),
                given_url,
                probe::default_base_url(kind),
            )?
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        if !(base_url.starts_with("https://") || base_url.starts_with("http://")) {
            if flagged {
                return Err(format!("{name} base URL must be an http(s) URL"));
            }
            ask.retry(name, "the base URL must be an http(s) URL")?;
            continue;
        }
        let key = ask.secret(&format!("{name} API key"), given_key)?;
        match probe::list_models(http, kind, &base_url, key.as_deref()).await {
            Ok(models) => {
                ok(&format!(
                    "{name}: {base_url} answered with {} model(s)",
                    models.len()
                ));
                return Ok(Some(FoundProvider {
                    name,
                    kind,
                    base_url,
                    key_env,
                    key,
                    models,
                }));
            }
            Err(e) if !flagged => ask.retry(name, &e.to_string())?,
            Err(e) => return Err(format!("{name} ({base_url}): {e}")),
        }
    }
}

/// A price in USD per million tokens, as the exact string the config holds.
fn price(s: &str) -> Result<String, String> {
    let s = s.trim();
    money::parse_usd(s)
        .ok()
        .filter(|n| *n >= 0)
        .map(|_| s.to_string())
        .ok_or_else(|| format!("{s:?} is not a USD amount"))
}

fn choose_models(
    args: &InitArgs,
    ask: &Ask,
    providers: &[FoundProvider],
) -> Result<Vec<ChosenModel>, String> {
    let mut chosen = Vec::new();
    for spec in &args.models {
        let (name, prices) = spec
            .split_once('=')
            .ok_or_else(|| format!("--model {spec:?}: expected PROVIDER/MODEL=IN,OUT"))?;
        let (prov, upstream) = name
            .split_once('/')
            .ok_or_else(|| format!("--model {spec:?}: expected PROVIDER/MODEL=IN,OUT"))?;
        let (input, output) = prices
            .split_once(',')
            .ok_or_else(|| format!("--model {spec:?}: give two prices, IN,OUT"))?;
        let p = providers
            .iter()
            .find(|p| p.name == prov)
            .ok_or_else(|| format!("--model {spec:?}: no provider {prov:?} was configured"))?;
        if !p.models.iter().any(|m| m == upstream) {
            return Err(format!(
                "--model {spec:?}: {prov} does not offer {upstream:?} (it lists {})",
                preview(&p.models)
            ));
        }
        chosen.push(ChosenModel {
            provider: p.name,
            upstream: upstream.to_string(),
            input: price(input).map_err(|e| format!("--model {spec:?}: {e}"))?,
            output: price(output).map_err(|e| format!("--model {spec:?}: {e}"))?,
        });
    }
    if !ask.interactive || !args.models.is_empty() {
        return Ok(chosen);
    }
    for p in providers.iter().filter(|p| !p.models.is_empty()) {
        eprintln!("{} offers: {}", p.name, preview(&p.models));
        let picked = ask
            .text(
                &format!("Models of {} to offer customers, comma-separated", p.name),
                None,
                None,
            )?
            .unwrap_or_default();
        for m in picked.split(',').map(str::trim).filter(|m| !m.is_empty()) {
            if !p.models.iter().any(|x| x == m) {
                eprintln!("! {m} is not in {}'s list; skipped", p.name);
                continue;
            }
            let ask_price = |what: &str| -> Result<String, String> {
                loop {
                    let a = ask.line(&format!(
                        "  {m}: USD per million {what} tokens (confirm from the provider's price list): "
                    ))?;
                    match price(&a) {
                        Ok(p) => return Ok(p),
                        Err(e) => eprintln!("  {e}"),
                    }
                }
            };
            let input = ask_price("input")?;
            let output = ask_price("output")?;
            chosen.push(ChosenModel {
                provider: p.name,
                upstream: m.to_string(),
                input,
                output,
            });
        }
    }
    Ok(chosen)
}

/// At most 20 names, then a count.
fn preview(models: &[String]) -> String {
    let mut s = models
        .iter()
        .take(20)
        .cloned()
        .collect::<Vec<_>>()
        .join(", ");
    if models.len() > 20 {
        s.push_str(&format!(", … ({} in all)", models.len()));
    }
    if s.is_empty() {
        s.push_str("nothing");
    }
    s
}

fn stripe(args: &InitArgs, ask: &Ask) -> Result<Option<(String, String)>, String> {
    let flagged = args.stripe_secret_key.is_some() || args.stripe_webhook_secret.is_some();
    if !flagged && !ask.yes("Take payments (top-ups) with Stripe?", false)? {
        return Ok(None);
    }
    loop {
        let key = ask.secret("Stripe secret key (sk_…)", args.stripe_secret_key.as_ref())?;
        let hook = ask.secret(
            "Stripe webhook signing secret (whsec_…)",
            args.stripe_webhook_secret.as_ref(),
        )?;
        let problem = match (&key, &hook) {
            (None, _) | (_, None) => {
                Some("set both the secret key and the webhook secret, or neither")
            }
            (Some(k), _) if !probe::stripe_secret_key_ok(k) => {
                Some("the secret key must look like sk_live_…, sk_test_… or rk_…")
            }
            (_, Some(h)) if !probe::stripe_webhook_secret_ok(h) => {
                Some("the webhook secret must look like whsec_…")
            }
            _ => None,
        };
        match (problem, key, hook) {
            (None, Some(k), Some(h)) => {
                ok("stripe: both secrets have the expected format");
                return Ok(Some((k, h)));
            }
            (Some(p), _, _) if !flagged => ask.retry("stripe", p)?,
            (Some(p), _, _) => return Err(format!("stripe: {p}")),
            _ => return Err("stripe: incomplete".into()),
        }
    }
}

async fn oidc(
    args: &InitArgs,
    ask: &Ask,
    http: &reqwest::Client,
    public_url: &str,
) -> Result<Option<Oidc>, String> {
    let flagged = args.oidc_issuer.is_some() || args.oidc_client_id.is_some();
    if !flagged && !ask.yes("Let users sign in with an OpenID Connect provider?", false)? {
        return Ok(None);
    }
    let id = args.oidc_id.clone().unwrap_or_else(|| "sso".into());
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err(format!("--oidc-id {id:?}: letters, digits and '-' only"));
    }
    loop {
        let Some(issuer) = ask.text("OpenID issuer URL", args.oidc_issuer.as_ref(), None)? else {
            return Err("oidc: the issuer URL is required".into());
        };
        let issuer = issuer.trim_end_matches('/').to_string();
        let Some(client_id) = ask.text("OpenID client id", args.oidc_client_id.as_ref(), None)?
        else {
            return Err("oidc: the client id is required".into());
        };
        let client_secret = ask.secret("OpenID client secret", args.oidc_client_secret.as_ref())?;
        match probe::oidc_discovery(http, &issuer).await {
            Ok(_) => {
                ok(&format!("oidc: discovery document of {issuer} read"));
                let name = args
                    .oidc_name
                    .clone()
                    .unwrap_or_else(|| "Single sign-on".into());
                let _ = public_url;
                return Ok(Some(Oidc {
                    id,
                    name,
                    issuer,
                    client_id,
                    client_secret,
                }));
            }
            Err(e) if !flagged => ask.retry("oidc", &e)?,
            Err(e) => return Err(format!("oidc: {e}")),
        }
    }
}

async fn create_admin(db: &Db, email: &str, name: &str) -> Result<(String, String), String> {
    let pw = password::generate();
    let pw2 = pw.clone();
    let hash = tokio::task::spawn_blocking(move || password::hash(&pw2))
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    let user = accounts::create_user(db, email, name, Some(&hash), accounts::Role::Admin)
        .await
        .map_err(|e| format!("administrator {email}: {e}"))?;
    tokengate_core::auth::mark_email_verified(db, user.id)
        .await
        .map_err(|e| e.to_string())?;
    ok(&format!("administrator {} created", user.email));
    Ok((user.email, pw))
}

/// A TOML string literal.
fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The variable holding the client secret of OpenID provider `id`.
fn oidc_secret_env(id: &str) -> String {
    format!(
        "OIDC_{}_CLIENT_SECRET",
        id.to_ascii_uppercase().replace('-', "_")
    )
}

fn render_toml(a: &Answers, env_path: &Path, config_path: &Path) -> String {
    let mut t = String::new();
    let env_name = env_path.display();
    let cfg_name = config_path.display();
    t.push_str(&format!(
        "# tokengate configuration, written by `tokengate-server init`.\n\
         # No secret is in this file: they are in {env_name} (mode 0600), named below by\n\
         # *_env keys or read as TOKENGATE_* variables. Start and check the server with\n\
         #   tokengate-server --config {cfg_name} --env-file {env_name}\n\
         #   tokengate-server --config {cfg_name} --env-file {env_name} doctor\n\
         # (or load {env_name} with systemd's EnvironmentFile= or `set -a; . {env_name}`).\n\
         # Every key can be overridden by a TOKENGATE_<KEY> environment variable.\n\n"
    ));
    t.push_str(&format!(
        "# Address and port the server listens on.\nlisten = {}\n\n",
        q(&a.listen.to_string())
    ));
    t.push_str(&format!(
        "# The URL users reach the server at: links, OpenID redirects and the Stripe webhook\n\
         # are built from it. https in production (a TLS proxy in front of `listen`).\n\
         public_url = {}\n\n",
        q(&a.public_url)
    ));
    t.push_str(&format!(
        "# The SQLite database, the usage write-ahead log and (without TOKENGATE_SECRET_KEY)\n\
         # the server secret live here.\ndata_dir = {}\n\n",
        q(&a.data_dir.display().to_string())
    ));
    if a.database_url.starts_with("sqlite:") {
        t.push_str(&format!(
            "# The database (SQLite). For PostgreSQL set TOKENGATE_DATABASE_URL in the env file.\n\
             database_url = {}\n\n",
            q(&a.database_url)
        ));
    } else {
        t.push_str(
            "# The database is PostgreSQL: its URL (which may hold a password) is\n\
             # TOKENGATE_DATABASE_URL in the env file.\n\n",
        );
    }
    if a.redis_url.is_some() {
        t.push_str("# Cluster mode: the Redis URL is TOKENGATE_REDIS_URL in the env file.\n\n");
    }
    t.push_str(
        "# Demo mode seeds an administrator and a funded key and prints their secrets: never\n\
         # in production.\ndemo = false\n\n",
    );
    if a.stripe.is_some() {
        t.push_str(&format!(
            "# Stripe top-ups: TOKENGATE_STRIPE_SECRET_KEY and TOKENGATE_STRIPE_WEBHOOK_SECRET are\n\
             # in the env file. Webhook endpoint for the Stripe dashboard:\n\
             #   {}/webhooks/payments/stripe\n\n",
            a.public_url
        ));
    }
    for p in &a.providers {
        t.push_str(&format!(
            "# Upstream provider {} (its key: {} in the env file).\n[[providers]]\nname = {}\n\
             kind = {}\nbase_url = {}\n",
            p.name,
            p.key_env,
            q(p.name),
            q(p.kind.as_str()),
            q(&p.base_url)
        ));
        if p.key.is_some() {
            t.push_str(&format!("api_key_env = {}\n", q(p.key_env)));
        }
        t.push('\n');
    }
    if !a.models.is_empty() {
        t.push_str(
            "# Models customers may call, as provider/model, with prices in USD per million\n\
             # tokens (exact decimal strings; confirm them against the provider's price list).\n",
        );
    }
    for m in &a.models {
        t.push_str(&format!(
            "[[models]]\nname = {}\nprovider = {}\nupstream_model = {}\ninput_usd_per_m = {}\n\
             output_usd_per_m = {}\n\n",
            q(&format!("{}/{}", m.provider, m.upstream)),
            q(m.provider),
            q(&m.upstream),
            q(&m.input),
            q(&m.output)
        ));
    }
    for p in &a.providers {
        let rest: Vec<&String> = p
            .models
            .iter()
            .filter(|u| {
                !a.models
                    .iter()
                    .any(|m| m.provider == p.name && &m.upstream == *u)
            })
            .take(50)
            .collect();
        if rest.is_empty() {
            continue;
        }
        t.push_str(&format!(
            "# More models {} offers: uncomment one and set its prices to offer it.\n",
            p.name
        ));
        for u in &rest {
            t.push_str(&format!(
                "# [[models]]\n# name = {}\n# provider = {}\n# upstream_model = {}\n\
                 # input_usd_per_m = \"\"\n# output_usd_per_m = \"\"\n",
                q(&format!("{}/{}", p.name, u)),
                q(p.name),
                q(u)
            ));
        }
        if p.models.len() > rest.len() + a.models.len() {
            t.push_str(&format!(
                "# (and {} more; see GET {}/models)\n",
                p.models.len() - rest.len() - a.models.len(),
                p.base_url
            ));
        }
        t.push('\n');
    }
    if let Some(o) = &a.oidc {
        t.push_str(&format!(
            "# Portal sign-in with OpenID Connect. Redirect URL to register with the provider:\n\
             #   {}/auth/oidc/{}/callback\n[[oidc]]\nid = {}\nname = {}\nissuer = {}\n\
             client_id = {}\n",
            a.public_url,
            o.id,
            q(&o.id),
            q(&o.name),
            q(&o.issuer),
            q(&o.client_id)
        ));
        if o.client_secret.is_some() {
            t.push_str(&format!(
                "client_secret_env = {}\n",
                q(&oidc_secret_env(&o.id))
            ));
        }
        t.push('\n');
    }
    t
}

fn render_env(a: &Answers, secret_key: &str) -> String {
    let mut e = String::from(
        "# tokengate secrets, written by `tokengate-server init`. Keep this file mode 0600 and\n\
         # out of version control. Read by `tokengate-server --env-file <this file>`, systemd\n\
         # EnvironmentFile= or `set -a; . <this file>; set +a`.\n\n\
         # Keys API-key hashes and seals provider keys stored in the database: every instance\n\
         # needs the same value, and changing it invalidates every API key.\n",
    );
    e.push_str(&envfile::line("TOKENGATE_SECRET_KEY", secret_key));
    if !a.database_url.starts_with("sqlite:") {
        e.push_str(&envfile::line("TOKENGATE_DATABASE_URL", &a.database_url));
    }
    if let Some(r) = &a.redis_url {
        e.push_str(&envfile::line("TOKENGATE_REDIS_URL", r));
    }
    for p in &a.providers {
        if let Some(k) = &p.key {
            e.push_str(&envfile::line(p.key_env, k));
        }
    }
    if let Some((k, h)) = &a.stripe {
        e.push_str(&envfile::line("TOKENGATE_STRIPE_SECRET_KEY", k));
        e.push_str(&envfile::line("TOKENGATE_STRIPE_WEBHOOK_SECRET", h));
    }
    if let Some(o) = &a.oidc
        && let Some(s) = &o.client_secret
    {
        e.push_str(&envfile::line(&oidc_secret_env(&o.id), s));
    }
    e
}

/// Writes `contents` to `path` with `mode`, replacing an existing file only if `force`.
fn write_file(path: &Path, contents: &str, mode: u32, force: bool) -> Result<(), String> {
    let io = |e: std::io::Error| format!("{}: {e}", path.display());
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    if force && path.exists() {
        std::fs::remove_file(path).map_err(io)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(mode);
    }
    #[cfg(not(unix))]
    let _ = mode;
    let mut f = opts.open(path).map_err(io)?;
    f.write_all(contents.as_bytes()).map_err(io)?;
    #[cfg(unix)]
    {
        // The umask may have removed bits of `mode`; never added any.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io)?;
    }
    Ok(())
}

fn write_files(
    a: &Answers,
    secret_key: &str,
    config_path: &Path,
    env_path: &Path,
    force: bool,
) -> Result<(), String> {
    write_file(env_path, &render_env(a, secret_key), 0o600, force)?;
    write_file(
        config_path,
        &render_toml(a, env_path, config_path),
        0o644,
        force,
    )?;
    Ok(())
}

fn print_summary(
    a: &Answers,
    config_path: &Path,
    env_path: &Path,
    admin: Option<&(String, String)>,
) {
    let cfg = config_path.display();
    let env = env_path.display();
    println!("\nWrote {cfg} (no secrets) and {env} (secrets, mode 0600).");
    if let Some((email, pw)) = admin {
        println!(
            "\nAdministrator: {email}\nPassword (shown once, change it after signing in): {pw}"
        );
    }
    if a.stripe.is_some() {
        println!(
            "\nStripe dashboard → Developers → Webhooks → add endpoint:\n  {}/webhooks/payments/stripe\n  \
             events: checkout.session.completed, checkout.session.expired, \
             checkout.session.async_payment_succeeded, checkout.session.async_payment_failed, \
             charge.refunded, charge.dispute.created",
            a.public_url
        );
    }
    if let Some(o) = &a.oidc {
        println!(
            "\nRegister this redirect URL with your OpenID provider:\n  {}/auth/oidc/{}/callback",
            a.public_url, o.id
        );
    }
    if a.models.is_empty() && !a.providers.is_empty() {
        println!(
            "\nNo model is offered yet: uncomment the models you want in {cfg} and set their prices."
        );
    }
    println!(
        "\nNext:\n  tokengate-server --config {cfg} --env-file {env} doctor   # check everything\n  \
         tokengate-server --config {cfg} --env-file {env}          # start on {}\n",
        a.listen
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answers() -> Answers {
        Answers {
            listen: "127.0.0.1:3000".parse().unwrap(),
            public_url: "https://gw.example".into(),
            data_dir: PathBuf::from("/var/lib/tokengate"),
            database_url: "postgres://tg:pw-secret@db/tg".into(),
            redis_url: Some("redis://:redis-secret@cache:6379/0".into()),
            providers: vec![FoundProvider {
                name: "openai",
                kind: ProviderKind::OpenAi,
                base_url: "https://api.openai.com/v1".into(),
                key_env: "OPENAI_API_KEY",
                key: Some("sk-provider-secret".into()),
                models: vec!["gpt-4o-mini".into(), "gpt-4o".into()],
            }],
            models: vec![ChosenModel {
                provider: "openai",
                upstream: "gpt-4o-mini".into(),
                input: "0.15".into(),
                output: "0.60".into(),
            }],
            stripe: Some(("sk_test_stripe-secret".into(), "whsec_hook-secret".into())),
            oidc: Some(Oidc {
                id: "corp-sso".into(),
                name: "Corp".into(),
                issuer: "https://idp.example".into(),
                client_id: "tg".into(),
                client_secret: Some("oidc-secret".into()),
            }),
        }
    }

    #[test]
    fn no_secret_in_the_toml_and_every_secret_in_the_env_file() {
        let a = answers();
        let toml_text = render_toml(&a, Path::new("tg.env"), Path::new("tg.toml"));
        let env_text = render_env(&a, "k".repeat(64).as_str());
        for s in [
            "pw-secret",
            "redis-secret",
            "sk-provider-secret",
            "stripe-secret",
            "hook-secret",
            "oidc-secret",
        ] {
            assert!(!toml_text.contains(s), "{s} in the TOML:\n{toml_text}");
            assert!(env_text.contains(s), "{s} not in the env file");
        }
        // The TOML parses, and names the env variables the env file sets.
        let v: toml::Table = toml::from_str(&toml_text).unwrap();
        assert_eq!(
            v["providers"][0]["api_key_env"].as_str(),
            Some("OPENAI_API_KEY")
        );
        assert_eq!(
            v["oidc"][0]["client_secret_env"].as_str(),
            Some("OIDC_CORP_SSO_CLIENT_SECRET")
        );
        let env = envfile::parse(&env_text).unwrap();
        assert_eq!(env["OIDC_CORP_SSO_CLIENT_SECRET"], "oidc-secret");
        assert_eq!(
            env["TOKENGATE_DATABASE_URL"],
            "postgres://tg:pw-secret@db/tg"
        );
        assert!(toml_text.contains("https://gw.example/webhooks/payments/stripe"));
        assert!(toml_text.contains("https://gw.example/auth/oidc/corp-sso/callback"));
        // The unchosen model is offered commented out.
        assert!(toml_text.contains("# upstream_model = \"gpt-4o\""));
    }

    #[test]
    fn prices_are_exact_usd() {
        assert_eq!(price(" 0.15 ").unwrap(), "0.15");
        assert!(price("-1").is_err());
        assert!(price("abc").is_err());
        assert_eq!(shown_db("postgres://u:pw@h/db"), "postgres://u:***@h/db");
        assert_eq!(shown_db("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(shown_db("sqlite://x.db"), "sqlite://x.db");
    }
}
