//! The one retry policy for external calls: exponential backoff with jitter and a cap, from
//! `backon` (the `backoff` crate is unmaintained, RUSTSEC-2025-0012).

use std::time::Duration;

use backon::ExponentialBuilder;

/// Backoff for calls that should keep trying for a while (publishing, reconnecting): starts at
/// `min`, doubles, never waits more than `max`, jittered so that many clients do not retry in step.
pub fn backoff(min: Duration, max: Duration, max_times: usize) -> ExponentialBuilder {
    ExponentialBuilder::default()
        .with_min_delay(min)
        .with_max_delay(max)
        .with_factor(2.0)
        .with_max_times(max_times)
        .with_jitter()
}

/// Short retries for optimistic-concurrency conflicts inside one request.
pub fn conflict_backoff() -> ExponentialBuilder {
    backoff(Duration::from_millis(1), Duration::from_millis(50), 32)
}
