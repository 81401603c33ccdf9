//! What an event makes Redis hold, through the whole worker (stream → worker → Redis).

use std::collections::BTreeMap;

use cacheflow_shared::event::Event;
use redis::AsyncCommands;
use serde_json::Value;

use crate::gen::{place, upsert};
use crate::helpers::TestEnv;

#[tokio::test]
async fn every_projection_kind_is_written() {
    let env = TestEnv::new("kinds").await;
    let worker = env.spawn_worker();
    let doc = place("p1", 1, "cafe", 4.5, 2.35, 48.85);
    env.publish(&[Event::upsert("places", "p1", 1, doc.clone())])
        .await;
    env.wait_drained().await;
    let layout = env.layout();
    let key = |k: &str| layout.key(k);
    let mut redis = env.redis.clone();

    let json: String = redis.get(key("place:p1")).await.unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        Value::Object(doc)
    );
    let hash: BTreeMap<String, String> = redis.hgetall(key("place:p1:h")).await.unwrap();
    let want: BTreeMap<String, String> = [
        ("name", "Place p1 v1"),
        ("category", "cafe"),
        ("rating", "4.5"),
        ("price", "2"),
    ]
    .into_iter()
    .map(|(f, v)| (f.to_owned(), v.to_owned()))
    .collect();
    assert_eq!(hash, want);
    for index in ["places:rating", "places:rating:cafe"] {
        let score: Option<f64> = redis.zscore(key(index), "p1").await.unwrap();
        assert_eq!(score, Some(4.5), "{index}");
    }
    let positions: Vec<Option<(f64, f64)>> = redis::cmd("GEOPOS")
        .arg(key("places:geo"))
        .arg("p1")
        .query_async(&mut redis)
        .await
        .unwrap();
    let (lon, lat) = positions[0].expect("p1 is in the geo index");
    assert!(
        (lon - 2.35).abs() < 1e-4 && (lat - 48.85).abs() < 1e-4,
        "({lon}, {lat})"
    );
    let meta: BTreeMap<String, String> = redis
        .hgetall(env.layout().meta("places", "p1"))
        .await
        .unwrap();
    assert_eq!(meta["v"], "1");
    assert_eq!(meta["d"], "0");
    worker.stop().await;
}

/// The hash projection is replaced, not merged: a field that left the document leaves the hash,
/// one that arrives joins it, and values are overwritten.
#[tokio::test]
async fn the_hash_follows_the_fields_the_document_has() {
    let env = TestEnv::new("hashfields").await;
    let worker = env.spawn_worker();
    let mut without_price = place("p1", 2, "bar", 3.5, 2.35, 48.85);
    without_price.remove("price");
    let mut without_name = place("p1", 3, "bar", 3.0, 2.35, 48.85);
    without_name.remove("name");
    env.publish(&[
        Event::upsert("places", "p1", 1, place("p1", 1, "cafe", 4.5, 2.35, 48.85)),
        Event::upsert("places", "p1", 2, without_price),
    ])
    .await;
    env.wait_drained().await;
    let key = env.layout().key("place:p1:h");
    let mut redis = env.redis.clone();
    let hash: BTreeMap<String, String> = redis.hgetall(&key).await.unwrap();
    let fields: Vec<&str> = hash.keys().map(String::as_str).collect();
    assert_eq!(fields, ["category", "name", "rating"]);
    assert_eq!(hash["category"], "bar");
    assert_eq!(hash["rating"], "3.5");

    env.publish(&[Event::upsert("places", "p1", 3, without_name)])
        .await;
    env.wait_drained().await;
    let hash: BTreeMap<String, String> = redis.hgetall(&key).await.unwrap();
    let fields: Vec<&str> = hash.keys().map(String::as_str).collect();
    assert_eq!(fields, ["category", "price", "rating"]);
    assert_eq!(hash["price"], "4");
    worker.stop().await;
}

