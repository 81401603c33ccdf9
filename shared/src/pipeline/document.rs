//! What a document must look like for its collection's projections: declared field types, and
//! the fields that key templates, sorted-set scores and geo indexes need. A failure names the field
//! so the API can answer 422 with it.

use serde_json::Value;

use super::{Collection, FieldType, ProjectionKind};
use crate::document::Document;

/// Web Mercator's latitude limits, which are also Redis GEOADD's.
pub const MAX_LATITUDE: f64 = 85.051_128_78;
pub const MAX_LONGITUDE: f64 = 180.0;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}` {reason}")]
pub struct DocumentError {
    pub field: String,
    pub reason: String,
}

impl DocumentError {
    pub fn new(field: &str, reason: impl Into<String>) -> Self {
        Self {
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

pub(super) fn validate(collection: &Collection, document: &Document) -> Result<(), DocumentError> {
    for (field, field_type) in &collection.fields {
        match document.get(field) {
            None | Some(Value::Null) => {}
            Some(value) => check_type(field, *field_type, value)?,
        }
    }
    for projection in &collection.projections {
        let (key, value_field) = match &projection.kind {
            ProjectionKind::String { key, .. } | ProjectionKind::Hash { key, .. } => (key, None),
            ProjectionKind::SortedSet { key, score } => (key, Some(score.as_str())),
            ProjectionKind::Geo { key, field } => (key, Some(field.as_str())),
        };
        for field in key.fields().chain(value_field).filter(|f| *f != "id") {
            if matches!(document.get(field), None | Some(Value::Null)) {
                return Err(DocumentError::new(
                    field,
                    format!("is required by projection `{}`", projection.name),
                ));
            }
        }
        // Template values have extra rules (length, no whitespace); `check` applies them all.
        key.check(document)?;
    }
    Ok(())
}

fn check_type(field: &str, field_type: FieldType, value: &Value) -> Result<(), DocumentError> {
    let ok = match field_type {
        FieldType::String => value.is_string(),
        FieldType::Number => value.is_number(),
        FieldType::Integer => value.is_i64() || value.is_u64(),
        FieldType::Boolean => value.is_boolean(),
        FieldType::Object => value.is_object(),
        FieldType::Array => value.is_array(),
        FieldType::GeoPoint => {
            geo_point(value).map_err(|reason| DocumentError::new(field, reason))?;
            true
        }
    };
    if ok {
        Ok(())
    } else {
        Err(DocumentError::new(
            field,
            format!("must be of type {}", field_type.name()),
        ))
    }
}

/// Reads a GeoJSON Point as `(lon, lat)`, checking Redis's coordinate limits.
pub fn geo_point(value: &Value) -> Result<(f64, f64), String> {
    const SHAPE: &str =
        "must be a GeoJSON Point: {\"type\": \"Point\", \"coordinates\": [lon, lat]}";
    let object = value.as_object().ok_or(SHAPE)?;
    if object.get("type").and_then(Value::as_str) != Some("Point") {
        return Err(SHAPE.into());
    }
    let coordinates = object
        .get("coordinates")
        .and_then(Value::as_array)
        .ok_or(SHAPE)?;
    let [lon, lat] = coordinates.as_slice() else {
        return Err(SHAPE.into());
    };
    let (Some(lon), Some(lat)) = (lon.as_f64(), lat.as_f64()) else {
        return Err(SHAPE.into());
    };
    if !(-MAX_LONGITUDE..=MAX_LONGITUDE).contains(&lon) {
        return Err(format!("has longitude {lon}, outside [-180, 180]"));
    }
    if !(-MAX_LATITUDE..=MAX_LATITUDE).contains(&lat) {
        return Err(format!(
            "has latitude {lat}, outside [-{MAX_LATITUDE}, {MAX_LATITUDE}]"
        ));
    }
    Ok((lon, lat))
}
