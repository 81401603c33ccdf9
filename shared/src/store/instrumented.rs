//! A decorator that times every store operation and counts its errors, so both adapters report
//! the same metrics without each knowing about them.

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    DocumentStore, PendingEvent, Precondition, Scored, StoreError, Validator, Versioned,
    WriteOutcome,
};
use crate::document::Document;

use crate::telemetry::names::{
    STORE_ERRORS_TOTAL as ERRORS, STORE_OPERATION_DURATION_SECONDS as OPERATION_DURATION,
};

pub struct InstrumentedStore {
    inner: Arc<dyn DocumentStore>,
}

impl InstrumentedStore {
    pub fn wrap(inner: Arc<dyn DocumentStore>) -> Arc<dyn DocumentStore> {
        Arc::new(Self { inner })
    }
}

async fn timed<T>(
    op: &'static str,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let started = Instant::now();
    let result = call.await;
    metrics::histogram!(OPERATION_DURATION, "op" => op).record(started.elapsed().as_secs_f64());
    if let Err(err) = &result {
        let kind = match err {
            StoreError::Unavailable(_) => Some("unavailable"),
            StoreError::Indeterminate(_) => Some("indeterminate"),
            StoreError::Conflict => Some("conflict"),
            StoreError::Internal(_) => Some("internal"),
            // Answers about the request, not failures of the store.
            StoreError::NotFound
            | StoreError::PreconditionFailed { .. }
            | StoreError::Invalid(_) => None,
        };
        if let Some(kind) = kind {
            metrics::counter!(ERRORS, "op" => op, "kind" => kind).increment(1);
        }
    }
    result
}

#[async_trait]
impl DocumentStore for InstrumentedStore {
    async fn put(
        &self,
        collection: &str,
        id: &str,
        document: Document,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        timed(
            "put",
            self.inner.put(collection, id, document, precondition),
        )
        .await
    }

    async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: Value,
        precondition: Precondition,
        validate: Validator,
    ) -> Result<WriteOutcome, StoreError> {
        timed(
            "patch",
            self.inner
                .patch(collection, id, patch, precondition, validate),
        )
        .await
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        timed("delete", self.inner.delete(collection, id, precondition)).await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Versioned>, StoreError> {
        timed("get", self.inner.get(collection, id)).await
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        timed("get_many", self.inner.get_many(collection, ids)).await
    }

    async fn scan(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned>, StoreError> {
        timed("scan", self.inner.scan(collection, after, limit)).await
    }

    async fn count_live(&self, collection: &str) -> Result<u64, StoreError> {
        timed("count", self.inner.count_live(collection)).await
    }

    async fn latest_version(&self, collection: &str, id: &str) -> Result<Option<u64>, StoreError> {
        timed("latest_version", self.inner.latest_version(collection, id)).await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        timed("pending", self.inner.pending_events(limit)).await
    }

    async fn mark_published(&self, events: &[PendingEvent]) -> Result<(), StoreError> {
        timed("mark_published", self.inner.mark_published(events)).await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        timed("pending", self.inner.pending_count()).await
    }

    async fn top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        let call = self
            .inner
            .top_by_score(collection, score_field, equals, offset, limit);
        timed("top", call).await
    }

    async fn near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        timed(
            "near",
            self.inner
                .near(collection, field, lon, lat, radius_m, limit),
        )
        .await
    }

    async fn heartbeat(&self, collection: &str) -> Result<(), StoreError> {
        timed("heartbeat", self.inner.heartbeat(collection)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
}
