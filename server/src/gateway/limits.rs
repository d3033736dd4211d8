//! Per-key rate limits on the hot path: requests per minute (RPM) and tokens per minute
//! (TPM) over a sliding 60-second window. Each limited key keeps its admissions in at most
//! about 61 one-second buckets behind its own mutex; the check and the increment happen
//! under that one lock, so concurrent requests can never exceed a limit.
//!
//! A request is counted at its admission time for the whole window. Its tokens start as
//! the caller's estimate (a reservation) and are replaced by the actual count when the
//! [`RateTicket`] is settled; a ticket dropped unsettled gives its reserved tokens back but
//! still counts as a request. A bucket leaves the window 60 s after the latest admission
//! in it, so a request may be counted up to one second longer than exactly 60 s, never
//! shorter.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};
pub use tokengate_api::kinds::RateLimitKind;

/// Length of the sliding window.
pub const WINDOW: Duration = Duration::from_secs(60);

/// Admissions less than this apart share a bucket.
const GRANULE: Duration = Duration::from_secs(1);

/// Why a request was refused and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter {
    /// Whole seconds (rounded up, at least 1) until enough of the window has expired for
    /// the request to fit, if no other request comes first.
    pub secs: u64,
    /// The limit that refused (the one with the longer wait when both do).
    pub which: RateLimitKind,
}

#[derive(Debug)]
struct Bucket {
    id: u64,
    first: Instant,
    last: Instant,
    requests: i64,
    tokens: i64,
}

/// One key's admissions within the window; `requests` and `tokens` sum the buckets.
#[derive(Debug, Default)]
struct KeyWindow {
    buckets: VecDeque<Bucket>,
    next_id: u64,
    requests: i64,
    tokens: i64,
}

impl KeyWindow {
    fn prune(&mut self, now: Instant) {
        while let Some(b) = self.buckets.front() {
            if now.saturating_duration_since(b.last) < WINDOW {
                break;
            }
            self.requests -= b.requests;
            self.tokens -= b.tokens;
            self.buckets.pop_front();
        }
    }

    /// Counts one admission of `tokens`; returns its bucket's id.
    fn push(&mut self, now: Instant, tokens: i64) -> u64 {
        self.requests += 1;
        self.tokens += tokens;
        if let Some(b) = self.buckets.back_mut()
            && now.saturating_duration_since(b.first) < GRANULE
        {
            b.requests += 1;
            b.tokens += tokens;
            b.last = b.last.max(now);
            return b.id;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.buckets.push_back(Bucket {
            id,
            first: now,
            last: now,
            requests: 1,
            tokens,
        });
        id
    }

    /// Adds `delta` tokens to a bucket, if it is still in the window.
    fn adjust(&mut self, bucket: u64, delta: i64) {
        if let Ok(i) = self.buckets.binary_search_by_key(&bucket, |b| b.id) {
            self.buckets[i].tokens += delta;
            self.tokens += delta;
        }
    }

    /// Time until the oldest buckets have expired far enough that `done` holds for what
    /// remains (requests, tokens).
    fn wait_until(&self, now: Instant, done: impl Fn(i64, i64) -> bool) -> Duration {
        let (mut requests, mut tokens) = (self.requests, self.tokens);
        for b in &self.buckets {
            requests -= b.requests;
            tokens -= b.tokens;
            if done(requests, tokens) {
                return WINDOW.saturating_sub(now.saturating_duration_since(b.last));
            }
        }
        WINDOW
    }
}

fn retry(wait: Duration, which: RateLimitKind) -> RetryAfter {
    let secs = wait.as_nanos().div_ceil(1_000_000_000).max(1);
    RetryAfter {
        secs: u64::try_from(secs).unwrap_or(u64::MAX),
        which,
    }
}

struct Reservation {
    window: Arc<Mutex<KeyWindow>>,
    bucket: u64,
    tokens: i64,
}

impl Reservation {
    fn finish(self, actual_tokens: i64, now: Option<Instant>) {
        let mut w = self.window.lock();
        w.adjust(self.bucket, actual_tokens - self.tokens);
        if let Some(now) = now {
            w.prune(now);
        }
    }
}

/// An admitted request's place in its key's window. Pass it to [`RateLimits::settle`] with
/// the actual token count; dropping it unsettled releases the reserved tokens.
#[must_use = "dropping a ticket releases its token reservation at once"]
pub struct RateTicket {
    reservation: Option<Reservation>,
}

impl RateTicket {
    /// Tokens reserved by this ticket (0 for keys without limits).
    pub fn reserved_tokens(&self) -> i64 {
        self.reservation.as_ref().map_or(0, |r| r.tokens)
    }
}

impl std::fmt::Debug for RateTicket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateTicket")
            .field("limited", &self.reservation.is_some())
            .field("reserved_tokens", &self.reserved_tokens())
            .finish()
    }
}

