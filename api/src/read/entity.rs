//! Entity reads: Redis first; on a miss one store read per key at a time (single-flight), the
//! answer, and a background populate through the versioned apply.

use std::sync::Arc;

use cacheflow_shared::cache::{StoreState, ABSENT_MARKER};
use cacheflow_shared::store::{StoreError, Versioned};
use serde_json::value::RawValue;

use super::cache_counters::CacheResult;
use super::{version_of, CacheStatus, Fetched, Reader, StoreRead};

use cacheflow_shared::telemetry::names::SINGLEFLIGHT_COALESCED_TOTAL as COALESCED;

/// One entity as read: its JSON and version, or absent.
#[derive(Debug)]
pub enum Entity {
    Found { json: Vec<u8>, version: u64 },
    Absent,
}

#[derive(Debug)]
pub struct EntityAnswer {
    pub entity: Entity,
    pub cache: CacheStatus,
}

/// One item of a batch read, in the order asked.
#[derive(Debug)]
pub struct BatchItem {
    pub id: String,
    pub document: Option<Box<RawValue>>,
}

impl Reader {
    pub async fn get_one(
        self: &Arc<Self>,
        collection: &str,
        id: &str,
    ) -> Result<EntityAnswer, Arc<StoreError>> {
        self.get_one_at(collection, id, 0).await
    }

    /// An entity read that never answers a version older than `min_version` (read-your-writes:
    /// a cached copy older than that is passed over for the store).
    pub async fn get_one_at(
        self: &Arc<Self>,
        collection: &str,
        id: &str,
        min_version: u64,
    ) -> Result<EntityAnswer, Arc<StoreError>> {
        // The cold paths (miss, bypass) are boxed: inlined, their state would make every cache
        // hit's future several times larger, and it is moved and zeroed on each request.
        let Some(read_key) = self.views.get(collection).and_then(|v| v.read_key(id)) else {
            return Box::pin(self.store_answer(collection, id, CacheStatus::Bypass)).await;
        };
        let key = self.layout(collection).key(&read_key);
        if let Some((json, version)) = self.near.as_ref().and_then(|n| n.get(&key, min_version)) {
            self.counters.count(collection, CacheResult::Hit);
            return Ok(EntityAnswer {
                entity: Entity::Found { json, version },
                cache: CacheStatus::Hit,
            });
        }
        match self.redis.get(&key).await {
            Ok(Some(json)) if json == ABSENT_MARKER && min_version > 0 => {
                Box::pin(self.fresh(collection, id, &key, min_version)).await
            }
            Ok(Some(json)) if json == ABSENT_MARKER => {
                self.counters.count(collection, CacheResult::NegativeHit);
                Ok(EntityAnswer {
                    entity: Entity::Absent,
                    cache: CacheStatus::Hit,
                })
            }
            Ok(Some(json)) => match version_of(&json) {
                Some(version) if version < min_version => {
                    Box::pin(self.fresh(collection, id, &key, min_version)).await
                }
                Some(version) => {
                    if let Some(near) = &self.near {
                        near.insert(&key, &json, version);
                    }
                    self.counters.count(collection, CacheResult::Hit);
                    Ok(EntityAnswer {
                        entity: Entity::Found { json, version },
                        cache: CacheStatus::Hit,
                    })
                }
                // Not a document this pipeline wrote: treat it as a miss and let the populate fix it.
                None => Box::pin(self.miss(collection, id, &key)).await,
            },
            Ok(None) if min_version > 0 => {
                Box::pin(self.fresh(collection, id, &key, min_version)).await
            }
            Ok(None) => Box::pin(self.miss(collection, id, &key)).await,
            Err(err) => {
                tracing::debug!(%err, "redis unavailable; reading from the store");
                Box::pin(self.store_answer(collection, id, CacheStatus::Bypass)).await
            }
        }
    }

    async fn miss(
        self: &Arc<Self>,
        collection: &str,
        id: &str,
        key: &str,
    ) -> Result<EntityAnswer, Arc<StoreError>> {
        self.counters.count(collection, CacheResult::Miss);
        let flight = self
            .flights
            .run(key, || self.recheck_then_read_store(collection, id, key))
            .await;
        if flight.coalesced {
            metrics::counter!(COALESCED, "collection" => collection.to_owned()).increment(1);
        }
        let Fetched { read, from_store } = flight.value;
        if let Some(guard) = flight.guard.filter(|_| from_store) {
            // Keep the flight open until Redis holds the value, so misses arriving meanwhile
            // share this read instead of reading the store again.
            let (reader, collection, id, read) = (
                self.clone(),
                collection.to_owned(),
                id.to_owned(),
                read.clone(),
            );
            tokio::spawn(async move {
                if let Some(state) = reader.store_state(&collection, &id, read).await {
                    reader.populator.fill(&collection, &id, state).await;
                }
                drop(guard);
            });
        }
        answer(read, CacheStatus::Miss)
    }

    /// The cache holds an older version than the reader asked for: the store answers (one read
    /// per key at a time; the worker brings Redis up to date).
    async fn fresh(
        &self,
        collection: &str,
        id: &str,
        key: &str,
        min_version: u64,
    ) -> Result<EntityAnswer, Arc<StoreError>> {
        self.counters.count(collection, CacheResult::Miss);
        let flight = self
            .flights
            .run(&format!("{key}\0fresh"), || async {
                Fetched {
                    read: self.read_store(collection, id).await,
                    from_store: true,
                }
            })
            .await;
        let read = match flight.value.read {
            // A flight joined may have read the store before this reader's write committed: an
            // answer older than asked for is read again, alone.
            Ok(found)
                if flight.coalesced && found.as_ref().is_none_or(|v| v.version < min_version) =>
            {
                self.read_store(collection, id).await
            }
            read => read,
        };
        answer(read, CacheStatus::Miss)
    }

