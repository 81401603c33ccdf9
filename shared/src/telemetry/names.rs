//! Every metric name, label name and label value set, in one place, so that the API, the worker,
//! the tests and the dashboards (`dashboards/*.json`) agree.
//!
//! Naming follows Prometheus: namespace `cacheflow_`, the base unit as a suffix (`_seconds`),
//! `_total` on counters. Label values come from the small fixed sets below; `route` is the axum
//! route *pattern* (`/v1/{collection}/{id}`), never the raw path, and `collection` is a collection
//! of the pipeline (or [`UNKNOWN_COLLECTION`]), never a string taken unchecked from a request or an
//! event.

// ---------------------------------------------------------------------------------------------
// API
// ---------------------------------------------------------------------------------------------

/// Counter `{route, method, status_class}`: HTTP requests answered.
pub const HTTP_REQUESTS_TOTAL: &str = "cacheflow_http_requests_total";
/// Histogram `{route, method, status_class}`: time to answer an HTTP request.
pub const HTTP_REQUEST_DURATION_SECONDS: &str = "cacheflow_http_request_duration_seconds";
/// Counter `{collection, result}` ([`CACHE_RESULTS`]): reads by how the cache answered.
pub const CACHE_REQUESTS_TOTAL: &str = "cacheflow_cache_requests_total";
/// Counter `{collection}`: reads that waited for another request's store read (single flight).
pub const SINGLEFLIGHT_COALESCED_TOTAL: &str = "cacheflow_singleflight_coalesced_total";
/// Histogram `{op}` ([`STORE_OPS`]): time of one store operation.
pub const STORE_OPERATION_DURATION_SECONDS: &str = "cacheflow_store_operation_duration_seconds";
/// Counter `{op, kind}` ([`STORE_OPS`], [`STORE_ERROR_KINDS`]): failed store operations.
pub const STORE_ERRORS_TOTAL: &str = "cacheflow_store_errors_total";
/// Gauge: events in the outbox: not yet acknowledged by JetStream, or acknowledged and about to
/// be removed.
pub const OUTBOX_PENDING_EVENTS: &str = "cacheflow_outbox_pending_events";
/// Histogram: time to publish one relay round to JetStream (until the acks).
pub const OUTBOX_PUBLISH_DURATION_SECONDS: &str = "cacheflow_outbox_publish_duration_seconds";
/// Counter: outbox events acknowledged by JetStream.
pub const OUTBOX_PUBLISHED_EVENTS_TOTAL: &str = "cacheflow_outbox_published_events_total";
/// Counter: failed outbox publishes (retried).
pub const OUTBOX_PUBLISH_FAILURES_TOTAL: &str = "cacheflow_outbox_publish_failures_total";
/// Counter `{collection, outcome}` ([`POPULATE_OUTCOMES`]): cache-aside populates after a miss.
pub const CACHE_POPULATE_TOTAL: &str = "cacheflow_cache_populate_total";
/// Counter: entity reads answered by the API's in-process near-cache (L1).
pub const NEAR_CACHE_HITS_TOTAL: &str = "cacheflow_near_cache_hits_total";
/// Counter: entity reads the near-cache could not answer (absent, announced newer, too old).
pub const NEAR_CACHE_MISSES_TOTAL: &str = "cacheflow_near_cache_misses_total";
/// Counter: near-cache entries evicted to stay within `reads.near_cache_bytes`.
pub const NEAR_CACHE_EVICTIONS_TOTAL: &str = "cacheflow_near_cache_evictions_total";
/// Counter: near-cache entries a worker notice made older than Redis (dropped).
pub const NEAR_CACHE_INVALIDATIONS_TOTAL: &str = "cacheflow_near_cache_invalidations_total";
/// Gauge: bytes the near-cache holds (keys, documents, bookkeeping).
pub const NEAR_CACHE_BYTES: &str = "cacheflow_near_cache_bytes";

// ---------------------------------------------------------------------------------------------
// Sync worker
// ---------------------------------------------------------------------------------------------

