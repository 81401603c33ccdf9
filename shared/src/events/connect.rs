//! Connecting to NATS the same way from every binary.

use async_nats::ConnectOptions;

use crate::config::Settings;

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct ConnectError {
    url: String,
    reason: String,
}

/// Returns at once with a client that connects in the background and reconnects forever (the
/// client's own capped, jittered backoff), so a process starts while NATS is down and survives NATS
/// restarts; `/readyz` and the publish/fetch timeouts surface an outage. Fails only on a bad URL.
pub async fn connect(
    settings: &Settings,
    client_name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let url = &settings.nats_url;
    let options = ConnectOptions::new()
        .name(client_name)
        .connection_timeout(settings.nats.timeout())
        .request_timeout(Some(settings.nats.timeout()))
        .max_reconnects(None)
        .retry_on_initial_connect()
        .event_callback(|event| async move {
            tracing::info!(%event, "nats connection event");
        });
    options
        .connect(url.expose())
        .await
        .map_err(|err| ConnectError {
            url: url.redacted(),
            reason: err.to_string(),
        })
}
