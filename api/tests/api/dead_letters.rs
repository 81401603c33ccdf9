//! `/v1/admin/dead-letters` and `/v1/admin/generations` over a real pipeline (API, worker,
//! NATS, Redis): dead letters made by the worker are listed page by page, shown, redriven back
//! through the worker and dropped.

use std::time::Duration;

use redis::AsyncCommands;
use serde_json::Value;

use crate::helpers::{error_of, place, spawn_app_with, TestApp};

async fn ok_json(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

async fn dead_letters(app: &TestApp) -> Vec<Value> {
    ok_json(app, "/v1/admin/dead-letters").await["items"]
        .as_array()
        .unwrap()
        .clone()
}

fn with_id<'a>(items: &'a [Value], id: &str) -> &'a Value {
    items
        .iter()
        .find(|item| item["id"] == id)
        .unwrap_or_else(|| panic!("no dead letter of {id} in {items:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_shown_redriven_and_dropped() {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    let mut redis = app.redis().await;
    // Someone else's string where the `blocked` category index must go: the worker dead-letters
    // every event of that category (WRONGTYPE) until it is removed.
    let blocker = app.key("places:rating:blocked");
    let _: () = redis.set(&blocker, "not a set").await.unwrap();
    app.start_worker();
    for id in ["p1", "p3"] {
        let response = app
            .put(&format!("/v1/places/{id}"), &place(id, "blocked", 4.0))
            .await;
        assert_eq!(response.status(), 201);
    }
    let prefix = &app.settings.stream.subject_prefix;
    app.jetstream()
        .await
        .publish(format!("{prefix}.places.bad"), "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let app_ref = &app;
    app.eventually(
        "three dead letters",
        Duration::from_secs(30),
        move || async move { dead_letters(app_ref).await.len() == 3 },
    )
    .await;

    let items = dead_letters(&app).await;
    let p1 = with_id(&items, "p1");
    assert_eq!(p1["collection"], "places");
    assert_eq!(p1["version"], 1);
    assert_eq!(p1["op"], "upsert");
    assert_eq!(p1["parked"], false);
    assert_eq!(p1["original_subject"], format!("{prefix}.places.p1"));
    assert!(p1["reason"].as_str().unwrap().contains("WRONGTYPE"), "{p1}");
    assert!(p1["original_seq"].as_u64().unwrap() > 0);
    assert!(
        p1["event"].is_null() && p1.get("event").is_none(),
        "list items carry no event"
    );
    let garbage = items
        .iter()
        .find(|i| i["id"].is_null())
        .expect("the undecodable one");
    assert!(garbage["version"].is_null() && garbage["op"].is_null());
    assert_eq!(
        garbage["collection"], "unknown",
        "its collection cannot be read"
    );
    let seqs: Vec<u64> = items.iter().map(|i| i["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );

    // Pages of one, then the end.
    let mut cursor: Option<String> = None;
    let mut paged = Vec::new();
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/admin/dead-letters?limit=1&cursor={c}"),
            None => "/v1/admin/dead-letters?limit=1".to_owned(),
        };
        let page = ok_json(&app, &path).await;
        assert!(page["items"].as_array().unwrap().len() <= 1);
        paged.extend(
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["seq"].as_u64().unwrap()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(paged, seqs, "paging sees each dead letter once, in order");
    let places = ok_json(&app, "/v1/admin/dead-letters?collection=places").await;
    assert_eq!(places["items"].as_array().unwrap().len(), 2, "{places}");
    for (path, code) in [
        ("/v1/admin/dead-letters?cursor=x", "invalid_cursor"),
        ("/v1/admin/dead-letters?limit=0", "invalid_query"),
        ("/v1/admin/dead-letters?collection=nope", "invalid_query"),
    ] {
        let (status, got, _) = error_of(app.get(path).await).await;
        assert_eq!((status, got.as_str()), (400, code), "{path}");
    }

    // Show: the event JSON, or base64 when the payload is not JSON.
    let shown = ok_json(&app, &format!("/v1/admin/dead-letters/{}", p1["seq"])).await;
    assert_eq!(shown["event"]["id"], "p1", "{shown}");
    assert_eq!(shown["event"]["document"]["category"], "blocked");
    let shown = ok_json(&app, &format!("/v1/admin/dead-letters/{}", garbage["seq"])).await;
    assert!(shown["event"].is_null(), "{shown}");
    assert_eq!(shown["payload_base64"], "bm90IGFuIGV2ZW50");
    // An event's sequence is not a dead letter's.
    for seq in [p1["original_seq"].as_u64().unwrap(), 999_999] {
        let (status, code, _) =
            error_of(app.get(&format!("/v1/admin/dead-letters/{seq}")).await).await;
        assert_eq!((status, code.as_str()), (404, "dead_letter_not_found"));
    }

    // p3 changed meanwhile: its newer event supersedes the dead letter.
    let response = app.put("/v1/places/p3", &place("p3", "cafe", 3.0)).await;
    assert_eq!(response.status(), 200);
    let cafe = app.key("places:rating:cafe");
    app.eventually("p3 v2 applied", Duration::from_secs(30), || {
        let mut redis = redis.clone();
        let cafe = cafe.clone();
        async move {
            redis
                .zscore::<_, _, Option<f64>>(&cafe, "p3")
                .await
                .unwrap()
                == Some(3.0)
        }
    })
    .await;
    let p3 = with_id(&items, "p3");
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/dead-letters/{}/redrive", p3["seq"])))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (409, "dead_letter_superseded"));

    // The blocker gone, a redrive applies p1.
    let _: () = redis.del(&blocker).await.unwrap();
    let response = app
        .client
        .post(app.url(&format!("/v1/admin/dead-letters/{}/redrive", p1["seq"])))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body,
        serde_json::json!({ "seq": p1["seq"], "redriven": true })
    );
    app.eventually(
        "p1 applied after the redrive",
        Duration::from_secs(30),
        || {
            let mut redis = redis.clone();
            let blocker = blocker.clone();
            async move {
                redis
                    .zscore::<_, _, Option<f64>>(&blocker, "p1")
                    .await
                    .unwrap()
                    == Some(4.0)
            }
        },
    )
    .await;

    // Drop the other two; dropping again is 404.
    for seq in [&p3["seq"], &garbage["seq"]] {
        let url = app.url(&format!("/v1/admin/dead-letters/{seq}"));
        let response = app.client.delete(&url).send().await.unwrap();
        assert_eq!(response.status(), 204);
        let (status, code, _) = error_of(app.client.delete(&url).send().await.unwrap()).await;
        assert_eq!((status, code.as_str()), (404, "dead_letter_not_found"));
    }
    assert!(dead_letters(&app).await.is_empty());
    let status = ok_json(&app, "/v1/admin/status").await;
    assert_eq!(status["dead_letters"], 0, "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_show_the_active_written_and_building_ones() {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    let body = ok_json(&app, "/v1/admin/generations").await;
    assert_eq!(
        body["collections"][0],
        serde_json::json!({ "collection": "places", "active": "", "writes": [], "building": [] })
    );
    let mut redis = app.redis().await;
    let _: () = redis
        .set(app.key("cacheflow:gen:places"), "gen:places:2:")
        .await
        .unwrap();
    let _: () = redis
        .set(
            app.key("cacheflow:gen:places:writes"),
            r#"["gen:places:3:","gen:places:1:"]"#,
        )
        .await
        .unwrap();
    let body = ok_json(&app, "/v1/admin/generations").await;
    let places = &body["collections"][0];
    assert_eq!(places["active"], "gen:places:2:");
    assert_eq!(
        places["writes"],
        serde_json::json!(["gen:places:3:", "gen:places:1:"])
    );
    assert_eq!(places["building"], serde_json::json!(["gen:places:3:"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letter_and_generation_routes_are_off_unless_enabled() {
    let app = spawn_app_with(|_| {}).await;
    for path in [
        "/v1/admin/dead-letters",
        "/v1/admin/dead-letters/1",
        "/v1/admin/generations",
    ] {
        let (status, code, _) = error_of(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (404, "admin_disabled"), "{path}");
    }
}
