//! The happy paths of PUT, PATCH and DELETE: statuses, ETags, versions and stored documents.

use serde_json::{json, Value};

use crate::helpers::{place, spawn_app};

fn etag(response: &reqwest::Response) -> String {
    response.headers()["etag"].to_str().unwrap().to_owned()
}

#[tokio::test]
async fn put_patch_delete_recreate_keep_versions_rising() {
    let app = spawn_app().await;
    let created = app
        .put("/v1/places/p1", &place("Cafe A", "cafe", 4.5))
        .await;
    assert_eq!(created.status(), 201);
    assert_eq!(etag(&created), "\"1\"");
    assert_eq!(created.headers()["location"], "/v1/places/p1");
    let body: Value = created.json().await.unwrap();
    assert_eq!(body["id"], "p1");
    assert_eq!(body["version"], 1);
    assert_eq!(body["name"], "Cafe A");

    // The client cannot set the server-owned version.
    let mut doc = place("Cafe B", "cafe", 4.0);
    doc["version"] = json!(99);
    let replaced = app.put("/v1/places/p1", &doc).await;
    assert_eq!(replaced.status(), 200);
    assert_eq!(etag(&replaced), "\"2\"");
    assert_eq!(replaced.json::<Value>().await.unwrap()["version"], 2);

    let patched = app
        .client
        .patch(app.url("/v1/places/p1"))
        .header("content-type", "application/merge-patch+json")
        .header("if-match", "\"2\"")
        .json(&json!({"rating": 3.5, "price": null, "tags": ["wifi"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(etag(&patched), "\"3\"");
    let body: Value = patched.json().await.unwrap();
    assert_eq!(body["rating"], 3.5);
    assert!(body.get("price").is_none(), "null removes a field: {body}");
    assert_eq!(body["tags"], json!(["wifi"]));
    assert_eq!(body["name"], "Cafe B");

    let deleted = app
        .client
        .delete(app.url("/v1/places/p1"))
        .header("if-match", "\"3\"")
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(etag(&deleted), "\"4\"");

    // Deleted and re-created: the version continues above the tombstone.
    let recreated = app.put("/v1/places/p1", &place("Cafe C", "bar", 4.0)).await;
    assert_eq!(recreated.status(), 201);
    assert_eq!(etag(&recreated), "\"5\"");
}

#[tokio::test]
async fn conditional_writes_succeed_when_they_match() {
    let app = spawn_app().await;
    let created = app
        .client
        .put(app.url("/v1/places/p2"))
        .header("if-none-match", "*")
        .json(&place("x", "cafe", 4.0))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let replaced = app
        .client
        .put(app.url("/v1/places/p2"))
        .header("if-match", "*")
        .json(&place("y", "cafe", 4.0))
        .send()
        .await
        .unwrap();
    assert_eq!(replaced.status(), 200);
    let absent = app
        .client
        .put(app.url("/v1/places/p3"))
        .header("if-match", "*")
        .json(&place("y", "cafe", 4.0))
        .send()
        .await
        .unwrap();
    assert_eq!(absent.status(), 412);
}

#[tokio::test]
async fn healthz_is_alive() {
    let app = spawn_app().await;
    let response = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-request-id"));
    assert_eq!(response.json::<Value>().await.unwrap()["status"], "ok");
}

#[tokio::test]
async fn every_answer_carries_the_request_id_the_clients_or_a_new_one() {
    let app = spawn_app().await;
    let echoed = app
        .client
        .get(app.url("/v1/places/p1"))
        .header("x-request-id", "client-chosen-7")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "client-chosen-7");
    let mut assigned = Vec::new();
    for path in ["/no/such/route", "/v1/places/p1", "/v1/places/p1"] {
        let response = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 404, "{path}");
        let id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(id.len(), 33, "{id}");
        assigned.push(id);
    }
    assigned.dedup();
    assert_eq!(assigned.len(), 3, "ids must differ: {assigned:?}");
}
