use mongodb::bson::{doc, Bson};
use serde_json::json;

use super::*;

fn equals(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(field, value)| ((*field).to_owned(), value.clone()))
        .collect()
}

#[test]
fn top_by_score_matches_live_numeric_scores_and_exact_equals() {
    assert_eq!(
        top_by_score_filter("rating", &[]),
        doc! {
            "deleted": false,
            "doc.rating": { "$type": ["double", "int", "long"], "$not": { "$type": "array" } },
        }
    );
    let filter = top_by_score_filter(
        "rating",
        &equals(&[
            ("category", json!("cafe")),
            ("floor", json!(2)),
            ("share", json!(0.5)),
            ("open", json!(true)),
            ("note", json!(null)),
        ]),
    );
    assert_eq!(
        filter,
        doc! {
            "deleted": false,
            "doc.category": { "$eq": "cafe", "$not": { "$type": "array" } },
            "doc.floor": { "$eq": 2_i64, "$not": { "$type": "array" } },
            "doc.share": { "$eq": 0.5, "$not": { "$type": "array" } },
            "doc.open": { "$eq": true, "$not": { "$type": "array" } },
            "doc.note": { "$type": "null", "$not": { "$type": "array" } },
            "doc.rating": { "$type": ["double", "int", "long"], "$not": { "$type": "array" } },
        }
    );
    // The integer is Int64, as json_doc_to_bson stores it (MongoDB still matches 2.0 with it).
    assert_eq!(
        filter.get_document("doc.floor").unwrap().get("$eq"),
        Some(&Bson::Int64(2))
    );
    assert_eq!(
        top_by_score_filter("n", &equals(&[("big", json!(u64::MAX))])),
        doc! {
            "deleted": false,
            "doc.big": { "$eq": u64::MAX as f64, "$not": { "$type": "array" } },
            "doc.n": { "$type": ["double", "int", "long"], "$not": { "$type": "array" } },
        }
    );
}

#[test]
fn a_field_named_twice_adds_its_condition_instead_of_replacing_it() {
    assert_eq!(
        top_by_score_filter("rating", &equals(&[("rating", json!(5))])),
        doc! {
            "deleted": false,
            "doc.rating": { "$eq": 5_i64, "$not": { "$type": "array" } },
            "$and": [
                { "doc.rating": { "$type": ["double", "int", "long"], "$not": { "$type": "array" } } },
            ],
        }
    );
}

#[test]
fn composite_equals_values_match_nothing() {
    // check_equals refuses them first; the builder still never widens the answer.
    assert_eq!(
        top_by_score_filter("s", &equals(&[("tags", json!(["a"]))])),
        doc! {
            "deleted": false,
            "doc.tags": { "$in": [] },
            "doc.s": { "$type": ["double", "int", "long"], "$not": { "$type": "array" } },
        }
    );
}

#[test]
fn top_by_score_sorts_by_score_then_id() {
    assert_eq!(
        top_by_score_sort("rating"),
        doc! { "doc.rating": -1, "_id": 1 }
    );
}

#[test]
fn scores_decode_from_every_numeric_type() {
    let raw = |score: Bson| doc! { "_id": "p1", "doc": { "rating": score } };
    assert_eq!(
        decode_score(&raw(Bson::Double(4.5)), "rating").unwrap(),
        4.5
    );
    assert_eq!(decode_score(&raw(Bson::Int64(-3)), "rating").unwrap(), -3.0);
    assert_eq!(decode_score(&raw(Bson::Int32(7)), "rating").unwrap(), 7.0);
    for broken in [
        raw(Bson::String("5".into())),
        doc! { "_id": "p1", "doc": {} },
        doc! { "_id": "p1", "doc": Bson::Null },
    ] {
        assert!(
            matches!(
                decode_score(&broken, "rating"),
                Err(StoreError::Internal(_))
            ),
            "{broken}"
        );
    }
}

#[test]
fn near_is_a_geo_near_on_the_field_then_a_stable_order() {
    let scale = MONGO_EARTH_RADIUS_M / EARTH_RADIUS_M;
    assert_eq!(
        near_pipeline("location", -9.1393, 38.7223, 1500.0, 20),
        vec![
            doc! { "$geoNear": {
                "near": { "type": "Point", "coordinates": [-9.1393, 38.7223] },
                "key": "doc.location",
                "distanceField": "_dist",
                "maxDistance": 1500.0 * MONGO_EARTH_RADIUS_M / EARTH_RADIUS_M,
                "spherical": true,
                "query": { "deleted": false, "doc.location.type": "Point" },
            } },
            doc! { "$sort": { "_dist": 1, "_id": 1 } },
            doc! { "$limit": 20_i64 },
            doc! { "$project": { "_outbox": 0 } },
        ]
    );
    // MongoDB's radius is the larger, so its maxDistance is slightly above Redis's metres.
    assert!(scale > 1.0 && scale < 1.001);
    assert_eq!(
        near_pipeline("location", 0.0, 0.0, 0.0, 0)[2],
        doc! { "$limit": 1_i64 }
    );
}

#[test]
fn distances_come_back_in_redis_metres() {
    // One radian: MongoDB reports its radius in metres, Redis's sphere makes it EARTH_RADIUS_M.
    let raw = doc! { "_id": "p1", "_dist": MONGO_EARTH_RADIUS_M };
    let d = decode_distance(&raw).unwrap();
    assert!((d - EARTH_RADIUS_M).abs() < 1e-6, "{d}");
    assert_eq!(
        decode_distance(&doc! { "_id": "p1", "_dist": 0.0 }).unwrap(),
        0.0
    );
    assert!(matches!(
        decode_distance(&doc! { "_id": "p1" }),
        Err(StoreError::Internal(_))
    ));
}
