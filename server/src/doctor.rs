//! `tokengate-server doctor`: checks a configuration as `serve` would read it, one line per
//! check — `✓` good, `!` a warning, `✗` an error — each problem with its fix: the database
//! (reachable, migrated), the server secret (present, not world-readable) and the env file
//! (not world-readable), the public URL (https unless local), demo mode (off), every provider
//! (reachable, key accepted, each configured model offered), prices of every routable model,
//! Stripe (both secrets, their format, webhook events arriving), every OpenID provider's
//! discovery, and in cluster mode Redis and the other live instances (the instance
//! registry). Exit code 0 all good, 1 warnings, 2 errors.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use tokengate_api::kinds::ProviderKind;
use tokengate_core::{Db, MigrationStatus, catalog, migration_status};

use crate::config::Config;
use crate::probe::{self, ProviderProblem};

/// How a check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Ok,
    Warn,
    Fail,
}

impl Level {
    pub fn mark(self) -> &'static str {
        match self {
            Level::Ok => "✓",
            Level::Warn => "!",
            Level::Fail => "✗",
        }
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub level: Level,
    /// What was checked, e.g. `database` or `provider openai`.
    pub what: String,
    /// What was found.
    pub detail: String,
    /// What to do about it, for warnings and errors.
    pub fix: Option<String>,
}

impl Check {
    fn ok(what: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            level: Level::Ok,
            what: what.into(),
            detail: detail.into(),
            fix: None,
        }
    }
    fn warn(what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            level: Level::Warn,
            what: what.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
    fn fail(what: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            level: Level::Fail,
            what: what.into(),
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    /// `✓ what: detail` or `✗ what: detail — fix: …`, on one line.
    pub fn line(&self) -> String {
        match &self.fix {
            Some(fix) => format!(
                "{} {}: {} — fix: {fix}",
                self.level.mark(),
                self.what,
                self.detail
            ),
            None => format!("{} {}: {}", self.level.mark(), self.what, self.detail),
        }
    }
}

/// Every check, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    /// 0 all good, 1 warnings, 2 errors.
    pub fn exit_code(&self) -> u8 {
        match self.checks.iter().map(|c| c.level).max() {
            Some(Level::Fail) => 2,
            Some(Level::Warn) => 1,
            _ => 0,
        }
    }

    /// The report as printed, with a closing summary line.
    pub fn render(&self) -> String {
        let mut s = String::new();
        for c in &self.checks {
            s.push_str(&c.line());
            s.push('\n');
        }
        let count = |l: Level| self.checks.iter().filter(|c| c.level == l).count();
        s.push_str(&format!(
            "\n{} ok, {} warning(s), {} error(s)\n",
            count(Level::Ok),
            count(Level::Warn),
            count(Level::Fail)
        ));
        s
    }
}

/// A report for a configuration that could not even be read.
pub fn config_error(error: &str) -> Report {
    Report {
        checks: vec![Check::fail(
            "configuration",
            error,
            "correct the file or variable named; `serve` refuses to start with it",
        )],
    }
}

/// Where the configuration came from, for the report's wording.
#[derive(Debug, Clone, Default)]
pub struct Sources<'a> {
    pub config_file: Option<&'a Path>,
    pub env_file: Option<&'a Path>,
}

/// Runs every check of `config`.
pub async fn diagnose(config: &Config, sources: &Sources<'_>) -> Report {
    let mut checks = vec![Check::ok(
        "configuration",
        match sources.config_file {
            Some(p) => format!("{} read", p.display()),
            None => "defaults and TOKENGATE_* variables (no --config)".into(),
        },
    )];
    let db = database(config, &mut checks).await;
    secrets(config, sources, &mut checks);
    public_url(config, &mut checks);
    if config.demo {
        checks.push(Check::fail(
            "demo mode",
            "on: an administrator and a funded key with printed secrets are seeded",
            "unset TOKENGATE_DEMO and set `demo = false`",
        ));
    } else {
        checks.push(Check::ok("demo mode", "off"));
    }
    providers_and_models(config, db.as_ref(), &mut checks).await;
    stripe(config, db.as_ref(), &mut checks).await;
    oidc(config, &mut checks).await;
    cluster(config, db.as_ref(), &mut checks).await;
    if let Some(db) = db {
        db.close().await;
    }
    Report { checks }
}

