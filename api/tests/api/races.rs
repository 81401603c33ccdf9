//! Races between cache-aside populates and writes: whatever the interleaving, the cache never
//! ends on an older version or on a deleted entity.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::{CacheWriter, RedisCacheWriter, RedisWriterOptions, StoreState};
use cacheflow_shared::document::{stamp, Document};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_testkit::{shared_redis, unique_name};
use rand::{Rng, SeedableRng};
use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{pipeline_path, place, spawn_app, x_cache};

fn doc(id: &str, version: u64, rating: f64, category: &str) -> Document {
    let mut document = place(&format!("{id} v{version}"), category, rating)
        .as_object()
        .unwrap()
        .clone();
    stamp(&mut document, id, version);
    document
}

/// Thousands of interleavings at the versioned apply itself: every write's event races a populate
/// carrying a snapshot the store returned earlier (possibly several versions old, possibly from
/// before a delete). The cache must end exactly on the newest state.
#[tokio::test]
async fn populates_racing_events_never_regress_the_cache() {
    let pipeline = Arc::new(Pipeline::load(&pipeline_path()).unwrap());
    let prefix = format!("{}:", unique_name("race"));
    let options = RedisWriterOptions {
        key_prefix: prefix.clone(),
        tombstone_ttl: Duration::from_secs(3600),
        timeout: Duration::from_secs(2),
    };
    let url = SecretUrl::new(shared_redis().url());
    let writer = Arc::new(
        RedisCacheWriter::connect(&url, pipeline, options)
            .await
            .unwrap(),
    );
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let mut redis = redis::Client::open(shared_redis().url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let categories = ["cafe", "bar", "museum"];
    let mut interleavings = 0;
    for entity in 0..40 {
        let id = format!("e{entity}");
        // The store's history of this entity: (version, Some(doc) | None for a delete).
        let mut history: Vec<(u64, Option<Document>)> = Vec::new();
        for version in 1..=60u64 {
            let deleted = history.last().is_some_and(|(_, d)| d.is_some()) && rng.random_bool(0.2);
            let state = (!deleted).then(|| {
                doc(
                    &id,
                    version,
                    rng.random_range(1.0..5.0),
                    categories[rng.random_range(0..3)],
                )
            });
            let event = match &state {
                Some(document) => Event::upsert("places", &id, version, document.clone()),
                None => Event::delete("places", &id, version),
            };
            // A populate with what some earlier read of the store returned.
            let seen = rng.random_range(0..history.len() + 1);
            let snapshot = match history.get(seen) {
                Some((v, Some(document))) => StoreState::Live {
                    version: *v,
                    document: document.clone(),
                },
                Some((v, None)) => StoreState::Absent { latest_version: *v },
                None => StoreState::Absent { latest_version: 0 },
            };
            history.push((version, state));
            let (w1, w2) = (writer.clone(), writer.clone());
            let id2 = id.clone();
            let apply = async move { w1.apply(std::slice::from_ref(&event)).await.unwrap() };
            let fill = async move {
                w2.fill("places", &id2, snapshot, Duration::from_secs(60))
                    .await
                    .unwrap()
            };
            if rng.random_bool(0.5) {
                tokio::join!(apply, fill);
            } else {
                tokio::join!(fill, apply);
            }
            interleavings += 1;
        }
        // The newest state is what the cache holds.
        let (latest, state) = history.last().unwrap();
        let meta: Option<String> = redis
            .hget(format!("{prefix}cacheflow:meta:places:{id}"), "v")
            .await
            .unwrap();
        assert_eq!(meta, Some(latest.to_string()), "{id}: the cache's version");
        let string: Option<String> = redis.get(format!("{prefix}place:{id}")).await.unwrap();
        match state {
            Some(document) => {
                let cached: Value =
                    serde_json::from_str(string.as_deref().expect("a live entity is cached"))
                        .unwrap();
                assert_eq!(cached, Value::Object(document.clone()), "{id}");
                let category = document["category"].as_str().unwrap();
                let score: Option<f64> = redis
                    .zscore(format!("{prefix}places:rating:{category}"), &id)
                    .await
                    .unwrap();
                assert!(score.is_some(), "{id} is indexed under its latest category");
            }
            None => {
                assert!(
                    string.is_none(),
                    "{id}: a deleted entity was resurrected: {string:?}"
                );
                let score: Option<f64> = redis
                    .zscore(format!("{prefix}places:rating"), &id)
                    .await
                    .unwrap();
                assert!(score.is_none(), "{id}: a deleted entity is still indexed");
            }
        }
    }
    assert_eq!(interleavings, 2400);
}

/// The same race end to end: GETs that miss and populate, while writes and deletes flow through
/// the outbox and a worker. After quiescence the cache equals the store.
#[tokio::test]
async fn reads_racing_writes_end_consistent() {
    let app = spawn_app().await;
    app.start_worker();
    let mut rng = rand::rngs::StdRng::seed_from_u64(11);
    let mut redis = app.redis().await;
    for round in 0..150 {
        let id = format!("h{}", round % 6);
        let path = format!("/v1/places/{id}");
        // Evict now and then, so that reads miss and populate while the write is in flight.
        if rng.random_bool(0.5) {
            let _: () = redis.del(app.key(&format!("place:{id}"))).await.unwrap();
        }
        let write = async {
            if rng.random_bool(0.25) {
                app.client.delete(app.url(&path)).send().await.unwrap();
            } else {
                app.put(
                    &path,
                    &place(&format!("r{round}"), "cafe", (round % 5) as f64),
                )
                .await;
            }
        };
        let reads = futures::future::join_all((0..4).map(|_| app.get(&path)));
        let (_, responses) = tokio::join!(write, reads);
        for response in responses {
            assert!(
                matches!(response.status().as_u16(), 200 | 404),
                "{}",
                response.status()
            );
        }
    }
    // Quiescence: every entity's cached state equals the store's.
    for n in 0..6 {
        let id = format!("h{n}");
        let store_latest = {
            let conn = rusqlite::Connection::open(app.dir.path().join("store.db")).unwrap();
            conn.query_row(
                "SELECT version, deleted FROM documents WHERE collection = 'places' AND id = ?1",
                [&id],
                |row| Ok((row.get::<_, i64>(0)? as u64, row.get::<_, bool>(1)?)),
            )
            .unwrap()
        };
        let meta_key = app.key(&format!("cacheflow:meta:places:{id}"));
        let expected = store_latest.0.to_string();
        app.eventually(
            &format!("{id} reaches version {}", store_latest.0),
            Duration::from_secs(15),
            || {
                let mut redis = redis.clone();
                let (meta_key, expected) = (meta_key.clone(), expected.clone());
                async move {
                    redis
                        .hget::<_, _, Option<String>>(&meta_key, "v")
                        .await
                        .unwrap()
                        == Some(expected)
                }
            },
        )
        .await;
        let response = app.get(&format!("/v1/places/{id}")).await;
        if store_latest.1 {
            assert_eq!(response.status(), 404, "{id} is deleted in the store");
        } else {
            assert_eq!(response.status(), 200, "{id} is live in the store");
            assert_eq!(x_cache(&response), "hit");
            assert_eq!(
                response.headers()["etag"].to_str().unwrap(),
                format!("\"{}\"", store_latest.0)
            );
        }
    }
}
