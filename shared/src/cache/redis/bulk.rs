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

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Cmd, RedisResult, RedisWrite, Value};

use super::generations::Targets;
use super::script::{self, Mode};
use super::{merge_outcomes, with_geo_scores, within, KeyLayout, Planned, RedisCacheWriter};
use crate::cache::plan::{plan_live, Action, Projections};
use crate::cache::{ApplyOutcome, CacheError, CacheErrorKind};
use crate::document::Document;
use crate::pipeline::Pipeline;

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

/// What the transaction writes for one record.
#[derive(Debug)]
enum Write<'a> {
    /// The cache has no meta for the entity.
    Fresh,
    /// The cache holds an older version (or, populating, this one); `stored` is its meta.
    Update { stored: StoredMeta<'a> },
}

#[derive(Debug)]
struct StoredMeta<'a> {
    /// `d`: "1" for a tombstone, "0" for a live entity.
    d: Option<&'a str>,
    keys: &'a str,
    idx: &'a str,
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

/// `WATCH`, read, decide, `MULTI` … `EXEC` (or `UNWATCH`): a decision per record, or `None` if
/// the generations are no longer the ones of `targets`.
async fn transaction<'a>(
    conn: &mut MultiplexedConnection,
    targets: &'a HashMap<String, Arc<Targets>>,
    write_layouts: impl Fn(&'a Targets) -> &'a [Arc<KeyLayout>],
    plans: &[&'a Planned],
    mode: Mode,
) -> RedisResult<Option<Vec<Decision>>> {
    let mut decisions = vec![Decision::Script; plans.len()];
    let mut seen = HashMap::with_capacity(plans.len());
    for (plan, _) in plans {
        *seen
            .entry((plan.collection.as_str(), plan.id.as_str()))
            .or_insert(0_usize) += 1;
    }
    let mut candidates = Vec::with_capacity(plans.len());
    for (index, planned) in plans.iter().copied().enumerate() {
        let (plan, _) = planned;
        // An entity twice in a chunk: the script applies its records in order.
        if seen[&(plan.collection.as_str(), plan.id.as_str())] > 1 {
            continue;
        }
        let Action::Upsert(projections) = &plan.action else {
            continue;
        };
        // Several write targets (a rebuild under way): the script writes each.
        let [layout] = write_layouts(&targets[&plan.collection]) else {
            continue;
        };
        candidates.push(Candidate {
            index,
            plan: planned,
            projections,
            layout,
            meta: layout.meta(&plan.collection, &plan.id),
        });
    }
    if candidates.is_empty() {
        return Ok(Some(decisions));
    }

    let mut check = ::redis::pipe();
    let watch = check.cmd("WATCH");
    for targets in targets.values() {
        watch
            .arg(targets.guard().active_key)
            .arg(targets.guard().writes_key);
    }
    for candidate in &candidates {
        watch.arg(&candidate.meta);
    }
    check.ignore();
    for targets in targets.values() {
        check.cmd("GET").arg(targets.guard().active_key);
        check.cmd("GET").arg(targets.guard().writes_key);
    }
    // A backfill mostly meets entities the cache does not know: one EXISTS tells, and only if
    // some are known are their metas read (still watched). Events mostly update known ones.
    let probe = mode == Mode::Fill;
    if probe {
        let exists = check.cmd("EXISTS");
        for candidate in &candidates {
            exists.arg(&candidate.meta);
        }
    } else {
        read_metas(&mut check, &candidates);
    }
    // The index keys' types: a key of another type would refuse its ZADD inside the
    // transaction, after the entity's other writes; the script refuses such an entity before
    // writing its meta. (Not watched: every writer adds to these keys.)
    let mut distinct: Vec<(&KeyLayout, &str)> = Vec::new();
    for c in &candidates {
        let zsets = c.projections.sorted_sets.iter().map(|z| z.key.as_str());
        let geos = c.projections.geos.iter().map(|g| g.key.as_str());
        for key in zsets.chain(geos) {
            if !distinct
                .iter()
                .any(|(l, k)| std::ptr::eq(*l, c.layout) && *k == key)
            {
                distinct.push((c.layout, key));
            }
        }
    }
    let index_keys: Vec<String> = distinct.iter().map(|(l, k)| l.key(k)).collect();
    for key in &index_keys {
        check.cmd("TYPE").arg(key);
    }
    let mut replies: Vec<Value> = check.query_async(conn).await?;
    let mut metas = replies.split_off(2 * targets.len());
    let types = metas.split_off(if probe { 1 } else { candidates.len() });
    let guards = replies;
    if probe {
        metas = match metas.first() {
            Some(Value::Int(0)) => vec![Value::Array(vec![Value::Nil; 4]); candidates.len()],
            _ => {
                let mut read = ::redis::pipe();
                read_metas(&mut read, &candidates);
                read.query_async(conn).await?
            }
        };
    }
    let refused: Vec<&str> = index_keys
        .iter()
        .zip(types)
        .filter(|(_, kind)| !matches!(text(kind), Some("zset" | "none")))
        .map(|(key, _)| key.as_str())
        .collect();
    let generations_moved = targets
        .values()
        .zip(guards.chunks(2))
        .any(|(targets, got)| {
            let guard = targets.guard();
            text(&got[0]).unwrap_or("") != guard.active
                || text(&got[1]).unwrap_or("") != guard.writes
        });
    if generations_moved {
        unwatch(conn).await?;
        return Ok(None);
    }

    let mut writes = Vec::with_capacity(candidates.len());
    for (candidate, stored) in candidates.iter().zip(&metas) {
        if !refused.is_empty() && writes_refused_key(candidate, &refused) {
            continue;
        }
        let Value::Array(fields) = stored else {
            continue;
        };
        let [v, d, keys, idx] = &fields[..] else {
            continue;
        };
        let version = candidate.plan.0.version;
        let write = match text(v) {
            None => Write::Fresh,
            Some(stored_version) => {
                let stored_version: u64 = match stored_version.parse() {
                    Ok(v) => v,
                    // Not a meta this pipeline wrote: the script reports it.
                    Err(_) => continue,
                };
                let tombstone = text(d) == Some("1");
                let refill = mode == Mode::Fill && stored_version == version && !tombstone;
                if version <= stored_version && !refill {
                    decisions[candidate.index] = Decision::Stale;
                    continue;
                }
                Write::Update {
                    stored: StoredMeta {
                        d: text(d),
                        keys: text(keys).unwrap_or("[]"),
                        idx: text(idx).unwrap_or("[]"),
                    },
                }
            }
        };
        writes.push((candidate, write));
    }
    if writes.is_empty() {
        unwatch(conn).await?;
        return Ok(Some(decisions));
    }

    let mut tx = ::redis::pipe();
    tx.cmd("MULTI");
    let commands = write_commands(&writes, &mut tx);
    tx.cmd("EXEC");
    // Per-command results: a command Redis refused inside the transaction (WRONGTYPE) is an
    // error in EXEC's array, not a failure of the call.
    let replies: Vec<Value> = tx.ignore_errors().query_async(conn).await?;
    match replies.into_iter().nth(commands + 1) {
        // A watched key changed: nothing was written; the script decides.
        Some(Value::Nil) => {}
        Some(Value::Array(results)) if results.len() == commands => {
            // A key of another type refused a write (its type changed since the check, or an
            // index the entity leaves): the script writes these records again and reports
            // the ones it refuses.
            let decision = if results.iter().any(|r| matches!(r, Value::ServerError(_))) {
                Decision::Refill
            } else {
                Decision::Written
            };
            for (candidate, _) in &writes {
                decisions[candidate.index] = decision;
            }
        }
        Some(Value::ServerError(err)) => return Err(err.into()),
        other => {
            return Err(::redis::RedisError::from((
                ::redis::ErrorKind::UnexpectedReturnType,
                "EXEC returned an unexpected reply",
                format!("{other:?}"),
            )))
        }
    }
    Ok(Some(decisions))
}

/// `HMGET` of each candidate's meta: its version, tombstone flag and key lists.
fn read_metas(pipe: &mut ::redis::Pipeline, candidates: &[Candidate<'_>]) {
    for candidate in candidates {
        pipe.cmd("HMGET")
            .arg(&candidate.meta)
            .arg(&["v", "d", "keys", "idx"][..]);
    }
}

/// Whether one of the candidate's index keys is among `refused`.
fn writes_refused_key(candidate: &Candidate<'_>, refused: &[&str]) -> bool {
    let p = candidate.projections;
    let zsets = p.sorted_sets.iter().map(|z| z.key.as_str());
    let geos = p.geos.iter().map(|g| g.key.as_str());
    zsets
        .chain(geos)
        .any(|key| refused.contains(&candidate.layout.key(key).as_str()))
}

fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(bytes) => std::str::from_utf8(bytes).ok(),
        Value::SimpleString(text) => Some(text),
        _ => None,
    }
}

