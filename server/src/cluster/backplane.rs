//! The one seam between the request path and shared fast state: admission (rate windows,
//! the account's hold, the key's spend-limit hold) and settlement. [`Backplane::Memory`]
//! is the single-instance path, unchanged (`gateway::money` and `gateway::limits` in this
//! process's memory). [`Backplane::Redis`] is cluster mode, where every instance sees the
//! same numbers.
//!
//! # Money in Redis, and why it is exact
//!
//! Each account (and each key) has a hash `{persisted, ver, pending, held}`:
//! - `persisted`, `ver`: the balance (key: spend) as committed in PostgreSQL, and the
//!   row's `balance_version` (`spend_version`), which a trigger bumps in the same
//!   statement as every change (migration 0007). Anyone may offer a (value, version) read
//!   from one row; Redis keeps it only if its version is newer, so a stale read can never
//!   overwrite a fresh one and no instance clock is involved.
//! - `pending`: costs settled in Redis whose outbox entry has not been acknowledged.
//! - `held`: worst-case costs of requests in flight, one entry per hold (`:hamt`) with a
//!   deadline (`:holds`); live holds are extended every second by their instance, so a
//!   crashed instance's holds expire within the hold TTL and are released by the next
//!   script that touches the account.
//!
//! Admission (one script) admits iff `persisted − pending − held ≥ amount`. Settlement
//! (one script, once per request id) moves the hold to `pending` and appends the record
//! to the outbox stream. The outbox consumer (any instance, one consumer group) writes
//! records to PostgreSQL (idempotent by request id), then one script acknowledges the
//! entries and subtracts their costs from `pending` only for entries XACK really
//! acknowledged, and offers the (balance, version) read after the commit.
//!
//! Between the commit and the acknowledgement a cost may be counted twice (in a newer
//! `persisted` and in `pending`): admission is then stricter than needed, never looser.
//! A cost is never counted zero times: it enters `pending` in the same step that releases
//! its hold, and leaves `pending` only in the step that acknowledges its database commit.
//! The settling instance also writes every record through its own usage log (WAL +
//! flush), so a charge survives the loss of Redis data; the unique request id makes the
//! second write a no-op.
//!
//! If Redis loses its data (restart without persistence), the first instance to notice
//! sets a new epoch; for a grace period admissions answer 503 while every instance
//! re-registers its holds in flight and the usage logs flush what Redis lost; after it,
//! `persisted` is reloaded from the database.
//!
//! A Redis failure refuses new admissions with 503 `backplane_unavailable` (fail closed);
//! settlements are retried until Redis answers again.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redis::AsyncCommands;
use redis::streams::{
    StreamAutoClaimOptions, StreamAutoClaimReply, StreamReadOptions, StreamReadReply,
};
use tokengate_core::Db;
use tokengate_core::usage::RequestRecord;

use super::redis::{RedisConn, redact};
use super::scripts::{
    ACK_SCRIPT, ADMIT_SCRIPT, EPOCH_SCRIPT, KEEP_SCRIPT, SETTLE_SCRIPT, SYNC_SCRIPT,
};
use crate::gateway::limits::{RateLimitKind, RateLimits, RateTicket, RetryAfter};
use crate::gateway::money::{Hold, Money, Refusal};

/// Consumer group of the outbox.
const GROUP: &str = "flush";
/// How often live holds are extended and the epoch checked.
const KEEP_EVERY: Duration = Duration::from_secs(1);
/// Admissions refused after a new epoch while instances re-register holds and flush.
const GRACE_MS: u64 = 3000;
/// An outbox entry unacknowledged this long is claimed by another instance.
const CLAIM_IDLE_MS: usize = 5000;
/// Outbox entries taken per read.
const BATCH: usize = 512;
/// Longest wait of a non-streamed answer for its settlement to reach Redis.
pub const SETTLE_WAIT: Duration = Duration::from_secs(2);

/// Why an admission was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdmitError {
    Rate(RetryAfter),
    Money(Refusal),
    /// Redis cannot be reached (or is recovering lost data): fail closed.
    Unavailable,
}

/// What one admission asks for.
#[derive(Debug, Clone, Copy)]
pub struct Ask<'a> {
    pub request_id: &'a str,
    pub user_id: i64,
    pub key_id: i64,
    pub rpm: Option<i64>,
    pub tpm: Option<i64>,
    pub key_limit: Option<i64>,
    pub est_tokens: i64,
    pub amount: i64,
}

