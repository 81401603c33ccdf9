//! Bad input over a real socket, generated: random methods and paths (odd characters, percent
//! encodings, very long ids, unknown collections and indexes), query strings (numbers out of range,
//! overflowing, negative, NaN; id lists with empties, duplicates, too many), conditional and
//! content-type headers, and bodies (broken JSON, non-objects, deep nesting, huge numbers, wrong
//! field types, bad geo points, oversize). Whatever comes in, the API answers below 500, and every
//! 4xx is `application/json` `{ "code", "message" }` with a documented code and its status.
//! Where the answer is fully determined by the request (query checks, preconditions, PUT bodies),
//! the exact status and code are checked too.
//!
//! Each property runs a few hundred requests against one app (real redis-server and nats-server,
//! SQLite in a temp dir). The runs are deterministic: a fixed seed unless `PROPTEST_RNG_SEED` is
//! set, a fixed case count unless `PROPTEST_CASES` is set, and no failure-persistence files (a
//! failure prints the seed and the shrunk request).

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use cacheflow_api::ApiError;
use cacheflow_shared::document::is_valid_id;
use cacheflow_shared::pipeline::{Collection, DocumentError, Pipeline};
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use reqwest::header::{HeaderName, HeaderValue};
use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{error_of, pipeline_path, place, place_at, spawn_app, TestApp};

const MIB: usize = 1024 * 1024;

/// The shared runner settings, with shrinking bounded: every case is a request.
fn config(cases: u32) -> Config {
    Config {
        max_shrink_iters: 1024,
        ..cacheflow_testkit::properties::config(cases)
    }
}

// ---------------------------------------------------------------------------------------------
// Requests and the checks every answer must pass

#[derive(Clone)]
struct Probe {
    method: Method,
    /// Path and query, appended to the app's base URL.
    target: String,
    headers: Vec<(&'static str, Vec<u8>)>,
    body: Option<Vec<u8>>,
}

impl fmt::Debug for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shorten = |bytes: &[u8]| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(300)]).into_owned();
            if bytes.len() > 300 {
                format!("{text}... ({} bytes)", bytes.len())
            } else {
                text
            }
        };
        f.debug_struct("Probe")
            .field("method", &self.method)
            .field("target", &shorten(self.target.as_bytes()))
            .field(
                "headers",
                &self
                    .headers
                    .iter()
                    .map(|(name, value)| format!("{name}: {}", shorten(value)))
                    .collect::<Vec<_>>(),
            )
            .field("body", &self.body.as_deref().map(shorten))
            .finish()
    }
}

struct Answer {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body = String::from_utf8_lossy(&self.body[..self.body.len().min(500)]);
        write!(f, "{} ({}) {body}", self.status, self.content_type)
    }
}

impl Answer {
    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends a probe; `None` when the client itself cannot express it (an unparsable URL), which is
/// then no case at all.
async fn send(app: &TestApp, probe: &Probe) -> Option<Answer> {
    let url = reqwest::Url::parse(&app.url(&probe.target)).ok()?;
    let mut request = app.client.request(probe.method.clone(), url);
    for (name, value) in &probe.headers {
        // A value HTTP forbids (control characters) cannot be sent: leave the header out.
        if let Ok(value) = HeaderValue::from_bytes(value) {
            request = request.header(HeaderName::from_static(name), value);
        }
    }
    if let Some(body) = &probe.body {
        request = request.body(body.clone());
    }
    let response = request
        .send()
        .await
        .unwrap_or_else(|err| panic!("{probe:?}: no answer: {err:?}"));
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let body = response.bytes().await.unwrap_or_default().to_vec();
    Some(Answer {
        status,
        content_type,
        body,
    })
}

/// Every code the API can send, with its status. Taken from [`ApiError`] itself, plus the codes of
/// authentication, load shedding and the operator routes (none of which these requests should
/// meet: keys are not configured, load is low, the admin routes are off).
fn documented_codes() -> &'static HashMap<&'static str, Option<u16>> {
    static CODES: OnceLock<HashMap<&'static str, Option<u16>>> = OnceLock::new();
    CODES.get_or_init(|| {
        let text = String::new;
        let errors = [
            ApiError::InvalidId(text()),
            ApiError::InvalidJson(text()),
            ApiError::InvalidBody(text()),
            ApiError::InvalidPrecondition(text()),
            ApiError::InvalidQuery(text()),
            ApiError::InvalidCursor(text()),
            ApiError::UnsupportedMediaType(text()),
            ApiError::PayloadTooLarge { limit: MIB },
            ApiError::CollectionNotFound(text()),
            ApiError::NotFound {
                collection: text(),
                id: text(),
            },
            ApiError::IndexNotFound {
                collection: text(),
                kind: "geo",
                index: text(),
            },
            ApiError::RouteNotFound(text()),
            ApiError::MethodNotAllowed,
            ApiError::IdMismatch {
                path: text(),
                body: text(),
            },
            ApiError::InvalidDocument(DocumentError::new("f", "r")),
            ApiError::PreconditionFailed { current: None },
            ApiError::Conflict,
            ApiError::StoreUnavailable,
            ApiError::Internal,
        ];
        let mut codes: HashMap<&'static str, Option<u16>> = errors
            .iter()
            .map(|e| (e.code(), Some(e.status().as_u16())))
            .collect();
        for code in [
            "unauthorized",
            "forbidden",
            "timeout",
            "overloaded",
            "cache_unavailable",
            "admin_disabled",
            "dead_letter_not_found",
            "dead_letter_superseded",
            "stream_unavailable",
        ] {
            codes.entry(code).or_insert(None);
        }
        codes
    })
}

/// What every answer must be: below 500, and a 4xx is a JSON error with a documented code whose
/// status it carries. Returns the error's code, if it is one.
fn check_answer(probe: &Probe, answer: &Answer) -> Result<Option<String>, TestCaseError> {
    prop_assert!(
        answer.status < 500,
        "server error for {:?}: {:?}",
        probe,
        answer
    );
    if !(400..500).contains(&answer.status) {
        return Ok(None);
    }
    prop_assert_eq!(
        &answer.content_type,
        "application/json",
        "{:?}: {:?}",
        probe,
        answer
    );
    if probe.method == Method::HEAD {
        // No body on HEAD: the status and content type are all there is.
        return Ok(None);
    }
    let body: Result<Value, _> = serde_json::from_slice(&answer.body);
    prop_assert!(body.is_ok(), "{:?}: not JSON: {:?}", probe, answer);
    let body = body.unwrap();
    let code = body["code"].as_str();
    prop_assert!(code.is_some(), "{:?}: no code: {:?}", probe, answer);
    let code = code.unwrap().to_owned();
    let documented = documented_codes().get(code.as_str());
    prop_assert!(
        documented.is_some(),
        "{:?}: undocumented code: {:?}",
        probe,
        answer
    );
    if let Some(Some(status)) = documented {
        prop_assert_eq!(
            answer.status,
            *status,
            "{:?}: wrong status for {}",
            probe,
            code
        );
    }
    prop_assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{:?}: no message: {:?}",
        probe,
        answer
    );
    if code == "invalid_document" || code == "id_mismatch" {
        prop_assert!(
            body["field"].is_string(),
            "{:?}: no field: {:?}",
            probe,
            answer
        );
    }
    Ok(Some(code))
}

