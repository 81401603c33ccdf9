//! `sync-lag`: PUTs seeded places at a fixed rate and measures, per write, the time from the API's
//! acknowledgement (the whole answer received) to the new version being visible in Redis.
//!
//! Two ways to see the new version:
//! - `notify` (default): Redis key-event notifications of string commands (`CONFIG SET
//!   notify-keyspace-events E$`, restored afterwards) on a dedicated subscriber connection; the
//!   first `set` of `place:{id}` after the write was sent is its apply (the worker's script is
//!   atomic and writes the document string). At most one write per id is in flight, so the event
//!   cannot belong to another write of this run. A notification that arrives before the
//!   acknowledgement counts as lag 0 and is reported separately.
//! - `poll`: a dedicated connection MGETs the keys of every acknowledged, not yet visible write in
//!   a tight loop and compares versions; the lag ends when the reply that shows the version
//!   arrives (so it includes up to one round trip).
//! - `api`: the same tight loop, but through another API instance (`--read-api`): concurrent
//!   `GET /v1/places/{id}` of the acknowledged, not yet visible writes until the answer's `ETag`
//!   shows the version. This is the lag a reader of a second instance sees, its near-cache and
//!   the applied notices included (up to one round trip of resolution).
//!
//! Writes whose version is not visible within `--visibility-timeout-ms` are counted, not timed.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::{Args, ValueEnum};
use futures::StreamExt as _;
use hdrhistogram::Histogram;
use hyper::Method;
use rand::rngs::SmallRng;
use serde_json::json;
use tokio::sync::Notify;

use crate::args::CommonArgs;
use crate::engine::{self, Load, Workload};
use crate::http::{Answer, Client, Planned, Target};
use crate::redis_util;
use crate::scenarios::write_burst::document;
use crate::stats::{histogram, record, LatencySummary, Report};

/// Writes per second when `--rate` is not given.
pub const DEFAULT_RATE: f64 = 1000.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Watch {
    /// Key-event notifications (`__keyevent@<db>__:set`).
    Notify,
    /// MGET of the pending keys in a tight loop.
    Poll,
    /// GETs of the pending ids through another API instance (`--read-api`) in a tight loop.
    Api,
}

#[derive(Debug, Clone, Args)]
pub struct SyncLagArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// How the new versions are seen in Redis.
    #[arg(long, value_enum, default_value_t = Watch::Notify)]
    pub watch: Watch,
    /// A write not visible this long after its acknowledgement counts as not visible.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..))]
    pub visibility_timeout_ms: u64,
    /// `--watch api`: the API instance the new versions are read through (not the one written to).
    #[arg(long)]
    pub read_api: Option<String>,
}

#[derive(Debug)]
struct Pending {
    sent: Instant,
    ack: Option<(Instant, u64)>,
    seen: Option<Instant>,
}

#[derive(Debug)]
struct Inner {
    pending: HashMap<u64, Pending>,
    lag: Histogram<u64>,
    visible_before_ack: u64,
    expired: u64,
    superseded: u64,
    /// The newest acknowledged version per id.
    acked: HashMap<u64, u64>,
}

/// Matches writes with their visibility.
#[derive(Debug)]
pub struct Tracker {
    inner: Mutex<Inner>,
    /// Woken on every acknowledgement (the poller sleeps while nothing is pending).
    acked: Notify,
}

impl Default for Tracker {
    fn default() -> Self {
        Self {
            inner: Mutex::new(Inner {
                pending: HashMap::new(),
                lag: histogram(),
                visible_before_ack: 0,
                expired: 0,
                superseded: 0,
                acked: HashMap::new(),
            }),
            acked: Notify::new(),
        }
    }
}

/// What the tracker measured.
#[derive(Debug, Clone)]
pub struct LagResult {
    pub lag: Histogram<u64>,
    pub visible_before_ack: u64,
    pub expired: u64,
    pub superseded: u64,
    pub acked: HashMap<u64, u64>,
}

impl Tracker {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write of id `n` about to be sent.
    pub fn sent(&self, n: u64, at: Instant) {
        let mut inner = self.lock();
        let previous = inner.pending.insert(
            n,
            Pending {
                sent: at,
                ack: None,
                seen: None,
            },
        );
        if previous.is_some() {
            // The previous write of this id was never seen before this one was sent.
            inner.superseded += 1;
        }
    }

