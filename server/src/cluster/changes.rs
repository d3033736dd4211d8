//! Pushed changes (cluster control plane): every change to keys, account statuses and
//! sign-out epochs, or the catalog, is numbered by the database in its own transaction
//! (`tokengate_core::changes`) and, on PostgreSQL, announced with `NOTIFY
//! tokengate_changes` at commit. Each instance LISTENs on one dedicated connection and
//! wakes its refresher, which reads only what is newer than the last number it applied —
//! so a revocation on one instance applies on the others within milliseconds. After the
//! listening connection is lost and re-established, the refresher reloads everything; a
//! slow poll stays as a backstop (and is all there is on SQLite, whose single instance
//! applies its own changes at once).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
use tokengate_core::changes::CHANNEL;
use tokio::sync::Notify;

/// The `application_name` of the listening connection (visible in `pg_stat_activity`).
pub const LISTENER_APP_NAME: &str = "tokengate-changes";

/// Longest pause between two attempts to re-establish the listening connection.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// What wakes the refresher: a change was announced, or everything must be re-read.
#[derive(Default)]
pub struct Wake {
    notify: Notify,
    full: AtomicBool,
}

impl Wake {
    /// Something changed: apply what is newer than the last change applied.
    pub fn changes(&self) {
        self.notify.notify_one();
    }

    /// Re-read everything (after the listening connection was re-established).
    pub fn full(&self) {
        self.full.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Waits for the next wake-up (several coalesce into one); true when a full reload
    /// was asked for.
    pub async fn wait(&self) -> bool {
        self.notify.notified().await;
        self.full.swap(false, Ordering::AcqRel)
    }
}

async fn connect(url: &str) -> Result<PgListener, sqlx::Error> {
    let options: PgConnectOptions = url.parse()?;
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options.application_name(LISTENER_APP_NAME))
        .await?;
    let mut listener = PgListener::connect_with(&pool).await?;
    listener.listen(CHANNEL).await?;
    Ok(listener)
}

/// LISTENs on the change channel of the PostgreSQL database at `url` and wakes `wake` on
/// every notification, until the task is aborted. A lost connection is re-established
/// (with backoff) and followed by a full reload.
pub fn listen(url: String, wake: Arc<Wake>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(100);
        let mut connected_before = false;
        loop {
            match connect(&url).await {
                Ok(mut listener) => {
                    backoff = Duration::from_millis(100);
                    if connected_before {
                        tracing::info!(
                            "change notifications: listening again; reloading everything"
                        );
                        wake.full();
                    } else {
                        // Changes made between the first load and LISTEN.
                        wake.changes();
                    }
                    connected_before = true;
                    loop {
                        match listener.try_recv().await {
                            Ok(Some(_)) => wake.changes(),
                            Ok(None) => {
                                tracing::warn!("change notifications: connection lost");
                                break;
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "change notifications: connection failed");
                                break;
                            }
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "change notifications: cannot listen");
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wake_ups_coalesce_and_a_full_reload_is_reported_once() {
        let wake = Wake::default();
        wake.changes();
        wake.changes();
        assert!(!wake.wait().await);
        wake.changes();
        wake.full();
        assert!(wake.wait().await);
        // Nothing pending now.
        let pending = tokio::time::timeout(Duration::from_millis(20), wake.wait()).await;
        assert!(pending.is_err());
    }
}
