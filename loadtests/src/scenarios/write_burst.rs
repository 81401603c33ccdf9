//! `write-burst`: PUTs as fast as the users (or the rate) allow, round-robin over their own ids
//! (`--write-prefix`, created on the first pass, updated after). With `--redis`, then measures how
//! long after the last acknowledgement the worker has applied every acknowledged version.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Args;
use hyper::Method;
use rand::rngs::SmallRng;
use serde_json::json;

use crate::args::CommonArgs;
use crate::engine::Workload;
use crate::http::{Answer, Planned};
use crate::stats::Report;
use crate::{places, redis_util, seed};

#[derive(Debug, Clone, Args)]
pub struct WriteBurstArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Id prefix of the written places.
    #[arg(long, default_value = "burst-", value_parser = seed::parse_prefix)]
    pub write_prefix: String,
    /// How many distinct ids the writes cycle over.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub write_ids: u64,
    /// With `--redis`: longest wait for the worker to catch up, seconds.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub catch_up_secs: u64,
}

pub struct WriteBurst {
    ids: Vec<String>,
    seed: u64,
    /// The newest acknowledged version per id (0: none).
    acked: Vec<AtomicU64>,
    /// When the last acknowledgement arrived.
    last_ack: std::sync::Mutex<Option<Instant>>,
}

impl WriteBurst {
    pub fn new(args: &WriteBurstArgs) -> Self {
        Self {
            ids: super::ids(&args.write_prefix, args.write_ids),
            seed: args.common.seed,
            acked: (0..args.write_ids).map(|_| AtomicU64::new(0)).collect(),
            last_ack: std::sync::Mutex::new(None),
        }
    }

    /// `(doc key, version)` of every acknowledged write's id.
    pub fn acknowledged(&self, key_prefix: &str) -> Vec<(String, u64)> {
        self.ids
            .iter()
            .zip(&self.acked)
            .filter_map(|(id, v)| {
                let v = v.load(Ordering::Relaxed);
                (v > 0).then(|| (redis_util::doc_key(key_prefix, id), v))
            })
            .collect()
    }

    pub fn last_ack(&self) -> Option<Instant> {
        *self.last_ack.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The document written by request `seq` to place `n`: the generated place with a rating and
/// a category that change from write to write (so index memberships move).
pub fn document(seed: u64, n: u64, seq: u64) -> serde_json::Value {
    let mut place = places::place(seed, n);
    place.rating = f64::from((seq % 41) as u8 + 10) / 10.0;
    place.category = places::CATEGORIES[(seq % places::CATEGORIES.len() as u64) as usize];
    let mut doc = place.to_json();
    doc["written_seq"] = json!(seq);
    doc
}

impl Workload for WriteBurst {
    fn ops(&self) -> &[&'static str] {
        &["put"]
    }

    fn plan(&self, _rng: &mut SmallRng, seq: u64) -> Planned {
        let n = seq % self.ids.len() as u64;
        Planned {
            op: 0,
            tag: n,
            method: Method::PUT,
            path: format!("/v1/places/{}", self.ids[n as usize]),
            body: Some((
                "application/json",
                Bytes::from(document(self.seed, n + 1, seq).to_string()),
            )),
        }
    }

    fn on_answer(&self, planned: &Planned, answer: &Answer, at: Instant) {
        if answer.status.is_success() {
            if let Some(version) = answer.etag_version() {
                self.acked[planned.tag as usize].fetch_max(version, Ordering::Relaxed);
            }
            let mut last = self.last_ack.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_none_or(|l| l < at) {
                *last = Some(at);
            }
        }
    }
}

/// Waits for the worker to apply every acknowledged write; returns (ids, seconds after the last
/// acknowledgement or None, ids still behind).
pub async fn catch_up(
    redis_url: &str,
    key_prefix: &str,
    burst: &Arc<WriteBurst>,
    timeout: Duration,
) -> anyhow::Result<serde_json::Value> {
    let items = burst.acknowledged(key_prefix);
    let mut conn = redis_util::connect(redis_url).await?;
    let waited = redis_util::wait_visible(&mut conn, &items, timeout).await?;
    Ok(match waited {
        Ok(_) => json!({
            "ids": items.len(),
            // Measured when the wait saw the last version: at most one poll (5 ms) late.
            "caught_up_s_after_last_ack": burst
                .last_ack()
                .map(|at| (at.elapsed().as_secs_f64() * 1000.0).round() / 1000.0),
            "behind": 0,
        }),
        Err(behind) => json!({
            "ids": items.len(),
            "caught_up_s_after_last_ack": null,
            "behind": behind,
            "waited_s": timeout.as_secs_f64(),
        }),
    })
}

/// Users of the closed loop when neither `--rate` nor `--users` is given.
pub const DEFAULT_USERS: u64 = 32;

/// Runs the scenario.
pub async fn run(args: &WriteBurstArgs, threads: usize) -> anyhow::Result<Report> {
    let common = &args.common;
    let burst = Arc::new(WriteBurst::new(args));
    let load = common.load(DEFAULT_USERS);
    let out = super::run_measured(common, load, burst.clone()).await?;
    let mut report = super::report("write-burst", common, threads, load, &["put"], &out);
    if let Some(url) = &common.redis {
        let caught = catch_up(
            url,
            &common.key_prefix,
            &burst,
            Duration::from_secs(args.catch_up_secs),
        )
        .await?;
        report.notes.push(match caught["caught_up_s_after_last_ack"].as_f64() {
            Some(s) => format!(
                "worker: all {} written ids at their acknowledged version in Redis {s:.3} s after the last ack",
                caught["ids"]
            ),
            None => format!(
                "worker: {} of {} written ids still behind {} s after the burst",
                caught["behind"], caught["ids"], args.catch_up_secs
            ),
        });
        report.extra = json!({ "catch_up": caught });
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng as _;

    use super::*;

    #[test]
    fn cycles_over_its_ids_with_changing_documents() {
        let cli = crate::tests::parse(&["write-burst", "--write-ids", "3"]);
        let crate::Scenario::WriteBurst(args) = cli.command else {
            panic!()
        };
        let w = WriteBurst::new(&args);
        let mut rng = SmallRng::seed_from_u64(1);
        let paths: Vec<String> = (0..4).map(|i| w.plan(&mut rng, i).path).collect();
        assert_eq!(
            paths,
            [
                "/v1/places/burst-0001",
                "/v1/places/burst-0002",
                "/v1/places/burst-0003",
                "/v1/places/burst-0001"
            ]
        );
        let a = document(42, 1, 0);
        let b = document(42, 1, 3);
        assert_ne!(a["rating"], b["rating"]);
        assert_ne!(a["category"], b["category"]);
        assert_eq!(a["name"], b["name"]);
        assert!(w.acknowledged("").is_empty());
        w.acked[1].store(4, Ordering::Relaxed);
        assert_eq!(w.acknowledged("p:"), [("p:place:burst-0002".to_owned(), 4)]);
    }
}
