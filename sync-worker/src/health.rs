//! The worker's health as the loop and the [`watchdog`](crate::watchdog) see it, and its two
//! endpoints on the metrics listener: `GET /healthz` (`200 {"status":"ok"}` while the process
//! runs) and `GET /readyz` (200 when the consumer is bound, NATS and Redis answer and the worker is
//! not stalled; else 503 naming what is wrong:
//! `{"status":"unready","checks":{"nats":"ok","redis":"down: ...","consumer":"ok","stall":"ok"}}`).
//!
//! The loop reports what it receives ([`Health::received`], [`Health::batch_done`],
//! [`Health::pull_failed`]); the watchdog reports what the consumer info says and decides when
//! the worker is stalled. Everything here is a few field updates under a short lock: the loop
//! calls it once per fetch, not per message.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use redis::aio::ConnectionManager;
use serde_json::{json, Value};
use tokio::sync::Notify;

/// Consecutive failed pulls after which the consumer check says so (and the loop warns): one
/// failed pull is a hiccup (a reconnect), a run of them means the pulls reach no consumer.
pub const PULL_FAILURES_UNREADY: u64 = 10;

/// What the health endpoints and the watchdog share with the loop.
pub struct Health {
    state: Mutex<Shared>,
    probes: OnceLock<Probes>,
    /// Notified when the watchdog re-created the consumer: a pull still waiting is abandoned and
    /// the next one starts on the new consumer.
    resubscribe: Notify,
}

/// How `/readyz` reaches the dependencies, known once start-up connected to them.
struct Probes {
    nats: async_nats::Client,
    redis: ConnectionManager,
    timeout: Duration,
}

#[derive(Debug)]
struct Shared {
    bound: bool,
    /// Why the last consumer-info read failed, if it did.
    consumer_error: Option<String>,
    /// Failed pulls in a row, and the last one's error.
    pull_failures: u64,
    last_pull_error: Option<String>,
    /// The last moment the worker had nothing to wait for: a message received, or the consumer
    /// seen with nothing pending. A stall is measured from here.
    quiet_since: Instant,
    /// Batches fetched and not finished: while they run (Redis down, a slow apply) the loop
    /// fetches nothing by design, which is not a stall.
    in_flight: usize,
    stalled: Option<String>,
    stalls: u64,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Mutex::new(Shared {
                bound: false,
                consumer_error: None,
                pull_failures: 0,
                last_pull_error: None,
                quiet_since: Instant::now(),
                in_flight: 0,
                stalled: None,
                stalls: 0,
            }),
            probes: OnceLock::new(),
            resubscribe: Notify::new(),
        }
    }
}

/// What one `/readyz` answer says about each check: `None` is ok.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Readiness {
    pub nats: Option<String>,
    pub redis: Option<String>,
    pub consumer: Option<String>,
    pub stall: Option<String>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        [&self.nats, &self.redis, &self.consumer, &self.stall]
            .iter()
            .all(|check| check.is_none())
    }

    pub fn to_json(&self) -> Value {
        let show = |check: &Option<String>| match check {
            None => "ok".to_owned(),
            Some(problem) => format!("down: {problem}"),
        };
        json!({
            "status": if self.is_ready() { "ready" } else { "unready" },
            "checks": {
                "nats": show(&self.nats),
                "redis": show(&self.redis),
                "consumer": show(&self.consumer),
                "stall": self.stall.as_ref().map_or_else(|| "ok".to_owned(), |s| format!("stalled: {s}")),
            },
        })
    }
}

impl Health {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn state(&self) -> std::sync::MutexGuard<'_, Shared> {
        // A panic while holding this lock leaves plain counters behind: still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Start-up reached the dependencies: `/readyz` probes them from now on.
    pub fn connected(&self, nats: async_nats::Client, redis: ConnectionManager, timeout: Duration) {
        let _ = self.probes.set(Probes {
            nats,
            redis,
            timeout,
        });
    }

    /// The durable consumer exists (created or updated at start-up, or re-created).
    pub fn bound(&self) {
        let mut state = self.state();
        state.bound = true;
        state.consumer_error = None;
        state.quiet_since = Instant::now();
    }

    /// A pull returned messages, now a batch in flight.
    pub fn received(&self) {
        let mut state = self.state();
        state.quiet_since = Instant::now();
        state.in_flight += 1;
        state.pull_failures = 0;
        state.last_pull_error = None;
        state.stalled = None;
    }

    pub fn batch_done(&self) {
        let mut state = self.state();
        state.in_flight = state.in_flight.saturating_sub(1);
    }

    /// A pull ended without messages; `error` when the server or the connection said why.
    /// Returns the number of failed pulls in a row.
    pub fn pull_ended(&self, error: Option<String>) -> u64 {
        let mut state = self.state();
        match error {
            Some(error) => {
                state.pull_failures += 1;
                state.last_pull_error = Some(error);
            }
            None => {
                state.pull_failures = 0;
                state.last_pull_error = None;
            }
        }
        state.pull_failures
    }

