//! The document-store contract. Every adapter must pass it: SQLite always, MongoDB whenever
//! `MONGODB_TEST_URI` is set (e.g. `mongodb://127.0.0.1:27017`); each run uses a fresh database.

use std::sync::Arc;

use cacheflow_shared::config::{Role, Settings, StoreSettings};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::{Op, HEARTBEAT_ID};
use cacheflow_shared::pipeline::{DocumentError, Pipeline};
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::{
    self, DocumentStore, Precondition, Scored, StoreError, Validator, EARTH_RADIUS_M,
};
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[collections.places.fields]
name = "string"
rating = "number"
category = "string"
floor = "integer"
location = "geo_point"
[collections.places.projections.document]
kind = "string"
key = "place:{id}"
[collections.places.projections.top_rated]
kind = "sorted_set"
key = "places:rating:{category}"
score = "rating"
[collections.places.projections.nearby]
kind = "geo"
key = "places:geo"
field = "location"
[collections.notes.projections.document]
kind = "string"
key = "note:{id}"
"#;

type Store = Arc<dyn DocumentStore>;

fn doc(value: Value) -> Document {
    value.as_object().expect("an object").clone()
}

fn accept_all() -> Validator {
    Arc::new(|_| Ok(()))
}

fn settings() -> StoreSettings {
    Settings::defaults(Role::Api).store
}

async fn put_creates_then_replaces(store: Store) {
    let first = store
        .put(
            "places",
            "p1",
            doc(json!({"name": "A"})),
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.version, 1);
    let stored = first.document.unwrap();
    assert_eq!(stored["id"], "p1");
    assert_eq!(stored["version"], 1);
    let second = store
        .put(
            "places",
            "p1",
            doc(json!({"name": "B", "version": 42})),
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.version, 2);
    let got = store.get("places", "p1").await.unwrap().unwrap();
    assert_eq!(got.version, 2);
    assert_eq!(
        got.document,
        doc(json!({"id": "p1", "version": 2, "name": "B"}))
    );
    assert_eq!(second.event.op, Op::Upsert);
    assert_eq!(second.event.document.as_ref(), Some(&got.document));
}

async fn delete_leaves_a_tombstone_and_recreate_continues_above_it(store: Store) {
    store
        .put(
            "places",
            "p1",
            doc(json!({"name": "A"})),
            Precondition::None,
        )
        .await
        .unwrap();
    let deleted = store
        .delete("places", "p1", Precondition::None)
        .await
        .unwrap();
    assert_eq!(deleted.version, 2);
    assert!(deleted.document.is_none());
    assert_eq!(deleted.event.op, Op::Delete);
    assert!(store.get("places", "p1").await.unwrap().is_none());
    assert_eq!(store.latest_version("places", "p1").await.unwrap(), Some(2));
    assert!(matches!(
        store.delete("places", "p1", Precondition::None).await,
        Err(StoreError::NotFound)
    ));
    let recreated = store
        .put(
            "places",
            "p1",
            doc(json!({"name": "C"})),
            Precondition::None,
        )
        .await
        .unwrap();
    assert!(recreated.created);
    assert_eq!(recreated.version, 3);
    assert_eq!(store.latest_version("places", "never").await.unwrap(), None);
}

