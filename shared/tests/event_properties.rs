//! Properties of the event decoder: whatever reaches the worker from the stream (random bytes,
//! random JSON, envelopes with any field missing, mistyped or out of range), `Event::decode` never
//! panics, accepts exactly the well-formed envelopes of `docs/ARCHITECTURE.md` ("Event schema"),
//! and every accepted event encodes back to itself.
//!
//! The runs are deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is set, a fixed case count
//! unless `PROPTEST_CASES` is set, and no failure-persistence files (a failure prints the seed and
//! the shrunk input; reproduce it with `PROPTEST_RNG_SEED`).

use cacheflow_shared::document::Document;
use cacheflow_shared::event::{DecodeError, Event, Op, SCHEMA_VERSION};
use proptest::prelude::*;

use serde_json::{json, Map, Value};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use cacheflow_testkit::properties::config;

const ENVELOPE_FIELDS: [&str; 8] = [
    "schema",
    "event_id",
    "collection",
    "id",
    "op",
    "version",
    "occurred_at",
    "document",
];

// ---------------------------------------------------------------------------------------------
// Generators

/// Any JSON value, a few levels deep; object keys are often envelope field names so that random
/// objects sometimes look like envelopes.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<String>().prop_map(Value::from),
        prop::sample::select(&["upsert", "delete", "places", "p1", "1970-01-01T00:00:00Z"][..])
            .prop_map(Value::from),
    ];
    leaf.prop_recursive(4, 48, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(arb_key(), inner, 0..8)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

fn arb_key() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(&ENVELOPE_FIELDS[..]).prop_map(str::to_owned),
        ".{0,12}",
    ]
}

/// A JSON object suitable as a document.
fn arb_document() -> impl Strategy<Value = Document> {
    prop::collection::btree_map(".{0,10}", arb_json(), 0..6)
        .prop_map(|map| map.into_iter().collect::<Map<String, Value>>())
}

/// An instant RFC 3339 can carry, at a whole-minute UTC offset, with nanoseconds.
fn arb_time() -> impl Strategy<Value = OffsetDateTime> {
    // 0001-01-02 .. 9998-12-30, so no offset pushes the local date out of four-digit years.
    let seconds = -62_135_510_400i64..253_402_041_600i64;
    (
        seconds,
        0u32..1_000_000_000,
        -(23 * 60 + 59)..=(23 * 60 + 59),
    )
        .prop_map(|(seconds, nanos, offset_minutes)| {
            let offset = UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap();
            OffsetDateTime::from_unix_timestamp(seconds)
                .unwrap()
                .replace_nanosecond(nanos)
                .unwrap()
                .to_offset(offset)
        })
}

/// A well-formed event: either op, any version from 1, any strings for collection and id.
fn arb_event() -> impl Strategy<Value = Event> {
    (
        any::<u128>(),
        any::<String>(),
        any::<String>(),
        1u64..,
        arb_time(),
        prop::option::of(arb_document()),
    )
        .prop_map(|(uuid, collection, id, version, occurred_at, document)| {
            let op = if document.is_some() {
                Op::Upsert
            } else {
                Op::Delete
            };
            Event {
                schema: SCHEMA_VERSION,
                event_id: Uuid::from_u128(uuid),
                collection,
                id,
                op,
                version,
                occurred_at,
                document,
            }
        })
}

// ---------------------------------------------------------------------------------------------
// Envelopes assembled field by field from raw JSON text, each field labelled with what the
// decoder must make of it. Raw text (not `Value`) lets a field hold what `Value` cannot: integers
// past u64, `1e400`, leading zeros.

#[derive(Debug, Clone)]
enum Schema {
    Supported,
    Other(u32),
    Malformed(String),
}

#[derive(Debug, Clone)]
enum Version {
    Valid(u64),
    Malformed(String),
}

#[derive(Debug, Clone)]
enum Text<T> {
    Valid(String, T),
    Malformed(String),
}

#[derive(Debug, Clone)]
enum DocumentField {
    Absent,
    Null,
    Object(Document),
    Malformed(String),
}

#[derive(Debug, Clone)]
struct Envelope {
    schema: Option<Schema>,
    event_id: Option<Text<Uuid>>,
    collection: Option<Text<String>>,
    id: Option<Text<String>>,
    op: Option<Text<Op>>,
    version: Option<Version>,
    occurred_at: Option<Text<OffsetDateTime>>,
    document: DocumentField,
    /// Unknown fields, which the decoder ignores (a newer writer may add some).
    extra: Vec<(String, Value)>,
    /// Field order and whitespace do not matter.
    shuffle: Vec<usize>,
    pretty: bool,
}

