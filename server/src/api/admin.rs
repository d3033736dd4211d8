//! The admin API (`/api/v1/admin`, role admin): providers (keys write-only, sealed with
//! the server secret, reported only as set or unset), models and prices, aliases, key
//! groups, user suspension, provider health (breaker state, error rate, latency
//! percentiles) and an alias dry run. Every change is applied to the running gateway at
//! once by rebuilding its routing snapshot; nothing here is on the request hot path.

use std::collections::HashMap;
use std::time::Instant;

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use tokengate_core::catalog::{self, Catalog, ModelSpec, ProviderSpec, TargetSpec};
use tokengate_core::money::{format_balance, format_exact, parse_usd, parse_usd_json};
use tokengate_core::{accounts, now_ms};

use super::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::AppState;
use crate::auth::AdminUser;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/providers", get(list_providers))
        .route(
            "/providers/{name}",
            get(get_provider).put(put_provider).delete(delete_provider),
        )
        .route("/models", get(list_models))
        .route(
            "/models/{*name}",
            get(get_model).put(put_model).delete(delete_model),
        )
        .route("/providers/{name}/test", post(test_provider))
        .route("/request-logs", get(request_logs))
        .route("/aliases", get(list_aliases))
        .route(
            "/aliases/{name}",
            get(get_alias).put(put_alias).delete(delete_alias),
        )
        .route("/aliases/{name}/dry-run", get(dry_run))
        .route("/key-groups", get(list_groups))
        .route(
            "/key-groups/{name}",
            get(get_group).put(put_group).delete(delete_group),
        )
        .route("/users", get(search_users))
        .route("/users/{id}/ledger", get(user_ledger))
        .route("/users/{id}/credit", post(credit))
        .route("/ledger/verify", get(verify_ledger))
        .route("/users/{id}/suspend", post(suspend))
        .route("/users/{id}/reactivate", post(reactivate))
        .route("/health", get(health))
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

async fn get_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    provider_view(&state, &name).await
}

/// Body of `PUT /providers/{name}`. `api_key`: absent keeps the stored key, a string
/// replaces it, `null` clears it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderBody {
    kind: String,
    base_url: Option<String>,
    #[serde(default, deserialize_with = "double_option")]
    api_key: Option<Option<String>>,
    #[serde(default)]
    config: Option<Value>,
    #[serde(default = "yes")]
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
    catalog::upsert_provider(
        &state.db,
        &ProviderSpec {
            name: name.clone(),
            kind: body.kind,
            base_url: body.base_url,
            api_key_enc: None,
            config: body.config.unwrap_or_else(|| json!({})),
            enabled: body.enabled,
        },
    )
    .await?;
    match body.api_key {
        None => {}
        Some(Some(k)) if k.is_empty() => {
            return Err(ApiError::Unprocessable(
                "api_key cannot be empty; send null to clear it".into(),
            ));
        }
        Some(Some(k)) => {
            let sealed = crate::seal::seal(state.gateway.secret(), &k);
            catalog::set_provider_key(&state.db, &name, Some(&sealed)).await?;
        }
        Some(None) => catalog::set_provider_key(&state.db, &name, None).await?,
    }
    applied(&state).await?;
    provider_view(&state, &name).await
}

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

async fn get_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    model_view(&state, &name).await
}

/// Body of `PUT /models/{name}`; prices are USD per million tokens, as strings.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelBody {
    provider: String,
    upstream_model: String,
    input_usd_per_m: String,
    output_usd_per_m: String,
    cache_read_usd_per_m: Option<String>,
    cache_write_usd_per_m: Option<String>,
    #[serde(default = "default_max_output")]
    max_output_tokens: i64,
    #[serde(default = "default_tier")]
    complexity_tier: String,
    #[serde(default = "yes")]
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

async fn get_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    alias_view(&state, &name).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetBody {
    model: String,
    #[serde(default)]
    priority: i64,
    #[serde(default = "one")]
    weight: i64,
}

fn one() -> i64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AliasBody {
    #[serde(default)]
    description: String,
    #[serde(default = "default_tier")]
    complexity_tier: String,
    targets: Vec<TargetBody>,
}

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

/// Which target would serve a request for the alias now, and why: each target in tier
/// order with its weight share and breaker state; the first tier with an admissible
/// target is the one that serves.
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

async fn get_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> ApiResult {
    group_view(&state, &name).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupBody {
    allowed_providers: Option<Vec<String>>,
    allowed_models: Option<Vec<String>>,
}

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

async fn suspend(
    AdminUser(admin): AdminUser,
    State(state): State<AppState>,
    ApiPath(id): ApiPath<i64>,
) -> ApiResult {
    set_status(&state, &admin, id, "suspended").await
}

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

#[derive(Deserialize)]
struct CreditBody {
    amount_usd: Option<Value>,
    kind: Option<String>,
    reason: Option<String>,
    /// Allow a debit to leave the balance below zero.
    #[serde(default)]
    allow_negative: bool,
}

/// An admin credit or debit (adjustment, refund, promotional credit) with a mandatory
/// reason, recorded in the ledger with the admin's id.
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
    let (balance, entry_id) = accounts::apply_entry(
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
    .await
    .map_err(|e| match e {
        tokengate_core::Error::InsufficientBalance => ApiError::Conflict(
            "This debit would leave the balance below zero; pass allow_negative to force it."
                .into(),
        ),
        other => named(other, "user", &id.to_string()),
    })?;
    if let Err(e) = state.gateway.reload_account(id).await {
        tracing::warn!(error = %e, "reloading an adjusted account failed; the periodic refresh will apply it");
    }
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

/// Checks a provider: lists its models with its key and reports the status and latency.
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

#[derive(Deserialize, Default)]
struct AdminLogQuery {
    user_id: Option<i64>,
    status: Option<String>,
    model: Option<String>,
    limit: Option<i64>,
    before: Option<i64>,
}

/// Request logs across accounts, newest first (`status=error` for failed requests).
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

async fn health(_: AdminUser, State(state): State<AppState>) -> ApiResult {
    let cfg = state.gateway.health.config();
    Ok(Json(json!({
        "breaker": {"window_secs": cfg.window.as_secs(), "error_rate": cfg.error_rate,
                    "min_requests": cfg.min_requests, "open_secs": cfg.open_for.as_secs(),
                    "half_open_probes": cfg.half_open_probes},
        "targets": state.gateway.health.snapshot(Instant::now()),
    })))
}