async fn patch_merges_and_validates_inside_the_write(store: Store) {
    let absent = store
        .patch(
            "places",
            "p1",
            json!({"name": "x"}),
            Precondition::None,
            accept_all(),
        )
        .await;
    assert!(matches!(absent, Err(StoreError::NotFound)));
    store
        .put(
            "places",
            "p1",
            doc(json!({"name": "A", "rating": 4, "nested": {"a": 1, "b": 2}})),
            Precondition::None,
        )
        .await
        .unwrap();
    let patched = store
        .patch(
            "places",
            "p1",
            json!({"rating": null, "nested": {"b": 3}}),
            Precondition::None,
            accept_all(),
        )
        .await
        .unwrap();
    assert_eq!(patched.version, 2);
    assert_eq!(
        patched.document.unwrap(),
        doc(json!({"id": "p1", "version": 2, "name": "A", "nested": {"a": 1, "b": 3}}))
    );
    let reject: Validator = Arc::new(|d: &Document| match d.get("name") {
        Some(Value::String(_)) => Ok(()),
        _ => Err(DocumentError::new("name", "must be a string")),
    });
    let invalid = store
        .patch(
            "places",
            "p1",
            json!({"name": 5}),
            Precondition::None,
            reject,
        )
        .await;
    match invalid {
        Err(StoreError::Invalid(err)) => assert_eq!(err.field, "name"),
        other => panic!("expected Invalid, got {other:?}"),
    }
    assert_eq!(
        store.get("places", "p1").await.unwrap().unwrap().version,
        2,
        "a rejected patch writes nothing"
    );
    assert_eq!(
        store.pending_count().await.unwrap(),
        2,
        "a rejected patch records no event"
    );
    store
        .delete("places", "p1", Precondition::None)
        .await
        .unwrap();
    let tombstoned = store
        .patch(
            "places",
            "p1",
            json!({"name": "x"}),
            Precondition::None,
            accept_all(),
        )
        .await;
    assert!(matches!(tombstoned, Err(StoreError::NotFound)));
}

async fn preconditions_are_checked_against_the_live_version(store: Store) {
    let failed = |r: Result<_, StoreError>| matches!(r, Err(StoreError::PreconditionFailed { .. }));
    assert!(failed(
        store
            .put("places", "p1", doc(json!({})), Precondition::IfExists)
            .await
    ));
    assert!(failed(
        store
            .put("places", "p1", doc(json!({})), Precondition::IfMatch(1))
            .await
    ));
    store
        .put("places", "p1", doc(json!({})), Precondition::IfAbsent)
        .await
        .unwrap();
    match store
        .put("places", "p1", doc(json!({})), Precondition::IfAbsent)
        .await
    {
        Err(StoreError::PreconditionFailed { current }) => assert_eq!(current, Some(1)),
        other => panic!("expected PreconditionFailed, got {other:?}"),
    }
    assert!(failed(
        store
            .put("places", "p1", doc(json!({})), Precondition::IfMatch(2))
            .await
    ));
    store
        .put("places", "p1", doc(json!({})), Precondition::IfMatch(1))
        .await
        .unwrap();
    store
        .put("places", "p1", doc(json!({})), Precondition::IfExists)
        .await
        .unwrap();
    assert!(failed(
        store
            .patch(
                "places",
                "p1",
                json!({}),
                Precondition::IfMatch(1),
                accept_all()
            )
            .await
    ));
    assert!(failed(
        store.delete("places", "p1", Precondition::IfMatch(1)).await
    ));
    store
        .delete("places", "p1", Precondition::IfMatch(3))
        .await
        .unwrap();
    // A tombstone is not live: If-Match on it fails, If-None-Match: * succeeds.
    assert!(failed(
        store
            .put("places", "p1", doc(json!({})), Precondition::IfMatch(4))
            .await
    ));
    let recreated = store
        .put("places", "p1", doc(json!({})), Precondition::IfAbsent)
        .await
        .unwrap();
    assert_eq!(recreated.version, 5);
}

