//! Retrying an external call for as long as the process runs: backon's capped, jittered
//! exponential backoff (`cacheflow_shared::retry`) without an attempt limit, with the waits cut
//! short by shutdown. An event must never be acked without being applied, so the worker waits
//! out an outage instead of giving up.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use cacheflow_shared::config::WorkerSettings;
use tokio_util::sync::CancellationToken;

use crate::metrics::{self, Dependency};

/// The worker's backoff: from `retry_min` doubling to `retry_max`, jittered, unlimited.
pub fn forever(settings: &WorkerSettings) -> ExponentialBuilder {
    cacheflow_shared::retry::backoff(settings.retry_min(), settings.retry_max(), usize::MAX)
        .without_max_times()
}

/// Runs `op` until it succeeds, fails with an error `retryable` rejects, or shutdown is
/// requested (then the last error is returned; check the token to tell the cases apart). The
/// first attempt always runs, so a batch in flight at shutdown still gets its chance; after
/// shutdown one more attempt may run (the cut-short wait) before giving up. Each retry is
/// logged and counted against `dependency` (`cacheflow_worker_retries_total{reason}`).
pub async fn until_shutdown<T, E, Fut>(
    what: &'static str,
    dependency: Dependency,
    backoff: ExponentialBuilder,
    shutdown: &CancellationToken,
    mut retryable: impl FnMut(&E) -> bool,
    op: impl FnMut() -> Fut,
) -> Result<T, E>
where
    E: Display,
    Fut: Future<Output = Result<T, E>>,
{
    let wake = shutdown.clone();
    op.retry(backoff)
        .sleep(move |delay: Duration| {
            let wake = wake.clone();
            async move {
                tokio::select! {
                    () = tokio::time::sleep(delay) => {}
                    () = wake.cancelled() => {}
                }
            }
        })
        .when(|err| retryable(err) && !shutdown.is_cancelled())
        .notify(|err, delay| {
            metrics::retried(dependency);
            tracing::warn!(error = %err, retry_in = ?delay, "{what} failed; retrying");
        })
        .await
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    fn settings() -> WorkerSettings {
        WorkerSettings {
            retry_min_ms: 100,
            retry_max_ms: 1_000,
            ..WorkerSettings::default()
        }
    }

    #[tokio::test(start_paused = true)]
    async fn retries_retryable_errors_until_success() {
        let calls = AtomicUsize::new(0);
        let token = CancellationToken::new();
        let started = tokio::time::Instant::now();
        let result = until_shutdown(
            "op",
            Dependency::Redis,
            forever(&settings()),
            &token,
            |_: &String| true,
            || async {
                match calls.fetch_add(1, Ordering::SeqCst) {
                    0..=9 => Err("down".to_string()),
                    _ => Ok(7),
                }
            },
        )
        .await;
        assert_eq!(result, Ok(7));
        assert_eq!(calls.load(Ordering::SeqCst), 11);
        // Ten waits doubling from 100 ms and capped at 1 s (0.1+0.2+0.4+0.8+6x1 = 7.5 s);
        // backon's jitter adds up to the same again to each.
        let waited = started.elapsed();
        assert!(waited >= Duration::from_millis(7_500), "{waited:?}");
        assert!(waited < Duration::from_secs(15), "{waited:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn stops_on_a_permanent_error_and_on_shutdown() {
        let token = CancellationToken::new();
        let calls = AtomicUsize::new(0);
        let result: Result<(), String> = until_shutdown(
            "op",
            Dependency::Nats,
            forever(&settings()),
            &token,
            |e: &String| e == "down",
            || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err("broken".to_string())
            },
        )
        .await;
        assert_eq!(result, Err("broken".into()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let canceller = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            canceller.cancel();
        });
        let result: Result<(), String> = until_shutdown(
            "op",
            Dependency::Nats,
            forever(&settings()),
            &token,
            |_| true,
            || async { Err("down".to_string()) },
        )
        .await;
        assert_eq!(result, Err("down".into()));
        assert!(token.is_cancelled());
    }
}
