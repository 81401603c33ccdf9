//! `sync-worker verify` against a real Redis and an SQLite store: a cache filled from the store is
//! in step; each kind of drift, injected by hand, is found with the right kind and count (an
//! entity with two faults once); `--repair` clears it and leaves exactly the projection of the
//! store; a sample checks at most its size; the active generation is the one audited; the result
//! is recorded, and the real binary's exit codes and summary, and a running worker's re-export
//! of the drift gauge.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;

use cacheflow_shared::cache::redis::generations;
use cacheflow_shared::cache::status::{audit_last_key, AuditSource, AuditSummary};
use cacheflow_shared::cache::{KeyLayout, ABSENT_MARKER};
use cacheflow_shared::config::{Role, Settings, SqliteSynchronous};
use cacheflow_shared::event::Event;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::{self, DocumentStore, Precondition};
use cacheflow_shared::telemetry::names;
use cacheflow_sync_worker::cli::VerifyArgs;
use cacheflow_sync_worker::ops::verify::{self, export, Audit, Drift};
use cacheflow_sync_worker::ops::Ops;
use cacheflow_testkit::unique_name;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

use tempfile::TempDir;
use tokio_util::sync::CancellationToken;

use crate::gen::{self, CATEGORIES};
use crate::helpers::{connect_redis, eventually, pipeline, pipeline_path, TestEnv};
use crate::process::WorkerProcess;
use crate::state::{assert_same, expected, geo_keys, snapshot};

/// A key prefix of its own on the shared Redis, an SQLite store in a temporary directory, and
/// `Ops` on both.
struct Fixture {
    ops: Ops,
    store: Arc<dyn DocumentStore>,
    redis: MultiplexedConnection,
    dir: TempDir,
}

impl Fixture {
    async fn new(name: &str) -> Self {
        Self::with_key_prefix(format!("{}:", unique_name(name))).await
    }

    async fn with_key_prefix(key_prefix: String) -> Self {
        let redis_url = cacheflow_testkit::shared_redis().url();
        let mut settings = Settings::defaults(Role::Worker);
        settings.redis_url = SecretUrl::new(redis_url.clone());
        settings.pipeline_config = pipeline_path();
        settings.worker.key_prefix = key_prefix;
        settings.worker.retry_min_ms = 20;
        settings.worker.retry_max_ms = 300;
        let dir = tempfile::tempdir().expect("a temporary directory");
        settings.store_url = SecretUrl::new(format!("sqlite://{}/db", dir.path().display()));
        // Many small writes to set up; durability on power loss is not what is tested here.
        settings.store.sqlite_synchronous = SqliteSynchronous::Normal;
        let store = store::open(&settings.store_url, &pipeline(), &settings.store)
            .await
            .expect("open the store");
        let ops = Ops::connect(settings, pipeline(), CancellationToken::new())
            .await
            .expect("connect to redis");
        let redis = connect_redis(&redis_url).await;
        Self {
            ops,
            store,
            redis,
            dir,
        }
    }

    fn key_prefix(&self) -> &str {
        &self.ops.settings.worker.key_prefix
    }

    /// The layout of generation `generation`.
    fn layout(&self, generation: &str) -> KeyLayout {
        KeyLayout::new(format!("{}{generation}", self.key_prefix()))
    }

    /// Writes places `p0..p<n>` to the store.
    async fn seed(&self, n: usize) {
        for i in 0..n {
            self.put(
                &format!("p{i}"),
                CATEGORIES[i % CATEGORIES.len()],
                i as f64 / 10.0,
            )
            .await;
        }
    }

    async fn put(&self, id: &str, category: &str, rating: f64) -> u64 {
        let n = id.bytes().map(u64::from).sum::<u64>() as f64;
        let document = gen::place(id, 0, category, rating, n % 170.0, n % 80.0);
        self.store
            .put("places", id, document, Precondition::None)
            .await
            .expect("a store write")
            .version
    }

    /// The store's live places as upserts at their versions.
    async fn live_events(&self) -> Vec<Event> {
        let live = self.store.scan("places", None, 10_000).await.unwrap();
        live.into_iter()
            .map(|live| {
                let id = live.document["id"].as_str().unwrap().to_owned();
                Event::upsert("places", &id, live.version, live.document)
            })
            .collect()
    }

    /// Fills Redis from the store, as a backfill does.
    async fn fill(&self) {
        self.ops
            .writer
            .fill_events(&self.live_events().await)
            .await
            .expect("fill redis");
    }

