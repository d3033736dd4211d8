//! The admin API (`/api/v1/admin/…`): the request and response bodies of the catalog
//! (providers, models and prices, aliases and their dry run, key groups), of users (search,
//! ledger, credit, suspension, ledger verification) and of operations (provider health,
//! request logs across accounts, provider connection tests). One type per body; the server
//! answers with them and the portal's admin console reads them.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;

use crate::attempt::UpstreamAttempt;
use crate::kinds::{EntryKind, ProviderKind, Role, UserStatus};
use crate::{Timestamp, Usd};

fn yes() -> bool {
    true
}

fn one() -> i64 {
    1
}

fn standard_tier() -> String {
    "standard".into()
}

fn default_max_output() -> i64 {
    4096
}

/// A field that is present (even as `null`) deserializes to `Some`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

// ----- catalog --------------------------------------------------------------------------

/// Whether a write-only secret is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SecretState {
    Set,
    Unset,
}

/// An upstream provider (its key is write-only: only whether one is set is shown).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 1, "name": "openai", "kind": "openai",
    "base_url": "https://api.openai.com/v1", "config": {}, "enabled": true, "api_key": "set",
    "created_at": "2026-11-01T09:30:00Z"})))]
pub struct ProviderView {
    pub id: i64,
    pub name: String,
    pub kind: ProviderKind,
    pub base_url: Option<String>,
    /// Provider-specific settings (the mock provider's `latency_ms`, `fail_status`, …).
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub config: Value,
    pub enabled: bool,
    /// `set` or `unset` — the key itself is write-only.
    pub api_key: SecretState,
    pub created_at: Timestamp,
}

/// Body of `PUT /admin/providers/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"kind": "openai",
    "base_url": "https://api.openai.com/v1", "api_key": "sk-..."})))]
pub struct ProviderRequest {
    pub kind: ProviderKind,
    /// E.g. `https://api.openai.com/v1`; must start with `http://` or `https://`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(example = "https://api.openai.com/v1"))]
    pub base_url: Option<String>,
    /// Write-only: sealed with the server secret, reported as `set`/`unset`. Absent keeps
    /// the stored key while `base_url` stays on the same origin (scheme, host, port) and
    /// clears it when `base_url` moves elsewhere; `null` clears it.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub api_key: Option<Option<String>>,
    /// Provider-specific settings (the mock provider's `latency_ms`, `fail_status`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Object>))]
    pub config: Option<Value>,
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub enabled: bool,
}

/// A model with its prices (USD per million tokens, exact).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 3, "name": "openai/gpt-4o-mini",
    "provider": "openai", "upstream_model": "gpt-4o-mini", "input_usd_per_m": "0.15",
    "output_usd_per_m": "0.60", "cache_read_usd_per_m": "0.075", "cache_write_usd_per_m": null,
    "max_output_tokens": 16384, "complexity_tier": "fast", "enabled": true,
    "created_at": "2026-11-01T09:30:00Z"})))]
pub struct AdminModelView {
    pub id: i64,
    /// Provider-qualified, e.g. `openai/gpt-4o-mini`.
    pub name: String,
    /// The provider's name.
    pub provider: Option<String>,
    /// The model's name at the provider.
    pub upstream_model: String,
    pub input_usd_per_m: Usd,
    pub output_usd_per_m: Usd,
    pub cache_read_usd_per_m: Option<Usd>,
    pub cache_write_usd_per_m: Option<Usd>,
    pub max_output_tokens: i64,
    pub complexity_tier: String,
    pub enabled: bool,
    pub created_at: Timestamp,
}

/// Body of `PUT /admin/models/{name}`; prices are USD per million tokens.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"provider": "openai",
    "upstream_model": "gpt-4o-mini", "input_usd_per_m": "0.15", "output_usd_per_m": "0.60",
    "max_output_tokens": 16384, "complexity_tier": "fast"})))]
