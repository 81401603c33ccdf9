//! Releases open-loop requests when they are due, to within a fraction of a millisecond.
//!
//! tokio's timers have a resolution of 1 ms: sleeping until each request's due time sends every
//! request due within the same millisecond at once, so at 30 000 req/s the system under test
//! receives a burst of 30 requests every millisecond, and the tail latency it is charged with is
//! mostly the queue each burst builds (in the server and in the generator reading the answers).
//! Instead an OS thread ticks every [`tick`] (sub-millisecond sleeps are precise), and on each tick
//! one task releases the requests that came due, in schedule order, by waking their connections'
//! [`Gate`]s.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::pacing::Schedule;

/// The finest tick: about the precision of a thread's sleep on a busy machine.
const FINEST_TICK: Duration = Duration::from_micros(100);
/// The coarsest: tokio's own timer resolution, for rates so low that bursts cannot form.
const COARSEST_TICK: Duration = Duration::from_millis(1);

/// How often requests are released at `rate` per second: about one request per tick.
pub fn tick(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate).clamp(FINEST_TICK, COARSEST_TICK)
}

/// Where connection `k` waits for its next request to be released.
#[derive(Debug, Default)]
pub struct Gate(Notify);

impl Gate {
    /// Returns once `due` has passed and the releaser has released the request due then. A
    /// release left over from a request the connection sent late (it was still busy when that
    /// one came due) only makes it look at the clock again.
    pub async fn wait(&self, due: Instant) {
        while Instant::now() < due {
            self.0.notified().await;
        }
    }
}

/// One gate per connection, for `connections` connections.
pub fn gates(connections: u64) -> Vec<Gate> {
    (0..connections).map(|_| Gate::default()).collect()
}

/// Releases the `total` requests of `schedule`, started at `start`, through `gates` (request
/// `i` belongs to connection `i % connections`). Ends once every request is released; abort it
/// to stop sooner.
pub fn spawn(
    schedule: Schedule,
    total: u64,
    start: Instant,
    gates: Arc<[Gate]>,
    tick: Duration,
) -> JoinHandle<()> {
    let ticks = Arc::new(Notify::new());
    start_ticking(Arc::downgrade(&ticks), tick);
    tokio::spawn(async move {
        let connections = gates.len() as u64;
        let mut next = 0;
        while next < total {
            ticks.notified().await;
            let now = Instant::now();
            while next < total && start + schedule.due(next) <= now {
                gates[(next % connections) as usize].0.notify_one();
                next += 1;
            }
        }
    })
}

/// The ticking thread: it stops once the releasing task is gone (the `Notify` is dropped).
fn start_ticking(ticks: Weak<Notify>, tick: Duration) {
    let spawned = std::thread::Builder::new()
        .name("loadtests-ticker".into())
        .spawn(move || {
            while let Some(ticks) = ticks.upgrade() {
                ticks.notify_one();
                drop(ticks);
                std::thread::sleep(tick);
            }
        });
    if let Err(err) = spawned {
        // Without ticks nothing would ever be released: fail loudly rather than hang.
        panic!("cannot start the load generator's ticking thread: {err}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_follows_the_rate_within_bounds() {
        assert_eq!(tick(30_000.0), FINEST_TICK);
        assert_eq!(tick(5_000.0), Duration::from_micros(200));
        assert_eq!(tick(1_000.0), COARSEST_TICK);
        assert_eq!(tick(10.0), COARSEST_TICK);
    }

    #[tokio::test]
    async fn releases_every_request_in_order_never_before_it_is_due() {
        let (rate, connections, total) = (20_000.0, 4u64, 400u64);
        let schedule = Schedule::new(rate, connections);
        let gates: Arc<[Gate]> = gates(connections).into();
        let start = Instant::now() + Duration::from_millis(2);
        let releaser = spawn(schedule, total, start, gates.clone(), tick(rate));
        let mut waiting = tokio::task::JoinSet::new();
        for k in 0..connections {
            let gates = gates.clone();
            waiting.spawn(async move {
                let mut early = Vec::new();
                let mut released = 0;
                let mut j = 0;
                while schedule.index(k, j) < total {
                    let due = start + schedule.due(schedule.index(k, j));
                    gates[k as usize].wait(due).await;
                    if Instant::now() < due {
                        early.push(j);
                    }
                    released += 1;
                    j += 1;
                }
                (released, early)
            });
        }
        let mut released = 0;
        while let Some(joined) = waiting.join_next().await {
            let (count, early) = joined.unwrap();
            assert!(early.is_empty(), "released before due: {early:?}");
            released += count;
        }
        assert_eq!(released, total);
        releaser.await.unwrap();
    }

    #[tokio::test]
    async fn a_late_connection_does_not_run_ahead_of_the_schedule() {
        // Connection 0 is busy past its first two due times; its left-over release must not
        // let its third request go before that one is due.
        let schedule = Schedule::new(1_000.0, 1);
        let gates: Arc<[Gate]> = gates(1).into();
        let start = Instant::now();
        let releaser = spawn(schedule, 20, start, gates.clone(), tick(1_000.0));
        tokio::time::sleep(Duration::from_millis(5)).await;
        for i in 0..20 {
            let due = start + schedule.due(i);
            gates[0].wait(due).await;
            assert!(Instant::now() >= due, "request {i} went early");
        }
        releaser.await.unwrap();
    }
}
