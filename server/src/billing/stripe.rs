//! Stripe: Checkout Sessions for top-ups (through async-stripe, against a configurable
//! API base), `Stripe-Signature` verification of webhook deliveries (HMAC-SHA-256 over
//! `timestamp.body`, any `v1` signature, five-minute tolerance), and what each event means:
//! Checkout Session events settle a top-up, `charge.refunded` and `charge.dispute.created`
//! take money back.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;
use stripe_checkout::CheckoutSessionMode;
use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionLineItemsPriceData,
    ProductData,
};
use tokengate_core::money::NANOS_PER_USD;
use tokengate_core::payments::Outcome;

use super::{Checkout, CheckoutRequest, Event, PaymentProvider, ProviderError, WebhookError};
use crate::config::StripeConfig;

/// How far a signature's timestamp may be from now.
pub const TOLERANCE_SECS: i64 = 300;

/// Nano-USD per cent.
const NANOS_PER_CENT: i64 = NANOS_PER_USD / 100;

/// Longest id, type or code taken from an event (Stripe's are far shorter): a longer one,
/// or one with control characters, makes the event malformed instead of being stored.
const MAX_FIELD: usize = 255;

/// `v` as a non-empty string of at most [`MAX_FIELD`] bytes without control characters.
fn field(v: &Value) -> Option<&str> {
    v.as_str()
        .filter(|s| !s.is_empty() && s.len() <= MAX_FIELD && !s.chars().any(char::is_control))
}

/// Stripe Checkout.
pub struct Stripe {
    client: stripe::Client,
    webhook_secret: String,
}

impl Stripe {
    pub fn new(cfg: &StripeConfig) -> Result<Stripe, String> {
        let client = stripe::ClientBuilder::new(cfg.secret_key.expose())
            .url(cfg.api_base.clone())
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| format!("stripe client: {e}"))?;
        Ok(Stripe {
            client,
            webhook_secret: cfg.webhook_secret.expose().to_string(),
        })
    }
}

#[async_trait]
impl PaymentProvider for Stripe {
    fn name(&self) -> &'static str {
        "stripe"
    }

    async fn create_checkout(&self, req: &CheckoutRequest) -> Result<Checkout, ProviderError> {
        if req.amount_nano % NANOS_PER_CENT != 0 {
            return Err(ProviderError::Invalid(
                "amount_usd must be a whole number of cents".into(),
            ));
        }
        let cents = req.amount_nano / NANOS_PER_CENT;
        let mut price = CreateCheckoutSessionLineItemsPriceData::new(stripe_types::Currency::USD);
        price.unit_amount = Some(cents);
        price.product_data = Some(ProductData::new("tokengate credit"));
        let item = CreateCheckoutSessionLineItems {
            price_data: Some(price),
            quantity: Some(1),
            ..CreateCheckoutSessionLineItems::new()
        };
        let user = req.user_id.to_string();
        let metadata = HashMap::from([("user_id".to_string(), user.clone())]);
        let session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .currency(stripe_types::Currency::USD)
            .line_items(vec![item])
            .client_reference_id(user)
            .metadata(metadata)
            .customer_email(req.email.clone())
            .success_url(req.success_url.clone())
            .cancel_url(req.cancel_url.clone())
            .send(&self.client)
            .await
            .map_err(|e| ProviderError::Upstream(e.to_string()))?;
        let url = session
            .url
            .ok_or_else(|| ProviderError::Upstream("checkout session has no url".into()))?;
        Ok(Checkout {
            session_id: session.id.to_string(),
            url,
            expires_at: Some(session.expires_at),
        })
    }

    fn parse_webhook(&self, headers: &HeaderMap, body: &[u8]) -> Result<Event, WebhookError> {
        let header = headers
            .get("stripe-signature")
            .and_then(|v| v.to_str().ok())
            .ok_or(WebhookError::MissingSignature)?;
        verify(header, body, &self.webhook_secret, unix_now())?;
        interpret(body)
    }
}

fn unix_now() -> i64 {
    tokengate_core::now_ms() / 1000
}

/// Checks a `Stripe-Signature` header (`t=…,v1=…[,v1=…]`) against `body`.
pub fn verify(header: &str, body: &[u8], secret: &str, now: i64) -> Result<(), WebhookError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<i64>().ok(),
            Some(("v1", s)) => {
                if let Ok(bytes) = hex::decode(s) {
                    signatures.push(bytes);
                }
            }
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(WebhookError::BadSignature)?;
    if signatures.is_empty() {
        return Err(WebhookError::BadSignature);
    }
    let matches = signatures.iter().any(|sig| {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
            return false;
        };
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac.verify_slice(sig).is_ok()
    });
    if !matches {
        return Err(WebhookError::BadSignature);
    }
    if (now - timestamp).abs() > TOLERANCE_SECS {
        return Err(WebhookError::Stale);
    }
    Ok(())
}

