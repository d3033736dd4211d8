//! Upstream health on the hot path: one circuit breaker per routing target (such as
//! `openai/gpt-4o-mini`), driven by the error rate over a sliding window of 1-second
//! buckets, and a ring of the latest latencies for percentiles. Every call takes the
//! current time, so callers (and tests) own the clock.
//!
//! A breaker is closed (requests flow), open (requests are rejected until `open_for` has
//! passed) or half-open (up to `half_open_probes` trial requests at a time; one failure
//! re-opens it, `half_open_probes` successes close it with a fresh window).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

/// How many of the latest latencies are kept per target for percentiles.
pub const LATENCY_SAMPLES: usize = 1024;

/// Circuit breaker tuning; swappable at runtime with [`Health::set_config`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BreakerConfig {
    /// Length of the sliding window of outcomes (1-second resolution, at least 1 s).
    pub window: Duration,
    /// Error rate in `0..=1` at or above which a closed breaker opens.
    pub error_rate: f64,
    /// Requests needed in the window before the error rate is acted on.
    pub min_requests: u32,
    /// How long an open breaker rejects before it lets probes through.
    pub open_for: Duration,
    /// Probes allowed in flight at once while half-open, and the successes needed to
    /// close (treated as at least 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            window: Duration::from_secs(30),
            error_rate: 0.5,
            min_requests: 10,
            open_for: Duration::from_secs(15),
            half_open_probes: 2,
        }
    }
}

impl BreakerConfig {
    fn window_secs(&self) -> u64 {
        self.window
            .as_millis()
            .div_ceil(1000)
            .clamp(1, u128::from(u64::MAX)) as u64
    }

    fn probes(&self) -> u32 {
        self.half_open_probes.max(1)
    }
}

/// The breaker's verdict on one request to a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// The breaker is closed: send the request.
    Allowed,
    /// The breaker is half-open: send the request as a trial. Its outcome must be passed to
    /// [`Health::record`], or the slot freed with [`Health::release`].
    Probe,
    /// The breaker is open, or every probe slot is taken: do not send the request.
    Rejected,
}

impl Admission {
    /// Whether the request may be sent.
    pub fn is_admitted(self) -> bool {
        !matches!(self, Admission::Rejected)
    }
}

/// One target's health as shown to operators.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetHealth {
    /// Routing target, such as `openai/gpt-4o-mini`.
    pub target: String,
    /// `"closed"`, `"open"` or `"half_open"` (an open breaker whose time is up shows as
    /// half-open).
    pub state: &'static str,
    /// Requests finished within the window.
    pub requests: u64,
    /// Failed requests within the window.
    pub errors: u64,
    /// `errors / requests`, or 0 without requests.
    pub error_rate: f64,
    /// Median latency over the latest [`LATENCY_SAMPLES`] requests, in milliseconds.
    pub p50_ms: Option<f64>,
    /// 95th percentile latency, likewise.
    pub p95_ms: Option<f64>,
    /// 99th percentile latency, likewise.
    pub p99_ms: Option<f64>,
    /// Time until an open breaker lets probes through, in milliseconds (rounded up).
    pub open_remaining_ms: Option<u64>,
    /// Requests recorded since the process started.
    pub total_requests: u64,
    /// Failed requests recorded since the process started.
    pub total_errors: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Closed,
    Open { since: Instant, open_for: Duration },
    HalfOpen { in_flight: u32, successes: u32 },
}

#[derive(Debug)]
struct Bucket {
    sec: u64,
    requests: u64,
    errors: u64,
}

/// Outcomes in 1-second buckets, counted from `base`; the sums cover the kept buckets.
#[derive(Debug)]
struct Window {
    base: Instant,
    buckets: VecDeque<Bucket>,
    requests: u64,
    errors: u64,
}

impl Window {
    fn new(base: Instant) -> Self {
        Window {
            base,
            buckets: VecDeque::new(),
            requests: 0,
            errors: 0,
        }
    }