/// JSON text of any type but the one named (`"s"` string, `"n"` number, `"o"` object...).
fn malformed_of(not: &'static str) -> impl Strategy<Value = String> {
    let mut options: Vec<BoxedStrategy<String>> = vec![
        Just("null".to_owned()).boxed(),
        any::<bool>().prop_map(|b| b.to_string()).boxed(),
        Just("[]".to_owned()).boxed(),
        Just("[1, \"x\"]".to_owned()).boxed(),
    ];
    if not != "o" {
        options.push(Just("{}".to_owned()).boxed());
        options.push(Just("{\"a\": 1}".to_owned()).boxed());
    }
    if not != "s" {
        options.push(any::<String>().prop_map(|s| json!(s).to_string()).boxed());
    }
    if not != "n" {
        options.push(any::<i64>().prop_map(|n| n.to_string()).boxed());
        options.push(
            prop::num::f64::NORMAL
                .prop_map(|f| format!("{f:e}"))
                .boxed(),
        );
    }
    prop::strategy::Union::new(options)
}

/// Numbers an unsigned integer field must refuse.
fn malformed_unsigned(max: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![
        malformed_of("n"),
        (1i64..).prop_map(|n| format!("-{n}")),
        Just("-0.0".to_owned()),
        Just("1.0".to_owned()),
        Just("1.5".to_owned()),
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("1e3".to_owned()),
        // Just past the maximum, and far past it (parsed as a float, not an integer).
        Just(format!("{max}0")),
        Just("340282366920938463463374607431768211456".to_owned()),
        Just("01".to_owned()),
        Just("\"1\"".to_owned()),
    ]
}

fn arb_schema() -> impl Strategy<Value = Schema> {
    prop_oneof![
        6 => Just(Schema::Supported),
        1 => any::<u32>()
            .prop_filter("another schema", |n| *n != SCHEMA_VERSION)
            .prop_map(Schema::Other),
        1 => prop_oneof![malformed_unsigned("4294967295"), Just("4294967296".to_owned())]
            .prop_map(Schema::Malformed),
    ]
}

fn arb_version() -> impl Strategy<Value = Version> {
    prop_oneof![
        3 => any::<u64>().prop_map(Version::Valid),
        1 => Just(Version::Valid(0)),
        1 => Just(Version::Valid(u64::MAX)),
        1 => malformed_unsigned("18446744073709551615").prop_map(Version::Malformed),
    ]
}

fn arb_event_id() -> impl Strategy<Value = Text<Uuid>> {
    let valid = (any::<u128>(), 0..4usize).prop_map(|(n, format)| {
        let uuid = Uuid::from_u128(n);
        let text = match format {
            0 => uuid.hyphenated().to_string(),
            1 => uuid.simple().to_string(),
            2 => uuid.urn().to_string(),
            _ => uuid.hyphenated().to_string().to_uppercase(),
        };
        Text::Valid(json!(text).to_string(), uuid)
    });
    let not_a_uuid = prop_oneof![
        any::<String>(),
        "[0-9a-f-]{0,40}",
        Just("00000000-0000-0000-0000-00000000000g".to_owned()),
    ]
    .prop_filter("not a uuid", |s| Uuid::parse_str(s).is_err())
    .prop_map(|s| json!(s).to_string());
    prop_oneof![
        4 => valid,
        1 => prop_oneof![not_a_uuid, malformed_of("s")].prop_map(Text::Malformed),
    ]
}

fn arb_string_field() -> impl Strategy<Value = Text<String>> {
    prop_oneof![
        4 => prop_oneof![any::<String>(), "[a-z0-9_-]{1,12}"]
            .prop_map(|s| Text::Valid(json!(s).to_string(), s)),
        1 => malformed_of("s").prop_map(Text::Malformed),
    ]
}

fn arb_op() -> impl Strategy<Value = Text<Op>> {
    let bad_names = prop_oneof![
        prop::sample::select(
            &[
                "Upsert",
                "DELETE",
                "insert",
                "update",
                "",
                " upsert",
                "upsert\u{0}",
                "del"
            ][..]
        )
        .prop_map(str::to_owned),
        any::<String>(),
    ]
    .prop_filter("not an op", |s| {
        !["upsert", "delete", "heartbeat"].contains(&s.as_str())
    })
    .prop_map(|s| json!(s).to_string());
    prop_oneof![
        4 => prop_oneof![
            Just(Text::Valid("\"upsert\"".to_owned(), Op::Upsert)),
            Just(Text::Valid("\"delete\"".to_owned(), Op::Delete)),
            Just(Text::Valid("\"heartbeat\"".to_owned(), Op::Heartbeat)),
        ],
        1 => prop_oneof![bad_names, malformed_of("s")].prop_map(Text::Malformed),
    ]
}

