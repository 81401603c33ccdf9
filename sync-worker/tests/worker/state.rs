//! The whole Redis state under a key prefix, read back (SCAN + TYPE + contents), and the state
//! the planner says the latest event of every entity should produce. Tests compare the two
//! exactly, so a stray key, a missing member or a wrong meta field fails them.

use std::collections::{BTreeMap, BTreeSet};

use cacheflow_shared::cache::{plan, Action, KeyLayout};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use redis::aio::MultiplexedConnection;
use redis::AsyncCommands;

/// Geo coordinates come back from Redis's 52-bit geohash: equal to about 1e-5 degrees.
const GEO_TOLERANCE: f64 = 1e-4;

#[derive(Debug, Clone, PartialEq)]
pub enum Contents {
    String(String),
    Hash(BTreeMap<String, String>),
    SortedSet(BTreeMap<String, f64>),
    Geo(BTreeMap<String, (f64, f64)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct KeyState {
    pub contents: Contents,
    /// Whether the key has an expiry.
    pub expires: bool,
}

pub type State = BTreeMap<String, KeyState>;

/// Keeps the latest (highest-version) event of each entity; ties keep the first seen.
pub fn latest(events: &[Event]) -> Vec<Event> {
    let mut by_entity: BTreeMap<(String, String), Event> = BTreeMap::new();
    for event in events {
        let key = (event.collection.clone(), event.id.clone());
        match by_entity.get(&key) {
            Some(kept) if kept.version >= event.version => {}
            _ => {
                by_entity.insert(key, event.clone());
            }
        }
    }
    by_entity.into_values().collect()
}

/// What Redis must hold after applying `latest` (one event per entity) into an empty prefix.
pub fn expected(pipeline: &Pipeline, layout: &KeyLayout, latest: &[Event]) -> State {
    let mut state = State::new();
    let mut geo: BTreeMap<String, BTreeMap<String, (f64, f64)>> = BTreeMap::new();
    let mut zsets: BTreeMap<String, BTreeMap<String, f64>> = BTreeMap::new();
    for event in latest {
        // The worker sees events after a JSON round trip, and serde_json (without its
        // `float_roundtrip` feature) may move a float by one ulp on the way back in.
        let event = &Event::decode(&event.encode()).expect("a valid envelope");
        let collection = pipeline
            .collection(&event.collection)
            .expect("known collection");
        let plan = plan(collection, event).expect("a valid event");
        let meta = layout.meta(&plan.collection, &plan.id);
        let v = plan.version.to_string();
        match plan.action {
            Action::Upsert(p) => {
                let meta_fields = [
                    ("v", v),
                    ("d", "0".to_owned()),
                    ("keys", layout.key_list(p.entity_keys())),
                    ("idx", layout.key_list(p.index_keys())),
                ];
                state.insert(meta, hash(meta_fields, false));
                for s in &p.strings {
                    let contents = Contents::String(s.value.clone());
                    state.insert(
                        layout.key(&s.key),
                        KeyState {
                            contents,
                            expires: s.ttl.is_some(),
                        },
                    );
                }
                for h in p.hashes.iter().filter(|h| !h.fields.is_empty()) {
                    let fields = h.fields.iter().map(|(f, v)| (f.as_str(), v.clone()));
                    state.insert(layout.key(&h.key), hash(fields, false));
                }
                for z in &p.sorted_sets {
                    zsets
                        .entry(layout.key(&z.key))
                        .or_default()
                        .insert(plan.id.clone(), z.score);
                }
                for g in &p.geos {
                    geo.entry(layout.key(&g.key))
                        .or_default()
                        .insert(plan.id.clone(), (g.lon, g.lat));
                }
            }
            Action::Delete { .. } => {
                let fields = [
                    ("v", v),
                    ("d", "1".into()),
                    ("keys", "[]".into()),
                    ("idx", "[]".into()),
                ];
                state.insert(meta, hash(fields, true));
            }
        }
    }
    for (key, members) in zsets {
        state.insert(
            key,
            KeyState {
                contents: Contents::SortedSet(members),
                expires: false,
            },
        );
    }
    for (key, members) in geo {
        state.insert(
            key,
            KeyState {
                contents: Contents::Geo(members),
                expires: false,
            },
        );
    }
    state
}

fn hash<'a>(fields: impl IntoIterator<Item = (&'a str, String)>, expires: bool) -> KeyState {
    let fields = fields.into_iter().map(|(f, v)| (f.to_owned(), v)).collect();
    KeyState {
        contents: Contents::Hash(fields),
        expires,
    }
}