/// A database URL without its password.
fn shown_db(url: &str) -> String {
    probe::redact_url(url)
}

/// The database check; the connection when it is current (connecting then migrates
/// nothing), for the checks that read it.
async fn database(config: &Config, checks: &mut Vec<Check>) -> Option<Db> {
    let shown = shown_db(&config.database_url);
    let what = "database";
    match migration_status(&config.database_url).await {
        Err(e) => {
            let detail = format!("{shown} unreachable: {}", one_line(&e.to_string()));
            checks.push(Check::fail(
                what,
                detail,
                "check database_url / TOKENGATE_DATABASE_URL (host, port, user, password, \
                 database name) and that the database server is running",
            ));
            None
        }
        Ok(MigrationStatus::Missing) => {
            checks.push(Check::warn(
                what,
                format!("{shown} does not exist yet"),
                "start the server once (it creates and migrates it) or run `tokengate-server init`",
            ));
            None
        }
        Ok(MigrationStatus::Pending { applied, pending }) => {
            checks.push(Check::warn(
                what,
                format!("{shown} reachable, {applied} migration(s) applied, {pending} pending"),
                "start this version of the server once: it applies them at start",
            ));
            None
        }
        Ok(MigrationStatus::Broken(why)) => {
            checks.push(Check::fail(
                what,
                format!("{shown}: {why}"),
                "restore the database from a backup or run the tokengate version that migrated it",
            ));
            None
        }
        Ok(MigrationStatus::Current { applied }) => {
            checks.push(Check::ok(
                what,
                format!("{shown} reachable, all {applied} migrations applied"),
            ));
            Db::connect(&config.database_url).await.ok()
        }
    }
}

fn one_line(s: &str) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    s.chars().take(200).collect()
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

