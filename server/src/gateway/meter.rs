//! Metering off the request path. A finished request's record goes, in this order:
//! 1. into an in-memory channel ([`Meter::record`], never blocks);
//! 2. into the usage write-ahead log, an append-only file in the data directory, written
//!    by one thread in group commits within a millisecond of their arrival (so a crashed
//!    process loses at most the records of the last millisecond, not a flush interval);
//! 3. into the database in batches (request-log rows, ledger entries, balance and
//!    key-spend updates in one transaction) at least every flush interval, sooner when a
//!    batch is full, and once more on shutdown. WAL segments whose records are all in the
//!    database are deleted; at start, records of a crashed run that are not in the
//!    database yet are written (matched by request id, so nothing is charged twice).
//!
//! A batch that fails because the database is unreachable is retried whole. A batch that
//! the database refuses for its content is split until the offending rows are isolated;
//! those are written without their free-text fields (quarantined, logged and counted), so
//! one bad row can never stop billing for everyone.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use tokengate_core::usage::{self, RequestRecord};
use tokengate_core::{Db, Error};
use tokio::sync::{mpsc, oneshot};

use super::money::Money;

/// Rows that trigger a database write before the interval ends.
const MAX_BATCH: usize = 8192;
/// Records taken from the channel per WAL group write.
const MAX_GROUP: usize = 4096;
/// A WAL segment is sealed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Longest time between a WAL write and its `fsync` (power-loss bound).
const SYNC_EVERY: Duration = Duration::from_millis(100);
/// How often the WAL thread looks for records while they keep coming.
const POLL: Duration = Duration::from_millis(1);
/// Empty polls (about 100 ms) after which the WAL thread parks until the next record.
const PARK_AFTER: u32 = 100;
/// Request ids checked per query when replaying a WAL at start.
const REPLAY_CHUNK: usize = 500;

/// The sending side; cheap to clone.
#[derive(Clone)]
pub struct Meter {
    tx: std_mpsc::Sender<RequestRecord>,
    stats: Arc<MeterStats>,
}

/// Counters of the usage writer, for health reporting.
#[derive(Debug, Default)]
pub struct MeterStats {
    /// Rows written without their free-text fields because the database refused them.
    pub quarantined: AtomicU64,
    /// Rows the database refused even without free text (logged in full, not written).
    pub dropped: AtomicU64,
    /// Records replayed from the write-ahead log at the last start.
    pub replayed: AtomicU64,
    /// Requests charged more than their hold (the balance may go below zero by that much).
    pub overruns: AtomicU64,
}

/// Stops the writers after a final flush.
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

/// Where the write-ahead log lives.
#[derive(Debug, Clone)]
pub struct WalConfig {
    pub dir: PathBuf,
}

impl Meter {
    /// Queues one finished request. Never blocks.
    pub fn record(&self, r: RequestRecord) {
        if self.tx.send(r).is_err() {
            tracing::error!("usage record after the usage writer stopped");
        }
    }

    /// The writer's counters.
    pub fn stats(&self) -> &MeterStats {
        &self.stats
    }

    /// Replays what a previous run left in the write-ahead log, then starts the WAL
    /// thread and the database flusher.
    pub async fn start(
        db: Db,
        money: Arc<Money>,
        interval: Duration,
        wal: WalConfig,
    ) -> Result<(Meter, MeterShutdown), Error> {
        let stats = Arc::new(MeterStats::default());
        fs::create_dir_all(&wal.dir)
            .map_err(|e| Error::Invalid(format!("usage WAL directory: {e}")))?;
        let replayed = replay(&db, &wal.dir).await?;
        stats.replayed.store(replayed, Ordering::Relaxed);

        let (tx, rx) = std_mpsc::channel::<RequestRecord>();
        let (fwd_tx, fwd_rx) = mpsc::unbounded_channel::<(u64, Vec<RequestRecord>)>();
        let flushed_through = Arc::new(AtomicU64::new(0));
        let stopping = Arc::new(AtomicBool::new(false));
        let writer =
            WalWriter::open(&wal.dir).map_err(|e| Error::Invalid(format!("usage WAL: {e}")))?;
        let thread = {
            let flushed_through = flushed_through.clone();
            let stopping = stopping.clone();
            std::thread::Builder::new()
                .name("usage-wal".into())
                .spawn(move || writer.run(rx, fwd_tx, &flushed_through, &stopping))
                .map_err(|e| Error::Invalid(format!("usage WAL thread: {e}")))?
        };
        let (stop, stop_rx) = oneshot::channel();
        let flusher = Flusher {
            db,
            money,
            stats: stats.clone(),
            flushed_through,
        };
        let done = tokio::spawn(flusher.run(fwd_rx, stop_rx, interval, stopping, thread, wal.dir));
        Ok((Meter { tx, stats }, MeterShutdown { stop, done }))
    }
}

