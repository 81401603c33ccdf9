//! Collection discovery (`GET /v1/collections`, `GET /v1/collections/{collection}`): the
//! description of `config/pipeline.toml`, and every route it lists really answers.

use serde_json::{json, Value};

use crate::helpers::{error_of, place, spawn_app};

/// What `config/pipeline.toml` declares, as the discovery routes must describe it.
fn places() -> Value {
    json!({
        "name": "places",
        "fields": { "name": "string", "category": "string", "rating": "number",
                    "price": "number", "location": "geo_point" },
        "read_path": "/v1/places/{id}",
        "indexes": [
            { "name": "nearby", "kind": "geo", "path": "/v1/places/near/nearby",
              "params": ["lon", "lat", "radius_m", "limit"], "key_vars": [] },
            { "name": "rating", "kind": "sorted_set", "path": "/v1/places/top/rating",
              "score": "rating", "params": ["limit", "offset"], "key_vars": [] },
            { "name": "rating_by_category", "kind": "sorted_set",
              "path": "/v1/places/top/rating_by_category", "score": "rating",
              "params": ["limit", "offset", "category"], "key_vars": ["category"] }
        ],
        "hashes": [ { "name": "fields", "path": "/v1/places/{id}/fields",
                      "fields": ["name", "category", "rating", "price"] } ]
    })
}

#[tokio::test]
async fn the_pipeline_is_described_with_its_read_routes() {
    let app = spawn_app().await;

    let list = app.get("/v1/collections").await;
    assert_eq!(list.status(), 200);
    let list: Value = list.json().await.unwrap();
    assert_eq!(list, json!({ "collections": [places()] }));

    let one = app.get("/v1/collections/places").await;
    assert_eq!(one.status(), 200);
    assert_eq!(one.json::<Value>().await.unwrap(), places());
}

#[tokio::test]
async fn an_unknown_collection_is_404_collection_not_found() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.get("/v1/collections/nope").await).await;
    assert_eq!((status, code.as_str()), (404, "collection_not_found"));
}

/// A client that only reads the description can call every route in it: each index answers 200
/// with the parameters listed (key variables filled in), and the read and hash paths serve the
/// entity.
#[tokio::test]
async fn every_listed_route_answers() {
    let app = spawn_app().await;
    app.start_worker();
    assert_eq!(
        app.put("/v1/places/c1", &place("Cafe", "cafe", 4.5))
            .await
            .status(),
        201
    );
    let description: Value = app
        .get("/v1/collections/places")
        .await
        .json()
        .await
        .unwrap();
    let value_of = |param: &str| match param {
        "lon" => "-9.1393",
        "lat" => "38.7223",
        "radius_m" => "1000",
        "limit" => "5",
        "offset" => "0",
        "category" => "cafe",
        other => panic!("a parameter this test does not know: {other}"),
    };
    for index in description["indexes"].as_array().unwrap() {
        let query: Vec<String> = index["params"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let p = p.as_str().unwrap();
                format!("{p}={}", value_of(p))
            })
            .collect();
        let url = format!("{}?{}", index["path"].as_str().unwrap(), query.join("&"));
        let response = app.get(&url).await;
        assert_eq!(response.status(), 200, "{url}");
        let body: Value = response.json().await.unwrap();
        assert!(body["items"].is_array(), "{url}: {body}");
    }
    let read = description["read_path"]
        .as_str()
        .unwrap()
        .replace("{id}", "c1");
    assert_eq!(app.get(&read).await.status(), 200, "{read}");
    for hash in description["hashes"].as_array().unwrap() {
        let path = hash["path"].as_str().unwrap().replace("{id}", "c1");
        let body: Value = app.get(&path).await.json().await.unwrap();
        for field in hash["fields"].as_array().unwrap() {
            assert!(
                body.get(field.as_str().unwrap()).is_some(),
                "{path}: {body}"
            );
        }
    }
}
