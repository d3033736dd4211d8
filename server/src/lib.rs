//! The `tokengate-server` library: configuration, startup (database, demo seed, catalog from
//! config), the one axum router (portal, `/v1` gateway, `/api/v1`, docs, health), request
//! logging and graceful shutdown. `main.rs` is only the command line around it.

pub mod api;
pub mod auth;
pub mod billing;
pub mod cluster;
pub mod config;
pub mod docs;
pub mod doctor;
pub mod envfile;
pub mod gateway;
pub mod http;
pub mod init;
pub mod mail;
pub mod mock_upstream;
pub mod portal;
pub mod probe;
pub mod rejections;
pub mod seal;
pub mod security;
pub mod serve;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::json;
use tokengate_core::catalog::{self, ModelSpec, ProviderSpec, TargetSpec};
use tokengate_core::money::parse_usd;
use tokengate_core::{Db, demo, password};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::config::{Config, Secret};
use crate::gateway::health::BreakerConfig;
use crate::gateway::meter::{Meter, MeterShutdown, WalConfig};
use crate::gateway::money::Money;
use crate::gateway::pipeline::Timeouts;
use crate::gateway::{Gateway, GatewaySettings};

/// Shared state of the whole server.
#[derive(Clone)]
pub struct AppState {
    pub gateway: Arc<Gateway>,
    pub db: Db,
    pub config: Arc<Config>,
    pub oidc: Arc<auth::oidc::OidcCache>,
    pub payments: billing::Payments,
    /// This instance's id in the instance registry.
    pub instance_id: Arc<str>,
}

/// A started server's parts, for `main` and for tests that run it in-process.
pub struct Server {
    pub state: AppState,
    pub router: Router,
    meter_shutdown: MeterShutdown,
    refresher: tokio::task::JoinHandle<()>,
    /// Purges stored `/v1/responses` answers past `responses_retention_days`.
    responses_purge: tokio::task::JoinHandle<()>,
    /// LISTENs for changes made elsewhere (PostgreSQL only).
    change_listener: Option<tokio::task::JoinHandle<()>>,
    /// This instance's row in the instance registry (heartbeat until shutdown).
    instance: cluster::instances::Registration,
    /// Cluster mode's hold keeper and outbox consumer.
    cluster_tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// Startup failure, printed by `main`.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error("database: {0}")]
    Db(#[from] tokengate_core::Error),
    /// Demo mode on a database that has accounts other than the demo admin.
    #[error(
        "\n\n*** DEMO MODE REFUSED ***\nThis database already has {0} account(s) besides the demo \
         admin. Demo mode adds an administrator and a funded API key whose secrets are printed \
         on the console; it is only for a new, throw-away database.\nStart without demo mode \
         (unset TOKENGATE_DEMO, or `demo = false` in the config file), or point \
         TOKENGATE_DATA_DIR or TOKENGATE_DATABASE_URL at a new database.\n"
    )]
    DemoRefused(i64),
    /// Another live instance on the database, and one of the two has no Redis.
    #[error(transparent)]
    Instance(#[from] cluster::instances::RegisterError),
}

/// Provider keys from the config (inline or via `api_key_env`), by provider name.
fn provider_keys(config: &Config) -> Result<HashMap<String, Secret>, config::ConfigError> {
    let mut keys = HashMap::new();
    for p in &config.providers {
        let key = match (&p.api_key, &p.api_key_env) {
            (Some(k), _) => Some(k.clone()),
            (None, Some(var)) => Some(Secret::new(std::env::var(var).map_err(|_| {
                config::ConfigError(format!(
                    "provider {}: environment variable {var} is not set",
                    p.name
                ))
            })?)),
            (None, None) => None,
        };
        if let Some(k) = key {
            keys.insert(p.name.clone(), k);
        }
    }
    Ok(keys)
}

