//! Tests of the Redis cache writer itself (`cacheflow_shared::cache::RedisCacheWriter`) against
//! a real Redis: per-event outcomes across the script's chunks, one refused event among others,
//! a lost script, and geo scores identical to `GEOADD`'s.
//!
//! They live here rather than in `shared` because they need the testkit's `redis-server`
//! fixture, a dev-dependency of this crate only.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::{
    ApplyOutcome, CacheErrorKind, CacheWriter, KeyLayout, RedisCacheWriter, RedisWriterOptions,
    StoreState,
};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::{Pipeline, MAX_LATITUDE};
use cacheflow_shared::redact::SecretUrl;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use serde_json::json;

/// Several of the script's chunks (64 records each), the last one partial.
const EVENTS: u64 = 300;

struct Env {
    writer: RedisCacheWriter,
    layout: KeyLayout,
    redis: redis::aio::MultiplexedConnection,
}

async fn env(name: &str) -> Env {
    env_on(name, cacheflow_testkit::shared_redis().url()).await
}

async fn env_on(name: &str, url: String) -> Env {
    let pipeline = Arc::new(
        Pipeline::load(
            &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
        )
        .expect("the shipped pipeline is valid"),
    );
    let options = RedisWriterOptions {
        key_prefix: format!("{}:", cacheflow_testkit::unique_name(name)),
        tombstone_ttl: Duration::from_secs(3600),
        timeout: Duration::from_secs(10),
    };
    let layout = KeyLayout::new(options.key_prefix.clone());
    let writer = RedisCacheWriter::connect(&SecretUrl::new(url.clone()), pipeline, options)
        .await
        .expect("redis is up");
    let redis = redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    Env {
        writer,
        layout,
        redis,
    }
}

fn place(id: &str, version: u64, category: &str, lon: f64, lat: f64) -> Document {
    json!({
        "id": id, "version": version, "name": format!("{id} v{version}"), "category": category,
        "rating": version as f64 / 10.0, "price": 1,
        "location": {"type": "Point", "coordinates": [lon, lat]},
    })
    .as_object()
    .expect("an object")
    .clone()
}

fn upsert(id: &str, version: u64) -> Event {
    Event::upsert(
        "places",
        id,
        version,
        place(id, version, "cafe", 2.35, 48.85),
    )
}

fn kind(outcome: &ApplyOutcome) -> &'static str {
    match outcome {
        ApplyOutcome::Applied => "applied",
        ApplyOutcome::Deleted => "deleted",
        ApplyOutcome::Absent => "absent",
        ApplyOutcome::Stale => "stale",
        ApplyOutcome::Rejected(_) => "rejected",
    }
}

#[tokio::test]
async fn each_event_of_a_multi_chunk_batch_gets_its_own_outcome_in_order() {
    let env = env("chunks").await;
    // Five entities, versions arriving out of order and repeated, with deletes, across chunks.
    let events: Vec<Event> = (0..EVENTS)
        .map(|n| {
            let id = format!("p{}", n % 5);
            let version = (n * 7919) % 97 + 1;
            if version % 10 == 0 {
                Event::delete("places", &id, version)
            } else {
                upsert(&id, version)
            }
        })
        .collect();
    let outcomes = env.writer.apply(&events).await.unwrap();
    assert_eq!(outcomes.len(), events.len());

    // The same rule, applied in order: strictly newer versions win.
    let mut held: HashMap<&str, u64> = HashMap::new();
    for (event, outcome) in events.iter().zip(&outcomes) {
        let newer = held
            .get(event.id.as_str())
            .is_none_or(|&v| event.version > v);
        let want = match (newer, event.document.is_some()) {
            (false, _) => "stale",
            (true, true) => "applied",
            (true, false) => "deleted",
        };
        assert_eq!(kind(outcome), want, "{} v{}", event.id, event.version);
        if newer {
            held.insert(&event.id, event.version);
        }
    }
    let mut redis = env.redis.clone();
    for (id, version) in held {
        let v: String = redis
            .hget(env.layout.meta("places", id), "v")
            .await
            .unwrap();
        assert_eq!(v, version.to_string(), "{id}");
    }
}

