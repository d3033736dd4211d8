//! Billing operations of an operator on one account: a credit or debit (adjustment,
//! refund, promotional credit) with its mandatory reason, written to the ledger with the
//! operator's id as one transaction. The admin API calls [`credit`]; so can any other
//! caller (a CLI task, a support tool) that needs the same rules.

use crate::accounts::{self, EntryKind, LedgerEntry};
use crate::{Db, Error};

/// The longest reason kept with a credit, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// One operator credit (positive) or debit (negative).
#[derive(Debug, Clone, Copy)]
pub struct Credit<'a> {
    pub user_id: i64,
    /// Nano-USD; not zero.
    pub amount_nano: i64,
    /// `Adjustment`, `Refund` or `Promo` (see [`credit_kind`]).
    pub kind: EntryKind,
    /// Why; required (surrounding blanks are dropped), up to [`MAX_REASON_CHARS`].
    pub memo: &'a str,
    /// The operator's user id; kept as `created_by` and in the reference `admin:<id>`.
    pub actor: i64,
    /// Let a debit leave the balance below zero.
    pub allow_negative: bool,
}

impl<'a> Credit<'a> {
    /// Checks the credit without writing anything; returns the reason as it will be
    /// kept (trimmed). [`credit`] checks the same, so calling this first is optional.
    pub fn check(&self) -> Result<&'a str, Error> {
        if self.amount_nano == 0 {
            return Err(Error::Invalid("amount_usd must not be zero".into()));
        }
        if !matches!(
            self.kind,
            EntryKind::Adjustment | EntryKind::Refund | EntryKind::Promo
        ) {
            return Err(Error::Invalid(format!(
                "kind must be adjustment, refund or promo, not {:?}",
                self.kind.as_str()
            )));
        }
        let memo = self.memo.trim();
        if memo.is_empty() {
            return Err(Error::Invalid("reason is required".into()));
        }
        if memo.chars().count() > MAX_REASON_CHARS {
            return Err(Error::Invalid(format!(
                "reason must be at most {MAX_REASON_CHARS} characters"
            )));
        }
        Ok(memo)
    }
}

/// Reads the kind of an operator credit: `adjustment` (the default), `refund` or `promo`
/// (also `promotional`). Top-ups, usage and disputes are not an operator's to write.
pub fn credit_kind(kind: Option<&str>) -> Result<EntryKind, Error> {
    match kind.unwrap_or("adjustment") {
        "adjustment" => Ok(EntryKind::Adjustment),
        "refund" => Ok(EntryKind::Refund),
        "promo" | "promotional" => Ok(EntryKind::Promo),
        other => Err(Error::Invalid(format!(
            "kind must be adjustment, refund or promo, not {other:?}"
        ))),
    }
}

