//! tokengate's domain and persistence: accounts, keys, the ledger, the model catalog and
//! usage. All SQL of the project lives in this crate.

pub mod accounts;
pub mod auth;
pub mod billing;
pub mod catalog;
pub mod changes;
pub mod db;
pub mod demo;
pub mod doctor;
pub mod instances;
pub mod keys;
pub mod money;
pub mod password;
pub mod payments;
pub mod statements;
pub mod usage;

pub use db::{Db, DbKind, MigrationStatus, migration_status};

/// Errors of the domain layer; boundaries map them to their own wire shapes.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Input that fails validation; the message is safe to show to the caller.
    #[error("{0}")]
    Invalid(String),
    #[error("not found")]
    NotFound,
    /// A uniqueness or state conflict; the message is safe to show.
    #[error("{0}")]
    Conflict(String),
    #[error("insufficient balance")]
    InsufficientBalance,
    #[error("database error: {0}")]
    Db(#[from] sqlx::Error),
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored JSON is invalid: {0}")]
    Json(#[from] serde_json::Error),
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