    fn sec(&self, now: Instant) -> u64 {
        now.saturating_duration_since(self.base).as_secs()
    }

    fn prune(&mut self, now: Instant, window_secs: u64) {
        let sec = self.sec(now);
        while let Some(b) = self.buckets.front() {
            if b.sec.saturating_add(window_secs) > sec {
                break;
            }
            self.requests -= b.requests;
            self.errors -= b.errors;
            self.buckets.pop_front();
        }
    }

    fn add(&mut self, now: Instant, failed: bool) {
        let sec = self.sec(now);
        let errors = u64::from(failed);
        match self.buckets.back_mut() {
            // An outcome stamped slightly earlier than the newest bucket joins it.
            Some(b) if b.sec >= sec => {
                b.requests += 1;
                b.errors += errors;
            }
            _ => self.buckets.push_back(Bucket {
                sec,
                requests: 1,
                errors,
            }),
        }
        self.requests += 1;
        self.errors += errors;
    }

    /// Requests and errors within the window at `now`, without pruning.
    fn counts(&self, now: Instant, window_secs: u64) -> (u64, u64) {
        let sec = self.sec(now);
        self.buckets
            .iter()
            .filter(|b| b.sec.saturating_add(window_secs) > sec)
            .fold((0, 0), |(r, e), b| (r + b.requests, e + b.errors))
    }

    fn clear(&mut self) {
        self.buckets.clear();
        self.requests = 0;
        self.errors = 0;
    }
}

/// The latest latencies in milliseconds, overwritten oldest first.
#[derive(Debug, Default)]
struct Latencies {
    samples: Vec<f64>,
    next: usize,
}

impl Latencies {
    fn push(&mut self, latency: Duration) {
        let ms = latency.as_nanos() as f64 / 1e6;
        if self.samples.len() < LATENCY_SAMPLES {
            self.samples.push(ms);
        } else {
            self.samples[self.next] = ms;
        }
        self.next = (self.next + 1) % LATENCY_SAMPLES;
    }

    /// Nearest-rank percentiles for the given per-mille ranks.
    fn percentiles<const N: usize>(&self, per_mille: [usize; N]) -> [Option<f64>; N] {
        let mut sorted = self.samples.clone();
        sorted.sort_unstable_by(f64::total_cmp);
        let n = sorted.len();
        per_mille.map(|p| {
            let rank = (n * p).div_ceil(1000).max(1);
            sorted.get(rank - 1).copied()
        })
    }
}

#[derive(Debug)]
struct TargetState {
    state: State,
    window: Window,
    latencies: Latencies,
    total_requests: u64,
    total_errors: u64,
    /// Probes admitted in an earlier half-open round that have not come back yet.
    orphaned_probes: u32,
}

impl TargetState {
    fn new(now: Instant) -> Self {
        TargetState {
            state: State::Closed,
            window: Window::new(now),
            latencies: Latencies::default(),
            total_requests: 0,
            total_errors: 0,
            orphaned_probes: 0,
        }
    }

    fn admit(&mut self, cfg: &BreakerConfig, now: Instant) -> Admission {
        if let State::Open { since, open_for } = self.state
            && now.saturating_duration_since(since) >= open_for
        {
            self.state = State::HalfOpen {
                in_flight: 0,
                successes: 0,
            };
        }
        match &mut self.state {
            State::Closed => Admission::Allowed,
            State::Open { .. } => Admission::Rejected,
            State::HalfOpen { in_flight, .. } if *in_flight < cfg.probes() => {
                *in_flight += 1;
                Admission::Probe
            }
            State::HalfOpen { .. } => Admission::Rejected,
        }
    }

    /// Frees the slot of a probe coming back. Probes from an earlier round are counted
    /// off first, so the current round never has more than its share in flight.
    fn free_probe_slot(&mut self) {
        if self.orphaned_probes > 0 {
            self.orphaned_probes -= 1;
        } else if let State::HalfOpen { in_flight, .. } = &mut self.state {
            *in_flight = in_flight.saturating_sub(1);
        }
    }