/// What a request must get, where the request alone decides it.
#[derive(Debug)]
enum Expect {
    /// Any answer that passes [`check_answer`].
    Anything,
    /// One of these statuses.
    OneOf(&'static [u16]),
    /// This error.
    Error(u16, &'static str),
}

fn check_expected(
    probe: &Probe,
    answer: &Answer,
    code: Option<&str>,
    expect: &Expect,
) -> Result<(), TestCaseError> {
    match expect {
        Expect::Anything => {}
        Expect::OneOf(statuses) => prop_assert!(
            statuses.contains(&answer.status),
            "{:?}: expected one of {:?}, got {:?}",
            probe,
            statuses,
            answer
        ),
        Expect::Error(status, wanted) => prop_assert!(
            answer.status == *status && code == Some(*wanted),
            "{:?}: expected {} {}, got {:?}",
            probe,
            status,
            wanted,
            answer
        ),
    }
    Ok(())
}

/// Runs `cases` generated requests against `app`; `judge` says what each must get beyond the
/// checks every answer passes, and may look at a successful answer more closely.
fn run<S>(
    app: &TestApp,
    cases: u32,
    strategy: S,
    judge: impl Fn(&S::Value) -> (Probe, Expect),
    inspect: impl Fn(&S::Value, &Probe, &Answer) -> Result<(), TestCaseError>,
) where
    S: Strategy,
{
    let runtime = tokio::runtime::Handle::current();
    let mut runner = TestRunner::new(config(cases));
    let outcome = tokio::task::block_in_place(|| {
        runner.run(&strategy, |input| {
            let (probe, expect) = judge(&input);
            let Some(answer) = runtime.block_on(send(app, &probe)) else {
                return Ok(());
            };
            let code = check_answer(&probe, &answer)?;
            check_expected(&probe, &answer, code.as_deref(), &expect)?;
            inspect(&input, &probe, &answer)
        })
    });
    if let Err(err) = outcome {
        panic!("{err}");
    }
}

fn no_inspection<T>(_: &T, _: &Probe, _: &Answer) -> Result<(), TestCaseError> {
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pieces of requests

/// Percent-encodes every byte but the unreserved ones (or every byte).
fn encode(text: &str, every_byte: bool) -> String {
    text.bytes()
        .map(|b| {
            if !every_byte && (b.is_ascii_alphanumeric() || b"-._~".contains(&b)) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// A path segment: ids valid and not, route words, raw and encoded odd characters, invalid
/// percent sequences (`%FF` is not UTF-8), very long ids.
fn arb_segment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[A-Za-z0-9_-]{1,16}",
        2 => select(&[
            "places", "near", "top", "fields", "nearby", "rating", "rating_by_category", "v1",
            "openapi.json", "healthz", "readyz", ".", "..", "%2e%2e", "p1", "a.b", "~",
        ][..])
        .prop_map(str::to_owned),
        2 => "[ -~]{1,12}",
        2 => "[ -~]{1,12}".prop_map(|s| encode(&s, false)),
        1 => "\\PC{1,6}",
        2 => prop::collection::vec(
            prop_oneof![
                select(&[
                    "%FF", "%00", "%2F", "%2f", "%C3%A9", "%C0%AF", "%E2%82", "%zz", "%", "%%",
                    "%2", "%25", "%0A", "%20", "%3F", "%23", "%2C", "%7B%7D",
                ][..])
                .prop_map(str::to_owned),
                "[a-z]{0,3}",
            ],
            1..5,
        )
        .prop_map(|parts| parts.concat()),
        1 => (129usize..16_000, select(&["a", "-", "é", "%41", "_", "%FF"][..]))
            .prop_map(|(len, unit)| unit.repeat(len / unit.len())),
    ]
}

fn arb_method() -> impl Strategy<Value = Method> {
    prop_oneof![
        8 => select(&["GET", "HEAD", "PUT", "PATCH", "DELETE"][..]),
        2 => select(&["POST", "OPTIONS", "TRACE"][..]),
        1 => select(&["FOO", "PROPFIND", "get", "M-SEARCH", "BREW"][..]),
    ]
    .prop_map(|m| Method::from_bytes(m.as_bytes()).unwrap())
}

/// A raw query string, anything from sensible to broken.
fn arb_raw_query() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => arb_query_pairs().prop_map(|pairs| encode_pairs(&pairs)),
        1 => "[ -~]{0,24}",
        1 => prop::collection::vec(arb_segment(), 0..4).prop_map(|parts| parts.join("&")),
    ]
}

/// A document body: a valid place, or JSON that is not one.
fn arb_small_body() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        3 => Just(None),
        3 => Just(Some(place("x", "cafe", 4.0).to_string().into_bytes())),
        1 => select(&["{", "[]", "null", "{\"rating\": \"x\"}", ""][..])
            .prop_map(|s| Some(s.as_bytes().to_vec())),
    ]
}

