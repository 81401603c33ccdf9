//! The cacheflow HTTP API.
//!
//! - [`startup`]: builds the [`Application`] from settings and a listener; the router.
//! - [`auth`]: API keys: which role a request needs, checked before routing.
//! - [`edge`]: the one middleware inside the router: key check, limits, request metrics.
//! - [`limits`]: requests in flight (shed beyond the cap) and the per-request deadline.
//! - [`shutdown`]: the signal, and stopping within one deadline (in-flight requests, outbox).
//! - [`routes`]: `documents` (PUT/PATCH/DELETE writes), `reads` (entity reads and structure
//!   queries), `health` (`/healthz`, `/readyz`), `collections` (discovery) and `admin` (`/v1/admin/`).
//! - [`read`]: the read side: cache-aside with single-flight, batch reads, structure queries from
//!   Redis with the store as fallback, each collection's active cache generation, invalidation.
//! - [`extract`]: request extractors (entity path, JSON body, conditional headers) that reject with
//!   [`ApiError`].
//! - [`error`]: the API's one error type with stable codes.
//! - [`event_size`]: refusing a write whose event the stream could not take.
//! - [`http_metrics`]: request counts and durations by route pattern and status class.
//! - [`boot_metrics`]: every series with labels known in advance, registered at zero at start-up.
//! - [`openapi`]: the OpenAPI document (`/openapi.json`), generated from the route annotations.
//! - [`relay`]: the outbox relay that publishes committed events to JetStream.
//! - [`request_id`]: `x-request-id` for requests that come without one.
//! - [`state`]: the shared application state.

pub mod auth;
pub mod body;
pub mod boot_metrics;
pub mod edge;
pub mod error;
pub mod event_size;
pub mod extract;
pub mod http_metrics;
pub mod limits;
pub mod openapi;
pub mod read;
pub mod relay;
pub mod request_id;
pub mod routes;
pub mod shutdown;
pub mod startup;
pub mod state;

pub use error::ApiError;
pub use shutdown::signal as shutdown_signal;
pub use startup::{router, router_and_spec, Application};
