//! The scenarios: each builds a [`Workload`](crate::engine::Workload) (or drives its own burst),
//! runs it, and returns a [`Report`].

pub mod mixed;
pub mod reads;
pub mod storm;
pub mod sync_lag;
pub mod write_burst;

use std::io::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;

use crate::args::CommonArgs;
use crate::engine::{self, Load, RunOutput, Workload};
use crate::stats::{rate, LatencySummary, OpReport, Report};

/// Runs the warm-up (not measured) and then the measured run of `workload`.
pub async fn run_measured(
    common: &CommonArgs,
    load: Load,
    workload: Arc<dyn Workload>,
) -> anyhow::Result<RunOutput> {
    if common.warmup > 0.0 {
        let mut warmup = common.spec(load)?;
        warmup.duration = std::time::Duration::from_secs_f64(common.warmup);
        engine::run(warmup, workload.clone()).await?;
    }
    engine::run(common.spec(load)?, workload).await
}

/// The report of an engine run.
pub fn report(
    scenario: &str,
    common: &CommonArgs,
    threads: usize,
    load: Load,
    ops: &[&str],
    out: &RunOutput,
) -> Report {
    let total = out.recorder.total();
    let mut error_kinds = total.errors.clone();
    if out.unsent > 0 {
        error_kinds.insert("not sent (behind schedule at the end)".into(), out.unsent);
    }
    let errors: u64 = error_kinds.values().sum();
    let (rate_, users, connections, mode) = match load {
        Load::Open { rate, connections } => (Some(rate), None, Some(connections), "open"),
        Load::Closed { users } => (None, Some(users), None, "closed"),
    };
    Report {
        scenario: scenario.to_owned(),
        api: common.api.clone(),
        mode: mode.into(),
        rate: rate_,
        users,
        connections,
        threads,
        duration_s: common.duration,
        elapsed_s: (out.elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
        requests: total.ok + errors,
        ok: total.ok,
        errors,
        error_kinds,
        throughput_rps: rate(total.ok, out.elapsed),
        latency: LatencySummary::of(&total.latency),
        generator_cpu_pct: out.cpu.map(|cpu| {
            (cpu.as_secs_f64() / out.elapsed.as_secs_f64().max(1e-9) * 1000.0).round() / 10.0
        }),
        x_cache: total.x_cache.clone(),
        ops: ops
            .iter()
            .zip(&out.recorder.ops)
            .map(|(name, stats)| OpReport::of(name, stats, out.elapsed))
            .collect(),
        extra: serde_json::Value::Null,
        notes: Vec::new(),
    }
}

/// Prints the text report and writes the JSON one where asked.
pub fn emit(report: &Report, json: Option<&Path>) -> anyhow::Result<()> {
    let text = report.text();
    let body = serde_json::to_string_pretty(report)?;
    match json {
        Some(path) if path == Path::new("-") => {
            eprint!("{text}");
            let mut stdout = std::io::stdout().lock();
            writeln!(stdout, "{body}")?;
        }
        Some(path) => {
            print!("{text}");
            std::fs::write(path, body + "\n")
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// The ids `{prefix}{n}` for n in 1..=count, as [`crate::places::place_id`] pads them.
pub fn ids(prefix: &str, count: u64) -> Vec<String> {
    (1..=count)
        .map(|n| crate::places::place_id(prefix, n, count))
        .collect()
}

/// Runs a closed- or open-loop scenario (`default_users` when neither `--rate` nor `--users`).
pub async fn run_simple(
    scenario: &str,
    common: &CommonArgs,
    threads: usize,
    default_users: u64,
    workload: Arc<dyn Workload>,
) -> anyhow::Result<Report> {
    let load = common.load(default_users);
    let ops: Vec<&str> = workload.ops().to_vec();
    let out = run_measured(common, load, workload).await?;
    Ok(report(scenario, common, threads, load, &ops, &out))
}
