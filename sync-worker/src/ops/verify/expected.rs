//! What the cache must hold for one live document: the planner's projections at the store's
//! version (the same plan a worker or a populate writes), with the scores as Redis stores them.

use cacheflow_shared::cache::redis::geo_score;
use cacheflow_shared::cache::{plan, Action, KeyLayout, Projections};
use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::{Collection, KeyTemplate};
use cacheflow_shared::store::Versioned;

use super::super::store_pages::document_id;

#[derive(Clone)]
pub(super) struct Expected {
    /// The upsert at the store's version: what a repair writes.
    pub event: Event,
    /// Keys without the generation's prefix.
    pub projections: Projections,
    /// The score of each membership, sorted sets first, then geo indexes, whose score is the
    /// geohash `GEOADD` would store: an integer below 2^53, so exact as a double.
    pub scores: Vec<f64>,
    /// Which of `projections.strings` is the read key.
    pub read_key: Option<usize>,
}

/// A live document the projections refuse (the workers dead-letter its events).
#[derive(Debug)]
pub(super) struct Rejected {
    pub id: String,
    pub reason: String,
}

impl Expected {
    pub fn of(
        collection: &Collection,
        read_key: Option<&KeyTemplate>,
        live: Versioned,
    ) -> Result<Self, Rejected> {
        let id = document_id(&live).to_owned();
        let event = Event::upsert(&collection.name, &id, live.version, live.document);
        let rejected = |reason: String| Rejected {
            id: id.clone(),
            reason,
        };
        let planned = plan(collection, &event).map_err(|err| rejected(err.to_string()))?;
        let Action::Upsert(projections) = planned.action else {
            return Err(rejected("an upsert planned as a delete".into()));
        };
        let geos = projections.geos.iter().map(|g| geo_score(g.lon, g.lat));
        let geos: Option<Vec<u64>> = geos.collect();
        let Some(geos) = geos else {
            return Err(rejected("a location outside what Redis indexes".into()));
        };
        let scores = projections
            .sorted_sets
            .iter()
            .map(|z| z.score)
            .chain(geos.into_iter().map(|score| score as f64))
            .collect();
        let read_key = read_key
            .and_then(|template| template.render(&id, &Document::new()).ok())
            .and_then(|key| projections.strings.iter().position(|s| s.key == key));
        Ok(Self {
            event,
            projections,
            scores,
            read_key,
        })
    }

    pub fn id(&self) -> &str {
        &self.event.id
    }

    pub fn version(&self) -> u64 {
        self.event.version
    }

    /// The index keys (without prefix), in the order of [`scores`](Self::scores).
    pub fn index_keys(&self) -> impl Iterator<Item = &str> {
        let scored = self.projections.sorted_sets.iter().map(|z| z.key.as_str());
        scored.chain(self.projections.geos.iter().map(|g| g.key.as_str()))
    }

    /// Whether the plan puts the entity in the index `key` (a full key of `layout`).
    pub fn is_member_of(&self, layout: &KeyLayout, key: &str) -> bool {
        key.strip_prefix(layout.prefix())
            .is_some_and(|key| self.index_keys().any(|k| k == key))
    }

    /// The meta's `keys` and `idx` lists exactly as the apply script writes them.
    pub fn meta_lists(&self, layout: &KeyLayout) -> (String, String) {
        (
            layout.key_list(self.projections.entity_keys()),
            layout.key_list(self.projections.index_keys()),
        )
    }
}
