//! Runs a workload in a closed loop (N users, each on its own connection, sending the next request
//! when the previous one answered) or an open loop (a fixed rate spread over C connections,
//! latency counted from each request's scheduled time; see [`crate::pacing`]). Every run ends by
//! itself: no request starts after the duration, each request is bounded by the timeout, and an
//! open-loop run that fell behind its schedule stops `timeout` after the duration, counting what
//! it did not send.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::SmallRng;
use rand::SeedableRng;
use tokio::sync::{watch, Semaphore};

use crate::http::{Answer, Client, Failure, Planned, Target};
use crate::pacing::{open_loop_latency, Schedule};
use crate::release::{self, Gate};
use crate::stats::Recorder;

/// How the load is applied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Load {
    Closed { users: u64 },
    Open { rate: f64, connections: u64 },
}

impl Load {
    pub fn connections(&self) -> u64 {
        match *self {
            Load::Closed { users } => users,
            Load::Open { connections, .. } => connections,
        }
    }
}

/// What a scenario sends, and what it does with the answers.
pub trait Workload: Send + Sync + 'static {
    /// Names of the kinds of request ([`Planned::op`] indexes this).
    fn ops(&self) -> &[&'static str];

    /// The request with sequence number `seq` (0-based, unique within a run; in open loop the
    /// schedule index).
    fn plan(&self, rng: &mut SmallRng, seq: u64) -> Planned;

    /// Called right before the request is written.
    fn before_send(&self, _planned: &Planned, _at: Instant) {}

    /// Called when the whole answer has arrived, at `at`.
    fn on_answer(&self, _planned: &Planned, _answer: &Answer, _at: Instant) {}

    /// Called when the request got no answer (failure or timeout).
    fn on_failure(&self, _planned: &Planned) {}
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub target: Arc<Target>,
    pub load: Load,
    pub duration: Duration,
    pub timeout: Duration,
    /// Seeds the users' random generators.
    pub seed: u64,
}

/// What a run measured.
#[derive(Debug)]
pub struct RunOutput {
    pub recorder: Recorder,
    /// From the start until the last request ended.
    pub elapsed: Duration,
    /// Open loop only: requests never sent because the run was too far behind at the end.
    pub unsent: u64,
    /// CPU this process used during the run.
    pub cpu: Option<Duration>,
}

struct Shared {
    spec: RunSpec,
    workload: Arc<dyn Workload>,
    seq: AtomicU64,
    ready: Semaphore,
    /// Open loop: where each connection waits for its requests' release (empty in closed loop).
    gates: Arc<[Gate]>,
}

