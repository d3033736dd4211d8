//! The `/v1` gateway: authenticates API keys from memory, resolves models and aliases,
//! applies key policies and rate limits, holds the worst-case cost, forwards to the
//! upstream adapter in its wire format (with fallback before the first byte, around open
//! circuit breakers), meters the answer and queues the charge. The endpoints are
//! `chat` (OpenAI), `messages` (Anthropic), `embeddings` and `models`; the shared path is
//! `pipeline`.

pub mod chat;
pub mod embeddings;
pub mod error;
pub mod health;
pub mod keys;
pub mod limits;
pub mod messages;
pub mod meter;
pub mod models;
pub mod money;
pub mod pipeline;
pub mod providers;
pub mod response_store;
pub mod responses;
pub mod responses_wire;
pub mod routes;
pub mod sse;
pub mod translate;
pub mod wire;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, header};
use tokengate_core::changes::{self, ChangeState};
use tokengate_core::keys::ApiKey;
use tokengate_core::{Db, Error, accounts, catalog};
use utoipa_axum::router::OpenApiRouter;

use self::error::GatewayError;
use self::health::Health;
use self::keys::KeyCache;
use self::limits::RateLimits;
use self::meter::Meter;
use self::money::Money;
use self::pipeline::Timeouts;
use self::providers::http::UpstreamLimits;
use self::routes::{AdapterEnv, Routes};
use crate::config::Secret;

/// Largest body of a rejected request still read, to keep its connection reusable.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Everything the hot path needs, shared by all requests.
pub struct Gateway {
    pub db: Db,
    secret: Vec<u8>,
    pub keys: KeyCache,
    pub money: Arc<Money>,
    pub routes: ArcSwap<Routes>,
    pub meter: Meter,
    pub health: Health,
    pub limits: RateLimits,
    /// The change numbers applied so far (keys, accounts, catalog); held while a refresh
    /// runs, so refreshes apply in order.
    seen: tokio::sync::Mutex<ChangeState>,
    /// Where holds, rate windows and settled charges are shared: memory (one instance) or
    /// Redis (cluster mode, set by `Server::start`).
    pub backplane: crate::cluster::backplane::Backplane,
    client: reqwest::Client,
    provider_keys: HashMap<String, Secret>,
    pub max_body_bytes: usize,
    pub max_choices: i64,
    pub timeouts: Timeouts,
    upstream_limits: UpstreamLimits,
}

/// Gateway settings from the configuration.
pub struct GatewaySettings {
    pub provider_keys: HashMap<String, Secret>,
    pub max_body_bytes: usize,
    /// Largest `n` accepted on chat requests.
    pub max_choices: i64,
    pub timeouts: Timeouts,
    pub breaker: health::BreakerConfig,
    /// Size caps on upstream answers.
    pub upstream_limits: UpstreamLimits,
}

