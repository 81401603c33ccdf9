//! Extractors that turn malformed requests into [`ApiError`]s, so every rejection has the same
//! JSON shape as every other error.

use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Path, Request};
use axum::http::{header, request::Parts, HeaderMap, HeaderValue};
use cacheflow_shared::document::{is_valid_id, Document};
use cacheflow_shared::pipeline::Collection;
use cacheflow_shared::store::Precondition;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// The deepest nesting of objects and arrays a document may have, itself included. Its event
/// wraps it in one more level and must stay within the 127 that `Event::decode` (serde_json)
/// accepts, or the outbox could never publish it; MongoDB refuses BSON nested over 100 levels.
pub const MAX_BODY_DEPTH: usize = 64;

/// The request's `If-None-Match` header, if any. The `HeaderMap` extractor would copy every
/// header of the request for this one, on the cache-hit path.
pub struct IfNoneMatch(pub Option<HeaderValue>);

impl<S: Send + Sync> FromRequestParts<S> for IfNoneMatch {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Self(parts.headers.get(header::IF_NONE_MATCH).cloned()))
    }
}

/// `/{collection}/{id}` with the collection looked up in the pipeline and the id checked.
pub struct EntityPath {
    pub collection: std::sync::Arc<Collection>,
    pub id: String,
}

impl FromRequestParts<AppState> for EntityPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let PathParams((collection, id)) =
            PathParams::<(String, String)>::from_request_parts(parts, state).await?;
        let collection = state
            .collection(&collection)
            .ok_or(ApiError::CollectionNotFound(collection))?;
        if !is_valid_id(&id) {
            return Err(invalid_id(&id));
        }
        Ok(Self { collection, id })
    }
}

fn invalid_id(id: &str) -> ApiError {
    ApiError::InvalidId(format!(
        "id `{}` must match [A-Za-z0-9_-]{{1,128}}",
        id.chars().take(140).collect::<String>()
    ))
}

/// `invalid_id` for the first id that is not a valid entity id (ids from a query or a body).
pub fn check_ids<'a>(ids: impl IntoIterator<Item = &'a str>) -> Result<(), ApiError> {
    match ids.into_iter().find(|id| !is_valid_id(id)) {
        Some(bad) => Err(invalid_id(bad)),
        None => Ok(()),
    }
}

/// Path parameters, for every route that takes some. axum's own rejection is plain text; here a
/// parameter that is not UTF-8 once percent-decoded is answered like any other value that names
/// nothing: an unknown collection, an invalid id, an unknown index.
pub struct PathParams<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for PathParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(Path(params)) => Ok(Self(params)),
            Err(rejection) => Err(path_rejection(parts, state, &rejection)),
        }
    }
}

/// Checks the parameters (read lossily) in the order the handlers do.
fn path_rejection(parts: &Parts, state: &AppState, rejection: &PathRejection) -> ApiError {
    let pattern = parts
        .extensions
        .get::<MatchedPath>()
        .map_or("", MatchedPath::as_str);
    let params: Vec<(&str, String)> = pattern
        .split('/')
        .zip(parts.uri.path().split('/'))
        .filter_map(|(name, raw)| {
            let name = name.strip_prefix('{')?.strip_suffix('}')?;
            Some((name, percent_decode_lossy(raw)))
        })
        .collect();
    let param = |key: &str| params.iter().find(|(k, _)| *k == key).map(|(_, v)| v);
    let collection = param("collection");
    if let Some(collection) = collection.filter(|c| state.collection(c).is_none()) {
        return ApiError::CollectionNotFound(collection.clone());
    }
    if let Some(id) = param("id").filter(|id| !is_valid_id(id)) {
        return invalid_id(id);
    }
    if let Some(index) = param("index") {
        return ApiError::IndexNotFound {
            collection: collection.cloned().unwrap_or_default(),
            kind: if pattern.contains("/near/") {
                "geo"
            } else {
                "sorted_set"
            },
            index: index.clone(),
        };
    }
    ApiError::InvalidId(rejection.body_text())
}

