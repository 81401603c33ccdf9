//! The outbox relay: publishes the events the store recorded with each write to JetStream, and
//! removes them from the outbox only once the stream acknowledged them.
//!
//! Ordering: with a compacted stream (one message per subject) the stream keeps whichever event of
//! an entity was stored *last*, so events of one entity must reach the stream in version order.
//! Each round therefore publishes at most one event per entity (the oldest pending one); the next
//! event of that entity is only sent after the previous one was acknowledged. Events of different
//! entities are pipelined. A resend after a lost ack carries the same `Nats-Msg-Id` and is dropped
//! by the stream's duplicate window, so every event is stored exactly once.
//!
//! Published events are removed from the outbox by the [`marker`], beside the loop, so a slow
//! store write never holds back the next publish. [`heartbeat`] writes the heartbeats it carries.

pub mod heartbeat;
mod marker;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use backon::BackoffBuilder;
use cacheflow_shared::config::{OutboxSettings, StreamSettings};
use cacheflow_shared::events::{ensure_stream, EventPublisher};
use cacheflow_shared::retry;
use cacheflow_shared::store::{DocumentStore, PendingEvent};
use cacheflow_shared::telemetry::names;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use self::marker::Marker;

pub struct OutboxRelay {
    store: Arc<dyn DocumentStore>,
    publisher: Arc<dyn EventPublisher>,
    /// Creates the stream; run (with retries) before the first publish, since NATS may be down
    /// when the API starts, and again after failed publishes, since a NATS server that lost its
    /// storage comes back without the stream.
    stream_setup: Option<(async_nats::jetstream::Context, StreamSettings)>,
    stream_ready: bool,
    pending_reported: Option<std::time::Instant>,
    wake: Arc<Notify>,
    marker: Marker,
    settings: OutboxSettings,
}

const PENDING_GAUGE_INTERVAL: Duration = Duration::from_secs(1);