impl Drop for RateTicket {
    fn drop(&mut self) {
        if let Some(r) = self.reservation.take() {
            r.finish(0, None);
        }
    }
}

/// Request and token windows of all rate-limited keys.
#[derive(Debug, Default)]
pub struct RateLimits {
    keys: RwLock<HashMap<i64, Arc<Mutex<KeyWindow>>>>,
}

impl RateLimits {
    fn key(&self, key_id: i64) -> Arc<Mutex<KeyWindow>> {
        if let Some(k) = self.keys.read().get(&key_id) {
            return k.clone();
        }
        self.keys.write().entry(key_id).or_default().clone()
    }

    /// Admits a request of `key_id` expecting `est_tokens` tokens, or says when to retry.
    ///
    /// RPM: fewer than `rpm` requests may have been admitted in the last 60 s. TPM: the
    /// tokens counted in the last 60 s (actual tokens of settled requests plus the
    /// reservations of requests in flight) plus `est_tokens` must not exceed `tpm`, except
    /// that a request is always admitted when no tokens are counted in the window, so a
    /// single request larger than `tpm` runs alone instead of never. A non-positive limit
    /// refuses everything. A key with neither limit is admitted without any bookkeeping.
    pub fn admit(
        &self,
        key_id: i64,
        rpm: Option<i64>,
        tpm: Option<i64>,
        est_tokens: i64,
        now: Instant,
    ) -> Result<RateTicket, RetryAfter> {
        if rpm.is_none() && tpm.is_none() {
            return Ok(RateTicket { reservation: None });
        }
        let est = est_tokens.max(0);
        let window = self.key(key_id);
        let mut w = window.lock();
        w.prune(now);
        let mut refusal: Option<RetryAfter> = None;
        let mut refuse = |r: RetryAfter| {
            if refusal.is_none_or(|old| r.secs > old.secs) {
                refusal = Some(r);
            }
        };
        if let Some(rpm) = rpm {
            if rpm <= 0 {
                refuse(retry(WINDOW, RateLimitKind::Rpm));
            } else if w.requests >= rpm {
                refuse(retry(
                    w.wait_until(now, |req, _| req < rpm),
                    RateLimitKind::Rpm,
                ));
            }
        }
        if let Some(tpm) = tpm {
            let fits = |tokens: i64| tokens <= 0 || tokens.saturating_add(est) <= tpm;
            if tpm <= 0 {
                refuse(retry(WINDOW, RateLimitKind::Tpm));
            } else if !fits(w.tokens) {
                refuse(retry(
                    w.wait_until(now, |_, tok| fits(tok)),
                    RateLimitKind::Tpm,
                ));
            }
        }
        if let Some(r) = refusal {
            return Err(r);
        }
        let bucket = w.push(now, est);
        drop(w);
        Ok(RateTicket {
            reservation: Some(Reservation {
                window,
                bucket,
                tokens: est,
            }),
        })
    }

    /// Replaces the ticket's reservation with the request's actual token count (kept at
    /// the admission time). Does nothing once the admission has left the window.
    pub fn settle(&self, mut ticket: RateTicket, actual_tokens: i64, now: Instant) {
        if let Some(r) = ticket.reservation.take() {
            r.finish(actual_tokens.max(0), Some(now));
        }
    }