/// Histories of `entities` entities: category moves, rating and position changes, deletes and
/// re-creations, shuffled, with about a third of the events delivered twice.
fn shuffled_histories(rng: &mut StdRng, entities: usize) -> Vec<Event> {
    const CATEGORIES: [&str; 3] = ["cafe", "bar", "bakery"];
    let mut events = Vec::new();
    for n in 0..entities {
        let id = format!("p{n}");
        for version in 1..=rng.random_range(1..=8u64) {
            if rng.random_bool(0.2) {
                events.push(Event::delete("places", &id, version));
            } else {
                let category = CATEGORIES[rng.random_range(0..CATEGORIES.len())];
                let (lon, lat) = (
                    rng.random_range(-180.0..180.0),
                    rng.random_range(-85.0..85.0),
                );
                let mut doc = place(&id, version, category, lon, lat);
                doc.insert(
                    "rating".into(),
                    json!(rng.random_range(0..50) as f64 / 10.0),
                );
                events.push(Event::upsert("places", &id, version, doc));
            }
        }
    }
    let again: Vec<Event> = events
        .iter()
        .filter(|_| rng.random_bool(0.3))
        .cloned()
        .collect();
    events.extend(again);
    events.shuffle(rng);
    events
}

/// Every key under `layout`'s prefix, with the prefix cut out of names and contents: its type,
/// contents (sorted-set members with their exact scores) and whether it expires.
async fn snapshot(
    redis: &mut redis::aio::MultiplexedConnection,
    layout: &KeyLayout,
) -> BTreeMap<String, String> {
    let prefix = layout.prefix();
    let keys: Vec<String> = redis.keys(format!("{prefix}*")).await.unwrap();
    let mut state = BTreeMap::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(redis)
            .await
            .unwrap();
        let contents = match kind.as_str() {
            "string" => redis.get::<_, String>(&key).await.unwrap(),
            "hash" => {
                let fields: BTreeMap<String, String> = redis.hgetall(&key).await.unwrap();
                format!("{fields:?}")
            }
            "zset" => {
                let scored: Vec<(String, f64)> =
                    redis.zrange_withscores(&key, 0, -1).await.unwrap();
                let exact: Vec<(String, u64)> =
                    scored.into_iter().map(|(m, s)| (m, s.to_bits())).collect();
                format!("{exact:?}")
            }
            other => panic!("unexpected type {other} at {key}"),
        };
        let expires = redis.pttl::<_, i64>(&key).await.unwrap() > 0;
        state.insert(
            key[prefix.len()..].to_owned(),
            format!("{kind} {} {expires}", contents.replace(prefix, "")),
        );
    }
    state
}

#[tokio::test]
async fn a_chunked_batch_leaves_exactly_what_one_event_at_a_time_leaves() {
    let (chunked, one_by_one) = (env("chunked").await, env("one-by-one").await);
    let mut rng = StdRng::seed_from_u64(3);
    // Two rounds: the second starts from the metas, tombstones and memberships of the first.
    for round in 0..2 {
        let events = shuffled_histories(&mut rng, 60);
        let mut batched = Vec::new();
        for batch in events.chunks(512) {
            batched.extend(chunked.writer.apply(batch).await.unwrap());
        }
        for (event, outcome) in events.iter().zip(&batched) {
            let alone = one_by_one.writer.apply(std::slice::from_ref(event));
            let alone = alone.await.unwrap();
            assert_eq!(
                kind(outcome),
                kind(&alone[0]),
                "round {round}: {} v{}",
                event.id,
                event.version
            );
        }
        let mut redis = chunked.redis.clone();
        let got = snapshot(&mut redis, &chunked.layout).await;
        let want = snapshot(&mut redis, &one_by_one.layout).await;
        assert!(got.len() > 100, "{} keys", got.len());
        assert_eq!(got, want, "round {round}");
    }
}

#[tokio::test]
async fn a_refused_event_is_rejected_alone_within_its_chunk() {
    let env = env("refused").await;
    let mut redis = env.redis.clone();
    // Someone else's string where p7's category index must go.
    let _: () = redis
        .set(env.layout.key("places:rating:bar"), "not a set")
        .await
        .unwrap();
    let mut events: Vec<Event> = (0..200).map(|n| upsert(&format!("p{n}"), 1)).collect();
    events[7] = Event::upsert("places", "p7", 1, place("p7", 1, "bar", 2.35, 48.85));
    let outcomes = env.writer.apply(&events).await.unwrap();
    for (n, outcome) in outcomes.iter().enumerate() {
        match outcome {
            ApplyOutcome::Rejected(err) if n == 7 => {
                assert_eq!(err.kind(), CacheErrorKind::Poison);
                assert!(err.to_string().contains("WRONGTYPE"), "{err}");
            }
            ApplyOutcome::Applied if n != 7 => {}
            other => panic!("event {n}: {other:?}"),
        }
    }
    // The refused entity's meta is not written: its next event rewrites everything.
    let v: Option<String> = redis
        .hget(env.layout.meta("places", "p7"), "v")
        .await
        .unwrap();
    assert_eq!(v, None);
}