/// What one round did.
#[derive(Debug, Default, PartialEq, Eq)]
struct Round {
    published: usize,
    failed: usize,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<dyn DocumentStore>,
        publisher: Arc<dyn EventPublisher>,
        wake: Arc<Notify>,
        settings: OutboxSettings,
    ) -> Self {
        let marker = Marker::spawn(
            store.clone(),
            Duration::from_millis(settings.retry_min_ms),
            Duration::from_millis(settings.retry_max_ms),
        );
        Self {
            store,
            publisher,
            marker,
            stream_setup: None,
            stream_ready: false,
            pending_reported: None,
            wake,
            settings,
        }
    }

    pub fn with_stream_setup(
        mut self,
        js: async_nats::jetstream::Context,
        stream: StreamSettings,
    ) -> Self {
        self.stream_setup = Some((js, stream));
        self
    }

    /// Publishes until `shutdown` is cancelled, then returns the relay so that the caller can
    /// [`drain`](Self::drain) it once the last requests are done.
    pub async fn run(mut self, shutdown: CancellationToken) -> Self {
        let poll = Duration::from_millis(self.settings.poll_interval_ms);
        let mut backoff = self.new_backoff();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if let Err(reason) = self.ensure_stream().await {
                tracing::warn!(%reason, "event stream not ready; will retry");
                self.pause(&mut backoff, &shutdown).await;
                continue;
            }
            self.report_pending().await;
            match self.round().await {
                Ok(round) if round.failed > 0 => {
                    self.stream_ready = false;
                    tracing::warn!(
                        failed = round.failed,
                        published = round.published,
                        "some events were not published; retrying"
                    );
                    self.pause(&mut backoff, &shutdown).await;
                }
                Ok(round) if round.published > 0 => backoff = self.new_backoff(),
                Ok(_) => {
                    backoff = self.new_backoff();
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(poll) => {}
                        () = shutdown.cancelled() => {}
                    }
                }
                Err(reason) => {
                    tracing::warn!(%reason, "reading the outbox failed; retrying");
                    self.pause(&mut backoff, &shutdown).await;
                }
            }
        }
        self
    }

    /// Publishes what is pending, for at most `deadline`, so the events of the last requests are
    /// out before the process exits. Events not published stay in the outbox and go out on the
    /// next start.
    pub async fn drain(&mut self, deadline: Duration) {
        let drained = tokio::time::timeout(deadline, async {
            loop {
                if self.ensure_stream().await.is_err() {
                    return false;
                }
                match self.round().await {
                    Ok(Round {
                        published: 0,
                        failed: 0,
                    }) => {
                        self.marker.flushed().await;
                        return true;
                    }
                    Ok(Round { failed: 0, .. }) => {}
                    _ => return false,
                }
            }
        })
        .await;
        match drained {
            Ok(true) => tracing::info!("outbox drained"),
            _ => tracing::warn!(
                deadline_ms = deadline.as_millis() as u64,
                "outbox not fully drained before shutdown; the remaining events are kept and published on next start"
            ),
        }
    }

    /// Updates the pending gauge, at most once per [`PENDING_GAUGE_INTERVAL`] (it costs a count
    /// in the store).
    async fn report_pending(&mut self) {
        if self
            .pending_reported
            .is_some_and(|at| at.elapsed() < PENDING_GAUGE_INTERVAL)
        {
            return;
        }
        self.pending_reported = Some(std::time::Instant::now());
        if let Ok(pending) = self.store.pending_count().await {
            metrics::gauge!(names::OUTBOX_PENDING_EVENTS).set(pending as f64);
        }
    }

    async fn ensure_stream(&mut self) -> Result<(), String> {
        if let (false, Some((js, stream))) = (self.stream_ready, &self.stream_setup) {
            ensure_stream(js, stream).await.map_err(|e| e.to_string())?;
        }
        self.stream_ready = true;
        Ok(())
    }

    /// Publishes the oldest pending event of each entity in one pipelined batch, leaving out the
    /// events already published whose removal from the outbox is still under way.
    async fn round(&self) -> Result<Round, String> {
        // Taken before the read: see `marker` for why this order never resends an event.
        let unmarked = self.marker.unmarked();
        let pending = self
            .store
            .pending_events(self.settings.batch_size + unmarked.len())
            .await
            .map_err(|e| e.to_string())?;
        let batch = first_per_entity(
            pending
                .into_iter()
                .filter(|p| !unmarked.contains(&p.seq))
                .collect(),
        );
        if batch.is_empty() {
            return Ok(Round::default());
        }
        let started = std::time::Instant::now();
        let results = self.publisher.publish(&batch).await;
        metrics::histogram!(names::OUTBOX_PUBLISH_DURATION_SECONDS)
            .record(started.elapsed().as_secs_f64());
        let mut published = Vec::with_capacity(batch.len());
        let mut failed = 0;
        for (pending, result) in batch.into_iter().zip(results) {
            match result {
                Ok(()) => published.push(pending),
                Err(failure) => {
                    failed += 1;
                    tracing::debug!(%failure, "publish failed");
                }
            }
        }
        metrics::counter!(names::OUTBOX_PUBLISHED_EVENTS_TOTAL).increment(published.len() as u64);
        metrics::counter!(names::OUTBOX_PUBLISH_FAILURES_TOTAL).increment(failed as u64);
        let round = Round {
            published: published.len(),
            failed,
        };
        self.marker.submit(published);
        Ok(round)
    }

    fn new_backoff(&self) -> backon::ExponentialBackoff {
        retry::backoff(
            Duration::from_millis(self.settings.retry_min_ms),
            Duration::from_millis(self.settings.retry_max_ms),
            usize::MAX,
        )
        .build()
    }

    async fn pause(&self, backoff: &mut backon::ExponentialBackoff, shutdown: &CancellationToken) {
        let delay = backoff
            .next()
            .unwrap_or(Duration::from_millis(self.settings.retry_max_ms));
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            () = shutdown.cancelled() => {}
        }
    }
}

/// Keeps, in outbox order, only the first pending event of each entity.
fn first_per_entity(pending: Vec<PendingEvent>) -> Vec<PendingEvent> {
    let mut seen = HashSet::with_capacity(pending.len());
    pending
        .into_iter()
        .filter(|p| seen.insert((p.event.collection.clone(), p.event.id.clone())))
        .collect()
}

#[cfg(test)]
mod tests {
    use cacheflow_shared::event::Event;

    use super::*;

    fn pending(seq: u64, id: &str, version: u64) -> PendingEvent {
        PendingEvent {
            seq,
            event: Event::delete("places", id, version),
        }
    }

    #[test]
    fn one_event_per_entity_in_outbox_order() {
        let batch = first_per_entity(vec![
            pending(1, "a", 1),
            pending(2, "b", 1),
            pending(3, "a", 2),
            pending(4, "c", 5),
            pending(5, "b", 2),
        ]);
        let picked: Vec<_> = batch
            .iter()
            .map(|p| (p.event.id.as_str(), p.event.version))
            .collect();
        assert_eq!(picked, vec![("a", 1), ("b", 1), ("c", 5)]);
    }
}