/// Reads the event id, type and what it means for a top-up payment.
pub fn interpret(body: &[u8]) -> Result<Event, WebhookError> {
    let v: Value = serde_json::from_slice(body)
        .map_err(|e| WebhookError::Malformed(format!("not JSON: {e}")))?;
    let id = field(&v["id"])
        .ok_or_else(|| WebhookError::Malformed("no valid event id".into()))?
        .to_string();
    let kind = field(&v["type"])
        .ok_or_else(|| WebhookError::Malformed("no valid event type".into()))?
        .to_string();
    let obj = &v["data"]["object"];
    let session_id = || -> Result<String, WebhookError> {
        field(&obj["id"])
            .map(str::to_string)
            .ok_or_else(|| WebhookError::Malformed("no checkout session id".into()))
    };
    let string = |v: &Value| field(v).map(str::to_string);
    // An id field may also arrive expanded into its object.
    let id_of = |v: &Value| string(v).or_else(|| string(&v["id"]));
    let currency = string(&obj["currency"]).map(|c| c.to_ascii_lowercase());
    let cents_to_nano = |field: &str| -> Result<i64, WebhookError> {
        obj[field]
            .as_i64()
            .filter(|c| *c >= 0)
            .and_then(|c| c.checked_mul(NANOS_PER_CENT))
            .ok_or_else(|| WebhookError::Malformed(format!("no valid {field}")))
    };
    let outcome = match kind.as_str() {
        "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
            if obj["payment_status"].as_str() != Some("paid") {
                // Completed but not yet paid (delayed methods): the async event follows.
                None
            } else {
                let user_id = obj["client_reference_id"]
                    .as_str()
                    .or_else(|| obj["metadata"]["user_id"].as_str())
                    .and_then(|s| s.parse().ok());
                let amount_nano = obj["amount_total"]
                    .as_i64()
                    .and_then(|c| c.checked_mul(NANOS_PER_CENT))
                    .filter(|a| *a > 0);
                Some(Outcome::Paid {
                    session_id: session_id()?,
                    user_id,
                    amount_nano,
                    currency,
                    payment_intent: id_of(&obj["payment_intent"]),
                })
            }
        }
        "checkout.session.async_payment_failed" => Some(Outcome::Failed {
            session_id: session_id()?,
        }),
        "checkout.session.expired" => Some(Outcome::Expired {
            session_id: session_id()?,
        }),
        // The object is the Charge; `amount_refunded` is everything refunded so far.
        "charge.refunded" => Some(Outcome::Refunded {
            charge_id: string(&obj["id"])
                .ok_or_else(|| WebhookError::Malformed("no charge id".into()))?,
            payment_intent: id_of(&obj["payment_intent"]),
            refunded_nano: cents_to_nano("amount_refunded")?,
            currency,
        }),
        // The object is the Dispute.
        "charge.dispute.created" => Some(Outcome::Disputed {
            dispute_id: string(&obj["id"])
                .ok_or_else(|| WebhookError::Malformed("no dispute id".into()))?,
            payment_intent: id_of(&obj["payment_intent"]),
            amount_nano: cents_to_nano("amount")?,
            currency,
            reason: string(&obj["reason"]),
        }),
        _ => None,
    };
    Ok(Event { id, kind, outcome })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_or_control_ids_are_malformed() {
        let long = "e".repeat(MAX_FIELD + 1);
        for bad in [
            serde_json::json!({"id": long, "type": "charge.refunded"}),
            serde_json::json!({"id": "evt_\u{0}x", "type": "charge.refunded"}),
            serde_json::json!({"id": "evt_1", "type": long}),
            serde_json::json!({"id": "evt_1", "type": "checkout.session.expired",
                "data": {"object": {"id": "cs_\n1"}}}),
        ] {
            let body = serde_json::to_vec(&bad).unwrap();
            assert!(
                matches!(interpret(&body), Err(WebhookError::Malformed(_))),
                "{bad}"
            );
        }
        let ok = serde_json::json!({"id": "e".repeat(MAX_FIELD), "type": "x.y"});
        assert!(interpret(&serde_json::to_vec(&ok).unwrap()).is_ok());
    }

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(format!("{t}.").as_bytes());
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    }

    #[test]
    fn signatures_verify_within_tolerance_only() {
        let body = br#"{"id":"evt_1"}"#;
        let t = 1_700_000_000;
        let good = format!("t={t},v1={}", sign("whsec_x", t, body));
        assert!(verify(&good, body, "whsec_x", t + 299).is_ok());
        assert!(matches!(
            verify(&good, body, "whsec_x", t + 301),
            Err(WebhookError::Stale)
        ));
        assert!(matches!(
            verify(&good, body, "whsec_other", t),
            Err(WebhookError::BadSignature)
        ));
        assert!(matches!(
            verify(&good, br#"{"id":"evt_2"}"#, "whsec_x", t),
            Err(WebhookError::BadSignature)
        ));
        // Any of several v1 signatures (secret rotation) may match; v0 is ignored.
        let rotated = format!(
            "t={t},v1={},v1={},v0=abc",
            sign("old", t, body),
            sign("whsec_x", t, body)
        );
        assert!(verify(&rotated, body, "whsec_x", t).is_ok());
        for bad in [
            "",
            "t=1",
            "v1=00",
            "garbage",
            &format!("t=x,v1={}", sign("whsec_x", t, body)),
        ] {
            assert!(verify(bad, body, "whsec_x", t).is_err(), "{bad}");
        }
    }

    #[test]
    fn events_are_interpreted() {
        let paid = br#"{"id":"evt_1","type":"checkout.session.completed","data":{"object":
            {"id":"cs_1","payment_status":"paid","currency":"USD","amount_total":500,
             "client_reference_id":"7","metadata":{"user_id":"7"},"payment_intent":"pi_1"}}}"#;
        let e = interpret(paid).unwrap();
        assert_eq!(
            e.outcome,
            Some(Outcome::Paid {
                session_id: "cs_1".into(),
                user_id: Some(7),
                amount_nano: Some(5 * NANOS_PER_USD),
                currency: Some("usd".into()),
                payment_intent: Some("pi_1".into()),
            })
        );
        // Another currency is read as such (the stored payment decides), not refused here.
        let eur = br#"{"id":"evt_1e","type":"checkout.session.completed","data":{"object":
            {"id":"cs_1","payment_status":"paid","currency":"eur","amount_total":500,
             "payment_intent":{"id":"pi_2","object":"payment_intent"}}}}"#;
        assert!(matches!(
            interpret(eur).unwrap().outcome,
            Some(Outcome::Paid { currency: Some(c), payment_intent: Some(pi), user_id: None, .. })
                if c == "eur" && pi == "pi_2"
        ));
        let unpaid = br#"{"id":"evt_2","type":"checkout.session.completed","data":{"object":
            {"id":"cs_1","payment_status":"unpaid"}}}"#;
        assert_eq!(interpret(unpaid).unwrap().outcome, None);
        let expired =
            br#"{"id":"evt_3","type":"checkout.session.expired","data":{"object":{"id":"cs_1"}}}"#;
        assert_eq!(
            interpret(expired).unwrap().outcome,
            Some(Outcome::Expired {
                session_id: "cs_1".into()
            })
        );
        let other = br#"{"id":"evt_4","type":"customer.created","data":{"object":{"id":"cus_1"}}}"#;
        assert_eq!(interpret(other).unwrap().outcome, None);
        let refunded = br#"{"id":"evt_5","type":"charge.refunded","data":{"object":
            {"id":"ch_1","object":"charge","amount":1000,"amount_refunded":300,
             "currency":"usd","payment_intent":"pi_1","refunded":false}}}"#;
        assert_eq!(
            interpret(refunded).unwrap().outcome,
            Some(Outcome::Refunded {
                charge_id: "ch_1".into(),
                payment_intent: Some("pi_1".into()),
                refunded_nano: 3 * NANOS_PER_USD,
                currency: Some("usd".into()),
            })
        );
        let disputed = br#"{"id":"evt_6","type":"charge.dispute.created","data":{"object":
            {"id":"dp_1","object":"dispute","amount":1000,"charge":"ch_1","currency":"usd",
             "payment_intent":"pi_1","reason":"fraudulent","status":"needs_response"}}}"#;
        assert_eq!(
            interpret(disputed).unwrap().outcome,
            Some(Outcome::Disputed {
                dispute_id: "dp_1".into(),
                payment_intent: Some("pi_1".into()),
                amount_nano: 10 * NANOS_PER_USD,
                currency: Some("usd".into()),
                reason: Some("fraudulent".into()),
            })
        );
        // Money events without their amounts are malformed (400, Stripe retries).
        for bad in [
            &br#"{"id":"e","type":"charge.refunded","data":{"object":{"id":"ch_1"}}}"#[..],
            br#"{"id":"e","type":"charge.refunded","data":{"object":{"id":"ch_1","amount_refunded":-1}}}"#,
            br#"{"id":"e","type":"charge.dispute.created","data":{"object":{"amount":5}}}"#,
        ] {
            assert!(interpret(bad).is_err());
        }
        assert!(interpret(b"nope").is_err());
        assert!(interpret(br#"{"type":"x"}"#).is_err());
    }
}