fn usd_per_m(field: &str, model: &str, value: &str) -> Result<i64, config::ConfigError> {
    parse_usd(value).map_err(|_| {
        config::ConfigError(format!(
            "model {model}: {field} {value:?} is not a USD amount"
        ))
    })
}

/// Upserts the providers, models and aliases declared in the config file.
async fn apply_config_catalog(db: &Db, config: &Config) -> Result<(), StartError> {
    for p in &config.providers {
        catalog::upsert_provider(
            db,
            &ProviderSpec {
                name: p.name.clone(),
                kind: p.kind,
                base_url: p.base_url.clone(),
                api_key_enc: None,
                config: p
                    .config
                    .as_ref()
                    .map(|t| serde_json::to_value(t).unwrap_or_default())
                    .unwrap_or_else(|| json!({})),
                enabled: p.enabled,
            },
        )
        .await?;
    }
    for m in &config.models {
        let opt = |field: &str, v: &Option<String>| {
            v.as_deref()
                .map(|s| usd_per_m(field, &m.name, s))
                .transpose()
        };
        catalog::upsert_model(
            db,
            &ModelSpec {
                name: m.name.clone(),
                provider: m.provider.clone(),
                upstream_model: m.upstream_model.clone(),
                input_price_nano: usd_per_m("input_usd_per_m", &m.name, &m.input_usd_per_m)?,
                output_price_nano: usd_per_m("output_usd_per_m", &m.name, &m.output_usd_per_m)?,
                cache_read_price_nano: opt("cache_read_usd_per_m", &m.cache_read_usd_per_m)?,
                cache_write_price_nano: opt("cache_write_usd_per_m", &m.cache_write_usd_per_m)?,
                max_output_tokens: m.max_output_tokens,
                complexity_tier: m.complexity_tier.clone(),
                enabled: m.enabled,
            },
        )
        .await?;
    }
    for a in &config.aliases {
        let targets: Vec<TargetSpec> = a
            .targets
            .iter()
            .map(|t| TargetSpec {
                model: t.model.clone(),
                priority: t.priority,
                weight: t.weight,
            })
            .collect();
        catalog::upsert_alias(db, &a.name, &a.description, &a.complexity_tier, &targets).await?;
    }
    for g in &config.key_groups {
        catalog::upsert_key_group(
            db,
            &g.name,
            g.allowed_providers.as_deref(),
            g.allowed_models.as_deref(),
        )
        .await?;
    }
    Ok(())
}

/// Prints the demo credentials once, on the console only (never to the log).
fn announce_demo(config: &Config, seed: &demo::DemoSeed) {
    println!(
        "{}",
        demo_banner(
            &config.public_url,
            &seed.admin.email,
            &seed.password,
            &seed.raw_key
        )
    );
}

/// The demo banner: the secrets it prints are marked as demo secrets, and say what they
/// open.
fn demo_banner(url: &str, email: &str, pw: &str, key: &str) -> String {
    format!(
        "\n=== tokengate DEMO MODE: not for production ===\n\
         Portal:         {url}\n\
         Admin email:    {email}\n\
         Admin password: {pw}   <- DEMO SECRET: signs in as administrator\n\
         API key:        {key}   <- DEMO SECRET: spends the demo credit\n\
         Credit:         $5.00 (demo)\n\n\
         Next, try:\n\
         1. A chat completion with the key:\n  \
         curl {url}/v1/chat/completions -H \"Authorization: Bearer {key}\" \\\n    \
         -H \"Content-Type: application/json\" \\\n    \
         -d '{{\"model\":\"tokengate-fast\",\"messages\":[{{\"role\":\"user\",\"content\":\"Hello\"}}]}}'\n\
         2. The portal: open {url}/login and sign in with the email and password above\n   \
         (usage, request logs, keys; the admin console is at {url}/admin).\n\
         3. The CLI: cargo install --path cli --locked && tokengate login --api-url {url}\n\n\
         These demo secrets are shown only once. Anyone who can read this console can use them:\n\
         never run demo mode on a database that real users share.\n\
         ================================================\n",
    )
}

