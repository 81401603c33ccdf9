//! Structure queries served from Redis: nearest, top-N, hash fields; and their input checks.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{error_of, item_ids, place_at, spawn_app, x_cache, TestApp};

/// Five places on a line east of a centre point, ~1.1 km apart, with ratings and categories.
async fn seeded() -> TestApp {
    let app = spawn_app().await;
    app.start_worker();
    let places = [
        ("n0", "cafe", 3.0, 0.00),
        ("n1", "bar", 4.0, 0.01),
        ("n2", "cafe", 5.0, 0.02),
        ("n3", "cafe", 2.0, 0.03),
        ("n4", "bar", 4.5, 0.04),
    ];
    for (id, category, rating, dlon) in places {
        let doc = place_at(id, category, rating, -9.0 + dlon, 38.7);
        assert_eq!(
            app.put(&format!("/v1/places/{id}"), &doc).await.status(),
            201
        );
    }
    let client = app.client.clone();
    let url = app.url("/v1/places/top/rating?limit=10");
    app.eventually(
        "the worker indexed every place",
        // A bound, not a timing target: the whole suite runs in parallel on two cores.
        Duration::from_secs(30),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
                body["items"].as_array().map_or(0, Vec::len) == 5
            }
        },
    )
    .await;
    app
}

#[tokio::test]
async fn near_top_and_fields_come_from_redis() {
    let app = seeded().await;

    let near = app
        .get("/v1/places/near/nearby?lon=-9.0&lat=38.7&radius_m=2500&limit=10")
        .await;
    assert_eq!(x_cache(&near), "hit");
    let body: Value = near.json().await.unwrap();
    assert_eq!(item_ids(&body), vec!["n0", "n1", "n2"]);
    let distances: Vec<f64> = body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["distance_m"].as_f64().unwrap())
        .collect();
    assert!(distances[0] < 1.0, "{distances:?}");
    // 0.01 degrees of longitude at 38.7 N is about 868 m.
    assert!((distances[1] - 868.0).abs() < 10.0, "{distances:?}");
    assert_eq!(body["items"][1]["document"]["name"], "n1");
    let limited: Value = app
        .get("/v1/places/near/nearby?lon=-9.0&lat=38.7&radius_m=50000&limit=2")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item_ids(&limited), vec!["n0", "n1"]);

    let top: Value = app
        .get("/v1/places/top/rating?limit=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item_ids(&top), vec!["n2", "n4", "n1"]);
    assert_eq!(top["items"][0]["score"], 5.0);
    assert_eq!(top["items"][0]["document"]["rating"], 5.0);
    let page: Value = app
        .get("/v1/places/top/rating?limit=2&offset=3")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item_ids(&page), vec!["n0", "n3"]);
    let cafes: Value = app
        .get("/v1/places/top/rating_by_category?category=cafe")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(item_ids(&cafes), vec!["n2", "n0", "n3"]);
    let none: Value = app
        .get("/v1/places/top/rating_by_category?category=museum")
        .await
        .json()
        .await
        .unwrap();
    assert!(item_ids(&none).is_empty());

    let fields = app.get("/v1/places/n1/fields").await;
    assert_eq!(x_cache(&fields), "hit");
    let body: Value = fields.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({"name": "n1", "category": "bar", "rating": 4.0, "price": 2})
    );
    let (status, code, _) = error_of(app.get("/v1/places/nobody/fields").await).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
}

#[tokio::test]
async fn result_documents_missing_from_redis_come_from_the_store() {
    let app = seeded().await;
    let mut redis = app.redis().await;
    let _: () = redis::AsyncCommands::del(&mut redis, app.key("place:n2"))
        .await
        .unwrap();
    let top = app.get("/v1/places/top/rating?limit=1").await;
    assert_eq!(x_cache(&top), "miss");
    let body: Value = top.json().await.unwrap();
    assert_eq!(body["items"][0]["document"]["name"], "n2");
}

#[tokio::test]
async fn query_inputs_are_checked() {
    let app = spawn_app().await;
    let cases = [
        (
            "/v1/places/near/nearby?lat=38&radius_m=10",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=x&lat=38&radius_m=10",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=181&lat=38&radius_m=10",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=86&radius_m=10",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=38&radius_m=0",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=38&radius_m=100001",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=38&radius_m=NaN",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=38&radius_m=10&limit=0",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/nearby?lon=1&lat=38&radius_m=10&limit=1001",
            400,
            "invalid_query",
        ),
        (
            "/v1/places/near/elsewhere?lon=1&lat=38&radius_m=10",
            404,
            "index_not_found",
        ),
        ("/v1/places/top/rating?limit=-1", 400, "invalid_query"),
        ("/v1/places/top/rating?offset=x", 400, "invalid_query"),
        ("/v1/places/top/rating_by_category", 400, "invalid_query"),
        (
            "/v1/places/top/rating_by_category?category=two%20words",
            400,
            "invalid_query",
        ),
        ("/v1/places/top/nearby", 404, "index_not_found"),
        ("/v1/nope/top/rating", 404, "collection_not_found"),
        ("/v1/places/bad.id/fields", 400, "invalid_id"),
    ];
    for (path, status, code) in cases {
        let (got, got_code, _) = error_of(app.get(path).await).await;
        assert_eq!((got, got_code.as_str()), (status, code), "{path}");
    }
    assert_eq!(
        app.get("/v1/places/near/nearby?lon=1&lat=38&radius_m=100000&limit=1000")
            .await
            .status(),
        200
    );
}