    /// Write of id `n` acknowledged at `at` with `version`.
    pub fn ack(&self, n: u64, at: Instant, version: u64) {
        let mut inner = self.lock();
        let newest = inner.acked.entry(n).or_default();
        *newest = (*newest).max(version);
        if let Some(p) = inner.pending.get_mut(&n) {
            p.ack = Some((at, version));
            if p.seen.is_some() {
                resolve(&mut inner, n);
            }
        }
        drop(inner);
        self.acked.notify_one();
    }

    /// Write of id `n` failed: not measured (the engine counts the error).
    pub fn failed(&self, n: u64) {
        self.lock().pending.remove(&n);
    }

    /// `notify`: Redis set the document of id `n` at `at`.
    pub fn set_event(&self, n: u64, at: Instant) {
        let mut inner = self.lock();
        if let Some(p) = inner.pending.get_mut(&n) {
            if p.seen.is_none() && at >= p.sent {
                p.seen = Some(at);
                if p.ack.is_some() {
                    resolve(&mut inner, n);
                }
            }
        }
    }

    /// `poll`: Redis held `version` of id `n` at `at`.
    pub fn version_seen(&self, n: u64, version: u64, at: Instant) {
        let mut inner = self.lock();
        if let Some(p) = inner.pending.get_mut(&n) {
            if p.ack.is_some_and(|(_, v)| version >= v) && p.seen.is_none() {
                p.seen = Some(at);
                resolve(&mut inner, n);
            }
        }
    }

    /// `(id, version)` of the acknowledged writes not seen yet.
    pub fn awaiting(&self) -> Vec<(u64, u64)> {
        self.lock()
            .pending
            .iter()
            .filter_map(|(&n, p)| match (p.ack, p.seen) {
                (Some((_, v)), None) => Some((n, v)),
                _ => None,
            })
            .collect()
    }

    /// Gives up on writes acknowledged more than `timeout` before `now`.
    pub fn expire(&self, now: Instant, timeout: Duration) {
        let mut inner = self.lock();
        let before = inner.pending.len();
        inner.pending.retain(
            |_, p| !matches!(p.ack, Some((at, _)) if now.saturating_duration_since(at) > timeout),
        );
        let expired = (before - inner.pending.len()) as u64;
        inner.expired += expired;
    }

    pub fn pending(&self) -> usize {
        self.lock().pending.len()
    }

    /// Forgets what was measured so far (after the warm-up); pending writes stay tracked.
    pub fn reset(&self) {
        let mut inner = self.lock();
        inner.lag.reset();
        inner.visible_before_ack = 0;
        inner.expired = 0;
        inner.superseded = 0;
        inner.acked.clear();
    }

