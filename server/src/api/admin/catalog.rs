//! The admin catalog: providers (keys write-only, sealed with the server secret, reported
//! only as set or unset), models and prices, routing aliases with their dry run, and key
//! groups. The four are alike — list, get by name, create or replace by name, delete by
//! name — so each is an [`Entity`] and the shared [`list`], [`find`], [`saved`] and
//! [`deleted`] do the loading, the 404s and applying the change to the running gateway.

use std::collections::HashMap;
use std::time::Instant;

use axum::extract::State;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};
use tokengate_api::admin::{
    AdminModelView, AliasRequest, AliasTargetView, AliasView, Deleted, DryRun, DryRunTarget,
    DryRunTier, KeyGroupRequest, KeyGroupView, ModelRequest, ProviderRequest, ProviderView,
    SecretState,
};
use tokengate_api::{Timestamp, Usd};
use tokengate_core::catalog::{self, Catalog, ModelSpec, ProviderSpec, TargetSpec};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{Reply, named, not_found};
use crate::AppState;
use crate::auth::AdminUser;
use crate::http::error::{AdminErrors, BadRequest, Conflict, NotFound, Unprocessable};
use crate::http::{ApiError, ApiJson, ApiPath, typed_object};

/// Adds the catalog routes to `table`.
pub(super) fn routes(table: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    table
        .routes(routes!(list_providers))
        .routes(routes!(get_provider, put_provider, delete_provider))
        .routes(routes!(list_models))
        .routes(routes!(get_model, put_model, delete_model))
        .routes(routes!(list_aliases))
        .routes(routes!(get_alias, put_alias, delete_alias))
        .routes(routes!(dry_run))
        .routes(routes!(list_groups))
        .routes(routes!(get_group, put_group, delete_group))
}

// ----- the shared shape of the four -----------------------------------------------------

/// A named thing of the catalog with its admin view.
trait Entity: Sized {
    /// What it is called in messages (`"key group"`).
    const WHAT: &'static str;
    type View;
    /// All of them, in catalog order.
    fn all(c: &Catalog) -> &[Self];
    fn name(&self) -> &str;
    fn view(&self, c: &Catalog) -> Self::View;
}

pub(super) async fn catalog_of(state: &AppState) -> Result<Catalog, ApiError> {
    Ok(catalog::load(&state.db).await?)
}

/// Applies the stored catalog to the running gateway.
async fn applied(state: &AppState) -> Result<(), ApiError> {
    Ok(state.gateway.reload_routes().await?)
}

async fn list<E: Entity>(state: &AppState) -> Reply<Vec<E::View>> {
    let c = catalog_of(state).await?;
    Ok(ApiJson(E::all(&c).iter().map(|e| e.view(&c)).collect()))
}

async fn find<E: Entity>(state: &AppState, name: &str) -> Reply<E::View> {
    let c = catalog_of(state).await?;
    E::all(&c)
        .iter()
        .find(|e| e.name() == name)
        .map(|e| ApiJson(e.view(&c)))
        .ok_or_else(|| not_found(E::WHAT, name))
}

/// After a create or replace: applies it and answers with what is now stored.
async fn saved<E: Entity>(
    state: &AppState,
    stored: Result<i64, tokengate_core::Error>,
    name: &str,
) -> Reply<E::View> {
    stored?;
    applied(state).await?;
    find::<E>(state, name).await
}

/// After a delete: applies it and answers that `name` is gone (404 if it never was).
async fn deleted<E: Entity>(
    state: &AppState,
    removed: Result<(), tokengate_core::Error>,
    name: String,
) -> Reply<Deleted> {
    removed.map_err(|e| named(e, E::WHAT, &name))?;
    applied(state).await?;
    Ok(ApiJson(Deleted {
        name,
        deleted: true,
    }))
}

/// A body of `T`: a value `T` cannot hold at one of `value_fields` is a 422 naming the
/// field, any other mismatch (unknown or missing field) a 400.
fn body<T: DeserializeOwned>(
    body: Map<String, Value>,
    value_fields: &[&str],
) -> Result<T, ApiError> {
    typed_object(body, value_fields)
}

// ----- providers ------------------------------------------------------------------------

impl Entity for catalog::Provider {
    const WHAT: &'static str = "provider";
    type View = ProviderView;
    fn all(c: &Catalog) -> &[Self] {
        &c.providers
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn view(&self, _: &Catalog) -> ProviderView {
        ProviderView {
            id: self.id,
            name: self.name.clone(),
            kind: self.kind,
            base_url: self.base_url.clone(),
            config: self.config.clone(),
            enabled: self.enabled,
            api_key: match self.api_key_enc {
                Some(_) => SecretState::Set,
                None => SecretState::Unset,
            },
            created_at: Timestamp(self.created_at),
        }
    }
}

/// List providers
#[utoipa::path(get, path = "/providers", operation_id = "admin_list_providers",
    responses((status = 200, description = "Providers.", body = Vec<ProviderView>), AdminErrors))]
