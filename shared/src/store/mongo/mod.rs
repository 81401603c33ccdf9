//! MongoDB adapter (official driver), the production store: a local `mongod` (standalone or
//! replica set) or Atlas through `mongodb+srv://`.
//!
//! Layout: one MongoDB collection per cacheflow collection, one record per entity with
//! `_id` = the entity id (the exact shape is in `bson.rs`). The user's document is nested under
//! `doc`, so its fields can never collide with ours.
//!
//! Transactional outbox without multi-document transactions: a write's event is pushed onto the
//! `_outbox` array of the entity's own record *in the same single-document update* that writes the
//! new version. MongoDB applies a single-document update atomically on every deployment, so this
//! works on a standalone `mongod` (which has no transactions) exactly as on a replica set, and
//! costs one round trip. The price is that a record carries its unpublished events: it must stay
//! under MongoDB's 16 MiB document limit, which it does while the relay keeps up.
//!
//! Writes are optimistic: read `{version, deleted, doc}`, decide (the same rules as SQLite, in
//! `rmw.rs`), then insert the first record or update with a `{_id, version}` guard. A duplicate
//! key or an unmatched guard means a concurrent writer won; the write is decided again on a fresh
//! read, spaced by [`conflict_backoff`](crate::retry::conflict_backoff), and `Conflict` is
//! returned when that keeps failing.
//!
//! Outbox order: `seq` is `max(last + 1, now in µs)` per process, which orders events across
//! entities well enough for "oldest first"; per entity the order is the array's, i.e. version
//! order. The relay gets each entity's *oldest* pending event only, so it can never publish an
//! entity's events out of order.
//!
//! The structure queries (`queries.rs`) run on the indexes created at start-up: a sorted set's
//! `{doc.<score>: -1, _id: 1}` for `top_by_score` and a geo projection's 2dsphere for `near`.

mod bson;
mod error;
mod ops;
mod queries;
mod rmw;
mod seq;

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::RwLock;
use std::time::Duration;

use async_trait::async_trait;
use futures::future::join_all;
use mongodb::bson::{doc, DateTime, Document as BsonDocument};
use mongodb::options::ClientOptions;
use mongodb::{Client, Collection, Database};
use serde_json::Value;

use self::error::{connect_err, map_err};
use self::ops::live;
use self::seq::SeqClock;
use super::{
    DocumentStore, PendingEvent, Precondition, Scored, StoreError, Validator, Versioned,
    WriteOutcome,
};
use crate::config::StoreSettings;
use crate::document::Document;
use crate::event::Event;
use crate::pipeline::Pipeline;
use crate::redact::SecretUrl;

const APP_NAME: &str = "cacheflow";

/// Ids per `$in` query in `get_many`, which keeps any request far below the 16 MiB command limit
/// (ids are at most 128 bytes).
const IN_CHUNK: usize = 10_000;

pub struct MongoStore {
    db: Database,
    /// Where the relay looks for pending events: the pipeline's collections plus any other this
    /// process has written to.
    collections: RwLock<BTreeSet<String>>,
    seq: SeqClock,
    op_timeout: Duration,
}

impl MongoStore {
    /// Connects, and creates the indexes the pipeline needs (a no-op when they exist). The
    /// database is the one named in the URL's path, else `settings.mongo_database`.
    pub async fn connect(
        url: &SecretUrl,
        pipeline: &Pipeline,
        settings: &StoreSettings,
    ) -> Result<Self, StoreError> {
        let op_timeout = settings.op_timeout();
        // Parsing a mongodb+srv:// URL resolves DNS records, so it needs a deadline too.
        let parse = async {
            ClientOptions::parse(url.expose())
                .await
                .map_err(|err| connect_err(url, err))
        };
        let mut options = within(op_timeout, parse).await?;
        options.app_name.get_or_insert_with(|| APP_NAME.to_owned());
        // Waiting longer than an operation may take is pointless; a shorter wait asked for in the
        // URL is kept.
        options.server_selection_timeout =
            Some(at_most(options.server_selection_timeout, op_timeout));
        options.connect_timeout = Some(at_most(options.connect_timeout, op_timeout));
        let database = options
            .default_database
            .clone()
            .unwrap_or_else(|| settings.mongo_database.clone());
        let client = Client::with_options(options).map_err(|err| connect_err(url, err))?;
        let store = Self {
            db: client.database(&database),
            collections: RwLock::new(pipeline.collection_names().map(str::to_owned).collect()),
            seq: SeqClock::default(),
            op_timeout,
        };
        within(op_timeout, store.ensure_indexes(pipeline))
            .await
            .map_err(|err| context(err, &format!("preparing database {database} at {url}")))?;
        Ok(store)
    }