/// Percent-decoding that keeps invalid UTF-8 as U+FFFD, to name a parameter that is not UTF-8.
fn percent_decode_lossy(raw: &str) -> String {
    let hex = |b: Option<&u8>| b.and_then(|b| char::from(*b).to_digit(16));
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
            (b'%', Some(high), Some(low)) => {
                decoded.push((high * 16 + low) as u8);
                i += 3;
            }
            (byte, _, _) => {
                decoded.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

/// A JSON object body (`application/json` or `application/merge-patch+json`). Its size was
/// capped when the edge read it ([`crate::body`], `413` `payload_too_large`), so here it is
/// only taken out of memory.
pub struct JsonObject(pub Document);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = axum::body::to_bytes(req.into_body(), usize::MAX)
            .await
            .map_err(|err| ApiError::InvalidBody(format!("cannot read the request body: {err}")))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|err| ApiError::InvalidJson(format!("the body is not valid JSON: {err}")))?;
        match value {
            Value::Object(object) if nesting(&object) > MAX_BODY_DEPTH => {
                Err(ApiError::InvalidBody(format!(
                    "the body nests arrays and objects deeper than {MAX_BODY_DEPTH} levels"
                )))
            }
            Value::Object(object) => Ok(Self(object)),
            other => Err(ApiError::InvalidBody(format!(
                "the body must be a JSON object, not {}",
                json_kind(&other)
            ))),
        }
    }
}

/// Levels of objects and arrays in a document, itself included. serde_json already refuses more
/// than 127 when it parses, so the recursion is bounded.
fn nesting(document: &Document) -> usize {
    fn levels(value: &Value) -> usize {
        match value {
            Value::Array(items) => 1 + items.iter().map(levels).max().unwrap_or(0),
            Value::Object(fields) => 1 + fields.values().map(levels).max().unwrap_or(0),
            _ => 0,
        }
    }
    1 + document.values().map(levels).max().unwrap_or(0)
}

fn check_content_type(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        // Lenient on purpose: `curl -d` without -H is the most common first request.
        return Ok(());
    };
    let mime = value
        .to_str()
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let is_json =
        mime == "application/json" || (mime.starts_with("application/") && mime.ends_with("+json"));
    if is_json {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType(format!(
            "content type `{mime}` is not JSON; use application/json or application/merge-patch+json"
        )))
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Reads `If-Match` / `If-None-Match` for a write.
pub fn write_precondition(headers: &HeaderMap) -> Result<Precondition, ApiError> {
    if let Some(value) = headers.get(header::IF_MATCH) {
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(Precondition::IfExists);
        }
        return parse_etag(text).map(Precondition::IfMatch).ok_or_else(|| {
            ApiError::InvalidPrecondition(format!(
                "If-Match must be `*` or one strong ETag such as \"3\", not `{text}`"
            ))
        });
    }
    if let Some(value) = headers.get(header::IF_NONE_MATCH) {
        let text = value.to_str().unwrap_or("").trim();
        if text == "*" {
            return Ok(Precondition::IfAbsent);
        }
        return Err(ApiError::InvalidPrecondition(
            "on writes If-None-Match only supports `*` (create only)".into(),
        ));
    }
    Ok(Precondition::None)
}

/// Parses a strong ETag `"<version>"`.
pub fn parse_etag(text: &str) -> Option<u64> {
    text.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

pub fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn preconditions() {
        let mut headers = HeaderMap::new();
        assert_eq!(write_precondition(&headers).unwrap(), Precondition::None);
        headers.insert(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        assert_eq!(
            write_precondition(&headers).unwrap(),
            Precondition::IfMatch(7)
        );
        headers.insert(header::IF_MATCH, HeaderValue::from_static("*"));
        assert_eq!(
            write_precondition(&headers).unwrap(),
            Precondition::IfExists
        );
        headers.insert(header::IF_MATCH, HeaderValue::from_static("W/\"7\""));
        assert!(write_precondition(&headers).is_err());
        headers.remove(header::IF_MATCH);
        headers.insert(header::IF_NONE_MATCH, HeaderValue::from_static("*"));
        assert_eq!(
            write_precondition(&headers).unwrap(),
            Precondition::IfAbsent
        );
    }

    #[test]
    fn nesting_and_lossy_path_decoding() {
        let document = |value: Value| value.as_object().unwrap().clone();
        assert_eq!(nesting(&document(serde_json::json!({}))), 1);
        assert_eq!(
            nesting(&document(serde_json::json!({"a": 1, "b": [[{}]]}))),
            4
        );
        assert_eq!(percent_decode_lossy("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(percent_decode_lossy("x%FF%C3%A9"), "x\u{FFFD}é");
    }

    #[test]
    fn content_types() {
        let mut headers = HeaderMap::new();
        assert!(check_content_type(&headers).is_ok());
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "application/merge-patch+json",
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(ok));
            assert!(check_content_type(&headers).is_ok(), "{ok}");
        }
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(check_content_type(&headers).is_err());
    }
}