    /// Leaves the half-open state; its probes still in flight become orphans.
    fn set_state(&mut self, state: State) {
        if let State::HalfOpen { in_flight, .. } = self.state {
            self.orphaned_probes = self.orphaned_probes.saturating_add(in_flight);
        }
        self.state = state;
    }

    fn open(&mut self, cfg: &BreakerConfig, now: Instant) {
        self.set_state(State::Open {
            since: now,
            open_for: cfg.open_for,
        });
    }

    fn record(
        &mut self,
        cfg: &BreakerConfig,
        admission: Admission,
        success: bool,
        latency: Duration,
        now: Instant,
    ) {
        self.latencies.push(latency);
        self.total_requests += 1;
        self.total_errors += u64::from(!success);
        self.window.prune(now, cfg.window_secs());
        self.window.add(now, !success);
        if admission == Admission::Probe {
            self.free_probe_slot();
        }
        match self.state {
            State::Closed => {
                let (requests, errors) = (self.window.requests, self.window.errors);
                if requests >= u64::from(cfg.min_requests)
                    && errors > 0
                    && errors as f64 >= cfg.error_rate * requests as f64
                {
                    self.open(cfg, now);
                }
            }
            // Outcomes of requests admitted before the breaker opened decide nothing.
            State::HalfOpen { .. } if admission != Admission::Probe => {}
            State::HalfOpen { .. } if !success => self.open(cfg, now),
            State::HalfOpen {
                in_flight,
                successes,
            } => {
                let successes = successes + 1;
                if successes >= cfg.probes() {
                    self.set_state(State::Closed);
                    self.window.clear();
                } else {
                    self.state = State::HalfOpen {
                        in_flight,
                        successes,
                    };
                }
            }
            State::Open { .. } => {}
        }
    }

    fn health(&self, target: &str, cfg: &BreakerConfig, now: Instant) -> TargetHealth {
        let (state, open_remaining_ms) = match self.state {
            State::Closed => ("closed", None),
            State::HalfOpen { .. } => ("half_open", None),
            State::Open { since, open_for } => {
                let remaining = open_for.saturating_sub(now.saturating_duration_since(since));
                if remaining.is_zero() {
                    ("half_open", None)
                } else {
                    let ms = remaining.as_nanos().div_ceil(1_000_000);
                    ("open", Some(u64::try_from(ms).unwrap_or(u64::MAX)))
                }
            }
        };
        let (requests, errors) = self.window.counts(now, cfg.window_secs());
        let error_rate = if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        };
        let [p50_ms, p95_ms, p99_ms] = self.latencies.percentiles([500, 950, 990]);
        TargetHealth {
            target: target.to_owned(),
            state,
            requests,
            errors,
            error_rate,
            p50_ms,
            p95_ms,
            p99_ms,
            open_remaining_ms,
            total_requests: self.total_requests,
            total_errors: self.total_errors,
        }
    }
}

/// Circuit breakers and latency statistics of all routing targets.
#[derive(Debug, Default)]
pub struct Health {
    config: RwLock<BreakerConfig>,
    targets: RwLock<HashMap<String, Arc<Mutex<TargetState>>>>,
}

impl Health {
    /// An empty registry with the given breaker tuning.
    pub fn new(cfg: BreakerConfig) -> Self {
        Health {
            config: RwLock::new(cfg),
            targets: RwLock::default(),
        }
    }

    /// Replaces the breaker tuning; breakers already open keep their current deadline.
    pub fn set_config(&self, cfg: BreakerConfig) {
        *self.config.write() = cfg;
    }

    /// The current breaker tuning.
    pub fn config(&self) -> BreakerConfig {
        *self.config.read()
    }

    fn existing(&self, target: &str) -> Option<Arc<Mutex<TargetState>>> {
        self.targets.read().get(target).cloned()
    }

