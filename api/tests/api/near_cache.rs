//! The near-cache (L1) across two API instances sharing one store, stream and Redis, with a
//! worker: notices keep the other instance's L1 current, a NATS outage bypasses it, and
//! read-your-writes tokens never answer an older version.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cacheflow_api::Application;
use cacheflow_shared::pipeline::Pipeline;
use redis::AsyncCommands;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::helpers::{place, spawn_app_with, x_cache, TestApp};

/// Only a notice (or a NATS outage) can make these tests' L1 entries go: the staleness bound is
/// far beyond their deadlines.
const LONG_STALENESS_MS: u64 = 600_000;

/// A second API instance on the first one's settings (same store file, stream, Redis keys).
struct Instance {
    base: String,
    metrics_url: String,
    stop: CancellationToken,
}

impl Drop for Instance {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn second_instance(app: &TestApp) -> Instance {
    let pipeline = Pipeline::load(&app.settings.pipeline_config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let built = Application::build_with(app.settings.clone(), pipeline, listener)
        .await
        .expect("the second instance builds");
    let (base, metrics_url) = (
        format!("http://{}", built.local_addr()),
        format!("http://{}/metrics", built.metrics_addr()),
    );
    let stop = CancellationToken::new();
    let stopped = stop.clone();
    tokio::spawn(built.run_until(async move { stopped.cancelled().await }));
    Instance {
        base,
        metrics_url,
        stop,
    }
}

async fn two_instances() -> (TestApp, Instance) {
    let app = spawn_app_with(|s| s.reads.near_cache_max_staleness_ms = LONG_STALENESS_MS).await;
    app.start_worker();
    let other = second_instance(&app).await;
    (app, other)
}

async fn put(app: &TestApp, base: &str, id: &str, rating: f64) -> u64 {
    let response = app
        .client
        .put(format!("{base}/v1/places/{id}"))
        .json(&place("n", "cafe", rating))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success(), "{}", response.status());
    let token: u64 = response.headers()["cacheflow-token"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let etag = response.headers()["etag"].to_str().unwrap().to_owned();
    assert_eq!(
        etag,
        format!("\"{token}\""),
        "the token is the version written"
    );
    token
}

/// (status, X-Cache, body) of a read through `base`, with `token` if any.
async fn read(app: &TestApp, base: &str, id: &str, token: Option<u64>) -> (u16, String, Value) {
    let mut request = app.client.get(format!("{base}/v1/places/{id}"));
    if let Some(token) = token {
        request = request.header("cacheflow-token", token.to_string());
    }
    let response = request.send().await.unwrap();
    let (status, cache) = (response.status().as_u16(), x_cache(&response));
    let body = response.json().await.unwrap_or(Value::Null);
    (status, cache, body)
}

fn version(body: &Value) -> u64 {
    body["version"].as_u64().unwrap_or(0)
}

async fn metric(app: &TestApp, url: &str, name: &str) -> f64 {
    let text = app
        .client
        .get(url)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("{name} not exported"))
}

/// Reads through `base` until it answers `version`, then once more, which the L1 must answer.
async fn held_in_l1(app: &TestApp, base: &str, id: &str, version: u64) {
    app.eventually("the entity cached", Duration::from_secs(20), || async {
        let (_, cache, body) = read(app, base, id, None).await;
        self::version(&body) == version && cache == "hit"
    })
    .await;
}

#[tokio::test]
async fn a_write_through_one_instance_is_seen_through_the_other_by_its_notice() {
    let (app, other) = two_instances().await;
    for name in [
        "cacheflow_near_cache_hits_total",
        "cacheflow_near_cache_misses_total",
        "cacheflow_near_cache_evictions_total",
        "cacheflow_near_cache_invalidations_total",
        "cacheflow_near_cache_bytes",
    ] {
        metric(&app, &other.metrics_url, name).await;
    }
    let first = put(&app, &app.base, "n1", 1.0).await;
    held_in_l1(&app, &other.base, "n1", first).await;
    let hits = metric(&app, &other.metrics_url, "cacheflow_near_cache_hits_total").await;
    let (_, _, body) = read(&app, &other.base, "n1", None).await;
    assert_eq!(version(&body), first);
    assert!(
        metric(&app, &other.metrics_url, "cacheflow_near_cache_hits_total").await > hits,
        "a read of a held entity is an L1 hit"
    );
    app.eventually(
        "the bytes held exported",
        Duration::from_secs(20),
        || async { metric(&app, &other.metrics_url, "cacheflow_near_cache_bytes").await > 0.0 },
    )
    .await;

    // Written through the first instance: the other's L1 entry (kept for ten minutes otherwise)
    // goes with the worker's notice.
    let second = put(&app, &app.base, "n1", 2.0).await;
    app.eventually(
        "the newer version seen",
        Duration::from_secs(20),
        || async { version(&read(&app, &other.base, "n1", None).await.2) == second },
    )
    .await;
    assert!(
        metric(
            &app,
            &other.metrics_url,
            "cacheflow_near_cache_invalidations_total"
        )
        .await
            >= 1.0
    );
}

#[tokio::test]
async fn with_nats_down_the_l1_is_bypassed_and_tokens_still_read_the_store() {
    let (mut app, other) = two_instances().await;
    let first = put(&app, &app.base, "n2", 1.0).await;
    held_in_l1(&app, &other.base, "n2", first).await;

    // A change no notice announces (Redis written behind the pipeline's back): while NATS is
    // up the L1 keeps answering its copy, so what the reads below see comes from Redis.
    let key = app.key("place:n2");
    let mut redis = app.redis().await;
    let cached: String = redis.get(&key).await.unwrap();
    let changed = cached.replace("\"rating\":1.0", "\"rating\":4.5");
    assert_ne!(changed, cached);
    let _: () = redis.set(&key, &changed).await.unwrap();

    app.nats.stop();
    app.eventually("the L1 bypassed", Duration::from_secs(20), || async {
        read(&app, &other.base, "n2", None).await.2["rating"] == 4.5
    })
    .await;
    let hits = metric(&app, &other.metrics_url, "cacheflow_near_cache_hits_total").await;
    for _ in 0..5 {
        assert_eq!(read(&app, &other.base, "n2", None).await.2["rating"], 4.5);
    }
    assert_eq!(
        metric(&app, &other.metrics_url, "cacheflow_near_cache_hits_total").await,
        hits,
        "no L1 hit while NATS is down"
    );

    // A write while NATS is down reaches the store only; its token reads it from there.
    let written = put(&app, &app.base, "n2", 3.0).await;
    let (status, cache, body) = read(&app, &other.base, "n2", Some(written)).await;
    assert_eq!((status, version(&body)), (200, written));
    assert_eq!(cache, "miss");
    assert_eq!(body["rating"], 3.0);

    // NATS back: the event is applied and both instances answer it without a token.
    app.nats.restart();
    for base in [&app.base, &other.base] {
        app.eventually("the write applied", Duration::from_secs(30), || async {
            version(&read(&app, base, "n2", None).await.2) == written
        })
        .await;
    }
}

#[tokio::test]
async fn a_read_with_the_token_never_answers_an_older_version() {
    let (app, other) = two_instances().await;
    put(&app, &app.base, "n3", 0.0).await;
    // Concurrent writers keep the entity moving through both instances meanwhile.
    let done = Arc::new(AtomicBool::new(false));
    let mut writers = Vec::new();
    for base in [app.base.clone(), other.base.clone()] {
        let (client, done) = (app.client.clone(), done.clone());
        writers.push(tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                let response = client
                    .put(format!("{base}/v1/places/n3"))
                    .json(&place("w", "cafe", 5.0))
                    .send()
                    .await
                    .unwrap();
                assert!(response.status().is_success());
            }
        }));
    }
    for i in 0..1_000 {
        let written = put(&app, &app.base, "n3", (i % 5) as f64).await;
        // Alternate instances: the other one's L1 and Redis may still hold older versions.
        let base = if i % 2 == 0 { &other.base } else { &app.base };
        let (status, _, body) = read(&app, base, "n3", Some(written)).await;
        assert_eq!(status, 200);
        assert!(
            version(&body) >= written,
            "iteration {i}: wrote {written}, read {}",
            version(&body)
        );
    }
    done.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
}

#[tokio::test]
async fn bad_tokens_and_min_versions_are_invalid_queries() {
    let (app, other) = two_instances().await;
    put(&app, &app.base, "n4", 1.0).await;
    let response = app
        .client
        .get(format!("{}/v1/places/n4", other.base))
        .header("cacheflow-token", "abc")
        .send()
        .await
        .unwrap();
    let (status, code, _) = crate::helpers::error_of(response).await;
    assert_eq!((status, code.as_str()), (400, "invalid_query"));
    let (status, code, _) =
        crate::helpers::error_of(app.get("/v1/places/n4?min_version=-3").await).await;
    assert_eq!((status, code.as_str()), (400, "invalid_query"));
    let (status, _, body) = {
        let response = app.get("/v1/places/n4?min_version=1").await;
        let status = response.status().as_u16();
        (status, (), response.json::<Value>().await.unwrap())
    };
    assert_eq!((status, version(&body)), (200, 1));
}
