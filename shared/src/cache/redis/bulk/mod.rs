//! Bulk transactions: the fast path of the versioned apply for batches (the worker's events, the
//! backfill's documents).
//!
//! The apply script checks and writes each record on its own, eight script calls or so per
//! entity, and Redis pays for every call from Lua. Most records of a batch need no decision only
//! the script can make: an upsert of an entity the cache does not know, or one whose cached
//! version is older. For those the versions are read first and the writes are plain commands:
//! per entity the string, the hash (deleted and written again) and the meta; per transaction one
//! `DEL` and one variadic `ZADD` per index key, its members sorted by score.
//!
//! Safety comes from an optimistic transaction per chunk of [`BULK_RECORDS`] records: `WATCH`
//! the chunk's metas and its collections' generation keys, read the metas (`HMGET`) and check
//! the generations are the ones planned with, decide each record in Rust exactly as the script
//! would, then write in `MULTI` … `EXEC`. Redis aborts the `EXEC` if any watched key changed
//! meanwhile (another worker or the API wrote one of the entities, a rebuild moved a collection
//! to other generations); the chunk then goes through the script. The script also takes every
//! delete, every entity that appears more than once in a chunk, and every collection with
//! several write targets (a rebuild under way). Either way each entity ends exactly as the
//! script would leave it; the worker's and the backfill's tests compare Redis key by key with the
//! planner's projection, and a test races live events against bulk fills.
//!
//! Here: chunking, the connections and the entry points; [`transaction`] reads and decides,
//! [`commands`] writes.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use ::redis::aio::MultiplexedConnection;
use ::redis::AsyncConnectionConfig;

use super::script::Mode;
use super::{merge_outcomes, with_geo_scores, within, KeyLayout, Planned, RedisCacheWriter};
use crate::cache::plan::{plan_live, Projections};
use crate::cache::{ApplyOutcome, CacheError, CacheErrorKind};
use crate::document::Document;

mod commands;
mod transaction;

pub use commands::unchecked_writes;
use transaction::transaction;

/// Records per transaction. `EXEC` runs the whole transaction at once and blocks every other
/// Redis client meanwhile: at ~15 µs of Redis time per entity (places: three index
/// memberships), 256 entities hold it ~4 ms.
pub const BULK_RECORDS: usize = 256;

/// Batches smaller than this go straight to the script, in one call: a transaction costs an
/// extra round trip, and small batches (a lightly loaded worker) are latency, not throughput.
pub(super) const MIN_BULK: usize = 64;

/// A live document as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct LiveDocument<'a> {
    pub id: &'a str,
    pub version: u64,
    pub document: &'a Document,
}

/// The connections transactions run on (`WATCH` is per connection): one per transaction in
/// flight, kept for the next one, dropped after a failure (it may be left inside `MULTI`).
#[derive(Default)]
pub(super) struct TxConnections {
    idle: Mutex<Vec<MultiplexedConnection>>,
}

/// What became of one record of a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    /// Written by the transaction.
    Written,
    /// The cache holds this version or a newer one: nothing to write.
    Stale,
    /// Left to the script.
    Script,
    /// Written by a transaction in which Redis refused a command (a key of another type): the
    /// script writes it again, populating (the version is already written), and reports it.
    Refill,
}

/// Fills entities from the store through [`RedisCacheWriter::apply_in_bulk`], counting how
/// they were written.
pub struct BulkFiller {
    writer: RedisCacheWriter,
    in_bulk: AtomicU64,
    through_script: AtomicU64,
}

/// How the entities a [`BulkFiller`] handled so far were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    /// By bulk transactions (or found stale there).
    pub in_bulk: u64,
    /// By the apply script.
    pub through_script: u64,
}

impl RedisCacheWriter {
    /// A bulk filler writing where this writer writes (every write target, or the pinned
    /// generation).
    pub fn bulk_filler(&self) -> BulkFiller {
        BulkFiller {
            writer: self.clone(),
            in_bulk: AtomicU64::new(0),
            through_script: AtomicU64::new(0),
        }
    }

    /// Applies `plans` in order: each chunk through a transaction where it can, the rest through
    /// the script. One outcome per plan, and how many were decided in transactions.
    pub(super) async fn apply_in_bulk(
        &self,
        plans: &[&Planned],
        mode: Mode,
    ) -> Result<(Vec<ApplyOutcome>, u64), CacheError> {
        // One chunk after the other, so that each event's outcome is the one applying the batch
        // in order gives (an entity in two chunks: the second sees the first's version).
        let mut outcomes = Vec::with_capacity(plans.len());
        let mut in_bulk = 0;
        for chunk in plans.chunks(BULK_RECORDS) {
            let (chunk_outcomes, chunk_in_bulk) = self.apply_chunk(chunk, mode).await?;
            outcomes.extend(chunk_outcomes);
            in_bulk += chunk_in_bulk;
        }
        Ok((outcomes, in_bulk))
    }

