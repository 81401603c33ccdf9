//! What a run measured, and how it is reported: latency histograms (HdrHistogram, microsecond
//! resolution, 3 significant digits), counters, percentiles, and the text and JSON reports.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// A latency histogram in microseconds that grows as needed.
pub fn histogram() -> Histogram<u64> {
    // 3 significant digits: every percentile is exact to 0.1 %.
    let mut h = Histogram::new(3).expect("3 significant digits are valid");
    h.auto(true);
    h
}

pub fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// CPU time (user + system, all threads) this process has used so far: Linux only.
pub fn process_cpu() -> Option<Duration> {
    parse_cpu(&std::fs::read_to_string("/proc/self/stat").ok()?)
}

/// `utime + stime` of a `/proc/<pid>/stat` line, in clock ticks of 10 ms (USER_HZ is 100 on
/// Linux whatever the kernel's HZ).
fn parse_cpu(stat: &str) -> Option<Duration> {
    // The command name (field 2) may contain spaces: count from the last ')'.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Records `d` in microseconds, growing the histogram as needed.
pub fn record(h: &mut Histogram<u64>, d: Duration) {
    let us = micros(d);
    if h.record(us).is_err() {
        h.saturating_record(us);
    }
}

/// Counters and latencies of one kind of request.
#[derive(Debug, Clone)]
pub struct OpStats {
    /// Latencies of the successful (2xx) answers.
    pub latency: Histogram<u64>,
    pub ok: u64,
    /// Failures by kind: `HTTP 503`, `timeout`, `connect: …`, `connection closed`, …
    pub errors: BTreeMap<String, u64>,
    /// `X-Cache` values of every answer (`none` when absent).
    pub x_cache: BTreeMap<String, u64>,
}

impl Default for OpStats {
    fn default() -> Self {
        Self {
            latency: histogram(),
            ok: 0,
            errors: BTreeMap::new(),
            x_cache: BTreeMap::new(),
        }
    }
}

impl OpStats {
    pub fn record_ok(&mut self, latency: Duration) {
        self.ok += 1;
        record(&mut self.latency, latency.max(Duration::from_micros(1)));
    }

    pub fn record_error(&mut self, kind: impl Into<String>) {
        *self.errors.entry(kind.into()).or_default() += 1;
    }

    pub fn record_x_cache(&mut self, value: Option<&str>) {
        *self
            .x_cache
            .entry(value.unwrap_or("none").to_owned())
            .or_default() += 1;
    }

    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    pub fn merge(&mut self, other: &OpStats) {
        self.latency
            .add(&other.latency)
            .expect("auto-resizing histograms always merge");
        self.ok += other.ok;
        for (k, v) in &other.errors {
            *self.errors.entry(k.clone()).or_default() += v;
        }
        for (k, v) in &other.x_cache {
            *self.x_cache.entry(k.clone()).or_default() += v;
        }
    }
}

/// One [`OpStats`] per kind of request of a scenario.
#[derive(Debug, Clone)]
pub struct Recorder {
    pub ops: Vec<OpStats>,
}

impl Recorder {
    pub fn new(ops: usize) -> Self {
        Self {
            ops: vec![OpStats::default(); ops],
        }
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.ops.iter_mut().zip(&other.ops) {
            mine.merge(theirs);
        }
    }

    /// All kinds together.
    pub fn total(&self) -> OpStats {
        let mut total = OpStats::default();
        for op in &self.ops {
            total.merge(op);
        }
        total
    }
}

/// Percentiles of a latency histogram, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
}

impl LatencySummary {
    pub fn of(h: &Histogram<u64>) -> Self {
        let ms = |us: u64| us as f64 / 1000.0;
        if h.is_empty() {
            return Self {
                count: 0,
                mean_ms: 0.0,
                p50_ms: 0.0,
                p95_ms: 0.0,
                p99_ms: 0.0,
                p999_ms: 0.0,
                max_ms: 0.0,
            };
        }
        Self {
            count: h.len(),
            mean_ms: round3(h.mean() / 1000.0),
            p50_ms: ms(h.value_at_quantile(0.50)),
            p95_ms: ms(h.value_at_quantile(0.95)),
            p99_ms: ms(h.value_at_quantile(0.99)),
            p999_ms: ms(h.value_at_quantile(0.999)),
            max_ms: ms(h.max()),
        }
    }

