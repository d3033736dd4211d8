//! Top-up payments: the pending checkout sessions the API creates, and the webhook events
//! that settle them. A payment credits the ledger exactly once, and only a session this
//! server created, for the account, amount and currency it was created with: the event id
//! is recorded and the payment row moves to `paid` in the same transaction as its ledger
//! entry, so repeated, concurrent or reordered deliveries of any event change nothing the
//! second time. Refunds and disputes of a paid top-up (found by its payment intent) debit
//! the account — only what is newly refunded, once per dispute, never more than was paid,
//! even below zero.

use serde::Serialize;

pub use tokengate_api::kinds::PaymentStatus;

use crate::accounts::{self, EntryKind};
use crate::money::format_balance;
use crate::{Db, Error, now_ms};

/// A top-up payment.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct Payment {
    pub id: i64,
    pub user_id: i64,
    pub provider: String,
    pub session_id: String,
    pub amount_nano: i64,
    pub currency: String,
    #[sqlx(try_from = "String")]
    pub status: PaymentStatus,
    pub checkout_url: Option<String>,
    /// Unix seconds after which the checkout page no longer accepts payment.
    pub expires_at: Option<i64>,
    pub ledger_entry_id: Option<i64>,
    pub created_at: i64,
    pub paid_at: Option<i64>,
    /// The provider's id of the payment (Stripe PaymentIntent), once paid.
    pub payment_intent: Option<String>,
    /// How much of it went back to the payer (refunds), in nano-USD.
    pub refunded_nano: i64,
    /// How much of it the payer disputed (chargebacks), in nano-USD.
    pub disputed_nano: i64,
}

const COLUMNS: &str = "id, user_id, provider, session_id, amount_nano, currency, status, \
     checkout_url, expires_at, ledger_entry_id, created_at, paid_at, payment_intent, refunded_nano, \
     disputed_nano";

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
    Ok(sqlx::query_as(&format!(
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
    .await?)
}

/// A user's payments, newest first.
pub async fn list_for_user(db: &Db, user_id: i64) -> Result<Vec<Payment>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE user_id = $1 ORDER BY id DESC LIMIT 500"
    ))
    .bind(user_id)
    .fetch_all(db.pool())
    .await?)
}

/// One of a user's payments.
pub async fn get_for_user(db: &Db, user_id: i64, id: i64) -> Result<Payment, Error> {
    sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM payments WHERE id = $1 AND user_id = $2"
    ))
    .bind(id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?
    .ok_or(Error::NotFound)
}

/// What a verified webhook event means for a payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The money arrived: credit the account (once), if the session is one this server
    /// created and the event agrees with it.
    Paid {
        session_id: String,
        /// The account the session was created for, as the provider echoes it back; must
        /// equal the account of the stored payment.
        user_id: Option<i64>,
        /// The amount the provider says was paid, in nano-USD; must equal the stored one.
        amount_nano: Option<i64>,
        /// Lower-case ISO code; must equal the stored one.
        currency: Option<String>,
        /// The provider's id of the payment behind the session (Stripe PaymentIntent);
        /// refunds and disputes name it.
        payment_intent: Option<String>,
    },
    /// The payment failed; the session may not be paid.
    Failed { session_id: String },
    /// The checkout session expired unpaid.
    Expired { session_id: String },
    /// Money of a paid top-up went back to the payer (in full or in part).
    Refunded {
        charge_id: String,
        payment_intent: Option<String>,
        /// Everything refunded of the charge so far (cumulative), in nano-USD.
        refunded_nano: i64,
        currency: Option<String>,
    },
    /// The payer disputed a paid top-up with their bank (a chargeback).
    Disputed {
        dispute_id: String,
        payment_intent: Option<String>,
        /// The disputed amount, in nano-USD.
        amount_nano: i64,
        currency: Option<String>,
        /// The provider's reason code (`fraudulent`, `duplicate`, …), if any.
        reason: Option<String>,
    },
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
    /// The account was debited for a refund or a dispute; the new balance (may be
    /// negative).
    Debited {
        user_id: i64,
        kind: EntryKind,
        amount_nano: i64,
        balance_nano: i64,
    },
    /// The event id was seen before; nothing changed.
    DuplicateEvent,
    /// The session was already paid (through another event); nothing changed.
    AlreadyPaid,
    /// The session's status changed (failed/expired).
    Marked,
    /// The event names no payment this server created; nothing changed (logged).
    UnknownPayment,
    /// The event disagrees with the stored payment (account, amount or currency);
    /// nothing changed (logged).
    Mismatch,
    /// Nothing to change: a final state already reached, or nothing new refunded or
    /// disputed.
    Unchanged,
}