async fn every_write_records_its_event_in_the_outbox(store: Store) {
    store
        .put("places", "a", doc(json!({"name": "A"})), Precondition::None)
        .await
        .unwrap();
    store
        .put("notes", "a", doc(json!({"text": "hi"})), Precondition::None)
        .await
        .unwrap();
    store
        .patch(
            "places",
            "a",
            json!({"name": "B"}),
            Precondition::None,
            accept_all(),
        )
        .await
        .unwrap();
    store
        .delete("places", "a", Precondition::None)
        .await
        .unwrap();
    store
        .put("places", "b", doc(json!({"name": "X"})), Precondition::None)
        .await
        .unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 5);

    let pending = store.pending_events(100).await.unwrap();
    assert!(!pending.is_empty());
    let seqs: Vec<u64> = pending.iter().map(|p| p.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "oldest first: {seqs:?}"
    );
    // Whatever an adapter returns per round, per entity the first pending event is the oldest.
    let first_places_a = pending
        .iter()
        .find(|p| p.event.collection == "places" && p.event.id == "a")
        .unwrap();
    assert_eq!(first_places_a.event.version, 1);
    assert_eq!(first_places_a.event.document.as_ref().unwrap()["name"], "A");

    // Draining round by round yields every event exactly once, each entity in version order.
    let mut seen: Vec<(String, String, u64, Op)> = Vec::new();
    for _ in 0..10 {
        let batch = store.pending_events(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let mut firsts = Vec::new();
        let mut entities = std::collections::HashSet::new();
        for p in batch {
            if entities.insert((p.event.collection.clone(), p.event.id.clone())) {
                firsts.push(p);
            }
        }
        for p in &firsts {
            seen.push((
                p.event.collection.clone(),
                p.event.id.clone(),
                p.event.version,
                p.event.op,
            ));
        }
        store.mark_published(&firsts).await.unwrap();
    }
    assert_eq!(store.pending_count().await.unwrap(), 0);
    seen.sort();
    assert_eq!(
        seen,
        vec![
            ("notes".into(), "a".into(), 1, Op::Upsert),
            ("places".into(), "a".into(), 1, Op::Upsert),
            ("places".into(), "a".into(), 2, Op::Upsert),
            ("places".into(), "a".into(), 3, Op::Delete),
            ("places".into(), "b".into(), 1, Op::Upsert),
        ]
    );
    // Marking again (a relay retry) is harmless.
    store.mark_published(&[]).await.unwrap();
}

