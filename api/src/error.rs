//! The API's one error type. Every failure becomes `{ "code", "message" }` (plus `field` when a
//! document field is at fault) with a stable code and status; internal details are logged, never
//! sent.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheflow_shared::pipeline::DocumentError;
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
            ApiError::CollectionNotFound(_) => "collection_not_found",
            ApiError::NotFound { .. } => "not_found",
            ApiError::RouteNotFound(_) => "route_not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::IdMismatch { .. } => "id_mismatch",
            ApiError::InvalidDocument(_) => "invalid_document",
            ApiError::PreconditionFailed { .. } => "precondition_failed",
            ApiError::Conflict => "conflict",
            ApiError::StoreUnavailable => "store_unavailable",
            ApiError::Internal => "internal",
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::InvalidId(_)
            | ApiError::InvalidJson(_)
            | ApiError::InvalidBody(_)
            | ApiError::InvalidPrecondition(_)
            | ApiError::InvalidQuery(_) => StatusCode::BAD_REQUEST,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::CollectionNotFound(_)
            | ApiError::NotFound { .. }
            | ApiError::IndexNotFound { .. }
            | ApiError::RouteNotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::IdMismatch { .. } | ApiError::InvalidDocument(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            ApiError::Conflict => StatusCode::CONFLICT,
            ApiError::StoreUnavailable => StatusCode::SERVICE_UNAVAILABLE,
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
        if matches!(self, ApiError::StoreUnavailable) {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}
