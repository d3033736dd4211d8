//! Stage 5, classify: what one upstream attempt comes to, decided by a pure function of
//! what came back (a status and whether the body was usable, or the transport error) and,
//! before the attempt, of the breaker's admission and the time left. A reply is served,
//! passed through as the request's own fault, or put aside for the next target (its error
//! kept as the answer should no target be left). Falling back happens only here, before
//! anything reached the client: once a reply is served the relay owns it to the end.

use std::time::{Duration, Instant};

use tokengate_core::usage::AttemptOutcome;

use super::super::error::GatewayError;
use super::super::health::Admission;
use super::super::providers::UpstreamError;

/// One attempt's reply, reduced to what the decision needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Reply<'a> {
    /// A 2xx answer; `usable` is false for a JSON body that is not the object it should be.
    Success { status: u16, usable: bool },
    /// Any other status.
    Status(u16),
    /// No answer.
    Transport(&'a UpstreamError),
}

/// What to do with a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Answer the client with it.
    Serve,
    /// The upstream refused the request itself: pass its status and message to the client;
    /// another target would refuse it too.
    Refuse,
    /// Try the next target; the error is the answer if none is left.
    FallBack(GatewayError),
}

/// How the attempt counts for the target's circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Breaker {
    /// The target works (it answered, even if it refused the request).
    Success,
    /// The target failed.
    Failure,
    /// Says nothing about the target (it cannot do this operation): free the slot.
    Release,
}

/// The whole decision on one reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    pub verdict: Verdict,
    pub breaker: Breaker,
    /// What the request log's attempt list says of it.
    pub note: AttemptOutcome,
}

/// Decides what `reply` comes to.
pub(super) fn classify(reply: Reply<'_>) -> Decision {
    let decide = |verdict, breaker, note: AttemptOutcome| Decision {
        verdict,
        breaker,
        note,
    };
    let upstream = |status: u16, message: &str| {
        Verdict::FallBack(GatewayError::Upstream {
            status,
            message: message.into(),
        })
    };
    match reply {
        Reply::Success {
            status,
            usable: true,
        } => decide(Verdict::Serve, Breaker::Success, status.into()),
        Reply::Success { usable: false, .. } => decide(
            upstream(502, "The upstream provider sent a malformed response."),
            Breaker::Failure,
            "malformed response".into(),
        ),
        // Worth another target: overload, outage, or our provider credentials.
        Reply::Status(429) => decide(
            upstream(
                503,
                "The upstream provider is rate limiting; try again shortly.",
            ),
            Breaker::Failure,
            429.into(),
        ),
        Reply::Status(status) if status >= 500 || status == 401 || status == 403 => decide(
            upstream(502, &format!("The upstream provider failed ({status}).")),
            Breaker::Failure,
            status.into(),
        ),
        Reply::Status(status) => decide(Verdict::Refuse, Breaker::Success, status.into()),
        Reply::Transport(UpstreamError::Unsupported(m)) => decide(
            Verdict::FallBack(GatewayError::BadRequest {
                message: (*m).into(),
                param: Some("model".into()),
            }),
            Breaker::Release,
            (*m).into(),
        ),
        Reply::Transport(e) => {
            let verdict = match e {
                UpstreamError::Timeout => upstream(504, "The upstream provider timed out."),
                UpstreamError::TooLarge { .. } => upstream(502, &e.to_string()),
                _ => upstream(502, "The upstream provider could not be reached."),
            };
            decide(verdict, Breaker::Failure, e.to_string().into())
        }
    }
}

/// Whether and for how long to try the next target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// Send it, waiting at most this long for its first byte.
    Try(Duration),
    /// Its breaker is open: skip it (noted in the attempt list).
    Skip,
}

/// The per-attempt timeout at `now`: the attempt budget within what is left of the total
/// budget, or `None` once the total budget is spent (no further target is tried).
pub(super) fn time_left(
    now: Instant,
    deadline: Instant,
    per_attempt: Duration,
) -> Option<Duration> {
    (now < deadline).then(|| per_attempt.min(deadline - now))
}

/// Whether a target the breaker answered `admission` for is tried, with `timeout`.
pub(super) fn gate(admission: Admission, timeout: Duration) -> Gate {
    match admission {
        Admission::Rejected => Gate::Skip,
        Admission::Allowed | Admission::Probe => Gate::Try(timeout),
    }
}

