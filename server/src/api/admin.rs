//! The admin API (`/api/v1/admin`, role admin): providers (keys write-only, sealed with
//! the server secret, reported only as set or unset), models and prices, aliases, key
//! groups, user suspension, provider health (breaker state, error rate, latency
//! percentiles) and an alias dry run. Every change is applied to the running gateway at
//! once by rebuilding its routing snapshot; nothing here is on the request hot path.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use tokengate_core::catalog::{self, Catalog, ModelSpec, ProviderSpec, TargetSpec};
use tokengate_core::money::{format_balance, format_exact, parse_usd, parse_usd_json};
use tokengate_core::{accounts, now_ms};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::AdminUser;
use crate::docs::schemas::{
    AdminErrors, AdminModelView, AdminRequestLogPage, AdminUserView, AliasView, BadRequest,
    Conflict, CreditResult, Deleted, DryRun, HealthReport, KeyGroupView, LedgerVerify, NotFound,
    ProviderTest, ProviderView, Unprocessable, UserLedger, UserStatus,
};

/// The admin routes; each handler's `#[utoipa::path]` names its method and path. (A
/// catch-all such as `{*name}` is written `{name}` in the OpenAPI document.)
pub fn route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_providers))
        .routes(routes!(get_provider, put_provider, delete_provider))
        .routes(routes!(list_models))
        .routes(routes!(get_model, put_model, delete_model))
        .routes(routes!(test_provider))
        .routes(routes!(request_logs))
        .routes(routes!(list_aliases))
        .routes(routes!(get_alias, put_alias, delete_alias))
        .routes(routes!(dry_run))
        .routes(routes!(list_groups))
        .routes(routes!(get_group, put_group, delete_group))
        .routes(routes!(search_users))
        .routes(routes!(user_ledger))
        .routes(routes!(credit))
        .routes(routes!(verify_ledger))
        .routes(routes!(suspend))
        .routes(routes!(reactivate))
        .routes(routes!(health))
}

type ApiResult = Result<Json<Value>, ApiError>;

async fn catalog_of(state: &AppState) -> Result<Catalog, ApiError> {
    Ok(catalog::load(&state.db).await?)
}

async fn applied(state: &AppState) -> Result<(), ApiError> {
    Ok(state.gateway.reload_routes().await?)
}

fn not_found(what: &str, name: &str) -> ApiError {
    ApiError::NotFound(format!("No {what} named {name:?}."))
}

// ----- providers ------------------------------------------------------------------------

fn provider_json(p: &catalog::Provider) -> Value {
    json!({"id": p.id, "name": p.name, "kind": p.kind, "base_url": p.base_url, "config": p.config,
           "enabled": p.enabled, "api_key": if p.api_key_enc.is_some() { "set" } else { "unset" },
           "created_at": p.created_at})
}

/// List providers
#[utoipa::path(get, path = "/providers", tag = "Admin", operation_id = "admin_list_providers",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Providers.", body = Vec<ProviderView>), AdminErrors))]
async fn list_providers(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let c = catalog_of(&state).await?;
    Ok(Json(Value::Array(
        c.providers.iter().map(provider_json).collect(),
    )))
}

async fn provider_view(state: &AppState, name: &str) -> ApiResult {
    let c = catalog_of(state).await?;
    c.providers
        .iter()
        .find(|p| p.name == name)
        .map(|p| Json(provider_json(p)))
        .ok_or_else(|| not_found("provider", name))
}

/// Get a provider
#[utoipa::path(get, path = "/providers/{name}", tag = "Admin", operation_id = "admin_get_provider",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "The provider.", body = ProviderView), AdminErrors, NotFound))]
async fn get_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    provider_view(&state, &name).await
}

/// Body of `PUT /providers/{name}`. `api_key`: absent keeps the stored key (unless
/// `base_url` moves to another origin, which clears it), a string replaces it, `null`
/// clears it.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ProviderRequest)]
struct ProviderBody {
    /// `openai` (any OpenAI-compatible server), `anthropic` or `mock`.
    #[schema(example = "openai")]
    kind: String,
    /// E.g. `https://api.openai.com/v1`.
    #[schema(example = "https://api.openai.com/v1")]
    base_url: Option<String>,
    /// Write-only: sealed with the server secret, reported as `set`/`unset`. Absent keeps
    /// the stored key while `base_url` stays on the same origin (scheme, host, port) and
    /// clears it when `base_url` moves elsewhere; `null` clears it.
    #[serde(default, deserialize_with = "double_option")]
    #[schema(value_type = Option<String>)]
    api_key: Option<Option<String>>,
    /// Provider-specific settings (the mock provider's `latency_ms`, `fail_status`, …).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    config: Option<Value>,
    #[serde(default = "yes")]
    #[schema(default = true)]
    enabled: bool,
}

