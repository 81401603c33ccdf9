//! Cache generations: which key prefix each collection's cache lives under.
//!
//! A collection's keys live under `<key_prefix><generation>`, where `<generation>` is the
//! collection's *active* generation, kept in Redis at `<key_prefix>cacheflow:gen:<collection>`
//! (absent = the empty generation). Readers read the active one. Writers (workers, the API's
//! populate, backfill, replay) write the active one and every *extra* generation listed at
//! `<key_prefix>cacheflow:gen:<collection>:writes` (a JSON list): a rebuild's generation while it
//! is built, the previous one while readers move off it after a switch.
//!
//! Writers cache both values, and every apply call carries them as a guard that the script
//! checks before writing anything; when they changed, nothing is written and the writer reloads
//! them and plans again. So a switch takes effect for every writer at the very next call, with
//! no polling and no window in which an event reaches only the old generation.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use ::redis::aio::ConnectionManager;
use ::redis::{AsyncCommands, Script};
use tokio_util::sync::CancellationToken;

use super::keys::KeyLayout;
use crate::cache::{CacheError, CacheErrorKind};

/// `<key_prefix>cacheflow:gen:<collection>`: the active generation's prefix.
pub fn active_key(key_prefix: &str, collection: &str) -> String {
    format!("{key_prefix}cacheflow:gen:{collection}")
}

/// `<key_prefix>cacheflow:gen:<collection>:writes`: the extra generations writers also write.
pub fn writes_key(key_prefix: &str, collection: &str) -> String {
    format!("{key_prefix}cacheflow:gen:{collection}:writes")
}

/// The counter numbering a collection's generations.
fn sequence_key(key_prefix: &str, collection: &str) -> String {
    format!("{key_prefix}cacheflow:gen:{collection}:seq")
}

/// The prefix of a collection's generation number `n`: `gen:<collection>:<n>:`.
pub fn generation_prefix(collection: &str, n: u64) -> String {
    format!("gen:{collection}:{n}:")
}

/// A collection's generations as Redis holds them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GenerationState {
    /// The generation readers read ("" = none: keys directly under the key prefix).
    pub active: String,
    /// Generations writers write besides the active one.
    pub extra: Vec<String>,
}

impl GenerationState {
    /// Every generation writers write, the active one first.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.active.as_str()).chain(self.extra.iter().map(String::as_str))
    }

    fn from_raw(collection: &str, active: &str, writes: &str) -> Result<Self, CacheError> {
        let extra = if writes.is_empty() {
            Vec::new()
        } else {
            serde_json::from_str(writes).map_err(|err| {
                CacheError::new(
                    CacheErrorKind::Fatal,
                    format!(
                        "the write generations of `{collection}` are not a JSON list of \
                         strings ({err}): {writes:?}"
                    ),
                )
            })?
        };
        Ok(Self {
            active: active.to_owned(),
            extra,
        })
    }
}

/// One collection's generations as a writer planned with them.
#[derive(Debug)]
pub(super) struct Targets {
    active_key: String,
    writes_key: String,
    raw_active: String,
    raw_writes: String,
    /// The key layout of each target, the active generation first.
    pub layouts: Vec<Arc<KeyLayout>>,
}

impl Targets {
    pub fn guard(&self) -> Guard<'_> {
        Guard {
            active_key: &self.active_key,
            writes_key: &self.writes_key,
            active: &self.raw_active,
            writes: &self.raw_writes,
        }
    }
}

/// What the apply script checks before writing a collection: the two keys and the values the
/// caller planned with.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard<'a> {
    pub active_key: &'a str,
    pub writes_key: &'a str,
    pub active: &'a str,
    pub writes: &'a str,
}

/// A writer's cached view of the generations of the collections it wrote.
#[derive(Debug)]
pub(super) struct GenerationCache {
    key_prefix: String,
    known: Mutex<HashMap<String, Arc<Targets>>>,
}

impl GenerationCache {
    pub fn new(key_prefix: String) -> Self {
        Self {
            key_prefix,
            known: Mutex::default(),
        }
    }

    pub fn key_prefix(&self) -> &str {
        &self.key_prefix
    }

