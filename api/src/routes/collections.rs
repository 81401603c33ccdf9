//! Collection discovery: `GET /v1/collections` and `GET /v1/collections/{collection}` describe
//! what the pipeline declares and which read routes serve it, so a client (or a newcomer with
//! curl) finds the index names instead of guessing them.
//!
//! The description is derived from the same [`Views`](crate::read::views::Views) the read routes
//! use, so it lists exactly the routes that answer: e.g. only the hash projection that
//! `/{id}/fields` serves.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::Json;
use cacheflow_shared::pipeline::{Collection, ProjectionKind};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::extract::PathParams;
use crate::openapi::ErrorBody;
use crate::read::views::CollectionView;
use crate::state::AppState;

/// The query parameters of every `near` query.
const NEAR_PARAMS: [&str; 4] = ["lon", "lat", "radius_m", "limit"];
/// The query parameters of every `top` query, before its key variables.
const TOP_PARAMS: [&str; 2] = ["limit", "offset"];

/// A collection of the pipeline and the routes that read it.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionBody {
    pub name: String,
    /// Declared field types by field name (`string`, `number`, `integer`, `boolean`,
    /// `geo_point`, `object`, `array`); documents may carry other fields too.
    pub fields: BTreeMap<String, String>,
    /// The entity read, e.g. `/v1/places/{id}`.
    pub read_path: String,
    /// The `near` (geo) and `top` (sorted-set) indexes, in projection-name order.
    pub indexes: Vec<IndexBody>,
    /// The hash projection served at `/{id}/fields`, if any.
    pub hashes: Vec<HashBody>,
}

/// One queryable index.
#[derive(Debug, Serialize, ToSchema)]
pub struct IndexBody {
    pub name: String,
    /// `geo` or `sorted_set`.
    pub kind: &'static str,
    /// The query route, e.g. `/v1/places/near/nearby`.
    pub path: String,
    /// The numeric field a sorted set is scored by (sorted sets only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<String>,
    /// Every query parameter the route takes, `key_vars` included.
    pub params: Vec<String>,
    /// The key-template variables the query needs as query parameters, e.g. `category`.
    pub key_vars: Vec<String>,
}

/// A hash projection read at `path`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HashBody {
    pub name: String,
    pub path: String,
    /// The fields the hash holds.
    pub fields: Vec<String>,
}

/// `{ "collections": [...] }`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CollectionsBody {
    pub collections: Vec<CollectionBody>,
}

#[utoipa::path(
    get,
    path = "/v1/collections",
    tag = "discovery",
    responses(
        (status = 200, description = "Every collection of the pipeline, in name order, with its read routes", body = CollectionsBody),
    )
)]
pub async fn list(State(state): State<AppState>) -> Result<Json<CollectionsBody>, ApiError> {
    let collections = state
        .collections()
        .iter()
        .map(|collection| describe(&state, collection))
        .collect::<Result<_, _>>()?;
    Ok(Json(CollectionsBody { collections }))
}

#[utoipa::path(
    get,
    path = "/v1/collections/{collection}",
    tag = "discovery",
    params(("collection" = String, Path, description = "A collection of the pipeline")),
    responses(
        (status = 200, description = "The collection's fields and read routes", body = CollectionBody),
        (status = 404, description = "`collection_not_found`", body = ErrorBody),
    )
)]
pub async fn show(
    State(state): State<AppState>,
    PathParams(name): PathParams<String>,
) -> Result<Json<CollectionBody>, ApiError> {
    let collection = state
        .collection(&name)
        .ok_or(ApiError::CollectionNotFound(name))?;
    describe(&state, &collection).map(Json)
}

fn describe(state: &AppState, collection: &Collection) -> Result<CollectionBody, ApiError> {
    // Every collection of the state has a view: both are built from the same pipeline.
    let view = state
        .reader()
        .views()
        .get(&collection.name)
        .ok_or(ApiError::Internal)?;
    Ok(describe_with(collection, view))
}

/// The description of `collection`, listing only what `view` (what the read routes use) serves.
fn describe_with(collection: &Collection, view: &CollectionView) -> CollectionBody {
    let name = &collection.name;
    let mut indexes = Vec::new();
    let mut hashes = Vec::new();
    for projection in &collection.projections {
        let key_vars: Vec<String> = projection
            .kind
            .key()
            .fields()
            .filter(|field| *field != "id")
            .map(str::to_owned)
            .collect();
        match &projection.kind {
            ProjectionKind::Geo { .. } if view.geos.contains_key(&projection.name) => {
                indexes.push(IndexBody {
                    name: projection.name.clone(),
                    kind: projection.kind.kind_name(),
                    path: format!("/v1/{name}/near/{}", projection.name),
                    score: None,
                    params: params(&NEAR_PARAMS, &key_vars),
                    key_vars,
                });
            }
            ProjectionKind::SortedSet { score, .. }
                if view.sorted_sets.contains_key(&projection.name) =>
            {
                indexes.push(IndexBody {
                    name: projection.name.clone(),
                    kind: projection.kind.kind_name(),
                    path: format!("/v1/{name}/top/{}", projection.name),
                    score: Some(score.clone()),
                    params: params(&TOP_PARAMS, &key_vars),
                    key_vars,
                });
            }
            ProjectionKind::Hash { key, fields }
                if view.hash.as_ref().is_some_and(|(served, _)| served == key) =>
            {
                hashes.push(HashBody {
                    name: projection.name.clone(),
                    path: format!("/v1/{name}/{{id}}/fields"),
                    fields: fields.clone(),
                });
            }
            _ => {}
        }
    }
    CollectionBody {
        name: name.clone(),
        fields: collection
            .fields
            .iter()
            .map(|(field, kind)| (field.clone(), kind.name().to_owned()))
            .collect(),
        read_path: format!("/v1/{name}/{{id}}"),
        indexes,
        hashes,
    }
}

fn params(fixed: &[&str], key_vars: &[String]) -> Vec<String> {
    fixed
        .iter()
        .map(|p| (*p).to_owned())
        .chain(key_vars.iter().cloned())
        .collect()
}
