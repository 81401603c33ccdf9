//! MongoDB adapter (in progress: being written against the `DocumentStore` contract).

use async_trait::async_trait;

use super::{DocumentStore, PendingEvent, Precondition, StoreError, Validator, Versioned, WriteOutcome};
use crate::config::StoreSettings;
use crate::document::Document;
use crate::pipeline::Pipeline;
use crate::redact::SecretUrl;

pub struct MongoStore;

impl MongoStore {
    pub async fn connect(
        url: &SecretUrl,
        _pipeline: &Pipeline,
        _settings: &StoreSettings,
    ) -> Result<Self, StoreError> {
        Err(StoreError::Internal(format!("MongoDB adapter not built yet for {url}")))
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn put(&self, _: &str, _: &str, _: Document, _: Precondition) -> Result<WriteOutcome, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn patch(&self, _: &str, _: &str, _: serde_json::Value, _: Precondition, _: Validator) -> Result<WriteOutcome, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn delete(&self, _: &str, _: &str, _: Precondition) -> Result<WriteOutcome, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn get(&self, _: &str, _: &str) -> Result<Option<Versioned>, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn get_many(&self, _: &str, _: &[String]) -> Result<Vec<Option<Versioned>>, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn scan(&self, _: &str, _: Option<&str>, _: usize) -> Result<Vec<Versioned>, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn latest_version(&self, _: &str, _: &str) -> Result<Option<u64>, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn pending_events(&self, _: usize) -> Result<Vec<PendingEvent>, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn mark_published(&self, _: &[PendingEvent]) -> Result<(), StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn pending_count(&self) -> Result<u64, StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
    async fn ping(&self) -> Result<(), StoreError> {
        Err(StoreError::Internal("unbuilt".into()))
    }
}