fn yes() -> bool {
    true
}

fn double_option<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// Create or replace a provider
///
/// Applies to the running gateway at once.
#[utoipa::path(put, path = "/providers/{name}", tag = "Admin", operation_id = "admin_put_provider",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    request_body(content = ProviderBody, example = json!({"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "sk-..."})),
    responses((status = 200, description = "The provider.", body = ProviderView), BadRequest, AdminErrors, Unprocessable))]
async fn put_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ProviderBody>,
) -> ApiResult {
    if let Some(url) = body.base_url.as_deref()
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ApiError::Unprocessable(
            "base_url must start with http:// or https://".into(),
        ));
    }
    if body
        .api_key
        .as_ref()
        .is_some_and(|k| k.as_ref().is_some_and(String::is_empty))
    {
        return Err(ApiError::Unprocessable(
            "api_key cannot be empty; send null to clear it".into(),
        ));
    }
    // A new key is stored by the same statement as the new base URL; moving the base URL
    // to another origin without one clears the stored key (core::catalog::upsert_provider).
    let sealed = body
        .api_key
        .as_ref()
        .and_then(Option::as_deref)
        .map(|k| crate::seal::seal(state.gateway.secret(), k));
    catalog::upsert_provider(
        &state.db,
        &ProviderSpec {
            name: name.clone(),
            kind: body.kind,
            base_url: body.base_url,
            api_key_enc: sealed,
            config: body.config.unwrap_or_else(|| json!({})),
            enabled: body.enabled,
        },
    )
    .await?;
    if body.api_key == Some(None) {
        catalog::set_provider_key(&state.db, &name, None).await?;
    }
    applied(&state).await?;
    provider_view(&state, &name).await
}

/// Delete a provider
///
/// 409 while models use it.
#[utoipa::path(delete, path = "/providers/{name}", tag = "Admin", operation_id = "admin_delete_provider",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    catalog::delete_provider(&state.db, &name)
        .await
        .map_err(|e| named(e, "provider", &name))?;
    applied(&state).await?;
    Ok(Json(json!({"name": name, "deleted": true})))
}

/// Maps a core `NotFound` to a message naming the thing.
fn named(e: tokengate_core::Error, what: &str, name: &str) -> ApiError {
    match e {
        tokengate_core::Error::NotFound => not_found(what, name),
        other => other.into(),
    }
}

// ----- models ---------------------------------------------------------------------------

fn model_json(c: &Catalog, m: &catalog::Model) -> Value {
    let provider = c
        .providers
        .iter()
        .find(|p| p.id == m.provider_id)
        .map(|p| p.name.clone());
    json!({"id": m.id, "name": m.name, "provider": provider, "upstream_model": m.upstream_model,
        "input_usd_per_m": format_exact(m.input_price_nano), "output_usd_per_m": format_exact(m.output_price_nano),
        "cache_read_usd_per_m": m.cache_read_price_nano.map(format_exact),
        "cache_write_usd_per_m": m.cache_write_price_nano.map(format_exact),
        "max_output_tokens": m.max_output_tokens, "complexity_tier": m.complexity_tier,
        "enabled": m.enabled, "created_at": m.created_at})
}

/// List models and prices
#[utoipa::path(get, path = "/models", tag = "Admin", operation_id = "admin_list_models",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Models.", body = Vec<AdminModelView>), AdminErrors))]
async fn list_models(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let c = catalog_of(&state).await?;
    Ok(Json(Value::Array(
        c.models.iter().map(|m| model_json(&c, m)).collect(),
    )))
}

async fn model_view(state: &AppState, name: &str) -> ApiResult {
    let c = catalog_of(state).await?;
    c.models
        .iter()
        .find(|m| m.name == name)
        .map(|m| Json(model_json(&c, m)))
        .ok_or_else(|| not_found("model", name))
}

/// Get a model
#[utoipa::path(get, path = "/models/{*name}", tag = "Admin", operation_id = "admin_get_model",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    responses((status = 200, description = "The model.", body = AdminModelView), AdminErrors, NotFound))]
async fn get_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    model_view(&state, &name).await
}

