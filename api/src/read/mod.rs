//! The read side: cache-aside entity reads with single-flight, batch reads, and the structure
//! queries (nearest, top-N, hash fields) served from Redis, with the store as the fallback when
//! Redis is unreachable.
//!
//! - [`views`]: which Redis keys serve which read, derived once from the pipeline.
//! - [`redis_reads`]: the Redis commands, each with a timeout.
//! - [`single_flight`]: one store read per hot-key miss storm.
//! - [`entity`]: `GET /{collection}/{id}` and `GET /{collection}?ids=`.
//! - [`queries`]: nearest, top-N and hash fields.
//! - [`populate`]: writing store reads back to Redis through the versioned apply.
//! - [`generations`]: following each collection's active cache generation.
//! - [`near_cache`]: the in-process L1 in front of Redis, kept honest by [`notices`].
//! - [`invalidate`]: operators' removal of cache entries (the next read repopulates them).

pub mod cache_counters;
pub mod consistency;
pub mod entity;
pub mod generations;
pub mod invalidate;
pub mod near_cache;
pub mod notices;
pub mod populate;
pub mod queries;
pub mod redis_reads;
pub mod single_flight;
pub mod views;

use std::sync::Arc;

use cacheflow_shared::cache::redis::generations::ActiveLayouts;
use cacheflow_shared::cache::KeyLayout;
use cacheflow_shared::store::{DocumentStore, StoreError, Versioned};

use self::cache_counters::CacheCounters;
use self::near_cache::NearCache;
use self::populate::Populator;
use self::redis_reads::RedisReads;
use self::single_flight::SingleFlight;

/// Where an answer came from, reported as `X-Cache`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Everything came from Redis.
    Hit,
    /// Some or all of it came from the store; Redis is being populated.
    Miss,
    /// Redis was unreachable; the store answered.
    Bypass,
}

impl CacheStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CacheStatus::Hit => "hit",
            CacheStatus::Miss => "miss",
            CacheStatus::Bypass => "bypass",
        }
    }
}

/// A store read's result, shared by every waiter of a single flight (so is its error).
pub type StoreRead = Result<Option<Versioned>, Arc<StoreError>>;

/// What a single flight fetched, and whether it had to ask the store for it.
#[derive(Clone)]
pub struct Fetched {
    pub read: StoreRead,
    /// False when a re-check found Redis already populated: nothing to populate then.
    pub from_store: bool,
}

pub struct Reader {
    pub(crate) redis: RedisReads,
    pub(crate) store: Arc<dyn DocumentStore>,
    /// Each collection's active generation, refreshed in the background: a read resolves its
    /// layout here (a lock and a pointer copy), never with a round trip to Redis.
    pub(crate) layouts: ActiveLayouts,
    pub(crate) flights: SingleFlight<Fetched>,
    pub(crate) populator: Populator,
    pub(crate) views: views::Views,
    pub(crate) counters: CacheCounters,
    /// The in-process L1 in front of Redis; `None` when turned off.
    pub(crate) near: Option<NearCache>,
}

impl Reader {
    pub fn new(
        redis: RedisReads,
        store: Arc<dyn DocumentStore>,
        layouts: ActiveLayouts,
        populator: Populator,
        views: views::Views,
    ) -> Self {
        Self {
            redis,
            store,
            layouts,
            flights: SingleFlight::default(),
            populator,
            counters: CacheCounters::new(views.names()),
            views,
            near: None,
        }
    }

    /// Serves entity reads from `near` first.
    pub fn with_near_cache(mut self, near: Option<NearCache>) -> Self {
        self.near = near;
        self
    }

    /// A worker notice: `collection`/`id` is at `version` in Redis now.
    pub fn applied(&self, collection: &str, id: &str, version: u64) {
        let Some(near) = &self.near else { return };
        if let Some(read_key) = self.views.get(collection).and_then(|v| v.read_key(id)) {
            near.applied(&self.layout(collection).key(&read_key), version);
        }
    }

    /// Drops the near-cache's entries (an operator's invalidation).
    pub fn flush_near_cache(&self) {
        if let Some(near) = &self.near {
            near.flush();
        }
    }

    pub fn views(&self) -> &views::Views {
        &self.views
    }

    /// The layout `collection` is read from now (its active generation).
    pub fn layout(&self, collection: &str) -> Arc<KeyLayout> {
        self.layouts.layout(collection)
    }
}

/// Reads the `version` of a document's JSON without building the whole document.
pub(crate) fn version_of(json: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Head {
        version: u64,
    }
    trailing_version(json).or_else(|| serde_json::from_slice::<Head>(json).ok().map(|h| h.version))
}

/// The version of a document as the pipeline writes it, compact with `version` stamped last
/// (`…,"version":7}`), read from its last bytes instead of parsing it all: every cache hit needs
/// it for the `ETag`. `None` for any other shape, which the full parse then handles.
///
/// Sound for valid JSON: the final `}` closes the top-level object, so the digits before it are
/// its last member's value, and a `"version"` key preceded by `,` or `{` cannot be the tail of a
/// longer string (an escaped quote inside one is preceded by `\`).
fn trailing_version(json: &[u8]) -> Option<u64> {
    let body = json.strip_suffix(b"}")?;
    let digits_at = body.iter().rposition(|b| !b.is_ascii_digit())? + 1;
    let digits = &body[digits_at..];
    let key = body[..digits_at].strip_suffix(b"\"version\":")?;
    if digits.is_empty() || !matches!(key.last(), Some(b',' | b'{')) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_version_is_read_from_the_tail_or_by_parsing() {
        let cases: [(&str, Option<u64>); 9] = [
            (r#"{"name":"a","id":"p1","version":7}"#, Some(7)),
            (r#"{"version":18446744073709551615}"#, Some(u64::MAX)),
            // Not last, or not compact: the full parse finds it.
            (r#"{"version":3,"name":"a"}"#, Some(3)),
            (r#"{"name":"a", "version": 4 }"#, Some(4)),
            // A nested `version` is not the document's.
            (r#"{"a":{"version":5}}"#, None),
            // The tail of a longer key (an escaped quote) is not the key `version`.
            (r#"{"x\"version":6}"#, None),
            (r#"{"name":"a","version":"7"}"#, None),
            (r#"{"version":-1}"#, None),
            ("not json", None),
        ];
        for (json, expected) in cases {
            assert_eq!(version_of(json.as_bytes()), expected, "{json}");
        }
        // Whatever the fast path answers, the full parse agrees.
        for (json, _) in cases {
            if let Some(fast) = trailing_version(json.as_bytes()) {
                let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
                assert_eq!(parsed["version"].as_u64(), Some(fast), "{json}");
            }
        }
    }
}