/// A stored payment as the webhook sees it, read under a row lock.
#[derive(sqlx::FromRow)]
struct Locked {
    id: i64,
    user_id: i64,
    session_id: String,
    amount_nano: i64,
    currency: String,
    #[sqlx(try_from = "String")]
    status: PaymentStatus,
    refunded_nano: i64,
    disputed_nano: i64,
}

/// Reads a payment by `column = value` while taking its row lock (a no-op UPDATE), so
/// concurrent events for one payment apply one after the other and see each other's
/// changes. SQLite already serialises writers: the event insert took the write lock.
async fn lock_payment(
    conn: &mut sqlx::AnyConnection,
    provider: &str,
    column: &str,
    value: &str,
    now: i64,
) -> Result<Option<Locked>, Error> {
    Ok(sqlx::query_as(&format!(
        "UPDATE payments SET updated_at = $1 WHERE id = (SELECT MIN(id) FROM payments \
         WHERE provider = $2 AND {column} = $3) \
         RETURNING id, user_id, session_id, amount_nano, currency, status, refunded_nano, \
         disputed_nano"
    ))
    .bind(now)
    .bind(provider)
    .bind(value)
    .fetch_optional(&mut *conn)
    .await?)
}

/// The payment a refund or dispute names through its payment intent, if it is a paid
/// top-up of this server.
async fn lock_paid_by_intent(
    conn: &mut sqlx::AnyConnection,
    provider: &str,
    payment_intent: Option<&str>,
    event_type: &str,
    now: i64,
) -> Result<Option<Locked>, Error> {
    let found = match payment_intent.filter(|p| !p.is_empty()) {
        Some(pi) => lock_payment(conn, provider, "payment_intent", pi, now).await?,
        None => None,
    };
    match found {
        Some(p) if p.status == PaymentStatus::Paid => Ok(Some(p)),
        _ => {
            tracing::warn!(
                provider,
                event_type,
                payment_intent,
                "event for a charge of no paid top-up of this server; nothing debited"
            );
            Ok(None)
        }
    }
}

/// The paid top-up a refund or dispute (`reference`, in `currency`) reverses, locked:
/// `Err(UnknownPayment)` when it names none of this server's, `Err(Mismatch)` when its
/// currency is not the payment's. Both are logged.
async fn lock_reversed(
    conn: &mut sqlx::AnyConnection,
    provider: &str,
    payment_intent: Option<&str>,
    currency: Option<&str>,
    reference: &str,
    event_type: &str,
    now: i64,
) -> Result<Result<Locked, Applied>, Error> {
    let Some(p) = lock_paid_by_intent(conn, provider, payment_intent, event_type, now).await?
    else {
        return Ok(Err(Applied::UnknownPayment));
    };
    if !currency.is_some_and(|c| c.eq_ignore_ascii_case(&p.currency)) {
        tracing::error!(provider, event_type, reference, currency = ?currency, stored = %p.currency,
            "reversal in another currency than the payment; nothing debited");
        return Ok(Err(Applied::Mismatch));
    }
    Ok(Ok(p))
}