fn arb_content_type() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(&[
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
            "APPLICATION/JSON",
            "application/vnd.api+json",
            " application/json ;",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
        3 => select(&[
            "text/plain",
            "application/x-www-form-urlencoded",
            "multipart/form-data; boundary=x",
            "application/",
            "+json",
            "application/jsonx",
            "json",
            "",
            ";",
            "application/json+xml",
            "text/json",
            "application/json\tfoo",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => "[ -~]{0,30}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..30),
        1 => Just(b"application/json\xff".to_vec()),
    ]
}

// ---------------------------------------------------------------------------------------------
// 1. Methods and paths

fn arb_path() -> impl Strategy<Value = String> {
    let collection = || prop_oneof![3 => Just("places".to_owned()), 1 => arb_segment()];
    let index = prop_oneof![
        2 => select(&["nearby", "rating", "rating_by_category", "document", "fields", "nope"][..])
            .prop_map(str::to_owned),
        1 => arb_segment(),
    ];
    let shape = prop_oneof![
        4 => (collection(), arb_segment()).prop_map(|(c, id)| format!("/v1/{c}/{id}")),
        1 => collection().prop_map(|c| format!("/v1/{c}")),
        3 => (collection(), select(&["near", "top"][..]), index)
            .prop_map(|(c, kind, index)| format!("/v1/{c}/{kind}/{index}")),
        1 => (collection(), arb_segment()).prop_map(|(c, id)| format!("/v1/{c}/{id}/fields")),
        1 => prop::collection::vec(arb_segment(), 0..5)
            .prop_map(|segments| format!("/{}", segments.join("/"))),
        1 => select(&[
            "/", "/healthz", "/readyz", "/openapi.json", "/v1", "/v1/", "//v1//places",
            "/v1/places/", "/v1/places/p1/", "/V1/places/p1", "/v1/places/near",
            "/v1/places/top/", "/v1/places/p1/fields/x", "/v1/places/near/nearby/x",
            "/v1/places/top/rating/", "/healthz/", "/metrics",
        ][..])
        .prop_map(str::to_owned),
    ];
    (
        shape,
        prop::option::weighted(0.1, Just("/")),
        prop::option::weighted(0.3, arb_raw_query()),
    )
        .prop_map(|(path, slash, query)| {
            let mut target = path;
            if let Some(slash) = slash {
                target.push_str(slash);
            }
            if let Some(query) = query {
                target.push('?');
                target.push_str(&query);
            }
            target
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_method_and_path_gets_a_json_answer_below_500() {
    let app = spawn_app().await;
    assert_eq!(
        app.put("/v1/places/p1", &place("x", "cafe", 4.0))
            .await
            .status(),
        201
    );
    let strategy = (
        arb_method(),
        arb_path(),
        arb_small_body(),
        prop::option::weighted(0.3, arb_content_type()),
    );
    run(
        &app,
        384,
        strategy,
        |(method, target, body, content_type)| {
            let probe = Probe {
                method: method.clone(),
                target: target.clone(),
                headers: content_type
                    .iter()
                    .map(|value| ("content-type", value.clone()))
                    .collect(),
                body: body.clone(),
            };
            (probe, Expect::Anything)
        },
        no_inspection,
    );
}

// ---------------------------------------------------------------------------------------------
// 2. Query strings

/// Text that is a number in range, at an edge, or not a usable number at all.
fn number_text(
    good: impl Strategy<Value = f64> + 'static,
    edges: &'static [&'static str],
) -> BoxedStrategy<String> {
    prop_oneof![
        5 => good.prop_map(|v| v.to_string()),
        1 => select(edges).prop_map(str::to_owned),
        3 => arb_bad_number(),
    ]
    .boxed()
}

fn arb_bad_number() -> impl Strategy<Value = String> {
    prop_oneof![
        select(
            &[
                "NaN",
                "nan",
                "-NaN",
                "inf",
                "-inf",
                "+inf",
                "Infinity",
                "-Infinity",
                "infinity",
                "1e309",
                "-1e309",
                "1e-400",
                "",
                "-",
                "+",
                ".",
                "e5",
                "1,5",
                "0x10",
                "1_000",
                " 1",
                "1 ",
                "١",
                "5.",
                ".5",
                "-0",
                "+0",
                "00001",
                "18446744073709551616",
                "-9223372036854775809",
                "340282366920938463463374607431768211456",
                "1e3",
                "10.0",
                "-1",
                "0",
            ][..]
        )
        .prop_map(str::to_owned),
        any::<f64>().prop_map(|v| v.to_string()),
        any::<i128>().prop_map(|v| v.to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        ".{0,8}",
    ]
}

fn integer_text(
    good: std::ops::RangeInclusive<u64>,
    edges: &'static [&'static str],
) -> BoxedStrategy<String> {
    prop_oneof![
        5 => good.prop_map(|v| v.to_string()),
        1 => select(edges).prop_map(str::to_owned),
        3 => arb_bad_number(),
    ]
    .boxed()
}

/// Ids the seeded app holds, ids it does not, and ids that are not ids.
fn arb_id_in_list() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&SEEDED[..]).prop_map(str::to_owned),
        2 => "[A-Za-z0-9_-]{1,12}",
        1 => Just(String::new()),
        1 => select(&["a.b", " s0", "s0 ", "é", "a/b", "{x}", "%FF"][..]).prop_map(str::to_owned),
        1 => (120usize..140).prop_map(|n| "a".repeat(n)),
    ]
}

fn arb_ids() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => prop::collection::vec(arb_id_in_list(), 0..12).prop_map(|ids| ids.join(",")),
        // Duplicates.
        1 => (select(&SEEDED[..]), 2..6usize).prop_map(|(id, n)| vec![id; n].join(",")),
        // Around the cap of 1,000.
        1 => (995usize..1006, any::<bool>()).prop_map(|(n, seeded)| {
            (0..n)
                .map(|i| if seeded { SEEDED[i % SEEDED.len()].to_owned() } else { format!("x{i}") })
                .collect::<Vec<_>>()
                .join(",")
        }),
        1 => Just(",".to_owned()),
        1 => Just(String::new()),
    ]
}