    /// Waits until no write is pending, giving up on those not visible within `timeout`.
    pub async fn settle(&self, timeout: Duration) {
        let started = Instant::now();
        while self.pending() > 0 && started.elapsed() <= timeout + Duration::from_millis(100) {
            self.expire(Instant::now(), timeout);
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Ends the measurement: whatever is still pending counts as not visible.
    pub fn finish(&self) -> LagResult {
        let mut inner = self.lock();
        let left = inner.pending.len() as u64;
        inner.pending.clear();
        inner.expired += left;
        LagResult {
            lag: inner.lag.clone(),
            visible_before_ack: inner.visible_before_ack,
            expired: inner.expired,
            superseded: inner.superseded,
            acked: inner.acked.clone(),
        }
    }
}

fn resolve(inner: &mut Inner, n: u64) {
    let Some(p) = inner.pending.remove(&n) else {
        return;
    };
    let (Some((acked, _)), Some(seen)) = (p.ack, p.seen) else {
        return;
    };
    if seen < acked {
        inner.visible_before_ack += 1;
    }
    record(&mut inner.lag, seen.saturating_duration_since(acked));
}

/// PUTs of the seeded places, round-robin, each a new version (rating and category change).
pub struct LagWrites {
    ids: Vec<String>,
    seed: u64,
    tracker: Arc<Tracker>,
}

impl LagWrites {
    pub fn new(common: &CommonArgs, tracker: Arc<Tracker>) -> Self {
        Self {
            ids: super::ids(&common.prefix, common.ids()),
            seed: common.seed,
            tracker,
        }
    }
}

impl Workload for LagWrites {
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

    fn before_send(&self, planned: &Planned, at: Instant) {
        self.tracker.sent(planned.tag, at);
    }

    fn on_answer(&self, planned: &Planned, answer: &Answer, at: Instant) {
        match (answer.status.is_success(), answer.etag_version()) {
            (true, Some(version)) => self.tracker.ack(planned.tag, at, version),
            _ => self.tracker.failed(planned.tag),
        }
    }

    fn on_failure(&self, planned: &Planned) {
        self.tracker.failed(planned.tag);
    }
}

/// Runs the `notify` watcher until aborted: every `set` of a tracked document key.
pub async fn watch_notify(
    client: redis::Client,
    keys: HashMap<Vec<u8>, u64>,
    tracker: Arc<Tracker>,
    subscribed: tokio::sync::oneshot::Sender<anyhow::Result<()>>,
) {
    let db = client.get_connection_info().redis_settings().db();
    let channel = format!("__keyevent@{db}__:set");
    let mut pubsub = match client.get_async_pubsub().await {
        Ok(p) => p,
        Err(e) => {
            let _ = subscribed.send(Err(e).context("opening the Redis subscriber connection"));
            return;
        }
    };
    if let Err(e) = pubsub.subscribe(&channel).await {
        let _ = subscribed.send(Err(e).with_context(|| format!("SUBSCRIBE {channel}")));
        return;
    }
    let _ = subscribed.send(Ok(()));
    let mut messages = pubsub.into_on_message();
    while let Some(message) = messages.next().await {
        let at = Instant::now();
        if let Some(&n) = keys.get(message.get_payload_bytes()) {
            tracker.set_event(n, at);
        }
    }
}

/// Runs the `poll` watcher until aborted.
pub async fn watch_poll(
    mut conn: redis::aio::MultiplexedConnection,
    keys: Vec<String>,
    tracker: Arc<Tracker>,
) -> anyhow::Result<()> {
    loop {
        let awaiting = tracker.awaiting();
        if awaiting.is_empty() {
            tokio::select! {
                () = tracker.acked.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            continue;
        }
        let batch: Vec<String> = awaiting
            .iter()
            .map(|&(n, _)| keys[n as usize].clone())
            .collect();
        let held = redis_util::versions(&mut conn, &batch).await?;
        let at = Instant::now();
        for (&(n, _), held) in awaiting.iter().zip(held) {
            if let Some(version) = held {
                tracker.version_seen(n, version, at);
            }
        }
    }
}

/// Concurrent reads of the API watcher: enough for the writes in flight at 1,000/s.
const API_WATCH_CONNECTIONS: usize = 8;

/// Runs the `api` watcher until aborted.
pub async fn watch_api(
    target: Arc<Target>,
    ids: Vec<String>,
    tracker: Arc<Tracker>,
) -> anyhow::Result<()> {
    let mut clients: Vec<Client> = (0..API_WATCH_CONNECTIONS)
        .map(|_| Client::new(target.clone()))
        .collect();
    loop {
        let awaiting = tracker.awaiting();
        if awaiting.is_empty() {
            tokio::select! {
                () = tracker.acked.notified() => {}
                () = tokio::time::sleep(Duration::from_millis(5)) => {}
            }
            continue;
        }
        for chunk in awaiting.chunks(clients.len()) {
            let reads = clients.iter_mut().zip(chunk).map(|(client, &(n, _))| {
                let planned = Planned::get(0, n, format!("/v1/places/{}", ids[n as usize]));
                async move { (n, client.send(&planned).await) }
            });
            for (n, answer) in futures::future::join_all(reads).await {
                let at = Instant::now();
                match answer {
                    Ok(answer) => {
                        if let Some(version) = answer.etag_version() {
                            tracker.version_seen(n, version, at);
                        }
                    }
                    Err(e) => anyhow::bail!("reading through {}: {e}", target.url),
                }
            }
        }
    }
}

/// Runs the scenario.
pub async fn run(args: &SyncLagArgs, threads: usize) -> anyhow::Result<Report> {
    let common = &args.common;
    anyhow::ensure!(
        common.users.is_none(),
        "sync-lag writes at a fixed rate: use --rate, not --users"
    );
    let redis_url = common
        .redis
        .as_deref()
        .context("sync-lag needs --redis (the Redis the worker writes to)")?;
    let load = Load::Open {
        rate: common.rate.unwrap_or(DEFAULT_RATE),
        connections: common.connections,
    };
    let visibility_timeout = Duration::from_millis(args.visibility_timeout_ms);
    let keys: Vec<String> = super::ids(&common.prefix, common.ids())
        .iter()
        .map(|id| redis_util::doc_key(&common.key_prefix, id))
        .collect();
    let client =
        redis::Client::open(redis_url).with_context(|| format!("invalid Redis URL {redis_url}"))?;
    let mut conn = redis_util::connect(redis_url).await?;
    let tracker = Arc::new(Tracker::default());

    let mut restore = None;
    let watcher = match args.watch {
        Watch::Notify => {
            restore = Some(redis_util::enable_set_events(&mut conn).await?);
            let by_key = keys
                .iter()
                .enumerate()
                .map(|(n, k)| (k.as_bytes().to_vec(), n as u64))
                .collect();
            let (subscribed_tx, subscribed) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(watch_notify(client, by_key, tracker.clone(), subscribed_tx));
            match subscribed.await {
                Ok(Ok(())) => task,
                Ok(Err(e)) => {
                    restore_quietly(&mut conn, restore.as_deref()).await;
                    return Err(e);
                }
                Err(_) => {
                    restore_quietly(&mut conn, restore.as_deref()).await;
                    anyhow::bail!("the Redis subscriber stopped");
                }
            }
        }
        Watch::Api => {
            let url = args
                .read_api
                .as_deref()
                .context("--watch api needs --read-api (the other API instance)")?;
            let target = Target::parse_with_key(url, common.api_key.as_ref())?;
            let (ids, tracker) = (super::ids(&common.prefix, common.ids()), tracker.clone());
            tokio::spawn(async move {
                if let Err(e) = watch_api(target, ids, tracker).await {
                    eprintln!("sync-lag: the API watcher stopped: {e:#}");
                }
            })
        }
        Watch::Poll => {
            let (poll_conn, keys, tracker) = (
                redis_util::connect(redis_url).await?,
                keys.clone(),
                tracker.clone(),
            );
            tokio::spawn(async move {
                if let Err(e) = watch_poll(poll_conn, keys, tracker).await {
                    eprintln!("sync-lag: the poller stopped: {e:#}");
                }
            })
        }
    };
    let sweeper = {
        let tracker = tracker.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(50)).await;
                tracker.expire(Instant::now(), visibility_timeout);
            }
        })
    };

    let workload = Arc::new(LagWrites::new(common, tracker.clone()));
    let measured = async {
        if common.warmup > 0.0 {
            let mut warmup = common.spec(load)?;
            warmup.duration = Duration::from_secs_f64(common.warmup);
            engine::run(warmup, workload.clone()).await?;
            tracker.settle(visibility_timeout).await;
            tracker.reset();
        }
        let out = engine::run(common.spec(load)?, workload).await?;
        tracker.settle(visibility_timeout).await;
        let lag = tracker.finish();
        let behind = final_check(&mut conn, &keys, &lag.acked).await?;
        anyhow::Ok((out, lag, behind))
    }
    .await;
    watcher.abort();
    sweeper.abort();
    restore_quietly(&mut conn, restore.as_deref()).await;
    let (out, lag, behind) = measured?;

    let mut report = super::report("sync-lag", common, threads, load, &["put"], &out);
    let summary = LatencySummary::of(&lag.lag);
    report.notes.push(format!(
        "sync lag, API ack -> visible {} ({}): {} writes measured; {}",
        if args.watch == Watch::Api {
            "through the other API instance"
        } else {
            "in Redis"
        },
        format!("{:?}", args.watch).to_lowercase(),
        lag.lag.len(),
        summary.line()
    ));
    report.notes.push(format!(
        "  visible before the ack: {}; not visible within {} ms: {}; rewritten before visible: {}; ids behind at the end: {behind}",
        lag.visible_before_ack, args.visibility_timeout_ms, lag.expired, lag.superseded
    ));
    report.extra = lag_json(&lag, args.watch, behind);
    Ok(report)
}