/// Whether `event` (from the provider) agrees with `stored`; logs the disagreement.
fn agrees(
    provider: &str,
    p: &Locked,
    user_id: Option<i64>,
    amount_nano: Option<i64>,
    currency: Option<&str>,
) -> bool {
    let currency_ok = currency.is_some_and(|c| c.eq_ignore_ascii_case(&p.currency));
    if user_id == Some(p.user_id) && amount_nano == Some(p.amount_nano) && currency_ok {
        return true;
    }
    tracing::error!(
        provider,
        session_id = %p.session_id,
        stored_user_id = p.user_id,
        event_user_id = ?user_id,
        stored_amount_nano = p.amount_nano,
        event_amount_nano = ?amount_nano,
        stored_currency = %p.currency,
        event_currency = ?currency,
        "paid event disagrees with the checkout session this server created; nothing credited \
         (check the payment in the provider's dashboard)"
    );
    false
}

/// Debits a refund or dispute of payment `p` inside the event's transaction.
async fn debit(
    conn: &mut sqlx::AnyConnection,
    p: &Locked,
    kind: EntryKind,
    amount_nano: i64,
    reference: &str,
    note: &str,
) -> Result<Applied, Error> {
    let (balance, _) = accounts::apply_entry_in(
        conn,
        accounts::Entry {
            user_id: p.user_id,
            kind,
            amount_nano: -amount_nano,
            reference: Some(reference),
            note: Some(note),
            created_by: None,
            // The money is gone from the operator's account whatever the balance says.
            refuse_negative: false,
        },
    )
    .await?;
    Ok(Applied::Debited {
        user_id: p.user_id,
        kind,
        amount_nano,
        balance_nano: balance,
    })
}

