//! The operator commands against real Redis, NATS and an SQLite store: backfill while events
//! flow, replay after a flush, a rebuild switching generations under a reader running flat out,
//! and a backfill process killed half-way then resumed. Each ends comparing Redis, key by key,
//! with the projection of what the store holds.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::redis::generations::{self, ActiveLayouts};
use cacheflow_shared::cache::KeyLayout;
use cacheflow_shared::event::Event;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::{self, DocumentStore, Precondition};
use cacheflow_sync_worker::cli::{BackfillArgs, RebuildArgs, ReplayArgs, Source, VerifyArgs};
use cacheflow_sync_worker::ops::{backfill, rebuild, replay, verify, Ops};
use rand::Rng;
use redis::AsyncCommands;
use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::gen::{self, CATEGORIES};
use crate::helpers::{eventually, pipeline, TestEnv, DEADLINE};
use crate::state::{assert_same, expected, geo_keys, latest, snapshot};

/// A test namespace plus an SQLite store in a temporary directory, and `Ops` on both.
struct OpsEnv {
    env: TestEnv,
    store: Arc<dyn DocumentStore>,
    _dir: TempDir,
}

impl OpsEnv {
    async fn new(name: &str) -> Self {
        Self::on(TestEnv::new(name).await).await
    }

    async fn on(mut env: TestEnv) -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        env.settings.store_url = SecretUrl::new(format!(
            "sqlite://{}",
            dir.path().join("store.db").display()
        ));
        // Many small writes to set up; durability on power loss is not what is tested here.
        env.settings.store.sqlite_synchronous = cacheflow_shared::config::SqliteSynchronous::Normal;
        let store = store::open(&env.settings.store_url, &pipeline(), &env.settings.store)
            .await
            .expect("open the store");
        Self {
            env,
            store,
            _dir: dir,
        }
    }

    /// Empties the whole Redis: only for a test that runs its own server.
    async fn flush_redis(&self) {
        let _: () = redis::cmd("FLUSHALL")
            .query_async(&mut self.env.redis.clone())
            .await
            .unwrap();
    }

    async fn ops(&self) -> Ops {
        Ops::connect(
            self.env.settings.clone(),
            pipeline(),
            CancellationToken::new(),
        )
        .await
        .expect("connect the operator commands")
    }

    /// Writes `n` places `p0..` to the store; returns their events (not published).
    async fn seed(&self, n: usize) -> Vec<Event> {
        let mut rng = gen::rng(n as u64);
        let mut events = Vec::with_capacity(n);
        for i in 0..n {
            events.push(self.put(&format!("p{i}"), &mut rng).await);
        }
        events
    }

    async fn put(&self, id: &str, rng: &mut impl Rng) -> Event {
        let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
        let rating = f64::from(rng.random_range(0..=50_u32)) / 10.0;
        let document = gen::place(
            id,
            0,
            category,
            rating,
            rng.random_range(-179.0..179.0),
            rng.random_range(-80.0..80.0),
        );
        self.store
            .put("places", id, document, Precondition::None)
            .await
            .expect("a store write")
            .event
    }

    async fn delete(&self, id: &str) -> Event {
        self.store
            .delete("places", id, Precondition::None)
            .await
            .expect("a store delete")
            .event
    }

    /// Asserts the generation `generation` holds exactly the projection of `events`' latest.
    async fn assert_generation(&self, generation: &str, events: &[Event]) {
        let layout = KeyLayout::new(format!(
            "{}{generation}",
            self.env.settings.worker.key_prefix
        ));
        let mut conn = self.env.redis.clone();
        let want = expected(&pipeline(), &layout, &latest(events));
        let mut got = snapshot(&mut conn, layout.prefix(), &geo_keys(&want)).await;
        if generation.is_empty() {
            // The generation bookkeeping lives under the key prefix too.
            got.retain(|key, _| !key.starts_with(&format!("{}cacheflow:gen:", layout.prefix())));
            got.retain(|key, _| !key.starts_with(&format!("{}gen:", layout.prefix())));
        }
        assert_same(&got, &want);
    }
}

