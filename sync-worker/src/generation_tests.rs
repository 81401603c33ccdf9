//! Tests of the cache writer's generations and operator records against a real Redis: writes
//! reach every written generation, a writer whose view is stale plans again (the guard), a
//! pinned writer refuses a generation nobody writes any more, invalidation keeps versions, and
//! purge clears an orphan only if the cache did not move on.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::redis::generations::{self, GenerationState};
use cacheflow_shared::cache::{
    ApplyOutcome, CacheErrorKind, CacheWriter, KeyLayout, RedisCacheWriter, RedisWriterOptions,
    StoreState,
};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use serde_json::json;

struct Env {
    key_prefix: String,
    pipeline: Arc<Pipeline>,
    url: String,
    conn: ConnectionManager,
}

impl Env {
    async fn new(name: &str) -> Self {
        let url = cacheflow_testkit::shared_redis().url();
        let pipeline = Arc::new(
            Pipeline::load(
                &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../config/pipeline.toml"),
            )
            .expect("the shipped pipeline is valid"),
        );
        let client = redis::Client::open(url.clone()).unwrap();
        Self {
            key_prefix: format!("{}:", cacheflow_testkit::unique_name(name)),
            pipeline,
            conn: ConnectionManager::new(client).await.unwrap(),
            url,
        }
    }

    /// A writer of its own (its own view of the generations).
    async fn writer(&self) -> RedisCacheWriter {
        let options = RedisWriterOptions {
            key_prefix: self.key_prefix.clone(),
            tombstone_ttl: Duration::from_secs(3600),
            timeout: Duration::from_secs(10),
        };
        RedisCacheWriter::connect(
            &SecretUrl::new(self.url.clone()),
            self.pipeline.clone(),
            options,
        )
        .await
        .expect("redis is up")
    }

    fn layout(&self, generation: &str) -> KeyLayout {
        KeyLayout::new(format!("{}{generation}", self.key_prefix))
    }

    async fn set(&self, from: &GenerationState, to: &GenerationState) {
        let mut conn = self.conn.clone();
        let set = generations::compare_and_set(&mut conn, &self.key_prefix, "places", from, to)
            .await
            .unwrap();
        assert!(set, "the generations were {from:?}");
    }

    async fn document(&self, generation: &str, id: &str) -> Option<String> {
        let key = self.layout(generation).key(&format!("place:{id}"));
        self.conn.clone().get(key).await.unwrap()
    }

    async fn meta(&self, generation: &str, id: &str) -> (Option<String>, Option<String>) {
        let meta = self.layout(generation).meta("places", id);
        redis::cmd("HMGET")
            .arg(meta)
            .arg("v")
            .arg("keys")
            .query_async(&mut self.conn.clone())
            .await
            .unwrap()
    }

    async fn rated(&self, generation: &str, id: &str) -> Option<f64> {
        let key = self.layout(generation).key("places:rating");
        self.conn.clone().zscore(key, id).await.unwrap()
    }
}

fn place(id: &str, version: u64) -> Document {
    json!({
        "id": id, "version": version, "name": format!("{id} v{version}"), "category": "cafe",
        "rating": version as f64, "price": 1,
        "location": {"type": "Point", "coordinates": [2.35, 48.85]},
    })
    .as_object()
    .expect("an object")
    .clone()
}

fn upsert(id: &str, version: u64) -> Event {
    Event::upsert("places", id, version, place(id, version))
}

fn state(active: &str, extra: &[&str]) -> GenerationState {
    GenerationState {
        active: active.to_owned(),
        extra: extra.iter().map(|g| (*g).to_owned()).collect(),
    }
}

#[tokio::test]
async fn every_written_generation_gets_each_event_even_through_a_stale_view() {
    let env = Env::new("gen_targets").await;
    let writer = env.writer().await;
    // The writer caches "one generation, the empty one" here.
    writer.apply(&[upsert("p1", 1)]).await.unwrap();
    assert!(env.document("", "p1").await.is_some());

    // Someone (a rebuild) adds a generation; the writer's view is now stale.
    env.set(&state("", &[]), &state("", &["gen:places:1:"]))
        .await;
    let outcomes = writer
        .apply(&[upsert("p1", 2), upsert("p2", 1)])
        .await
        .unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, ApplyOutcome::Applied)));
    for generation in ["", "gen:places:1:"] {
        assert_eq!(env.meta(generation, "p2").await.0.as_deref(), Some("1"));
        assert_eq!(env.rated(generation, "p2").await, Some(1.0));
    }
    assert_eq!(env.meta("", "p1").await.0.as_deref(), Some("2"));
    assert_eq!(
        env.meta("gen:places:1:", "p1").await.0.as_deref(),
        Some("2")
    );

    // Switch and retire: the old generation no longer receives anything.
    env.set(&state("", &["gen:places:1:"]), &state("gen:places:1:", &[]))
        .await;
    writer.apply(&[upsert("p1", 3)]).await.unwrap();
    assert_eq!(
        env.meta("gen:places:1:", "p1").await.0.as_deref(),
        Some("3")
    );
    assert_eq!(env.meta("", "p1").await.0.as_deref(), Some("2"));
    // Populates follow the active generation too.
    let live = StoreState::Live {
        version: 1,
        document: place("p3", 1),
    };
    writer
        .fill("places", "p3", live, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(env.document("gen:places:1:", "p3").await.is_some());
    assert!(env.document("", "p3").await.is_none());
}

