//! Bulk fill: the backfill's fast path for entities a generation does not know yet.
//!
//! The apply script checks and writes each record on its own, eight script calls or so per
//! entity. A backfill into a cold cache meets entities without a meta, for which those checks
//! decide nothing; written as plain commands they cost Redis a fraction: per entity one `SET`,
//! one `HSET` per hash and the meta's `HSET`, and per transaction one `DEL` of the hashes and one
//! variadic `ZADD` per index key (its members sorted by score, which keeps the skiplist walks of
//! one call close together).
//!
//! Safety comes from an optimistic transaction per chunk of [`BULK_RECORDS`] entities:
//! `WATCH` the chunk's metas and the collection's generation keys, check that the generations
//! are the ones planned with and which metas exist (`EXISTS`), then write the fresh entities in
//! `MULTI` … `EXEC`. Redis aborts the `EXEC` if any watched key changed meanwhile (a live event
//! created one of the entities, a rebuild moved the collection to other generations); the
//! chunk then goes through the apply script like the entities the cache already knew. Either
//! way each entity ends exactly as the script's populate (`fill`) would leave it; a test
//! compares the two key by key.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Cmd, RedisResult, RedisWrite, Value};

use super::generations::Guard;
use super::script::{self, Mode};
use super::{with_geo_scores, within, KeyLayout, Planned, RedisCacheWriter};
use crate::cache::plan::{plan_live, Action};
use crate::cache::{ApplyOutcome, CacheError, CacheErrorKind};
use crate::document::Document;
use crate::pipeline::Pipeline;

/// Entities per transaction. `EXEC` runs the whole transaction at once and blocks every other
/// Redis client meanwhile: at ~13 µs of Redis time per entity (places: three index
/// memberships), 256 entities hold it ~3 ms.
pub const BULK_RECORDS: usize = 256;

/// A live document as the store holds it.
#[derive(Debug, Clone, Copy)]
pub struct LiveDocument<'a> {
    pub id: &'a str,
    pub version: u64,
    pub document: &'a Document,
}

/// Fills entities from the store with bulk transactions where it can (see the module's
/// documentation). Holds its own connections (`WATCH` is per connection): one per call in
/// flight, kept for the next call, dropped after a failure.
pub struct BulkFiller {
    writer: RedisCacheWriter,
    idle: Mutex<Vec<MultiplexedConnection>>,
    in_bulk: AtomicU64,
    through_script: AtomicU64,
}

/// How the entities a [`BulkFiller`] handled so far were written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BulkCounts {
    /// By bulk transactions.
    pub in_bulk: u64,
    /// By the apply script (known to the cache, an aborted transaction, a refused key).
    pub through_script: u64,
}

impl RedisCacheWriter {
    /// A bulk filler writing where this writer writes (every write target, or the pinned
    /// generation).
    pub fn bulk_filler(&self) -> BulkFiller {
        BulkFiller {
            writer: self.clone(),
            idle: Mutex::new(Vec::new()),
            in_bulk: AtomicU64::new(0),
            through_script: AtomicU64::new(0),
        }
    }
}

/// Which records a transaction wrote; `None` when the generations changed since planning.
type Written = Option<Vec<bool>>;

