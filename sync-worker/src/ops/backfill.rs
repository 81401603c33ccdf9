//! `sync-worker backfill`: every live document of the store into Redis, through the versioned
//! apply in populate mode, so it is safe while live events flow: a document read before a newer
//! write can never overwrite that write's event in Redis, nor resurrect a deleted entity.
//!
//! The store is read in id order, one page ahead of the apply (`store_pages`: memory stays flat
//! whatever the collection's size). After each applied
//! page the last id is saved in a checkpoint in Redis, next to the keys it describes; an
//! interrupted backfill resumes after it. A cache that lost its keys (FLUSHALL) lost the
//! checkpoint too, which is right: everything must be filled again.

use std::collections::VecDeque;
use std::sync::Arc;

use anyhow::Context as _;
use cacheflow_shared::cache::redis::{BulkFiller, LiveDocument};
use cacheflow_shared::cache::{ApplyOutcome, RedisCacheWriter};
use cacheflow_shared::config::Settings;
use cacheflow_shared::store::{DocumentStore, Versioned};
use redis::AsyncCommands;
use tokio::task::JoinHandle;

use super::progress::{Progress, Summary};
use super::store_pages::{document_id, StorePages};
use super::{retry_transient, Ops};
use crate::cli::BackfillArgs;

/// Where a backfill of `collection` into the generation under `prefix` (key prefix included)
/// keeps its checkpoint: a hash with `after` (the last id applied) and `done` (documents).
pub fn checkpoint_key(prefix: &str, collection: &str) -> String {
    format!("{prefix}cacheflow:backfill:{collection}")
}

/// Pages written at the same time: two keep both Redis and this process busy.
const PAGES_IN_FLIGHT: usize = 2;

/// What filling one collection did.
#[derive(Debug, Clone)]
pub struct Filled {
    pub collection: String,
    /// Documents applied by this run (a resumed run counts only its own).
    pub documents: u64,
    /// Documents the store holds that the projections refuse (logged one by one).
    pub rejected: u64,
    /// Documents written by bulk transactions (entities the cache did not know); the others
    /// went through the versioned apply script.
    pub in_bulk: u64,
    /// The id the run resumed after, if it found a checkpoint.
    pub resumed_after: Option<String>,
    /// False when shutdown interrupted it (the checkpoint is kept).
    pub complete: bool,
    pub summary: Summary,
}

/// Runs the command: every collection asked for, into every generation its writers write.
pub async fn run(ops: &Ops, args: &BackfillArgs) -> anyhow::Result<Vec<Filled>> {
    let store = ops.store().await?;
    let mut report = Vec::new();
    for collection in ops.collections(args.collection.as_deref())? {
        let state = ops.generations(&collection).await?;
        let prefix = format!("{}{}", ops.writer.key_prefix(), state.active);
        let filled = fill(
            ops,
            &ops.writer,
            &store,
            &collection,
            &checkpoint_key(&prefix, &collection),
            FillOptions {
                batch: args.batch as usize,
                restart: args.restart,
                command: "backfill",
            },
        )
        .await?;
        let complete = filled.complete;
        report.push(filled);
        if !complete {
            break;
        }
    }
    Ok(report)
}

pub struct FillOptions {
    pub batch: usize,
    /// Start from the beginning even if a checkpoint exists.
    pub restart: bool,
    /// The command reported in progress and metrics.
    pub command: &'static str,
}