    /// A pull request could not even be sent. Same bookkeeping as an errored pull.
    pub fn pull_failed(&self, error: String) -> u64 {
        self.pull_ended(Some(error))
    }

    /// What the watchdog learnt from the consumer info: `Ok(pending)` or why it failed.
    pub(crate) fn consumer_seen(&self, seen: Result<bool, String>) {
        let mut state = self.state();
        match seen {
            Ok(waiting) => {
                state.consumer_error = None;
                if !waiting {
                    state.quiet_since = Instant::now();
                    state.stalled = None;
                }
            }
            Err(error) => state.consumer_error = Some(error),
        }
    }

    /// How long the worker has had messages waiting and received none, and whether batches are
    /// in flight (then the quiet is the loop's own choice).
    pub(crate) fn quiet(&self) -> (Duration, usize) {
        let state = self.state();
        (state.quiet_since.elapsed(), state.in_flight)
    }

    /// The watchdog found a stall and re-created the consumer: counted, shown by `/readyz` until
    /// messages flow again, and any waiting pull is abandoned.
    pub(crate) fn stalled(&self, why: String) {
        {
            let mut state = self.state();
            state.stalls += 1;
            state.stalled = Some(why);
            state.quiet_since = Instant::now();
        }
        self.resubscribe.notify_waiters();
    }

    /// Stalls found since start-up (the `cacheflow_worker_stalls_total` counter counts the same,
    /// when a recorder is installed).
    pub fn stalls(&self) -> u64 {
        self.state().stalls
    }

    /// Resolves when the watchdog re-creates the consumer.
    pub async fn resubscribed(&self) {
        self.resubscribe.notified().await;
    }

    /// The current readiness, probing NATS and Redis.
    pub async fn readiness(&self) -> Readiness {
        let (dependencies, consumer, stall) = {
            let state = self.state();
            let consumer = if !state.bound {
                Some("not bound yet".to_owned())
            } else if let Some(error) = &state.consumer_error {
                Some(error.clone())
            } else if state.pull_failures >= PULL_FAILURES_UNREADY {
                Some(format!(
                    "{} pulls in a row failed, the last: {}",
                    state.pull_failures,
                    state.last_pull_error.as_deref().unwrap_or("")
                ))
            } else {
                None
            };
            (self.probes.get(), consumer, state.stalled.clone())
        };
        let (nats, redis) = match dependencies {
            None => (
                Some("not connected yet".to_owned()),
                Some("not connected yet".to_owned()),
            ),
            Some(probes) => {
                let nats = match probes.nats.connection_state() {
                    async_nats::connection::State::Connected => None,
                    other => Some(format!("connection {other}")),
                };
                let mut conn = probes.redis.clone();
                let cmd = redis::cmd("PING");
                let ping = cmd.query_async::<String>(&mut conn);
                let redis = match tokio::time::timeout(probes.timeout, ping).await {
                    Ok(Ok(_)) => None,
                    Ok(Err(err)) => Some(err.to_string()),
                    Err(_) => Some(format!("no answer within {:?}", probes.timeout)),
                };
                (nats, redis)
            }
        };
        Readiness {
            nats,
            redis,
            consumer,
            stall,
        }
    }
}

/// `GET /healthz` and `GET /readyz`, merged into the metrics listener's router.
pub fn router(health: Arc<Health>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(health)
}

async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

async fn readyz(State(health): State<Arc<Health>>) -> impl IntoResponse {
    let readiness = health.readiness().await;
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unready_until_bound_and_connected_and_names_each_problem() {
        let health = Health::new();
        let readiness = health.readiness().await;
        assert!(!readiness.is_ready());
        let body = readiness.to_json();
        assert_eq!(body["status"], "unready");
        assert_eq!(body["checks"]["consumer"], "down: not bound yet");
        assert_eq!(body["checks"]["nats"], "down: not connected yet");
        assert_eq!(body["checks"]["stall"], "ok");

        health.bound();
        for _ in 0..PULL_FAILURES_UNREADY {
            health.pull_ended(Some("503 no responders".into()));
        }
        let consumer = health.readiness().await.consumer.expect("pulls failing");
        assert!(consumer.contains("503 no responders"), "{consumer}");
        // One pull with messages clears it.
        health.received();
        assert_eq!(health.readiness().await.consumer, None);

        health.stalled("3 pending".into());
        assert_eq!(health.stalls(), 1);
        let body = health.readiness().await.to_json();
        assert_eq!(body["checks"]["stall"], "stalled: 3 pending");
        health.consumer_seen(Ok(false));
        assert_eq!(health.readiness().await.stall, None);
    }
}
