//! Accounts and their money: users, roles, status, balances, and the ledger that every
//! balance change goes through (balance = Σ ledger entries, checked by [`verify_ledger`]).

use serde::Serialize;

pub use tokengate_api::kinds::{EntryKind, Role, UserStatus};

use crate::{Db, Error, now_ms};

/// A user account.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct User {
    pub id: i64,
    pub email: String,
    pub display_name: String,
    #[sqlx(try_from = "String")]
    pub role: Role,
    #[sqlx(try_from = "String")]
    pub status: UserStatus,
    pub balance_nano: i64,
    pub created_at: i64,
    /// Bumped by "sign out everywhere"; sessions and access tokens carry the epoch they
    /// were issued under.
    #[serde(skip)]
    pub auth_epoch: i64,
}

const USER_COLUMNS: &str =
    "id, email, display_name, role, status, balance_nano, created_at, auth_epoch";

/// A user with the password hash stored for them (sign-in reads both at once).
#[derive(sqlx::FromRow)]
struct UserCredentials {
    #[sqlx(flatten)]
    user: User,
    password_hash: Option<String>,
}

/// Creates a user; email uniqueness is case-insensitive.
pub async fn create_user(
    db: &Db,
    email: &str,
    display_name: &str,
    password_hash: Option<&str>,
    role: Role,
) -> Result<User, Error> {
    let email = email.trim();
    if !email.contains('@') || email.len() > 254 {
        return Err(Error::Invalid("a valid email address is required".into()));
    }
    let now = now_ms();
    let user = sqlx::query_as::<_, User>(&format!(
        "INSERT INTO users (email, email_lower, display_name, password_hash, role, status, \
         balance_nano, created_at, updated_at) VALUES ($1, $2, $3, $4, $5, 'active', 0, $6, $6) \
         ON CONFLICT (email_lower) DO NOTHING RETURNING {USER_COLUMNS}"
    ))
    .bind(email)
    .bind(email.to_lowercase())
    .bind(display_name)
    .bind(password_hash)
    .bind(role.as_str())
    .bind(now)
    .fetch_optional(db.pool())
    .await?;
    match user {
        Some(user) => Ok(user),
        None => Err(Error::Conflict(
            "an account with this email already exists".into(),
        )),
    }
}

/// One user by id.
pub async fn get_user(db: &Db, id: i64) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .ok_or(Error::NotFound)
}

/// The user with `email` (case-insensitive).
pub async fn get_user_by_email(db: &Db, email: &str) -> Result<User, Error> {
    sqlx::query_as::<_, User>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email_lower = $1"
    ))
    .bind(email.trim().to_lowercase())
    .fetch_optional(db.pool())
    .await?
    .ok_or(Error::NotFound)
}

/// The password hash of the user with `email`, with the user (for sign-in).
pub async fn credentials(db: &Db, email: &str) -> Result<Option<(User, Option<String>)>, Error> {
    Ok(sqlx::query_as::<_, UserCredentials>(&format!(
        "SELECT {USER_COLUMNS}, password_hash FROM users WHERE email_lower = $1"
    ))
    .bind(email.trim().to_lowercase())
    .fetch_optional(db.pool())
    .await?
    .map(|c| (c.user, c.password_hash)))
}

/// Every user's id, status and balance, for the gateway's in-memory account table.
pub async fn all_balances(db: &Db) -> Result<Vec<(i64, UserStatus, i64)>, Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        #[sqlx(try_from = "String")]
        status: UserStatus,
        balance_nano: i64,
    }
    let rows = sqlx::query_as::<_, Row>("SELECT id, status, balance_nano FROM users")
        .fetch_all(db.pool())
        .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.status, r.balance_nano))
        .collect())
}

