//! NATS stopped while writes go on: every write is still acknowledged (the outbox holds its
//! event), and after NATS returns every event is on the stream exactly once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Mutex;

use crate::helpers::{place, spawn_app};

#[tokio::test]
async fn events_written_during_an_outage_arrive_exactly_once() {
    let mut app = spawn_app().await;
    let acked: Arc<Mutex<HashSet<(String, u64)>>> = Arc::default();

    let (client, base) = (app.client.clone(), app.base.clone());
    let write = |i: usize| {
        let client = client.clone();
        let url = format!("{base}/v1/places/w{}", i % 40);
        let acked = acked.clone();
        async move {
            let response = client
                .put(url)
                .json(&place("x", "cafe", (i % 5) as f64))
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "write {i} got {}",
                response.status()
            );
            let version: u64 = response.headers()["etag"]
                .to_str()
                .unwrap()
                .trim_matches('"')
                .parse()
                .unwrap();
            acked.lock().await.insert((format!("w{}", i % 40), version));
        }
    };
    for i in 0..60 {
        write(i).await;
    }
    app.nats.stop();
    for i in 60..160 {
        write(i).await;
    }
    // The writes above were acknowledged while NATS was down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.nats.restart();
    for i in 160..200 {
        write(i).await;
    }

    app.wait_for_stream_count(200, Duration::from_secs(30))
        .await;
    let events = app.stream_events().await;
    let ids: HashSet<&str> = events.iter().map(|(_, msg_id)| msg_id.as_str()).collect();
    assert_eq!(
        ids.len(),
        events.len(),
        "a Msg-Id appears twice on the stream"
    );
    let on_stream: HashSet<(String, u64)> = events
        .iter()
        .map(|(e, _)| (e.id.clone(), e.version))
        .collect();
    assert_eq!(
        on_stream,
        *acked.lock().await,
        "the stream differs from the acknowledged writes"
    );
    // Per entity, the stream holds the versions in order (the relay never reorders an entity).
    for id in (0..40).map(|i| format!("w{i}")) {
        let versions: Vec<u64> = events
            .iter()
            .filter(|(e, _)| e.id == id)
            .map(|(e, _)| e.version)
            .collect();
        assert!(
            versions.windows(2).all(|w| w[0] < w[1]),
            "{id}: {versions:?}"
        );
    }
    app.stop().await.unwrap();
}
