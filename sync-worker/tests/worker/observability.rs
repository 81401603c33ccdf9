//! The real worker binary's `/metrics` after a workload that gives every worker metric a sample:
//! NATS down at start-up (retries), upserts, deletes, duplicates, poison events and the dead
//! letters coming round, a Redis outage (retries, ack-pending). The scrape must hold every worker
//! metric the dashboards use, with values that match the workload and the worker's own final
//! counters, and `promtool check metrics` must find nothing to lint.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use cacheflow_shared::event::{Event, Op};
use cacheflow_shared::telemetry::dashboards::{dashboard_metric_names, exposition_metric_names};
use cacheflow_shared::telemetry::metrics::CONTENT_TYPE_TEXT;
use cacheflow_shared::telemetry::names;
use cacheflow_testkit::{NatsServer, RedisServer};
use serde_json::Value;
use tokio::task::block_in_place;

use crate::gen::{place, upsert};
use crate::helpers::{eventually, TestEnv};
use crate::process::{log_fields, WorkerProcess};

/// One sample line of a scrape: name, labels, value.
#[derive(Debug)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

fn parse_samples(scrape: &str) -> Vec<Sample> {
    scrape
        .lines()
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').expect("`series value`");
            let value = value
                .parse()
                .unwrap_or_else(|_| panic!("bad value in {line}"));
            let (name, labels) = match series.split_once('{') {
                None => (series.to_owned(), BTreeMap::new()),
                Some((name, rest)) => {
                    let body = rest.strip_suffix('}').expect("closing brace");
                    let mut labels = BTreeMap::new();
                    let mut rest = body;
                    while !rest.is_empty() {
                        let (key, after) = rest.split_once("=\"").expect("label=\"value\"");
                        // Label values here never contain quotes or backslashes.
                        let (value, after) = after.split_once('"').expect("closing quote");
                        labels.insert(key.to_owned(), value.to_owned());
                        rest = after.strip_prefix(',').unwrap_or(after);
                    }
                    (name.to_owned(), labels)
                }
            };
            Sample {
                name,
                labels,
                value,
            }
        })
        .collect()
}

/// The value of the one series of `name` with exactly `labels`.
fn value(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

async fn scrape(addr: &str) -> String {
    let response = reqwest::get(format!("http://{addr}/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.headers()["content-type"].to_str().unwrap(),
        CONTENT_TYPE_TEXT
    );
    response.text().await.unwrap()
}

/// Scrapes until `check` holds on the samples (the gauges are polled every few seconds).
async fn scrape_until(addr: &str, what: &str, check: impl Fn(&[Sample]) -> bool) -> String {
    eventually(what, || async {
        let text = scrape(addr).await;
        check(&parse_samples(&text)).then_some(text)
    })
    .await
}

fn promtool_check_metrics(scrape: &str) -> String {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): install it with `bash infra/scripts/install-deps.sh \
                 --test` (Debian package `prometheus`)"
            )
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(scrape.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "promtool check metrics: {}\n{text}",
        output.status
    );
    text
}

