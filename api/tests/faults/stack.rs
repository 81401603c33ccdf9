//! `Stack`: the whole pipeline as real processes, private to one scenario: `redis-server`,
//! `nats-server -js` (testkit fixtures, so they can be stopped and restarted on their ports), an
//! SQLite store in a temporary directory, `cacheflow-api` on a fixed free port (so a restarted
//! API is found where clients left it) and one `cacheflow-sync-worker`. Everything is killed on
//! drop; a failing scenario prints the tail of every log first.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, consumer};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::{self, DocumentStore};
use cacheflow_testkit::{free_port, NatsServer, RedisServer};
use reqwest::StatusCode;
use serde_json::Value;
use tempfile::TempDir;

use crate::ledger::check_store;
use crate::service::{run_once, tail, Service};
use crate::workload::{Report, Workload};

const STREAM: &str = "FAULTS";
const CONSUMER: &str = "faults-sync";
/// Bound of every wait for recovery (a dependency back, a queue drained).
pub const DEADLINE: Duration = Duration::from_secs(30);

pub struct Stack {
    pub redis: RedisServer,
    pub nats: NatsServer,
    pub api: Service,
    pub worker: Service,
    /// `http://127.0.0.1:<port>`: the same across API restarts.
    pub base: String,
    env: BTreeMap<String, String>,
    worker_bin: PathBuf,
    client: reqwest::Client,
    /// The test's own handle on the store: outbox size and the final check.
    store: Arc<dyn DocumentStore>,
    started: Instant,
    // Declared last: removed after every process is gone.
    dir: TempDir,
}

impl Stack {
    /// Starts everything and returns once the API answers `/healthz` and the worker has bound
    /// its consumer.
    pub async fn start() -> Stack {
        let worker_bin = worker_binary();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let redis = RedisServer::start();
        let nats = NatsServer::start();
        let db = dir.path().join("store.db");
        let api_port = free_port();
        let env = environment(&db, &redis, &nats, api_port);
        let api_bin = Path::new(env!("CARGO_BIN_EXE_cacheflow-api"));
        let api = Service::new("api", api_bin, &[], &env, dir.path());
        let worker = Service::new("worker", &worker_bin, &["run"], &env, dir.path());
        let pipeline = Pipeline::load(&pipeline_path()).expect("the shipped pipeline");
        let mut settings = Settings::defaults(Role::Api).store;
        settings.sqlite_readers = 1;
        let mut stack = Stack {
            redis,
            nats,
            api,
            worker,
            base: format!("http://127.0.0.1:{api_port}"),
            env,
            worker_bin,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .build()
                .expect("an HTTP client"),
            // Opened (and its tables created) before the API: both sides accept that.
            store: store::open(
                &SecretUrl::new(format!("sqlite://{}", db.display())),
                &pipeline,
                &settings,
            )
            .await
            .expect("open the store"),
            started: Instant::now(),
            dir,
        };
        stack.start_api().await;
        stack.worker.start();
        eventually("the worker to bind its consumer", DEADLINE, || async {
            stack.consumer_info().await
        })
        .await;
        stack
    }

