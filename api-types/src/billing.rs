//! The billing API of the signed-in user (`/api/v1/topup`, `/api/v1/me/billing/…`,
//! `/api/v1/me/request-logs…`) and the payment webhook's acknowledgement: top-up request
//! and checkout, payments, monthly statements, the request log and its query. One type per
//! request and response body; the server answers with them, the portal and the CLI read
//! them. (The CSV and PDF exports are files, not types.)

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

use crate::account::UsageByModel;
use crate::attempt::UpstreamAttempt;
use crate::kinds::{EntryKind, FailureKind, PaymentStatus};
use crate::{Timestamp, Usd};

// ---------------------------------------------------------------------------------------
// Top-up and payments

/// A top-up amount (`POST /topup`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"amount_usd": "5.00"})))]
pub struct TopupRequest {
    /// USD, at least 1.00, at most `topup_max_usd` (10000 by default), whole cents.
    #[cfg_attr(feature = "openapi", schema(example = "5.00"))]
    pub amount_usd: Usd,
}

impl TopupRequest {
    /// The fields whose invalid values are answered 422 (a value the server cannot use)
    /// rather than 400 (a body of the wrong shape).
    pub const VALUE_FIELDS: &'static [&'static str] = &["amount_usd"];
}

/// A checkout for a person to pay. The API never charges anyone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "checkout_url": "https://checkout.stripe.com/c/pay/cs_test_…", "session_id": "cs_test_a1B2c3",
    "amount_usd": "5.00", "expires_at": "2026-12-01T00:00:00Z", "payment_id": 12})))]
pub struct Checkout {
    /// Hand this URL to a person; agents must never open or pay it themselves.
    pub checkout_url: String,
    /// The payment provider's id of the checkout session.
    pub session_id: String,
    pub amount_usd: Usd,
    /// After this time the checkout page no longer accepts payment (null: the provider
    /// did not say).
    pub expires_at: Option<Timestamp>,
    /// The payment's id (`GET /me/billing/payments`).
    pub payment_id: i64,
}

/// A top-up payment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 12, "provider": "stripe",
    "session_id": "cs_test_a1B2c3", "amount_usd": "5.00", "currency": "USD", "status": "paid",
    "checkout_url": null, "expires_at": "2026-12-01T00:00:00Z",
    "created_at": "2026-11-30T00:00:00Z", "paid_at": "2026-11-30T00:01:12Z",
    "receipt_url": "/api/v1/me/billing/payments/12/receipt.pdf"})))]
pub struct PaymentView {
    pub id: i64,
    /// `stripe`.
    pub provider: String,
    pub session_id: String,
    pub amount_usd: Usd,
    /// `USD`.
    pub currency: String,
    pub status: PaymentStatus,
    /// The checkout page, only while pending.
    pub checkout_url: Option<String>,
    /// After this time the checkout page no longer accepts payment.
    pub expires_at: Option<Timestamp>,
    pub created_at: Timestamp,
    pub paid_at: Option<Timestamp>,
    /// The receipt PDF, once paid.
    pub receipt_url: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Statements

/// The query of the statement routes (JSON, CSV, PDF).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct MonthQuery {
    /// `YYYY-MM` (UTC); default: this month.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(example = "2026-11"))]
    pub month: Option<String>,
}

/// A monthly statement (UTC calendar month). Every `…_usd` is exact and has an `…_nano`
/// twin; closing − opening = top-ups + adjustments − usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({
    "account": {"id": 2, "email": "ada@example.com", "display_name": "Ada"},
    "month": "2026-11", "period_start": "2026-11-01T00:00:00Z", "period_end": "2026-12-01T00:00:00Z",
    "currency": "USD",
    "opening_balance_usd": "0.00", "opening_balance_nano": 0,
    "topups_usd": "5.00", "topups_nano": 5_000_000_000i64,
    "adjustments_usd": "0.00", "adjustments_nano": 0,
    "usage_usd": "0.00015", "usage_nano": 150_000, "usage_requests": 3,
    "usage_ledger_nano": -150_000,
    "net_change_usd": "4.99985", "net_change_nano": 4_999_850_000i64,
    "closing_balance_usd": "4.99985", "closing_balance_nano": 4_999_850_000i64,
    "reconciled": true,
    "credits": [{"kind": "topup", "amount_usd": "5.00", "amount_nano": 5_000_000_000i64,
        "reference": "stripe:cs_test_a1B2c3", "note": null, "created_at": "2026-11-04T10:00:00Z"}],
    "usage_by_model": [{"model": "mock/fast-1", "requests": 3, "tokens_in": 300, "tokens_out": 90,
        "cost_usd": "0.00015", "cost_nano": 150_000}]})))]