/// Body of `PUT /models/{name}`; prices are USD per million tokens, as strings.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ModelRequest)]
struct ModelBody {
    /// The provider's name.
    provider: String,
    /// The model's name at the provider.
    upstream_model: String,
    /// USD per million input tokens.
    #[schema(example = "0.15")]
    input_usd_per_m: String,
    /// USD per million output tokens.
    #[schema(example = "0.60")]
    output_usd_per_m: String,
    /// USD per million cache-read input tokens (default: the input price).
    cache_read_usd_per_m: Option<String>,
    /// USD per million cache-write input tokens (default: the input price).
    cache_write_usd_per_m: Option<String>,
    /// Used for the balance hold when a request sets no `max_tokens`.
    #[serde(default = "default_max_output")]
    #[schema(default = 4096)]
    max_output_tokens: i64,
    #[serde(default = "default_tier")]
    #[schema(default = "standard")]
    complexity_tier: String,
    #[serde(default = "yes")]
    #[schema(default = true)]
    enabled: bool,
}

fn default_max_output() -> i64 {
    4096
}
fn default_tier() -> String {
    "standard".into()
}

fn price(field: &str, v: &str) -> Result<i64, ApiError> {
    parse_usd(v).map_err(|_| ApiError::Unprocessable(format!("{field} {v:?} is not a USD amount")))
}

/// Create or replace a model
///
/// Prices are USD per million tokens, as decimal strings. Applies at once.
#[utoipa::path(put, path = "/models/{*name}", tag = "Admin", operation_id = "admin_put_model",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    request_body(content = ModelBody, example = json!({"provider": "openai", "upstream_model": "gpt-4o-mini", "input_usd_per_m": "0.15", "output_usd_per_m": "0.60", "max_output_tokens": 16384, "complexity_tier": "fast"})),
    responses((status = 200, description = "The model.", body = AdminModelView), BadRequest, AdminErrors, Unprocessable))]
async fn put_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<ModelBody>,
) -> ApiResult {
    let opt = |f: &str, v: &Option<String>| v.as_deref().map(|s| price(f, s)).transpose();
    catalog::upsert_model(
        &state.db,
        &ModelSpec {
            name: name.clone(),
            provider: b.provider,
            upstream_model: b.upstream_model,
            input_price_nano: price("input_usd_per_m", &b.input_usd_per_m)?,
            output_price_nano: price("output_usd_per_m", &b.output_usd_per_m)?,
            cache_read_price_nano: opt("cache_read_usd_per_m", &b.cache_read_usd_per_m)?,
            cache_write_price_nano: opt("cache_write_usd_per_m", &b.cache_write_usd_per_m)?,
            max_output_tokens: b.max_output_tokens,
            complexity_tier: b.complexity_tier,
            enabled: b.enabled,
        },
    )
    .await?;
    applied(&state).await?;
    model_view(&state, &name).await
}

/// Delete a model
///
/// 409 while aliases target it.
#[utoipa::path(delete, path = "/models/{*name}", tag = "Admin", operation_id = "admin_delete_model",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    catalog::delete_model(&state.db, &name)
        .await
        .map_err(|e| named(e, "model", &name))?;
    applied(&state).await?;
    Ok(Json(json!({"name": name, "deleted": true})))
}

// ----- aliases --------------------------------------------------------------------------

fn alias_json(c: &Catalog, a: &catalog::Alias) -> Value {
    let names: HashMap<i64, &str> = c.models.iter().map(|m| (m.id, m.name.as_str())).collect();
    let targets: Vec<Value> = a
        .targets
        .iter()
        .map(|t| json!({"model": names.get(&t.model_id), "priority": t.priority, "weight": t.weight}))
        .collect();
    json!({"id": a.id, "name": a.name, "description": a.description, "complexity_tier": a.complexity_tier,
           "enabled": a.enabled, "targets": targets, "created_at": a.created_at})
}

/// List aliases
#[utoipa::path(get, path = "/aliases", tag = "Admin", operation_id = "admin_list_aliases",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Aliases.", body = Vec<AliasView>), AdminErrors))]
async fn list_aliases(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let c = catalog_of(&state).await?;
    Ok(Json(Value::Array(
        c.aliases.iter().map(|a| alias_json(&c, a)).collect(),
    )))
}

async fn alias_view(state: &AppState, name: &str) -> ApiResult {
    let c = catalog_of(state).await?;
    c.aliases
        .iter()
        .find(|a| a.name == name)
        .map(|a| Json(alias_json(&c, a)))
        .ok_or_else(|| not_found("alias", name))
}

/// Get an alias
#[utoipa::path(get, path = "/aliases/{name}", tag = "Admin", operation_id = "admin_get_alias",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "The alias.", body = AliasView), AdminErrors, NotFound))]
async fn get_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    alias_view(&state, &name).await
}

