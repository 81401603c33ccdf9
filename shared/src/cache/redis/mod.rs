//! The Redis adapter of the cache-writer port.
//!
//! - `keys`: the key layout (prefix, per-entity meta hash).
//! - [`generations`]: which generation (key prefix) each collection is read from and written to.
//! - `script`: the Lua script (`apply.lua`) and how plans become its `EVALSHA` arguments.
//! - `geo`: the score `GEOADD` would give a point, so the script writes geo members with `ZADD`.
//!
//! - `bulk`: batches of [`MIN_BULK`] records or more first try optimistic `WATCH`/`MULTI`/`EXEC`
//!   transactions that decide each record as the script would and write it with plain commands;
//!   what they cannot decide or write goes through the script.
//!
//! A batch is planned in Rust, then sent as one pipeline of `EVALSHA` calls, each applying a
//! chunk of up to [`CHUNK_RECORDS`] events in order: one round trip per batch, one script call
//! per chunk instead of per event, and each event's outcome (or refusal) reported on its own.
//! Each entity's change is atomic (the whole chunk is) and version-checked inside Redis, so
//! concurrent workers, redeliveries and out-of-order events cannot regress it. Each event is
//! written to every generation its collection currently has writers for (see [`generations`]).

mod bulk;
pub mod generations;
mod geo;
mod keys;
mod script;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, RedisResult, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use tracing::instrument;

pub use bulk::{unchecked_writes, BulkCounts, BulkFiller, LiveDocument, BULK_RECORDS};
use bulk::{TxConnections, MIN_BULK};
pub use keys::{glob_escape, KeyLayout};

/// What a read key holds for an entity the store said is absent (a cached miss). Documents are
/// JSON objects, so an empty string can never be one.
pub const ABSENT_MARKER: &[u8] = b"";

/// The score `GEOADD` gives the point (`lon`, `lat`), which is what the apply script writes for a
/// geo membership (`None` outside what Redis indexes); the auditor compares memberships with it.
pub fn geo_score(lon: f64, lat: f64) -> Option<u64> {
    geo::score(lon, lat)
}

use super::{
    plan, read_key_template, ApplyOutcome, CacheError, CacheErrorKind, CacheWriter, Fallback, Plan,
    StoreState,
};
use crate::config::Settings;
use crate::event::Event;
use crate::pipeline::Pipeline;
use crate::redact::SecretUrl;
use generations::{GenerationCache, Targets};
use script::{CallReply, Mode, Record, RecordReply, CHUNK_RECORDS};

/// How many times a call is planned again because a rebuild changed a collection's generations
/// meanwhile; switches are rare, so more than a few in a row means something keeps flapping them.
const GENERATION_ATTEMPTS: usize = 5;

#[derive(Debug, Clone)]
pub struct RedisWriterOptions {
    /// Prepended to every key, meta keys included.
    pub key_prefix: String,
    /// How long a delete's tombstone (its version) is kept.
    pub tombstone_ttl: Duration,
    /// Deadline for connecting and for each call (a whole pipelined batch is one call).
    pub timeout: Duration,
}

impl RedisWriterOptions {
    pub fn from_settings(settings: &Settings) -> Self {
        Self {
            key_prefix: settings.worker.key_prefix.clone(),
            tombstone_ttl: settings.worker.tombstone_ttl(),
            timeout: settings.redis.timeout(),
        }
    }
}

#[derive(Clone)]
pub struct RedisCacheWriter {
    /// For the bulk transactions' own connections.
    client: ::redis::Client,
    tx_connections: Arc<TxConnections>,
    conn: ConnectionManager,
    pipeline: Arc<Pipeline>,
    /// The empty generation's layout: the configured key prefix alone.
    layout: KeyLayout,
    generations: Arc<GenerationCache>,
    /// Set by [`pinned`](Self::pinned): write this generation only.
    pin: Option<Arc<KeyLayout>>,
    tombstone_ttl: Duration,
    timeout: Duration,
    script: Script,
}

