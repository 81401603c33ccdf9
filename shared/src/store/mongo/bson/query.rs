//! The BSON of the structure queries ([`DocumentStore::top_by_score`] and
//! [`DocumentStore::near`]), as pure functions so their exact shape is unit-tested.
//!
//! Both adapters must give the same answers, so two MongoDB habits are switched off explicitly:
//! a condition on a field also matches an *array* holding a matching element (JSON equality, and
//! SQLite, do not), and spherical distances are measured on MongoDB's Earth radius, not Redis's.
//!
//! [`DocumentStore::top_by_score`]: crate::store::DocumentStore::top_by_score
//! [`DocumentStore::near`]: crate::store::DocumentStore::near

use mongodb::bson::{doc, Bson, Document as BsonDocument};
use serde_json::Value;

use super::{corrupt, DELETED, DOC, OUTBOX};
use crate::store::{StoreError, EARTH_RADIUS_M};

/// MongoDB's Earth radius for 2dsphere distances in metres (`kRadiusOfEarthInMeters`, 6378.1 km).
/// It measures the same great-circle angle as Redis, so rescaling by the ratio of the radii gives
/// Redis's metres exactly.
pub const MONGO_EARTH_RADIUS_M: f64 = 6_378_100.0;

/// The field `$geoNear` writes each record's distance to (ours never have one of their own).
pub const DISTANCE: &str = "_dist";

/// The BSON types a JSON number is stored as: `json_doc_to_bson` writes Int64 or Double, and a
/// hand-edited record may hold an Int32. (`"number"` would admit Decimal128, which has no f64.)
const NUMERIC_TYPES: [&str; 3] = ["double", "int", "long"];

fn doc_path(field: &str) -> String {
    format!("{DOC}.{field}")
}

/// `$not: { $type: "array" }` keeps a condition to the field's own value, not its elements.
fn not_array() -> BsonDocument {
    doc! { "$type": "array" }
}

/// A scalar `equals` value as the BSON it is stored as. Numbers compare by value across Int64 and
/// Double in MongoDB, so an integer beyond Int64 (which MongoDB cannot store) is asked as a Double.
fn scalar_to_bson(value: &Value) -> Bson {
    match value {
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => match n.as_i64() {
            Some(i) => Bson::Int64(i),
            None => Bson::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => Bson::String(s.clone()),
        Value::Null | Value::Array(_) | Value::Object(_) => Bson::Null,
    }
}

fn equals_condition(value: &Value) -> BsonDocument {
    match value {
        // `{ f: null }` would also match a missing field; JSON equality wants an explicit null.
        Value::Null => doc! { "$type": "null", "$not": not_array() },
        // `check_equals` refuses these before any query is built; should one get here, matching
        // nothing keeps the answer from widening.
        Value::Array(_) | Value::Object(_) => doc! { "$in": [] },
        scalar => doc! { "$eq": scalar_to_bson(scalar), "$not": not_array() },
    }
}

/// `{deleted: false, "doc.<f>": <equal>, …, "doc.<score>": <numeric>}`. A field named twice (the
/// score among `equals`, or an `equals` field repeated) goes into `$and`, since a second key in
/// the same document would replace the first condition instead of adding to it.
pub fn top_by_score_filter(score_field: &str, equals: &[(String, Value)]) -> BsonDocument {
    let numeric = doc! { "$type": NUMERIC_TYPES.to_vec(), "$not": not_array() };
    let conditions = equals
        .iter()
        .map(|(field, value)| (doc_path(field), equals_condition(value)))
        .chain([(doc_path(score_field), numeric)]);
    let mut filter = doc! { DELETED: false };
    let mut repeated = Vec::new();
    for (path, condition) in conditions {
        if filter.contains_key(&path) {
            repeated.push(doc! { path: condition });
        } else {
            filter.insert(path, condition);
        }
    }
    if !repeated.is_empty() {
        filter.insert("$and", repeated);
    }
    filter
}

/// Score descending, then id ascending; the sorted-set index (`index_models`) has exactly these
/// keys, so MongoDB walks it in order and stops after `skip + limit` matches.
pub fn top_by_score_sort(score_field: &str) -> BsonDocument {
    doc! { doc_path(score_field): -1, "_id": 1 }
}

/// The score of a record matched by [`top_by_score_filter`].
pub fn decode_score(raw: &BsonDocument, score_field: &str) -> Result<f64, StoreError> {
    let score = raw
        .get_document(DOC)
        .ok()
        .and_then(|doc| doc.get(score_field));
    match score {
        Some(Bson::Double(v)) => Ok(*v),
        // A score beyond 2^53 loses precision as f64, as it does in Redis.
        Some(Bson::Int64(v)) => Ok(*v as f64),
        Some(Bson::Int32(v)) => Ok(f64::from(*v)),
        _ => Err(corrupt(
            raw,
            &format!("was matched as having a numeric {score_field} but has none"),
        )),
    }
}

/// `$geoNear` (on the geo projection's 2dsphere index, by `key`) within the radius, then nearest
/// first with id tie-breaks, at most `limit` (at least 1: `$limit: 0` is an error), without the
/// outbox. The radius is converted to MongoDB's sphere so the same documents fall inside as with
/// Redis.
pub fn near_pipeline(
    field: &str,
    lon: f64,
    lat: f64,
    radius_m: f64,
    limit: i64,
) -> Vec<BsonDocument> {
    let path = doc_path(field);
    let point_type = format!("{path}.type");
    vec![
        doc! { "$geoNear": {
            "near": { "type": "Point", "coordinates": [lon, lat] },
            "key": path,
            "distanceField": DISTANCE,
            "maxDistance": radius_m * MONGO_EARTH_RADIUS_M / EARTH_RADIUS_M,
            "spherical": true,
            // Only Points: a 2dsphere index also holds lines and polygons, which SQLite skips.
            "query": { DELETED: false, point_type: "Point" },
        } },
        doc! { "$sort": { DISTANCE: 1, "_id": 1 } },
        doc! { "$limit": limit.max(1) },
        doc! { "$project": { OUTBOX: 0 } },
    ]
}

/// The distance `$geoNear` measured, in metres on Redis's sphere.
pub fn decode_distance(raw: &BsonDocument) -> Result<f64, StoreError> {
    match raw.get(DISTANCE) {
        Some(Bson::Double(d)) => Ok(d * EARTH_RADIUS_M / MONGO_EARTH_RADIUS_M),
        _ => Err(corrupt(raw, "came from $geoNear without a distance")),
    }
}

#[cfg(test)]
mod tests;
