//! The write API: `PUT` creates or replaces, `PATCH` merges (RFC 7396), `DELETE` leaves a
//! tombstone. Each write commits the document and its event atomically, then wakes the relay.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheflow_shared::document::{Document, ID_FIELD};
use cacheflow_shared::pipeline::Collection;
use cacheflow_shared::store::{Validator, WriteOutcome};
use serde_json::Value;

use crate::error::ApiError;
use crate::event_size;
use crate::extract::{etag, write_precondition, EntityPath, JsonObject};
use crate::openapi::{DocumentSchema, ErrorBody};
use crate::read::consistency::set_token;
use crate::state::AppState;

#[utoipa::path(
    put,
    path = "/v1/{collection}/{id}",
    tag = "writes",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "Entity id, `[A-Za-z0-9_-]{1,128}`"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` or `*`"),
        ("If-None-Match" = Option<String>, Header, description = "`*`: create only"),
    ),
    request_body(content = DocumentSchema, description = "The whole document", content_type = "application/json"),
    responses(
        (status = 201, description = "Created", body = DocumentSchema, headers(("ETag" = String), ("Location" = String), ("Cacheflow-Token" = String))),
        (status = 200, description = "Replaced", body = DocumentSchema, headers(("ETag" = String), ("Cacheflow-Token" = String))),
        (status = 400, description = "Invalid id, JSON, body or precondition header", body = ErrorBody),
        (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 412, description = "If-Match / If-None-Match did not hold", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
        (status = 413, description = "Body over `limits.max_body_bytes` (`payload_too_large`), or its event over `limits.max_event_bytes` (`event_too_large`)", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "A field breaks what a projection needs, or the body's id differs from the path's", body = ErrorBody),
    )
)]
pub async fn put(
    State(state): State<AppState>,
    EntityPath { collection, id }: EntityPath,
    headers: HeaderMap,
    JsonObject(document): JsonObject,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    check_body_id(&document, &id)?;
    collection.validate(&document)?;
    let limit = state.max_event_bytes();
    event_size::check(&collection.name, &id, &document, limit)
        .map_err(|size| ApiError::EventTooLarge { size, limit })?;
    let outcome = state
        .store()
        .put(&collection.name, &id, document, precondition)
        .await
        .map_err(|err| ApiError::from_store(err, &collection.name, &id))?;
    state.wake_relay();
    Ok(written(&collection.name, &id, outcome))
}

#[utoipa::path(
    patch,
    path = "/v1/{collection}/{id}",
    tag = "writes",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "Entity id, `[A-Za-z0-9_-]{1,128}`"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` or `*`"),
    ),
    request_body(content = Object, description = "An RFC 7396 JSON merge patch", content_type = "application/merge-patch+json"),
    responses(
        (status = 200, description = "Merged", body = DocumentSchema, headers(("ETag" = String), ("Cacheflow-Token" = String))),
        (status = 400, description = "Invalid id, JSON, body or precondition header", body = ErrorBody),
        (status = 404, description = "Unknown collection, or the entity is absent", body = ErrorBody),
        (status = 412, description = "If-Match / If-None-Match did not hold", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
        (status = 409, description = "Concurrent writers kept changing the entity; retry", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 422, description = "The merged document breaks what a projection needs, or its event would exceed `limits.max_event_bytes`", body = ErrorBody),
    )
)]
pub async fn patch(
    State(state): State<AppState>,
    EntityPath { collection, id }: EntityPath,
    headers: HeaderMap,
    JsonObject(patch): JsonObject,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    // A patch may repeat the id, or null it (the server sets it again); it may not change it.
    if let Some(Value::String(_)) = patch.get(ID_FIELD) {
        check_body_id(&patch, &id)?;
    }
    let validator = validator(collection.clone(), id.clone(), state.max_event_bytes());
    let outcome = state
        .store()
        .patch(
            &collection.name,
            &id,
            Value::Object(patch),
            precondition,
            validator,
        )
        .await
        .map_err(|err| ApiError::from_store(err, &collection.name, &id))?;
    state.wake_relay();
    Ok(written(&collection.name, &id, outcome))
}

#[utoipa::path(
    delete,
    path = "/v1/{collection}/{id}",
    tag = "writes",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "Entity id, `[A-Za-z0-9_-]{1,128}`"),
        ("If-Match" = Option<String>, Header, description = "`\"<version>\"` or `*`"),
    ),
    responses(
        (status = 204, description = "Deleted; the ETag is the tombstone's version", headers(("ETag" = String), ("Cacheflow-Token" = String))),
        (status = 400, description = "Invalid id, JSON, body or precondition header", body = ErrorBody),
        (status = 404, description = "Unknown collection, or the entity is absent", body = ErrorBody),
        (status = 412, description = "If-Match / If-None-Match did not hold", body = ErrorBody),
        (status = 503, description = "The store is unavailable; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    EntityPath { collection, id }: EntityPath,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    let outcome = state
        .store()
        .delete(&collection.name, &id, precondition)
        .await
        .map_err(|err| ApiError::from_store(err, &collection.name, &id))?;
    state.wake_relay();
    log_commit(&outcome);
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_etag(&mut response, outcome.version);
    set_token(&mut response, outcome.version);
    Ok(response)
}

/// The merged document of a PATCH is only known inside the store's read-modify-write, so the
/// checks travel there as a closure.
fn validator(collection: Arc<Collection>, id: String, max_event_bytes: usize) -> Validator {
    Arc::new(move |document: &Document| {
        if let Err(size) = event_size::check(&collection.name, &id, document, max_event_bytes) {
            return Err(cacheflow_shared::pipeline::DocumentError::new(
                "document",
                format!(
                    "the merged document's event would take about {size} bytes; the event \
                     stream accepts at most {max_event_bytes}"
                ),
            ));
        }
        if let Some(value) = document.get(ID_FIELD).filter(|v| !v.is_null()) {
            if value.as_str() != Some(id.as_str()) {
                return Err(cacheflow_shared::pipeline::DocumentError::new(
                    ID_FIELD,
                    format!("must equal the path's id `{id}`"),
                ));
            }
        }
        collection.validate(document)
    })
}

fn check_body_id(document: &Document, path_id: &str) -> Result<(), ApiError> {
    match document.get(ID_FIELD) {
        None | Some(Value::Null) => Ok(()),
        Some(Value::String(body)) if body == path_id => Ok(()),
        Some(other) => Err(ApiError::IdMismatch {
            path: path_id.to_owned(),
            body: match other {
                Value::String(s) => s.clone(),
                v => v.to_string(),
            },
        }),
    }
}

/// Logs the commit with the event's trace id (the event id), which the worker logs again when it
/// applies the event: the request id of the enclosing span links the two.
fn log_commit(outcome: &WriteOutcome) {
    tracing::debug!(
        collection = %outcome.event.collection,
        id = %outcome.event.id,
        version = outcome.version,
        trace_id = %outcome.event.event_id.simple(),
        "write committed"
    );
}

fn written(collection: &str, id: &str, outcome: WriteOutcome) -> Response {
    log_commit(&outcome);
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(outcome.document)).into_response();
    set_etag(&mut response, outcome.version);
    set_token(&mut response, outcome.version);
    if outcome.created {
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/{collection}/{id}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    response
}

fn set_etag(response: &mut Response, version: u64) {
    let value = HeaderValue::from_str(&etag(version)).expect("a quoted number is a valid header");
    response.headers_mut().insert(header::ETAG, value);
}
