//! The API process killed (SIGKILL) after committing writes but before publishing them: on
//! restart the outbox publishes their events.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacheflow_testkit::{free_port, shared_redis, unique_name, NatsServer};

use crate::helpers::{pipeline_path, place};

fn spawn_api(db: &Path, nats: &str, addr: &str, stream: &str, prefix: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .env("STORE_URL", format!("sqlite://{}", db.display()))
        .env("REDIS_URL", shared_redis().url())
        .env("NATS_URL", nats)
        .env("API_ADDR", addr)
        .env("METRICS_ADDR", format!("127.0.0.1:{}", free_port()))
        .env("PIPELINE_CONFIG", pipeline_path())
        .env("CACHEFLOW_STREAM__NAME", stream)
        .env("CACHEFLOW_STREAM__SUBJECT_PREFIX", prefix)
        .env("CACHEFLOW_STREAM__MAX_MSGS_PER_SUBJECT", "-1")
        .env("CACHEFLOW_NATS__TIMEOUT_MS", "1000")
        .env("CACHEFLOW_OUTBOX__RETRY_MAX_MS", "300")
        // These tests count the outbox and the stream: no heartbeats.
        .env("CACHEFLOW_OUTBOX__HEARTBEAT_INTERVAL_MS", "0")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the cacheflow-api binary starts")
}

async fn wait_healthy(client: &reqwest::Client, base: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(response) = client.get(format!("{base}/healthz")).send().await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "the API did not become healthy");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pending_in_outbox(db: &Path) -> i64 {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.query_row("SELECT COUNT(*) FROM outbox", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn a_killed_api_publishes_committed_events_on_restart() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("store.db");
    let mut nats = NatsServer::start();
    let (stream, prefix) = (unique_name("crash"), unique_name("crash"));
    let addr = format!("127.0.0.1:{}", free_port());
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();

    // NATS is down, so nothing can be published before the kill.
    nats.stop();
    let mut api = spawn_api(&db, &nats.url(), &addr, &stream, &prefix);
    wait_healthy(&client, &base).await;
    for i in 0..25 {
        let response = client
            .put(format!("{base}/v1/places/k{i}"))
            .json(&place("x", "cafe", 3.0))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
    }
    api.kill().unwrap(); // SIGKILL: no shutdown hook runs.
    api.wait().unwrap();
    assert_eq!(
        pending_in_outbox(&db),
        25,
        "the committed events wait in the outbox"
    );

    nats.restart();
    let addr = format!("127.0.0.1:{}", free_port());
    let mut api = spawn_api(&db, &nats.url(), &addr, &stream, &prefix);
    let js = async_nats::jetstream::new(async_nats::connect(nats.url()).await.unwrap());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let held = match js.get_stream(&stream).await {
            Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
            Err(_) => 0,
        };
        if held == 25 && pending_in_outbox(&db) == 0 {
            break;
        }
        assert!(held <= 25, "more events than writes: {held}");
        assert!(
            Instant::now() < deadline,
            "only {held} of 25 events arrived"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stream_handle = js.get_stream(&stream).await.unwrap();
    for i in 0..25 {
        let message = stream_handle
            .get_last_raw_message_by_subject(&format!("{prefix}.places.k{i}"))
            .await
            .unwrap();
        let event = cacheflow_shared::event::Event::decode(&message.payload).unwrap();
        assert_eq!(
            (event.id.as_str(), event.version),
            (format!("k{i}").as_str(), 1)
        );
    }
    api.kill().unwrap();
    api.wait().unwrap();
}
