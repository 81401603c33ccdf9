use mongodb::bson::{doc, Bson, DateTime};
use serde_json::json;

use super::*;
use crate::pipeline::Pipeline;

fn object(value: Value) -> Document {
    value.as_object().expect("a JSON object").clone()
}

fn now() -> DateTime {
    DateTime::from_millis(1_700_000_000_000)
}

fn upsert(version: u64) -> Event {
    Event::upsert(
        "places",
        "p1",
        version,
        object(json!({"id": "p1", "version": version, "name": "Cafe"})),
    )
}

#[test]
fn outbox_entry_carries_seq_event_id_and_the_encoded_event() {
    let event = upsert(3);
    let entry = outbox_entry(42, &event).unwrap();
    assert_eq!(
        entry,
        doc! {
            "seq": 42_i64,
            "event_id": event.event_id.to_string(),
            "payload": String::from_utf8(event.encode()).unwrap(),
        }
    );
    assert_eq!(
        Event::decode(entry.get_str("payload").unwrap().as_bytes()).unwrap(),
        event
    );
}

#[test]
fn create_inserts_a_whole_record_with_its_event() {
    let entry = doc! { "seq": 1_i64, "event_id": "e1", "payload": "{}" };
    let user = doc! { "id": "p1", "version": 1_i64, "name": "Cafe" };
    assert_eq!(
        new_record("p1", 1, Some(user.clone()), entry.clone(), now()),
        doc! {
            "_id": "p1",
            "version": 1_i64,
            "deleted": false,
            "doc": user,
            "updated_at": now(),
            "_outbox": [entry],
        }
    );
}

#[test]
fn replace_and_patch_set_the_new_version_and_push_the_event_under_a_version_guard() {
    assert_eq!(
        version_guard("p1", 4),
        doc! { "_id": "p1", "version": 4_i64 }
    );
    let entry = doc! { "seq": 9_i64, "event_id": "e5", "payload": "{}" };
    let user = doc! { "id": "p1", "version": 5_i64, "nested": { "a": [1_i64, 2.5] } };
    assert_eq!(
        write_update(5, Some(user.clone()), entry.clone(), now()),
        doc! {
            "$set": {
                "version": 5_i64,
                "deleted": false,
                "doc": user,
                "updated_at": now(),
            },
            "$push": { "_outbox": entry },
        }
    );
}

#[test]
fn delete_writes_a_tombstone_and_pushes_the_event() {
    let entry = doc! { "seq": 10_i64, "event_id": "e6", "payload": "{}" };
    assert_eq!(
        write_update(6, None, entry.clone(), now()),
        doc! {
            "$set": { "version": 6_i64, "deleted": true, "doc": Bson::Null, "updated_at": now() },
            "$push": { "_outbox": entry },
        }
    );
    let tombstone = new_record("p1", 1, None, doc! {}, now());
    assert_eq!(tombstone.get("doc"), Some(&Bson::Null));
    assert_eq!(tombstone.get_bool("deleted"), Ok(true));
}

#[test]
fn records_decode_live_and_tombstoned() {
    let live = decode_record(&doc! {
        "_id": "p1", "version": 2_i64, "deleted": false,
        "doc": { "id": "p1", "version": 2_i64, "n": 1_i32 },
    })
    .unwrap();
    assert_eq!(live.live_version(), Some(2));
    assert_eq!(
        live.live_document(),
        Some(object(json!({"id": "p1", "version": 2, "n": 1})))
    );

    let tombstone =
        decode_record(&doc! { "_id": "p1", "version": 3_i64, "deleted": true, "doc": Bson::Null })
            .unwrap();
    assert_eq!(tombstone.version, 3);
    assert_eq!(tombstone.live_version(), None);
    assert_eq!(tombstone.live_document(), None);

    for broken in [
        doc! { "_id": "p1", "deleted": false, "doc": {} },
        doc! { "_id": "p1", "version": "2", "deleted": false, "doc": {} },
        doc! { "_id": "p1", "version": 2_i64, "doc": {} },
        doc! { "_id": "p1", "version": 2_i64, "deleted": false, "doc": Bson::Null },
        doc! { "_id": "p1", "version": 2_i64, "deleted": false, "doc": [1_i32] },
    ] {
        let err = decode_record(&broken).unwrap_err();
        assert!(matches!(err, StoreError::Internal(_)), "{broken}: {err:?}");
    }
}