    pub fn db(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    /// Starts the API (after a kill: on the same port and store) and waits for `/healthz`.
    pub async fn start_api(&mut self) {
        self.api.start();
        let deadline = Instant::now() + DEADLINE;
        loop {
            if let Some(how) = self.api.exited() {
                panic!("the API {how}\n{}", self.api.log_tail(40));
            }
            let url = format!("{}/healthz", self.base);
            if let Ok(response) = self.client.get(url).send().await {
                if response.status() == StatusCode::OK {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "the API did not answer /healthz");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn readyz(&self) -> Option<(StatusCode, Value)> {
        let response = self
            .client
            .get(format!("{}/readyz", self.base))
            .send()
            .await
            .ok()?;
        let status = response.status();
        Some((status, response.json().await.ok()?))
    }

    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// The worker consumer's state; `None` while NATS is unreachable or it does not exist yet.
    pub async fn consumer_info(&self) -> Option<consumer::Info> {
        // A fresh connection per call: one kept across a NATS restart would answer only once
        // it has reconnected, after its own backoff.
        let connect = async_nats::ConnectOptions::new()
            .connection_timeout(Duration::from_secs(1))
            .connect(self.nats.url());
        let client = tokio::time::timeout(Duration::from_secs(2), connect)
            .await
            .ok()?
            .ok()?;
        let js = jetstream::new(client);
        let stream = js.get_stream(STREAM).await.ok()?;
        let consumer: consumer::PullConsumer = stream.get_consumer(CONSUMER).await.ok()?;
        consumer.get_info().await.ok()
    }

    /// Events still in the outbox: not yet acknowledged by JetStream, or about to be removed.
    pub async fn outbox_pending(&self) -> u64 {
        self.store.pending_count().await.expect("count the outbox")
    }

    /// Runs `cacheflow-sync-worker <args>` with the stack's environment; panics unless it exits
    /// 0. Returns its standard output.
    pub async fn operator_command(&self, args: &[&str]) -> String {
        let output = self.run_worker_binary(args).await;
        let (stdout, stderr) = texts(&output);
        assert!(
            output.status.success(),
            "`cacheflow-sync-worker {}` {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
            args.join(" "),
            output.status
        );
        stdout
    }

    async fn run_worker_binary(&self, args: &[&str]) -> Output {
        run_once(
            &self.worker_bin,
            args,
            &self.env,
            self.dir.path(),
            Duration::from_secs(120),
        )
        .await
    }

    /// The end of every scenario: stops the workload, waits until every acknowledged write
    /// reached Redis (outbox empty, consumer drained), then checks Redis against the store
    /// (`verify`) and the store against what the clients were told.
    pub async fn settle_and_check(&self, workload: Workload) -> Report {
        let report = workload.stop().await;
        eprintln!("{report}");
        report.assert_sound();
        self.quiesce().await;
        self.verify_no_drift().await;
        let problems = check_store(&report.records, self.store.as_ref()).await;
        assert!(
            problems.is_empty(),
            "the store disagrees with acknowledged writes ({}):\n{}",
            problems.len(),
            problems.join("\n")
        );
        report
    }

    /// Waits until the outbox is empty and the worker consumer has delivered and acked
    /// everything (checked in that order: an empty outbox means every event is on the stream).
    pub async fn quiesce(&self) {
        let started = Instant::now();
        loop {
            let pending = self.outbox_pending().await;
            let info = self.consumer_info().await;
            let drained = info
                .as_ref()
                .is_some_and(|i| i.num_pending == 0 && i.num_ack_pending == 0);
            if pending == 0 && drained {
                eprintln!("quiescent after {:?}", started.elapsed());
                return;
            }
            assert!(
                started.elapsed() < DEADLINE,
                "not quiescent after {DEADLINE:?}: outbox {pending}, consumer (pending, ack \
                 pending) {:?}",
                info.map(|i| (i.num_pending, i.num_ack_pending))
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// `cacheflow-sync-worker verify` must exit 0 and report no drift of any kind.
    pub async fn verify_no_drift(&self) {
        let (code, summary) = self.verify().await;
        let clean = summary
            .lines()
            .all(|line| line.ends_with(": 0 missing, 0 stale, 0 orphaned, 0 wrong index"));
        assert!(
            code == Some(0) && clean,
            "verify found drift (exit code {code:?}):\n{summary}"
        );
        eprintln!("{summary}");
    }

    /// Runs `cacheflow-sync-worker verify`: its exit code and its summary line for `places`.
    pub async fn verify(&self) -> (Option<i32>, String) {
        let output = self.run_worker_binary(&["verify"]).await;
        let (stdout, stderr) = texts(&output);
        let summary: Vec<&str> = stdout
            .lines()
            // The counts line; a drifted run adds a line listing the first drifted ids.
            .filter(|line| line.starts_with("verify places:") && line.contains(" checked in "))
            .collect();
        assert_eq!(
            summary.len(),
            1,
            "verify printed no summary for places ({})\nstdout:\n{stdout}\nstderr:\n{stderr}",
            output.status
        );
        (output.status.code(), summary[0].to_owned())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.api.log_tail(60));
            eprintln!("{}", self.worker.log_tail(60));
            eprintln!("{}", tail(&self.redis.dir().join("redis.log"), 20));
            let nats_log = self.nats.store_dir().with_file_name("nats.log");
            eprintln!("{}", tail(&nats_log, 20));
        }
    }
}

/// The worker binary sits next to the API's; `cargo test -p cacheflow-api` builds only the latter.
fn worker_binary() -> PathBuf {
    let path =
        Path::new(env!("CARGO_BIN_EXE_cacheflow-api")).with_file_name("cacheflow-sync-worker");
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build --workspace --bins` before `cargo test -p cacheflow-api \
         --test faults` (infra/scripts/test.sh does)",
        path.display()
    );
    path
}

fn pipeline_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml")
}

/// What every process of the stack runs with: the servers, the store, and short timeouts and
/// retry delays so that recoveries take a second, not a minute.
fn environment(
    db: &Path,
    redis: &RedisServer,
    nats: &NatsServer,
    api_port: u16,
) -> BTreeMap<String, String> {
    [
        ("STORE_URL", format!("sqlite://{}", db.display())),
        ("REDIS_URL", redis.url()),
        ("NATS_URL", nats.url()),
        ("API_ADDR", format!("127.0.0.1:{api_port}")),
        // Any free port: nothing here scrapes them, and restarts must not collide.
        ("METRICS_ADDR", "127.0.0.1:0".to_owned()),
        ("PIPELINE_CONFIG", pipeline_path().display().to_string()),
        ("CACHEFLOW_STREAM__NAME", STREAM.to_owned()),
        ("CACHEFLOW_STREAM__SUBJECT_PREFIX", "faults".to_owned()),
        ("CACHEFLOW_WORKER__CONSUMER", CONSUMER.to_owned()),
        // What a killed worker held unacked comes back after this.
        ("CACHEFLOW_WORKER__ACK_WAIT_SECS", "2".to_owned()),
        ("CACHEFLOW_WORKER__FETCH_WAIT_MS", "200".to_owned()),
        ("CACHEFLOW_WORKER__RETRY_MIN_MS", "20".to_owned()),
        ("CACHEFLOW_WORKER__RETRY_MAX_MS", "300".to_owned()),
        ("CACHEFLOW_OUTBOX__RETRY_MIN_MS", "20".to_owned()),
        ("CACHEFLOW_OUTBOX__RETRY_MAX_MS", "300".to_owned()),
        ("CACHEFLOW_REDIS__TIMEOUT_MS", "500".to_owned()),
        ("CACHEFLOW_NATS__TIMEOUT_MS", "1000".to_owned()),
        // A locked store answers 503 after 2 s instead of 5; still far above a write's latency
        // on a busy machine, so a healthy store never refuses.
        ("CACHEFLOW_STORE__OP_TIMEOUT_MS", "2000".to_owned()),
        // Loses nothing when a process is killed (WAL); only a power loss could, and no scenario
        // cuts the power. Saves an fsync per write on a small shared machine.
        ("CACHEFLOW_STORE__SQLITE_SYNCHRONOUS", "normal".to_owned()),
        ("CACHEFLOW_LOG__FILTER", "info".to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn texts(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Polls `probe` until it returns `Some`, panicking with `what` after `within`.
pub async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