#[tokio::test]
async fn a_lost_script_is_loaded_again() {
    // A private Redis: flushing the scripts of the shared one would make other tests' batches
    // retry chunks out of order, which changes their per-event outcomes.
    let server = cacheflow_testkit::RedisServer::start();
    let env = env_on("noscript", server.url()).await;
    let mut redis = env.redis.clone();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut redis)
        .await
        .unwrap();
    let events: Vec<Event> = (0..EVENTS).map(|n| upsert(&format!("p{n}"), 1)).collect();
    let outcomes = env.writer.apply(&events).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|outcome| matches!(outcome, ApplyOutcome::Applied)));
}

#[tokio::test]
async fn fill_and_absent_markers_keep_their_rules() {
    let env = env("fill").await;
    let mut redis = env.redis.clone();
    let read_key = env.layout.key("place:p1");
    let absent = |version| StoreState::Absent {
        latest_version: version,
    };
    let ttl = Duration::from_secs(60);
    let outcome = env.writer.fill("places", "p1", absent(0), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "absent");
    let marker: Vec<u8> = redis.get(&read_key).await.unwrap();
    assert!(marker.is_empty());

    let outcomes = env.writer.apply(&[upsert("p1", 2)]).await.unwrap();
    assert_eq!(
        kind(&outcomes[0]),
        "applied",
        "a create replaces the marker"
    );
    let live = |version| StoreState::Live {
        version,
        document: place("p1", version, "cafe", 2.35, 48.85),
    };
    // The same version may be written again (its string may have expired), an older one not.
    let _: () = redis.del(&read_key).await.unwrap();
    let outcome = env.writer.fill("places", "p1", live(2), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "applied");
    assert!(redis.exists::<_, bool>(&read_key).await.unwrap());
    let outcome = env.writer.fill("places", "p1", live(1), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "stale");
    let outcome = env.writer.fill("places", "p1", absent(1), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "stale", "the entity is live");

    // Never over a tombstone, and no marker over a newer one.
    let outcomes = env.writer.apply(&[Event::delete("places", "p1", 3)]).await;
    assert_eq!(kind(&outcomes.unwrap()[0]), "deleted");
    let outcome = env.writer.fill("places", "p1", live(3), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "stale");
    let outcome = env.writer.fill("places", "p1", absent(2), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "stale");
    let outcome = env.writer.fill("places", "p1", absent(3), ttl).await;
    assert_eq!(kind(&outcome.unwrap()), "absent");
}

#[tokio::test]
async fn geo_scores_are_exactly_those_geoadd_stores() {
    let env = env("geohash").await;
    let mut redis = env.redis.clone();
    // The corners and centre, then a deterministic spread of awkward decimals.
    let mut points = vec![
        (-180.0, -MAX_LATITUDE),
        (180.0, MAX_LATITUDE),
        (-180.0, MAX_LATITUDE),
        (180.0, -MAX_LATITUDE),
        (0.0, 0.0),
        (-0.0, -0.0),
        (2.35, 48.85),
        (179.999_999_999, 85.051_128_779),
    ];
    for n in 0..2000u64 {
        let unit = |k: u64| ((n * k) % 1_000_003) as f64 / 1_000_003.0;
        points.push((
            unit(7919) * 360.0 - 180.0,
            unit(104_729) * 2.0 * MAX_LATITUDE - MAX_LATITUDE,
        ));
    }
    let events: Vec<Event> = points
        .iter()
        .enumerate()
        .map(|(n, &(lon, lat))| {
            let id = format!("g{n}");
            Event::upsert("places", &id, 1, place(&id, 1, "cafe", lon, lat))
        })
        .collect();
    let outcomes = env.writer.apply(&events).await.unwrap();
    assert!(outcomes
        .iter()
        .all(|outcome| matches!(outcome, ApplyOutcome::Applied)));

    let reference = env.layout.key("geoadd-reference");
    let mut geoadd = redis::cmd("GEOADD");
    geoadd.arg(&reference);
    for (n, (lon, lat)) in points.iter().enumerate() {
        geoadd.arg(lon).arg(lat).arg(format!("g{n}"));
    }
    let _: () = geoadd.query_async(&mut redis).await.unwrap();
    let want: HashMap<String, f64> = redis
        .zrange_withscores(&reference, 0, -1)
        .await
        .map(|scored: Vec<(String, f64)>| scored.into_iter().collect())
        .unwrap();
    let got: HashMap<String, f64> = redis
        .zrange_withscores(env.layout.key("places:geo"), 0, -1)
        .await
        .map(|scored: Vec<(String, f64)>| scored.into_iter().collect())
        .unwrap();
    assert_eq!(got.len(), points.len());
    for (member, score) in &want {
        assert_eq!(
            got[member].to_bits(),
            score.to_bits(),
            "{member} at {:?}",
            points[member[1..].parse::<usize>().unwrap()]
        );
    }
}