async fn get_many_keeps_order_and_reports_absent(store: Store) {
    for id in ["a", "b", "c"] {
        store
            .put("places", id, doc(json!({"name": id})), Precondition::None)
            .await
            .unwrap();
    }
    store
        .delete("places", "b", Precondition::None)
        .await
        .unwrap();
    let ids: Vec<String> = ["c", "zz", "a", "b"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let got = store.get_many("places", &ids).await.unwrap();
    let names: Vec<Option<String>> = got
        .iter()
        .map(|v| {
            v.as_ref()
                .map(|v| v.document["name"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(names, vec![Some("c".into()), None, Some("a".into()), None]);
    assert!(store.get_many("places", &[]).await.unwrap().is_empty());
    // Collections are separate namespaces.
    assert!(store.get("notes", "a").await.unwrap().is_none());
}

async fn scan_pages_live_documents_in_id_order(store: Store) {
    for i in 0..25 {
        store
            .put(
                "places",
                &format!("id{i:02}"),
                doc(json!({"n": i})),
                Precondition::None,
            )
            .await
            .unwrap();
    }
    store
        .delete("places", "id03", Precondition::None)
        .await
        .unwrap();
    store
        .put("notes", "id00", doc(json!({})), Precondition::None)
        .await
        .unwrap();
    // Tombstones and other collections are not counted.
    assert_eq!(store.count_live("places").await.unwrap(), 24);
    assert_eq!(store.count_live("notes").await.unwrap(), 1);
    assert_eq!(store.count_live("nothing").await.unwrap(), 0);
    let mut after: Option<String> = None;
    let mut ids = Vec::new();
    loop {
        let page = store.scan("places", after.as_deref(), 10).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 10);
        after = Some(
            page.last().unwrap().document["id"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        ids.extend(
            page.into_iter()
                .map(|v| v.document["id"].as_str().unwrap().to_owned()),
        );
    }
    let expected: Vec<String> = (0..25)
        .filter(|i| *i != 3)
        .map(|i| format!("id{i:02}"))
        .collect();
    assert_eq!(ids, expected);
}

async fn concurrent_writers_get_distinct_rising_versions(store: Store) {
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                store
                    .put(
                        "places",
                        "hot",
                        doc(json!({"writer": i})),
                        Precondition::None,
                    )
                    .await
                    .unwrap()
                    .version
            })
        })
        .collect();
    let mut versions = Vec::new();
    for task in tasks {
        versions.push(task.await.unwrap());
    }
    versions.sort_unstable();
    assert_eq!(versions, (1..=16).collect::<Vec<u64>>());
    assert_eq!(
        store.get("places", "hot").await.unwrap().unwrap().version,
        16
    );
    store.ping().await.unwrap();
}

fn ids(found: &[Scored]) -> Vec<&str> {
    found
        .iter()
        .map(|s| s.document.document["id"].as_str().unwrap())
        .collect()
}

fn eq(pairs: &[(&str, Value)]) -> Vec<(String, Value)> {
    pairs
        .iter()
        .map(|(field, value)| ((*field).to_owned(), value.clone()))
        .collect()
}

async fn top_by_score_orders_filters_and_pages(store: Store) {
    let places = [
        ("a", json!({"category": "cafe", "rating": 4.5, "floor": 1})),
        ("b", json!({"category": "cafe", "rating": 4.5, "floor": 2})),
        ("c", json!({"category": "cafe", "rating": 5, "floor": 1})),
        ("d", json!({"category": "bar", "rating": 4.9, "floor": 1})),
        ("e", json!({"category": "cafe", "rating": 9, "floor": 1})),
        ("f", json!({"category": "cafe", "floor": 1})),
        (
            "g",
            json!({"category": "cafe", "rating": "9.5", "floor": 1}),
        ),
        ("h", json!({"category": "cafe", "rating": true, "floor": 1})),
        ("i", json!({"category": "Cafe", "rating": 4.8, "floor": 1})),
        ("j", json!({"category": "cafe", "rating": 2, "floor": "1"})),
        (
            "k",
            json!({"category": "cafe", "rating": -1.5, "floor": 1.0}),
        ),
        ("l", json!({"category": "cafe", "rating": 1, "floor": true})),
    ];
    // Written out of id order, so an id-ordered answer cannot come from insertion order.
    for (id, body) in places.iter().rev() {
        store
            .put("places", id, doc(body.clone()), Precondition::None)
            .await
            .unwrap();
    }
    store
        .delete("places", "e", Precondition::None)
        .await
        .unwrap();
    store
        .put(
            "notes",
            "a",
            doc(json!({"category": "cafe", "rating": 100})),
            Precondition::None,
        )
        .await
        .unwrap();
    let top = |equals: Vec<(String, Value)>, offset: usize, limit: usize| {
        let store = store.clone();
        async move {
            store
                .top_by_score("places", "rating", &equals, offset, limit)
                .await
                .unwrap()
        }
    };

    // Score descending, ties by id; tombstones, missing and non-numeric scores left out.
    let all = top(Vec::new(), 0, 100).await;
    assert_eq!(ids(&all), ["c", "d", "i", "a", "b", "j", "l", "k"]);
    let scores: Vec<f64> = all.iter().map(|s| s.value).collect();
    assert_eq!(scores, [5.0, 4.9, 4.8, 4.5, 4.5, 2.0, 1.0, -1.5]);
    assert_eq!(all[0].document.version, 1);
    assert_eq!(all[0].document.document["category"], "cafe");

    // Strings match exactly (case included).
    let cafe = || eq(&[("category", json!("cafe"))]);
    assert_eq!(
        ids(&top(cafe(), 0, 100).await),
        ["c", "a", "b", "j", "l", "k"]
    );
    assert_eq!(ids(&top(cafe(), 1, 2).await), ["a", "b"]);
    assert_eq!(ids(&top(cafe(), 5, 10).await), ["k"]);
    assert!(top(cafe(), 6, 10).await.is_empty());
    assert!(top(cafe(), 0, 0).await.is_empty());
    assert_eq!(
        ids(&top(eq(&[("category", json!("Cafe"))]), 0, 10).await),
        ["i"]
    );
    assert!(top(eq(&[("category", json!("nope"))]), 0, 10)
        .await
        .is_empty());

    // Integers match numbers of equal value, never strings or booleans.
    let cafe_floor_1 = eq(&[("category", json!("cafe")), ("floor", json!(1))]);
    assert_eq!(ids(&top(cafe_floor_1, 0, 10).await), ["c", "a", "k"]);
    assert_eq!(ids(&top(eq(&[("floor", json!(2))]), 0, 10).await), ["b"]);
    assert_eq!(ids(&top(eq(&[("floor", json!("1"))]), 0, 10).await), ["j"]);
    assert_eq!(ids(&top(eq(&[("floor", json!(true))]), 0, 10).await), ["l"]);

    // The answer follows the live version.
    store
        .put(
            "places",
            "k",
            doc(json!({"category": "cafe", "rating": 10, "floor": 1})),
            Precondition::None,
        )
        .await
        .unwrap();
    let now = top(cafe(), 0, 1).await;
    assert_eq!(ids(&now), ["k"]);
    assert_eq!((now[0].value, now[0].document.version), (10.0, 2));

    // Field names outside the pipeline's identifier rule never reach the store.
    for bad in ["rating'--", "doc.rating", "$rating", ""] {
        let err = store.top_by_score("places", bad, &[], 0, 10).await;
        assert!(
            matches!(err, Err(StoreError::Internal(_))),
            "{bad}: {err:?}"
        );
    }
    let err = store
        .top_by_score("places", "rating", &eq(&[("a.b", json!(1))]), 0, 10)
        .await;
    assert!(matches!(err, Err(StoreError::Internal(_))), "{err:?}");
}

/// Central Lisbon, the centre of the geo cases.
const LISBON: (f64, f64) = (-9.1393, 38.7223);

/// The point `north_m` north and `east_m` east of Lisbon (flat offsets, exact enough at a few km).
fn lisbon_offset(north_m: f64, east_m: f64) -> (f64, f64) {
    let (lon, lat) = LISBON;
    let dlat = (north_m / EARTH_RADIUS_M).to_degrees();
    let dlon = (east_m / (EARTH_RADIUS_M * lat.to_radians().cos())).to_degrees();
    (lon + dlon, lat + dlat)
}

/// Reference great-circle distance (haversine on Redis's sphere).
fn reference_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (lat1, lat2) = (a.1.to_radians(), b.1.to_radians());
    let dlat = lat2 - lat1;
    let dlon = (b.0 - a.0).to_radians();
    let h = (dlat / 2.0).sin().powi(2) + lat1.cos() * lat2.cos() * (dlon / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().min(1.0).asin()
}

fn located((lon, lat): (f64, f64)) -> Document {
    doc(json!({"location": {"type": "Point", "coordinates": [lon, lat]}}))
}

async fn put_located(store: &Store, id: &str, point: (f64, f64)) {
    store
        .put("places", id, located(point), Precondition::None)
        .await
        .unwrap();
}

/// Every distance within 0.5% of the reference (or 1 cm of it, for a point at the centre).
fn assert_distances(found: &[Scored], centre: (f64, f64), points: &[(&str, (f64, f64))]) {
    for scored in found {
        let id = scored.document.document["id"].as_str().unwrap();
        let point = points.iter().find(|(p, _)| *p == id).unwrap().1;
        let expected = reference_m(centre, point);
        let tolerance = (expected * 0.005).max(0.01);
        assert!(
            (scored.value - expected).abs() <= tolerance,
            "{id}: {} m, expected {expected} m",
            scored.value
        );
    }
}

async fn near_returns_the_nearest_within_the_radius(store: Store) {
    let points = [
        ("here", LISBON),
        ("close", lisbon_offset(3.0, 0.0)),
        ("n100", lisbon_offset(100.0, 0.0)),
        ("e250", lisbon_offset(0.0, 250.0)),
        ("tie_b", lisbon_offset(0.0, -500.0)),
        ("tie_a", lisbon_offset(0.0, -500.0)),
        ("ne", lisbon_offset(700.0, 700.0)),
        ("s1500", lisbon_offset(-1500.0, 0.0)),
        ("far", lisbon_offset(-5000.0, 0.0)),
        ("gone", lisbon_offset(50.0, 0.0)),
    ];
    for (id, point) in points.iter().rev() {
        put_located(&store, id, *point).await;
    }
    store
        .delete("places", "gone", Precondition::None)
        .await
        .unwrap();
    store
        .put(
            "places",
            "nowhere",
            doc(json!({"name": "no location"})),
            Precondition::None,
        )
        .await
        .unwrap();
    store
        .put("notes", "here", located(LISBON), Precondition::None)
        .await
        .unwrap();
    let (lon, lat) = LISBON;
    let near = |radius_m: f64, limit: usize| {
        let store = store.clone();
        async move {
            store
                .near("places", "location", lon, lat, radius_m, limit)
                .await
                .unwrap()
        }
    };

    let within = near(2000.0, 100).await;
    assert_eq!(
        ids(&within),
        ["here", "close", "n100", "e250", "tie_a", "tie_b", "ne", "s1500"]
    );
    assert_distances(&within, LISBON, &points);
    assert!(within[0].value.abs() < 0.01);
    assert!(
        within.windows(2).all(|w| w[0].value <= w[1].value),
        "nearest first"
    );
    assert_eq!(within[2].document.version, 1);

    assert_eq!(ids(&near(2000.0, 3).await), ["here", "close", "n100"]);
    assert_eq!(ids(&near(120.0, 100).await), ["here", "close", "n100"]);
    assert_eq!(ids(&near(0.5, 100).await), ["here"]);
    assert!(near(2000.0, 0).await.is_empty());
    let wide = near(10_000.0, 100).await;
    assert_eq!(wide.len(), 9);
    assert_eq!(ids(&wide)[8], "far");
    assert_distances(&wide, LISBON, &points);

    // A bad centre or radius is the caller's input; a bad field name is a bug.
    let invalid = |r: Result<Vec<Scored>, StoreError>| matches!(r, Err(StoreError::Invalid(_)));
    assert!(invalid(
        store.near("places", "location", lon, 95.0, 10.0, 10).await
    ));
    assert!(invalid(
        store.near("places", "location", 181.0, lat, 10.0, 10).await
    ));
    assert!(invalid(
        store.near("places", "location", lon, lat, -1.0, 10).await
    ));
    assert!(invalid(
        store
            .near("places", "location", lon, lat, f64::NAN, 10)
            .await
    ));
    let bad_field = store.near("places", "location.x", lon, lat, 10.0, 10).await;
    assert!(
        matches!(bad_field, Err(StoreError::Internal(_))),
        "{bad_field:?}"
    );
}

async fn near_crosses_the_antimeridian_and_the_poles(store: Store) {
    let points = [
        ("east", (179.9995, 0.0)),
        ("west", (-179.9995, 0.0)),
        ("far_west", (-179.99, 0.0)),
        ("over_pole", (180.0, 85.0)),
        ("side", (90.0, 85.0)),
        ("south", (0.0, 74.0)),
    ];
    for (id, point) in points {
        put_located(&store, id, point).await;
    }
    // 0.0004° and 0.0006° of the equator away, on either side of ±180°.
    let centre = (179.9999, 0.0);
    let found = store
        .near("places", "location", centre.0, centre.1, 500.0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&found), ["east", "west"]);
    assert_distances(&found, centre, &points);
    let from_west = store
        .near("places", "location", -180.0, 0.0, 100.0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&from_west), ["west", "east"]);

    // 1,200 km around (0°, 85°N) reaches over the pole to 180°: 10° of arc (~1,112 km) away.
    let centre = (0.0, 85.0);
    let found = store
        .near("places", "location", centre.0, centre.1, 1_200_000.0, 10)
        .await
        .unwrap();
    assert_eq!(ids(&found), ["side", "over_pole"]);
    assert_distances(&found, centre, &points);
}

