//! Structure queries served from the Redis indexes (GEOSEARCH, sorted sets, hashes), with the
//! documents of a result list fetched in one MGET. When Redis is unreachable the store answers
//! the same query (`X-Cache: bypass`).

use std::sync::Arc;

use cacheflow_shared::cache::ABSENT_MARKER;
use cacheflow_shared::document::Document;
use cacheflow_shared::pipeline::FieldType;
use cacheflow_shared::store::{Scored, StoreError};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use super::cache_counters::CacheResult;
use super::entity::raw;
use super::views::{GeoView, SortedSetView};
use super::{CacheStatus, Reader};

/// One ranked result: the entity, the number it was ranked by, its document.
#[derive(Debug)]
pub struct Ranked {
    pub id: String,
    pub value: f64,
    pub document: Box<RawValue>,
}

pub struct NearQuery {
    pub lon: f64,
    pub lat: f64,
    pub radius_m: f64,
    pub limit: usize,
}

impl Reader {
    pub async fn near(
        self: &Arc<Self>,
        collection: &str,
        index: &GeoView,
        query: &NearQuery,
    ) -> Result<(Vec<Ranked>, CacheStatus), Arc<StoreError>> {
        let key = match index.key.render("", &Document::new()) {
            Ok(key) => self.layout(collection).key(&key),
            Err(_) => unreachable!("a geo index key has no fields that need a document"),
        };
        match self
            .redis
            .geosearch(&key, query.lon, query.lat, query.radius_m, query.limit)
            .await
        {
            Ok(members) => self.with_documents(collection, members).await,
            Err(err) => {
                tracing::debug!(%err, "redis unavailable; nearby query from the store");
                self.counters.count(collection, CacheResult::Bypass);
                let found = self
                    .store
                    .near(
                        collection,
                        &index.field,
                        query.lon,
                        query.lat,
                        query.radius_m,
                        query.limit,
                    )
                    .await
                    .map_err(Arc::new)?;
                Ok((ranked(found), CacheStatus::Bypass))
            }
        }
    }

    /// `params` are the template's fields (e.g. `category = cafe`), already checked.
    pub async fn top(
        self: &Arc<Self>,
        collection: &str,
        index: &SortedSetView,
        params: &Document,
        offset: usize,
        limit: usize,
    ) -> Result<(Vec<Ranked>, CacheStatus), Arc<StoreError>> {
        let key = self.layout(collection).key(
            &index
                .key
                .render("", params)
                .map_err(|e| Arc::new(StoreError::Invalid(e)))?,
        );
        match self.redis.top(&key, offset, limit).await {
            Ok(members) => self.with_documents(collection, members).await,
            Err(err) => {
                tracing::debug!(%err, "redis unavailable; top query from the store");
                self.counters.count(collection, CacheResult::Bypass);
                let equals: Vec<(String, Value)> =
                    params.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
                let found = self
                    .store
                    .top_by_score(collection, &index.score, &equals, offset, limit)
                    .await
                    .map_err(Arc::new)?;
                Ok((ranked(found), CacheStatus::Bypass))
            }
        }
    }

    /// The entity's hash projection as a JSON object typed by the declared field types; `None`
    /// if the entity is absent.
    pub async fn fields(
        self: &Arc<Self>,
        collection: &str,
        id: &str,
        key: &str,
        listed: &[String],
        types: &std::collections::HashMap<String, FieldType>,
    ) -> Result<(Option<Map<String, Value>>, CacheStatus), Arc<StoreError>> {
        match self.redis.hgetall(&self.layout(collection).key(key)).await {
            Ok(pairs) if !pairs.is_empty() => {
                self.counters.count(collection, CacheResult::Hit);
                let object = pairs
                    .into_iter()
                    .map(|(field, text)| {
                        let value = typed(types.get(&field).copied(), text);
                        (field, value)
                    })
                    .collect();
                Ok((Some(object), CacheStatus::Hit))
            }
            // An empty hash is either an uncached entity or an absent one: the store decides.
            Ok(_) => {
                let answer = self.get_one(collection, id).await?;
                let status = answer.cache;
                Ok((pick(answer.entity, listed), status))
            }
            Err(_) => {
                self.counters.count(collection, CacheResult::Bypass);
                let found = self.store.get(collection, id).await.map_err(Arc::new)?;
                let picked = found.map(|v| pick_fields(&v.document, listed));
                Ok((picked, CacheStatus::Bypass))
            }
        }
    }

