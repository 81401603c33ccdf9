//! `cacheflow_cache_requests_total{collection, result}`, with the handles of each collection's
//! series kept: a cache hit records into one without building a metrics key.

use std::collections::HashMap;
use std::sync::OnceLock;

use cacheflow_shared::telemetry::names::CACHE_REQUESTS_TOTAL;
use metrics::Counter;

/// How a read was answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CacheResult {
    Hit,
    NegativeHit,
    Miss,
    Bypass,
}

impl CacheResult {
    const ALL: [CacheResult; 4] = [Self::Hit, Self::NegativeHit, Self::Miss, Self::Bypass];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hit => "hit",
            Self::NegativeHit => "negative_hit",
            Self::Miss => "miss",
            Self::Bypass => "bypass",
        }
    }
}

/// One lazily registered counter per (collection, result) of the pipeline.
#[derive(Debug, Default)]
pub struct CacheCounters {
    collections: HashMap<String, [OnceLock<Counter>; CacheResult::ALL.len()]>,
}

impl CacheCounters {
    pub fn new<'a>(collections: impl IntoIterator<Item = &'a str>) -> Self {
        Self {
            collections: collections
                .into_iter()
                .map(|c| (c.to_owned(), Default::default()))
                .collect(),
        }
    }

    pub fn count(&self, collection: &str, result: CacheResult) {
        self.count_n(collection, result, 1);
    }

    pub fn count_n(&self, collection: &str, result: CacheResult, n: u64) {
        let Some(series) = self.collections.get(collection) else {
            // Not a collection of the pipeline (reads of those never reach Redis): no handle kept.
            return counter(collection, result).increment(n);
        };
        series[result as usize]
            .get_or_init(|| counter(collection, result))
            .increment(n);
    }
}

fn counter(collection: &str, result: CacheResult) -> Counter {
    metrics::counter!(
        CACHE_REQUESTS_TOTAL,
        "collection" => collection.to_owned(),
        "result" => result.as_str()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_index_their_own_series() {
        for (i, result) in CacheResult::ALL.iter().enumerate() {
            assert_eq!(*result as usize, i);
        }
        let names: Vec<_> = CacheResult::ALL.iter().map(|r| r.as_str()).collect();
        assert_eq!(names, ["hit", "negative_hit", "miss", "bypass"]);
    }

    #[test]
    fn handles_are_registered_on_first_use() {
        let counters = CacheCounters::new(["places"]);
        counters.count("places", CacheResult::Hit);
        counters.count("other", CacheResult::Miss);
        let places = &counters.collections["places"];
        assert!(places[CacheResult::Hit as usize].get().is_some());
        assert!(places[CacheResult::Miss as usize].get().is_none());
        assert!(!counters.collections.contains_key("other"));
    }
}
