//! The bulk transactions (through the backfill's `BulkFiller`) against real Redis: they must
//! leave every entity exactly as the versioned apply script would (compared key by key with the
//! planner's projection), keep what the cache knows newer (a newer version and a tombstone
//! stay, the same version is written again), refuse only the entities whose keys hold another
//! type, and never regress an entity a live event writes while the transactions run. The
//! worker's own tests (projections, dead letters, processes) run through the same path.

use cacheflow_shared::cache::redis::LiveDocument;
use cacheflow_shared::cache::{ApplyOutcome, CacheWriter, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;
use rand::seq::SliceRandom;
use rand::Rng;
use redis::AsyncCommands;

use crate::gen::{self, CATEGORIES};
use crate::helpers::{pipeline, TestEnv};

/// More than two bulk transactions' worth.
const DOCUMENTS: usize = 600;

async fn writer(env: &TestEnv) -> RedisCacheWriter {
    RedisCacheWriter::connect(
        &env.settings.redis_url,
        pipeline(),
        RedisWriterOptions::from_settings(&env.settings),
    )
    .await
    .expect("connect the writer")
}

/// `n` places at `version`; every seventh has no `name` or `price` (a smaller hash).
fn documents(n: usize, version: u64, seed: u64) -> Vec<(String, Document)> {
    let mut rng = gen::rng(seed);
    (0..n)
        .map(|i| {
            let id = format!("p{i}");
            let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
            let rating = f64::from(rng.random_range(0..=50_u32)) / 10.0;
            let mut document = gen::place(
                &id,
                version,
                category,
                rating,
                rng.random_range(-179.0..179.0),
                rng.random_range(-80.0..80.0),
            );
            if i % 7 == 0 {
                document.remove("name");
                document.remove("price");
            }
            (id, document)
        })
        .collect()
}

fn live(documents: &[(String, Document)], version: u64) -> Vec<LiveDocument<'_>> {
    documents
        .iter()
        .map(|(id, document)| LiveDocument {
            id,
            version,
            document,
        })
        .collect()
}

