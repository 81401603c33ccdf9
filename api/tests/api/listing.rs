//! `GET /v1/{collection}?limit=&cursor=`: the collection page by page from the store, in id
//! order, with a cursor that survives writes.

use serde_json::Value;

use crate::helpers::{error_of, item_ids, place, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_is_listed_page_by_page_in_id_order() {
    let app = spawn_app().await;
    for id in ["p4", "p2", "p5", "p1", "p3"] {
        assert_eq!(
            app.put(&format!("/v1/places/{id}"), &place(id, "cafe", 3.0))
                .await
                .status(),
            201
        );
    }
    let response = app
        .client
        .delete(app.url("/v1/places/p3"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);

    let first: Value = app.get("/v1/places?limit=2").await.json().await.unwrap();
    assert_eq!(item_ids(&first), ["p1", "p2"]);
    assert_eq!(first["items"][0]["name"], "p1", "whole documents");
    assert_eq!(first["items"][0]["version"], 1);
    let cursor = first["next_cursor"]
        .as_str()
        .expect("a next page")
        .to_owned();
    // A document created behind the cursor does not shift the next page.
    assert_eq!(
        app.put("/v1/places/p0", &place("p0", "cafe", 1.0))
            .await
            .status(),
        201
    );
    let second: Value = app
        .get(&format!("/v1/places?limit=2&cursor={cursor}"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        item_ids(&second),
        ["p4", "p5"],
        "the deleted p3 is left out"
    );
    assert!(second["next_cursor"].is_null(), "the last page: {second}");

    let all: Value = app.get("/v1/places").await.json().await.unwrap();
    assert_eq!(item_ids(&all), ["p0", "p1", "p2", "p4", "p5"]);
    assert!(
        all["next_cursor"].is_null(),
        "the default page holds them all"
    );

    for (path, code) in [
        ("/v1/places?limit=0", "invalid_query"),
        ("/v1/places?limit=1001", "invalid_query"),
        ("/v1/places?cursor=zz", "invalid_cursor"),
        ("/v1/nowhere?limit=1", "collection_not_found"),
    ] {
        let (_, got, _) = error_of(app.get(path).await).await;
        assert_eq!(got, code, "{path}");
    }
}
