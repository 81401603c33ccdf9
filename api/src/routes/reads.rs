//! The read API: entities (`GET /v1/{collection}/{id}`, batch `?ids=`, listing without it in
//! [`super::listing`]), and the structure
//! queries `near`, `top` and `fields`. Every answer says where it came from in `X-Cache`.

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use cacheflow_shared::document::Document;
use cacheflow_shared::pipeline::MAX_LATITUDE;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::error::ApiError;
use crate::extract::{check_ids, etag, EntityPath, IfNoneMatch, PathParams};
use crate::openapi::{DocumentSchema, ErrorBody};
use crate::read::consistency::MinVersion;
use crate::read::entity::Entity;
use crate::read::queries::{NearQuery, Ranked};
use crate::read::views::CollectionView;
use crate::read::CacheStatus;
use crate::state::AppState;
use cacheflow_shared::pipeline::Collection;

const DEFAULT_LIMIT: usize = 10;
const MAX_OFFSET: usize = 100_000;

#[utoipa::path(
    get,
    path = "/v1/{collection}/{id}",
    tag = "reads",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "Entity id"),
        ("If-None-Match" = Option<String>, Header, description = "ETags the client holds"),
        ("min_version" = Option<u64>, Query, description = "Read-your-writes: never answer an older version than this (a cached older copy is passed over for the store)"),
        ("Cacheflow-Token" = Option<String>, Header, description = "Read-your-writes: the token a write of this entity answered; like `min_version`"),
    ),
    responses(
        (status = 200, description = "The document; `X-Cache` says hit, miss or bypass", body = DocumentSchema, headers(("ETag" = String), ("X-Cache" = String))),
        (status = 304, description = "The client's copy is current"),
        (status = 400, description = "Invalid id, `min_version` or `Cacheflow-Token`", body = ErrorBody),
        (status = 404, description = "Unknown collection or absent entity", body = ErrorBody),
        (status = 503, description = "A miss needed the store, which is unavailable", body = ErrorBody),
    )
)]
pub async fn get_one(
    State(state): State<AppState>,
    EntityPath { collection, id }: EntityPath,
    IfNoneMatch(if_none): IfNoneMatch,
    MinVersion(min_version): MinVersion,
) -> Result<Response, ApiError> {
    let answer = state
        .reader()
        .get_one_at(&collection.name, &id, min_version)
        .await
        .map_err(|err| ApiError::from_shared_store(&err, &collection.name, &id))?;
    let mut response = match answer.entity {
        Entity::Found { json, version } => {
            if if_none_match(if_none.as_ref(), version) {
                let mut response = StatusCode::NOT_MODIFIED.into_response();
                set_etag(&mut response, version);
                response
            } else {
                let mut response =
                    ([(header::CONTENT_TYPE, "application/json")], json).into_response();
                set_etag(&mut response, version);
                response
            }
        }
        Entity::Absent => ApiError::NotFound {
            collection: collection.name.clone(),
            id,
        }
        .into_response(),
    };
    set_cache(&mut response, answer.cache);
    Ok(response)
}

#[derive(Serialize)]
struct BatchBody {
    items: Vec<BatchItemBody>,
    missing: Vec<String>,
}

#[derive(Serialize)]
struct BatchItemBody {
    id: String,
    found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    document: Option<Box<RawValue>>,
}

