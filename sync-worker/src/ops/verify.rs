//! `sync-worker verify`: the consistency auditor. It compares the store (the system of record)
//! with each collection's *active* generation in Redis, which is what readers read, and with
//! `--repair` fixes what it finds through the same versioned writes everything else uses, so it is
//! safe while workers and the API keep running.
//!
//! One audit of a collection is four passes, each one page at a time (memory stays flat):
//!
//! - `indexes`: members of the collection's index keys that nothing explains (full runs only).
//! - `entities`: every live document of the store (or a random sample) against what the planner
//!   says its projections must hold.
//! - `orphans`: entities the cache holds live that the store does not (full runs only).
//!
//! Each drifted entity is counted once, under the first [`Kind`] that applies. With `--repair`
//! each page is repaired as soon as it is classified (`repair`), then the whole audit runs again
//! without repairing and reports what is left. The result is kept in Redis and exported as the
//! `cacheflow_audit_drift_entities` gauge ([`export`]), which the long-running workers re-export.
//!
//! - `context`: what one collection's audit works with, and its retried Redis and store calls.
//! - `expected`: one live document's planned projections, as Redis must hold them.
//! - `classify`: the rules deciding an entity's kind of drift (pure).
//! - `scan`: `SCAN` / `ZSCAN` paging.
//! - `sample`: picking a uniform random sample while paging, without holding it.

mod classify;
mod context;
mod entities;
mod expected;
pub mod export;
mod indexes;
mod orphans;
mod repair;
mod sample;
mod scan;

use std::sync::Arc;

use cacheflow_shared::cache::status::AuditSource;
use cacheflow_shared::store::DocumentStore;

use super::progress::{Progress, Summary};
use super::{retry_transient, Ops};
use crate::cli::VerifyArgs;
use context::Ctx;
use sample::Sampler;

/// A kind of drift (`names::DRIFT_KINDS`), in the order an entity is classified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The cache holds nothing usable for a live entity: no meta, an invalidated entry, or no
    /// document under its read key.
    Missing,
    /// The cache holds an older version, a tombstone, or content that differs from the plan of the
    /// version it claims.
    Stale,
    /// The cache holds an entity live that the store does not.
    Orphaned,
    /// An index membership is absent, has another score, or should not be there.
    WrongIndex,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Missing, Kind::Stale, Kind::Orphaned, Kind::WrongIndex];

    pub fn label(self) -> &'static str {
        match self {
            Kind::Missing => "missing",
            Kind::Stale => "stale",
            Kind::Orphaned => "orphaned",
            Kind::WrongIndex => "wrong_index",
        }
    }
}

/// Entities out of step with the store, by kind (`names::DRIFT_KINDS`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drift {
    pub missing: u64,
    pub stale: u64,
    pub orphaned: u64,
    pub wrong_index: u64,
}

impl Drift {
    pub fn total(&self) -> u64 {
        self.missing + self.stale + self.orphaned + self.wrong_index
    }

    pub fn get(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Missing => self.missing,
            Kind::Stale => self.stale,
            Kind::Orphaned => self.orphaned,
            Kind::WrongIndex => self.wrong_index,
        }
    }

    fn slot(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Missing => &mut self.missing,
            Kind::Stale => &mut self.stale,
            Kind::Orphaned => &mut self.orphaned,
            Kind::WrongIndex => &mut self.wrong_index,
        }
    }

    pub fn add(&mut self, kind: Kind) {
        *self.slot(kind) += 1;
    }

    pub fn set(&mut self, kind: Kind, count: u64) {
        *self.slot(kind) = count;
    }
}

/// What auditing one collection found (and, with `--repair`, what is left after repairing).
#[derive(Debug, Clone)]
pub struct Audit {
    pub collection: String,
    /// The generation audited: the one readers read ("" = directly under the key prefix).
    pub generation: String,
    /// Live store documents compared (the sample's size with `--sample`).
    pub checked: u64,
    pub found: Drift,
    /// With `--repair`: the drift a re-check still finds after repairing.
    pub remaining: Option<Drift>,
    /// Live documents the projections refuse (logged one by one): the workers dead-letter their
    /// events, so the cache cannot hold them; not drift.
    pub rejected: u64,
    /// The first drifted ids (at most `--list`) of what is left: found, or with `--repair` what
    /// the re-check still found.
    pub drifted_ids: Vec<String>,
    pub summary: Summary,
}

