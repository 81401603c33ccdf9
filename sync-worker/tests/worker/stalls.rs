//! The stall watchdog and `/readyz`: a worker whose consumer disappears under it (what a NATS
//! server that lost its storage, or a re-created stream, does) re-creates it, counts the stall
//! and applies what was published meanwhile; `/readyz` names a dependency that is down; the
//! binary serves both endpoints beside `/metrics`.

use std::sync::Arc;

use cacheflow_sync_worker::health::{self, Health};
use cacheflow_testkit::RedisServer;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::block_in_place;
use tokio_util::sync::CancellationToken;

use crate::gen::{history, rng};
use crate::helpers::{eventually, pipeline, TestEnv, DEADLINE};
use crate::process::WorkerProcess;

/// A worker in this process reporting to a `Health` served on a free port.
struct Observed {
    health: Arc<Health>,
    readyz: String,
    token: CancellationToken,
    task: tokio::task::JoinHandle<
        Result<cacheflow_sync_worker::stats::Stats, cacheflow_sync_worker::WorkerError>,
    >,
}

impl Observed {
    async fn start(env: &TestEnv) -> Self {
        let health = Health::new();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let readyz = format!("http://{}/readyz", listener.local_addr().expect("addr"));
        let token = CancellationToken::new();
        let routes = health::router(health.clone());
        let stop = token.clone();
        tokio::spawn(async move {
            axum::serve(listener, routes)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        });
        let task = tokio::spawn(cacheflow_sync_worker::run_observed(
            env.settings.clone(),
            pipeline(),
            health.clone(),
            token.clone(),
        ));
        Self {
            health,
            readyz,
            token,
            task,
        }
    }

    async fn readyz(&self) -> (u16, Value) {
        let response = reqwest::get(&self.readyz).await.expect("GET /readyz");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    }

    async fn wait_ready(&self) {
        eventually("/readyz to answer 200", || async {
            let (status, _) = self.readyz().await;
            (status == 200).then_some(())
        })
        .await;
    }

    async fn stop(self) {
        self.token.cancel();
        tokio::time::timeout(DEADLINE, self.task)
            .await
            .expect("the worker stops")
            .expect("no panic")
            .expect("the run succeeds");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_whose_consumer_vanished_recreates_it_and_applies_what_waited() {
    let mut env = TestEnv::new("stall").await;
    env.settings.worker.stall_after_secs = 2;
    let worker = Observed::start(&env).await;
    worker.wait_ready().await;
    let mut rng = rng(19);
    let before = history(&mut rng, "a", 20, 2);
    env.publish(&before).await;
    env.wait_drained().await;
    assert_eq!(worker.health.stalls(), 0, "no stall while events flow");

    // The consumer disappears under the running worker: its pulls now reach nobody. Before the
    // watchdog, the loop kept pulling and logging at debug level forever (`batches=0`).
    let stream = env
        .js
        .get_stream(&env.settings.stream.name)
        .await
        .expect("the stream");
    stream
        .delete_consumer(&env.settings.worker.consumer)
        .await
        .expect("delete the consumer");
    let during = history(&mut rng, "b", 20, 2);
    env.publish(&during).await;

    let all: Vec<_> = before.iter().chain(&during).cloned().collect();
    env.wait_drained().await;
    env.assert_projection(&all).await;
    assert!(worker.health.stalls() >= 1, "the stall was not counted");
    // Messages flow again, so the stall check clears.
    worker.wait_ready().await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_names_redis_when_it_is_down_and_recovers() {
    let mut redis = block_in_place(RedisServer::start);
    let env = TestEnv::with_redis("readyz", &redis.url()).await;
    let worker = Observed::start(&env).await;
    worker.wait_ready().await;
    let (_, body) = worker.readyz().await;
    assert_eq!(body["status"], "ready", "{body}");
    for check in ["nats", "redis", "consumer", "stall"] {
        assert_eq!(body["checks"][check], "ok", "{body}");
    }

    block_in_place(|| redis.stop());
    let (status, body) = eventually("/readyz to answer 503", || async {
        let (status, body) = worker.readyz().await;
        (status == 503).then_some((status, body))
    })
    .await;
    assert_eq!(status, 503);
    assert_eq!(body["status"], "unready", "{body}");
    let redis_check = body["checks"]["redis"].as_str().unwrap_or_default();
    assert!(redis_check.starts_with("down: "), "{body}");
    assert_eq!(body["checks"]["nats"], "ok", "{body}");

    block_in_place(|| redis.restart());
    worker.wait_ready().await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_healthz_and_readyz_beside_its_metrics() {
    let env = TestEnv::new("health_binary").await;
    let worker = WorkerProcess::start(&env.process_env());
    let addr = worker.metrics_addr().await;
    let healthz = reqwest::get(format!("http://{addr}/healthz"))
        .await
        .unwrap();
    assert_eq!(healthz.status(), 200);
    let body: Value = healthz.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "status": "ok" }));
    let body = eventually("the binary's /readyz to answer 200", || async {
        let response = reqwest::get(format!("http://{addr}/readyz")).await.ok()?;
        if response.status() != 200 {
            return None;
        }
        response.json::<Value>().await.ok()
    })
    .await;
    assert_eq!(body["status"], "ready", "{body}");
    assert_eq!(body["checks"]["consumer"], "ok", "{body}");
    let metrics = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .unwrap();
    let text = metrics.text().await.unwrap();
    assert!(text.contains("cacheflow_worker_stalls_total 0"), "{text}");
    let (status, logs) = worker.terminate();
    assert!(status.success(), "{logs}");
}