/// `(id, status, balance_nano)` of the accounts whose change number (status, role or
/// sign-out epoch changed, see [`crate::changes`]) is above `version`; all for `-1`.
pub async fn changed_after(db: &Db, version: i64) -> Result<Vec<(i64, UserStatus, i64)>, Error> {
    #[derive(sqlx::FromRow)]
    struct Row {
        id: i64,
        #[sqlx(try_from = "String")]
        status: UserStatus,
        balance_nano: i64,
    }
    let rows =
        sqlx::query_as::<_, Row>("SELECT id, status, balance_nano FROM users WHERE version > $1")
            .bind(version)
            .fetch_all(db.pool())
            .await?;
    Ok(rows
        .into_iter()
        .map(|r| (r.id, r.status, r.balance_nano))
        .collect())
}

/// One balance change: who, what kind, how much, why, and by whom.
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub user_id: i64,
    pub kind: EntryKind,
    pub amount_nano: i64,
    pub reference: Option<&'a str>,
    pub note: Option<&'a str>,
    /// The admin who made the change, for adjustments, refunds and promotional credit.
    pub created_by: Option<i64>,
    /// Refuse a debit that would leave the balance negative.
    pub refuse_negative: bool,
}

/// Applies one balance change and its ledger entry in one transaction; returns the new
/// balance and the entry's id.
pub async fn apply_entry(db: &Db, entry: Entry<'_>) -> Result<(i64, i64), Error> {
    let mut tx = db.pool().begin().await?;
    let applied = apply_entry_in(&mut tx, entry).await?;
    tx.commit().await?;
    Ok(applied)
}

/// [`apply_entry`] inside a caller's transaction; returns the new balance and the entry
/// id. On [`Error::InsufficientBalance`] or [`Error::NotFound`] the caller must roll back.
pub(crate) async fn apply_entry_in(
    conn: &mut sqlx::AnyConnection,
    e: Entry<'_>,
) -> Result<(i64, i64), Error> {
    let now = now_ms();
    let balance: i64 = sqlx::query_scalar(
        "UPDATE users SET balance_nano = balance_nano + $1, updated_at = $3 WHERE id = $2 \
         RETURNING balance_nano",
    )
    .bind(e.amount_nano)
    .bind(e.user_id)
    .bind(now)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or(Error::NotFound)?;
    if balance < 0 && e.refuse_negative && e.amount_nano < 0 {
        return Err(Error::InsufficientBalance);
    }
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO ledger_entries (user_id, kind, amount_nano, balance_after, reference, note, \
         created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
    )
    .bind(e.user_id)
    .bind(e.kind.as_str())
    .bind(e.amount_nano)
    .bind(balance)
    .bind(e.reference)
    .bind(e.note)
    .bind(e.created_by)
    .bind(now)
    .fetch_one(&mut *conn)
    .await?;
    Ok((balance, id))
}

/// A ledger entry as stored.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerEntry {
    pub id: i64,
    pub user_id: i64,
    #[sqlx(try_from = "String")]
    pub kind: EntryKind,
    pub amount_nano: i64,
    pub balance_after: i64,
    pub reference: Option<String>,
    pub note: Option<String>,
    pub created_by: Option<i64>,
    pub created_at: i64,
}

pub(crate) const LEDGER_COLUMNS: &str =
    "id, user_id, kind, amount_nano, balance_after, reference, note, created_by, created_at";

/// A user's ledger entries, newest first (at most `limit`, before entry id `before`).
pub async fn ledger_entries(
    db: &Db,
    user_id: i64,
    before: Option<i64>,
    limit: i64,
) -> Result<Vec<LedgerEntry>, Error> {
    Ok(sqlx::query_as::<_, LedgerEntry>(&format!(
        "SELECT {LEDGER_COLUMNS} FROM ledger_entries WHERE user_id = $1 AND id < $2 \
         ORDER BY id DESC LIMIT $3"
    ))
    .bind(user_id)
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit.clamp(1, 1000))
    .fetch_all(db.pool())
    .await?)
}

