//! A steady mixed workload over a fixed key space: PUT, PATCH (merge patch), DELETE and GET at a
//! fixed rate, from tasks that each own a share of the keys. Every answer is classified and
//! counted under the scenario's current *phase* (`before`, `outage`, ...), and every write's
//! answer updates the key's [`KeyRecord`].

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use reqwest::{Client, Response, StatusCode};
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ledger::{KeyRecord, COLLECTION};

/// Keys `p0` … `p299`.
const KEYS: usize = 300;
const TASKS: usize = 8;
/// Per task: 8 × 25 = 200 operations per second in total.
const PERIOD: Duration = Duration::from_millis(40);
/// Longer than the API's request timeout (10 s), so the API always answers first unless it
/// died: a client-side timeout would be one more unknown outcome.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(15);
const CATEGORIES: [&str; 4] = ["cafe", "bar", "museum", "park"];

/// How one request ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Class {
    /// A write answered 2xx.
    Acked,
    /// A read answered 200 or 404.
    Read,
    /// A PATCH or DELETE of an entity that is not live: 404.
    NotFound,
    /// `503` with `Retry-After` and a code saying nothing was done (`store_unavailable`).
    Refused,
    /// The request never reached the API (connection refused).
    NotSent,
    /// The client could not learn the outcome: connection lost mid-request, `503 timeout`.
    Unknown,
    /// Anything else, e.g. a 500: always a failure.
    Unexpected,
}