fn arb_category() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(&["cafe", "bar", "ü", "x:y", "nope"][..]).prop_map(str::to_owned),
        2 => "[a-z]{1,10}",
        1 => Just("a".repeat(256)),
        2 => select(&["", "two words", "a{b}", "\t", "a\u{0}b", "}"][..]).prop_map(str::to_owned),
        1 => Just("a".repeat(257)),
        1 => "\\PC{0,6}",
    ]
}

/// Query pairs biased towards the parameters the API reads, plus noise, in any order, keys repeated
/// now and then.
fn arb_query_pairs() -> impl Strategy<Value = Vec<(String, String)>> {
    let lon = number_text(
        -180.0..=180.0,
        &["180", "-180", "180.0000001", "-180.0000001", "1e308"],
    );
    let lat = number_text(
        -85.051_128_78..=85.051_128_78,
        &["85.05112878", "-85.05112878", "85.0511288", "90", "-90.5"],
    );
    let radius = number_text(
        0.001..=100_000.0,
        &["100000", "100000.0001", "0", "-0", "1e-300", "5e-324", "-5"],
    );
    let limit = integer_text(1..=1000, &["1", "1000", "1001", "0", "+5", "-1"]);
    let offset = integer_text(0..=100_000, &["0", "100000", "100001", "+0", "-0"]);
    let param = |name: &'static str, value: BoxedStrategy<String>| {
        prop::option::weighted(0.7, value.prop_map(move |v| (name.to_owned(), v)))
    };
    let noise = prop::collection::vec(
        (
            prop_oneof![
                select(
                    &[
                        "limit", "offset", "lon", "lat", "radius_m", "ids", "category", "LIMIT",
                        "lon[]", ""
                    ][..]
                )
                .prop_map(str::to_owned),
                ".{0,6}",
            ],
            prop_oneof![arb_bad_number(), ".{0,8}"],
        ),
        0..3,
    );
    (
        (
            param("lon", lon),
            param("lat", lat),
            param("radius_m", radius),
            param("limit", limit),
            param("offset", offset),
            param("ids", arb_ids().boxed()),
            param("category", arb_category().boxed()),
        ),
        noise,
    )
        .prop_flat_map(|(params, noise)| {
            let (lon, lat, radius, limit, offset, ids, category) = params;
            let mut pairs: Vec<(String, String)> = [lon, lat, radius, limit, offset, ids, category]
                .into_iter()
                .flatten()
                .collect();
            pairs.extend(noise);
            Just(pairs).prop_shuffle()
        })
}

/// `k=v&k=v`, every byte that is not unreserved percent-encoded, so the server decodes exactly
/// the generated pairs.
fn encode_pairs(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k, false), encode(v, false)))
        .collect::<Vec<_>>()
        .join("&")
}

/// How the server reads a query: the last of repeated keys wins.
fn query_map(pairs: &[(String, String)]) -> HashMap<&str, &str> {
    pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect()
}

const SEEDED: [&str; 8] = ["s0", "s1", "s2", "s3", "s4", "s5", "s6", "s7"];

#[derive(Debug, Clone)]
enum Endpoint {
    Many,
    Near(String),
    Top(String),
    One(String),
    Fields(String),
}

fn arb_endpoint() -> impl Strategy<Value = Endpoint> {
    let index = |known: &'static [&'static str]| {
        prop_oneof![
            6 => select(known).prop_map(str::to_owned),
            1 => select(&["nope", "document", "fields", "NEARBY"][..]).prop_map(str::to_owned),
        ]
    };
    prop_oneof![
        3 => Just(Endpoint::Many),
        4 => index(&["nearby"]).prop_map(Endpoint::Near),
        4 => index(&["rating", "rating_by_category"]).prop_map(Endpoint::Top),
        1 => select(&SEEDED[..]).prop_map(|id| Endpoint::One(id.to_owned())),
        1 => select(&SEEDED[..]).prop_map(|id| Endpoint::Fields(id.to_owned())),
    ]
}

fn endpoint_path(endpoint: &Endpoint) -> String {
    match endpoint {
        Endpoint::Many => "/v1/places".to_owned(),
        Endpoint::Near(index) => format!("/v1/places/near/{index}"),
        Endpoint::Top(index) => format!("/v1/places/top/{index}"),
        Endpoint::One(id) => format!("/v1/places/{id}"),
        Endpoint::Fields(id) => format!("/v1/places/{id}/fields"),
    }
}

/// A number as the API documents it: finite, written as Rust reads floats.
fn finite(text: Option<&&str>) -> Option<f64> {
    text?.parse::<f64>().ok().filter(|v| v.is_finite())
}

fn in_range(text: Option<&&str>, range: std::ops::RangeInclusive<usize>) -> bool {
    text.and_then(|t| t.parse::<usize>().ok())
        .is_some_and(|v| range.contains(&v))
}

