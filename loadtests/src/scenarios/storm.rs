//! `cold-miss-storm`: N concurrent GETs of one key the cache does not hold, released together
//! once all N connections are open; with `--metrics`, how many store reads they caused (the
//! `_count` of `cacheflow_store_operation_duration_seconds{op="get"}` before and after). With
//! single-flight, N concurrent misses should cost one store read.
//!
//! The cold key: with `--redis`, a fresh place is PUT, awaited in Redis, and then its document key
//! and its worker metadata are removed from Redis (the entity exists in the store, the cache does
//! not hold it, and the populate may write it back). Without `--redis`, an id that was never
//! written (a cold key of an absent entity: the answers are 404). Or `--id` names the key.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Args;
use hyper::Method;
use serde_json::json;
use tokio::sync::Barrier;

use crate::args::CommonArgs;
use crate::http::{self, Client, Planned};
use crate::stats::{rate, LatencySummary, OpReport, OpStats, Report};
use crate::{places, redis_util};

/// Concurrent GETs when `--users` is not given.
pub const DEFAULT_USERS: u64 = 500;

/// The histogram whose `_count{op="get"}` counts store reads.
pub const STORE_METRIC: &str = "cacheflow_store_operation_duration_seconds_count";

#[derive(Debug, Clone, Args)]
pub struct StormArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Storms to run, each on a new cold key.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=100))]
    pub rounds: u64,
    /// Use this (already cold) id instead of preparing one.
    #[arg(long, value_parser = crate::seed::parse_prefix)]
    pub id: Option<String>,
    /// The API's Prometheus endpoint (`http://host:port` or `…/metrics`).
    #[arg(long)]
    pub metrics: Option<String>,
}

/// The store-read counter as scraped.
#[derive(Debug, Clone, PartialEq)]
pub enum Scrape {
    Count(f64),
    /// The endpoint answered without the metric.
    NoMetric,
    Unavailable(String),
}

/// Sums `STORE_METRIC{…op="get"…}` over its label sets; `None` when there is no such line.
pub fn store_gets(text: &str) -> Option<f64> {
    let mut total = None;
    for line in text.lines() {
        let Some(rest) = line.strip_prefix(STORE_METRIC) else {
            continue;
        };
        let Some(rest) = rest.strip_prefix('{') else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        if !labels.split(',').any(|l| l.trim() == r#"op="get""#) {
            continue;
        }
        if let Some(v) = value
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *total.get_or_insert(0.0) += v;
        }
    }
    total
}

/// `http://host:port` → `http://host:port/metrics`; a URL with a path is kept.
pub fn metrics_url(url: &str) -> String {
    let url = url.trim_end_matches('/');
    let after_scheme = url.split_once("://").map_or(url, |(_, rest)| rest);
    if after_scheme.contains('/') {
        url.to_owned()
    } else {
        format!("{url}/metrics")
    }
}

pub async fn scrape(url: &str) -> Scrape {
    match tokio::time::timeout(Duration::from_secs(5), http::get_once(url)).await {
        Err(_) => Scrape::Unavailable(format!("{url}: no answer within 5 s")),
        Ok(Err(e)) => Scrape::Unavailable(format!("{e:#}")),
        Ok(Ok(answer)) if !answer.status.is_success() => {
            Scrape::Unavailable(format!("{url}: HTTP {}", answer.status.as_u16()))
        }
        Ok(Ok(answer)) => match store_gets(&String::from_utf8_lossy(&answer.body)) {
            Some(count) => Scrape::Count(count),
            None => Scrape::NoMetric,
        },
    }
}

/// Store reads between two scrapes, or why it is not known. A metric that appears only after
/// the storm started from zero.
pub fn store_reads(before: &Scrape, after: &Scrape) -> Result<u64, String> {
    match (before, after) {
        (Scrape::Count(b), Scrape::Count(a)) => Ok((a - b).max(0.0).round() as u64),
        (Scrape::NoMetric, Scrape::Count(a)) => Ok(a.round() as u64),
        (_, Scrape::NoMetric) => Err(format!("the endpoint does not export {STORE_METRIC}")),
        (Scrape::Unavailable(e), _) | (_, Scrape::Unavailable(e)) => Err(e.clone()),
    }
}

/// How the cold key was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cold {
    /// In the store, removed from Redis: the answers are 200.
    Evicted,
    /// Never written: the answers are 404.
    Absent,
    /// `--id`: whatever it is; 200 and 404 both count as answers.
    Given,
}

impl Cold {
    fn label(self) -> &'static str {
        match self {
            Cold::Evicted => "in the store, removed from Redis",
            Cold::Absent => "never written (absent)",
            Cold::Given => "given with --id",
        }
    }

    fn expected(self, status: u16) -> bool {
        match self {
            Cold::Evicted => status == 200,
            Cold::Absent => status == 404,
            Cold::Given => status == 200 || status == 404,
        }
    }
}