/// A check of a file holding secrets: not world-readable (error), not group-readable
/// (warning).
fn private_file(what: &str, path: &Path, checks: &mut Vec<Check>) {
    match mode_of(path) {
        Some(mode) if mode & 0o007 != 0 => checks.push(Check::fail(
            what,
            format!(
                "{} is readable by every user (mode {mode:o})",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        )),
        Some(mode) if mode & 0o070 != 0 => checks.push(Check::warn(
            what,
            format!(
                "{} is readable by its group (mode {mode:o})",
                path.display()
            ),
            format!("chmod 600 {}", path.display()),
        )),
        Some(mode) => checks.push(Check::ok(
            what,
            format!("{} (mode {mode:o})", path.display()),
        )),
        None => checks.push(Check::ok(what, format!("{}", path.display()))),
    }
}

fn secrets(config: &Config, sources: &Sources<'_>, checks: &mut Vec<Check>) {
    if let Some(env_file) = sources.env_file {
        private_file("env file", env_file, checks);
    }
    if config.secret_key.is_some() {
        checks.push(Check::ok(
            "secret key",
            "set by TOKENGATE_SECRET_KEY (or secret_key)",
        ));
        return;
    }
    let path = config.data_dir.join("secret.key");
    if path.exists() {
        private_file("secret key", &path, checks);
    } else {
        checks.push(Check::warn(
            "secret key",
            format!("{} does not exist yet", path.display()),
            "the server generates it at first start; with several instances set the same \
             TOKENGATE_SECRET_KEY on each (`tokengate-server init` writes one)",
        ));
    }
}

fn public_url(config: &Config, checks: &mut Vec<Check>) {
    let u = &config.public_url;
    if u.starts_with("https://") {
        checks.push(Check::ok("public URL", u.clone()));
    } else if probe::is_local_url(u) {
        checks.push(Check::ok(
            "public URL",
            format!("{u} (local, http is fine)"),
        ));
    } else {
        checks.push(Check::fail(
            "public URL",
            format!(
                "{u} is not https: session cookies and keys would cross the network in the clear"
            ),
            "serve through a TLS proxy and set public_url to its https:// URL",
        ));
    }
}

/// A provider as the gateway would route to it.
struct ProviderView {
    name: String,
    kind: ProviderKind,
    base_url: Option<String>,
    key: Option<String>,
    enabled: bool,
    /// Where the key comes from, for the fix text.
    key_source: String,
}

/// A routable model: enabled, on an enabled provider.
struct ModelView {
    name: String,
    provider: String,
    upstream: String,
    priced: bool,
}

async fn providers_and_models(config: &Config, db: Option<&Db>, checks: &mut Vec<Check>) {
    let mut providers: Vec<ProviderView> = Vec::new();
    let mut models: Vec<ModelView> = Vec::new();
    for p in &config.providers {
        providers.push(ProviderView {
            name: p.name.clone(),
            kind: p.kind,
            base_url: p.base_url.clone(),
            key: p.api_key.as_ref().map(|k| k.expose().to_string()),
            enabled: p.enabled,
            key_source: match &p.api_key_env {
                Some(var) => format!("set {var} (env file or environment) to a valid key"),
                None => "set api_key_env for this provider and that variable to a valid key".into(),
            },
        });
    }
    let price_ok = |input: &str, output: &str| {
        let nano = |s: &str| tokengate_core::money::parse_usd(s).unwrap_or(0);
        nano(input) > 0 || nano(output) > 0
    };
    for m in config.models.iter().filter(|m| m.enabled) {
        models.push(ModelView {
            name: m.name.clone(),
            provider: m.provider.clone(),
            upstream: m.upstream_model.clone(),
            priced: price_ok(&m.input_usd_per_m, &m.output_usd_per_m),
        });
    }
    if let Some(db) = db {
        match catalog::load(db).await {
            Ok(cat) => {
                let secret = config.secret_bytes();
                let names: HashMap<i64, &str> = cat
                    .providers
                    .iter()
                    .map(|p| (p.id, p.name.as_str()))
                    .collect();
                for p in &cat.providers {
                    // A key set in the admin console wins over the config's, as in the gateway.
                    let sealed = p
                        .api_key_enc
                        .as_ref()
                        .and_then(|s| crate::seal::open(&secret, s));
                    match providers.iter_mut().find(|v| v.name == p.name) {
                        Some(v) => {
                            if let Some(k) = sealed {
                                v.key = Some(k);
                                v.key_source =
                                    "set the provider's key again in the admin console".into();
                            }
                            v.base_url = p.base_url.clone().or(v.base_url.take());
                            v.enabled = p.enabled;
                        }
                        None => providers.push(ProviderView {
                            name: p.name.clone(),
                            kind: p.kind,
                            base_url: p.base_url.clone(),
                            key: sealed,
                            enabled: p.enabled,
                            key_source: "set the provider's key in the admin console".into(),
                        }),
                    }
                }
                for m in cat.models.iter().filter(|m| m.enabled) {
                    let Some(provider) = names.get(&m.provider_id) else {
                        continue;
                    };
                    let view = ModelView {
                        name: m.name.clone(),
                        provider: provider.to_string(),
                        upstream: m.upstream_model.clone(),
                        priced: m.input_price_nano > 0 || m.output_price_nano > 0,
                    };
                    match models.iter_mut().find(|v| v.name == m.name) {
                        Some(v) => *v = view,
                        None => models.push(view),
                    }
                }
            }
            Err(e) => checks.push(Check::fail(
                "catalog",
                format!(
                    "cannot read providers and models: {}",
                    one_line(&e.to_string())
                ),
                "check the database",
            )),
        }
    }
    let enabled: HashSet<&str> = providers
        .iter()
        .filter(|p| p.enabled)
        .map(|p| p.name.as_str())
        .collect();
    models.retain(|m| enabled.contains(m.provider.as_str()));

    let http = probe::client();
    for p in providers.iter().filter(|p| p.enabled) {
        let what = format!("provider {}", p.name);
        if p.kind == ProviderKind::Mock {
            checks.push(Check::ok(what, "built-in mock provider (canned answers)"));
            continue;
        }
        let Some(base) = p.base_url.clone().filter(|b| !b.is_empty()).or_else(|| {
            (p.kind == ProviderKind::Anthropic)
                .then(|| probe::default_base_url(p.kind).map(str::to_string))
                .flatten()
        }) else {
            checks.push(Check::fail(
                what,
                "no base_url",
                "set base_url, e.g. https://api.openai.com/v1",
            ));
            continue;
        };
        let listed = match probe::list_models(&http, p.kind, &base, p.key.as_deref()).await {
            Ok(list) => {
                checks.push(Check::ok(
                    what,
                    format!(
                        "{base} reachable, key accepted, {} model(s) listed",
                        list.len()
                    ),
                ));
                list
            }
            Err(ProviderProblem::KeyRejected(status)) => {
                let detail = if p.key.is_some() {
                    format!("{base} rejected the key (HTTP {status})")
                } else {
                    format!("{base} wants a key (HTTP {status}) and none is configured")
                };
                checks.push(Check::fail(what, detail, p.key_source.clone()));
                continue;
            }
            Err(e) => {
                checks.push(Check::fail(
                    what,
                    format!("{base}: {e}"),
                    "check base_url (including /v1) and that the provider is up and reachable \
                     from this machine",
                ));
                continue;
            }
        };
        for m in models.iter().filter(|m| m.provider == p.name) {
            if !listed.iter().any(|l| l == &m.upstream) {
                checks.push(Check::fail(
                    format!("model {}", m.name),
                    format!("{} does not offer {:?}", p.name, m.upstream),
                    format!(
                        "correct upstream_model to one GET {base}/models lists, or disable the model"
                    ),
                ));
            }
        }
    }
    let unpriced: Vec<&ModelView> = models.iter().filter(|m| !m.priced).collect();
    if models.is_empty() {
        checks.push(Check::warn(
            "prices",
            "no model is routable: every /v1 call answers model_not_found",
            "add [[models]] with prices to the config (or in the admin console)",
        ));
    } else if unpriced.is_empty() {
        checks.push(Check::ok(
            "prices",
            format!("set for all {} routable model(s)", models.len()),
        ));
    } else {
        for m in unpriced {
            checks.push(Check::warn(
                format!("price of {}", m.name),
                "zero for input and output: customers use it for free",
                "set input_usd_per_m and output_usd_per_m (or the prices in the admin console)",
            ));
        }
    }
}

async fn stripe(config: &Config, db: Option<&Db>, checks: &mut Vec<Check>) {
    // Half a configuration never gets here: the config loader refuses it (see config_error).
    let Some(s) = &config.stripe else {
        checks.push(Check::ok("stripe", "not configured (top-ups disabled)"));
        return;
    };
    let mut bad = Vec::new();
    if !probe::stripe_secret_key_ok(s.secret_key.expose()) {
        bad.push("the secret key does not look like sk_live_…/sk_test_…/rk_…");
    }
    if !probe::stripe_webhook_secret_ok(s.webhook_secret.expose()) {
        bad.push("the webhook secret does not look like whsec_…");
    }
    if !bad.is_empty() {
        checks.push(Check::fail(
            "stripe",
            bad.join("; "),
            "copy the keys again from the Stripe dashboard (Developers → API keys, Webhooks)",
        ));
        return;
    }
    let hook = format!("{}/webhooks/payments/stripe", config.public_url);
    checks.push(Check::ok("stripe", "both secrets set, formats valid"));
    let Some(db) = db else { return };
    const WEEK_MS: i64 = 7 * 86_400_000;
    match tokengate_core::doctor::webhook_activity(db, "stripe", WEEK_MS).await {
        Ok(a) => {
            let recent = a
                .last_event_ms
                .is_some_and(|t| t >= tokengate_core::now_ms() - WEEK_MS);
            if recent {
                checks.push(Check::ok("stripe webhook", "events received this week"));
            } else if a.checkouts > 0 {
                checks.push(Check::warn(
                    "stripe webhook",
                    format!(
                        "{} checkout(s) this week but no webhook event: paid top-ups are not credited",
                        a.checkouts
                    ),
                    format!(
                        "add the endpoint {hook} in the Stripe dashboard and set its signing secret \
                         as TOKENGATE_STRIPE_WEBHOOK_SECRET"
                    ),
                ));
            } else {
                checks.push(Check::ok(
                    "stripe webhook",
                    format!("no checkout this week, none expected (endpoint: {hook})"),
                ));
            }
        }
        Err(e) => checks.push(Check::fail(
            "stripe webhook",
            one_line(&e.to_string()),
            "check the database",
        )),
    }
}

async fn oidc(config: &Config, checks: &mut Vec<Check>) {
    let http = probe::client();
    for o in &config.oidc {
        let what = format!("oidc {}", o.id);
        match probe::oidc_discovery(&http, &o.issuer).await {
            Ok(_) => checks.push(Check::ok(
                what,
                format!(
                    "discovery of {} read; redirect URL {}/auth/oidc/{}/callback",
                    o.issuer, config.public_url, o.id
                ),
            )),
            Err(e) => checks.push(Check::fail(
                what,
                e,
                "check issuer (exactly as the provider names itself) and that it is reachable \
                 from this machine",
            )),
        }
    }
}

async fn cluster(config: &Config, db: Option<&Db>, checks: &mut Vec<Check>) {
    let Some(url) = &config.redis_url else {
        return;
    };
    match probe::redis_ping(url.expose()).await {
        Ok(()) => checks.push(Check::ok("redis", "PONG")),
        Err(e) => checks.push(Check::fail(
            "redis",
            e,
            "check TOKENGATE_REDIS_URL and that Redis is running",
        )),
    }
    let Some(db) = db else { return };
    match tokengate_core::instances::live(db).await {
        Ok((now, live)) if live.is_empty() => checks.push(Check::ok(
            "instances",
            format!("none live right now (database time {now})"),
        )),
        Ok((now, live)) => {
            let list: Vec<String> = live
                .iter()
                .map(|i| {
                    format!(
                        "{} {} v{}{} (seen {} ms ago)",
                        i.id,
                        i.listen,
                        i.version,
                        if i.cluster { "" } else { ", without Redis" },
                        (now - i.last_seen_at).max(0)
                    )
                })
                .collect();
            if live.iter().any(|i| !i.cluster) {
                checks.push(Check::fail(
                    "instances",
                    format!("{} live: {}", live.len(), list.join("; ")),
                    "give every instance the same TOKENGATE_REDIS_URL (an instance without Redis \
                     cannot share the database)",
                ));
            } else {
                checks.push(Check::ok(
                    "instances",
                    format!("{} live: {}", live.len(), list.join("; ")),
                ));
            }
        }
        Err(e) => checks.push(Check::fail(
            "instances",
            one_line(&e.to_string()),
            "check the database",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_codes_follow_the_worst_check() {
        let mut r = Report::default();
        assert_eq!(r.exit_code(), 0);
        r.checks.push(Check::ok("a", "fine"));
        assert_eq!(r.exit_code(), 0);
        r.checks.push(Check::warn("b", "meh", "do x"));
        assert_eq!(r.exit_code(), 1);
        r.checks.push(Check::fail("c", "bad", "do y"));
        assert_eq!(r.exit_code(), 2);
        let text = r.render();
        assert!(text.contains("✓ a: fine\n"));
        assert!(text.contains("! b: meh — fix: do x\n"));
        assert!(text.contains("✗ c: bad — fix: do y\n"));
        assert!(text.ends_with("1 ok, 1 warning(s), 1 error(s)\n"));
    }
}