/// An admitted request's reservations; settle it with [`Backplane::settle`].
#[derive(Debug)]
pub enum Admitted {
    Memory {
        hold: Hold,
        rate: RateTicket,
    },
    Redis {
        user_id: i64,
        key_id: i64,
        amount: i64,
    },
}

impl Admitted {
    /// The worst-case cost held.
    pub fn amount(&self) -> i64 {
        match self {
            Admitted::Memory { hold, .. } => hold.amount,
            Admitted::Redis { amount, .. } => *amount,
        }
    }
}

/// Counters of cluster mode, for health reporting.
#[derive(Debug, Default)]
pub struct BackplaneStats {
    /// Admissions answered 503 `backplane_unavailable`.
    pub unavailable: AtomicU64,
    /// Settlement attempts that failed and were retried.
    pub settle_retries: AtomicU64,
    /// Outbox entries written to the database by this instance.
    pub outbox_written: AtomicU64,
    /// Outbox entries claimed from a stopped or slow instance.
    pub outbox_claimed: AtomicU64,
    /// Times this instance found a new epoch (Redis lost its data).
    pub epochs: AtomicU64,
}

/// Where shared fast state lives.
pub enum Backplane {
    /// One instance: this process's memory.
    Memory,
    /// Cluster mode.
    Redis(Arc<RedisBackplane>),
}

impl Backplane {
    /// Takes the rate ticket and the hold, or says why not.
    pub async fn admit(
        &self,
        money: &Money,
        limits: &RateLimits,
        ask: Ask<'_>,
    ) -> Result<Admitted, AdmitError> {
        match self {
            Backplane::Memory => {
                let rate = limits
                    .admit(ask.key_id, ask.rpm, ask.tpm, ask.est_tokens, Instant::now())
                    .map_err(AdmitError::Rate)?;
                let hold = money
                    .hold(ask.user_id, ask.key_id, ask.key_limit, ask.amount)
                    .map_err(AdmitError::Money)?;
                Ok(Admitted::Memory { hold, rate })
            }
            Backplane::Redis(r) => r.admit(ask).await,
        }
    }

    /// Releases the reservations at the record's cost and `tokens`. In cluster mode the Redis step
    /// runs in a task that retries until Redis answers; `done` is told when it has.
    pub fn settle(
        &self,
        money: &Money,
        limits: &RateLimits,
        admitted: Admitted,
        tokens: i64,
        record: &RequestRecord,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        match admitted {
            Admitted::Memory { hold, rate } => {
                money.settle(hold, record.cost_nano);
                limits.settle(rate, tokens, Instant::now());
                if let Some(d) = done {
                    let _ = d.send(());
                }
            }
            Admitted::Redis { .. } => {
                if let Backplane::Redis(r) = self {
                    r.settle(record.clone(), tokens, done);
                }
            }
        }
    }

    pub fn stats(&self) -> Option<&BackplaneStats> {
        match self {
            Backplane::Memory => None,
            Backplane::Redis(r) => Some(&r.stats),
        }
    }
}

/// A hold this instance has in flight (kept alive, re-registered after an epoch change).
#[derive(Debug, Clone, Copy)]
struct Live {
    user_id: i64,
    key_id: i64,
    amount: i64,
    key_limited: bool,
}

/// Cluster mode's shared state.
pub struct RedisBackplane {
    redis: RedisConn,
    db: Db,
    hold_ttl_ms: u64,
    epoch: Mutex<String>,
    live: Mutex<HashMap<String, Live>>,
    consumer: String,
    pub stats: BackplaneStats,
    /// Last (balance version) offered per account by the periodic refresh.
    offered: Mutex<HashMap<i64, i64>>,
}

impl std::fmt::Debug for RedisBackplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisBackplane")
            .field("redis", &self.redis)
            .field("consumer", &self.consumer)
            .finish_non_exhaustive()
    }
}