#[test]
fn reads_filter_tombstones_and_skip_the_outbox() {
    assert_eq!(id_filter("p1"), doc! { "_id": "p1" });
    assert_eq!(without_outbox(), doc! { "_outbox": 0 });
    assert_eq!(version_only(), doc! { "version": 1 });
    assert_eq!(
        decode_version(&doc! { "_id": "p1", "version": 3_i64 }).unwrap(),
        3
    );
    assert!(decode_version(&doc! { "_id": "p1", "version": -1_i64 }).is_err());
    let ids = vec!["b".to_owned(), "a".to_owned()];
    assert_eq!(
        live_ids_filter(&ids),
        doc! { "_id": { "$in": ["b", "a"] }, "deleted": false }
    );
    assert_eq!(
        scan_filter(Some("p1")),
        doc! { "_id": { "$gt": "p1" }, "deleted": false }
    );
    assert_eq!(scan_filter(None), doc! { "deleted": false });
    assert_eq!(by_id(), doc! { "_id": 1 });
}

#[test]
fn pending_query_uses_the_indexed_field_and_returns_the_oldest_event_only() {
    assert_eq!(
        pending_filter(),
        doc! { "_outbox.event_id": { "$exists": true } }
    );
    assert_eq!(pending_sort(), doc! { "_outbox.seq": 1 });
    assert_eq!(
        pending_projection(),
        doc! { "doc": 0, "_outbox": { "$slice": 1 } }
    );
    let event = upsert(1);
    let raw = doc! { "_id": "p1", "version": 1_i64, "_outbox": [outbox_entry(7, &event).unwrap()] };
    assert_eq!(
        decode_pending(&raw).unwrap(),
        Some(PendingEvent { seq: 7, event })
    );
    assert_eq!(
        decode_pending(&doc! { "_id": "p1", "_outbox": [] }).unwrap(),
        None
    );
    let poison =
        doc! { "_id": "p1", "_outbox": [{ "seq": 1_i64, "event_id": "e", "payload": "{" }] };
    assert!(matches!(
        decode_pending(&poison),
        Err(StoreError::Internal(_))
    ));
}

#[test]
fn mark_published_pulls_the_events_per_collection() {
    let a1 = PendingEvent {
        seq: 1,
        event: upsert(1),
    };
    let a2 = PendingEvent {
        seq: 2,
        event: upsert(2),
    };
    let b = PendingEvent {
        seq: 3,
        event: Event::delete("users", "u1", 4),
    };
    let events = [a1.clone(), b.clone(), a2.clone()];
    let grouped = mark_published(&events);
    assert_eq!(grouped.len(), 2);
    assert_eq!(
        grouped["places"],
        (
            doc! { "_id": { "$in": ["p1"] } },
            doc! { "$pull": { "_outbox": { "event_id": { "$in": [
                a1.event.event_id.to_string(),
                a2.event.event_id.to_string(),
            ] } } } },
        )
    );
    assert_eq!(
        grouped["users"],
        (
            doc! { "_id": { "$in": ["u1"] } },
            doc! { "$pull": { "_outbox": { "event_id": { "$in": [b.event.event_id.to_string()] } } } },
        )
    );
    assert!(mark_published(&[]).is_empty());
}

#[test]
fn pending_count_sums_the_outbox_sizes() {
    assert_eq!(
        pending_count_pipeline(),
        vec![
            doc! { "$match": { "_outbox.event_id": { "$exists": true } } },
            doc! { "$group": { "_id": Bson::Null, "n": { "$sum": { "$size": "$_outbox" } } } },
        ]
    );
    assert_eq!(
        decode_count(&doc! { "_id": Bson::Null, "n": 3_i32 }).unwrap(),
        3
    );
    assert_eq!(
        decode_count(&doc! { "_id": Bson::Null, "n": 5_i64 }).unwrap(),
        5
    );
    assert!(decode_count(&doc! { "_id": Bson::Null }).is_err());
}

