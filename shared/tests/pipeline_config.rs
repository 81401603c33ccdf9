//! The pipeline file: the shipped one, and a precise error for each way a file can be wrong.

use std::path::Path;
use std::time::Duration;

use cacheflow_shared::pipeline::{Pipeline, ProjectionKind};
use serde_json::json;

fn shipped() -> Pipeline {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml");
    Pipeline::load(&path).expect("the shipped pipeline is valid")
}

#[test]
fn the_shipped_pipeline_declares_exactly_the_places_keys() {
    let pipeline = shipped();
    assert_eq!(
        pipeline.collection_names().collect::<Vec<_>>(),
        vec!["places"]
    );
    let places = pipeline.collection("places").unwrap();
    let mut keys: Vec<(String, &str, String)> = places
        .projections
        .iter()
        .map(|p| {
            (
                p.name.clone(),
                p.kind.kind_name(),
                p.kind.key().raw().to_owned(),
            )
        })
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            ("document".into(), "string", "place:{id}".into()),
            ("fields".into(), "hash", "place:{id}:h".into()),
            ("nearby".into(), "geo", "places:geo".into()),
            ("rating".into(), "sorted_set", "places:rating".into()),
            (
                "rating_by_category".into(),
                "sorted_set",
                "places:rating:{category}".into()
            ),
        ]
    );
    match &places.projection("fields").unwrap().kind {
        ProjectionKind::Hash { fields, .. } => {
            assert_eq!(fields, &["name", "category", "rating", "price"])
        }
        other => panic!("fields is {other:?}"),
    }
    for name in ["rating", "rating_by_category"] {
        match &places.projection(name).unwrap().kind {
            ProjectionKind::SortedSet { score, .. } => assert_eq!(score, "rating"),
            other => panic!("{name} is {other:?}"),
        }
    }
    match &places.projection("nearby").unwrap().kind {
        ProjectionKind::Geo { field, .. } => assert_eq!(field, "location"),
        other => panic!("nearby is {other:?}"),
    }
}

const BASE_FIELDS: &str = r#"
[collections.places.fields]
name = "string"
category = "string"
rating = "number"
location = "geo_point"
"#;

fn error_of(extra: &str) -> (String, String) {
    let err = Pipeline::from_toml(&format!("{BASE_FIELDS}{extra}")).unwrap_err();
    (err.path, err.message)
}

#[test]
fn unknown_keys_are_rejected_with_their_position() {
    let (path, message) = error_of(
        "[collections.places.projections.doc]\nkind = \"string\"\nkey = \"p:{id}\"\nttl = 5\n",
    );
    assert!(message.contains("unknown field `ttl`"), "{message}");
    assert!(path.starts_with("line "), "{path}");
    let (_, message) =
        error_of("[collections.places.projections.doc]\nkind = \"list\"\nkey = \"p:{id}\"\n");
    assert!(message.contains("unknown variant `list`"), "{message}");
    let err = Pipeline::from_toml("[collections.places]\nfieldz = {}\n").unwrap_err();
    assert!(
        err.message.contains("unknown field `fieldz`"),
        "{}",
        err.message
    );
}

#[test]
fn a_template_naming_a_missing_field_is_rejected() {
    let (path, message) = error_of(
        "[collections.places.projections.by_city]\nkind = \"sorted_set\"\nkey = \"places:{city}\"\nscore = \"rating\"\n",
    );
    assert_eq!(path, "collections.places.projections.by_city.key");
    assert!(
        message.contains("`city`") && message.contains("not a declared field"),
        "{message}"
    );
}

#[test]
fn a_non_numeric_score_is_rejected() {
    let (path, message) = error_of(
        "[collections.places.projections.by_name]\nkind = \"sorted_set\"\nkey = \"places:by_name\"\nscore = \"name\"\n",
    );
    assert_eq!(path, "collections.places.projections.by_name.score");
    assert!(message.contains("declared as string"), "{message}");
    let (path, _) = error_of(
        "[collections.places.projections.by_x]\nkind = \"sorted_set\"\nkey = \"places:by_x\"\nscore = \"x\"\n",
    );
    assert_eq!(path, "collections.places.projections.by_x.score");
}

#[test]
fn duplicate_key_templates_are_rejected() {
    let (path, message) = error_of(
        "[collections.places.projections.a]\nkind = \"string\"\nkey = \"p:{id}\"\n\
         [collections.places.projections.b]\nkind = \"hash\"\nkey = \"p:{id}\"\nfields = [\"name\"]\n",
    );
    assert_eq!(path, "collections.places.projections.b.key");
    assert!(
        message.contains("already used by collections.places.projections.a.key"),
        "{message}"
    );
}