impl Server {
    /// Connects the database, applies migrations and seeds, and builds the router.
    pub async fn start(mut config: Config) -> Result<Server, StartError> {
        config.load_or_create_secret()?;
        if config.database_url.starts_with("sqlite:") {
            std::fs::create_dir_all(&config.data_dir)
                .map_err(|e| config::ConfigError(format!("{}: {e}", config.data_dir.display())))?;
        }
        let keys = provider_keys(&config)?;
        let db = Db::connect(&config.database_url).await?;
        let secret = config.secret_bytes();
        if config.demo {
            let others = demo::other_accounts(&db).await?;
            if others > 0 {
                tracing::error!(
                    accounts = others,
                    "demo mode refused: the database has accounts besides the demo admin"
                );
                db.close().await;
                return Err(StartError::DemoRefused(others));
            }
            tracing::warn!(
                "DEMO MODE: a demo administrator and API key exist on this server; \
                 do not expose it to real users"
            );
        }
        let instance = cluster::instances::register(
            &db,
            &config.listen.to_string(),
            &config.public_url,
            config.redis_url.is_some(),
        )
        .await?;
        apply_config_catalog(&db, &config).await?;
        if config.demo {
            let pw = password::generate();
            let pw_for_hash = pw.clone();
            let hashed = tokio::task::spawn_blocking(move || password::hash(&pw_for_hash))
                .await
                .map_err(|e| tokengate_core::Error::Invalid(e.to_string()))??;
            if let Some(seed) = demo::seed_if_new(&db, &secret, pw, &hashed).await? {
                announce_demo(&config, &seed);
            }
        }
        let money = Arc::new(Money::default());
        let (meter, meter_shutdown) = Meter::start(
            db.clone(),
            money.clone(),
            Duration::from_millis(config.flush_interval_ms),
            WalConfig {
                dir: config.data_dir.join("usage-wal"),
            },
        )
        .await?;
        let b = &config.breaker;
        let settings = GatewaySettings {
            provider_keys: keys,
            max_body_bytes: config.max_body_bytes,
            max_choices: i64::try_from(config.max_choices).unwrap_or(i64::MAX),
            upstream_limits: gateway::providers::http::UpstreamLimits {
                max_body_bytes: config.max_upstream_body_bytes,
                max_event_bytes: config.max_upstream_event_bytes,
            },
            timeouts: Timeouts {
                attempt: Duration::from_millis(config.upstream_timeout_ms),
                total: Duration::from_millis(config.request_timeout_ms),
                stream_idle: Duration::from_secs(config.stream_idle_secs),
            },
            breaker: BreakerConfig {
                window: Duration::from_secs(b.window_secs),
                error_rate: b.error_rate,
                min_requests: b.min_requests,
                open_for: Duration::from_secs(b.open_secs),
                half_open_probes: b.half_open_probes,
            },
        };
        let mut gateway = Gateway::new(db.clone(), secret, meter, money, settings).await?;
        let mut cluster_tasks = Vec::new();
        if let Some(url) = &config.redis_url {
            let redis = cluster::redis::RedisConn::connect(url.expose(), &config.redis_prefix)
                .await
                .map_err(|e| config::ConfigError(e.to_string()))?;
            let bp = cluster::backplane::RedisBackplane::connect(
                redis,
                db.clone(),
                config.request_timeout_ms,
            )
            .await
            .map_err(|e| {
                config::ConfigError(format!("Redis backplane: {}", cluster::redis::redact(&e)))
            })?;
            cluster_tasks = bp.spawn_tasks();
            gateway.backplane = cluster::backplane::Backplane::Redis(bp);
        }
        let gateway = Arc::new(gateway);
        // Changes made elsewhere: pushed by PostgreSQL NOTIFY, and polled as a backstop.
        let wake = Arc::new(cluster::changes::Wake::default());
        let change_listener = (db.kind() == tokengate_core::DbKind::Postgres)
            .then(|| cluster::changes::listen(config.database_url.clone(), wake.clone()));
        let refresher = {
            let gw = gateway.clone();
            let db = db.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(2));
                tick.tick().await;
                // Expired sessions, grants and sign-in failures: purged every 10 minutes.
                let mut ticks: u32 = 0;
                loop {
                    tokio::select! {
                        full = wake.wait() => {
                            if let Err(e) = gw.refresh_changes(full).await {
                                tracing::warn!(error = %e, "applying changes from the database failed");
                            }
                            continue;
                        }
                        _ = tick.tick() => {}
                    }
                    if let Err(e) = gw.refresh().await {
                        tracing::warn!(error = %e, "refresh from database failed");
                    }
                    if let cluster::backplane::Backplane::Redis(r) = &gw.backplane
                        && let Err(e) = r.offer_changed_balances().await
                    {
                        tracing::warn!(error = %e, "offering balances to Redis failed");
                    }
                    ticks = (ticks + 1) % 300;
                    if ticks == 0
                        && let Err(e) = tokengate_core::auth::purge_expired(&db).await
                    {
                        tracing::warn!(error = %e, "purging expired sessions failed");
                    }
                }
            })
        };
        let mut providers: Vec<Arc<dyn billing::PaymentProvider>> = Vec::new();
        if let Some(stripe) = &config.stripe {
            providers.push(Arc::new(
                billing::stripe::Stripe::new(stripe).map_err(config::ConfigError)?,
            ));
        }
        let state = AppState {
            gateway: gateway.clone(),
            db: db.clone(),
            config: Arc::new(config),
            oidc: Arc::default(),
            payments: billing::Payments::new(providers),
            instance_id: Arc::from(instance.id()),
        };
        let router = router(state.clone());
        let responses_purge = tokio::spawn(gateway::response_store::purge_task(
            db.clone(),
            state.config.responses_retention_days,
        ));
        Ok(Server {
            state,
            router,
            meter_shutdown,
            refresher,
            responses_purge,
            change_listener,
            instance,
            cluster_tasks,
        })
    }

    /// Serves until `shutdown` resolves, drains in-flight requests, then flushes usage.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let limits = serve::Limits::from_config(&self.state.config);
        if let Ok(addr) = listener.local_addr() {
            self.instance.set_listen(&addr.to_string()).await;
        }
        let result = serve::serve(listener, self.router, limits, shutdown).await;
        self.refresher.abort();
        self.responses_purge.abort();
        if let Some(l) = &self.change_listener {
            l.abort();
        }
        for t in &self.cluster_tasks {
            t.abort();
        }
        self.meter_shutdown.flush_and_stop().await;
        self.instance.leave().await;
        self.state.db.close().await;
        result
    }
}