pub struct ModelRequest {
    /// The provider's name.
    pub provider: String,
    /// The model's name at the provider.
    pub upstream_model: String,
    /// USD per million input tokens.
    pub input_usd_per_m: Usd,
    /// USD per million output tokens.
    pub output_usd_per_m: Usd,
    /// USD per million cache-read input tokens (default: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_read_usd_per_m: Option<Usd>,
    /// USD per million cache-write input tokens (default: the input price).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_write_usd_per_m: Option<Usd>,
    /// Used for the balance hold when a request sets no `max_tokens`.
    #[serde(default = "default_max_output")]
    #[cfg_attr(feature = "openapi", schema(default = 4096))]
    pub max_output_tokens: i64,
    #[serde(default = "standard_tier")]
    #[cfg_attr(feature = "openapi", schema(default = "standard"))]
    pub complexity_tier: String,
    #[serde(default = "yes")]
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub enabled: bool,
}

/// A routing alias: targets are tried tier by tier (lowest `priority` first), weighted at
/// random inside a tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 1, "name": "tokengate-fast",
    "description": "", "complexity_tier": "fast", "enabled": true,
    "targets": [{"model": "openai/gpt-4o-mini", "priority": 0, "weight": 1},
    {"model": "mock/fast-1", "priority": 1, "weight": 1}], "created_at": "2026-11-01T09:30:00Z"})))]
pub struct AliasView {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub complexity_tier: String,
    pub enabled: bool,
    pub targets: Vec<AliasTargetView>,
    pub created_at: Timestamp,
}

/// One target of an alias: lower `priority` tiers are tried first, `weight` shares
/// traffic inside a tier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"model": "openai/gpt-4o-mini",
    "priority": 0, "weight": 1})))]
pub struct AliasTargetView {
    /// The model's name (null if it is gone).
    pub model: Option<String>,
    pub priority: i64,
    pub weight: i64,
}

/// Body of `PUT /admin/aliases/{name}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"targets": [
    {"model": "openai/gpt-4o-mini", "priority": 0, "weight": 1},
    {"model": "mock/fast-1", "priority": 1}]})))]
pub struct AliasRequest {
    #[serde(default)]
    pub description: String,
    #[serde(default = "standard_tier")]
    #[cfg_attr(feature = "openapi", schema(default = "standard"))]
    pub complexity_tier: String,
    pub targets: Vec<AliasTargetRequest>,
}

/// One target of an alias, as set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"model": "openai/gpt-4o-mini",
    "priority": 0, "weight": 1})))]
pub struct AliasTargetRequest {
    /// A model's name.
    pub model: String,
    /// Tier: lower tiers are tried first (default 0).
    #[serde(default)]
    pub priority: i64,
    /// Share of traffic inside its tier (default 1).
    #[serde(default = "one")]
    #[cfg_attr(feature = "openapi", schema(default = 1))]
    pub weight: i64,
}

/// Which targets of an alias would serve a request now, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"alias": "tokengate-fast",
    "serving_priority": 0, "verdict": "served by tier 0, weighted among its usable targets",
    "tiers": [{"priority": 0, "serves": true, "targets": [{"model": "openai/gpt-4o-mini",
    "weight": 1, "usable": true, "reason": "healthy", "share": 1.0, "error_rate": 0.0,
    "p50_ms": 420.0}]}]})))]
pub struct DryRun {
    pub alias: String,
    /// The tier that serves now; null when none can.
    pub serving_priority: Option<i64>,
    pub tiers: Vec<DryRunTier>,
    pub verdict: String,
}

/// One priority tier in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DryRunTier {
    pub priority: i64,
    pub serves: bool,
    pub targets: Vec<DryRunTarget>,
}

/// One target in a dry run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DryRunTarget {
    pub model: String,
    pub weight: i64,
    pub usable: bool,
    /// `healthy`, `circuit open`, `model disabled`, …
    pub reason: String,
    /// Share of the tier's traffic it would get (0 outside the serving tier).
    pub share: f64,
    pub error_rate: Option<f64>,
    pub p50_ms: Option<f64>,
}

/// A key group: a policy keys can belong to (null = no restriction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 1, "name": "partners",
    "allowed_providers": ["openai"], "allowed_models": ["openai/*", "tokengate-fast"],
    "created_at": "2026-11-01T09:30:00Z"})))]
pub struct KeyGroupView {
    pub id: i64,
    pub name: String,
    pub allowed_providers: Option<Vec<String>>,
    pub allowed_models: Option<Vec<String>>,
    pub created_at: Timestamp,
}