/// The documented query rules: `limit` 1..=1,000 (default 10; 100 for a listing), `offset` 0..=100,000, `lon` in
/// [-180, 180], `lat` in Redis's range, `radius_m` in (0, 100 km], at most 1,000 ids, key
/// template values usable in a key.
fn expect_query(endpoint: &Endpoint, query: &HashMap<&str, &str>) -> Expect {
    const INVALID: Expect = Expect::Error(400, "invalid_query");
    let limit_ok = !query.contains_key("limit") || in_range(query.get("limit"), 1..=1000);
    match endpoint {
        Endpoint::Many => {
            // Without ids: the collection listed a page at a time.
            let Some(ids) = query.get("ids") else {
                return if limit_ok {
                    Expect::OneOf(&[200])
                } else {
                    INVALID
                };
            };
            let ids: Vec<&str> = ids.split(',').collect();
            if ids.len() > 1000 {
                INVALID
            } else if ids.iter().any(|id| !is_valid_id(id)) {
                Expect::Error(400, "invalid_id")
            } else {
                Expect::OneOf(&[200])
            }
        }
        Endpoint::Near(index) if index != "nearby" => Expect::Error(404, "index_not_found"),
        Endpoint::Near(_) => {
            let lon = finite(query.get("lon")).is_some_and(|v| (-180.0..=180.0).contains(&v));
            let lat = finite(query.get("lat"))
                .is_some_and(|v| (-85.051_128_78..=85.051_128_78).contains(&v));
            let radius = finite(query.get("radius_m")).is_some_and(|v| v > 0.0 && v <= 100_000.0);
            if lon && lat && radius && limit_ok {
                Expect::OneOf(&[200])
            } else {
                INVALID
            }
        }
        Endpoint::Top(index) if index != "rating" && index != "rating_by_category" => {
            Expect::Error(404, "index_not_found")
        }
        Endpoint::Top(index) => {
            let offset_ok =
                !query.contains_key("offset") || in_range(query.get("offset"), 0..=100_000);
            let category_ok = index == "rating"
                || query.get("category").is_some_and(|c| {
                    !c.is_empty()
                        && c.len() <= 256
                        && !c.chars().any(|ch| {
                            ch.is_control() || ch.is_whitespace() || ch == '{' || ch == '}'
                        })
                });
            if limit_ok && offset_ok && category_ok {
                Expect::OneOf(&[200])
            } else {
                INVALID
            }
        }
        Endpoint::One(_) | Endpoint::Fields(_) => Expect::OneOf(&[200]),
    }
}

/// A 200 is the answer asked for: the ids in order, results within the radius and the limit,
/// nearest or highest first.
fn inspect_query(
    (endpoint, pairs): &(Endpoint, Vec<(String, String)>),
    probe: &Probe,
    answer: &Answer,
) -> Result<(), TestCaseError> {
    if answer.status != 200 {
        return Ok(());
    }
    let query = query_map(pairs);
    let body = answer.json();
    // Only `near` and `top` read `limit`; where they answered 200 it is valid.
    let limit = || {
        query
            .get("limit")
            .map_or(10, |l| l.parse::<usize>().unwrap())
    };
    match endpoint {
        Endpoint::Many if !query.contains_key("ids") => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            let page = query
                .get("limit")
                .map_or(100, |l| l.parse::<usize>().unwrap());
            prop_assert!(items.len() <= page, "{:?}: {:?}", probe, answer);
            let ids: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
            prop_assert_eq!(ids.len(), items.len(), "{:?}", probe);
            prop_assert!(
                ids.windows(2).all(|w| w[0] < w[1]),
                "{:?}: {:?}",
                probe,
                answer
            );
        }
        Endpoint::Many => {
            let asked: Vec<&str> = query["ids"].split(',').collect();
            let items = body["items"].as_array().cloned().unwrap_or_default();
            let got: Vec<&str> = items.iter().filter_map(|i| i["id"].as_str()).collect();
            prop_assert_eq!(&got, &asked, "{:?}", probe);
            for item in &items {
                if item["found"] == json!(true) {
                    prop_assert_eq!(&item["document"]["id"], &item["id"], "{:?}", probe);
                }
            }
        }
        Endpoint::Near(_) => {
            let radius: f64 = query["radius_m"].parse().unwrap();
            let items = body["items"].as_array().cloned().unwrap_or_default();
            prop_assert!(items.len() <= limit(), "{:?}: {:?}", probe, answer);
            let distances: Vec<f64> = items
                .iter()
                .filter_map(|i| i["distance_m"].as_f64())
                .collect();
            prop_assert_eq!(distances.len(), items.len(), "{:?}: {:?}", probe, answer);
            prop_assert!(
                distances.windows(2).all(|w| w[0] <= w[1]),
                "{:?}: {:?}",
                probe,
                answer
            );
            prop_assert!(
                distances.iter().all(|d| *d <= radius * (1.0 + 1e-6) + 1.0),
                "{:?}: {:?}",
                probe,
                answer
            );
        }
        Endpoint::Top(_) => {
            let items = body["items"].as_array().cloned().unwrap_or_default();
            prop_assert!(items.len() <= limit(), "{:?}: {:?}", probe, answer);
            let scores: Vec<f64> = items.iter().filter_map(|i| i["score"].as_f64()).collect();
            prop_assert_eq!(scores.len(), items.len(), "{:?}: {:?}", probe, answer);
            prop_assert!(
                scores.windows(2).all(|w| w[0] >= w[1]),
                "{:?}: {:?}",
                probe,
                answer
            );
        }
        Endpoint::One(_) | Endpoint::Fields(_) => {
            prop_assert!(body.is_object(), "{:?}: {:?}", probe, answer)
        }
    }
    Ok(())
}

