//! The pipeline file format. Everything is `deny_unknown_fields` so a typo is an error, not a
//! silently ignored setting.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct PipelineSpec {
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CollectionSpec {
    #[serde(default)]
    pub fields: BTreeMap<String, FieldType>,
    #[serde(default)]
    pub projections: BTreeMap<String, ProjectionSpec>,
}

/// The declared type of a document field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FieldType {
    String,
    /// Any JSON number.
    Number,
    /// A JSON number without a fractional part.
    Integer,
    Boolean,
    /// A GeoJSON Point: `{ "type": "Point", "coordinates": [lon, lat] }`.
    GeoPoint,
    Object,
    Array,
}

impl FieldType {
    pub fn is_numeric(self) -> bool {
        matches!(self, FieldType::Number | FieldType::Integer)
    }

    pub fn name(self) -> &'static str {
        match self {
            FieldType::String => "string",
            FieldType::Number => "number",
            FieldType::Integer => "integer",
            FieldType::Boolean => "boolean",
            FieldType::GeoPoint => "geo_point",
            FieldType::Object => "object",
            FieldType::Array => "array",
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum ProjectionSpec {
    String {
        key: String,
        #[serde(default)]
        ttl_seconds: Option<u64>,
    },
    Hash {
        key: String,
        fields: Vec<String>,
    },
    SortedSet {
        key: String,
        score: String,
    },
    Geo {
        key: String,
        field: String,
    },
}

/// Where a TOML error is, as `line L, column C` (the message names the offending key).
pub(super) fn error_position(text: &str, err: &toml::de::Error) -> String {
    let Some(span) = err.span() else {
        return "(document)".to_owned();
    };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}")
}