    /// Requests and tokens counted for `key_id` in the window ending at `now`.
    pub fn usage(&self, key_id: i64, now: Instant) -> (i64, i64) {
        let Some(window) = self.keys.read().get(&key_id).cloned() else {
            return (0, 0);
        };
        let mut w = window.lock();
        w.prune(now);
        (w.requests, w.tokens)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn unlimited_keys_touch_no_map() {
        let l = RateLimits::default();
        let now = Instant::now();
        for _ in 0..1000 {
            let t = l.admit(1, None, None, 1_000_000, now).unwrap();
            assert_eq!(t.reserved_tokens(), 0);
            l.settle(t, 5, now);
        }
        assert!(l.keys.read().is_empty());
        assert_eq!(l.usage(1, now), (0, 0));
    }

    #[test]
    fn rpm_is_exact_under_contention() {
        let l = Arc::new(RateLimits::default());
        let now = Instant::now();
        let barrier = Arc::new(Barrier::new(50));
        let handles: Vec<_> = (0..50)
            .map(|_| {
                let (l, barrier) = (l.clone(), barrier.clone());
                std::thread::spawn(move || {
                    barrier.wait();
                    l.admit(7, Some(10), None, 1, now)
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let admitted = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(admitted, 10);
        for r in &results {
            if let Err(e) = r {
                assert_eq!(
                    *e,
                    RetryAfter {
                        secs: 60,
                        which: RateLimitKind::Rpm
                    }
                );
            }
        }
        assert_eq!(l.usage(7, now), (10, 10));
    }

    #[test]
    fn tpm_is_exact_under_contention() {
        let l = Arc::new(RateLimits::default());
        let now = Instant::now();
        // A first request so the window is not empty.
        let first = l.admit(3, None, Some(1000), 100, now).unwrap();
        let admitted: usize = std::thread::scope(|s| {
            let handles: Vec<_> = (0..40)
                .map(|_| s.spawn(|| l.admit(3, None, Some(1000), 100, now)))
                .collect();
            let tickets: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            tickets.iter().filter(|t| t.is_ok()).count()
        });
        assert_eq!(admitted, 9);
        drop(first);
    }

    #[test]
    fn rpm_window_slides() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let _a = l.admit(1, Some(2), None, 0, t0).unwrap();
        let _b = l.admit(1, Some(2), None, 0, t0 + secs(10.0)).unwrap();
        let e = l.admit(1, Some(2), None, 0, t0 + secs(20.0)).unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 40,
                which: RateLimitKind::Rpm
            }
        );
        let e = l.admit(1, Some(2), None, 0, t0 + secs(59.5)).unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 1,
                which: RateLimitKind::Rpm
            }
        );
        let _c = l.admit(1, Some(2), None, 0, t0 + secs(60.0)).unwrap();
        let e = l.admit(1, Some(2), None, 0, t0 + secs(60.0)).unwrap_err();
        assert_eq!(e.secs, 10);
        assert_eq!(l.usage(1, t0 + secs(60.0)), (2, 0));
        assert_eq!(l.usage(1, t0 + secs(200.0)), (0, 0));
        // Other keys are independent.
        assert!(l.admit(2, Some(2), None, 0, t0 + secs(20.0)).is_ok());
    }