/// Counter `{collection, outcome}` ([`WORKER_OUTCOMES`]): messages the worker took off the stream.
pub const WORKER_EVENTS_TOTAL: &str = "cacheflow_worker_events_total";
/// Counter `{reason}` ([`RETRY_REASONS`]): retried calls to a dependency that failed.
pub const WORKER_RETRIES_TOTAL: &str = "cacheflow_worker_retries_total";
/// Histogram: time of one batch, from fetched messages to acks.
pub const WORKER_BATCH_DURATION_SECONDS: &str = "cacheflow_worker_batch_duration_seconds";
/// Histogram (buckets [`BATCH_SIZE_BUCKETS`](super::metrics::BATCH_SIZE_BUCKETS)): messages per
/// batch.
pub const WORKER_BATCH_SIZE: &str = "cacheflow_worker_batch_size";
/// Histogram `{collection}`: from the event's `occurred_at` to its apply in Redis.
pub const SYNC_LAG_SECONDS: &str = "cacheflow_sync_lag_seconds";
/// Gauge: messages in the stream the worker consumer has not delivered yet (from JetStream).
pub const CONSUMER_PENDING_MESSAGES: &str = "cacheflow_consumer_pending_messages";
/// Gauge: messages delivered to workers and not acked yet (from JetStream).
pub const CONSUMER_ACK_PENDING_MESSAGES: &str = "cacheflow_consumer_ack_pending_messages";
/// Counter: times the stall watchdog found messages pending on the consumer (or the consumer
/// gone) but nothing received for `stall_after`, and re-created the pull subscription.
pub const WORKER_STALLS_TOTAL: &str = "cacheflow_worker_stalls_total";
/// Histogram `{collection}`: a heartbeat write's end-to-end lag, from the store commit to the
/// worker (visible in Redis).
pub const HEARTBEAT_LAG_SECONDS: &str = "cacheflow_heartbeat_lag_seconds";

// ---------------------------------------------------------------------------------------------
// Operations (backfill, replay, rebuild, verify)
// ---------------------------------------------------------------------------------------------

/// Gauge `{command}` ([`OPS_COMMANDS`]): how far the running command is, 0 to 1.
pub const OPS_PROGRESS_RATIO: &str = "cacheflow_ops_progress_ratio";
/// Counter `{command}`: items (entities, events) the command processed.
pub const OPS_ITEMS_TOTAL: &str = "cacheflow_ops_items_total";
/// Gauge `{collection, kind}` ([`DRIFT_KINDS`]): entities the last audit found out of step.
pub const AUDIT_DRIFT_ENTITIES: &str = "cacheflow_audit_drift_entities";
/// Gauge `{collection}`: drifted / checked of the last audit (verify or the sampled background
/// audit).
pub const AUDIT_INCONSISTENCY_RATIO: &str = "cacheflow_audit_inconsistency_ratio";

/// The API's metrics.
pub const API: &[&str] = &[
    HTTP_REQUESTS_TOTAL,
    HTTP_REQUEST_DURATION_SECONDS,
    CACHE_REQUESTS_TOTAL,
    SINGLEFLIGHT_COALESCED_TOTAL,
    STORE_OPERATION_DURATION_SECONDS,
    STORE_ERRORS_TOTAL,
    OUTBOX_PENDING_EVENTS,
    OUTBOX_PUBLISH_DURATION_SECONDS,
    OUTBOX_PUBLISHED_EVENTS_TOTAL,
    OUTBOX_PUBLISH_FAILURES_TOTAL,
    CACHE_POPULATE_TOTAL,
    NEAR_CACHE_HITS_TOTAL,
    NEAR_CACHE_MISSES_TOTAL,
    NEAR_CACHE_EVICTIONS_TOTAL,
    NEAR_CACHE_INVALIDATIONS_TOTAL,
    NEAR_CACHE_BYTES,
];

/// The sync worker's metrics.
pub const WORKER: &[&str] = &[
    WORKER_EVENTS_TOTAL,
    WORKER_RETRIES_TOTAL,
    WORKER_BATCH_DURATION_SECONDS,
    WORKER_BATCH_SIZE,
    SYNC_LAG_SECONDS,
    CONSUMER_PENDING_MESSAGES,
    CONSUMER_ACK_PENDING_MESSAGES,
    WORKER_STALLS_TOTAL,
    HEARTBEAT_LAG_SECONDS,
];

