//! The worker's Prometheus metrics (names in `cacheflow_shared::telemetry::names`): outcomes per
//! collection, retries per dependency, batch duration and size, sync lag, the consumer's
//! pending counts polled from JetStream, and the last audit's drift polled from Redis (`verify`
//! runs once and exits, so the workers export what it recorded).
//!
//! Every series with a known label set is registered at start-up (at zero), so that `rate()`
//! and the dashboards see it before its first event. The handles are resolved once: recording an
//! outcome is an atomic add, not a registry lookup per event. Without an installed recorder (the
//! in-process tests) everything here is a no-op.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::consumer::Info;
use cacheflow_shared::cache::{ApplyOutcome, RedisCacheWriter};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::telemetry::names::{self, label, UNKNOWN_COLLECTION};
use metrics::{counter, gauge, histogram, Counter, Gauge, Histogram};
use tokio_util::sync::CancellationToken;

use crate::ops::verify::export;

/// How often each worker reads the consumer's pending counts. Cheap because the consumer has no
/// subject filter (see `consumer`); every worker polls, so the gauges are the same on all of them
/// (dashboards take the `max`).
pub const CONSUMER_POLL_INTERVAL: Duration = Duration::from_secs(5);

/// The dependency whose failure made the worker retry (`reason` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dependency {
    Redis,
    Nats,
}

impl Dependency {
    pub fn label(self) -> &'static str {
        match self {
            Dependency::Redis => "redis",
            Dependency::Nats => "nats",
        }
    }
}

/// Counts one retry of a call to `dependency`.
pub fn retried(dependency: Dependency) {
    counter!(names::WORKER_RETRIES_TOTAL, label::REASON => dependency.label()).increment(1);
}

