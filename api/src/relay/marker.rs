//! Removing published events from the outbox, beside the relay rather than inside its loop.
//!
//! A delete is a store write: with SQLite `synchronous = FULL` it waits for an fsync and for the
//! writer connection, which client writes hold most of the time under load. Done inline, every
//! event committed meanwhile waited for it before being published; here the relay goes on
//! publishing while the marker deletes, coalescing whatever was published meanwhile into one
//! transaction.
//!
//! Until its delete commits, a published event stays in the outbox, so the relay must not send it
//! again: [`Marker::unmarked`] lists those sequence numbers. The relay takes that list *before* it
//! reads the outbox, and the marker drops a number only *after* its delete committed, so an event
//! missing from the list the relay took is also missing from what it reads next.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backon::BackoffBuilder;
use cacheflow_shared::retry;
use cacheflow_shared::store::{DocumentStore, PendingEvent};
use tokio::sync::mpsc;

#[derive(Clone)]
pub(super) struct Marker {
    queue: mpsc::UnboundedSender<Vec<PendingEvent>>,
    unmarked: Arc<Mutex<HashSet<u64>>>,
}

impl Marker {
    /// Starts the marker's task; it ends when the last `Marker` handle is dropped and the queue
    /// is empty.
    pub(super) fn spawn(
        store: Arc<dyn DocumentStore>,
        retry_min: Duration,
        retry_max: Duration,
    ) -> Self {
        let (queue, batches) = mpsc::unbounded_channel();
        let unmarked = Arc::new(Mutex::new(HashSet::new()));
        tokio::spawn(mark_until_closed(
            store,
            batches,
            unmarked.clone(),
            (retry_min, retry_max),
        ));
        Self { queue, unmarked }
    }

    /// The events published but not yet removed from the outbox.
    pub(super) fn unmarked(&self) -> HashSet<u64> {
        self.lock().clone()
    }

    pub(super) fn unmarked_count(&self) -> usize {
        self.lock().len()
    }

    /// Hands over events the stream acknowledged.
    pub(super) fn submit(&self, published: Vec<PendingEvent>) {
        if published.is_empty() {
            return;
        }
        self.lock().extend(published.iter().map(|p| p.seq));
        // The task lives as long as any handle does, so sending cannot fail while `self` exists.
        let _ = self.queue.send(published);
    }

    /// Waits until everything submitted has been removed from the outbox.
    pub(super) async fn flushed(&self) {
        while self.unmarked_count() > 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<u64>> {
        self.unmarked.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn mark_until_closed(
    store: Arc<dyn DocumentStore>,
    mut batches: mpsc::UnboundedReceiver<Vec<PendingEvent>>,
    unmarked: Arc<Mutex<HashSet<u64>>>,
    (retry_min, retry_max): (Duration, Duration),
) {
    while let Some(mut batch) = batches.recv().await {
        while let Ok(more) = batches.try_recv() {
            batch.extend(more);
        }
        let mut backoff = retry::backoff(retry_min, retry_max, usize::MAX).build();
        // Until it succeeds: the events stay listed as unmarked, so nothing is published twice
        // meanwhile, and a restart before then only resends them under the same Msg-Id.
        while let Err(err) = store.mark_published(&batch).await {
            let delay = backoff.next().unwrap_or(retry_max);
            tracing::warn!(%err, events = batch.len(), "removing published events from the outbox failed; retrying");
            tokio::time::sleep(delay).await;
        }
        let mut unmarked = unmarked.lock().unwrap_or_else(|e| e.into_inner());
        for event in &batch {
            unmarked.remove(&event.seq);
        }
    }
}
