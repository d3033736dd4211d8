//! Portal sessions: `tower-sessions` over tokengate's own database (SQLite or PostgreSQL,
//! table `sessions`, ids stored only as SHA-256 hashes), with the cookie HttpOnly,
//! SameSite=Lax and Secure when the public URL is https; idle expiry by the layer,
//! absolute expiry and the user's auth epoch checked on every use. Signing in rotates the
//! session id; "sign out everywhere" deletes every session of the user.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokengate_core::accounts::{self, User, UserStatus};
use tokengate_core::auth::{self as store, SessionRow};
use tokengate_core::{Db, now_ms};
use tower_sessions::cookie::SameSite;
use tower_sessions::session::{Error as SessionError, Id, Record};
use tower_sessions::session_store::{self, SessionStore};
use tower_sessions::{Expiry, Session, SessionManagerLayer};

/// The session cookie's name.
pub const COOKIE: &str = "tg_session";
const USER: &str = "uid";
const AUTH_AT: &str = "auth_at";
const EPOCH: &str = "ep";

/// The database-backed session store.
#[derive(Debug, Clone)]
pub struct DbStore {
    db: Db,
}

fn key(id: &Id) -> String {
    hex::encode(Sha256::digest(id.to_string().as_bytes()))
}

fn backend(e: tokengate_core::Error) -> session_store::Error {
    session_store::Error::Backend(e.to_string())
}

#[async_trait]
impl SessionStore for DbStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        while store::session_exists(&self.db, &key(&record.id))
            .await
            .map_err(backend)?
        {
            record.id = Id::default();
        }
        self.save(record).await
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        let data = serde_json::to_string(&record.data)
            .map_err(|e| session_store::Error::Encode(e.to_string()))?;
        let row = SessionRow {
            user_id: record.data.get(USER).and_then(Value::as_i64),
            data,
            created_at: record
                .data
                .get(AUTH_AT)
                .and_then(Value::as_i64)
                .unwrap_or_else(now_ms),
            expires_at: record.expiry_date.unix_timestamp() * 1000,
        };
        store::save_session(&self.db, &key(&record.id), &row)
            .await
            .map_err(backend)
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let Some(row) = store::load_session(&self.db, &key(id))
            .await
            .map_err(backend)?
        else {
            return Ok(None);
        };
        let data = serde_json::from_str(&row.data)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        let expiry_date = time::OffsetDateTime::from_unix_timestamp(row.expires_at / 1000)
            .map_err(|e| session_store::Error::Decode(e.to_string()))?;
        Ok(Some(Record {
            id: *id,
            data,
            expiry_date,
        }))
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        store::delete_session(&self.db, &key(id))
            .await
            .map_err(backend)
    }
}

/// Session lifetimes.
#[derive(Debug, Clone, Copy)]
pub struct Lifetimes {
    pub idle: Duration,
    pub absolute: Duration,
}

/// The session layer for the whole router.
pub fn layer(db: Db, secure: bool, idle: Duration) -> SessionManagerLayer<DbStore> {
    SessionManagerLayer::new(DbStore { db })
        .with_name(COOKIE)
        .with_http_only(true)
        .with_same_site(SameSite::Lax)
        .with_secure(secure)
        .with_path("/")
        .with_expiry(Expiry::OnInactivity(time::Duration::seconds(
            idle.as_secs() as i64,
        )))
}

/// Signs `user` in on this session, under a fresh session id.
pub async fn sign_in(session: &Session, user: &User, epoch: i64) -> Result<(), SessionError> {
    session.cycle_id().await?;
    session.insert(USER, user.id).await?;
    session.insert(AUTH_AT, now_ms()).await?;
    session.insert(EPOCH, epoch).await?;
    Ok(())
}

/// Ends this session.
pub async fn sign_out(session: &Session) -> Result<(), SessionError> {
    session.flush().await
}

/// The active user signed in on this session, if the session is within its absolute
/// lifetime and the user has not signed out everywhere since.
pub async fn current_user(
    session: &Session,
    db: &Db,
    absolute: Duration,
) -> Result<Option<User>, tokengate_core::Error> {
    let get = |k: &'static str| async move { session.get::<i64>(k).await.ok().flatten() };
    let (Some(uid), Some(auth_at), Some(ep)) =
        (get(USER).await, get(AUTH_AT).await, get(EPOCH).await)
    else {
        return Ok(None);
    };
    if now_ms() - auth_at > absolute.as_millis() as i64 {
        let _ = session.flush().await;
        return Ok(None);
    }
    let user = match accounts::get_user(db, uid).await {
        Ok(u) => u,
        Err(tokengate_core::Error::NotFound) => return Ok(None),
        Err(e) => return Err(e),
    };
    if user.status != UserStatus::Active || user.auth_epoch != ep {
        let _ = session.flush().await;
        return Ok(None);
    }
    Ok(Some(user))
}