/// One target of an alias.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AliasTargetRequest)]
struct TargetBody {
    /// A model's name.
    model: String,
    /// Tier: lower tiers are tried first (default 0).
    #[serde(default)]
    priority: i64,
    /// Share of traffic inside its tier (default 1).
    #[serde(default = "one")]
    #[schema(default = 1)]
    weight: i64,
}

fn one() -> i64 {
    1
}

/// Body of `PUT /aliases/{name}`: targets are tried tier by tier (lowest `priority`
/// first), weighted at random inside a tier.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = AliasRequest)]
struct AliasBody {
    #[serde(default)]
    description: String,
    #[serde(default = "default_tier")]
    complexity_tier: String,
    targets: Vec<TargetBody>,
}

/// Create or replace an alias
///
/// Applies at once.
#[utoipa::path(put, path = "/aliases/{name}", tag = "Admin", operation_id = "admin_put_alias",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The alias's name")),
    request_body(content = AliasBody, example = json!({"targets": [{"model": "openai/gpt-4o-mini", "priority": 0, "weight": 1}, {"model": "mock/fast-1", "priority": 1}]})),
    responses((status = 200, description = "The alias.", body = AliasView), BadRequest, AdminErrors, Unprocessable))]
async fn put_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<AliasBody>,
) -> ApiResult {
    let targets: Vec<TargetSpec> = b
        .targets
        .into_iter()
        .map(|t| TargetSpec {
            model: t.model,
            priority: t.priority,
            weight: t.weight,
        })
        .collect();
    catalog::upsert_alias(
        &state.db,
        &name,
        &b.description,
        &b.complexity_tier,
        &targets,
    )
    .await?;
    applied(&state).await?;
    alias_view(&state, &name).await
}

/// Delete an alias
#[utoipa::path(delete, path = "/aliases/{name}", tag = "Admin", operation_id = "admin_delete_alias",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound))]
async fn delete_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    catalog::delete_alias(&state.db, &name)
        .await
        .map_err(|e| named(e, "alias", &name))?;
    applied(&state).await?;
    Ok(Json(json!({"name": name, "deleted": true})))
}

/// Alias dry run
///
/// Which target would serve a request for the alias now, and why: each target in tier
/// order with its weight share and breaker state; the first tier with an admissible
/// target is the one that serves.
#[utoipa::path(get, path = "/aliases/{name}/dry-run", tag = "Admin", operation_id = "admin_alias_dry_run",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "The dry run.", body = DryRun), AdminErrors, NotFound))]
async fn dry_run(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    let c = catalog_of(&state).await?;
    let alias = c
        .aliases
        .iter()
        .find(|a| a.name == name)
        .ok_or_else(|| not_found("alias", &name))?;
    let health: HashMap<String, _> = state
        .gateway
        .health
        .snapshot(Instant::now())
        .into_iter()
        .map(|h| (h.target.clone(), h))
        .collect();
    let routes = state.gateway.routes.load();
    let mut tiers: Vec<i64> = alias.targets.iter().map(|t| t.priority).collect();
    tiers.sort_unstable();
    tiers.dedup();
    let mut serving_tier = None;
    let mut out = Vec::new();
    for p in tiers {
        let in_tier: Vec<_> = alias.targets.iter().filter(|t| t.priority == p).collect();
        let mut rows = Vec::new();
        let mut usable_weight = 0;
        for t in &in_tier {
            let model = c.models.iter().find(|m| m.id == t.model_id);
            let mname = model.map(|m| m.name.clone()).unwrap_or_default();
            let state_s = health.get(&mname).map_or("closed", |h| h.state);
            let (usable, why) = if !model.is_some_and(|m| m.enabled) {
                (false, "model disabled")
            } else if !routes.contains(&mname) {
                (false, "provider disabled or unavailable")
            } else if state_s == "open" {
                (false, "circuit open")
            } else if state_s == "half_open" {
                (true, "circuit half-open: probe requests only")
            } else {
                (true, "healthy")
            };
            if usable {
                usable_weight += t.weight;
            }
            let h = health.get(&mname).cloned();
            rows.push((mname, t.weight, usable, why, h));
        }
        let serves = serving_tier.is_none() && usable_weight > 0;
        if serves {
            serving_tier = Some(p);
        }
        let targets: Vec<Value> = rows
            .into_iter()
            .map(|(m, w, usable, why, h)| {
                let share = if usable && usable_weight > 0 { w as f64 / usable_weight as f64 } else { 0.0 };
                json!({"model": m, "weight": w, "usable": usable, "reason": why,
                       "share": if serves { share } else { 0.0 },
                       "error_rate": h.as_ref().map(|h| h.error_rate), "p50_ms": h.as_ref().and_then(|h| h.p50_ms)})
            })
            .collect();
        out.push(json!({"priority": p, "serves": serves, "targets": targets}));
    }
    Ok(Json(
        json!({"alias": name, "serving_priority": serving_tier, "tiers": out,
        "verdict": match serving_tier {
            Some(p) => format!("served by tier {p}, weighted among its usable targets"),
            None => "no target is usable now: requests get 503".into(),
        }}),
    ))
}

