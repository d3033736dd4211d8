//! Metering off the request path: finished requests are queued in memory and written in
//! batches (request-log rows, ledger entries, balance and key-spend updates in one
//! transaction) at least every flush interval and once more on shutdown. A failed write is
//! retried with the same batch, so nothing queued is dropped while the process lives.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokengate_core::Db;
use tokengate_core::usage::{self, RequestRecord};
use tokio::sync::{mpsc, oneshot};

use super::money::Money;

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Meter {
    tx: mpsc::UnboundedSender<RequestRecord>,
}

/// Stops the flusher after a final flush.
pub struct MeterShutdown {
    stop: oneshot::Sender<()>,
    done: tokio::task::JoinHandle<()>,
}

impl MeterShutdown {
    /// Flushes everything queued and waits for the flusher to finish.
    pub async fn flush_and_stop(self) {
        let _ = self.stop.send(());
        let _ = self.done.await;
    }
}

impl Meter {
    /// Queues one finished request. Never blocks.
    pub fn record(&self, r: RequestRecord) {
        if self.tx.send(r).is_err() {
            tracing::error!("usage record after the flusher stopped");
        }
    }

    /// Starts the flusher task.
    pub fn start(db: Db, money: Arc<Money>, interval: Duration) -> (Meter, MeterShutdown) {
        let (tx, rx) = mpsc::unbounded_channel();
        let (stop, stop_rx) = oneshot::channel();
        let done = tokio::spawn(run(db, money, rx, stop_rx, interval));
        (Meter { tx }, MeterShutdown { stop, done })
    }
}

async fn flush(db: &Db, money: &Money, batch: &mut Vec<RequestRecord>) {
    if batch.is_empty() {
        return;
    }
    match usage::write_batch(db, batch).await {
        Ok(balances) => {
            let mut users: HashMap<i64, i64> = HashMap::new();
            let mut keys: HashMap<i64, i64> = HashMap::new();
            for r in batch.iter().filter(|r| r.cost_nano != 0) {
                *users.entry(r.user_id).or_default() += r.cost_nano;
                *keys.entry(r.key_id).or_default() += r.cost_nano;
            }
            money.flushed(&balances, &users, &keys);
            batch.clear();
        }
        Err(e) => tracing::error!(error = %e, rows = batch.len(), "usage flush failed; will retry"),
    }
}

async fn run(
    db: Db,
    money: Arc<Money>,
    mut rx: mpsc::UnboundedReceiver<RequestRecord>,
    mut stop: oneshot::Receiver<()>,
    interval: Duration,
) {
    let mut batch: Vec<RequestRecord> = Vec::new();
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                while let Ok(r) = rx.try_recv() {
                    batch.push(r);
                }
                flush(&db, &money, &mut batch).await;
            }
            _ = &mut stop => {
                rx.close();
                while let Some(r) = rx.recv().await {
                    batch.push(r);
                }
                for _ in 0..5 {
                    flush(&db, &money, &mut batch).await;
                    if batch.is_empty() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                if !batch.is_empty() {
                    tracing::error!(rows = batch.len(), "usage rows could not be written at shutdown");
                }
                return;
            }
        }
    }
}