impl BulkFiller {
    /// Writes each document of `collection` at its store version, like
    /// [`RedisCacheWriter::fill_events`]: the same version may be written again, a newer one or
    /// a tombstone never overwritten. One outcome per document, in order.
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
        let mut outcomes = Vec::with_capacity(plans.len());
        for chunk in plans.chunks(BULK_RECORDS) {
            outcomes.extend(self.fill_chunk(collection, chunk).await?);
        }
        let mut outcomes = outcomes.into_iter();
        Ok(planned
            .into_iter()
            .map(|planned| match planned {
                Ok(_) => outcomes.next().expect("one outcome per plan"),
                Err(err) => ApplyOutcome::Rejected(err),
            })
            .collect())
    }

    /// One transaction, then the script for whatever it did not write.
    async fn fill_chunk(
        &self,
        collection: &str,
        plans: &[&Planned],
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        let written = self.transaction_or_none(collection, plans).await?;
        let rest: Vec<&Planned> = plans
            .iter()
            .zip(&written)
            .filter(|(_, written)| !**written)
            .map(|(plan, _)| *plan)
            .collect();
        let scripted = rest.len() as u64;
        let mut rest = self
            .writer
            .apply_plans(&rest, Mode::Fill)
            .await?
            .into_iter();
        self.in_bulk
            .fetch_add(plans.len() as u64 - scripted, Ordering::Relaxed);
        self.through_script.fetch_add(scripted, Ordering::Relaxed);
        Ok(written
            .into_iter()
            .map(|written| match written {
                true => ApplyOutcome::Applied,
                false => rest.next().expect("one outcome per plan left"),
            })
            .collect())
    }

    /// Runs the transaction (planning again while the generations change), on a connection of
    /// its own; which records it wrote (none when bulk does not apply).
    async fn transaction_or_none(
        &self,
        collection: &str,
        plans: &[&Planned],
    ) -> Result<Vec<bool>, CacheError> {
        let mut ids = HashSet::with_capacity(plans.len());
        // One entity twice in a chunk would be written twice by one transaction, the later
        // version not checked against the earlier: the script orders them.
        if !plans.iter().all(|(plan, _)| ids.insert(plan.id.as_str())) {
            return Ok(vec![false; plans.len()]);
        }
        let mut conn = self.connection().await?;
        for _ in 0..super::GENERATION_ATTEMPTS {
            let targets = self.writer.targets_of(collection).await?;
            let layouts: Vec<Arc<KeyLayout>> = self.writer.layouts(&targets).collect();
            // Several write targets (a rebuild under way): the script writes each of them.
            let [layout] = &layouts[..] else {
                self.idle(conn);
                return Ok(vec![false; plans.len()]);
            };
            let written = within(self.writer.timeout, "bulk-filling a chunk", async {
                transaction(&mut conn, targets.guard(), layout, plans)
                    .await
                    .map_err(|err| CacheError::from_redis("bulk-filling a chunk", err))
            })
            .await;
            match written {
                // The connection may be left inside MULTI or with keys watched: not reused.
                Err(err) => return Err(err),
                Ok(Some(written)) => {
                    self.idle(conn);
                    return Ok(written);
                }
                Ok(None) => self.writer.generations.forget(),
            }
        }
        Err(CacheError::new(
            CacheErrorKind::Unavailable,
            "the cache generations kept changing while bulk-filling",
        ))
    }

    pub fn counts(&self) -> BulkCounts {
        BulkCounts {
            in_bulk: self.in_bulk.load(Ordering::Relaxed),
            through_script: self.through_script.load(Ordering::Relaxed),
        }
    }

    async fn connection(&self) -> Result<MultiplexedConnection, CacheError> {
        if let Some(conn) = self.idle.lock().expect("never poisoned").pop() {
            return Ok(conn);
        }
        let timeout = self.writer.timeout;
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout))
            .set_response_timeout(Some(timeout));
        within(timeout, "connecting to Redis for a bulk fill", async {
            self.writer
                .client
                .get_multiplexed_async_connection_with_config(&config)
                .await
                .map_err(|err| CacheError::from_redis("connecting to Redis", err))
        })
        .await
    }

    fn idle(&self, conn: MultiplexedConnection) {
        self.idle.lock().expect("never poisoned").push(conn);
    }
}

