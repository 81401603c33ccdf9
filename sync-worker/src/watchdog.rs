//! The stall watchdog: reads the consumer info every [`CONSUMER_POLL_INTERVAL`] (into the
//! pending gauges and the [`Health`]) and re-creates the consumer when the worker is stalled:
//!
//! - messages are pending on the consumer (and `max_ack_pending` is not what holds them back),
//!   no batch of this worker is in flight, and nothing was received for `worker.stall_after`;
//! - or the consumer is gone from the stream (a NATS server that lost its storage, the stream
//!   re-created by the API's relay, an operator's `nats consumer rm`): every pull then reaches no
//!   consumer, so nothing would ever be received again.
//!
//! Re-creating is idempotent (the stream and the durable consumer are created or updated to the
//! settings, as at start-up) and the waiting pull is abandoned, so the next pull starts afresh.
//! Each stall logs a warning, counts in `cacheflow_worker_stalls_total` and keeps `/readyz` at
//! 503 until a message is received. docs/WORKER.md ("Stalls") says what can cause one.

use std::time::Duration;

use async_nats::jetstream::consumer::PullConsumer;
use async_nats::jetstream::context::ConsumerInfoErrorKind;
use async_nats::jetstream::{self};
use cacheflow_shared::config::Settings;
use cacheflow_shared::events;
use cacheflow_shared::telemetry::names;
use tokio_util::sync::CancellationToken;

use crate::consumer;
use crate::health::Health;
use crate::metrics::{WorkerMetrics, CONSUMER_POLL_INTERVAL};

/// What the watchdog concluded from one look at the consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing waits for this worker, or it is busy with what it received.
    Fine,
    /// Messages wait but the stall threshold is not reached yet.
    Waiting,
    /// Re-create the consumer, for this reason.
    Stalled(String),
}

/// Whether messages wait for delivery that this worker could receive: pending on the consumer,
/// and not held back by `max_ack_pending` (then another worker holds them, and they come back
/// after its `ack_wait`).
pub fn waiting(num_pending: u64, num_ack_pending: usize, max_ack_pending: i64) -> bool {
    let throttled = max_ack_pending > 0 && num_ack_pending as i64 >= max_ack_pending;
    num_pending > 0 && !throttled
}

/// The stall rule, separate from the clock and the network so that it can be tested alone.
pub fn decide(waiting: bool, quiet: Duration, in_flight: usize, stall_after: Duration) -> Verdict {
    if !waiting || in_flight > 0 {
        Verdict::Fine
    } else if quiet >= stall_after {
        Verdict::Stalled(format!(
            "messages pending on the consumer, none received for {} s",
            quiet.as_secs()
        ))
    } else {
        Verdict::Waiting
    }
}

/// Watches until `stop` is cancelled.
pub async fn run(
    health: &Health,
    consumer: &PullConsumer,
    js: &jetstream::Context,
    settings: &Settings,
    metrics: &WorkerMetrics,
    stop: &CancellationToken,
) {
    let stall_after = settings.worker.stall_after();
    // Often enough to notice a stall soon after `stall_after`, never more than the gauges need.
    let every = CONSUMER_POLL_INTERVAL
        .min(stall_after / 2)
        .max(Duration::from_millis(100));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let info = tokio::select! {
            () = stop.cancelled() => return,
            info = consumer.get_info() => info,
        };
        let verdict = match info {
            Ok(info) => {
                metrics.consumer(&info);
                let waiting = waiting(
                    info.num_pending,
                    info.num_ack_pending,
                    settings.worker.max_ack_pending,
                );
                health.consumer_seen(Ok(waiting));
                let (quiet, in_flight) = health.quiet();
                match decide(waiting, quiet, in_flight, stall_after) {
                    Verdict::Stalled(why) => {
                        Verdict::Stalled(format!("{why} ({} pending)", info.num_pending))
                    }
                    verdict => verdict,
                }
            }
            Err(err)
                if matches!(
                    err.kind(),
                    ConsumerInfoErrorKind::NotFound | ConsumerInfoErrorKind::StreamNotFound
                ) =>
            {
                health.consumer_seen(Err(format!("{err}")));
                Verdict::Stalled(format!("{err}: pulls reach no consumer"))
            }
            Err(err) => {
                // NATS down or slow: the nats check says so; re-creating cannot help.
                tracing::debug!(error = %err, "reading the consumer info failed");
                health.consumer_seen(Err(format!("consumer info: {err}")));
                Verdict::Fine
            }
        };
        if let Verdict::Stalled(why) = verdict {
            recover(health, js, settings, &why).await;
        }
    }
}

/// Re-creates the stream (if it is gone) and the consumer, and abandons the waiting pull.
async fn recover(health: &Health, js: &jetstream::Context, settings: &Settings, why: &str) {
    tracing::warn!(
        reason = why,
        consumer = %settings.worker.consumer,
        stream = %settings.stream.name,
        "sync worker stalled; re-creating the consumer and its pull subscription"
    );
    metrics::counter!(names::WORKER_STALLS_TOTAL).increment(1);
    let rebound = async {
        events::ensure_stream(js, &settings.stream)
            .await
            .map_err(|err| err.to_string())?;
        consumer::bind(js, settings)
            .await
            .map_err(|err| format!("cannot re-create the consumer: {err}"))
    }
    .await;
    health.stalled(why.to_owned());
    match rebound {
        Ok(_) => health.bound(),
        Err(err) => {
            tracing::warn!(error = %err, "re-creating the consumer failed; the watchdog tries again");
            health.consumer_seen(Err(err));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const AFTER: Duration = Duration::from_secs(60);

    #[test]
    fn a_stall_is_pending_messages_no_batch_and_a_long_quiet() {
        let quiet = |secs| Duration::from_secs(secs);
        assert_eq!(
            decide(true, quiet(61), 0, AFTER),
            Verdict::Stalled("messages pending on the consumer, none received for 61 s".into())
        );
        assert!(matches!(
            decide(true, quiet(60), 0, AFTER),
            Verdict::Stalled(_)
        ));
        assert_eq!(decide(true, quiet(59), 0, AFTER), Verdict::Waiting);
        // Busy with its batches (e.g. Redis down and retrying): fetching nothing is by design.
        assert_eq!(decide(true, quiet(600), 1, AFTER), Verdict::Fine);
        // Nothing pending: a quiet stream.
        assert_eq!(decide(false, quiet(600), 0, AFTER), Verdict::Fine);
    }

    #[test]
    fn pending_held_back_by_max_ack_pending_is_not_waiting() {
        assert!(waiting(5, 0, 4096));
        assert!(!waiting(5, 4096, 4096));
        assert!(
            waiting(5, 4096, -1),
            "unlimited ack pending never holds back"
        );
        assert!(!waiting(0, 0, 4096));
    }
}
