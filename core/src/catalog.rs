//! The model catalog: upstream providers, models with their prices, and routing aliases
//! (ordered priority tiers of weighted targets). The gateway keeps a snapshot of it in
//! memory, rebuilt after every change, so the hot path never reads these tables.

use serde::{Deserialize, Serialize};

pub use tokengate_api::kinds::ProviderKind;

use crate::money::Prices;
use crate::{Db, Error, now_ms};

/// The adapter kinds a provider can be.
pub const PROVIDER_KINDS: &[ProviderKind] = ProviderKind::ALL;

/// An upstream provider. `api_key_enc` is the provider key sealed by the server; this
/// crate never sees it in the clear.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Provider {
    pub id: i64,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    #[serde(skip_serializing)]
    pub api_key_enc: Option<String>,
    /// Adapter-specific settings (JSON object), e.g. the mock provider's latency.
    pub config: serde_json::Value,
    pub enabled: bool,
    pub created_at: i64,
}

/// A model served by one provider. `name` is provider-qualified (`openai/gpt-4o-mini`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Model {
    pub id: i64,
    pub name: String,
    pub provider_id: i64,
    pub upstream_model: String,
    pub input_price_nano: i64,
    pub output_price_nano: i64,
    pub cache_read_price_nano: Option<i64>,
    pub cache_write_price_nano: Option<i64>,
    pub max_output_tokens: i64,
    pub complexity_tier: String,
    pub enabled: bool,
    pub created_at: i64,
}

impl Model {
    /// Prices per million tokens.
    pub fn prices(&self) -> Prices {
        Prices {
            input_per_m: self.input_price_nano,
            output_per_m: self.output_price_nano,
            cache_read_per_m: self.cache_read_price_nano,
            cache_write_per_m: self.cache_write_price_nano,
        }
    }
}

/// One target of an alias: a model, its priority tier (lower first) and weight in the tier.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, sqlx::FromRow)]
pub struct AliasTarget {
    pub model_id: i64,
    pub priority: i64,
    pub weight: i64,
}

/// A routing alias such as `tokengate-fast`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Alias {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub complexity_tier: String,
    pub enabled: bool,
    pub targets: Vec<AliasTarget>,
    pub created_at: i64,
}

/// A key group: a named policy saying which providers and which models or aliases its
/// keys may use (`None` = no restriction on that axis).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyGroup {
    pub id: i64,
    pub name: String,
    pub allowed_providers: Option<Vec<String>>,
    /// Model or alias names, or `provider/*` patterns.
    pub allowed_models: Option<Vec<String>>,
    pub created_at: i64,
}

/// Everything the router needs, loaded in one go.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    pub providers: Vec<Provider>,
    pub models: Vec<Model>,
    pub aliases: Vec<Alias>,
    pub key_groups: Vec<KeyGroup>,
}

// Catalog rows as stored: flags are integers (0/1) and lists and settings JSON text.

#[derive(sqlx::FromRow)]
struct ProviderRow {
    id: i64,
    name: String,
    #[sqlx(try_from = "String")]
    kind: ProviderKind,
    base_url: Option<String>,
    api_key_enc: Option<String>,
    config: String,
    enabled: i64,
    created_at: i64,
}