/// Body of `PUT /admin/key-groups/{name}`; null = no restriction.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"allowed_providers": ["openai"],
    "allowed_models": ["openai/*", "tokengate-fast"]})))]
pub struct KeyGroupRequest {
    #[serde(default)]
    pub allowed_providers: Option<Vec<String>>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
}

/// Something of the catalog was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "mock/fast-1", "deleted": true})))]
pub struct Deleted {
    pub name: String,
    /// `true`.
    pub deleted: bool,
}

/// A provider connection test.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"provider": "openai", "ok": true,
    "status": 200, "latency_ms": 231, "message": "Connected; the provider accepted the key."})))]
pub struct ProviderTest {
    pub provider: String,
    pub ok: bool,
    /// HTTP status the provider answered (absent when it is disabled or unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<u64>,
    pub message: String,
}

// ----- users ----------------------------------------------------------------------------

/// The query of `GET /admin/users`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct UserSearchQuery {
    /// Part of an email or name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub q: Option<String>,
    /// At most this many (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// The query of `GET /admin/users/{id}/ledger`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LedgerQuery {
    /// Entries older than this entry id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// At most this many (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
}

/// The query of `GET /admin/ledger/verify`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct VerifyQuery {
    /// Check only this user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
}

/// A user as administrators see them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 2, "email": "ada@example.com",
    "display_name": "Ada", "role": "user", "status": "active", "balance_usd": "6.50",
    "balance_nano": 6_500_000_000u64, "created_at": "2026-11-01T09:30:00Z"})))]
pub struct AdminUserView {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub status: UserStatus,
    /// The stored balance.
    pub balance_usd: Usd,
    pub balance_nano: i64,
    pub created_at: Timestamp,
}

/// A user's ledger, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserLedger {
    pub user: AdminUserView,
    pub entries: Vec<LedgerEntryView>,
}

/// One ledger entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 31, "kind": "refund",
    "amount_usd": "1.50", "amount_nano": 1_500_000_000u64, "balance_after_usd": "6.50",
    "reference": "admin:1", "note": "Duplicate charge on 2026-11-03", "created_by": 1,
    "created_at": "2026-11-04T10:00:00Z"})))]
pub struct LedgerEntryView {
    pub id: i64,
    pub kind: EntryKind,
    pub amount_usd: Usd,
    pub amount_nano: i64,
    pub balance_after_usd: Usd,
    pub reference: Option<String>,
    pub note: Option<String>,
    /// The admin who made it.
    pub created_by: Option<i64>,
    pub created_at: Timestamp,
}

/// Body of `POST /admin/users/{id}/credit`: an admin credit or debit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"amount_usd": "1.50", "kind": "refund",
    "reason": "Duplicate charge on 2026-11-03"})))]
pub struct CreditRequest {
    /// Positive credits, negative debits; not zero.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, example = "-1.50"))]
    pub amount_usd: Option<Usd>,
    /// `adjustment` (default), `refund` or `promo`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(example = "refund"))]
    pub kind: Option<String>,
    /// Why; required, up to 500 characters; kept in the ledger with the admin's id.
    #[serde(default)]
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, example = "Duplicate charge on 2026-11-03")
    )]
    pub reason: Option<String>,
    /// Allow a debit to leave the balance below zero.
    #[serde(default)]
    pub allow_negative: bool,
}

/// The ledger entry an admin credit made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"user_id": 2, "kind": "refund",
    "amount_usd": "1.50", "balance_usd": "6.50", "balance_nano": 6_500_000_000u64, "entry_id": 31})))]
pub struct CreditResult {
    pub user_id: i64,
    pub kind: EntryKind,
    pub amount_usd: Usd,
    /// The balance after the entry.
    pub balance_usd: Usd,
    pub balance_nano: i64,
    pub entry_id: i64,
}

/// A user's new status.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 2, "email": "ada@example.com",
    "status": "suspended", "updated_at": "2026-11-04T10:00:00Z"})))]
pub struct UserStatusChange {
    pub id: i64,
    pub email: String,
    pub status: UserStatus,
    pub updated_at: Timestamp,
}

