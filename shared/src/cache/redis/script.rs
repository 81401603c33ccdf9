//! The versioned-apply Lua script (`apply.lua`, contract in its header and docs/WORKER.md) and
//! the encoding of a [`Plan`] into one `EVALSHA` call.

use std::time::Duration;

use ::redis::{Cmd, Script, Value};

use super::keys::KeyLayout;
use crate::cache::plan::{Action, Plan};
use crate::cache::ApplyOutcome;

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

/// `EVALSHA <sha> <numkeys> KEYS... ARGV...` applying `plan`.
pub(super) fn evalsha(
    sha: &str,
    layout: &KeyLayout,
    plan: &Plan,
    tombstone_ttl: Duration,
    mode: Mode,
) -> Cmd {
    let mut keys: Vec<String> = vec![layout.meta(&plan.collection, &plan.id)];
    // ARGV[1..10]: version, op, member, tombstone TTL, S, H, Z, G, meta keys, meta idx.
    let mut head: Vec<String> = Vec::with_capacity(10);
    let mut tail: Vec<String> = Vec::new();
    head.push(plan.version.to_string());
    let tombstone_ms = tombstone_ttl.as_millis().max(1).to_string();
    match &plan.action {
        Action::Upsert(p) => {
            let op = match mode {
                Mode::Event => "upsert",
                Mode::Fill => "fill",
            };
            head.extend([op.into(), plan.id.clone(), tombstone_ms]);
            head.extend(
                [
                    p.strings.len(),
                    p.hashes.len(),
                    p.sorted_sets.len(),
                    p.geos.len(),
                ]
                .map(|n| n.to_string()),
            );
            head.push(layout.key_list(p.entity_keys()));
            head.push(layout.key_list(p.index_keys()));
            for s in &p.strings {
                keys.push(layout.key(&s.key));
                // '0' = no expiry; a configured TTL is at least one second.
                let ttl = s.ttl.map_or(0, |ttl| ttl.as_millis().max(1));
                tail.extend([s.value.clone(), ttl.to_string()]);
            }
            for hash in &p.hashes {
                keys.push(layout.key(&hash.key));
                tail.push(hash.fields.len().to_string());
                for (field, value) in &hash.fields {
                    tail.extend([field.clone(), value.clone()]);
                }
            }
            for z in &p.sorted_sets {
                keys.push(layout.key(&z.key));
                // Display of f64 is the shortest text that parses back to the same number.
                tail.push(z.score.to_string());
            }
            for geo in &p.geos {
                keys.push(layout.key(&geo.key));
                tail.extend([geo.lon.to_string(), geo.lat.to_string()]);
            }
        }
        Action::Delete { fallback } => {
            head.extend(["delete".into(), plan.id.clone(), tombstone_ms]);
            let (entity, index) = (fallback.entity_keys.len(), fallback.index_keys.len());
            // Entity keys travel as "strings" and index keys as "sorted sets": a delete only
            // needs the two ranges.
            head.extend([entity, 0, index, 0].map(|n| n.to_string()));
            head.extend(["[]".to_owned(), "[]".to_owned()]);
            let all = fallback.entity_keys.iter().chain(&fallback.index_keys);
            keys.extend(all.map(|key| layout.key(key)));
        }
    }
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(sha).arg(keys.len()).arg(keys).arg(head).arg(tail);
    cmd
}

/// Caches a miss: an empty marker under `read_key` for `ttl`, unless the cache knows better.
pub(super) fn evalsha_absent(
    sha: &str,
    layout: &KeyLayout,
    collection: &str,
    id: &str,
    read_key: &str,
    version: u64,
    ttl: Duration,
) -> Cmd {
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(sha)
        .arg(2)
        .arg(layout.meta(collection, id))
        .arg(layout.key(read_key))
        .arg(version.to_string())
        .arg("absent")
        .arg(id)
        .arg(ttl.as_millis().max(1).to_string())
        .arg(&["0", "0", "0", "0", "[]", "[]"][..]);
    cmd
}

/// The script's reply as an outcome; `None` for anything the script never returns.
pub(super) fn outcome(reply: &Value) -> Option<ApplyOutcome> {
    let text = match reply {
        Value::BulkString(bytes) => bytes.as_slice(),
        Value::SimpleString(text) => text.as_bytes(),
        _ => return None,
    };
    match text {
        b"applied" => Some(ApplyOutcome::Applied),
        b"deleted" => Some(ApplyOutcome::Deleted),
        b"stale" => Some(ApplyOutcome::Stale),
        b"absent" => Some(ApplyOutcome::Absent),
        _ => None,
    }
}