/// An account whose stored balance differs from the sum of its ledger entries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerMismatch {
    pub user_id: i64,
    pub balance_nano: i64,
    pub ledger_sum_nano: i64,
}

/// Checks balance = Σ ledger for one account (or all when `user_id` is `None`).
pub async fn verify_ledger(db: &Db, user_id: Option<i64>) -> Result<Vec<LedgerMismatch>, Error> {
    let base = "SELECT u.id AS user_id, u.balance_nano AS balance_nano, \
         CAST(COALESCE((SELECT SUM(l.amount_nano) FROM ledger_entries l WHERE l.user_id = u.id), 0) \
         AS BIGINT) AS ledger_sum_nano FROM users u";
    let rows = match user_id {
        Some(id) => {
            sqlx::query_as::<_, LedgerMismatch>(&format!("{base} WHERE u.id = $1"))
                .bind(id)
                .fetch_all(db.pool())
                .await?
        }
        None => sqlx::query_as(base).fetch_all(db.pool()).await?,
    };
    Ok(rows
        .into_iter()
        .filter(|r| r.balance_nano != r.ledger_sum_nano)
        .collect())
}

/// Sets a user's status; returns the updated user.
pub async fn set_status(db: &Db, user_id: i64, status: UserStatus) -> Result<User, Error> {
    let n = sqlx::query("UPDATE users SET status = $1, updated_at = $2 WHERE id = $3")
        .bind(status.as_str())
        .bind(now_ms())
        .bind(user_id)
        .execute(db.pool())
        .await?
        .rows_affected();
    if n == 0 {
        return Err(Error::NotFound);
    }
    get_user(db, user_id).await
}

/// The user linked to an OpenID Connect identity (issuer, subject), if any.
pub async fn user_by_identity(db: &Db, issuer: &str, subject: &str) -> Result<Option<User>, Error> {
    Ok(sqlx::query_as::<_, User>(&format!(
        "SELECT {} FROM users u JOIN oidc_identities i ON i.user_id = u.id \
         WHERE i.issuer = $1 AND i.subject = $2",
        USER_COLUMNS
            .split(", ")
            .map(|c| format!("u.{c}"))
            .collect::<Vec<_>>()
            .join(", ")
    ))
    .bind(issuer)
    .bind(subject)
    .fetch_optional(db.pool())
    .await?)
}

/// Links an OpenID Connect identity to a user (idempotent for the same user).
pub async fn link_identity(
    db: &Db,
    user_id: i64,
    issuer: &str,
    subject: &str,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO oidc_identities (user_id, issuer, subject, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (issuer, subject) DO NOTHING",
    )
    .bind(user_id)
    .bind(issuer)
    .bind(subject)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Users whose email or display name contains `query` (case-insensitive), newest first.
pub async fn search_users(db: &Db, query: &str, limit: i64) -> Result<Vec<User>, Error> {
    let pattern = format!(
        "%{}%",
        query
            .to_lowercase()
            .replace('\\', "\\\\")
            .replace('%', "\\%")
            .replace('_', "\\_")
    );
    Ok(sqlx::query_as::<_, User>(&format!(
        "SELECT {USER_COLUMNS} FROM users WHERE email_lower LIKE $1 ESCAPE '\\' \
         OR LOWER(display_name) LIKE $1 ESCAPE '\\' ORDER BY id DESC LIMIT $2"
    ))
    .bind(pattern)
    .bind(limit.clamp(1, 500))
    .fetch_all(db.pool())
    .await?)
}

/// Changes a user's display name.
pub async fn set_display_name(db: &Db, user_id: i64, name: &str) -> Result<(), Error> {
    let r = sqlx::query("UPDATE users SET display_name = $1, updated_at = $2 WHERE id = $3")
        .bind(name)
        .bind(now_ms())
        .bind(user_id)
        .execute(db.pool())
        .await?;
    if r.rows_affected() == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}