/// The append-only files of the write-ahead log: `usage-<first seq>.wal`, one JSON record
/// per line.
struct WalWriter {
    dir: PathBuf,
    file: File,
    path: PathBuf,
    size: u64,
    /// Highest sequence number in the current segment.
    last_in_file: u64,
    /// Sealed segments and the highest sequence number each holds.
    sealed: Vec<(PathBuf, u64)>,
    seq: u64,
    synced: Instant,
    dirty: bool,
}

fn segment_path(dir: &Path, first_seq: u64) -> PathBuf {
    dir.join(format!("usage-{first_seq:020}.wal"))
}

/// The WAL segments in `dir`, oldest first.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("usage-") && n.ends_with(".wal"))
        })
        .collect();
    v.sort();
    v
}

impl WalWriter {
    fn open(dir: &Path) -> std::io::Result<WalWriter> {
        let path = segment_path(dir, 1);
        let file = OpenOptions::new()
            .create(true)
            .truncate(true)
            .write(true)
            .open(&path)?;
        Ok(WalWriter {
            dir: dir.to_path_buf(),
            file,
            path,
            size: 0,
            last_in_file: 0,
            sealed: Vec::new(),
            seq: 0,
            synced: Instant::now(),
            dirty: false,
        })
    }

    /// Appends a group of records in one write.
    fn append(&mut self, group: &[RequestRecord]) -> std::io::Result<()> {
        let mut buf = Vec::with_capacity(group.len() * 320);
        for r in group {
            serde_json::to_writer(&mut buf, r).map_err(std::io::Error::other)?;
            buf.push(b'\n');
        }
        self.file.write_all(&buf)?;
        self.size += buf.len() as u64;
        self.seq += group.len() as u64;
        self.last_in_file = self.seq;
        self.dirty = true;
        if self.synced.elapsed() >= SYNC_EVERY {
            self.sync();
        }
        Ok(())
    }

    fn sync(&mut self) {
        if self.dirty {
            if let Err(e) = self.file.sync_data() {
                tracing::warn!(error = %e, "usage WAL fsync failed");
            }
            self.dirty = false;
        }
        self.synced = Instant::now();
    }

    /// Deletes segments whose records are all in the database, and starts a new segment
    /// when the current one is large or fully flushed.
    fn compact(&mut self, flushed_through: u64) -> std::io::Result<()> {
        self.sealed.retain(|(p, last)| {
            if *last <= flushed_through {
                let _ = fs::remove_file(p);
                false
            } else {
                true
            }
        });
        let all_flushed = self.size > 0 && self.last_in_file <= flushed_through;
        if all_flushed || self.size >= SEGMENT_BYTES {
            self.sync();
            let path = segment_path(&self.dir, self.seq + 1);
            let file = OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .open(&path)?;
            let old = std::mem::replace(&mut self.path, path);
            self.file = file;
            self.size = 0;
            if all_flushed {
                let _ = fs::remove_file(&old);
            } else {
                self.sealed.push((old, self.last_in_file));
            }
        }
        Ok(())
    }

    fn run(
        mut self,
        rx: std_mpsc::Receiver<RequestRecord>,
        fwd: mpsc::UnboundedSender<(u64, Vec<RequestRecord>)>,
        flushed_through: &AtomicU64,
        stopping: &AtomicBool,
    ) {
        // Under load the thread polls every POLL instead of sleeping in `recv`: a record
        // sent to a parked receiver costs the request path a futex wake and a context
        // switch, which on two cores cost a fifth of the throughput. After PARK_AFTER empty
        // polls it parks until the next record.
        let mut idle = 0u32;
        loop {
            let first = if idle >= PARK_AFTER {
                match rx.recv_timeout(SYNC_EVERY) {
                    Ok(r) => Some(r),
                    Err(std_mpsc::RecvTimeoutError::Timeout) => None,
                    Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
                }
            } else {
                std::thread::sleep(POLL);
                match rx.try_recv() {
                    Ok(r) => Some(r),
                    Err(std_mpsc::TryRecvError::Empty) => None,
                    Err(std_mpsc::TryRecvError::Disconnected) => return,
                }
            };
            let mut group: Vec<RequestRecord> = first.into_iter().collect();
            while group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(r) => group.push(r),
                    Err(_) => break,
                }
            }
            if group.is_empty() {
                idle = idle.saturating_add(1);
                if idle >= PARK_AFTER {
                    self.sync();
                    if let Err(e) = self.compact(flushed_through.load(Ordering::Acquire)) {
                        tracing::warn!(error = %e, "usage WAL compaction failed");
                    }
                }
                if stopping.load(Ordering::Acquire) {
                    return;
                }
                continue;
            }
            idle = 0;
            for r in &mut group {
                r.sanitize();
            }
            if let Err(e) = self.append(&group) {
                // The records still reach the database; only the crash bound is lost.
                tracing::error!(error = %e, rows = group.len(), "usage WAL write failed");
            }
            if fwd.send((self.seq, group)).is_err() {
                return;
            }
            if self.size >= SEGMENT_BYTES
                && let Err(e) = self.compact(flushed_through.load(Ordering::Acquire))
            {
                tracing::warn!(error = %e, "usage WAL compaction failed");
            }
        }
    }
}