/// `WATCH`, check, `MULTI` … `EXEC` (or `UNWATCH`): which records it wrote, or `None` if the
/// generations are no longer the ones of `guard`.
async fn transaction(
    conn: &mut MultiplexedConnection,
    guard: Guard<'_>,
    layout: &KeyLayout,
    plans: &[&Planned],
) -> RedisResult<Written> {
    let metas: Vec<String> = plans
        .iter()
        .map(|(plan, _)| layout.meta(&plan.collection, &plan.id))
        .collect();
    let mut check = ::redis::pipe();
    check
        .cmd("WATCH")
        .arg(guard.active_key)
        .arg(guard.writes_key)
        .arg(&metas)
        .ignore();
    check.cmd("GET").arg(guard.active_key);
    check.cmd("GET").arg(guard.writes_key);
    check.cmd("EXISTS").arg(&metas);
    let (active, writes, known): (Option<String>, Option<String>, usize) =
        check.query_async(conn).await?;
    if active.as_deref().unwrap_or("") != guard.active
        || writes.as_deref().unwrap_or("") != guard.writes
    {
        unwatch(conn).await?;
        return Ok(None);
    }
    let fresh: Vec<bool> = if known == 0 {
        vec![true; plans.len()]
    } else {
        // Some entities are known: which ones (still watched).
        let mut each = ::redis::pipe();
        for meta in &metas {
            each.cmd("EXISTS").arg(meta);
        }
        let exists: Vec<usize> = each.query_async(conn).await?;
        exists.into_iter().map(|n| n == 0).collect()
    };
    if !fresh.contains(&true) {
        unwatch(conn).await?;
        return Ok(Some(fresh));
    }
    let mut write = ::redis::pipe();
    write.cmd("MULTI");
    let writes = fresh_writes(layout, plans, &fresh, &metas);
    let commands = writes.len();
    for cmd in writes {
        write.add_command(cmd);
    }
    write.cmd("EXEC");
    // Per-command results: a command Redis refused inside the transaction (WRONGTYPE) is an
    // error in EXEC's array, not a failure of the call.
    let replies: Vec<Value> = write.ignore_errors().query_async(conn).await?;
    let exec = replies.into_iter().nth(commands + 1);
    Ok(Some(match exec {
        // A watched key changed: nothing was written.
        Some(Value::Nil) => vec![false; plans.len()],
        Some(Value::Array(results)) if results.len() == commands => {
            if results.iter().any(|r| matches!(r, Value::ServerError(_))) {
                // Some key holds another type: the script writes these records again (the
                // same version, so it rewrites them) and reports which it refuses.
                vec![false; plans.len()]
            } else {
                fresh
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
    }))
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
    let plans: Vec<&Planned> = planned.iter().collect();
    let metas: Vec<String> = plans
        .iter()
        .map(|(plan, _)| layout.meta(collection, &plan.id))
        .collect();
    Ok(fresh_writes(
        layout,
        &plans,
        &vec![true; plans.len()],
        &metas,
    ))
}

async fn unwatch(conn: &mut MultiplexedConnection) -> RedisResult<()> {
    ::redis::cmd("UNWATCH").query_async(conn).await
}

/// The commands writing the fresh records: exactly what the script writes for an upsert of an
/// entity without a meta (see `apply.lua`).
fn fresh_writes(
    layout: &KeyLayout,
    plans: &[&Planned],
    fresh: &[bool],
    metas: &[String],
) -> Vec<Cmd> {
    let mut commands = Vec::with_capacity(3 * plans.len() + 8);
    // The hashes first: a hash left over without a meta must not keep stray fields.
    let mut del = Cmd::with_capacity(1 + plans.len(), 32 * plans.len());
    del.arg("DEL");
    let mut any_hash = false;
    // (key, sort score, member, score argument) for every index membership; keys without the
    // layout's prefix, written with it.
    let mut members: Vec<(&str, f64, &str, Score)> = Vec::with_capacity(4 * plans.len());
    let key = |cmd: &mut Cmd, key: &str| {
        layout
            .write_key(&mut cmd.writer_for_next_arg(), key)
            .expect("writing to memory cannot fail")
    };
    for (((plan, geo_scores), _), meta) in plans
        .iter()
        .copied()
        .zip(fresh)
        .zip(metas)
        .filter(|(((_, _), fresh), _)| **fresh)
    {
        let Action::Upsert(p) = &plan.action else {
            unreachable!("a live document plans an upsert")
        };
        for s in &p.strings {
            let mut set = Cmd::with_capacity(5, s.value.len() + 64);
            set.arg("SET");
            key(&mut set, &s.key);
            set.arg(&s.value);
            if let Some(ttl) = s.ttl {
                set.arg("PX").arg(script::millis(ttl));
            }
            commands.push(set);
        }
        for h in &p.hashes {
            key(&mut del, &h.key);
            any_hash = true;
            if !h.fields.is_empty() {
                let mut hset = Cmd::with_capacity(2 + 2 * h.fields.len(), 256);
                hset.arg("HSET");
                key(&mut hset, &h.key);
                for (field, value) in &h.fields {
                    hset.arg(field).arg(value);
                }
                commands.push(hset);
            }
        }
        for z in &p.sorted_sets {
            members.push((&z.key, z.score, &plan.id, Score::Float(z.score)));
        }
        for (g, score) in p.geos.iter().zip(geo_scores) {
            members.push((&g.key, *score as f64, &plan.id, Score::Geo(*score)));
        }
        let mut hset = Cmd::with_capacity(10, 256);
        hset.arg("HSET").arg(meta).arg("v").arg(plan.version);
        hset.arg("d").arg("0").arg("keys");
        script::write_entity_keys(&mut hset, layout, p);
        hset.arg("idx");
        script::write_index_keys(&mut hset, layout, p);
        commands.push(hset);
    }
    if any_hash {
        commands.insert(0, del);
    }
    members.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)));
    for group in members.chunk_by(|a, b| a.0 == b.0) {
        let mut zadd = Cmd::with_capacity(2 + 2 * group.len(), 40 * group.len());
        zadd.arg("ZADD");
        key(&mut zadd, group[0].0);
        for (_, _, member, score) in group {
            match score {
                Score::Float(score) => zadd.arg(*score),
                Score::Geo(score) => zadd.arg(*score),
            };
            zadd.arg(*member);
        }
        commands.push(zadd);
    }
    commands
}

/// A membership's score argument, written as the script writes it.
#[derive(Debug, Clone, Copy)]
enum Score {
    Float(f64),
    /// The integer `GEOADD` would pass to `ZADD`.
    Geo(u64),
}
