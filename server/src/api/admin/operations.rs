//! Admin operations: provider health (breaker state, error rate, latency percentiles,
//! the usage writer's counters), request logs of every account, and a provider
//! connection test.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::extract::State;
use tokengate_api::admin::{
    AdminLogQuery, AdminRequestLog, AdminRequestLogPage, BreakerSettings, BreakerState,
    HealthReport, InstanceView, ProviderTest, TargetHealth, UsageWriterStats,
};
use tokengate_api::{Timestamp, Usd};
use tokengate_core::usage::{self, LogFilter, StatusFilter};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::catalog::catalog_of;
use super::{Reply, not_found};
use crate::AppState;
use crate::auth::AdminUser;
use crate::gateway::health;
use crate::http::error::{AdminErrors, BadRequest, Conflict, NotFound, Unprocessable};
use crate::http::{ApiError, ApiJson, ApiPath, ApiQuery};

/// Adds the operations routes to `table`.
pub(super) fn routes(table: OpenApiRouter<AppState>) -> OpenApiRouter<AppState> {
    table
        .routes(routes!(test_provider))
        .routes(routes!(request_logs))
        .routes(routes!(health))
}

/// Test a provider connection
///
/// Lists the provider's models with its key and reports the status and latency.
#[utoipa::path(post, path = "/providers/{name}/test", operation_id = "admin_test_provider",
    params(("name" = String, Path, description = "The provider's name")),
    responses((status = 200, description = "The outcome.", body = ProviderTest), AdminErrors, NotFound, Conflict))]
async fn test_provider(
    _: AdminUser,
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
) -> Reply<ProviderTest> {
    let c = catalog_of(&state).await?;
    let p = c
        .providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| not_found("provider", &name))?;
    if !p.enabled {
        return Ok(ApiJson(ProviderTest {
            provider: name,
            ok: false,
            status: None,
            latency_ms: None,
            message: "The provider is disabled; enable it to test the connection.".into(),
        }));
    }
    let adapter = state
        .gateway
        .routes
        .load()
        .provider(&name)
        .ok_or_else(|| ApiError::Conflict(format!("Provider {name:?} is not loaded.")))?;
    let started = Instant::now();
    let result = adapter.probe(Duration::from_secs(10)).await;
    let latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
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
    Ok(ApiJson(ProviderTest {
        provider: name,
        ok,
        status,
        latency_ms: Some(latency_ms),
        message,
    }))
}

/// Request logs of every account
///
/// Request logs across accounts, newest first (`status=error` for failed requests).
#[utoipa::path(get, path = "/request-logs", operation_id = "admin_request_logs",
    params(AdminLogQuery),
    responses((status = 200, description = "A page of requests.", body = AdminRequestLogPage), BadRequest, AdminErrors, Unprocessable))]
async fn request_logs(
    _: AdminUser,
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<AdminLogQuery>,
) -> Reply<AdminRequestLogPage> {
    let filter = LogFilter {
        model: q.model.filter(|m| !m.is_empty()),
        status: q
            .status
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(StatusFilter::parse)
            .transpose()?,
        ..Default::default()
    };
    let limit = q.limit.unwrap_or(50).clamp(1, 500);
    let rows = usage::logs_page_of(&state.db, q.user_id, &filter, q.before, limit).await?;
    let next_before = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let data = rows
        .into_iter()
        .map(|r| {
            let rec = r.record;
            AdminRequestLog {
                id: r.id,
                request_id: rec.request_id,
                user_id: rec.user_id,
                key_id: rec.key_id,
                created_at: Timestamp(rec.created_at),
                endpoint: rec.endpoint,
                model: rec.model,
                served_model: rec.served_model,
                provider: rec.provider,
                status: rec.status,
                error_type: rec.error_type.map(|t| t.to_string()),
                error_message: rec.error_message,
                attempts: rec.attempts,
                attempts_detail: rec.attempts_json,
                latency_ms: rec.latency_ms,
                cost_usd: Usd(rec.cost_nano),
            }
        })
        .collect();
    Ok(ApiJson(AdminRequestLogPage { data, next_before }))
}

fn target_health(h: health::TargetHealth) -> TargetHealth {
    TargetHealth {
        state: match h.state {
            "open" => BreakerState::Open,
            "half_open" => BreakerState::HalfOpen,
            _ => BreakerState::Closed,
        },
        target: h.target,
        requests: h.requests,
        errors: h.errors,
        error_rate: h.error_rate,
        p50_ms: h.p50_ms,
        p95_ms: h.p95_ms,
        p99_ms: h.p99_ms,
        open_remaining_ms: h.open_remaining_ms,
        total_requests: h.total_requests,
        total_errors: h.total_errors,
    }
}

/// Health
///
/// The live instances of this deployment (heartbeat within 5 s by the database's clock,
/// the answering one marked `current`), and this instance's provider health (circuit
/// breakers are per instance): per routing target, breaker state, requests and errors in
/// the window, error rate, latency percentiles; and the usage writer's counters since
/// start (rows quarantined or dropped because the database refused them, rows replayed
/// from the write-ahead log, requests charged above their hold).
#[utoipa::path(get, path = "/health", operation_id = "admin_health",
    responses((status = 200, description = "Health.", body = HealthReport), AdminErrors))]
async fn health(_: AdminUser, State(state): State<AppState>) -> Reply<HealthReport> {
    let (now, live) = tokengate_core::instances::live(&state.db).await?;
    let instances = live
        .into_iter()
        .map(|i| InstanceView {
            current: i.id == *state.instance_id,
            last_seen_ms_ago: (now - i.last_seen_at).max(0),
            id: i.id,
            version: i.version,
            listen: i.listen,
            public_url: i.public_url,
            cluster: i.cluster,
            started_at: Timestamp(i.started_at),
            last_seen_at: Timestamp(i.last_seen_at),
        })
        .collect();
    let cfg = state.gateway.health.config();
    let w = state.gateway.meter.stats();
    let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
    Ok(ApiJson(HealthReport {
        instances,
        usage_writer: UsageWriterStats {
            quarantined: n(&w.quarantined),
            dropped: n(&w.dropped),
            replayed: n(&w.replayed),
            overruns: n(&w.overruns),
        },
        breaker: BreakerSettings {
            window_secs: cfg.window.as_secs(),
            error_rate: cfg.error_rate,
            min_requests: cfg.min_requests,
            open_secs: cfg.open_for.as_secs(),
            half_open_probes: cfg.half_open_probes,
        },
        targets: state
            .gateway
            .health
            .snapshot(Instant::now())
            .into_iter()
            .map(target_health)
            .collect(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn breaker_states_map_one_to_one() {
        let h = |state| health::TargetHealth {
            target: "m".into(),
            state,
            requests: 3,
            errors: 1,
            error_rate: 1.0 / 3.0,
            p50_ms: Some(5.0),
            p95_ms: None,
            p99_ms: None,
            open_remaining_ms: Some(7),
            total_requests: 9,
            total_errors: 2,
        };
        for (word, state) in [
            ("closed", BreakerState::Closed),
            ("open", BreakerState::Open),
            ("half_open", BreakerState::HalfOpen),
        ] {
            let t = target_health(h(word));
            assert_eq!(t.state, state);
            // The wire word is the gateway's word.
            assert_eq!(serde_json::to_value(t.state).unwrap(), word);
            assert_eq!(
                (t.requests, t.open_remaining_ms, t.total_errors),
                (3, Some(7), 2)
            );
        }
    }
}
