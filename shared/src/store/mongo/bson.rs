//! Every BSON document the MongoDB adapter sends (filters, updates, projections, index models,
//! records) and the JSON <-> BSON conversion, as pure functions so they are unit-tested without a
//! server.
//!
//! Record layout, one per entity in the collection of the same name:
//! `{ _id, version: Int64, deleted: bool, doc: <document> | null, updated_at: DateTime,
//!    _outbox: [ { seq: Int64, event_id: String, payload: String } ] }`.

use std::collections::BTreeMap;

use mongodb::bson::{doc, Bson, DateTime, Document as BsonDocument};
use mongodb::options::IndexOptions;
use mongodb::IndexModel;
use serde_json::{Map, Number, Value};

pub use self::query::{
    decode_distance, decode_score, near_pipeline, top_by_score_filter, top_by_score_sort,
};
use crate::document::Document;
use crate::event::{Event, HEARTBEAT_ID};
use crate::pipeline::{Collection, DocumentError, ProjectionKind};
use crate::store::{PendingEvent, StoreError};

pub const VERSION: &str = "version";
pub const DELETED: &str = "deleted";
pub const DOC: &str = "doc";
pub const UPDATED_AT: &str = "updated_at";
pub const OUTBOX: &str = "_outbox";

/// The indexed field the relay's pending query matches on (sparse: only records with events).
const OUTBOX_EVENT_ID: &str = "_outbox.event_id";
/// Ascending on an array sorts by its smallest element, which is the oldest pending event
/// because events are appended in increasing `seq` order.
const OUTBOX_SEQ: &str = "_outbox.seq";

/// What a write needs to know about an entity's record (tombstones included).
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub version: u64,
    pub deleted: bool,
    pub doc: Option<BsonDocument>,
}

impl Record {
    /// The live version, `None` for a tombstone.
    pub fn live_version(&self) -> Option<u64> {
        (!self.deleted).then_some(self.version)
    }

    /// The live document as JSON, `None` for a tombstone.
    pub fn live_document(&self) -> Option<Document> {
        match (&self.doc, self.deleted) {
            (Some(doc), false) => Some(bson_doc_to_json(doc.clone())),
            _ => None,
        }
    }
}

pub fn decode_record(raw: &BsonDocument) -> Result<Record, StoreError> {
    let version = decode_version(raw)?;
    let deleted = match raw.get(DELETED) {
        Some(Bson::Boolean(deleted)) => *deleted,
        _ => return Err(corrupt(raw, "has no valid deleted flag")),
    };
    let doc = match raw.get(DOC) {
        Some(Bson::Document(doc)) => Some(doc.clone()),
        None | Some(Bson::Null) => None,
        Some(_) => return Err(corrupt(raw, "has a doc that is not a document")),
    };
    if doc.is_none() && !deleted {
        return Err(corrupt(raw, "is live but has no doc"));
    }
    Ok(Record {
        version,
        deleted,
        doc,
    })
}

fn corrupt(raw: &BsonDocument, what: &str) -> StoreError {
    let id = raw
        .get("_id")
        .map_or_else(|| "?".to_owned(), ToString::to_string);
    StoreError::Internal(format!("corrupt MongoDB record {id}: it {what}"))
}

fn as_u64(value: &Bson) -> Option<u64> {
    match value {
        Bson::Int64(v) => u64::try_from(*v).ok(),
        Bson::Int32(v) => u64::try_from(*v).ok(),
        _ => None,
    }
}

/// Versions and sequence numbers are stored as Int64; values past `i64::MAX` cannot occur in
/// practice (a version grows by one per write, a seq is microseconds since 1970).
fn int64(value: u64) -> Bson {
    Bson::Int64(i64::try_from(value).unwrap_or(i64::MAX))
}

pub fn id_filter(id: &str) -> BsonDocument {
    doc! { "_id": id }
}

/// Matches the record only while it is still at the version the write was decided on, which makes
/// the update a compare-and-set.
pub fn version_guard(id: &str, version: u64) -> BsonDocument {
    doc! { "_id": id, VERSION: int64(version) }
}

pub fn outbox_entry(seq: u64, event: &Event) -> Result<BsonDocument, StoreError> {
    let payload = String::from_utf8(event.encode())
        .map_err(|err| StoreError::Internal(format!("event JSON is not UTF-8: {err}")))?;
    Ok(doc! {
        "seq": int64(seq),
        "event_id": event.event_id.to_string(),
        "payload": payload,
    })
}

fn doc_or_null(doc: Option<BsonDocument>) -> Bson {
    doc.map_or(Bson::Null, Bson::Document)
}

/// The first record of an entity, with its first pending event.
pub fn new_record(
    id: &str,
    version: u64,
    doc: Option<BsonDocument>,
    entry: BsonDocument,
    now: DateTime,
) -> BsonDocument {
    doc! {
        "_id": id,
        VERSION: int64(version),
        DELETED: doc.is_none(),
        DOC: doc_or_null(doc),
        UPDATED_AT: now,
        OUTBOX: [entry],
    }
}

