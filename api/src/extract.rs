//! Extractors that turn malformed requests into [`ApiError`]s, so every rejection has the same
//! JSON shape as every other error.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use cacheflow_shared::document::{is_valid_id, Document};
use cacheflow_shared::pipeline::Collection;
use cacheflow_shared::store::Precondition;
use serde_json::Value;

use crate::error::ApiError;
use crate::state::AppState;

/// The largest accepted request body.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// `/{collection}/{id}` with the collection looked up in the pipeline and the id checked.
pub struct EntityPath {
    pub collection: std::sync::Arc<Collection>,
    pub id: String,
}

impl FromRequestParts<AppState> for EntityPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path((collection, id)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|err| ApiError::InvalidId(err.body_text()))?;
        let collection = state
            .collection(&collection)
            .ok_or(ApiError::CollectionNotFound(collection))?;
        if !is_valid_id(&id) {
            return Err(ApiError::InvalidId(format!(
                "id `{}` must match [A-Za-z0-9_-]{{1,128}}",
                id.chars().take(140).collect::<String>()
            )));
        }
        Ok(Self { collection, id })
    }
}

/// A JSON object body (`application/json` or `application/merge-patch+json`).
pub struct JsonObject(pub Document);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        check_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::PayloadTooLarge {
                    limit: MAX_BODY_BYTES,
                }
            } else {
                ApiError::InvalidBody(rejection.body_text())
            }
        })?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|err| ApiError::InvalidJson(format!("the body is not valid JSON: {err}")))?;
        match value {
            Value::Object(object) => Ok(Self(object)),
            other => Err(ApiError::InvalidBody(format!(
                "the body must be a JSON object, not {}",
                json_kind(&other)
            ))),
        }
    }
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
