//! The API's one error type. Every failure becomes `{ "code", "message" }` (plus `field` when a
//! document field is at fault) with a stable code and status; internal details are logged, never
//! sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheflow_shared::pipeline::DocumentError;
use cacheflow_shared::security::KeyRole;
use cacheflow_shared::store::StoreError;
use serde::Serialize;

/// Seconds a client should wait before retrying when a dependency is down.
const RETRY_AFTER_SECS: &str = "1";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    InvalidJson(String),
    #[error("{0}")]
    InvalidBody(String),
    #[error("{0}")]
    InvalidPrecondition(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("request body is larger than the {limit} byte limit")]
    PayloadTooLarge { limit: usize },
    #[error(
        "the document's event would take about {size} bytes; the event stream accepts at most {limit}"
    )]
    EventTooLarge { size: usize, limit: usize },
    #[error("unknown collection `{0}`")]
    CollectionNotFound(String),
    #[error("{collection}/{id} does not exist")]
    NotFound { collection: String, id: String },
    #[error("collection `{collection}` has no {kind} index `{index}`")]
    IndexNotFound {
        collection: String,
        kind: &'static str,
        index: String,
    },
    #[error("{0}")]
    InvalidCursor(String),
    #[error("no dead letter at stream sequence {0}")]
    DeadLetterNotFound(u64),
    /// Republishing an older event on its subject would let the stream's per-subject limit
    /// discard the newer one.
    #[error(
        "a newer event of this entity is in the stream (sequence {newer}); it supersedes this \
         dead letter: drop it instead"
    )]
    DeadLetterSuperseded { newer: u64 },
    /// NATS (the event stream holding dead letters) could not be reached.
    #[error("the event stream is unavailable; retry later")]
    StreamUnavailable,
    #[error("no route for {0}")]
    RouteNotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the body's id `{body}` differs from the path's id `{path}`")]
    IdMismatch { path: String, body: String },
    #[error(transparent)]
    InvalidDocument(#[from] DocumentError),
    #[error("precondition failed: the current version is {}", .current.map_or("none (absent)".to_owned(), |v| v.to_string()))]
    PreconditionFailed { current: Option<u64> },
    #[error("the entity changed concurrently; retry the request")]
    Conflict,
    #[error("the document store is unavailable; retry later")]
    StoreUnavailable,
    /// An operation that needs Redis itself (invalidation) could not reach it.
    #[error("the cache is unavailable; retry later")]
    CacheUnavailable,
    /// The operator routes are off (`ADMIN_ENABLED`); answered as if they did not exist.
    #[error("the admin routes are disabled; set ADMIN_ENABLED=true to serve them")]
    AdminDisabled,
    /// No `Authorization: Bearer` key, or one that is not configured. The reason never quotes
    /// the key.
    #[error("{0}")]
    Unauthorized(&'static str),
    #[error("this {held} key cannot do this: it needs a {needed} key")]
    Forbidden { held: KeyRole, needed: KeyRole },
    /// A write that timed out may still have been applied: its outcome is unknown.
    #[error("the request did not finish within {after_ms} ms; a write may have been applied")]
    Timeout { after_ms: u64 },
    #[error("the API is handling as many requests as it may; retry later")]
    Overloaded,
    #[error(
        "the store did not confirm the write; it may or may not have been applied: read the \
         entity before retrying"
    )]
    OutcomeUnknown,
    #[error("internal error")]
    Internal,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl ApiError {
    /// The stable, documented code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::InvalidId(_) => "invalid_id",
            ApiError::InvalidJson(_) => "invalid_json",
            ApiError::InvalidBody(_) => "invalid_body",
            ApiError::InvalidPrecondition(_) => "invalid_precondition",
            ApiError::InvalidQuery(_) => "invalid_query",
            ApiError::IndexNotFound { .. } => "index_not_found",
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::PayloadTooLarge { .. } => "payload_too_large",
            ApiError::EventTooLarge { .. } => "event_too_large",
            ApiError::CollectionNotFound(_) => "collection_not_found",
            ApiError::NotFound { .. } => "not_found",
            ApiError::InvalidCursor(_) => "invalid_cursor",
            ApiError::DeadLetterNotFound(_) => "dead_letter_not_found",
            ApiError::DeadLetterSuperseded { .. } => "dead_letter_superseded",
            ApiError::StreamUnavailable => "stream_unavailable",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::IdMismatch { .. } => "id_mismatch",
            ApiError::InvalidDocument(_) => "invalid_document",
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::Conflict => "conflict",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::CacheUnavailable => "cache_unavailable",
            ApiError::AdminDisabled => "admin_disabled",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden { .. } => "forbidden",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Overloaded => "overloaded",
            ApiError::OutcomeUnknown => "outcome_unknown",
            ApiError::Internal => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidId(_)
            | ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidPrecondition(_)
            | ApiError::InvalidQuery(_)
            | ApiError::InvalidCursor(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } | ApiError::EventTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::CollectionNotFound(_)
            | ApiError::NotFound { .. }
            | ApiError::IndexNotFound { .. }
            | ApiError::RouteNotFound(_)
            | ApiError::DeadLetterNotFound(_)
            | ApiError::AdminDisabled => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdMismatch { .. } | ApiError::InvalidDocument(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict | ApiError::DeadLetterSuperseded { .. } => StatusCode::CONFLICT,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden { .. } => StatusCode::FORBIDDEN,
            // 503, not 408: the server was too slow, not the client (408 says the client did
            // not finish sending its request in time).
            ApiError::StoreUnavailable
            | ApiError::CacheUnavailable
            | ApiError::StreamUnavailable
            | ApiError::Timeout { .. }
            | ApiError::Overloaded
            | ApiError::OutcomeUnknown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// Maps a store error shared by single-flight waiters.
    pub fn from_shared_store(err: &StoreError, collection: &str, id: &str) -> Self {
        match err {
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Invalid(err) => ApiError::InvalidQuery(err.to_string()),
            other => {
                tracing::error!(error = %other, collection, id, "store failure on a read");
                ApiError::Internal
            }
        }
    }

    /// Maps a store error for an entity; the store's own message is logged, not sent.
    pub fn from_store(err: StoreError, collection: &str, id: &str) -> Self {
        match err {
            StoreError::NotFound => ApiError::NotFound {
                collection: collection.to_owned(),
                id: id.to_owned(),
            },
            StoreError::PreconditionFailed { current } => ApiError::PreconditionFailed { current },
            StoreError::Invalid(err) => ApiError::InvalidDocument(err),
            StoreError::Conflict => ApiError::Conflict,
            StoreError::Unavailable(reason) => {
                tracing::warn!(%reason, "store unavailable");
                ApiError::StoreUnavailable
            }
            StoreError::Indeterminate(reason) => {
                tracing::warn!(%reason, collection, id, "write outcome unknown");
                ApiError::OutcomeUnknown
            }
            StoreError::Internal(reason) => {
                tracing::error!(%reason, collection, id, "store failure");
                ApiError::Internal
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let field = match &self {
            ApiError::InvalidDocument(err) => Some(err.field.as_str()),
            ApiError::IdMismatch { .. } => Some("id"),
            _ => None,
        };
        let body = ErrorBody {
            code: self.code(),
            message: self.to_string(),
            field,
        };
        let mut response = (self.status(), Json(body)).into_response();
        let headers = response.headers_mut();
        match self {
            ApiError::StoreUnavailable
            | ApiError::CacheUnavailable
            | ApiError::StreamUnavailable
            | ApiError::Overloaded => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
            }
            ApiError::Unauthorized(_) => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unconfirmed_write_is_not_reported_as_nothing_written() {
        let unknown = ApiError::from_store(StoreError::Indeterminate("x".into()), "places", "p1");
        assert_eq!(unknown.code(), "outcome_unknown");
        assert_eq!(unknown.status(), StatusCode::SERVICE_UNAVAILABLE);
        let unavailable = ApiError::from_store(StoreError::Unavailable("x".into()), "places", "p1");
        assert_eq!(unavailable.code(), "store_unavailable");
    }
}