#[tokio::test]
async fn a_pinned_writer_writes_its_generation_only_while_it_is_written() {
    let env = Env::new("gen_pinned").await;
    let writer = env.writer().await;
    writer.apply(&[upsert("p1", 1)]).await.unwrap();
    env.set(&state("", &[]), &state("", &["gen:places:7:"]))
        .await;
    let pinned = writer.pinned("gen:places:7:");
    pinned.fill_events(&[upsert("p9", 4)]).await.unwrap();
    assert_eq!(
        env.meta("gen:places:7:", "p9").await.0.as_deref(),
        Some("4")
    );
    assert_eq!(
        env.meta("", "p9").await.0,
        None,
        "only the pinned generation"
    );

    // Abandoned: the pinned writer must not keep filling a generation nobody will read.
    env.set(&state("", &["gen:places:7:"]), &state("", &[]))
        .await;
    let err = pinned.fill_events(&[upsert("p10", 1)]).await.unwrap_err();
    assert_eq!(err.kind(), CacheErrorKind::Fatal);
    assert!(err.to_string().contains("no longer written"), "{err}");
    assert_eq!(env.meta("gen:places:7:", "p10").await.0, None);
}

#[tokio::test]
async fn invalidation_clears_entries_but_keeps_versions() {
    let env = Env::new("gen_invalidate").await;
    let writer = env.writer().await;
    writer
        .apply(&[upsert("p1", 5), upsert("p2", 1)])
        .await
        .unwrap();
    let cleared = writer
        .invalidate("places", &["p1".to_owned(), "nope".to_owned()])
        .await
        .unwrap();
    assert_eq!(
        cleared, 2,
        "an unknown id is cleared too (its fallback keys)"
    );
    assert_eq!(env.document("", "p1").await, None);
    assert_eq!(env.rated("", "p1").await, None);
    assert_eq!(env.rated("", "p2").await, Some(1.0), "others untouched");
    assert_eq!(
        env.meta("", "p1").await,
        (Some("5".to_owned()), Some("[]".to_owned()))
    );
    // An older event still cannot come back; a populate at the store's version can.
    let outcomes = writer.apply(&[upsert("p1", 4)]).await.unwrap();
    assert!(matches!(outcomes[0], ApplyOutcome::Stale));
    let live = StoreState::Live {
        version: 5,
        document: place("p1", 5),
    };
    let filled = writer
        .fill("places", "p1", live, Duration::from_secs(5))
        .await
        .unwrap();
    assert!(matches!(filled, ApplyOutcome::Applied));
    assert_eq!(env.rated("", "p1").await, Some(5.0));
}

#[tokio::test]
async fn purge_clears_an_orphan_only_if_the_cache_did_not_move_on() {
    let env = Env::new("gen_purge").await;
    let writer = env.writer().await;
    writer
        .apply(&[upsert("p1", 3), upsert("p2", 2)])
        .await
        .unwrap();
    // The cache moved on since the auditor looked (it saw v2, the cache holds v3).
    let outcome = writer.purge("places", "p1", 2, Some(4)).await.unwrap();
    assert!(matches!(outcome, ApplyOutcome::Stale));
    assert!(env.document("", "p1").await.is_some());
    // Deleted in the store at v4: a tombstone at v4 is left, blocking older events.
    let outcome = writer.purge("places", "p1", 3, Some(4)).await.unwrap();
    assert!(matches!(outcome, ApplyOutcome::Deleted));
    assert_eq!(env.document("", "p1").await, None);
    assert_eq!(env.rated("", "p1").await, None);
    assert_eq!(env.meta("", "p1").await.0.as_deref(), Some("4"));
    let outcomes = writer.apply(&[upsert("p1", 3)]).await.unwrap();
    assert!(matches!(outcomes[0], ApplyOutcome::Stale));
    // Never in the store: no tombstone, so a real create later is not blocked.
    let outcome = writer.purge("places", "p2", 2, None).await.unwrap();
    assert!(matches!(outcome, ApplyOutcome::Deleted));
    assert_eq!(env.meta("", "p2").await.0, None);
    let outcomes = writer.apply(&[upsert("p2", 1)]).await.unwrap();
    assert!(matches!(outcomes[0], ApplyOutcome::Applied));
}