fn arb_occurred_at() -> impl Strategy<Value = Text<OffsetDateTime>> {
    let valid =
        arb_time().prop_map(|t| Text::Valid(json!(t.format(&Rfc3339).unwrap()).to_string(), t));
    let not_a_time = prop_oneof![
        any::<String>(),
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(Z|[+-][0-9]{2}:[0-9]{2})?",
        Just("2026-02-30T00:00:00Z".to_owned()),
        Just("2026-11-26 06:00:00Z".to_owned()),
        Just("10000-01-01T00:00:00Z".to_owned()),
    ]
    .prop_filter("not RFC 3339", |s| {
        OffsetDateTime::parse(s, &Rfc3339).is_err()
    })
    .prop_map(|s| json!(s).to_string());
    prop_oneof![
        4 => valid,
        1 => prop_oneof![not_a_time, malformed_of("s")].prop_map(Text::Malformed),
    ]
}

fn arb_document_field() -> impl Strategy<Value = DocumentField> {
    prop_oneof![
        3 => Just(DocumentField::Absent),
        1 => Just(DocumentField::Null),
        3 => arb_document().prop_map(DocumentField::Object),
        1 => malformed_of("o")
            .prop_filter("not null", |s| s != "null")
            .prop_map(DocumentField::Malformed),
    ]
}

/// A field is left out about one time in twelve.
fn maybe<T: std::fmt::Debug + Clone>(
    strategy: impl Strategy<Value = T>,
) -> impl Strategy<Value = Option<T>> {
    prop::option::weighted(11.0 / 12.0, strategy)
}

fn arb_envelope() -> impl Strategy<Value = Envelope> {
    let extra = prop::collection::vec(
        (
            "[a-z_]{1,10}".prop_filter("not an envelope field", |k| {
                !ENVELOPE_FIELDS.contains(&k.as_str())
            }),
            arb_json(),
        ),
        0..3,
    )
    .prop_map(|mut fields| {
        // Duplicate keys are a JSON error of their own; keep the unknown ones distinct.
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        fields.dedup_by(|a, b| a.0 == b.0);
        fields
    });
    (
        (
            maybe(arb_schema()),
            maybe(arb_event_id()),
            maybe(arb_string_field()),
            maybe(arb_string_field()),
            maybe(arb_op()),
            maybe(arb_version()),
            maybe(arb_occurred_at()),
        ),
        arb_document_field(),
        extra,
        Just((0..16).collect::<Vec<usize>>()).prop_shuffle(),
        any::<bool>(),
    )
        .prop_map(
            |(
                (schema, event_id, collection, id, op, version, occurred_at),
                document,
                extra,
                shuffle,
                pretty,
            )| Envelope {
                schema,
                event_id,
                collection,
                id,
                op,
                version,
                occurred_at,
                document,
                extra,
                shuffle,
                pretty,
            },
        )
}

/// The value of a field that is present and well-typed; anything else is a JSON error.
fn valid<T: Clone>(field: Option<&Text<T>>) -> Result<T, Expected> {
    match field {
        Some(Text::Valid(_, value)) => Ok(value.clone()),
        _ => Err(Expected::Json),
    }
}

fn text_of<T>(field: &Text<T>) -> &str {
    match field {
        Text::Valid(raw, _) | Text::Malformed(raw) => raw,
    }
}