/// Asserts the auditor finds no drift in any collection.
async fn assert_no_drift(ops: &Ops) {
    let args = VerifyArgs {
        collection: None,
        sample: None,
        repair: false,
        batch: 500,
        list: 10,
    };
    let audits = verify::run(ops, &args).await.expect("a verify run");
    for audit in &audits {
        assert_eq!(audit.found.total(), 0, "{audit:?}");
        assert!(
            audit.checked > 0 || audit.collection != "places",
            "{audit:?}"
        );
    }
}

fn backfill_args() -> BackfillArgs {
    BackfillArgs {
        collection: None,
        batch: 200,
        restart: false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backfill_while_events_flow_converges_exactly() {
    let env = OpsEnv::new("backfill_live").await;
    // A cold cache: these writes' events are lost (never published).
    let mut history = env.seed(3_000).await;
    let worker = env.env.spawn_worker();
    let ops = env.ops().await;
    let writes = async {
        let mut rng = gen::rng(7);
        let mut events = Vec::new();
        for n in 0..600 {
            let id = format!("p{}", rng.random_range(0..3_200));
            let event = if n % 10 == 0 && env.store.get("places", &id).await.unwrap().is_some() {
                env.delete(&id).await
            } else {
                env.put(&id, &mut rng).await
            };
            env.env.publish(std::slice::from_ref(&event)).await;
            events.push(event);
        }
        events
    };
    let args = backfill_args();
    let (filled, written) = tokio::join!(backfill::run(&ops, &args), writes);
    let filled = filled.expect("the backfill succeeds");
    assert_eq!(filled.len(), 1);
    assert!(filled[0].complete);
    assert!(filled[0].documents >= 2_900, "{filled:?}");
    // A cold cache: most documents take the bulk path.
    assert!(filled[0].in_bulk >= 2_000, "{filled:?}");
    history.extend(written);
    env.env.wait_drained().await;
    worker.stop().await;
    env.assert_generation("", &history).await;
    assert_no_drift(&ops).await;
    let checkpoint = backfill::checkpoint_key(&env.env.settings.worker.key_prefix, "places");
    let left: bool = env.env.redis.clone().exists(&checkpoint).await.unwrap();
    assert!(!left, "a finished backfill removes its checkpoint");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_after_a_flush_rebuilds_the_cache_from_the_stream() {
    // A private Redis: this test flushes it.
    let redis = cacheflow_testkit::RedisServer::start();
    let env = OpsEnv::on(TestEnv::with_redis("replay", &redis.url()).await).await;
    // Writes through the store, their events on the stream (as the API's relay publishes them):
    // creates, updates and deletes.
    let mut history = env.seed(300).await;
    let mut rng = gen::rng(11);
    for n in 0..300 {
        let id = format!("p{}", rng.random_range(0..300));
        let event = if n % 7 == 0 && env.store.get("places", &id).await.unwrap().is_some() {
            env.delete(&id).await
        } else {
            env.put(&id, &mut rng).await
        };
        history.push(event);
    }
    env.env.publish(&history).await;
    let ops = env.ops().await;
    let args = ReplayArgs {
        from_seq: None,
        since: None,
        collection: None,
        batch: 128,
    };
    let replayed = replay::run(&ops, &args).await.expect("a replay");
    assert!(replayed.complete);
    assert_eq!(replayed.events, history.len() as u64);
    env.assert_generation("", &history).await;
    assert_no_drift(&ops).await;

    env.flush_redis().await;
    let again = replay::run(&ops, &args).await.expect("a replay");
    assert_eq!(again.events, history.len() as u64);
    assert_eq!(
        again.stale, replayed.stale,
        "the same events apply the same way"
    );
    env.assert_generation("", &history).await;
    assert_no_drift(&ops).await;

    // From a sequence: only the events from there on.
    env.flush_redis().await;
    let from = history.len() as u64 - 9;
    let tail = replay::run(
        &ops,
        &ReplayArgs {
            from_seq: Some(from),
            ..args.clone()
        },
    )
    .await
    .expect("a replay");
    assert_eq!(tail.events, 10);
    env.assert_generation("", &history[history.len() - 10..])
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_switches_generations_without_a_failed_read() {
    let env = OpsEnv::new("rebuild").await;
    let mut history = env.seed(1_500).await;
    let ops = env.ops().await;
    backfill::run(&ops, &backfill_args())
        .await
        .expect("fill the live generation");
    let worker = env.env.spawn_worker();
    let key_prefix = env.env.settings.worker.key_prefix.clone();

    // A reader like the API's: the active layout, refreshed in the background, one GET per read.
    let layouts = ActiveLayouts::new(key_prefix.clone());
    let client = redis::Client::open(env.env.settings.redis_url.expose()).unwrap();
    let manager = redis::aio::ConnectionManager::new(client).await.unwrap();
    let stop = CancellationToken::new();
    let follow = tokio::spawn(layouts.clone().follow(
        manager.clone(),
        vec!["places".to_owned()],
        Duration::from_millis(50),
        Duration::from_secs(1),
        stop.clone(),
    ));
    let (reads, failures) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let reading = Arc::new(AtomicBool::new(true));
    let reader = {
        let (layouts, mut conn) = (layouts.clone(), manager.clone());
        let (reads, failures, reading) = (reads.clone(), failures.clone(), reading.clone());
        tokio::spawn(async move {
            let mut n = 0_usize;
            while reading.load(Ordering::Relaxed) {
                let id = format!("p{}", n % 1_500);
                n += 1;
                let key = layouts.layout("places").key(&format!("place:{id}"));
                let value: Option<String> = conn.get(&key).await.expect("a read");
                reads.fetch_add(1, Ordering::Relaxed);
                if value.is_none_or(|v| v.is_empty()) {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        })
    };
    let writes = async {
        let mut rng = gen::rng(3);
        let mut events = Vec::new();
        for _ in 0..300 {
            let event = env
                .put(&format!("p{}", rng.random_range(0..1_500)), &mut rng)
                .await;
            env.env.publish(std::slice::from_ref(&event)).await;
            events.push(event);
        }
        events
    };
    let args = RebuildArgs {
        collection: Some("places".into()),
        from: Source::Store,
        grace_ms: Some(500),
        batch: 100,
    };
    let before = reads.load(Ordering::Relaxed);
    let (rebuilt, written) = tokio::join!(rebuild::run(&ops, &args), writes);
    let rebuilt = rebuilt.expect("the rebuild succeeds");
    history.extend(written);
    let during = reads.load(Ordering::Relaxed) - before;
    reading.store(false, Ordering::Relaxed);
    reader.await.expect("the reader does not panic");
    stop.cancel();
    follow.await.unwrap();

    assert_eq!(rebuilt[0].previous, "");
    let generation = rebuilt[0].generation.clone();
    assert_eq!(generation, "gen:places:1:");
    assert!(during > 1_000, "the reader kept reading ({during} reads)");
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "no read failed or came back empty"
    );
    assert_eq!(
        layouts.layout("places").prefix(),
        format!("{key_prefix}{generation}")
    );
    let state = generations::read_state(&mut manager.clone(), &key_prefix, "places")
        .await
        .unwrap();
    assert_eq!(state.active, generation);
    assert!(
        state.extra.is_empty(),
        "the old generation is no longer written"
    );

    env.env.wait_drained().await;
    worker.stop().await;
    env.assert_generation(&generation, &history).await;
    assert_no_drift(&ops).await;
    // Nothing of the old generation is left.
    let old = snapshot(&mut env.env.redis.clone(), &key_prefix, &Default::default()).await;
    let stray: Vec<&String> = old
        .keys()
        .filter(|key| !key.starts_with(&format!("{key_prefix}gen:")))
        .filter(|key| !key.starts_with(&format!("{key_prefix}cacheflow:gen:")))
        // The auditor's last result (bookkeeping, not a generation's key).
        .filter(|key| !key.starts_with(&format!("{key_prefix}cacheflow:audit:")))
        .take(5)
        .collect();
    assert!(stray.is_empty(), "old generation keys left: {stray:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebuild_from_the_stream_keeps_tombstones() {
    let env = OpsEnv::new("rebuild_stream").await;
    let mut rng = gen::rng(5);
    let history = gen::history(&mut rng, "s", 300, 3);
    env.env.publish(&history).await;
    let worker = env.env.spawn_worker();
    env.env.wait_drained().await;
    let ops = env.ops().await;
    let args = RebuildArgs {
        collection: None,
        from: Source::Stream,
        grace_ms: Some(100),
        batch: 64,
    };
    let rebuilt = rebuild::run(&ops, &args)
        .await
        .expect("the rebuild succeeds");
    worker.stop().await;
    assert_eq!(rebuilt.len(), 1);
    assert_eq!(rebuilt[0].items, history.len() as u64);
    env.assert_generation(&rebuilt[0].generation, &history)
        .await;
    // A second rebuild replaces the first generation.
    let again = rebuild::run(&ops, &args).await.expect("a second rebuild");
    assert_eq!(again[0].previous, rebuilt[0].generation);
    env.assert_generation(&again[0].generation, &history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_killed_half_way_resumes_and_completes() {
    let env = OpsEnv::new("backfill_kill").await;
    let history = env.seed(8_000).await;
    let mut vars: BTreeMap<String, String> = env.env.process_env();
    vars.insert(
        "STORE_URL".into(),
        env.env.settings.store_url.expose().to_owned(),
    );
    // The command serves its progress metrics while it runs.
    let metrics_port = cacheflow_testkit::free_port();
    vars.insert("METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}"));
    let command = move || {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cacheflow-sync-worker"));
        command
            .args(["backfill", "--batch", "10"])
            .env_clear()
            .envs(vars.clone())
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .stdin(Stdio::null());
        command
    };
    let mut child = command()
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start a backfill");
    let checkpoint = backfill::checkpoint_key(&env.env.settings.worker.key_prefix, "places");
    let mut conn = env.env.redis.clone();
    let done_at_kill: u64 = eventually("the backfill to make progress", || {
        let (checkpoint, mut conn) = (checkpoint.clone(), conn.clone());
        async move {
            let done: Option<u64> = conn.hget(&checkpoint, "done").await.unwrap();
            done.filter(|done| *done >= 500)
        }
    })
    .await;
    let scraped = eventually("the backfill's progress metrics", || async move {
        let url = format!("http://127.0.0.1:{metrics_port}/metrics");
        let body = reqwest::get(url).await.ok()?.text().await.ok()?;
        body.lines()
            .find(|line| line.starts_with("cacheflow_ops_items_total{command=\"backfill\"}"))
            .map(str::to_owned)
    })
    .await;
    let items: f64 = scraped.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(items > 0.0, "{scraped}");
    child.kill().expect("SIGKILL the backfill");
    child.wait().unwrap();
    let done: u64 = conn.hget(&checkpoint, "done").await.unwrap();
    assert!(
        (done_at_kill..8_000).contains(&done),
        "killed half-way ({done} of 8000)"
    );

    let resumed = tokio::time::timeout(
        DEADLINE,
        tokio::task::spawn_blocking(move || command().output().expect("run the backfill again")),
    )
    .await
    .expect("the resumed backfill ends")
    .unwrap();
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(
        resumed.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&resumed.stderr)
    );
    assert!(stdout.contains("resumed after `p"), "{stdout}");
    env.assert_generation("", &history).await;
    assert_no_drift(&env.ops().await).await;
}
