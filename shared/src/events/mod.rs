//! The JetStream side of the pipeline.
//!
//! - [`connect`]: one way to connect to NATS (timeouts, reconnects, redacted logging).
//! - [`stream`]: creates or updates the `CACHEFLOW` stream idempotently at start-up.
//! - [`publisher`]: the event-publisher port and its JetStream adapter (`Nats-Msg-Id` dedupe).

pub mod connect;
pub mod dlq;
pub mod publisher;
pub mod stream;

pub use connect::connect;
pub use publisher::{EventPublisher, JetStreamPublisher, PublishFailure};
pub use stream::ensure_stream;