async fn list_providers(_: AdminUser, State(state): State<AppState>) -> Reply<Vec<ProviderView>> {
    list::<catalog::Provider>(&state).await
}

/// Get a provider
#[utoipa::path(get, path = "/providers/{name}", operation_id = "admin_get_provider",
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "The provider.", body = ProviderView), AdminErrors, NotFound))]
async fn get_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<ProviderView> {
    find::<catalog::Provider>(&state, &name).await
}

/// Create or replace a provider
///
/// Applies to the running gateway at once. `api_key`: absent keeps the stored key (unless
/// `base_url` moves to another origin, which clears it), a string replaces it, `null`
/// clears it.
#[utoipa::path(put, path = "/providers/{name}", operation_id = "admin_put_provider",
    params(("name" = String, Path, description = "The provider's name")),
    request_body = ProviderRequest,
    responses((status = 200, description = "The provider.", body = ProviderView), BadRequest, AdminErrors, Unprocessable))]
async fn put_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(raw): ApiJson<Map<String, Value>>,
) -> Reply<ProviderView> {
    let b: ProviderRequest = body(raw, &["kind"])?;
    if let Some(url) = b.base_url.as_deref()
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(ApiError::Unprocessable(
            "base_url must start with http:// or https://".into(),
        ));
    }
    if b.api_key
        .as_ref()
        .is_some_and(|k| k.as_ref().is_some_and(String::is_empty))
    {
        return Err(ApiError::Unprocessable(
            "api_key cannot be empty; send null to clear it".into(),
        ));
    }
    // A new key is stored by the same statement as the new base URL; moving the base URL
    // to another origin without one clears the stored key (core::catalog::upsert_provider).
    let sealed = b
        .api_key
        .as_ref()
        .and_then(Option::as_deref)
        .map(|k| crate::seal::seal(state.gateway.secret(), k));
    let stored = catalog::upsert_provider(
        &state.db,
        &ProviderSpec {
            name: name.clone(),
            kind: b.kind,
            base_url: b.base_url,
            api_key_enc: sealed,
            config: b.config.unwrap_or_else(|| Value::Object(Map::new())),
            enabled: b.enabled,
        },
    )
    .await;
    if stored.is_ok() && b.api_key == Some(None) {
        catalog::set_provider_key(&state.db, &name, None).await?;
    }
    saved::<catalog::Provider>(&state, stored, &name).await
}

/// Delete a provider
///
/// 409 while models use it.
#[utoipa::path(delete, path = "/providers/{name}", operation_id = "admin_delete_provider",
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<Deleted> {
    let removed = catalog::delete_provider(&state.db, &name).await;
    deleted::<catalog::Provider>(&state, removed, name).await
}

// ----- models ---------------------------------------------------------------------------

impl Entity for catalog::Model {
    const WHAT: &'static str = "model";
    type View = AdminModelView;
    fn all(c: &Catalog) -> &[Self] {
        &c.models
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn view(&self, c: &Catalog) -> AdminModelView {
        AdminModelView {
            id: self.id,
            name: self.name.clone(),
            provider: c
                .providers
                .iter()
                .find(|p| p.id == self.provider_id)
                .map(|p| p.name.clone()),
            upstream_model: self.upstream_model.clone(),
            input_usd_per_m: Usd(self.input_price_nano),
            output_usd_per_m: Usd(self.output_price_nano),
            cache_read_usd_per_m: self.cache_read_price_nano.map(Usd),
            cache_write_usd_per_m: self.cache_write_price_nano.map(Usd),
            max_output_tokens: self.max_output_tokens,
            complexity_tier: self.complexity_tier.clone(),
            enabled: self.enabled,
            created_at: Timestamp(self.created_at),
        }
    }
}

/// List models and prices
#[utoipa::path(get, path = "/models", operation_id = "admin_list_models",
    responses((status = 200, description = "Models.", body = Vec<AdminModelView>), AdminErrors))]
async fn list_models(_: AdminUser, State(state): State<AppState>) -> Reply<Vec<AdminModelView>> {
    list::<catalog::Model>(&state).await
}

/// Get a model
#[utoipa::path(get, path = "/models/{*name}", operation_id = "admin_get_model",
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    responses((status = 200, description = "The model.", body = AdminModelView), AdminErrors, NotFound))]
async fn get_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<AdminModelView> {
    find::<catalog::Model>(&state, &name).await
}

/// Create or replace a model
///
/// Prices are USD per million tokens, as decimal strings. Applies at once.
#[utoipa::path(put, path = "/models/{*name}", operation_id = "admin_put_model",
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    request_body = ModelRequest,
    responses((status = 200, description = "The model.", body = AdminModelView), BadRequest, AdminErrors, Unprocessable))]
