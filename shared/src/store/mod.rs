//! The document-store port and its adapters.
//!
//! The store is the system of record. Every write gives the entity a strictly higher version
//! (a delete leaves a tombstone that keeps its version, so a re-created entity continues above it)
//! and records the write's [`Event`] in a transactional outbox *atomically with the write*; the
//! outbox relay publishes it later. An acknowledged write therefore always has its event.
//!
//! Besides reads by id, the port answers the two *structure queries* that Redis normally serves
//! from sorted-set and geo projections ([`DocumentStore::top_by_score`], [`DocumentStore::near`]),
//! so the API can still answer them from the system of record while Redis is unreachable.
//!
//! - [`sqlite`]: embedded SQLite (WAL), the default for a laptop and for CI.
//! - [`mongo`]: MongoDB through the official driver, the production store.

pub mod instrumented;
pub mod mongo;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::document::Document;
use crate::event::Event;
use crate::pipeline::{DocumentError, Pipeline};
use crate::redact::SecretUrl;

/// A live entity as the store holds it. `document` includes the server-owned `id` and `version`.
#[derive(Debug, Clone, PartialEq)]
pub struct Versioned {
    pub version: u64,
    pub document: Document,
}

/// `If-Match` as the store sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precondition {
    #[default]
    None,
    /// `If-Match: "<v>"`: the entity must currently be live at exactly this version.
    IfMatch(u64),
    /// `If-Match: *`: the entity must currently be live (replace, never create).
    IfExists,
    /// `If-None-Match: *`: the entity must not be live (create, never replace).
    IfAbsent,
}

impl Precondition {
    /// Checks the precondition against the current live version (`None` = absent or tombstoned).
    pub fn check(self, live_version: Option<u64>) -> Result<(), StoreError> {
        match self {
            Precondition::None => Ok(()),
            Precondition::IfMatch(expected) if live_version == Some(expected) => Ok(()),
            Precondition::IfExists if live_version.is_some() => Ok(()),
            Precondition::IfAbsent if live_version.is_none() => Ok(()),
            Precondition::IfMatch(_) | Precondition::IfExists | Precondition::IfAbsent => {
                Err(StoreError::PreconditionFailed {
                    current: live_version,
                })
            }
        }
    }
}

/// The result of a successful write.
#[derive(Debug, Clone)]
pub struct WriteOutcome {
    /// True when the entity did not exist (or was a tombstone) before this write.
    pub created: bool,
    pub version: u64,
    /// The stored document (with `id` and `version`); `None` after a delete.
    pub document: Option<Document>,
    /// The event recorded in the outbox with this write.
    pub event: Event,
}

/// One answer of a structure query: the live document and the number it was ranked by.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub document: Versioned,
    /// [`DocumentStore::top_by_score`]: the score; [`DocumentStore::near`]: the distance in metres.
    pub value: f64,
}

/// The Earth radius, in metres, that Redis's geo commands use (`EARTH_RADIUS_IN_METERS` in
/// `geohash_helper.c`). [`DocumentStore::near`] measures with it in every adapter so that its
/// distances, and which documents fall inside a radius, agree with `GEOSEARCH`.
pub const EARTH_RADIUS_M: f64 = 6_372_797.560_856;

/// One event waiting in the outbox.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingEvent {
    /// Position in the outbox; per entity, events come out in version order.
    pub seq: u64,
    pub event: Event,
}

/// Validates a document against what its collection's projections need (used by PATCH, which can
/// only check the merged result inside the store's read-modify-write).
pub type Validator = Arc<dyn Fn(&Document) -> Result<(), DocumentError> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("not found")]
    NotFound,
    #[error("precondition failed: the current version is {current:?}")]
    PreconditionFailed { current: Option<u64> },
    /// The merged document of a PATCH breaks what a projection needs.
    #[error(transparent)]
    Invalid(#[from] DocumentError),
    /// Concurrent writers kept changing the entity; the caller may retry.
    #[error("the entity changed concurrently; retry the request")]
    Conflict,
    /// The store could not be reached or timed out before doing anything: nothing was written.
    /// Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A write was sent but not confirmed (it timed out, or the connection dropped): it may or
    /// may not have been applied. Not retryable blindly: the caller must read before retrying.
    #[error("write outcome unknown: {0}")]
    Indeterminate(String),
    /// A bug or corrupted data; not retryable.
    #[error("store error: {0}")]
    Internal(String),
}

impl StoreError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Conflict)
    }
}

