//! The decision half of each optimistic write: given the entity's record as read (tombstones
//! included), the outcome to commit, or why not. Same rules as the SQLite adapter's transactions;
//! kept free of I/O so that a lost race can simply decide again on a fresh read.

use serde_json::Value;

use super::bson::Record;
use crate::document::{merge_patch, stamp, Document};
use crate::event::Event;
use crate::pipeline::DocumentError;
use crate::store::{Precondition, StoreError, Validator, WriteOutcome};

pub fn put(
    current: Option<&Record>,
    collection: &str,
    id: &str,
    mut document: Document,
    precondition: Precondition,
) -> Result<WriteOutcome, StoreError> {
    let live = current.and_then(Record::live_version);
    precondition.check(live)?;
    // A tombstone keeps its version, so a re-created entity continues above it.
    let version = current.map_or(1, |record| record.version + 1);
    stamp(&mut document, id, version);
    Ok(WriteOutcome {
        created: live.is_none(),
        version,
        document: Some(document.clone()),
        event: Event::upsert(collection, id, version, document),
    })
}

pub fn patch(
    current: Option<&Record>,
    collection: &str,
    id: &str,
    patch: &Value,
    precondition: Precondition,
    validate: &Validator,
) -> Result<WriteOutcome, StoreError> {
    let Some((version, document)) =
        current.and_then(|record| Some((record.live_version()?, record.live_document()?)))
    else {
        return Err(StoreError::NotFound);
    };
    precondition.check(Some(version))?;
    let mut merged = Value::Object(document);
    merge_patch(&mut merged, patch);
    let Value::Object(mut document) = merged else {
        return Err(StoreError::Invalid(DocumentError::new(
            "(document)",
            "a merge patch must leave the document a JSON object",
        )));
    };
    validate(&document)?;
    let version = version + 1;
    stamp(&mut document, id, version);
    Ok(WriteOutcome {
        created: false,
        version,
        document: Some(document.clone()),
        event: Event::upsert(collection, id, version, document),
    })
}

pub fn delete(
    current: Option<&Record>,
    collection: &str,
    id: &str,
    precondition: Precondition,
) -> Result<WriteOutcome, StoreError> {
    let Some(version) = current.and_then(Record::live_version) else {
        return Err(StoreError::NotFound);
    };
    precondition.check(Some(version))?;
    let version = version + 1;
    Ok(WriteOutcome {
        created: false,
        version,
        document: None,
        event: Event::delete(collection, id, version),
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mongodb::bson::doc;
    use serde_json::json;

    use super::*;
    use crate::event::Op;

    fn live(version: u64) -> Record {
        Record {
            version,
            deleted: false,
            doc: Some(doc! { "id": "p1", "version": version as i64, "name": "Cafe", "n": 1_i64 }),
        }
    }

    fn tombstone(version: u64) -> Record {
        Record {
            version,
            deleted: true,
            doc: None,
        }
    }

    fn object(value: Value) -> Document {
        value.as_object().unwrap().clone()
    }

    fn accept_all() -> Validator {
        Arc::new(|_| Ok(()))
    }

    #[test]
    fn put_creates_replaces_and_recreates_above_a_tombstone() {
        let doc = object(json!({"name": "Cafe"}));
        let created = put(None, "places", "p1", doc.clone(), Precondition::None).unwrap();
        assert!(created.created);
        assert_eq!(created.version, 1);
        assert_eq!(
            created.document,
            Some(object(json!({"id": "p1", "version": 1, "name": "Cafe"})))
        );
        assert_eq!(created.event.op, Op::Upsert);
        assert_eq!(created.event.document, created.document);

        let replaced = put(
            Some(&live(3)),
            "places",
            "p1",
            doc.clone(),
            Precondition::IfMatch(3),
        );
        let replaced = replaced.unwrap();
        assert!(!replaced.created);
        assert_eq!(replaced.version, 4);

        let recreated = put(Some(&tombstone(5)), "places", "p1", doc, Precondition::None).unwrap();
        assert!(recreated.created);
        assert_eq!(recreated.version, 6);
    }

    #[test]
    fn preconditions_see_tombstones_as_absent() {
        let doc = object(json!({}));
        let stale = put(
            Some(&live(3)),
            "places",
            "p1",
            doc.clone(),
            Precondition::IfMatch(2),
        );
        assert!(matches!(
            stale,
            Err(StoreError::PreconditionFailed { current: Some(3) })
        ));
        let gone = put(
            Some(&tombstone(3)),
            "places",
            "p1",
            doc,
            Precondition::IfMatch(3),
        );
        assert!(matches!(
            gone,
            Err(StoreError::PreconditionFailed { current: None })
        ));
        let deleted = delete(Some(&live(3)), "places", "p1", Precondition::IfMatch(1));
        assert!(matches!(
            deleted,
            Err(StoreError::PreconditionFailed { current: Some(3) })
        ));
    }

    #[test]
    fn patch_merges_validates_and_stamps() {
        let patch_doc = json!({"name": "Bar", "n": null, "tags": ["x"], "version": 99});
        let outcome = patch(
            Some(&live(2)),
            "places",
            "p1",
            &patch_doc,
            Precondition::IfMatch(2),
            &accept_all(),
        )
        .unwrap();
        assert!(!outcome.created);
        assert_eq!(outcome.version, 3);
        assert_eq!(
            outcome.document,
            Some(object(
                json!({"id": "p1", "version": 3, "name": "Bar", "tags": ["x"]})
            ))
        );

        let refuse: Validator = Arc::new(|_| Err(DocumentError::new("name", "nope")));
        let refused = patch(
            Some(&live(2)),
            "places",
            "p1",
            &json!({}),
            Precondition::None,
            &refuse,
        );
        assert!(matches!(refused, Err(StoreError::Invalid(e)) if e.field == "name"));

        let scalar = patch(
            Some(&live(2)),
            "places",
            "p1",
            &json!(7),
            Precondition::None,
            &accept_all(),
        );
        assert!(matches!(scalar, Err(StoreError::Invalid(e)) if e.field == "(document)"));
    }

    #[test]
    fn patch_and_delete_of_absent_or_tombstoned_are_not_found() {
        for current in [None, Some(tombstone(4))] {
            let patched = patch(
                current.as_ref(),
                "places",
                "p1",
                &json!({}),
                Precondition::None,
                &accept_all(),
            );
            assert!(matches!(patched, Err(StoreError::NotFound)));
            let deleted = delete(current.as_ref(), "places", "p1", Precondition::None);
            assert!(matches!(deleted, Err(StoreError::NotFound)));
        }
    }

    #[test]
    fn delete_leaves_a_higher_version_and_a_delete_event() {
        let outcome = delete(Some(&live(7)), "places", "p1", Precondition::IfMatch(7)).unwrap();
        assert_eq!(outcome.version, 8);
        assert_eq!(outcome.document, None);
        assert_eq!(outcome.event.op, Op::Delete);
        assert_eq!(outcome.event.version, 8);
    }
}
