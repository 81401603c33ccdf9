//! The document-store contract. Every adapter must pass it: SQLite always, MongoDB whenever
//! `MONGODB_TEST_URI` is set (e.g. `mongodb://127.0.0.1:27017`); each run uses a fresh database.

use std::sync::Arc;

use cacheflow_shared::config::{Role, Settings, StoreSettings};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::Op;
use cacheflow_shared::pipeline::{DocumentError, Pipeline};
use cacheflow_shared::redact::SecretUrl;
use cacheflow_shared::store::{self, DocumentStore, Precondition, StoreError, Validator};
use serde_json::{json, Value};

const PIPELINE: &str = r#"
[collections.places.fields]
name = "string"
rating = "number"
[collections.places.projections.document]
kind = "string"
key = "place:{id}"
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
                println!("store contract on MongoDB skipped: MONGODB_TEST_URI is not set");
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