/// Makes a cold key for round `round`.
async fn prepare(args: &StormArgs, round: u64, run: &str) -> anyhow::Result<(String, Cold)> {
    if let Some(id) = &args.id {
        return Ok((id.clone(), Cold::Given));
    }
    let common = &args.common;
    let Some(redis_url) = &common.redis else {
        return Ok((format!("storm-absent-{run}-{round}"), Cold::Absent));
    };
    let id = format!("storm-{run}-{round}");
    let mut client = Client::new(common.target()?);
    let planned = Planned {
        op: 0,
        tag: 0,
        method: Method::PUT,
        path: format!("/v1/places/{id}"),
        body: Some((
            "application/json",
            Bytes::from(places::place(common.seed, round).to_json().to_string()),
        )),
    };
    let answer = client
        .send(&planned)
        .await
        .map_err(|e| anyhow::anyhow!("PUT {}: {e}", planned.path))?;
    anyhow::ensure!(
        answer.status.is_success(),
        "PUT {}: HTTP {}",
        planned.path,
        answer.status
    );
    let version = answer.etag_version().unwrap_or(1);
    let key = redis_util::doc_key(&common.key_prefix, &id);
    let mut conn = redis_util::connect(redis_url).await?;
    match redis_util::wait_visible(
        &mut conn,
        &[(key.clone(), version)],
        Duration::from_secs(30),
    )
    .await?
    {
        Ok(_) => {}
        Err(_) => anyhow::bail!("{key} did not reach Redis within 30 s: is the worker running?"),
    }
    redis::cmd("UNLINK")
        .arg(&key)
        .arg(redis_util::meta_key(&common.key_prefix, &id))
        .query_async::<()>(&mut conn)
        .await
        .context("UNLINK")?;
    Ok((id, Cold::Evicted))
}

/// One storm: `users` connections, opened first, then one GET each, released together.
async fn storm(
    common: &CommonArgs,
    users: u64,
    id: &str,
    cold: Cold,
) -> anyhow::Result<(OpStats, Duration)> {
    let target = common.target()?;
    let timeout = common.timeout().min(common.duration());
    let barrier = Arc::new(Barrier::new(users as usize + 1));
    let path = format!("/v1/places/{id}");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..users {
        let (target, barrier, path) = (target.clone(), barrier.clone(), path.clone());
        tasks.spawn(async move {
            let mut client = Client::new(target);
            let connected = client.connect().await;
            barrier.wait().await;
            let mut stats = OpStats::default();
            if let Err(e) = connected {
                stats.record_error(e.kind());
                return stats;
            }
            let sent = Instant::now();
            match tokio::time::timeout(timeout, client.send(&Planned::get(0, 0, path))).await {
                Ok(Ok(answer)) => {
                    stats.record_x_cache(answer.x_cache());
                    if cold.expected(answer.status.as_u16()) {
                        stats.record_ok(sent.elapsed());
                    } else {
                        stats.record_error(format!("HTTP {}", answer.status.as_u16()));
                    }
                }
                Ok(Err(e)) => stats.record_error(e.kind()),
                Err(_) => stats.record_error("timeout"),
            }
            stats
        });
    }
    barrier.wait().await;
    let started = Instant::now();
    let mut total = OpStats::default();
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined.context("a storm task failed")?);
    }
    Ok((total, started.elapsed()))
}

