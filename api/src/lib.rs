//! The cacheflow HTTP API.
//!
//! - [`startup`]: builds the [`Application`] from settings and a listener; the router; signals.
//! - [`routes`]: `documents` (PUT/PATCH/DELETE writes), `reads` (entity reads and structure
//!   queries) and `health` (`/healthz`, `/readyz`).
//! - [`read`]: the read side: cache-aside with single-flight, batch reads, structure queries from
//!   Redis with the store as fallback.
//! - [`extract`]: request extractors (entity path, JSON body, conditional headers) that reject with
//!   [`ApiError`].
//! - [`error`]: the API's one error type with stable codes.
//! - [`http_metrics`]: request counts and durations by route pattern and status class.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`), generated from the route annotations.
//! - [`relay`]: the outbox relay that publishes committed events to JetStream.
//! - [`state`]: the shared application state.

pub mod error;
pub mod extract;
pub mod http_metrics;
pub mod openapi;
pub mod read;
pub mod relay;
pub mod routes;
pub mod startup;
pub mod state;

pub use error::ApiError;
pub use startup::{router, router_and_spec, shutdown_signal, Application};