/// Applies one verified event in one transaction, idempotently on the event id, on the
/// session id (one credit per payment), on the cumulative refunded amount (each refund
/// event debits only what is newly refunded) and on the dispute id. Refunds and disputes
/// together never debit more than the payment credited.
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
            currency,
            payment_intent,
        } => match lock_payment(&mut tx, provider, "session_id", session_id, now).await? {
            None => {
                tracing::warn!(
                    provider,
                    session_id,
                    event_id,
                    "paid event for a checkout session this server did not create; nothing \
                     credited"
                );
                Applied::UnknownPayment
            }
            Some(p) if !agrees(provider, &p, *user_id, *amount_nano, currency.as_deref()) => {
                Applied::Mismatch
            }
            Some(p) => {
                // Remember the payment intent (also for payments credited before it was
                // stored), so refunds and disputes find the payment.
                if let Some(pi) = payment_intent.as_deref().filter(|s| !s.is_empty()) {
                    sqlx::query(
                        "UPDATE payments SET payment_intent = $1 WHERE id = $2 \
                         AND payment_intent IS NULL",
                    )
                    .bind(pi)
                    .bind(p.id)
                    .execute(&mut *tx)
                    .await?;
                }
                if p.status == PaymentStatus::Paid {
                    Applied::AlreadyPaid
                } else {
                    let reference = format!("{provider}:{session_id}");
                    let (balance, entry_id) = accounts::apply_entry_in(
                        &mut tx,
                        accounts::Entry {
                            user_id: p.user_id,
                            kind: EntryKind::Topup,
                            amount_nano: p.amount_nano,
                            reference: Some(&reference),
                            note: Some("top-up"),
                            created_by: None,
                            refuse_negative: false,
                        },
                    )
                    .await?;
                    sqlx::query(
                        "UPDATE payments SET status = 'paid', paid_at = $1, ledger_entry_id = $2 \
                         WHERE id = $3",
                    )
                    .bind(now)
                    .bind(entry_id)
                    .bind(p.id)
                    .execute(&mut *tx)
                    .await?;
                    Applied::Credited {
                        user_id: p.user_id,
                        amount_nano: p.amount_nano,
                        balance_nano: balance,
                    }
                }
            }
        },
        Outcome::Failed { session_id } | Outcome::Expired { session_id } => {
            let status = if matches!(outcome, Outcome::Failed { .. }) {
                PaymentStatus::Failed
            } else {
                PaymentStatus::Expired
            };
            // Only a pending session changes: a paid one stays paid whatever arrives later.
            let r = sqlx::query(
                "UPDATE payments SET status = $1, updated_at = $2 \
                 WHERE provider = $3 AND session_id = $4 AND status = 'pending'",
            )
            .bind(status.as_str())
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
        Outcome::Refunded {
            charge_id,
            payment_intent,
            refunded_nano,
            currency,
        } => {
            match lock_reversed(
                &mut tx,
                provider,
                payment_intent.as_deref(),
                currency.as_deref(),
                charge_id,
                event_type,
                now,
            )
            .await?
            {
                Err(applied) => applied,
                Ok(p) => {
                    // Stripe reports the charge's cumulative refunded amount: debit what is
                    // new since the last refund applied, within what is left of the payment.
                    let left = p.amount_nano - p.refunded_nano - p.disputed_nano;
                    let delta = (*refunded_nano).min(p.amount_nano) - p.refunded_nano;
                    let delta = delta.min(left);
                    if delta <= 0 {
                        Applied::Unchanged
                    } else {
                        sqlx::query(
                            "UPDATE payments SET refunded_nano = refunded_nano + $1 WHERE id = $2",
                        )
                        .bind(delta)
                        .bind(p.id)
                        .execute(&mut *tx)
                        .await?;
                        let note = format!(
                            "Refund to the payer of the {} USD top-up {provider}:{}",
                            format_balance(p.amount_nano),
                            p.session_id
                        );
                        let reference = format!("{provider}:{charge_id}");
                        debit(&mut tx, &p, EntryKind::Refund, delta, &reference, &note).await?
                    }
                }
            }
        }
        Outcome::Disputed {
            dispute_id,
            payment_intent,
            amount_nano,
            currency,
            reason,
        } => {
            let reference = format!("{provider}:{dispute_id}");
            match lock_reversed(
                &mut tx,
                provider,
                payment_intent.as_deref(),
                currency.as_deref(),
                dispute_id,
                event_type,
                now,
            )
            .await?
            {
                Err(applied) => applied,
                Ok(p) => {
                    let debited_before = sqlx::query(
                        "SELECT 1 AS one FROM ledger_entries WHERE user_id = $1 AND kind = $2 \
                         AND reference = $3",
                    )
                    .bind(p.user_id)
                    .bind(EntryKind::Dispute.as_str())
                    .bind(&reference)
                    .fetch_optional(&mut *tx)
                    .await?;
                    let left = p.amount_nano - p.refunded_nano - p.disputed_nano;
                    let amount = (*amount_nano).min(left);
                    if debited_before.is_some() || amount <= 0 {
                        Applied::Unchanged
                    } else {
                        sqlx::query(
                            "UPDATE payments SET disputed_nano = disputed_nano + $1 WHERE id = $2",
                        )
                        .bind(amount)
                        .bind(p.id)
                        .execute(&mut *tx)
                        .await?;
                        let mut note = format!(
                            "Dispute (chargeback) by the payer of the {} USD top-up {provider}:{}",
                            format_balance(p.amount_nano),
                            p.session_id
                        );
                        if let Some(r) =
                            reason.as_deref().map(reason_text).filter(|r| !r.is_empty())
                        {
                            note.push_str(&format!(", reason: {r}"));
                        }
                        debit(&mut tx, &p, EntryKind::Dispute, amount, &reference, &note).await?
                    }
                }
            }
        }
    };
    tx.commit().await?;
    Ok(applied)
}

/// A provider's reason code as note text: lower-case letters and underscores as spaces,
/// at most 40 characters.
fn reason_text(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(40)
        .map(|c| if c == '_' { ' ' } else { c })
        .collect()
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
