//! Each write's event reaches the stream with the right subject, version, document and Msg-Id.

use std::time::Duration;

use futures::StreamExt;

use cacheflow_shared::event::Op;
use serde_json::json;

use crate::helpers::{msg_id, place, spawn_app};

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

/// Many clients writing the same few entities at once: every write's event reaches the stream
/// exactly once (the relay never resends an event whose removal from the outbox is still under
/// way), each entity's events in version order, and the outbox ends empty.
#[tokio::test]
async fn concurrent_writes_reach_the_stream_once_each_in_version_order() {
    const ENTITIES: usize = 8;
    const WRITES_EACH: usize = 25;
    let app = spawn_app().await;
    // A core subscriber sees every publish on the wire, also resends the stream would drop as
    // duplicates of an earlier Msg-Id.
    let nats = async_nats::connect(app.nats.url()).await.unwrap();
    let prefix = &app.settings.stream.subject_prefix;
    let mut wire = nats.subscribe(format!("{prefix}.places.>")).await.unwrap();
    nats.flush().await.unwrap();

    let writes = (0..WRITES_EACH).flat_map(|n| (0..ENTITIES).map(move |e| (e, n)));
    let statuses: Vec<u16> = futures::stream::iter(writes)
        .map(|(e, n)| {
            let app = &app;
            async move {
                app.put(
                    &format!("/v1/places/e{e}"),
                    &place("x", "cafe", n as f64 / 10.0),
                )
                .await
                .status()
                .as_u16()
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{statuses:?}"
    );

    let total = (ENTITIES * WRITES_EACH) as u64;
    app.wait_for_stream_count(total, Duration::from_secs(60))
        .await;
    let events = app.stream_events().await;
    for e in 0..ENTITIES {
        let id = format!("e{e}");
        let versions: Vec<u64> = events
            .iter()
            .filter(|(event, _)| event.id == id)
            .map(|(event, _)| event.version)
            .collect();
        let expected: Vec<u64> = (1..=WRITES_EACH as u64).collect();
        assert_eq!(versions, expected, "events of {id} in stream order");
    }

    let settings = app.settings.store.clone();
    let store =
        cacheflow_shared::store::sqlite::SqliteStore::open(&app.settings.store_url, &settings)
            .await
            .unwrap();
    app.eventually("the outbox is empty", Duration::from_secs(30), || async {
        use cacheflow_shared::store::DocumentStore;
        store.pending_count().await.unwrap() == 0
    })
    .await;

    let mut on_the_wire = std::collections::HashSet::new();
    let mut resent = 0;
    while let Ok(Some(message)) =
        tokio::time::timeout(Duration::from_millis(500), wire.next()).await
    {
        if !on_the_wire.insert(msg_id(&message)) {
            resent += 1;
        }
    }
    assert_eq!(on_the_wire.len() as u64, total);
    assert_eq!(resent, 0, "events published more than once");
}