#[utoipa::path(
    get,
    path = "/v1/{collection}",
    tag = "reads",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("ids" = Option<String>, Query, description = "Comma-separated ids, at most `reads.max_batch_ids` (1,000): a batch read. Without it, the collection is listed a page at a time"),
        ("limit" = Option<usize>, Query, description = "Listing (no `ids`): documents per page, 1 to 1000, default 100"),
        ("cursor" = Option<String>, Query, description = "Listing (no `ids`): the `next_cursor` of the previous page"),
    ),
    responses(
        (status = 200, description = "With `ids`: `{ items: [{ id, found, document? }], missing: [id] }` in the order asked (with `X-Cache`). Without: a `Page` of live documents in id order, from the store", body = crate::routes::listing::Page, headers(("X-Cache" = String))),
        (status = 400, description = "Too many ids, an invalid id, a bad `limit` (`invalid_query`) or a cursor this API did not return (`invalid_cursor`)", body = ErrorBody),
        (status = 404, description = "Unknown collection", body = ErrorBody),
        (status = 503, description = "Misses needed the store, which is unavailable", body = ErrorBody),
    )
)]
pub async fn get_many(
    State(state): State<AppState>,
    PathParams(collection): PathParams<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let collection = state
        .collection(&collection)
        .ok_or(ApiError::CollectionNotFound(collection))?;
    let Some(ids_param) = query.get("ids") else {
        return Ok(
            crate::routes::listing::list(&state, &collection.name, &query)
                .await?
                .into_response(),
        );
    };
    let ids: Vec<String> = ids_param.split(',').map(str::to_owned).collect();
    let max = state.read_settings().max_batch_ids;
    if ids.len() > max {
        return Err(ApiError::InvalidQuery(format!(
            "at most {max} ids per request, got {}",
            ids.len()
        )));
    }
    check_ids(ids.iter().map(String::as_str))?;
    let (items, cache) = state
        .reader()
        .get_many(&collection.name, &ids)
        .await
        .map_err(|err| ApiError::from_shared_store(&err, &collection.name, ""))?;
    let missing = items
        .iter()
        .filter(|i| i.document.is_none())
        .map(|i| i.id.clone())
        .collect();
    let items = items
        .into_iter()
        .map(|i| BatchItemBody {
            id: i.id,
            found: i.document.is_some(),
            document: i.document,
        })
        .collect();
    let mut response = Json(BatchBody { items, missing }).into_response();
    set_cache(&mut response, cache);
    Ok(response)
}

#[derive(Serialize)]
struct NearItem {
    id: String,
    distance_m: f64,
    document: Box<RawValue>,
}

#[derive(Serialize)]
struct TopItem {
    id: String,
    score: f64,
    document: Box<RawValue>,
}

#[derive(Serialize)]
struct Items<T> {
    items: Vec<T>,
}

#[utoipa::path(
    get,
    path = "/v1/{collection}/near/{index}",
    tag = "queries",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("index" = String, Path, description = "A geo projection of the collection"),
        ("lon" = f64, Query, description = "Longitude, [-180, 180]"),
        ("lat" = f64, Query, description = "Latitude, [-85.05112878, 85.05112878]"),
        ("radius_m" = f64, Query, description = "Radius in metres, > 0 and at most `reads.max_radius_m`"),
        ("limit" = Option<usize>, Query, description = "1 to `reads.max_limit` (1,000); default 10"),
    ),
    responses(
        (status = 200, description = "`{ items: [{ id, distance_m, document }] }`, nearest first", body = Object, headers(("X-Cache" = String))),
        (status = 400, description = "A parameter is missing or out of range", body = ErrorBody),
        (status = 404, description = "Unknown collection or index", body = ErrorBody),
        (status = 503, description = "Redis and the store are both unavailable", body = ErrorBody),
    )
)]
pub async fn near(
    State(state): State<AppState>,
    PathParams((collection, index)): PathParams<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (collection, view) = collection_view(&state, collection)?;
    let geo = view
        .geos
        .get(&index)
        .ok_or_else(|| ApiError::IndexNotFound {
            collection: collection.name.clone(),
            kind: "geo",
            index: index.clone(),
        })?;
    let settings = state.read_settings();
    let lon =
        number(&query, "lon")?.ok_or_else(|| ApiError::InvalidQuery("`lon` is required".into()))?;
    let lat =
        number(&query, "lat")?.ok_or_else(|| ApiError::InvalidQuery("`lat` is required".into()))?;
    let radius_m = number(&query, "radius_m")?
        .ok_or_else(|| ApiError::InvalidQuery("`radius_m` is required".into()))?;
    if !(-180.0..=180.0).contains(&lon) {
        return Err(ApiError::InvalidQuery(format!(
            "`lon` must be within [-180, 180], got {lon}"
        )));
    }
    if !(-MAX_LATITUDE..=MAX_LATITUDE).contains(&lat) {
        return Err(ApiError::InvalidQuery(format!(
            "`lat` must be within [-{MAX_LATITUDE}, {MAX_LATITUDE}], got {lat}"
        )));
    }
    if !(radius_m > 0.0 && radius_m <= settings.max_radius_m) {
        return Err(ApiError::InvalidQuery(format!(
            "`radius_m` must be greater than 0 and at most {}, got {radius_m}",
            settings.max_radius_m
        )));
    }
    let limit = limit(&query, settings.max_limit)?;
    let (ranked, cache) = state
        .reader()
        .near(
            &collection.name,
            geo,
            &NearQuery {
                lon,
                lat,
                radius_m,
                limit,
            },
        )
        .await
        .map_err(|err| ApiError::from_shared_store(&err, &collection.name, ""))?;
    let items = ranked
        .into_iter()
        .map(
            |Ranked {
                 id,
                 value,
                 document,
             }| NearItem {
                id,
                distance_m: value,
                document,
            },
        )
        .collect();
    Ok(with_cache(Json(Items { items }).into_response(), cache))
}

