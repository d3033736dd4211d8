//! The server's one typed configuration: an optional TOML file (`--config`) overridden by
//! `TOKENGATE_*` environment variables. Unknown file keys are rejected; secrets are wrapped
//! so that no Debug or log line can print them.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// A secret string: Debug and Display print `***`.
#[derive(Clone, Deserialize, Default, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Secret(s.into())
    }
    /// The secret itself; call only where it is used.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// A provider declared in the config file, upserted into the catalog at start.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub name: String,
    /// `openai` (any OpenAI-compatible server), `anthropic` or `mock`.
    pub kind: tokengate_api::kinds::ProviderKind,
    pub base_url: Option<String>,
    /// The provider key itself (prefer `api_key_env`).
    pub api_key: Option<Secret>,
    /// Name of an environment variable holding the provider key.
    pub api_key_env: Option<String>,
    /// Adapter settings, e.g. `{ latency_ms = 50 }` for the mock provider.
    #[serde(default)]
    pub config: Option<toml::Table>,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// A model declared in the config file. Prices are USD per million tokens, as strings.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Provider-qualified id, e.g. `openai/gpt-4o-mini`.
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_usd_per_m: String,
    pub output_usd_per_m: String,
    pub cache_read_usd_per_m: Option<String>,
    pub cache_write_usd_per_m: Option<String>,
    #[serde(default = "default_max_output")]
    pub max_output_tokens: i64,
    #[serde(default = "default_tier")]
    pub complexity_tier: String,
    #[serde(default = "yes")]
    pub enabled: bool,
}

/// An alias target in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AliasTargetConfig {
    pub model: String,
    #[serde(default)]
    pub priority: i64,
    #[serde(default = "one")]
    pub weight: i64,
}

/// An alias declared in the config file.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AliasConfig {
    pub name: String,
    #[serde(default)]
    pub description: String,
    #[serde(default = "default_tier")]
    pub complexity_tier: String,
    pub targets: Vec<AliasTargetConfig>,
}

/// A key group declared in the config file: which providers and models or aliases its
/// keys may use.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KeyGroupConfig {
    pub name: String,
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}
fn one() -> i64 {
    1
}
fn default_max_output() -> i64 {
    4096
}
fn default_tier() -> String {
    "standard".into()
}

/// An OpenID Connect provider for portal sign-in (`[[oidc]]` in the file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// Short id used in URLs (`/auth/oidc/{id}/start`).
    pub id: String,
    /// Button label, e.g. "Google".
    pub name: String,
    /// Issuer URL; discovery reads `<issuer>/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<Secret>,
    /// Name of an environment variable holding the client secret (prefer this to
    /// `client_secret`; `tokengate-server init` writes it to the env file).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    /// Link a first sign-in to an existing account with the same email when the provider
    /// verified it and the account's own address was verified (a mailed link).
    #[serde(default)]
    pub link_by_email: bool,
}

/// Circuit-breaker settings (`[breaker]` in the file).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BreakerSettings {
    /// Sliding window over which the error rate is measured.
    #[serde(default = "breaker_window")]
    pub window_secs: u64,
    /// Error rate (0–1) at or above which the breaker opens.
    #[serde(default = "breaker_rate")]
    pub error_rate: f64,
    /// Requests needed in the window before the rate counts.
    #[serde(default = "breaker_min")]
    pub min_requests: u32,
    /// How long an open breaker skips its target before probing.
    #[serde(default = "breaker_open")]
    pub open_secs: u64,
    /// Probe requests let through, and needed to succeed, while half-open.
    #[serde(default = "breaker_probes")]
    pub half_open_probes: u32,
}

fn breaker_window() -> u64 {
    30
}
fn breaker_rate() -> f64 {
    0.5
}
fn breaker_min() -> u32 {
    10
}
fn breaker_open() -> u64 {
    15
}
fn breaker_probes() -> u32 {
    2
}

