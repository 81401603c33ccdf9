//! Which Redis keys serve which read, derived once from the pipeline: the read key of an entity
//! (its `string` projection keyed by `{id}` alone), its hash, and the named indexes.

use std::collections::HashMap;

use cacheflow_shared::cache::read_key_template;
use cacheflow_shared::pipeline::{Collection, FieldType, KeyTemplate, Pipeline, ProjectionKind};

#[derive(Debug, Clone)]
pub struct CollectionView {
    /// `None`: the collection has no string projection keyed by `{id}` alone; its entity reads
    /// go to the store.
    pub read_key: Option<KeyTemplate>,
    /// The first hash projection keyed by `{id}` alone, with its fields.
    pub hash: Option<(KeyTemplate, Vec<String>)>,
    pub sorted_sets: HashMap<String, SortedSetView>,
    pub geos: HashMap<String, GeoView>,
    pub field_types: HashMap<String, FieldType>,
}

#[derive(Debug, Clone)]
pub struct SortedSetView {
    pub key: KeyTemplate,
    pub score: String,
}

#[derive(Debug, Clone)]
pub struct GeoView {
    pub key: KeyTemplate,
    pub field: String,
}

#[derive(Debug, Clone, Default)]
pub struct Views {
    collections: HashMap<String, CollectionView>,
}

impl Views {
    pub fn new(pipeline: &Pipeline) -> Self {
        Self {
            collections: pipeline
                .collections()
                .map(|c| (c.name.clone(), CollectionView::new(c)))
                .collect(),
        }
    }

    /// The names of the pipeline's collections.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(String::as_str)
    }

    pub fn get(&self, collection: &str) -> Option<&CollectionView> {
        self.collections.get(collection)
    }
}

impl CollectionView {
    fn new(collection: &Collection) -> Self {
        let mut view = CollectionView {
            read_key: read_key_template(collection).cloned(),
            hash: None,
            sorted_sets: HashMap::new(),
            geos: HashMap::new(),
            field_types: collection.fields.clone().into_iter().collect(),
        };
        for projection in &collection.projections {
            match &projection.kind {
                ProjectionKind::Hash { key, fields }
                    if view.hash.is_none() && key.fields().all(|f| f == "id") =>
                {
                    view.hash = Some((key.clone(), fields.clone()));
                }
                ProjectionKind::SortedSet { key, score } => {
                    let index = SortedSetView {
                        key: key.clone(),
                        score: score.clone(),
                    };
                    view.sorted_sets.insert(projection.name.clone(), index);
                }
                ProjectionKind::Geo { key, field } => {
                    let index = GeoView {
                        key: key.clone(),
                        field: field.clone(),
                    };
                    view.geos.insert(projection.name.clone(), index);
                }
                _ => {}
            }
        }
        view
    }

    /// The read key of an entity (without the layout prefix).
    pub fn read_key(&self, id: &str) -> Option<String> {
        let template = self.read_key.as_ref()?;
        template.render(id, &Default::default()).ok()
    }
}