#[utoipa::path(
    get,
    path = "/v1/{collection}/top/{index}",
    tag = "queries",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("index" = String, Path, description = "A sorted-set projection; its key template's fields (e.g. `category`) are further query parameters"),
        ("limit" = Option<usize>, Query, description = "1 to `reads.max_limit` (1,000); default 10"),
        ("offset" = Option<usize>, Query, description = "0 to 100,000; default 0"),
    ),
    responses(
        (status = 200, description = "`{ items: [{ id, score, document }] }`, highest score first", body = Object, headers(("X-Cache" = String))),
        (status = 400, description = "A parameter is missing or out of range", body = ErrorBody),
        (status = 404, description = "Unknown collection or index", body = ErrorBody),
        (status = 503, description = "Redis and the store are both unavailable", body = ErrorBody),
    )
)]
pub async fn top(
    State(state): State<AppState>,
    PathParams((collection, index)): PathParams<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let (collection, view) = collection_view(&state, collection)?;
    let sorted = view
        .sorted_sets
        .get(&index)
        .ok_or_else(|| ApiError::IndexNotFound {
            collection: collection.name.clone(),
            kind: "sorted_set",
            index: index.clone(),
        })?;
    let limit = limit(&query, state.read_settings().max_limit)?;
    let offset = match query.get("offset") {
        None => 0,
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|o| *o <= MAX_OFFSET)
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "`offset` must be an integer from 0 to {MAX_OFFSET}, got `{text}`"
                ))
            })?,
    };
    // The key template's fields are query parameters, typed as their declared fields.
    let mut params = Document::new();
    for field in sorted.key.fields() {
        let text = query.get(field).ok_or_else(|| {
            ApiError::InvalidQuery(format!(
                "`{field}` is required: index `{index}` is keyed by {}",
                sorted.key
            ))
        })?;
        let value = match view.field_types.get(field) {
            Some(cacheflow_shared::pipeline::FieldType::Integer) => {
                text.parse::<i64>().map(Value::from).map_err(|_| {
                    ApiError::InvalidQuery(format!("`{field}` must be an integer, got `{text}`"))
                })?
            }
            _ => Value::String(text.clone()),
        };
        params.insert(field.to_owned(), value);
    }
    if let Err(err) = sorted.key.render("", &params) {
        return Err(ApiError::InvalidQuery(format!(
            "`{}` {}",
            err.field, err.reason
        )));
    }
    let (ranked, cache) = state
        .reader()
        .top(&collection.name, sorted, &params, offset, limit)
        .await
        .map_err(|err| ApiError::from_shared_store(&err, &collection.name, ""))?;
    let items = ranked
        .into_iter()
        .map(
            |Ranked {
                 id,
                 value,
                 document,
             }| TopItem {
                id,
                score: value,
                document,
            },
        )
        .collect();
    Ok(with_cache(Json(Items { items }).into_response(), cache))
}