/// The answer when no target served the call: the budget ran out, or the last target's
/// fallback error, or (every target skipped or none tried) why there was none.
pub(super) fn exhausted(
    out_of_time: bool,
    last_error: Option<GatewayError>,
    skipped: usize,
) -> GatewayError {
    if out_of_time {
        return GatewayError::Upstream {
            status: 504,
            message: "The upstream providers did not answer in time.".into(),
        };
    }
    last_error.unwrap_or_else(|| GatewayError::Upstream {
        status: 503,
        message: if skipped > 0 {
            "Every provider for this model is failing right now; try again shortly.".into()
        } else {
            "No upstream could answer.".into()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fall_back(status: u16, message: &str) -> Verdict {
        Verdict::FallBack(GatewayError::Upstream {
            status,
            message: message.into(),
        })
    }

    #[test]
    fn replies_are_served_refused_or_fallen_back_from() {
        use Breaker::*;
        let too_large = UpstreamError::TooLarge {
            what: "body",
            limit: 10,
        };
        let unsupported = UpstreamError::Unsupported("Embeddings are not available here.");
        let transport = UpstreamError::Transport("reset".into());
        let s = |status: u16| AttemptOutcome::Status(status);
        let n = |note: &str| AttemptOutcome::Note(note.into());
        let cases: Vec<(Reply<'_>, Verdict, Breaker, AttemptOutcome)> = vec![
            (
                Reply::Success {
                    status: 200,
                    usable: true,
                },
                Verdict::Serve,
                Success,
                s(200),
            ),
            (
                Reply::Success {
                    status: 201,
                    usable: true,
                },
                Verdict::Serve,
                Success,
                s(201),
            ),
            (
                Reply::Success {
                    status: 200,
                    usable: false,
                },
                fall_back(502, "The upstream provider sent a malformed response."),
                Failure,
                n("malformed response"),
            ),
            (
                Reply::Status(429),
                fall_back(
                    503,
                    "The upstream provider is rate limiting; try again shortly.",
                ),
                Failure,
                s(429),
            ),
            (
                Reply::Status(500),
                fall_back(502, "The upstream provider failed (500)."),
                Failure,
                s(500),
            ),
            (
                Reply::Status(503),
                fall_back(502, "The upstream provider failed (503)."),
                Failure,
                s(503),
            ),
            // Our credentials at that provider: another provider may take them.
            (
                Reply::Status(401),
                fall_back(502, "The upstream provider failed (401)."),
                Failure,
                s(401),
            ),
            (
                Reply::Status(403),
                fall_back(502, "The upstream provider failed (403)."),
                Failure,
                s(403),
            ),
            // The request's own fault: passed through, and the target is healthy.
            (Reply::Status(400), Verdict::Refuse, Success, s(400)),
            (Reply::Status(404), Verdict::Refuse, Success, s(404)),
            (Reply::Status(413), Verdict::Refuse, Success, s(413)),
            (Reply::Status(422), Verdict::Refuse, Success, s(422)),
            (Reply::Status(302), Verdict::Refuse, Success, s(302)),
            (
                Reply::Transport(&UpstreamError::Timeout),
                fall_back(504, "The upstream provider timed out."),
                Failure,
                n("the upstream timed out"),
            ),
            (
                Reply::Transport(&UpstreamError::Connect),
                fall_back(502, "The upstream provider could not be reached."),
                Failure,
                n("could not connect to the upstream"),
            ),
            (
                Reply::Transport(&transport),
                fall_back(502, "The upstream provider could not be reached."),
                Failure,
                n("the upstream connection failed: reset"),
            ),
            (
                Reply::Transport(&too_large),
                fall_back(
                    502,
                    "The upstream provider sent a body larger than the 10-byte limit.",
                ),
                Failure,
                n("The upstream provider sent a body larger than the 10-byte limit."),
            ),
            (
                Reply::Transport(&unsupported),
                Verdict::FallBack(GatewayError::BadRequest {
                    message: "Embeddings are not available here.".into(),
                    param: Some("model".into()),
                }),
                Release,
                n("Embeddings are not available here."),
            ),
        ];
        for (reply, verdict, breaker, note) in cases {
            assert_eq!(
                classify(reply),
                Decision {
                    verdict,
                    breaker,
                    note
                },
                "{reply:?}"
            );
        }
    }

    #[test]
    fn the_budget_bounds_each_attempt_and_ends_the_loop() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let cases = [
            // (now, deadline, per attempt, timeout)
            (t0, t0 + s(60), s(10), Some(s(10))),
            (t0 + s(55), t0 + s(60), s(10), Some(s(5))),
            (t0 + s(60), t0 + s(60), s(10), None),
            (t0 + s(61), t0 + s(60), s(10), None),
        ];
        for (now, deadline, per_attempt, want) in cases {
            assert_eq!(time_left(now, deadline, per_attempt), want);
        }
    }

    #[test]
    fn an_open_breaker_skips_the_target() {
        let t = Duration::from_secs(3);
        assert_eq!(gate(Admission::Allowed, t), Gate::Try(t));
        assert_eq!(gate(Admission::Probe, t), Gate::Try(t));
        assert_eq!(gate(Admission::Rejected, t), Gate::Skip);
    }

    #[test]
    fn an_exhausted_call_answers_with_the_best_reason() {
        let upstream = |status: u16, message: &str| GatewayError::Upstream {
            status,
            message: message.into(),
        };
        let last = upstream(502, "The upstream provider failed (500).");
        let cases = [
            (
                true,
                Some(last.clone()),
                0,
                upstream(504, "The upstream providers did not answer in time."),
            ),
            (false, Some(last.clone()), 3, last.clone()),
            (
                false,
                None,
                2,
                upstream(
                    503,
                    "Every provider for this model is failing right now; try again shortly.",
                ),
            ),
            (false, None, 0, upstream(503, "No upstream could answer.")),
        ];
        for (out_of_time, last_error, skipped, want) in cases {
            assert_eq!(exhausted(out_of_time, last_error, skipped), want);
        }
    }
}
