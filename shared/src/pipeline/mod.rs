//! The declarative pipeline: which collections exist and, for each, the named Redis projections
//! the sync worker maintains (`string`, `hash`, `sorted_set`, `geo`).
//!
//! - [`spec`]: the TOML file format (serde, unknown keys rejected).
//! - [`template`]: key templates such as `places:rating:{category}`.
//! - [`validate`]: start-up validation of a spec into a [`Pipeline`].
//! - [`document`]: the per-document checks a collection's projections need (the API answers 422).

mod document;
mod spec;
mod template;
mod validate;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

pub use document::{geo_point, DocumentError, MAX_LATITUDE, MAX_LONGITUDE};
pub use spec::FieldType;
pub use template::{KeyTemplate, Segment};
pub use validate::RESERVED_COLLECTIONS;

/// A validated pipeline. Build it with [`Pipeline::load`] or [`Pipeline::from_toml`].
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    collections: BTreeMap<String, Collection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Collection {
    pub name: String,
    /// Declared field types; documents may carry other fields too.
    pub fields: BTreeMap<String, FieldType>,
    /// Projections in name order.
    pub projections: Vec<Projection>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Projection {
    pub name: String,
    pub kind: ProjectionKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ProjectionKind {
    /// The whole document as JSON.
    String {
        key: KeyTemplate,
        ttl: Option<Duration>,
    },
    /// The listed fields as a Redis hash (absent fields are left out).
    Hash {
        key: KeyTemplate,
        fields: Vec<String>,
    },
    /// A sorted-set index scored by a numeric field.
    SortedSet { key: KeyTemplate, score: String },
    /// A geo index from a GeoJSON Point field.
    Geo { key: KeyTemplate, field: String },
}

impl ProjectionKind {
    pub fn key(&self) -> &KeyTemplate {
        match self {
            ProjectionKind::String { key, .. }
            | ProjectionKind::Hash { key, .. }
            | ProjectionKind::SortedSet { key, .. }
            | ProjectionKind::Geo { key, .. } => key,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match self {
            ProjectionKind::String { .. } => "string",
            ProjectionKind::Hash { .. } => "hash",
            ProjectionKind::SortedSet { .. } => "sorted_set",
            ProjectionKind::Geo { .. } => "geo",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("pipeline config {source_name}: {path}: {message}")]
pub struct PipelineError {
    /// The file (or `<inline>`) the error is in.
    pub source_name: String,
    /// The dotted key that is wrong, e.g. `collections.places.projections.rating.score`.
    pub path: String,
    pub message: String,
}

impl Pipeline {
    /// Reads and validates a pipeline file.
    pub fn load(path: &Path) -> Result<Self, PipelineError> {
        let source_name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| PipelineError {
            source_name: source_name.clone(),
            path: "(file)".into(),
            message: format!("cannot read the file: {err}"),
        })?;
        Self::parse(&text, &source_name)
    }

    /// Parses and validates pipeline TOML held in memory.
    pub fn from_toml(text: &str) -> Result<Self, PipelineError> {
        Self::parse(text, "<inline>")
    }

    fn parse(text: &str, source_name: &str) -> Result<Self, PipelineError> {
        let spec: spec::PipelineSpec = toml::from_str(text).map_err(|err| PipelineError {
            source_name: source_name.to_owned(),
            path: spec::error_position(text, &err),
            message: err.message().to_owned(),
        })?;
        validate::validate(spec).map_err(|(path, message)| PipelineError {
            source_name: source_name.to_owned(),
            path,
            message,
        })
    }

    pub fn collection(&self, name: &str) -> Option<&Collection> {
        self.collections.get(name)
    }

    pub fn collections(&self) -> impl Iterator<Item = &Collection> {
        self.collections.values()
    }

    pub fn collection_names(&self) -> impl Iterator<Item = &str> {
        self.collections.keys().map(String::as_str)
    }
}

impl Collection {
    pub fn projection(&self, name: &str) -> Option<&Projection> {
        self.projections.iter().find(|p| p.name == name)
    }

    /// Checks a document (without server-owned fields necessarily) against the declared field
    /// types and against what every projection needs.
    pub fn validate(&self, document: &crate::document::Document) -> Result<(), DocumentError> {
        document::validate(self, document)
    }
}
