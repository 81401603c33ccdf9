//! Every error status of the write API, over HTTP, each a JSON `{ code, message }`.

use std::time::Duration;

use serde_json::json;

use crate::helpers::{error_of, place, spawn_app, spawn_app_with};

#[tokio::test]
async fn bad_ids_are_400() {
    let app = spawn_app().await;
    let too_long = "a".repeat(129);
    for id in ["a.b", "sp%20ace", "%C3%A9", too_long.as_str()] {
        let response = app
            .put(&format!("/v1/places/{id}"), &place("x", "cafe", 4.0))
            .await;
        let (status, code, _) = error_of(response).await;
        assert_eq!((status, code.as_str()), (400, "invalid_id"), "id {id}");
    }
    let ok = "a".repeat(128);
    let response = app
        .put(&format!("/v1/places/{ok}"), &place("x", "cafe", 4.0))
        .await;
    assert_eq!(response.status(), 201);
}

#[tokio::test]
async fn unknown_collection_and_route_are_404_wrong_method_405() {
    let app = spawn_app().await;
    let (status, code, _) = error_of(app.put("/v1/nope/p1", &place("x", "cafe", 4.0)).await).await;
    assert_eq!((status, code.as_str()), (404, "collection_not_found"));
    let response = app
        .client
        .get(app.url("/v2/whatever"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (404, "route_not_found"));
    let response = app
        .client
        .post(app.url("/v1/places/p1"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"));
}

#[tokio::test]
async fn bodies_over_one_mebibyte_are_413() {
    let app = spawn_app().await;
    let mut doc = place("x", "cafe", 4.0);
    doc["blob"] = json!("x".repeat(1024 * 1024));
    let (status, code, _) = error_of(app.put("/v1/places/big", &doc).await).await;
    assert_eq!((status, code.as_str()), (413, "payload_too_large"));
    // Just under the limit is accepted.
    doc["blob"] = json!("x".repeat(1024 * 1024 - 1024));
    assert_eq!(app.put("/v1/places/big", &doc).await.status(), 201);
}

/// A body sent in chunks, without `Content-Length`, is cut off at the limit too.
#[tokio::test]
async fn chunked_bodies_over_the_limit_are_413() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let app = spawn_app_with(|s| s.limits.max_body_bytes = 4_096).await;
    let addr = app.base.trim_start_matches("http://").to_owned();
    let send = |chunks: Vec<String>| {
        let addr = addr.clone();
        async move {
            let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
            let mut request = String::from(
                "PUT /v1/places/chunked HTTP/1.1\r\nhost: test\r\ncontent-type: application/json\r\n\
                 transfer-encoding: chunked\r\nconnection: close\r\n\r\n",
            );
            for chunk in chunks {
                request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
            }
            request.push_str("0\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).await.unwrap();
            answer
        }
    };
    let over = send(vec![
        format!(
            r#"{{"name":"x","category":"cafe","rating":4,"blob":"{}"#,
            "x".repeat(3_000)
        ),
        format!(r#"{}"}}"#, "x".repeat(3_000)),
    ])
    .await;
    assert!(over.starts_with("HTTP/1.1 413"), "{over}");
    assert!(over.contains("payload_too_large"), "{over}");
    let mut doc = place("chunked", "cafe", 4.0);
    doc["blob"] = json!("x".repeat(1_000));
    let under = send(vec![doc.to_string()]).await;
    assert!(under.starts_with("HTTP/1.1 201"), "{under}");
}

/// Answers decided from the request's head alone (an unknown collection, a media type that is
/// not JSON, a missing API key) wait for the body and drop it, so the connection stays usable:
/// the next request on it is answered. (hyper closes a connection after an answer given while the
/// body is still on its way, and a client reusing it then fails its next request.)
#[tokio::test]
async fn answers_given_before_a_late_body_keep_the_connection_usable() {
    use cacheflow_shared::security::{hash_key, ApiKeys};

    let open = spawn_app().await;
    let keyed = spawn_app_with(|s| {
        s.api_keys = ApiKeys::parse(&format!("writer:{}", hash_key("late-key"))).unwrap()
    })
    .await;
    let body = place("late", "cafe", 4.0).to_string();
    for (app, target, status) in [
        (&open, "/v1/nowhere/late", "404"),
        (&open, "/v1/places/late", "415"),
        (&keyed, "/v1/places/late", "401"),
    ] {
        let answers = late_body_then_next_request(&app.base, target, &body).await;
        assert!(
            answers.starts_with(&format!("HTTP/1.1 {status}")),
            "{target}: {answers}"
        );
        let first = answers.split("\r\n\r\n").next().unwrap_or("");
        assert!(!first.contains("connection: close"), "{target}: {answers}");
        assert!(
            answers.contains("HTTP/1.1 200 OK"),
            "{target}: the next request on the connection was not answered: {answers}"
        );
    }
}

/// On one connection: a `PUT` whose body follows its head 200 ms later, then a `GET /healthz`;
/// everything the server answered until it closed the connection.
async fn late_body_then_next_request(base: &str, target: &str, body: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let addr = base.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "PUT {target} HTTP/1.1\r\nhost: test\r\ncontent-type: text/plain\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    // Once the server has closed the connection these writes may fail: what it answered is what
    // the test looks at.
    let _ = stream.write_all(body.as_bytes()).await;
    let _ = stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n")
        .await;
    let mut answers = Vec::new();
    let mut buf = [0_u8; 4096];
    while let Ok(Ok(n @ 1..)) =
        tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await
    {
        answers.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&answers).into_owned()
}

#[tokio::test]
async fn writes_whose_event_the_stream_cannot_take_are_refused_before_the_commit() {
    let app = spawn_app_with(|s| s.limits.max_event_bytes = 4_096).await;
    let mut doc = place("x", "cafe", 4.0);
    doc["blob"] = json!("x".repeat(4_000));
    let (status, code, body) = error_of(app.put("/v1/places/big", &doc).await).await;
    assert_eq!((status, code.as_str()), (413, "event_too_large"), "{body}");

    doc["blob"] = json!("x".repeat(2_000));
    assert_eq!(app.put("/v1/places/big", &doc).await.status(), 201);
    // A patch growing the document past the limit is refused too, and leaves it as it was.
    let grown = app
        .client
        .patch(app.url("/v1/places/big"))
        .header("content-type", "application/merge-patch+json")
        .body(json!({"more": "y".repeat(2_500)}).to_string())
        .send()
        .await
        .unwrap();
    let (status, code, body) = error_of(grown).await;
    assert_eq!((status, code.as_str()), (422, "invalid_document"), "{body}");
    assert_eq!(body["field"], "document");
    let kept: serde_json::Value = app
        .client
        .get(app.url("/v1/places/big"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(kept["version"], 1);
    // Only the accepted write was committed: one event, version 1.
    app.eventually(
        "the accepted write's event",
        Duration::from_secs(30),
        || async { !app.stream_events().await.is_empty() },
    )
    .await;
    let events = app.stream_events().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].0.version, 1);
}

#[tokio::test]
async fn malformed_bodies_are_400_and_wrong_media_type_415() {
    let app = spawn_app().await;
    let send = |body: &'static str, content_type: &'static str| {
        app.client
            .put(app.url("/v1/places/p1"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let (status, code, _) = error_of(send("{\"name\": ", "application/json").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_json"));
    let (status, code, _) = error_of(send("[1, 2]", "application/json").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (400, "invalid_body"));
    let (status, code, _) = error_of(send("name=x", "text/plain").await.unwrap()).await;
    assert_eq!((status, code.as_str()), (415, "unsupported_media_type"));
}

#[tokio::test]
async fn documents_breaking_projections_are_422_naming_the_field() {
    let app = spawn_app().await;
    let cases = [
        (
            "location",
            json!({"type": "Point", "coordinates": [200.0, 10.0]}),
        ),
        (
            "location",
            json!({"type": "Point", "coordinates": [10.0, 85.06]}),
        ),
        (
            "location",
            json!({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}),
        ),
        ("location", json!([10.0, 20.0])),
        ("rating", json!("five")),
        ("category", json!("two words")),
        ("name", json!(12)),
    ];
    for (field, value) in cases {
        let mut doc = place("x", "cafe", 4.0);
        doc[field] = value.clone();
        let (status, code, body) = error_of(app.put("/v1/places/p1", &doc).await).await;
        assert_eq!(
            (status, code.as_str()),
            (422, "invalid_document"),
            "{field} = {value}"
        );
        assert_eq!(body["field"], field, "{body}");
    }
    // A field a template or score needs cannot be missing.
    let mut doc = place("x", "cafe", 4.0);
    doc.as_object_mut().unwrap().remove("category");
    let (status, _, body) = error_of(app.put("/v1/places/p1", &doc).await).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("category")));
}

#[tokio::test]
async fn a_body_id_different_from_the_path_is_422() {
    let app = spawn_app().await;
    let mut doc = place("x", "cafe", 4.0);
    doc["id"] = json!("other");
    let (status, code, body) = error_of(app.put("/v1/places/p1", &doc).await).await;
    assert_eq!(
        (status, code.as_str(), body["field"].as_str()),
        (422, "id_mismatch", Some("id"))
    );
    doc["id"] = json!("p1");
    assert_eq!(app.put("/v1/places/p1", &doc).await.status(), 201);
    let response = app
        .client
        .patch(app.url("/v1/places/p1"))
        .json(&json!({"id": "p2"}))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (422, "id_mismatch"));
}

#[tokio::test]
async fn preconditions_404s_and_invalid_patches() {
    let app = spawn_app().await;
    let patch = |body: serde_json::Value| {
        app.client
            .patch(app.url("/v1/places/p1"))
            .header("content-type", "application/merge-patch+json")
            .json(&body)
    };
    let (status, code, _) = error_of(patch(json!({"rating": 3})).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));
    let response = app
        .client
        .delete(app.url("/v1/places/p1"))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (404, "not_found"));

    assert_eq!(
        app.put("/v1/places/p1", &place("x", "cafe", 4.0))
            .await
            .status(),
        201
    );
    let stale = app
        .client
        .put(app.url("/v1/places/p1"))
        .header("if-match", "\"7\"")
        .json(&place("y", "cafe", 4.0))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(stale).await;
    assert_eq!((status, code.as_str()), (412, "precondition_failed"));
    let bad = app
        .client
        .delete(app.url("/v1/places/p1"))
        .header("if-match", "seven")
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(bad).await;
    assert_eq!((status, code.as_str()), (400, "invalid_precondition"));
    let create_only = app
        .client
        .put(app.url("/v1/places/p1"))
        .header("if-none-match", "*")
        .json(&place("y", "cafe", 4.0))
        .send()
        .await
        .unwrap();
    let (status, code, _) = error_of(create_only).await;
    assert_eq!((status, code.as_str()), (412, "precondition_failed"));

    // The merged document is validated too.
    let (status, code, body) =
        error_of(patch(json!({"rating": "high"})).send().await.unwrap()).await;
    assert_eq!(
        (status, code.as_str(), body["field"].as_str()),
        (422, "invalid_document", Some("rating"))
    );
    let (status, _, body) = error_of(patch(json!({"location": null})).send().await.unwrap()).await;
    assert_eq!((status, body["field"].as_str()), (422, Some("location")));
}

#[tokio::test]
async fn a_locked_store_is_503_with_retry_after() {
    let app = spawn_app_with(|s| s.store.op_timeout_ms = 300).await;
    assert_eq!(
        app.put("/v1/places/p1", &place("x", "cafe", 4.0))
            .await
            .status(),
        201
    );
    // Another process holding SQLite's write lock is what a stuck or overloaded store looks like.
    let db = app.dir.path().join("store.db");
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        std::thread::sleep(Duration::from_millis(1_500));
        conn.execute_batch("COMMIT").unwrap();
    });
    tokio::time::sleep(Duration::from_millis(100)).await;
    let response = app.put("/v1/places/p1", &place("y", "cafe", 4.0)).await;
    assert_eq!(
        response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap()),
        Some("1")
    );
    let (status, code, _) = error_of(response).await;
    assert_eq!((status, code.as_str()), (503, "store_unavailable"));
    locker.join().unwrap();
    // Once the lock is gone, writes succeed again.
    assert_eq!(
        app.put("/v1/places/p1", &place("y", "cafe", 4.0))
            .await
            .status(),
        200
    );
}
