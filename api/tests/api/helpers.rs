//! `spawn_app()`: the API on port 0 with a private SQLite file, its own NATS server (tests stop
//! and restart it) and a unique stream, plus helpers to read what reached the stream.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use cacheflow_api::Application;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_testkit::{shared_redis, unique_name, NatsServer};
use futures::StreamExt;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

pub struct TestApp {
    pub base: String,
    /// `http://<metrics addr>/metrics`.
    pub metrics_url: String,
    pub client: reqwest::Client,
    pub nats: NatsServer,
    pub settings: Settings,
    pub dir: tempfile::TempDir,
    stop: CancellationToken,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
    worker_stop: CancellationToken,
}

pub fn pipeline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml")
}

/// Settings for one isolated test: private database file, unique stream and subjects, short
/// retry delays so outage tests recover quickly.
pub fn test_settings(dir: &std::path::Path, nats_url: &str, redis_url: &str) -> Settings {
    let mut settings = Settings::defaults(Role::Api);
    settings.store_url = SecretUrl::new(format!("sqlite://{}", dir.join("store.db").display()));
    settings.redis_url = SecretUrl::new(redis_url);
    settings.nats_url = SecretUrl::new(nats_url);
    settings.api_addr = ([127, 0, 0, 1], 0).into();
    settings.metrics_addr = ([127, 0, 0, 1], 0).into();
    settings.pipeline_config = pipeline_path();
    settings.stream.name = unique_name("stream");
    settings.stream.subject_prefix = unique_name("evt");
    // Keep every event so tests can count them (the default compacts to one per entity).
    settings.stream.max_msgs_per_subject = -1;
    settings.outbox.retry_min_ms = 20;
    settings.outbox.retry_max_ms = 500;
    // Tests count the events on the stream; the tests of heartbeats turn them on.
    settings.outbox.heartbeat_interval_ms = 0;
    settings.nats.timeout_ms = 1_000;
    settings.store.sqlite_synchronous = cacheflow_shared::config::SqliteSynchronous::Normal;
    // Workers and reads of this test see only this test's keys.
    settings.worker.key_prefix = format!("{}:", unique_name("keys"));
    settings.worker.consumer = unique_name("sync");
    settings.worker.fetch_wait_ms = 200;
    settings.worker.retry_min_ms = 20;
    settings.worker.retry_max_ms = 300;
    settings
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(customise: impl FnOnce(&mut Settings)) -> TestApp {
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path(), &nats.url(), &shared_redis().url());
    customise(&mut settings);
    let mut app = TestApp {
        base: String::new(),
        metrics_url: String::new(),
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap(),
        nats,
        settings,
        dir,
        stop: CancellationToken::new(),
        server: None,
        worker_stop: CancellationToken::new(),
    };
    app.start().await;
    app
}

impl TestApp {
    /// Starts (or restarts) the API on a fresh port with the same settings and database.
    pub async fn start(&mut self) {
        let pipeline = Pipeline::load(&self.settings.pipeline_config).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = Application::build_with(self.settings.clone(), pipeline, listener)
            .await
            .expect("the application builds");
        self.base = format!("http://{}", app.local_addr());
        self.metrics_url = format!("http://{}/metrics", app.metrics_addr());
        self.stop = CancellationToken::new();
        let stop = self.stop.clone();
        self.server = Some(tokio::spawn(
            app.run_until(async move { stop.cancelled().await }),
        ));
    }

