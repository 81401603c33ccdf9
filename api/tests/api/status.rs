//! `GET /v1/admin/status` and `GET /v1/admin/audit`: what they show of a running pipeline, and
//! that a dependency down makes parts `null`, never the request fail.

use std::time::Duration;

use cacheflow_shared::cache::status::{audit_last_key, AuditSource, AuditSummary, CollectionAudit};
use redis::AsyncCommands;
use serde_json::Value;
use tokio::task::block_in_place;

use crate::helpers::{error_of, place, spawn_app, spawn_app_with, TestApp};

async fn admin_get(app: &TestApp, path: &str) -> Value {
    let response = app.get(path).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_dependencies_backlogs_and_dead_letters() {
    let mut app = spawn_app_with(|s| {
        s.admin_enabled = true;
        s.outbox.heartbeat_interval_ms = 200;
    })
    .await;
    app.start_worker();
    let response = app.put("/v1/places/p1", &place("One", "cafe", 4.0)).await;
    assert_eq!(response.status(), 201);
    // A poison event straight onto the stream: the worker dead-letters it.
    let subject = format!("{}.places.bad", app.settings.stream.subject_prefix);
    app.jetstream()
        .await
        .publish(subject, "not an event".into())
        .await
        .unwrap()
        .await
        .unwrap();

    let app_ref = &app;
    app.eventually(
        "the dead letter counted and a heartbeat measured",
        Duration::from_secs(30),
        move || async move {
            let status = admin_get(app_ref, "/v1/admin/status").await;
            status["dead_letters"] == 1 && status["sync_lag"]["collections"]["places"].is_object()
        },
    )
    .await;
    let status = admin_get(&app, "/v1/admin/status").await;
    for dependency in ["store", "redis", "nats"] {
        assert_eq!(
            status["dependencies"][dependency],
            serde_json::json!({ "ok": true }),
            "{status}"
        );
    }
    assert_eq!(
        status["consumer"]["name"], app.settings.worker.consumer,
        "{status}"
    );
    assert!(status["consumer"]["redelivered"].is_u64(), "{status}");
    let places = &status["sync_lag"]["collections"]["places"];
    assert!(
        places["last_ms"].as_f64().is_some_and(|ms| ms >= 0.0),
        "{status}"
    );
    assert!(
        places["at"].as_str().is_some_and(|at| at.ends_with('Z')),
        "{status}"
    );
    // The heartbeats keep going; the backlogs empty between them.
    let app_ref = &app;
    app.eventually(
        "the outbox and the consumer drained",
        Duration::from_secs(30),
        move || async move {
            let status = admin_get(app_ref, "/v1/admin/status").await;
            status["outbox"]["pending"] == 0
                && status["consumer"]["pending"] == 0
                && status["consumer"]["ack_pending"] == 0
        },
    )
    .await;
    // Heartbeats are not documents: the store holds the one place written.
    assert_eq!(
        app.get("/v1/places/_cacheflow_heartbeat").await.status(),
        404
    );
    assert!(status["parked_entities"].is_null(), "{status}");

    // NATS down: still 200, the parts read from it are null and the reason is named.
    block_in_place(|| app.nats.stop());
    let app_ref = &app;
    app.eventually(
        "the status to show NATS down",
        Duration::from_secs(30),
        move || async move {
            let status = admin_get(app_ref, "/v1/admin/status").await;
            status["dependencies"]["nats"]["ok"] == false
                && status["consumer"].is_null()
                && status["dead_letters"].is_null()
        },
    )
    .await;
    let status = admin_get(&app, "/v1/admin/status").await;
    assert!(
        status["dependencies"]["nats"]["error"].is_string(),
        "{status}"
    );
    assert_eq!(status["dependencies"]["store"]["ok"], true, "{status}");
    block_in_place(|| app.nats.restart());
    app.stop().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_is_null_before_the_first_then_the_last_summary() {
    let app = spawn_app_with(|s| s.admin_enabled = true).await;
    let body = admin_get(&app, "/v1/admin/audit").await;
    assert_eq!(body, serde_json::json!({ "last": null }));

    let places = CollectionAudit {
        checked: 1000,
        missing: 1,
        stale: 1,
        orphaned: 0,
        wrong_index: 0,
        drifted_ids: vec!["p1".into(), "p9".into()],
    };
    let summary = AuditSummary::new(
        AuditSource::Verify,
        "2026-12-07T07:00:00Z".into(),
        [("places".to_owned(), places)].into(),
    );
    let key = audit_last_key(&app.settings.worker.key_prefix);
    let json = serde_json::to_string(&summary).unwrap();
    let _: () = app.redis().await.set(&key, json).await.unwrap();
    let body = admin_get(&app, "/v1/admin/audit").await;
    assert_eq!(body["last"], serde_json::to_value(&summary).unwrap());
    assert_eq!(body["last"]["inconsistency_rate"], 0.002);
    let _: () = app.redis().await.del(&key).await.unwrap();
}

#[tokio::test]
async fn both_are_admin_routes() {
    let app = spawn_app().await;
    for path in ["/v1/admin/status", "/v1/admin/audit"] {
        let (status, code, _) = error_of(app.get(path).await).await;
        assert_eq!((status, code.as_str()), (404, "admin_disabled"), "{path}");
    }
}
