//! The operator commands: what to reach for when the cache is cold, wrong, or must be rebuilt.
//! Each runs once and exits; each is safe while workers and the API keep running, because every
//! write goes through the same versioned apply (an older version never overwrites a newer one)
//! and the generation guard (see `cacheflow_shared::cache::redis::generations`).
//!
//! - [`backfill`]: every live document of the store into Redis, resumable.
//! - [`replay`]: events of the stream re-applied through an ephemeral consumer.
//! - [`rebuild`]: a fresh generation built beside the live one, then an atomic switch.
//! - [`retire`]: deleting a generation's keys (after a rebuild's switch).
//! - [`verify`]: the consistency auditor, with `--repair`.
//! - [`report`]: runs a command, prints its summary, picks the exit code.
//! - [`store_pages`]: reading a collection from the store one page ahead.
//! - [`progress`]: progress bars (on a terminal) or periodic log lines, and the ops metrics.

pub mod backfill;
pub mod progress;
pub mod rebuild;
pub mod replay;
pub mod report;
pub mod retire;
pub mod store_pages;
pub mod verify;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use backon::Retryable;
use cacheflow_shared::cache::redis::generations::{self, GenerationState};
use cacheflow_shared::cache::{CacheError, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::config::Settings;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::store::{self, DocumentStore, StoreError};
use tokio_util::sync::CancellationToken;

/// How many times a command retries a failed Redis or store call (jittered, capped backoff)
/// before giving up; with the worker's default backoff that is about a minute.
const ATTEMPTS: usize = 20;

/// What every command works with.
pub struct Ops {
    pub settings: Settings,
    pub pipeline: Arc<Pipeline>,
    pub writer: RedisCacheWriter,
    pub shutdown: CancellationToken,
}

impl Ops {
    /// Connects to Redis (retrying a while: a command may start together with Redis).
    pub async fn connect(
        settings: Settings,
        pipeline: Arc<Pipeline>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        let options = RedisWriterOptions::from_settings(&settings);
        let writer = retry_transient(&settings, "connecting to redis", || {
            RedisCacheWriter::connect(&settings.redis_url, pipeline.clone(), options.clone())
        })
        .await?;
        Ok(Self {
            settings,
            pipeline,
            writer,
            shutdown,
        })
    }

    /// Opens the store named by `STORE_URL`.
    pub async fn store(&self) -> anyhow::Result<Arc<dyn DocumentStore>> {
        store::open(
            &self.settings.store_url,
            &self.pipeline,
            &self.settings.store,
        )
        .await
        .with_context(|| format!("opening the store at {}", self.settings.store_url))
    }

    /// `only`, checked against the pipeline, or every collection of the pipeline.
    pub fn collections(&self, only: Option<&str>) -> anyhow::Result<Vec<String>> {
        match only {
            Some(name) if self.pipeline.collection(name).is_some() => Ok(vec![name.to_owned()]),
            Some(name) => anyhow::bail!(
                "collection `{name}` is not in the pipeline ({})",
                self.settings.pipeline_config.display()
            ),
            None => Ok(self
                .pipeline
                .collection_names()
                .map(str::to_owned)
                .collect()),
        }
    }

    /// A collection's generations as Redis holds them now.
    pub async fn generations(&self, collection: &str) -> anyhow::Result<GenerationState> {
        retry_transient(&self.settings, "reading the cache generations", || {
            let mut conn = self.writer.connection();
            async move {
                generations::read_state(&mut conn, self.writer.key_prefix(), collection).await
            }
        })
        .await
    }

    pub fn stopped(&self) -> bool {
        self.shutdown.is_cancelled()
    }
}

/// Errors a command may retry.
pub trait Transient {
    fn is_transient(&self) -> bool;
}

impl Transient for CacheError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

impl Transient for StoreError {
    fn is_transient(&self) -> bool {
        self.is_retryable()
    }
}

/// Runs `op`, retrying transient failures with the worker's capped, jittered backoff, at most
/// `ATTEMPTS` times; the error names `what`.
pub async fn retry_transient<T, E, Fut>(
    settings: &Settings,
    what: &'static str,
    op: impl FnMut() -> Fut,
) -> anyhow::Result<T>
where
    E: Transient + std::error::Error + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>>,
{
    let backoff = cacheflow_shared::retry::backoff(
        settings.worker.retry_min(),
        settings.worker.retry_max().max(Duration::from_millis(1)),
        ATTEMPTS,
    );
    op.retry(backoff)
        .when(Transient::is_transient)
        .notify(
            |err, delay| tracing::warn!(error = %err, retry_in = ?delay, "{what} failed; retrying"),
        )
        .await
        .with_context(|| what)
}