/// Runs the scenario.
pub async fn run(args: &StormArgs, threads: usize) -> anyhow::Result<Report> {
    let common = &args.common;
    anyhow::ensure!(
        common.rate.is_none(),
        "cold-miss-storm is a burst of concurrent requests: use --users, not --rate"
    );
    let users = common.users.unwrap_or(DEFAULT_USERS);
    let metrics = args.metrics.as_deref().map(metrics_url);
    let run = format!(
        "{}-{}",
        std::process::id(),
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    );
    let mut total = OpStats::default();
    let mut elapsed = Duration::ZERO;
    let mut rounds = Vec::new();
    let mut notes = Vec::new();
    let mut reads_total: Option<u64> = Some(0);
    for round in 1..=args.rounds {
        let (id, cold) = prepare(args, round, &run).await?;
        let before = match &metrics {
            Some(url) => scrape(url).await,
            None => Scrape::Unavailable("no --metrics".into()),
        };
        let (stats, took) = storm(common, users, &id, cold).await?;
        let after = match &metrics {
            Some(url) => scrape(url).await,
            None => Scrape::Unavailable("no --metrics".into()),
        };
        let reads = store_reads(&before, &after);
        reads_total = match (&reads, reads_total) {
            (Ok(r), Some(t)) => Some(t + r),
            _ => None,
        };
        let repopulated = match (&common.redis, cold) {
            (Some(url), Cold::Evicted) => {
                // The populate runs after the answers; give it a moment.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let mut conn = redis_util::connect(url).await?;
                let exists: bool = redis::cmd("EXISTS")
                    .arg(redis_util::doc_key(&common.key_prefix, &id))
                    .query_async(&mut conn)
                    .await?;
                Some(exists)
            }
            _ => None,
        };
        let reads_text = match &reads {
            Ok(n) => n.to_string(),
            Err(why) => format!("n/a ({why})"),
        };
        notes.push(format!(
            "round {round}: {users} concurrent GETs of {id} ({}): store reads {reads_text}; x-cache {}; {}{}",
            cold.label(),
            crate::stats::counts(&stats.x_cache),
            LatencySummary::of(&stats.latency).line(),
            match repopulated {
                Some(true) => "; back in Redis after the storm",
                Some(false) => "; not in Redis 300 ms after the storm",
                None => "",
            }
        ));
        rounds.push(json!({
            "round": round,
            "id": id,
            "cold_key": cold.label(),
            "store_reads": reads.as_ref().ok(),
            "store_reads_unknown_because": reads.as_ref().err(),
            "x_cache": stats.x_cache,
            "ok": stats.ok,
            "errors": stats.errors,
            "latency": LatencySummary::of(&stats.latency),
            "repopulated": repopulated,
        }));
        total.merge(&stats);
        elapsed += took;
    }
    let errors = total.error_count();
    let op = OpReport::of("get", &total, elapsed);
    Ok(Report {
        scenario: "cold-miss-storm".into(),
        api: common.api.clone(),
        mode: "burst".into(),
        rate: None,
        users: Some(users),
        connections: Some(users),
        threads,
        duration_s: common.duration,
        elapsed_s: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        requests: total.ok + errors,
        ok: total.ok,
        errors,
        error_kinds: total.errors.clone(),
        throughput_rps: rate(total.ok, elapsed),
        latency: op.latency,
        generator_cpu_pct: None,
        x_cache: total.x_cache.clone(),
        ops: vec![op],
        extra: json!({
            "rounds": rounds,
            "store_reads_total": reads_total,
            "concurrent_gets_per_round": users,
        }),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPOSITION: &str = r#"# TYPE cacheflow_store_operation_duration_seconds histogram
cacheflow_store_operation_duration_seconds_bucket{op="get",le="0.001"} 3
cacheflow_store_operation_duration_seconds_sum{op="get"} 0.004
cacheflow_store_operation_duration_seconds_count{op="get"} 7
cacheflow_store_operation_duration_seconds_count{op="write"} 100
cacheflow_store_operation_duration_seconds_count{collection="places",op="get"} 2
cacheflow_store_operation_duration_seconds_count_other{op="get"} 50
"#;

    #[test]
    fn parses_the_store_get_count() {
        assert_eq!(store_gets(EXPOSITION), Some(9.0));
        assert_eq!(store_gets("cacheflow_http_requests_total 3\n"), None);
        assert_eq!(store_gets(""), None);
        assert_eq!(
            store_gets("cacheflow_store_operation_duration_seconds_count{op=\"get\"} 1e3\n"),
            Some(1000.0)
        );
    }

    #[test]
    fn store_reads_between_scrapes() {
        assert_eq!(
            store_reads(&Scrape::Count(10.0), &Scrape::Count(11.0)),
            Ok(1)
        );
        assert_eq!(store_reads(&Scrape::NoMetric, &Scrape::Count(1.0)), Ok(1));
        assert!(store_reads(&Scrape::NoMetric, &Scrape::NoMetric)
            .unwrap_err()
            .contains("does not export"));
        assert_eq!(
            store_reads(&Scrape::Unavailable("down".into()), &Scrape::Count(1.0)),
            Err("down".into())
        );
    }

    #[test]
    fn metrics_urls() {
        assert_eq!(
            metrics_url("http://127.0.0.1:9464"),
            "http://127.0.0.1:9464/metrics"
        );
        assert_eq!(
            metrics_url("http://127.0.0.1:9464/"),
            "http://127.0.0.1:9464/metrics"
        );
        assert_eq!(
            metrics_url("http://127.0.0.1:9464/metrics"),
            "http://127.0.0.1:9464/metrics"
        );
    }

    #[test]
    fn expected_answers_by_kind_of_cold_key() {
        assert!(Cold::Evicted.expected(200) && !Cold::Evicted.expected(404));
        assert!(Cold::Absent.expected(404) && !Cold::Absent.expected(200));
        assert!(Cold::Given.expected(200) && Cold::Given.expected(404));
        assert!(!Cold::Given.expected(503));
    }

    #[tokio::test]
    async fn a_storm_against_a_test_server() {
        let (url, seen) = crate::engine::tests::serve(Duration::from_millis(5), |_| {
            (404, "x-cache: miss\r\n".into(), "{}".into())
        });
        let metrics = format!("{url}/metrics");
        let cli = crate::tests::parse(&[
            "cold-miss-storm",
            "--api",
            &url,
            "--users",
            "20",
            "--rounds",
            "2",
            "--metrics",
            &metrics,
        ]);
        let crate::Scenario::ColdMissStorm(args) = cli.command else {
            panic!()
        };
        let report = run(&args, 1).await.unwrap();
        assert_eq!(report.ok, 40, "{}", report.text());
        assert_eq!(report.x_cache["miss"], 40);
        // The test server answers 404 to /metrics too: the count is unknown.
        assert!(report.extra["store_reads_total"].is_null());
        assert!(
            report.text().contains("store reads n/a"),
            "{}",
            report.text()
        );
        let gets = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains("/v1/places/storm-absent-"))
            .count();
        assert_eq!(gets, 40);
    }
}
