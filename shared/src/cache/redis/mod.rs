//! The Redis adapter of the cache-writer port.
//!
//! - `keys`: the key layout (prefix, per-entity meta hash).
//! - `script`: the Lua script (`apply.lua`) and how plans become its `EVALSHA` arguments.
//! - `geo`: the score `GEOADD` would give a point, so the script writes geo members with `ZADD`.
//!
//! A batch is planned in Rust, then sent as one pipeline of `EVALSHA` calls, each applying a
//! chunk of up to [`CHUNK_RECORDS`] events in order: one round trip per batch, one script call
//! per chunk instead of per event, and each event's outcome (or refusal) reported on its own.
//! Each entity's change is atomic (the whole chunk is) and version-checked inside Redis, so
//! concurrent workers, redeliveries and out-of-order events cannot regress it.

mod geo;
mod keys;
mod script;

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionManager, ConnectionManagerConfig};
use ::redis::{Cmd, RedisResult, Script, ServerErrorKind, Value};
use async_trait::async_trait;
use tracing::instrument;

pub use keys::KeyLayout;

/// What a read key holds for an entity the store said is absent (a cached miss). Documents are
/// JSON objects, so an empty string can never be one.
pub const ABSENT_MARKER: &[u8] = b"";

use super::{
    plan, read_key_template, ApplyOutcome, CacheError, CacheErrorKind, CacheWriter, StoreState,
};
use crate::config::Settings;
use crate::event::Event;
use crate::pipeline::Pipeline;
use crate::redact::SecretUrl;
use script::{Mode, Record, RecordReply, CHUNK_RECORDS};

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

pub struct RedisCacheWriter {
    conn: ConnectionManager,
    pipeline: Arc<Pipeline>,
    layout: KeyLayout,
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
            ConnectionManager::new_with_config(client, config)
                .await
                .map_err(|err| CacheError::from_redis(&context, err))
        })
        .await?;
        let writer = Self {
            conn,
            pipeline,
            layout: KeyLayout::new(options.key_prefix),
            tombstone_ttl: options.tombstone_ttl,
            timeout: options.timeout,
            script: script::script(),
        };
        writer.load_script().await?;
        Ok(writer)
    }

    pub fn layout(&self) -> &KeyLayout {
        &self.layout
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
                let record = Record::Absent {
                    collection,
                    id,
                    read_key: &read_key,
                    version: latest_version,
                    ttl: negative_ttl,
                };
                let mut outcomes = self.execute(&[record]).await?;
                Ok(outcomes.pop().expect("one outcome per record"))
            }
        }
    }
}

impl RedisCacheWriter {
    async fn apply_events(
        &self,
        events: &[Event],
        mode: Mode,
    ) -> Result<Vec<ApplyOutcome>, CacheError> {
        let mut outcomes: Vec<Option<ApplyOutcome>> = Vec::with_capacity(events.len());
        let mut plans = Vec::with_capacity(events.len());
        for event in events {
            let planned = match self.pipeline.collection(&event.collection) {
                None => Err(CacheError::unknown_collection(&event.collection)),
                Some(collection) => plan(collection, event).map_err(CacheError::from),
            };
            let planned = planned.and_then(|plan| match script::geo_scores(&plan) {
                Some(scores) => Ok((plan, scores)),
                None => Err(CacheError::new(
                    CacheErrorKind::Poison,
                    "a location is outside what Redis geo indexes accept",
                )),
            });
            match planned {
                Ok(planned) => {
                    plans.push(planned);
                    outcomes.push(None);
                }
                Err(err) => outcomes.push(Some(ApplyOutcome::Rejected(err))),
            }
        }
        let records: Vec<Record<'_>> = plans
            .iter()
            .map(|(plan, geo_scores)| Record::Plan {
                plan,
                mode,
                geo_scores,
            })
            .collect();
        let mut applied = self.execute(&records).await?.into_iter();
        // The planned events' outcomes, in order, fill the gaps the rejected ones left.
        Ok(outcomes
            .into_iter()
            .map(|outcome| {
                outcome
                    .or_else(|| applied.next())
                    .expect("one outcome per planned event")
            })
            .collect())
    }

    /// Applies `records` in order, [`CHUNK_RECORDS`] per `EVALSHA`, every chunk in one pipeline
    /// (one round trip); one outcome per record. A record Redis refused with `WRONGTYPE` comes
    /// back [`ApplyOutcome::Rejected`]; any other error fails the whole call: retryable ones are
    /// `Unavailable` and the caller retries (re-applying is idempotent), others are `Fatal`.
    async fn execute(&self, records: &[Record<'_>]) -> Result<Vec<ApplyOutcome>, CacheError> {
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
                script::evalsha(sha, &self.layout, chunks[chunk], self.tombstone_ttl)
            });
            let results = self.run(commands).await?;
            let mut missing_script = Vec::new();
            for (chunk, result) in pending.into_iter().zip(results) {
                match result {
                    Ok(reply) => {
                        let expected = chunks[chunk].len();
                        let decoded = script::replies(reply, expected).ok_or_else(|| {
                            CacheError::new(
                                CacheErrorKind::Fatal,
                                "the apply script returned a reply this build does not understand",
                            )
                        })?;
                        replies[chunk] = Some(decoded);
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
        Ok(outcomes)
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