fn events(documents: &[(String, Document)], version: u64) -> Vec<Event> {
    documents
        .iter()
        .map(|(id, document)| Event::upsert("places", id, version, document.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bulk_fill_leaves_what_the_versioned_apply_would() {
    let env = TestEnv::new("bulk_same").await;
    let writer = writer(&env).await;
    let docs = documents(DOCUMENTS, 3, 1);
    let layout = env.layout();
    let mut redis = env.redis.clone();
    // What the cache knows before: p5 at a newer version, p6 deleted at a newer version, p7 at
    // the same version, a stray hash field under p8 (no meta), an absent marker under p9.
    let newer = gen::upsert("p5", 9, "bar", 1.5);
    let deleted = Event::delete("places", "p6", 9);
    let same = Event::upsert("places", "p7", 3, docs[7].1.clone());
    writer
        .apply(&[newer.clone(), deleted.clone(), same])
        .await
        .expect("the earlier events apply");
    let _: () = redis
        .hset(layout.key("place:p8:h"), "stray", "1")
        .await
        .unwrap();
    let _: () = redis.set_ex(layout.key("place:p9"), "", 60).await.unwrap();

    let filler = writer.bulk_filler();
    let outcomes = filler
        .fill("places", &live(&docs, 3))
        .await
        .expect("the bulk fill");

    assert_eq!(outcomes.len(), docs.len());
    // p5, p6 and p7 have a meta: decided in the transaction too, from the versions it read.
    let counts = filler.counts();
    assert_eq!((counts.in_bulk, counts.through_script), (600, 0));
    for (n, outcome) in outcomes.iter().enumerate() {
        match n {
            5 | 6 => assert!(matches!(outcome, ApplyOutcome::Stale), "p{n}: {outcome:?}"),
            _ => assert!(
                matches!(outcome, ApplyOutcome::Applied),
                "p{n}: {outcome:?}"
            ),
        }
    }
    let mut history = events(&docs, 3);
    history.extend([newer, deleted]);
    // The whole prefix, metas included, key by key.
    env.assert_projection(&history).await;

    // Filled again: everything is known now, and nothing changes.
    let filler = writer.bulk_filler();
    let again = filler
        .fill("places", &live(&docs, 3))
        .await
        .expect("the second bulk fill");
    assert_eq!(filler.counts().in_bulk, docs.len() as u64);
    let applied = again
        .iter()
        .filter(|o| matches!(o, ApplyOutcome::Applied))
        .count();
    assert_eq!(
        applied,
        docs.len() - 2,
        "the same versions are written again"
    );
    env.assert_projection(&history).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_of_another_type_refuses_only_the_entities_that_write_it() {
    let env = TestEnv::new("bulk_wrongtype").await;
    let writer = writer(&env).await;
    let docs = documents(300, 1, 2);
    let _: () = env
        .redis
        .clone()
        .set(env.layout().key("places:rating:bar"), "not a sorted set")
        .await
        .unwrap();

    let outcomes = writer
        .bulk_filler()
        .fill("places", &live(&docs, 1))
        .await
        .expect("the bulk fill");

    let mut refused = 0;
    for ((id, document), outcome) in docs.iter().zip(&outcomes) {
        if document["category"] == "bar" {
            refused += 1;
            assert!(
                matches!(outcome, ApplyOutcome::Rejected(_)),
                "{id}: {outcome:?}"
            );
        } else {
            assert!(
                matches!(outcome, ApplyOutcome::Applied),
                "{id}: {outcome:?}"
            );
        }
    }
    assert!(refused > 0 && refused < docs.len());
    // The others are complete: compare them alone (the refused ones are half-written, as with
    // the script, and their next event rewrites them).
    let others: Vec<(String, Document)> = docs
        .iter()
        .filter(|(_, document)| document["category"] != "bar")
        .cloned()
        .collect();
    let mut conn = env.redis.clone();
    for (id, document) in &others {
        let string: String = conn
            .get(env.layout().key(&format!("place:{id}")))
            .await
            .unwrap();
        let stored: Document = serde_json::from_str(&string).unwrap();
        assert_eq!(&stored, document);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_during_bulk_fills_are_never_overwritten() {
    let mut env = TestEnv::new("bulk_race").await;
    let prefix = env.settings.worker.key_prefix.clone();
    let mut rng = gen::rng(3);
    for round in 0..10 {
        // A fresh, empty prefix per round.
        env.settings.worker.key_prefix = format!("{prefix}r{round}:");
        let writer = writer(&env).await;
        let old = documents(400, 1, round);
        let newer = documents(400, 2, round + 100);
        // Newer versions of a random half, applied in small batches while the fill runs.
        let mut live_events: Vec<Event> = events(&newer, 2)
            .into_iter()
            .filter(|_| rng.random_bool(0.5))
            .collect();
        live_events.shuffle(&mut rng);
        let filler = writer.bulk_filler();
        let old_live = live(&old, 1);
        let fill = filler.fill("places", &old_live);
        let apply = async {
            // Small batches take the script, big ones transactions of their own: both race.
            let size = if round % 2 == 0 { 8 } else { 64 };
            for batch in live_events.chunks(size) {
                writer.apply(batch).await.expect("a live batch");
            }
        };
        let (filled, ()) = tokio::join!(fill, apply);
        filled.expect("the bulk fill");
        let mut history = events(&old, 1);
        history.extend(live_events);
        env.assert_projection(&history).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_moves_members_shrinks_hashes_and_revives_tombstones_in_bulk() {
    let env = TestEnv::new("bulk_updates").await;
    let writer = writer(&env).await;
    // Batches of 100: big enough for transactions (the 10 deletes take the script).
    let first = events(&documents(100, 1, 5), 1);
    let deletes: Vec<Event> = (0..10)
        .map(|n| Event::delete("places", &format!("p{n}"), 2))
        .collect();
    // Other categories (moves), some without `name`/`price` (smaller hashes), and p0..p9
    // coming back after their delete.
    let mut third = events(&documents(100, 3, 6), 3);
    for (n, event) in third.iter_mut().enumerate() {
        let document = event.document.as_mut().expect("an upsert");
        if n % 5 == 1 {
            document.remove("name");
        }
        let category = if document["category"] == "cafe" {
            "bar"
        } else {
            "cafe"
        };
        document.insert("category".into(), category.into());
    }
    for batch in [&first, &deletes, &third] {
        let outcomes = writer.apply(batch).await.expect("a batch applies");
        assert!(
            outcomes
                .iter()
                .all(|o| matches!(o, ApplyOutcome::Applied | ApplyOutcome::Deleted)),
            "{outcomes:?}"
        );
    }
    // Older events again, in one batch: every one stale, nothing changes.
    let mut older = first.clone();
    older.extend(deletes.iter().cloned());
    let outcomes = writer.apply(&older).await.expect("a batch applies");
    assert!(
        outcomes.iter().all(|o| matches!(o, ApplyOutcome::Stale)),
        "{outcomes:?}"
    );
    let mut history = first;
    history.extend(deletes);
    history.extend(third);
    // Exact, metas included: the revived entities' metas no longer expire.
    env.assert_projection(&history).await;
}
