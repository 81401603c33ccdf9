//! Test environment: a namespace (stream, subject prefix, Redis key prefix, consumer) per test on
//! shared servers, settings for in-process workers, env vars for worker processes, publishing,
//! and polling with deadlines.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer::Info, context::PublishAckFuture};
use async_nats::HeaderMap;
use cacheflow_shared::cache::KeyLayout;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_sync_worker::stats::Stats;
use cacheflow_testkit::unique_name;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub const DEADLINE: Duration = Duration::from_secs(60);

pub fn pipeline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml")
}

pub fn pipeline() -> Arc<Pipeline> {
    Arc::new(Pipeline::load(&pipeline_path()).expect("the shipped pipeline is valid"))
}

/// One test's namespace on a Redis and a NATS server.
pub struct TestEnv {
    pub settings: Settings,
    pub js: jetstream::Context,
    pub redis: redis::aio::MultiplexedConnection,
}

impl TestEnv {
    /// A namespace on the shared servers.
    pub async fn new(name: &str) -> Self {
        let redis = cacheflow_testkit::shared_redis().url();
        Self::with_redis(name, &redis).await
    }

    pub async fn with_redis(name: &str, redis_url: &str) -> Self {
        Self::with_servers(name, redis_url, &cacheflow_testkit::shared_nats().url()).await
    }

    /// A namespace on the given servers (private ones, for tests that stop them).
    pub async fn with_servers(name: &str, redis_url: &str, nats_url: &str) -> Self {
        init_logs();
        let ns = unique_name(name);
        let mut settings = Settings::defaults(Role::Worker);
        settings.redis_url = cacheflow_shared::redact::SecretUrl::new(redis_url);
        settings.nats_url = cacheflow_shared::redact::SecretUrl::new(nats_url);
        settings.pipeline_config = pipeline_path();
        settings.stream.name = ns.clone();
        settings.stream.subject_prefix = ns.clone();
        // Keep every version: tests publish out of order on purpose, which compaction would
        // turn into "the last published wins" rather than "the newest wins".
        settings.stream.max_msgs_per_subject = -1;
        settings.redis.timeout_ms = 500;
        settings.worker.consumer = format!("{ns}_sync");
        settings.worker.key_prefix = format!("{ns}:");
        settings.worker.fetch_wait_ms = 200;
        settings.worker.retry_min_ms = 20;
        settings.worker.retry_max_ms = 300;
        let client = async_nats::connect(nats_url)
            .await
            .expect("connect to nats");
        let js = jetstream::new(client);
        cacheflow_shared::events::ensure_stream(&js, &settings.stream)
            .await
            .expect("create the test stream");
        let redis = connect_redis(redis_url).await;
        Self {
            settings,
            js,
            redis,
        }
    }

    /// Asserts Redis holds exactly the projection of the latest of `events` under the prefix.
    pub async fn assert_projection(&self, events: &[Event]) {
        let mut conn = self.redis.clone();
        crate::state::assert_projection_of(&mut conn, &pipeline(), &self.layout(), events).await;
    }

    pub fn layout(&self) -> KeyLayout {
        KeyLayout::new(self.settings.worker.key_prefix.clone())
    }

