//! The store unavailable for writes (another connection holds an exclusive SQLite lock) for a few
//! seconds: writes answer `503 store_unavailable` with `Retry-After`, cache hits keep answering
//! `200` with `X-Cache: hit` at cache speed, and once the lock is gone writes succeed again.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{json, Value};

use crate::sqlite_lock::ExclusiveLock;
use crate::stack::{eventually, Stack, DEADLINE};
use crate::workload::{Class, Workload};
use crate::{exclusive, AFTERMATH, WARM_UP};

const LOCKED_FOR: Duration = Duration::from_secs(4);
/// Entities outside the workload's keys, cached before the lock.
const HOT: [&str; 3] = ["hot0", "hot1", "hot2"];
/// A cache hit takes milliseconds; one that waited for the locked store would take the store's
/// 2 s operation timeout.
const HIT_WITHIN: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_store_refuses_writes_and_still_serves_cache_hits() {
    let _one = exclusive().await;
    let stack = Stack::start().await;
    for id in HOT {
        let response = put(&stack, id).await;
        assert_eq!(response.status(), StatusCode::CREATED);
    }
    for id in HOT {
        eventually("the hot entities to be cached", DEADLINE, || async {
            let response = get(&stack, id).await;
            (x_cache(&response) == "hit").then_some(())
        })
        .await;
    }
    let workload = Workload::start(&stack.base);
    tokio::time::sleep(WARM_UP).await;

    workload.enter("store locked").await;
    let lock = ExclusiveLock::take(&stack.db()).await;
    let locked_at = Instant::now();
    let refused = put(&stack, "probe").await;
    let retry_after = refused
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = refused.status();
    let body: Value = refused.json().await.expect("a JSON error body");
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["code"], "store_unavailable", "{body}");
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "Retry-After: {retry_after:?}"
    );
    while locked_at.elapsed() < LOCKED_FOR {
        for id in HOT {
            let started = Instant::now();
            let response = get(&stack, id).await;
            let took = started.elapsed();
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "{id} while the store is locked"
            );
            assert_eq!(x_cache(&response), "hit", "{id} while the store is locked");
            assert!(
                took < HIT_WITHIN,
                "a cache hit took {took:?} while the store was locked: the hit path waits for \
                 the store"
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    lock.release();

    workload.enter("store released").await;
    let accepted = eventually("a write to succeed again", DEADLINE, || async {
        let response = put(&stack, "probe").await;
        let etag = response.headers().get("etag").cloned();
        response
            .status()
            .is_success()
            .then_some((response.status(), etag))
    })
    .await;
    // The refused probe was not applied behind the client's back: this is the entity's first
    // version.
    assert_eq!(
        (
            accepted.0,
            accepted.1.as_ref().and_then(|v| v.to_str().ok())
        ),
        (StatusCode::CREATED, Some("\"1\""))
    );
    workload.enter("store back").await;
    tokio::time::sleep(AFTERMATH).await;

    let report = stack.settle_and_check(workload).await;
    assert!(
        report.refusals("store locked", "store_unavailable") > 0,
        "no workload write was refused while the store was locked: {report}"
    );
    let failed = [Class::Refused, Class::NotSent, Class::Unknown];
    for phase in ["before", "store back"] {
        assert_eq!(report.count_any(phase, &failed), 0, "{phase}: {report}");
    }
    eprintln!("store_unavailable: {:?}", stack.elapsed());
}

async fn put(stack: &Stack, id: &str) -> reqwest::Response {
    let document = json!({
        "name": id, "category": "cafe", "rating": 4.0, "price": 2,
        "location": { "type": "Point", "coordinates": [-9.14, 38.72] },
    });
    stack
        .client()
        .put(format!("{}/v1/places/{id}", stack.base))
        .json(&document)
        .send()
        .await
        .expect("the API answers")
}

async fn get(stack: &Stack, id: &str) -> reqwest::Response {
    stack
        .client()
        .get(format!("{}/v1/places/{id}", stack.base))
        .send()
        .await
        .expect("the API answers")
}

fn x_cache(response: &reqwest::Response) -> &str {
    response
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}