impl Default for BreakerSettings {
    fn default() -> Self {
        BreakerSettings {
            window_secs: breaker_window(),
            error_rate: breaker_rate(),
            min_requests: breaker_min(),
            open_secs: breaker_open(),
            half_open_probes: breaker_probes(),
        }
    }
}

/// The file format: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<String>,
    public_url: Option<String>,
    database_url: Option<String>,
    data_dir: Option<PathBuf>,
    secret_key: Option<Secret>,
    demo: Option<bool>,
    log: Option<String>,
    log_format: Option<String>,
    max_body_bytes: Option<usize>,
    max_choices: Option<u64>,
    max_upstream_body_bytes: Option<u64>,
    max_upstream_event_bytes: Option<u64>,
    flush_interval_ms: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    request_timeout_ms: Option<u64>,
    breaker: Option<BreakerSettings>,
    signup: Option<bool>,
    signups_per_address_per_hour: Option<u64>,
    cli_login: Option<bool>,
    #[serde(default)]
    trusted_proxies: Vec<std::net::IpAddr>,
    session_idle_secs: Option<u64>,
    session_absolute_secs: Option<u64>,
    #[serde(default)]
    oidc: Vec<OidcConfig>,
    site_root: Option<PathBuf>,
    #[serde(default)]
    providers: Vec<ProviderConfig>,
    #[serde(default)]
    models: Vec<ModelConfig>,
    #[serde(default)]
    aliases: Vec<AliasConfig>,
    #[serde(default)]
    key_groups: Vec<KeyGroupConfig>,
    stripe: Option<StripeFileConfig>,
    smtp: Option<SmtpFileConfig>,
    topup_max_usd: Option<String>,
    stream_idle_secs: Option<u64>,
    responses_retention_days: Option<u64>,
    header_read_timeout_secs: Option<u64>,
    body_read_timeout_secs: Option<u64>,
    max_connections: Option<u64>,
    redis_url: Option<Secret>,
    redis_prefix: Option<String>,
}

/// `[stripe]` in the config file; every key may also come from the environment.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StripeFileConfig {
    secret_key: Option<Secret>,
    webhook_secret: Option<Secret>,
    api_base: Option<String>,
}

/// `[smtp]` in the config file; each key may also come from the environment
/// (`TOKENGATE_SMTP_URL`, `TOKENGATE_SMTP_FROM`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct SmtpFileConfig {
    url: Option<Secret>,
    from: Option<String>,
}

/// Where account mail (the sign-up verification link) goes out.
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    /// `smtps://user:password@host:465` (TLS) or `smtp://user:password@host:587` (STARTTLS
    /// required); may hold credentials, so it is a secret.
    pub url: Secret,
    /// The sender, e.g. `tokengate <noreply@example.com>`.
    pub from: String,
}