impl RedisCacheWriter {
    /// Connects (within the timeout) and loads the script. Later disconnections are handled by
    /// the connection manager, which reconnects on the next call; the script is reloaded
    /// whenever Redis answers `NOSCRIPT` (after a restart or `SCRIPT FLUSH`).
    pub async fn connect(
        url: &SecretUrl,
        pipeline: Arc<Pipeline>,
        options: RedisWriterOptions,
    ) -> Result<Self, CacheError> {
        let context = format!("connecting to Redis at {url}");
        let client = ::redis::Client::open(url.expose())
            .map_err(|err| CacheError::new(CacheErrorKind::Fatal, format!("{context}: {err}")))?;
        // Few quick reconnect attempts per call: the caller's backoff does the long waiting, and
        // a call must come back within its timeout either way.
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(options.timeout))
            .set_response_timeout(Some(options.timeout))
            .set_number_of_retries(1)
            .set_max_delay(options.timeout);
        let conn = within(options.timeout, &context, async {
            ConnectionManager::new_with_config(client.clone(), config)
                .await
                .map_err(|err| CacheError::from_redis(&context, err))
        })
        .await?;
        let writer = Self {
            client,
            tx_connections: Arc::default(),
            conn,
            pipeline,
            layout: KeyLayout::new(options.key_prefix.clone()),
            generations: Arc::new(GenerationCache::new(options.key_prefix)),
            pin: None,
            tombstone_ttl: options.tombstone_ttl,
            timeout: options.timeout,
            script: script::script(),
        };
        writer.load_script().await?;
        Ok(writer)
    }

    /// The layout of the empty generation (the configured key prefix alone).
    pub fn layout(&self) -> &KeyLayout {
        &self.layout
    }

    /// The configured key prefix every generation lives under.
    pub fn key_prefix(&self) -> &str {
        self.generations.key_prefix()
    }

    /// A connection to the same Redis, for the operator commands' own reads.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    pub fn pipeline(&self) -> &Arc<Pipeline> {
        &self.pipeline
    }

    /// A writer that writes generation `generation` only (a rebuild filling its new generation),
    /// still refusing to write once that generation is no longer one its collection's writers
    /// write (the rebuild was abandoned or replaced).
    pub fn pinned(&self, generation: &str) -> Self {
        let mut pinned = self.clone();
        pinned.pin = Some(Arc::new(KeyLayout::new(format!(
            "{}{generation}",
            self.key_prefix()
        ))));
        pinned
    }

    async fn load_script(&self) -> Result<(), CacheError> {
        let mut conn = self.conn.clone();
        within(self.timeout, "SCRIPT LOAD", async {
            self.script
                .load_async(&mut conn)
                .await
                .map(drop)
                .map_err(|err| CacheError::from_redis("SCRIPT LOAD", err))
        })
        .await
    }

    /// Runs the commands as one pipeline; one result per command.
    async fn run(
        &self,
        commands: impl IntoIterator<Item = Cmd>,
    ) -> Result<Vec<RedisResult<Value>>, CacheError> {
        let mut pipe = ::redis::pipe();
        // Per-command results: one chunk's NOSCRIPT must not hide the others' outcomes.
        pipe.ignore_errors();
        for cmd in commands {
            pipe.add_command(cmd);
        }
        let mut conn = self.conn.clone();
        within(self.timeout, "applying a batch", async {
            pipe.query_async(&mut conn)
                .await
                .map_err(|err| CacheError::from_redis("applying a batch", err))
        })
        .await
    }
}

#[async_trait]
impl CacheWriter for RedisCacheWriter {
    #[instrument(skip_all, fields(events = events.len()))]
    async fn apply(&self, events: &[Event]) -> Result<Vec<ApplyOutcome>, CacheError> {
        self.apply_events(events, Mode::Event).await
    }

    #[instrument(skip_all, fields(collection, id))]
    async fn fill(
        &self,
        collection: &str,
        id: &str,
        state: StoreState,
        negative_ttl: Duration,
    ) -> Result<ApplyOutcome, CacheError> {
        match state {
            StoreState::Live { version, document } => {
                let event = Event::upsert(collection, id, version, document);
                let mut outcomes = self
                    .apply_events(std::slice::from_ref(&event), Mode::Fill)
                    .await?;
                Ok(outcomes.pop().expect("one outcome per event"))
            }
            StoreState::Absent { latest_version } => {
                let template = self
                    .pipeline
                    .collection(collection)
                    .and_then(read_key_template)
                    .ok_or_else(|| CacheError::unknown_collection(collection))?;
                let read_key = template.render(id, &Default::default())?;
                let mut outcomes = self
                    .execute_all(&[collection], |targets, batch| {
                        batch.group(self.layouts(&targets[collection]).map(|layout| {
                            Record::Absent {
                                collection,
                                id,
                                read_key: &read_key,
                                version: latest_version,
                                ttl: negative_ttl,
                                layout,
                            }
                        }));
                    })
                    .await?;
                Ok(outcomes.swap_remove(0))
            }
        }
    }
}