impl RedisBackplane {
    /// Joins the backplane: creates the outbox group, adopts (or starts) the epoch and
    /// waits out a new epoch's grace period, so the instance serves as soon as it listens.
    pub async fn connect(
        redis: RedisConn,
        db: Db,
        request_timeout_ms: u64,
    ) -> Result<Arc<RedisBackplane>, redis::RedisError> {
        let mut c = redis.conn();
        let created: redis::RedisResult<()> = c
            .xgroup_create_mkstream(redis.outbox_key(), GROUP, "0")
            .await;
        if let Err(e) = created
            && e.code() != Some("BUSYGROUP")
        {
            return Err(e);
        }
        let bp = Arc::new(RedisBackplane {
            hold_ttl_ms: request_timeout_ms.clamp(5_000, 30_000),
            db,
            epoch: Mutex::new(String::new()),
            live: Mutex::new(HashMap::new()),
            consumer: format!("i-{}", hex::encode(rand::random::<[u8; 8]>())),
            stats: BackplaneStats::default(),
            offered: Mutex::new(HashMap::new()),
            redis,
        });
        let (epoch, created) = bp.current_epoch().await?;
        *bp.epoch.lock() = epoch;
        if created {
            tokio::time::sleep(Duration::from_millis(GRACE_MS)).await;
        }
        Ok(bp)
    }

