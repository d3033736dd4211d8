//! This server's entry in the instance registry (cluster control plane): registered at
//! start, a heartbeat every second, removed on a graceful shutdown; liveness is judged on
//! the database's clock (`tokengate_core::instances`).
//!
//! The guard: without Redis every instance keeps holds, unflushed charges, rate-limit
//! windows and sign-in throttles in its own memory, so a second live instance on the same
//! database would let accounts overspend and multiply every limit. An instance is
//! therefore refused at start while another live instance exists on its database and
//! either of the two runs without Redis. A heartbeat older than five seconds is not live,
//! so a crashed instance does not block its replacement: a conflicting instance whose
//! heartbeat does not move is waited out (at most the live window), one whose heartbeat
//! moves is running and refuses the start at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use tokengate_core::instances::{self, Instance, LIVE_WITHIN_MS};
use tokengate_core::{Db, Error};

/// Time between two heartbeats.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// Time between two looks at a conflicting instance's heartbeat.
const WATCH: Duration = Duration::from_millis(250);

/// Start refused: another live instance shares the database and one of them has no Redis.
#[derive(Debug, thiserror::Error)]
#[error(
    "\n\n*** ANOTHER INSTANCE IS RUNNING ON THIS DATABASE ***\nInstance {other_id} (tokengate \
     {other_version}, listening on {other_listen}, public URL {other_url}) has a live heartbeat \
     on this database (last seen {age_ms} ms ago, database clock), and {who} without Redis. \
     Without Redis each instance keeps holds, unflushed charges, rate-limit windows and \
     sign-in throttles in its own memory: two instances on one database would let accounts \
     overspend and multiply every rate limit.\nFix: set TOKENGATE_REDIS_URL (redis_url) on \
     every instance to run them as a cluster on PostgreSQL + Redis (docs/deploy.md), or stop \
     the other instance first. An instance whose heartbeat is older than 5 seconds (crashed) \
     no longer counts, so a rolling restart needs no action.\n"
)]
pub struct Conflict {
    pub other_id: String,
    pub other_version: String,
    pub other_listen: String,
    pub other_url: String,
    pub age_ms: i64,
    /// "this instance runs" or "that instance runs".
    who: &'static str,
}

/// This process's registration; [`Registration::leave`] removes it.
pub struct Registration {
    db: Db,
    id: String,
    heartbeat: tokio::task::JoinHandle<()>,
    /// Set by [`Registration::leave`].
    left: bool,
}

impl Drop for Registration {
    fn drop(&mut self) {
        // A server dropped without serving (a start that failed after registering, a
        // test) stops beating and tries to leave; if that cannot run, its row goes stale
        // within the live window.
        self.heartbeat.abort();
        if !self.left
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let (db, id) = (self.db.clone(), self.id.clone());
            rt.spawn(async move {
                let _ = instances::deregister(&db, &id).await;
            });
        }
    }
}

/// The live instances that `me` must give way to: those started before it (database
/// clock, ties broken by id) where either side runs without Redis. An instance started
/// after `me` is left to its own guard, which gives way to `me`: of two instances started
/// at the same moment exactly one runs.
fn conflicting<'a>(me: &Instance, live: &'a [Instance]) -> Vec<&'a Instance> {
    live.iter()
        .filter(|i| {
            i.id != me.id
                && (!me.cluster || !i.cluster)
                && (i.started_at, &i.id) < (me.started_at, &me.id)
        })
        .collect()
}

fn refusal(me: &Instance, other: &Instance, now: i64) -> Conflict {
    Conflict {
        other_id: other.id.clone(),
        other_version: other.version.clone(),
        other_listen: other.listen.clone(),
        other_url: other.public_url.clone(),
        age_ms: (now - other.last_seen_at).max(0),
        who: if me.cluster {
            "that instance runs"
        } else {
            "this instance runs"
        },
    }
}

/// Why [`register`] failed.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Conflict(#[from] Conflict),
    #[error("instance registry: {0}")]
    Db(#[from] Error),
}