impl RedisCacheWriter {
    /// Populates from store reads (backfill, the auditor's repairs): each event an upsert at the
    /// store's version, written like [`CacheWriter::fill`] (the same version may be written
    /// again, a newer one or a tombstone never overwritten), in one call.
    pub async fn fill_events(&self, events: &[Event]) -> Result<Vec<ApplyOutcome>, CacheError> {
        self.apply_events(events, Mode::Fill).await
    }

    async fn apply_events(
        &self,
        events: &[Event],
        mode: Mode,
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        let planned: Vec<Result<Planned, CacheError>> = events
            .iter()
            .map(|event| {
                let plan = match self.pipeline.collection(&event.collection) {
                    None => Err(CacheError::unknown_collection(&event.collection)),
                    Some(collection) => plan(collection, event).map_err(CacheError::from),
                };
                with_geo_scores(plan)
            })
            .collect();
        let plans: Vec<&Planned> = planned.iter().filter_map(|p| p.as_ref().ok()).collect();
        let applied = if plans.len() >= MIN_BULK {
            self.apply_in_bulk(&plans, mode).await?.0
        } else {
            self.apply_plans(&plans, mode).await?
        };
        Ok(merge_outcomes(planned, applied))
    }

    /// Applies `plans` through the script, in order, in one call; one outcome per plan.
    async fn apply_plans(
        &self,
        plans: &[&Planned],
        mode: Mode,
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        if plans.is_empty() {
            return Ok(Vec::new());
        }
        let mut collections: Vec<&str> = plans.iter().map(|(p, _)| p.collection.as_str()).collect();
        collections.sort_unstable();
        collections.dedup();
        self.execute_all(&collections, |targets, batch| {
            for (plan, geo_scores) in plans.iter().copied() {
                let layouts = self.layouts(&targets[&plan.collection]);
                batch.group(layouts.map(|layout| Record::Plan {
                    plan,
                    mode,
                    geo_scores,
                    layout,
                }));
            }
        })
        .await
    }

    /// Removes the entries and index memberships of `ids` from every generation `collection` is
    /// written to, keeping their versions: an older event still cannot come back, and the next
    /// read populates them again at the store's version. Returns how many entities were cleared.
    pub async fn invalidate(&self, collection: &str, ids: &[String]) -> Result<usize, CacheError> {
        let spec = self
            .pipeline
            .collection(collection)
            .ok_or_else(|| CacheError::unknown_collection(collection))?;
        let fallbacks: Vec<Fallback> = ids.iter().map(|id| plan::fallback(spec, id)).collect();
        let outcomes = self
            .execute_all(&[collection], |targets, batch| {
                for (id, fallback) in ids.iter().zip(&fallbacks) {
                    batch.group(self.layouts(&targets[collection]).map(|layout| {
                        Record::Invalidate {
                            collection,
                            id,
                            fallback,
                            layout,
                        }
                    }));
                }
            })
            .await?;
        Ok(outcomes
            .iter()
            .filter(|o| matches!(o, ApplyOutcome::Deleted))
            .count())
    }

    /// Clears an entity the store does not hold live from the active generation (or the pinned
    /// one), if the cache still holds version `observed` there (0 = no meta): the auditor's
    /// repair of an orphan. `tombstone` is the store's tombstone version, kept as a tombstone;
    /// `None` if the store never had the entity. [`ApplyOutcome::Stale`] when the cache moved on
    /// meanwhile.
    pub async fn purge(
        &self,
        collection: &str,
        id: &str,
        observed: u64,
        tombstone: Option<u64>,
    ) -> Result<ApplyOutcome, CacheError> {
        let spec = self
            .pipeline
            .collection(collection)
            .ok_or_else(|| CacheError::unknown_collection(collection))?;
        let fallback = plan::fallback(spec, id);
        let mut outcomes = self
            .execute_all(&[collection], |targets, batch| {
                let layout = self.layouts(&targets[collection]).next();
                batch.group(layout.map(|layout| Record::Purge {
                    collection,
                    id,
                    observed,
                    tombstone,
                    fallback: &fallback,
                    layout,
                }));
            })
            .await?;
        Ok(outcomes.swap_remove(0))
    }

