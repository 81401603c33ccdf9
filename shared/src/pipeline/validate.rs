//! Start-up validation: turns a parsed spec into a [`Pipeline`] or names the exact key that is
//! wrong and why.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use super::spec::{CollectionSpec, FieldType, PipelineSpec, ProjectionSpec};
use super::{Collection, KeyTemplate, Pipeline, Projection, ProjectionKind};
use crate::document::{ID_FIELD, VERSION_FIELD};

type Invalid = (String, String);

/// Collection names that would collide with something else, and with what.
const RESERVED: &[(&str, &str)] = &[
    ("dlq", "dead letters use the subjects `<prefix>.dlq.>`"),
    (
        "collections",
        "`/v1/collections` is the API's collection discovery route",
    ),
];

/// The collection names a pipeline cannot declare.
pub const RESERVED_COLLECTIONS: [&str; 2] = [RESERVED[0].0, RESERVED[1].0];

pub(super) fn validate(spec: PipelineSpec) -> Result<Pipeline, Invalid> {
    if spec.collections.is_empty() {
        return Err((
            "collections".into(),
            "declare at least one collection".into(),
        ));
    }
    // Raw key template -> the projection path that first used it.
    let mut templates: HashMap<String, String> = HashMap::new();
    let mut collections = BTreeMap::new();
    for (name, collection) in spec.collections {
        let path = format!("collections.{name}");
        if !is_identifier(&name) {
            return Err((
                path,
                "a collection name must match [a-z][a-z0-9_]{0,63}".into(),
            ));
        }
        if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| *reserved == name) {
            return Err((path, format!("`{name}` is reserved ({why})")));
        }
        let collection = validate_collection(&name, collection, &path, &mut templates)?;
        collections.insert(name, collection);
    }
    Ok(Pipeline { collections })
}

fn validate_collection(
    name: &str,
    spec: CollectionSpec,
    path: &str,
    templates: &mut HashMap<String, String>,
) -> Result<Collection, Invalid> {
    for field in spec.fields.keys() {
        let field_path = format!("{path}.fields.{field}");
        if field == ID_FIELD || field == VERSION_FIELD {
            return Err((
                field_path,
                format!("`{field}` is owned by the server and cannot be declared"),
            ));
        }
        if !is_field_name(field) {
            return Err((
                field_path,
                "a field name must match [A-Za-z_][A-Za-z0-9_]*".into(),
            ));
        }
    }
    let mut projections = Vec::with_capacity(spec.projections.len());
    for (projection_name, projection) in spec.projections {
        let projection_path = format!("{path}.projections.{projection_name}");
        if !is_identifier(&projection_name) {
            return Err((
                projection_path,
                "a projection name must match [a-z][a-z0-9_]{0,63}".into(),
            ));
        }
        let kind = validate_projection(projection, &spec.fields, &projection_path)?;
        let key_path = format!("{projection_path}.key");
        if let Some(first) = templates.insert(kind.key().raw().to_owned(), key_path.clone()) {
            return Err((
                key_path,
                format!(
                    "key template `{}` is already used by {first}",
                    kind.key().raw()
                ),
            ));
        }
        projections.push(Projection {
            name: projection_name,
            kind,
        });
    }
    Ok(Collection {
        name: name.to_owned(),
        fields: spec.fields,
        projections,
    })
}

fn validate_projection(
    spec: ProjectionSpec,
    fields: &BTreeMap<String, FieldType>,
    path: &str,
) -> Result<ProjectionKind, Invalid> {
    let key_path = format!("{path}.key");
    let parse_key = |raw: &str, per_entity: bool| -> Result<KeyTemplate, Invalid> {
        let key = KeyTemplate::parse(raw).map_err(|message| (key_path.clone(), message))?;
        for field in key.fields().filter(|f| *f != ID_FIELD) {
            match fields.get(field) {
                None => {
                    return Err((
                        key_path.clone(),
                        format!("key template `{raw}` names `{field}`, which is not a declared field"),
                    ))
                }
                Some(FieldType::String | FieldType::Integer) => {}
                Some(other) => {
                    return Err((
                        key_path.clone(),
                        format!(
                            "key template `{raw}` uses `{field}`, a {} field; only string and integer fields can be part of a key",
                            other.name()
                        ),
                    ))
                }
            }
        }
        match (per_entity, key.uses_id()) {
            (true, false) => Err((
                key_path.clone(),
                format!("key template `{raw}` must contain `{{id}}`: this projection is one key per entity"),
            )),
            (false, true) => Err((
                key_path.clone(),
                format!("key template `{raw}` must not contain `{{id}}`: this projection is an index shared by many entities"),
            )),
            _ => Ok(key),
        }
    };
    let require_field = |field: &str,
                         field_path: String,
                         wanted: &dyn Fn(FieldType) -> bool,
                         what: &str|
     -> Result<(), Invalid> {
        match fields.get(field) {
            None => Err((field_path, format!("`{field}` is not a declared field"))),
            Some(t) if !wanted(*t) => Err((
                field_path,
                format!(
                    "`{field}` is declared as {}, but this needs {what}",
                    t.name()
                ),
            )),
            Some(_) => Ok(()),
        }
    };
    match spec {
        ProjectionSpec::String { key, ttl_seconds } => {
            if ttl_seconds == Some(0) {
                return Err((
                    format!("{path}.ttl_seconds"),
                    "must be at least 1 (leave it out for no expiry)".into(),
                ));
            }
            Ok(ProjectionKind::String {
                key: parse_key(&key, true)?,
                ttl: ttl_seconds.map(Duration::from_secs),
            })
        }
        ProjectionSpec::Hash {
            key,
            fields: listed,
        } => {
            if listed.is_empty() {
                return Err((format!("{path}.fields"), "list at least one field".into()));
            }
            for (i, field) in listed.iter().enumerate() {
                require_field(field, format!("{path}.fields"), &|_| true, "")?;
                if listed[..i].contains(field) {
                    return Err((
                        format!("{path}.fields"),
                        format!("`{field}` is listed twice"),
                    ));
                }
            }
            Ok(ProjectionKind::Hash {
                key: parse_key(&key, true)?,
                fields: listed,
            })
        }
        ProjectionSpec::SortedSet { key, score } => {
            require_field(
                &score,
                format!("{path}.score"),
                &FieldType::is_numeric,
                "a number or integer",
            )?;
            Ok(ProjectionKind::SortedSet {
                key: parse_key(&key, false)?,
                score,
            })
        }
        ProjectionSpec::Geo { key, field } => {
            require_field(
                &field,
                format!("{path}.field"),
                &|t| t == FieldType::GeoPoint,
                "a geo_point",
            )?;
            Ok(ProjectionKind::Geo {
                key: parse_key(&key, false)?,
                field,
            })
        }
    }
}

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

fn is_field_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}