pub struct StatementView {
    pub account: StatementAccount,
    /// `YYYY-MM`.
    pub month: String,
    /// The first instant of the month.
    pub period_start: Timestamp,
    /// The first instant of the next month.
    pub period_end: Timestamp,
    /// `USD`.
    pub currency: String,
    pub opening_balance_usd: Usd,
    pub opening_balance_nano: i64,
    pub topups_usd: Usd,
    pub topups_nano: i64,
    /// Adjustments, refunds, disputes and promotional credit.
    pub adjustments_usd: Usd,
    pub adjustments_nano: i64,
    /// Σ request costs of the month (positive).
    pub usage_usd: Usd,
    pub usage_nano: i64,
    pub usage_requests: i64,
    /// The month's usage ledger entries (equal to −usage when reconciled).
    pub usage_ledger_nano: i64,
    pub net_change_usd: Usd,
    pub net_change_nano: i64,
    pub closing_balance_usd: Usd,
    pub closing_balance_nano: i64,
    /// Whether the usage ledger entries equal the requests' costs.
    pub reconciled: bool,
    /// Top-ups, adjustments, refunds, disputes and promotional credit, oldest first.
    pub credits: Vec<StatementCredit>,
    /// Usage by the model that served it.
    pub usage_by_model: Vec<UsageByModel>,
}

/// Whose statement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementAccount {
    pub id: i64,
    pub email: String,
    pub display_name: String,
}

/// A credit or debit other than usage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatementCredit {
    /// `topup`, `adjustment`, `refund`, `promo` or `dispute` (a refund or dispute of a
    /// card payment is negative).
    pub kind: EntryKind,
    pub amount_usd: Usd,
    pub amount_nano: i64,
    /// The payment it comes from (`stripe:cs_…`), when there is one.
    pub reference: Option<String>,
    /// The operator's reason, for adjustments and promotional credit.
    pub note: Option<String>,
    pub created_at: Timestamp,
}

// ---------------------------------------------------------------------------------------
// Request logs

/// The query of the request-log routes (the JSON listing and the CSV export). An empty
/// value (`key_id=`) is the same as none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct LogQuery {
    /// From this time: RFC 3339, `YYYY-MM-DD` (UTC) or unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(example = "2026-11-01"))]
    pub from: Option<String>,
    /// Until this time; a date includes that whole day.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Only this key's requests.
    #[serde(
        default,
        deserialize_with = "blank_or_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_id: Option<i64>,
    /// The model or alias asked for, or the model that served it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    /// An HTTP status (`429`), a class (`4xx`), or `error` for every non-2xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(example = "error"))]
    pub status: Option<String>,
    /// Page size, 1 to 500 (default 50). Not used by the CSV export.
    #[serde(
        default,
        deserialize_with = "blank_or_integer",
        skip_serializing_if = "Option::is_none"
    )]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 500))]
    pub limit: Option<i64>,
    /// `next_before` of the previous page. Not used by the CSV export.
    #[serde(
        default,
        deserialize_with = "blank_or_integer",
        skip_serializing_if = "Option::is_none"
    )]
    pub before: Option<i64>,
    /// CSV export only: start after this request (an `x-request-id` of an earlier
    /// export's last row), to resume an interrupted download; without the header row.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
}

impl LogQuery {
    /// The fields whose invalid values are answered 422 rather than 400: all of them.
    pub const VALUE_FIELDS: &'static [&'static str] = &[
        "from", "to", "key_id", "model", "status", "limit", "before", "after",
    ];
}

/// An optional integer given as a number or as text (a query string has only text); an
/// empty or absent value is none, anything else that is no integer is refused.
fn blank_or_integer<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<i64>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an integer")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Option<i64>, E> {
            let t = v.trim();
            if t.is_empty() {
                return Ok(None);
            }
            t.parse()
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Str(v), &self))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Option<i64>, E> {
            Ok(Some(v))
        }
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Option<i64>, E> {
            i64::try_from(v)
                .map(Some)
                .map_err(|_| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
        }
        fn visit_none<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_unit<E: serde::de::Error>(self) -> Result<Option<i64>, E> {
            Ok(None)
        }
        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Option<i64>, D2::Error> {
            d.deserialize_any(V)
        }
    }
    d.deserialize_any(V)
}

