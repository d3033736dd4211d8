//! Cluster mode (issue 15): several tokengate instances on one PostgreSQL (durable state:
//! ledger, request log, catalog, accounts) plus one Redis 7+/Valkey (shared fast state).
//!
//! - [`redis`]: the Redis connection (a reconnecting `ConnectionManager`) and the key
//!   prefix every shared key is built from.
//!
//! Without `redis_url` nothing here is used: a single instance keeps its fast state in
//! memory exactly as before.

pub mod changes;
pub mod instances;
pub mod redis;