#[test]
fn geo_fields_id_placement_and_field_names_are_checked() {
    let (path, message) = error_of(
        "[collections.places.projections.near]\nkind = \"geo\"\nkey = \"places:geo\"\nfield = \"rating\"\n",
    );
    assert_eq!(path, "collections.places.projections.near.field");
    assert!(message.contains("geo_point"), "{message}");
    let (_, message) =
        error_of("[collections.places.projections.doc]\nkind = \"string\"\nkey = \"place\"\n");
    assert!(message.contains("must contain `{id}`"), "{message}");
    let (_, message) = error_of(
        "[collections.places.projections.near]\nkind = \"geo\"\nkey = \"places:{id}\"\nfield = \"location\"\n",
    );
    assert!(message.contains("must not contain `{id}`"), "{message}");
    let (_, message) = error_of(
        "[collections.places.projections.r]\nkind = \"sorted_set\"\nkey = \"places:{rating}\"\nscore = \"rating\"\n",
    );
    assert!(
        message.contains("only string and integer fields"),
        "{message}"
    );
    let (path, _) = error_of("[collections.places.projections.doc]\nkind = \"string\"\nkey = \"p:{id}\"\nttl_seconds = 0\n");
    assert_eq!(path, "collections.places.projections.doc.ttl_seconds");
    let err = Pipeline::from_toml("[collections.Places.fields]\nname = \"string\"\n").unwrap_err();
    assert_eq!(err.path, "collections.Places");
    let err = Pipeline::from_toml("[collections.places.fields]\nid = \"string\"\n").unwrap_err();
    assert_eq!(err.path, "collections.places.fields.id");
    let err = Pipeline::from_toml("[collections.dlq.fields]\nname = \"string\"\n").unwrap_err();
    assert_eq!(err.path, "collections.dlq");
    let err =
        Pipeline::from_toml("[collections.collections.fields]\nname = \"string\"\n").unwrap_err();
    assert_eq!(err.path, "collections.collections");
    assert!(err.message.contains("reserved"), "{}", err.message);
    let err = Pipeline::from_toml("").unwrap_err();
    assert_eq!(err.path, "collections");
}

#[test]
fn ttl_is_read() {
    let pipeline = Pipeline::from_toml(&format!(
        "{BASE_FIELDS}[collections.places.projections.doc]\nkind = \"string\"\nkey = \"p:{{id}}\"\nttl_seconds = 60\n"
    ))
    .unwrap();
    match &pipeline.collection("places").unwrap().projections[0].kind {
        ProjectionKind::String { ttl, .. } => assert_eq!(*ttl, Some(Duration::from_secs(60))),
        other => panic!("{other:?}"),
    }
}

#[test]
fn documents_are_checked_against_the_projections() {
    let pipeline = shipped();
    let places = pipeline.collection("places").unwrap();
    let valid = json!({
        "name": "Cafe", "category": "cafe", "rating": 4.5, "price": 2, "extra": [1, 2],
        "location": {"type": "Point", "coordinates": [-180.0, 85.05112878]}
    });
    places.validate(valid.as_object().unwrap()).unwrap();
    let field_of = |patch: serde_json::Value| {
        let mut doc = valid.clone();
        cacheflow_shared::document::merge_patch(&mut doc, &patch);
        places.validate(doc.as_object().unwrap()).unwrap_err().field
    };
    assert_eq!(field_of(json!({"rating": "4"})), "rating");
    assert_eq!(field_of(json!({"rating": null})), "rating");
    assert_eq!(field_of(json!({"price": "cheap"})), "price");
    assert_eq!(
        field_of(json!({"location": {"coordinates": [0, 85.06]}})),
        "location"
    );
    assert_eq!(
        field_of(json!({"location": {"coordinates": [180.1, 0]}})),
        "location"
    );
    assert_eq!(
        field_of(json!({"location": {"coordinates": [1]}})),
        "location"
    );
    assert_eq!(
        field_of(json!({"location": {"type": "Polygon"}})),
        "location"
    );
    assert_eq!(field_of(json!({"category": ""})), "category");
    assert_eq!(field_of(json!({"category": "a{b}"})), "category");
    // Hash fields may be absent.
    let mut doc = valid.clone();
    doc.as_object_mut().unwrap().remove("price");
    places.validate(doc.as_object().unwrap()).unwrap();
}
