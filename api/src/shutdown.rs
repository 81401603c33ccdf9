//! Stopping within one deadline (`shutdown.deadline_ms`, counted from the signal): stop accepting
//! connections, let the requests in flight finish, then flush the outbox relay with whatever
//! time is left. Past the deadline the process exits anyway and says what it left behind.
//! Nothing acknowledged is lost that way: a write answered 2xx has its event in the store's
//! outbox, which the next start publishes.
//!
//! The relay keeps publishing while the requests finish (rather than stopping at the signal), so
//! the events of the very last writes go out in this run too.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::limits::Limits;
use crate::relay::OutboxRelay;

/// Serves `router` until `signal`, then waits for the requests in flight, for at most `deadline`.
/// Returns the server's result and the instant by which the whole stop must be done.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    signal: impl Future<Output = ()> + Send + 'static,
    deadline: Duration,
    limits: &Limits,
) -> (std::io::Result<()>, Instant) {
    let draining = CancellationToken::new();
    let started = draining.clone();
    let server = axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            signal.await;
            started.cancel();
        })
        .into_future();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        // Only a failing listener ends the server before the signal.
        result = &mut server => return (result, Instant::now() + deadline),
        () = draining.cancelled() => {}
    }
    let stop_by = Instant::now() + deadline;
    tracing::info!(
        in_flight = limits.in_flight(),
        deadline_ms = deadline.as_millis() as u64,
        "stopping: no new connections; finishing the requests in flight"
    );
    match tokio::time::timeout_at(stop_by, server).await {
        Ok(result) => (result, stop_by),
        Err(_elapsed) => {
            // Dropping the server future stops waiting; the connections end with the process.
            tracing::warn!(
                abandoned_requests = limits.in_flight(),
                "shutdown deadline passed with requests still in flight; abandoning them (a \
                 write among them is either committed with its event in the outbox, or not \
                 acknowledged)"
            );
            (Ok(()), stop_by)
        }
    }
}

/// Stops the relay's normal loop and drains the outbox until `stop_by`.
pub(crate) async fn flush_outbox(
    mut relay: JoinHandle<OutboxRelay>,
    stop: &CancellationToken,
    stop_by: Instant,
) -> anyhow::Result<()> {
    stop.cancel();
    // The loop ends at its next check; a round in progress (publishes waiting for acks) may
    // take a while when NATS is slow, so the deadline applies to it too.
    let mut relay = match tokio::time::timeout_at(stop_by, &mut relay).await {
        Ok(joined) => {
            joined.map_err(|err| anyhow::anyhow!("the outbox relay task failed: {err}"))?
        }
        Err(_elapsed) => {
            relay.abort();
            tracing::warn!(
                "shutdown deadline passed while the outbox relay was publishing; the events not \
                 acknowledged by the stream stay in the outbox and are published on next start"
            );
            return Ok(());
        }
    };
    relay
        .drain(stop_by.saturating_duration_since(Instant::now()))
        .await;
    Ok(())
}

/// Waits for a background task (the metrics endpoint, the generation follower) until `stop_by`,
/// then aborts it: such tasks hold nothing that needs saving. `None` when it was aborted.
pub(crate) async fn join_by<T>(
    mut task: JoinHandle<T>,
    stop_by: Instant,
    what: &str,
) -> anyhow::Result<Option<T>> {
    match tokio::time::timeout_at(stop_by, &mut task).await {
        Ok(joined) => joined
            .map(Some)
            .map_err(|err| anyhow::anyhow!("{what} failed: {err}")),
        Err(_elapsed) => {
            task.abort();
            tracing::debug!(task = what, "stopped at the shutdown deadline");
            Ok(None)
        }
    }
}

/// Resolves on SIGTERM or Ctrl-C. The handlers are installed when this is called, not when the
/// future is first polled, so a signal that arrives while the application is still starting
/// stops it as soon as it serves.
pub fn signal() -> impl Future<Output = ()> + Send + 'static {
    let terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
    let ctrl_c = tokio::spawn(tokio::signal::ctrl_c());
    async move {
        let terminate = async {
            match terminate {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(err) => {
                    tracing::error!(%err, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        let ctrl_c = async {
            match ctrl_c.await {
                Ok(Ok(())) => {}
                Ok(Err(err)) => {
                    tracing::error!(%err, "cannot listen for Ctrl-C");
                    std::future::pending::<()>().await;
                }
                Err(err) => {
                    tracing::error!(%err, "the Ctrl-C listener failed");
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::select! {
            () = ctrl_c => {}
            () = terminate => {}
        }
        tracing::info!("shutdown requested");
    }
}