    /// The layouts a record of a collection with `targets` is written to: the pinned one, or
    /// every generation its writers write, the active one first. (Per event on the worker's
    /// path: borrowed, nothing allocated.)
    fn layouts<'t>(&'t self, targets: &'t Targets) -> impl Iterator<Item = Arc<KeyLayout>> + 't {
        self.write_layouts(targets).iter().cloned()
    }

    /// [`layouts`](Self::layouts), borrowed.
    fn write_layouts<'t>(&'t self, targets: &'t Targets) -> &'t [Arc<KeyLayout>] {
        match &self.pin {
            Some(pin) => std::slice::from_ref(pin),
            None => &targets.layouts[..],
        }
    }

    /// The current generations of `collections`, checked against the pin (read again once if
    /// the cached view predates the pinned generation).
    async fn targets_checked(
        &self,
        collections: &[&str],
    ) -> Result<HashMap<String, Arc<Targets>>, CacheError> {
        let mut retried = false;
        loop {
            let mut conn = self.conn.clone();
            let targets = within(self.timeout, "reading the cache generations", async {
                self.generations.targets(&mut conn, collections).await
            })
            .await?;
            match self.check_pin(&targets) {
                Ok(()) => return Ok(targets),
                Err(err) if retried => return Err(err),
                Err(_) => {
                    retried = true;
                    self.generations.forget();
                }
            }
        }
    }

