//! Writes what the store said back to Redis, in the background, through the same versioned
//! apply the worker uses: a slow populate can never overwrite a newer version or resurrect a
//! deleted entity, because Redis compares the versions.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::{
    ApplyOutcome, CacheWriter, RedisCacheWriter, RedisWriterOptions, StoreState,
};
use cacheflow_shared::config::Settings;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use tokio::sync::OnceCell;

use cacheflow_shared::telemetry::names::CACHE_POPULATE_TOTAL as POPULATE_TOTAL;

/// Connects the cache writer on first use, so the API starts (and serves from the store) while
/// Redis is down.
pub struct Populator {
    writer: OnceCell<Arc<RedisCacheWriter>>,
    url: SecretUrl,
    pipeline: Arc<Pipeline>,
    options: RedisWriterOptions,
    negative_ttl: Duration,
}

impl Populator {
    pub fn new(settings: &Settings, pipeline: Arc<Pipeline>) -> Self {
        Self {
            writer: OnceCell::new(),
            url: settings.redis_url.clone(),
            pipeline,
            options: RedisWriterOptions::from_settings(settings),
            negative_ttl: settings.reads.negative_ttl(),
        }
    }

    /// The API's one cache writer (populates and operators' invalidations share it, and with it
    /// its cached view of the generations); `None` while Redis cannot be reached.
    pub async fn writer(&self) -> Option<&Arc<RedisCacheWriter>> {
        let connect = || async {
            match RedisCacheWriter::connect(&self.url, self.pipeline.clone(), self.options.clone())
                .await
            {
                Ok(writer) => Ok(Arc::new(writer)),
                Err(err) => {
                    tracing::warn!(%err, "cache writer not connected; populates and invalidations skipped");
                    Err(())
                }
            }
        };
        self.writer.get_or_try_init(connect).await.ok()
    }

    /// Populates Redis with `state` and returns what the apply did (`None` if Redis could not be
    /// reached: the next read simply misses again).
    pub async fn fill(
        &self,
        collection: &str,
        id: &str,
        state: StoreState,
    ) -> Option<ApplyOutcome> {
        let writer = self.writer().await?;
        let outcome = writer.fill(collection, id, state, self.negative_ttl).await;
        let label = match &outcome {
            Ok(ApplyOutcome::Applied) => "applied",
            Ok(ApplyOutcome::Absent) => "absent",
            Ok(ApplyOutcome::Stale | ApplyOutcome::Deleted) => "stale",
            Ok(ApplyOutcome::Rejected(_)) | Err(_) => "error",
        };
        metrics::counter!(POPULATE_TOTAL, "collection" => collection.to_owned(), "outcome" => label)
            .increment(1);
        match outcome {
            Ok(outcome) => Some(outcome),
            Err(err) => {
                tracing::debug!(%err, collection, id, "populate failed");
                None
            }
        }
    }
}