// ----- key groups -----------------------------------------------------------------------

fn group_json(g: &catalog::KeyGroup) -> Value {
    json!({"id": g.id, "name": g.name, "allowed_providers": g.allowed_providers,
           "allowed_models": g.allowed_models, "created_at": g.created_at})
}

/// List key groups
#[utoipa::path(get, path = "/key-groups", tag = "Admin", operation_id = "admin_list_key_groups",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Key groups.", body = Vec<KeyGroupView>), AdminErrors))]
async fn list_groups(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let c = catalog_of(&state).await?;
    Ok(Json(Value::Array(
        c.key_groups.iter().map(group_json).collect(),
    )))
}

async fn group_view(state: &AppState, name: &str) -> ApiResult {
    let c = catalog_of(state).await?;
    c.key_groups
        .iter()
        .find(|g| g.name == name)
        .map(|g| Json(group_json(g)))
        .ok_or_else(|| not_found("key group", name))
}

/// Get a key group
#[utoipa::path(get, path = "/key-groups/{name}", tag = "Admin", operation_id = "admin_get_key_group",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The key group's name")),
    responses((status = 200, description = "The key group.", body = KeyGroupView), AdminErrors, NotFound))]
async fn get_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    group_view(&state, &name).await
}

/// Body of `PUT /key-groups/{name}`; null = no restriction.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyGroupRequest)]
struct GroupBody {
    allowed_providers: Option<Vec<String>>,
    allowed_models: Option<Vec<String>>,
}

/// Create or replace a key group
#[utoipa::path(put, path = "/key-groups/{name}", tag = "Admin", operation_id = "admin_put_key_group",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The key group's name")),
    request_body(content = GroupBody, example = json!({"allowed_providers": ["openai"], "allowed_models": ["openai/*", "tokengate-fast"]})),
    responses((status = 200, description = "The key group.", body = KeyGroupView), BadRequest, AdminErrors, Unprocessable))]
async fn put_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<GroupBody>,
) -> ApiResult {
    catalog::upsert_key_group(
        &state.db,
        &name,
        b.allowed_providers.as_deref(),
        b.allowed_models.as_deref(),
    )
    .await?;
    applied(&state).await?;
    group_view(&state, &name).await
}

/// Delete a key group
///
/// 409 while keys belong to it.
#[utoipa::path(delete, path = "/key-groups/{name}", tag = "Admin", operation_id = "admin_delete_key_group",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The key group's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    catalog::delete_key_group(&state.db, &name)
        .await
        .map_err(|e| named(e, "key group", &name))?;
    applied(&state).await?;
    Ok(Json(json!({"name": name, "deleted": true})))
}

// ----- users ----------------------------------------------------------------------------

async fn set_status(state: &AppState, admin: &accounts::User, id: i64, status: &str) -> ApiResult {
    if id == admin.id && status != "active" {
        return Err(ApiError::Conflict(
            "You cannot suspend your own account.".into(),
        ));
    }
    let user = accounts::set_status(&state.db, id, status)
        .await
        .map_err(|e| named(e, "user", &id.to_string()))?;
    // Effective on the very next request of every key of this account.
    state
        .gateway
        .money
        .set_active(user.id, user.status == "active");
    tracing::info!(
        admin = admin.id,
        user = user.id,
        status,
        "user status changed"
    );
    Ok(Json(
        json!({"id": user.id, "email": user.email, "status": user.status, "updated_at": now_ms()}),
    ))
}

/// Suspend a user
///
/// Effective on the user's next request: keys answer 401, sessions and tokens stop working.
#[utoipa::path(post, path = "/users/{id}/suspend", tag = "Admin", operation_id = "admin_suspend_user",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The user's id")),
    responses((status = 200, description = "The new status.", body = UserStatus), AdminErrors, NotFound, Conflict))]
async fn suspend(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    set_status(&state, &admin, id, "suspended").await
}

