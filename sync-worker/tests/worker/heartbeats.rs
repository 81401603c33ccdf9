//! Heartbeats on the stream: measured and kept in Redis, never projected.

use cacheflow_shared::cache::status::heartbeat_key;
use cacheflow_shared::event::{Event, HEARTBEAT_ID};
use redis::AsyncCommands;

use crate::gen::{history, rng};
use crate::helpers::{eventually, TestEnv};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_heartbeat_is_measured_and_kept_not_projected() {
    let env = TestEnv::new("heartbeat").await;
    let worker = env.spawn_worker();
    let events = history(&mut rng(3), "a", 10, 2);
    let mut stream = events.clone();
    stream.insert(5, Event::heartbeat("places"));
    env.publish(&stream).await;
    env.wait_drained().await;

    let key = heartbeat_key(&env.settings.worker.key_prefix, "places");
    let kept: std::collections::HashMap<String, String> = eventually("the heartbeat kept", || {
        let mut conn = env.redis.clone();
        let key = key.clone();
        async move {
            let hash: std::collections::HashMap<String, String> = conn.hgetall(&key).await.ok()?;
            (!hash.is_empty()).then_some(hash)
        }
    })
    .await;
    let last_ms: f64 = kept["last_ms"].parse().expect("milliseconds");
    assert!(last_ms >= 0.0, "{kept:?}");
    assert!(kept["at"].ends_with('Z'), "{kept:?}");
    // The events around it are applied as usual, and the heartbeat left no entity behind (its
    // status key aside).
    let mut conn = env.redis.clone();
    let _: () = conn.del(&key).await.unwrap();
    env.assert_projection(&events).await;
    let meta: bool = conn
        .exists(env.layout().meta("places", HEARTBEAT_ID))
        .await
        .unwrap();
    assert!(!meta, "a heartbeat was applied as an entity");
    let stats = worker.stop().await;
    assert_eq!(stats.skipped, 1, "{stats:?}");
    assert_eq!(stats.dead_lettered, 0, "{stats:?}");
}
