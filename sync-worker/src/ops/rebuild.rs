//! `sync-worker rebuild`: a zero-downtime rebuild of a collection's cache.
//!
//! 1. A fresh generation `gen:<collection>:<n>:` is added to the collection's write targets.
//!    From the next apply call on, every running worker (and the API's populate) writes each
//!    event to both generations; the generation guard in the apply script makes this take
//!    effect for every writer at once, so no event can reach only the live generation.
//! 2. The new generation is filled from the store (every live document, populate mode) or from
//!    the stream (every event, replayed), pinned to the new generation. Live events keep
//!    arriving in both meanwhile; the version check makes the two sources converge.
//! 3. Switch, atomically (compare-and-set in Redis): the new generation becomes the active one
//!    and the old one stays a write target, so readers that have not noticed the switch yet
//!    (the API re-reads the active generation every `reads.generation_refresh_ms`) still read
//!    current data.
//! 4. After a grace period the old generation stops being written, and its keys are deleted.
//!
//! One rebuild per collection at a time (a lock in Redis, renewed while it runs). A rebuild
//! that died half-way leaves its generation as a write target; the next rebuild removes it
//! before starting. Interrupted (SIGTERM), a rebuild removes its unfinished generation and the
//! live one is untouched.
//!
//! Rebuilt from the store, the new generation has no tombstones of entities deleted before the
//! build (the store lists live documents); deletes during the build do reach it. A late
//! redelivery of an upsert older than such a delete could therefore bring the entity back
//! until the next verify repairs it; rebuilding from the compacted stream keeps the tombstones.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use cacheflow_shared::cache::redis::generations::{self, GenerationState};
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

use super::backfill::{self, checkpoint_key, FillOptions};
use super::replay::{self, Start};
use super::retire::drop_generation;
use super::Ops;
use crate::cli::{RebuildArgs, Source};

/// How long the lock lives without being renewed, and how often it is renewed.
const LOCK_TTL: Duration = Duration::from_secs(30);
const LOCK_RENEW: Duration = Duration::from_secs(10);
/// The shortest grace period after a switch.
const MIN_GRACE: Duration = Duration::from_secs(2);

/// What rebuilding one collection did.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    pub collection: String,
    /// The new active generation.
    pub generation: String,
    /// The generation it replaced ("" = the empty generation).
    pub previous: String,
    /// Documents or events written into the new generation.
    pub items: u64,
    pub elapsed: Duration,
    /// Keys of the old generation deleted.
    pub removed: u64,
}

pub async fn run(ops: &Ops, args: &RebuildArgs) -> anyhow::Result<Vec<Rebuilt>> {
    let grace = args
        .grace_ms
        .map(Duration::from_millis)
        .unwrap_or_else(|| (4 * ops.settings.reads.generation_refresh()).max(MIN_GRACE));
    let mut rebuilt = Vec::new();
    for collection in ops.collections(args.collection.as_deref())? {
        let lock = Lock::acquire(ops, &collection).await?;
        let result = rebuild(ops, &collection, args.from, args.batch as usize, grace).await;
        lock.release().await;
        rebuilt.push(result?);
    }
    Ok(rebuilt)
}

