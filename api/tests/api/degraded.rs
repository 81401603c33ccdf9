//! Degraded modes: Redis down (reads from the store, `X-Cache: bypass`), store down (cached reads
//! still served, writes 503).

use std::time::Duration;

use cacheflow_shared::redact::SecretUrl;
use cacheflow_testkit::RedisServer;
use serde_json::Value;

use crate::helpers::{error_of, place_at, spawn_app_with, x_cache};

#[tokio::test]
async fn redis_down_reads_come_from_the_store() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis_url = SecretUrl::new(url);
        s.redis.timeout_ms = 300;
    })
    .await;
    for (id, rating, dlon) in [("a", 4.0, 0.0), ("b", 5.0, 0.01), ("c", 3.0, 0.5)] {
        app.put(
            &format!("/v1/places/{id}"),
            &place_at(id, "cafe", rating, -9.0 + dlon, 38.7),
        )
        .await;
    }
    redis.stop();

    let one = app.get("/v1/places/a").await;
    assert_eq!(
        (one.status().as_u16(), x_cache(&one).as_str()),
        (200, "bypass")
    );
    assert_eq!(one.headers()["etag"], "\"1\"");
    let (status, code, _) = error_of(app.get("/v1/places/zz").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let batch = app.get("/v1/places?ids=b,zz,a").await;
    assert_eq!(x_cache(&batch), "bypass");
    let body: Value = batch.json().await.unwrap();
    assert_eq!(body["missing"], serde_json::json!(["zz"]));

    let near = app
        .get("/v1/places/near/nearby?lon=-9.0&lat=38.7&radius_m=5000")
        .await;
    assert_eq!(x_cache(&near), "bypass");
    let body: Value = near.json().await.unwrap();
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["a", "b"]);
    let top = app
        .get("/v1/places/top/rating_by_category?category=cafe&limit=2")
        .await;
    assert_eq!(x_cache(&top), "bypass");
    let body: Value = top.json().await.unwrap();
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["b", "a"]);
    let fields = app.get("/v1/places/c/fields").await;
    assert_eq!(x_cache(&fields), "bypass");
    assert_eq!(fields.json::<Value>().await.unwrap()["rating"], 3.0);

    // Writes do not need Redis.
    assert_eq!(
        app.put("/v1/places/d", &place_at("d", "bar", 1.0, 0.0, 0.0))
            .await
            .status(),
        201
    );
    redis.restart();
    let client = app.client.clone();
    let url = app.url("/v1/places/a");
    app.eventually("reads go back to Redis", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move { x_cache(&client.get(url).send().await.unwrap()) != "bypass" }
    })
    .await;
}

#[tokio::test]
async fn store_down_cached_reads_still_work_and_writes_are_503() {
    let app = spawn_app_with(|s| s.store.op_timeout_ms = 300).await;
    app.start_worker();
    app.put("/v1/places/s1", &place_at("s1", "cafe", 4.0, 1.0, 1.0))
        .await;
    let client = app.client.clone();
    let url = app.url("/v1/places/s1");
    app.eventually("s1 is cached", Duration::from_secs(30), || {
        let (client, url) = (client.clone(), url.clone());
        async move { x_cache(&client.get(url).send().await.unwrap()) == "hit" }
    })
    .await;

    let db = app.dir.path().join("store.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        release_rx.recv_timeout(Duration::from_secs(30)).ok();
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();

    let cached = app.get("/v1/places/s1").await;
    assert_eq!(
        (cached.status().as_u16(), x_cache(&cached).as_str()),
        (200, "hit")
    );
    let near = app
        .get("/v1/places/near/nearby?lon=1&lat=1&radius_m=100")
        .await;
    assert_eq!(near.status(), 200);
    let write = app
        .put("/v1/places/s2", &place_at("s2", "cafe", 4.0, 1.0, 1.0))
        .await;
    assert_eq!(
        write
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, code, _) = error_of(write).await;
    assert_eq!((status, code.as_str()), (503, "store_unavailable"));
    release_tx.send(()).unwrap();
    locker.join().unwrap();
}