/// Places with extreme but valid values: scores at the ends of f64, points on the edges of the map,
/// the longest category a key allows.
async fn seed_extremes(app: &TestApp) {
    let long_category = "a".repeat(256);
    let places = [
        place_at("s0", "cafe", 1e308, 180.0, 85.051_128_78),
        place_at("s1", "cafe", -1e308, -180.0, -85.051_128_78),
        place_at("s2", "bar", 5e-324, 0.0, 0.0),
        place_at("s3", "ü", 0.0, -9.14, 38.72),
        place_at("s4", "x:y", 4.5, -9.15, 38.73),
        place_at("s5", &long_category, -0.0, 179.999, -85.0),
        place_at("s6", "bar", 4.5, -179.999, 85.0),
        place_at("s7", "cafe", 3.0, 0.0001, -0.0001),
    ];
    for (id, mut doc) in SEEDED.iter().zip(places) {
        doc["price"] = json!(u64::MAX);
        let status = app.put(&format!("/v1/places/{id}"), &doc).await.status();
        assert_eq!(status, 201, "seeding {id}");
    }
    let client = app.client.clone();
    let url = app.url("/v1/places/top/rating?limit=100");
    app.eventually(
        "the worker indexed every seeded place",
        Duration::from_secs(15),
        || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let body: Value = client.get(url).send().await.unwrap().json().await.unwrap();
                body["items"].as_array().map_or(0, Vec::len) == SEEDED.len()
            }
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_strings_are_checked_exactly_as_documented() {
    let app = spawn_app().await;
    app.start_worker();
    seed_extremes(&app).await;
    let strategy = (arb_endpoint(), arb_query_pairs());
    run(
        &app,
        512,
        strategy,
        |(endpoint, pairs)| {
            let target = format!("{}?{}", endpoint_path(endpoint), encode_pairs(pairs));
            let probe = Probe {
                method: Method::GET,
                target,
                headers: Vec::new(),
                body: None,
            };
            (probe, expect_query(endpoint, &query_map(pairs)))
        },
        inspect_query,
    );
}

// ---------------------------------------------------------------------------------------------
// 3. Headers: preconditions and content types

fn arb_precondition() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => select(&[
            "*", "\"1\"", "\"2\"", "\"3\"", "\"0\"", "W/\"1\"", "\"-1\"", "\"1", "1", "\"\"",
            "\"1\", \"2\"", "* ", "**", "\"18446744073709551615\"", "\"18446744073709551616\"",
            "\"+1\"", "\"1.0\"", "\"0x1\"", "'1'", "W/*", "\"1\" ", "",
        ][..])
        .prop_map(|s| s.as_bytes().to_vec()),
        1 => any::<u64>().prop_map(|v| format!("\"{v}\"").into_bytes()),
        1 => "[ -~]{0,20}".prop_map(String::into_bytes),
        1 => prop::collection::vec(any::<u8>(), 0..20),
        1 => Just(b"\"1\xff\"".to_vec()),
    ]
}