impl Envelope {
    fn to_json(&self) -> String {
        let mut members: Vec<(String, String)> = Vec::new();
        let mut push = |name: &str, raw: Option<String>| {
            if let Some(raw) = raw {
                members.push((json!(name).to_string(), raw));
            }
        };
        push(
            "schema",
            self.schema.as_ref().map(|s| match s {
                Schema::Supported => SCHEMA_VERSION.to_string(),
                Schema::Other(n) => n.to_string(),
                Schema::Malformed(raw) => raw.clone(),
            }),
        );
        push(
            "event_id",
            self.event_id.as_ref().map(|f| text_of(f).to_owned()),
        );
        push(
            "collection",
            self.collection.as_ref().map(|f| text_of(f).to_owned()),
        );
        push("id", self.id.as_ref().map(|f| text_of(f).to_owned()));
        push("op", self.op.as_ref().map(|f| text_of(f).to_owned()));
        push(
            "version",
            self.version.as_ref().map(|v| match v {
                Version::Valid(n) => n.to_string(),
                Version::Malformed(raw) => raw.clone(),
            }),
        );
        push(
            "occurred_at",
            self.occurred_at.as_ref().map(|f| text_of(f).to_owned()),
        );
        push(
            "document",
            match &self.document {
                DocumentField::Absent => None,
                DocumentField::Null => Some("null".to_owned()),
                DocumentField::Object(doc) => Some(serde_json::to_string(doc).unwrap()),
                DocumentField::Malformed(raw) => Some(raw.clone()),
            },
        );
        for (name, value) in &self.extra {
            push(name, Some(value.to_string()));
        }
        let mut order: Vec<usize> = self.shuffle.clone();
        order.retain(|i| *i < members.len());
        let (separator, colon) = if self.pretty {
            (",\n  ", " : ")
        } else {
            (",", ":")
        };
        let body = order
            .iter()
            .map(|&i| format!("{}{colon}{}", members[i].0, members[i].1))
            .collect::<Vec<_>>()
            .join(separator);
        format!("{{{body}}}")
    }

    /// What the decoder must answer: the event, or which kind of error.
    fn expected(&self) -> Result<Event, Expected> {
        let schema = match self.schema.as_ref().ok_or(Expected::Json)? {
            Schema::Supported => SCHEMA_VERSION,
            Schema::Other(n) => *n,
            Schema::Malformed(_) => return Err(Expected::Json),
        };
        let event_id: Uuid = valid(self.event_id.as_ref())?;
        let collection: String = valid(self.collection.as_ref())?;
        let id: String = valid(self.id.as_ref())?;
        let op: Op = valid(self.op.as_ref())?;
        let occurred_at: OffsetDateTime = valid(self.occurred_at.as_ref())?;
        let version = match self.version.as_ref().ok_or(Expected::Json)? {
            Version::Valid(n) => *n,
            Version::Malformed(_) => return Err(Expected::Json),
        };
        let document = match &self.document {
            DocumentField::Absent | DocumentField::Null => None,
            DocumentField::Object(doc) => Some(doc.clone()),
            DocumentField::Malformed(_) => return Err(Expected::Json),
        };
        if schema != SCHEMA_VERSION {
            return Err(Expected::Schema(schema));
        }
        if version == 0 {
            return Err(Expected::ZeroVersion);
        }
        match (op, &document) {
            (Op::Upsert, None) => return Err(Expected::MissingDocument),
            (Op::Delete | Op::Heartbeat, Some(_)) => return Err(Expected::UnexpectedDocument),
            _ => {}
        }
        Ok(Event {
            schema,
            event_id,
            collection,
            id,
            op,
            version,
            occurred_at,
            document,
        })
    }
}

#[derive(Debug, PartialEq)]
enum Expected {
    Json,
    Schema(u32),
    ZeroVersion,
    MissingDocument,
    UnexpectedDocument,
}

fn kind(err: &DecodeError) -> Expected {
    match err {
        DecodeError::Json(_) => Expected::Json,
        DecodeError::Schema(n) => Expected::Schema(*n),
        DecodeError::ZeroVersion => Expected::ZeroVersion,
        DecodeError::MissingDocument => Expected::MissingDocument,
        DecodeError::UnexpectedDocument => Expected::UnexpectedDocument,
    }
}

// ---------------------------------------------------------------------------------------------
// Checks shared by the properties

/// What must hold of anything `decode` accepted, whatever the input was.
fn check_accepted(event: &Event) -> Result<(), TestCaseError> {
    prop_assert_eq!(event.schema, SCHEMA_VERSION);
    prop_assert!(event.version >= 1);
    match event.op {
        Op::Upsert => prop_assert!(event.document.is_some()),
        Op::Delete | Op::Heartbeat => prop_assert!(event.document.is_none()),
    }
    // An accepted event can be re-published: it encodes (without panicking) to itself.
    let bytes = event.encode();
    let again = Event::decode(&bytes);
    prop_assert!(again.is_ok(), "re-encoded event rejected: {:?}", again);
    prop_assert_eq!(&again.unwrap(), event);
    Ok(())
}

/// Decodes, checking the error's message when it fails; accepted events go to `check_accepted`.
fn decode_checked(bytes: &[u8]) -> Result<Result<Event, DecodeError>, TestCaseError> {
    let decoded = Event::decode(bytes);
    match &decoded {
        Ok(event) => check_accepted(event)?,
        Err(err) => prop_assert!(!err.to_string().is_empty()),
    }
    Ok(decoded)
}

