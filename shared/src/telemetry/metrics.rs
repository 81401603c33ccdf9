//! The Prometheus recorder both binaries install, its `/metrics` endpoint, and the description
//! (kind, unit, labels, help) of every metric in [`names`](super::names).
//!
//! The recorder is process-global (the `metrics` facade has one global recorder), so
//! [`install_recorder`] installs it once and hands every later caller the same handle: tests build
//! many apps in one process.

use std::sync::OnceLock;
use std::time::Duration;

use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use super::names::{self, label};

/// Buckets of every `_seconds` histogram: 100 µs (a Redis or SQLite call) to 10 s (a request
/// waiting out an outage).
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];
/// Buckets of [`names::WORKER_BATCH_SIZE`]: powers of two up to the largest sensible batch.
pub const BATCH_SIZE_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];
/// The Prometheus text exposition format.
pub const CONTENT_TYPE_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
/// How often histogram samples are folded into their buckets when nobody scrapes (scrapes do it
/// too); bounds the memory of unscraped samples.
const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    Counter,
    Gauge,
    Histogram,
}

/// What `# HELP` / `# TYPE` say about a metric, and the labels it carries.
#[derive(Debug, Clone, Copy)]
pub struct MetricDescription {
    pub name: &'static str,
    pub kind: MetricKind,
    pub unit: Option<Unit>,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn describe(
    name: &'static str,
    kind: MetricKind,
    unit: Option<Unit>,
    labels: &'static [&'static str],
    help: &'static str,
) -> MetricDescription {
    MetricDescription {
        name,
        kind,
        unit,
        labels,
        help,
    }
}

use MetricKind::{Counter, Gauge, Histogram};
const COUNT: Option<Unit> = Some(Unit::Count);
const SECONDS: Option<Unit> = Some(Unit::Seconds);
const HTTP: &[&str] = &[label::ROUTE, label::METHOD, label::STATUS_CLASS];