async fn unwatch(conn: &mut MultiplexedConnection) -> RedisResult<()> {
    ::redis::cmd("UNWATCH").query_async(conn).await
}

/// Adds to `tx` the commands that make each entity of `writes` what the script makes it (see
/// `apply.lua`, an upsert); returns how many. (`MSET` and `SET` leave the same string: a value
/// without expiry.)
fn write_commands<'a>(
    writes: &'a [(&'a Candidate<'a>, Write<'a>)],
    tx: &mut ::redis::Pipeline,
) -> usize {
    let mut commands = 0;
    // Hashes are replaced, not merged (a field that left the document leaves the hash); the
    // entity keys the previous state occupied and this one does not go too.
    let mut del = Cmd::with_capacity(1 + 2 * writes.len(), 32 * writes.len());
    del.arg("DEL");
    let mut deletes = 0;
    // Every index membership: (index key, sort score, member, score argument); the keys are
    // few (a handful per chunk), so a list beats a map.
    let mut keys: Vec<(&KeyLayout, &str)> = Vec::new();
    let mut members: Vec<(usize, f64, &str, Score)> = Vec::with_capacity(4 * writes.len());
    let mut key_of = |layout: &'a KeyLayout, key: &'a str| -> usize {
        match keys
            .iter()
            .position(|(l, k)| std::ptr::eq(*l, layout) && *k == key)
        {
            Some(n) => n,
            None => {
                keys.push((layout, key));
                keys.len() - 1
            }
        }
    };
    let mut mset = Cmd::with_capacity(1 + 2 * writes.len(), 320 * writes.len());
    mset.arg("MSET");
    let mut strings = 0;
    let mut rest = Vec::with_capacity(3 * writes.len());
    // The meta's two key lists of the record at hand.
    let mut lists: Vec<u8> = Vec::with_capacity(256);
    for (candidate, write) in writes {
        let (plan, geo_scores) = candidate.plan;
        let (p, layout) = (candidate.projections, candidate.layout);
        lists.clear();
        script::write_entity_keys(&mut lists, layout, p);
        let split = lists.len();
        script::write_index_keys(&mut lists, layout, p);
        let (entity_keys, index_keys) = lists.split_at(split);
        let mut same_lists = false;
        if let Write::Update { stored } = write {
            same_lists =
                stored.keys.as_bytes() == entity_keys && stored.idx.as_bytes() == index_keys;
            if !same_lists {
                let left = |stored: &str, now: &[u8]| -> Vec<String> {
                    let now: Vec<String> = serde_json::from_slice(now).unwrap_or_default();
                    let stored: Vec<String> = serde_json::from_str(stored).unwrap_or_default();
                    stored
                        .into_iter()
                        .filter(|key| !now.contains(key))
                        .collect()
                };
                for key in left(stored.keys, entity_keys) {
                    del.arg(key);
                    deletes += 1;
                }
                for key in left(stored.idx, index_keys) {
                    let mut zrem = ::redis::cmd("ZREM");
                    zrem.arg(key).arg(&plan.id);
                    rest.push(zrem);
                }
            }
        }
        for s in &p.strings {
            match s.ttl {
                // Strings that never expire: one MSET for the whole transaction.
                None => {
                    full_key(&mut mset, layout, &s.key);
                    mset.arg(&s.value);
                    strings += 1;
                }
                Some(ttl) => {
                    let mut set = Cmd::with_capacity(5, s.value.len() + 64);
                    set.arg("SET");
                    full_key(&mut set, layout, &s.key);
                    set.arg(&s.value).arg("PX").arg(script::millis(ttl));
                    rest.push(set);
                }
            }
        }
        for h in &p.hashes {
            full_key(&mut del, layout, &h.key);
            deletes += 1;
            if !h.fields.is_empty() {
                let mut hset = Cmd::with_capacity(2 + 2 * h.fields.len(), 256);
                hset.arg("HSET");
                full_key(&mut hset, layout, &h.key);
                for (field, value) in &h.fields {
                    hset.arg(field).arg(value);
                }
                rest.push(hset);
            }
        }
        for z in &p.sorted_sets {
            let key = key_of(layout, &z.key);
            members.push((key, z.score, &plan.id, Score::Float(z.score)));
        }
        for (g, score) in p.geos.iter().zip(geo_scores) {
            let key = key_of(layout, &g.key);
            members.push((key, *score as f64, &plan.id, Score::Geo(*score)));
        }
        let mut meta = Cmd::with_capacity(10, 256);
        meta.arg("HSET")
            .arg(&candidate.meta)
            .arg("v")
            .arg(plan.version);
        let d = match write {
            Write::Fresh => None,
            Write::Update { stored } => stored.d,
        };
        let tombstone = d == Some("1");
        // As the script: only the version changes when the lists are the same and the entity
        // was live.
        if !(same_lists && d == Some("0")) {
            meta.arg("d").arg("0");
            meta.arg("keys").arg(entity_keys).arg("idx").arg(index_keys);
        }
        rest.push(meta);
        // An upsert newer than a tombstone brings the entity back: its meta must not expire.
        if tombstone {
            let mut persist = ::redis::cmd("PERSIST");
            persist.arg(&candidate.meta);
            rest.push(persist);
        }
    }
    if deletes > 0 {
        tx.add_command(del);
        commands += 1;
    }
    if strings > 0 {
        tx.add_command(mset);
        commands += 1;
    }
    commands += rest.len();
    for cmd in rest {
        tx.add_command(cmd);
    }
    members.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.total_cmp(&b.1)));
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        let (layout, key) = keys[group[0].0];
        let mut zadd = Cmd::with_capacity(2 + 2 * group.len(), 40 * group.len());
        zadd.arg("ZADD");
        full_key(&mut zadd, layout, key);
        for (_, _, member, score) in group {
            match score {
                Score::Float(score) => zadd.arg(*score),
                Score::Geo(score) => zadd.arg(*score),
            };
            zadd.arg(*member);
        }
        tx.add_command(zadd);
        commands += 1;
    }
    commands
}