    /// A pinned writer's generation must still be written by its collection's writers.
    fn check_pin(&self, targets: &HashMap<String, Arc<Targets>>) -> Result<(), CacheError> {
        let Some(pin) = &self.pin else {
            return Ok(());
        };
        for (collection, targets) in targets {
            if !targets
                .layouts
                .iter()
                .any(|layout| layout.prefix() == pin.prefix())
            {
                return Err(CacheError::new(
                    CacheErrorKind::Fatal,
                    format!(
                        "generation `{}` of `{collection}` is no longer written (another \
                         rebuild replaced it, or it was abandoned)",
                        pin.prefix()
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Builds the records with `build` from the collections' current generations and applies
    /// them; when a rebuild changed a collection's generations meanwhile, reads them again and
    /// builds again (applying twice is harmless: the second time is stale). Returns the outcome
    /// of the first record of each group `build` made, i.e. in the active (or pinned)
    /// generation; a refusal in another generation is logged.
    async fn execute_all<'a>(
        &self,
        collections: &[&str],
        build: impl Fn(&HashMap<String, Arc<Targets>>, &mut Batch<'a>),
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        for _ in 0..GENERATION_ATTEMPTS {
            let targets = self.targets_checked(collections).await?;
            let mut batch = Batch::default();
            build(&targets, &mut batch);
            if let Some(outcomes) = self.execute(&targets, &batch.records).await? {
                return Ok(batch.firsts(outcomes));
            }
            tracing::info!(?collections, "cache generations changed; planning again");
            self.generations.forget();
        }
        Err(CacheError::new(
            CacheErrorKind::Unavailable,
            "the cache generations kept changing while applying",
        ))
    }

    /// Applies `records` in order, [`CHUNK_RECORDS`] per `EVALSHA`, every chunk in one pipeline
    /// (one round trip); one outcome per record, or `None` if a chunk's generation guard failed.
    /// A record Redis refused with `WRONGTYPE` comes back [`ApplyOutcome::Rejected`]; any other
    /// error fails the whole call: retryable ones are `Unavailable` and the caller retries
    /// (re-applying is idempotent), others are `Fatal`.
    async fn execute(
        &self,
        targets: &HashMap<String, Arc<Targets>>,
        records: &[Record<'_>],
    ) -> Result<Option<Vec<ApplyOutcome>>, CacheError> {
        let sha = self.script.get_hash();
        let chunks: Vec<&[Record<'_>]> = records.chunks(CHUNK_RECORDS).collect();
        let mut replies: Vec<Option<Vec<RecordReply>>> =
            std::iter::repeat_with(|| None).take(chunks.len()).collect();
        let mut pending: Vec<usize> = (0..chunks.len()).collect();
        // Two rounds at most: the second only if Redis lost the script (restart, SCRIPT FLUSH).
        for round in 0..2 {
            if pending.is_empty() {
                break;
            }
            let commands = pending.iter().map(|&chunk| {
                let mut collections: Vec<&str> =
                    chunks[chunk].iter().map(Record::collection).collect();
                collections.sort_unstable();
                collections.dedup();
                let guards: Vec<_> = collections.iter().map(|c| targets[*c].guard()).collect();
                script::evalsha(sha, &guards, chunks[chunk], self.tombstone_ttl)
            });
            let results = self.run(commands).await?;
            let mut missing_script = Vec::new();
            for (chunk, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(reply) => {
                        let expected = chunks[chunk].len();
                        match script::replies(reply, expected) {
                            Some(CallReply::Records(decoded)) => replies[chunk] = Some(decoded),
                            Some(CallReply::GenerationChanged) => return Ok(None),
                            None => return Err(CacheError::new(
                                CacheErrorKind::Fatal,
                                "the apply script returned a reply this build does not understand",
                            )),
                        }
                    }
                    Err(err) if err.kind() == ServerErrorKind::NoScript.into() => {
                        missing_script.push(chunk);
                    }
                    // The call as a whole failed (the script's own loop, or Redis refusing to run
                    // it): not one event's fault, so no event is dead-lettered for it.
                    Err(err) => return Err(CacheError::from_redis("applying a batch", err)),
                }
            }
            if !missing_script.is_empty() && round == 0 {
                tracing::info!("redis lost the apply script; loading it again");
                self.load_script().await?;
            }
            pending = missing_script;
        }
        if !pending.is_empty() {
            return Err(CacheError::new(
                CacheErrorKind::Unavailable,
                "redis keeps answering NOSCRIPT right after SCRIPT LOAD",
            ));
        }
        let mut outcomes = Vec::with_capacity(records.len());
        for reply in replies.into_iter().flatten().flatten() {
            outcomes.push(match reply {
                Ok(outcome) => outcome,
                Err(err) => match CacheError::from_redis_for_event(err) {
                    err if err.kind() == CacheErrorKind::Poison => ApplyOutcome::Rejected(err),
                    // Transient (OOM, ...): retry the whole call. Anything else would hit every
                    // event alike: stopping beats dead-lettering the whole stream.
                    err => return Err(err),
                },
            });
        }
        Ok(Some(outcomes))
    }
}

/// The records of one call, in groups: one group per entity, one record per generation written.
#[derive(Default)]
struct Batch<'a> {
    records: Vec<Record<'a>>,
    /// Where each group starts in `records`.
    starts: Vec<usize>,
}

impl<'a> Batch<'a> {
    fn group(&mut self, records: impl IntoIterator<Item = Record<'a>>) {
        self.starts.push(self.records.len());
        self.records.extend(records);
    }

    /// The outcome of each group: its first record's.
    fn firsts(&self, outcomes: Vec<ApplyOutcome>) -> Vec<ApplyOutcome> {
        let mut firsts = Vec::with_capacity(self.starts.len());
        let mut group = 0;
        for (n, outcome) in outcomes.into_iter().enumerate() {
            if self.starts.get(group) == Some(&n) {
                firsts.push(outcome);
                group += 1;
            } else if let ApplyOutcome::Rejected(err) = outcome {
                tracing::warn!(%err, "a write to a generation being built or retired was refused");
            }
        }
        firsts
    }
}

/// A plan and the `GEOADD` score of each of its geo memberships.
type Planned = (Plan, Vec<u64>);

/// One outcome per record planned: `applied` (one per plan, in order) fills the gaps the records
/// that could not be planned leave as rejected.
fn merge_outcomes(
    planned: Vec<Result<Planned, CacheError>>,
    applied: Vec<ApplyOutcome>,
) -> Vec<ApplyOutcome> {
    let mut applied = applied.into_iter();
    planned
        .into_iter()
        .map(|planned| match planned {
            Ok(_) => applied.next().expect("one outcome per plan"),
            Err(err) => ApplyOutcome::Rejected(err),
        })
        .collect()
}

/// `plan` with its geo scores, or why it cannot be applied.
fn with_geo_scores(plan: Result<Plan, CacheError>) -> Result<Planned, CacheError> {
    let plan = plan?;
    match script::geo_scores(&plan) {
        Some(scores) => Ok((plan, scores)),
        None => Err(CacheError::new(
            CacheErrorKind::Poison,
            "a location is outside what Redis geo indexes accept",
        )),
    }
}

/// Bounds `call` by `timeout`, so no Redis call can hang the worker.
async fn within<T>(
    timeout: Duration,
    what: &str,
    call: impl std::future::Future<Output = Result<T, CacheError>>,
) -> Result<T, CacheError> {
    tokio::time::timeout(timeout, call)
        .await
        .unwrap_or_else(|_| Err(CacheError::timeout(what, timeout)))
}