    /// The environment a worker process needs to run in this namespace.
    pub fn process_env(&self) -> BTreeMap<String, String> {
        let s = &self.settings;
        let w = &s.worker;
        [
            ("REDIS_URL", s.redis_url.expose().to_owned()),
            ("NATS_URL", s.nats_url.expose().to_owned()),
            ("PIPELINE_CONFIG", pipeline_path().display().to_string()),
            // Any free port: several workers run at once (the address is logged).
            ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
            ("CACHEFLOW_STREAM__NAME", s.stream.name.clone()),
            (
                "CACHEFLOW_STREAM__SUBJECT_PREFIX",
                s.stream.subject_prefix.clone(),
            ),
            (
                "CACHEFLOW_STREAM__MAX_MSGS_PER_SUBJECT",
                s.stream.max_msgs_per_subject.to_string(),
            ),
            (
                "CACHEFLOW_REDIS__TIMEOUT_MS",
                s.redis.timeout_ms.to_string(),
            ),
            ("CACHEFLOW_WORKER__CONSUMER", w.consumer.clone()),
            ("CACHEFLOW_WORKER__KEY_PREFIX", w.key_prefix.clone()),
            ("CACHEFLOW_WORKER__BATCH_SIZE", w.batch_size.to_string()),
            (
                "CACHEFLOW_WORKER__ACK_WAIT_SECS",
                w.ack_wait_secs.to_string(),
            ),
            (
                "CACHEFLOW_WORKER__FETCH_WAIT_MS",
                w.fetch_wait_ms.to_string(),
            ),
            ("CACHEFLOW_WORKER__RETRY_MIN_MS", w.retry_min_ms.to_string()),
            ("CACHEFLOW_WORKER__RETRY_MAX_MS", w.retry_max_ms.to_string()),
            ("CACHEFLOW_LOG__JSON", "true".to_owned()),
            ("CACHEFLOW_LOG__FILTER", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    /// Publishes the events in order (pipelined) and waits for every stream ack. Each publish
    /// gets its own `Nats-Msg-Id`, so a republished event is a real duplicate delivery.
    pub async fn publish(&self, events: &[Event]) {
        let prefix = &self.settings.stream.subject_prefix;
        let payloads = events.iter().map(|e| (e.subject(prefix), e.encode()));
        self.publish_raw(payloads).await;
    }

    pub async fn publish_raw(&self, messages: impl IntoIterator<Item = (String, Vec<u8>)>) {
        let mut acks: Vec<PublishAckFuture> = Vec::new();
        for (subject, payload) in messages {
            let mut headers = HeaderMap::new();
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                unique_name("m").as_str(),
            );
            let ack = self
                .js
                .publish_with_headers(subject, headers, payload.into())
                .await
                .expect("send a publish");
            acks.push(ack);
            // Bound the acks in flight so a 20k-event publish does not outrun the client.
            if acks.len() >= 512 {
                for ack in acks.drain(..) {
                    ack.await.expect("stream ack");
                }
            }
        }
        for ack in acks {
            ack.await.expect("stream ack");
        }
    }

    pub async fn consumer_info(&self) -> Option<Info> {
        let stream = self.js.get_stream(&self.settings.stream.name).await.ok()?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_consumer(&self.settings.worker.consumer)
            .await
            .ok()?;
        consumer.get_info().await.ok()
    }

    /// Waits until the worker consumer has delivered and acked everything in the stream.
    pub async fn wait_drained(&self) -> Info {
        eventually("the consumer to ack every event", || async {
            self.consumer_info()
                .await
                .filter(|info| info.num_pending == 0 && info.num_ack_pending == 0)
        })
        .await
    }

    /// Starts the worker in this process; cancel the token to stop it.
    pub fn spawn_worker(&self) -> RunningWorker {
        let token = CancellationToken::new();
        let task = tokio::spawn(cacheflow_sync_worker::run(
            self.settings.clone(),
            pipeline(),
            token.clone(),
        ));
        RunningWorker { token, task }
    }
}

pub struct RunningWorker {
    pub token: CancellationToken,
    pub task: JoinHandle<Result<Stats, cacheflow_sync_worker::WorkerError>>,
}

impl RunningWorker {
    pub async fn stop(self) -> Stats {
        self.token.cancel();
        let result = tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the worker stops after shutdown")
            .expect("the worker task does not panic");
        result.expect("the worker run succeeds")
    }
}

/// Polls `probe` until it returns `Some`, panicking after [`DEADLINE`].
/// A multiplexed connection to the Redis at `url`.
pub async fn connect_redis(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .expect("a valid Redis URL")
        .get_multiplexed_async_connection()
        .await
        .expect("connect to redis")
}

pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Worker logs (in-process ones) when `TEST_LOG` is set.
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        cacheflow_shared::telemetry::init(&cacheflow_shared::config::LogSettings {
            filter: "info,cacheflow_sync_worker=debug".into(),
            json: false,
        });
    }
}