    /// A new flight may start just after the previous one populated Redis (the caller's GET
    /// missed before the populate landed): look once more before reading the store.
    async fn recheck_then_read_store(&self, collection: &str, id: &str, key: &str) -> Fetched {
        if let Ok(Some(json)) = self.redis.get(key).await {
            if json == ABSENT_MARKER {
                return Fetched {
                    read: Ok(None),
                    from_store: false,
                };
            }
            if let Ok(document) =
                serde_json::from_slice::<cacheflow_shared::document::Document>(&json)
            {
                if let Some(version) = version_of(&json) {
                    return Fetched {
                        read: Ok(Some(Versioned { version, document })),
                        from_store: false,
                    };
                }
            }
        }
        Fetched {
            read: self.read_store(collection, id).await,
            from_store: true,
        }
    }

    async fn store_answer(
        &self,
        collection: &str,
        id: &str,
        cache: CacheStatus,
    ) -> Result<EntityAnswer, Arc<StoreError>> {
        self.counters.count(collection, CacheResult::Bypass);
        answer(self.read_store(collection, id).await, cache)
    }

    async fn read_store(&self, collection: &str, id: &str) -> StoreRead {
        self.store.get(collection, id).await.map_err(Arc::new)
    }

    /// What to populate after a store read; the latest version of an absent entity (its
    /// tombstone's) is needed so that the cached miss cannot hide a later create.
    async fn store_state(&self, collection: &str, id: &str, read: StoreRead) -> Option<StoreState> {
        match read {
            Ok(Some(Versioned { version, document })) => {
                Some(StoreState::Live { version, document })
            }
            Ok(None) => {
                let latest_version = self
                    .store
                    .latest_version(collection, id)
                    .await
                    .ok()?
                    .unwrap_or(0);
                Some(StoreState::Absent { latest_version })
            }
            Err(_) => None,
        }
    }

    /// Batch read: one MGET, the misses from one store query (populated in the background).
    pub async fn get_many(
        self: &Arc<Self>,
        collection: &str,
        ids: &[String],
    ) -> Result<(Vec<BatchItem>, CacheStatus), Arc<StoreError>> {
        let view = self.views.get(collection);
        let layout = self.layout(collection);
        let keys: Option<Vec<String>> = ids
            .iter()
            .map(|id| view.and_then(|v| v.read_key(id)).map(|k| layout.key(&k)))
            .collect();
        let cached = match keys {
            Some(keys) => self.redis.mget(&keys).await.ok(),
            None => None,
        };
        let Some(cached) = cached else {
            self.counters.count(collection, CacheResult::Bypass);
            let found = self
                .store
                .get_many(collection, ids)
                .await
                .map_err(Arc::new)?;
            let items = ids
                .iter()
                .zip(found)
                .map(|(id, v)| BatchItem {
                    id: id.clone(),
                    document: v.map(raw),
                })
                .collect();
            return Ok((items, CacheStatus::Bypass));
        };
        let mut items = Vec::with_capacity(ids.len());
        let mut missing = Vec::new();
        for (i, (id, value)) in ids.iter().zip(cached).enumerate() {
            let document = match value {
                Some(json) if json == ABSENT_MARKER => None,
                Some(json) => match String::from_utf8(json)
                    .ok()
                    .and_then(|s| RawValue::from_string(s).ok())
                {
                    Some(raw) => Some(raw),
                    None => {
                        missing.push(i);
                        None
                    }
                },
                None => {
                    missing.push(i);
                    None
                }
            };
            items.push(BatchItem {
                id: id.clone(),
                document,
            });
        }
        let hits = ids.len() - missing.len();
        self.counters
            .count_n(collection, CacheResult::Hit, hits as u64);
        if missing.is_empty() {
            return Ok((items, CacheStatus::Hit));
        }
        self.counters
            .count_n(collection, CacheResult::Miss, missing.len() as u64);
        let missing_ids: Vec<String> = missing.iter().map(|&i| ids[i].clone()).collect();
        let found = self
            .store
            .get_many(collection, &missing_ids)
            .await
            .map_err(Arc::new)?;
        let mut populate = Vec::new();
        for (&i, versioned) in missing.iter().zip(found) {
            if let Some(versioned) = versioned {
                items[i].document = Some(raw(versioned.clone()));
                populate.push((ids[i].clone(), versioned));
            }
        }
        self.populate_in_background(collection, populate);
        Ok((items, CacheStatus::Miss))
    }

    pub(crate) fn populate_in_background(
        self: &Arc<Self>,
        collection: &str,
        found: Vec<(String, Versioned)>,
    ) {
        if found.is_empty() {
            return;
        }
        let (reader, collection) = (self.clone(), collection.to_owned());
        tokio::spawn(async move {
            for (id, Versioned { version, document }) in found {
                reader
                    .populator
                    .fill(&collection, &id, StoreState::Live { version, document })
                    .await;
            }
        });
    }
}

fn answer(read: StoreRead, cache: CacheStatus) -> Result<EntityAnswer, Arc<StoreError>> {
    let entity = match read? {
        Some(versioned) => Entity::Found {
            json: serde_json::to_vec(&versioned.document).expect("a document always serialises"),
            version: versioned.version,
        },
        None => Entity::Absent,
    };
    Ok(EntityAnswer { entity, cache })
}

pub(crate) fn raw(versioned: Versioned) -> Box<RawValue> {
    let json = serde_json::to_string(&versioned.document).expect("a document always serialises");
    RawValue::from_string(json).expect("serde_json output is valid JSON")
}