#[utoipa::path(
    get,
    path = "/v1/{collection}/{id}/fields",
    tag = "queries",
    params(
        ("collection" = String, Path, description = "A collection of the pipeline"),
        ("id" = String, Path, description = "Entity id"),
    ),
    responses(
        (status = 200, description = "The hash projection as a JSON object", body = Object, headers(("X-Cache" = String))),
        (status = 400, description = "Invalid id", body = ErrorBody),
        (status = 404, description = "Unknown collection, no hash projection, or absent entity", body = ErrorBody),
        (status = 503, description = "Redis and the store are both unavailable", body = ErrorBody),
    )
)]
pub async fn fields(
    State(state): State<AppState>,
    PathParams((collection, id)): PathParams<(String, String)>,
) -> Result<Response, ApiError> {
    let collection = state
        .collection(&collection)
        .ok_or(ApiError::CollectionNotFound(collection))?;
    check_ids([id.as_str()])?;
    let view = state
        .reader()
        .views()
        .get(&collection.name)
        .ok_or(ApiError::Internal)?;
    let (template, listed) = view.hash.as_ref().ok_or_else(|| ApiError::IndexNotFound {
        collection: collection.name.clone(),
        kind: "hash",
        index: "fields".into(),
    })?;
    let key = template
        .render(&id, &Document::new())
        .map_err(|_| ApiError::Internal)?;
    let (object, cache) = state
        .reader()
        .fields(&collection.name, &id, &key, listed, &view.field_types)
        .await
        .map_err(|err| ApiError::from_shared_store(&err, &collection.name, &id))?;
    let response = match object {
        Some(object) => Json(Value::Object(object)).into_response(),
        None => ApiError::NotFound {
            collection: collection.name.clone(),
            id,
        }
        .into_response(),
    };
    Ok(with_cache(response, cache))
}

fn number(query: &HashMap<String, String>, name: &str) -> Result<Option<f64>, ApiError> {
    match query.get(name) {
        None => Ok(None),
        Some(text) => text
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .map(Some)
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!("`{name}` must be a number, got `{text}`"))
            }),
    }
}

fn limit(query: &HashMap<String, String>, max: usize) -> Result<usize, ApiError> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT.min(max)),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=max).contains(l))
            .ok_or_else(|| {
                ApiError::InvalidQuery(format!(
                    "`limit` must be an integer from 1 to {max}, got `{text}`"
                ))
            }),
    }
}

/// `If-None-Match` holds (the client's copy is current) for `*` or any listed ETag, weak or
/// strong (weak comparison, as RFC 9110 prescribes for this header).
fn if_none_match(header: Option<&HeaderValue>, version: u64) -> bool {
    let Some(value) = header.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let current = etag(version);
    value
        .split(',')
        .map(|tag| tag.trim().trim_start_matches("W/"))
        .any(|tag| tag == "*" || tag == current)
}

fn set_etag(response: &mut Response, version: u64) {
    let value = HeaderValue::from_str(&etag(version)).expect("a quoted number is a valid header");
    response.headers_mut().insert(header::ETAG, value);
}

fn set_cache(response: &mut Response, cache: CacheStatus) {
    response
        .headers_mut()
        .insert("x-cache", HeaderValue::from_static(cache.as_str()));
}

fn with_cache(mut response: Response, cache: CacheStatus) -> Response {
    set_cache(&mut response, cache);
    response
}

/// The collection and its read views; 404 for an unknown collection.
fn collection_view(
    state: &AppState,
    name: String,
) -> Result<(std::sync::Arc<Collection>, &CollectionView), ApiError> {
    let collection = state
        .collection(&name)
        .ok_or(ApiError::CollectionNotFound(name))?;
    let view = state
        .reader()
        .views()
        .get(&collection.name)
        .ok_or(ApiError::Internal)?;
    Ok((collection, view))
}