/// Every key under `prefix`. Sorted sets named in `geo_keys` are read as geo indexes.
pub async fn snapshot(
    conn: &mut MultiplexedConnection,
    prefix: &str,
    geo_keys: &BTreeSet<String>,
) -> State {
    let mut keys: Vec<String> = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(conn)
            .await
            .expect("SCAN");
        keys.extend(batch);
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    let mut state = State::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE")
            .arg(&key)
            .query_async(conn)
            .await
            .expect("TYPE");
        let contents = match kind.as_str() {
            "string" => Contents::String(conn.get(&key).await.expect("GET")),
            "hash" => Contents::Hash(conn.hgetall(&key).await.expect("HGETALL")),
            "zset" if geo_keys.contains(&key) => {
                let members: Vec<String> = conn.zrange(&key, 0, -1).await.expect("ZRANGE");
                let positions: Vec<Option<(f64, f64)>> = redis::cmd("GEOPOS")
                    .arg(&key)
                    .arg(&members)
                    .query_async(conn)
                    .await
                    .expect("GEOPOS");
                let points = positions
                    .into_iter()
                    .map(|p| p.expect("a member has a position"));
                Contents::Geo(members.into_iter().zip(points).collect())
            }
            "zset" => {
                let scored: Vec<(String, f64)> = conn
                    .zrange_withscores(&key, 0, -1)
                    .await
                    .expect("ZRANGE WITHSCORES");
                Contents::SortedSet(scored.into_iter().collect())
            }
            // Gone between SCAN and TYPE: only tombstones expire, and not within a test.
            "none" => continue,
            other => panic!("unexpected type {other} at {key}"),
        };
        let pttl: i64 = conn.pttl(&key).await.expect("PTTL");
        state.insert(
            key,
            KeyState {
                contents,
                expires: pttl > 0,
            },
        );
    }
    state
}

/// The geo index keys of `state`.
pub fn geo_keys(state: &State) -> BTreeSet<String> {
    state
        .iter()
        .filter(|(_, s)| matches!(s.contents, Contents::Geo(_)))
        .map(|(k, _)| k.clone())
        .collect()
}

/// Asserts the states are equal (geo positions within [`GEO_TOLERANCE`]), reporting the first
/// differences readably.
pub fn assert_same(actual: &State, expected: &State) {
    let actual_keys: BTreeSet<&String> = actual.keys().collect();
    let expected_keys: BTreeSet<&String> = expected.keys().collect();
    let extra: Vec<_> = actual_keys.difference(&expected_keys).take(10).collect();
    let missing: Vec<_> = expected_keys.difference(&actual_keys).take(10).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "key sets differ ({} actual, {} expected): extra {extra:?}, missing {missing:?}",
        actual.len(),
        expected.len()
    );
    for (key, want) in expected {
        let got = &actual[key];
        assert_eq!(got.expires, want.expires, "expiry of {key}");
        match (&got.contents, &want.contents) {
            (Contents::Geo(got), Contents::Geo(want)) => {
                assert_eq!(
                    got.keys().collect::<Vec<_>>(),
                    want.keys().collect::<Vec<_>>(),
                    "members of {key}"
                );
                for (member, (lon, lat)) in want {
                    let (glon, glat) = got[member];
                    assert!(
                        (glon - lon).abs() < GEO_TOLERANCE && (glat - lat).abs() < GEO_TOLERANCE,
                        "{key} {member}: got ({glon}, {glat}), want ({lon}, {lat})"
                    );
                }
            }
            (got, want) => assert_eq!(got, want, "contents of {key}"),
        }
    }
}

/// Snapshot of the env's prefix compared with the projection of the latest events.
pub async fn assert_projection_of(
    conn: &mut MultiplexedConnection,
    pipeline: &Pipeline,
    layout: &KeyLayout,
    events: &[Event],
) {
    let want = expected(pipeline, layout, &latest(events));
    let got = snapshot(conn, layout.prefix(), &geo_keys(&want)).await;
    assert_same(&got, &want);
}
