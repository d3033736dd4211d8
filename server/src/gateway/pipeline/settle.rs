//! Stage 7, settle: the admitted request's [`Ticket`], which releases the hold at the
//! request's cost, settles the rate ticket at the tokens used and queues the request-log
//! row, exactly once, whichever way the request ended (answered, refused, failed, or
//! dropped because the client went away).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use tokengate_core::keys::ApiKey;
use tokengate_core::money::Usage;
use tokengate_core::usage::{FailureKind, RequestRecord, UpstreamAttempt};

use super::super::Gateway;
use super::super::routes::Target;
use crate::cluster::backplane::{Admitted, SETTLE_WAIT};

/// A request that has been admitted: everything needed to log and charge it.
pub(super) struct Ticket {
    pub(super) gw: Arc<Gateway>,
    pub(super) key: Arc<ApiKey>,
    /// The hold and rate reservation; taken by the one settlement.
    pub(super) admitted: Option<Admitted>,
    /// Told when the settlement reached the backplane (see [`Ticket::settled`]).
    pub(super) settled: Option<tokio::sync::oneshot::Sender<()>>,
    pub(super) endpoint: &'static str,
    pub(super) model: String,
    pub(super) request_id: String,
    pub(super) stream: bool,
    pub(super) started: Instant,
    pub(super) created_at: i64,
    pub(super) attempts: Vec<UpstreamAttempt>,
    pub(super) body_bytes: usize,
}

impl Ticket {
    /// Settles the hold at `cost`, the rate ticket at the tokens used, and queues the row.
    pub(super) fn settle(
        &mut self,
        target: Option<&Target>,
        status: u16,
        usage: Usage,
        cost: i64,
        err: Option<(FailureKind, String)>,
        ttfb_ms: Option<i64>,
    ) {
        // The hold covers every output token the upstream was allowed to produce, so the
        // actual cost fits in it. If an upstream still bills more (a price or usage the
        // hold could not foresee), the request is charged what it cost and the balance
        // may go below zero by that overrun, which is logged and counted.
        let Some(admitted) = self.admitted.take() else {
            return;
        };
        {
            let held = admitted.amount();
            if cost > held {
                self.gw
                    .meter
                    .stats()
                    .overruns
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(
                    request_id = %self.request_id,
                    cost,
                    hold = held,
                    overrun = cost - held,
                    "cost above the request's hold; charged in full"
                );
            }
        }
        // A single successful attempt is the row itself; the attempt list is kept when it
        // says more (fallbacks, skips, failures).
        let keep_attempts = self.attempts.len() > 1 || err.is_some();
        let (error_type, error_message) = match err {
            Some((t, m)) => (Some(t), Some(m)),
            None => (None, None),
        };
        let record = RequestRecord {
            request_id: self.request_id.clone(),
            user_id: self.key.user_id,
            key_id: self.key.id,
            endpoint: self.endpoint.into(),
            model: self.model.clone(),
            served_model: target.map(|t| t.model.name.clone()),
            provider: target.map(|t| t.provider.clone()),
            stream: self.stream,
            status: i64::from(status),
            error_type,
            error_message,
            tokens_in: usage.total_input(),
            tokens_out: usage.output,
            cached_tokens: usage.cache_read + usage.cache_write,
            cost_nano: cost,
            latency_ms: self.started.elapsed().as_millis() as i64,
            ttfb_ms,
            attempts: self.attempts.len().max(1) as i64,
            attempts_json: (keep_attempts && !self.attempts.is_empty())
                .then(|| std::mem::take(&mut self.attempts)),
            created_at: self.created_at,
        };
        // The backplane releases the hold and the rate reservation (in cluster mode it
        // also queues the charge in the shared outbox); the usage log writes the row here
        // too, idempotently by request id.
        self.gw.backplane.settle(
            &self.gw.money,
            &self.gw.limits,
            admitted,
            usage.total_input() + usage.output,
            &record,
            self.settled.take(),
        );
        self.gw.meter.record(record);
    }

    /// A waiter for this ticket's settlement to reach the backplane, to take before
    /// settling: a whole answer is sent only once its charge is shared (cluster mode), so
    /// an instance killed right after answering cannot lose it.
    pub(super) fn settled(&mut self) -> impl std::future::Future<Output = ()> + use<> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.settled = Some(tx);
        async move {
            let _ = tokio::time::timeout(SETTLE_WAIT, rx).await;
        }
    }

    /// Settles a request that ended in `err` before anything was served: nothing is
    /// charged and the rate ticket is settled at zero tokens.
    pub(super) fn settle_failed(
        &mut self,
        target: Option<&Target>,
        status: u16,
        kind: FailureKind,
        message: String,
    ) {
        self.settle(
            target,
            status,
            Usage::default(),
            0,
            Some((kind, message)),
            None,
        );
    }

    /// Prompt tokens to bill when the upstream reported no usage.
    pub(super) fn estimated_prompt(&self) -> i64 {
        estimated_prompt(self.body_bytes)
    }
}

/// Prompt tokens of a body of `body_bytes` bytes when the upstream reported none: 4 bytes
/// per token, rounded up.
pub(super) fn estimated_prompt(body_bytes: usize) -> i64 {
    body_bytes.div_ceil(4) as i64
}

impl Drop for Ticket {
    fn drop(&mut self) {
        // A ticket dropped without `settle` (a client that vanished while we waited for
        // the upstream) still releases its hold and is logged, uncharged.
        if self.admitted.is_some() {
            self.settle_failed(
                None,
                499,
                FailureKind::ClientClosed,
                "request cancelled".into(),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_estimate_is_a_token_per_four_bytes_rounded_up() {
        for (bytes, tokens) in [(0, 0), (1, 1), (4, 1), (5, 2), (8, 2), (4099, 1025)] {
            assert_eq!(estimated_prompt(bytes), tokens, "{bytes} bytes");
        }
    }
}
