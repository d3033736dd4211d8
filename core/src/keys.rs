//! API keys: generation (`sk-tg-` + 256 random bits, base62), the keyed hash they are
//! stored and looked up by, and their persistence. The raw secret leaves this module once,
//! in the value returned by [`create`].

use hmac::{Hmac, Mac};
use rand::Rng;
use serde::Serialize;
use sha2::Sha256;

pub use tokengate_api::kinds::KeyStatus;

use crate::{Db, Error, now_ms};

/// Every key starts with this.
pub const KEY_PREFIX: &str = "sk-tg-";
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/// Characters of base62 after the prefix: 43 × log2(62) ≈ 256 bits.
const SECRET_CHARS: usize = 43;
/// How much of the key the UI shows: `sk-tg-` + 6 characters.
const DISPLAY_CHARS: usize = KEY_PREFIX.len() + 6;

/// A keyed hash of a raw key; the only form in which keys are stored.
pub type KeyHash = [u8; 32];

/// Generates a new raw key.
pub fn generate() -> String {
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(KEY_PREFIX.len() + SECRET_CHARS);
    s.push_str(KEY_PREFIX);
    for _ in 0..SECRET_CHARS {
        s.push(char::from(BASE62[rng.gen_range(0..BASE62.len())]));
    }
    s
}

/// Whether `raw` has the shape of a tokengate key (cheap check before hashing).
pub fn well_formed(raw: &str) -> bool {
    raw.len() == KEY_PREFIX.len() + SECRET_CHARS
        && raw.starts_with(KEY_PREFIX)
        && raw[KEY_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric())
}

/// HMAC-SHA-256 of the raw key under the server secret.
pub fn hash(secret: &[u8], raw: &str) -> KeyHash {
    // HMAC accepts keys of any length, so this cannot fail.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret)
        .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
    mac.update(raw.as_bytes());
    mac.finalize().into_bytes().into()
}

/// The displayable prefix of a raw key.
pub fn display_prefix(raw: &str) -> String {
    raw.chars().take(DISPLAY_CHARS).collect()
}

/// A stored key as the hot path and the account API see it (never the secret).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ApiKey {
    pub id: i64,
    pub user_id: i64,
    pub name: String,
    pub key_prefix: String,
    #[serde(skip)]
    pub key_hash: String,
    pub status: KeyStatus,
    pub group_id: Option<i64>,
    /// Model and alias names this key may use; `None` = all.
    pub allowed_models: Option<Vec<String>>,
    pub spend_limit_nano: Option<i64>,
    pub spent_nano: i64,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl ApiKey {
    /// Whether the key may authenticate a request at `now` (ms).
    pub fn usable_at(&self, now: i64) -> bool {
        self.status == KeyStatus::Active && self.expires_at.is_none_or(|t| t > now)
    }
}

/// What a caller may set when creating a key.
#[derive(Debug, Clone, Default)]
pub struct NewKey {
    pub name: String,
    pub expires_at: Option<i64>,
    pub spend_limit_nano: Option<i64>,
    pub allowed_models: Option<Vec<String>>,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub group_id: Option<i64>,
}

const COLUMNS: &str = "id, user_id, name, key_prefix, key_hash, status, group_id, allowed_models, \
     spend_limit_nano, spent_nano, rpm, tpm, expires_at, last_used_at, created_at, updated_at";

