//! Read-only facts `tokengate-server doctor` and the admin health page check: recent
//! payment-webhook activity. Nothing here writes.

use crate::{Db, Error, now_ms};

/// Checkouts created and webhook events received for one payment provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WebhookActivity {
    /// Checkout sessions created within the window.
    pub checkouts: i64,
    /// Unix milliseconds of the newest processed webhook event, ever.
    pub last_event_ms: Option<i64>,
}

/// The activity of `provider` (e.g. `stripe`) over the last `window_ms`.
pub async fn webhook_activity(
    db: &Db,
    provider: &str,
    window_ms: i64,
) -> Result<WebhookActivity, Error> {
    let since = now_ms() - window_ms;
    let checkouts: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM payments WHERE provider = $1 AND created_at >= $2",
    )
    .bind(provider)
    .bind(since)
    .fetch_one(db.pool())
    .await?;
    let last_event_ms: Option<i64> =
        sqlx::query_scalar("SELECT MAX(received_at) FROM webhook_events WHERE provider = $1")
            .bind(provider)
            .fetch_one(db.pool())
            .await?;
    Ok(WebhookActivity {
        checkouts,
        last_event_ms,
    })
}