/// The operation commands' metrics.
pub const OPERATIONS: &[&str] = &[
    OPS_PROGRESS_RATIO,
    OPS_ITEMS_TOTAL,
    AUDIT_DRIFT_ENTITIES,
    AUDIT_INCONSISTENCY_RATIO,
];

/// Every metric name, API then worker then operations.
pub fn all() -> impl Iterator<Item = &'static str> {
    API.iter().chain(WORKER).chain(OPERATIONS).copied()
}

// ---------------------------------------------------------------------------------------------
// Labels
// ---------------------------------------------------------------------------------------------

/// Label names.
pub mod label {
    pub const ROUTE: &str = "route";
    pub const METHOD: &str = "method";
    pub const STATUS_CLASS: &str = "status_class";
    pub const COLLECTION: &str = "collection";
    pub const RESULT: &str = "result";
    pub const OP: &str = "op";
    pub const KIND: &str = "kind";
    pub const OUTCOME: &str = "outcome";
    pub const REASON: &str = "reason";
    pub const COMMAND: &str = "command";
}

/// `status_class` values.
pub const STATUS_CLASSES: &[&str] = &["1xx", "2xx", "3xx", "4xx", "5xx"];
/// `route` of requests that matched no route (so unmatched paths cannot grow the label set).
pub const UNMATCHED_ROUTE: &str = "unmatched";
/// `collection` of a message whose collection is not in the pipeline, or that has none (an
/// undecodable payload, a dead letter coming round).
pub const UNKNOWN_COLLECTION: &str = "unknown";
/// [`CACHE_REQUESTS_TOTAL`] `result` values.
pub const CACHE_RESULTS: &[&str] = &["hit", "miss", "negative_hit", "bypass"];
/// [`STORE_OPERATION_DURATION_SECONDS`] and [`STORE_ERRORS_TOTAL`] `op` values.
pub const STORE_OPS: &[&str] = &[
    "put",
    "patch",
    "delete",
    "get",
    "get_many",
    "scan",
    "count",
    "top",
    "near",
    "latest_version",
    "pending",
    "mark_published",
    "heartbeat",
];
/// [`STORE_ERRORS_TOTAL`] `kind` values.
pub const STORE_ERROR_KINDS: &[&str] = &["unavailable", "indeterminate", "conflict", "internal"];
/// [`CACHE_POPULATE_TOTAL`] `outcome` values.
pub const POPULATE_OUTCOMES: &[&str] = &["applied", "stale", "absent", "error"];
/// [`WORKER_EVENTS_TOTAL`] `outcome` values.
pub const WORKER_OUTCOMES: &[&str] = &["applied", "deleted", "stale", "dead_lettered", "skipped"];
/// [`WORKER_RETRIES_TOTAL`] `reason` values: the dependency that failed.
pub const RETRY_REASONS: &[&str] = &["redis", "nats"];
/// [`OPS_PROGRESS_RATIO`] and [`OPS_ITEMS_TOTAL`] `command` values.
pub const OPS_COMMANDS: &[&str] = &["backfill", "replay", "rebuild", "verify"];
/// [`AUDIT_DRIFT_ENTITIES`] `kind` values.
pub const DRIFT_KINDS: &[&str] = &["missing", "stale", "orphaned", "wrong_index"];

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Every `pub const ...: &str = "cacheflow_..."` in this file is in [`all`], once.
    #[test]
    fn all_lists_every_declared_name_once() {
        let declared: BTreeSet<&str> = include_str!("names.rs")
            .lines()
            .filter(|line| line.starts_with("pub const ") && line.contains(": &str = \""))
            .filter_map(|line| line.split('"').nth(1))
            .filter(|name| name.starts_with("cacheflow_"))
            .collect();
        let listed: Vec<&str> = all().collect();
        let unique: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(listed.len(), unique.len(), "a name is listed twice");
        assert_eq!(unique, declared);
        assert_eq!(declared.len(), 29);
    }
}
