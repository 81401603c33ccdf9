//! The rules deciding whether a live entity is in step with the store, and if not, its one kind
//! of drift. Pure: [`entities`](super::entities) reads what Redis holds into an [`Observed`].

use std::collections::{BTreeMap, BTreeSet};

use cacheflow_shared::cache::{KeyLayout, ABSENT_MARKER};

use super::expected::Expected;
use super::Kind;

/// What the audited generation holds for one entity, read where its plan says it must be.
#[derive(Debug, Clone, Default, PartialEq)]
pub(super) struct Observed {
    pub meta: Option<Meta>,
    /// One per planned string, in order (`None` = absent).
    pub strings: Vec<Option<Vec<u8>>>,
    /// One per planned hash, in order (empty = absent).
    pub hashes: Vec<BTreeMap<String, String>>,
    /// One per planned membership, in the order of [`Expected::scores`] (`None` = not a member).
    pub scores: Vec<Option<f64>>,
    /// Redis refused a read: one of the keys holds another type (another writer's key).
    pub refused: bool,
}

/// The entity's meta hash.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Meta {
    /// `v`; 0 when it does not parse (treated as older than anything).
    pub version: u64,
    /// `d = 1`: a tombstone.
    pub deleted: bool,
    /// The JSON lists `keys` and `idx` ("" when absent).
    pub keys: String,
    pub idx: String,
}

impl Meta {
    /// From `HMGET v d keys idx`; `None` when there is no meta (no `v`).
    pub fn parse(fields: [Option<String>; 4]) -> Option<Self> {
        let [v, d, keys, idx] = fields;
        Some(Self {
            version: v?.parse().unwrap_or(0),
            deleted: d.as_deref() == Some("1"),
            keys: keys.unwrap_or_default(),
            idx: idx.unwrap_or_default(),
        })
    }
}

/// The entity's kind of drift, `None` when it is in step. In order, the first that applies:
///
/// 1. `missing`: no meta; an invalidated entry (its meta lists no key while the plan has some);
///    or no document under the read key (unless it has a TTL: it may have expired).
/// 2. `stale`: a tombstone at or below the store's version; an older version; or, at the same
///    version, a string, hash or key list that differs from the plan.
/// 3. `wrong_index`: at the same version, a planned membership absent or with another score, or
///    an index list that differs from the plan.
///
/// A meta *newer* than the store's version is in step: a write reached the cache after the store
/// was read (the next audit sees it).
pub(super) fn classify(
    expected: &Expected,
    observed: &Observed,
    layout: &KeyLayout,
) -> Option<Kind> {
    let version = expected.version();
    let Some(meta) = &observed.meta else {
        return Some(Kind::Missing);
    };
    if meta.deleted {
        return (meta.version <= version).then_some(Kind::Stale);
    }
    let plan = &expected.projections;
    let occupies = !plan.strings.is_empty()
        || !plan.hashes.is_empty()
        || !plan.sorted_sets.is_empty()
        || !plan.geos.is_empty();
    if occupies && same_list(&meta.keys, "[]") && same_list(&meta.idx, "[]") {
        return Some(Kind::Missing);
    }
    if let Some(read) = expected.read_key {
        let expires = plan.strings[read].ttl.is_some();
        if !expires && !holds_document(&observed.strings[read]) {
            return Some(Kind::Missing);
        }
    }
    if meta.version != version {
        return (meta.version < version).then_some(Kind::Stale);
    }
    let (keys, idx) = expected.meta_lists(layout);
    if observed.refused || !same_list(&meta.keys, &keys) {
        return Some(Kind::Stale);
    }
    for (planned, held) in plan.strings.iter().zip(&observed.strings) {
        let in_step = match held {
            Some(bytes) if holds_document(held) => same_json(bytes, &planned.value),
            // Expired, which a string with a TTL may be.
            _ => planned.ttl.is_some(),
        };
        if !in_step {
            return Some(Kind::Stale);
        }
    }
    for (planned, held) in plan.hashes.iter().zip(&observed.hashes) {
        let fields = planned.fields.iter().map(|(f, v)| (f.clone(), v.clone()));
        if fields.collect::<BTreeMap<_, _>>() != *held {
            return Some(Kind::Stale);
        }
    }
    let scores_match = expected
        .scores
        .iter()
        .zip(&observed.scores)
        .all(|(want, held)| *held == Some(*want));
    if !scores_match || !same_list(&meta.idx, &idx) {
        return Some(Kind::WrongIndex);
    }
    None
}