/// Runs `workload` under `spec` and returns the merged measurements.
pub async fn run(spec: RunSpec, workload: Arc<dyn Workload>) -> anyhow::Result<RunOutput> {
    let workers = spec.load.connections();
    anyhow::ensure!(workers > 0, "at least one user or connection");
    anyhow::ensure!(
        workers <= u64::from(u32::MAX >> 3),
        "too many users or connections"
    );
    let ops = workload.ops().len();
    let gates: Arc<[Gate]> = match spec.load {
        Load::Open { connections, .. } => release::gates(connections).into(),
        Load::Closed { .. } => Arc::new([]),
    };
    let shared = Arc::new(Shared {
        spec,
        workload,
        seq: AtomicU64::new(0),
        ready: Semaphore::new(0),
        gates,
    });
    let (start_tx, start_rx) = watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for k in 0..workers {
        tasks.spawn(worker(k, shared.clone(), start_rx.clone()));
    }
    // Every connection is open (or failed to open) before the clock starts.
    shared
        .ready
        .acquire_many(workers as u32)
        .await
        .map_err(|_| anyhow::anyhow!("the run was cancelled"))?
        .forget();
    let cpu_before = crate::stats::process_cpu();
    let start = Instant::now() + Duration::from_millis(1);
    let releaser = match shared.spec.load {
        Load::Open { rate, connections } => {
            let schedule = Schedule::new(rate, connections);
            Some(release::spawn(
                schedule,
                schedule.total_within(shared.spec.duration),
                start,
                shared.gates.clone(),
                release::tick(rate),
            ))
        }
        Load::Closed { .. } => None,
    };
    start_tx
        .send(Some(start))
        .map_err(|_| anyhow::anyhow!("every user stopped before the start"))?;

    let mut recorder = Recorder::new(ops);
    let mut unsent = 0;
    while let Some(joined) = tasks.join_next().await {
        let (rec, left) = joined.map_err(|e| anyhow::anyhow!("a user task failed: {e}"))?;
        recorder.merge(&rec);
        unsent += left;
    }
    let elapsed = start.elapsed();
    if let Some(releaser) = releaser {
        // Only still running when connections gave up behind schedule.
        releaser.abort();
    }
    let cpu = match (cpu_before, crate::stats::process_cpu()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    Ok(RunOutput {
        recorder,
        elapsed,
        unsent,
        cpu,
    })
}

async fn worker(
    k: u64,
    shared: Arc<Shared>,
    mut start_rx: watch::Receiver<Option<Instant>>,
) -> (Recorder, u64) {
    let spec = &shared.spec;
    let mut client = Client::new(spec.target.clone());
    // A failure here shows as the first request's error.
    let _ = client.connect().await;
    shared.ready.add_permits(1);
    let start = match start_rx.wait_for(Option::is_some).await {
        Ok(start) => start.expect("waited for Some"),
        Err(_) => return (Recorder::new(shared.workload.ops().len()), 0),
    };
    let mut rng = SmallRng::seed_from_u64(spec.seed ^ k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut rec = Recorder::new(shared.workload.ops().len());
    let deadline = start + spec.duration;
    match spec.load {
        Load::Closed { .. } => {
            while Instant::now() < deadline {
                let seq = shared.seq.fetch_add(1, Ordering::Relaxed);
                let planned = shared.workload.plan(&mut rng, seq);
                let sent = Instant::now();
                let outcome = exchange(&shared, &mut client, &planned, &mut rec, |done| {
                    done.saturating_duration_since(sent)
                })
                .await;
                if outcome == Outcome::ConnectFailed {
                    // Do not spin on a refused connection.
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            (rec, 0)
        }
        Load::Open { rate, connections } => {
            let schedule = Schedule::new(rate, connections);
            let total = schedule.total_within(spec.duration);
            let give_up = deadline + spec.timeout;
            let mut free_at = start;
            let mut j = 0;
            loop {
                let i = schedule.index(k, j);
                if i >= total {
                    return (rec, 0);
                }
                let now = Instant::now();
                if now >= give_up {
                    return (rec, schedule.remaining(i, total));
                }
                let due = start + schedule.due(i);
                if due > now {
                    shared.gates[k as usize].wait(due).await;
                }
                let planned = shared.workload.plan(&mut rng, i);
                let sent = Instant::now();
                let mut done_at = sent;
                exchange(&shared, &mut client, &planned, &mut rec, |done| {
                    done_at = done;
                    open_loop_latency(due, free_at, sent, done)
                })
                .await;
                free_at = done_at.max(sent);
                j += 1;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failed,
    ConnectFailed,
}

/// Sends one request and records its outcome; `latency(done)` computes the latency to record.
async fn exchange(
    shared: &Shared,
    client: &mut Client,
    planned: &Planned,
    rec: &mut Recorder,
    mut latency: impl FnMut(Instant) -> Duration,
) -> Outcome {
    let workload = &shared.workload;
    workload.before_send(planned, Instant::now());
    let result = tokio::time::timeout(shared.spec.timeout, client.send(planned)).await;
    let done = Instant::now();
    let latency = latency(done);
    let stats = &mut rec.ops[planned.op];
    match result {
        Ok(Ok(answer)) => {
            workload.on_answer(planned, &answer, done);
            stats.record_x_cache(answer.x_cache());
            if answer.status.is_success() {
                stats.record_ok(latency);
                Outcome::Success
            } else {
                stats.record_error(format!("HTTP {}", answer.status.as_u16()));
                Outcome::Failed
            }
        }
        Ok(Err(failure)) => {
            workload.on_failure(planned);
            stats.record_error(failure.kind());
            match failure {
                Failure::Connect(_) => Outcome::ConnectFailed,
                Failure::Build(_) => {
                    eprintln!("{failure}");
                    Outcome::Failed
                }
                Failure::Http(_) => Outcome::Failed,
            }
        }
        Err(_) => {
            client.reset();
            workload.on_failure(planned);
            stats.record_error("timeout");
            Outcome::Failed
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::{BufRead as _, BufReader, Read as _, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::Mutex;

    use super::*;

    /// A tiny HTTP/1.1 server on a thread per connection: answers every request with
    /// `respond(request line)` = (status, extra headers, body), after `delay`.
    pub fn serve(
        delay: Duration,
        respond: impl Fn(&str) -> (u16, String, String) + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let respond = Arc::new(respond);
        let seen_by_server = seen.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                let (seen, respond) = (seen_by_server.clone(), respond.clone());
                std::thread::spawn(move || handle(stream, delay, &*respond, &seen));
            }
        });
        (url, seen)
    }

    fn handle(
        mut stream: TcpStream,
        delay: Duration,
        respond: &(dyn Fn(&str) -> (u16, String, String) + Send + Sync),
        seen: &Mutex<Vec<String>>,
    ) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                let header = header.trim_end();
                if header.is_empty() {
                    break;
                }
                if let Some((name, value)) = header.split_once(':') {
                    if name.eq_ignore_ascii_case("content-length") {
                        length = value.trim().parse().unwrap();
                    }
                }
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
            let line = line.trim_end().to_owned();
            seen.lock().unwrap().push(line.clone());
            std::thread::sleep(delay);
            let (status, headers, body) = respond(&line);
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n{headers}\r\n{body}",
                body.len()
            );
            if stream.write_all(reply.as_bytes()).is_err() {
                return;
            }
        }
    }

    struct Gets;

    impl Workload for Gets {
        fn ops(&self) -> &[&'static str] {
            &["get", "other"]
        }
        fn plan(&self, _rng: &mut SmallRng, seq: u64) -> Planned {
            Planned::get(usize::from(seq % 10 == 9), seq, format!("/v1/places/{seq}"))
        }
    }

    fn spec(url: &str, load: Load, duration_ms: u64) -> RunSpec {
        RunSpec {
            target: Target::parse(url).unwrap(),
            load,
            duration: Duration::from_millis(duration_ms),
            timeout: Duration::from_secs(2),
            seed: 1,
        }
    }

    #[tokio::test]
    async fn closed_loop_counts_answers_and_statuses() {
        let (url, seen) = serve(Duration::ZERO, |line| {
            if line.contains("/13 ") {
                (503, String::new(), String::new())
            } else {
                (200, "x-cache: hit\r\n".into(), "{}".into())
            }
        });
        let out = run(spec(&url, Load::Closed { users: 4 }, 300), Arc::new(Gets))
            .await
            .unwrap();
        let total = out.recorder.total();
        let sent = seen.lock().unwrap().len() as u64;
        assert!(sent > 20, "only {sent} requests");
        assert_eq!(total.ok + total.error_count(), sent);
        assert_eq!(total.errors.get("HTTP 503"), Some(&1));
        assert_eq!(total.x_cache["hit"], total.ok);
        // Every tenth request is the other kind.
        assert!(out.recorder.ops[1].ok > 0);
        assert!(out.elapsed >= Duration::from_millis(300));
        assert!(out.elapsed < Duration::from_secs(3));
        assert_eq!(out.unsent, 0);
    }

    #[tokio::test]
    async fn open_loop_sends_the_scheduled_number_of_requests() {
        let (url, seen) = serve(Duration::ZERO, |_| (200, String::new(), "ok".into()));
        let out = run(
            spec(
                &url,
                Load::Open {
                    rate: 200.0,
                    connections: 3,
                },
                500,
            ),
            Arc::new(Gets),
        )
        .await
        .unwrap();
        // 200/s for 0.5 s: exactly 100 requests, sequence numbers 0..100 once each.
        let mut paths: Vec<u64> = seen
            .lock()
            .unwrap()
            .iter()
            .map(|l| {
                l.split(' ').nth(1).unwrap()["/v1/places/".len()..]
                    .parse()
                    .unwrap()
            })
            .collect();
        paths.sort_unstable();
        assert_eq!(paths, (0..100).collect::<Vec<u64>>());
        assert_eq!(out.recorder.total().ok, 100);
        assert!(
            out.elapsed >= Duration::from_millis(495),
            "{:?}",
            out.elapsed
        );
    }

    #[tokio::test]
    async fn open_loop_charges_queueing_to_the_server() {
        // 20 ms per answer on one connection at 100/s: requests queue, so latencies grow well
        // beyond the service time.
        let (url, _) = serve(Duration::from_millis(20), |_| {
            (200, String::new(), String::new())
        });
        let out = run(
            spec(
                &url,
                Load::Open {
                    rate: 100.0,
                    connections: 1,
                },
                300,
            ),
            Arc::new(Gets),
        )
        .await
        .unwrap();
        let total = out.recorder.total();
        assert_eq!(total.ok, 30);
        let max_ms = total.latency.max() as f64 / 1000.0;
        assert!(max_ms > 200.0, "max {max_ms} ms: queueing was not counted");
        assert!(total.latency.min() >= 19_000, "{}", total.latency.min());
    }

    #[tokio::test]
    async fn refused_connections_are_errors_and_the_run_still_ends() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let out = run(
            spec(
                &format!("http://127.0.0.1:{port}"),
                Load::Closed { users: 2 },
                100,
            ),
            Arc::new(Gets),
        )
        .await
        .unwrap();
        let total = out.recorder.total();
        assert_eq!(total.ok, 0);
        assert!(total.errors.keys().all(|k| k.starts_with("connect")));
        assert!(total.error_count() > 0);
    }

    #[tokio::test]
    async fn timeouts_are_counted_and_unsent_requests_reported() {
        let (url, _) = serve(Duration::from_millis(400), |_| {
            (200, String::new(), String::new())
        });
        let mut spec = spec(
            &url,
            Load::Open {
                rate: 100.0,
                connections: 1,
            },
            200,
        );
        spec.timeout = Duration::from_millis(100);
        let out = run(spec, Arc::new(Gets)).await.unwrap();
        let total = out.recorder.total();
        assert_eq!(total.ok, 0);
        assert!(total.errors["timeout"] >= 2, "{:?}", total.errors);
        // 20 scheduled; every attempt takes the 100 ms timeout, so the run gives up 100 ms
        // after the end with some never sent.
        assert!(out.unsent > 0);
        assert_eq!(total.errors["timeout"] + out.unsent, 20);
        assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
    }
}