    /// The targets of each collection, read from Redis (one round trip) for those not cached.
    pub async fn targets(
        &self,
        conn: &mut ConnectionManager,
        collections: &[&str],
    ) -> Result<HashMap<String, Arc<Targets>>, CacheError> {
        let mut found = HashMap::with_capacity(collections.len());
        let mut missing = Vec::new();
        {
            let known = self.known.lock().expect("the generation cache lock");
            for &collection in collections {
                match known.get(collection) {
                    Some(targets) => {
                        found.insert(collection.to_owned(), targets.clone());
                    }
                    None if !missing.contains(&collection) => missing.push(collection),
                    None => {}
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        let keys: Vec<String> = missing
            .iter()
            .flat_map(|c| {
                [
                    active_key(&self.key_prefix, c),
                    writes_key(&self.key_prefix, c),
                ]
            })
            .collect();
        let values: Vec<Option<String>> = conn
            .mget(&keys)
            .await
            .map_err(|err| CacheError::from_redis("reading the cache generations", err))?;
        let mut known = self.known.lock().expect("the generation cache lock");
        for (n, collection) in missing.into_iter().enumerate() {
            let raw_active = values[2 * n].clone().unwrap_or_default();
            let raw_writes = values[2 * n + 1].clone().unwrap_or_default();
            let state = GenerationState::from_raw(collection, &raw_active, &raw_writes)?;
            let layouts = state
                .targets()
                .map(|generation| {
                    Arc::new(KeyLayout::new(format!("{}{generation}", self.key_prefix)))
                })
                .collect();
            let targets = Arc::new(Targets {
                active_key: keys[2 * n].clone(),
                writes_key: keys[2 * n + 1].clone(),
                raw_active,
                raw_writes,
                layouts,
            });
            known.insert(collection.to_owned(), targets.clone());
            found.insert(collection.to_owned(), targets);
        }
        Ok(found)
    }

    /// Drops the cached view: the next call reads the generations again.
    pub fn forget(&self) {
        self.known
            .lock()
            .expect("the generation cache lock")
            .clear();
    }
}

/// Reads a collection's generations.
pub async fn read_state(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    collection: &str,
) -> Result<GenerationState, CacheError> {
    let keys = [
        active_key(key_prefix, collection),
        writes_key(key_prefix, collection),
    ];
    let values: Vec<Option<String>> = conn
        .mget(&keys)
        .await
        .map_err(|err| CacheError::from_redis("reading the cache generations", err))?;
    GenerationState::from_raw(
        collection,
        values[0].as_deref().unwrap_or(""),
        values[1].as_deref().unwrap_or(""),
    )
}

/// Compare-and-set of a collection's generation keys: sets them to `ARGV[3]` / `ARGV[4]` only if
/// they hold `ARGV[1]` / `ARGV[2]` ('' = absent; setting '' deletes the key). Returns 1 if set.
const CAS_SCRIPT: &str = r"
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
if (redis.call('GET', KEYS[2]) or '') ~= ARGV[2] then return 0 end
for i = 1, 2 do
  if ARGV[2 + i] == '' then redis.call('DEL', KEYS[i]) else redis.call('SET', KEYS[i], ARGV[2 + i]) end
end
return 1
";

fn writes_value(extra: &[String]) -> String {
    if extra.is_empty() {
        String::new()
    } else {
        serde_json::to_string(extra).expect("a list of strings serialises")
    }
}

/// Moves a collection from generations `from` to `to` atomically; `false` (and nothing changed)
/// if Redis no longer holds `from`: someone else changed them meanwhile.
pub async fn compare_and_set(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    collection: &str,
    from: &GenerationState,
    to: &GenerationState,
) -> Result<bool, CacheError> {
    let set: i64 = Script::new(CAS_SCRIPT)
        .key(active_key(key_prefix, collection))
        .key(writes_key(key_prefix, collection))
        .arg(&from.active)
        .arg(writes_value(&from.extra))
        .arg(&to.active)
        .arg(writes_value(&to.extra))
        .invoke_async(conn)
        .await
        .map_err(|err| CacheError::from_redis("switching cache generations", err))?;
    Ok(set == 1)
}

/// A fresh generation prefix for `collection`, never used before.
pub async fn next_generation(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    collection: &str,
) -> Result<String, CacheError> {
    let n: u64 = conn
        .incr(sequence_key(key_prefix, collection), 1)
        .await
        .map_err(|err| CacheError::from_redis("numbering a cache generation", err))?;
    Ok(generation_prefix(collection, n))
}

/// The readers' view: each collection's active key layout, refreshed in the background so a
/// reader follows a rebuild's switch within one refresh interval, without a round trip per read.
/// Until the first refresh succeeds (Redis down at start-up) every collection reads the empty
/// generation.
#[derive(Debug, Clone)]
pub struct ActiveLayouts {
    key_prefix: String,
    empty: Arc<KeyLayout>,
    active: Arc<RwLock<HashMap<String, Arc<KeyLayout>>>>,
}

impl ActiveLayouts {
    pub fn new(key_prefix: impl Into<String>) -> Self {
        let key_prefix = key_prefix.into();
        Self {
            empty: Arc::new(KeyLayout::new(key_prefix.clone())),
            key_prefix,
            active: Arc::default(),
        }
    }

    /// The layout `collection` is read from now.
    pub fn layout(&self, collection: &str) -> Arc<KeyLayout> {
        let active = self.active.read().expect("the active layouts lock");
        active
            .get(collection)
            .cloned()
            .unwrap_or_else(|| self.empty.clone())
    }

    /// Reads the active generation of every collection once (one `MGET`, bounded by `timeout`).
    pub async fn refresh(
        &self,
        conn: &mut ConnectionManager,
        collections: &[String],
        timeout: Duration,
    ) -> Result<(), CacheError> {
        let keys: Vec<String> = collections
            .iter()
            .map(|c| active_key(&self.key_prefix, c))
            .collect();
        let values: Vec<Option<String>> = tokio::time::timeout(timeout, conn.mget(&keys))
            .await
            .map_err(|_| CacheError::timeout("reading the active generations", timeout))?
            .map_err(|err| CacheError::from_redis("reading the active generations", err))?;
        let mut active = self.active.write().expect("the active layouts lock");
        for (collection, generation) in collections.iter().zip(values) {
            let generation = generation.unwrap_or_default();
            let current = active.get(collection).map(|l| l.prefix().to_owned());
            let prefix = format!("{}{generation}", self.key_prefix);
            if current.as_deref() != Some(prefix.as_str()) {
                if current.is_some() {
                    tracing::info!(collection, generation, "reads moved to a new generation");
                }
                active.insert(collection.clone(), Arc::new(KeyLayout::new(prefix)));
            }
        }
        Ok(())
    }

    /// Refreshes every `interval` until `stop` is cancelled. Failures are logged at debug level:
    /// while Redis is down the reads bypass it anyway.
    pub async fn follow(
        self,
        mut conn: ConnectionManager,
        collections: Vec<String>,
        interval: Duration,
        timeout: Duration,
        stop: CancellationToken,
    ) {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(err) = self.refresh(&mut conn, &collections, timeout).await {
                tracing::debug!(%err, "cannot read the active generations");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_names() {
        assert_eq!(active_key("", "places"), "cacheflow:gen:places");
        assert_eq!(
            writes_key("t1:", "places"),
            "t1:cacheflow:gen:places:writes"
        );
        assert_eq!(generation_prefix("places", 3), "gen:places:3:");
    }

    #[test]
    fn states_parse_from_what_redis_holds() {
        let state = GenerationState::from_raw("places", "", "").unwrap();
        assert_eq!(state, GenerationState::default());
        assert_eq!(state.targets().collect::<Vec<_>>(), [""]);
        let state =
            GenerationState::from_raw("places", "gen:places:2:", r#"["gen:places:3:"]"#).unwrap();
        assert_eq!(
            state.targets().collect::<Vec<_>>(),
            ["gen:places:2:", "gen:places:3:"]
        );
        let err = GenerationState::from_raw("places", "", "nope").unwrap_err();
        assert_eq!(err.kind(), CacheErrorKind::Fatal);
        assert!(err.to_string().contains("places"), "{err}");
        assert_eq!(writes_value(&[]), "");
        assert_eq!(writes_value(&["a".into()]), r#"["a"]"#);
    }
}
