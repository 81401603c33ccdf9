//! Operators' invalidation: removes entities' cache entries and index memberships from every
//! generation their collection is written to, keeping their versions (an older event still
//! cannot come back); the next read populates them again at the store's version.

use cacheflow_shared::cache::redis::generations::active_key;
use cacheflow_shared::cache::redis::glob_escape;
use cacheflow_shared::cache::{CacheError, CacheErrorKind, KeyLayout};
use cacheflow_shared::document::is_valid_id;

use super::redis_reads::RedisUnavailable;
use super::Reader;

/// Metas asked for per `SCAN` page; each page is invalidated in one call.
const SCAN_PAGE: usize = 1_000;

#[derive(Debug, thiserror::Error)]
pub enum InvalidateError {
    /// Redis is unreachable or timed out: retry later.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis refused the change in a way a retry will not fix.
    #[error("{0}")]
    Failed(CacheError),
}

impl From<CacheError> for InvalidateError {
    fn from(err: CacheError) -> Self {
        match err.kind() {
            CacheErrorKind::Unavailable => InvalidateError::Unavailable(err.to_string()),
            _ => InvalidateError::Failed(err),
        }
    }
}

impl From<RedisUnavailable> for InvalidateError {
    fn from(err: RedisUnavailable) -> Self {
        InvalidateError::Unavailable(err.0)
    }
}

impl Reader {
    /// Invalidates `ids` of `collection`; returns how many entities were cleared.
    pub async fn invalidate(
        &self,
        collection: &str,
        ids: &[String],
    ) -> Result<usize, InvalidateError> {
        let writer = self.populator.writer().await.ok_or_else(not_connected)?;
        let cleared = writer.invalidate(collection, ids).await?;
        // This instance's near-cache too; the others' entries expire within max_staleness.
        self.flush_near_cache();
        Ok(cleared)
    }

    /// Invalidates every entity the active generation of `collection` knows (has a meta for),
    /// one `SCAN` page at a time, so memory stays flat whatever the collection's size. The
    /// other generations written (a rebuild's, the previous one) are covered too: each page is
    /// invalidated in every generation. Entities written meanwhile may or may not be cleared.
    pub async fn invalidate_collection(&self, collection: &str) -> Result<usize, InvalidateError> {
        let writer = self.populator.writer().await.ok_or_else(not_connected)?;
        // Read the active generation now rather than from the readers' view, which may be one
        // refresh interval behind a switch.
        let active = self
            .redis
            .get(&active_key(writer.key_prefix(), collection))
            .await?
            .map(|raw| String::from_utf8_lossy(&raw).into_owned())
            .unwrap_or_default();
        let layout = KeyLayout::new(format!("{}{active}", writer.key_prefix()));
        let metas = layout.meta(collection, "");
        let pattern = format!("{}*", glob_escape(&metas));
        let (mut cursor, mut cleared) = (0, 0);
        loop {
            let (next, keys) = self.redis.scan(cursor, &pattern, SCAN_PAGE).await?;
            let mut ids: Vec<String> = keys
                .iter()
                .filter_map(|key| key.strip_prefix(metas.as_bytes()))
                .filter_map(|id| std::str::from_utf8(id).ok())
                // A meta of another collection whose name extends this one's cannot be an id.
                .filter(|id| is_valid_id(id))
                .map(str::to_owned)
                .collect();
            // SCAN may return a key twice; within a page that would count it twice.
            ids.sort_unstable();
            ids.dedup();
            if !ids.is_empty() {
                cleared += writer.invalidate(collection, &ids).await?;
            }
            if next == 0 {
                self.flush_near_cache();
                return Ok(cleared);
            }
            cursor = next;
        }
    }
}

fn not_connected() -> InvalidateError {
    InvalidateError::Unavailable("cannot connect the cache writer".into())
}