/// Writes a new version (`doc: None` is a tombstone) and appends its event to the outbox in the
/// same single-document update, which MongoDB applies atomically.
pub fn write_update(
    version: u64,
    doc: Option<BsonDocument>,
    entry: BsonDocument,
    now: DateTime,
) -> BsonDocument {
    doc! {
        "$set": {
            VERSION: int64(version),
            DELETED: doc.is_none(),
            DOC: doc_or_null(doc),
            UPDATED_AT: now,
        },
        "$push": { OUTBOX: entry },
    }
}

/// The heartbeat record of a collection (`_id` = [`HEARTBEAT_ID`]): a tombstone at version 0,
/// so no live query, count or scan sees it, whose outbox takes each heartbeat's event.
pub fn heartbeat_upsert(entry: BsonDocument, now: DateTime) -> (BsonDocument, BsonDocument) {
    let filter = doc! { "_id": HEARTBEAT_ID };
    let update = doc! {
        "$setOnInsert": { VERSION: int64(0), DELETED: true, DOC: Bson::Null },
        "$set": { UPDATED_AT: now },
        "$push": { OUTBOX: entry },
    };
    (filter, update)
}

/// Reads never need the outbox, which holds a copy of the document per pending event.
pub fn without_outbox() -> BsonDocument {
    doc! { OUTBOX: 0 }
}

pub fn version_only() -> BsonDocument {
    doc! { VERSION: 1 }
}

/// The version of a record read with [`version_only`].
pub fn decode_version(raw: &BsonDocument) -> Result<u64, StoreError> {
    raw.get(VERSION)
        .and_then(as_u64)
        .ok_or_else(|| corrupt(raw, "has no valid version"))
}

pub fn live_ids_filter(ids: &[String]) -> BsonDocument {
    doc! { "_id": { "$in": ids }, DELETED: false }
}

pub fn scan_filter(after: Option<&str>) -> BsonDocument {
    match after {
        Some(after) => doc! { "_id": { "$gt": after }, DELETED: false },
        None => doc! { DELETED: false },
    }
}

pub fn by_id() -> BsonDocument {
    doc! { "_id": 1 }
}

pub fn pending_filter() -> BsonDocument {
    doc! { OUTBOX_EVENT_ID: { "$exists": true } }
}

pub fn pending_sort() -> BsonDocument {
    doc! { OUTBOX_SEQ: 1 }
}

/// Only the oldest pending event of each record: the relay publishes one event per entity per
/// round, which keeps each entity's events in version order on the stream.
pub fn pending_projection() -> BsonDocument {
    doc! { DOC: 0, OUTBOX: { "$slice": 1 } }
}

/// The oldest pending event of a record read with [`pending_projection`].
pub fn decode_pending(raw: &BsonDocument) -> Result<Option<PendingEvent>, StoreError> {
    let entry = match raw.get(OUTBOX) {
        Some(Bson::Array(entries)) => match entries.first() {
            Some(Bson::Document(entry)) => entry,
            None => return Ok(None),
            Some(_) => return Err(corrupt(raw, "has an outbox entry that is not a document")),
        },
        None => return Ok(None),
        Some(_) => return Err(corrupt(raw, "has an outbox that is not an array")),
    };
    let seq = entry
        .get("seq")
        .and_then(as_u64)
        .ok_or_else(|| corrupt(raw, "has an outbox entry without a valid seq"))?;
    let payload = entry
        .get_str("payload")
        .map_err(|_| corrupt(raw, "has an outbox entry without a payload"))?;
    let event = Event::decode(payload.as_bytes())
        .map_err(|err| StoreError::Internal(format!("corrupt outbox event {seq}: {err}")))?;
    Ok(Some(PendingEvent { seq, event }))
}

/// Per collection: the filter and the `$pull` that remove these published events. Event ids are
/// unique, so one `update_many` per collection is exact.
pub fn mark_published(events: &[PendingEvent]) -> BTreeMap<&str, (BsonDocument, BsonDocument)> {
    let mut grouped: BTreeMap<&str, (Vec<&str>, Vec<String>)> = BTreeMap::new();
    for pending in events {
        let (ids, event_ids) = grouped
            .entry(pending.event.collection.as_str())
            .or_default();
        if !ids.contains(&pending.event.id.as_str()) {
            ids.push(pending.event.id.as_str());
        }
        event_ids.push(pending.event.event_id.to_string());
    }
    grouped
        .into_iter()
        .map(|(collection, (ids, event_ids))| {
            let filter = doc! { "_id": { "$in": ids } };
            let update = doc! { "$pull": { OUTBOX: { "event_id": { "$in": event_ids } } } };
            (collection, (filter, update))
        })
        .collect()
}