    fn target(&self, target: &str, now: Instant) -> Arc<Mutex<TargetState>> {
        if let Some(t) = self.existing(target) {
            return t;
        }
        self.targets
            .write()
            .entry(target.to_owned())
            .or_insert_with(|| Arc::new(Mutex::new(TargetState::new(now))))
            .clone()
    }

    /// Whether a request may go to `target` now. An open breaker whose time is up turns
    /// half-open here. A target with no recorded outcome yet is allowed.
    pub fn admit(&self, target: &str, now: Instant) -> Admission {
        let Some(state) = self.existing(target) else {
            return Admission::Allowed;
        };
        let cfg = self.config();
        state.lock().admit(&cfg, now)
    }

    /// Records the outcome and latency of a request admitted with `admission` (a
    /// [`Admission::Rejected`] one is ignored). A closed breaker opens once the window holds
    /// at least `min_requests` requests (at least one failed) and the error rate reaches the
    /// threshold; a failed probe re-opens a half-open breaker and `half_open_probes`
    /// successful probes close it with a cleared window. Outcomes of requests admitted
    /// before the breaker opened count in the statistics but change no state.
    pub fn record(
        &self,
        target: &str,
        admission: Admission,
        success: bool,
        latency: Duration,
        now: Instant,
    ) {
        if admission == Admission::Rejected {
            return;
        }
        let cfg = self.config();
        self.target(target, now)
            .lock()
            .record(&cfg, admission, success, latency, now);
    }

    /// Gives back the probe slot of a request that was admitted but will have no outcome
    /// (the client went away, the request was never sent). No-op for other admissions.
    pub fn release(&self, target: &str, admission: Admission) {
        if admission != Admission::Probe {
            return;
        }
        if let Some(state) = self.existing(target) {
            state.lock().free_probe_slot();
        }
    }

    /// Forgets the targets for which `keep` is false (e.g. after the routing table changed).
    pub fn retain(&self, mut keep: impl FnMut(&str) -> bool) {
        self.targets.write().retain(|name, _| keep(name));
    }