/// Stripe credentials: top-ups are offered only when both secrets are set.
#[derive(Debug, Clone)]
pub struct StripeConfig {
    pub secret_key: Secret,
    pub webhook_secret: Secret,
    /// Stripe's API base URL, ending in `/` (tests point it at a local fake).
    pub api_base: String,
}

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub public_url: String,
    pub database_url: String,
    pub data_dir: PathBuf,
    /// `None` until [`Config::load_or_create_secret`] fills it from the data dir.
    pub secret_key: Option<Secret>,
    pub demo: bool,
    pub log: String,
    /// `text` (default) or `json`.
    pub log_format: String,
    pub max_body_bytes: usize,
    /// Largest `n` (choices per chat request) accepted; each choice is held and billed.
    pub max_choices: u64,
    /// Largest whole upstream response body read (after decompression); a larger one
    /// fails the attempt with 502.
    pub max_upstream_body_bytes: usize,
    /// Largest single event of an upstream stream; a larger one ends the stream with an
    /// error event.
    pub max_upstream_event_bytes: usize,
    pub flush_interval_ms: u64,
    /// Time allowed for one upstream attempt until its response headers.
    pub upstream_timeout_ms: u64,
    /// Time allowed for all attempts of one request until the first byte.
    pub request_timeout_ms: u64,
    pub breaker: BreakerSettings,
    /// Whether anyone may create a local account.
    pub signup: bool,
    /// Sign-ups allowed from one client address per hour; 0: no limit.
    pub signups_per_address_per_hour: u64,
    /// Whether command-line clients may sign in with the device flow.
    pub cli_login: bool,
    /// Reverse proxies whose `X-Forwarded-For` names the real client (for sign-in
    /// throttling per client address).
    pub trusted_proxies: Vec<std::net::IpAddr>,
    pub session_idle_secs: u64,
    pub session_absolute_secs: u64,
    pub oidc: Vec<OidcConfig>,
    /// Where cargo-leptos put the site (`pkg/`, CSS, public assets).
    pub site_root: PathBuf,
    pub providers: Vec<ProviderConfig>,
    pub models: Vec<ModelConfig>,
    pub aliases: Vec<AliasConfig>,
    pub key_groups: Vec<KeyGroupConfig>,
    /// Stripe Checkout for top-ups; `None` disables top-ups (503).
    pub stripe: Option<StripeConfig>,
    /// SMTP for account mail; `None`: verification links are written to the log in demo
    /// mode and not sent otherwise.
    pub smtp: Option<SmtpConfig>,
    /// Largest single top-up, in nano-USD (the smallest is 1 USD).
    pub topup_max_nano: i64,
    /// A stream whose upstream sends nothing for this long is ended and settled.
    pub stream_idle_secs: u64,
    /// Stored `/v1/responses` answers older than this many days are purged (0 keeps them).
    pub responses_retention_days: u64,
    /// A connection that has not sent a complete request head this long after it opened
    /// (or after its previous response) is closed (slowloris).
    pub header_read_timeout_secs: u64,
    /// A request whose body has not arrived completely this long after its head is
    /// answered 408 and its connection closed.
    pub body_read_timeout_secs: u64,
    /// Connections served at once; further ones wait in the listen backlog.
    pub max_connections: usize,
    /// Cluster mode: the Redis (7+ or Valkey) holding shared fast state (holds, limits,
    /// throttles, the charge outbox). `None`: single instance, state in memory. May hold
    /// a password, so it is a secret. Requires PostgreSQL.
    pub redis_url: Option<Secret>,
    /// Prefix of every Redis key, so several deployments can share one Redis.
    pub redis_prefix: String,
}