    async fn ensure_indexes(&self, pipeline: &Pipeline) -> Result<(), StoreError> {
        for collection in pipeline.collections() {
            self.collection(&collection.name)
                .create_indexes(bson::index_models(collection))
                .await
                .map_err(|err| context(map_err(err), &format!("indexing {}", collection.name)))?;
        }
        Ok(())
    }

    fn collection(&self, name: &str) -> Collection<BsonDocument> {
        self.db.collection(name)
    }

    fn remember(&self, collection: &str) {
        let known = self
            .collections
            .read()
            .is_ok_and(|names| names.contains(collection));
        if !known {
            if let Ok(mut names) = self.collections.write() {
                names.insert(collection.to_owned());
            }
        }
    }

    fn collection_names(&self) -> Vec<String> {
        match self.collections.read() {
            Ok(names) => names.iter().cloned().collect(),
            Err(poisoned) => poisoned.into_inner().iter().cloned().collect(),
        }
    }

    async fn bounded<T>(
        &self,
        work: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        within(self.op_timeout, work).await
    }
}

#[async_trait]
impl DocumentStore for MongoStore {
    async fn put(
        &self,
        collection: &str,
        id: &str,
        document: Document,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(collection, id, |current| {
            rmw::put(current, collection, id, document.clone(), precondition)
        })
        .await
    }

    async fn patch(
        &self,
        collection: &str,
        id: &str,
        patch: Value,
        precondition: Precondition,
        validate: Validator,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(collection, id, |current| {
            rmw::patch(current, collection, id, &patch, precondition, &validate)
        })
        .await
    }

    async fn delete(
        &self,
        collection: &str,
        id: &str,
        precondition: Precondition,
    ) -> Result<WriteOutcome, StoreError> {
        self.write(collection, id, |current| {
            rmw::delete(current, collection, id, precondition)
        })
        .await
    }

    async fn get(&self, collection: &str, id: &str) -> Result<Option<Versioned>, StoreError> {
        self.bounded(async {
            let raw = self
                .collection(collection)
                .find_one(bson::id_filter(id))
                .projection(bson::without_outbox())
                .await
                .map_err(map_err)?;
            Ok(match raw {
                Some(raw) => live(bson::decode_record(&raw)?),
                None => None,
            })
        })
        .await
    }

    async fn get_many(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<Vec<Option<Versioned>>, StoreError> {
        self.bounded(async {
            let mut found = HashMap::with_capacity(ids.len());
            for chunk in ids.chunks(IN_CHUNK) {
                let filter = bson::live_ids_filter(chunk);
                found.extend(self.find_live(collection, filter, None, None).await?);
            }
            Ok(ids.iter().map(|id| found.get(id).cloned()).collect())
        })
        .await
    }

    async fn scan(
        &self,
        collection: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Versioned>, StoreError> {
        // MongoDB reads a limit of 0 as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let filter = bson::scan_filter(after);
            let found = self
                .find_live(
                    collection,
                    filter,
                    Some(bson::by_id()),
                    Some(as_limit(limit)),
                )
                .await?;
            Ok(found.into_iter().map(|(_, versioned)| versioned).collect())
        })
        .await
    }

