//! Cluster mode (issue 15): several tokengate instances on one PostgreSQL (durable state:
//! ledger, request log, catalog, accounts) plus one Redis 7+/Valkey (shared fast state).
//!
//! - [`redis`]: the Redis connection (a reconnecting `ConnectionManager`) and the key
//!   prefix every shared key is built from.
//! - [`backplane`]: the one seam admission and settlement go through; in memory for a
//!   single instance, in Redis in cluster mode (holds, key spend, rate windows, the outbox
//!   of settled charges). Its module doc explains why money stays exact.
//! - [`scripts`]: the Lua scripts that make each admission and settlement atomic.
//!
//! Without `redis_url` nothing here is used: a single instance keeps its fast state in
//! memory exactly as before.

pub mod backplane;
pub mod changes;
pub mod instances;
pub mod redis;
pub mod scripts;