/// Counts events, not records: a record can hold several pending events.
pub fn pending_count_pipeline() -> Vec<BsonDocument> {
    vec![
        doc! { "$match": pending_filter() },
        doc! { "$group": { "_id": Bson::Null, "n": { "$sum": { "$size": format!("${OUTBOX}") } } } },
    ]
}

pub fn decode_count(raw: &BsonDocument) -> Result<u64, StoreError> {
    match raw.get("n") {
        Some(Bson::Int32(n)) => u64::try_from(*n).ok(),
        Some(Bson::Int64(n)) => u64::try_from(*n).ok(),
        // $sum only widens to a double past i64 range, which an outbox never reaches.
        Some(Bson::Double(n)) if n.is_finite() && *n >= 0.0 => Some(*n as u64),
        _ => None,
    }
    .ok_or_else(|| StoreError::Internal(format!("unexpected pending count reply {raw}")))
}

/// The indexes a collection needs. Names are left to the driver, which derives them from the keys
/// (`doc.rating_-1__id_1`), so re-creating them at every start-up is a no-op.
///
/// A sorted set's index carries `_id` after the score so that it matches
/// [`top_by_score_sort`] key for key: MongoDB can then read a top-N in index order instead of
/// sorting every matching record in memory.
pub fn index_models(collection: &Collection) -> Vec<IndexModel> {
    let mut models = vec![IndexModel::builder()
        .keys(doc! { OUTBOX_EVENT_ID: 1 })
        .options(IndexOptions::builder().sparse(true).build())
        .build()];
    let mut seen = Vec::new();
    for projection in &collection.projections {
        let keys = match &projection.kind {
            ProjectionKind::Geo { field, .. } => doc! { format!("{DOC}.{field}"): "2dsphere" },
            ProjectionKind::SortedSet { score, .. } => {
                doc! { format!("{DOC}.{score}"): -1, "_id": 1 }
            }
            ProjectionKind::String { .. } | ProjectionKind::Hash { .. } => continue,
        };
        // Two sorted sets may share a score field; the same keys twice would conflict.
        if !seen.contains(&keys) {
            seen.push(keys.clone());
            models.push(IndexModel::builder().keys(keys).build());
        }
    }
    models
}

/// JSON -> BSON, literally. `bson::to_bson` and `Bson::try_from` both read single-key objects such
/// as `{"$numberLong": "5"}` or `{"$oid": …}` as extended JSON, which would silently change a
/// user's data; here every object stays a document with the same keys.
pub fn json_doc_to_bson(document: &Document) -> Result<BsonDocument, StoreError> {
    object_to_bson(document).map_err(|path| {
        let field: Vec<&str> = path.iter().rev().map(String::as_str).collect();
        StoreError::Invalid(DocumentError::new(
            &field.join("."),
            format!(
                "is an integer above {}, which MongoDB cannot store",
                i64::MAX
            ),
        ))
    })
}

/// `Err` holds the path to the offending value, innermost segment first.
fn object_to_bson(object: &Map<String, Value>) -> Result<BsonDocument, Vec<String>> {
    let mut out = BsonDocument::new();
    for (key, value) in object {
        let value = value_to_bson(value).map_err(|mut path| {
            path.push(key.clone());
            path
        })?;
        out.insert(key.clone(), value);
    }
    Ok(out)
}

fn value_to_bson(value: &Value) -> Result<Bson, Vec<String>> {
    Ok(match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Bson::Int64(i)
            } else if n.is_u64() {
                return Err(Vec::new());
            } else {
                Bson::Double(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    value_to_bson(item).map_err(|mut path| {
                        path.push(i.to_string());
                        path
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(object) => Bson::Document(object_to_bson(object)?),
    })
}

pub fn bson_doc_to_json(document: BsonDocument) -> Document {
    document
        .into_iter()
        .map(|(key, value)| (key, bson_to_json(value)))
        .collect()
}

/// BSON -> JSON. Integers stay JSON integers and doubles stay JSON floats (`2.0` reads back as
/// `2.0`, as it does from SQLite); types JSON lacks, which only a hand-edited record can hold, come
/// out as relaxed extended JSON.
pub fn bson_to_json(value: Bson) -> Value {
    match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(b),
        Bson::Int32(i) => Value::from(i),
        Bson::Int64(i) => Value::from(i),
        Bson::Double(f) => match Number::from_f64(f) {
            Some(n) => Value::Number(n),
            None => Bson::Double(f).into_relaxed_extjson(),
        },
        Bson::String(s) => Value::String(s),
        Bson::Array(items) => Value::Array(items.into_iter().map(bson_to_json).collect()),
        Bson::Document(document) => Value::Object(bson_doc_to_json(document)),
        other => other.into_relaxed_extjson(),
    }
}

mod query;

#[cfg(test)]
mod tests;
