//! Start-up and the fetch → apply → ack loop.
//!
//! Start-up waits out unavailable dependencies (NATS, Redis) with the unlimited backoff, so a
//! worker may start before them; shutdown interrupts the wait. The loop holds at most
//! `batches_in_flight` batches of `batch_size` messages, and the consumer's `max_ack_pending`
//! bounds what all workers hold.

use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream;
use backon::BackoffBuilder;
use cacheflow_shared::cache::{CacheWriter, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::config::Settings;
use cacheflow_shared::events;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::telemetry;
use futures::{Stream, StreamExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::background_audit;
use crate::batch::{self, BatchContext, BatchError};
use crate::consumer;
use crate::health::{self, Health, PULL_FAILURES_UNREADY};
use crate::heartbeat::Heartbeats;
use crate::metrics::{self, Dependency, WorkerMetrics};
use crate::retry;
use crate::stats::Stats;
use crate::watchdog;

/// The NATS client name (visible in the server's connection list).
const CLIENT_NAME: &str = "cacheflow-sync-worker";
/// A pull that ends this much sooner than its wait without messages was refused rather than
/// expired (e.g. max ack pending reached, other workers' requests ahead): pause before the next.
const REFUSED_PULL_PAUSE: Duration = Duration::from_millis(20);

#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error(transparent)]
    Connect(#[from] events::connect::ConnectError),
    #[error(transparent)]
    Cache(#[from] cacheflow_shared::cache::CacheError),
}

/// What the binary runs: [`run`], with the Prometheus recorder installed and `GET /metrics`,
/// `GET /healthz` and `GET /readyz` (see [`health`]) served on `metrics_listener` until the run
/// ends.
pub async fn run_with_metrics(
    settings: Settings,
    pipeline: Arc<Pipeline>,
    metrics_listener: TcpListener,
    shutdown: CancellationToken,
) -> Result<Stats, WorkerError> {
    let handle = telemetry::install_recorder();
    match metrics_listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, "serving metrics on /metrics"),
        Err(err) => tracing::warn!(error = %err, "serving metrics on an unknown address"),
    }
    // Its own token: a run ending with an error must stop the endpoint too.
    let stop_serving = shutdown.child_token();
    let health = Health::new();
    let routes = telemetry::metrics::router(handle).merge(health::router(health.clone()));
    let stop = stop_serving.clone();
    let server = tokio::spawn(async move {
        axum::serve(metrics_listener, routes)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    let result = run_observed(settings, pipeline, health, shutdown).await;
    stop_serving.cancel();
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::warn!(error = %err, "the metrics endpoint failed"),
        Err(err) => tracing::warn!(error = %err, "the metrics endpoint panicked"),
    }
    result
}

/// Runs the worker until `shutdown` is cancelled; returns what it did. A dependency that is down
/// is waited for, never a reason to exit; only a permanent error (a bad URL, Redis refusing the
/// worker) ends the run early.
pub async fn run(
    settings: Settings,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) -> Result<Stats, WorkerError> {
    run_observed(settings, pipeline, Health::new(), shutdown).await
}

/// [`run`], reporting to `health` (what `/readyz` and the stall watchdog read).
pub async fn run_observed(
    settings: Settings,
    pipeline: Arc<Pipeline>,
    health: Arc<Health>,
    shutdown: CancellationToken,
) -> Result<Stats, WorkerError> {
    let backoff = retry::forever(&settings.worker);
    let client = events::connect(&settings, CLIENT_NAME).await?;
    let mut js = jetstream::new(client.clone());
    js.set_timeout(settings.nats.timeout());

    let metrics = WorkerMetrics::new(&pipeline);
    let Ok(consumer) = retry::until_shutdown(
        "binding the consumer",
        Dependency::Nats,
        backoff,
        &shutdown,
        |_| true,
        || async {
            // Idempotent; a worker may start before the API ever created the stream.
            events::ensure_stream(&js, &settings.stream).await?;
            consumer::bind(&js, &settings)
                .await
                .map_err(async_nats::Error::from)
        },
    )
    .await
    else {
        tracing::info!("shutdown requested before the consumer was bound");
        return Ok(Stats::default());
    };
    let options = RedisWriterOptions::from_settings(&settings);
    let writer = match retry::until_shutdown(
        "connecting to redis",
        Dependency::Redis,
        backoff,
        &shutdown,
        cacheflow_shared::cache::CacheError::is_retryable,
        || RedisCacheWriter::connect(&settings.redis_url, pipeline.clone(), options.clone()),
    )
    .await
    {
        Ok(writer) => writer,
        Err(err) if err.is_retryable() => {
            tracing::info!("shutdown requested before redis was reachable");
            return Ok(Stats::default());
        }
        Err(err) => return Err(err.into()),
    };
    health.bound();
    health.connected(
        client.clone(),
        writer.connection(),
        settings.redis.timeout(),
    );
    tracing::info!(
        stream = %settings.stream.name,
        consumer = %settings.worker.consumer,
        batch_size = settings.worker.batch_size,
        key_prefix = %settings.worker.key_prefix,
        "sync worker running"
    );

    let notices = crate::notices::Notices::new(client.clone(), &settings.stream.subject_prefix);
    let heartbeats = Heartbeats::new(
        &pipeline,
        writer.connection(),
        &settings.worker.key_prefix,
        settings.redis.timeout(),
    );
    let ctx = BatchContext {
        writer: &writer as &dyn CacheWriter,
        js: &js,
        subject_prefix: &settings.stream.subject_prefix,
        backoff,
        shutdown: &shutdown,
        metrics: &metrics,
        notices: &notices,
        heartbeats: &heartbeats,
    };
    // The audits and the consumer (the watchdog) are polled alongside, and the background audit
    // runs, until the loop has ended.
    let polling = shutdown.child_token();
    let (result, (), (), ()) = tokio::join!(
        async {
            let result = consume(&ctx, &consumer, &settings, &health).await;
            polling.cancel();
            result
        },
        metrics.poll_audits(&writer, &polling),
        watchdog::run(&health, &consumer, &js, &settings, &metrics, &polling),
        // Boxed: the audit's future is deep, and inline it overflows the compiler's layout limit.
        Box::pin(background_audit::run(
            &settings, &pipeline, &writer, &polling
        )),
    );
    // Acks are fire-and-forget publishes: push the last ones out before the process exits.
    if let Err(err) = client.flush().await {
        tracing::warn!(error = %err, "flushing the last acks failed; those events will be redelivered");
    }
    let stats = result?;
    tracing::info!(
        batches = stats.batches,
        applied = stats.applied,
        deleted = stats.deleted,
        stale = stats.stale,
        dead_lettered = stats.dead_lettered,
        skipped = stats.skipped,
        ack_failures = stats.ack_failures,
        "sync worker stopped"
    );
    Ok(stats)
}

async fn consume(
    ctx: &BatchContext<'_>,
    consumer: &jetstream::consumer::PullConsumer,
    settings: &Settings,
    health: &Health,
) -> Result<Stats, WorkerError> {
    // Up to `batches_in_flight` batches are processed concurrently, and the next fetch starts as
    // soon as one finishes: Redis executes one batch's commands while the worker fetches, decodes
    // and plans the others (measured: two batches about 2x the throughput of one; four about
    // 1.2x that of two, as a batch's transactions take two round trips per chunk). Their order
    // does not matter: the version check makes every interleaving converge.
    let processed = batches(ctx, consumer, settings, health)
        .map(|messages| batch::process(ctx, messages))
        .buffer_unordered(settings.worker.batches_in_flight);
    let mut processed = std::pin::pin!(processed);
    let mut total = Stats::default();
    while let Some(result) = processed.next().await {
        health.batch_done();
        match result {
            Ok(stats) => total.add(&stats),
            // Shutdown while Redis is down: the other batch in flight ends the same way, and
            // the fetch stream ends because shutdown was requested.
            Err(BatchError::Interrupted) => {}
            Err(BatchError::Fatal(err)) => return Err(err.into()),
        }
    }
    Ok(total)
}

/// Non-empty fetched batches until shutdown. Shutdown is checked only between fetches: a fetch is
/// never abandoned midway (its messages would sit unacked until ack_wait), and it lasts at most
/// `fetch_wait`.
///
/// A pull the watchdog gave up on ([`Health::resubscribed`]) is abandoned: its messages, if any
/// arrive, are redelivered after `ack_wait`.
fn batches<'a>(
    ctx: &'a BatchContext<'_>,
    consumer: &'a jetstream::consumer::PullConsumer,
    settings: &'a Settings,
    health: &'a Health,
) -> impl Stream<Item = Vec<jetstream::Message>> + 'a {
    let wait = settings.worker.fetch_wait();
    futures::stream::unfold(ctx.backoff.build(), move |mut failures| async move {
        while !ctx.shutdown.is_cancelled() {
            let fetch = consumer::fetch(consumer, settings.worker.batch_size, wait);
            let fetched = tokio::select! {
                fetched = fetch => fetched,
                () = health.resubscribed() => continue,
            };
            let fetched = match fetched {
                Ok(fetched) => fetched,
                Err(err) => {
                    let delay = failures.next().unwrap_or(settings.worker.retry_max());
                    metrics::retried(Dependency::Nats);
                    health.pull_failed(err.to_string());
                    tracing::warn!(error = %err, retry_in = ?delay, "pull request failed; retrying");
                    pause(ctx.shutdown, delay).await;
                    continue;
                }
            };
            if !fetched.messages.is_empty() {
                health.received();
                return Some((fetched.messages, ctx.backoff.build()));
            }
            let error = fetched.error.as_ref().map(ToString::to_string);
            let failed = health.pull_ended(error.clone());
            if let Some(error) = error {
                // Once in a while (max ack pending reached, a reconnect) is normal; a run of
                // them means the pulls reach no consumer, which must not stay a debug line.
                if failed % (PULL_FAILURES_UNREADY * 10) == PULL_FAILURES_UNREADY {
                    tracing::warn!(%error, failed, "pull requests keep failing; /readyz reports the consumer down");
                } else {
                    tracing::debug!(%error, "pull ended early");
                }
            }
            if fetched.took < wait / 2 {
                pause(ctx.shutdown, REFUSED_PULL_PAUSE).await;
            }
        }
        None
    })
}

async fn pause(shutdown: &CancellationToken, delay: Duration) {
    tokio::select! {
        () = tokio::time::sleep(delay) => {}
        () = shutdown.cancelled() => {}
    }
}
