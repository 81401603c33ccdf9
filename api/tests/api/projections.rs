//! `GET /v1/{collection}/{id}/projections`: the Redis keys the worker recorded for an entity.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{error_of, place, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn projections_name_the_keys_holding_an_entity() {
    let app = spawn_app().await;
    let before: Value = app
        .get("/v1/places/p1/projections")
        .await
        .json()
        .await
        .unwrap();
    assert!(before["cached_version"].is_null(), "{before}");
    assert_eq!(before["keys"], serde_json::json!([]));
    app.start_worker();
    assert_eq!(
        app.put("/v1/places/p1", &place("One", "cafe", 4.0))
            .await
            .status(),
        201
    );
    let app_ref = &app;
    app.eventually("p1 applied", Duration::from_secs(30), move || async move {
        let body: Value = app_ref
            .get("/v1/places/p1/projections")
            .await
            .json()
            .await
            .unwrap();
        body["cached_version"] == 1
    })
    .await;
    let body: Value = app
        .get("/v1/places/p1/projections")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["meta_key"], app.key("cacheflow:meta:places:p1"));
    assert_eq!(body["tombstone"], false);
    let keys: Vec<&str> = body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert!(keys.contains(&app.key("place:p1").as_str()), "{body}");
    assert!(keys.contains(&app.key("place:p1:h").as_str()), "{body}");
    let indexes: Vec<&str> = body["indexes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for index in ["places:rating", "places:rating:cafe", "places:geo"] {
        assert!(
            indexes.contains(&app.key(index).as_str()),
            "{index}: {body}"
        );
    }
    let (status, code, _) = error_of(app.get("/v1/places/bad%20id/projections").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_id"));
}
