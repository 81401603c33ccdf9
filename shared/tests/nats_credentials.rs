//! NATS credentials from the settings (`nats.user` + `nats.password`, `nats.token`,
//! `nats.creds_file`) against a real `nats-server` that requires them. (TLS is configured the
//! same way, `tls://` URLs and `nats.tls_ca_file`; see the README.)

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::connection::State;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::events;
use cacheflow_shared::redact::{Secret, SecretUrl};
use cacheflow_testkit::{free_port, require_binary};

/// A `nats-server` with the given authentication flags; killed when dropped.
struct AuthNats {
    child: Child,
    port: u16,
}

impl AuthNats {
    fn start(auth: &[&str]) -> Self {
        let port = free_port();
        let child = Command::new(require_binary("nats-server"))
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .args(auth)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self { child, port }
    }

    fn settings(&self) -> Settings {
        let mut settings = Settings::defaults(Role::Worker);
        settings.nats_url = SecretUrl::new(format!("nats://127.0.0.1:{}", self.port));
        settings.nats.timeout_ms = 1_000;
        settings
    }
}

impl Drop for AuthNats {
    fn drop(&mut self) {
        // It may have exited already; nothing to do then.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a client with these settings gets connected within `within`.
async fn connects(settings: &Settings, within: Duration) -> bool {
    let client = events::connect(settings, "cacheflow-test").await.unwrap();
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if client.connection_state() == State::Connected && client.flush().await.is_ok() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

const CONNECTS: Duration = Duration::from_secs(10);
/// Long enough for several refused attempts: the client retries with a short backoff first.
const REFUSED: Duration = Duration::from_millis(1_500);

#[tokio::test]
async fn user_and_password() {
    let server = AuthNats::start(&["--user", "app", "--pass", "s3cret-pw"]);
    let mut settings = server.settings();
    assert!(!connects(&settings, REFUSED).await, "no credentials");
    settings.nats.user = Some("app".into());
    settings.nats.password = Some(Secret::new("wrong"));
    assert!(!connects(&settings, REFUSED).await, "a wrong password");
    settings.nats.password = Some(Secret::new("s3cret-pw"));
    assert!(connects(&settings, CONNECTS).await);
}

#[tokio::test]
async fn token() {
    let server = AuthNats::start(&["--auth", "t0ken-value"]);
    let mut settings = server.settings();
    assert!(!connects(&settings, REFUSED).await, "no token");
    settings.nats.token = Some(Secret::new("t0ken-value"));
    assert!(connects(&settings, CONNECTS).await);
}

#[tokio::test]
async fn an_unreadable_creds_file_is_an_error_that_names_the_setting() {
    let mut settings = Settings::defaults(Role::Worker);
    settings.nats.creds_file = Some("/nonexistent/app.creds".into());
    let err = events::connect(&settings, "cacheflow-test")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("nats.creds_file"), "{err}");
    assert!(err.contains("/nonexistent/app.creds"), "{err}");
}
