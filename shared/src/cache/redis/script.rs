//! The versioned-apply Lua script (`apply.lua`, contract in its header and docs/WORKER.md), the
//! encoding of records (plans, absent markers) into one `EVALSHA` call per chunk, and the
//! decoding of its per-record replies.

use std::io::{self, Write};
use std::sync::Arc;
use std::time::Duration;

use ::redis::{Cmd, RedisError, RedisWrite, Script, Value};

use super::generations::Guard;
use super::geo;
use super::keys::KeyLayout;
use crate::cache::plan::{Action, Fallback, Plan, Projections};
use crate::cache::ApplyOutcome;

/// Most records one `EVALSHA` applies. The whole call is atomic, so it blocks every other Redis
/// client (the API's reads) while it runs: at ~15–20 µs of Redis time per record, 64 records
/// hold Redis for ~1–1.5 ms. Bigger chunks save nothing more: Redis's instructions per event
/// (under callgrind, see docs/WORKER.md, *Benchmark*) are 118.8k at 16 records per call, 118.0k
/// at 64, 117.3k at 128 and 256, against 144k at 1; and the CPU time per event measured slightly
/// worse at 128 and 256 than at 32–64.
pub(super) const CHUNK_RECORDS: usize = 64;

pub(super) fn script() -> Script {
    Script::new(include_str!("apply.lua"))
}

/// How an upsert plan is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// An event: only a strictly newer version is written.
    Event,
    /// A cache-aside populate from the store: the same version may be written again.
    Fill,
}

/// One record of a call: what one entity must become in one generation (`layout`).
#[derive(Debug)]
pub(super) enum Record<'a> {
    /// `geo_scores`: the score of each of the plan's geo memberships, in order ([`geo_scores`]).
    Plan {
        plan: &'a Plan,
        mode: Mode,
        geo_scores: &'a [u64],
        layout: Arc<KeyLayout>,
    },
    /// Caches a miss: an empty marker under `read_key` for `ttl`, unless the cache knows better.
    Absent {
        collection: &'a str,
        id: &'a str,
        read_key: &'a str,
        version: u64,
        ttl: Duration,
        layout: Arc<KeyLayout>,
    },
    /// Removes the entity's entries and index memberships (those its meta lists, and the
    /// `fallback` keys), keeping its version.
    Invalidate {
        collection: &'a str,
        id: &'a str,
        fallback: &'a Fallback,
        layout: Arc<KeyLayout>,
    },
    /// Clears an entity the store does not hold live, if the cache still holds `observed`
    /// (0 = no meta), leaving a tombstone at `tombstone` (or nothing if `None`).
    Purge {
        collection: &'a str,
        id: &'a str,
        observed: u64,
        tombstone: Option<u64>,
        fallback: &'a Fallback,
        layout: Arc<KeyLayout>,
    },
}

impl Record<'_> {
    pub(super) fn collection(&self) -> &str {
        match self {
            Record::Plan { plan, .. } => &plan.collection,
            Record::Absent { collection, .. }
            | Record::Invalidate { collection, .. }
            | Record::Purge { collection, .. } => collection,
        }
    }
}

