//! Connecting to NATS the same way from every binary: timeouts, reconnects, credentials and TLS
//! from the settings, errors with the URL redacted.

use async_nats::ConnectOptions;

use crate::config::{NatsSettings, Settings};

#[derive(Debug, thiserror::Error)]
#[error("cannot connect to NATS at {url}: {reason}")]
pub struct ConnectError {
    url: String,
    reason: String,
}

/// Returns at once with a client that connects in the background and reconnects forever (the
/// client's own capped, jittered backoff), so a process starts while NATS is down and survives NATS
/// restarts; `/readyz` and the publish/fetch timeouts surface an outage. Fails only on a bad URL
/// or an unreadable credentials file (a wrong password or certificate shows as an outage, like
/// an unreachable server, since the client keeps retrying).
pub async fn connect(
    settings: &Settings,
    client_name: &str,
) -> Result<async_nats::Client, ConnectError> {
    let url = &settings.nats_url;
    let fail = |reason: String| ConnectError {
        url: url.redacted(),
        reason,
    };
    let options = with_credentials(ConnectOptions::new(), &settings.nats)
        .await
        .map_err(fail)?
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
        .map_err(|err| fail(err.to_string()))
}

/// Adds the authentication and TLS the settings ask for (the settings check allows at most one
/// authentication method). A `tls://` URL makes the client require TLS by itself.
async fn with_credentials(
    mut options: ConnectOptions,
    nats: &NatsSettings,
) -> Result<ConnectOptions, String> {
    if let Some(path) = &nats.creds_file {
        // The client's messages name the file and what is wrong with it, never its contents.
        options = options
            .credentials_file(path)
            .await
            .map_err(|err| format!("nats.creds_file: {err}"))?;
    }
    if let (Some(user), Some(password)) = (&nats.user, &nats.password) {
        options = options.user_and_password(user.clone(), password.expose().to_owned());
    }
    if let Some(token) = &nats.token {
        options = options.token(token.expose().to_owned());
    }
    if let Some(ca) = &nats.tls_ca_file {
        options = options.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(cert), Some(key)) = (&nats.tls_client_cert, &nats.tls_client_key) {
        options = options
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    Ok(options)
}
