//! The database handle: one `sqlx` Any pool over SQLite (default) or PostgreSQL, chosen by
//! the URL, with the matching embedded migrations applied at connect time. Queries use
//! `$N` placeholders, which both backends accept.

use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

use crate::Error;

static SQLITE_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/sqlite");
static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

/// Which SQL backend a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DbKind {
    Sqlite,
    Postgres,
}

impl FromStr for DbKind {
    type Err = Error;
    fn from_str(url: &str) -> Result<Self, Error> {
        if url.starts_with("sqlite:") {
            Ok(DbKind::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DbKind::Postgres)
        } else {
            Err(Error::Invalid(
                "database URL must start with sqlite: or postgres://".to_string(),
            ))
        }
    }
}

/// A connected, migrated database.
#[derive(Clone, Debug)]
pub struct Db {
    pool: AnyPool,
    kind: DbKind,
}

impl Db {
    /// Connects to `url`, creating a SQLite file if needed, and applies migrations.
    pub async fn connect(url: &str) -> Result<Self, Error> {
        install_default_drivers();
        let kind: DbKind = url.parse()?;
        let url = match kind {
            DbKind::Sqlite if !url.contains("mode=") && !url.contains(":memory:") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_string(),
        };
        let mut options = AnyPoolOptions::new().acquire_timeout(Duration::from_secs(10));
        options = match kind {
            DbKind::Sqlite => options.max_connections(4).after_connect(|conn, _| {
                Box::pin(async move {
                    conn.execute(
                        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                         PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;",
                    )
                    .await?;
                    Ok(())
                })
            }),
            DbKind::Postgres => options.max_connections(16),
        };
        let pool = options.connect(&url).await?;
        match kind {
            DbKind::Sqlite => SQLITE_MIGRATIONS.run(&pool).await?,
            DbKind::Postgres => POSTGRES_MIGRATIONS.run(&pool).await?,
        }
        Ok(Db { pool, kind })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn kind(&self) -> DbKind {
        self.kind
    }

    /// A trivial round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), Error> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Closes the pool, waiting for connections to return.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// How far a database's schema is from the migrations this build embeds, read without
/// changing anything (for `tokengate-server doctor`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigrationStatus {
    /// A SQLite URL whose file does not exist yet (the server creates it at start).
    Missing,
    /// Every embedded migration is applied.
    Current { applied: usize },
    /// Migrations the server will apply at its next start.
    Pending { applied: usize, pending: usize },
    /// A migration that failed half-way, or one this build does not know (a newer build
    /// migrated this database).
    Broken(String),
}

/// Connects to `url` read-only (SQLite) or with a short timeout (PostgreSQL) and compares
/// its applied migrations with the embedded ones. An error means unreachable.
pub async fn migration_status(url: &str) -> Result<MigrationStatus, Error> {
    install_default_drivers();
    let kind: DbKind = url.parse()?;
    let url = match kind {
        DbKind::Sqlite => {
            let path = url
                .trim_start_matches("sqlite:")
                .trim_start_matches("//")
                .split('?')
                .next()
                .unwrap_or("");
            if !path.is_empty() && path != ":memory:" && !std::path::Path::new(path).exists() {
                return Ok(MigrationStatus::Missing);
            }
            let sep = if url.contains('?') { '&' } else { '?' };
            format!("{url}{sep}mode=ro")
        }
        DbKind::Postgres => url.to_string(),
    };
    let pool = AnyPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await?;
    let table = match kind {
        DbKind::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '_sqlx_migrations'"
        }
        DbKind::Postgres => {
            "SELECT COUNT(*) FROM information_schema.tables WHERE table_name = '_sqlx_migrations' \
             AND table_schema = current_schema()"
        }
    };
    let has_table: i64 = sqlx::query_scalar(table).fetch_one(&pool).await?;
    let rows: Vec<(i64, i64)> = if has_table > 0 {
        // `success` is a boolean, which the Any driver cannot decode from SQLite.
        sqlx::query_as(
            "SELECT version, CAST(CASE WHEN success THEN 1 ELSE 0 END AS BIGINT) \
             FROM _sqlx_migrations",
        )
        .fetch_all(&pool)
        .await?
    } else {
        Vec::new()
    };
    pool.close().await;
    let migrator = match kind {
        DbKind::Sqlite => &SQLITE_MIGRATIONS,
        DbKind::Postgres => &POSTGRES_MIGRATIONS,
    };
    let known: Vec<i64> = migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .map(|m| m.version)
        .collect();
    if let Some((v, _)) = rows.iter().find(|(_, ok)| *ok == 0) {
        return Ok(MigrationStatus::Broken(format!(
            "migration {v} failed half-way"
        )));
    }
    if let Some((v, _)) = rows.iter().find(|(v, _)| !known.contains(v)) {
        return Ok(MigrationStatus::Broken(format!(
            "migration {v} is not known to this build (a newer tokengate migrated it)"
        )));
    }
    let applied = rows.len();
    match known.len().saturating_sub(applied) {
        0 => Ok(MigrationStatus::Current { applied }),
        pending => Ok(MigrationStatus::Pending { applied, pending }),
    }
}