/// A document, not nothing or the absent marker (documents are JSON objects, never empty).
fn holds_document(held: &Option<Vec<u8>>) -> bool {
    held.as_deref().is_some_and(|bytes| bytes != ABSENT_MARKER)
}

/// The same JSON document: the same bytes (the common case), or the same value written another
/// way (key order, number formatting).
fn same_json(held: &[u8], planned: &str) -> bool {
    held == planned.as_bytes()
        || matches!(
            (
                serde_json::from_slice::<serde_json::Value>(held),
                serde_json::from_str::<serde_json::Value>(planned),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

/// The same JSON list of keys: the same text, or the same set of keys.
fn same_list(held: &str, planned: &str) -> bool {
    held == planned
        || matches!(
            (
                serde_json::from_str::<BTreeSet<String>>(held),
                serde_json::from_str::<BTreeSet<String>>(planned),
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

#[cfg(test)]
mod tests {
    use cacheflow_shared::pipeline::Pipeline;
    use cacheflow_shared::store::Versioned;
    use serde_json::json;

    use super::*;

    const PIPELINE: &str = include_str!("../../../../config/pipeline.toml");

    fn expected(version: u64) -> Expected {
        let pipeline = Pipeline::from_toml(PIPELINE).unwrap();
        let places = pipeline.collection("places").unwrap();
        let document = json!({
            "id": "p1", "version": version, "name": "Blue Door", "category": "cafe",
            "rating": 4.5, "price": 2,
            "location": {"type": "Point", "coordinates": [2.35, 48.85]}
        });
        let live = Versioned {
            version,
            document: document.as_object().unwrap().clone(),
        };
        Expected::of(
            places,
            cacheflow_shared::cache::read_key_template(places),
            live,
        )
        .unwrap()
    }

    fn layout() -> KeyLayout {
        KeyLayout::new("t:")
    }

    /// Exactly what the apply script writes for `expected`.
    fn in_step(expected: &Expected) -> Observed {
        let (keys, idx) = expected.meta_lists(&layout());
        let plan = &expected.projections;
        Observed {
            meta: Some(Meta {
                version: expected.version(),
                deleted: false,
                keys,
                idx,
            }),
            strings: plan
                .strings
                .iter()
                .map(|s| Some(s.value.clone().into_bytes()))
                .collect(),
            hashes: plan
                .hashes
                .iter()
                .map(|h| h.fields.iter().cloned().collect())
                .collect(),
            scores: expected.scores.iter().map(|s| Some(*s)).collect(),
            refused: false,
        }
    }

    fn kind_of(change: impl FnOnce(&mut Observed)) -> Option<Kind> {
        let expected = expected(3);
        let mut observed = in_step(&expected);
        change(&mut observed);
        classify(&expected, &observed, &layout())
    }

    fn meta(observed: &mut Observed) -> &mut Meta {
        observed.meta.as_mut().unwrap()
    }

    #[test]
    fn what_the_script_writes_is_in_step() {
        assert_eq!(kind_of(|_| {}), None);
        // Written another way, the same document and key lists.
        assert_eq!(
            kind_of(|o| {
                let doc: serde_json::Value =
                    serde_json::from_slice(o.strings[0].as_ref().unwrap()).unwrap();
                o.strings[0] = Some(serde_json::to_vec_pretty(&doc).unwrap());
                let keys: Vec<String> = serde_json::from_str(&meta(o).keys).unwrap();
                meta(o).keys =
                    serde_json::to_string(&keys.into_iter().rev().collect::<Vec<_>>()).unwrap();
            }),
            None
        );
        // A newer version than the store's: a write after the store read.
        assert_eq!(kind_of(|o| meta(o).version = 4), None);
        assert_eq!(
            kind_of(|o| {
                meta(o).version = 4;
                meta(o).deleted = true;
            }),
            None
        );
    }

    #[test]
    fn a_string_with_a_ttl_may_have_expired() {
        let pipeline = Pipeline::from_toml(
            "[collections.c.fields]\nx = \"string\"\n\
             [collections.c.projections.doc]\nkind = \"string\"\nkey = \"c:{id}\"\nttl_seconds = 60\n\
             [collections.c.projections.copy]\nkind = \"string\"\nkey = \"c:{id}:copy\"\nttl_seconds = 60\n",
        )
        .unwrap();
        let c = pipeline.collection("c").unwrap();
        let live = Versioned {
            version: 2,
            document: json!({"id": "a", "version": 2, "x": "y"})
                .as_object()
                .unwrap()
                .clone(),
        };
        let expected =
            Expected::of(c, cacheflow_shared::cache::read_key_template(c), live).unwrap();
        assert_eq!(expected.read_key, Some(0));
        let mut observed = in_step(&expected);
        observed.strings = vec![None, None];
        assert_eq!(classify(&expected, &observed, &layout()), None);
        // Present, it must still be the planned document.
        observed.strings[1] = Some(b"{}".to_vec());
        assert_eq!(classify(&expected, &observed, &layout()), Some(Kind::Stale));
    }

    #[test]
    fn missing_comes_first() {
        assert_eq!(kind_of(|o| o.meta = None), Some(Kind::Missing));
        // Invalidated: the meta keeps its version but lists nothing.
        assert_eq!(
            kind_of(|o| {
                meta(o).keys = "[]".into();
                meta(o).idx = "[]".into();
            }),
            Some(Kind::Missing)
        );
        assert_eq!(kind_of(|o| o.strings[0] = None), Some(Kind::Missing));
        assert_eq!(
            kind_of(|o| o.strings[0] = Some(ABSENT_MARKER.to_vec())),
            Some(Kind::Missing)
        );
        // Missing beats stale and wrong index.
        assert_eq!(
            kind_of(|o| {
                o.strings[0] = None;
                meta(o).version = 1;
                o.scores[0] = None;
            }),
            Some(Kind::Missing)
        );
    }

    #[test]
    fn stale_is_an_older_version_a_tombstone_or_other_content() {
        assert_eq!(kind_of(|o| meta(o).version = 2), Some(Kind::Stale));
        for version in [2, 3] {
            assert_eq!(
                kind_of(|o| {
                    meta(o).version = version;
                    meta(o).deleted = true;
                }),
                Some(Kind::Stale)
            );
        }
        assert_eq!(
            kind_of(|o| o.strings[0] = Some(b"{\"id\":\"p1\"}".to_vec())),
            Some(Kind::Stale)
        );
        assert_eq!(
            kind_of(|o| {
                o.hashes[0].insert("name".into(), "Red Door".into());
            }),
            Some(Kind::Stale)
        );
        assert_eq!(kind_of(|o| o.hashes[0].clear()), Some(Kind::Stale));
        assert_eq!(
            kind_of(|o| meta(o).keys = "[\"t:place:p1\"]".into()),
            Some(Kind::Stale)
        );
        assert_eq!(kind_of(|o| o.refused = true), Some(Kind::Stale));
        // Stale beats wrong index.
        assert_eq!(
            kind_of(|o| {
                meta(o).version = 2;
                o.scores[0] = None;
            }),
            Some(Kind::Stale)
        );
    }

    #[test]
    fn wrong_index_is_a_membership_or_index_list_off_plan() {
        for n in 0..3 {
            assert_eq!(
                kind_of(|o| o.scores[n] = None),
                Some(Kind::WrongIndex),
                "{n}"
            );
        }
        assert_eq!(kind_of(|o| o.scores[0] = Some(4.4)), Some(Kind::WrongIndex));
        // A geo score one geohash step off.
        assert_eq!(
            kind_of(|o| o.scores[2] = o.scores[2].map(|s| s + 1.0)),
            Some(Kind::WrongIndex)
        );
        assert_eq!(
            kind_of(|o| meta(o).idx = "[\"t:places:geo\"]".into()),
            Some(Kind::WrongIndex)
        );
    }
}