async fn a_heartbeat_goes_through_the_outbox_and_changes_no_document(store: Store) {
    store
        .put("places", "a", doc(json!({"name": "A"})), Precondition::None)
        .await
        .unwrap();
    store.heartbeat("places").await.unwrap();
    store.heartbeat("places").await.unwrap();
    assert_eq!(store.pending_count().await.unwrap(), 3);
    // No live document appears: counts, scans and reads see the one put.
    assert_eq!(store.count_live("places").await.unwrap(), 1);
    let scanned = store.scan("places", None, 10).await.unwrap();
    assert_eq!(scanned.len(), 1);
    assert!(store.get("places", HEARTBEAT_ID).await.unwrap().is_none());

    // Both heartbeats come out, the older first, and are removed like any event.
    let mut beats = Vec::new();
    for _ in 0..10 {
        let batch = store.pending_events(100).await.unwrap();
        if batch.is_empty() {
            break;
        }
        let mut entities = std::collections::HashSet::new();
        let firsts: Vec<_> = batch
            .into_iter()
            .filter(|p| entities.insert((p.event.collection.clone(), p.event.id.clone())))
            .collect();
        beats.extend(firsts.iter().filter(|p| p.event.is_heartbeat()).map(|p| {
            (
                p.event.id.clone(),
                p.event.version,
                p.event.document.is_none(),
            )
        }));
        store.mark_published(&firsts).await.unwrap();
    }
    assert_eq!(store.pending_count().await.unwrap(), 0);
    assert_eq!(beats.len(), 2, "{beats:?}");
    assert!(beats
        .iter()
        .all(|(id, _, no_doc)| id == HEARTBEAT_ID && *no_doc));
    assert!(beats[0].1 <= beats[1].1, "{beats:?}");
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test]
                async fn $case() {
                    let dir = tempfile::tempdir().unwrap();
                    let url = SecretUrl::new(format!("sqlite://{}", dir.path().join("contract.db").display()));
                    let pipeline = Pipeline::from_toml(PIPELINE).unwrap();
                    let store = store::open(&url, &pipeline, &settings()).await.unwrap();
                    super::$case(store).await;
                }
            )*
        }

        /// One test for the whole suite on MongoDB, so a run without a server prints one line.
        #[tokio::test]
        async fn mongodb_passes_the_contract() {
            let Ok(uri) = std::env::var("MONGODB_TEST_URI") else {
                // Straight to stderr: the test harness captures `println!` of passing tests, and
                // this line must show in every run without a server.
                use std::io::Write as _;
                let _ = writeln!(
                    std::io::stderr(),
                    "store contract on MongoDB skipped: MONGODB_TEST_URI is not set"
                );
                return;
            };
            let pipeline = Pipeline::from_toml(PIPELINE).unwrap();
            $(
                let db = format!("cacheflow_contract_{}_{}", stringify!($case), std::process::id());
                let url = SecretUrl::new(with_database(&uri, &db));
                let store = store::open(&url, &pipeline, &settings()).await.unwrap();
                $case(store).await;
            )*
        }
    };
}