/// The document-store port. Adapters must pass `shared/tests/store_contract.rs`.
#[async_trait]
pub trait DocumentStore: Send + Sync + 'static {
    /// Creates or replaces a live document. `document` is the client's object; the adapter sets
    /// `id` and `version`.
    async fn put(
        &self,
        collection: &str,
        id: &str,
        document: Document,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError>;

    /// Applies an RFC 7396 merge patch to a live document. `NotFound` if absent or tombstoned.
    /// The merged document (before stamping) is checked with `validate`.
    async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: serde_json::Value,
        precondition: Precondition,
        validate: Validator,
    ) -> Result<WriteOutcome, StoreError>;

    /// Deletes a live document, leaving a tombstone at a higher version. `NotFound` if absent or
    /// already deleted.
    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError>;

    /// The live document, if any (tombstones read as `None`).
    async fn get(&self, collection: &str, id: &str) -> Result<Option<Versioned>, StoreError>;

    /// Live documents for many ids, in the order asked (`None` for absent or tombstoned).
    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError>;

    /// Live documents with id greater than `after` in id order, at most `limit` (for backfill).
    async fn scan(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned>, StoreError>;

    /// How many live documents `collection` holds (progress and ETA of backfill and verify).
    async fn count_live(&self, collection: &str) -> Result<u64, StoreError>;

    /// The entity's latest version including tombstones (`None` if never written).
    async fn latest_version(&self, collection: &str, id: &str) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` unpublished events, oldest first; events of one entity in version order.
    /// Never returns an event whose [`mark_published`](Self::mark_published) completed before the
    /// call (the relay's marker relies on it).
    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>, StoreError>;

    /// Removes published events from the outbox. Unknown ids are ignored.
    async fn mark_published(&self, events: &[PendingEvent]) -> Result<(), StoreError>;

    /// Number of events waiting in the outbox.
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// Appends a heartbeat of `collection` ([`Event::heartbeat`](crate::event::Event::heartbeat))
    /// to the outbox, committed like a write's event but changing no document (no live document
    /// appears, none is counted).
    async fn heartbeat(&self, collection: &str) -> Result<(), StoreError>;

    /// Live documents whose `equals` fields match exactly, ordered by the numeric top-level field
    /// `score_field` descending (ties: id ascending), skipping `offset`, at most `limit`; each
    /// with its score. This answers a sorted-set projection's top-N from the store when Redis is
    /// unreachable, `equals` holding the key template's fields (e.g. `category = "cafe"`).
    ///
    /// Matching is JSON equality on top-level fields with one widening: numbers compare by value,
    /// so `1` matches `1.0` (as MongoDB compares them). A string never matches a number, a boolean
    /// never matches `0`/`1`, `null` matches an explicit `null` only, and an array never matches
    /// one of its elements. `equals` values must be scalars (key-template fields are strings or
    /// integers); an object or array is refused with `Internal`.
    ///
    /// Documents whose score field is missing or not a number (an integer or a float; not a
    /// numeric string, a boolean or an array) are left out. Field names must match
    /// `[A-Za-z_][A-Za-z0-9_]*`, as the pipeline requires; any other name is a bug in the caller
    /// and fails with `Internal` before the store is asked.
    async fn top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, serde_json::Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError>;

    /// Live documents whose GeoJSON Point field `field` (`{"type": "Point", "coordinates":
    /// [lon, lat]}`) lies within `radius_m` metres of (`lon`, `lat`), nearest first (ties: id
    /// ascending), at most `limit`; each with its distance in metres. This answers a geo
    /// projection's `GEOSEARCH … BYRADIUS … ASC` from the store when Redis is unreachable.
    ///
    /// Distances are great-circle distances on a sphere of radius [`EARTH_RADIUS_M`], as Redis
    /// measures them. Documents without the field, or whose field is not a Point, are left out.
    /// `lon` must lie in [-180, 180], `lat` in [-90, 90] and `radius_m` be finite and not
    /// negative, else `Invalid` (naming `lon`, `lat` or `radius_m`); `field` follows the rule of
    /// [`top_by_score`](Self::top_by_score).
    async fn near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
}

/// Refuses a field name a structure query cannot safely put into a JSON path (SQLite) or a dotted
/// field path (MongoDB). The pipeline only admits `[A-Za-z_][A-Za-z0-9_]*`, so anything else is a
/// caller bug, never user input.
pub(crate) fn check_field_name(name: &str) -> Result<(), StoreError> {
    let mut bytes = name.bytes();
    let valid = matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(StoreError::Internal(format!(
            "`{name}` is not a field name a store query accepts ([A-Za-z_][A-Za-z0-9_]*)"
        )))
    }
}