async fn put_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(raw): ApiJson<Map<String, Value>>,
) -> Reply<AdminModelView> {
    let b: ModelRequest = body(
        raw,
        &[
            "input_usd_per_m",
            "output_usd_per_m",
            "cache_read_usd_per_m",
            "cache_write_usd_per_m",
        ],
    )?;
    let stored = catalog::upsert_model(
        &state.db,
        &ModelSpec {
            name: name.clone(),
            provider: b.provider,
            upstream_model: b.upstream_model,
            input_price_nano: b.input_usd_per_m.nanos(),
            output_price_nano: b.output_usd_per_m.nanos(),
            cache_read_price_nano: b.cache_read_usd_per_m.map(Usd::nanos),
            cache_write_price_nano: b.cache_write_usd_per_m.map(Usd::nanos),
            max_output_tokens: b.max_output_tokens,
            complexity_tier: b.complexity_tier,
            enabled: b.enabled,
        },
    )
    .await;
    saved::<catalog::Model>(&state, stored, &name).await
}

/// Delete a model
///
/// 409 while aliases target it.
#[utoipa::path(delete, path = "/models/{*name}", operation_id = "admin_delete_model",
    params(("name" = String, Path, description = "The model's name, e.g. `openai/gpt-4o-mini` (slashes allowed)")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_model(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<Deleted> {
    let removed = catalog::delete_model(&state.db, &name).await;
    deleted::<catalog::Model>(&state, removed, name).await
}

// ----- aliases --------------------------------------------------------------------------

impl Entity for catalog::Alias {
    const WHAT: &'static str = "alias";
    type View = AliasView;
    fn all(c: &Catalog) -> &[Self] {
        &c.aliases
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn view(&self, c: &Catalog) -> AliasView {
        let names: HashMap<i64, &str> = c.models.iter().map(|m| (m.id, m.name.as_str())).collect();
        AliasView {
            id: self.id,
            name: self.name.clone(),
            description: self.description.clone(),
            complexity_tier: self.complexity_tier.clone(),
            enabled: self.enabled,
            targets: self
                .targets
                .iter()
                .map(|t| AliasTargetView {
                    model: names.get(&t.model_id).map(|n| n.to_string()),
                    priority: t.priority,
                    weight: t.weight,
                })
                .collect(),
            created_at: Timestamp(self.created_at),
        }
    }
}

/// List aliases
#[utoipa::path(get, path = "/aliases", operation_id = "admin_list_aliases",
    responses((status = 200, description = "Aliases.", body = Vec<AliasView>), AdminErrors))]
async fn list_aliases(_: AdminUser, State(state): State<AppState>) -> Reply<Vec<AliasView>> {
    list::<catalog::Alias>(&state).await
}

/// Get an alias
#[utoipa::path(get, path = "/aliases/{name}", operation_id = "admin_get_alias",
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "The alias.", body = AliasView), AdminErrors, NotFound))]
async fn get_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<AliasView> {
    find::<catalog::Alias>(&state, &name).await
}

/// Create or replace an alias
///
/// Targets are tried tier by tier (lowest `priority` first), weighted at random inside a
/// tier. Applies at once.
#[utoipa::path(put, path = "/aliases/{name}", operation_id = "admin_put_alias",
    params(("name" = String, Path, description = "The alias's name")),
    request_body = AliasRequest,
    responses((status = 200, description = "The alias.", body = AliasView), BadRequest, AdminErrors, Unprocessable))]
async fn put_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<AliasRequest>,
) -> Reply<AliasView> {
    let targets: Vec<TargetSpec> = b
        .targets
        .into_iter()
        .map(|t| TargetSpec {
            model: t.model,
            priority: t.priority,
            weight: t.weight,
        })
        .collect();
    let stored = catalog::upsert_alias(
        &state.db,
        &name,
        &b.description,
        &b.complexity_tier,
        &targets,
    )
    .await;
    saved::<catalog::Alias>(&state, stored, &name).await
}

/// Delete an alias
#[utoipa::path(delete, path = "/aliases/{name}", operation_id = "admin_delete_alias",
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound))]
async fn delete_alias(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<Deleted> {
    let removed = catalog::delete_alias(&state.db, &name).await;
    deleted::<catalog::Alias>(&state, removed, name).await
}

/// Alias dry run
///
/// Which target would serve a request for the alias now, and why: each target in tier
/// order with its weight share and breaker state; the first tier with an admissible
/// target is the one that serves.
#[utoipa::path(get, path = "/aliases/{name}/dry-run", operation_id = "admin_alias_dry_run",
    params(("name" = String, Path, description = "The alias's name")),
    responses((status = 200, description = "The dry run.", body = DryRun), AdminErrors, NotFound))]