impl Audit {
    /// The drift left after the run.
    pub fn left(&self) -> Drift {
        self.remaining.unwrap_or(self.found)
    }
}

/// Counts of one run of the passes.
#[derive(Debug, Default)]
struct Tally {
    drift: Drift,
    checked: u64,
    rejected: u64,
    drifted_ids: Vec<String>,
    /// How many drifted ids to keep.
    list: usize,
}

impl Tally {
    fn new(list: usize) -> Self {
        Self {
            list,
            ..Self::default()
        }
    }

    /// Counts one drifted entity, keeping its id among the first `list`.
    fn found(&mut self, kind: Kind, id: &str) {
        self.drift.add(kind);
        if self.drifted_ids.len() < self.list {
            self.drifted_ids.push(id.to_owned());
        }
    }
}

/// Audits every collection asked for, one after the other.
pub async fn run(ops: &Ops, args: &VerifyArgs) -> anyhow::Result<Vec<Audit>> {
    run_as(ops, args, AuditSource::Verify).await
}

/// [`run`], recording the summary as coming from `source`.
pub async fn run_as(
    ops: &Ops,
    args: &VerifyArgs,
    source: AuditSource,
) -> anyhow::Result<Vec<Audit>> {
    let store = ops.store().await?;
    let mut audits = Vec::new();
    for collection in ops.collections(args.collection.as_deref())? {
        audits.push(audit(ops, &store, &collection, args).await?);
    }
    export::record_summary(ops, source, &audits).await?;
    Ok(audits)
}

async fn audit(
    ops: &Ops,
    store: &Arc<dyn DocumentStore>,
    collection: &str,
    args: &VerifyArgs,
) -> anyhow::Result<Audit> {
    let generation = ops.generations(collection).await?.active;
    let ctx = Ctx::new(ops, store, collection, &generation, args.batch as usize)?;
    // The re-check after a repair draws the same sample (the seed), so it looks at the entities
    // that were repaired.
    let seed = sample::seed();
    let list = args.list as usize;
    let (found, summary) = passes(&ctx, args.sample, seed, args.repair, list, collection).await?;
    let (remaining, drifted_ids) = if args.repair {
        let label = format!("{collection} (re-check)");
        let (left, _) = passes(&ctx, args.sample, seed, false, list, label).await?;
        (Some(left.drift), left.drifted_ids)
    } else {
        (None, found.drifted_ids)
    };
    let now = ops.generations(collection).await?.active;
    if now != generation {
        tracing::warn!(
            collection,
            audited = generation,
            active = now,
            "a rebuild switched generations during the audit; run verify again"
        );
    }
    let audit = Audit {
        collection: collection.to_owned(),
        generation,
        checked: found.checked,
        found: found.drift,
        remaining,
        rejected: found.rejected,
        drifted_ids,
        summary,
    };
    export::record(ops, &audit, args.sample).await?;
    Ok(audit)
}

/// One audit: the passes in order. The index pass runs first, before anything is repaired, so it
/// can tell which entities the later passes will count; the orphan passes look only at entities
/// the store does not hold live, so no entity falls under two passes.
async fn passes(
    ctx: &Ctx<'_>,
    sample: Option<u64>,
    seed: u64,
    repair: bool,
    list: usize,
    label: impl Into<String>,
) -> anyhow::Result<(Tally, Summary)> {
    let total = retry_transient(&ctx.ops.settings, "counting the store's documents", || {
        ctx.store.count_live(ctx.name())
    })
    .await?;
    let mut progress = Progress::start("verify", label, Some(total));
    let mut tally = Tally::new(list);
    // A sample compares store entities only: stray members and orphans are found by visiting
    // every index member and meta, which is what a sample is meant to avoid.
    let full = sample.is_none();
    // The progress bar follows the entity pass; the others say when they are done.
    let done = |pass: &str, tally: &Tally| {
        let drift = tally.drift;
        tracing::info!(collection = ctx.name(), pass, ?drift, "pass done");
    };
    if full {
        indexes::pass(ctx, repair, &mut tally).await?;
        done("indexes", &tally);
    }
    let sampler = sample.map(|size| Sampler::new(size, total, seed));
    entities::pass(ctx, sampler, repair, &mut progress, &mut tally).await?;
    done("entities", &tally);
    if full {
        orphans::metas(ctx, repair, &mut tally).await?;
        orphans::read_keys(ctx, repair, &mut tally).await?;
        done("orphans", &tally);
    }
    Ok((tally, progress.finish()))
}