/// A configuration error, with a message meant for the operator.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Reads the optional file, then applies `TOKENGATE_*` variables from `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let parsed: FileConfig = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError(format!("{}: {}", path.display(), e.message())))?
            }
            None => FileConfig::default(),
        };
        let listen_s = env("TOKENGATE_LISTEN")
            .or(parsed.listen)
            .unwrap_or_else(|| "127.0.0.1:3000".into());
        let listen: SocketAddr = listen_s
            .parse()
            .map_err(|_| ConfigError(format!("listen address {listen_s:?} is not host:port")))?;
        let data_dir = env("TOKENGATE_DATA_DIR")
            .map(PathBuf::from)
            .or(parsed.data_dir)
            .unwrap_or_else(|| PathBuf::from("./data"));
        let database_url = env("TOKENGATE_DATABASE_URL")
            .or(parsed.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("tokengate.db").display()));
        let public_url = env("TOKENGATE_PUBLIC_URL")
            .or(parsed.public_url)
            .unwrap_or_else(|| format!("http://{listen}"));
        let public_url = public_url.trim_end_matches('/').to_string();
        if !(public_url.starts_with("http://") || public_url.starts_with("https://")) {
            return Err(ConfigError(
                "public_url must start with http:// or https://".into(),
            ));
        }
        let demo = match env("TOKENGATE_DEMO") {
            Some(v) => parse_bool(&v)
                .ok_or_else(|| ConfigError(format!("TOKENGATE_DEMO={v:?} is not a boolean")))?,
            None => parsed.demo.unwrap_or(false),
        };
        let parse_num = |name: &str, file: Option<u64>, default: u64| -> Result<u64, ConfigError> {
            match env(name) {
                Some(v) => v
                    .parse()
                    .map_err(|_| ConfigError(format!("{name}={v:?} is not a number"))),
                None => Ok(file.unwrap_or(default)),
            }
        };
        let max_body_bytes = parse_num(
            "TOKENGATE_MAX_BODY_BYTES",
            parsed.max_body_bytes.map(|v| v as u64),
            10 * 1024 * 1024,
        )? as usize;
        let max_choices = parse_num("TOKENGATE_MAX_CHOICES", parsed.max_choices, 16)?.max(1);
        let upstream_defaults = crate::gateway::providers::http::UpstreamLimits::default();
        let max_upstream_body_bytes = parse_num(
            "TOKENGATE_MAX_UPSTREAM_BODY_BYTES",
            parsed.max_upstream_body_bytes,
            upstream_defaults.max_body_bytes as u64,
        )?;
        let max_upstream_event_bytes = parse_num(
            "TOKENGATE_MAX_UPSTREAM_EVENT_BYTES",
            parsed.max_upstream_event_bytes,
            upstream_defaults.max_event_bytes as u64,
        )?;
        if max_upstream_body_bytes == 0 || max_upstream_event_bytes == 0 {
            return Err(ConfigError(
                "max_upstream_body_bytes and max_upstream_event_bytes must be positive".into(),
            ));
        }
        let flush_interval_ms =
            parse_num("TOKENGATE_FLUSH_INTERVAL_MS", parsed.flush_interval_ms, 250)?;
        if !(1..=250).contains(&flush_interval_ms) {
            return Err(ConfigError(
                "flush_interval_ms must be between 1 and 250".into(),
            ));
        }
        let upstream_timeout_ms = parse_num(
            "TOKENGATE_UPSTREAM_TIMEOUT_MS",
            parsed.upstream_timeout_ms,
            600_000,
        )?;
        let request_timeout_ms = parse_num(
            "TOKENGATE_REQUEST_TIMEOUT_MS",
            parsed.request_timeout_ms,
            900_000,
        )?;
        if upstream_timeout_ms == 0 || request_timeout_ms == 0 {
            return Err(ConfigError("timeouts must be positive".into()));
        }
        let breaker = parsed.breaker.unwrap_or_default();
        if !(breaker.error_rate > 0.0 && breaker.error_rate <= 1.0)
            || breaker.window_secs == 0
            || breaker.half_open_probes == 0
        {
            return Err(ConfigError(
                "breaker: error_rate must be in (0, 1], window_secs and half_open_probes positive"
                    .into(),
            ));
        }
        let flag = |name: &str, file: Option<bool>, default: bool| -> Result<bool, ConfigError> {
            match env(name) {
                Some(v) => parse_bool(&v)
                    .ok_or_else(|| ConfigError(format!("{name}={v:?} is not a boolean"))),
                None => Ok(file.unwrap_or(default)),
            }
        };
        let signup = flag("TOKENGATE_SIGNUP", parsed.signup, true)?;
        let signups_per_address_per_hour = parse_num(
            "TOKENGATE_SIGNUPS_PER_ADDRESS_PER_HOUR",
            parsed.signups_per_address_per_hour,
            10,
        )?;
        let cli_login = flag("TOKENGATE_CLI_LOGIN", parsed.cli_login, true)?;
        let session_idle_secs = parse_num(
            "TOKENGATE_SESSION_IDLE_SECS",
            parsed.session_idle_secs,
            86_400,
        )?;
        let session_absolute_secs = parse_num(
            "TOKENGATE_SESSION_ABSOLUTE_SECS",
            parsed.session_absolute_secs,
            7 * 86_400,
        )?;
        if session_idle_secs == 0 || session_absolute_secs < session_idle_secs {
            return Err(ConfigError(
                "session_idle_secs must be positive and at most session_absolute_secs".into(),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for o in &parsed.oidc {
            if o.id.is_empty()
                || !o.id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                || !seen.insert(o.id.clone())
            {
                return Err(ConfigError(format!(
                    "oidc: provider id {:?} must be unique, letters, digits and '-'",
                    o.id
                )));
            }
        }
        let secret_key = env("TOKENGATE_SECRET_KEY")
            .map(Secret::new)
            .or(parsed.secret_key);
        if secret_key.as_ref().is_some_and(|s| s.expose().len() < 32) {
            return Err(ConfigError(
                "secret_key must be at least 32 characters".into(),
            ));
        }
        let log_format = env("TOKENGATE_LOG_FORMAT")
            .or(parsed.log_format)
            .unwrap_or("text".into());
        if log_format != "text" && log_format != "json" {
            return Err(ConfigError("log_format must be text or json".into()));
        }
        let smtp_file = parsed.smtp.unwrap_or_default();
        let smtp = match (
            env("TOKENGATE_SMTP_URL").map(Secret::new).or(smtp_file.url),
            env("TOKENGATE_SMTP_FROM").or(smtp_file.from),
        ) {
            (None, _) => None,
            (Some(url), from) => {
                let u = url.expose();
                if !(u.starts_with("smtp://") || u.starts_with("smtps://")) {
                    return Err(ConfigError(
                        "smtp.url must start with smtp:// or smtps://".into(),
                    ));
                }
                let from = from.ok_or_else(|| {
                    ConfigError("smtp.from is required when smtp.url is set".into())
                })?;
                if from.parse::<lettre::message::Mailbox>().is_err() {
                    return Err(ConfigError(format!(
                        "smtp.from {from:?} is not a mail address"
                    )));
                }
                Some(SmtpConfig { url, from })
            }
        };
        let stripe_file = parsed.stripe.unwrap_or_default();
        let stripe_key = env("TOKENGATE_STRIPE_SECRET_KEY")
            .map(Secret::new)
            .or(stripe_file.secret_key);
        let stripe_webhook = env("TOKENGATE_STRIPE_WEBHOOK_SECRET")
            .map(Secret::new)
            .or(stripe_file.webhook_secret);
        let stripe = match (stripe_key, stripe_webhook) {
            (Some(secret_key), Some(webhook_secret)) => {
                let mut api_base = env("TOKENGATE_STRIPE_API_BASE")
                    .or(stripe_file.api_base)
                    .unwrap_or_else(|| "https://api.stripe.com/".into());
                if !(api_base.starts_with("https://") || api_base.starts_with("http://")) {
                    return Err(ConfigError("stripe.api_base must be an http(s) URL".into()));
                }
                if !api_base.ends_with('/') {
                    api_base.push('/');
                }
                Some(StripeConfig {
                    secret_key,
                    webhook_secret,
                    api_base,
                })
            }
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "stripe: set both secret_key and webhook_secret (TOKENGATE_STRIPE_SECRET_KEY, \
                     TOKENGATE_STRIPE_WEBHOOK_SECRET), or neither"
                        .into(),
                ));
            }
        };
        let topup_max = env("TOKENGATE_TOPUP_MAX_USD")
            .or(parsed.topup_max_usd)
            .unwrap_or_else(|| "10000".into());
        let topup_max_nano = tokengate_core::money::parse_usd(&topup_max)
            .ok()
            .filter(|v| *v >= tokengate_core::money::NANOS_PER_USD)
            .ok_or_else(|| {
                ConfigError(format!("topup_max_usd {topup_max:?} must be at least 1"))
            })?;
        let stream_idle_secs =
            parse_num("TOKENGATE_STREAM_IDLE_SECS", parsed.stream_idle_secs, 300)?;
        if stream_idle_secs == 0 {
            return Err(ConfigError("stream_idle_secs must be positive".into()));
        }
        let responses_retention_days = parse_num(
            "TOKENGATE_RESPONSES_RETENTION_DAYS",
            parsed.responses_retention_days,
            30,
        )?;
        let header_read_timeout_secs = parse_num(
            "TOKENGATE_HEADER_READ_TIMEOUT_SECS",
            parsed.header_read_timeout_secs,
            30,
        )?;
        let body_read_timeout_secs = parse_num(
            "TOKENGATE_BODY_READ_TIMEOUT_SECS",
            parsed.body_read_timeout_secs,
            60,
        )?;
        let max_connections = parse_num("TOKENGATE_MAX_CONNECTIONS", parsed.max_connections, 1024)?;
        if header_read_timeout_secs == 0 || body_read_timeout_secs == 0 || max_connections == 0 {
            return Err(ConfigError(
                "header_read_timeout_secs, body_read_timeout_secs and max_connections must be \
                 positive"
                    .into(),
            ));
        }
        let redis_url = env("TOKENGATE_REDIS_URL")
            .map(Secret::new)
            .or(parsed.redis_url)
            .filter(|u| !u.expose().is_empty());
        if let Some(url) = &redis_url {
            let u = url.expose();
            if !(u.starts_with("redis://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://"))
            {
                return Err(ConfigError(
                    "redis_url must start with redis:// (no TLS support) or unix://".into(),
                ));
            }
            if !(database_url.starts_with("postgres://")
                || database_url.starts_with("postgresql://"))
            {
                return Err(ConfigError(
                    "redis_url (cluster mode) requires a PostgreSQL database_url: SQLite cannot be \
                     shared by several instances"
                        .into(),
                ));
            }
        }
        let redis_prefix = env("TOKENGATE_REDIS_PREFIX")
            .or(parsed.redis_prefix)
            .unwrap_or_else(|| "tokengate:".into());
        if redis_prefix.is_empty() || redis_prefix.contains(char::is_whitespace) {
            return Err(ConfigError(
                "redis_prefix must be non-empty without whitespace".into(),
            ));
        }
        Ok(Config {
            redis_url,
            redis_prefix,
            stripe,
            smtp,
            topup_max_nano,
            stream_idle_secs,
            responses_retention_days,
            header_read_timeout_secs,
            body_read_timeout_secs,
            max_connections: usize::try_from(max_connections).unwrap_or(usize::MAX),
            listen,
            public_url,
            database_url,
            secret_key,
            demo,
            log: env("TOKENGATE_LOG")
                .or(parsed.log)
                .unwrap_or_else(|| "info".into()),
            log_format,
            max_body_bytes,
            max_choices,
            max_upstream_body_bytes: usize::try_from(max_upstream_body_bytes).unwrap_or(usize::MAX),
            max_upstream_event_bytes: usize::try_from(max_upstream_event_bytes)
                .unwrap_or(usize::MAX),
            flush_interval_ms,
            upstream_timeout_ms,
            request_timeout_ms,
            breaker,
            signup,
            signups_per_address_per_hour,
            cli_login,
            trusted_proxies: parsed.trusted_proxies,
            session_idle_secs,
            session_absolute_secs,
            oidc: parsed.oidc,
            site_root: env("TOKENGATE_SITE_ROOT")
                .map(PathBuf::from)
                .or(parsed.site_root)
                .unwrap_or_else(|| PathBuf::from("target/site")),
            data_dir,
            providers: parsed.providers,
            models: parsed.models,
            aliases: parsed.aliases,
            key_groups: parsed.key_groups,
        })
    }

    /// Fills `secret_key` from `<data_dir>/secret.key`, generating that file (mode 0600)
    /// on first start.
    pub fn load_or_create_secret(&mut self) -> Result<(), ConfigError> {
        if self.secret_key.is_some() {
            return Ok(());
        }
        let path = self.data_dir.join("secret.key");
        let io = |e: std::io::Error| ConfigError(format!("{}: {e}", path.display()));
        match std::fs::read_to_string(&path) {
            Ok(s) if s.trim().len() >= 32 => {
                self.secret_key = Some(Secret::new(s.trim()));
                return Ok(());
            }
            Ok(_) => return Err(ConfigError(format!("{} is too short", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        std::fs::create_dir_all(&self.data_dir).map_err(io)?;
        let bytes: [u8; 32] = rand::random();
        let key = hex::encode(bytes);
        write_private(&path, &key).map_err(io)?;
        self.secret_key = Some(Secret::new(key));
        Ok(())
    }

    /// The audience of access tokens: the account API's resource URL.
    pub fn api_audience(&self) -> String {
        format!("{}/api/v1", self.public_url)
    }

    /// The server secret's bytes (after [`Config::load_or_create_secret`]).
    pub fn secret_bytes(&self) -> Vec<u8> {
        self.secret_key
            .as_ref()
            .map(|s| s.expose().as_bytes().to_vec())
            .unwrap_or_default()
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" | "" => Some(false),
        _ => None,
    }
}

/// Writes a file readable by its owner only.
pub fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_and_env_overrides() {
        let c = Config::load(None, env_of(&[])).unwrap();
        assert_eq!(c.listen.to_string(), "127.0.0.1:3000");
        assert_eq!(c.database_url, "sqlite://./data/tokengate.db");
        assert_eq!(c.public_url, "http://127.0.0.1:3000");
        assert!(!c.demo);
        let c = Config::load(
            None,
            env_of(&[
                ("TOKENGATE_LISTEN", "0.0.0.0:8080"),
                ("TOKENGATE_DEMO", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(c.listen.port(), 8080);
        assert!(c.demo);
    }

    #[test]
    fn redis_cluster_settings() {
        let c = Config::load(None, env_of(&[])).unwrap();
        assert!(c.redis_url.is_none());
        assert_eq!(c.redis_prefix, "tokengate:");
        let c = Config::load(
            None,
            env_of(&[
                ("TOKENGATE_DATABASE_URL", "postgres://db/x"),
                ("TOKENGATE_REDIS_URL", "redis://:pw@127.0.0.1:6379/0"),
                ("TOKENGATE_REDIS_PREFIX", "tg-a:"),
            ]),
        )
        .unwrap();
        assert_eq!(
            c.redis_url.as_ref().map(Secret::expose),
            Some("redis://:pw@127.0.0.1:6379/0")
        );
        assert_eq!(c.redis_prefix, "tg-a:");
        assert!(!format!("{c:?}").contains(":pw@"));
        // Cluster mode on SQLite is refused, and says why.
        let e = Config::load(
            None,
            env_of(&[("TOKENGATE_REDIS_URL", "redis://127.0.0.1/")]),
        )
        .unwrap_err();
        assert!(e.0.contains("PostgreSQL"), "{e}");
    }

    #[test]
    fn upstream_size_limits() {
        let c = Config::load(None, env_of(&[])).unwrap();
        assert_eq!(c.max_upstream_body_bytes, 32 * 1024 * 1024);
        assert_eq!(c.max_upstream_event_bytes, 4 * 1024 * 1024);
        let c = Config::load(
            None,
            env_of(&[
                ("TOKENGATE_MAX_UPSTREAM_BODY_BYTES", "1000"),
                ("TOKENGATE_MAX_UPSTREAM_EVENT_BYTES", "100"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (c.max_upstream_body_bytes, c.max_upstream_event_bytes),
            (1000, 100)
        );
        assert!(
            Config::load(None, env_of(&[("TOKENGATE_MAX_UPSTREAM_EVENT_BYTES", "0")])).is_err()
        );
        assert!(Config::load(None, env_of(&[("TOKENGATE_MAX_UPSTREAM_BODY_BYTES", "x")])).is_err());
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let dir = std::env::temp_dir().join(format!("tg-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("bad.toml");
        std::fs::write(&f, "listen = \"127.0.0.1:1\"\nlisten_port = 3\n").unwrap();
        let err = Config::load(Some(&f), env_of(&[])).unwrap_err().to_string();
        assert!(err.contains("unknown field `listen_port`"), "{err}");
        std::fs::write(
            &f,
            "[[providers]]\nname = \"x\"\nkind = \"openai\"\napi_kee = \"s\"\n",
        )
        .unwrap();
        assert!(Config::load(Some(&f), env_of(&[])).is_err());
        // The provider kind is one of the adapters, by its exact name.
        std::fs::write(&f, "[[providers]]\nname = \"x\"\nkind = \"mock\"\n").unwrap();
        let c = Config::load(Some(&f), env_of(&[])).unwrap();
        assert_eq!(
            c.providers[0].kind,
            tokengate_api::kinds::ProviderKind::Mock
        );
        for bad in ["gemini", "OpenAI", "open_ai"] {
            std::fs::write(
                &f,
                format!("[[providers]]\nname = \"x\"\nkind = \"{bad}\"\n"),
            )
            .unwrap();
            let err = Config::load(Some(&f), env_of(&[])).unwrap_err().to_string();
            assert!(err.contains("unknown variant"), "{bad}: {err}");
        }
        assert!(Config::load(None, env_of(&[("TOKENGATE_LISTEN", "nope")])).is_err());
        assert!(Config::load(None, env_of(&[("TOKENGATE_DEMO", "maybe")])).is_err());
        assert!(Config::load(None, env_of(&[("TOKENGATE_SECRET_KEY", "short")])).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn transport_limits_default_on_and_configurable() {
        let c = Config::load(None, env_of(&[])).unwrap();
        assert_eq!(c.header_read_timeout_secs, 30);
        assert_eq!(c.body_read_timeout_secs, 60);
        assert_eq!(c.max_connections, 1024);
        let c = Config::load(
            None,
            env_of(&[
                ("TOKENGATE_HEADER_READ_TIMEOUT_SECS", "5"),
                ("TOKENGATE_BODY_READ_TIMEOUT_SECS", "7"),
                ("TOKENGATE_MAX_CONNECTIONS", "64"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (
                c.header_read_timeout_secs,
                c.body_read_timeout_secs,
                c.max_connections
            ),
            (5, 7, 64)
        );
        for off in [
            "TOKENGATE_HEADER_READ_TIMEOUT_SECS",
            "TOKENGATE_BODY_READ_TIMEOUT_SECS",
            "TOKENGATE_MAX_CONNECTIONS",
        ] {
            assert!(Config::load(None, |k| (k == off).then(|| "0".to_string())).is_err());
        }
        let dir = std::env::temp_dir().join(format!("tg-limits-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = dir.join("limits.toml");
        std::fs::write(
            &f,
            "header_read_timeout_secs = 3\nbody_read_timeout_secs = 4\nmax_connections = 5\n",
        )
        .unwrap();
        let c = Config::load(Some(&f), env_of(&[])).unwrap();
        assert_eq!(
            (
                c.header_read_timeout_secs,
                c.body_read_timeout_secs,
                c.max_connections
            ),
            (3, 4, 5)
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_never_print() {
        let c = Config::load(
            None,
            env_of(&[(
                "TOKENGATE_SECRET_KEY",
                "0123456789abcdef0123456789abcdef-very-secret",
            )]),
        )
        .unwrap();
        let printed = format!("{c:?}");
        assert!(!printed.contains("very-secret"), "{printed}");
        assert!(printed.contains("***"));
    }

    #[test]
    fn secret_is_generated_once_with_private_mode() {
        let dir = std::env::temp_dir().join(format!("tg-secret-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let mut c = Config::load(None, |k| {
            (k == "TOKENGATE_DATA_DIR").then(|| dir.display().to_string())
        })
        .unwrap();
        c.load_or_create_secret().unwrap();
        let first = c.secret_bytes();
        assert_eq!(first.len(), 64);
        let mut again = Config::load(None, |k| {
            (k == "TOKENGATE_DATA_DIR").then(|| dir.display().to_string())
        })
        .unwrap();
        again.load_or_create_secret().unwrap();
        assert_eq!(first, again.secret_bytes());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.join("secret.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