impl Gateway {
    /// Builds the gateway and loads keys, balances and routes from the database.
    pub async fn new(
        db: Db,
        secret: Vec<u8>,
        meter: Meter,
        money: Arc<Money>,
        settings: GatewaySettings,
    ) -> Result<Gateway, Error> {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(256)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| Error::Invalid(format!("HTTP client: {e}")))?;
        let gw = Gateway {
            db,
            secret,
            keys: KeyCache::default(),
            money,
            routes: ArcSwap::from_pointee(Routes::default()),
            meter,
            health: Health::new(settings.breaker),
            limits: RateLimits::default(),
            seen: tokio::sync::Mutex::new(ChangeState::NOTHING_SEEN),
            backplane: crate::cluster::backplane::Backplane::Memory,
            client,
            provider_keys: settings.provider_keys,
            max_body_bytes: settings.max_body_bytes,
            max_choices: settings.max_choices,
            timeouts: settings.timeouts,
            upstream_limits: settings.upstream_limits,
        };
        gw.refresh().await?;
        Ok(gw)
    }

    /// The periodic refresh: the changes not yet applied (as [`Gateway::refresh_changes`]),
    /// then every balance and limited key's spend.
    pub async fn refresh(&self) -> Result<(), Error> {
        self.refresh_changes(false).await?;
        let epoch = self.money.epoch();
        let balances = accounts::all_balances(&self.db).await?;
        let spend = tokengate_core::keys::limited_spend(&self.db).await?;
        self.money.refresh_accounts(epoch, &balances);
        self.money.refresh_keys(epoch, &spend);
        Ok(())
    }

    /// Applies every change the database numbered above the last one applied: changed
    /// keys, changed accounts (status, and their balance), and the routing table when the
    /// catalog changed. One query when nothing changed. With `full`, re-reads everything.
    pub async fn refresh_changes(&self, full: bool) -> Result<(), Error> {
        let mut seen = self.seen.lock().await;
        let now = changes::current(&self.db).await?;
        let from = if full || now.version < seen.version {
            ChangeState::NOTHING_SEEN
        } else {
            *seen
        };
        if now == from {
            return Ok(());
        }
        if now.version != from.version {
            self.keys.refresh(&self.db, from.version).await?;
            let epoch = self.money.epoch();
            let changed = accounts::changed_after(&self.db, from.version).await?;
            self.money.refresh_accounts(epoch, &changed);
        }
        if now.catalog_version != from.catalog_version {
            self.reload_routes().await?;
        }
        *seen = now;
        Ok(())
    }

    /// Reloads one account's balance and status after a change outside the request path
    /// (a top-up, an admin adjustment). A flush racing with it wins; the periodic refresh
    /// then applies the change within a few seconds.
    pub async fn reload_account(&self, user_id: i64) -> Result<(), Error> {
        let epoch = self.money.epoch();
        let u = accounts::get_user(&self.db, user_id).await?;
        self.money
            .refresh_accounts(epoch, &[(u.id, u.status, u.balance_nano)]);
        if let crate::cluster::backplane::Backplane::Redis(r) = &self.backplane
            && let Err(e) = r.offer_account(user_id).await
        {
            tracing::warn!(error = %e, "offering balances to Redis failed");
        }
        Ok(())
    }

    /// Rebuilds the routing snapshot from the catalog. Provider keys set through the admin
    /// API (sealed in the database) take precedence over keys from the config file.
    pub async fn reload_routes(&self) -> Result<(), Error> {
        let catalog = catalog::load(&self.db).await?;
        let mut keys = self.provider_keys.clone();
        for p in &catalog.providers {
            if let Some(sealed) = &p.api_key_enc {
                match crate::seal::open(&self.secret, sealed) {
                    Some(k) => {
                        keys.insert(p.name.clone(), Secret::new(k));
                    }
                    None => {
                        tracing::warn!(provider = %p.name, "stored provider key cannot be opened with this server secret; set it again")
                    }
                }
            }
        }
        let env = AdapterEnv {
            client: &self.client,
            limits: self.upstream_limits,
            provider_keys: &keys,
        };
        let routes = Routes::build(&catalog, &env);
        self.health.retain(|t| routes.contains(t));
        self.routes.store(Arc::new(routes));
        Ok(())
    }

    /// The server secret (keys API-key hashes, seals provider keys).
    pub fn secret(&self) -> &[u8] {
        &self.secret
    }

    /// Makes a key change visible to the hot path at once.
    pub fn key_changed(&self, key: ApiKey) {
        self.money.set_key_spent(key.id, key.spent_nano);
        self.keys.apply(key);
    }

    /// The usable key presented in `Authorization: Bearer` or `x-api-key`, whose account is
    /// active.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<Arc<ApiKey>, GatewayError> {
        let raw = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok()))
            .map(str::trim)
            .ok_or(GatewayError::InvalidKey)?;
        let key = self
            .keys
            .authenticate(&self.secret, raw)
            .ok_or(GatewayError::InvalidKey)?;
        if !self.money.is_active(key.user_id) {
            return Err(GatewayError::InvalidKey);
        }
        Ok(key)
    }

    /// The common start of every `/v1` POST: the key, the body (within the limit), the
    /// body as a JSON object and its `model`.
    pub async fn begin(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<
        (
            Arc<ApiKey>,
            bytes::Bytes,
            serde_json::Map<String, serde_json::Value>,
            String,
        ),
        GatewayError,
    > {
        let key = match self.authenticate(headers) {
            Ok(k) => k,
            Err(e) => {
                // Read a small body anyway: an unread body makes the server close the
                // connection, and the client's next request on it would fail.
                let small = headers
                    .get(header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<usize>().ok())
                    .is_some_and(|n| n <= DRAIN_LIMIT);
                if small {
                    let _ = axum::body::to_bytes(body, DRAIN_LIMIT).await;
                }
                return Err(e);
            }
        };
        let bytes = self.read_body(headers, body).await?;
        let obj = chat::json_object(&bytes)?;
        let model = chat::model_of(&obj)?;
        Ok((key, bytes, obj, model))
    }

    /// Reads a request body up to the configured limit.
    pub async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
    ) -> Result<bytes::Bytes, GatewayError> {
        let limit = self.max_body_bytes;
        let declared = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        if declared.is_some_and(|n| n > limit) {
            return Err(GatewayError::PayloadTooLarge(limit));
        }
        axum::body::to_bytes(body, limit).await.map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                GatewayError::PayloadTooLarge(limit)
            } else {
                GatewayError::bad_request("Could not read the request body.")
            }
        })
    }
}

/// The `/v1` route table. Each handler's `#[utoipa::path]` names its method and path, and
/// `routes!` registers it from there, so this router and the OpenAPI document
/// (`crate::docs`) are built from the same list and cannot disagree.
pub fn route_table() -> OpenApiRouter<Arc<Gateway>> {
    OpenApiRouter::new()
        .routes(utoipa_axum::routes!(chat::chat_completions))
        .routes(utoipa_axum::routes!(messages::messages))
        .routes(utoipa_axum::routes!(responses::create_response))
        .routes(utoipa_axum::routes!(
            responses::get_response,
            responses::delete_response
        ))
        .routes(utoipa_axum::routes!(responses::list_input_items))
        .routes(utoipa_axum::routes!(embeddings::embeddings))
        .routes(utoipa_axum::routes!(models::list_models))
}

/// The `/v1` router; unknown paths and methods answer in the OpenAI error shape.
pub fn router(gw: Arc<Gateway>) -> Router {
    Router::from(route_table())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(gw)
}

async fn not_found() -> GatewayError {
    GatewayError::Route {
        status: 404,
        message: "Unknown API route.".into(),
        code: "unknown_route",
    }
}

async fn method_not_allowed() -> GatewayError {
    GatewayError::Route {
        status: 405,
        message: "Method not allowed for this route.".into(),
        code: "method_not_allowed",
    }
}