async fn dry_run(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<DryRun> {
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
    let mut priorities: Vec<i64> = alias.targets.iter().map(|t| t.priority).collect();
    priorities.sort_unstable();
    priorities.dedup();
    let mut serving_priority = None;
    let mut tiers = Vec::new();
    for priority in priorities {
        let mut rows = Vec::new();
        let mut usable_weight = 0;
        for t in alias.targets.iter().filter(|t| t.priority == priority) {
            let model = c.models.iter().find(|m| m.id == t.model_id);
            let mname = model.map(|m| m.name.clone()).unwrap_or_default();
            let h = health.get(&mname);
            let breaker = h.map_or("closed", |h| h.state);
            let (usable, reason) = if !model.is_some_and(|m| m.enabled) {
                (false, "model disabled")
            } else if !routes.contains(&mname) {
                (false, "provider disabled or unavailable")
            } else if breaker == "open" {
                (false, "circuit open")
            } else if breaker == "half_open" {
                (true, "circuit half-open: probe requests only")
            } else {
                (true, "healthy")
            };
            if usable {
                usable_weight += t.weight;
            }
            rows.push(DryRunTarget {
                model: mname,
                weight: t.weight,
                usable,
                reason: reason.into(),
                share: 0.0,
                error_rate: h.map(|h| h.error_rate),
                p50_ms: h.and_then(|h| h.p50_ms),
            });
        }
        let serves = serving_priority.is_none() && usable_weight > 0;
        if serves {
            serving_priority = Some(priority);
            for r in rows.iter_mut().filter(|r| r.usable) {
                r.share = r.weight as f64 / usable_weight as f64;
            }
        }
        tiers.push(DryRunTier {
            priority,
            serves,
            targets: rows,
        });
    }
    Ok(ApiJson(DryRun {
        alias: name,
        serving_priority,
        tiers,
        verdict: match serving_priority {
            Some(p) => format!("served by tier {p}, weighted among its usable targets"),
            None => "no target is usable now: requests get 503".into(),
        },
    }))
}

// ----- key groups -----------------------------------------------------------------------

impl Entity for catalog::KeyGroup {
    const WHAT: &'static str = "key group";
    type View = KeyGroupView;
    fn all(c: &Catalog) -> &[Self] {
        &c.key_groups
    }
    fn name(&self) -> &str {
        &self.name
    }
    fn view(&self, _: &Catalog) -> KeyGroupView {
        KeyGroupView {
            id: self.id,
            name: self.name.clone(),
            allowed_providers: self.allowed_providers.clone(),
            allowed_models: self.allowed_models.clone(),
            created_at: Timestamp(self.created_at),
        }
    }
}

/// List key groups
#[utoipa::path(get, path = "/key-groups", operation_id = "admin_list_key_groups",
    responses((status = 200, description = "Key groups.", body = Vec<KeyGroupView>), AdminErrors))]
async fn list_groups(_: AdminUser, State(state): State<AppState>) -> Reply<Vec<KeyGroupView>> {
    list::<catalog::KeyGroup>(&state).await
}

/// Get a key group
#[utoipa::path(get, path = "/key-groups/{name}", operation_id = "admin_get_key_group",
    params(("name" = String, Path, description = "The key group's name")),
    responses((status = 200, description = "The key group.", body = KeyGroupView), AdminErrors, NotFound))]
async fn get_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<KeyGroupView> {
    find::<catalog::KeyGroup>(&state, &name).await
}

/// Create or replace a key group
#[utoipa::path(put, path = "/key-groups/{name}", operation_id = "admin_put_key_group",
    params(("name" = String, Path, description = "The key group's name")),
    request_body = KeyGroupRequest,
    responses((status = 200, description = "The key group.", body = KeyGroupView), BadRequest, AdminErrors, Unprocessable))]
async fn put_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(b): ApiJson<KeyGroupRequest>,
) -> Reply<KeyGroupView> {
    let stored = catalog::upsert_key_group(
        &state.db,
        &name,
        b.allowed_providers.as_deref(),
        b.allowed_models.as_deref(),
    )
    .await;
    saved::<catalog::KeyGroup>(&state, stored, &name).await
}

/// Delete a key group
///
/// 409 while keys belong to it.
#[utoipa::path(delete, path = "/key-groups/{name}", operation_id = "admin_delete_key_group",
    params(("name" = String, Path, description = "The key group's name")),
    responses((status = 200, description = "Deleted.", body = Deleted), AdminErrors, NotFound, Conflict))]
async fn delete_group(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<Deleted> {
    let removed = catalog::delete_key_group(&state.db, &name).await;
    deleted::<catalog::KeyGroup>(&state, removed, name).await
}
