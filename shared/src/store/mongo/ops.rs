//! The store's round trips to MongoDB, beneath the [`DocumentStore`](crate::store::DocumentStore)
//! methods: the optimistic write loop and the queries shared by several methods.

use backon::Retryable;
use futures::TryStreamExt;
use mongodb::bson::{DateTime, Document as BsonDocument};
use mongodb::options::{ReadPreference, SelectionCriteria};
use mongodb::Collection;

use super::bson::{self, Record};
use super::error::{is_duplicate_key, map_err};
use super::MongoStore;
use crate::retry::conflict_backoff;
use crate::store::{PendingEvent, StoreError, Versioned, WriteOutcome};

impl MongoStore {
    /// The record a write decides on. Always from the primary: a stale secondary read would only
    /// lose the version guard and retry.
    async fn read_for_write(
        &self,
        collection: &Collection<BsonDocument>,
        id: &str,
    ) -> Result<Option<Record>, StoreError> {
        collection
            .find_one(bson::id_filter(id))
            .projection(bson::without_outbox())
            .selection_criteria(primary())
            .await
            .map_err(map_err)?
            .map(|raw| bson::decode_record(&raw))
            .transpose()
    }

    /// Read, decide, commit with the outbox entry; again on a fresh read while other writers win.
    pub(super) async fn write<D>(
        &self,
        collection: &str,
        id: &str,
        decide: D,
    ) -> Result<WriteOutcome, StoreError>
    where
        D: Fn(Option<&Record>) -> Result<WriteOutcome, StoreError> + Send + Sync,
    {
        self.remember(collection);
        let handle = self.collection(collection);
        let (handle, decide) = (&handle, &decide);
        let attempt = move || async move {
            let current = self.read_for_write(handle, id).await?;
            let outcome = decide(current.as_ref())?;
            let entry = bson::outbox_entry(self.seq.next(), &outcome.event)?;
            let doc = outcome
                .document
                .as_ref()
                .map(bson::json_doc_to_bson)
                .transpose()?;
            let now = DateTime::now();
            let committed = match &current {
                None => {
                    let record = bson::new_record(id, outcome.version, doc, entry, now);
                    match handle.insert_one(record).await {
                        Ok(_) => true,
                        Err(err) if is_duplicate_key(&err) => false,
                        Err(err) => return Err(unconfirmed(map_err(err))),
                    }
                }
                Some(previous) => {
                    let guard = bson::version_guard(id, previous.version);
                    let update = bson::write_update(outcome.version, doc, entry, now);
                    let result = handle
                        .update_one(guard, update)
                        .await
                        .map_err(|err| unconfirmed(map_err(err)))?;
                    result.matched_count == 1
                }
            };
            if committed {
                Ok(outcome)
            } else {
                Err(StoreError::Conflict)
            }
        };
        // A deadline that passes while the write is in flight leaves its outcome unknown: the
        // server may still apply it. Answering "unavailable" (nothing written) would be a lie.
        self.bounded(
            attempt
                .retry(conflict_backoff())
                .when(|err| matches!(err, StoreError::Conflict)),
        )
        .await
        .map_err(unconfirmed)
    }

    pub(super) async fn find_live(
        &self,
        collection: &str,
        filter: BsonDocument,
        sort: Option<BsonDocument>,
        limit: Option<i64>,
    ) -> Result<Vec<(String, Versioned)>, StoreError> {
        let handle = self.collection(collection);
        let mut find = handle.find(filter).projection(bson::without_outbox());
        if let Some(sort) = sort {
            find = find.sort(sort);
        }
        if let Some(limit) = limit {
            find = find.limit(limit);
        }
        let raws: Vec<BsonDocument> = find
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut found = Vec::with_capacity(raws.len());
        for raw in raws {
            let id = raw
                .get_str("_id")
                .map_err(|_| {
                    StoreError::Internal(format!("a record in {collection} has a non-string _id"))
                })?
                .to_owned();
            if let Some(versioned) = live(bson::decode_record(&raw)?) {
                found.push((id, versioned));
            }
        }
        Ok(found)
    }

    pub(super) async fn pending_in(
        &self,
        collection: &str,
        limit: i64,
    ) -> Result<Vec<PendingEvent>, StoreError> {
        let raws: Vec<BsonDocument> = self
            .collection(collection)
            .find(bson::pending_filter())
            .sort(bson::pending_sort())
            .limit(limit)
            .projection(bson::pending_projection())
            .selection_criteria(primary())
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        let mut events = Vec::with_capacity(raws.len());
        for raw in &raws {
            events.extend(bson::decode_pending(raw)?);
        }
        Ok(events)
    }

    pub(super) async fn pending_count_in(&self, collection: &str) -> Result<u64, StoreError> {
        let replies: Vec<BsonDocument> = self
            .collection(collection)
            .aggregate(bson::pending_count_pipeline())
            .selection_criteria(primary())
            .await
            .map_err(map_err)?
            .try_collect()
            .await
            .map_err(map_err)?;
        replies.iter().map(bson::decode_count).sum()
    }
}

pub(super) fn live(record: Record) -> Option<Versioned> {
    match record {
        Record {
            version,
            deleted: false,
            doc: Some(doc),
        } => Some(Versioned {
            version,
            document: bson::bson_doc_to_json(doc),
        }),
        _ => None,
    }
}

pub(super) fn primary() -> SelectionCriteria {
    SelectionCriteria::ReadPreference(ReadPreference::Primary)
}

/// A write's failure after it may have reached the server: "unavailable" (nothing written)
/// becomes "indeterminate" (maybe written). Other errors (conflicts, refusals) are definite.
fn unconfirmed(err: StoreError) -> StoreError {
    match err {
        StoreError::Unavailable(reason) => StoreError::Indeterminate(reason),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn only_unconfirmed_failures_become_indeterminate() {
        assert!(matches!(
            unconfirmed(StoreError::Unavailable("timed out".into())),
            StoreError::Indeterminate(reason) if reason == "timed out"
        ));
        assert!(matches!(
            unconfirmed(StoreError::Conflict),
            StoreError::Conflict
        ));
        assert!(matches!(
            unconfirmed(StoreError::NotFound),
            StoreError::NotFound
        ));
    }

    #[test]
    fn live_hides_tombstones() {
        let tombstone = Record {
            version: 2,
            deleted: true,
            doc: None,
        };
        assert_eq!(live(tombstone), None);
        let record = Record {
            version: 1,
            deleted: false,
            doc: Some(doc! { "id": "p1", "version": 1_i64 }),
        };
        let versioned = live(record).unwrap();
        assert_eq!(versioned.version, 1);
        assert_eq!(versioned.document["id"], "p1");
    }
}