#[derive(Default)]
struct Shared {
    phase: &'static str,
    /// Requests on their way, by the phase they started in.
    in_flight: BTreeMap<&'static str, u64>,
    counts: BTreeMap<(&'static str, Class), u64>,
    /// Refusal codes seen (`store_unavailable`, ...), by phase.
    refusals: BTreeMap<(&'static str, String), u64>,
    unexpected: Vec<String>,
    violations: Vec<String>,
}

/// The counts of a finished workload, and the records of every key.
pub struct Report {
    counts: BTreeMap<(&'static str, Class), u64>,
    refusals: BTreeMap<(&'static str, String), u64>,
    unexpected: Vec<String>,
    violations: Vec<String>,
    pub records: Vec<(String, KeyRecord)>,
}

pub struct Workload {
    stop: CancellationToken,
    shared: Arc<Mutex<Shared>>,
    tasks: Vec<JoinHandle<Vec<(String, KeyRecord)>>>,
}

impl Workload {
    /// Starts the tasks against the API at `base` (`http://host:port`), in phase `before`.
    pub fn start(base: &str) -> Self {
        let client = Client::builder()
            .timeout(CLIENT_TIMEOUT)
            .build()
            .expect("an HTTP client");
        let stop = CancellationToken::new();
        let shared = Arc::new(Mutex::new(Shared {
            phase: "before",
            ..Shared::default()
        }));
        let tasks = (0..TASKS)
            .map(|task| {
                let keys = (0..KEYS)
                    .filter(|k| k % TASKS == task)
                    .map(|k| (format!("p{k}"), KeyRecord::default()))
                    .collect();
                let worker = Task {
                    client: client.clone(),
                    base: base.to_owned(),
                    keys,
                    rng: StdRng::seed_from_u64(task as u64),
                    shared: shared.clone(),
                };
                tokio::spawn(worker.run(stop.clone()))
            })
            .collect();
        Self {
            stop,
            shared,
            tasks,
        }
    }

    /// Counts the requests started from now on under `phase`, and returns once every request
    /// of the earlier phases has been answered: a fault injected next hits only this phase.
    pub async fn enter(&self, phase: &'static str) {
        lock(&self.shared).phase = phase;
        let deadline = std::time::Instant::now() + CLIENT_TIMEOUT;
        loop {
            let earlier = lock(&self.shared)
                .in_flight
                .iter()
                .any(|(p, n)| *p != phase && *n > 0);
            if !earlier {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "requests of the phase before `{phase}` still unanswered"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Lets every task finish its request in flight, then returns what happened.
    pub async fn stop(self) -> Report {
        self.stop.cancel();
        let mut records = Vec::with_capacity(KEYS);
        for task in self.tasks {
            records.extend(task.await.expect("a workload task panicked"));
        }
        let shared = std::mem::take(&mut *lock(&self.shared));
        Report {
            counts: shared.counts,
            refusals: shared.refusals,
            unexpected: shared.unexpected,
            violations: shared.violations,
            records,
        }
    }
}

impl Report {
    pub fn count(&self, phase: &'static str, class: Class) -> u64 {
        self.counts.get(&(phase, class)).copied().unwrap_or(0)
    }

    /// Requests that started in `phase` and ended as one of `classes`.
    pub fn count_any(&self, phase: &'static str, classes: &[Class]) -> u64 {
        classes.iter().map(|c| self.count(phase, *c)).sum()
    }

    pub fn refusals(&self, phase: &'static str, code: &str) -> u64 {
        self.refusals
            .get(&(phase, code.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// No 5xx other than the refusals, and no answer contradicting an earlier one.
    pub fn assert_sound(&self) {
        assert!(
            self.unexpected.is_empty(),
            "unexpected answers ({}):\n{}\n{self}",
            self.unexpected.len(),
            self.unexpected.join("\n")
        );
        assert!(
            self.violations.is_empty(),
            "answers contradicting earlier ones ({}):\n{}\n{self}",
            self.violations.len(),
            self.violations.join("\n")
        );
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "workload:")?;
        for ((phase, class), n) in &self.counts {
            write!(f, " {phase}/{class:?}={n}")?;
        }
        for ((phase, code), n) in &self.refusals {
            write!(f, " {phase}/503 {code}={n}")?;
        }
        Ok(())
    }
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Put,
    Patch,
    Delete,
    Get,
}

struct Task {
    client: Client,
    base: String,
    keys: Vec<(String, KeyRecord)>,
    rng: StdRng,
    shared: Arc<Mutex<Shared>>,
}

impl Task {
    async fn run(mut self, stop: CancellationToken) -> Vec<(String, KeyRecord)> {
        let mut ticks = tokio::time::interval(PERIOD);
        // After a slow request, carry on at the same pace instead of bursting to catch up.
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                _ = ticks.tick() => {}
            }
            // A request is never abandoned midway: the loop only stops between requests.
            self.one().await;
        }
        self.keys
    }

    async fn one(&mut self) {
        let index = self.rng.random_range(0..self.keys.len());
        let op = self.choose(self.keys[index].1.is_live());
        let url = format!("{}/v1/{COLLECTION}/{}", self.base, self.keys[index].0);
        let phase = {
            let mut shared = lock(&self.shared);
            let phase = shared.phase;
            *shared.in_flight.entry(phase).or_default() += 1;
            phase
        };
        let sent = match op {
            Op::Put => self.client.put(&url).json(&place(&mut self.rng)),
            Op::Patch => self
                .client
                .patch(&url)
                .header("content-type", "application/merge-patch+json")
                .body(patch(&mut self.rng).to_string()),
            Op::Delete => self.client.delete(&url),
            Op::Get => self.client.get(&url),
        }
        .send()
        .await;
        let (id, record) = &mut self.keys[index];
        let (class, note) = match sent {
            Ok(response) => classify(op, response, record).await,
            Err(e) if e.is_connect() => (Class::NotSent, None),
            Err(_) => {
                if !matches!(op, Op::Get) {
                    record.unknown();
                }
                (Class::Unknown, None)
            }
        };
        let mut shared = lock(&self.shared);
        *shared.in_flight.entry(phase).or_default() -= 1;
        *shared.counts.entry((phase, class)).or_default() += 1;
        match note {
            Some(Note::Refused(code)) => *shared.refusals.entry((phase, code)).or_default() += 1,
            Some(Note::Violation(what)) => shared
                .violations
                .push(format!("{op:?} {id} ({phase}): {what}")),
            Some(Note::Unexpected(what)) => shared
                .unexpected
                .push(format!("{op:?} {id} ({phase}): {what}")),
            None => {}
        }
    }

    fn choose(&mut self, live: bool) -> Op {
        let roll = self.rng.random_range(0..100);
        match (live, roll) {
            (true, 0..35) => Op::Put,
            (true, 35..65) => Op::Patch,
            (true, 65..75) => Op::Delete,
            (false, 0..70) => Op::Put,
            _ => Op::Get,
        }
    }
}

enum Note {
    Refused(String),
    Violation(String),
    Unexpected(String),
}

async fn classify(op: Op, response: Response, record: &mut KeyRecord) -> (Class, Option<Note>) {
    let status = response.status();
    let version = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim_matches('"').parse::<u64>().ok());
    let retry_after = response.headers().contains_key("retry-after");
    let body = response.bytes().await;
    let Ok(body) = body else {
        // The answer broke off: a write may or may not have been committed.
        if !matches!(op, Op::Get) {
            record.unknown();
        }
        return (Class::Unknown, None);
    };
    let json: Option<Value> = serde_json::from_slice(&body).ok();
    let code = json
        .as_ref()
        .and_then(|j| j["code"].as_str())
        .unwrap_or("")
        .to_owned();
    let unexpected = || {
        let text = String::from_utf8_lossy(&body)
            .chars()
            .take(300)
            .collect::<String>();
        (
            Class::Unexpected,
            Some(Note::Unexpected(format!("{status} {text}"))),
        )
    };
    match (op, status) {
        (Op::Get, StatusCode::OK) => match version {
            Some(v) => (Class::Read, record.read(v).map(Note::Violation)),
            None => unexpected(),
        },
        (Op::Get, StatusCode::NOT_FOUND) if code == "not_found" => (Class::Read, None),
        (Op::Put | Op::Patch, StatusCode::OK | StatusCode::CREATED) => match (version, json) {
            (Some(v), Some(document)) => (
                Class::Acked,
                record.acked(v, Some(document)).map(Note::Violation),
            ),
            _ => unexpected(),
        },
        (Op::Delete, StatusCode::NO_CONTENT) => match version {
            Some(v) => (Class::Acked, record.acked(v, None).map(Note::Violation)),
            None => unexpected(),
        },
        (Op::Patch | Op::Delete, StatusCode::NOT_FOUND) if code == "not_found" => {
            (Class::NotFound, record.not_found().map(Note::Violation))
        }
        // The API timed out a request it may have completed.
        (_, StatusCode::SERVICE_UNAVAILABLE) if code == "timeout" => {
            if !matches!(op, Op::Get) {
                record.unknown();
            }
            (Class::Unknown, Some(Note::Refused(code)))
        }
        (_, StatusCode::SERVICE_UNAVAILABLE) if retry_after && !code.is_empty() => {
            (Class::Refused, Some(Note::Refused(code)))
        }
        _ => unexpected(),
    }
}

/// A valid place around Lisbon.
fn place(rng: &mut StdRng) -> Value {
    json!({
        "name": format!("place {}", rng.random_range(0..10_000)),
        "category": CATEGORIES[rng.random_range(0..CATEGORIES.len())],
        "rating": f64::from(rng.random_range(0..=50)) / 10.0,
        "price": rng.random_range(1..=4),
        "location": {
            "type": "Point",
            "coordinates": [rng.random_range(-9.25..-9.05), rng.random_range(38.65..38.80)],
        },
    })
}

/// A merge patch touching one field; a category change moves the entity between indexes.
fn patch(rng: &mut StdRng) -> Value {
    match rng.random_range(0..4) {
        0 => json!({ "rating": f64::from(rng.random_range(0..=50)) / 10.0 }),
        1 => json!({ "category": CATEGORIES[rng.random_range(0..CATEGORIES.len())] }),
        2 => json!({ "price": rng.random_range(1..=4) }),
        _ => json!({ "name": format!("renamed {}", rng.random_range(0..10_000)) }),
    }
}
