//! The planner: the one piece of code that decides what a projection writes. Pure (no I/O), so
//! the Redis adapter, the tests' expected state and later backfill/verify all agree by
//! construction.
//!
//! Keys in a [`Plan`] are the rendered key templates, without the adapter's key prefix.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;

use crate::document::Document;
use crate::event::{Event, Op};
use crate::pipeline::{geo_point, Collection, DocumentError, ProjectionKind};

/// What one event makes the cache hold for its entity.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub collection: String,
    pub id: String,
    pub version: u64,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// The entity's complete projected state at this version.
    Upsert(Projections),
    /// The entity leaves every structure its last state occupied (the adapter remembers those)
    /// plus `fallback`: the keys and indexes whose templates need no document field, which a
    /// delete can name even when the remembered state is gone.
    Delete { fallback: Fallback },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Projections {
    pub strings: Vec<StringValue>,
    pub hashes: Vec<HashValue>,
    pub sorted_sets: Vec<ScoredMember>,
    pub geos: Vec<GeoMember>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StringValue {
    pub key: String,
    /// The whole document as JSON.
    pub value: String,
    pub ttl: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HashValue {
    pub key: String,
    /// `(field, value)` in projection order; fields absent (or null) in the document are left
    /// out. Strings as they are, other scalars as JSON (`4.5`, `true`), arrays/objects as JSON.
    pub fields: Vec<(String, String)>,
}

/// Membership of the entity id in a sorted set.
#[derive(Debug, Clone, PartialEq)]
pub struct ScoredMember {
    pub key: String,
    pub score: f64,
}

/// Membership of the entity id in a geo index.
#[derive(Debug, Clone, PartialEq)]
pub struct GeoMember {
    pub key: String,
    pub lon: f64,
    pub lat: f64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Fallback {
    /// Per-entity keys (string, hash) rendered from the id alone.
    pub entity_keys: Vec<String>,
    /// Index keys (sorted set, geo) without any template field.
    pub index_keys: Vec<String>,
}

impl Projections {
    /// The per-entity keys (strings and hashes) this state occupies, sorted.
    pub fn entity_keys(&self) -> BTreeSet<&str> {
        let strings = self.strings.iter().map(|s| s.key.as_str());
        strings
            .chain(self.hashes.iter().map(|h| h.key.as_str()))
            .collect()
    }

    /// The index keys (sorted sets and geo indexes) the entity is a member of, sorted. When a
    /// templated field changes, the member must leave the keys that drop out of this set.
    pub fn index_keys(&self) -> BTreeSet<&str> {
        let scored = self.sorted_sets.iter().map(|z| z.key.as_str());
        scored
            .chain(self.geos.iter().map(|g| g.key.as_str()))
            .collect()
    }
}

/// Plans `event` for `collection` (the caller looks the collection up by `event.collection`).
/// An error means the event can never be applied: its document does not give the projections
/// what they need.
pub fn plan(collection: &Collection, event: &Event) -> Result<Plan, DocumentError> {
    let action = match (event.op, &event.document) {
        (Op::Upsert, Some(document)) => {
            return plan_live(
                collection,
                &event.collection,
                &event.id,
                event.version,
                document,
            )
        }
        (Op::Upsert, None) => {
            return Err(DocumentError::new(
                "document",
                "is required: an upsert must carry the document",
            ))
        }
        (Op::Heartbeat, _) => {
            return Err(DocumentError::new(
                "op",
                "is heartbeat: a heartbeat measures lag and has no projection",
            ))
        }
        (Op::Delete, _) => Action::Delete {
            fallback: fallback(collection, &event.id),
        },
    };
    Ok(Plan {
        collection: event.collection.clone(),
        id: event.id.clone(),
        version: event.version,
        action,
    })
}

/// Plans the upsert of a live document read from the store (a backfill), without an event.
pub fn plan_live(
    collection: &Collection,
    name: &str,
    id: &str,
    version: u64,
    document: &Document,
) -> Result<Plan, DocumentError> {
    Ok(Plan {
        collection: name.to_owned(),
        id: id.to_owned(),
        version,
        action: Action::Upsert(project(collection, id, document)?),
    })
}

fn project(
    collection: &Collection,
    id: &str,
    document: &Document,
) -> Result<Projections, DocumentError> {
    // The same checks the API answers 422 with; here a failure means poison.
    collection.validate(document)?;
    let mut out = Projections::default();
    for projection in &collection.projections {
        let key = projection.kind.key().render(id, document)?;
        match &projection.kind {
            ProjectionKind::String { ttl, .. } => out.strings.push(StringValue {
                key,
                value: serde_json::to_string(document).expect("a JSON object always serialises"),
                ttl: *ttl,
            }),
            ProjectionKind::Hash { fields, .. } => out.hashes.push(HashValue {
                key,
                fields: fields
                    .iter()
                    .filter_map(|field| {
                        let value = document.get(field).filter(|v| !v.is_null())?;
                        Some((field.clone(), hash_value(value)))
                    })
                    .collect(),
            }),
            ProjectionKind::SortedSet { score, .. } => {
                let value = document.get(score).and_then(Value::as_f64).ok_or_else(|| {
                    DocumentError::new(score, "must be a number to score a sorted set")
                })?;
                out.sorted_sets.push(ScoredMember { key, score: value });
            }
            ProjectionKind::Geo { field, .. } => {
                let value = document.get(field).unwrap_or(&Value::Null);
                let (lon, lat) =
                    geo_point(value).map_err(|reason| DocumentError::new(field, reason))?;
                out.geos.push(GeoMember { key, lon, lat });
            }
        }
    }
    Ok(out)
}

fn hash_value(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

/// What a delete (or an invalidation) of `id` clears even when the cache no longer knows the
/// entity's last state: the keys and indexes whose templates need no document field.
pub fn fallback(collection: &Collection, id: &str) -> Fallback {
    let empty = Document::new();
    let mut fallback = Fallback::default();
    for projection in &collection.projections {
        let template = projection.kind.key();
        if template.fields().any(|field| field != "id") {
            continue;
        }
        // Rendering cannot fail: the only field, if any, is the id.
        let Ok(key) = template.render(id, &empty) else {
            continue;
        };
        match projection.kind {
            ProjectionKind::String { .. } | ProjectionKind::Hash { .. } => {
                fallback.entity_keys.push(key)
            }
            ProjectionKind::SortedSet { .. } | ProjectionKind::Geo { .. } => {
                fallback.index_keys.push(key)
            }
        }
    }
    fallback
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::pipeline::Pipeline;

    const PIPELINE: &str = include_str!("../../../config/pipeline.toml");

    fn places() -> Collection {
        let pipeline = Pipeline::from_toml(PIPELINE).unwrap();
        pipeline.collection("places").unwrap().clone()
    }

    fn doc(value: Value) -> Document {
        value.as_object().unwrap().clone()
    }

    fn cafe() -> Document {
        doc(json!({
            "id": "p1", "version": 3, "name": "Blue Door", "category": "cafe", "rating": 4.5,
            "price": 2, "tags": ["wifi"],
            "location": {"type": "Point", "coordinates": [2.35, 48.85]}
        }))
    }

    #[test]
    fn an_upsert_plans_every_projection() {
        let plan = plan(&places(), &Event::upsert("places", "p1", 3, cafe())).unwrap();
        assert_eq!((plan.id.as_str(), plan.version), ("p1", 3));
        let Action::Upsert(p) = plan.action else {
            panic!("expected an upsert plan")
        };
        assert_eq!(p.strings.len(), 1);
        assert_eq!(p.strings[0].key, "place:p1");
        let stored: Value = serde_json::from_str(&p.strings[0].value).unwrap();
        assert_eq!(stored, Value::Object(cafe()));
        assert_eq!(p.strings[0].ttl, None);
        assert_eq!(p.hashes[0].key, "place:p1:h");
        let fields: Vec<(&str, &str)> = p.hashes[0]
            .fields
            .iter()
            .map(|(f, v)| (f.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            fields,
            [
                ("name", "Blue Door"),
                ("category", "cafe"),
                ("rating", "4.5"),
                ("price", "2")
            ]
        );
        assert_eq!(
            p.index_keys().into_iter().collect::<Vec<_>>(),
            ["places:geo", "places:rating", "places:rating:cafe"]
        );
        assert_eq!(
            p.entity_keys().into_iter().collect::<Vec<_>>(),
            ["place:p1", "place:p1:h"]
        );
        assert!(p.sorted_sets.iter().all(|z| z.score == 4.5));
        assert_eq!(
            p.geos,
            [GeoMember {
                key: "places:geo".into(),
                lon: 2.35,
                lat: 48.85
            }]
        );
    }

    #[test]
    fn absent_hash_fields_are_left_out_and_non_scalars_are_json() {
        let pipeline = Pipeline::from_toml(
            "[collections.c.fields]\nx = \"object\"\ny = \"string\"\nz = \"boolean\"\n\
             [collections.c.projections.h]\nkind = \"hash\"\nkey = \"c:{id}\"\nfields = [\"x\", \"y\", \"z\"]\n",
        )
        .unwrap();
        let collection = pipeline.collection("c").unwrap();
        let event = Event::upsert(
            "c",
            "a",
            1,
            doc(json!({"x": {"k": [1]}, "y": null, "z": true})),
        );
        let Action::Upsert(p) = plan(collection, &event).unwrap().action else {
            panic!("expected an upsert plan")
        };
        assert_eq!(
            p.hashes[0].fields,
            [
                ("x".into(), "{\"k\":[1]}".into()),
                ("z".into(), "true".into())
            ]
        );
    }

    #[test]
    fn a_document_the_projections_cannot_use_is_an_error_naming_the_field() {
        let mut bad = cafe();
        bad.insert("rating".into(), json!("high"));
        let err = plan(&places(), &Event::upsert("places", "p1", 3, bad)).unwrap_err();
        assert_eq!(err.field, "rating");
        let mut bad = cafe();
        bad.insert("category".into(), json!("two words"));
        let err = plan(&places(), &Event::upsert("places", "p1", 3, bad)).unwrap_err();
        assert_eq!(err.field, "category");
        let mut bad = cafe();
        bad.insert(
            "location".into(),
            json!({"type": "Point", "coordinates": [2.0, 89.0]}),
        );
        let err = plan(&places(), &Event::upsert("places", "p1", 3, bad)).unwrap_err();
        assert_eq!(err.field, "location");
    }

    #[test]
    fn a_delete_names_what_it_can_without_a_document() {
        let plan = plan(&places(), &Event::delete("places", "p1", 4)).unwrap();
        assert_eq!(plan.version, 4);
        assert_eq!(
            plan.action,
            Action::Delete {
                fallback: Fallback {
                    entity_keys: vec!["place:p1".into(), "place:p1:h".into()],
                    // places:rating:{category} needs the document: only the remembered state has it.
                    index_keys: vec!["places:geo".into(), "places:rating".into()],
                }
            }
        );
    }
}
