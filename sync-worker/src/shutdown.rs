//! Shutdown from one signal future: SIGTERM or Ctrl-C cancels a token that every loop watches.
//! The fetch loop stops taking work, the batch in flight is finished and acked, then `run`
//! returns.

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