    /// `p50 0.412  p95 0.810  p99 1.204  p99.9 2.950  max 7.100  mean 0.455 (ms)`
    pub fn line(&self) -> String {
        format!(
            "p50 {:.3}  p95 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}  mean {:.3} (ms)",
            self.p50_ms, self.p95_ms, self.p99_ms, self.p999_ms, self.max_ms, self.mean_ms
        )
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// One kind of request in a report.
#[derive(Debug, Clone, Serialize)]
pub struct OpReport {
    pub name: String,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    pub throughput_rps: f64,
    pub latency: LatencySummary,
    pub x_cache: BTreeMap<String, u64>,
}

impl OpReport {
    pub fn of(name: &str, stats: &OpStats, elapsed: Duration) -> Self {
        Self {
            name: name.to_owned(),
            ok: stats.ok,
            errors: stats.error_count(),
            error_kinds: stats.errors.clone(),
            throughput_rps: rate(stats.ok, elapsed),
            latency: LatencySummary::of(&stats.latency),
            x_cache: stats.x_cache.clone(),
        }
    }
}

/// `count / elapsed`, rounded to 0.1/s.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (count as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}

/// The outcome of one scenario run: printed as text, written as JSON for the bench script.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub scenario: String,
    pub api: String,
    /// `open` (a fixed rate) or `closed` (a fixed number of users) or `burst`.
    pub mode: String,
    pub rate: Option<f64>,
    pub users: Option<u64>,
    pub connections: Option<u64>,
    pub threads: usize,
    pub duration_s: f64,
    /// From the start of the measured run until its last request ended.
    pub elapsed_s: f64,
    /// Requests that got an answer or failed (plus, in open loop, requests never sent because the
    /// run had fallen too far behind its schedule).
    pub requests: u64,
    pub ok: u64,
    pub errors: u64,
    pub error_kinds: BTreeMap<String, u64>,
    /// Successful answers per second of `elapsed_s`.
    pub throughput_rps: f64,
    /// Latency of the successful answers, all kinds together.
    pub latency: LatencySummary,
    /// CPU the load generator used during the measured run, in % of one core.
    pub generator_cpu_pct: Option<f64>,
    pub x_cache: BTreeMap<String, u64>,
    pub ops: Vec<OpReport>,
    /// Scenario-specific results (sync lag, store reads of a storm, catch-up time, …).
    #[serde(skip_serializing_if = "serde_json::Value::is_null")]
    pub extra: serde_json::Value,
    /// Scenario-specific lines for the text report.
    #[serde(skip)]
    pub notes: Vec<String>,
}

impl Report {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let load = match self.mode.as_str() {
            "open" => format!(
                "open loop at {} req/s over {} connections",
                self.rate.unwrap_or_default(),
                self.connections.unwrap_or_default()
            ),
            "burst" => format!(
                "burst of {} concurrent requests",
                self.users.unwrap_or_default()
            ),
            _ => format!("closed loop, {} users", self.users.unwrap_or_default()),
        };
        let length = if self.mode == "burst" {
            format!("elapsed {:.3} s", self.elapsed_s)
        } else {
            format!("{} s (elapsed {:.2} s)", self.duration_s, self.elapsed_s)
        };
        let _ = writeln!(
            out,
            "{}: {load}, {length}, {} generator thread(s), {}",
            self.scenario, self.threads, self.api
        );
        let _ = writeln!(
            out,
            "  requests {}  ok {}  errors {}  throughput {:.1} req/s",
            self.requests, self.ok, self.errors, self.throughput_rps
        );
        if !self.error_kinds.is_empty() {
            let _ = writeln!(out, "  errors: {}", counts(&self.error_kinds));
        }
        let _ = writeln!(out, "  latency {}", self.latency.line());
        if let Some(cpu) = self.generator_cpu_pct {
            let _ = writeln!(out, "  load generator CPU {cpu:.0} % of one core");
        }
        if self.ops.len() > 1 {
            for op in &self.ops {
                let _ = writeln!(
                    out,
                    "  {:<16} ok {}  errors {}  {:.1} req/s  {}",
                    op.name,
                    op.ok,
                    op.errors,
                    op.throughput_rps,
                    op.latency.line()
                );
            }
        }
        if self.x_cache.keys().any(|k| k != "none") {
            let _ = writeln!(out, "  x-cache: {}", counts(&self.x_cache));
        }
        for note in &self.notes {
            let _ = writeln!(out, "  {note}");
        }
        out
    }
}

