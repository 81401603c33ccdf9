//! `GET /v1/admin/generations`: each collection's cache generations as Redis holds them
//! (`<key prefix>cacheflow:gen:<collection>` and `...:writes`, docs/ARCHITECTURE.md "Cache
//! generations"): the one readers read, the others writers also write, and which of those a
//! rebuild is still building (newer than the active one; an older one is the previous generation,
//! kept while readers move off it).

use axum::extract::State;
use axum::Json;
use cacheflow_shared::cache::redis::generations::{read_state, GenerationState};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::openapi::ErrorBody;
use crate::routes::health::probe;
use crate::state::AppState;

use super::AdminEnabled;

#[derive(Serialize, ToSchema)]
pub struct GenerationsResponse {
    /// One entry per collection of the pipeline, in name order.
    collections: Vec<CollectionGenerations>,
}

#[derive(Serialize, ToSchema, Debug, PartialEq)]
pub struct CollectionGenerations {
    collection: String,
    /// The generation readers read (`""`: keys directly under the key prefix).
    active: String,
    /// Generations writers write besides the active one.
    writes: Vec<String>,
    /// Of `writes`, those newer than `active`: a rebuild building them.
    building: Vec<String>,
}

#[utoipa::path(
    get,
    path = "/v1/admin/generations",
    tag = "admin",
    responses(
        (status = 200, description = "Each collection's cache generations", body = GenerationsResponse),
        (status = 404, description = "The admin routes are disabled (`admin_disabled`)", body = ErrorBody),
        (status = 503, description = "Redis is unavailable (`cache_unavailable`); retry after `Retry-After`", body = ErrorBody),
    )
)]
pub async fn generations(
    _: AdminEnabled,
    State(state): State<AppState>,
) -> Result<Json<GenerationsResponse>, ApiError> {
    let key_prefix = state.pipeline_names().key_prefix.clone();
    let mut names: Vec<String> = state
        .collection_names()
        .into_iter()
        .map(str::to_owned)
        .collect();
    names.sort();
    let mut conn = state.redis();
    let read = probe(state.dependency_timeout(), async {
        let mut collections = Vec::with_capacity(names.len());
        for name in names {
            let generation = read_state(&mut conn, &key_prefix, &name)
                .await
                .map_err(|err| err.to_string())?;
            collections.push(describe(name, generation));
        }
        Ok(collections)
    });
    let collections = read.await.map_err(|reason| {
        tracing::warn!(%reason, "cannot read the cache generations");
        ApiError::CacheUnavailable
    })?;
    Ok(Json(GenerationsResponse { collections }))
}

fn describe(collection: String, state: GenerationState) -> CollectionGenerations {
    let active = number(&state.active);
    let building = state
        .extra
        .iter()
        .filter(|generation| number(generation) > active)
        .cloned()
        .collect();
    CollectionGenerations {
        collection,
        active: state.active,
        writes: state.extra,
        building,
    }
}

/// The number of a generation `gen:<collection>:<n>:`; 0 for the empty generation (and for a
/// name this project did not write, which then never counts as being built).
fn number(generation: &str) -> u64 {
    generation
        .trim_end_matches(':')
        .rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newer_write_generations_are_being_built_older_ones_are_previous() {
        let rebuilding = describe(
            "places".into(),
            GenerationState {
                active: "gen:places:2:".into(),
                extra: vec!["gen:places:3:".into(), "gen:places:1:".into()],
            },
        );
        assert_eq!(rebuilding.building, vec!["gen:places:3:".to_owned()]);
        assert_eq!(rebuilding.writes.len(), 2);
        let first = describe(
            "places".into(),
            GenerationState {
                active: String::new(),
                extra: vec!["gen:places:1:".into()],
            },
        );
        assert_eq!(first.building, vec!["gen:places:1:".to_owned()]);
        assert!(describe("places".into(), GenerationState::default())
            .building
            .is_empty());
    }
}