/// Every metric of [`names::all`], described.
#[rustfmt::skip]
pub const DESCRIPTIONS: &[MetricDescription] = &[
    describe(names::HTTP_REQUESTS_TOTAL, Counter, COUNT, HTTP,
        "HTTP requests answered, by route pattern, method and status class."),
    describe(names::HTTP_REQUEST_DURATION_SECONDS, Histogram, SECONDS, HTTP,
        "Time to answer an HTTP request, by route pattern, method and status class."),
    describe(names::CACHE_REQUESTS_TOTAL, Counter, COUNT, &[label::COLLECTION, label::RESULT],
        "Reads by how the cache answered them: hit, miss, negative_hit or bypass."),
    describe(names::SINGLEFLIGHT_COALESCED_TOTAL, Counter, COUNT, &[label::COLLECTION],
        "Cache misses that waited for a store read already in flight instead of starting one."),
    describe(names::STORE_OPERATION_DURATION_SECONDS, Histogram, SECONDS, &[label::OP],
        "Time of one document-store operation."),
    describe(names::STORE_ERRORS_TOTAL, Counter, COUNT, &[label::OP, label::KIND],
        "Failed document-store operations, by operation and kind of failure."),
    describe(names::OUTBOX_PENDING_EVENTS, Gauge, COUNT, &[],
        "Events in the outbox: not yet acknowledged by JetStream, or acknowledged and about to be removed."),
    describe(names::OUTBOX_PUBLISH_DURATION_SECONDS, Histogram, SECONDS, &[],
        "Time to publish one round of outbox events to JetStream, acks included."),
    describe(names::OUTBOX_PUBLISHED_EVENTS_TOTAL, Counter, COUNT, &[],
        "Outbox events acknowledged by JetStream."),
    describe(names::OUTBOX_PUBLISH_FAILURES_TOTAL, Counter, COUNT, &[],
        "Outbox publishes that failed and will be retried."),
    describe(names::CACHE_POPULATE_TOTAL, Counter, COUNT, &[label::COLLECTION, label::OUTCOME],
        "Cache-aside populates after a miss, by outcome: applied, stale, absent or error."),
    describe(names::NEAR_CACHE_HITS_TOTAL, Counter, COUNT, &[],
        "Entity reads answered by the API's in-process near-cache (L1)."),
    describe(names::NEAR_CACHE_MISSES_TOTAL, Counter, COUNT, &[],
        "Entity reads the near-cache could not answer (not held, announced newer, or expired)."),
    describe(names::NEAR_CACHE_EVICTIONS_TOTAL, Counter, COUNT, &[],
        "Near-cache entries evicted to stay within reads.near_cache_bytes."),
    describe(names::NEAR_CACHE_INVALIDATIONS_TOTAL, Counter, COUNT, &[],
        "Near-cache entries dropped by a worker notice of a newer version."),
    describe(names::NEAR_CACHE_BYTES, Gauge, Some(Unit::Bytes), &[],
        "Bytes held by the near-cache (keys, documents and bookkeeping)."),
    describe(names::WORKER_EVENTS_TOTAL, Counter, COUNT, &[label::COLLECTION, label::OUTCOME],
        "Messages the sync worker took off the stream, by outcome: applied, deleted, stale, \
         dead_lettered or skipped."),
    describe(names::WORKER_RETRIES_TOTAL, Counter, COUNT, &[label::REASON],
        "Calls the sync worker retried after a failure, by the dependency that failed."),
    describe(names::WORKER_BATCH_DURATION_SECONDS, Histogram, SECONDS, &[],
        "Time of one sync-worker batch, from fetched messages to acks."),
    describe(names::WORKER_BATCH_SIZE, Histogram, COUNT, &[],
        "Messages per sync-worker batch."),
    describe(names::SYNC_LAG_SECONDS, Histogram, SECONDS, &[label::COLLECTION],
        "Time from a write's event (occurred_at) to its apply in Redis."),
    describe(names::CONSUMER_PENDING_MESSAGES, Gauge, COUNT, &[],
        "Messages in the stream the worker consumer has not delivered yet (JetStream consumer \
         info, polled by each worker)."),
    describe(names::CONSUMER_ACK_PENDING_MESSAGES, Gauge, COUNT, &[],
        "Messages delivered to sync workers and not acknowledged yet (JetStream consumer info, \
         polled by each worker)."),
    describe(names::WORKER_STALLS_TOTAL, Counter, COUNT, &[],
        "Times the stall watchdog found messages pending on the consumer (or the consumer gone) \
         but nothing received for stall_after, and re-created the pull subscription."),
    describe(names::HEARTBEAT_LAG_SECONDS, Histogram, SECONDS, &[label::COLLECTION],
        "End-to-end lag of a heartbeat write: from its store commit through the outbox, the \
         stream and the worker."),
    describe(names::OPS_PROGRESS_RATIO, Gauge, None, &[label::COMMAND],
        "How far the running operation command is, from 0 to 1."),
    describe(names::OPS_ITEMS_TOTAL, Counter, COUNT, &[label::COMMAND],
        "Items an operation command processed."),
    describe(names::AUDIT_DRIFT_ENTITIES, Gauge, COUNT, &[label::COLLECTION, label::KIND],
        "Entities the last audit found out of step with the store, by kind of drift."),
    describe(names::AUDIT_INCONSISTENCY_RATIO, Gauge, None, &[label::COLLECTION],
        "Drifted / checked entities of the last audit (verify or the sampled background audit)."),
];

/// The description of `name`, if it is one of ours.
pub fn description(name: &str) -> Option<&'static MetricDescription> {
    DESCRIPTIONS.iter().find(|d| d.name == name)
}

