//! Entity reads: cache-aside, ETags, negative caching, batch reads.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::helpers::{error_of, place, spawn_app, spawn_app_with, x_cache};

#[tokio::test]
async fn a_miss_reads_the_store_and_populates_redis() {
    let app = spawn_app().await;
    assert_eq!(
        app.put("/v1/places/p1", &place("Cafe A", "cafe", 4.5))
            .await
            .status(),
        201
    );
    // No worker runs here: only the read's own populate can fill Redis.
    let first = app.get("/v1/places/p1").await;
    assert_eq!(first.status(), 200);
    assert_eq!(x_cache(&first), "miss");
    assert_eq!(first.headers()["etag"], "\"1\"");
    let body: Value = first.json().await.unwrap();
    assert_eq!(body["name"], "Cafe A");

    let mut redis = app.redis().await;
    let key = app.key("place:p1");
    app.eventually("populate writes the string", Duration::from_secs(5), || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move { redis.exists::<_, bool>(&key).await.unwrap() }
    })
    .await;
    let hit = app.get("/v1/places/p1").await;
    assert_eq!(x_cache(&hit), "hit");
    assert_eq!(hit.headers()["etag"], "\"1\"");
    assert_eq!(hit.json::<Value>().await.unwrap(), body);
    // The populate went through the versioned apply: the whole projection is there.
    let rating: f64 = redis
        .zscore(app.key("places:rating:cafe"), "p1")
        .await
        .unwrap();
    assert_eq!(rating, 4.5);

    let not_modified = app
        .client
        .get(app.url("/v1/places/p1"))
        .header("if-none-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(not_modified.status(), 304);
    assert_eq!(not_modified.headers()["etag"], "\"1\"");
    let modified = app
        .client
        .get(app.url("/v1/places/p1"))
        .header("if-none-match", "\"0\", W/\"7\"")
        .send()
        .await
        .unwrap();
    assert_eq!(modified.status(), 200);
}

#[tokio::test]
async fn absent_entities_are_cached_negatively_until_a_create_wins() {
    let app = spawn_app_with(|s| s.reads.negative_ttl_ms = 60_000).await;
    app.start_worker();
    let first = app.get("/v1/places/ghost").await;
    assert_eq!(x_cache(&first), "miss");
    let (status, code, _) = error_of(first).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let mut redis = app.redis().await;
    let key = app.key("place:ghost");
    app.eventually("the miss is cached", Duration::from_secs(5), || {
        let mut redis = redis.clone();
        let key = key.clone();
        async move { redis.exists::<_, bool>(&key).await.unwrap() }
    })
    .await;
    let ttl: i64 = redis.pttl(&key).await.unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the marker expires: {ttl}");
    let second = app.get("/v1/places/ghost").await;
    assert_eq!(
        (second.status().as_u16(), x_cache(&second).as_str()),
        (404, "hit")
    );

    // The create's event replaces the marker long before its TTL.
    assert_eq!(
        app.put("/v1/places/ghost", &place("Now here", "bar", 3.0))
            .await
            .status(),
        201
    );
    let client = app.client.clone();
    let url = app.url("/v1/places/ghost");
    app.eventually(
        "the create is visible from the cache",
        Duration::from_secs(5),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.get(url).send().await.unwrap();
                response.status() == 200 && x_cache(&response) == "hit"
            }
        },
    )
    .await;
}

#[tokio::test]
async fn deleted_entities_read_as_404_and_recreate_wins() {
    let app = spawn_app().await;
    app.start_worker();
    app.put("/v1/places/d1", &place("x", "cafe", 2.0)).await;
    app.client
        .delete(app.url("/v1/places/d1"))
        .send()
        .await
        .unwrap();
    let client = app.client.clone();
    let url = app.url("/v1/places/d1");
    let wait_for = |status: u16| {
        let (client, url) = (client.clone(), url.clone());
        move || {
            let (client, url) = (client.clone(), url.clone());
            async move { client.get(url).send().await.unwrap().status() == status }
        }
    };
    app.eventually(
        "the delete is visible",
        Duration::from_secs(5),
        wait_for(404),
    )
    .await;
    app.put("/v1/places/d1", &place("y", "cafe", 2.5)).await;
    app.eventually(
        "the re-create is visible",
        Duration::from_secs(5),
        wait_for(200),
    )
    .await;
    let body: Value = app.get("/v1/places/d1").await.json().await.unwrap();
    assert_eq!(
        (body["name"].as_str(), body["version"].as_u64()),
        (Some("y"), Some(3))
    );
}

#[tokio::test]
async fn batch_reads_keep_order_and_report_absent_ids() {
    let app = spawn_app().await;
    for id in ["a", "b", "c"] {
        app.put(&format!("/v1/places/{id}"), &place(id, "cafe", 3.0))
            .await;
    }
    let response = app.get("/v1/places?ids=c,zz,a,b").await;
    assert_eq!(response.status(), 200);
    assert_eq!(x_cache(&response), "miss");
    let body: Value = response.json().await.unwrap();
    let ids: Vec<&str> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["c", "zz", "a", "b"]);
    assert_eq!(body["items"][0]["document"]["name"], "c");
    assert_eq!(body["items"][1]["found"], false);
    assert!(body["items"][1].get("document").is_none());
    assert_eq!(body["missing"], json!(["zz"]));

    let mut redis = app.redis().await;
    let keys: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|id| app.key(&format!("place:{id}")))
        .collect();
    app.eventually(
        "the batch populated every found id",
        Duration::from_secs(5),
        || {
            let mut redis = redis.clone();
            let keys = keys.clone();
            async move { redis.exists::<_, usize>(&keys).await.unwrap() == 3 }
        },
    )
    .await;
    let again = app.get("/v1/places?ids=a,b,c").await;
    assert_eq!(x_cache(&again), "hit");
    let _: () = redis.del(app.key("place:b")).await.unwrap();
    let partial = app.get("/v1/places?ids=a,b,c").await;
    assert_eq!(x_cache(&partial), "miss");
    let body: Value = partial.json().await.unwrap();
    assert_eq!(body["items"][1]["document"]["name"], "b");
}

#[tokio::test]
async fn batch_read_input_errors() {
    let app = spawn_app().await;
    let cases = [
        // Without ids it is a listing (`listing.rs`), whose `limit` is checked.
        ("/v1/places?limit=0", 400, "invalid_query"),
        ("/v1/places?ids=a,b.c", 400, "invalid_id"),
        ("/v1/places?ids=", 400, "invalid_id"),
        ("/v1/nope?ids=a", 404, "collection_not_found"),
    ];
    for (path, status, code) in cases {
        let (got, got_code, _) = error_of(app.get(path).await).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{path}");
    }
    let many: Vec<String> = (0..1001).map(|i| format!("i{i}")).collect();
    let (status, code, _) =
        error_of(app.get(&format!("/v1/places?ids={}", many.join(","))).await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_query"));
    let thousand = &many[..1000];
    assert_eq!(
        app.get(&format!("/v1/places?ids={}", thousand.join(",")))
            .await
            .status(),
        200
    );
}