/// A page of the request log, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"data": [{"id": 981,
    "request_id": "req_9f2c", "created_at": "2026-11-04T10:00:00.25Z", "key_id": 7,
    "key_name": "fieryeye", "endpoint": "/v1/chat/completions", "model": "tokengate-fast",
    "served_model": "mock/fast-1", "provider": "mock", "stream": false, "status": 200,
    "error_type": null, "error_message": null, "tokens_in": 100, "tokens_out": 30,
    "cached_tokens": 0, "cost_usd": "0.00005", "cost_nano": 50_000, "latency_ms": 182,
    "ttfb_ms": null, "attempts": 1, "attempts_detail": null}], "next_before": null})))]
pub struct RequestLogPage {
    pub data: Vec<RequestLog>,
    /// Pass as `before` for the next page; null on the last page.
    pub next_before: Option<i64>,
}

/// One request as tokengate recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"id": 982, "request_id": "req_a71d",
    "created_at": "2026-11-04T10:00:03Z", "key_id": 7, "key_name": "fieryeye",
    "endpoint": "/v1/chat/completions", "model": "tokengate-fast", "served_model": "mock/fast-1",
    "provider": "mock", "stream": true, "status": 200, "error_type": null, "error_message": null,
    "tokens_in": 120, "tokens_out": 40, "cached_tokens": 0, "cost_usd": "0.00006",
    "cost_nano": 60_000, "latency_ms": 1540, "ttfb_ms": 210, "attempts": 2,
    "attempts_detail": [
        {"latency_ms": 1200, "model": "openai/gpt-4o-mini", "outcome": 503, "provider": "openai"},
        {"latency_ms": 340, "model": "mock/fast-1", "outcome": 200, "provider": "mock"}]})))]
pub struct RequestLog {
    /// Log id (the paging cursor).
    pub id: i64,
    /// The `x-request-id` of the answer.
    pub request_id: String,
    pub created_at: Timestamp,
    pub key_id: i64,
    /// The key's name; null when the key is gone.
    pub key_name: Option<String>,
    /// `/v1/chat/completions`, `/v1/messages` or `/v1/embeddings`.
    pub endpoint: String,
    /// The model or alias asked for.
    pub model: String,
    /// The model that served it.
    pub served_model: Option<String>,
    pub provider: Option<String>,
    pub stream: bool,
    /// HTTP status of the answer.
    pub status: i64,
    /// Why it failed, when it did.
    pub error_type: Option<FailureKind>,
    pub error_message: Option<String>,
    pub tokens_in: i64,
    pub tokens_out: i64,
    pub cached_tokens: i64,
    /// Exact cost.
    pub cost_usd: Usd,
    pub cost_nano: i64,
    pub latency_ms: i64,
    /// Time to the first byte of a streamed answer.
    pub ttfb_ms: Option<i64>,
    /// Upstream attempts (fallback makes more than one).
    pub attempts: i64,
    /// Each upstream attempt (provider, model, outcome, latency) when they say more than
    /// the row (fallbacks, skips, failures); null otherwise.
    pub attempts_detail: Option<Vec<UpstreamAttempt>>,
}

// ---------------------------------------------------------------------------------------
// Payment webhook

/// A webhook delivery's outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"received": true, "event": "evt_1Q2w3E",
    "result": "credited"})))]
pub struct WebhookAck {
    /// `true`.
    pub received: bool,
    /// The provider's event id.
    pub event: String,
    pub result: WebhookResult,
}