/// Installs the process-global Prometheus recorder (once) and returns its handle; later calls
/// return the same handle. Also describes every metric ([`describe_all`]) and starts a
/// background thread that folds histogram samples into their buckets every few seconds.
///
/// # Panics
/// When another `metrics` recorder was installed globally before the first call: every metric
/// would silently go elsewhere, which is a bug in the program.
pub fn install_recorder() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = builder().build_recorder();
            let handle = recorder.handle();
            metrics::set_global_recorder(recorder)
                .expect("another metrics recorder is already installed in this process");
            describe_all();
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || loop {
                    std::thread::sleep(UPKEEP_INTERVAL);
                    upkeep.run_upkeep();
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

fn builder() -> PrometheusBuilder {
    PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .and_then(|b| {
            b.set_buckets_for_metric(
                Matcher::Full(names::WORKER_BATCH_SIZE.into()),
                BATCH_SIZE_BUCKETS,
            )
        })
        .expect("the bucket lists are not empty")
}

/// Describes every metric (`# HELP` and `# TYPE` lines, units) to the installed recorder.
/// [`install_recorder`] calls it; describing again is harmless.
pub fn describe_all() {
    for d in DESCRIPTIONS {
        match (d.kind, d.unit) {
            (Counter, Some(unit)) => metrics::describe_counter!(d.name, unit, d.help),
            (Counter, None) => metrics::describe_counter!(d.name, d.help),
            (Gauge, Some(unit)) => metrics::describe_gauge!(d.name, unit, d.help),
            (Gauge, None) => metrics::describe_gauge!(d.name, d.help),
            (Histogram, Some(unit)) => metrics::describe_histogram!(d.name, unit, d.help),
            (Histogram, None) => metrics::describe_histogram!(d.name, d.help),
        }
    }
}

/// Serves `GET /metrics` (the Prometheus text format) on `listener` until `shutdown` is
/// cancelled; every other path is a 404.
pub async fn serve_metrics(
    listener: TcpListener,
    handle: PrometheusHandle,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router(handle))
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

/// The metrics endpoint as a router, for callers that serve it themselves.
pub fn router(handle: PrometheusHandle) -> Router {
    Router::new()
        .route("/metrics", get(render))
        .with_state(handle)
}

async fn render(State(handle): State<PrometheusHandle>) -> impl IntoResponse {
    ([(CONTENT_TYPE, CONTENT_TYPE_TEXT)], handle.render())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn every_name_is_described_once() {
        let described: Vec<&str> = DESCRIPTIONS.iter().map(|d| d.name).collect();
        let unique: BTreeSet<&str> = described.iter().copied().collect();
        assert_eq!(described.len(), unique.len());
        assert_eq!(unique, names::all().collect::<BTreeSet<_>>());
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        for d in DESCRIPTIONS {
            let name = d.name;
            assert!(name.starts_with("cacheflow_"), "{name}");
            assert!(
                name.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{name}"
            );
            // Counters and only counters end in `_total`.
            assert_eq!(d.kind == Counter, name.ends_with("_total"), "{name}");
            // The histogram suffixes belong to the exposition format, not to names.
            for suffix in ["_bucket", "_sum", "_count"] {
                assert!(!name.ends_with(suffix), "{name}");
            }
            // Timings are in seconds, and every histogram has explicit buckets (none is
            // rendered as a summary).
            assert_eq!(d.unit == SECONDS, name.ends_with("_seconds"), "{name}");
            if d.kind == Histogram {
                assert!(
                    name.ends_with("_seconds") || name == names::WORKER_BATCH_SIZE,
                    "{name} has no buckets"
                );
            }
            assert!(!d.help.is_empty() && !d.help.contains('\n'), "{name}");
            for label in d.labels {
                assert!(
                    label.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
                    "{name}: {label}"
                );
            }
        }
    }

    #[test]
    fn buckets_are_increasing() {
        for buckets in [SECONDS_BUCKETS, BATCH_SIZE_BUCKETS] {
            assert!(buckets.windows(2).all(|w| w[0] < w[1]), "{buckets:?}");
        }
        assert_eq!(SECONDS_BUCKETS.first(), Some(&0.0001));
        assert_eq!(BATCH_SIZE_BUCKETS.last(), Some(&2048.0));
    }
}
