//! One bulk transaction: `WATCH` the chunk's metas and generation keys, read them, decide each
//! record exactly as the apply script would, and write the decided ones in `MULTI` … `EXEC`.

use std::collections::HashMap;
use std::sync::Arc;

use ::redis::aio::MultiplexedConnection;
use ::redis::{RedisResult, Value};

use super::commands::{write_commands, StoredMeta, Write};
use super::{Candidate, Decision};
use crate::cache::plan::Action;
use crate::cache::redis::generations::Targets;
use crate::cache::redis::script::Mode;
use crate::cache::redis::{KeyLayout, Planned};

/// `WATCH`, read, decide, `MULTI` … `EXEC` (or `UNWATCH`): a decision per record, or `None` if
/// the generations are no longer the ones of `targets`.
pub(super) async fn transaction<'a>(
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