/// Checks a structure query's `equals` filter: field names as [`check_field_name`], values
/// scalars. Objects and arrays are refused because their equality depends on key order in both
/// stores, and no key-template field (a string or an integer) can hold one.
pub(crate) fn check_equals(equals: &[(String, serde_json::Value)]) -> Result<(), StoreError> {
    for (field, value) in equals {
        check_field_name(field)?;
        if value.is_object() || value.is_array() {
            return Err(StoreError::Internal(format!(
                "top_by_score cannot match `{field}` against an object or array, only a scalar"
            )));
        }
    }
    Ok(())
}

/// Refuses what neither adapter can search around: the centre comes from a client's query, so a
/// bad one is `Invalid` like a bad document field (the API should have caught it first).
pub(crate) fn check_near(lon: f64, lat: f64, radius_m: f64) -> Result<(), StoreError> {
    let invalid =
        |field: &str, reason: String| Err(StoreError::Invalid(DocumentError::new(field, reason)));
    if !(-180.0..=180.0).contains(&lon) {
        return invalid("lon", format!("is {lon}, outside [-180, 180]"));
    }
    if !(-90.0..=90.0).contains(&lat) {
        return invalid("lat", format!("is {lat}, outside [-90, 90]"));
    }
    if !(radius_m.is_finite() && radius_m >= 0.0) {
        return invalid(
            "radius_m",
            format!("is {radius_m}; it must be a finite number of metres, at least 0"),
        );
    }
    Ok(())
}

/// Opens the store named by `STORE_URL`: `sqlite://<path>` (relative paths are relative to the
/// working directory; `sqlite://:memory:` for a private in-memory database), `mongodb://…` or
/// `mongodb+srv://…`.
pub async fn open(
    url: &SecretUrl,
    pipeline: &Pipeline,
    settings: &crate::config::StoreSettings,
) -> Result<Arc<dyn DocumentStore>, StoreError> {
    match url.scheme() {
        Some("sqlite") => {
            let store = sqlite::SqliteStore::open(url, settings).await?;
            Ok(Arc::new(store))
        }
        Some("mongodb" | "mongodb+srv") => {
            let store = mongo::MongoStore::connect(url, pipeline, settings).await?;
            Ok(Arc::new(store))
        }
        _ => Err(StoreError::Internal(format!(
            "unsupported store URL {url}: expected sqlite://, mongodb:// or mongodb+srv://"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn query_field_names_are_pipeline_identifiers() {
        for good in ["rating", "_x", "a1_b", "Category"] {
            assert!(check_field_name(good).is_ok(), "{good}");
        }
        for bad in ["", "1a", "a.b", "$where", "a'b", "a b", "ünï", "a[0]"] {
            assert!(
                matches!(check_field_name(bad), Err(StoreError::Internal(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn equals_values_must_be_scalars() {
        let ok = [
            ("a".to_owned(), json!("x")),
            ("b".to_owned(), json!(1)),
            ("c".to_owned(), json!(1.5)),
            ("d".to_owned(), json!(true)),
            ("e".to_owned(), json!(null)),
        ];
        assert!(check_equals(&ok).is_ok());
        for bad in [json!([1]), json!({"a": 1})] {
            let equals = [("a".to_owned(), bad)];
            assert!(matches!(
                check_equals(&equals),
                Err(StoreError::Internal(_))
            ));
        }
        let equals = [("a.b".to_owned(), json!(1))];
        assert!(matches!(
            check_equals(&equals),
            Err(StoreError::Internal(_))
        ));
    }

    #[test]
    fn near_needs_a_real_centre_and_radius() {
        assert!(check_near(-180.0, -90.0, 0.0).is_ok());
        assert!(check_near(180.0, 90.0, 1e7).is_ok());
        let field = |r: Result<(), StoreError>| match r {
            Err(StoreError::Invalid(err)) => err.field,
            other => panic!("expected Invalid, got {other:?}"),
        };
        assert_eq!(field(check_near(180.5, 0.0, 1.0)), "lon");
        assert_eq!(field(check_near(f64::NAN, 0.0, 1.0)), "lon");
        assert_eq!(field(check_near(0.0, -90.1, 1.0)), "lat");
        assert_eq!(field(check_near(0.0, 0.0, -1.0)), "radius_m");
        assert_eq!(field(check_near(0.0, 0.0, f64::INFINITY)), "radius_m");
        assert_eq!(field(check_near(0.0, 0.0, f64::NAN)), "radius_m");
    }
}