/// Appends `layout.key(key)` as the command's next argument, without a string of its own.
fn full_key(cmd: &mut Cmd, layout: &KeyLayout, key: &str) {
    layout
        .write_key(&mut cmd.writer_for_next_arg(), key)
        .expect("writing to memory cannot fail");
}

/// A membership's score argument, written as the script writes it.
#[derive(Debug, Clone, Copy)]
enum Score {
    Float(f64),
    /// The integer `GEOADD` would pass to `ZADD`.
    Geo(u64),
}

/// The commands a bulk transaction writes `documents` with when the cache knows none of them,
/// without the transaction and its checks: what Redis must do at the very least to hold these
/// entities. The operator benchmark's baseline (`examples/plain_writes.rs`) sends them with
/// `redis-cli --pipe`. Documents the projections refuse are left out.
pub fn unchecked_writes(
    pipeline: &Pipeline,
    collection: &str,
    layout: &KeyLayout,
    documents: &[LiveDocument<'_>],
) -> Result<Vec<Cmd>, CacheError> {
    let spec = pipeline
        .collection(collection)
        .ok_or_else(|| CacheError::unknown_collection(collection))?;
    let planned: Vec<Planned> = documents
        .iter()
        .filter_map(|live| {
            let plan = plan_live(spec, collection, live.id, live.version, live.document);
            with_geo_scores(plan.map_err(CacheError::from)).ok()
        })
        .collect();
    let candidates: Vec<Candidate<'_>> = planned
        .iter()
        .enumerate()
        .filter_map(|(index, planned)| match &planned.0.action {
            Action::Upsert(projections) => Some(Candidate {
                index,
                plan: planned,
                projections,
                layout,
                meta: layout.meta(collection, &planned.0.id),
            }),
            Action::Delete { .. } => None,
        })
        .collect();
    let writes: Vec<(&Candidate<'_>, Write<'_>)> =
        candidates.iter().map(|c| (c, Write::Fresh)).collect();
    let mut pipe = ::redis::pipe();
    write_commands(&writes, &mut pipe);
    Ok(pipe.cmd_iter().cloned().collect())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The arguments of every command, as text.
    fn commands(cmds: &[Cmd]) -> Vec<Vec<String>> {
        cmds.iter()
            .map(|cmd| {
                cmd.args_iter()
                    .map(|arg| match arg {
                        ::redis::Arg::Simple(bytes) => String::from_utf8_lossy(bytes).into_owned(),
                        _ => "<other>".to_owned(),
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn strings_without_expiry_share_one_mset_and_expiring_ones_keep_their_ttl() {
        let pipeline = Pipeline::from_toml(
            r#"
            [collections.items.fields]
            rank = "number"
            [collections.items.projections.doc]
            kind = "string"
            key = "item:{id}"
            [collections.items.projections.short]
            kind = "string"
            key = "item:{id}:short"
            ttl_seconds = 60
            [collections.items.projections.by_rank]
            kind = "sorted_set"
            key = "items:rank"
            score = "rank"
            "#,
        )
        .expect("a valid pipeline");
        let docs: Vec<(String, Document)> = [("b", 2.5), ("a", 1.5)]
            .iter()
            .map(|(id, rank)| {
                let doc = json!({"id": id, "version": 3, "rank": rank});
                (id.to_string(), doc.as_object().unwrap().clone())
            })
            .collect();
        let live: Vec<LiveDocument<'_>> = docs
            .iter()
            .map(|(id, document)| LiveDocument {
                id,
                version: 3,
                document,
            })
            .collect();
        let layout = KeyLayout::new("g1:");
        let cmds = commands(&unchecked_writes(&pipeline, "items", &layout, &live).unwrap());

        let mset = cmds.iter().find(|c| c[0] == "MSET").expect("one MSET");
        assert_eq!(mset.len(), 5, "{mset:?}");
        assert_eq!((&mset[1][..], &mset[3][..]), ("g1:item:b", "g1:item:a"));
        let sets: Vec<&Vec<String>> = cmds.iter().filter(|c| c[0] == "SET").collect();
        assert_eq!(sets.len(), 2);
        for set in sets {
            assert!(set[1].ends_with(":short"), "{set:?}");
            assert_eq!(&set[3..], ["PX", "60000"]);
        }
        // One ZADD for the index, members in score order.
        let zadd = cmds.iter().find(|c| c[0] == "ZADD").expect("one ZADD");
        assert_eq!(zadd[1..], ["g1:items:rank", "1.5", "a", "2.5", "b"]);
        // The metas: version, live, and both key lists.
        let meta = cmds
            .iter()
            .find(|c| c[0] == "HSET" && c[1] == "g1:cacheflow:meta:items:a")
            .expect("a's meta");
        assert_eq!(
            meta[2..],
            [
                "v",
                "3",
                "d",
                "0",
                "keys",
                r#"["g1:item:a","g1:item:a:short"]"#,
                "idx",
                r#"["g1:items:rank"]"#
            ]
        );
    }
}