/// The whole HTTP surface. `/v1` (API keys) stays outside the session and CSRF layers, so
/// the gateway's hot path does no cookie or session work.
pub fn router(state: AppState) -> Router {
    let max_body = state.config.max_body_bytes;
    let portal = portal::router(&state);
    let secure = state.config.public_url.starts_with("https://");
    let idle = Duration::from_secs(state.config.session_idle_secs);
    let signed_in = Router::new()
        .nest("/api/v1", api::router())
        .merge(Router::from(portal_route_table()))
        .route("/me/keys/new", post(portal::forms::create_key))
        .route("/me/billing/topup", post(portal::forms::topup))
        .with_state(state.clone())
        .fallback_service(portal)
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::csrf::protect,
        ))
        .layer(auth::session::layer(state.db.clone(), secure, idle));
    Router::from(root_route_table())
        .with_state(state.clone())
        // The docs, the OpenAPI document and its explorer: public, outside the session layer.
        .merge(docs::router(&state.config.public_url))
        .nest("/v1", gateway::router(state.gateway.clone()))
        .fallback_service(signed_in)
        // Plain-text 4xx from extractors become the route's documented error body.
        .layer(middleware::from_fn(rejections::shape))
        .layer(axum::extract::DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            max_body,
            serve::drain_unread,
        ))
        .layer(middleware::from_fn_with_state(
            Duration::from_secs(state.config.body_read_timeout_secs),
            serve::body_deadline,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::new(security::SecurityHeaders::from_public_url(
                &state.config.public_url,
            )),
            security::headers,
        ))
        .layer(middleware::from_fn(log_request))
}