impl TryFrom<ProviderRow> for Provider {
    type Error = Error;
    fn try_from(r: ProviderRow) -> Result<Provider, Error> {
        Ok(Provider {
            id: r.id,
            name: r.name,
            kind: r.kind,
            base_url: r.base_url,
            api_key_enc: r.api_key_enc,
            config: serde_json::from_str(&r.config)?,
            enabled: r.enabled != 0,
            created_at: r.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
struct ModelRow {
    id: i64,
    name: String,
    provider_id: i64,
    upstream_model: String,
    input_price_nano: i64,
    output_price_nano: i64,
    cache_read_price_nano: Option<i64>,
    cache_write_price_nano: Option<i64>,
    max_output_tokens: i64,
    complexity_tier: String,
    enabled: i64,
    created_at: i64,
}

impl From<ModelRow> for Model {
    fn from(r: ModelRow) -> Model {
        Model {
            id: r.id,
            name: r.name,
            provider_id: r.provider_id,
            upstream_model: r.upstream_model,
            input_price_nano: r.input_price_nano,
            output_price_nano: r.output_price_nano,
            cache_read_price_nano: r.cache_read_price_nano,
            cache_write_price_nano: r.cache_write_price_nano,
            max_output_tokens: r.max_output_tokens,
            complexity_tier: r.complexity_tier,
            enabled: r.enabled != 0,
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct AliasRow {
    id: i64,
    name: String,
    description: String,
    complexity_tier: String,
    enabled: i64,
    created_at: i64,
}

impl From<AliasRow> for Alias {
    fn from(r: AliasRow) -> Alias {
        Alias {
            id: r.id,
            name: r.name,
            description: r.description,
            complexity_tier: r.complexity_tier,
            enabled: r.enabled != 0,
            targets: Vec::new(),
            created_at: r.created_at,
        }
    }
}

#[derive(sqlx::FromRow)]
struct TargetRow {
    alias_id: i64,
    #[sqlx(flatten)]
    target: AliasTarget,
}

#[derive(sqlx::FromRow)]
struct KeyGroupRow {
    id: i64,
    name: String,
    allowed_providers: Option<String>,
    allowed_models: Option<String>,
    created_at: i64,
}

impl TryFrom<KeyGroupRow> for KeyGroup {
    type Error = Error;
    fn try_from(r: KeyGroupRow) -> Result<KeyGroup, Error> {
        let list = |v: Option<String>| v.map(|s| serde_json::from_str(&s)).transpose();
        Ok(KeyGroup {
            id: r.id,
            name: r.name,
            allowed_providers: list(r.allowed_providers)?,
            allowed_models: list(r.allowed_models)?,
            created_at: r.created_at,
        })
    }
}

/// Loads the whole catalog.
pub async fn load(db: &Db) -> Result<Catalog, Error> {
    let providers = sqlx::query_as::<_, ProviderRow>(
        "SELECT id, name, kind, base_url, api_key_enc, config, enabled, created_at FROM providers \
         ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(Provider::try_from)
    .collect::<Result<Vec<_>, Error>>()?;
    let models = sqlx::query_as::<_, ModelRow>(
        "SELECT id, name, provider_id, upstream_model, input_price_nano, output_price_nano, \
         cache_read_price_nano, cache_write_price_nano, max_output_tokens, complexity_tier, \
         enabled, created_at FROM models ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(Model::from)
    .collect();
    let targets = sqlx::query_as::<_, TargetRow>(
        "SELECT alias_id, model_id, priority, weight FROM alias_targets ORDER BY alias_id, priority, id",
    )
    .fetch_all(db.pool())
    .await?;
    let mut aliases: Vec<Alias> = sqlx::query_as::<_, AliasRow>(
        "SELECT id, name, description, complexity_tier, enabled, created_at FROM aliases ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(Alias::from)
    .collect();
    for t in targets {
        if let Some(a) = aliases.iter_mut().find(|a| a.id == t.alias_id) {
            a.targets.push(t.target);
        }
    }
    let key_groups = sqlx::query_as::<_, KeyGroupRow>(
        "SELECT id, name, allowed_providers, allowed_models, created_at FROM key_groups ORDER BY id",
    )
    .fetch_all(db.pool())
    .await?
    .into_iter()
    .map(KeyGroup::try_from)
    .collect::<Result<Vec<_>, Error>>()?;
    Ok(Catalog {
        providers,
        models,
        aliases,
        key_groups,
    })
}

/// Creates or updates a key group by name; returns its id.
pub async fn upsert_key_group(
    db: &Db,
    name: &str,
    allowed_providers: Option<&[String]>,
    allowed_models: Option<&[String]>,
) -> Result<i64, Error> {
    if !valid_name(name) || name.contains('/') {
        return Err(Error::Invalid(format!("invalid key group name {name:?}")));
    }
    check_list("allowed_providers", allowed_providers, valid_name)?;
    check_list("allowed_models", allowed_models, valid_pattern)?;
    let enc = |v: Option<&[String]>| v.map(serde_json::to_string).transpose();
    Ok(sqlx::query_scalar(
        "INSERT INTO key_groups (name, allowed_providers, allowed_models, created_at)          VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET          allowed_providers = excluded.allowed_providers, allowed_models = excluded.allowed_models          RETURNING id",
    )
    .bind(name)
    .bind(enc(allowed_providers)?)
    .bind(enc(allowed_models)?)
    .bind(now_ms())
    .fetch_one(db.pool())
    .await?)
}

/// Deletes one catalog row by name, refusing (409) while something still refers to it.
async fn delete_named(
    db: &Db,
    table: &str,
    name: &str,
    blocker: Option<(&str, &str)>,
) -> Result<(), Error> {
    let mut tx = db.pool().begin().await?;
    let id: i64 = sqlx::query_scalar(&format!("SELECT id FROM {table} WHERE name = $1"))
        .bind(name)
        .fetch_optional(&mut *tx)
        .await?
        .ok_or(Error::NotFound)?;
    if let Some((sql, what)) = blocker {
        let n: i64 = sqlx::query_scalar(sql).bind(id).fetch_one(&mut *tx).await?;
        if n > 0 {
            return Err(Error::Conflict(format!(
                "{name} is still used by {n} {what}; remove those first"
            )));
        }
    }
    if table == "aliases" {
        sqlx::query("DELETE FROM alias_targets WHERE alias_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
    }
    sqlx::query(&format!("DELETE FROM {table} WHERE id = $1"))
        .bind(id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes a provider that no model uses.
pub async fn delete_provider(db: &Db, name: &str) -> Result<(), Error> {
    let q = "SELECT COUNT(*) FROM models WHERE provider_id = $1";
    delete_named(db, "providers", name, Some((q, "model(s)"))).await
}

/// Deletes a model that no alias targets.
pub async fn delete_model(db: &Db, name: &str) -> Result<(), Error> {
    let q = "SELECT COUNT(*) FROM alias_targets WHERE model_id = $1";
    delete_named(db, "models", name, Some((q, "alias target(s)"))).await
}

/// Deletes an alias and its targets.
pub async fn delete_alias(db: &Db, name: &str) -> Result<(), Error> {
    delete_named(db, "aliases", name, None).await
}

/// Deletes a key group that no key belongs to.
pub async fn delete_key_group(db: &Db, name: &str) -> Result<(), Error> {
    let q = "SELECT COUNT(*) FROM api_keys WHERE group_id = $1 AND status <> 'revoked'";
    delete_named(db, "key_groups", name, Some((q, "key(s)"))).await
}

/// Provider fields a caller sets.
#[derive(Debug, Clone)]
pub struct ProviderSpec {
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    /// Sealed provider key; `None` keeps the stored one, unless the base URL moves to
    /// another origin (then the stored key is cleared: keys are bound to their origin).
    pub api_key_enc: Option<String>,
    pub config: serde_json::Value,
    pub enabled: bool,
}

/// Longest provider base URL, in bytes.
pub const MAX_BASE_URL: usize = 2048;
/// Longest sealed provider key, in bytes (a key of about 12 KiB once sealed).
pub const MAX_SEALED_KEY: usize = 16 * 1024;
/// Largest provider config, serialized, in bytes.
pub const MAX_PROVIDER_CONFIG: usize = 64 * 1024;

/// Longest upstream model id, in bytes.
pub const MAX_UPSTREAM_MODEL: usize = 256;
/// Longest complexity tier, in bytes.
pub const MAX_TIER: usize = 64;
/// Longest alias description, in bytes.
pub const MAX_DESCRIPTION: usize = 1024;

/// Refuses catalog text over `max` bytes or with control characters (line breaks and tabs
/// only where `multiline`); PostgreSQL cannot even store a NUL.
fn check_text(what: &str, text: &str, max: usize, multiline: bool) -> Result<(), Error> {
    if text.len() > max {
        return Err(Error::Invalid(format!("{what} is longer than {max} bytes")));
    }
    let allowed = |c: char| multiline && (c == '\n' || c == '\t' || c == '\r');
    if text.chars().any(|c| c.is_control() && !allowed(c)) {
        return Err(Error::Invalid(format!(
            "{what} may not contain control characters"
        )));
    }
    Ok(())
}

/// Most entries a key group's allow-list (or an alias's target list) may hold.
pub const MAX_LIST_ENTRIES: usize = 256;

/// A model or alias name, or a `provider/*` pattern.
fn valid_pattern(entry: &str) -> bool {
    valid_name(entry.strip_suffix("/*").unwrap_or(entry))
}

/// Refuses an allow-list that is too long or holds an entry `ok` rejects.
fn check_list(what: &str, list: Option<&[String]>, ok: fn(&str) -> bool) -> Result<(), Error> {
    let Some(list) = list else { return Ok(()) };
    if list.len() > MAX_LIST_ENTRIES {
        return Err(Error::Invalid(format!(
            "{what} holds more than {MAX_LIST_ENTRIES} entries"
        )));
    }
    match list.iter().find(|e| !ok(e)) {
        Some(bad) => {
            let shown: String = bad.chars().take(64).collect();
            Err(Error::Invalid(format!("invalid entry {shown:?} in {what}")))
        }
        None => Ok(()),
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:".contains(&b))
}

/// The origin of a base URL — scheme, host and port, lowercased, without user info — to
/// which a provider's stored key is bound. A backslash ends the authority, as it does for
/// HTTP clients; `None` for a value without a scheme.
pub fn url_origin(url: &str) -> Option<String> {
    let (scheme, rest) = url.trim().split_once("://")?;
    let authority = rest.split(['/', '\\', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    Some(format!(
        "{}://{}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    ))
}

/// Whether a stored key may follow a base-URL change from `old` to `new`: only when both
/// name the same origin (or neither names one).
fn same_origin(old: Option<&str>, new: Option<&str>) -> bool {
    old.and_then(url_origin) == new.and_then(url_origin)
}

/// Creates or updates a provider by name; returns its id. A stored key is kept only while
/// the base URL stays on the same origin: moving it to another scheme, host or port clears
/// the key unless the same change brings a new one (`api_key_enc`), so a stored secret is
/// never sent to a new destination. One statement decides it, and a concurrent base-URL
/// change in between clears the key too.
pub async fn upsert_provider(db: &Db, spec: &ProviderSpec) -> Result<i64, Error> {
    if !valid_name(&spec.name) || spec.name.contains('/') {
        return Err(Error::Invalid(format!(
            "invalid provider name {:?}",
            spec.name
        )));
    }
    if spec.kind.needs_base_url() && spec.base_url.as_deref().is_none_or(str::is_empty) {
        return Err(Error::Invalid(format!(
            "provider {} needs a base_url",
            spec.name
        )));
    }
    if spec
        .base_url
        .as_deref()
        .is_some_and(|u| u.len() > MAX_BASE_URL)
    {
        return Err(Error::Invalid(format!(
            "base_url is longer than {MAX_BASE_URL} bytes"
        )));
    }
    if spec
        .api_key_enc
        .as_deref()
        .is_some_and(|k| k.len() > MAX_SEALED_KEY)
    {
        return Err(Error::Invalid("api_key is too long".into()));
    }
    let config = if spec.config.is_null() {
        serde_json::json!({})
    } else {
        spec.config.clone()
    };
    if !config.is_object() {
        return Err(Error::Invalid(
            "provider config must be a JSON object".into(),
        ));
    }
    if config.to_string().len() > MAX_PROVIDER_CONFIG {
        return Err(Error::Invalid(format!(
            "provider config is larger than {MAX_PROVIDER_CONFIG} bytes"
        )));
    }
    let now = now_ms();
    let previous: Option<Option<String>> =
        sqlx::query_scalar("SELECT base_url FROM providers WHERE name = $1")
            .bind(&spec.name)
            .fetch_optional(db.pool())
            .await?;
    let old_url = previous.clone().flatten();
    let keep = i64::from(
        previous
            .as_ref()
            .is_none_or(|old| same_origin(old.as_deref(), spec.base_url.as_deref())),
    );
    Ok(sqlx::query_scalar(
        "INSERT INTO providers (name, kind, base_url, api_key_enc, config, enabled, created_at, \
         updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $7) ON CONFLICT (name) DO UPDATE SET \
         kind = excluded.kind, base_url = excluded.base_url, \
         api_key_enc = CASE WHEN excluded.api_key_enc IS NOT NULL THEN excluded.api_key_enc \
           WHEN $8 = 1 AND providers.base_url IS NOT DISTINCT FROM $9 THEN providers.api_key_enc \
           ELSE NULL END, \
         config = excluded.config, enabled = excluded.enabled, updated_at = excluded.updated_at \
         RETURNING id",
    )
    .bind(&spec.name)
    .bind(spec.kind.as_str())
    .bind(&spec.base_url)
    .bind(&spec.api_key_enc)
    .bind(config.to_string())
    .bind(i64::from(spec.enabled))
    .bind(now)
    .bind(keep)
    .bind(old_url)
    .fetch_one(db.pool())
    .await?)
}

/// Sets (`Some`) or clears (`None`) a provider's sealed key.
pub async fn set_provider_key(db: &Db, name: &str, sealed: Option<&str>) -> Result<(), Error> {
    let n = sqlx::query("UPDATE providers SET api_key_enc = $1, updated_at = $2 WHERE name = $3")
        .bind(sealed)
        .bind(now_ms())
        .bind(name)
        .execute(db.pool())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Model fields a caller sets.
#[derive(Debug, Clone, Default)]
pub struct ModelSpec {
    pub name: String,
    pub provider: String,
    pub upstream_model: String,
    pub input_price_nano: i64,
    pub output_price_nano: i64,
    pub cache_read_price_nano: Option<i64>,
    pub cache_write_price_nano: Option<i64>,
    pub max_output_tokens: i64,
    pub complexity_tier: String,
    pub enabled: bool,
}

/// Creates or updates a model by name; returns its id.
pub async fn upsert_model(db: &Db, spec: &ModelSpec) -> Result<i64, Error> {
    if !valid_name(&spec.name) {
        return Err(Error::Invalid(format!(
            "invalid model name {:?}",
            spec.name
        )));
    }
    if spec.upstream_model.is_empty() {
        return Err(Error::Invalid(format!(
            "model {} needs an upstream_model",
            spec.name
        )));
    }
    check_text(
        "upstream_model",
        &spec.upstream_model,
        MAX_UPSTREAM_MODEL,
        false,
    )?;
    check_text("complexity_tier", &spec.complexity_tier, MAX_TIER, false)?;
    let prices = [
        Some(spec.input_price_nano),
        Some(spec.output_price_nano),
        spec.cache_read_price_nano,
        spec.cache_write_price_nano,
    ];
    if prices.iter().flatten().any(|p| *p < 0) {
        return Err(Error::Invalid("prices cannot be negative".into()));
    }
    if spec.max_output_tokens <= 0 {
        return Err(Error::Invalid("max_output_tokens must be positive".into()));
    }
    let provider_id: i64 = sqlx::query_scalar("SELECT id FROM providers WHERE name = $1")
        .bind(&spec.provider)
        .fetch_optional(db.pool())
        .await?
        .ok_or_else(|| Error::Invalid(format!("unknown provider {:?}", spec.provider)))?;
    let now = now_ms();
    Ok(sqlx::query_scalar(
        "INSERT INTO models (name, provider_id, upstream_model, input_price_nano, \
         output_price_nano, cache_read_price_nano, cache_write_price_nano, max_output_tokens, \
         complexity_tier, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) ON CONFLICT (name) DO UPDATE SET \
         provider_id = excluded.provider_id, upstream_model = excluded.upstream_model, \
         input_price_nano = excluded.input_price_nano, output_price_nano = excluded.output_price_nano, \
         cache_read_price_nano = excluded.cache_read_price_nano, \
         cache_write_price_nano = excluded.cache_write_price_nano, \
         max_output_tokens = excluded.max_output_tokens, complexity_tier = excluded.complexity_tier, \
         enabled = excluded.enabled, updated_at = excluded.updated_at RETURNING id",
    )
    .bind(&spec.name)
    .bind(provider_id)
    .bind(&spec.upstream_model)
    .bind(spec.input_price_nano)
    .bind(spec.output_price_nano)
    .bind(spec.cache_read_price_nano)
    .bind(spec.cache_write_price_nano)
    .bind(spec.max_output_tokens)
    .bind(&spec.complexity_tier)
    .bind(i64::from(spec.enabled))
    .bind(now)
    .fetch_one(db.pool())
    .await?)
}

/// One alias target named by model.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    pub model: String,
    pub priority: i64,
    pub weight: i64,
}

/// Creates or replaces an alias and its targets in one transaction; returns its id.
pub async fn upsert_alias(
    db: &Db,
    name: &str,
    description: &str,
    complexity_tier: &str,
    targets: &[TargetSpec],
) -> Result<i64, Error> {
    if !valid_name(name) || name.contains('/') {
        return Err(Error::Invalid(format!(
            "invalid alias name {name:?} (aliases have no '/')"
        )));
    }
    if targets.is_empty() {
        return Err(Error::Invalid(format!(
            "alias {name} needs at least one target"
        )));
    }
    if targets.iter().any(|t| t.weight <= 0 || t.priority < 0) {
        return Err(Error::Invalid(
            "target weights must be positive, priorities ≥ 0".into(),
        ));
    }
    if targets.len() > MAX_LIST_ENTRIES {
        return Err(Error::Invalid(format!(
            "an alias has at most {MAX_LIST_ENTRIES} targets"
        )));
    }
    check_text("description", description, MAX_DESCRIPTION, true)?;
    check_text("complexity_tier", complexity_tier, MAX_TIER, false)?;
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let alias_id: i64 = sqlx::query_scalar(
        "INSERT INTO aliases (name, description, complexity_tier, enabled, created_at, updated_at) \
         VALUES ($1, $2, $3, 1, $4, $4) ON CONFLICT (name) DO UPDATE SET \
         description = excluded.description, complexity_tier = excluded.complexity_tier, \
         updated_at = excluded.updated_at RETURNING id",
    )
    .bind(name)
    .bind(description)
    .bind(complexity_tier)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    sqlx::query("DELETE FROM alias_targets WHERE alias_id = $1")
        .bind(alias_id)
        .execute(&mut *tx)
        .await?;
    for t in targets {
        let model_id: i64 = sqlx::query_scalar("SELECT id FROM models WHERE name = $1")
            .bind(&t.model)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or_else(|| Error::Invalid(format!("alias {name}: unknown model {:?}", t.model)))?;
        sqlx::query(
            "INSERT INTO alias_targets (alias_id, model_id, priority, weight) VALUES ($1, $2, $3, $4)",
        )
        .bind(alias_id)
        .bind(model_id)
        .bind(t.priority)
        .bind(t.weight)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(alias_id)
}

#[cfg(test)]
mod origin_tests {
    use super::*;

    #[test]
    fn keys_follow_only_same_origin_changes() {
        assert_eq!(
            url_origin("HTTPS://API.Example.com/v1?x=1").as_deref(),
            Some("https://api.example.com")
        );
        assert_eq!(
            url_origin("https://user:pw@api.example.com:8443/v1").as_deref(),
            Some("https://api.example.com:8443")
        );
        // A backslash ends the authority, as HTTP clients read it.
        assert_eq!(
            url_origin("https://good.example\\@evil.example/").as_deref(),
            Some("https://good.example")
        );
        assert!(same_origin(
            Some("https://api.example.com/v1"),
            Some("https://api.example.com/v2")
        ));
        assert!(!same_origin(
            Some("https://api.example.com/v1"),
            Some("https://evil.example/v1")
        ));
        assert!(!same_origin(
            Some("https://api.example.com"),
            Some("http://api.example.com")
        ));
        assert!(!same_origin(
            Some("https://api.example.com"),
            Some("https://api.example.com:444")
        ));
        assert!(!same_origin(None, Some("https://api.example.com")));
        assert!(same_origin(None, None));
    }
}

#[cfg(test)]
mod list_tests {
    use super::*;

    #[test]
    fn allow_lists_hold_names_or_provider_patterns_only() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(
            check_list(
                "m",
                Some(&l(&["openai/*", "tokengate-fast"])),
                valid_pattern
            )
            .is_ok()
        );
        assert!(check_list("m", None, valid_pattern).is_ok());
        for bad in ["", "a\u{0}b", "x y", "*"] {
            assert!(
                check_list("m", Some(&l(&[bad])), valid_pattern).is_err(),
                "{bad:?}"
            );
        }
        let huge = "a".repeat(2_000_000);
        let err = check_list("p", Some(&l(&[&huge])), valid_name).unwrap_err();
        assert!(
            err.to_string().len() < 200,
            "the refusal does not echo the entry"
        );
        let many = vec!["m".to_string(); MAX_LIST_ENTRIES + 1];
        assert!(check_list("p", Some(&many), valid_name).is_err());
    }

    #[test]
    fn catalog_text_is_bounded_and_printable() {
        assert!(check_text("d", "two\nlines\tand tabs", 64, true).is_ok());
        assert!(check_text("t", "two\nlines", 64, false).is_err());
        assert!(check_text("d", "a\u{0}b", 64, true).is_err());
        assert!(check_text("d", "\u{1b}[2J", 64, true).is_err());
        assert!(check_text("d", &"a".repeat(65), 64, true).is_err());
        assert!(check_text("d", &"a".repeat(64), 64, true).is_ok());
    }
}
