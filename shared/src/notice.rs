//! Near-cache notices: after applying a batch, the worker publishes which entities it applied at
//! which version, so every API instance can drop the older copies held in its in-process cache.
//!
//! Core NATS, not the event stream: the subject is `<subject_prefix>-notices.applied`, outside the
//! `<subject_prefix>.>` the stream captures, so notices are never stored or redelivered. A lost
//! notice costs at most the near-cache's `max_staleness` bound.
//!
//! The payload is JSON: `{"applied":[{"collection":"places","id":"p1","version":7}, ...]}`, one
//! message per batch.

use serde::{Deserialize, Serialize};

/// The subject notices are published on for a pipeline whose events are `<prefix>.<...>`.
pub fn subject(subject_prefix: &str) -> String {
    format!("{subject_prefix}-notices.applied")
}

/// One batch's applied entities.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedNotice {
    pub applied: Vec<AppliedEntity>,
}

/// An entity now in Redis at `version` (an upsert or a delete).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppliedEntity {
    pub collection: String,
    pub id: String,
    pub version: u64,
}

impl AppliedNotice {
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a notice always serialises")
    }

    pub fn decode(payload: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subject_is_outside_the_event_stream() {
        let subject = subject("cacheflow");
        assert_eq!(subject, "cacheflow-notices.applied");
        assert!(!subject.starts_with("cacheflow."));
    }

    #[test]
    fn a_notice_round_trips() {
        let notice = AppliedNotice {
            applied: vec![AppliedEntity {
                collection: "places".into(),
                id: "p1".into(),
                version: 7,
            }],
        };
        let encoded = notice.encode();
        assert_eq!(
            std::str::from_utf8(&encoded).unwrap(),
            r#"{"applied":[{"collection":"places","id":"p1","version":7}]}"#
        );
        assert_eq!(AppliedNotice::decode(&encoded).unwrap(), notice);
    }
}