/// What happened to one message (`outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Applied,
    Deleted,
    Stale,
    DeadLettered,
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 5] = [
        Outcome::Applied,
        Outcome::Deleted,
        Outcome::Stale,
        Outcome::DeadLettered,
        Outcome::Skipped,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Deleted => "deleted",
            Outcome::Stale => "stale",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn of(outcome: &ApplyOutcome) -> Self {
        match outcome {
            ApplyOutcome::Applied => Outcome::Applied,
            ApplyOutcome::Deleted => Outcome::Deleted,
            // Only cache-aside populates leave absent markers; an event never does.
            ApplyOutcome::Stale | ApplyOutcome::Absent => Outcome::Stale,
            ApplyOutcome::Rejected(_) => Outcome::DeadLettered,
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// The worker's metric handles, one per series.
pub struct WorkerMetrics {
    /// Per collection of the pipeline, plus [`UNKNOWN_COLLECTION`].
    events: HashMap<String, [Counter; 5]>,
    lag: HashMap<String, Histogram>,
    batch_duration: Histogram,
    batch_size: Histogram,
    consumer_pending: Gauge,
    consumer_ack_pending: Gauge,
}

impl WorkerMetrics {
    /// Registers every series of the pipeline's collections with the installed recorder.
    pub fn new(pipeline: &Pipeline) -> Self {
        let collections: Vec<String> = pipeline
            .collection_names()
            .chain([UNKNOWN_COLLECTION])
            .map(str::to_owned)
            .collect();
        let events = collections
            .iter()
            .map(|collection| {
                let counters = Outcome::ALL.map(|outcome| {
                    counter!(
                        names::WORKER_EVENTS_TOTAL,
                        label::COLLECTION => collection.clone(),
                        label::OUTCOME => outcome.label()
                    )
                });
                (collection.clone(), counters)
            })
            .collect();
        let lag = pipeline
            .collection_names()
            .map(|collection| {
                let histogram = histogram!(
                    names::SYNC_LAG_SECONDS,
                    label::COLLECTION => collection.to_owned()
                );
                (collection.to_owned(), histogram)
            })
            .collect();
        counter!(names::WORKER_STALLS_TOTAL).increment(0);
        for reason in [Dependency::Redis, Dependency::Nats] {
            // Registered at zero: a retry counter that appears only on the first outage makes
            // `rate()` miss that first increase.
            counter!(names::WORKER_RETRIES_TOTAL, label::REASON => reason.label()).increment(0);
        }
        Self {
            events,
            lag,
            batch_duration: histogram!(names::WORKER_BATCH_DURATION_SECONDS),
            batch_size: histogram!(names::WORKER_BATCH_SIZE),
            consumer_pending: gauge!(names::CONSUMER_PENDING_MESSAGES),
            consumer_ack_pending: gauge!(names::CONSUMER_ACK_PENDING_MESSAGES),
        }
    }

    /// Counts `count` messages of `collection` (any string: one outside the pipeline counts as
    /// [`UNKNOWN_COLLECTION`], so an event cannot grow the label set).
    pub fn events(&self, collection: &str, outcome: Outcome, count: u64) {
        let counters = self
            .events
            .get(collection)
            .or_else(|| self.events.get(UNKNOWN_COLLECTION))
            .expect("the unknown collection is always registered");
        counters[outcome.index()].increment(count);
    }

    /// Records how long after its `occurred_at` an event of `collection` reached Redis. A
    /// negative lag (clocks of the API and worker hosts apart) counts as zero.
    pub fn lag(&self, collection: &str, lag: time::Duration) {
        if let Some(histogram) = self.lag.get(collection) {
            histogram.record(lag.as_seconds_f64().max(0.0));
        }
    }

    pub fn batch(&self, size: usize, took: Duration) {
        self.batch_size.record(size as f64);
        self.batch_duration.record(took.as_secs_f64());
    }

    pub fn consumer(&self, info: &Info) {
        self.consumer_pending.set(info.num_pending as f64);
        self.consumer_ack_pending.set(info.num_ack_pending as f64);
    }

    /// Reads the last audit of each collection every [`CONSUMER_POLL_INTERVAL`] (the first at
    /// once; one `HGETALL` each, one round trip, through `audits`' connection) into
    /// `cacheflow_audit_drift_entities`, until `stop` is cancelled. A failed read keeps the last
    /// values: the outage shows in the retry counters and logs. (The consumer's pending counts
    /// are read by the [`watchdog`](crate::watchdog), which also needs them.)
    pub async fn poll_audits(&self, audits: &RedisCacheWriter, stop: &CancellationToken) {
        let mut ticks = tokio::time::interval(CONSUMER_POLL_INTERVAL);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = export_audits(audits) => {}
            }
        }
    }
}

/// Sets the drift gauges of every audited collection from what `verify` last recorded.
async fn export_audits(writer: &RedisCacheWriter) {
    let collections: Vec<&str> = writer.pipeline().collection_names().collect();
    let mut conn = writer.connection();
    match export::read_last(&mut conn, writer.key_prefix(), &collections).await {
        Ok(audits) => {
            for (collection, drift) in collections.iter().zip(audits) {
                if let Some((drift, checked)) = drift {
                    export::set_gauges(collection, &drift, checked);
                }
            }
        }
        Err(err) => tracing::debug!(error = %err, "reading the last audits failed"),
    }
}

#[cfg(test)]
mod tests {
    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    fn pipeline() -> Pipeline {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml");
        Pipeline::load(&path).expect("the shipped pipeline is valid")
    }

    /// The rendered series of `name` (`name{labels} value` lines).
    fn series(scrape: &str, name: &str) -> Vec<String> {
        scrape
            .lines()
            .filter(|line| {
                line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
            })
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn registers_every_series_and_bounds_the_collection_label() {
        // A private recorder: the handles created inside keep recording into it afterwards.
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let metrics = ::metrics::with_local_recorder(&recorder, || WorkerMetrics::new(&pipeline()));

        let scrape = handle.render();
        let collections = pipeline().collection_names().count() + 1;
        let events = series(&scrape, names::WORKER_EVENTS_TOTAL);
        assert_eq!(events.len(), collections * Outcome::ALL.len(), "{scrape}");
        assert!(events.iter().all(|line| line.ends_with(" 0")), "{events:?}");
        assert_eq!(
            series(&scrape, names::WORKER_RETRIES_TOTAL).len(),
            2,
            "{scrape}"
        );
        assert!(
            scrape.contains(&format!(
                "{}_count{{collection=\"places\"}} 0",
                names::SYNC_LAG_SECONDS
            )),
            "{scrape}"
        );

        metrics.events("places", Outcome::Applied, 3);
        // A collection outside the pipeline (from a poison event) is counted as unknown.
        metrics.events("not-a-collection", Outcome::DeadLettered, 2);
        metrics.lag("places", time::Duration::milliseconds(1_500));
        metrics.lag("places", time::Duration::milliseconds(-20));
        metrics.lag("not-a-collection", time::Duration::seconds(1));
        metrics.batch(7, Duration::from_millis(3));
        let scrape = handle.render();
        let line = |s: &str| assert!(scrape.lines().any(|l| l == s), "no {s:?} in\n{scrape}");
        line(r#"cacheflow_worker_events_total{collection="places",outcome="applied"} 3"#);
        line(r#"cacheflow_worker_events_total{collection="unknown",outcome="dead_lettered"} 2"#);
        line(r#"cacheflow_sync_lag_seconds_count{collection="places"} 2"#);
        line(r#"cacheflow_sync_lag_seconds_sum{collection="places"} 1.5"#);
        line("cacheflow_worker_batch_size_count 1");
        line("cacheflow_worker_batch_size_sum 7");
        assert!(!scrape.contains("not-a-collection"), "{scrape}");
    }

    #[test]
    fn labels_are_the_documented_sets() {
        let outcomes: Vec<&str> = Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(outcomes, names::WORKER_OUTCOMES);
        assert!(Outcome::ALL.iter().enumerate().all(|(i, o)| o.index() == i));
        let reasons = [Dependency::Redis.label(), Dependency::Nats.label()];
        assert_eq!(reasons, names::RETRY_REASONS);
    }
}
