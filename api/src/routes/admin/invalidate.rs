//! `POST /v1/admin/invalidate`: removes cache entries of listed entities or of a whole
//! collection; the next read repopulates them.

use axum::extract::State;
use axum::Json;
use serde::{Deserialize, Deserializer, Serialize};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::{check_ids, JsonObject};
use crate::openapi::ErrorBody;
use crate::read::invalidate::InvalidateError;
use crate::state::AppState;

use super::AdminEnabled;

/// Which entities to invalidate: the listed `ids`, or, without `ids`, the whole collection.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidateRequest {
    /// A collection of the pipeline.
    collection: String,
    /// 1 to `reads.max_batch_ids` (1,000) ids; leave the field out to invalidate the whole
    /// collection.
    #[serde(default, deserialize_with = "present")]
    #[schema(nullable = false)]
    ids: Option<Vec<String>>,
}

/// `ids: null` is a mistake, not a request to clear the whole collection: only a missing field
/// means that.
fn present<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Vec<String>>, D::Error> {
    Vec::deserialize(deserializer).map(Some)
}

#[derive(Serialize, ToSchema)]
pub struct InvalidateResponse {
    collection: String,
    /// Entities whose entries were cleared: the distinct ids given, or every entity the
    /// collection's active generation knew.
    invalidated: usize,
}

#[utoipa::path(
    post,
    path = "/v1/admin/invalidate",
    tag = "admin",
    request_body(content = InvalidateRequest, description = "`{ collection, ids? }`", content_type = "application/json"),
    responses(
        (status = 200, description = "Cleared from every generation written; versions are kept, the next read repopulates", body = InvalidateResponse),
        (status = 400, description = "Invalid JSON, a body of the wrong shape (also an empty or too long `ids`), or an invalid id", body = ErrorBody),
        (status = 404, description = "Unknown collection, or the admin routes are disabled (`admin_disabled`)", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "Redis is unavailable; retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn invalidate(
    _: AdminEnabled,
    State(state): State<AppState>,
    JsonObject(body): JsonObject,
) -> Result<Json<InvalidateResponse>, ApiError> {
    let request: InvalidateRequest = serde_json::from_value(body.into()).map_err(|err| {
        ApiError::InvalidBody(format!("the body must be {{ collection, ids? }}: {err}"))
    })?;
    let collection = state
        .collection(&request.collection)
        .ok_or(ApiError::CollectionNotFound(request.collection))?;
    let reader = state.reader();
    let invalidated = match request.ids {
        Some(ids) => {
            let ids = checked_ids(ids, state.read_settings().max_batch_ids)?;
            reader.invalidate(&collection.name, &ids).await
        }
        None => reader.invalidate_collection(&collection.name).await,
    }
    .map_err(|err| match err {
        InvalidateError::Unavailable(reason) => {
            tracing::warn!(%reason, "cannot invalidate: redis unavailable");
            ApiError::CacheUnavailable
        }
        InvalidateError::Failed(err) => {
            tracing::error!(%err, collection = %collection.name, "invalidation failed");
            ApiError::Internal
        }
    })?;
    tracing::info!(collection = %collection.name, invalidated, "cache entries invalidated");
    Ok(Json(InvalidateResponse {
        collection: collection.name.clone(),
        invalidated,
    }))
}

/// 1 to `max` valid ids, without repeats (so `invalidated` counts entities, not mentions).
fn checked_ids(mut ids: Vec<String>, max: usize) -> Result<Vec<String>, ApiError> {
    if ids.is_empty() {
        return Err(ApiError::InvalidBody(
            "`ids` is empty; leave it out to invalidate the whole collection".into(),
        ));
    }
    if ids.len() > max {
        return Err(ApiError::InvalidBody(format!(
            "at most {max} ids per request, got {}",
            ids.len()
        )));
    }
    check_ids(ids.iter().map(String::as_str))?;
    ids.sort_unstable();
    ids.dedup();
    Ok(ids)
}