/// Applies an operator credit or debit and returns its ledger entry. Refused with
/// [`Error::Invalid`] for a zero amount, a kind an operator may not write, or a missing or
/// overlong reason; with [`Error::NotFound`] for an unknown account; with
/// [`Error::InsufficientBalance`] for a debit below zero unless `allow_negative`. Nothing
/// is written when it is refused.
pub async fn credit(db: &Db, c: Credit<'_>) -> Result<LedgerEntry, Error> {
    let memo = c.check()?;
    let reference = format!("admin:{}", c.actor);
    let mut tx = db.pool().begin().await?;
    let (_, id) = accounts::apply_entry_in(
        &mut tx,
        accounts::Entry {
            user_id: c.user_id,
            kind: c.kind,
            amount_nano: c.amount_nano,
            reference: Some(&reference),
            note: Some(memo),
            created_by: Some(c.actor),
            refuse_negative: !c.allow_negative,
        },
    )
    .await?;
    let entry = sqlx::query_as::<_, LedgerEntry>(&format!(
        "SELECT {} FROM ledger_entries WHERE id = $1",
        accounts::LEDGER_COLUMNS
    ))
    .bind(id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::Role;

    async fn db_with_user(balance_nano: i64) -> (Db, i64, i64) {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let path = std::env::temp_dir().join(format!(
            "tokengate-billing-{}-{nanos}.db",
            std::process::id()
        ));
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        let admin = accounts::create_user(&db, "ops@example.com", "Ops", None, Role::Admin)
            .await
            .unwrap();
        let user = accounts::create_user(&db, "u@example.com", "U", None, Role::User)
            .await
            .unwrap();
        if balance_nano != 0 {
            accounts::apply_entry(
                &db,
                accounts::Entry {
                    user_id: user.id,
                    kind: EntryKind::Topup,
                    amount_nano: balance_nano,
                    reference: None,
                    note: None,
                    created_by: None,
                    refuse_negative: false,
                },
            )
            .await
            .unwrap();
        }
        (db, admin.id, user.id)
    }

    fn credit_of(user_id: i64, actor: i64, amount_nano: i64, memo: &str) -> Credit<'_> {
        Credit {
            user_id,
            amount_nano,
            kind: EntryKind::Adjustment,
            memo,
            actor,
            allow_negative: false,
        }
    }

    #[test]
    fn kinds_an_operator_may_write() {
        assert_eq!(credit_kind(None).unwrap(), EntryKind::Adjustment);
        assert_eq!(credit_kind(Some("refund")).unwrap(), EntryKind::Refund);
        assert_eq!(credit_kind(Some("promotional")).unwrap(), EntryKind::Promo);
        for bad in ["gift", "topup", "usage", "dispute", ""] {
            assert!(
                matches!(credit_kind(Some(bad)), Err(Error::Invalid(_))),
                "{bad}"
            );
        }
    }

    #[tokio::test]
    async fn a_credit_is_one_ledger_entry_with_actor_and_reason() {
        let (db, admin, user) = db_with_user(0).await;
        let e = credit(&db, credit_of(user, admin, 2_500_000_001, "  goodwill  "))
            .await
            .unwrap();
        assert_eq!(
            (e.user_id, e.kind, e.amount_nano, e.balance_after),
            (user, EntryKind::Adjustment, 2_500_000_001, 2_500_000_001)
        );
        assert_eq!(e.note.as_deref(), Some("goodwill"));
        assert_eq!(e.created_by, Some(admin));
        assert_eq!(e.reference, Some(format!("admin:{admin}")));
        let listed = accounts::ledger_entries(&db, user, None, 10).await.unwrap();
        assert_eq!(listed, vec![e]);
        assert!(accounts::verify_ledger(&db, None).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn refusals_write_nothing() {
        let (db, admin, user) = db_with_user(1_000_000_000).await;
        let long = "x".repeat(MAX_REASON_CHARS + 1);
        for (c, invalid) in [
            (credit_of(user, admin, 0, "zero"), true),
            (credit_of(user, admin, 1, "   "), true),
            (credit_of(user, admin, 1, &long), true),
            (
                Credit {
                    kind: EntryKind::Topup,
                    ..credit_of(user, admin, 1, "not an operator's")
                },
                true,
            ),
            (credit_of(user, admin, -2_000_000_000, "below zero"), false),
        ] {
            let err = credit(&db, c).await.unwrap_err();
            match invalid {
                true => assert!(matches!(err, Error::Invalid(_)), "{err:?}"),
                false => assert!(matches!(err, Error::InsufficientBalance), "{err:?}"),
            }
        }
        assert!(matches!(
            credit(&db, credit_of(999_999, admin, 1, "nobody")).await,
            Err(Error::NotFound)
        ));
        assert_eq!(
            accounts::ledger_entries(&db, user, None, 10)
                .await
                .unwrap()
                .len(),
            1
        );
        let forced = credit(
            &db,
            Credit {
                allow_negative: true,
                ..credit_of(user, admin, -2_000_000_000, "chargeback")
            },
        )
        .await
        .unwrap();
        assert_eq!(forced.balance_after, -1_000_000_000);
    }
}
