//! Payments and billing documents: the payment-provider trait (Stripe Checkout is the one
//! implementation), the provider registry, and the CSV and PDF renderings of statements,
//! receipts and request logs.

pub mod csv;
pub mod pdf;
pub mod stripe;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use axum::http::HeaderMap;
use tokengate_core::payments::Outcome;

/// A checkout to create for a top-up.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    pub user_id: i64,
    pub email: String,
    pub amount_nano: i64,
    pub success_url: String,
    pub cancel_url: String,
}

/// A checkout the provider created: where the person pays.
#[derive(Debug, Clone)]
pub struct Checkout {
    pub session_id: String,
    pub url: String,
    /// Unix seconds.
    pub expires_at: Option<i64>,
}

/// A verified webhook event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: String,
    pub kind: String,
    /// `None` for event types that change nothing.
    pub outcome: Option<Outcome>,
}

/// Why a webhook delivery was rejected (400, nothing changed).
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("missing signature header")]
    MissingSignature,
    #[error("signature does not match")]
    BadSignature,
    #[error("signature timestamp outside the tolerance")]
    Stale,
    #[error("malformed event: {0}")]
    Malformed(String),
}

/// Why creating a checkout failed.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The amount or currency cannot be charged; safe to show.
    #[error("{0}")]
    Invalid(String),
    /// The provider could not be reached or refused; details are logged, not shown.
    #[error("payment provider error: {0}")]
    Upstream(String),
}

/// A payment provider: creates checkouts and verifies and interprets its webhooks.
#[async_trait]
pub trait PaymentProvider: Send + Sync {
    /// The `{payment_provider}` path segment of its webhook and the `provider` column.
    fn name(&self) -> &'static str;
    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<Checkout, ProviderError>;
    /// Verifies a delivery on its raw body and interprets it.
    fn parse_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Event, WebhookError>;
}

/// The configured payment providers by name; the first is the one top-ups use.
#[derive(Clone, Default)]
pub struct Payments {
    providers: HashMap<&'static str, Arc<dyn PaymentProvider>>,
    default: Option<Arc<dyn PaymentProvider>>,
}

impl Payments {
    pub fn new(providers: Vec<Arc<dyn PaymentProvider>>) -> Payments {
        let default = providers.first().cloned();
        Payments {
            providers: providers.into_iter().map(|p| (p.name(), p)).collect(),
            default,
        }
    }

    /// The provider top-ups go through, if any is configured.
    pub fn checkout_provider(&self) -> Option<&Arc<dyn PaymentProvider>> {
        self.default.as_ref()
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn PaymentProvider>> {
        self.providers.get(name)
    }
}