    /// Graceful stop; returns what `run_until` returned.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        self.stop.cancel();
        match self.server.take() {
            Some(handle) => handle.await.expect("the server task panicked"),
            None => Ok(()),
        }
    }

    /// Runs a sync worker in this process, on the app's stream and key prefix, until the app is
    /// dropped.
    pub fn start_worker(&self) {
        let pipeline = Arc::new(Pipeline::load(&self.settings.pipeline_config).unwrap());
        let mut settings = self.settings.clone();
        settings.metrics_addr = ([127, 0, 0, 1], 0).into();
        let stop = self.worker_stop.clone();
        tokio::spawn(async move {
            // Boxed: inline, the worker's future overflows the compiler's layout query depth.
            Box::pin(cacheflow_sync_worker::run(settings, pipeline, stop))
                .await
                .expect("the worker runs");
        });
    }

    /// A connection to the app's Redis.
    pub async fn redis(&self) -> redis::aio::MultiplexedConnection {
        redis::Client::open(self.settings.redis_url.expose())
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap()
    }

    /// The full Redis key of a rendered key template.
    pub fn key(&self, key: &str) -> String {
        format!("{}{key}", self.settings.worker.key_prefix)
    }

    /// Polls `check` until it holds, or panics with `what` after `within`.
    pub async fn eventually<F, Fut>(&self, what: &str, within: Duration, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !check().await {
            assert!(Instant::now() < deadline, "{what}: not after {within:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn put(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .put(self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn jetstream(&self) -> jetstream::Context {
        let client = async_nats::connect(self.nats.url()).await.unwrap();
        jetstream::new(client)
    }

    /// Every event on the test's stream, in stream order, with its `Nats-Msg-Id`.
    pub async fn stream_events(&self) -> Vec<(Event, String)> {
        let js = self.jetstream().await;
        // The relay creates the stream once NATS is reachable; until then there is nothing.
        let Ok(mut stream) = js.get_stream(&self.settings.stream.name).await else {
            return Vec::new();
        };
        let total = stream.info().await.unwrap().state.messages as usize;
        if total == 0 {
            return Vec::new();
        }
        let consumer = stream
            .create_consumer(consumer::pull::Config {
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::None,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut messages = consumer
            .fetch()
            .max_messages(total)
            .expires(Duration::from_secs(5))
            .messages()
            .await
            .unwrap();
        let mut events = Vec::with_capacity(total);
        while events.len() < total {
            let message = match messages.next().await {
                Some(Ok(message)) => message,
                Some(Err(err)) => panic!("fetching from the stream failed: {err}"),
                None => break,
            };
            let msg_id = msg_id(&message);
            events.push((Event::decode(&message.payload).unwrap(), msg_id));
        }
        assert_eq!(
            events.len(),
            total,
            "fetched fewer events than the stream holds"
        );
        events
    }

    /// Waits until the stream holds `count` messages (or panics after `within`).
    pub async fn wait_for_stream_count(&self, count: u64, within: Duration) {
        let js = self.jetstream().await;
        let deadline = Instant::now() + within;
        loop {
            let held = match js.get_stream(&self.settings.stream.name).await {
                Ok(mut stream) => stream.info().await.map(|i| i.state.messages).unwrap_or(0),
                Err(_) => 0,
            };
            if held >= count {
                assert_eq!(
                    held, count,
                    "the stream holds more events than writes were made"
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the stream holds {held} events, expected {count}, after {within:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        self.worker_stop.cancel();
    }
}

/// The `id` of each item of a list answer (`{ items: [{ id, … }] }`), in order.
pub fn item_ids(body: &Value) -> Vec<String> {
    body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// The `Nats-Msg-Id` every event is published with.
pub fn msg_id(message: &async_nats::Message) -> String {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get("Nats-Msg-Id"))
        .map(|v| v.to_string())
        .expect("every event carries Nats-Msg-Id")
}

/// The `X-Cache` header of a response.
pub fn x_cache(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("x-cache")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// A place at (lon, lat).
pub fn place_at(name: &str, category: &str, rating: f64, lon: f64, lat: f64) -> Value {
    let mut doc = place(name, category, rating);
    doc["location"] = json!({ "type": "Point", "coordinates": [lon, lat] });
    doc
}

/// A valid place document.
pub fn place(name: &str, category: &str, rating: f64) -> Value {
    json!({
        "name": name,
        "category": category,
        "rating": rating,
        "price": 2,
        "location": { "type": "Point", "coordinates": [-9.1393, 38.7223] }
    })
}

/// Reads an error response and checks its shape: JSON `{ code, message }`.
pub async fn error_of(response: reqwest::Response) -> (u16, String, Value) {
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    assert!(
        content_type.starts_with("application/json"),
        "status {status}: content type {content_type}"
    );
    let body: Value = response.json().await.unwrap();
    let code = body["code"]
        .as_str()
        .expect("error body has a code")
        .to_owned();
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "error body has a message: {body}"
    );
    (status, code, body)
}
