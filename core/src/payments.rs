//! Top-up payments: the pending checkout sessions the API creates, and the webhook events
//! that settle them. A payment credits the ledger exactly once: the event id is recorded
//! and the payment row moves to `paid` in the same transaction as its ledger entry, so
//! repeated, concurrent or reordered deliveries of any event change nothing the second
//! time.

use serde::Serialize;
use sqlx::Row;

use crate::accounts::{self, EntryKind};
use crate::{Db, Error, now_ms};

/// A top-up payment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Payment {
    pub id: i64,
    pub user_id: i64,
    pub provider: String,
    pub session_id: String,
    pub amount_nano: i64,
    pub currency: String,
    /// `pending`, `paid`, `failed` or `expired`.
    pub status: String,
    pub checkout_url: Option<String>,
    /// Unix seconds after which the checkout page no longer accepts payment.
    pub expires_at: Option<i64>,
    pub ledger_entry_id: Option<i64>,
    pub created_at: i64,
    pub paid_at: Option<i64>,
}

const COLUMNS: &str = "id, user_id, provider, session_id, amount_nano, currency, status, \
     checkout_url, expires_at, ledger_entry_id, created_at, paid_at";

fn from_row(r: &sqlx::any::AnyRow) -> Result<Payment, Error> {
    Ok(Payment {
        id: r.try_get("id")?,
        user_id: r.try_get("user_id")?,
        provider: r.try_get("provider")?,
        session_id: r.try_get("session_id")?,
        amount_nano: r.try_get("amount_nano")?,
        currency: r.try_get("currency")?,
        status: r.try_get("status")?,
        checkout_url: r.try_get("checkout_url")?,
        expires_at: r.try_get("expires_at")?,
        ledger_entry_id: r.try_get("ledger_entry_id")?,
        created_at: r.try_get("created_at")?,
        paid_at: r.try_get("paid_at")?,
    })
}

/// A checkout session the payment provider created for a top-up.
#[derive(Debug, Clone)]
pub struct NewPayment<'a> {
    pub user_id: i64,
    pub provider: &'a str,
    pub session_id: &'a str,
    pub amount_nano: i64,
    pub checkout_url: &'a str,
    pub expires_at: Option<i64>,
}

/// Records a pending payment.
pub async fn create_pending(db: &Db, p: &NewPayment<'_>) -> Result<Payment, Error> {
    let now = now_ms();
    let row = sqlx::query(&format!(
        "INSERT INTO payments (user_id, provider, session_id, amount_nano, currency, status, \
         checkout_url, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'usd', 'pending', $5, $6, $7, $7) RETURNING {COLUMNS}"
    ))
    .bind(p.user_id)
    .bind(p.provider)
    .bind(p.session_id)
    .bind(p.amount_nano)
    .bind(p.checkout_url)
    .bind(p.expires_at)
    .bind(now)
    .fetch_one(db.pool())
    .await?;
    from_row(&row)
}

/// A user's payments, newest first.
pub async fn list_for_user(db: &Db, user_id: i64) -> Result<Vec<Payment>, Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE user_id = $1 ORDER BY id DESC LIMIT 500"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// One of a user's payments.
pub async fn get_for_user(db: &Db, user_id: i64, id: i64) -> Result<Payment, Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM payments WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref()
        .map(from_row)
        .transpose()?
        .ok_or(Error::NotFound)
}

/// What a verified webhook event means for a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The money arrived: credit the account (once).
    Paid {
        session_id: String,
        /// The account the session was created for, as the provider echoes it back; used
        /// only when no pending row exists for the session.
        user_id: Option<i64>,
        /// The amount the provider says was paid, in nano-USD.
        amount_nano: Option<i64>,
    },
    /// The payment failed; the session may not be paid.
    Failed { session_id: String },
    /// The checkout session expired unpaid.
    Expired { session_id: String },
}

/// What processing an event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The account was credited; the new balance.
    Credited {
        user_id: i64,
        amount_nano: i64,
        balance_nano: i64,
    },
    /// The event id was seen before; nothing changed.
    DuplicateEvent,
    /// The session was already paid (through another event); nothing changed.
    AlreadyPaid,
    /// The session's status changed (failed/expired).
    Marked,
    /// Nothing to change: unknown session, or a final state already reached.
    Unchanged,
}