/// `EVALSHA <sha> <numkeys> KEYS... ARGV...` applying `records` in order (at most
/// [`CHUNK_RECORDS`]; the caller chunks), if every collection's generations still are what
/// `guards` say (one guard per collection the records write).
pub(super) fn evalsha(
    sha: &str,
    guards: &[Guard<'_>],
    records: &[Record<'_>],
    tombstone_ttl: Duration,
) -> Cmd {
    debug_assert!(records.len() <= CHUNK_RECORDS);
    // Each record's KEYS first (EVALSHA wants their count before them), then each record's ARGV,
    // all written straight into the command's buffer: no string per key or list.
    let numkeys: usize = 2 * guards.len()
        + records
            .iter()
            .map(|record| 1 + record_keys(record))
            .sum::<usize>();
    // Sized up front so the buffer is not copied over and over as it grows: the documents plus
    // a generous allowance for the keys, lists, numbers and hash fields of each record.
    let documents: usize = records.iter().map(record_strings_len).sum();
    let mut cmd = Cmd::with_capacity(4 + 48 * records.len(), documents + 512 * records.len());
    cmd.arg("EVALSHA").arg(sha).arg(numkeys);
    for guard in guards {
        cmd.arg(guard.active_key).arg(guard.writes_key);
    }
    for record in records {
        match record {
            Record::Plan { plan, layout, .. } => {
                write(&mut cmd, |out| {
                    layout.write_meta(out, &plan.collection, &plan.id)
                });
                match &plan.action {
                    Action::Upsert(p) => {
                        let strings = p.strings.iter().map(|s| &s.key);
                        let hashes = p.hashes.iter().map(|h| &h.key);
                        let zsets = p.sorted_sets.iter().map(|z| &z.key);
                        let geos = p.geos.iter().map(|g| &g.key);
                        for key in strings.chain(hashes).chain(zsets).chain(geos) {
                            write(&mut cmd, |out| layout.write_key(out, key));
                        }
                    }
                    Action::Delete { fallback } => {
                        for key in fallback.entity_keys.iter().chain(&fallback.index_keys) {
                            write(&mut cmd, |out| layout.write_key(out, key));
                        }
                    }
                }
            }
            Record::Absent {
                collection,
                id,
                read_key,
                layout,
                ..
            } => {
                write(&mut cmd, |out| layout.write_meta(out, collection, id));
                write(&mut cmd, |out| layout.write_key(out, read_key));
            }
            Record::Invalidate {
                collection,
                id,
                fallback,
                layout,
            }
            | Record::Purge {
                collection,
                id,
                fallback,
                layout,
                ..
            } => {
                write(&mut cmd, |out| layout.write_meta(out, collection, id));
                for key in fallback.entity_keys.iter().chain(&fallback.index_keys) {
                    write(&mut cmd, |out| layout.write_key(out, key));
                }
            }
        }
    }
    cmd.arg(guards.len());
    for guard in guards {
        cmd.arg(guard.active).arg(guard.writes);
    }
    cmd.arg(records.len());
    let tombstone_ms = millis(tombstone_ttl);
    for record in records {
        match record {
            Record::Plan {
                plan,
                mode,
                geo_scores,
                layout,
            } => write_plan(&mut cmd, layout, plan, *mode, geo_scores, tombstone_ms),
            Record::Absent {
                id, version, ttl, ..
            } => {
                // Header only (one string key: the read key); no data.
                cmd.arg(*version).arg("absent").arg(*id).arg(millis(*ttl));
                cmd.arg(&[1, 0, 0, 0, 0][..]).arg("[]").arg("[]");
            }
            Record::Invalidate { id, fallback, .. } => {
                // Like a delete's header: entity keys as "strings", index keys as "sorted sets".
                cmd.arg(0).arg("invalidate").arg(*id).arg(tombstone_ms);
                let (entity, index) = (fallback.entity_keys.len(), fallback.index_keys.len());
                cmd.arg(&[entity, 0, index, 0, 0][..]).arg("[]").arg("[]");
            }
            Record::Purge {
                id,
                observed,
                tombstone,
                fallback,
                ..
            } => {
                cmd.arg(*observed).arg("purge").arg(*id).arg(tombstone_ms);
                let (entity, index) = (fallback.entity_keys.len(), fallback.index_keys.len());
                // One data argument: the tombstone version.
                cmd.arg(&[entity, 0, index, 0, 1][..]).arg("[]").arg("[]");
                cmd.arg(tombstone.unwrap_or(0));
            }
        }
    }
    cmd
}

/// How many keys a record has besides its meta.
fn record_keys(record: &Record<'_>) -> usize {
    match record {
        Record::Plan { plan, .. } => match &plan.action {
            Action::Upsert(p) => {
                p.strings.len() + p.hashes.len() + p.sorted_sets.len() + p.geos.len()
            }
            Action::Delete { fallback } => fallback.entity_keys.len() + fallback.index_keys.len(),
        },
        Record::Absent { .. } => 1,
        Record::Invalidate { fallback, .. } | Record::Purge { fallback, .. } => {
            fallback.entity_keys.len() + fallback.index_keys.len()
        }
    }
}

/// The total length of a record's string values (the document JSON).
fn record_strings_len(record: &Record<'_>) -> usize {
    match record {
        Record::Plan { plan, .. } => match &plan.action {
            Action::Upsert(p) => p.strings.iter().map(|s| s.value.len()).sum(),
            Action::Delete { .. } => 0,
        },
        Record::Absent { .. } | Record::Invalidate { .. } | Record::Purge { .. } => 0,
    }
}

/// Appends one argument written by `arg`.
fn write(cmd: &mut Cmd, arg: impl FnOnce(&mut dyn Write) -> io::Result<()>) {
    // Writing to the command's Vec cannot fail.
    arg(&mut cmd.writer_for_next_arg()).expect("writing to memory cannot fail");
}

/// The header (version, op, member, TTL, S, H, Z, G, D, keys, idx) and data of one plan.
fn write_plan(
    cmd: &mut Cmd,
    layout: &KeyLayout,
    plan: &Plan,
    mode: Mode,
    geo_scores: &[u64],
    tombstone_ms: u128,
) {
    cmd.arg(plan.version);
    match &plan.action {
        Action::Upsert(p) => {
            let op = match mode {
                Mode::Event => "upsert",
                Mode::Fill => "fill",
            };
            cmd.arg(op).arg(&plan.id).arg(tombstone_ms);
            let data = 2 * p.strings.len()
                + p.hashes
                    .iter()
                    .map(|h| 1 + 2 * h.fields.len())
                    .sum::<usize>()
                + p.sorted_sets.len()
                + geo_scores.len();
            cmd.arg(p.strings.len())
                .arg(p.hashes.len())
                .arg(p.sorted_sets.len())
                .arg(p.geos.len())
                .arg(data);
            write_entity_keys(&mut cmd.writer_for_next_arg(), layout, p);
            write_index_keys(&mut cmd.writer_for_next_arg(), layout, p);
            for s in &p.strings {
                // 0 = no expiry; a configured TTL is at least one second.
                cmd.arg(&s.value).arg(s.ttl.map_or(0, millis));
            }
            for hash in &p.hashes {
                cmd.arg(hash.fields.len());
                for (field, value) in &hash.fields {
                    cmd.arg(field).arg(value);
                }
            }
            // Floats are written in their shortest form that parses back to the same number.
            for z in &p.sorted_sets {
                cmd.arg(z.score);
            }
            // An integer, as GEOADD passes it to ZADD: the same text, so the same double.
            for score in geo_scores {
                cmd.arg(*score);
            }
        }
        Action::Delete { fallback } => {
            cmd.arg("delete").arg(&plan.id).arg(tombstone_ms);
            // Entity keys travel as "strings" and index keys as "sorted sets": a delete only
            // needs the two ranges. No data.
            let (entity, index) = (fallback.entity_keys.len(), fallback.index_keys.len());
            cmd.arg(&[entity, 0, index, 0, 0][..]).arg("[]").arg("[]");
        }
    }
}

/// The JSON list an upsert's meta keeps as `keys`: the full entity keys of `p`, sorted.
pub(super) fn write_entity_keys(out: &mut dyn Write, layout: &KeyLayout, p: &Projections) {
    let strings = p.strings.iter().map(|s| s.key.as_str());
    write_sorted(
        out,
        layout,
        strings.chain(p.hashes.iter().map(|h| h.key.as_str())),
    );
}

/// The JSON list an upsert's meta keeps as `idx`: the full index keys of `p`, sorted.
pub(super) fn write_index_keys(out: &mut dyn Write, layout: &KeyLayout, p: &Projections) {
    let zsets = p.sorted_sets.iter().map(|z| z.key.as_str());
    write_sorted(
        out,
        layout,
        zsets.chain(p.geos.iter().map(|g| g.key.as_str())),
    );
}

fn write_sorted<'a>(out: &mut dyn Write, layout: &KeyLayout, keys: impl Iterator<Item = &'a str>) {
    layout
        .write_key_list(out, &sorted(keys))
        .expect("writing to memory cannot fail");
}

/// The `GEOADD` score of each geo membership of an upsert plan (none for a delete); `None` if a
/// point is outside what Redis can index (the planner already refuses those).
pub(super) fn geo_scores(plan: &Plan) -> Option<Vec<u64>> {
    match &plan.action {
        Action::Upsert(p) => p.geos.iter().map(|g| geo::score(g.lon, g.lat)).collect(),
        Action::Delete { .. } => Some(Vec::new()),
    }
}

/// `keys` sorted and without duplicates: the same list as the planner's
/// `entity_keys()` / `index_keys()` sets, without building a set per event.
fn sorted<'a>(keys: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut keys: Vec<&str> = keys.collect();
    keys.sort_unstable();
    keys.dedup();
    keys
}