/// Reactivate a user
#[utoipa::path(post, path = "/users/{id}/reactivate", tag = "Admin", operation_id = "admin_reactivate_user",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The user's id")),
    responses((status = 200, description = "The new status.", body = UserStatus), AdminErrors, NotFound))]
async fn reactivate(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    set_status(&state, &admin, id, "active").await
}

#[derive(Deserialize, Default)]
struct UserQuery {
    q: Option<String>,
    limit: Option<i64>,
    user_id: Option<i64>,
    before: Option<i64>,
}

fn user_json(u: &accounts::User) -> Value {
    json!({"id": u.id, "email": u.email, "display_name": u.display_name, "role": u.role,
           "status": u.status, "balance_usd": format_balance(u.balance_nano),
           "balance_nano": u.balance_nano, "created_at": super::account::rfc3339(u.created_at)})
}

/// Search users
///
/// Users whose email or name contains `q`, with balances.
#[utoipa::path(get, path = "/users", tag = "Admin", operation_id = "admin_search_users",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("q" = Option<String>, Query, description = "Part of an email or name"), ("limit" = Option<i64>, Query, description = "At most this many (default 50)")),
    responses((status = 200, description = "Users.", body = Vec<AdminUserView>), BadRequest, AdminErrors))]
async fn search_users(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult {
    let users = accounts::search_users(
        &state.db,
        q.q.as_deref().unwrap_or("").trim(),
        q.limit.unwrap_or(50),
    )
    .await?;
    Ok(Json(Value::Array(users.iter().map(user_json).collect())))
}

/// A user's ledger
///
/// Ledger entries, newest first.
#[utoipa::path(get, path = "/users/{id}/ledger", tag = "Admin", operation_id = "admin_user_ledger",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The user's id"), ("before" = Option<i64>, Query, description = "Entries older than this entry id"), ("limit" = Option<i64>, Query, description = "At most this many (default 100)")),
    responses((status = 200, description = "The ledger.", body = UserLedger), BadRequest, AdminErrors, NotFound))]
async fn user_ledger(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult {
    let user = accounts::get_user(&state.db, id)
        .await
        .map_err(|e| named(e, "user", &id.to_string()))?;
    let entries = accounts::ledger_entries(&state.db, id, q.before, q.limit.unwrap_or(100)).await?;
    let list: Vec<Value> = entries
        .iter()
        .map(|e| {
            json!({"id": e.id, "kind": e.kind, "amount_usd": format_exact(e.amount_nano),
                   "amount_nano": e.amount_nano, "balance_after_usd": format_exact(e.balance_after),
                   "reference": e.reference, "note": e.note, "created_by": e.created_by,
                   "created_at": super::account::rfc3339(e.created_at)})
        })
        .collect();
    Ok(Json(json!({"user": user_json(&user), "entries": list})))
}

/// An admin credit or debit.
#[derive(Deserialize, ToSchema)]
#[schema(as = CreditRequest)]
struct CreditBody {
    /// Positive credits, negative debits; not zero.
    #[schema(value_type = crate::docs::schemas::UsdAmount, required = true, example = "-1.50")]
    amount_usd: Option<Value>,
    /// `adjustment` (default), `refund` or `promo`.
    #[schema(example = "refund")]
    kind: Option<String>,
    /// Why; required, up to 500 characters; kept in the ledger with the admin's id.
    #[schema(required = true, example = "Duplicate charge on 2026-11-03")]
    reason: Option<String>,
    /// Allow a debit to leave the balance below zero.
    #[serde(default)]
    allow_negative: bool,
}

/// Credit or debit a user
///
/// An admin credit or debit (adjustment, refund, promotional credit) with a mandatory
/// reason, recorded in the ledger with the admin's id. A debit below zero is 409 unless
/// `allow_negative` is true.
#[utoipa::path(post, path = "/users/{id}/credit", tag = "Admin", operation_id = "admin_credit_user",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("id" = i64, Path, description = "The user's id")),
    request_body(content = CreditBody, example = json!({"amount_usd": "1.50", "kind": "refund", "reason": "Duplicate charge on 2026-11-03"})),
    responses((status = 200, description = "The ledger entry.", body = CreditResult), BadRequest, AdminErrors, NotFound, Conflict, Unprocessable))]