/// `a=1 b=2`
pub fn counts(map: &BTreeMap<String, u64>) -> String {
    map.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_a_known_distribution() {
        let mut stats = OpStats::default();
        // 1..=1000 µs, once each.
        for us in 1..=1000u64 {
            stats.record_ok(Duration::from_micros(us));
        }
        let s = LatencySummary::of(&stats.latency);
        assert_eq!(s.count, 1000);
        assert_eq!(s.p50_ms, 0.5);
        assert_eq!(s.p95_ms, 0.95);
        assert_eq!(s.p99_ms, 0.99);
        assert_eq!(s.p999_ms, 0.999);
        assert_eq!(s.max_ms, 1.0);
        assert!((s.mean_ms - 0.5005).abs() < 0.001, "{}", s.mean_ms);
    }

    #[test]
    fn tail_percentiles_see_rare_outliers() {
        let mut stats = OpStats::default();
        for _ in 0..9_980 {
            stats.record_ok(Duration::from_micros(200));
        }
        for _ in 0..20 {
            stats.record_ok(Duration::from_millis(50));
        }
        let s = LatencySummary::of(&stats.latency);
        assert_eq!(s.p50_ms, 0.2);
        assert_eq!(s.p99_ms, 0.2);
        // 0.2 % are outliers: p99.9 is one of them (3 significant digits).
        assert!((s.p999_ms - 50.0).abs() <= 0.05, "{}", s.p999_ms);
        assert!((s.max_ms - 50.0).abs() <= 0.05, "{}", s.max_ms);
    }

    #[test]
    fn empty_histogram_reports_zeros() {
        let s = LatencySummary::of(&histogram());
        assert_eq!(s.count, 0);
        assert_eq!(s.p99_ms, 0.0);
    }

    #[test]
    fn sub_microsecond_latencies_count_as_one() {
        let mut stats = OpStats::default();
        stats.record_ok(Duration::from_nanos(10));
        assert_eq!(stats.latency.len(), 1);
        assert_eq!(stats.latency.max(), 1);
    }

    #[test]
    fn merging_adds_counts_and_histograms() {
        let mut a = Recorder::new(2);
        let mut b = Recorder::new(2);
        a.ops[0].record_ok(Duration::from_micros(100));
        a.ops[0].record_x_cache(Some("hit"));
        b.ops[0].record_ok(Duration::from_micros(300));
        b.ops[0].record_x_cache(Some("hit"));
        b.ops[1].record_error("HTTP 503");
        b.ops[1].record_error("HTTP 503");
        b.ops[1].record_error("timeout");
        b.ops[1].record_x_cache(None);
        a.merge(&b);
        assert_eq!(a.ops[0].ok, 2);
        assert_eq!(a.ops[0].latency.len(), 2);
        assert_eq!(a.ops[0].x_cache["hit"], 2);
        assert_eq!(a.ops[1].errors["HTTP 503"], 2);
        assert_eq!(a.ops[1].error_count(), 3);
        let total = a.total();
        assert_eq!((total.ok, total.error_count()), (2, 3));
        assert_eq!(total.x_cache["none"], 1);
        assert_eq!(LatencySummary::of(&total.latency).max_ms, 0.3);
    }

    #[test]
    fn cpu_time_from_proc_stat() {
        let stat = "1234 (cacheflow loadte) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 37 0 0 20 0 3 0 100 0 0";
        assert_eq!(parse_cpu(stat), Some(Duration::from_millis(2870)));
        assert_eq!(parse_cpu("garbage"), None);
        assert!(process_cpu().is_some());
    }

    #[test]
    fn rates() {
        assert_eq!(rate(1000, Duration::from_secs(2)), 500.0);
        assert_eq!(rate(1, Duration::from_secs(3)), 0.3);
        assert_eq!(rate(5, Duration::ZERO), 0.0);
    }

    #[test]
    fn text_and_json_reports() {
        let mut stats = OpStats::default();
        stats.record_ok(Duration::from_micros(400));
        stats.record_x_cache(Some("hit"));
        stats.record_error("HTTP 503");
        let elapsed = Duration::from_secs(1);
        let report = Report {
            scenario: "read-hit".into(),
            api: "http://127.0.0.1:1".into(),
            mode: "closed".into(),
            rate: None,
            users: Some(8),
            connections: None,
            threads: 1,
            duration_s: 1.0,
            elapsed_s: 1.0,
            requests: 2,
            ok: 1,
            errors: 1,
            error_kinds: stats.errors.clone(),
            throughput_rps: 1.0,
            latency: LatencySummary::of(&stats.latency),
            generator_cpu_pct: Some(42.0),
            x_cache: stats.x_cache.clone(),
            ops: vec![OpReport::of("get", &stats, elapsed)],
            extra: serde_json::Value::Null,
            notes: vec!["a note".into()],
        };
        let text = report.text();
        assert!(
            text.starts_with("read-hit: closed loop, 8 users, 1 s"),
            "{text}"
        );
        assert!(text.contains("requests 2  ok 1  errors 1"), "{text}");
        assert!(text.contains("errors: HTTP 503=1"), "{text}");
        assert!(text.contains("p50 0.400"), "{text}");
        assert!(text.contains("x-cache: hit=1"), "{text}");
        assert!(text.contains("  a note"), "{text}");
        assert!(text.contains("load generator CPU 42 %"), "{text}");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["latency"]["p99_ms"], 0.4);
        assert_eq!(json["ops"][0]["x_cache"]["hit"], 1);
        assert!(json.get("extra").is_none());
        assert!(json.get("notes").is_none());
    }
}
