//! Persistence for sign-in and client authorization: portal sessions (the store behind the
//! session layer), device-flow grants (RFC 8628), refresh-token families, attempt counts
//! for throttling, email verification (whether an account's address is proven, and the
//! outstanding verification links), and the per-user auth epoch that "sign out
//! everywhere" bumps. Secrets (device codes, refresh tokens, verification tokens) arrive
//! here already hashed.

pub use tokengate_api::kinds::{GrantStatus, RefreshStatus};

use crate::{Db, Error, now_ms};

// ----- sessions -------------------------------------------------------------------------

/// A stored session.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct SessionRow {
    pub user_id: Option<i64>,
    pub data: String,
    pub created_at: i64,
    pub expires_at: i64,
}

/// Inserts or replaces a session.
pub async fn save_session(db: &Db, id: &str, row: &SessionRow) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO sessions (id, user_id, data, created_at, expires_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO UPDATE SET user_id = excluded.user_id, data = excluded.data, \
         expires_at = excluded.expires_at",
    )
    .bind(id)
    .bind(row.user_id)
    .bind(&row.data)
    .bind(row.created_at)
    .bind(row.expires_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Whether a session id is taken (for collision-free creation).
pub async fn session_exists(db: &Db, id: &str) -> Result<bool, Error> {
    Ok(sqlx::query("SELECT 1 FROM sessions WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?
        .is_some())
}

/// An unexpired session.
pub async fn load_session(db: &Db, id: &str) -> Result<Option<SessionRow>, Error> {
    Ok(sqlx::query_as(
        "SELECT user_id, data, created_at, expires_at FROM sessions WHERE id = $1 AND expires_at > $2",
    )
    .bind(id)
    .bind(now_ms())
    .fetch_optional(db.pool())
    .await?)
}

pub async fn delete_session(db: &Db, id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM sessions WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// A user's live sessions: (id, created_at, expires_at), newest first.
pub async fn user_sessions(db: &Db, user_id: i64) -> Result<Vec<(String, i64, i64)>, Error> {
    Ok(sqlx::query_as(
        "SELECT id, created_at, expires_at FROM sessions WHERE user_id = $1 AND expires_at > $2 \
         ORDER BY created_at DESC",
    )
    .bind(user_id)
    .bind(now_ms())
    .fetch_all(db.pool())
    .await?)
}

/// Signs a user out everywhere: deletes their sessions, revokes their refresh tokens,
/// cancels device grants they approved that were not yet collected, and bumps their auth
/// epoch so access tokens already issued stop working. One transaction.
pub async fn sign_out_everywhere(db: &Db, user_id: i64) -> Result<(), Error> {
    let mut tx = db.pool().begin().await?;
    sqlx::query("DELETE FROM sessions WHERE user_id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query(
        "UPDATE refresh_tokens SET status = 'revoked' WHERE user_id = $1 AND status <> 'revoked'",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    // A device approved but not yet collected must not yield tokens afterwards.
    sqlx::query(
        "UPDATE device_grants SET status = 'denied' WHERE user_id = $1 AND status = 'approved'",
    )
    .bind(user_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE users SET auth_epoch = auth_epoch + 1, updated_at = $2 WHERE id = $1")
        .bind(user_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes expired sessions, device grants expired for over a day and sign-in failures
/// older than a day (all past any window that reads them); returns rows removed.
pub async fn purge_expired(db: &Db) -> Result<u64, Error> {
    let now = now_ms();
    let a = sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    let b = sqlx::query("DELETE FROM device_grants WHERE expires_at <= $1")
        .bind(now - 86_400_000)
        .execute(db.pool())
        .await?
        .rows_affected();
    let c = sqlx::query("DELETE FROM signin_failures WHERE created_at <= $1")
        .bind(now - 86_400_000)
        .execute(db.pool())
        .await?
        .rows_affected();
    let d = sqlx::query("DELETE FROM email_verifications WHERE expires_at <= $1")
        .bind(now)
        .execute(db.pool())
        .await?
        .rows_affected();
    Ok(a + b + c + d)
}

// ----- email verification ---------------------------------------------------------------

/// Whether the account's email address was verified.
pub async fn email_verified(db: &Db, user_id: i64) -> Result<bool, Error> {
    let verified_at: Option<i64> =
        sqlx::query_scalar("SELECT email_verified_at FROM users WHERE id = $1")
            .bind(user_id)
            .fetch_optional(db.pool())
            .await?
            .ok_or(Error::NotFound)?;
    Ok(verified_at.is_some())
}

/// Marks the account's email address verified (an operator created the account, or an
/// identity provider vouched for the address of an account it created).
pub async fn mark_email_verified(db: &Db, user_id: i64) -> Result<(), Error> {
    sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $2) WHERE id = $1",
    )
    .bind(user_id)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Stores a verification link (its token's hash) for the account's current address.
pub async fn create_email_verification(
    db: &Db,
    token_hash: &str,
    user_id: i64,
    expires_at: i64,
) -> Result<(), Error> {
    let n = sqlx::query(
        "INSERT INTO email_verifications (token_hash, user_id, email_lower, expires_at, created_at) \
         SELECT $1, id, email_lower, $3, $4 FROM users WHERE id = $2",
    )
    .bind(token_hash)
    .bind(user_id)
    .bind(expires_at)
    .bind(now_ms())
    .execute(db.pool())
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound);
    }
    Ok(())
}

/// Spends a verification link: when it is unexpired and the account still has the address
/// it was sent to, the address is marked verified and the account's id returned. A link
/// works once.
pub async fn consume_email_verification(db: &Db, token_hash: &str) -> Result<Option<i64>, Error> {
    let Some((user_id, email, expires_at)) = sqlx::query_as::<_, (i64, String, i64)>(
        "DELETE FROM email_verifications WHERE token_hash = $1 \
         RETURNING user_id, email_lower, expires_at",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(None);
    };
    let now = now_ms();
    if expires_at <= now {
        return Ok(None);
    }
    let n = sqlx::query(
        "UPDATE users SET email_verified_at = COALESCE(email_verified_at, $3) \
         WHERE id = $1 AND email_lower = $2",
    )
    .bind(user_id)
    .bind(email)
    .bind(now)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok((n == 1).then_some(user_id))
}

// ----- sign-in throttling ---------------------------------------------------------------

/// One attempt, recorded against each of its subjects (rows of `signin_failures`), for
/// throttles that must hold under concurrency.
#[derive(Debug, Default)]
pub struct Attempt {
    ids: Vec<i64>,
}

/// Records an attempt against each `(subject, limit)` and says whether every subject is
/// within its limit counting this attempt (attempts since `since`, ms). Each row is
/// inserted before anything is counted, so of any number of concurrent attempts at most
/// `limit` see a count within it: checking and counting are one step.
pub async fn attempt(
    db: &Db,
    subjects: &[(&str, i64)],
    since: i64,
) -> Result<(Attempt, bool), Error> {
    let now = now_ms();
    let mut a = Attempt::default();
    for (s, _) in subjects {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO signin_failures (subject, created_at) VALUES ($1, $2) RETURNING id",
        )
        .bind(*s)
        .bind(now)
        .fetch_one(db.pool())
        .await?;
        a.ids.push(id);
    }
    for (s, limit) in subjects {
        if failures_since(db, s, since).await? > *limit {
            return Ok((a, false));
        }
    }
    Ok((a, true))
}

/// Forgets an attempt (it succeeded, or was refused before it did anything).
pub async fn release(db: &Db, a: Attempt) -> Result<(), Error> {
    for id in a.ids {
        sqlx::query("DELETE FROM signin_failures WHERE id = $1")
            .bind(id)
            .execute(db.pool())
            .await?;
    }
    Ok(())
}

/// Records a failed sign-in for each subject (e.g. `acct:<email>`, `ip:<addr>`).
pub async fn record_failure(db: &Db, subjects: &[String]) -> Result<(), Error> {
    let now = now_ms();
    for s in subjects {
        sqlx::query("INSERT INTO signin_failures (subject, created_at) VALUES ($1, $2)")
            .bind(s)
            .bind(now)
            .execute(db.pool())
            .await?;
    }
    Ok(())
}

/// Failures of `subject` since `since` (ms).
pub async fn failures_since(db: &Db, subject: &str, since: i64) -> Result<i64, Error> {
    Ok(sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM signin_failures WHERE subject = $1 AND created_at >= $2",
    )
    .bind(subject)
    .bind(since)
    .fetch_one(db.pool())
    .await?)
}

/// Forgets a subject's failures (after a successful sign-in).
pub async fn clear_failures(db: &Db, subject: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM signin_failures WHERE subject = $1")
        .bind(subject)
        .execute(db.pool())
        .await?;
    Ok(())
}

// ----- device grants --------------------------------------------------------------------

/// A device authorization request.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct DeviceGrant {
    pub id: i64,
    pub user_code: String,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
    #[sqlx(try_from = "String")]
    pub status: GrantStatus,
    pub user_id: Option<i64>,
    pub interval_secs: i64,
    pub last_poll_at: Option<i64>,
    pub expires_at: i64,
}

const GRANT_COLUMNS: &str = "id, user_code, client_id, scope, resource, status, user_id, interval_secs, last_poll_at, expires_at";

/// What a new device grant records.
pub struct NewGrant<'a> {
    pub device_code_hash: &'a str,
    pub user_code: &'a str,
    pub client_id: &'a str,
    pub scope: &'a str,
    pub resource: &'a str,
    pub interval_secs: i64,
    pub expires_at: i64,
}

/// Stores a new pending grant. A user-code collision is a `Conflict` (the caller retries).
pub async fn create_grant(db: &Db, g: &NewGrant<'_>) -> Result<(), Error> {
    let r = sqlx::query(
        "INSERT INTO device_grants (device_code_hash, user_code, client_id, scope, resource, status, \
         interval_secs, expires_at, created_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, $7, $8) \
         ON CONFLICT DO NOTHING",
    )
    .bind(g.device_code_hash)
    .bind(g.user_code)
    .bind(g.client_id)
    .bind(g.scope)
    .bind(g.resource)
    .bind(g.interval_secs)
    .bind(g.expires_at)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    if r.rows_affected() == 0 {
        return Err(Error::Conflict("user code collision".into()));
    }
    Ok(())
}

/// The grant with `user_code`, if any.
pub async fn grant_by_user_code(db: &Db, user_code: &str) -> Result<Option<DeviceGrant>, Error> {
    Ok(sqlx::query_as(&format!(
        "SELECT {GRANT_COLUMNS} FROM device_grants WHERE user_code = $1"
    ))
    .bind(user_code)
    .fetch_optional(db.pool())
    .await?)
}

/// Device grants an account may have approved and not yet collected (unexpired).
pub const MAX_UNCOLLECTED_APPROVALS: i64 = 5;

/// Approves (`Some(user)`) or denies (`None`) a pending, unexpired grant, recording the
/// scope granted (`granted_scope`, which may be narrower than the one asked for; `None`
/// keeps it); `NotFound` if there is none (unknown, expired or already decided),
/// `Conflict` when the approver already has [`MAX_UNCOLLECTED_APPROVALS`] approved grants
/// no client has collected. The approver's row is locked first, so concurrent approvals
/// are counted one after the other.
pub async fn decide_grant(
    db: &Db,
    user_code: &str,
    approver: Option<i64>,
    granted_scope: Option<&str>,
) -> Result<(), Error> {
    let now = now_ms();
    let status = if approver.is_some() {
        GrantStatus::Approved
    } else {
        GrantStatus::Denied
    };
    let mut tx = db.pool().begin().await?;
    if let Some(user_id) = approver {
        sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let outstanding: i64 = sqlx::query_scalar(
            "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM device_grants WHERE user_id = $1 \
             AND status = 'approved' AND expires_at > $2",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        if outstanding >= MAX_UNCOLLECTED_APPROVALS {
            return Err(Error::Conflict(
                "too many approved devices have not signed in yet".into(),
            ));
        }
    }
    let n = sqlx::query(
        "UPDATE device_grants SET status = $1, user_id = $2, scope = COALESCE($5, scope) \
         WHERE user_code = $3 AND status = 'pending' AND expires_at > $4",
    )
    .bind(status.as_str())
    .bind(approver)
    .bind(user_code)
    .bind(now)
    .bind(granted_scope)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if n == 0 {
        return Err(Error::NotFound);
    }
    tx.commit().await?;
    Ok(())
}

/// What a token-endpoint poll found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Poll {
    Unknown,
    Pending,
    SlowDown,
    Expired,
    Denied,
    /// Approved and now consumed (single use): issue tokens for this grant.
    Approved(DeviceGrant),
}

/// Polls the grant with `device_code_hash` for `client_id`. Records the poll time; a
/// poll sooner than the interval after the previous one is `SlowDown` (and the interval
/// grows by 5 s, per RFC 8628). An approved grant is consumed by the same statement that
/// finds it, so it yields tokens once. Each step is a single statement (no read-then-write
/// transaction, which SQLite could refuse under concurrent writers).
pub async fn poll_grant(db: &Db, device_code_hash: &str, client_id: &str) -> Result<Poll, Error> {
    let now = now_ms();
    if let Some(grant) = sqlx::query_as(&format!(
        "UPDATE device_grants SET status = 'used' WHERE device_code_hash = $1 AND client_id = $2 \
         AND status = 'approved' AND expires_at > $3 RETURNING {GRANT_COLUMNS}"
    ))
    .bind(device_code_hash)
    .bind(client_id)
    .bind(now)
    .fetch_optional(db.pool())
    .await?
    {
        return Ok(Poll::Approved(grant));
    }
    let Some(g) = sqlx::query_as::<_, DeviceGrant>(&format!(
        "SELECT {GRANT_COLUMNS} FROM device_grants WHERE device_code_hash = $1"
    ))
    .bind(device_code_hash)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(Poll::Unknown);
    };
    if g.client_id != client_id || g.status == GrantStatus::Used {
        return Ok(Poll::Unknown);
    }
    if g.expires_at <= now {
        return Ok(Poll::Expired);
    }
    match g.status {
        GrantStatus::Denied => return Ok(Poll::Denied),
        GrantStatus::Pending => {}
        GrantStatus::Approved | GrantStatus::Used => return Ok(Poll::Unknown),
    }
    let too_soon = g
        .last_poll_at
        .is_some_and(|t| now - t < g.interval_secs * 1000);
    let interval = if too_soon {
        g.interval_secs + 5
    } else {
        g.interval_secs
    };
    sqlx::query("UPDATE device_grants SET last_poll_at = $1, interval_secs = $2 WHERE id = $3 AND status = 'pending'")
        .bind(now)
        .bind(interval)
        .bind(g.id)
        .execute(db.pool())
        .await?;
    Ok(if too_soon {
        Poll::SlowDown
    } else {
        Poll::Pending
    })
}