#[tokio::test]
async fn a_changed_key_template_field_moves_the_member() {
    let env = TestEnv::new("move").await;
    let worker = env.spawn_worker();
    let events = [
        upsert("p1", 1, "cafe", 4.0),
        upsert("p2", 1, "cafe", 3.0),
        upsert("p1", 2, "bar", 4.2),
    ];
    env.publish(&events).await;
    env.wait_drained().await;
    let layout = env.layout();
    let key = |k: &str| layout.key(k);
    let mut redis = env.redis.clone();
    let cafe: Vec<String> = redis
        .zrange(key("places:rating:cafe"), 0, -1)
        .await
        .unwrap();
    assert_eq!(cafe, ["p2"]);
    let bar: Option<f64> = redis.zscore(key("places:rating:bar"), "p1").await.unwrap();
    assert_eq!(bar, Some(4.2));
    env.assert_projection(&events).await;
    worker.stop().await;
}

#[tokio::test]
async fn a_delete_empties_every_structure_and_leaves_a_tombstone() {
    let env = TestEnv::new("delete").await;
    let mut redis = env.redis.clone();
    let worker = env.spawn_worker();
    let events = [
        upsert("p1", 1, "cafe", 4.0),
        upsert("p2", 1, "bar", 2.0),
        Event::delete("places", "p1", 2),
    ];
    env.publish(&events).await;
    env.wait_drained().await;
    // Exactly p2's projections plus p1's tombstone (the state comparison checks every key).
    env.assert_projection(&events).await;
    let meta = env.layout().meta("places", "p1");
    let ttl: i64 = redis.pttl(&meta).await.unwrap();
    let configured = env.settings.worker.tombstone_ttl().as_millis() as i64;
    assert!(
        ttl > configured - 60_000 && ttl <= configured,
        "tombstone TTL {ttl} ms"
    );
    let tombstone: BTreeMap<String, String> = redis.hgetall(&meta).await.unwrap();
    assert_eq!(
        (tombstone["v"].as_str(), tombstone["d"].as_str()),
        ("2", "1")
    );
    worker.stop().await;
}

#[tokio::test]
async fn out_of_order_and_duplicate_events_never_regress() {
    let env = TestEnv::new("order").await;
    let worker = env.spawn_worker();
    let v3 = upsert("p1", 3, "bar", 3.0);
    let events = [
        v3.clone(),
        upsert("p1", 2, "cafe", 2.0),
        v3.clone(),
        upsert("p1", 1, "restaurant", 1.0),
    ];
    env.publish(&events).await;
    env.wait_drained().await;
    env.assert_projection(&[v3]).await;
    let stats = worker.stop().await;
    assert_eq!((stats.applied, stats.stale), (1, 3), "{stats:?}");
}

#[tokio::test]
async fn a_tombstone_blocks_resurrection_by_an_older_upsert() {
    let env = TestEnv::new("tombstone").await;
    let mut redis = env.redis.clone();
    let worker = env.spawn_worker();
    env.publish(&[
        Event::delete("places", "p1", 4),
        upsert("p1", 3, "cafe", 3.0),
    ])
    .await;
    env.wait_drained().await;
    let meta = env.layout().meta("places", "p1");
    let exists: bool = redis.exists(env.layout().key("place:p1")).await.unwrap();
    assert!(!exists, "the older upsert resurrected the entity");
    env.assert_projection(&[Event::delete("places", "p1", 4)])
        .await;

    // A newer upsert is a real re-creation: it is applied and its meta no longer expires.
    let v5 = upsert("p1", 5, "bar", 5.0);
    env.publish(std::slice::from_ref(&v5)).await;
    env.wait_drained().await;
    let ttl: i64 = redis.pttl(&meta).await.unwrap();
    assert_eq!(ttl, -1, "the re-created entity's meta must not expire");
    env.assert_projection(&[v5]).await;
    worker.stop().await;
}
