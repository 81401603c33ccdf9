//! `GET /v1/{collection}/{id}/projections`: which Redis keys hold an entity, as the worker
//! recorded them in the entity's meta hash (`<prefix>cacheflow:meta:<collection>:<id>`: the
//! cached version, whether it is a tombstone, the entity keys and the index keys it occupies) in
//! the generation readers read. A read route like the others (the `reader` role when read keys
//! are required): key names follow the public pipeline declaration, nothing more.

use axum::extract::State;
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::EntityPath;
use crate::openapi::ErrorBody;
use crate::routes::health::probe;
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct ProjectionsResponse {
    /// The meta hash read.
    meta_key: String,
    /// The version Redis holds; `null` when Redis holds nothing of the entity.
    cached_version: Option<u64>,
    /// Whether Redis holds a tombstone (deleted) at that version.
    tombstone: bool,
    /// Full keys of the entity's own projections (strings, hashes).
    keys: Vec<String>,
    /// Full keys of the sorted-set and geo indexes it is a member of.
    indexes: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/{collection}/{id}/projections",
    tag = "reads",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "The entity id"),
    ),
    responses(
        (status = 200, description = "The Redis keys holding the entity", body = ProjectionsResponse),
        (status = 400, description = "An invalid id", body = ErrorBody),
        (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 503, description = "Redis is unavailable (`cache_unavailable`)", body = ErrorBody),
    )
)]
pub async fn projections(
    State(state): State<AppState>,
    entity: EntityPath,
) -> Result<Json<ProjectionsResponse>, ApiError> {
    let meta_key = state
        .reader()
        .layout(&entity.collection.name)
        .meta(&entity.collection.name, &entity.id);
    let mut conn = state.redis();
    let read = probe(state.dependency_timeout(), async {
        redis::cmd("HMGET")
            .arg(&meta_key)
            .arg(&["v", "d", "keys", "idx"])
            .query_async::<Vec<Option<String>>>(&mut conn)
            .await
            .map_err(|err| err.to_string())
    });
    let fields = read.await.map_err(|reason| {
        tracing::warn!(%reason, "cannot read an entity's meta: redis unavailable");
        ApiError::CacheUnavailable
    })?;
    let list = |value: &Option<String>| -> Vec<String> {
        value
            .as_deref()
            .and_then(|json| serde_json::from_str(json).ok())
            .unwrap_or_default()
    };
    Ok(Json(ProjectionsResponse {
        cached_version: fields[0].as_deref().and_then(|v| v.parse().ok()),
        tombstone: fields[1].as_deref() == Some("1"),
        keys: list(&fields[2]),
        indexes: list(&fields[3]),
        meta_key,
    }))
}