/// Applies one verified event in one transaction, idempotently on the event id and on
/// the session id.
pub async fn apply_event(
    db: &Db,
    provider: &str,
    event_id: &str,
    event_type: &str,
    outcome: &Outcome,
) -> Result<Applied, Error> {
    let now = now_ms();
    let mut tx = db.pool().begin().await?;
    let seen = sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, event_type, received_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(event_id)
    .bind(event_type)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    if seen.rows_affected() == 0 {
        tx.rollback().await?;
        return Ok(Applied::DuplicateEvent);
    }
    let applied = match outcome {
        Outcome::Paid {
            session_id,
            user_id,
            amount_nano,
        } => {
            if let (Some(user_id), Some(amount)) = (user_id, amount_nano) {
                // A session we have no row for (created elsewhere, or its row was lost):
                // the signed event is the record.
                sqlx::query(
                    "INSERT INTO payments (user_id, provider, session_id, amount_nano, currency, \
                     status, created_at, updated_at) \
                     SELECT $1, $2, $3, $4, 'usd', 'pending', $5, $5 \
                     WHERE EXISTS (SELECT 1 FROM users WHERE id = $1) \
                     ON CONFLICT DO NOTHING",
                )
                .bind(user_id)
                .bind(provider)
                .bind(session_id)
                .bind(amount)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            }
            let row = sqlx::query(
                "UPDATE payments SET status = 'paid', paid_at = $1, updated_at = $1 \
                 WHERE provider = $2 AND session_id = $3 AND status <> 'paid' \
                 RETURNING id, user_id, amount_nano",
            )
            .bind(now)
            .bind(provider)
            .bind(session_id)
            .fetch_optional(&mut *tx)
            .await?;
            match row {
                None => {
                    let exists = sqlx::query(
                        "SELECT 1 AS one FROM payments WHERE provider = $1 AND session_id = $2",
                    )
                    .bind(provider)
                    .bind(session_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                    if exists.is_some() {
                        Applied::AlreadyPaid
                    } else {
                        tracing::warn!(
                            provider,
                            session_id,
                            "paid event for an unknown checkout session; nothing credited"
                        );
                        Applied::Unchanged
                    }
                }
                Some(row) => {
                    let id: i64 = row.try_get("id")?;
                    let user_id: i64 = row.try_get("user_id")?;
                    let recorded: i64 = row.try_get("amount_nano")?;
                    // What was actually paid is what is credited.
                    let amount = amount_nano.unwrap_or(recorded);
                    if amount != recorded {
                        tracing::warn!(
                            provider,
                            session_id,
                            recorded,
                            paid = amount,
                            "paid amount differs from the amount the session was created for"
                        );
                    }
                    let reference = format!("{provider}:{session_id}");
                    let (balance, entry_id) = accounts::apply_entry_in(
                        &mut tx,
                        accounts::Entry {
                            user_id,
                            kind: EntryKind::Topup,
                            amount_nano: amount,
                            reference: Some(&reference),
                            note: Some("top-up"),
                            created_by: None,
                            refuse_negative: false,
                        },
                    )
                    .await?;
                    sqlx::query(
                        "UPDATE payments SET ledger_entry_id = $1, amount_nano = $2 WHERE id = $3",
                    )
                    .bind(entry_id)
                    .bind(amount)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                    Applied::Credited {
                        user_id,
                        amount_nano: amount,
                        balance_nano: balance,
                    }
                }
            }
        }
        Outcome::Failed { session_id } | Outcome::Expired { session_id } => {
            let status = if matches!(outcome, Outcome::Failed { .. }) {
                "failed"
            } else {
                "expired"
            };
            // Only a pending session changes: a paid one stays paid whatever arrives later.
            let r = sqlx::query(
                "UPDATE payments SET status = $1, updated_at = $2 \
                 WHERE provider = $3 AND session_id = $4 AND status = 'pending'",
            )
            .bind(status)
            .bind(now)
            .bind(provider)
            .bind(session_id)
            .execute(&mut *tx)
            .await?;
            if r.rows_affected() > 0 {
                Applied::Marked
            } else {
                Applied::Unchanged
            }
        }
    };
    tx.commit().await?;
    Ok(applied)
}

/// Records an event that needs no processing, so that its replays are recognised too.
pub async fn record_ignored(
    db: &Db,
    provider: &str,
    event_id: &str,
    event_type: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO webhook_events (provider, event_id, event_type, received_at) \
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(provider)
    .bind(event_id)
    .bind(event_type)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}