/// Fills `collection` from the store through `writer` (all write-target generations, or a
/// pinned one), keeping the checkpoint at `checkpoint`.
pub async fn fill(
    ops: &Ops,
    writer: &RedisCacheWriter,
    store: &Arc<dyn DocumentStore>,
    collection: &str,
    checkpoint: &str,
    options: FillOptions,
) -> anyhow::Result<Filled> {
    let mut conn = writer.connection();
    if options.restart {
        let _: () = conn
            .del(checkpoint)
            .await
            .context("removing the backfill checkpoint")?;
    }
    let (after, already): (Option<String>, Option<u64>) = redis::cmd("HMGET")
        .arg(checkpoint)
        .arg("after")
        .arg("done")
        .query_async(&mut conn)
        .await
        .context("reading the backfill checkpoint")?;
    let total = retry_transient(&ops.settings, "counting the store's documents", || {
        store.count_live(collection)
    })
    .await?;
    if let Some(after) = &after {
        tracing::info!(collection, after, "resuming after the checkpoint");
    }
    let mut progress = Progress::start(options.command, collection, Some(total));
    progress.skip(already.unwrap_or(0));

    let mut pages = StorePages::read_ahead(
        store.clone(),
        &ops.settings,
        collection,
        options.batch,
        after.clone(),
    );
    let filler = Arc::new(writer.bulk_filler());
    let settings = Arc::new(ops.settings.clone());
    let (mut documents, mut rejected) = (0, 0);
    let mut done = already.unwrap_or(0);
    // Pages being written, oldest first: while Redis writes one, this process plans and
    // encodes the next. The checkpoint only moves past a page once every page before it is
    // written too.
    let mut in_flight: VecDeque<JoinHandle<anyhow::Result<Page>>> = VecDeque::new();
    let result = async {
        let mut stopped = false;
        loop {
            let next = if in_flight.len() < PAGES_IN_FLIGHT && !stopped {
                pages.next().await
            } else {
                None
            };
            if let Some(page) = next {
                in_flight.push_back(tokio::spawn(write_page(
                    filler.clone(),
                    settings.clone(),
                    collection.to_owned(),
                    page,
                )));
                stopped = ops.stopped();
                continue;
            }
            let Some(oldest) = in_flight.pop_front() else {
                return anyhow::Ok(!stopped);
            };
            let page = oldest
                .await
                .map_err(|err| anyhow::anyhow!("writing a page panicked: {err}"))??;
            done += page.documents;
            documents += page.documents;
            rejected += page.rejected;
            let _: () = conn
                .hset_multiple(
                    checkpoint,
                    &[("after", page.last.as_str()), ("done", &done.to_string())],
                )
                .await
                .context("saving the backfill checkpoint")?;
            progress.advance(page.documents);
            stopped = stopped || ops.stopped();
        }
    }
    .await;
    // After an error, the pages still being written finish (or fail) on their own; nothing
    // waits for them, and the checkpoint did not move past them.
    for page in in_flight {
        page.abort();
    }
    // Whatever happened, stop the reader before returning.
    let read = pages.finish().await;
    let complete = result?;
    read?;
    if complete {
        let _: () = conn
            .del(checkpoint)
            .await
            .context("removing the backfill checkpoint")?;
    } else {
        tracing::info!(collection, "interrupted; run the command again to resume");
    }
    Ok(Filled {
        collection: collection.to_owned(),
        documents,
        rejected,
        in_bulk: filler.counts().in_bulk,
        resumed_after: after,
        complete,
        summary: progress.finish(),
    })
}

/// One page written.
struct Page {
    /// Its last id: where a resumed run starts after.
    last: String,
    documents: u64,
    rejected: u64,
}

async fn write_page(
    filler: Arc<BulkFiller>,
    settings: Arc<Settings>,
    collection: String,
    page: Vec<Versioned>,
) -> anyhow::Result<Page> {
    let last = document_id(page.last().expect("pages are not empty")).to_owned();
    let live: Vec<LiveDocument<'_>> = page
        .iter()
        .map(|versioned| LiveDocument {
            id: document_id(versioned),
            version: versioned.version,
            document: &versioned.document,
        })
        .collect();
    let outcomes = retry_transient(&settings, "writing to redis", || {
        filler.fill(&collection, &live)
    })
    .await?;
    let mut rejected = 0;
    for (live, outcome) in live.iter().zip(&outcomes) {
        if let ApplyOutcome::Rejected(err) = outcome {
            rejected += 1;
            tracing::warn!(collection, id = %live.id, %err, "document skipped");
        }
    }
    Ok(Page {
        last,
        documents: live.len() as u64,
        rejected,
    })
}
