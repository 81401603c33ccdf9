//! Shared application state: the pipeline, the store, and the handles readiness checks use.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::config::ReadSettings;
use cacheflow_shared::pipeline::{Collection, Pipeline};
use cacheflow_shared::store::DocumentStore;
use tokio::sync::Notify;

use crate::read::Reader;

/// Everything the state is built from.
pub struct StateParts<'a> {
    pub pipeline: &'a Pipeline,
    pub store: Arc<dyn DocumentStore>,
    pub redis: redis::aio::ConnectionManager,
    pub nats: async_nats::Client,
    pub relay_wake: Arc<Notify>,
    pub dependency_timeout: Duration,
    pub reader: Arc<Reader>,
    pub read_settings: ReadSettings,
    /// Whether the operator routes (`/v1/admin/`) are served.
    pub admin_enabled: bool,
    /// The largest event the stream accepts (`limits.max_event_bytes`).
    pub max_event_bytes: usize,
    /// Where `GET /v1/admin/status` reads the pipeline's state.
    pub pipeline_names: PipelineNames,
}

/// The names of the pipeline's parts outside the API, for the operator status.
#[derive(Debug, Clone)]
pub struct PipelineNames {
    pub jetstream: async_nats::jetstream::Context,
    /// `stream.name`.
    pub stream: String,
    /// `stream.subject_prefix`: dead letters are `<prefix>.dlq.<collection>.<seq>`.
    pub subject_prefix: String,
    /// `worker.consumer`.
    pub consumer: String,
    /// `worker.key_prefix`: the status keys (audit, heartbeats) live under it.
    pub key_prefix: String,
}

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
    reader: Arc<Reader>,
    read_settings: ReadSettings,
    admin_enabled: bool,
    max_event_bytes: usize,
    pipeline_names: PipelineNames,
}

impl AppState {
    pub fn new(parts: StateParts<'_>) -> Self {
        let StateParts {
            pipeline,
            store,
            redis,
            nats,
            relay_wake,
            dependency_timeout,
            reader,
            read_settings,
            admin_enabled,
            max_event_bytes,
            pipeline_names,
        } = parts;
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
                reader,
                read_settings,
                admin_enabled,
                max_event_bytes,
                pipeline_names,
            }),
        }
    }

    pub fn max_event_bytes(&self) -> usize {
        self.inner.max_event_bytes
    }

    pub fn pipeline_names(&self) -> &PipelineNames {
        &self.inner.pipeline_names
    }

    /// The pipeline's collection names, sorted.
    pub fn collection_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.inner.collections.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    pub fn collection(&self, name: &str) -> Option<Arc<Collection>> {
        self.inner.collections.get(name).cloned()
    }

    /// Every collection of the pipeline, in name order.
    pub fn collections(&self) -> Vec<Arc<Collection>> {
        let mut collections: Vec<_> = self.inner.collections.values().cloned().collect();
        collections.sort_by(|a, b| a.name.cmp(&b.name));
        collections
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

    pub fn reader(&self) -> &Arc<Reader> {
        &self.inner.reader
    }

    pub fn read_settings(&self) -> &ReadSettings {
        &self.inner.read_settings
    }

    pub fn admin_enabled(&self) -> bool {
        self.inner.admin_enabled
    }

    /// Deadline for one readiness probe of a dependency.
    pub fn dependency_timeout(&self) -> Duration {
        self.inner.dependency_timeout
    }
}
