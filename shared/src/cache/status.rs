//! The pipeline's status as kept in Redis, under the key prefix (not a generation, so it outlives
//! rebuilds), for operators (`GET /v1/admin/audit`, `GET /v1/admin/status`):
//!
//! - `<key_prefix>cacheflow:audit:last`: the most recent audit, an [`AuditSummary`] as JSON,
//!   written by `verify` and by the workers' sampled background audit.
//! - `<key_prefix>cacheflow:heartbeat:<collection>`: the last heartbeat's end-to-end lag, a hash
//!   `last_ms` (milliseconds, from the store commit to visible in Redis) and `at` (RFC 3339).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `<key_prefix>cacheflow:audit:last`.
pub fn audit_last_key(key_prefix: &str) -> String {
    format!("{key_prefix}cacheflow:audit:last")
}

/// `<key_prefix>cacheflow:heartbeat:<collection>`.
pub fn heartbeat_key(key_prefix: &str, collection: &str) -> String {
    format!("{key_prefix}cacheflow:heartbeat:{collection}")
}

/// Which kind of run an audit summary comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditSource {
    /// An operator's `verify` run (full, or `--sample`).
    Verify,
    /// A worker's sampled background audit.
    Background,
}

/// One audit of one or more collections.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditSummary {
    pub source: AuditSource,
    /// RFC 3339.
    pub finished_at: String,
    /// Live store documents compared, over all collections.
    pub checked: u64,
    /// Entities out of step after the run (with `--repair`: what the re-check still found).
    pub drifted: u64,
    /// `drifted / checked`, 0 when nothing was checked.
    pub inconsistency_rate: f64,
    pub collections: BTreeMap<String, CollectionAudit>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CollectionAudit {
    pub checked: u64,
    pub missing: u64,
    pub stale: u64,
    pub orphaned: u64,
    pub wrong_index: u64,
    /// The first drifted ids found (at most the run's `--list`), in the order found.
    pub drifted_ids: Vec<String>,
}

impl CollectionAudit {
    pub fn drifted(&self) -> u64 {
        self.missing + self.stale + self.orphaned + self.wrong_index
    }
}

/// `drifted / checked`, 0 when nothing was checked (an empty collection is consistent).
pub fn inconsistency_rate(drifted: u64, checked: u64) -> f64 {
    if checked == 0 {
        0.0
    } else {
        drifted as f64 / checked as f64
    }
}

impl AuditSummary {
    /// The summary of `collections`, totals computed.
    pub fn new(
        source: AuditSource,
        finished_at: String,
        collections: BTreeMap<String, CollectionAudit>,
    ) -> Self {
        let checked = collections.values().map(|c| c.checked).sum();
        let drifted = collections.values().map(CollectionAudit::drifted).sum();
        Self {
            source,
            finished_at,
            checked,
            drifted,
            inconsistency_rate: inconsistency_rate(drifted, checked),
            collections,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_has_the_documented_shape() {
        let places = CollectionAudit {
            checked: 1000,
            missing: 1,
            stale: 1,
            orphaned: 0,
            wrong_index: 0,
            drifted_ids: vec!["p1".into(), "p9".into()],
        };
        let summary = AuditSummary::new(
            AuditSource::Verify,
            "2026-12-07T07:00:00Z".into(),
            [("places".to_owned(), places)].into(),
        );
        let json = serde_json::to_value(&summary).unwrap();
        assert_eq!(
            json,
            serde_json::json!({ "source": "verify", "finished_at": "2026-12-07T07:00:00Z",
                "checked": 1000, "drifted": 2, "inconsistency_rate": 0.002,
                "collections": { "places": { "checked": 1000, "missing": 1, "stale": 1,
                    "orphaned": 0, "wrong_index": 0, "drifted_ids": ["p1", "p9"] } } })
        );
        assert_eq!(inconsistency_rate(0, 0), 0.0);
        assert_eq!(audit_last_key("t:"), "t:cacheflow:audit:last");
        assert_eq!(heartbeat_key("", "places"), "cacheflow:heartbeat:places");
    }
}