    /// Starts the keeper (hold deadlines, epoch) and the outbox consumer.
    pub fn spawn_tasks(self: &Arc<Self>) -> Vec<tokio::task::JoinHandle<()>> {
        let keeper = {
            let bp = self.clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(KEEP_EVERY);
                loop {
                    tick.tick().await;
                    if let Err(e) = bp.keep().await {
                        tracing::debug!(error = %redact(&e), "backplane keeper: Redis unavailable");
                    }
                }
            })
        };
        let consumer = {
            let bp = self.clone();
            tokio::spawn(async move { bp.consume().await })
        };
        vec![keeper, consumer]
    }

    async fn current_epoch(&self) -> redis::RedisResult<(String, bool)> {
        let new_id = hex::encode(rand::random::<[u8; 8]>());
        let (e, created): (String, i64) = EPOCH_SCRIPT
            .key(self.redis.key("epoch"))
            .arg(new_id)
            .arg(GRACE_MS)
            .invoke_async(&mut self.redis.conn())
            .await?;
        Ok((e, created == 1))
    }

    /// Extends this instance's live holds; after an epoch change (Redis lost its data)
    /// registers them again first.
    async fn keep(&self) -> redis::RedisResult<()> {
        let (epoch, created) = self.current_epoch().await?;
        let changed = *self.epoch.lock() != epoch;
        if changed || created {
            self.stats.epochs.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("Redis backplane lost its data (new epoch): re-registering holds");
        }
        let live: Vec<(String, Live)> = self
            .live
            .lock()
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        for chunk in live.chunks(1000) {
            let mut inv = KEEP_SCRIPT.prepare_invoke();
            inv.arg(self.redis.prefix())
                .arg(self.hold_ttl_ms)
                .arg(chunk.len());
            for (id, l) in chunk {
                inv.arg(id)
                    .arg(l.user_id)
                    .arg(l.key_id)
                    .arg(l.amount)
                    .arg(if l.key_limited { "1" } else { "0" });
            }
            inv.arg(if changed { "1" } else { "0" });
            let _: i64 = inv.invoke_async(&mut self.redis.conn()).await?;
        }
        if changed {
            *self.epoch.lock() = epoch;
            self.offered.lock().clear();
        }
        Ok(())
    }

    async fn admit(&self, ask: Ask<'_>) -> Result<Admitted, AdmitError> {
        let mut acct: Option<(i64, i64)> = None;
        let mut key: Option<(i64, i64)> = None;
        for _ in 0..4 {
            match self.admit_once(&ask, acct, key).await {
                Ok(Step::Done(r)) => return r,
                Ok(Step::Epoch) => {
                    if let Err(e) = self.keep().await {
                        return Err(self.unavailable(&e));
                    }
                }
                Ok(Step::LoadAccount) => {
                    acct = Some(self.load_account(ask.user_id).await?);
                }
                Ok(Step::LoadKey) => key = Some(self.load_key(ask.key_id).await?),
                Err(e) => return Err(self.unavailable(&e)),
            }
        }
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        Err(AdmitError::Unavailable)
    }

    fn unavailable(&self, e: &redis::RedisError) -> AdmitError {
        self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %redact(e), "Redis backplane unavailable: admission refused");
        AdmitError::Unavailable
    }

    async fn load_account(&self, user_id: i64) -> Result<(i64, i64), AdmitError> {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT balance_nano, balance_version FROM users WHERE id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.db.pool())
        .await
        .ok()
        .flatten()
        .ok_or(AdmitError::Money(Refusal::AccountInactive))
    }

    async fn load_key(&self, key_id: i64) -> Result<(i64, i64), AdmitError> {
        sqlx::query_as::<_, (i64, i64)>(
            "SELECT spent_nano, spend_version FROM api_keys WHERE id = $1",
        )
        .bind(key_id)
        .fetch_optional(self.db.pool())
        .await
        .ok()
        .flatten()
        .ok_or(AdmitError::Money(Refusal::KeyLimit))
    }

    async fn admit_once(
        &self,
        ask: &Ask<'_>,
        acct: Option<(i64, i64)>,
        key: Option<(i64, i64)>,
    ) -> redis::RedisResult<Step> {
        let r = &self.redis;
        let opt = |v: Option<i64>| v.map(|v| v.to_string()).unwrap_or_default();
        let epoch = self.epoch.lock().clone();
        let reply: Vec<redis::Value> = ADMIT_SCRIPT
            .key(r.key("epoch"))
            .key(r.account_key(ask.user_id))
            .key(r.account_holds_key(ask.user_id))
            .key(r.account_hold_amounts_key(ask.user_id))
            .key(r.api_key_key(ask.key_id))
            .key(r.api_key_holds_key(ask.key_id))
            .key(r.api_key_hold_amounts_key(ask.key_id))
            .key(r.rate_key("req", &ask.key_id.to_string()))
            .key(r.rate_key("tok", &ask.key_id.to_string()))
            .key(r.rate_key("total", &ask.key_id.to_string()))
            .arg(epoch)
            .arg(ask.request_id)
            .arg(ask.amount.max(0))
            .arg(self.hold_ttl_ms)
            .arg(opt(ask.key_limit))
            .arg(opt(ask.rpm))
            .arg(opt(ask.tpm))
            .arg(ask.est_tokens.max(0))
            .arg(opt(acct.map(|a| a.0)))
            .arg(opt(acct.map(|a| a.1)))
            .arg(opt(key.map(|k| k.0)))
            .arg(opt(key.map(|k| k.1)))
            .invoke_async(&mut r.conn())
            .await?;
        let int = |i: usize| -> i64 {
            reply
                .get(i)
                .and_then(|v| redis::from_redis_value_ref::<i64>(v).ok())
                .unwrap_or(0)
        };
        let step = match int(0) {
            0 => {
                self.live.lock().insert(
                    ask.request_id.to_string(),
                    Live {
                        user_id: ask.user_id,
                        key_id: ask.key_id,
                        amount: ask.amount.max(0),
                        key_limited: ask.key_limit.is_some(),
                    },
                );
                Step::Done(Ok(Admitted::Redis {
                    user_id: ask.user_id,
                    key_id: ask.key_id,
                    amount: ask.amount.max(0),
                }))
            }
            -1 => Step::Epoch,
            -2 => Step::Done(Err(AdmitError::Unavailable)),
            -3 => {
                let which = reply
                    .get(1)
                    .and_then(|v| redis::from_redis_value_ref::<String>(v).ok())
                    .unwrap_or_default();
                if which == "key" {
                    Step::LoadKey
                } else {
                    Step::LoadAccount
                }
            }
            2 => Step::Done(Err(AdmitError::Rate(RetryAfter {
                secs: u64::try_from(int(1)).unwrap_or(1).max(1),
                which: if int(2) == 2 {
                    RateLimitKind::Tpm
                } else {
                    RateLimitKind::Rpm
                },
            }))),
            3 => Step::Done(Err(AdmitError::Money(Refusal::Balance))),
            _ => Step::Done(Err(AdmitError::Money(Refusal::KeyLimit))),
        };
        if matches!(step, Step::Done(Err(AdmitError::Unavailable))) {
            self.stats.unavailable.fetch_add(1, Ordering::Relaxed);
        }
        Ok(step)
    }

    /// Settles in a task of its own, retrying until Redis answers.
    fn settle(
        self: &Arc<Self>,
        mut record: RequestRecord,
        tokens: i64,
        done: Option<tokio::sync::oneshot::Sender<()>>,
    ) {
        let bp = self.clone();
        tokio::spawn(async move {
            record.sanitize();
            let json = match serde_json::to_string(&record) {
                Ok(j) => j,
                Err(e) => {
                    tracing::error!(error = %e, "usage record not serializable");
                    return;
                }
            };
            let mut wait = Duration::from_millis(50);
            let mut done = done;
            loop {
                match bp.settle_once(&record, tokens, &json).await {
                    Ok(()) => break,
                    Err(e) => {
                        bp.stats.settle_retries.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %redact(&e), request_id = %record.request_id, "settlement in Redis failed; retrying");
                        // The answer does not wait for a Redis that is away.
                        if let Some(d) = done.take() {
                            let _ = d.send(());
                        }
                        tokio::time::sleep(wait).await;
                        wait = (wait * 2).min(Duration::from_secs(2));
                    }
                }
            }
            bp.live.lock().remove(&record.request_id);
            if let Some(d) = done {
                let _ = d.send(());
            }
        });
    }

    async fn settle_once(
        &self,
        rec: &RequestRecord,
        tokens: i64,
        json: &str,
    ) -> redis::RedisResult<()> {
        let r = &self.redis;
        let key = rec.key_id.to_string();
        let _: i64 = SETTLE_SCRIPT
            .key(r.key(&format!("done:{}", rec.request_id)))
            .key(r.account_key(rec.user_id))
            .key(r.account_holds_key(rec.user_id))
            .key(r.account_hold_amounts_key(rec.user_id))
            .key(r.api_key_key(rec.key_id))
            .key(r.api_key_holds_key(rec.key_id))
            .key(r.api_key_hold_amounts_key(rec.key_id))
            .key(r.rate_key("req", &key))
            .key(r.rate_key("tok", &key))
            .key(r.rate_key("total", &key))
            .key(r.outbox_key())
            .arg(&rec.request_id)
            .arg(rec.cost_nano)
            .arg(tokens.max(0))
            .arg(json)
            .arg(rec.user_id)
            .arg(rec.key_id)
            .invoke_async(&mut r.conn())
            .await?;
        Ok(())
    }

    /// Offers (id, value, version) rows of accounts and keys.
    async fn sync(
        &self,
        accounts: &[(i64, i64, i64)],
        keys: &[(i64, i64, i64)],
    ) -> redis::RedisResult<()> {
        let mut inv = SYNC_SCRIPT.prepare_invoke();
        inv.arg(self.redis.prefix());
        push_rows(&mut inv, accounts);
        push_rows(&mut inv, keys);
        let _: i64 = inv.invoke_async(&mut self.redis.conn()).await?;
        Ok(())
    }

    /// Offers one account's balance as the database has it now (after a top-up or an
    /// admin credit on this instance).
    pub async fn offer_account(&self, user_id: i64) -> Result<(), String> {
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, balance_nano, balance_version FROM users WHERE id = $1")
                .bind(user_id)
                .fetch_all(self.db.pool())
                .await
                .map_err(|e| e.to_string())?;
        self.sync(&rows, &[]).await.map_err(|e| redact(&e))
    }

    /// Offers every account whose balance version changed since the last offer (the
    /// periodic refresh: changes made straight in the database, e.g. by the CLI).
    pub async fn offer_changed_balances(&self) -> Result<(), String> {
        let rows: Vec<(i64, i64, i64)> =
            sqlx::query_as("SELECT id, balance_nano, balance_version FROM users")
                .fetch_all(self.db.pool())
                .await
                .map_err(|e| e.to_string())?;
        let changed: Vec<(i64, i64, i64)> = {
            let offered = self.offered.lock();
            rows.into_iter()
                .filter(|(id, _, v)| offered.get(id) != Some(v))
                .collect()
        };
        for chunk in changed.chunks(1000) {
            self.sync(chunk, &[]).await.map_err(|e| redact(&e))?;
            let mut offered = self.offered.lock();
            for (id, _, v) in chunk {
                offered.insert(*id, *v);
            }
        }
        Ok(())
    }

    /// The outbox consumer: reads new entries (and claims those another instance left
    /// unacknowledged), writes them to the database, then acknowledges them.
    async fn consume(self: Arc<Self>) {
        let mut last_claim = Instant::now();
        let mut backoff = Duration::from_millis(100);
        loop {
            let claim = last_claim.elapsed() >= Duration::from_millis(CLAIM_IDLE_MS as u64 / 2);
            let result = if claim {
                last_claim = Instant::now();
                self.claim_once().await
            } else {
                self.read_once().await
            };
            match result {
                Ok(()) => backoff = Duration::from_millis(100),
                Err(e) => {
                    tracing::debug!(error = %e, "outbox consumer: retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
            }
        }
    }

    async fn read_once(&self) -> Result<(), String> {
        let opts = StreamReadOptions::default()
            .group(GROUP, &self.consumer)
            .count(BATCH)
            .block(200);
        let reply: Option<StreamReadReply> = self
            .redis
            .blocking_conn()
            .xread_options(&[self.redis.outbox_key()], &[">"], &opts)
            .await
            .map_err(|e| redact(&e))?;
        let entries: Vec<redis::streams::StreamId> = reply
            .map(|r| r.keys.into_iter().flat_map(|k| k.ids).collect())
            .unwrap_or_default();
        if entries.is_empty() {
            // A group lost with the Redis data is created again.
            if let Err(e) = self
                .redis
                .conn()
                .xgroup_create_mkstream::<_, _, _, ()>(self.redis.outbox_key(), GROUP, "0")
                .await
                && e.code() != Some("BUSYGROUP")
            {
                return Err(redact(&e));
            }
            return Ok(());
        }
        self.write_and_ack(entries).await
    }

    async fn claim_once(&self) -> Result<(), String> {
        let reply: StreamAutoClaimReply = self
            .redis
            .conn()
            .xautoclaim_options(
                self.redis.outbox_key(),
                GROUP,
                &self.consumer,
                CLAIM_IDLE_MS,
                "0-0",
                StreamAutoClaimOptions::default().count(BATCH),
            )
            .await
            .map_err(|e| redact(&e))?;
        if reply.claimed.is_empty() {
            return Ok(());
        }
        self.stats
            .outbox_claimed
            .fetch_add(reply.claimed.len() as u64, Ordering::Relaxed);
        self.write_and_ack(reply.claimed).await
    }

    async fn write_and_ack(&self, entries: Vec<redis::streams::StreamId>) -> Result<(), String> {
        let mut records = Vec::with_capacity(entries.len());
        let mut acks: Vec<(String, i64, i64, i64)> = Vec::with_capacity(entries.len());
        for e in &entries {
            let rec: Option<RequestRecord> = e
                .get::<String>("rec")
                .and_then(|j| serde_json::from_str(&j).ok());
            match rec {
                Some(r) => {
                    acks.push((e.id.clone(), r.user_id, r.key_id, r.cost_nano));
                    records.push(r);
                }
                None => {
                    tracing::error!(entry = %e.id, "unreadable outbox entry; left unacknowledged");
                }
            }
        }
        if records.is_empty() {
            return Ok(());
        }
        tokengate_core::usage::write_batch(&self.db, &records)
            .await
            .map_err(|e| format!("writing outbox records: {e}"))?;
        self.stats
            .outbox_written
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        let mut users: Vec<i64> = records.iter().map(|r| r.user_id).collect();
        users.sort_unstable();
        users.dedup();
        let mut keys: Vec<i64> = records.iter().map(|r| r.key_id).collect();
        keys.sort_unstable();
        keys.dedup();
        // Integer ids only, so the list is safe to inline (the Any driver has no arrays).
        let list = |ids: &[i64]| ids.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
        let accounts: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT id, balance_nano, balance_version FROM users WHERE id IN ({})",
            list(&users)
        ))
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| e.to_string())?;
        let spend: Vec<(i64, i64, i64)> = sqlx::query_as(&format!(
            "SELECT id, spent_nano, spend_version FROM api_keys WHERE id IN ({})",
            list(&keys)
        ))
        .fetch_all(self.db.pool())
        .await
        .map_err(|e| e.to_string())?;
        let mut inv = ACK_SCRIPT.key(self.redis.outbox_key());
        inv.arg(GROUP).arg(self.redis.prefix()).arg(acks.len());
        for (id, u, k, c) in &acks {
            inv.arg(id).arg(u).arg(k).arg(c);
        }
        push_rows(&mut inv, &accounts);
        push_rows(&mut inv, &spend);
        let _: i64 = inv
            .invoke_async(&mut self.redis.conn())
            .await
            .map_err(|e| redact(&e))?;
        Ok(())
    }
}

fn push_rows(inv: &mut redis::ScriptInvocation<'_>, rows: &[(i64, i64, i64)]) {
    inv.arg(rows.len());
    for (id, v, ver) in rows {
        inv.arg(id).arg(v).arg(ver);
    }
}

enum Step {
    Done(Result<Admitted, AdmitError>),
    Epoch,
    LoadAccount,
    LoadKey,
}
