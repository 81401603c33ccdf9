//! Everything the cacheflow api and sync worker share: the ports, their adapters, the typed
//! configuration and the event schema.
//!
//! - [`config`]: typed, layered settings (defaults < optional file < environment) for both binaries.
//! - [`env_help`]: the environment variables with their defaults, for the binaries' `--help`.
//! - [`pipeline`]: the declarative pipeline (collections and their Redis projections), validated at
//!   start-up, plus the document checks each projection needs.
//! - [`document`]: entity ids, documents and JSON merge patch.
//! - [`event`]: the versioned event envelope published for every write.
//! - [`store`]: the document-store port with its SQLite (embedded) and MongoDB adapters; every write
//!   records its event in a transactional outbox.
//! - [`cache`]: the cache-writer port and the Redis versioned apply (a Lua script run by SHA) that
//!   the worker, cache-aside populate, backfill and replay all share.
//! - [`events`]: the JetStream side: stream set-up and the outbox relay's publisher.
//! - [`notice`]: the worker's "applied entity@version" notices for the API's near-cache.
//! - [`retry`]: the one backoff policy (capped, jittered) used for every retried external call.
//! - [`redact`]: URLs and secret settings with their credentials hidden, for logs.
//! - [`security`]: API keys: roles, the configured SHA-256 hashes, the constant-time lookup.
//! - [`telemetry`]: tracing set-up, the Prometheus recorder and `/metrics` endpoint, the metric
//!   names (`telemetry::names`) and the dashboard checks shared by both binaries.

pub mod cache;
pub mod config;
pub mod document;
pub mod env_help;
pub mod event;
pub mod events;
pub mod notice;
pub mod pipeline;
pub mod redact;
pub mod retry;
pub mod security;
pub mod store;
pub mod telemetry;
