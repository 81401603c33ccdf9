//! Single-flight: concurrent callers asking for the same key share one execution of the work.
//! A storm of misses on one hot key therefore costs one store read (the role memcache leases play
//! at Facebook, here within one API process).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

type Calls<V> = Arc<Mutex<HashMap<String, Arc<OnceCell<V>>>>>;

pub struct SingleFlight<V> {
    calls: Calls<V>,
}

/// The value and whether this caller waited for another caller's work instead of doing it.
pub struct Flight<V> {
    pub value: V,
    pub coalesced: bool,
    /// Held by the caller that did the work: while it lives, later callers for the key still get
    /// this value. The cache-aside read keeps it until Redis is populated, so the misses that
    /// arrive between the store read and the populate do not read the store again.
    pub guard: Option<FlightGuard<V>>,
}

/// Ends a flight when dropped: the next caller for the key does fresh work.
pub struct FlightGuard<V> {
    calls: Calls<V>,
    key: String,
    cell: Arc<OnceCell<V>>,
}

impl<V> Drop for FlightGuard<V> {
    fn drop(&mut self) {
        let mut calls = lock(&self.calls);
        if calls
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            calls.remove(&self.key);
        }
    }
}

fn lock<V>(calls: &Calls<V>) -> std::sync::MutexGuard<'_, HashMap<String, Arc<OnceCell<V>>>> {
    // The map is only touched in short non-panicking sections; a poisoned lock still holds a
    // consistent map.
    calls
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<V: Clone> Default for SingleFlight<V> {
    fn default() -> Self {
        Self {
            calls: Arc::default(),
        }
    }
}

impl<V: Clone> SingleFlight<V> {
    /// Runs `work` unless a call for `key` is already in flight, in which case it waits for that
    /// call's value. If the caller doing the work is cancelled (its request dropped), one of the
    /// waiters runs its own `work` instead, so nobody waits on an abandoned call.
    pub async fn run<F, Fut>(&self, key: &str, work: F) -> Flight<V>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let cell = lock(&self.calls).entry(key.to_owned()).or_default().clone();
        let mut ran = false;
        let value = cell
            .get_or_init(|| {
                ran = true;
                work()
            })
            .await
            .clone();
        let guard = ran.then(|| FlightGuard {
            calls: self.calls.clone(),
            key: key.to_owned(),
            cell,
        });
        Flight {
            value,
            coalesced: !ran,
            guard,
        }
    }

    /// Keys with a flight open (for tests and introspection).
    pub fn in_flight(&self) -> usize {
        lock(&self.calls).len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn concurrent_callers_share_one_execution() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let executions = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..500)
            .map(|_| {
                let (flights, executions) = (flights.clone(), executions.clone());
                tokio::spawn(async move {
                    flights
                        .run("hot", || async {
                            executions.fetch_add(1, Ordering::SeqCst);
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            7
                        })
                        .await
                })
            })
            .collect();
        let mut coalesced = 0;
        let mut guards = Vec::new();
        for task in tasks {
            let flight = task.await.unwrap();
            assert_eq!(flight.value, 7);
            coalesced += usize::from(flight.coalesced);
            guards.extend(flight.guard);
        }
        assert_eq!(
            guards.len(),
            1,
            "only the caller that did the work holds the guard"
        );
        // While the guard lives, a late caller still shares the value.
        let late = flights.run("hot", || async { 9 }).await;
        assert_eq!((late.value, late.coalesced), (7, true));
        drop(guards);
        assert_eq!(executions.load(Ordering::SeqCst), 1);
        assert_eq!(coalesced, 499);
        assert_eq!(flights.in_flight(), 0);
        // Later calls do fresh work.
        let again = flights.run("hot", || async { 8 }).await;
        assert_eq!((again.value, again.coalesced), (8, false));
    }

    #[tokio::test(start_paused = true)]
    async fn a_cancelled_leader_hands_over_to_a_waiter() {
        let flights = Arc::new(SingleFlight::<u32>::default());
        let leader = {
            let flights = flights.clone();
            tokio::spawn(async move {
                flights
                    .run("k", || async {
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        let waiter = {
            let flights = flights.clone();
            tokio::spawn(async move { flights.run("k", || async { 2 }).await })
        };
        tokio::time::sleep(Duration::from_millis(1)).await;
        leader.abort();
        let flight = waiter.await.unwrap();
        assert_eq!((flight.value, flight.coalesced), (2, false));
        drop(flight);
        assert_eq!(flights.in_flight(), 0);
    }
}