    async fn verify(&self, sample: Option<u64>, repair: bool) -> Audit {
        let args = VerifyArgs {
            collection: Some("places".into()),
            sample,
            repair,
            batch: 7,
            list: 10,
        };
        let mut audits = verify::run(&self.ops, &args).await.expect("verify runs");
        assert_eq!(audits.len(), 1);
        audits.pop().unwrap()
    }

    /// Asserts the generation holds exactly the projection of the store: every live document
    /// and the tombstone of each id in `deleted` (bookkeeping and `ignored` keys aside).
    async fn assert_projection_of_store(
        &self,
        generation: &str,
        deleted: &[&str],
        ignored: &[&str],
    ) {
        let layout = self.layout(generation);
        let mut events = self.live_events().await;
        for id in deleted {
            let version = self
                .store
                .latest_version("places", id)
                .await
                .unwrap()
                .unwrap();
            events.push(Event::delete("places", id, version));
        }
        let want = expected(&pipeline(), &layout, &events);
        let mut conn = self.redis.clone();
        let mut got = snapshot(&mut conn, layout.prefix(), &geo_keys(&want)).await;
        let bookkeeping = [
            layout.key("cacheflow:audit:"),
            layout.key("cacheflow:gen:"),
            layout.key("gen:"),
        ];
        got.retain(|key, _| !bookkeeping.iter().any(|b| key.starts_with(b.as_str())));
        for key in ignored {
            got.remove(&layout.key(key));
        }
        assert_same(&got, &want);
    }

    async fn audit_summary(&self) -> AuditSummary {
        let mut conn = self.redis.clone();
        let json: String = conn
            .get(audit_last_key(self.key_prefix()))
            .await
            .expect("the audit summary is recorded");
        serde_json::from_str(&json).expect("an audit summary")
    }

    async fn audit_hash(&self) -> HashMap<String, String> {
        let mut conn = self.redis.clone();
        conn.hgetall(export::audit_key(self.key_prefix(), "places"))
            .await
            .unwrap()
    }
}

fn drift(missing: u64, stale: u64, orphaned: u64, wrong_index: u64) -> Drift {
    Drift {
        missing,
        stale,
        orphaned,
        wrong_index,
    }
}

