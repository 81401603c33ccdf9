//! Heartbeats through the outbox: every `outbox.heartbeat_interval_ms`, one heartbeat event per
//! collection is committed to the store's outbox (`DocumentStore::heartbeat`) and the relay woken.
//! It travels exactly like a write's event (outbox → relay → stream → worker), and the worker
//! measures how long that took (`cacheflow_heartbeat_lag_seconds{collection}`, and the last one in
//! `GET /v1/admin/status`). So the pipeline's lag is known while nobody writes, and a stage that
//! stopped shows as heartbeats that stop arriving. A heartbeat the store refuses (down) is skipped:
//! the next interval writes another.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::store::DocumentStore;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// The heartbeat writer, built at start-up and run beside the relay.
pub struct Heartbeats {
    store: Arc<dyn DocumentStore>,
    collections: Vec<String>,
    interval: Duration,
    wake: Arc<Notify>,
}

impl Heartbeats {
    /// `None` when `interval` is (heartbeats are off).
    pub fn new(
        store: Arc<dyn DocumentStore>,
        collections: Vec<String>,
        interval: Option<Duration>,
        wake: Arc<Notify>,
    ) -> Option<Self> {
        Some(Self {
            store,
            collections,
            interval: interval?,
            wake,
        })
    }

    /// Writes heartbeats every interval (the first one at once) until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        let mut ticks = tokio::time::interval(self.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            for collection in &self.collections {
                if let Err(err) = self.store.heartbeat(collection).await {
                    tracing::debug!(collection, error = %err, "heartbeat not written");
                }
            }
            self.wake.notify_one();
        }
    }
}
