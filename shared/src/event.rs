//! The event envelope: one per write, published on `<prefix>.<collection>.<id>` with
//! `Nats-Msg-Id` = `event_id`. Upserts carry the full document so the stream alone can rebuild
//! the cache.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::document::Document;

pub const SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Upsert,
    Delete,
    /// Not a write: a timestamped marker the API writes through the outbox to measure the
    /// pipeline's end-to-end lag (`cacheflow_heartbeat_lag_seconds`). Its id is [`HEARTBEAT_ID`],
    /// its version the unix milliseconds of its commit; it carries no document and the worker
    /// applies no projection for it.
    Heartbeat,
}

/// The entity id of every heartbeat (a valid subject token no document id of a pipeline takes
/// in practice: ids starting with `_cacheflow` are reserved).
pub const HEARTBEAT_ID: &str = "_cacheflow_heartbeat";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub schema: u32,
    pub event_id: Uuid,
    pub collection: String,
    pub id: String,
    pub op: Op,
    pub version: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// The full document (with `id` and `version`) for upserts; absent for deletes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<Document>,
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("event is not valid JSON for the envelope: {0}")]
    Json(#[from] serde_json::Error),
    #[error("unsupported event schema {0} (this build understands {SCHEMA_VERSION})")]
    Schema(u32),
    #[error("an upsert event must carry a document")]
    MissingDocument,
    #[error("a delete or heartbeat event must not carry a document")]
    UnexpectedDocument,
    #[error("event version must be at least 1")]
    ZeroVersion,
}

impl Event {
    pub fn upsert(collection: &str, id: &str, version: u64, document: Document) -> Self {
        Self::new(collection, id, Op::Upsert, version, Some(document))
    }

    pub fn delete(collection: &str, id: &str, version: u64) -> Self {
        Self::new(collection, id, Op::Delete, version, None)
    }

    /// A heartbeat of `collection`, stamped now (its version: the unix milliseconds, at least 1).
    pub fn heartbeat(collection: &str) -> Self {
        let millis = (OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).max(1);
        Self::new(collection, HEARTBEAT_ID, Op::Heartbeat, millis as u64, None)
    }

    pub fn is_heartbeat(&self) -> bool {
        self.op == Op::Heartbeat
    }

    fn new(collection: &str, id: &str, op: Op, version: u64, document: Option<Document>) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            // v7 ids sort by creation time, which keeps outbox and log order readable.
            event_id: Uuid::now_v7(),
            collection: collection.to_owned(),
            id: id.to_owned(),
            op,
            version,
            occurred_at: OffsetDateTime::now_utc(),
            document,
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an event always serialises")
    }

    /// Decodes and checks an envelope; any error means the event is poison, not retryable.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let event: Event = serde_json::from_slice(bytes)?;
        if event.schema != SCHEMA_VERSION {
            return Err(DecodeError::Schema(event.schema));
        }
        if event.version == 0 {
            return Err(DecodeError::ZeroVersion);
        }
        match (event.op, &event.document) {
            (Op::Upsert, None) => Err(DecodeError::MissingDocument),
            (Op::Delete | Op::Heartbeat, Some(_)) => Err(DecodeError::UnexpectedDocument),
            _ => Ok(event),
        }
    }

    /// The subject the event is published on: `<prefix>.<collection>.<id>`.
    pub fn subject(&self, prefix: &str) -> String {
        subject(prefix, &self.collection, &self.id)
    }
}

pub fn subject(prefix: &str, collection: &str, id: &str) -> String {
    format!("{prefix}.{collection}.{id}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn round_trips_and_has_the_documented_shape() {
        let doc = json!({"id": "p1", "version": 3, "name": "Cafe"});
        let event = Event::upsert("places", "p1", 3, doc.as_object().unwrap().clone());
        let bytes = event.encode();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["schema"], 1);
        assert_eq!(value["op"], "upsert");
        assert_eq!(value["version"], 3);
        assert_eq!(value["document"]["name"], "Cafe");
        assert!(value["occurred_at"].as_str().unwrap().ends_with('Z'));
        assert_eq!(Event::decode(&bytes).unwrap(), event);
        assert_eq!(event.subject("cacheflow"), "cacheflow.places.p1");
    }

    #[test]
    fn delete_has_no_document() {
        let event = Event::delete("places", "p1", 4);
        let value: serde_json::Value = serde_json::from_slice(&event.encode()).unwrap();
        assert!(value.get("document").is_none());
        assert_eq!(Event::decode(&event.encode()).unwrap().op, Op::Delete);
    }

    #[test]
    fn rejects_malformed_envelopes() {
        assert!(matches!(
            Event::decode(b"not json"),
            Err(DecodeError::Json(_))
        ));
        let mut value = serde_json::to_value(Event::delete("places", "p1", 1)).unwrap();
        value["schema"] = json!(2);
        let err = Event::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::Schema(2)));
        value["schema"] = json!(1);
        value["op"] = json!("upsert");
        let err = Event::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::MissingDocument));
        value["op"] = json!("delete");
        value["version"] = json!(0);
        let err = Event::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::ZeroVersion));
    }

    #[test]
    fn a_heartbeat_round_trips_and_carries_no_document() {
        let beat = Event::heartbeat("places");
        assert!(beat.is_heartbeat());
        assert_eq!(beat.id, HEARTBEAT_ID);
        assert!(
            beat.version > 1_700_000_000_000,
            "unix milliseconds: {}",
            beat.version
        );
        assert_eq!(Event::decode(&beat.encode()).unwrap(), beat);
        let mut value = serde_json::to_value(&beat).unwrap();
        assert_eq!(value["op"], "heartbeat");
        value["document"] = serde_json::json!({"id": "x"});
        let err = Event::decode(&serde_json::to_vec(&value).unwrap()).unwrap_err();
        assert!(matches!(err, DecodeError::UnexpectedDocument), "{err}");
    }
}
