//! The commands a bulk transaction writes: what the apply script would write for each decided
//! record (an upsert), as plain commands, batched per transaction where Redis allows it (one
//! `MSET`, one `DEL`, one `ZADD` per index key). Also what the operator benchmark's baseline
//! sends ([`unchecked_writes`]).

use ::redis::{Cmd, RedisWrite};

use super::{Candidate, LiveDocument};
use crate::cache::plan::{plan_live, Action};
use crate::cache::redis::{script, with_geo_scores, KeyLayout, Planned};
use crate::cache::CacheError;
use crate::pipeline::Pipeline;

/// What the transaction writes for one record.
#[derive(Debug)]
pub(super) enum Write<'a> {
    /// The cache has no meta for the entity.
    Fresh,
    /// The cache holds an older version (or, populating, this one); `stored` is its meta.
    Update { stored: StoredMeta<'a> },
}

#[derive(Debug)]
pub(super) struct StoredMeta<'a> {
    /// `d`: "1" for a tombstone, "0" for a live entity.
    pub(super) d: Option<&'a str>,
    pub(super) keys: &'a str,
    pub(super) idx: &'a str,
}

/// Adds to `tx` the commands that make each entity of `writes` what the script makes it (see
/// `apply.lua`, an upsert); returns how many. (`MSET` and `SET` leave the same string: a value
/// without expiry.)
pub(super) fn write_commands<'a>(
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
    use crate::document::Document;

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
