//! Shared application state: the pipeline, the store, and the handles readiness checks use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::pipeline::{Collection, Pipeline};
use cacheflow_shared::store::DocumentStore;
use tokio::sync::Notify;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    collections: HashMap<String, Arc<Collection>>,
    store: Arc<dyn DocumentStore>,
    redis: redis::aio::ConnectionManager,
    nats: async_nats::Client,
    relay_wake: Arc<Notify>,
    dependency_timeout: Duration,
}

impl AppState {
    pub fn new(
        pipeline: &Pipeline,
        store: Arc<dyn DocumentStore>,
        redis: redis::aio::ConnectionManager,
        nats: async_nats::Client,
        relay_wake: Arc<Notify>,
        dependency_timeout: Duration,
    ) -> Self {
        let collections = pipeline
            .collections()
            .map(|c| (c.name.clone(), Arc::new(c.clone())))
            .collect();
        Self {
            inner: Arc::new(Inner {
                collections,
                store,
                redis,
                nats,
                relay_wake,
                dependency_timeout,
            }),
        }
    }

    pub fn collection(&self, name: &str) -> Option<Arc<Collection>> {
        self.inner.collections.get(name).cloned()
    }

    pub fn store(&self) -> &Arc<dyn DocumentStore> {
        &self.inner.store
    }

    pub fn redis(&self) -> redis::aio::ConnectionManager {
        self.inner.redis.clone()
    }

    pub fn nats(&self) -> &async_nats::Client {
        &self.inner.nats
    }

    /// Tells the outbox relay a new event is waiting, so it publishes at once instead of at its
    /// next poll.
    pub fn wake_relay(&self) {
        self.inner.relay_wake.notify_one();
    }

    /// Deadline for one readiness probe of a dependency.
    pub fn dependency_timeout(&self) -> Duration {
        self.inner.dependency_timeout
    }
}