/// Balance = Σ ledger, checked per account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"checked": 12, "ok": true, "mismatches": []})))]
pub struct LedgerVerify {
    /// Accounts checked.
    pub checked: i64,
    pub ok: bool,
    pub mismatches: Vec<LedgerMismatch>,
}

/// An account whose balance differs from its ledger.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LedgerMismatch {
    pub user_id: i64,
    pub balance_usd: Usd,
    pub balance_nano: i64,
    pub ledger_sum_usd: Usd,
    pub ledger_sum_nano: i64,
    pub difference_nano: i64,
}

// ----- operations -----------------------------------------------------------------------

/// The query of `GET /admin/request-logs`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AdminLogQuery {
    /// Only this user's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<i64>,
    /// An HTTP status (`429`), a class (`5xx`), or `error` for every non-2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Model or alias.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// Page size, 1 to 500 (default 50).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<i64>,
    /// `next_before` of the previous page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
}

/// Request logs across accounts, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AdminRequestLogPage {
    pub data: Vec<AdminRequestLog>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
}

/// One request, as administrators see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 981, "request_id": "req_9f2c",
    "user_id": 2, "key_id": 7, "created_at": "2026-11-04T10:00:00.250Z",
    "endpoint": "/v1/chat/completions", "model": "tokengate-fast", "served_model": null,
    "provider": null, "status": 503, "error_type": "upstream_error",
    "error_message": "no upstream could answer", "attempts": 2, "attempts_detail": [],
    "latency_ms": 1520, "cost_usd": "0.00"})))]
pub struct AdminRequestLog {
    /// Log id (the paging cursor).
    pub id: i64,
    pub request_id: String,
    pub user_id: i64,
    pub key_id: i64,
    pub created_at: Timestamp,
    pub endpoint: String,
    /// The model or alias asked for.
    pub model: String,
    /// The model that served it.
    pub served_model: Option<String>,
    pub provider: Option<String>,
    /// HTTP status of the answer.
    pub status: i64,
    pub error_type: Option<String>,
    pub error_message: Option<String>,
    /// Upstream attempts (fallback makes more than one).
    pub attempts: i64,
    /// Each upstream attempt (provider, model, outcome, latency) when they say more than
    /// the row (fallbacks, skips); null otherwise.
    pub attempts_detail: Option<Vec<UpstreamAttempt>>,
    pub latency_ms: i64,
    pub cost_usd: Usd,
}

/// Health: the live instances of the deployment, and this instance's provider health
/// (breaker settings, each target's state) and usage writer's counters. Circuit breakers
/// are kept per instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthReport {
    /// Every live instance on this database (heartbeat within 5 s by the database's
    /// clock), oldest first.
    #[serde(default)]
    pub instances: Vec<InstanceView>,
    pub breaker: BreakerSettings,
    pub targets: Vec<TargetHealth>,
    pub usage_writer: UsageWriterStats,
}

/// One live tokengate instance (the instance registry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": "3f9c0a6d2b7e4f18",
    "version": "0.1.0", "listen": "10.0.0.5:3000", "public_url": "https://gw.example.com",
    "cluster": true, "started_at": "2026-11-26T17:42:45.123Z",
    "last_seen_at": "2026-11-26T18:00:01.020Z", "last_seen_ms_ago": 412, "current": true})))]
pub struct InstanceView {
    /// Random per process start.
    pub id: String,
    /// The tokengate version it runs.
    pub version: String,
    /// The address it listens on.
    pub listen: String,
    /// The URL it is published under.
    pub public_url: String,
    /// Runs with Redis (cluster mode).
    pub cluster: bool,
    pub started_at: Timestamp,
    /// Its last heartbeat (one a second), database clock.
    pub last_seen_at: Timestamp,
    /// Milliseconds between its last heartbeat and now, by the database's clock.
    pub last_seen_ms_ago: i64,
    /// The instance that answered this request.
    pub current: bool,
}

/// The usage writer's counters since the server started.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UsageWriterStats {
    /// Rows the database refused, written without their free text.
    pub quarantined: u64,
    /// Rows the database refused even without free text (logged, not written).
    pub dropped: u64,
    /// Rows of a crashed run written from the write-ahead log at start.
    pub replayed: u64,
    /// Requests charged more than their hold.
    pub overruns: u64,
}