/// At least 1 ms: `PX 0` is an error and a zero TTL is never meant.
pub(super) fn millis(ttl: Duration) -> u128 {
    ttl.as_millis().max(1)
}

/// One record's reply: its outcome, or the error Redis refused its writes with.
pub(super) type RecordReply = Result<ApplyOutcome, RedisError>;

/// The script's reply to a call of `records` records.
pub(super) enum CallReply {
    /// One entry per record.
    Records(Vec<RecordReply>),
    /// The guard failed: a collection's generations changed; nothing was written.
    GenerationChanged,
}

/// Decodes the script's reply; `None` for a shape the script never returns.
pub(super) fn replies(reply: Value, records: usize) -> Option<CallReply> {
    let items = match reply {
        Value::Array(items) => items,
        Value::SimpleString(status) if status == "generation" => {
            return Some(CallReply::GenerationChanged)
        }
        _ => return None,
    };
    if items.len() != records {
        return None;
    }
    items
        .into_iter()
        .map(|item| match item {
            Value::ServerError(err) => Some(Err(err.into())),
            other => outcome(&other).map(Ok),
        })
        .collect::<Option<Vec<_>>>()
        .map(CallReply::Records)
}

fn outcome(reply: &Value) -> Option<ApplyOutcome> {
    let text = match reply {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(text) => text.as_bytes(),
        _ => return None,
    };
    match text {
        b"applied" => Some(ApplyOutcome::Applied),
        // An invalidation, like a delete, leaves every structure.
        b"deleted" | b"invalidated" => Some(ApplyOutcome::Deleted),
        b"stale" => Some(ApplyOutcome::Stale),
        b"absent" => Some(ApplyOutcome::Absent),
        _ => None,
    }
}
