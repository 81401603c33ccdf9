//! What a dashboard sees right after start-up, before any request or event: the API and the
//! worker binaries, started on private servers and scraped once ready with no traffic at all,
//! export every metric of theirs the dashboards query (series registered at zero).
//!
//! The operator commands' metrics (`names::OPERATIONS`) are left out: they come from the
//! commands while they run, and the audit gauges from the first audit.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cacheflow_shared::telemetry::dashboards::{dashboard_metric_names, exposition_metric_names};
use cacheflow_shared::telemetry::names;
use cacheflow_testkit::{free_port, NatsServer, RedisServer};

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `(status, body)` of `GET url`, `None` while nothing answers.
fn get(url: &str) -> Option<(u16, String)> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-w", "\n%{http_code}", url])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n')?;
    let status = status.parse().ok().filter(|s| *s != 0)?;
    Some((status, body.to_owned()))
}

fn wait_ready(url: &str, what: &str, process: &mut Process) {
    // A bound, not a timing target: the machine may be busy building.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if get(url).is_some_and(|(status, _)| status == 200) {
            return;
        }
        if let Ok(Some(exit)) = process.0.try_wait() {
            panic!("{what} exited before it was ready: {exit}");
        }
        assert!(Instant::now() < deadline, "{what} not ready at {url}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn every_dashboard_metric_is_exported_at_boot_without_traffic() {
    let redis = RedisServer::start();
    let nats = NatsServer::start();
    let dir = tempfile::tempdir().unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_cacheflow-api"))
        .parent()
        .unwrap();
    let (api_addr, api_metrics, worker_metrics) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let spawn = |binary: &str, metrics_addr: &str| {
        let log = std::fs::File::create(dir.path().join(format!("{binary}.log"))).unwrap();
        Process(
            Command::new(bin.join(binary))
                .env_clear()
                .env(
                    "STORE_URL",
                    format!("sqlite://{}", dir.path().join("store.db").display()),
                )
                .env("REDIS_URL", redis.url())
                .env("NATS_URL", nats.url())
                .env("API_ADDR", &api_addr)
                .env("METRICS_ADDR", metrics_addr)
                .env(
                    "PIPELINE_CONFIG",
                    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
                )
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("{binary} in {}: {e}", bin.display())),
        )
    };
    let mut api = spawn("cacheflow-api", &api_metrics);
    wait_ready(&format!("http://{api_addr}/readyz"), "the API", &mut api);
    let mut worker = spawn("cacheflow-sync-worker", &worker_metrics);
    wait_ready(
        &format!("http://{worker_metrics}/readyz"),
        "the worker",
        &mut worker,
    );

    let dashboards = Path::new(env!("CARGO_MANIFEST_DIR")).join("../dashboards");
    let on_dashboards = dashboard_metric_names(&dashboards);
    for (what, metrics_addr, own) in [
        ("the API", &api_metrics, names::API),
        ("the worker", &worker_metrics, names::WORKER),
    ] {
        let (_, scrape) = get(&format!("http://{metrics_addr}/metrics")).expect("a scrape");
        let exported = exposition_metric_names(&scrape);
        let own: BTreeSet<&str> = own.iter().copied().collect();
        let expected: Vec<&String> = on_dashboards
            .iter()
            .filter(|n| own.contains(n.as_str()))
            .collect();
        assert!(!expected.is_empty(), "the dashboards show {what}'s metrics");
        for name in expected {
            assert!(
                exported.contains(name),
                "{what} does not export {name} at start-up, which a dashboard queries:\n{scrape}"
            );
        }
    }
}
