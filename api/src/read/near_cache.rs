//! The near-cache (L1): documents kept in the API's memory in front of Redis, bounded by bytes.
//!
//! What keeps it from serving stale data (docs/ARCHITECTURE.md, "Near-cache"):
//! - **Notices.** The worker publishes, after applying, "entity@version" notices on core NATS
//!   (`cacheflow_shared::notice`); each one leaves a marker holding that version, so the next read
//!   goes to Redis, and a Redis answer older than the marker is not kept.
//! - **Version-aware.** An entry is never replaced by an older version (per-key compute).
//! - **Hard bound.** An entry lives `max_staleness` at most (time to live from its insertion);
//!   after that the next read asks Redis again, whatever notices were lost.
//! - **NATS down.** While the API's NATS connection is not up, notices cannot arrive: the cache is
//!   flushed and bypassed, and flushed again once the connection is back.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::connection::State;
use cacheflow_shared::telemetry::names::{
    NEAR_CACHE_BYTES, NEAR_CACHE_EVICTIONS_TOTAL, NEAR_CACHE_HITS_TOTAL,
    NEAR_CACHE_INVALIDATIONS_TOTAL, NEAR_CACHE_MISSES_TOTAL,
};
use metrics::{Counter, Gauge};
use moka::notification::RemovalCause;
use moka::ops::compute::{CompResult, Op};
use moka::sync::Cache;

/// What a key holds: a document at a version, or only the version a notice announced (the
/// document is then read from Redis).
#[derive(Debug)]
struct Entry {
    json: Option<Vec<u8>>,
    version: u64,
}

/// Bytes counted for an entry besides its key and document (the entry, moka's bookkeeping).
const ENTRY_OVERHEAD: u32 = 96;

pub struct NearCache {
    cache: Cache<String, Arc<Entry>>,
    nats: async_nats::Client,
    /// Set while the NATS connection is found down: the cache was flushed and is bypassed.
    bypassing: AtomicBool,
    hits: Counter,
    misses: Counter,
    invalidations: Counter,
    bytes: Gauge,
}

impl NearCache {
    /// A near-cache of at most `max_bytes`, or `None` when `max_bytes` is 0 (turned off).
    pub fn new(max_bytes: u64, max_staleness: Duration, nats: async_nats::Client) -> Option<Self> {
        let hits = metrics::counter!(NEAR_CACHE_HITS_TOTAL);
        let misses = metrics::counter!(NEAR_CACHE_MISSES_TOTAL);
        let evictions = metrics::counter!(NEAR_CACHE_EVICTIONS_TOTAL);
        let invalidations = metrics::counter!(NEAR_CACHE_INVALIDATIONS_TOTAL);
        let bytes = metrics::gauge!(NEAR_CACHE_BYTES);
        if max_bytes == 0 {
            return None;
        }
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|key: &String, entry: &Arc<Entry>| {
                let document = entry.json.as_ref().map_or(0, Vec::len);
                u32::try_from(key.len() + document)
                    .unwrap_or(u32::MAX)
                    .saturating_add(ENTRY_OVERHEAD)
            })
            .time_to_live(max_staleness)
            .eviction_listener(move |_key, _entry, cause| {
                if cause == RemovalCause::Size {
                    evictions.increment(1);
                }
            })
            .build();
        Some(Self {
            cache,
            nats,
            bypassing: AtomicBool::new(false),
            hits,
            misses,
            invalidations,
            bytes,
        })
    }

    /// Whether the cache may be used now; flushes it when the NATS connection went down or came
    /// back (notices may have been missed in between).
    fn usable(&self) -> bool {
        let connected = self.nats.connection_state() == State::Connected;
        // Steady states: connected and in use, or down and bypassed.
        if connected != self.bypassing.load(Ordering::Relaxed) {
            return connected;
        }
        if self.bypassing.swap(!connected, Ordering::AcqRel) == connected {
            self.flush();
        }
        connected
    }

    /// The document held for `key` at a version of at least `min_version`.
    pub fn get(&self, key: &str, min_version: u64) -> Option<(Vec<u8>, u64)> {
        if !self.usable() {
            return None;
        }
        match self.cache.get(key) {
            Some(entry) if entry.version >= min_version => {
                if let Some(json) = &entry.json {
                    self.hits.increment(1);
                    return Some((json.clone(), entry.version));
                }
                self.misses.increment(1);
                None
            }
            _ => {
                self.misses.increment(1);
                None
            }
        }
    }

    /// Keeps `json` at `version` for `key`, unless a newer version is held or announced.
    pub fn insert(&self, key: &str, json: &[u8], version: u64) {
        if !self.usable() {
            return;
        }
        put(&self.cache, key, Some(json.to_vec()), version);
    }

    /// Brings moka's bookkeeping (expiry, evictions, the weighted size) up to date and exports
    /// the bytes held; run every second rather than on the read path.
    pub fn refresh_bytes(&self) {
        self.cache.run_pending_tasks();
        self.bytes.set(self.cache.weighted_size() as f64);
    }

    /// A notice: `key` is at `version` in Redis now; older copies are dropped.
    pub fn applied(&self, key: &str, version: u64) {
        if put(&self.cache, key, None, version) {
            self.invalidations.increment(1);
        }
    }

    /// Drops everything (NATS reconnected, an operator invalidated the cache).
    pub fn flush(&self) {
        self.cache.invalidate_all();
        self.bytes.set(0.0);
    }
}

/// Puts the entry unless the key holds this version or a newer one (a document at the same
/// version replaces a marker); true when something changed.
fn put(cache: &Cache<String, Arc<Entry>>, key: &str, json: Option<Vec<u8>>, version: u64) -> bool {
    let document = json.is_some();
    let result = cache.entry_by_ref(key).and_compute_with(|held| match held {
        Some(held)
            if held.value().version > version
                || (held.value().version == version
                    && (held.value().json.is_some() || !document)) =>
        {
            Op::Nop
        }
        _ => Op::Put(Arc::new(Entry { json, version })),
    });
    !matches!(result, CompResult::Unchanged(_) | CompResult::StillNone(_))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_never_replaced_by_an_older_version() {
        let cache = Cache::builder().max_capacity(1 << 20).build();
        let json = |j: &str| Some(j.as_bytes().to_vec());
        let held = |cache: &Cache<String, Arc<Entry>>| cache.get("k").unwrap();
        assert!(put(&cache, "k", json("v2"), 2));
        assert!(
            !put(&cache, "k", json("v1"), 1),
            "older never replaces newer"
        );
        assert_eq!(held(&cache).version, 2);
        assert!(
            put(&cache, "k", None, 3),
            "a notice of a newer version drops the document"
        );
        assert!(held(&cache).json.is_none());
        assert!(
            !put(&cache, "k", json("v2"), 2),
            "a read older than the notice is not kept"
        );
        assert!(put(&cache, "k", json("v3"), 3), "the announced version is");
        assert_eq!(held(&cache).json.as_deref(), Some(&b"v3"[..]));
        assert!(
            !put(&cache, "k", None, 3),
            "a notice of the held version keeps it"
        );
        assert!(!put(&cache, "k", json("v3"), 3));
    }
}