    #[test]
    fn retry_after_rounds_up() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let _a = l.admit(1, Some(1), None, 0, t0).unwrap();
        let e = l.admit(1, Some(1), None, 0, t0 + secs(20.3)).unwrap_err();
        assert_eq!(e.secs, 40);
        let e = l.admit(1, Some(1), None, 0, t0 + secs(59.999)).unwrap_err();
        assert_eq!(e.secs, 1);
    }

    #[test]
    fn admissions_within_a_second_share_a_bucket() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let _a = l.admit(1, Some(2), None, 0, t0).unwrap();
        let _b = l.admit(1, Some(2), None, 0, t0 + secs(0.5)).unwrap();
        // The bucket lasts until 60 s after its latest admission.
        let e = l.admit(1, Some(2), None, 0, t0 + secs(60.0)).unwrap_err();
        assert_eq!(e.secs, 1);
        assert!(l.admit(1, Some(2), None, 0, t0 + secs(60.5)).is_ok());
        assert_eq!(l.keys.read()[&1].lock().buckets.len(), 1);
    }

    #[test]
    fn buckets_stay_bounded() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        for i in 0..10_000u32 {
            let t = l
                .admit(1, None, Some(i64::MAX), 1, t0 + secs(f64::from(i) * 0.1))
                .unwrap();
            l.settle(t, 1, t0 + secs(f64::from(i) * 0.1));
        }
        let n = l.keys.read()[&1].lock().buckets.len();
        assert!(n <= 61, "{n} buckets");
    }

    #[test]
    fn tpm_reservations_and_settle_corrections() {
        let l = RateLimits::default();
        let now = Instant::now();
        let a = l.admit(1, None, Some(1000), 600, now).unwrap();
        assert_eq!(a.reserved_tokens(), 600);
        let e = l.admit(1, None, Some(1000), 500, now).unwrap_err();
        assert_eq!(e.which, RateLimitKind::Tpm);
        l.settle(a, 100, now);
        assert_eq!(l.usage(1, now), (1, 100));
        let b = l.admit(1, None, Some(1000), 500, now).unwrap();
        let c = l.admit(1, None, Some(1000), 400, now).unwrap();
        assert!(l.admit(1, None, Some(1000), 1, now).is_err());
        // A request that used more than it reserved counts what it used.
        l.settle(b, 700, now);
        assert_eq!(l.usage(1, now), (3, 1200));
        l.settle(c, 0, now);
        assert_eq!(l.usage(1, now), (3, 800));
        assert!(l.admit(1, None, Some(1000), 200, now).is_ok());
    }

    #[test]
    fn tpm_retry_after_waits_for_enough_tokens_to_expire() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        for at in [0.0, 10.0, 20.0] {
            let t = l.admit(1, None, Some(1000), 300, t0 + secs(at)).unwrap();
            l.settle(t, 300, t0 + secs(at));
        }
        // 900 counted; 500 more fit once the first two requests (600) have expired.
        let e = l
            .admit(1, None, Some(1000), 500, t0 + secs(30.0))
            .unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 40,
                which: RateLimitKind::Tpm
            }
        );
        assert!(l.admit(1, None, Some(1000), 500, t0 + secs(69.9)).is_err());
        assert!(l.admit(1, None, Some(1000), 500, t0 + secs(70.0)).is_ok());
    }

    #[test]
    fn dropped_ticket_releases_its_reservation() {
        let l = RateLimits::default();
        let now = Instant::now();
        let t = l.admit(1, Some(5), Some(1000), 800, now).unwrap();
        assert!(l.admit(1, Some(5), Some(1000), 800, now).is_err());
        drop(t);
        assert_eq!(l.usage(1, now), (1, 0));
        let _t = l.admit(1, Some(5), Some(1000), 800, now).unwrap();
        // The dropped request still counts towards RPM.
        assert_eq!(l.usage(1, now).0, 2);
    }

    #[test]
    fn settling_after_the_window_is_harmless() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let t = l.admit(1, None, Some(1000), 800, t0).unwrap();
        let late = t0 + secs(61.0);
        let _next = l.admit(1, None, Some(1000), 900, late).unwrap();
        l.settle(t, 5000, late);
        assert_eq!(l.usage(1, late), (1, 900));
    }

    #[test]
    fn oversize_request_runs_alone() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        // Nothing counted: a request above the limit is admitted.
        let big = l.admit(1, None, Some(100), 500, t0).unwrap();
        let e = l.admit(1, None, Some(100), 10, t0).unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 60,
                which: RateLimitKind::Tpm
            }
        );
        l.settle(big, 450, t0);
        assert!(l.admit(1, None, Some(100), 10, t0 + secs(59.0)).is_err());
        // Something counted: the big request waits until the window is empty.
        let small = l.admit(1, None, Some(100), 10, t0 + secs(60.0)).unwrap();
        let e = l
            .admit(1, None, Some(100), 500, t0 + secs(70.0))
            .unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 50,
                which: RateLimitKind::Tpm
            }
        );
        // A request that used no tokens leaves nothing counted.
        l.settle(small, 0, t0 + secs(70.0));
        assert!(l.admit(1, None, Some(100), 500, t0 + secs(70.0)).is_ok());
    }

    #[test]
    fn the_longer_wait_is_reported_when_both_limits_refuse() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        let _a = l.admit(1, Some(2), Some(100), 90, t0).unwrap();
        let _b = l.admit(1, Some(2), Some(100), 0, t0 + secs(30.0)).unwrap();
        // RPM frees up at 60 s, TPM (needs the 90 gone) also at 60 s: rpm wins the tie.
        let e = l
            .admit(1, Some(2), Some(100), 50, t0 + secs(40.0))
            .unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 20,
                which: RateLimitKind::Rpm
            }
        );
        let _c = l.admit(2, Some(2), Some(100), 10, t0).unwrap();
        let _d = l.admit(2, Some(2), Some(100), 80, t0 + secs(30.0)).unwrap();
        // RPM frees up at 60 s, TPM only at 90 s.
        let e = l
            .admit(2, Some(2), Some(100), 50, t0 + secs(40.0))
            .unwrap_err();
        assert_eq!(
            e,
            RetryAfter {
                secs: 50,
                which: RateLimitKind::Tpm
            }
        );
    }

    #[test]
    fn odd_inputs_are_safe() {
        let l = RateLimits::default();
        let t0 = Instant::now();
        // Negative estimates and actuals count as zero.
        let t = l.admit(1, None, Some(10), -50, t0).unwrap();
        assert_eq!(t.reserved_tokens(), 0);
        l.settle(t, -7, t0);
        assert_eq!(l.usage(1, t0), (1, 0));
        // Non-positive limits refuse.
        assert_eq!(
            l.admit(2, Some(0), None, 0, t0).unwrap_err(),
            RetryAfter {
                secs: 60,
                which: RateLimitKind::Rpm
            }
        );
        assert_eq!(
            l.admit(2, None, Some(-1), 0, t0).unwrap_err().which,
            RateLimitKind::Tpm
        );
        // A clock reading slightly older than the last admission does not panic or skew.
        let _a = l.admit(3, Some(2), None, 0, t0 + secs(5.0)).unwrap();
        let _b = l.admit(3, Some(2), None, 0, t0 + secs(4.0)).unwrap();
        assert!(l.admit(3, Some(2), None, 0, t0 + secs(64.9)).is_err());
        assert!(l.admit(3, Some(2), None, 0, t0 + secs(65.0)).is_ok());
    }
}