/// An `api_keys` row as stored: the model list is JSON text.
#[derive(sqlx::FromRow)]
struct KeyRow {
    id: i64,
    user_id: i64,
    name: String,
    key_prefix: String,
    key_hash: String,
    #[sqlx(try_from = "String")]
    status: KeyStatus,
    group_id: Option<i64>,
    allowed_models: Option<String>,
    spend_limit_nano: Option<i64>,
    spent_nano: i64,
    rpm: Option<i64>,
    tpm: Option<i64>,
    expires_at: Option<i64>,
    last_used_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<KeyRow> for ApiKey {
    type Error = Error;
    fn try_from(r: KeyRow) -> Result<ApiKey, Error> {
        Ok(ApiKey {
            id: r.id,
            user_id: r.user_id,
            name: r.name,
            key_prefix: r.key_prefix,
            key_hash: r.key_hash,
            status: r.status,
            group_id: r.group_id,
            allowed_models: r
                .allowed_models
                .map(|m| serde_json::from_str(&m))
                .transpose()?,
            spend_limit_nano: r.spend_limit_nano,
            spent_nano: r.spent_nano,
            rpm: r.rpm,
            tpm: r.tpm,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// Rows read as keys.
fn keys(rows: Vec<KeyRow>) -> Result<Vec<ApiKey>, Error> {
    rows.into_iter().map(ApiKey::try_from).collect()
}

/// A row that must exist read as a key; `NotFound` when it does not.
fn found(row: Option<KeyRow>) -> Result<ApiKey, Error> {
    row.ok_or(Error::NotFound)?.try_into()
}

/// Keys an account may hold that are not revoked (active, disabled or expired).
pub const MAX_KEYS_PER_ACCOUNT: i64 = 100;

const NAME_RULE: &str = "name must be 1 to 100 characters, without control characters";

/// A key name: 1 to 100 characters (trimmed), none of them a control character (names are
/// shown in the portal, printed by the CLI to terminals and written to CSV exports).
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.chars().count() <= 100 && !name.chars().any(char::is_control)
}

/// Validates and stores a new key for `user_id`; returns the record and the raw secret,
/// which exists nowhere else afterwards. `Conflict` when the account already holds
/// [`MAX_KEYS_PER_ACCOUNT`] keys that are not revoked.
pub async fn create(
    db: &Db,
    secret: &[u8],
    user_id: i64,
    new: &NewKey,
) -> Result<(ApiKey, String), Error> {
    let name = new.name.trim();
    if !valid_name(name) {
        return Err(Error::Invalid(NAME_RULE.into()));
    }
    if new.spend_limit_nano.is_some_and(|v| v <= 0) {
        return Err(Error::Invalid("spend_limit_usd must be positive".into()));
    }
    if new.rpm.is_some_and(|v| v <= 0) || new.tpm.is_some_and(|v| v <= 0) {
        return Err(Error::Invalid("rpm and tpm must be positive".into()));
    }
    let now = now_ms();
    if new.expires_at.is_some_and(|t| t <= now) {
        return Err(Error::Invalid("expires_at must be in the future".into()));
    }
    let raw = generate();
    let key_hash = hex::encode(hash(secret, &raw));
    let models = new
        .allowed_models
        .as_ref()
        .map(serde_json::to_string)
        .transpose()?;
    // The account's row is locked first (PostgreSQL: a row lock; SQLite: the write lock),
    // so concurrent creations are counted one after the other and the cap holds.
    let mut tx = db.pool().begin().await?;
    sqlx::query("UPDATE users SET updated_at = updated_at WHERE id = $1")
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    let live: i64 = sqlx::query_scalar(
        "SELECT CAST(COUNT(*) AS BIGINT) AS n FROM api_keys WHERE user_id = $1 AND status <> 'revoked'",
    )
    .bind(user_id)
    .fetch_one(&mut *tx)
    .await?;
    if live >= MAX_KEYS_PER_ACCOUNT {
        return Err(Error::Conflict(format!(
            "An account can have at most {MAX_KEYS_PER_ACCOUNT} API keys that are not revoked; revoke one first."
        )));
    }
    let row = sqlx::query_as::<_, KeyRow>(&format!(
        "INSERT INTO api_keys (user_id, name, key_prefix, key_hash, status, group_id, allowed_models, \
         spend_limit_nano, rpm, tpm, expires_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, 'active', $5, $6, $7, $8, $9, $10, $11, $11) RETURNING {COLUMNS}"
    ))
    .bind(user_id)
    .bind(name)
    .bind(display_prefix(&raw))
    .bind(key_hash)
    .bind(new.group_id)
    .bind(models)
    .bind(new.spend_limit_nano)
    .bind(new.rpm)
    .bind(new.tpm)
    .bind(new.expires_at)
    .bind(now)
    .fetch_one(&mut *tx)
    .await?;
    let key = ApiKey::try_from(row)?;
    tx.commit().await?;
    Ok((key, raw))
}

/// Changes to an existing key; `None` leaves a field as it is, `Some(None)` clears it.
#[derive(Debug, Clone, Default)]
pub struct KeyPatch {
    pub name: Option<String>,
    /// `Active` or `Disabled` (a key is revoked by [`revoke`], not by a patch).
    pub status: Option<KeyStatus>,
    pub expires_at: Option<Option<i64>>,
    pub spend_limit_nano: Option<Option<i64>>,
    pub allowed_models: Option<Option<Vec<String>>>,
    pub rpm: Option<Option<i64>>,
    pub tpm: Option<Option<i64>>,
}

/// One of the user's keys. Someone else's key is `NotFound`.
pub async fn get_for_user(db: &Db, user_id: i64, key_id: i64) -> Result<ApiKey, Error> {
    found(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE id = $1 AND user_id = $2"
        ))
        .bind(key_id)
        .bind(user_id)
        .fetch_optional(db.pool())
        .await?,
    )
}

/// Applies `patch` to one of the user's keys (not a revoked one, which is final).
pub async fn update(db: &Db, user_id: i64, key_id: i64, patch: &KeyPatch) -> Result<ApiKey, Error> {
    let cur = get_for_user(db, user_id, key_id).await?;
    if cur.status == KeyStatus::Revoked {
        return Err(Error::Conflict("a revoked key cannot be changed".into()));
    }
    let name = match &patch.name {
        Some(n) => {
            let n = n.trim();
            if !valid_name(n) {
                return Err(Error::Invalid(NAME_RULE.into()));
            }
            n.to_string()
        }
        None => cur.name.clone(),
    };
    let status = match patch.status {
        Some(s @ (KeyStatus::Active | KeyStatus::Disabled)) => s,
        Some(KeyStatus::Revoked) => {
            return Err(Error::Invalid("status must be active or disabled".into()));
        }
        None => cur.status,
    };
    let expires_at = patch.expires_at.unwrap_or(cur.expires_at);
    if patch.expires_at.flatten().is_some_and(|t| t <= now_ms()) {
        return Err(Error::Invalid("expires_at must be in the future".into()));
    }
    let spend = patch.spend_limit_nano.unwrap_or(cur.spend_limit_nano);
    if spend.is_some_and(|v| v <= 0) {
        return Err(Error::Invalid("spend_limit_usd must be positive".into()));
    }
    let rpm = patch.rpm.unwrap_or(cur.rpm);
    let tpm = patch.tpm.unwrap_or(cur.tpm);
    if rpm.is_some_and(|v| v <= 0) || tpm.is_some_and(|v| v <= 0) {
        return Err(Error::Invalid("rpm and tpm must be positive".into()));
    }
    let models = patch
        .allowed_models
        .clone()
        .unwrap_or(cur.allowed_models.clone());
    let models = models.as_ref().map(serde_json::to_string).transpose()?;
    let row = sqlx::query_as(&format!(
        "UPDATE api_keys SET name = $1, status = $2, expires_at = $3, spend_limit_nano = $4,          allowed_models = $5, rpm = $6, tpm = $7, updated_at = $8          WHERE id = $9 AND user_id = $10 AND status <> 'revoked' RETURNING {COLUMNS}"
    ))
    .bind(name)
    .bind(status.as_str())
    .bind(expires_at)
    .bind(spend)
    .bind(models)
    .bind(rpm)
    .bind(tpm)
    .bind(now_ms())
    .bind(key_id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    found(row)
}

/// Gives one of the user's keys a new secret; the old one stops matching. Returns the
/// record and the new raw secret (shown once).
pub async fn rotate(
    db: &Db,
    secret: &[u8],
    user_id: i64,
    key_id: i64,
) -> Result<(ApiKey, String), Error> {
    let raw = generate();
    let row = sqlx::query_as(&format!(
        "UPDATE api_keys SET key_hash = $1, key_prefix = $2, updated_at = $3          WHERE id = $4 AND user_id = $5 AND status <> 'revoked' RETURNING {COLUMNS}"
    ))
    .bind(hex::encode(hash(secret, &raw)))
    .bind(display_prefix(&raw))
    .bind(now_ms())
    .bind(key_id)
    .bind(user_id)
    .fetch_optional(db.pool())
    .await?;
    Ok((found(row)?, raw))
}

/// A user's keys, newest first.
pub async fn list_for_user(db: &Db, user_id: i64) -> Result<Vec<ApiKey>, Error> {
    keys(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE user_id = $1 ORDER BY id DESC"
        ))
        .bind(user_id)
        .fetch_all(db.pool())
        .await?,
    )
}

/// Keys changed at or after `since` (ms), for refreshing the in-memory cache; all keys when 0.
pub async fn changed_since(db: &Db, since: i64) -> Result<Vec<ApiKey>, Error> {
    keys(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE updated_at >= $1"
        ))
        .bind(since)
        .fetch_all(db.pool())
        .await?,
    )
}

