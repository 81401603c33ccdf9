//! The structure queries the API falls back to when Redis is unreachable, beneath
//! [`DocumentStore::top_by_score`](crate::store::DocumentStore::top_by_score) and
//! [`DocumentStore::near`](crate::store::DocumentStore::near). Both run on the indexes created at
//! start-up (`bson::index_models`): the sorted set's `{doc.<score>: -1, _id: 1}` and the geo
//! projection's 2dsphere; the exact BSON is in `bson/query.rs`.

use futures::TryStreamExt;
use mongodb::bson::Document as BsonDocument;
use serde_json::Value;

use super::error::map_err;
use super::ops::live;
use super::{as_limit, bson, MongoStore};
use crate::store::{check_equals, check_field_name, check_near, Scored, StoreError};

impl MongoStore {
    pub(super) async fn query_top_by_score(
        &self,
        collection: &str,
        score_field: &str,
        equals: &[(String, Value)],
        offset: usize,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        check_field_name(score_field)?;
        check_equals(equals)?;
        // MongoDB reads a limit of 0 as "no limit".
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let raws: Vec<BsonDocument> = self
                .collection(collection)
                .find(bson::top_by_score_filter(score_field, equals))
                .sort(bson::top_by_score_sort(score_field))
                .skip(u64::try_from(offset).unwrap_or(u64::MAX))
                .limit(as_limit(limit))
                .projection(bson::without_outbox())
                .await
                .map_err(map_err)?
                .try_collect()
                .await
                .map_err(map_err)?;
            decode_all(&raws, |raw| bson::decode_score(raw, score_field))
        })
        .await
    }

    pub(super) async fn query_near(
        &self,
        collection: &str,
        field: &str,
        lon: f64,
        lat: f64,
        radius_m: f64,
        limit: usize,
    ) -> Result<Vec<Scored>, StoreError> {
        check_field_name(field)?;
        check_near(lon, lat, radius_m)?;
        // `$limit: 0` is an error in an aggregation.
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.bounded(async {
            let pipeline = bson::near_pipeline(field, lon, lat, radius_m, as_limit(limit));
            let raws: Vec<BsonDocument> = self
                .collection(collection)
                .aggregate(pipeline)
                .await
                .map_err(map_err)?
                .try_collect()
                .await
                .map_err(map_err)?;
            decode_all(&raws, bson::decode_distance)
        })
        .await
    }
}

/// Decodes the records a live-only query returned, each with its value. The queries match
/// `deleted: false` only, so a tombstone cannot come back; were one to, it is left out like
/// everywhere else rather than failing the whole answer.
fn decode_all(
    raws: &[BsonDocument],
    value: impl Fn(&BsonDocument) -> Result<f64, StoreError>,
) -> Result<Vec<Scored>, StoreError> {
    let mut scored = Vec::with_capacity(raws.len());
    for raw in raws {
        if let Some(document) = live(bson::decode_record(raw)?) {
            scored.push(Scored {
                document,
                value: value(raw)?,
            });
        }
    }
    Ok(scored)
}

#[cfg(test)]
mod tests {
    use mongodb::bson::doc;

    use super::*;

    #[test]
    fn records_decode_with_their_value_and_tombstones_are_left_out() {
        let raws = vec![
            doc! {
                "_id": "p1", "version": 3_i64, "deleted": false,
                "doc": { "id": "p1", "version": 3_i64, "rating": 4.5 },
            },
            doc! { "_id": "p2", "version": 2_i64, "deleted": true, "doc": null },
        ];
        let scored = decode_all(&raws, |raw| bson::decode_score(raw, "rating")).unwrap();
        assert_eq!(scored.len(), 1);
        assert_eq!(scored[0].value, 4.5);
        assert_eq!(scored[0].document.version, 3);
        assert_eq!(scored[0].document.document["id"], "p1");

        let broken = vec![doc! { "_id": "p1", "version": 1_i64, "deleted": false, "doc": {} }];
        assert!(matches!(
            decode_all(&broken, |raw| bson::decode_score(raw, "rating")),
            Err(StoreError::Internal(_))
        ));
    }
}
