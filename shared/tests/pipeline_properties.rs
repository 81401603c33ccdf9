//! Properties of the pipeline-config parser and validator: any text, and any structure of tables
//! and values with wrong types, unknown keys, random kinds and random key templates, is either a
//! valid pipeline or an error naming where and why; generated valid configs are accepted as they
//! were written; a valid config with exactly one defect is rejected at exactly that key.
//!
//! The runs are deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is set, a fixed case count
//! unless `PROPTEST_CASES` is set, and no failure-persistence files (a failure prints the seed and
//! the shrunk input; reproduce it with `PROPTEST_RNG_SEED`).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use cacheflow_shared::pipeline::{
    FieldType, KeyTemplate, Pipeline, PipelineError, ProjectionKind, Segment, RESERVED_COLLECTIONS,
};
use proptest::prelude::*;

use toml::{Table, Value};

use cacheflow_testkit::properties::config;

const TYPES: [&str; 7] = [
    "string",
    "number",
    "integer",
    "boolean",
    "geo_point",
    "object",
    "array",
];
const KINDS: [&str; 4] = ["string", "hash", "sorted_set", "geo"];

fn field_type(name: &str) -> FieldType {
    match name {
        "string" => FieldType::String,
        "number" => FieldType::Number,
        "integer" => FieldType::Integer,
        "boolean" => FieldType::Boolean,
        "geo_point" => FieldType::GeoPoint,
        "object" => FieldType::Object,
        "array" => FieldType::Array,
        other => unreachable!("not a type: {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// What must hold of every answer

fn is_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z'))
        && name.len() <= 64
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// An error says where (a TOML position, or the dotted key that is wrong) and why.
fn check_error(err: &PipelineError) -> Result<(), TestCaseError> {
    prop_assert_eq!(&err.source_name, "<inline>");
    prop_assert!(!err.message.trim().is_empty(), "empty message: {:?}", err);
    let located = err.path.starts_with("line ")
        || err.path == "(document)"
        || err.path == "collections"
        || err.path.starts_with("collections.");
    prop_assert!(located, "path {:?} does not say where", err.path);
    prop_assert!(!err.to_string().is_empty());
    Ok(())
}

/// Everything a pipeline promises the worker and the API, checked on what `from_toml` accepted.
fn check_accepted(pipeline: &Pipeline) -> Result<(), TestCaseError> {
    let mut templates = HashSet::new();
    prop_assert!(pipeline.collections().next().is_some());
    for collection in pipeline.collections() {
        prop_assert!(
            is_identifier(&collection.name)
                && !RESERVED_COLLECTIONS.contains(&collection.name.as_str())
        );
        for field in collection.fields.keys() {
            prop_assert!(field != "id" && field != "version");
            let mut bytes = field.bytes();
            prop_assert!(matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_'));
            prop_assert!(bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_'));
        }
        for projection in &collection.projections {
            prop_assert!(is_identifier(&projection.name));
            let key = projection.kind.key();
            prop_assert!(templates.insert(key.raw().to_owned()), "duplicate {}", key);
            prop_assert_eq!(&KeyTemplate::parse(key.raw()).unwrap(), key);
            for field in key.fields().filter(|f| *f != "id") {
                prop_assert!(matches!(
                    collection.fields.get(field),
                    Some(FieldType::String | FieldType::Integer)
                ));
            }
            match &projection.kind {
                ProjectionKind::String { key, ttl } => {
                    prop_assert!(key.uses_id());
                    prop_assert!(*ttl != Some(Duration::ZERO));
                }
                ProjectionKind::Hash { key, fields } => {
                    prop_assert!(key.uses_id());
                    prop_assert!(!fields.is_empty());
                    let distinct: HashSet<_> = fields.iter().collect();
                    prop_assert_eq!(distinct.len(), fields.len());
                    for field in fields {
                        prop_assert!(collection.fields.contains_key(field));
                    }
                }
                ProjectionKind::SortedSet { key, score } => {
                    prop_assert!(!key.uses_id());
                    prop_assert!(collection.fields.get(score).is_some_and(|t| t.is_numeric()));
                }
                ProjectionKind::Geo { key, field } => {
                    prop_assert!(!key.uses_id());
                    prop_assert_eq!(collection.fields.get(field), Some(&FieldType::GeoPoint));
                }
            }
        }
    }
    Ok(())
}

/// Parses, checking whichever answer comes back.
fn parse_checked(text: &str) -> Result<Result<Pipeline, PipelineError>, TestCaseError> {
    let parsed = Pipeline::from_toml(text);
    match &parsed {
        Ok(pipeline) => check_accepted(pipeline)?,
        Err(err) => check_error(err)?,
    }
    Ok(parsed)
}

// ---------------------------------------------------------------------------------------------
// Key templates

/// Text with braces in odd places: the raw material of broken templates.
fn arb_template_text() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("{id}".to_owned()),
        Just("{}".to_owned()),
        Just("{name}".to_owned()),
        Just("{category}".to_owned()),
        Just("{a-b}".to_owned()),
        Just("{{id}}".to_owned()),
        Just("{ id }".to_owned()),
        Just("{é}".to_owned()),
        "[a-z:_]{1,4}",
        ".{1,3}",
    ];
    prop::collection::vec(piece, 0..6).prop_map(|pieces| pieces.concat())
}

proptest! {
    #![proptest_config(config(512))]

    /// A template that parses is exactly its segments written out again, with no two fields
    /// side by side; rendering one never panics.
    #[test]
    fn key_templates_parse_or_say_why(raw in prop_oneof![arb_template_text(), any::<String>()]) {
        match KeyTemplate::parse(&raw) {
            Err(message) => prop_assert!(!message.is_empty()),
            Ok(template) => {
                let mut written = String::new();
                let mut previous_was_field = false;
                for segment in template.segments() {
                    match segment {
                        Segment::Literal(text) => {
                            prop_assert!(!text.is_empty() && !text.contains(['{', '}']), "literal {:?}", text);
                            written.push_str(text);
                            previous_was_field = false;
                        }
                        Segment::Field(name) => {
                            prop_assert!(!previous_was_field);
                            prop_assert!(!name.is_empty());
                            prop_assert!(name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
                            written.push('{');
                            written.push_str(name);
                            written.push('}');
                            previous_was_field = true;
                        }
                    }
                }
                prop_assert_eq!(&written, &raw);
                let document = serde_json::Map::new();
                let _ = template.render("p1", &document);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Any text

/// Lines that look like a pipeline file, and lines that are broken TOML.
fn arb_tomlish() -> impl Strategy<Value = String> {
    let line = prop_oneof![
        prop::sample::select(
            &[
                "[collections.places]",
                "[collections.places.fields]",
                "[collections.places.projections.p]",
                "[collections.places.projections.q]",
                "[collections.Places.fields]",
                "[collections.dlq.fields]",
                "[[collections]]",
                "[collections.places.projections]",
                "kind = \"geo\"",
                "kind = \"string\"",
                "kind = \"sorted_set\"",
                "kind = \"hash\"",
                "kind = \"list\"",
                "kind = 1",
                "key = \"x:{id}\"",
                "key = \"x:{category}\"",
                "key = \"x:{\"",
                "key = 5",
                "score = \"rating\"",
                "field = \"location\"",
                "fields = [\"name\", \"name\"]",
                "fields = []",
                "ttl_seconds = 0",
                "ttl_seconds = -1",
                "ttl_seconds = 9223372036854775807",
                "name = \"string\"",
                "rating = \"number\"",
                "category = \"integer\"",
                "location = \"geo_point\"",
                "id = \"string\"",
                "x = \"decimal\"",
                "unknown = true",
                "= =",
                "\"unterminated",
                "key = '''",
                "a.b.c = 1",
                "é = \"string\"",
                "\u{feff}",
                "",
            ][..]
        )
        .prop_map(str::to_owned),
        ".{0,20}",
        "[a-z_]{1,8} = \"[a-z_{}]{0,8}\"",
    ];
    prop::collection::vec(line, 0..14).prop_map(|lines| lines.join("\n"))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_text_is_a_pipeline_or_an_error(text in prop_oneof![any::<String>(), arb_tomlish()]) {
        let _checked = parse_checked(&text)?;
    }
}

// ---------------------------------------------------------------------------------------------
// Structured but wrong: tables of the right shape holding anything

fn arb_toml_scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::Integer),
        any::<f64>().prop_map(Value::Float),
        any::<bool>().prop_map(Value::Boolean),
        ".{0,8}".prop_map(Value::String),
        prop::sample::select(&TYPES[..]).prop_map(|s| Value::String(s.to_owned())),
        prop::sample::select(&KINDS[..]).prop_map(|s| Value::String(s.to_owned())),
        Just(Value::Array(vec![])),
        Just(Value::Table(Table::new())),
    ]
}

fn arb_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-z][a-z0-9_]{0,6}",
        1 => prop::sample::select(&["dlq", "collections", "Places", "1abc", "a-b", "", "é", "id", "version", "a.b"][..])
            .prop_map(str::to_owned),
        1 => ".{0,8}",
    ]
}

fn arb_field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::sample::select(&["name", "category", "rating", "price", "location", "n", "_x1"][..])
            .prop_map(str::to_owned),
        1 => arb_name(),
    ]
}