/// A new random instance id (16 hex digits).
pub fn new_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// Registers this instance (`cluster`: it runs with Redis), applies the guard, and starts
/// the heartbeat.
pub async fn register(
    db: &Db,
    listen: &str,
    public_url: &str,
    cluster: bool,
) -> Result<Registration, RegisterError> {
    let me = Instance {
        id: new_id(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        listen: listen.to_string(),
        public_url: public_url.to_string(),
        cluster,
        started_at: 0,
        last_seen_at: 0,
    };
    instances::register(db, &me).await?;
    if let Err(e) = guard(db, &me).await {
        let _ = instances::deregister(db, &me.id).await;
        return Err(e);
    }
    let heartbeat = tokio::spawn(beat(db.clone(), me.clone()));
    tracing::info!(instance = %me.id, cluster, "registered in the instance registry");
    Ok(Registration {
        db: db.clone(),
        id: me.id,
        heartbeat,
        left: false,
    })
}

/// Refuses the start while a conflicting instance is live and its heartbeat moves; waits
/// out one whose heartbeat stands still (crashed) until it is stale.
async fn guard(db: &Db, me: &Instance) -> Result<(), RegisterError> {
    let mut me = me.clone();
    let mut first_seen: HashMap<String, i64> = HashMap::new();
    let give_up = Instant::now() + Duration::from_millis(LIVE_WITHIN_MS as u64) + HEARTBEAT * 2;
    let mut announced = false;
    loop {
        // Beat while waiting, so that an instance starting at the same moment sees this
        // one alive.
        instances::heartbeat(db, &me.id).await?;
        let (now, live) = instances::live(db).await?;
        if let Some(mine) = live.iter().find(|i| i.id == me.id) {
            me.started_at = mine.started_at;
        }
        let others = conflicting(&me, &live);
        let Some(first) = others.first() else {
            return Ok(());
        };
        for o in &others {
            match first_seen.get(&o.id) {
                Some(seen) if o.last_seen_at > *seen => {
                    return Err(refusal(&me, o, now).into());
                }
                Some(_) => {}
                None => {
                    first_seen.insert(o.id.clone(), o.last_seen_at);
                }
            }
        }
        if Instant::now() >= give_up {
            return Err(refusal(&me, first, now).into());
        }
        if !announced {
            announced = true;
            tracing::warn!(
                other = %first.id,
                last_seen_ms_ago = now - first.last_seen_at,
                "another instance without Redis was live on this database a moment ago; \
                 waiting to see whether its heartbeat moves (refused if it does, started once \
                 it is older than 5 s)"
            );
        }
        tokio::time::sleep(WATCH).await;
    }
}

async fn beat(db: Db, me: Instance) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    let mut failing = false;
    let mut beats: u32 = 0;
    loop {
        tick.tick().await;
        beats = beats.wrapping_add(1);
        if beats.is_multiple_of(WATCH_EVERY) {
            watch_conflicts(&db, &me).await;
        }
        let result = match instances::heartbeat(&db, &me.id).await {
            Ok(true) => Ok(()),
            Ok(false) => {
                tracing::warn!(instance = %me.id, "this instance's registry row was gone; registering again");
                instances::register(&db, &me).await
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("instance heartbeat recorded again");
            }
            Ok(()) => {}
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "instance heartbeat failed");
            }
            Err(_) => {}
        }
    }
}

/// Heartbeats between two looks for a conflicting instance while running.
const WATCH_EVERY: u32 = 5;

/// Logs an error while another live instance shares the database and either side has no
/// Redis — possible only if one of them stalled past the live window (a paused VM, a
/// frozen process) while the other started. The guard cannot undo that; the operator must.
async fn watch_conflicts(db: &Db, me: &Instance) {
    let Ok((now, live)) = instances::live(db).await else {
        return;
    };
    let others: Vec<&Instance> = live
        .iter()
        .filter(|i| i.id != me.id && (!me.cluster || !i.cluster))
        .collect();
    if let Some(other) = others.first() {
        tracing::error!(
            other = %other.id,
            other_listen = %other.listen,
            last_seen_ms_ago = now - other.last_seen_at,
            "another live instance shares this database and one of the two runs without \
             Redis: accounts can overspend and rate limits multiply; stop one of them or set \
             TOKENGATE_REDIS_URL on every instance"
        );
    }
}

impl Registration {
    /// This instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Records the address the server actually listens on.
    pub async fn set_listen(&self, listen: &str) {
        if let Err(e) = instances::set_listen(&self.db, &self.id, listen).await {
            tracing::warn!(error = %e, "recording the listen address failed");
        }
    }

    /// Stops the heartbeat and removes this instance from the registry (graceful
    /// shutdown): a replacement can start at once.
    pub async fn leave(mut self) {
        self.heartbeat.abort();
        self.left = true;
        if let Err(e) = instances::deregister(&self.db, &self.id).await {
            tracing::warn!(error = %e, "leaving the instance registry failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inst(id: &str, cluster: bool) -> Instance {
        Instance {
            id: id.into(),
            version: "1.0.0".into(),
            listen: "127.0.0.1:3000".into(),
            public_url: "http://a".into(),
            cluster,
            started_at: 0,
            last_seen_at: 900,
        }
    }

    #[test]
    fn either_side_without_redis_conflicts() {
        let live = [inst("me", true), inst("b", true), inst("c", false), {
            let mut later = inst("d", false);
            later.started_at = 1;
            later
        }];
        let ids = |me: &Instance| -> Vec<String> {
            conflicting(me, &live)
                .iter()
                .map(|i| i.id.clone())
                .collect()
        };
        assert_eq!(ids(&inst("me", true)), ["c"]);
        assert_eq!(ids(&inst("me", false)), ["b", "c"]);
        assert!(conflicting(&inst("me", false), &[inst("me", false)]).is_empty());
        // Started at the same moment: the lower id goes first, the other gives way.
        assert!(conflicting(&inst("a", false), &[inst("b", false)]).is_empty());
        assert_eq!(conflicting(&inst("b", false), &[inst("a", false)]).len(), 1);
    }

    #[test]
    fn the_refusal_says_why_and_how_to_fix_it() {
        let text = refusal(&inst("me", false), &inst("b", true), 1000).to_string();
        for needle in [
            "Instance b",
            "last seen 100 ms ago",
            "this instance runs without Redis",
            "TOKENGATE_REDIS_URL",
            "stop the other instance",
            "older than 5 seconds",
        ] {
            assert!(text.contains(needle), "{needle}: {text}");
        }
        let text = refusal(&inst("me", true), &inst("b", false), 1000).to_string();
        assert!(text.contains("that instance runs without Redis"), "{text}");
    }
}
