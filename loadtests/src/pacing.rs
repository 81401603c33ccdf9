//! Open-loop pacing: when each request is due, which connection sends it, and which part of its
//! latency the system under test caused.
//!
//! Request `i` (0-based) of an open-loop run is due `i / rate` seconds after the start, whatever
//! the answers' latency; connection `k` of `c` sends requests `k, k + c, k + 2c, …` (wrk2's model,
//! with the connections' schedules interleaved so they do not fire together).

use std::time::{Duration, Instant};

/// The schedule of an open-loop run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Schedule {
    rate: f64,
    connections: u64,
}

impl Schedule {
    /// `rate` requests per second in total, spread over `connections` connections.
    pub fn new(rate: f64, connections: u64) -> Self {
        assert!(
            rate.is_finite() && rate > 0.0,
            "the rate must be a positive number"
        );
        assert!(connections > 0, "at least one connection");
        Self { rate, connections }
    }

    /// When request `i` is due, after the start of the run.
    pub fn due(&self, i: u64) -> Duration {
        // Nanoseconds in f64 are exact up to 2^53 ns (104 days): plenty.
        Duration::from_nanos((i as f64 * 1e9 / self.rate).round() as u64)
    }

    /// The `j`-th request (0-based) that connection `k` sends.
    pub fn index(&self, connection: u64, j: u64) -> u64 {
        connection + j * self.connections
    }

    /// How many requests are due strictly within the first `duration` of the run.
    pub fn total_within(&self, duration: Duration) -> u64 {
        // The smallest i with due(i) >= duration, found from the estimate and corrected for
        // rounding, so that it agrees with `due` exactly.
        let mut n = (duration.as_secs_f64() * self.rate).ceil() as u64;
        while n > 0 && self.due(n - 1) >= duration {
            n -= 1;
        }
        while self.due(n) < duration {
            n += 1;
        }
        n
    }

    /// How many of the requests with index `>= from` (in `connection`'s share) are below `total`:
    /// what a connection leaves unsent when it stops at index `from`.
    pub fn remaining(&self, from: u64, total: u64) -> u64 {
        if from >= total {
            0
        } else {
            (total - from).div_ceil(self.connections)
        }
    }
}

/// The latency of one open-loop request, corrected for coordinated omission but not charged with
/// the load generator's own release slack:
/// - the connection was still busy with its previous request when this one was due (`free_at >
///   due`): the request queued behind the system under test, so the latency counts from `due`;
/// - the connection was idle at `due`: any delay between `due` and `sent` is the generator's own
///   (its release tick, see [`crate::release`], and its scheduling), so the latency counts from
///   `sent`.
pub fn open_loop_latency(due: Instant, free_at: Instant, sent: Instant, done: Instant) -> Duration {
    if free_at > due {
        done.saturating_duration_since(due)
    } else {
        done.saturating_duration_since(sent)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn due_times_are_evenly_spaced() {
        let s = Schedule::new(1000.0, 4);
        assert_eq!(s.due(0), Duration::ZERO);
        assert_eq!(s.due(1), Duration::from_millis(1));
        assert_eq!(s.due(1500), Duration::from_millis(1500));
        let s = Schedule::new(3.0, 1);
        assert_eq!(s.due(1), Duration::from_nanos(333_333_333));
        assert_eq!(s.due(3), Duration::from_secs(1));
        // Fractional rates.
        let s = Schedule::new(0.5, 1);
        assert_eq!(s.due(2), Duration::from_secs(4));
    }

    #[test]
    fn connections_share_every_index_exactly_once() {
        let s = Schedule::new(12_345.0, 7);
        let total = s.total_within(Duration::from_millis(100));
        let mut seen = HashSet::new();
        for k in 0..7 {
            let mut j = 0;
            loop {
                let i = s.index(k, j);
                if i >= total {
                    break;
                }
                assert!(seen.insert(i), "index {i} sent twice");
                j += 1;
            }
        }
        assert_eq!(seen.len() as u64, total);
        assert!((0..total).all(|i| seen.contains(&i)));
    }

    #[test]
    fn total_within_matches_the_due_times() {
        for (rate, ms) in [
            (1000.0, 1000),
            (1000.0, 1),
            (3.0, 1000),
            (7.5, 2000),
            (20_000.0, 12_345),
            (0.3, 100),
        ] {
            let s = Schedule::new(rate, 3);
            let d = Duration::from_millis(ms);
            let n = s.total_within(d);
            assert!(n == 0 || s.due(n - 1) < d, "rate {rate}, {ms} ms: {n}");
            assert!(s.due(n) >= d, "rate {rate}, {ms} ms: {n}");
        }
        // 1,000/s for 1 s: requests 0..=999 (request 1000 is due at exactly 1 s).
        assert_eq!(
            Schedule::new(1000.0, 1).total_within(Duration::from_secs(1)),
            1000
        );
        assert_eq!(
            Schedule::new(1000.0, 1).total_within(Duration::from_micros(1500)),
            2
        );
        assert_eq!(Schedule::new(5.0, 1).total_within(Duration::ZERO), 0);
    }

    #[test]
    fn remaining_counts_the_connections_share() {
        let s = Schedule::new(100.0, 4);
        // Connection 1 stopping at index 5 (its 2nd request) of 20 leaves 5, 9, 13, 17.
        assert_eq!(s.remaining(5, 20), 4);
        assert_eq!(s.remaining(17, 20), 1);
        assert_eq!(s.remaining(20, 20), 0);
        assert_eq!(s.remaining(25, 20), 0);
        assert_eq!(Schedule::new(1.0, 1).remaining(0, 3), 3);
    }

    #[test]
    fn latency_attribution() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        // Idle connection, timer fired 0.8 ms late: the slack is not the server's.
        let due = t0 + ms(10);
        assert_eq!(
            open_loop_latency(
                due,
                t0 + ms(5),
                due + Duration::from_micros(800),
                due + ms(3)
            ),
            ms(3) - Duration::from_micros(800)
        );
        // Busy connection: the previous answer came 4 ms after this request was due.
        assert_eq!(
            open_loop_latency(due, due + ms(4), due + ms(4), due + ms(6)),
            ms(6)
        );
        // Free exactly when due, sent on time.
        assert_eq!(open_loop_latency(due, due, due, due + ms(1)), ms(1));
        // Never negative.
        assert_eq!(open_loop_latency(due, t0, due, due), Duration::ZERO);
    }

    #[test]
    #[should_panic(expected = "positive")]
    fn zero_rate_is_refused() {
        let _ = Schedule::new(0.0, 1);
    }
}