/// What a webhook delivery did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum WebhookResult {
    /// A top-up was credited.
    Credited,
    /// A refund was debited.
    Refunded,
    /// A dispute (chargeback) was debited.
    Disputed,
    /// This event was applied before.
    Duplicate,
    /// The payment was credited by an earlier event.
    AlreadyPaid,
    /// The payment's state changed (failed, expired); no money moved.
    Updated,
    /// Not a payment of this server: nothing credited.
    UnknownPayment,
    /// The event's account, amount or currency differs from the stored payment: nothing
    /// credited.
    Mismatch,
    /// Nothing to change.
    Unchanged,
    /// An event type tokengate does not act on.
    Ignored,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payment_round_trips_with_exact_money_and_rfc3339_times() {
        let v = json!({"id": 12, "provider": "stripe", "session_id": "cs_1",
            "amount_usd": "12.50", "currency": "USD", "status": "pending",
            "checkout_url": "https://checkout.example/cs_1", "expires_at": "2026-12-01T00:00:00Z",
            "created_at": "2026-11-30T00:00:00.125Z", "paid_at": null, "receipt_url": null});
        let p: PaymentView = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(p.amount_usd, Usd(12_500_000_000));
        assert_eq!(p.status, PaymentStatus::Pending);
        assert_eq!(p.expires_at, Some(Timestamp(1_796_083_200_000)));
        assert_eq!(serde_json::to_value(&p).unwrap(), v);
        // A status that is no payment status is refused.
        let mut bad = v;
        bad["status"] = json!("refunded");
        assert!(serde_json::from_value::<PaymentView>(bad).is_err());
    }

    #[test]
    fn topup_amount_reads_strings_and_numbers() {
        let t: TopupRequest = serde_json::from_value(json!({"amount_usd": "5.0"})).unwrap();
        assert_eq!(t.amount_usd, Usd(5_000_000_000));
        let t: TopupRequest = serde_json::from_value(json!({"amount_usd": 12.5})).unwrap();
        assert_eq!(t.amount_usd, Usd(12_500_000_000));
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            json!({"amount_usd": "12.50"})
        );
        for bad in [
            json!({}),
            json!({"amount_usd": "abc"}),
            json!({"amount_usd": null}),
        ] {
            assert!(
                serde_json::from_value::<TopupRequest>(bad.clone()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn log_query_integers_are_integers_and_blanks_are_none() {
        let q: LogQuery = serde_json::from_value(json!({"key_id": "7", "limit": 20,
            "before": "", "status": "4xx"}))
        .unwrap();
        assert_eq!((q.key_id, q.limit, q.before), (Some(7), Some(20), None));
        assert_eq!(q.status.as_deref(), Some("4xx"));
        let q: LogQuery = serde_json::from_value(json!({"key_id": null})).unwrap();
        assert_eq!(q, LogQuery::default());
        for bad in [
            json!({"key_id": "x"}),
            json!({"limit": "1.5"}),
            json!({"before": 1.5}),
            json!({"limit": u64::MAX}),
        ] {
            assert!(
                serde_json::from_value::<LogQuery>(bad.clone()).is_err(),
                "{bad}"
            );
        }
        // Written back without the absent fields.
        let q = LogQuery {
            key_id: Some(7),
            ..Default::default()
        };
        assert_eq!(serde_json::to_value(&q).unwrap(), json!({"key_id": 7}));
    }

    #[test]
    fn request_log_reads_typed_failures_and_attempts() {
        let v = json!({"id": 3, "request_id": "req_1", "created_at": "2026-11-04T10:00:00Z",
            "key_id": 7, "key_name": null, "endpoint": "/v1/chat/completions", "model": "m",
            "served_model": null, "provider": null, "stream": false, "status": 503,
            "error_type": "upstream_error", "error_message": "no upstream could answer",
            "tokens_in": 0, "tokens_out": 0, "cached_tokens": 0, "cost_usd": "0.00",
            "cost_nano": 0, "latency_ms": 10, "ttfb_ms": null, "attempts": 1,
            "attempts_detail": [{"latency_ms": 9, "model": "openai/x", "outcome": "skipped: circuit open",
                "provider": "openai"}]});
        let r: RequestLog = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(r.error_type, Some(FailureKind::UpstreamError));
        assert_eq!(r.attempts_detail.as_ref().map(Vec::len), Some(1));
        assert_eq!(serde_json::to_value(&r).unwrap(), v);
    }

    #[test]
    fn webhook_results_are_the_documented_words() {
        let words: Vec<String> = [
            WebhookResult::Credited,
            WebhookResult::Refunded,
            WebhookResult::Disputed,
            WebhookResult::Duplicate,
            WebhookResult::AlreadyPaid,
            WebhookResult::Updated,
            WebhookResult::UnknownPayment,
            WebhookResult::Mismatch,
            WebhookResult::Unchanged,
            WebhookResult::Ignored,
        ]
        .iter()
        .map(|r| {
            serde_json::to_value(r)
                .unwrap()
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
        assert_eq!(
            words,
            [
                "credited",
                "refunded",
                "disputed",
                "duplicate",
                "already_paid",
                "updated",
                "unknown_payment",
                "mismatch",
                "unchanged",
                "ignored"
            ]
        );
    }
}
