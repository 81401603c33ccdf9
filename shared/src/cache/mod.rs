//! The cache side of the pipeline: what every projection writes, and the port that writes it.
//!
//! - [`plan`](mod@plan): the pure planner. One event + its collection's projections → the exact strings,
//!   hashes, sorted-set and geo memberships the entity must have. Nothing else decides what a
//!   projection writes: the worker, the API's cache-aside populate, backfill and replay all go
//!   through it (via [`CacheWriter`]), and the tests build their expected Redis state from it.
//! - [`error`]: [`CacheError`] with a [`CacheErrorKind`] telling *retry later* from *this event
//!   can never be applied* (dead-letter it) from *stop*.
//! - [`redis`]: the Redis adapter, a Lua script (loaded once, run by SHA, pipelined) that applies
//!   a plan atomically per entity and only if the event's version is newer than the cached one.
//! - [`status`]: the operator status kept in Redis: the last audit summary and the heartbeats.

pub mod error;
pub mod plan;
pub mod redis;
pub mod status;

use async_trait::async_trait;

use crate::event::Event;

pub use self::redis::ABSENT_MARKER;
pub use self::redis::{KeyLayout, RedisCacheWriter, RedisWriterOptions};
pub use error::{CacheError, CacheErrorKind};
pub use plan::{
    plan, plan_live, Action, Fallback, GeoMember, HashValue, Plan, Projections, ScoredMember,
    StringValue,
};

/// What applying one event did.
#[derive(Debug)]
pub enum ApplyOutcome {
    /// An upsert was written: the entity's projections now reflect this version.
    Applied,
    /// A delete was written: the entity left every structure and a tombstone holds its version.
    Deleted,
    /// A cache-aside populate of an absent entity left a short-lived "absent" marker.
    Absent,
    /// The cache already held this version or a newer one; nothing was written. Duplicates and
    /// out-of-order deliveries end here, which is what makes redelivery harmless.
    Stale,
    /// This event can never be applied (unknown collection, a document the projections cannot
    /// use, a write Redis refuses for this entity). The error's kind is
    /// [`CacheErrorKind::Poison`]; the worker dead-letters the event.
    Rejected(CacheError),
}

/// The cache-writer port.
#[async_trait]
pub trait CacheWriter: Send + Sync + 'static {
    /// Applies the events (each independently and atomically per entity, in the given order) and
    /// returns one outcome per event, in order.
    ///
    /// `Err` means nothing can be said about the batch: some events may have been applied, others
    /// not. Applying is idempotent, so the caller retries the whole batch when
    /// [`CacheError::is_retryable`], and must not acknowledge the events otherwise.
    async fn apply(&self, events: &[Event]) -> Result<Vec<ApplyOutcome>, CacheError>;

    /// Cache-aside populate from a store read, through the same versioned apply: writes the
    /// entity's projections at its store version (also when the cache holds that same version but
    /// lost the string to a TTL), or, for an absent entity, an "absent" marker under its read key
    /// for `negative_ttl`. A slow populate can never overwrite a newer version or resurrect a
    /// deleted entity: the script compares versions inside Redis.
    async fn fill(
        &self,
        collection: &str,
        id: &str,
        state: StoreState,
        negative_ttl: std::time::Duration,
    ) -> Result<ApplyOutcome, CacheError>;
}

/// What the store said about an entity when the API read it.
#[derive(Debug, Clone)]
pub enum StoreState {
    /// Live at this version with this document (including `id` and `version`).
    Live {
        version: u64,
        document: crate::document::Document,
    },
    /// Absent; `latest_version` is its tombstone's version, or 0 if never written.
    Absent { latest_version: u64 },
}

/// The key an entity is read from: the first `string` projection whose key needs only `{id}`.
/// `None` when the collection has no such projection (its reads go to the store).
pub fn read_key_template(
    collection: &crate::pipeline::Collection,
) -> Option<&crate::pipeline::KeyTemplate> {
    collection.projections.iter().find_map(|p| match &p.kind {
        crate::pipeline::ProjectionKind::String { key, .. } if key.fields().all(|f| f == "id") => {
            Some(key)
        }
        _ => None,
    })
}