fn arb_field_type() -> impl Strategy<Value = Value> {
    prop_oneof![
        6 => prop::sample::select(&TYPES[..]).prop_map(|s| Value::String(s.to_owned())),
        1 => prop::sample::select(&["String", "float", "geo", "point", ""][..])
            .prop_map(|s| Value::String(s.to_owned())),
        1 => arb_toml_scalar(),
    ]
}

fn arb_projection_table() -> impl Strategy<Value = Table> {
    let kind = prop_oneof![
        8 => prop::sample::select(&KINDS[..]).prop_map(|s| Some(Value::String(s.to_owned()))),
        1 => Just(None),
        1 => prop::sample::select(&["list", "String", "set", "zset"][..])
            .prop_map(|s| Some(Value::String(s.to_owned()))),
        1 => arb_toml_scalar().prop_map(Some),
    ];
    let key = prop_oneof![
        6 => prop_oneof![
            arb_template_text(),
            "[a-z:]{0,5}\\{id\\}[a-z:]{0,3}",
            "[a-z:]{1,5}\\{(name|category|rating|price|n)\\}",
        ]
        .prop_map(|s| Some(Value::String(s))),
        1 => Just(None),
        1 => arb_toml_scalar().prop_map(Some),
    ];
    let field_ref = prop_oneof![
        4 => arb_field_name().prop_map(Value::String),
        1 => arb_toml_scalar(),
    ];
    let fields = prop_oneof![
        4 => prop::collection::vec(arb_field_name().prop_map(Value::String), 0..4).prop_map(Value::Array),
        1 => arb_toml_scalar(),
    ];
    let ttl = prop_oneof![
        (0i64..5).prop_map(Value::Integer),
        any::<i64>().prop_map(Value::Integer),
        arb_toml_scalar(),
    ];
    let unknown = ("[a-z_]{1,8}", arb_toml_scalar());
    (
        kind,
        key,
        prop::option::weighted(0.5, field_ref.clone()),
        prop::option::weighted(0.5, field_ref),
        prop::option::weighted(0.5, fields),
        prop::option::weighted(0.3, ttl),
        prop::option::weighted(0.1, unknown),
    )
        .prop_map(|(kind, key, score, field, fields, ttl, unknown)| {
            let mut table = Table::new();
            let mut set = |name: &str, value: Option<Value>| {
                if let Some(value) = value {
                    table.insert(name.to_owned(), value);
                }
            };
            set("kind", kind);
            set("key", key);
            set("score", score);
            set("field", field);
            set("fields", fields);
            set("ttl_seconds", ttl);
            if let Some((name, value)) = unknown {
                table.insert(name, value);
            }
            table
        })
}