/// Reads the records of every WAL segment in `dir`, skipping a torn last line.
fn read_wal(dir: &Path) -> Vec<RequestRecord> {
    let mut out = Vec::new();
    for path in segments(dir) {
        let Ok(f) = File::open(&path) else { continue };
        for line in BufReader::new(f).split(b'\n') {
            let Ok(line) = line else { break };
            match serde_json::from_slice::<RequestRecord>(&line) {
                Ok(r) => out.push(r),
                Err(_) if line.is_empty() => {}
                Err(e) => {
                    tracing::warn!(file = %path.display(), error = %e, "skipping an unreadable usage WAL line")
                }
            }
        }
    }
    out
}

/// Writes the records a previous run left in the WAL that are not in the database yet,
/// then removes the segments. Returns how many were written.
async fn replay(db: &Db, dir: &Path) -> Result<u64, Error> {
    let records = read_wal(dir);
    if records.is_empty() {
        for p in segments(dir) {
            let _ = fs::remove_file(p);
        }
        return Ok(0);
    }
    let mut seen: HashSet<String> = HashSet::new();
    let mut missing = Vec::new();
    for chunk in records.chunks(REPLAY_CHUNK) {
        let ids: Vec<String> = chunk.iter().map(|r| r.request_id.clone()).collect();
        let present = usage::existing_request_ids(db, &ids).await?;
        for r in chunk {
            if !present.contains(&r.request_id) && seen.insert(r.request_id.clone()) {
                missing.push(r.clone());
            }
        }
    }
    let n = missing.len() as u64;
    let stats = MeterStats::default();
    for chunk in missing.chunks(MAX_BATCH) {
        let mut batch = chunk.to_vec();
        write_isolating(db, &mut batch, &stats, &mut |_, _| {}).await?;
    }
    for p in segments(dir) {
        let _ = fs::remove_file(p);
    }
    if n > 0 {
        tracing::warn!(
            rows = n,
            of = records.len(),
            "usage of a previous run replayed from the write-ahead log"
        );
    }
    Ok(n)
}

/// Told of each committed part of a batch and the balances it produced.
type Written<'a> = dyn FnMut(&[RequestRecord], &[(i64, i64)]) + Send + 'a;

/// Writes `batch`; when the database refuses its content, splits it until each refused
/// row is alone and writes that row quarantined. Calls `written` with each committed
/// part and the balances it produced. Returns `Err` only when the database could not be
/// reached; the rows not yet written are then left in `batch`.
async fn write_isolating(
    db: &Db,
    batch: &mut Vec<RequestRecord>,
    stats: &MeterStats,
    written: &mut Written<'_>,
) -> Result<(), Error> {
    // Ranges of `batch` still to write, in order from the end of the stack; every row
    // before the range being written is done.
    let mut todo: Vec<(usize, usize)> = vec![(0, batch.len())];
    while let Some((lo, hi)) = todo.pop() {
        let part = &batch[lo..hi];
        match usage::write_batch(db, part).await {
            Ok(balances) => written(part, &balances),
            Err(e) if usage::is_data_error(&e) => {
                if hi - lo > 1 {
                    let mid = lo + (hi - lo) / 2;
                    todo.push((mid, hi));
                    todo.push((lo, mid));
                    continue;
                }
                let q = batch[lo].quarantined();
                stats.quarantined.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, request_id = %q.request_id, "usage row refused by the database; writing it without its free text");
                match usage::write_batch(db, std::slice::from_ref(&q)).await {
                    Ok(balances) => written(std::slice::from_ref(&q), &balances),
                    Err(e2) if usage::is_data_error(&e2) => {
                        stats.dropped.fetch_add(1, Ordering::Relaxed);
                        tracing::error!(error = %e2, row = ?q, "usage row refused even without free text; not written");
                    }
                    Err(e2) => {
                        batch.drain(..lo);
                        return Err(e2);
                    }
                }
            }
            Err(e) => {
                batch.drain(..lo);
                return Err(e);
            }
        }
    }
    batch.clear();
    Ok(())
}