    /// Health of every known target at `now`, sorted by target.
    pub fn snapshot(&self, now: Instant) -> Vec<TargetHealth> {
        let cfg = self.config();
        let mut targets: Vec<(String, Arc<Mutex<TargetState>>)> = self
            .targets
            .read()
            .iter()
            .map(|(name, state)| (name.clone(), state.clone()))
            .collect();
        targets.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        targets
            .iter()
            .map(|(name, state)| state.lock().health(name, &cfg, now))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: &str = "openai/gpt-4o-mini";
    const MS: Duration = Duration::from_millis(1);

    fn cfg() -> BreakerConfig {
        BreakerConfig {
            window: Duration::from_secs(10),
            error_rate: 0.5,
            min_requests: 4,
            open_for: Duration::from_secs(5),
            half_open_probes: 2,
        }
    }

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn fail(h: &Health, now: Instant) {
        h.record(T, Admission::Allowed, false, MS, now);
    }

    fn succeed(h: &Health, now: Instant) {
        h.record(T, Admission::Allowed, true, MS, now);
    }

    fn state(h: &Health, now: Instant) -> TargetHealth {
        h.snapshot(now).into_iter().find(|t| t.target == T).unwrap()
    }

    /// A breaker opened at `t0` by four failures.
    fn opened(t0: Instant) -> Health {
        let h = Health::new(cfg());
        for _ in 0..4 {
            fail(&h, t0);
        }
        assert_eq!(h.admit(T, t0), Admission::Rejected);
        h
    }

    #[test]
    fn default_config_is_as_documented() {
        let c = BreakerConfig::default();
        assert_eq!(c.window, Duration::from_secs(30));
        assert_eq!(c.error_rate, 0.5);
        assert_eq!(c.min_requests, 10);
        assert_eq!(c.open_for, Duration::from_secs(15));
        assert_eq!(c.half_open_probes, 2);
    }

    #[test]
    fn unknown_targets_are_allowed_and_not_stored() {
        let h = Health::new(cfg());
        let now = Instant::now();
        assert_eq!(h.admit(T, now), Admission::Allowed);
        assert!(h.snapshot(now).is_empty());
        h.record(T, Admission::Rejected, false, MS, now);
        assert!(h.snapshot(now).is_empty());
    }

    #[test]
    fn opens_on_error_rate_only_after_min_volume() {
        let h = Health::new(cfg());
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&h, t0);
            assert_eq!(h.admit(T, t0), Admission::Allowed);
        }
        fail(&h, t0);
        assert_eq!(h.admit(T, t0), Admission::Rejected);
        let s = state(&h, t0);
        assert_eq!(s.state, "open");
        assert_eq!((s.requests, s.errors, s.error_rate), (4, 4, 1.0));
        assert_eq!(s.open_remaining_ms, Some(5000));
    }

    #[test]
    fn opens_when_the_rate_reaches_the_threshold() {
        let h = Health::new(cfg());
        let t0 = Instant::now();
        for _ in 0..6 {
            succeed(&h, t0);
        }
        for _ in 0..5 {
            fail(&h, t0);
        }
        // 5 of 11 failed: below one half.
        assert_eq!(h.admit(T, t0), Admission::Allowed);
        fail(&h, t0);
        // 6 of 12: at the threshold.
        assert_eq!(h.admit(T, t0), Admission::Rejected);
    }

    #[test]
    fn successes_alone_never_open() {
        let mut c = cfg();
        c.error_rate = 0.0;
        let h = Health::new(c);
        let t0 = Instant::now();
        for _ in 0..20 {
            succeed(&h, t0);
        }
        assert_eq!(h.admit(T, t0), Admission::Allowed);
    }

    #[test]
    fn open_rejects_until_open_for_has_passed() {
        let t0 = Instant::now();
        let h = opened(t0);
        assert_eq!(h.admit(T, t0 + secs(4.999)), Admission::Rejected);
        assert_eq!(state(&h, t0 + secs(4.5)).open_remaining_ms, Some(500));
        let s = state(&h, t0 + secs(5.0));
        assert_eq!((s.state, s.open_remaining_ms), ("half_open", None));
    }

    #[test]
    fn half_open_admits_exactly_the_probe_count() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t = t0 + secs(5.0);
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        assert_eq!(h.admit(T, t + secs(60.0)), Admission::Rejected);
        assert_eq!(state(&h, t).state, "half_open");
    }

    #[test]
    fn failed_probe_reopens_with_a_fresh_deadline() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t = t0 + secs(6.0);
        assert_eq!(h.admit(T, t), Admission::Probe);
        h.record(T, Admission::Probe, false, MS, t);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        assert_eq!(h.admit(T, t + secs(4.9)), Admission::Rejected);
        assert_eq!(state(&h, t).open_remaining_ms, Some(5000));
        assert_eq!(h.admit(T, t + secs(5.0)), Admission::Probe);
    }

    #[test]
    fn successful_probes_close_with_a_cleared_window() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t = t0 + secs(5.0);
        let (a, b) = (h.admit(T, t), h.admit(T, t));
        assert_eq!((a, b), (Admission::Probe, Admission::Probe));
        h.record(T, a, true, MS, t);
        assert_eq!(state(&h, t).state, "half_open");
        // The finished probe's slot is free again; the round still needs a second success.
        let c = h.admit(T, t);
        assert_eq!(c, Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        h.record(T, b, true, MS, t);
        // `c` outlived its round: giving it back later touches nothing.
        h.release(T, c);
        let s = state(&h, t);
        assert_eq!(s.state, "closed");
        assert_eq!((s.requests, s.errors), (0, 0));
        assert_eq!((s.total_requests, s.total_errors), (6, 4));
        assert_eq!(h.admit(T, t), Admission::Allowed);
        // The old failures are gone: three new ones are below the minimum volume.
        for _ in 0..3 {
            fail(&h, t);
        }
        assert_eq!(h.admit(T, t), Admission::Allowed);
    }

    #[test]
    fn stale_outcomes_do_not_drive_a_half_open_breaker() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t = t0 + secs(5.0);
        assert_eq!(h.admit(T, t), Admission::Probe);
        // Requests admitted while closed finish now: they neither close nor re-open.
        succeed(&h, t);
        succeed(&h, t);
        fail(&h, t);
        assert_eq!(state(&h, t).state, "half_open");
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
    }

    #[test]
    fn probes_of_an_earlier_round_do_not_free_current_slots() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t1 = t0 + secs(5.0);
        let (a, b) = (h.admit(T, t1), h.admit(T, t1));
        h.record(T, a, false, MS, t1);
        let t2 = t1 + secs(5.0);
        assert_eq!(h.admit(T, t2), Admission::Probe);
        assert_eq!(h.admit(T, t2), Admission::Probe);
        assert_eq!(h.admit(T, t2), Admission::Rejected);
        // `b` belongs to the previous round; the two current probes are still out.
        h.release(T, b);
        assert_eq!(h.admit(T, t2), Admission::Rejected);
        h.release(T, Admission::Probe);
        assert_eq!(h.admit(T, t2), Admission::Probe);
    }

    #[test]
    fn release_frees_a_probe_slot() {
        let t0 = Instant::now();
        let h = opened(t0);
        let t = t0 + secs(5.0);
        let (a, _b) = (h.admit(T, t), h.admit(T, t));
        assert_eq!(h.admit(T, t), Admission::Rejected);
        h.release(T, a);
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        // Releasing other admissions changes nothing.
        h.release(T, Admission::Allowed);
        h.release(T, Admission::Rejected);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        let s = state(&h, t);
        assert_eq!((s.state, s.total_requests), ("half_open", 4));
    }

    #[test]
    fn old_outcomes_age_out_of_the_window() {
        let t0 = Instant::now();
        let h = Health::new(cfg());
        for _ in 0..3 {
            fail(&h, t0);
        }
        // Within the window: the fourth failure opens.
        let h2 = Health::new(cfg());
        for _ in 0..3 {
            fail(&h2, t0);
        }
        fail(&h2, t0 + secs(9.9));
        assert_eq!(h2.admit(T, t0 + secs(9.9)), Admission::Rejected);
        // After the window: the first three are gone.
        fail(&h, t0 + secs(10.0));
        assert_eq!(h.admit(T, t0 + secs(10.0)), Admission::Allowed);
        let s = state(&h, t0 + secs(10.0));
        assert_eq!((s.requests, s.errors), (1, 1));
        assert_eq!((s.total_requests, s.total_errors), (4, 4));
        let s = state(&h, t0 + secs(20.0));
        assert_eq!((s.requests, s.errors, s.error_rate), (0, 0, 0.0));
    }

    #[test]
    fn window_counts_mix_successes_and_failures() {
        let t0 = Instant::now();
        let h = Health::new(cfg());
        for i in 0..8u32 {
            let t = t0 + secs(f64::from(i));
            if i % 4 == 0 {
                fail(&h, t);
            } else {
                succeed(&h, t);
            }
        }
        let s = state(&h, t0 + secs(7.5));
        assert_eq!((s.requests, s.errors, s.error_rate), (8, 2, 0.25));
        // At 12.5 s the outcomes of seconds 0..=2 have left the 10-second window.
        let s = state(&h, t0 + secs(12.5));
        assert_eq!((s.requests, s.errors), (5, 1));
    }

    #[test]
    fn percentiles_on_known_data() {
        let h = Health::new(cfg());
        let now = Instant::now();
        // 1..=100 ms, in a scrambled order.
        for i in 0..100u64 {
            let ms = (i * 37) % 100 + 1;
            h.record(T, Admission::Allowed, true, Duration::from_millis(ms), now);
        }
        let s = state(&h, now);
        assert_eq!(s.p50_ms, Some(50.0));
        assert_eq!(s.p95_ms, Some(95.0));
        assert_eq!(s.p99_ms, Some(99.0));
    }

    #[test]
    fn percentiles_cover_only_the_latest_samples() {
        let h = Health::new(cfg());
        let now = Instant::now();
        assert!(h.snapshot(now).is_empty());
        h.record(
            T,
            Admission::Allowed,
            true,
            Duration::from_micros(1500),
            now,
        );
        let s = state(&h, now);
        assert_eq!((s.p50_ms, s.p99_ms), (Some(1.5), Some(1.5)));
        for _ in 0..LATENCY_SAMPLES {
            h.record(T, Admission::Allowed, true, Duration::from_secs(1), now);
        }
        for _ in 0..LATENCY_SAMPLES {
            h.record(T, Admission::Allowed, true, Duration::from_millis(2), now);
        }
        let s = state(&h, now);
        assert_eq!(
            (s.p50_ms, s.p95_ms, s.p99_ms),
            (Some(2.0), Some(2.0), Some(2.0))
        );
        assert_eq!(s.total_requests, 2 * LATENCY_SAMPLES as u64 + 1);
    }

    #[test]
    fn snapshot_is_sorted_and_complete() {
        let h = Health::new(cfg());
        let now = Instant::now();
        h.record("b/model", Admission::Allowed, true, MS, now);
        h.record("a/model", Admission::Allowed, false, MS, now);
        h.record("a/model", Admission::Allowed, true, MS, now);
        let snap = h.snapshot(now);
        let names: Vec<&str> = snap.iter().map(|t| t.target.as_str()).collect();
        assert_eq!(names, ["a/model", "b/model"]);
        let a = &snap[0];
        assert_eq!(a.state, "closed");
        assert_eq!((a.requests, a.errors, a.error_rate), (2, 1, 0.5));
        assert_eq!((a.total_requests, a.total_errors), (2, 1));
        assert_eq!(a.open_remaining_ms, None);
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["state"], "closed");
        assert_eq!(json["p50_ms"], 1.0);
        h.retain(|name| name != "a/model");
        assert_eq!(h.snapshot(now).len(), 1);
    }

    #[test]
    fn config_changes_apply_at_once() {
        let h = Health::new(cfg());
        let t0 = Instant::now();
        fail(&h, t0);
        fail(&h, t0);
        assert_eq!(h.admit(T, t0), Admission::Allowed);
        h.set_config(BreakerConfig {
            min_requests: 3,
            half_open_probes: 1,
            ..cfg()
        });
        assert_eq!(h.config().min_requests, 3);
        fail(&h, t0);
        assert_eq!(h.admit(T, t0), Admission::Rejected);
        let t = t0 + secs(5.0);
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        h.record(T, Admission::Probe, true, MS, t);
        assert_eq!(h.admit(T, t), Admission::Allowed);
    }

    #[test]
    fn zero_probes_means_one() {
        let h = Health::new(BreakerConfig {
            half_open_probes: 0,
            ..cfg()
        });
        let t0 = Instant::now();
        for _ in 0..4 {
            fail(&h, t0);
        }
        let t = t0 + secs(5.0);
        assert_eq!(h.admit(T, t), Admission::Probe);
        assert_eq!(h.admit(T, t), Admission::Rejected);
        h.record(T, Admission::Probe, true, MS, t);
        assert_eq!(state(&h, t).state, "closed");
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_probe_count() {
        let t0 = Instant::now();
        let h = Arc::new(opened(t0));
        let t = t0 + secs(5.0);
        let probes: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..16)
                .map(|_| s.spawn(|| h.admit(T, t) == Admission::Probe))
                .collect();
            handles
                .into_iter()
                .map(|j| usize::from(j.join().unwrap()))
                .sum()
        });
        assert_eq!(probes, 2);
    }
}
