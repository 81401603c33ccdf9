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
use crate::extract::{etag, write_precondition, EntityPath, JsonObject};
use crate::state::AppState;

pub async fn put(
    State(state): State<AppState>,
    EntityPath { collection, id }: EntityPath,
    headers: HeaderMap,
    JsonObject(document): JsonObject,
) -> Result<Response, ApiError> {
    let precondition = write_precondition(&headers)?;
    check_body_id(&document, &id)?;
    collection.validate(&document)?;
    let outcome = state
        .store()
        .put(&collection.name, &id, document, precondition)
        .await
        .map_err(|err| ApiError::from_store(err, &collection.name, &id))?;
    state.wake_relay();
    Ok(written(&collection.name, &id, outcome))
}

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
    let validator = validator(collection.clone(), id.clone());
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
    let mut response = StatusCode::NO_CONTENT.into_response();
    set_etag(&mut response, outcome.version);
    Ok(response)
}

/// The merged document of a PATCH is only known inside the store's read-modify-write, so the
/// checks travel there as a closure.
fn validator(collection: Arc<Collection>, id: String) -> Validator {
    Arc::new(move |document: &Document| {
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

fn written(collection: &str, id: &str, outcome: WriteOutcome) -> Response {
    let status = if outcome.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    let mut response = (status, Json(outcome.document)).into_response();
    set_etag(&mut response, outcome.version);
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