fn clean() -> Drift {
    Drift::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_filled_from_the_store_is_in_step_and_the_result_is_recorded() {
    let fx = Fixture::new("verify_clean").await;
    fx.seed(30).await;
    fx.fill().await;

    let audit = fx.verify(None, false).await;
    assert_eq!(
        (audit.checked, audit.found, audit.remaining),
        (30, clean(), None)
    );
    assert_eq!((audit.generation.as_str(), audit.rejected), ("", 0));
    let repaired = fx.verify(None, true).await;
    assert_eq!(
        (repaired.found, repaired.remaining),
        (clean(), Some(clean()))
    );

    let hash = fx.audit_hash().await;
    for kind in names::DRIFT_KINDS {
        assert_eq!(
            hash.get(*kind).map(String::as_str),
            Some("0"),
            "{kind}: {hash:?}"
        );
    }
    assert_eq!(hash["checked"], "30");
    assert_eq!(hash["repaired"], "0");
    assert_eq!(hash["generation"], "");
    let at: u64 = hash["at"].parse().unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(at) < 300, "at {at}, now {now}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_kind_of_drift_is_found_once_and_repair_restores_the_projection() {
    let fx = Fixture::new("verify_kinds").await;
    fx.seed(40).await;
    fx.fill().await;
    let layout = fx.layout("");
    let key = |k: &str| layout.key(k);
    let meta = |id: &str| layout.meta("places", id);
    let mut redis = fx.redis.clone();

    // Missing: no meta (4 keys left without their bookkeeping), invalidated, no read key; p10
    // has no read key and a stray membership too, and counts once, as missing.
    let _: () = redis.del(&[key("place:p0"), meta("p0")]).await.unwrap();
    fx.ops
        .writer
        .invalidate("places", &["p1".into()])
        .await
        .unwrap();
    let _: () = redis.del(key("place:p2")).await.unwrap();
    let _: () = redis.del(key("place:p10")).await.unwrap();
    let _: () = redis
        .zadd(key("places:rating:nowhere"), "p10", 1.0)
        .await
        .unwrap();

    // Stale: a newer store version not applied (with a category change, so the old index
    // membership is wrong too), a hash edited, a tombstone at the store's version.
    fx.put("p3", "museum", 4.9).await;
    let _: () = redis
        .hset(key("place:p4:h"), "name", "Edited")
        .await
        .unwrap();
    let _: () = redis.hset(meta("p5"), "d", "1").await.unwrap();

    // Orphaned: deleted in the store only; in the cache only, with a meta; a read key holding a
    // document without a meta; an index member the store never had, without a meta. The absent
    // marker of an id the store does not hold is no drift.
    fx.store
        .delete("places", "p6", Precondition::None)
        .await
        .unwrap();
    let ghost = gen::place("ghost", 1, "bar", 2.0, 1.0, 1.0);
    fx.ops
        .writer
        .fill_events(&[Event::upsert("places", "ghost", 1, ghost)])
        .await
        .unwrap();
    let _: () = redis
        .set(key("place:ghost2"), r#"{"id":"ghost2"}"#)
        .await
        .unwrap();
    let stray_ghost: f64 = redis.zscore(key("places:geo"), "p11").await.unwrap();
    let _: () = redis
        .zadd(key("places:geo"), "ghost3", stray_ghost)
        .await
        .unwrap();
    let _: () = redis.set(key("place:nobody"), ABSENT_MARKER).await.unwrap();

    // Wrong index: a geo membership gone, a membership in another category's index, a score off.
    let _: () = redis.zrem(key("places:geo"), "p7").await.unwrap();
    let _: () = redis
        .zadd(key("places:rating:nowhere"), "p8", 0.8)
        .await
        .unwrap();
    let _: () = redis.zadd(key("places:rating"), "p9", 0.123).await.unwrap();

    let want = drift(4, 3, 4, 3);
    let audit = fx.verify(None, false).await;
    assert_eq!(audit.found, want);
    // The store's live documents: 40 seeded, one deleted.
    assert_eq!((audit.checked, audit.remaining), (39, None));
    let hash = fx.audit_hash().await;
    assert_eq!(
        (hash["missing"].as_str(), hash["orphaned"].as_str()),
        ("4", "4")
    );
    // The first 10 drifted ids are listed, each once, and the summary record says the same.
    let drifted: BTreeSet<&str> = [
        "p0", "p1", "p2", "p10", "p3", "p4", "p5", "p6", "ghost", "ghost2", "ghost3", "p7", "p8",
        "p9",
    ]
    .into();
    let listed: BTreeSet<&str> = audit.drifted_ids.iter().map(String::as_str).collect();
    assert_eq!(
        (audit.drifted_ids.len(), listed.len()),
        (10, 10),
        "{listed:?}"
    );
    assert!(listed.is_subset(&drifted), "{listed:?}");
    let summary = fx.audit_summary().await;
    assert_eq!(summary.source, AuditSource::Verify);
    assert_eq!((summary.checked, summary.drifted), (39, 14));
    assert!((summary.inconsistency_rate - 14.0 / 39.0).abs() < 1e-9);
    let places = &summary.collections["places"];
    assert_eq!(
        (
            places.missing,
            places.stale,
            places.orphaned,
            places.wrong_index
        ),
        (4, 3, 4, 3)
    );
    assert_eq!(places.drifted_ids, audit.drifted_ids);

    let repaired = fx.verify(None, true).await;
    assert_eq!((repaired.found, repaired.remaining), (want, Some(clean())));
    let hash = fx.audit_hash().await;
    assert_eq!(
        (hash["missing"].as_str(), hash["repaired"].as_str()),
        ("0", "14")
    );
    let summary = fx.audit_summary().await;
    assert_eq!((summary.drifted, summary.inconsistency_rate), (0, 0.0));
    assert!(summary.collections["places"].drifted_ids.is_empty());
    assert_eq!(fx.verify(None, false).await.found, clean());

    // Exactly the projection of the store, p6's tombstone included; the absent marker stays.
    fx.assert_projection_of_store("", &["p6"], &["place:nobody"])
        .await;
    let marker: Vec<u8> = redis.get(key("place:nobody")).await.unwrap();
    assert_eq!(marker, ABSENT_MARKER);
    // The orphan the store never had leaves no tombstone.
    let ghost_meta: bool = redis.exists(meta("ghost")).await.unwrap();
    assert!(!ghost_meta);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sample_checks_at_most_its_size_and_repairs_what_it_checked() {
    let fx = Fixture::new("verify_sample").await;
    fx.seed(60).await;
    fx.fill().await;
    let ids: Vec<String> = (0..60).map(|i| format!("p{i}")).collect();
    fx.ops.writer.invalidate("places", &ids).await.unwrap();
    // An orphan: a sample looks at store entities only.
    fx.ops
        .writer
        .fill_events(&[Event::upsert(
            "places",
            "ghost",
            1,
            gen::place("ghost", 1, "bar", 2.0, 1.0, 1.0),
        )])
        .await
        .unwrap();

    let audit = fx.verify(Some(10), false).await;
    assert_eq!((audit.checked, audit.found), (10, drift(10, 0, 0, 0)));
    assert_eq!(fx.audit_hash().await["sample"], "10");
    // The re-check after a repair looks at the same sample, now repaired.
    let repaired = fx.verify(Some(10), true).await;
    assert_eq!(repaired.checked, 10);
    assert_eq!(
        (repaired.found, repaired.remaining),
        (drift(10, 0, 0, 0), Some(clean()))
    );
    // A sample larger than the collection checks each entity once.
    let all = fx.verify(Some(1_000), false).await;
    assert_eq!((all.checked, all.found), (60, drift(50, 0, 0, 0)));
    let full = fx.verify(None, false).await;
    assert_eq!(full.found, drift(50, 0, 1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_active_generation_is_audited_not_the_empty_one() {
    let fx = Fixture::new("verify_generation").await;
    fx.seed(20).await;
    let generation = "gen:places:7:";
    let mut redis = fx.redis.clone();
    let _: () = redis
        .set(
            generations::active_key(fx.key_prefix(), "places"),
            generation,
        )
        .await
        .unwrap();
    fx.fill().await;
    // The empty generation holds nothing but an orphan: not what readers read.
    let empty = fx.layout("");
    let _: () = redis
        .hset_multiple(empty.meta("places", "ghost"), &[("v", "1"), ("d", "0")])
        .await
        .unwrap();

    let audit = fx.verify(None, false).await;
    assert_eq!((audit.generation.as_str(), audit.checked), (generation, 20));
    assert_eq!(audit.found, clean());

    let active = fx.layout(generation);
    let _: () = redis.del(active.key("place:p3")).await.unwrap();
    let audit = fx.verify(None, true).await;
    assert_eq!(
        (audit.found, audit.remaining),
        (drift(1, 0, 0, 0), Some(clean()))
    );
    assert_eq!(fx.audit_hash().await["generation"], generation);
    fx.assert_projection_of_store(generation, &[], &[]).await;
    let untouched: bool = redis.exists(empty.meta("places", "ghost")).await.unwrap();
    assert!(untouched, "only the audited generation is repaired");
}

/// Runs the real binary's `verify` with the fixture's environment.
fn run_verify(fx: &Fixture, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cacheflow-sync-worker"))
        .arg("verify")
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("REDIS_URL", fx.ops.settings.redis_url.expose())
        .env("STORE_URL", fx.ops.settings.store_url.expose())
        .env("PIPELINE_CONFIG", pipeline_path())
        // Not used by verify, but part of every deployment's environment.
        .env("NATS_URL", "nats://127.0.0.1:4222")
        .env("CACHEFLOW_WORKER__KEY_PREFIX", fx.key_prefix())
        .current_dir(fx.dir.path())
        .stdin(Stdio::null())
        .output()
        .expect("run the worker binary")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_exits_2_on_drift_and_0_once_repaired() {
    let fx = Fixture::new("verify_binary").await;
    fx.seed(15).await;
    fx.fill().await;
    let mut redis = fx.redis.clone();
    let _: () = redis.del(fx.layout("").key("place:p4")).await.unwrap();

    let text = |out: &Output| {
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (stdout, stderr)
    };
    let found = block_in_place(|| run_verify(&fx, &[]));
    let (stdout, stderr) = text(&found);
    assert_eq!(found.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.contains("verify places: 15 checked in ")
            && stdout.contains("1 missing, 0 stale, 0 orphaned, 0 wrong index"),
        "{stdout}"
    );
    assert!(stdout.contains("verify places: drifted: p4\n"), "{stdout}");
    // Stdout is the summary alone; the logs went to stderr.
    assert!(stdout.lines().all(|l| l.starts_with("verify ")), "{stdout}");
    assert!(stderr.contains("pass done"), "{stderr}");

    let as_json = block_in_place(|| run_verify(&fx, &["--json"]));
    let (stdout, stderr) = text(&as_json);
    assert_eq!(as_json.status.code(), Some(2), "{stdout}\n{stderr}");
    let summary: serde_json::Value = serde_json::from_str(&stdout).expect("one JSON document");
    assert_eq!(summary["command"], "verify", "{summary}");
    assert_eq!(summary["drifted"], true, "{summary}");
    let places = &summary["collections"][0];
    assert_eq!(places["collection"], "places", "{summary}");
    assert_eq!(places["checked"], 15, "{summary}");
    assert_eq!(places["found"]["missing"], 1, "{summary}");
    assert_eq!(
        places["drifted_ids"],
        serde_json::json!(["p4"]),
        "{summary}"
    );

    let repaired = block_in_place(|| run_verify(&fx, &["--repair", "--batch", "4"]));
    let (stdout, stderr) = text(&repaired);
    assert_eq!(repaired.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout
            .contains("verify places: after repair: 0 missing, 0 stale, 0 orphaned, 0 wrong index"),
        "{stdout}"
    );
    let again = block_in_place(|| run_verify(&fx, &[]));
    assert_eq!(again.status.code(), Some(0), "{}", text(&again).0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_worker_exports_the_last_audit() {
    let env = TestEnv::new("verify_export").await;
    // The worker and the audit share one key prefix.
    let fx = Fixture::with_key_prefix(env.settings.worker.key_prefix.clone()).await;
    fx.seed(5).await;
    fx.fill().await;
    fx.ops
        .writer
        .invalidate("places", &["p1".into(), "p2".into()])
        .await
        .unwrap();
    assert_eq!(fx.verify(None, false).await.found, drift(2, 0, 0, 0));

    let worker = WorkerProcess::start(&env.process_env());
    let addr = worker.metrics_addr().await;
    let gauges = eventually("the audit gauges", || async {
        let scrape = reqwest::get(format!("http://{addr}/metrics"))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let gauges: BTreeMap<String, String> = scrape
            .lines()
            .filter(|line| {
                line.starts_with(names::AUDIT_DRIFT_ENTITIES)
                    || line.starts_with(names::AUDIT_INCONSISTENCY_RATIO)
            })
            .filter_map(|line| line.rsplit_once(' '))
            .map(|(series, value)| (series.to_owned(), value.to_owned()))
            .collect();
        (gauges.len() == names::DRIFT_KINDS.len() + 1).then_some(gauges)
    })
    .await;
    for kind in names::DRIFT_KINDS {
        let series = format!(
            "{}{{collection=\"places\",kind=\"{kind}\"}}",
            names::AUDIT_DRIFT_ENTITIES
        );
        let want = if *kind == "missing" { "2" } else { "0" };
        assert_eq!(
            gauges.get(&series).map(String::as_str),
            Some(want),
            "{gauges:?}"
        );
    }
    // 2 of the 5 checked.
    let ratio = format!(
        "{}{{collection=\"places\"}}",
        names::AUDIT_INCONSISTENCY_RATIO
    );
    assert_eq!(
        gauges.get(&ratio).map(String::as_str),
        Some("0.4"),
        "{gauges:?}"
    );
}

fn block_in_place<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_audits_a_sample_in_the_background_and_records_it() {
    let mut env = TestEnv::new("verify_background").await;
    let fx = Fixture::with_key_prefix(env.settings.worker.key_prefix.clone()).await;
    fx.seed(20).await;
    fx.fill().await;
    fx.ops
        .writer
        .invalidate("places", &["p3".into(), "p7".into()])
        .await
        .unwrap();
    env.settings.store_url = fx.ops.settings.store_url.clone();
    env.settings.worker.audit_interval_secs = 1;
    env.settings.worker.audit_sample = 1_000;
    let worker = env.spawn_worker();

    let summary = eventually("a background audit", || async {
        let mut conn = fx.redis.clone();
        let json: Option<String> = conn.get(audit_last_key(fx.key_prefix())).await.ok()?;
        let summary: AuditSummary = serde_json::from_str(&json?).ok()?;
        (summary.source == AuditSource::Background).then_some(summary)
    })
    .await;
    assert_eq!((summary.checked, summary.drifted), (20, 2), "{summary:?}");
    let places = &summary.collections["places"];
    let listed: BTreeSet<&str> = places.drifted_ids.iter().map(String::as_str).collect();
    assert_eq!(listed, BTreeSet::from(["p3", "p7"]));
    assert!((summary.inconsistency_rate - 0.1).abs() < 1e-9);
    worker.stop().await;
}