/// Keys whose change number (assigned by the database in the transaction of each change,
/// see [`crate::changes`]) is above `version`: every key for `-1`.
pub async fn changed_after(db: &Db, version: i64) -> Result<Vec<ApiKey>, Error> {
    keys(
        sqlx::query_as(&format!(
            "SELECT {COLUMNS} FROM api_keys WHERE version > $1"
        ))
        .bind(version)
        .fetch_all(db.pool())
        .await?,
    )
}

/// The persisted spend of every active key that has a spend limit, as `(id, spent_nano)`:
/// loaded at start and on every refresh, so a limit survives restarts and sees the spend
/// other instances wrote.
pub async fn limited_spend(db: &Db) -> Result<Vec<(i64, i64)>, Error> {
    Ok(sqlx::query_as(
        "SELECT id, spent_nano FROM api_keys \
         WHERE spend_limit_nano IS NOT NULL AND status = 'active'",
    )
    .fetch_all(db.pool())
    .await?)
}

/// Revokes one of the user's keys. Not found (or someone else's key) is `NotFound`.
pub async fn revoke(db: &Db, user_id: i64, key_id: i64) -> Result<ApiKey, Error> {
    found(
        sqlx::query_as(&format!(
            "UPDATE api_keys SET status = 'revoked', updated_at = $3 \
             WHERE id = $1 AND user_id = $2 RETURNING {COLUMNS}"
        ))
        .bind(key_id)
        .bind(user_id)
        .bind(now_ms())
        .fetch_optional(db.pool())
        .await?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names_are_short_and_printable() {
        assert!(valid_name("ci-bot ✓"));
        assert!(valid_name(&"é".repeat(100)));
        assert!(!valid_name(""));
        assert!(!valid_name(&"a".repeat(101)));
        for bad in ["a\u{0}b", "\u{1b}[2J", "two\nlines", "del\u{7f}"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn generated_keys_are_well_formed_and_distinct() {
        let a = generate();
        let b = generate();
        assert!(well_formed(&a), "{a}");
        assert_ne!(a, b);
        assert_eq!(a.len(), 49);
        assert!(a.starts_with("sk-tg-"));
        assert!(!well_formed("sk-tg-short"));
        assert!(!well_formed(&a.replace("sk-tg-", "sk-xx-")));
        let mut bad = a.clone();
        bad.pop();
        bad.push('!');
        assert!(!well_formed(&bad));
    }

    #[test]
    fn hash_is_keyed() {
        let raw = generate();
        assert_eq!(hash(b"one", &raw), hash(b"one", &raw));
        assert_ne!(hash(b"one", &raw), hash(b"two", &raw));
        assert_ne!(hash(b"one", &raw), hash(b"one", &generate()));
        // Known HMAC-SHA-256 vector (RFC 4231 test case 2).
        assert_eq!(
            hex::encode(hash(b"Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(display_prefix(&raw).len(), 12);
    }
}
