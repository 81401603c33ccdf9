//! Metrics of the API, in their own test binary: the Prometheus recorder is process-global, so
//! counts asserted here must not include other tests' requests.

#[path = "api/helpers.rs"]
#[allow(dead_code)]
mod helpers;

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use cacheflow_shared::telemetry::dashboards::{dashboard_metric_names, exposition_metric_names};
use cacheflow_shared::telemetry::names;
use helpers::{place, x_cache, TestApp};

/// The sum of a metric's samples whose labels contain all of `labels` (`name{labels}` lines).
fn sample_sum(scrape: &str, name: &str, labels: &[&str]) -> f64 {
    scrape
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            line.starts_with(&format!("{name}{{")) || line.starts_with(&format!("{name} "))
        })
        .filter(|line| labels.iter().all(|l| line.contains(l)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

async fn scrape(app: &TestApp) -> String {
    let response = app.client.get(&app.metrics_url).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn store_gets(scrape: &str) -> f64 {
    sample_sum(
        scrape,
        &format!("{}_count", names::STORE_OPERATION_DURATION_SECONDS),
        &["op=\"get\""],
    )
}

#[tokio::test]
async fn metrics_single_flight_and_dashboards() {
    let app = helpers::spawn_app_with(|s| s.store.op_timeout_ms = 300).await;
    app.start_worker();

    // A cold key: 500 concurrent GETs cost exactly one store read.
    assert_eq!(
        app.put("/v1/places/cold", &place("Cold", "cafe", 4.0))
            .await
            .status(),
        201
    );
    let key = app.key("place:cold");
    let redis = app.redis().await;
    app.eventually(
        "the worker cached the entity",
        Duration::from_secs(10),
        || {
            let (mut redis, key) = (redis.clone(), key.clone());
            async move {
                redis::AsyncCommands::exists::<_, bool>(&mut redis, &key)
                    .await
                    .unwrap()
            }
        },
    )
    .await;
    // Evict it: the storm below meets a cold key.
    let _: () = redis::AsyncCommands::del(&mut redis.clone(), &key)
        .await
        .unwrap();
    let before = store_gets(&scrape(&app).await);
    let storm = futures::future::join_all((0..500).map(|_| app.get("/v1/places/cold"))).await;
    for response in &storm {
        assert_eq!(response.status(), 200);
    }
    let misses = storm.iter().filter(|r| x_cache(r) == "miss").count();
    assert!(misses >= 1, "the key was cold");
    let after = scrape(&app).await;
    assert_eq!(
        store_gets(&after) - before,
        1.0,
        "store reads for 500 concurrent GETs ({misses} misses)"
    );
    if misses > 1 {
        let coalesced = sample_sum(
            &after,
            names::SINGLEFLIGHT_COALESCED_TOTAL,
            &["collection=\"places\""],
        );
        assert!(
            coalesced >= (misses - 1) as f64,
            "{coalesced} coalesced of {misses} misses"
        );
    }

    // A workload that touches every API metric.
    app.get("/v1/places/absent").await;
    app.get("/v1/places/near/nearby?lon=-9.1&lat=38.7&radius_m=1000")
        .await;
    app.get("/v1/places/top/rating").await;
    app.client
        .delete(app.url("/v1/places/cold"))
        .send()
        .await
        .unwrap();
    app.get("/v1/places/bad.id").await;
    app.wait_for_stream_count(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1_200)).await; // the pending gauge updates each second
    app.put("/v1/places/late", &place("Late", "bar", 1.0)).await;
    // A store that times out shows up in the store error counter.
    let db = app.dir.path().join("store.db");
    let (locked_tx, locked_rx) = std::sync::mpsc::channel();
    let locker = std::thread::spawn(move || {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch("BEGIN EXCLUSIVE").unwrap();
        locked_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_millis(800));
        conn.execute_batch("COMMIT").unwrap();
    });
    locked_rx.recv().unwrap();
    assert_eq!(
        app.put("/v1/places/locked", &place("L", "bar", 1.0))
            .await
            .status(),
        503
    );
    locker.join().unwrap();
    let text = scrape(&app).await;
    assert!(
        sample_sum(
            &text,
            names::STORE_ERRORS_TOTAL,
            &["op=\"put\"", "kind=\"unavailable\""]
        ) >= 1.0
    );
    assert!(
        sample_sum(
            &text,
            names::HTTP_REQUESTS_TOTAL,
            &["route=\"/v1/{collection}/{id}\"", "status_class=\"2xx\""]
        ) > 0.0
    );
    assert!(sample_sum(&text, names::HTTP_REQUESTS_TOTAL, &["status_class=\"4xx\""]) > 0.0);
    assert!(
        !text.contains("route=\"/v1/places/cold\""),
        "raw paths must not become labels"
    );
    assert!(
        sample_sum(
            &text,
            names::CACHE_REQUESTS_TOTAL,
            &["result=\"negative_hit\""]
        ) >= 0.0
    );
    assert!(sample_sum(&text, names::OUTBOX_PUBLISHED_EVENTS_TOTAL, &[]) >= 2.0);

    // Every API metric a dashboard queries is one this process exports.
    let exported = exposition_metric_names(&text);
    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let api_names: BTreeSet<&str> = names::API.iter().copied().collect();
    for name in dashboard_metric_names(&dashboards) {
        if api_names.contains(name.as_str()) {
            assert!(
                exported.contains(&name),
                "dashboards query {name}, which the API does not export"
            );
        }
    }

    // promtool accepts the exposition.
    let mut promtool = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool not found: install the `prometheus` package (infra/scripts/install-deps.sh --test does)");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let output = promtool.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