/// Puts `db` into a MongoDB URI's path, keeping its options.
fn with_database(uri: &str, db: &str) -> String {
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (uri, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let host_end = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..host_end])
}

contract!(
    put_creates_then_replaces,
    delete_leaves_a_tombstone_and_recreate_continues_above_it,
    patch_merges_and_validates_inside_the_write,
    preconditions_are_checked_against_the_live_version,
    every_write_records_its_event_in_the_outbox,
    get_many_keeps_order_and_reports_absent,
    scan_pages_live_documents_in_id_order,
    concurrent_writers_get_distinct_rising_versions,
    top_by_score_orders_filters_and_pages,
    near_returns_the_nearest_within_the_radius,
    near_crosses_the_antimeridian_and_the_poles,
    a_heartbeat_goes_through_the_outbox_and_changes_no_document,
);

#[test]
fn with_database_rewrites_the_path() {
    assert_eq!(
        with_database("mongodb://h:27017", "x"),
        "mongodb://h:27017/x"
    );
    assert_eq!(
        with_database("mongodb://h:27017/old?rs=1", "x"),
        "mongodb://h:27017/x?rs=1"
    );
    assert_eq!(
        with_database("mongodb+srv://u:p@c.net/?tls=true", "x"),
        "mongodb+srv://u:p@c.net/x?tls=true"
    );
}