/// Routes outside the session layer: health and the payment webhook (signed by the payment
/// provider, never by a session). Registered from each handler's `#[utoipa::path]`, like
/// every documented route, so the router and `/openapi.json` are built from one list.
pub fn root_route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(api::billing::webhook))
}

/// The portal's sign-in form endpoints (session layer, CSRF-checked): local sign-in and
/// sign-up, sign-out, device approval and OpenID Connect.
pub fn portal_route_table() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(auth::login::login))
        .routes(routes!(auth::login::signup))
        .routes(routes!(auth::login::verify_email))
        .routes(routes!(auth::login::resend_verification))
        .routes(routes!(auth::login::logout))
        .routes(routes!(auth::login::logout_everywhere))
        .routes(routes!(auth::login::decide_device))
        .routes(routes!(auth::oidc::start))
        .routes(routes!(auth::oidc::callback))
}

/// Liveness
///
/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "Health", operation_id = "healthz",
    responses((status = 200, description = "Up.", body = docs::schemas::Healthz,
        example = json!({"status": "ok"}))))]
async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// Readiness
///
/// The database answers; 503 otherwise (take the instance out of the load balancer).
#[utoipa::path(get, path = "/readyz", tag = "Health", operation_id = "readyz",
    responses(
        (status = 200, description = "Ready.", body = docs::schemas::Readyz),
        (status = 503, description = "The database is unreachable.", body = docs::schemas::Readyz,
            example = json!({"status": "unavailable", "database": "unreachable"})),
    ))]
async fn readyz(State(state): State<AppState>) -> Response {
    match state.db.ping().await {
        Ok(()) => axum::Json(json!({"status": "ready", "database": "ok"})).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"status": "unavailable", "database": "unreachable"})),
            )
                .into_response()
        }
    }
}

fn panic_response(_: Box<dyn std::any::Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        axum::Json(
            json!({"error": {"message": "The server had an error processing your request.",
            "type": "api_error", "param": null, "code": "internal_error"}}),
        ),
    )
        .into_response()
}

/// One log line per request: method, path (never the query, which may hold secrets),
/// status and latency.
async fn log_request(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    tracing::info!(
        target: "tokengate::http",
        %method,
        path,
        status = resp.status().as_u16(),
        latency_us = start.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_banner_marks_its_secrets() {
        let b = demo_banner(
            "http://127.0.0.1:3000",
            demo::DEMO_EMAIL,
            "pw-123",
            "sk-tg-abc",
        );
        assert!(b.contains("DEMO MODE: not for production"), "{b}");
        assert!(b.contains("Admin password: pw-123   <- DEMO SECRET"), "{b}");
        assert!(
            b.contains("API key:        sk-tg-abc   <- DEMO SECRET"),
            "{b}"
        );
        assert!(b.contains("Admin email:    admin@tokengate.local"), "{b}");
        // The three next steps: a call with the key, the portal, the CLI.
        assert!(
            b.contains("1. A chat completion") && b.contains("Bearer sk-tg-abc"),
            "{b}"
        );
        assert!(
            b.contains("2. The portal: open http://127.0.0.1:3000/login"),
            "{b}"
        );
        assert!(
            b.contains("tokengate login --api-url http://127.0.0.1:3000"),
            "{b}"
        );
    }
}
