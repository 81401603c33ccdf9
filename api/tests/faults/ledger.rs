//! What the clients were told about each entity, and the check of the store against it.
//!
//! Each key is written by one workload task only, one request at a time, so "the last write" of
//! a key is well defined. A key's record follows the answers:
//!
//! - an acknowledged write (2xx) makes the outcome [`Expected::Known`]: the version from `ETag`
//!   and the document from the body (none after a delete);
//! - a write whose outcome the client could not learn (the connection broke after the request
//!   went out, or `503 timeout`) makes it [`Expected::Unknown`] until the next acknowledged one;
//! - a refused write (`503 store_unavailable`, a request that never connected) changes nothing:
//!   the API says it did not write.
//!
//! While a key is `Known`, the next acknowledged write must be exactly one version higher and a
//! read can never show a higher version: anything else means a write the client was told had
//! failed was applied after all. At the end the store must hold every `Known` key exactly, and
//! at least the highest acknowledged version of every other key.

use cacheflow_shared::store::DocumentStore;
use serde_json::Value;

pub const COLLECTION: &str = "places";

#[derive(Debug, Clone, PartialEq)]
pub enum Expected {
    /// Nothing was ever acknowledged and nothing may have been written.
    Untouched,
    Known {
        version: u64,
        /// `None`: deleted.
        document: Option<Value>,
    },
    /// A write's outcome is unknown; only versions are checked until the next acknowledged one.
    Unknown,
}

#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub expected: Expected,
    pub max_acked: Option<u64>,
}

impl Default for KeyRecord {
    fn default() -> Self {
        Self {
            expected: Expected::Untouched,
            max_acked: None,
        }
    }
}

impl KeyRecord {
    pub fn is_live(&self) -> bool {
        match &self.expected {
            Expected::Known { document, .. } => document.is_some(),
            Expected::Unknown => true,
            Expected::Untouched => false,
        }
    }

    /// An acknowledged write; returns a violation when its version is not the one the previous
    /// answers imply.
    pub fn acked(&mut self, version: u64, document: Option<Value>) -> Option<String> {
        let violation = match (&self.expected, self.max_acked) {
            (Expected::Untouched, _) if version != 1 => Some(format!(
                "the first acknowledged write got version {version}, not 1: an earlier write \
                 reported as failed was applied"
            )),
            (Expected::Known { version: known, .. }, _) if version != known + 1 => Some(format!(
                "an acknowledged write got version {version} right after version {known}: a write \
                 reported as failed was applied in between"
            )),
            (Expected::Unknown, Some(max)) if version <= max => Some(format!(
                "an acknowledged write got version {version}, not above the acknowledged {max}"
            )),
            _ => None,
        };
        if let Some(document) = &document {
            let in_body = document.get("version").and_then(Value::as_u64);
            if in_body != Some(version) {
                return Some(format!("ETag version {version}, body version {in_body:?}"));
            }
        }
        self.expected = Expected::Known { version, document };
        self.max_acked = Some(self.max_acked.map_or(version, |m| m.max(version)));
        violation
    }

    pub fn unknown(&mut self) {
        self.expected = Expected::Unknown;
    }

    /// A read answered 200 with `version`.
    pub fn read(&self, version: u64) -> Option<String> {
        match self.expected {
            Expected::Untouched => Some(format!(
                "a read found version {version} of an entity no write was acknowledged for"
            )),
            Expected::Known { version: known, .. } if version > known => Some(format!(
                "a read found version {version}, above the last acknowledged {known}: a write \
                 reported as failed was applied"
            )),
            _ => None,
        }
    }

    /// A PATCH or DELETE answered 404.
    pub fn not_found(&self) -> Option<String> {
        match &self.expected {
            Expected::Known {
                version,
                document: Some(_),
            } => Some(format!(
                "404 for an entity acknowledged live at version {version}"
            )),
            _ => None,
        }
    }
}

/// Compares the store with the records; returns one line per entity that breaks them.
pub async fn check_store(
    records: &[(String, KeyRecord)],
    store: &dyn DocumentStore,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (id, record) in records {
        let latest = store
            .latest_version(COLLECTION, id)
            .await
            .unwrap_or_else(|e| panic!("read the version of {id}: {e}"));
        let live = store
            .get(COLLECTION, id)
            .await
            .unwrap_or_else(|e| panic!("read {id}: {e}"));
        if let Some(max) = record.max_acked {
            if latest.is_none_or(|v| v < max) {
                problems.push(format!(
                    "{id}: the store holds version {latest:?}, below the acknowledged {max}"
                ));
                continue;
            }
        }
        match &record.expected {
            Expected::Untouched if latest.is_some() => problems.push(format!(
                "{id}: no write was acknowledged, yet the store holds version {latest:?}"
            )),
            Expected::Known { version, document } => {
                let held = live.map(|v| Value::Object(v.document));
                let state_ok = match (document, &held) {
                    (Some(expected), Some(doc)) => doc == expected,
                    (None, None) => true,
                    _ => false,
                };
                if latest != Some(*version) || !state_ok {
                    problems.push(format!(
                        "{id}: the last acknowledged write left version {version}: {}; the store \
                         holds version {latest:?}: {}",
                        show(document.as_ref()),
                        show(held.as_ref())
                    ));
                }
            }
            Expected::Untouched | Expected::Unknown => {}
        }
    }
    problems
}

fn show(document: Option<&Value>) -> String {
    document.map_or_else(|| "deleted".to_owned(), Value::to_string)
}
