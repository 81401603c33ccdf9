//! The document-store port and its adapters.
//!
//! The store is the system of record. Every write gives the entity a strictly higher version
//! (a delete leaves a tombstone that keeps its version, so a re-created entity continues above it)
//! and records the write's [`Event`] in a transactional outbox *atomically with the write*; the
//! outbox relay publishes it later. An acknowledged write therefore always has its event.
//!
//! - [`sqlite`]: embedded SQLite (WAL), the default for a laptop and for CI.
//! - [`mongo`]: MongoDB through the official driver, the production store.

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
    /// The store could not be reached or timed out. Retryable.
    #[error("store unavailable: {0}")]
    Unavailable(String),
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

    /// The entity's latest version including tombstones (`None` if never written).
    async fn latest_version(&self, collection: &str, id: &str) -> Result<Option<u64>, StoreError>;

    /// Up to `limit` unpublished events, oldest first; events of one entity in version order.
    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>, StoreError>;

    /// Removes published events from the outbox. Unknown ids are ignored.
    async fn mark_published(&self, events: &[PendingEvent]) -> Result<(), StoreError>;

    /// Number of events waiting in the outbox.
    async fn pending_count(&self) -> Result<u64, StoreError>;

    /// Cheap reachability check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;
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
