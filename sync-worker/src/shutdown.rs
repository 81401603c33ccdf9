//! Shutdown from one signal future: SIGTERM or Ctrl-C cancels a token that every loop watches.
//! The fetch loop stops taking work, the batch in flight is finished and acked, then `run`
//! returns; [`finish_within`] bounds that by `shutdown.deadline_ms`.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGTERM or Ctrl-C. Installed before anything else so that a
/// signal during start-up is a clean shutdown too.
pub fn cancel_on_signal(token: CancellationToken) -> std::io::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::spawn(async move {
        tokio::select! {
            _ = terminate.recv() => tracing::info!("SIGTERM received; finishing the batch in flight"),
            result = tokio::signal::ctrl_c() => match result {
                Ok(()) => tracing::info!("Ctrl-C received; finishing the batch in flight"),
                // Without a Ctrl-C handler SIGTERM still works; keep waiting for it.
                Err(err) => {
                    tracing::warn!(error = %err, "cannot listen for Ctrl-C");
                    terminate.recv().await;
                }
            },
        }
        token.cancel();
    });
    Ok(())
}

/// Waits for `work`; once `token` is cancelled, for at most `deadline` more. `None` when the
/// deadline passed first (`work` is dropped): the caller exits anyway. Nothing is lost that way:
/// the messages of an unfinished batch were not acked, so JetStream redelivers them after
/// `worker.ack_wait_secs`.
pub async fn finish_within<F: Future>(
    work: F,
    token: &CancellationToken,
    deadline: Duration,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    tokio::select! {
        output = &mut work => return Some(output),
        () = token.cancelled() => {}
    }
    tokio::time::timeout(deadline, work).await.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn work_finishing_in_time_is_awaited() {
        let token = CancellationToken::new();
        token.cancel();
        let work = async {
            tokio::time::sleep(Duration::from_secs(3)).await;
            7
        };
        assert_eq!(
            finish_within(work, &token, Duration::from_secs(5)).await,
            Some(7)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_counts_from_the_cancellation() {
        let token = CancellationToken::new();
        let cancel = token.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(60)).await;
            cancel.cancel();
        });
        let started = tokio::time::Instant::now();
        let never = std::future::pending::<()>();
        assert_eq!(
            finish_within(never, &token, Duration::from_secs(5)).await,
            None
        );
        assert_eq!(started.elapsed(), Duration::from_secs(65));
    }
}