// ----- refresh tokens -------------------------------------------------------------------

/// A refresh token's grant.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct RefreshGrant {
    pub family: String,
    pub user_id: i64,
    pub client_id: String,
    pub scope: String,
    pub resource: String,
}

/// Stores a new active refresh token (hash) in `grant.family`.
pub async fn store_refresh(
    db: &Db,
    token_hash: &str,
    grant: &RefreshGrant,
    expires_at: i64,
) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, family, user_id, client_id, scope, resource, status, \
         expires_at, created_at) VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8)",
    )
    .bind(token_hash)
    .bind(&grant.family)
    .bind(grant.user_id)
    .bind(&grant.client_id)
    .bind(&grant.scope)
    .bind(&grant.resource)
    .bind(expires_at)
    .bind(now_ms())
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Why a refresh token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshRefusal {
    Unknown,
    Expired,
    /// A rotated token was presented again: the whole family has been revoked.
    Reused,
}

/// Spends a refresh token: an active, unexpired token of `client_id` is marked rotated and
/// its grant returned (the caller stores the successor) by one conditional update, so two
/// concurrent uses cannot both succeed. Presenting an already rotated token revokes its
/// whole family.
pub async fn rotate_refresh(
    db: &Db,
    token_hash: &str,
    client_id: &str,
) -> Result<Result<RefreshGrant, RefreshRefusal>, Error> {
    let now = now_ms();
    if let Some(grant) = sqlx::query_as(
        "UPDATE refresh_tokens SET status = 'rotated' WHERE token_hash = $1 AND client_id = $2 \
         AND status = 'active' AND expires_at > $3 RETURNING family, user_id, client_id, scope, resource",
    )
    .bind(token_hash)
    .bind(client_id)
    .bind(now)
    .fetch_optional(db.pool())
    .await?
    {
        return Ok(Ok(grant));
    }
    /// What a refused token's row says about it.
    #[derive(sqlx::FromRow)]
    struct Spent {
        family: String,
        client_id: String,
        #[sqlx(try_from = "String")]
        status: RefreshStatus,
        expires_at: i64,
    }
    let Some(r) = sqlx::query_as::<_, Spent>(
        "SELECT family, client_id, status, expires_at FROM refresh_tokens WHERE token_hash = $1",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await?
    else {
        return Ok(Err(RefreshRefusal::Unknown));
    };
    if r.client_id != client_id {
        return Ok(Err(RefreshRefusal::Unknown));
    }
    if r.status == RefreshStatus::Rotated {
        sqlx::query("UPDATE refresh_tokens SET status = 'revoked' WHERE family = $1")
            .bind(&r.family)
            .execute(db.pool())
            .await?;
        return Ok(Err(RefreshRefusal::Reused));
    }
    if r.status == RefreshStatus::Active && r.expires_at <= now {
        return Ok(Err(RefreshRefusal::Expired));
    }
    Ok(Err(RefreshRefusal::Unknown))
}
