//! Deleting a generation of a collection's keys: every entity key and meta its metas list, every
//! index key they were members of, the backfill checkpoint, and (for a non-empty generation)
//! anything else left under its prefix, such as absent markers. Paged with `SCAN`, so memory
//! holds one page plus the set of index keys.

use std::collections::BTreeSet;

use anyhow::Context as _;
use cacheflow_shared::cache::redis::glob_escape;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;

use super::backfill::checkpoint_key;
use super::Ops;

/// Keys asked for per `SCAN` step and deleted per `UNLINK`.
const PAGE: usize = 1_000;

/// Deletes generation `generation` of `collection`; returns how many keys were removed. The
/// generation must no longer be written or read (a rebuild calls this after its grace period).
pub async fn drop_generation(ops: &Ops, collection: &str, generation: &str) -> anyhow::Result<u64> {
    let mut conn = ops.writer.connection();
    let prefix = format!("{}{generation}", ops.writer.key_prefix());
    let metas = format!(
        "{}cacheflow:meta:{}:*",
        glob_escape(&prefix),
        glob_escape(collection)
    );
    let mut removed = 0;
    let mut index_keys = BTreeSet::new();
    let mut scan = Scan::new(metas);
    while let Some(page) = scan.next(&mut conn).await? {
        if !page.is_empty() {
            removed += drop_entities(&mut conn, &page, &mut index_keys).await?;
        }
    }
    let index_keys: Vec<String> = index_keys.into_iter().collect();
    for keys in index_keys.chunks(PAGE) {
        removed += unlink(&mut conn, keys).await?;
    }
    removed += unlink(&mut conn, &[checkpoint_key(&prefix, collection)]).await?;
    if !generation.is_empty() {
        removed += drop_prefix(&mut conn, &prefix).await?;
    }
    Ok(removed)
}

/// Deletes the entity keys and metas of one page of metas, collecting their index keys.
async fn drop_entities(
    conn: &mut ConnectionManager,
    metas: &[String],
    index_keys: &mut BTreeSet<String>,
) -> anyhow::Result<u64> {
    let mut pipe = redis::pipe();
    for meta in metas {
        pipe.cmd("HMGET").arg(meta).arg("keys").arg("idx");
    }
    let lists: Vec<(Option<String>, Option<String>)> = pipe
        .query_async(conn)
        .await
        .context("reading a generation's metas")?;
    let mut doomed: Vec<String> = metas.to_vec();
    for (keys, idx) in lists {
        doomed.extend(parse_list(keys.as_deref()));
        index_keys.extend(parse_list(idx.as_deref()));
    }
    let mut removed = 0;
    for keys in doomed.chunks(PAGE) {
        removed += unlink(conn, keys).await?;
    }
    Ok(removed)
}

/// Deletes every key under `prefix`.
async fn drop_prefix(conn: &mut ConnectionManager, prefix: &str) -> anyhow::Result<u64> {
    let mut scan = Scan::new(format!("{}*", glob_escape(prefix)));
    let mut removed = 0;
    while let Some(page) = scan.next(conn).await? {
        removed += unlink(conn, &page).await?;
    }
    Ok(removed)
}

/// `SCAN MATCH pattern`, one page per call.
struct Scan {
    pattern: String,
    cursor: u64,
    done: bool,
}

impl Scan {
    fn new(pattern: String) -> Self {
        Self {
            pattern,
            cursor: 0,
            done: false,
        }
    }

    /// The next page (possibly empty), `None` once the scan is complete.
    async fn next(&mut self, conn: &mut ConnectionManager) -> anyhow::Result<Option<Vec<String>>> {
        if self.done {
            return Ok(None);
        }
        let (next, page): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(self.cursor)
            .arg("MATCH")
            .arg(&self.pattern)
            .arg("COUNT")
            .arg(PAGE)
            .query_async(conn)
            .await
            .context("scanning a generation's keys")?;
        self.cursor = next;
        self.done = next == 0;
        Ok(Some(page))
    }
}

async fn unlink(conn: &mut ConnectionManager, keys: &[String]) -> anyhow::Result<u64> {
    if keys.is_empty() {
        return Ok(0);
    }
    conn.unlink(keys)
        .await
        .context("deleting a generation's keys")
}

/// A meta's `keys` / `idx` JSON list; a missing or unreadable one is empty.
fn parse_list(list: Option<&str>) -> Vec<String> {
    list.and_then(|list| serde_json::from_str(list).ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meta_lists_parse_leniently() {
        assert_eq!(parse_list(Some(r#"["a","b"]"#)), ["a", "b"]);
        assert!(parse_list(Some("[]")).is_empty());
        assert!(parse_list(Some("garbage")).is_empty());
        assert!(parse_list(None).is_empty());
    }
}