#[test]
fn indexes_per_projection_kind() {
    let pipeline = Pipeline::from_toml(
        r#"
        [collections.places.fields]
        category = "string"
        rating = "number"
        location = "geo_point"

        [collections.places.projections.document]
        kind = "string"
        key = "place:{id}"

        [collections.places.projections.fields]
        kind = "hash"
        key = "place:{id}:h"
        fields = ["category"]

        [collections.places.projections.rating]
        kind = "sorted_set"
        key = "places:rating"
        score = "rating"

        [collections.places.projections.rating_by_category]
        kind = "sorted_set"
        key = "places:rating:{category}"
        score = "rating"

        [collections.places.projections.nearby]
        kind = "geo"
        key = "places:geo"
        field = "location"
        "#,
    )
    .unwrap();
    let models = index_models(pipeline.collection("places").unwrap());
    let keys: Vec<_> = models.iter().map(|m| m.keys.clone()).collect();
    assert_eq!(
        keys,
        vec![
            doc! { "_outbox.event_id": 1 },
            doc! { "doc.location": "2dsphere" },
            doc! { "doc.rating": -1, "_id": 1 },
        ]
    );
    let sparse: Vec<_> = models
        .iter()
        .map(|m| m.options.as_ref().and_then(|o| o.sparse))
        .collect();
    assert_eq!(sparse, vec![Some(true), None, None]);
}

#[test]
fn json_bson_round_trip_keeps_types() {
    let original = object(json!({
        "id": "p1",
        "version": 7,
        "int": 5,
        "negative": -3,
        "big": 9_007_199_254_740_993_i64,
        "max": i64::MAX,
        "float": 1.5,
        "whole_float": 2.0,
        "bool": true,
        "null": null,
        "text": "héllo",
        "array": [1, "x", {"y": [2.5, false, null]}],
        "nested": {"deep": {"k": "v", "empty": {}}, "list": []},
    }));
    let bson = json_doc_to_bson(&original).unwrap();
    assert_eq!(bson.get("int"), Some(&Bson::Int64(5)));
    assert_eq!(bson.get("version"), Some(&Bson::Int64(7)));
    assert_eq!(bson.get("whole_float"), Some(&Bson::Double(2.0)));
    assert_eq!(bson.get("null"), Some(&Bson::Null));
    let back = bson_doc_to_json(bson);
    assert_eq!(back, original);
    assert!(back["int"].is_i64());
    assert!(back["whole_float"].is_f64());
    assert!(back["array"][2]["y"][0].is_f64());
}

#[test]
fn extended_json_lookalikes_stay_literal() {
    let original = object(json!({
        "long": {"$numberLong": "5"},
        "oid": {"$oid": "507f1f77bcf86cd799439011"},
        "date": {"$date": {"$numberLong": "0"}},
        "dotted.key": 1,
    }));
    let bson = json_doc_to_bson(&original).unwrap();
    assert_eq!(
        bson.get("long"),
        Some(&Bson::Document(doc! { "$numberLong": "5" }))
    );
    assert_eq!(bson_doc_to_json(bson), original);
}

#[test]
fn bson_only_values_read_as_json() {
    let stored = doc! {
        "int32": 4_i32,
        "nan": f64::NAN,
        "when": DateTime::from_millis(0),
    };
    let json = bson_doc_to_json(stored);
    assert_eq!(json["int32"], json!(4));
    assert!(json["int32"].is_i64());
    assert_eq!(json["nan"], json!({"$numberDouble": "NaN"}));
    assert_eq!(json["when"], json!({"$date": "1970-01-01T00:00:00Z"}));
}

#[test]
fn integers_beyond_int64_are_refused_with_their_path() {
    let document = object(json!({"a": {"b": [0, u64::MAX]}}));
    match json_doc_to_bson(&document) {
        Err(StoreError::Invalid(err)) => assert_eq!(err.field, "a.b.1"),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

#[test]
fn a_heartbeat_is_pushed_onto_a_tombstone_record_of_its_own() {
    let event = Event::heartbeat("places");
    let entry = outbox_entry(7, &event).unwrap();
    let now = DateTime::from_millis(1_000);
    let (filter, update) = heartbeat_upsert(entry.clone(), now);
    assert_eq!(filter, doc! { "_id": HEARTBEAT_ID });
    assert_eq!(
        update,
        doc! {
            "$setOnInsert": { VERSION: 0_i64, DELETED: true, DOC: Bson::Null },
            "$set": { UPDATED_AT: now },
            "$push": { OUTBOX: entry },
        }
    );
}
