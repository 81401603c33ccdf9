//! The outbox's ordering value.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Strictly increasing per process, and close to wall-clock microseconds so that events of
/// different processes interleave roughly in time order.
#[derive(Debug, Default)]
pub struct SeqClock {
    last: AtomicU64,
}

impl SeqClock {
    pub fn next(&self) -> u64 {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_micros()).unwrap_or(u64::MAX)
            });
        let step = |last: u64| now.max(last.saturating_add(1));
        match self
            .last
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |last| Some(step(last)))
        {
            Ok(last) | Err(last) => step(last),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_is_strictly_increasing_and_near_wall_clock() {
        let clock = SeqClock::default();
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_micros() as u64;
        let seqs: Vec<u64> = (0..10_000).map(|_| clock.next()).collect();
        assert!(seqs.windows(2).all(|w| w[0] < w[1]));
        assert!(seqs[0] >= before);
        assert!(seqs[0] < before + 60_000_000);
    }

    #[test]
    fn seq_never_goes_back_when_the_clock_does() {
        let clock = SeqClock {
            last: AtomicU64::new(u64::MAX / 2),
        };
        assert_eq!(clock.next(), u64::MAX / 2 + 1);
        assert_eq!(clock.next(), u64::MAX / 2 + 2);
    }
}