/// What a write makes of its conditional headers, as documented: `If-Match: *` or one strong
/// ETag `"<version>"`; on writes `If-None-Match` only `*`.
fn precondition_is_valid(headers: &[(&'static str, Vec<u8>)]) -> bool {
    let value = |name: &str| {
        headers
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| std::str::from_utf8(v).unwrap_or("").trim().to_owned())
    };
    if let Some(text) = value("if-match") {
        return text == "*"
            || text
                .strip_prefix('"')
                .and_then(|t| t.strip_suffix('"'))
                .is_some_and(|t| t.parse::<u64>().is_ok());
    }
    value("if-none-match").is_none_or(|text| text == "*")
}

fn content_type_is_json(headers: &[(&'static str, Vec<u8>)]) -> bool {
    let Some((_, value)) = headers.iter().rev().find(|(n, _)| *n == "content-type") else {
        return true;
    };
    // Header values that are not visible ASCII (obs-text) read as no type at all.
    let text = if value
        .iter()
        .all(|b| *b == b'\t' || (b' '..=b'~').contains(b))
    {
        std::str::from_utf8(value).unwrap_or("")
    } else {
        ""
    };
    let mime = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_and_content_type_headers_are_checked() {
    let app = spawn_app().await;
    for id in ["h0", "h1"] {
        assert_eq!(
            app.put(&format!("/v1/places/{id}"), &place("x", "cafe", 4.0))
                .await
                .status(),
            201
        );
    }
    let strategy = (
        select(&["PUT", "PATCH", "DELETE", "GET", "HEAD"][..]),
        select(&["h0", "h1", "h2", "h3"][..]),
        prop::option::weighted(0.5, arb_precondition()),
        prop::option::weighted(0.5, arb_precondition()),
        prop::option::weighted(0.5, arb_content_type()),
    );
    run(
        &app,
        384,
        strategy,
        |(method, id, if_match, if_none_match, content_type)| {
            let mut headers = Vec::new();
            if let Some(value) = if_match {
                headers.push(("if-match", value.clone()));
            }
            if let Some(value) = if_none_match {
                headers.push(("if-none-match", value.clone()));
            }
            if let Some(value) = content_type {
                headers.push(("content-type", value.clone()));
            }
            // A header value HTTP forbids (control characters) is not sent at all.
            headers.retain(|(_, v)| HeaderValue::from_bytes(v).is_ok());
            let body = match *method {
                "PUT" => Some(place("x", "cafe", 4.0).to_string().into_bytes()),
                "PATCH" => Some(b"{\"rating\": 3.5}".to_vec()),
                _ => None,
            };
            let expect = match *method {
                "PUT" | "PATCH" if !content_type_is_json(&headers) => {
                    Expect::Error(415, "unsupported_media_type")
                }
                "PUT" | "PATCH" | "DELETE" if !precondition_is_valid(&headers) => {
                    Expect::Error(400, "invalid_precondition")
                }
                "PUT" => Expect::OneOf(&[200, 201, 412]),
                "PATCH" => Expect::OneOf(&[200, 404, 412]),
                "DELETE" => Expect::OneOf(&[204, 404, 412]),
                _ => Expect::OneOf(&[200, 304, 404]),
            };
            let probe = Probe {
                method: Method::from_bytes(method.as_bytes()).unwrap(),
                target: format!("/v1/places/{id}"),
                headers,
                body,
            };
            (probe, expect)
        },
        no_inspection,
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Bodies

fn places() -> &'static Collection {
    static PIPELINE: OnceLock<Pipeline> = OnceLock::new();
    PIPELINE
        .get_or_init(|| Pipeline::load(&pipeline_path()).unwrap())
        .collection("places")
        .unwrap()
}

/// Any JSON value, a few levels deep.
fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        prop_oneof![".{0,10}", "[a-z]{1,6}"].prop_map(Value::from),
    ];
    leaf.prop_recursive(3, 24, 5, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::btree_map(".{0,6}", inner, 0..5)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// GeoJSON points valid and not.
fn arb_geo() -> impl Strategy<Value = Value> {
    let coordinate = prop_oneof![
        4 => (-180.0f64..=180.0).prop_map(Value::from),
        1 => select(&[180.0000001, -180.0000001, 85.0511288, -85.0511288, 1e308, -1e308, 5e-324, -0.0][..])
            .prop_map(Value::from),
        1 => arb_json(),
    ];
    prop_oneof![
        4 => ((-180.0f64..=180.0), (-85.051_128_78f64..=85.051_128_78))
            .prop_map(|(lon, lat)| json!({"type": "Point", "coordinates": [lon, lat]})),
        3 => (prop::collection::vec(coordinate, 0..4), select(&["Point", "point", "Polygon", ""][..]))
            .prop_map(|(coordinates, kind)| json!({"type": kind, "coordinates": coordinates})),
        1 => (-180.0f64..=180.0).prop_map(|lon| json!({"type": "Point", "coordinates": [lon, 85.0511288]})),
        1 => Just(json!({"coordinates": [0, 0]})),
        1 => Just(json!([1.0, 2.0])),
        1 => Just(json!("1,2")),
        1 => Just(json!({"type": "Point", "coordinates": {"lon": 1, "lat": 2}})),
        1 => Just(json!({"type": "Point", "coordinates": [[0, 0]], "extra": true})),
        1 => arb_json(),
    ]
}

/// A place with some fields replaced, removed or added.
fn arb_place_document() -> impl Strategy<Value = Value> {
    let value = prop_oneof![
        3 => arb_json(),
        1 => select(&["cafe", "", "two words", "a{b}", "é"][..]).prop_map(Value::from),
        1 => any::<f64>().prop_map(Value::from),
        1 => arb_geo(),
    ];
    let edit = prop_oneof![
        3 => (
            select(&["name", "category", "rating", "price", "extra"][..]),
            value,
        )
            .prop_map(|(field, value)| (field.to_owned(), Some(value))),
        2 => arb_geo().prop_map(|geo| ("location".to_owned(), Some(geo))),
        1 => select(&["name", "category", "rating", "price", "location"][..])
            .prop_map(|field| (field.to_owned(), None)),
        1 => prop_oneof![
            Just(Value::Null),
            select(&["b0", "other", ""][..]).prop_map(Value::from),
            arb_json(),
        ]
        .prop_map(|id| ("id".to_owned(), Some(id))),
        1 => (".{0,8}", arb_json()).prop_map(|(field, value)| (field, Some(value))),
    ];
    prop::collection::vec(edit, 0..4).prop_map(|edits| {
        let mut doc = place("x", "cafe", 4.0);
        for (field, value) in edits {
            let object = doc.as_object_mut().unwrap();
            match value {
                Some(value) => object.insert(field, value),
                None => object.remove(&field),
            };
        }
        doc
    })
}

/// Numbers serde_json cannot hold (`1e400`) or holds only as floats, spliced in as raw text.
fn arb_raw_number_body() -> impl Strategy<Value = Vec<u8>> {
    (
        select(&["rating", "price", "extra"][..]),
        select(
            &[
                "1e400",
                "-1e400",
                "123456789012345678901234567890",
                "1e-400",
                "-0",
                "1E5",
                "18446744073709551616",
                "-9223372036854775809",
                "0.0000000000000000000001",
                "1.7976931348623157e308",
                "01",
                "1.",
                ".5",
                "+1",
                "NaN",
                "Infinity",
            ][..],
        ),
    )
        .prop_map(|(field, number)| {
            let mut doc = place("x", "cafe", 4.0);
            doc[field] = json!("@@NUMBER@@");
            doc.to_string()
                .replace("\"@@NUMBER@@\"", number)
                .into_bytes()
        })
}

fn arb_nested_body() -> impl Strategy<Value = Vec<u8>> {
    // Around the API's limit of 64 levels and serde_json's of 127, and anywhere.
    let depth = prop_oneof![1usize..70, 60usize..70, 120usize..135, 1usize..400];
    (depth, any::<bool>()).prop_map(|(depth, arrays)| {
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let mut doc = place("x", "cafe", 4.0);
        doc["extra"] = json!("@@NESTED@@");
        let nested = format!("{}0{}", open.repeat(depth), close.repeat(depth));
        doc.to_string()
            .replace("\"@@NESTED@@\"", &nested)
            .into_bytes()
    })
}

fn arb_broken_json() -> impl Strategy<Value = Vec<u8>> {
    let valid = place("x", "cafe", 4.0).to_string().into_bytes();
    prop_oneof![
        select(
            &[
                "",
                "{",
                "}",
                "{\"name\": ",
                "{'name': 'x'}",
                "{\"a\":1,}",
                "{} x",
                "{}{}",
                "NaN",
                "{\"a\": NaN}",
                "\u{feff}{}",
                "{\"a\":\"\\ud800\"}",
                "{\"a\":\"\\x\"}",
                "nul",
                "{\"a\" 1}",
                "[",
                "\"unterminated",
            ][..]
        )
        .prop_map(|s| s.as_bytes().to_vec()),
        (Just(valid.clone()), any::<prop::sample::Index>())
            .prop_map(|(valid, cut)| valid[..cut.index(valid.len())].to_vec()),
        prop::collection::vec(any::<u8>(), 0..64),
        Just(b"{\"name\": \"\xff\"}".to_vec()),
        // UTF-16 is not JSON's encoding here.
        Just(
            "{\"a\":1}"
                .encode_utf16()
                .flat_map(u16::to_le_bytes)
                .collect::<Vec<u8>>()
        ),
    ]
}

fn arb_oversize_body() -> impl Strategy<Value = Vec<u8>> {
    (1usize..4096).prop_map(|extra| {
        let mut doc = place("x", "cafe", 4.0);
        doc["blob"] = json!("x".repeat(MIB + extra));
        doc.to_string().into_bytes()
    })
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        10 => arb_place_document().prop_map(|doc| doc.to_string().into_bytes()),
        2 => arb_raw_number_body(),
        2 => arb_nested_body(),
        3 => arb_broken_json(),
        2 => arb_json()
            .prop_filter("not an object", |v| !v.is_object())
            .prop_map(|v| v.to_string().into_bytes()),
        1 => arb_oversize_body(),
    ]
}

/// Levels of objects and arrays, the value itself included.
fn levels(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(levels).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(levels).max().unwrap_or(0),
        _ => 0,
    }
}

/// The answer to `PUT /v1/places/{id}` with this body, as documented: size, then JSON, then an
/// object nested at most 64 levels, then the body's id, then what the projections need.
fn expect_put(id: &str, body: &[u8]) -> (Expect, Option<String>) {
    if body.len() > MIB {
        return (Expect::Error(413, "payload_too_large"), None);
    }
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        return (Expect::Error(400, "invalid_json"), None);
    };
    let Value::Object(document) = value else {
        return (Expect::Error(400, "invalid_body"), None);
    };
    if levels(&Value::Object(document.clone())) > 64 {
        return (Expect::Error(400, "invalid_body"), None);
    }
    match document.get("id") {
        None | Some(Value::Null) => {}
        Some(Value::String(s)) if s == id => {}
        Some(_) => return (Expect::Error(422, "id_mismatch"), Some("id".to_owned())),
    }
    match places().validate(&document) {
        Ok(()) => (Expect::OneOf(&[200, 201]), None),
        Err(err) => (Expect::Error(422, "invalid_document"), Some(err.field)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_get_exactly_the_documented_answer() {
    let app = spawn_app().await;
    let strategy = (
        select(&["PUT", "PUT", "PUT", "PATCH"][..]),
        select(&["b0", "b1", "b2", "b3"][..]),
        arb_body(),
        select(&["application/json", "application/merge-patch+json", ""][..]),
    );
    run(
        &app,
        384,
        strategy,
        |(method, id, body, content_type)| {
            let expect = match *method {
                "PUT" => expect_put(id, body).0,
                _ => Expect::Anything,
            };
            let probe = Probe {
                method: Method::from_bytes(method.as_bytes()).unwrap(),
                target: format!("/v1/places/{id}"),
                headers: if content_type.is_empty() {
                    Vec::new()
                } else {
                    vec![("content-type", content_type.as_bytes().to_vec())]
                },
                body: Some(body.clone()),
            };
            (probe, expect)
        },
        |(method, id, body, _), probe, answer| {
            let body_answer = answer.json();
            if *method == "PUT" {
                if let (Expect::Error(422, _), Some(field)) = expect_put(id, body) {
                    prop_assert_eq!(
                        &body_answer["field"],
                        &json!(field),
                        "{:?}: {:?}",
                        probe,
                        answer
                    );
                }
            }
            if (200..300).contains(&answer.status) {
                // The stored document comes back with the server-owned fields.
                prop_assert_eq!(&body_answer["id"], &json!(id), "{:?}: {:?}", probe, answer);
                prop_assert!(
                    body_answer["version"].as_u64().is_some_and(|v| v >= 1),
                    "{:?}: {:?}",
                    probe,
                    answer
                );
            }
            Ok(())
        },
    );
}

// ---------------------------------------------------------------------------------------------
// Regressions found by the properties

/// Path parameters that are not UTF-8 once percent-decoded, in every route that takes one, are
/// answered like any other value that names nothing (they were plain-text 400s from axum's `Path`,
/// and a non-UTF-8 collection of `/v1/{collection}/{id}` was an `invalid_id`).
#[tokio::test]
async fn path_parameters_that_are_not_utf8_are_json_errors() {
    let app = spawn_app().await;
    for (path, status, code) in [
        ("/v1/%FF", 404, "collection_not_found"),
        ("/v1/%C3%28", 404, "collection_not_found"),
        ("/v1/%FF/p1", 404, "collection_not_found"),
        ("/v1/%FF/near/nearby", 404, "collection_not_found"),
        ("/v1/%FF/top/rating", 404, "collection_not_found"),
        ("/v1/%FF/p1/fields", 404, "collection_not_found"),
        ("/v1/places/%FF", 400, "invalid_id"),
        ("/v1/places/%FF/fields", 400, "invalid_id"),
        ("/v1/places/near/%FF", 404, "index_not_found"),
        ("/v1/places/top/%E2%82", 404, "index_not_found"),
    ] {
        let (got_status, got_code, body) = error_of(app.get(path).await).await;
        assert_eq!(
            (got_status, got_code.as_str()),
            (status, code),
            "{path}: {body}"
        );
    }
    let (_, _, body) = error_of(app.get("/v1/places/near/x%FFy").await).await;
    assert_eq!(
        body["message"],
        "collection `places` has no geo index `x\u{FFFD}y`"
    );
}

/// A document nested deeper than its event can carry was accepted (201), and then no event of any
/// entity was ever published again: the relay could not decode the outbox batch holding it.
/// Documents may now nest 64 levels; deeper is `invalid_body`.
#[tokio::test]
async fn documents_nest_at_most_64_levels_and_their_events_are_published() {
    let app = spawn_app().await;
    let put_nested = |id: &'static str, levels: usize| {
        // The document is one level, `extra` holds the rest.
        let inner = levels - 1;
        let nested = format!("{}0{}", "[".repeat(inner), "]".repeat(inner));
        let mut doc = place("x", "cafe", 4.0);
        doc["extra"] = json!("@@NESTED@@");
        let body = doc.to_string().replace("\"@@NESTED@@\"", &nested);
        app.client
            .put(app.url(&format!("/v1/places/{id}")))
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    for (levels, code) in [
        (65, "invalid_body"),
        (126, "invalid_body"),
        (128, "invalid_json"),
    ] {
        let (status, got, body) = error_of(put_nested("deep", levels).await.unwrap()).await;
        assert_eq!(
            (status, got.as_str()),
            (400, code),
            "{levels} levels: {body}"
        );
    }
    assert_eq!(put_nested("deep", 64).await.unwrap().status(), 201);
    assert_eq!(
        app.put("/v1/places/flat", &place("x", "cafe", 4.0))
            .await
            .status(),
        201
    );
    app.wait_for_stream_count(2, Duration::from_secs(30)).await;
}