    async fn apply_chunk(
        &self,
        chunk: &[&Planned],
        mode: Mode,
    ) -> Result<(Vec<ApplyOutcome>, u64), CacheError> {
        let decisions = self.decide_in_transaction(chunk, mode).await?;
        let left = |which: Decision| -> Vec<&Planned> {
            chunk
                .iter()
                .zip(&decisions)
                .filter(|(_, decision)| **decision == which)
                .map(|(plan, _)| *plan)
                .collect()
        };
        let (scripted, refilled) = (left(Decision::Script), left(Decision::Refill));
        let in_bulk = (chunk.len() - scripted.len() - refilled.len()) as u64;
        let mut scripted = self.apply_plans(&scripted, mode).await?.into_iter();
        let mut refilled = self.apply_plans(&refilled, Mode::Fill).await?.into_iter();
        let outcomes = decisions
            .into_iter()
            .map(|decision| match decision {
                Decision::Written => ApplyOutcome::Applied,
                Decision::Stale => ApplyOutcome::Stale,
                Decision::Script => scripted.next().expect("one outcome per plan left"),
                Decision::Refill => refilled.next().expect("one outcome per plan left"),
            })
            .collect();
        Ok((outcomes, in_bulk))
    }

    /// Runs the chunk's transaction (planning again while the generations change) on a
    /// connection of its own.
    async fn decide_in_transaction(
        &self,
        plans: &[&Planned],
        mode: Mode,
    ) -> Result<Vec<Decision>, CacheError> {
        let mut collections: Vec<&str> = plans.iter().map(|(p, _)| p.collection.as_str()).collect();
        collections.sort_unstable();
        collections.dedup();
        let mut conn = self.tx_connection().await?;
        for _ in 0..super::GENERATION_ATTEMPTS {
            let targets = self.targets_checked(&collections).await?;
            let decided = within(self.timeout, "applying a bulk transaction", async {
                transaction(&mut conn, &targets, |t| self.write_layouts(t), plans, mode)
                    .await
                    .map_err(|err| CacheError::from_redis("applying a bulk transaction", err))
            })
            .await;
            match decided {
                // The connection may be left inside MULTI or with keys watched: not reused.
                Err(err) => return Err(err),
                Ok(Some(decisions)) => {
                    self.tx_connections
                        .idle
                        .lock()
                        .expect("never poisoned")
                        .push(conn);
                    return Ok(decisions);
                }
                Ok(None) => self.generations.forget(),
            }
        }
        Err(CacheError::new(
            CacheErrorKind::Unavailable,
            "the cache generations kept changing while applying",
        ))
    }

    async fn tx_connection(&self) -> Result<MultiplexedConnection, CacheError> {
        if let Some(conn) = self
            .tx_connections
            .idle
            .lock()
            .expect("never poisoned")
            .pop()
        {
            return Ok(conn);
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        within(self.timeout, "connecting to Redis", async {
            self.client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|err| CacheError::from_redis("connecting to Redis", err))
        })
        .await
    }
}

impl BulkFiller {
    /// Writes each document of `collection` at its store version, like
    /// [`RedisCacheWriter::fill_events`]: the same version may be written again, a newer one or
    /// a tombstone never. One outcome per document, in order.
    pub async fn fill(
        &self,
        collection: &str,
        documents: &[LiveDocument<'_>],
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        let spec = self
            .writer
            .pipeline
            .collection(collection)
            .ok_or_else(|| CacheError::unknown_collection(collection))?;
        let planned: Vec<Result<Planned, CacheError>> = documents
            .iter()
            .map(|live| {
                let plan = plan_live(spec, collection, live.id, live.version, live.document);
                with_geo_scores(plan.map_err(CacheError::from))
            })
            .collect();
        let plans: Vec<&Planned> = planned.iter().filter_map(|p| p.as_ref().ok()).collect();
        let (outcomes, in_bulk) = self.writer.apply_in_bulk(&plans, Mode::Fill).await?;
        self.in_bulk.fetch_add(in_bulk, Ordering::Relaxed);
        self.through_script
            .fetch_add(plans.len() as u64 - in_bulk, Ordering::Relaxed);
        Ok(merge_outcomes(planned, outcomes))
    }

    pub fn counts(&self) -> BulkCounts {
        BulkCounts {
            in_bulk: self.in_bulk.load(Ordering::Relaxed),
            through_script: self.through_script.load(Ordering::Relaxed),
        }
    }
}

/// One record the transaction may write: its plan, its projections and where it is written.
struct Candidate<'a> {
    index: usize,
    plan: &'a Planned,
    projections: &'a Projections,
    layout: &'a KeyLayout,
    meta: String,
}