    /// Attaches documents to index members with one MGET; members whose document is not cached
    /// come from one store query (and are populated). Members the store no longer has are left
    /// out: the index is behind a delete that is on its way.
    async fn with_documents(
        self: &Arc<Self>,
        collection: &str,
        members: Vec<(String, f64)>,
    ) -> Result<(Vec<Ranked>, CacheStatus), Arc<StoreError>> {
        if members.is_empty() {
            self.counters.count(collection, CacheResult::Hit);
            return Ok((Vec::new(), CacheStatus::Hit));
        }
        let view = self.views.get(collection);
        let layout = self.layout(collection);
        let keys: Vec<String> = members
            .iter()
            .map(|(id, _)| {
                view.and_then(|v| v.read_key(id))
                    .map_or_else(String::new, |k| layout.key(&k))
            })
            .collect();
        let cached = if view.is_some_and(|v| v.read_key.is_some()) {
            self.redis
                .mget(&keys)
                .await
                .unwrap_or_else(|_| vec![None; members.len()])
        } else {
            vec![None; members.len()]
        };
        let mut documents: Vec<Option<Box<RawValue>>> = cached
            .into_iter()
            .map(|json| match json {
                Some(json) if json != ABSENT_MARKER => String::from_utf8(json)
                    .ok()
                    .and_then(|s| RawValue::from_string(s).ok()),
                _ => None,
            })
            .collect();
        let missing: Vec<usize> = (0..members.len())
            .filter(|&i| documents[i].is_none())
            .collect();
        let status = if missing.is_empty() {
            self.counters.count(collection, CacheResult::Hit);
            CacheStatus::Hit
        } else {
            self.counters.count(collection, CacheResult::Miss);
            let ids: Vec<String> = missing.iter().map(|&i| members[i].0.clone()).collect();
            let found = self
                .store
                .get_many(collection, &ids)
                .await
                .map_err(Arc::new)?;
            let mut populate = Vec::new();
            for (&i, versioned) in missing.iter().zip(found) {
                if let Some(versioned) = versioned {
                    documents[i] = Some(raw(versioned.clone()));
                    populate.push((members[i].0.clone(), versioned));
                }
            }
            self.populate_in_background(collection, populate);
            CacheStatus::Miss
        };
        let ranked = members
            .into_iter()
            .zip(documents)
            .filter_map(|((id, value), document)| {
                document.map(|document| Ranked {
                    id,
                    value,
                    document,
                })
            })
            .collect();
        Ok((ranked, status))
    }
}

fn ranked(found: Vec<Scored>) -> Vec<Ranked> {
    found
        .into_iter()
        .map(|scored| {
            let id = scored
                .document
                .document
                .get("id")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned();
            Ranked {
                id,
                value: scored.value,
                document: raw(scored.document),
            }
        })
        .collect()
}

fn pick(entity: super::entity::Entity, listed: &[String]) -> Option<Map<String, Value>> {
    match entity {
        super::entity::Entity::Found { json, .. } => {
            let document: Document = serde_json::from_slice(&json).ok()?;
            Some(pick_fields(&document, listed))
        }
        super::entity::Entity::Absent => None,
    }
}

fn pick_fields(document: &Document, listed: &[String]) -> Map<String, Value> {
    listed
        .iter()
        .filter_map(|field| {
            document
                .get(field)
                .filter(|v| !v.is_null())
                .map(|v| (field.clone(), v.clone()))
        })
        .collect()
}

/// Hash values are text; the declared type says how to read them back (the planner writes
/// strings as they are and every other value as JSON).
fn typed(field_type: Option<FieldType>, text: String) -> Value {
    match field_type {
        Some(FieldType::String) | None => Value::String(text),
        Some(_) => serde_json::from_str(&text).unwrap_or(Value::String(text)),
    }
}
