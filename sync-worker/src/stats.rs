//! What a run did. Logged when the worker stops (tests read it to see that every worker of a
//! shared consumer did part of the work).

use cacheflow_shared::cache::ApplyOutcome;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub batches: u64,
    /// Upserts written.
    pub applied: u64,
    /// Deletes written (tombstones).
    pub deleted: u64,
    /// Events the cache already had (duplicates, out of order, redeliveries).
    pub stale: u64,
    /// Poison events sent to the dead-letter subject.
    pub dead_lettered: u64,
    /// Messages in the stream that are not events (dead letters), acked without processing.
    pub skipped: u64,
    /// Acks that could not be sent (the message will be redelivered, harmlessly).
    pub ack_failures: u64,
}

impl Stats {
    pub fn count(&mut self, outcome: &ApplyOutcome) {
        match outcome {
            ApplyOutcome::Applied => self.applied += 1,
            ApplyOutcome::Deleted => self.deleted += 1,
            ApplyOutcome::Stale => self.stale += 1,
            // Only cache-aside populates leave absent markers; events never do.
            ApplyOutcome::Absent => self.stale += 1,
            ApplyOutcome::Rejected(_) => self.dead_lettered += 1,
        }
    }

    pub fn add(&mut self, other: &Stats) {
        self.batches += other.batches;
        self.applied += other.applied;
        self.deleted += other.deleted;
        self.stale += other.stale;
        self.dead_lettered += other.dead_lettered;
        self.skipped += other.skipped;
        self.ack_failures += other.ack_failures;
    }

    /// Events taken off the stream (acked or not).
    pub fn events(&self) -> u64 {
        self.applied + self.deleted + self.stale + self.dead_lettered
    }
}