// ---------------------------------------------------------------------------------------------
// Properties

proptest! {
    #![proptest_config(config(512))]

    #[test]
    fn valid_events_round_trip(event in arb_event()) {
        let bytes = event.encode();
        let decoded = Event::decode(&bytes);
        prop_assert!(decoded.is_ok(), "{:?}", decoded);
        let decoded = decoded.unwrap();
        prop_assert_eq!(&decoded, &event);
        // The offset is kept too, not just the instant.
        prop_assert_eq!(decoded.occurred_at.offset(), event.occurred_at.offset());
        prop_assert_eq!(decoded.encode(), bytes);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _checked = decode_checked(&bytes)?;
    }

    #[test]
    fn arbitrary_json_never_panics(value in arb_json()) {
        let bytes = serde_json::to_vec(&value).unwrap();
        if decode_checked(&bytes)?.is_ok() {
            // Only an object with the envelope's fields can be an event.
            let object = value.as_object();
            prop_assert!(object.is_some());
            let object = object.unwrap();
            prop_assert_eq!(&object["schema"], &json!(SCHEMA_VERSION));
            for field in ["event_id", "collection", "id", "op", "version", "occurred_at"] {
                prop_assert!(object.contains_key(field), "accepted without `{}`", field);
            }
        }
    }

    /// Envelopes with each field present or missing, valid, mistyped or out of range, in any
    /// order, with unknown fields: `decode` answers exactly what the schema says.
    #[test]
    fn envelopes_are_accepted_exactly_when_well_formed(envelope in arb_envelope()) {
        let text = envelope.to_json();
        let decoded = decode_checked(text.as_bytes())?;
        match (envelope.expected(), decoded) {
            (Ok(expected), Ok(event)) => prop_assert_eq!(event, expected),
            (Err(expected), Err(err)) => prop_assert_eq!(kind(&err), expected, "{}", err),
            (expected, decoded) => {
                prop_assert!(false, "{}\nexpected {:?}\ngot {:?}", text, expected, decoded)
            }
        }
    }

    /// Random edits of a valid event's bytes: no panic, and whatever is still accepted is sound.
    #[test]
    fn edited_valid_events_never_panic(
        event in arb_event(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0..3u8), 1..6),
    ) {
        let mut bytes = event.encode();
        for (at, byte, how) in edits {
            let at = at.index(bytes.len() + 1);
            match how {
                0 => bytes.insert(at, byte),
                1 if at < bytes.len() => bytes[at] = byte,
                _ if at < bytes.len() => { bytes.remove(at); }
                _ => bytes.push(byte),
            }
        }
        let _checked = decode_checked(&bytes)?;
    }

    /// Every strict prefix of an event is rejected as JSON.
    #[test]
    fn truncated_events_are_rejected(event in arb_event(), cut in any::<prop::sample::Index>()) {
        let bytes = event.encode();
        let cut = cut.index(bytes.len());
        let err = Event::decode(&bytes[..cut]);
        prop_assert!(matches!(err, Err(DecodeError::Json(_))), "{:?}", err);
    }

    /// Anything but an object at the top is rejected as JSON.
    #[test]
    fn non_object_envelopes_are_rejected(value in arb_json().prop_filter("not an object", |v| !v.is_object())) {
        let err = Event::decode(&serde_json::to_vec(&value).unwrap());
        prop_assert!(matches!(err, Err(DecodeError::Json(_))), "{:?}", err);
    }
}

proptest! {
    #![proptest_config(config(64))]

    /// A document nested far past serde_json's recursion limit is an error, not a stack overflow.
    #[test]
    fn deeply_nested_documents_are_rejected(depth in 120usize..20_000, arrays in any::<bool>()) {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let document = format!("{{\"x\":{}1{}}}", open.repeat(depth), close.repeat(depth));
        let text = format!(
            "{{\"schema\":1,\"event_id\":\"{}\",\"collection\":\"places\",\"id\":\"p1\",\
             \"op\":\"upsert\",\"version\":1,\"occurred_at\":\"2026-11-26T06:00:00Z\",\
             \"document\":{document}}}",
            Uuid::nil()
        );
        match decode_checked(text.as_bytes())? {
            // serde_json allows 127 levels of nesting; the envelope and the document take two.
            Ok(_) => prop_assert!(depth <= 125, "accepted at depth {}", depth),
            Err(err) => prop_assert!(matches!(err, DecodeError::Json(_)), "{}", err),
        }
    }
}