async fn rebuild(
    ops: &Ops,
    collection: &str,
    from: Source,
    batch: usize,
    grace: Duration,
) -> anyhow::Result<Rebuilt> {
    let started = Instant::now();
    let mut conn = ops.writer.connection();
    let key_prefix = ops.writer.key_prefix().to_owned();
    let mut live = ops.generations(collection).await?;
    if !live.extra.is_empty() {
        // Left by a rebuild that died: stop writing them, then delete them.
        let cleaned = GenerationState {
            active: live.active.clone(),
            extra: Vec::new(),
        };
        switch(&mut conn, &key_prefix, collection, &live, &cleaned).await?;
        for leftover in live.extra.iter().filter(|g| **g != live.active) {
            let removed = drop_generation(ops, collection, leftover).await?;
            tracing::info!(collection, generation = %leftover, removed, "removed an unfinished generation");
        }
        live = cleaned;
    }
    let new = generations::next_generation(&mut conn, &key_prefix, collection).await?;
    let building = GenerationState {
        active: live.active.clone(),
        extra: vec![new.clone()],
    };
    switch(&mut conn, &key_prefix, collection, &live, &building).await?;
    tracing::info!(collection, generation = %new, "building a new generation; workers write both");

    let writer = ops.writer.pinned(&new);
    let built: anyhow::Result<(u64, bool)> = match from {
        Source::Store => {
            let store = ops.store().await?;
            let checkpoint = checkpoint_key(&format!("{key_prefix}{new}"), collection);
            let options = FillOptions {
                batch,
                restart: true,
                command: "rebuild",
            };
            backfill::fill(ops, &writer, &store, collection, &checkpoint, options)
                .await
                .map(|filled| (filled.documents, filled.complete))
        }
        Source::Stream => replay::replay_into(
            ops,
            &writer,
            Some(collection),
            Start::First,
            batch,
            "rebuild",
        )
        .await
        .map(|replayed| (replayed.events, replayed.complete)),
    };
    let items = match built {
        Ok((items, true)) => items,
        failed => {
            // Abandon: the live generation is untouched; remove the unfinished one.
            let err = failed
                .err()
                .unwrap_or_else(|| anyhow::anyhow!("interrupted"));
            switch(&mut conn, &key_prefix, collection, &building, &live).await?;
            drop_generation(ops, collection, &new).await?;
            return Err(err.context(format!(
                "rebuilding `{collection}`; the live generation is unchanged"
            )));
        }
    };

    let retiring = GenerationState {
        active: new.clone(),
        extra: vec![live.active.clone()],
    };
    switch(&mut conn, &key_prefix, collection, &building, &retiring).await?;
    tracing::info!(collection, generation = %new, previous = %live.active, "switched; readers follow within their refresh interval");
    pause(&ops.shutdown, grace).await;
    let done = GenerationState {
        active: new.clone(),
        extra: Vec::new(),
    };
    switch(&mut conn, &key_prefix, collection, &retiring, &done).await?;
    let removed = drop_generation(ops, collection, &live.active).await?;
    tracing::info!(collection, generation = %live.active, removed, "old generation deleted");
    Ok(Rebuilt {
        collection: collection.to_owned(),
        generation: new,
        previous: live.active,
        items,
        elapsed: started.elapsed(),
        removed,
    })
}

/// Moves the collection's generations from `from` to `to`, failing if someone else changed them.
async fn switch(
    conn: &mut ConnectionManager,
    key_prefix: &str,
    collection: &str,
    from: &GenerationState,
    to: &GenerationState,
) -> anyhow::Result<()> {
    if generations::compare_and_set(conn, key_prefix, collection, from, to).await? {
        Ok(())
    } else {
        anyhow::bail!(
            "the generations of `{collection}` changed while rebuilding (expected {from:?}); \
             is another rebuild running?"
        )
    }
}

/// Waits `grace`, or less if shutdown is requested (the old generation is then retired early:
/// readers that have not noticed the switch read it a little longer, never anything older than
/// its last write).
async fn pause(shutdown: &CancellationToken, grace: Duration) {
    tokio::select! {
        () = tokio::time::sleep(grace) => {}
        () = shutdown.cancelled() => {}
    }
}

/// One rebuild per collection: `<key_prefix>cacheflow:gen:<collection>:lock`, renewed while held.
struct Lock {
    conn: ConnectionManager,
    key: String,
    token: String,
    renewing: CancellationToken,
}

impl Lock {
    async fn acquire(ops: &Ops, collection: &str) -> anyhow::Result<Self> {
        let mut conn = ops.writer.connection();
        let key = format!("{}cacheflow:gen:{collection}:lock", ops.writer.key_prefix());
        let token = uuid_like();
        let taken: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(LOCK_TTL.as_millis() as u64)
            .query_async(&mut conn)
            .await
            .context("taking the rebuild lock")?;
        if taken.is_none() {
            anyhow::bail!(
                "another rebuild of `{collection}` is running (lock {key}); it expires {} s after \
                 that rebuild stops",
                LOCK_TTL.as_secs()
            );
        }
        let renewing = CancellationToken::new();
        tokio::spawn(renew(
            conn.clone(),
            key.clone(),
            token.clone(),
            renewing.clone(),
        ));
        Ok(Self {
            conn,
            key,
            token,
            renewing,
        })
    }

    async fn release(mut self) {
        self.renewing.cancel();
        let released: Result<i64, _> = redis::Script::new(RELEASE)
            .key(&self.key)
            .arg(&self.token)
            .invoke_async(&mut self.conn)
            .await;
        if let Err(err) = released {
            tracing::warn!(%err, key = %self.key, "the rebuild lock is left to expire");
        }
    }
}

/// Deletes the lock only if it still holds our token.
const RELEASE: &str =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";
/// Extends the lock only if it still holds our token.
const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0";

async fn renew(mut conn: ConnectionManager, key: String, token: String, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(LOCK_RENEW);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let renewed: Result<i64, _> = redis::Script::new(RENEW)
            .key(&key)
            .arg(&token)
            .arg(LOCK_TTL.as_millis() as u64)
            .invoke_async(&mut conn)
            .await;
        match renewed {
            Ok(1) => {}
            Ok(_) => tracing::warn!(%key, "the rebuild lock was lost"),
            Err(err) => tracing::warn!(%err, %key, "renewing the rebuild lock failed"),
        }
    }
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    )
}