async fn restore_quietly(conn: &mut redis::aio::MultiplexedConnection, flags: Option<&str>) {
    if let Some(flags) = flags {
        if let Err(e) = redis_util::restore_events(conn, flags).await {
            eprintln!("sync-lag: {e:#}");
        }
    }
}

/// The lag part of the report.
pub fn lag_json(result: &LagResult, watch: Watch, final_behind: usize) -> serde_json::Value {
    json!({
        "watch": format!("{watch:?}").to_lowercase(),
        "lag_ms": LatencySummary::of(&result.lag),
        "measured": result.lag.len(),
        "visible_before_ack": result.visible_before_ack,
        "not_visible_within_timeout": result.expired,
        "superseded": result.superseded,
        "ids_written": result.acked.len(),
        "ids_behind_at_the_end": final_behind,
    })
}

/// Checks that every id holds at least its newest acknowledged version; returns how many do not.
pub async fn final_check(
    conn: &mut redis::aio::MultiplexedConnection,
    keys: &[String],
    acked: &HashMap<u64, u64>,
) -> anyhow::Result<usize> {
    let items: Vec<(String, u64)> = acked
        .iter()
        .map(|(&n, &v)| (keys[n as usize].clone(), v))
        .collect();
    Ok(
        match redis_util::wait_visible(conn, &items, Duration::from_secs(2)).await? {
            Ok(_) => 0,
            Err(behind) => behind,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn lag_counts_from_the_acknowledgement() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.sent(1, t0);
        t.ack(1, t0 + ms(2), 5);
        t.set_event(1, t0 + ms(5));
        // A second event for the same write is ignored.
        t.set_event(1, t0 + ms(9));
        assert_eq!(t.pending(), 0);
        let r = t.finish();
        assert_eq!(r.lag.len(), 1);
        // 3 significant digits: 3 ms reads back as 3.001.
        assert!((LatencySummary::of(&r.lag).max_ms - 3.0).abs() <= 0.003);
        assert_eq!((r.visible_before_ack, r.expired), (0, 0));
        assert_eq!(r.acked[&1], 5);
    }

    #[test]
    fn visible_before_the_acknowledgement_is_lag_zero() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.sent(7, t0);
        t.set_event(7, t0 + ms(1));
        assert_eq!(t.pending(), 1);
        t.ack(7, t0 + ms(3), 2);
        let r = t.finish();
        assert_eq!(r.lag.len(), 1);
        assert_eq!(r.lag.max(), 0);
        assert_eq!(r.visible_before_ack, 1);
    }

    #[test]
    fn events_before_the_send_or_for_untracked_ids_are_ignored() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.set_event(3, t0);
        t.sent(3, t0 + ms(1));
        t.set_event(3, t0);
        t.ack(3, t0 + ms(2), 1);
        assert_eq!(t.awaiting(), [(3, 1)]);
        t.set_event(3, t0 + ms(4));
        assert!(t.awaiting().is_empty());
        assert_eq!(t.finish().lag.len(), 1);
    }

    #[test]
    fn polled_versions_must_reach_the_acknowledged_one() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.sent(2, t0);
        t.version_seen(2, 9, t0 + ms(1)); // not acknowledged yet: unknown version
        t.ack(2, t0 + ms(1), 4);
        t.version_seen(2, 3, t0 + ms(2));
        assert_eq!(t.pending(), 1);
        t.version_seen(2, 4, t0 + ms(4));
        let r = t.finish();
        // 3 significant digits: 3 ms reads back as 3.001.
        assert!((LatencySummary::of(&r.lag).max_ms - 3.0).abs() <= 0.003);
    }

    #[test]
    fn failures_expiry_and_superseded_writes() {
        let t = Tracker::default();
        let t0 = Instant::now();
        t.sent(1, t0);
        t.failed(1);
        assert_eq!(t.pending(), 0);

        t.sent(2, t0);
        t.ack(2, t0, 1);
        t.sent(3, t0);
        t.ack(3, t0 + ms(900), 1);
        t.expire(t0 + ms(1000), ms(500));
        assert_eq!(t.awaiting(), [(3, 1)]);

        t.sent(3, t0 + ms(1000)); // rewritten before the first write was seen
        t.sent(4, t0); // never answered
        let r = t.finish();
        assert_eq!(r.superseded, 1);
        assert_eq!(r.expired, 1 + 2);
        assert_eq!(r.lag.len(), 0);
    }

    #[test]
    fn writes_cycle_over_the_seeded_ids() {
        let cli = crate::tests::parse(&["sync-lag", "--ids", "5", "--redis", "redis://x"]);
        let crate::Scenario::SyncLag(args) = cli.command else {
            panic!()
        };
        let tracker = Arc::new(Tracker::default());
        let w = LagWrites::new(&args.common, tracker.clone());
        let mut rng = rand::SeedableRng::seed_from_u64(1);
        let p = w.plan(&mut rng, 6);
        assert_eq!(p.path, "/v1/places/place-0002");
        assert_eq!(p.tag, 1);
        w.before_send(&p, Instant::now());
        assert_eq!(tracker.pending(), 1);
        w.on_failure(&p);
        assert_eq!(tracker.pending(), 0);
    }
}
