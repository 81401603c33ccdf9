//! Each write's event reaches the stream with the right subject, version, document and Msg-Id.

use std::time::Duration;

use cacheflow_shared::event::Op;
use serde_json::json;

use crate::helpers::{place, spawn_app};

#[tokio::test]
async fn writes_publish_their_events_in_version_order() {
    let app = spawn_app().await;
    assert_eq!(
        app.put("/v1/places/p1", &place("Cafe A", "cafe", 4.5))
            .await
            .status(),
        201
    );
    let patched = app
        .client
        .patch(app.url("/v1/places/p1"))
        .json(&json!({"rating": 2.0}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(
        app.client
            .delete(app.url("/v1/places/p1"))
            .send()
            .await
            .unwrap()
            .status(),
        204
    );

    app.wait_for_stream_count(3, Duration::from_secs(30)).await;
    let events = app.stream_events().await;
    let versions: Vec<(u64, Op)> = events.iter().map(|(e, _)| (e.version, e.op)).collect();
    assert_eq!(
        versions,
        vec![(1, Op::Upsert), (2, Op::Upsert), (3, Op::Delete)]
    );
    for (event, msg_id) in &events {
        assert_eq!(event.collection, "places");
        assert_eq!(event.id, "p1");
        assert_eq!(*msg_id, event.event_id.to_string());
    }
    let first = events[0].0.document.as_ref().unwrap();
    assert_eq!(first["name"], "Cafe A");
    assert_eq!(first["version"], 1);
    assert_eq!(first["id"], "p1");
    assert_eq!(events[1].0.document.as_ref().unwrap()["rating"], 2.0);
    assert!(events[2].0.document.is_none());

    // The subject is <prefix>.<collection>.<id>.
    let js = app.jetstream().await;
    let stream = js.get_stream(&app.settings.stream.name).await.unwrap();
    let subject = format!("{}.places.p1", app.settings.stream.subject_prefix);
    let last = stream
        .get_last_raw_message_by_subject(&subject)
        .await
        .unwrap();
    assert_eq!(last.subject.as_str(), subject);
}

#[tokio::test]
async fn the_default_stream_is_a_compacted_log() {
    let app = crate::helpers::spawn_app_with(|s| s.stream.max_msgs_per_subject = 1).await;
    for rating in [1.0, 2.0, 3.0] {
        app.put("/v1/places/p1", &place("x", "cafe", rating)).await;
    }
    app.put("/v1/places/p2", &place("y", "bar", 5.0)).await;
    // Wait for the outbox to drain, then the stream keeps only the latest event per entity.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let events = app.stream_events().await;
        let latest_p1 = events
            .iter()
            .find(|(e, _)| e.id == "p1")
            .map(|(e, _)| e.version);
        if events.len() == 2 && latest_p1 == Some(3) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "stream holds {events:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let js = app.jetstream().await;
    let mut stream = js.get_stream(&app.settings.stream.name).await.unwrap();
    let config = stream.info().await.unwrap().config.clone();
    assert_eq!(config.max_messages_per_subject, 1);
    assert_eq!(
        config.subjects,
        vec![format!("{}.>", app.settings.stream.subject_prefix)]
    );
}