fn arb_collection_table() -> impl Strategy<Value = Table> {
    let fields = prop::collection::btree_map(arb_field_name(), arb_field_type(), 0..6);
    let projections = prop::collection::btree_map(
        arb_name(),
        prop_oneof![
            8 => arb_projection_table().prop_map(Value::Table),
            1 => arb_toml_scalar(),
        ],
        0..5,
    );
    (
        prop::option::weighted(0.9, fields),
        prop::option::weighted(0.9, projections),
        prop::option::weighted(0.05, ("[a-z_]{1,8}", arb_toml_scalar())),
    )
        .prop_map(|(fields, projections, unknown)| {
            let mut table = Table::new();
            if let Some(fields) = fields {
                table.insert("fields".into(), Value::Table(fields.into_iter().collect()));
            }
            if let Some(projections) = projections {
                table.insert(
                    "projections".into(),
                    Value::Table(projections.into_iter().collect()),
                );
            }
            if let Some((name, value)) = unknown {
                table.insert(name, value);
            }
            table
        })
}

fn arb_pipeline_table() -> impl Strategy<Value = Table> {
    (
        prop::collection::btree_map(
            arb_name(),
            prop_oneof![
                8 => arb_collection_table().prop_map(Value::Table),
                1 => arb_toml_scalar(),
            ],
            0..4,
        ),
        prop::option::weighted(0.05, ("[a-z_]{1,8}", arb_toml_scalar())),
    )
        .prop_map(|(collections, unknown)| {
            let mut table = Table::new();
            table.insert(
                "collections".into(),
                Value::Table(collections.into_iter().collect()),
            );
            if let Some((name, value)) = unknown {
                table.insert(name, value);
            }
            table
        })
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn any_structure_is_a_pipeline_or_an_error(table in arb_pipeline_table()) {
        let text = toml::to_string(&table).unwrap();
        if let Ok(pipeline) = parse_checked(&text)? {
            // What was accepted is what was written.
            let written: Vec<&String> = table["collections"].as_table().unwrap().keys().collect();
            let accepted: Vec<&str> = pipeline.collection_names().collect();
            prop_assert_eq!(written, accepted);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Valid configs, and valid configs with one defect

/// A key template as parts, so a defect can be put in at a known place.
#[derive(Debug, Clone)]
struct Key {
    /// Literal text after the `<collection>/<projection>|` prefix that keeps every template unique.
    prefix: String,
    /// (separator, field) pairs; the field may be `id`.
    parts: Vec<(String, String)>,
    suffix: String,
}

impl Key {
    fn render(&self, collection: &str, projection: &str) -> String {
        let mut raw = format!("{collection}/{projection}|{}", self.prefix);
        for (separator, field) in &self.parts {
            raw.push_str(separator);
            raw.push('{');
            raw.push_str(field);
            raw.push('}');
        }
        raw.push_str(&self.suffix);
        raw
    }
}

#[derive(Debug, Clone)]
enum Kind {
    String { ttl: Option<u64> },
    Hash { fields: Vec<String> },
    SortedSet { score: String },
    Geo { field: String },
}

#[derive(Debug, Clone)]
struct ProjectionModel {
    key: Key,
    kind: Kind,
}

#[derive(Debug, Clone)]
struct CollectionModel {
    fields: BTreeMap<String, &'static str>,
    projections: BTreeMap<String, ProjectionModel>,
}

#[derive(Debug, Clone)]
struct Model {
    collections: BTreeMap<String, CollectionModel>,
}

fn literal(min: usize) -> impl Strategy<Value = String> {
    // Any characters but braces, control characters and newlines included.
    prop::collection::vec(
        any::<char>().prop_filter("no braces", |c| *c != '{' && *c != '}'),
        min..min + 3,
    )
    .prop_map(|chars| chars.into_iter().collect())
}

fn arb_key(key_fields: Vec<String>, per_entity: bool) -> impl Strategy<Value = Key> {
    let max = key_fields.len().min(2);
    (
        literal(0),
        prop::sample::subsequence(key_fields, 0..=max).prop_shuffle(),
        any::<prop::sample::Index>(),
        prop::collection::vec(literal(1), 3),
        literal(0),
    )
        .prop_map(move |(prefix, mut fields, at, separators, suffix)| {
            if per_entity {
                let at = at.index(fields.len() + 1);
                fields.insert(at, "id".to_owned());
            }
            Key {
                prefix,
                parts: separators.into_iter().zip(fields).collect(),
                suffix,
            }
        })
}

fn arb_projection(fields: &BTreeMap<String, &'static str>) -> BoxedStrategy<ProjectionModel> {
    let of_type = |wanted: &dyn Fn(&str) -> bool| -> Vec<String> {
        fields
            .iter()
            .filter(|(_, t)| wanted(t))
            .map(|(f, _)| f.clone())
            .collect()
    };
    let key_fields = of_type(&|t| t == "string" || t == "integer");
    let numeric = of_type(&|t| t == "number" || t == "integer");
    let geo = of_type(&|t| t == "geo_point");
    let all: Vec<String> = fields.keys().cloned().collect();
    let mut kinds: Vec<BoxedStrategy<ProjectionModel>> = vec![(
        arb_key(key_fields.clone(), true),
        prop::option::of(1u64..=i64::MAX as u64),
    )
        .prop_map(|(key, ttl)| ProjectionModel {
            key,
            kind: Kind::String { ttl },
        })
        .boxed()];
    if !all.is_empty() {
        let len = all.len();
        kinds.push(
            (
                arb_key(key_fields.clone(), true),
                prop::sample::subsequence(all, 1..=len).prop_shuffle(),
            )
                .prop_map(|(key, fields)| ProjectionModel {
                    key,
                    kind: Kind::Hash { fields },
                })
                .boxed(),
        );
    }
    if !numeric.is_empty() {
        kinds.push(
            (
                arb_key(key_fields.clone(), false),
                prop::sample::select(numeric),
            )
                .prop_map(|(key, score)| ProjectionModel {
                    key,
                    kind: Kind::SortedSet { score },
                })
                .boxed(),
        );
    }
    if !geo.is_empty() {
        kinds.push(
            (arb_key(key_fields, false), prop::sample::select(geo))
                .prop_map(|(key, field)| ProjectionModel {
                    key,
                    kind: Kind::Geo { field },
                })
                .boxed(),
        );
    }
    prop::strategy::Union::new(kinds).boxed()
}

fn arb_collection() -> impl Strategy<Value = CollectionModel> {
    prop::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_]{0,8}"
            .prop_filter("not server-owned", |f| f != "id" && f != "version"),
        prop::sample::select(&TYPES[..]),
        0..7,
    )
    .prop_flat_map(|fields| {
        let projections =
            prop::collection::btree_map("[a-z][a-z0-9_]{0,8}", arb_projection(&fields), 0..5);
        (Just(fields), projections)
    })
    .prop_map(|(fields, projections)| CollectionModel {
        fields,
        projections,
    })
}

fn arb_model() -> impl Strategy<Value = Model> {
    prop::collection::btree_map(
        "[a-z][a-z0-9_]{0,10}".prop_filter("not reserved", |c| {
            !RESERVED_COLLECTIONS.contains(&c.as_str())
        }),
        arb_collection(),
        1..4,
    )
    .prop_map(|collections| Model { collections })
}

impl Model {
    fn to_table(&self) -> Table {
        let mut collections = Table::new();
        for (name, collection) in &self.collections {
            let fields: Table = collection
                .fields
                .iter()
                .map(|(f, t)| (f.clone(), Value::String((*t).to_owned())))
                .collect();
            let mut projections = Table::new();
            for (projection_name, projection) in &collection.projections {
                let mut table = Table::new();
                let text = |s: &str| Value::String(s.to_owned());
                table.insert(
                    "key".into(),
                    text(&projection.key.render(name, projection_name)),
                );
                match &projection.kind {
                    Kind::String { ttl } => {
                        table.insert("kind".into(), text("string"));
                        if let Some(ttl) = ttl {
                            table.insert("ttl_seconds".into(), Value::Integer(*ttl as i64));
                        }
                    }
                    Kind::Hash { fields } => {
                        table.insert("kind".into(), text("hash"));
                        table.insert(
                            "fields".into(),
                            Value::Array(fields.iter().map(|f| text(f)).collect()),
                        );
                    }
                    Kind::SortedSet { score } => {
                        table.insert("kind".into(), text("sorted_set"));
                        table.insert("score".into(), text(score));
                    }
                    Kind::Geo { field } => {
                        table.insert("kind".into(), text("geo"));
                        table.insert("field".into(), text(field));
                    }
                }
                projections.insert(projection_name.clone(), Value::Table(table));
            }
            let mut table = Table::new();
            table.insert("fields".into(), Value::Table(fields));
            table.insert("projections".into(), Value::Table(projections));
            collections.insert(name.clone(), Value::Table(table));
        }
        let mut root = Table::new();
        root.insert("collections".into(), Value::Table(collections));
        root
    }
}

/// The accepted pipeline says exactly what the model wrote.
fn check_matches(pipeline: &Pipeline, model: &Model) -> Result<(), TestCaseError> {
    let names: Vec<&str> = pipeline.collection_names().collect();
    let expected: Vec<&str> = model.collections.keys().map(String::as_str).collect();
    prop_assert_eq!(names, expected);
    for (name, written) in &model.collections {
        let collection = pipeline.collection(name).unwrap();
        let fields: BTreeMap<String, FieldType> = written
            .fields
            .iter()
            .map(|(f, t)| (f.clone(), field_type(t)))
            .collect();
        prop_assert_eq!(&collection.fields, &fields);
        prop_assert_eq!(collection.projections.len(), written.projections.len());
        for (projection_name, projection) in &written.projections {
            let accepted = &collection.projection(projection_name).unwrap().kind;
            prop_assert_eq!(
                accepted.key().raw(),
                projection.key.render(name, projection_name)
            );
            match (&projection.kind, accepted) {
                (Kind::String { ttl }, ProjectionKind::String { ttl: got, .. }) => {
                    prop_assert_eq!(*got, ttl.map(Duration::from_secs))
                }
                (Kind::Hash { fields }, ProjectionKind::Hash { fields: got, .. }) => {
                    prop_assert_eq!(got, fields)
                }
                (Kind::SortedSet { score }, ProjectionKind::SortedSet { score: got, .. }) => {
                    prop_assert_eq!(got, score)
                }
                (Kind::Geo { field }, ProjectionKind::Geo { field: got, .. }) => {
                    prop_assert_eq!(got, field)
                }
                (written, accepted) => prop_assert!(false, "{:?} became {:?}", written, accepted),
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn generated_valid_configs_are_accepted(model in arb_model()) {
        let text = toml::to_string(&model.to_table()).unwrap();
        match parse_checked(&text)? {
            Ok(pipeline) => check_matches(&pipeline, &model)?,
            Err(err) => prop_assert!(false, "rejected: {}\n{}", err, text),
        }
    }
}

/// One thing wrong with an otherwise valid config.
#[derive(Debug, Clone, Copy)]
enum Defect {
    IdInIndexKey,
    NoIdInEntityKey,
    UndeclaredTemplateField,
    NonKeyTemplateField,
    BrokenTemplate(usize),
    EmptyKey,
    ScoreNotNumeric,
    GeoFieldNotGeo,
    ZeroTtl,
    HashFieldsEmpty,
    HashFieldTwice,
    HashFieldUndeclared,
    DuplicateTemplate,
    UnknownProjectionKey,
    UnknownCollectionKey,
    UnknownTopKey,
    UnknownKind,
    UnknownFieldType,
    KeyNotAString,
    NegativeTtl,
    ServerOwnedField(bool),
    BadFieldName,
    BadProjectionName,
    BadCollectionName(usize),
}

const BROKEN_TEMPLATES: [&str; 6] = ["{", "}", "{}", "{a-b}", ":{id", "x}"];
const BAD_COLLECTION_NAMES: [&str; 6] = ["dlq", "collections", "Places", "1abc", "a-b", "é"];

fn arb_defect() -> impl Strategy<Value = Defect> {
    prop_oneof![
        Just(Defect::IdInIndexKey),
        Just(Defect::NoIdInEntityKey),
        Just(Defect::UndeclaredTemplateField),
        Just(Defect::NonKeyTemplateField),
        (0..BROKEN_TEMPLATES.len()).prop_map(Defect::BrokenTemplate),
        Just(Defect::EmptyKey),
        Just(Defect::ScoreNotNumeric),
        Just(Defect::GeoFieldNotGeo),
        Just(Defect::ZeroTtl),
        Just(Defect::HashFieldsEmpty),
        Just(Defect::HashFieldTwice),
        Just(Defect::HashFieldUndeclared),
        Just(Defect::DuplicateTemplate),
        Just(Defect::UnknownProjectionKey),
        Just(Defect::UnknownCollectionKey),
        Just(Defect::UnknownTopKey),
        Just(Defect::UnknownKind),
        Just(Defect::UnknownFieldType),
        Just(Defect::KeyNotAString),
        Just(Defect::NegativeTtl),
        any::<bool>().prop_map(Defect::ServerOwnedField),
        Just(Defect::BadFieldName),
        Just(Defect::BadProjectionName),
        (0..BAD_COLLECTION_NAMES.len()).prop_map(Defect::BadCollectionName),
    ]
}

/// Where the error must point.
#[derive(Debug)]
enum Want {
    /// This dotted key, and the message mentions this text.
    Key(String, &'static str),
    /// A TOML error (with its position) whose message mentions this text.
    Toml(&'static str),
}

/// Puts `defect` into the model's table at the `pick`ed projection; `None` when the model has no
/// place for it (e.g. no geo projection for a geo defect).
fn inject(model: &Model, defect: Defect, pick: prop::sample::Index) -> Option<(Table, Want)> {
    let mut table = model.to_table();
    let targets: Vec<(&String, &String, &ProjectionModel)> = model
        .collections
        .iter()
        .flat_map(|(c, coll)| coll.projections.iter().map(move |(p, proj)| (c, p, proj)))
        .filter(|(_, _, p)| match defect {
            Defect::IdInIndexKey => matches!(p.kind, Kind::SortedSet { .. } | Kind::Geo { .. }),
            Defect::ScoreNotNumeric => matches!(p.kind, Kind::SortedSet { .. }),
            Defect::NoIdInEntityKey => matches!(p.kind, Kind::String { .. } | Kind::Hash { .. }),
            Defect::GeoFieldNotGeo => matches!(p.kind, Kind::Geo { .. }),
            Defect::ZeroTtl | Defect::NegativeTtl => matches!(p.kind, Kind::String { .. }),
            Defect::HashFieldsEmpty | Defect::HashFieldTwice | Defect::HashFieldUndeclared => {
                matches!(p.kind, Kind::Hash { .. })
            }
            _ => true,
        })
        .collect();
    let collections = table["collections"].as_table_mut().unwrap();
    // Defects of a collection or of the whole file.
    let first_collection = model.collections.keys().next().unwrap();
    let at = |c: &str| format!("collections.{c}");
    match defect {
        Defect::UnknownCollectionKey => {
            collections[first_collection.as_str()]
                .as_table_mut()
                .unwrap()
                .insert("projection".into(), Value::Table(Table::new()));
            return Some((table, Want::Toml("unknown field `projection`")));
        }
        Defect::UnknownTopKey => {
            table.insert("collection".into(), Value::Table(Table::new()));
            return Some((table, Want::Toml("unknown field `collection`")));
        }
        Defect::UnknownFieldType => {
            collections[first_collection.as_str()]["fields"]
                .as_table_mut()
                .unwrap()
                .insert("zz_extra".into(), Value::String("decimal".into()));
            return Some((table, Want::Toml("unknown variant `decimal`")));
        }
        Defect::ServerOwnedField(id) => {
            let name = if id { "id" } else { "version" };
            collections[first_collection.as_str()]["fields"]
                .as_table_mut()
                .unwrap()
                .insert(name.into(), Value::String("string".into()));
            let want = Want::Key(
                format!("{}.fields.{name}", at(first_collection)),
                "owned by the server",
            );
            return Some((table, want));
        }
        Defect::BadFieldName => {
            collections[first_collection.as_str()]["fields"]
                .as_table_mut()
                .unwrap()
                .insert("a-b".into(), Value::String("string".into()));
            // Every other field name is valid, so wherever `a-b` sorts it is the one reported.
            let want = Want::Key(format!("{}.fields.a-b", at(first_collection)), "field name");
            return Some((table, want));
        }
        Defect::BadCollectionName(i) => {
            let bad = BAD_COLLECTION_NAMES[i];
            let moved = collections.remove(first_collection.as_str()).unwrap();
            if collections.contains_key(bad) {
                return None;
            }
            collections.insert(bad.to_owned(), moved);
            // Collections are checked in name order: only the names before `bad` are checked first,
            // and those are valid.
            let want = Want::Key(
                at(bad),
                if RESERVED_COLLECTIONS.contains(&bad) {
                    "reserved"
                } else {
                    "collection name"
                },
            );
            return Some((table, want));
        }
        _ => {}
    }
    if targets.is_empty() {
        return None;
    }
    let (c, p, projection) = targets[pick.index(targets.len())];
    let fields = &model.collections[c].fields;
    let path = format!("collections.{c}.projections.{p}");
    let collection = collections[c.as_str()].as_table_mut().unwrap();
    let projections = collection["projections"].as_table_mut().unwrap();
    let target = projections[p.as_str()].as_table_mut().unwrap();
    let raw_key = projection.key.render(c, p);
    let set_key = |target: &mut Table, key: String| {
        target.insert("key".into(), Value::String(key));
    };
    let want = match defect {
        Defect::IdInIndexKey => {
            set_key(target, format!("{raw_key}:{{id}}"));
            Want::Key(format!("{path}.key"), "must not contain `{id}`")
        }
        Defect::NoIdInEntityKey => {
            let mut key = projection.key.clone();
            key.parts.retain(|(_, f)| f != "id");
            set_key(target, key.render(c, p));
            Want::Key(format!("{path}.key"), "must contain `{id}`")
        }
        Defect::UndeclaredTemplateField => {
            set_key(target, format!("{raw_key}:{{zz_undeclared}}"));
            Want::Key(format!("{path}.key"), "not a declared field")
        }
        Defect::NonKeyTemplateField => {
            let (field, _) = fields
                .iter()
                .find(|(_, t)| !matches!(**t, "string" | "integer"))?;
            set_key(target, format!("{raw_key}:{{{field}}}"));
            Want::Key(format!("{path}.key"), "only string and integer fields")
        }
        Defect::BrokenTemplate(i) => {
            set_key(target, format!("{raw_key}{}", BROKEN_TEMPLATES[i]));
            Want::Key(format!("{path}.key"), "key template")
        }
        Defect::EmptyKey => {
            set_key(target, String::new());
            Want::Key(format!("{path}.key"), "must not be empty")
        }
        Defect::ScoreNotNumeric => {
            let score = fields
                .iter()
                .find(|(_, t)| !matches!(**t, "number" | "integer"))
                .map_or("zz_undeclared", |(f, _)| f.as_str());
            target.insert("score".into(), Value::String(score.to_owned()));
            Want::Key(format!("{path}.score"), "")
        }
        Defect::GeoFieldNotGeo => {
            let field = fields
                .iter()
                .find(|(_, t)| **t != "geo_point")
                .map_or("zz_undeclared", |(f, _)| f.as_str());
            target.insert("field".into(), Value::String(field.to_owned()));
            Want::Key(format!("{path}.field"), "")
        }
        Defect::ZeroTtl => {
            target.insert("ttl_seconds".into(), Value::Integer(0));
            Want::Key(format!("{path}.ttl_seconds"), "at least 1")
        }
        Defect::NegativeTtl => {
            target.insert("ttl_seconds".into(), Value::Integer(-1));
            Want::Toml("")
        }
        Defect::HashFieldsEmpty => {
            target.insert("fields".into(), Value::Array(vec![]));
            Want::Key(format!("{path}.fields"), "at least one field")
        }
        Defect::HashFieldTwice => {
            let fields = target["fields"].as_array_mut().unwrap();
            fields.push(fields[0].clone());
            Want::Key(format!("{path}.fields"), "listed twice")
        }
        Defect::HashFieldUndeclared => {
            let fields = target["fields"].as_array_mut().unwrap();
            fields.push(Value::String("zz_undeclared".into()));
            Want::Key(format!("{path}.fields"), "not a declared field")
        }
        Defect::DuplicateTemplate => {
            // A copy of the projection under another name: whichever sorts later is the duplicate.
            let copy = format!("{p}_copy");
            let copied = target.clone();
            projections.insert(copy.clone(), Value::Table(copied));
            let later = format!("collections.{c}.projections.{copy}.key");
            Want::Key(later, "is already used by")
        }
        Defect::UnknownProjectionKey => {
            target.insert("ttl".into(), Value::Integer(5));
            Want::Toml("unknown field `ttl`")
        }
        Defect::UnknownKind => {
            target.insert("kind".into(), Value::String("list".into()));
            Want::Toml("unknown variant `list`")
        }
        Defect::KeyNotAString => {
            target.insert("key".into(), Value::Integer(5));
            Want::Toml("")
        }
        Defect::BadProjectionName => {
            let moved = projections.remove(p.as_str()).unwrap();
            projections.insert(format!("Z{p}"), moved);
            Want::Key(
                format!("collections.{c}.projections.Z{p}"),
                "projection name",
            )
        }
        Defect::UnknownCollectionKey
        | Defect::UnknownTopKey
        | Defect::UnknownFieldType
        | Defect::ServerOwnedField(_)
        | Defect::BadFieldName
        | Defect::BadCollectionName(_) => unreachable!("handled above"),
    };
    Some((table, want))
}

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn one_defect_is_reported_at_its_key(
        model in arb_model(),
        defect in arb_defect(),
        pick in any::<prop::sample::Index>(),
    ) {
        let Some((table, want)) = inject(&model, defect, pick) else {
            return Ok(());
        };
        let text = toml::to_string(&table).unwrap();
        let err = match parse_checked(&text)? {
            Ok(_) => return Err(TestCaseError::fail(format!("{defect:?} accepted:\n{text}"))),
            Err(err) => err,
        };
        match want {
            Want::Key(path, mention) => {
                prop_assert_eq!(&err.path, &path, "{:?}: {}\n{}", defect, err, text);
                prop_assert!(err.message.contains(mention), "{:?}: {}", defect, err);
            }
            Want::Toml(mention) => {
                prop_assert!(err.path.starts_with("line "), "{:?}: {}", defect, err);
                prop_assert!(err.message.contains(mention), "{:?}: {}", defect, err);
            }
        }
    }
}
