//! The instance registry of the cluster control plane: one `instances` row per running
//! server (registered at start, a heartbeat every second, removed on a graceful shutdown)
//! and which of them are live. Every time here is read from the database's clock, never
//! an instance's, so instances with skewed clocks agree on who is live.

use crate::{Db, DbKind, Error};

/// An instance is live while its last heartbeat is at most this old (database clock).
pub const LIVE_WITHIN_MS: i64 = 5_000;

/// One registered instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// Random per process start.
    pub id: String,
    /// The server's version (`CARGO_PKG_VERSION`).
    pub version: String,
    /// The address it listens on.
    pub listen: String,
    /// The URL it is published under.
    pub public_url: String,
    /// Whether it runs in cluster mode (with Redis).
    pub cluster: bool,
    /// Unix milliseconds, database clock.
    pub started_at: i64,
    /// Unix milliseconds, database clock.
    pub last_seen_at: i64,
}

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    version: String,
    listen: String,
    public_url: String,
    cluster: i64,
    started_at: i64,
    last_seen_at: i64,
}

impl From<Row> for Instance {
    fn from(r: Row) -> Instance {
        Instance {
            id: r.id,
            version: r.version,
            listen: r.listen,
            public_url: r.public_url,
            cluster: r.cluster != 0,
            started_at: r.started_at,
            last_seen_at: r.last_seen_at,
        }
    }
}

/// The database's current time in unix milliseconds, as an SQL expression.
fn now_sql(kind: DbKind) -> &'static str {
    match kind {
        DbKind::Postgres => "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT",
        DbKind::Sqlite => "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)",
    }
}

/// The database's current time in unix milliseconds.
pub async fn db_now(db: &Db) -> Result<i64, Error> {
    Ok(
        sqlx::query_scalar(&format!("SELECT {}", now_sql(db.kind())))
            .fetch_one(db.pool())
            .await?,
    )
}

/// Registers (or re-registers) `me`, started and last seen now, and drops rows whose
/// heartbeat stopped more than a day ago.
pub async fn register(db: &Db, me: &Instance) -> Result<(), Error> {
    let now = now_sql(db.kind());
    sqlx::query(&format!(
        "INSERT INTO instances (id, version, listen, public_url, cluster, started_at, \
         last_seen_at) VALUES ($1, $2, $3, $4, $5, {now}, {now}) ON CONFLICT (id) DO UPDATE \
         SET last_seen_at = excluded.last_seen_at"
    ))
    .bind(&me.id)
    .bind(&me.version)
    .bind(&me.listen)
    .bind(&me.public_url)
    .bind(i64::from(me.cluster))
    .execute(db.pool())
    .await?;
    sqlx::query(&format!(
        "DELETE FROM instances WHERE last_seen_at < {now} - 86400000"
    ))
    .execute(db.pool())
    .await?;
    Ok(())
}

/// Records a heartbeat of `id`. False when its row is gone (removed by hand, or pruned
/// after a long stall): the caller registers again.
pub async fn heartbeat(db: &Db, id: &str) -> Result<bool, Error> {
    let n = sqlx::query(&format!(
        "UPDATE instances SET last_seen_at = {} WHERE id = $1",
        now_sql(db.kind())
    ))
    .bind(id)
    .execute(db.pool())
    .await?
    .rows_affected();
    Ok(n > 0)
}

/// Updates the address an instance listens on (known once its listener is bound).
pub async fn set_listen(db: &Db, id: &str, listen: &str) -> Result<(), Error> {
    sqlx::query("UPDATE instances SET listen = $1 WHERE id = $2")
        .bind(listen)
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// Removes an instance's row (graceful shutdown).
pub async fn deregister(db: &Db, id: &str) -> Result<(), Error> {
    sqlx::query("DELETE FROM instances WHERE id = $1")
        .bind(id)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// The database's time and every live instance (heartbeat within [`LIVE_WITHIN_MS`] of
/// it), oldest first.
pub async fn live(db: &Db) -> Result<(i64, Vec<Instance>), Error> {
    let now = db_now(db).await?;
    let rows = sqlx::query_as::<_, Row>(
        "SELECT id, version, listen, public_url, cluster, started_at, last_seen_at \
         FROM instances WHERE last_seen_at >= $1 ORDER BY started_at, id",
    )
    .bind(now - LIVE_WITHIN_MS)
    .fetch_all(db.pool())
    .await?;
    Ok((now, rows.into_iter().map(Instance::from).collect()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn me(id: &str, cluster: bool) -> Instance {
        Instance {
            id: id.into(),
            version: "0.0.0".into(),
            listen: "127.0.0.1:0".into(),
            public_url: "http://127.0.0.1:3000".into(),
            cluster,
            started_at: 0,
            last_seen_at: 0,
        }
    }

    #[tokio::test]
    async fn registered_instances_are_live_until_they_leave_or_go_quiet() {
        let path = std::env::temp_dir().join(format!(
            "tokengate-instances-{}-{}.db",
            std::process::id(),
            crate::now_ms()
        ));
        let db = Db::connect(&format!("sqlite://{}", path.display()))
            .await
            .unwrap();
        register(&db, &me("a", false)).await.unwrap();
        register(&db, &me("b", true)).await.unwrap();
        let (now, live_now) = live(&db).await.unwrap();
        assert_eq!(live_now.len(), 2);
        let a = live_now.iter().find(|i| i.id == "a").unwrap();
        assert!(!a.cluster && (now - a.last_seen_at).abs() < 2_000, "{a:?}");
        assert!(live_now.iter().any(|i| i.id == "b" && i.cluster));

        // A heartbeat older than the live window: no longer live.
        sqlx::query("UPDATE instances SET last_seen_at = last_seen_at - 6000 WHERE id = 'a'")
            .execute(db.pool())
            .await
            .unwrap();
        let ids: Vec<String> = live(&db)
            .await
            .unwrap()
            .1
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["b"]);
        // Its next heartbeat makes it live again.
        assert!(heartbeat(&db, "a").await.unwrap());
        assert_eq!(live(&db).await.unwrap().1.len(), 2);

        set_listen(&db, "b", "127.0.0.1:4000").await.unwrap();
        deregister(&db, "b").await.unwrap();
        let ids: Vec<String> = live(&db)
            .await
            .unwrap()
            .1
            .into_iter()
            .map(|i| i.id)
            .collect();
        assert_eq!(ids, ["a"]);
        assert!(
            !heartbeat(&db, "b").await.unwrap(),
            "a removed row is reported"
        );
        db.close().await;
        let _ = std::fs::remove_file(&path);
    }
}