async fn credit(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
    ApiJson(body): ApiJson<CreditBody>,
) -> ApiResult {
    let amount = body
        .amount_usd
        .as_ref()
        .ok_or_else(|| ApiError::Unprocessable("amount_usd is required".into()))
        .and_then(|v| parse_usd_json(v).map_err(|e| ApiError::Unprocessable(e.to_string())))?;
    if amount == 0 {
        return Err(ApiError::Unprocessable(
            "amount_usd must not be zero".into(),
        ));
    }
    let kind = match body.kind.as_deref().unwrap_or("adjustment") {
        "adjustment" => accounts::EntryKind::Adjustment,
        "refund" => accounts::EntryKind::Refund,
        "promo" | "promotional" => accounts::EntryKind::Promo,
        other => {
            return Err(ApiError::Unprocessable(format!(
                "kind must be adjustment, refund or promo, not {other:?}"
            )));
        }
    };
    let reason = body
        .reason
        .as_deref()
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| ApiError::Unprocessable("reason is required".into()))?;
    if reason.chars().count() > 500 {
        return Err(ApiError::Unprocessable(
            "reason must be at most 500 characters".into(),
        ));
    }
    let reference = format!("admin:{}", admin.id);
    // A debit must also fit what the gateway sees: costs settled but not yet flushed and
    // holds of requests in flight. Holding the debit while it is written keeps concurrent
    // requests from spending the same money.
    let conflict = || {
        ApiError::Conflict(
            "This debit would leave the balance below zero; pass allow_negative to force it."
                .into(),
        )
    };
    let hold = if amount < 0 && !body.allow_negative {
        if let Err(e) = state.gateway.reload_account(id).await {
            tracing::warn!(error = %e, "reloading an account before a debit failed");
        }
        match state.gateway.money.hold(id, 0, None, -amount) {
            Ok(h) => Some(h),
            // A suspended account spends nothing: the stored balance is the whole truth.
            Err(crate::gateway::money::Refusal::AccountInactive) => None,
            Err(_) => return Err(conflict()),
        }
    } else {
        None
    };
    let applied = accounts::apply_entry(
        &state.db,
        accounts::Entry {
            user_id: id,
            kind,
            amount_nano: amount,
            reference: Some(&reference),
            note: Some(reason),
            created_by: Some(admin.id),
            refuse_negative: !body.allow_negative,
        },
    )
    .await;
    if let Err(e) = state.gateway.reload_account(id).await {
        tracing::warn!(error = %e, "reloading an adjusted account failed; the periodic refresh will apply it");
    }
    if let Some(hold) = hold {
        state.gateway.money.settle(hold, 0);
    }
    let (balance, entry_id) = applied.map_err(|e| match e {
        tokengate_core::Error::InsufficientBalance => conflict(),
        other => named(other, "user", &id.to_string()),
    })?;
    tracing::info!(admin = admin.id, user = id, kind = kind.as_str(), amount = %format_exact(amount), "balance adjusted");
    Ok(Json(json!({
        "user_id": id,
        "kind": kind.as_str(),
        "amount_usd": format_exact(amount),
        "balance_usd": format_balance(balance),
        "balance_nano": balance,
        "entry_id": entry_id,
    })))
}

/// Verify the ledger
///
/// Checks balance = Σ ledger entries for every account (or one).
#[utoipa::path(get, path = "/ledger/verify", tag = "Admin", operation_id = "admin_verify_ledger",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("user_id" = Option<i64>, Query, description = "Check only this user")),
    responses((status = 200, description = "The check.", body = LedgerVerify), BadRequest, AdminErrors, NotFound))]
async fn verify_ledger(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<UserQuery>,
) -> ApiResult {
    let checked = match q.user_id {
        Some(id) => {
            accounts::get_user(&state.db, id)
                .await
                .map_err(|e| named(e, "user", &id.to_string()))?;
            1
        }
        None => accounts::all_balances(&state.db).await?.len(),
    };
    let mismatches = accounts::verify_ledger(&state.db, q.user_id).await?;
    let list: Vec<Value> = mismatches
        .iter()
        .map(|m| {
            json!({"user_id": m.user_id, "balance_usd": format_exact(m.balance_nano),
                   "balance_nano": m.balance_nano, "ledger_sum_usd": format_exact(m.ledger_sum_nano),
                   "ledger_sum_nano": m.ledger_sum_nano,
                   "difference_nano": m.balance_nano - m.ledger_sum_nano})
        })
        .collect();
    Ok(Json(
        json!({"checked": checked, "ok": list.is_empty(), "mismatches": list}),
    ))
}