struct Flusher {
    db: Db,
    money: Arc<Money>,
    stats: Arc<MeterStats>,
    flushed_through: Arc<AtomicU64>,
}

impl Flusher {
    /// Writes everything in `batch`; on success, everything up to `through` is durable.
    async fn flush(&self, batch: &mut Vec<RequestRecord>, through: u64) -> bool {
        if batch.is_empty() {
            self.flushed_through.store(through, Ordering::Release);
            return true;
        }
        let money = &self.money;
        let mut applied = |rows: &[RequestRecord], balances: &[(i64, i64)]| {
            let mut users: HashMap<i64, i64> = HashMap::new();
            let mut keys: HashMap<i64, i64> = HashMap::new();
            for r in rows.iter().filter(|r| r.cost_nano != 0) {
                *users.entry(r.user_id).or_default() += r.cost_nano;
                *keys.entry(r.key_id).or_default() += r.cost_nano;
            }
            money.flushed(balances, &users, &keys);
        };
        match write_isolating(&self.db, batch, &self.stats, &mut applied).await {
            Ok(()) => {
                self.flushed_through.store(through, Ordering::Release);
                true
            }
            Err(e) => {
                tracing::error!(error = %e, rows = batch.len(), "usage flush failed; will retry");
                false
            }
        }
    }

    async fn run(
        self,
        mut rx: mpsc::UnboundedReceiver<(u64, Vec<RequestRecord>)>,
        mut stop: oneshot::Receiver<()>,
        interval: Duration,
        stopping: Arc<AtomicBool>,
        thread: std::thread::JoinHandle<()>,
        wal_dir: PathBuf,
    ) {
        let mut thread = Some(thread);
        let mut batch: Vec<RequestRecord> = Vec::new();
        let mut through = 0u64;
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    while let Ok((seq, group)) = rx.try_recv() {
                        batch.extend(group);
                        through = seq;
                    }
                    self.flush(&mut batch, through).await;
                }
                Some((seq, group)) = rx.recv(), if batch.len() < MAX_BATCH => {
                    batch.extend(group);
                    through = seq;
                    if batch.len() >= MAX_BATCH {
                        self.flush(&mut batch, through).await;
                    }
                }
                _ = &mut stop => {
                    // The WAL thread writes what is queued, forwards it and exits.
                    stopping.store(true, Ordering::Release);
                    if let Some(t) = thread.take() {
                        let _ = tokio::task::spawn_blocking(move || t.join()).await;
                    }
                    while let Some((seq, group)) = rx.recv().await {
                        batch.extend(group);
                        through = seq;
                    }
                    for _ in 0..5 {
                        if self.flush(&mut batch, through).await {
                            break;
                        }
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    if batch.is_empty() {
                        for p in segments(&wal_dir) {
                            let _ = fs::remove_file(p);
                        }
                    } else {
                        tracing::error!(rows = batch.len(), "usage rows could not be written at shutdown; they stay in the write-ahead log for the next start");
                    }
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str) -> RequestRecord {
        RequestRecord {
            request_id: id.into(),
            user_id: 1,
            key_id: 1,
            endpoint: "/v1/chat/completions".into(),
            model: "m".into(),
            status: 200,
            cost_nano: 5,
            ..RequestRecord::default()
        }
    }

    #[test]
    fn wal_segments_roundtrip_skip_torn_lines_and_compact() {
        let dir = std::env::temp_dir().join(format!("tg-wal-{}", rand::random::<u64>()));
        fs::create_dir_all(&dir).unwrap();
        let mut w = WalWriter::open(&dir).unwrap();
        w.append(&[rec("a"), rec("b")]).unwrap();
        w.append(&[rec("c")]).unwrap();
        // A torn write at the crash.
        w.file.write_all(b"{\"request_id\":\"d\",\"us").unwrap();
        let ids: Vec<String> = read_wal(&dir).into_iter().map(|r| r.request_id).collect();
        assert_eq!(ids, ["a", "b", "c"]);
        // Nothing flushed: the segment stays.
        w.compact(0).unwrap();
        assert_eq!(read_wal(&dir).len(), 3);
        // All flushed: the segment is deleted and a new one begun.
        w.compact(3).unwrap();
        assert!(read_wal(&dir).is_empty());
        w.append(&[rec("e")]).unwrap();
        assert_eq!(read_wal(&dir).len(), 1);
        assert_eq!(segments(&dir).len(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
