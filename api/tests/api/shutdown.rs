//! The real API binary stopped with SIGTERM: requests in flight finish, their events are
//! published before the exit, and the exit is 0 within `shutdown.deadline_ms` even when a request
//! never finishes. Also: the API key never reaches the logs, even at `trace`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use cacheflow_shared::security::hash_key;
use cacheflow_testkit::{free_port, shared_redis, unique_name, NatsServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{pipeline_path, place};

struct ApiProcess {
    child: Child,
    base: String,
    log: PathBuf,
}

impl ApiProcess {
    /// The binary on a fresh port with `dir/store.db`, logging JSON to `dir/api.log`.
    fn start(dir: &Path, nats: &str, stream: &str, extra: &[(&str, String)]) -> Self {
        let addr = format!("127.0.0.1:{}", free_port());
        let log = dir.join("api.log");
        let out = File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_cacheflow-api"))
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env(
                "STORE_URL",
                format!("sqlite://{}", dir.join("store.db").display()),
            )
            .env("REDIS_URL", shared_redis().url())
            .env("NATS_URL", nats)
            .env("API_ADDR", &addr)
            .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
            .env("PIPELINE_CONFIG", pipeline_path())
            .env("CACHEFLOW_STREAM__NAME", stream)
            .env("CACHEFLOW_STREAM__SUBJECT_PREFIX", stream)
            .env("CACHEFLOW_STREAM__MAX_MSGS_PER_SUBJECT", "-1")
            .env("CACHEFLOW_NATS__TIMEOUT_MS", "1000")
            .env("CACHEFLOW_OUTBOX__RETRY_MAX_MS", "300")
            // These tests count the outbox and the stream: no heartbeats.
            .env("CACHEFLOW_OUTBOX__HEARTBEAT_INTERVAL_MS", "0")
            .env("CACHEFLOW_LOG__JSON", "true")
            .envs(extra.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("the cacheflow-api binary starts");
        Self {
            child,
            base: format!("http://{addr}"),
            log,
        }
    }

    async fn wait_healthy(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(response) = client.get(format!("{}/healthz", self.base)).send().await {
                if response.status() == 200 {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "the API did not become healthy:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn sigterm(&self) -> Instant {
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
        Instant::now()
    }

    /// Waits for the exit (at most `within`); returns the status and how long it took.
    async fn wait_exit(&mut self, since: Instant, within: Duration) -> (ExitStatus, Duration) {
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, since.elapsed());
            }
            assert!(
                since.elapsed() < within,
                "the API did not exit within {within:?}:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A PUT whose client sends the headers and the first half of the body, then waits.
    async fn half_sent_put(&self, id: &str, key: Option<&str>) -> (TcpStream, Vec<u8>) {
        let body = serde_json::to_vec(&place("In flight", "cafe", 4.2)).unwrap();
        let addr = self.base.trim_start_matches("http://");
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let head = format!(
            "PUT /v1/places/{id} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             {auth}Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let (first, rest) = body.split_at(body.len() / 2);
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(first).await.unwrap();
        (stream, rest.to_vec())
    }
}

impl Drop for ApiProcess {
    fn drop(&mut self) {
        // A failed test must not leave the binary running; it may be gone already.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Sends the rest of a half-sent request and returns the status line of the answer.
async fn finish(mut stream: TcpStream, rest: Vec<u8>) -> String {
    stream.write_all(&rest).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut raw))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&raw)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned()
}

fn pending_in_outbox(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

async fn stream_messages(nats: &NatsServer, stream: &str) -> u64 {
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    match js.get_stream(stream).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn sigterm_finishes_requests_in_flight_and_publishes_their_events() {
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let stream = unique_name("stop");
    let mut api = ApiProcess::start(dir.path(), &nats.url(), &stream, &[]);
    let client = client();
    api.wait_healthy(&client).await;
    for i in 0..10 {
        let response = client
            .put(format!("{}/v1/places/before{i}", api.base))
            .json(&place("x", "cafe", 3.0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    let in_flight = [
        api.half_sent_put("late1", None).await,
        api.half_sent_put("late2", None).await,
    ];
    // Let the server read the headers and enter the handlers.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = api.sigterm();
    // The listener closes, but the requests in flight are still served.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for (stream, rest) in in_flight {
        let status = finish(stream, rest).await;
        assert!(status.starts_with("HTTP/1.1 201"), "{status}");
    }
    let (status, took) = api.wait_exit(signalled, Duration::from_secs(15)).await;
    assert!(status.success(), "exit {status}:\n{}", api.logs());
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let logs = api.logs();
    assert!(
        logs.contains("API_KEYS is not set"),
        "no open-mode warning:\n{logs}"
    );
    assert!(logs.contains("outbox drained"), "{logs}");

    // Every acknowledged write, the two finished after the signal included, was published
    // before the exit.
    assert_eq!(pending_in_outbox(&dir.path().join("store.db")), 0);
    assert_eq!(stream_messages(&nats, &stream).await, 12);
}

#[tokio::test]
async fn the_deadline_bounds_the_stop_and_keeps_unpublished_events() {
    let dir = tempfile::tempdir().unwrap();
    let mut nats = NatsServer::start();
    let stream = unique_name("stop");
    // NATS down: the events of these writes cannot be published before the exit.
    nats.stop();
    let mut api = ApiProcess::start(
        dir.path(),
        &nats.url(),
        &stream,
        &[("CACHEFLOW_SHUTDOWN__DEADLINE_MS", "1000".into())],
    );
    let client = client();
    api.wait_healthy(&client).await;
    for i in 0..5 {
        let response = client
            .put(format!("{}/v1/places/kept{i}", api.base))
            .json(&place("x", "cafe", 3.0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    // A client that never sends the rest of its body.
    let _stuck = api.half_sent_put("stuck", None).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let signalled = api.sigterm();
    let (status, took) = api.wait_exit(signalled, Duration::from_secs(10)).await;
    assert!(status.success(), "exit {status}:\n{}", api.logs());
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(4),
        "took {took:?}:\n{}",
        api.logs()
    );
    let logs = api.logs();
    assert!(logs.contains("abandoning them"), "{logs}");
    // Acknowledged writes are not lost: their events wait in the outbox for the next start.
    assert_eq!(pending_in_outbox(&dir.path().join("store.db")), 5);
}

#[tokio::test]
async fn the_api_key_never_reaches_the_logs() {
    let writer = "writer-4c0ffee-do-not-log";
    let wrong = "wrong-5eaf00d-do-not-log";
    let dir = tempfile::tempdir().unwrap();
    let nats = NatsServer::start();
    let stream = unique_name("keys");
    let mut api = ApiProcess::start(
        dir.path(),
        &nats.url(),
        &stream,
        &[
            ("API_KEYS", format!("writer:{}", hash_key(writer))),
            // Everything, including the HTTP stack's own debug and trace output.
            ("RUST_LOG", "trace".into()),
        ],
    );
    let client = client();
    api.wait_healthy(&client).await;
    for key in [writer, wrong] {
        client
            .put(format!("{}/v1/places/p1", api.base))
            .bearer_auth(key)
            .json(&place("x", "cafe", 3.0))
            .send()
            .await
            .unwrap();
    }
    let (stream, rest) = api.half_sent_put("p2", Some(writer)).await;
    assert!(finish(stream, rest).await.starts_with("HTTP/1.1 201"));
    let (status, _) = api.wait_exit(api.sigterm(), Duration::from_secs(15)).await;
    assert!(status.success());
    let logs = api.logs();
    assert!(
        logs.contains("API keys required"),
        "the start-up line is missing:\n{logs}"
    );
    assert!(logs.lines().count() > 20, "trace logging is on:\n{logs}");
    for secret in [writer, wrong] {
        assert!(!logs.contains(secret), "{secret} was logged");
    }
}
