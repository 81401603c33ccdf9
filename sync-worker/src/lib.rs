//! The cacheflow sync worker: consumes the write events from JetStream and keeps the Redis
//! projections current. Several processes share one durable consumer to scale out.
//!
//! The flow of one batch: [`consumer`] fetches up to `batch_size` messages → [`batch`] decodes
//! them, applies them through the shared cache-writer port (`cacheflow_shared::cache`, a
//! versioned Lua script in Redis), retries transient failures without acking, sends poison
//! events to the [`dlq`], and acks → [`worker`] loops until [`shutdown`] is requested.
//!
//! - [`cli`]: the command line (`run`, the default; the operator commands `backfill`, `replay`,
//!   `rebuild`, `verify`, in [`ops`]).
//! - [`worker`]: start-up (connect, bind the consumer, load the script, each retried) and the
//!   fetch → apply → ack loop; returns the run's [`stats::Stats`]. The binary runs it with the
//!   metrics endpoint ([`run_with_metrics`]).
//! - [`consumer`]: the durable pull consumer's configuration and one bounded fetch.
//! - [`batch`]: one batch from messages to acks; the only place that acks.
//! - [`metrics`]: the worker's Prometheus metrics (outcomes, retries, batches, sync lag, consumer
//!   pending counts); [`run_with_metrics`] serves them on `METRICS_ADDR`, with the health
//!   endpoints.
//! - [`health`]: what `/healthz` and `/readyz` answer, from what the loop and the watchdog
//!   report.
//! - [`watchdog`]: reads the consumer info (pending gauges) and re-creates the consumer when
//!   messages wait but none arrive (a stall), counted in `cacheflow_worker_stalls_total`.
//! - [`background_audit`]: the sampled audit one worker runs every `audit_interval_secs`.
//! - [`heartbeat`]: the API's heartbeats measured (`cacheflow_heartbeat_lag_seconds`) and kept.
//! - [`dlq`]: dead letters on `<subject_prefix>.dlq.<collection>.<stream seq>` with reason headers.
//! - [`retry`]: unlimited, jittered, shutdown-aware retries (backon) for every external call.
//! - [`shutdown`]: one cancellation token, cancelled by SIGTERM or Ctrl-C.
//! - [`stats`]: what a run did (applied, stale, dead-lettered, ...), logged at exit.

pub mod background_audit;
pub mod batch;
pub mod cli;
pub mod consumer;
pub mod dlq;
pub mod health;
pub mod heartbeat;
pub mod metrics;
pub mod notices;
pub mod ops;
pub mod retry;
pub mod shutdown;
pub mod stats;
pub mod watchdog;
pub mod worker;

#[cfg(test)]
mod apply_tests;
#[cfg(test)]
mod generation_tests;

pub use worker::{run, run_observed, run_with_metrics, WorkerError};