    async fn count_live(&self, collection: &str) -> Result<u64, StoreError> {
        self.bounded(async {
            self.collection(collection)
                .count_documents(bson::scan_filter(None))
                .await
                .map_err(map_err)
        })
        .await
    }

    async fn latest_version(&self, collection: &str, id: &str) -> Result<Option<u64>, StoreError> {
        self.bounded(async {
            self.collection(collection)
                .find_one(bson::id_filter(id))
                .projection(bson::version_only())
                .await
                .map_err(map_err)?
                .map(|raw| bson::decode_version(&raw))
                .transpose()
        })
        .await
    }

    async fn top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        self.query_top_by_score(collection, score_field, equals, offset, limit)
            .await
    }

    async fn near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        self.query_near(collection, field, lon, lat, radius_m, limit)
            .await
    }

    async fn pending_events(&self, limit: usize) -> Result<Vec<PendingEvent>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let names = self.collection_names();
            let per_collection = join_all(
                names
                    .iter()
                    .map(|name| self.pending_in(name, as_limit(limit))),
            )
            .await;
            let mut events = Vec::new();
            for pending in per_collection {
                events.extend(pending?);
            }
            events.sort_by_key(|pending| pending.seq);
            events.truncate(limit);
            Ok(events)
        })
        .await
    }

    async fn mark_published(&self, events: &[PendingEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.bounded(async {
            let updates = bson::mark_published(events);
            let results = join_all(updates.into_iter().map(
                |(name, (filter, update))| async move {
                    self.collection(name).update_many(filter, update).await
                },
            ))
            .await;
            for result in results {
                result.map_err(map_err)?;
            }
            Ok(())
        })
        .await
    }

    async fn pending_count(&self) -> Result<u64, StoreError> {
        self.bounded(async {
            let names = self.collection_names();
            let counts = join_all(names.iter().map(|name| self.pending_count_in(name))).await;
            counts.into_iter().sum()
        })
        .await
    }

    async fn heartbeat(&self, collection: &str) -> Result<(), StoreError> {
        self.remember(collection);
        let event = Event::heartbeat(collection);
        let entry = bson::outbox_entry(self.seq.next(), &event)?;
        let (filter, update) = bson::heartbeat_upsert(entry, DateTime::now());
        self.bounded(async {
            self.collection(collection)
                .update_one(filter, update)
                .upsert(true)
                .await
                .map(drop)
                .map_err(map_err)
        })
        .await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.bounded(async {
            self.db
                .run_command(doc! { "ping": 1 })
                .await
                .map(|_| ())
                .map_err(map_err)
        })
        .await
    }
}

fn as_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

fn at_most(configured: Option<Duration>, cap: Duration) -> Duration {
    configured.map_or(cap, |configured| configured.min(cap))
}

async fn within<T>(
    deadline: Duration,
    work: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or_else(|_| {
            Err(StoreError::Unavailable(format!(
                "MongoDB operation timed out after {deadline:?}"
            )))
        })
}

fn context(err: StoreError, what: &str) -> StoreError {
    match err {
        StoreError::Unavailable(message) => StoreError::Unavailable(format!("{what}: {message}")),
        StoreError::Internal(message) => StoreError::Internal(format!("{what}: {message}")),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_waits_are_capped_by_the_operation_timeout() {
        let cap = Duration::from_secs(5);
        assert_eq!(at_most(None, cap), cap);
        assert_eq!(at_most(Some(Duration::from_secs(30)), cap), cap);
        assert_eq!(
            at_most(Some(Duration::from_secs(1)), cap),
            Duration::from_secs(1)
        );
    }

    #[tokio::test]
    async fn timeouts_are_unavailable() {
        let slow = async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok(())
        };
        let err = within(Duration::from_millis(10), slow).await.unwrap_err();
        assert!(matches!(err, StoreError::Unavailable(_)));
    }
}
