//! `POST /v1/admin/invalidate` and the reads following the active cache generation.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::redis::generations::{self, GenerationState};
use cacheflow_shared::cache::{ApplyOutcome, CacheWriter, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::redact::SecretUrl;
use cacheflow_testkit::RedisServer;
use redis::AsyncCommands;
use serde_json::{json, Value};

use crate::helpers::{error_of, item_ids, place_at, spawn_app, spawn_app_with, x_cache, TestApp};

const NEAR: &str = "/v1/places/near/nearby?lon=-9.0&lat=38.7&radius_m=5000";

async fn invalidate(app: &TestApp, body: &Value) -> reqwest::Response {
    app.client
        .post(app.url("/v1/admin/invalidate"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// An app with the admin routes on, a worker, and `places` indexed by it.
async fn seeded(places: &[(&str, f64, f64)]) -> TestApp {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    app.start_worker();
    for &(id, rating, dlon) in places {
        let doc = place_at(id, "cafe", rating, -9.0 + dlon, 38.7);
        let response = app.put(&format!("/v1/places/{id}"), &doc).await;
        assert_eq!(response.status(), 201);
    }
    let app_ref = &app;
    app.eventually(
        "the worker indexed every place",
        Duration::from_secs(30),
        move || async move { item_ids(&top(app_ref).await.1).len() == places.len() },
    )
    .await;
    app
}

async fn top(app: &TestApp) -> (String, Value) {
    let response = app.get("/v1/places/top/rating?limit=100").await;
    assert_eq!(response.status(), 200);
    (x_cache(&response), response.json().await.unwrap())
}

async fn near(app: &TestApp, path: &str) -> (String, Value) {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200);
    (x_cache(&response), response.json().await.unwrap())
}

async fn exists(app: &TestApp, key: &str) -> bool {
    app.redis().await.exists(key).await.unwrap()
}

/// Waits until a GET of `id` is a cache hit, and returns its ETag and body.
async fn wait_for_hit(app: &TestApp, id: &str) -> (String, Value) {
    let path = format!("/v1/places/{id}");
    let app_ref = &app;
    let path_ref = &path;
    app.eventually(
        "the read populated the cache",
        Duration::from_secs(5),
        move || async move { x_cache(&app_ref.get(path_ref).await) == "hit" },
    )
    .await;
    let hit = app.get(&path).await;
    let etag = hit.headers()["etag"].to_str().unwrap().to_owned();
    (etag, hit.json().await.unwrap())
}

#[tokio::test]
async fn admin_routes_are_disabled_by_default() {
    let app = spawn_app().await;
    for body in [
        json!({ "collection": "places" }),
        json!({ "nonsense": true }),
    ] {
        let (status, code, _) = error_of(invalidate(&app, &body).await).await;
        assert_eq!((status, code.as_str()), (404, "admin_disabled"), "{body}");
    }
    // Not even the body is read while they are off.
    let response = app
        .client
        .post(app.url("/v1/admin/invalidate"))
        .header("content-type", "text/plain")
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (404, "admin_disabled"));
}

#[tokio::test]
async fn invalidating_ids_clears_entries_and_index_memberships_until_the_next_read() {
    let app = seeded(&[("a", 4.0, 0.0), ("b", 5.0, 0.01)]).await;

    let response = invalidate(&app, &json!({ "collection": "places", "ids": ["a", "a"] })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({ "collection": "places", "invalidated": 1 }));

    let mut redis = app.redis().await;
    assert!(!exists(&app, &app.key("place:a")).await);
    assert!(!exists(&app, &app.key("place:a:h")).await);
    assert!(exists(&app, &app.key("place:b")).await);
    for index in ["places:rating", "places:rating:cafe", "places:geo"] {
        let a: Option<f64> = redis.zscore(app.key(index), "a").await.unwrap();
        let b: Option<f64> = redis.zscore(app.key(index), "b").await.unwrap();
        assert_eq!((a.is_none(), b.is_some()), (true, true), "{index}");
    }
    // The version stays, so an older event cannot come back.
    let version: Option<String> = redis
        .hget(app.key("cacheflow:meta:places:a"), "v")
        .await
        .unwrap();
    assert_eq!(version.as_deref(), Some("1"));

    // The indexes, read from Redis, no longer list it.
    let (cache, body) = top(&app).await;
    assert_eq!(
        (cache.as_str(), item_ids(&body)),
        ("hit", vec!["b".to_owned()])
    );
    let (cache, body) = near(&app, NEAR).await;
    assert_eq!(
        (cache.as_str(), item_ids(&body)),
        ("hit", vec!["b".to_owned()])
    );

    // The next read misses, answers from the store and repopulates at the same version.
    let miss = app.get("/v1/places/a").await;
    assert_eq!(
        (miss.status().as_u16(), x_cache(&miss).as_str()),
        (200, "miss")
    );
    assert_eq!(miss.headers()["etag"], "\"1\"");
    let (etag, document) = wait_for_hit(&app, "a").await;
    assert_eq!(
        (etag.as_str(), document["name"].as_str()),
        ("\"1\"", Some("a"))
    );
    let (_, body) = top(&app).await;
    assert_eq!(item_ids(&body), vec!["b", "a"]);
}

#[tokio::test]
async fn invalidating_a_collection_clears_every_entity_it_holds() {
    let app = seeded(&[("a", 4.0, 0.0), ("b", 5.0, 0.01), ("c", 3.0, 0.02)]).await;
    // More entities than one SCAN page, written straight to the cache.
    let writer = writer(&app).await;
    let extra: Vec<Event> = (0..1_500)
        .map(|n| {
            let id = format!("x{n}");
            let mut doc = place_at(&id, "bar", 1.0, 10.0, 50.0);
            doc["id"] = json!(id);
            doc["version"] = json!(1);
            Event::upsert("places", &id, 1, doc.as_object().unwrap().clone())
        })
        .collect();
    let outcomes = writer.apply(&extra).await.unwrap();
    assert!(outcomes.iter().all(|o| matches!(o, ApplyOutcome::Applied)));

    let response = invalidate(&app, &json!({ "collection": "places" })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["collection"], "places");
    // SCAN may return a key twice across pages while Redis resizes its table (other tests
    // write to the same server), so the count is at least the number of entities.
    assert!(body["invalidated"].as_u64().unwrap() >= 1_503, "{body}");

    for key in ["place:a", "place:b", "place:c", "place:x0", "place:x1499"] {
        assert!(!exists(&app, &app.key(key)).await, "{key}");
    }
    let mut redis = app.redis().await;
    for index in [
        "places:rating",
        "places:rating:cafe",
        "places:rating:bar",
        "places:geo",
    ] {
        let members: usize = redis.zcard(app.key(index)).await.unwrap();
        assert_eq!(members, 0, "{index}");
    }
    let (cache, body) = top(&app).await;
    assert_eq!((cache.as_str(), item_ids(&body).len()), ("hit", 0));

    let miss = app.get("/v1/places/b").await;
    assert_eq!(x_cache(&miss), "miss");
    let (etag, _) = wait_for_hit(&app, "b").await;
    assert_eq!(etag, "\"1\"");
}

#[tokio::test]
async fn invalid_requests_are_rejected() {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    let too_many: Vec<String> = (0..1_001).map(|n| format!("id{n}")).collect();
    let cases = [
        (json!({ "collection": "nope" }), 404, "collection_not_found"),
        (
            json!({ "collection": "nope", "ids": ["a"] }),
            404,
            "collection_not_found",
        ),
        (json!(["places"]), 400, "invalid_body"),
        (json!({}), 400, "invalid_body"),
        (json!({ "collection": 7 }), 400, "invalid_body"),
        (
            json!({ "collection": "places", "extra": 1 }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": null }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": "a" }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": [1] }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": [] }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": too_many }),
            400,
            "invalid_body",
        ),
        (
            json!({ "collection": "places", "ids": ["ok", "not.ok"] }),
            400,
            "invalid_id",
        ),
    ];
    for (body, status, code) in cases {
        let (got, got_code, _) = error_of(invalidate(&app, &body).await).await;
        let shown = body.to_string().chars().take(80).collect::<String>();
        assert_eq!((got, got_code.as_str()), (status, code), "{shown}");
    }
    let response = app
        .client
        .post(app.url("/v1/admin/invalidate"))
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
    let response = app
        .client
        .post(app.url("/v1/admin/invalidate"))
        .header("content-type", "text/plain")
        .body(r#"{"collection":"places"}"#)
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
    // Exactly the limit is accepted.
    let limit: Vec<String> = (0..1_000).map(|n| format!("id{n}")).collect();
    let response = invalidate(&app, &json!({ "collection": "places", "ids": limit })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["invalidated"], 1_000);
}

#[tokio::test]
async fn redis_down_is_503_with_retry_after() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let app = spawn_app_with(|s| {
        s.redis_url = SecretUrl::new(url);
        s.redis.timeout_ms = 300;
        s.admin_enabled = true;
    })
    .await;
    redis.stop();
    for body in [
        json!({ "collection": "places", "ids": ["a"] }),
        json!({ "collection": "places" }),
    ] {
        let response = invalidate(&app, &body).await;
        assert_eq!(response.headers()["retry-after"], "1", "{body}");
        let (status, code, _) = error_of(response).await;
        assert_eq!(
            (status, code.as_str()),
            (503, "cache_unavailable"),
            "{body}"
        );
    }
}

async fn writer(app: &TestApp) -> RedisCacheWriter {
    let pipeline = Arc::new(Pipeline::load(&app.settings.pipeline_config).unwrap());
    RedisCacheWriter::connect(
        &app.settings.redis_url,
        pipeline,
        RedisWriterOptions::from_settings(&app.settings),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn reads_follow_the_active_generation_without_a_restart() {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    let old = place_at("Cafe A", "cafe", 4.0, -9.0, 38.7);
    assert_eq!(app.put("/v1/places/p1", &old).await.status(), 201);
    // No worker: the read's populate fills the current (empty) generation.
    assert_eq!(x_cache(&app.get("/v1/places/p1").await), "miss");
    let (etag, document) = wait_for_hit(&app, "p1").await;
    assert_eq!(
        (etag.as_str(), document["name"].as_str()),
        ("\"1\"", Some("Cafe A"))
    );

    // A rebuild's generation: registered for writes, filled, then switched to.
    let writer = writer(&app).await;
    let prefix = app.settings.worker.key_prefix.clone();
    let mut conn = writer.connection();
    let next = generations::generation_prefix("places", 9);
    let building = GenerationState {
        active: String::new(),
        extra: vec![next.clone()],
    };
    let set = generations::compare_and_set(
        &mut conn,
        &prefix,
        "places",
        &GenerationState::default(),
        &building,
    )
    .await
    .unwrap();
    assert!(set);
    let mut new = place_at("Cafe B", "bar", 4.9, 2.35, 48.85);
    new["id"] = json!("p1");
    new["version"] = json!(2);
    let event = Event::upsert("places", "p1", 2, new.as_object().unwrap().clone());
    let outcomes = writer.pinned(&next).apply(&[event]).await.unwrap();
    assert!(matches!(outcomes[..], [ApplyOutcome::Applied]));
    // Still the old generation until the switch.
    let (_, body) = top(&app).await;
    assert_eq!(body["items"][0]["score"], 4.0);
    let switched = GenerationState {
        active: next.clone(),
        extra: vec![String::new()],
    };
    let set = generations::compare_and_set(&mut conn, &prefix, "places", &building, &switched)
        .await
        .unwrap();
    assert!(set);

    let app_ref = &app;
    app.eventually(
        "reads moved to the new generation",
        Duration::from_secs(5),
        move || async move {
            let response = app_ref.get("/v1/places/p1").await;
            let hit = x_cache(&response) == "hit";
            let body: Value = response.json().await.unwrap();
            hit && body["name"] == "Cafe B"
        },
    )
    .await;
    let hit = app.get("/v1/places/p1").await;
    assert_eq!(hit.headers()["etag"], "\"2\"");
    // The indexes are the new generation's too.
    let (cache, body) = top(&app).await;
    assert_eq!(cache, "hit");
    assert_eq!(item_ids(&body), vec!["p1"]);
    assert_eq!(body["items"][0]["score"], 4.9);
    assert_eq!(body["items"][0]["document"]["name"], "Cafe B");
    let (cache, body) = near(
        &app,
        "/v1/places/near/nearby?lon=2.35&lat=48.85&radius_m=1000",
    )
    .await;
    assert_eq!(
        (cache.as_str(), item_ids(&body)),
        ("hit", vec!["p1".to_owned()])
    );
    let (_, body) = near(&app, NEAR).await;
    assert!(item_ids(&body).is_empty(), "{body}");
    let fields: Value = app.get("/v1/places/p1/fields").await.json().await.unwrap();
    assert_eq!(fields["category"], "bar");

    // Invalidating the collection scans the active generation and clears every one written.
    let response = invalidate(&app, &json!({ "collection": "places" })).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert!(body["invalidated"].as_u64().unwrap() >= 1, "{body}");
    assert!(!exists(&app, &format!("{prefix}{next}place:p1")).await);
    assert!(!exists(&app, &app.key("place:p1")).await);
}

#[tokio::test]
async fn the_admin_route_documents_its_bodies() {
    let app = spawn_app().await;
    let spec: Value = app.get("/openapi.json").await.json().await.unwrap();
    let operation = &spec["paths"]["/v1/admin/invalidate"]["post"];
    let schemas = &spec["components"]["schemas"];
    let request = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    let response = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
        .as_str()
        .unwrap();
    for reference in [request, response] {
        let name = reference.trim_start_matches("#/components/schemas/");
        assert!(
            schemas[name].is_object(),
            "{reference} is not in the components"
        );
    }
    let request = &schemas["InvalidateRequest"];
    assert_eq!(request["required"], json!(["collection"]));
    assert!(request["properties"]["ids"].is_object(), "{request}");
    for status in ["400", "404", "503"] {
        assert!(operation["responses"][status].is_object(), "{status}");
    }
}