/// Test a provider connection
///
/// Lists the provider's models with its key and reports the status and latency.
#[utoipa::path(post, path = "/providers/{name}/test", tag = "Admin", operation_id = "admin_test_provider",
    security(("access_token" = []), ("session_cookie" = [])),
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "The outcome.", body = ProviderTest), AdminErrors, NotFound, Conflict))]
async fn test_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    let c = catalog_of(&state).await?;
    let p = c
        .providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| not_found("provider", &name))?;
    if !p.enabled {
        return Ok(Json(json!({"provider": name, "ok": false,
            "message": "The provider is disabled; enable it to test the connection."})));
    }
    let adapter = state
        .gateway
        .routes
        .load()
        .provider(&name)
        .ok_or_else(|| ApiError::Conflict(format!("Provider {name:?} is not loaded.")))?;
    let started = Instant::now();
    let result = adapter.probe(std::time::Duration::from_secs(10)).await;
    let latency_ms = started.elapsed().as_millis() as u64;
    let (ok, status, message) = match result {
        Ok(s) if (200..300).contains(&s) => (
            true,
            Some(s),
            "Connected; the provider accepted the key.".to_string(),
        ),
        Ok(s @ (401 | 403)) => (false, Some(s), "The provider refused the key.".to_string()),
        Ok(s) => (false, Some(s), format!("The provider answered HTTP {s}.")),
        Err(e) => (false, None, e.to_string()),
    };
    Ok(Json(
        json!({"provider": name, "ok": ok, "status": status, "latency_ms": latency_ms,
                   "message": message}),
    ))
}

#[derive(Deserialize, Default, IntoParams)]
#[into_params(parameter_in = Query)]
struct AdminLogQuery {
    /// Only this user's requests.
    user_id: Option<i64>,
    /// An HTTP status (`429`), a class (`5xx`), or `error` for every non-2xx.
    status: Option<String>,
    /// Model or alias.
    model: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// `next_before` of the previous page.
    before: Option<i64>,
}

/// Request logs of every account
///
/// Request logs across accounts, newest first (`status=error` for failed requests).
#[utoipa::path(get, path = "/request-logs", tag = "Admin", operation_id = "admin_request_logs",
    security(("access_token" = []), ("session_cookie" = [])),
    params(AdminLogQuery),
    responses((status = 200, description = "A page of requests.", body = AdminRequestLogPage), BadRequest, AdminErrors, Unprocessable))]
async fn request_logs(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AdminLogQuery>,
) -> ApiResult {
    let filter = tokengate_core::usage::LogFilter {
        model: q.model.filter(|m| !m.is_empty()),
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(tokengate_core::usage::StatusFilter::parse)
            .transpose()?,
        ..Default::default()
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows =
        tokengate_core::usage::logs_page_of(&state.db, q.user_id, &filter, q.before, limit).await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let data: Vec<Value> = rows
        .iter()
        .map(|r| {
            let rec = &r.record;
            json!({"id": r.id, "request_id": rec.request_id, "user_id": rec.user_id,
                   "key_id": rec.key_id, "created_at": super::account::rfc3339(rec.created_at),
                   "endpoint": rec.endpoint, "model": rec.model, "served_model": rec.served_model,
                   "provider": rec.provider, "status": rec.status, "error_type": rec.error_type,
                   "error_message": rec.error_message, "attempts": rec.attempts,
                   "attempts_detail": rec.attempts_json.as_deref()
                       .and_then(|s| serde_json::from_str::<Value>(s).ok()),
                   "latency_ms": rec.latency_ms, "cost_usd": format_exact(rec.cost_nano)})
        })
        .collect();
    Ok(Json(json!({"data": data, "next_before": next})))
}

// ----- health ---------------------------------------------------------------------------

/// Provider health
///
/// Per routing target: breaker state, requests and errors in the window, error rate,
/// latency percentiles; and the usage writer's counters since start (rows quarantined or
/// dropped because the database refused them, rows replayed from the write-ahead log,
/// requests charged above their hold).
#[utoipa::path(get, path = "/health", tag = "Admin", operation_id = "admin_health",
    security(("access_token" = []), ("session_cookie" = [])),
    responses((status = 200, description = "Health.", body = HealthReport), AdminErrors))]
async fn health(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let cfg = state.gateway.health.config();
    let w = state.gateway.meter.stats();
    let n = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    Ok(Json(json!({
        "usage_writer": {"quarantined": n(&w.quarantined), "dropped": n(&w.dropped),
                         "replayed": n(&w.replayed), "overruns": n(&w.overruns)},
        "breaker": {"window_secs": cfg.window.as_secs(), "error_rate": cfg.error_rate,
                    "min_requests": cfg.min_requests, "open_secs": cfg.open_for.as_secs(),
                    "half_open_probes": cfg.half_open_probes},
        "targets": state.gateway.health.snapshot(Instant::now()),
    })))
}