fn count(events: &[Event], op: Op) -> f64 {
    events.iter().filter(|e| e.op == op).count() as f64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_binary_serves_every_worker_metric_after_a_real_workload() {
    let mut redis = block_in_place(RedisServer::start);
    let mut nats = block_in_place(NatsServer::start);
    let env = TestEnv::with_servers("metrics", &redis.url(), &nats.url()).await;
    let prefix = env.settings.stream.subject_prefix.clone();

    // NATS down: the worker serves its metrics and retries binding the consumer.
    block_in_place(|| nats.stop());
    let worker = WorkerProcess::start(&env.process_env());
    let addr = worker.metrics_addr().await;
    scrape_until(&addr, "a NATS retry", |s| {
        value(s, names::WORKER_RETRIES_TOTAL, &[("reason", "nats")]) >= Some(1.0)
    })
    .await;
    block_in_place(|| nats.restart());

    // One event per entity (two batches in flight may apply in either order, and the counts
    // must not depend on it), ten of them published twice, and two poison events.
    let first: Vec<Event> = (0..30)
        .map(|n| upsert(&format!("m{n}"), 1, "cafe", f64::from(n % 5)))
        .collect();
    env.publish(&first).await;
    let duplicates = &first[..10];
    env.publish(duplicates).await;
    let mut high = place("bad", 1, "cafe", 1.0, 2.0, 48.0);
    high.insert("rating".into(), "high".into());
    let high = Event::upsert("places", "bad", 1, high);
    env.publish_raw([
        (format!("{prefix}.places.junk"), b"{not json".to_vec()),
        (high.subject(&prefix), high.encode()),
    ])
    .await;
    env.wait_drained().await;

    // Redis down: the batch is held unacked and retried; the gauge shows it.
    block_in_place(|| redis.stop());
    let second: Vec<Event> = (0..10)
        .map(|n| Event::delete("places", &format!("m{n}"), 2))
        .chain((0..20).map(|n| upsert(&format!("n{n}"), 1, "bar", 3.0)))
        .collect();
    env.publish(&second).await;
    scrape_until(&addr, "a Redis retry and ack-pending messages", |s| {
        value(s, names::WORKER_RETRIES_TOTAL, &[("reason", "redis")]) >= Some(1.0)
            && value(s, names::CONSUMER_ACK_PENDING_MESSAGES, &[]) > Some(0.0)
    })
    .await;
    block_in_place(|| redis.restart());
    env.wait_drained().await;
    let text = scrape_until(&addr, "the gauges to show the drained consumer", |s| {
        value(s, names::CONSUMER_PENDING_MESSAGES, &[]) == Some(0.0)
            && value(s, names::CONSUMER_ACK_PENDING_MESSAGES, &[]) == Some(0.0)
    })
    .await;

    // Every worker metric is there, and every one a dashboard uses.
    let families = exposition_metric_names(&text);
    for name in names::WORKER {
        assert!(
            families.contains(*name),
            "{name} missing from the scrape:\n{text}"
        );
    }
    let dashboards = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let on_dashboards = dashboard_metric_names(&dashboards);
    for name in on_dashboards
        .iter()
        .filter(|n| names::WORKER.contains(&n.as_str()))
    {
        assert!(
            families.contains(name),
            "dashboard metric {name} is not emitted"
        );
    }
    assert!(
        names::WORKER.iter().all(|n| on_dashboards.contains(*n)),
        "a worker metric is on no dashboard"
    );
    // The worker emits its own metrics only.
    for family in &families {
        assert!(
            names::WORKER.contains(&family.as_str()),
            "unexpected {family}"
        );
    }

    // The values follow the workload.
    let samples = parse_samples(&text);
    let events = |collection: &str, outcome: &str| {
        value(
            &samples,
            names::WORKER_EVENTS_TOTAL,
            &[("collection", collection), ("outcome", outcome)],
        )
        .unwrap_or_else(|| panic!("no {collection}/{outcome} series in\n{text}"))
    };
    let upserts = count(&first, Op::Upsert) + count(&second, Op::Upsert);
    let deletes = count(&first, Op::Delete) + count(&second, Op::Delete);
    assert_eq!(events("places", "applied"), upserts);
    assert_eq!(events("places", "deleted"), deletes);
    assert_eq!(events("places", "stale"), duplicates.len() as f64);
    assert_eq!(events("places", "dead_lettered"), 1.0);
    assert_eq!(events("unknown", "dead_lettered"), 1.0);
    // Both dead letters came round once.
    assert_eq!(events("unknown", "skipped"), 2.0);
    let lag_count = value(
        &samples,
        &format!("{}_count", names::SYNC_LAG_SECONDS),
        &[("collection", "places")],
    );
    assert_eq!(lag_count, Some(upserts + deletes));
    let lag_sum = value(
        &samples,
        &format!("{}_sum", names::SYNC_LAG_SECONDS),
        &[("collection", "places")],
    );
    assert!(lag_sum > Some(0.0), "{lag_sum:?}");
    // The events published during the outage waited at least as long as it took to notice it.
    let within_100ms = value(
        &samples,
        &format!("{}_bucket", names::SYNC_LAG_SECONDS),
        &[("collection", "places"), ("le", "0.1")],
    );
    assert!(
        within_100ms < lag_count,
        "{within_100ms:?} of {lag_count:?}"
    );
    let batches = value(
        &samples,
        &format!("{}_count", names::WORKER_BATCH_SIZE),
        &[],
    );
    assert!(batches >= Some(2.0), "{batches:?}");
    assert_eq!(
        value(
            &samples,
            &format!("{}_count", names::WORKER_BATCH_DURATION_SECONDS),
            &[]
        ),
        batches
    );
    let messages = value(&samples, &format!("{}_sum", names::WORKER_BATCH_SIZE), &[]);
    let handled: f64 = samples
        .iter()
        .filter(|s| s.name == names::WORKER_EVENTS_TOTAL)
        .map(|s| s.value)
        .sum();
    assert_eq!(
        messages,
        Some(handled),
        "batch sizes add up to the messages handled"
    );

    let lint = promtool_check_metrics(&text);
    assert!(lint.trim().is_empty(), "promtool check metrics:\n{lint}");

    // The endpoint serves /metrics only.
    let other = reqwest::get(format!("http://{addr}/")).await.unwrap();
    assert_eq!(other.status(), 404);

    // SIGTERM stops the worker and its endpoint; its final counters agree with the metrics.
    let (status, logs) = worker.terminate();
    assert!(status.success(), "{status}\n{logs}");
    let stopped = log_fields(&logs, "sync worker stopped").expect("a final line");
    let logged = |key: &str| stopped.get(key).and_then(Value::as_f64).unwrap_or(-1.0);
    assert_eq!(logged("applied"), upserts);
    assert_eq!(logged("deleted"), deletes);
    assert_eq!(logged("stale"), duplicates.len() as f64);
    assert_eq!(logged("dead_lettered"), 2.0);
    assert_eq!(logged("skipped"), 2.0);
    assert_eq!(logged("batches"), batches.unwrap());
    assert!(
        reqwest::get(format!("http://{addr}/metrics"))
            .await
            .is_err(),
        "the metrics endpoint outlived the worker"
    );
}
