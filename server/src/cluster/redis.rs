//! The Redis connection of cluster mode and the names of every key tokengate keeps there.
//! All keys start with the configured prefix (`redis_prefix`, default `tokengate:`) so
//! several deployments, or several tests, can share one Redis.
//!
//! The connection is a `redis::aio::ConnectionManager`: one multiplexed connection shared
//! by all tasks for the short commands of admission and settlement, plus a second one for
//! the outbox consumer's blocking reads (a blocking command on the shared connection would
//! stall every admission queued behind it); both are reconnected automatically after Redis restarts or the network fails. A
//! command issued while Redis is away fails fast (response and connection timeouts below)
//! instead of hanging a request.

use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Longest wait for one Redis reply before the command counts as failed.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Longest wait for a (re)connection.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(1000);

/// A Redis connection plus the key prefix. Cheap to clone (the connection is shared).
#[derive(Clone)]
pub struct RedisConn {
    conn: ConnectionManager,
    /// Only for blocking reads (`XREADGROUP … BLOCK`).
    blocking: ConnectionManager,
    prefix: String,
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the URL: it may carry a password.
        f.debug_struct("RedisConn")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// Why Redis could not be reached at start; the message never contains the URL.
#[derive(Debug, thiserror::Error)]
#[error("cannot connect to Redis (redis_url): {0}")]
pub struct ConnectError(String);

impl RedisConn {
    /// Connects to `url` (`redis://[:password@]host:port[/db]`). Fails when the URL is
    /// malformed or Redis does not answer within the connect timeout.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisConn, ConnectError> {
        let client = redis::Client::open(url).map_err(|e| ConnectError(redact(&e)))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone())
            .await
            .map_err(|e| ConnectError(redact(&e)))?;
        let blocking = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(|e| ConnectError(redact(&e)))?;
        Ok(RedisConn {
            conn,
            blocking,
            prefix: prefix.to_string(),
        })
    }

    /// A handle to issue commands with (clones share one connection).
    pub fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The connection for blocking reads, so they never delay the shared one.
    pub fn blocking_conn(&self) -> ConnectionManager {
        self.blocking.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<prefix><part>`.
    pub fn key(&self, part: &str) -> String {
        format!("{}{part}", self.prefix)
    }

    /// An account's money state (hash: `persisted`, `version`, `pending`, `held`).
    pub fn account_key(&self, account_id: i64) -> String {
        format!("{}acct:{{{account_id}}}", self.prefix)
    }

    /// The in-flight holds of an account (zset: hold id → deadline in ms).
    pub fn account_holds_key(&self, account_id: i64) -> String {
        format!("{}acct:{{{account_id}}}:holds", self.prefix)
    }

    /// Amounts of the in-flight holds of an account (hash: hold id → nano-USD).
    pub fn account_hold_amounts_key(&self, account_id: i64) -> String {
        format!("{}acct:{{{account_id}}}:hamt", self.prefix)
    }

    /// A key's spend state (hash: `persisted`, `version`, `pending`, `held`).
    pub fn api_key_key(&self, key_id: i64) -> String {
        format!("{}key:{{{key_id}}}", self.prefix)
    }

    /// In-flight holds on a key's spend limit (zset: hold id → deadline in ms).
    pub fn api_key_holds_key(&self, key_id: i64) -> String {
        format!("{}key:{{{key_id}}}:holds", self.prefix)
    }

    /// Amounts of the in-flight holds on a key's spend limit (hash).
    pub fn api_key_hold_amounts_key(&self, key_id: i64) -> String {
        format!("{}key:{{{key_id}}}:hamt", self.prefix)
    }

    /// A rate-limit window (zset of admitted requests, or token reservations).
    pub fn rate_key(&self, kind: &str, scope: &str) -> String {
        format!("{}rl:{kind}:{scope}", self.prefix)
    }

    /// A throttle counter (sign-in failures, device-flow polls, sign-ups).
    pub fn throttle_key(&self, kind: &str, subject: &str) -> String {
        format!("{}th:{kind}:{subject}", self.prefix)
    }

    /// The outbox stream of settled charges.
    pub fn outbox_key(&self) -> String {
        self.key("outbox")
    }

    /// Sequence for hold ids (unique across instances).
    pub fn hold_seq_key(&self) -> String {
        self.key("holdseq")
    }
}

/// An error's text without anything that could be a credential: redis errors can echo
/// the URL they were given.
pub fn redact(e: &redis::RedisError) -> String {
    let kind = format!("{:?}", e.kind());
    match e.detail() {
        Some(d) if !d.contains('@') && !d.contains("redis://") => format!("{kind}: {d}"),
        _ => kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_carry_the_prefix() {
        // A RedisConn needs a live connection; without Redis at 6379 there is nothing to name.
        let Ok(r) = RedisConn::connect("redis://127.0.0.1:6379/", "tg-unit:").await else {
            eprintln!("skipped: no Redis at 127.0.0.1:6379");
            return;
        };
        assert_eq!(r.account_key(7), "tg-unit:acct:{7}");
        assert_eq!(r.account_holds_key(7), "tg-unit:acct:{7}:holds");
        assert_eq!(r.outbox_key(), "tg-unit:outbox");
        assert!(!format!("{r:?}").contains("redis://"));
    }
}