/// The circuit-breaker settings in force.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"window_secs": 60, "error_rate": 0.5,
    "min_requests": 10, "open_secs": 30, "half_open_probes": 1})))]
pub struct BreakerSettings {
    pub window_secs: u64,
    pub error_rate: f64,
    pub min_requests: u32,
    pub open_secs: u64,
    pub half_open_probes: u32,
}

/// A circuit breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// Refusing traffic until its time is up.
    Open,
    /// Letting probe requests through.
    HalfOpen,
}

/// One routing target's health.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"target": "openai/gpt-4o-mini",
    "state": "closed", "requests": 120, "errors": 2, "error_rate": 0.0167, "p50_ms": 420.0,
    "p95_ms": 910.0, "p99_ms": 1400.0, "open_remaining_ms": null, "total_requests": 5230,
    "total_errors": 31})))]
pub struct TargetHealth {
    /// Routing target, such as `openai/gpt-4o-mini`.
    pub target: String,
    pub state: BreakerState,
    /// Requests finished within the window.
    pub requests: u64,
    /// Failed requests within the window.
    pub errors: u64,
    pub error_rate: f64,
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Time until an open breaker lets probes through.
    pub open_remaining_ms: Option<u64>,
    /// Requests recorded since the process started.
    pub total_requests: u64,
    /// Failed requests recorded since the process started.
    pub total_errors: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn provider_request_tells_absent_from_null_key() {
        let absent: ProviderRequest = serde_json::from_value(json!({"kind": "openai"})).unwrap();
        assert_eq!(absent.api_key, None);
        assert!(absent.enabled);
        let cleared: ProviderRequest =
            serde_json::from_value(json!({"kind": "openai", "api_key": null})).unwrap();
        assert_eq!(cleared.api_key, Some(None));
        // Written back, absence stays absence and null stays null.
        assert!(
            serde_json::to_value(&absent)
                .unwrap()
                .get("api_key")
                .is_none()
        );
        assert_eq!(
            serde_json::to_value(&cleared).unwrap()["api_key"],
            Value::Null
        );
        assert!(serde_json::from_value::<ProviderRequest>(json!({"kind": "nope"})).is_err());
        assert!(
            serde_json::from_value::<ProviderRequest>(json!({"kind": "mock", "bogus": 1})).is_err()
        );
    }

    #[test]
    fn catalog_times_and_prices_are_rfc3339_and_exact() {
        let m = AdminModelView {
            id: 3,
            name: "openai/gpt-4o-mini".into(),
            provider: Some("openai".into()),
            upstream_model: "gpt-4o-mini".into(),
            input_usd_per_m: Usd(150_000_000),
            output_usd_per_m: Usd(600_000_000),
            cache_read_usd_per_m: None,
            cache_write_usd_per_m: None,
            max_output_tokens: 4096,
            complexity_tier: "fast".into(),
            enabled: true,
            created_at: Timestamp(1_764_000_000_000),
        };
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(v["created_at"], "2025-11-24T16:00:00Z");
        assert_eq!(v["input_usd_per_m"], "0.15");
        assert_eq!(serde_json::from_value::<AdminModelView>(v).unwrap(), m);
    }

    #[test]
    fn defaults_of_requests() {
        let m: ModelRequest =
            serde_json::from_value(json!({"provider": "p", "upstream_model": "u",
            "input_usd_per_m": "1", "output_usd_per_m": 2}))
            .unwrap();
        assert_eq!(
            (m.max_output_tokens, m.complexity_tier.as_str(), m.enabled),
            (4096, "standard", true)
        );
        assert_eq!(m.output_usd_per_m, Usd(2_000_000_000));
        let a: AliasRequest = serde_json::from_value(json!({"targets": [{"model": "m"}]})).unwrap();
        assert_eq!((a.targets[0].priority, a.targets[0].weight), (0, 1));
        let c: CreditRequest = serde_json::from_value(json!({"reason": "x"})).unwrap();
        assert_eq!((c.amount_usd, c.allow_negative), (None, false));
    }

    #[test]
    fn breaker_states_are_snake_case() {
        assert_eq!(
            serde_json::to_value(BreakerState::HalfOpen).unwrap(),
            "half_open"
        );
    }
}
