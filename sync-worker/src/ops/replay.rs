//! `sync-worker replay`: re-applies events from the stream through an ephemeral consumer (no
//! acks, deleted by the server soon after the command ends), through the same versioned apply
//! as the workers, so it is safe while they run. It stops at the stream's last event as of its
//! start, so it ends even while writes continue (those reach Redis through the workers).
//!
//! With the default compacted stream (the latest event per entity), a replay from the start
//! rebuilds the whole cache without touching the store. Dead letters in the stream are skipped:
//! they were dead-lettered once already.

use std::time::Duration;

use anyhow::Context as _;
use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, Message};
use cacheflow_shared::cache::{ApplyOutcome, CacheWriter, RedisCacheWriter};
use cacheflow_shared::event::Event;
use cacheflow_shared::events;
use time::OffsetDateTime;

use super::progress::{Progress, Summary};
use super::{retry_transient, Ops};
use crate::cli::ReplayArgs;
use crate::consumer::{self, is_event_subject};

/// How long one pull waits for messages before the replay checks whether it is done.
const FETCH_WAIT: Duration = Duration::from_secs(1);
/// The server deletes the ephemeral consumer this long after the replay stops pulling.
const INACTIVE_THRESHOLD: Duration = Duration::from_secs(30);

/// Where a replay starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The first event the stream holds.
    First,
    Sequence(u64),
    Time(OffsetDateTime),
}

/// What a replay did.
#[derive(Debug, Clone)]
pub struct Replayed {
    /// Messages read from the stream.
    pub events: u64,
    pub applied: u64,
    pub deleted: u64,
    /// Already in the cache at this version or newer.
    pub stale: u64,
    /// Undecodable or refused by the projections (logged one by one).
    pub rejected: u64,
    /// Not events (dead letters) or another collection's.
    pub skipped: u64,
    /// False when shutdown interrupted it.
    pub complete: bool,
    pub summary: Summary,
}

pub async fn run(ops: &Ops, args: &ReplayArgs) -> anyhow::Result<Replayed> {
    if let Some(collection) = &args.collection {
        ops.collections(Some(collection))?;
    }
    let start = match (args.from_seq, args.since) {
        (Some(seq), _) => Start::Sequence(seq),
        (None, Some(since)) => Start::Time(since),
        (None, None) => Start::First,
    };
    replay_into(
        ops,
        &ops.writer,
        args.collection.as_deref(),
        start,
        args.batch as usize,
        "replay",
    )
    .await
}

/// Replays the stream from `start` (only `collection`'s events, if given) through `writer`
/// (every write-target generation, or a pinned one).
pub async fn replay_into(
    ops: &Ops,
    writer: &RedisCacheWriter,
    collection: Option<&str>,
    start: Start,
    batch: usize,
    command: &'static str,
) -> anyhow::Result<Replayed> {
    let settings = &ops.settings;
    let client = events::connect(settings, "cacheflow-replay").await?;
    let mut js = jetstream::new(client);
    js.set_timeout(settings.nats.timeout());
    let mut stream = js
        .get_stream(&settings.stream.name)
        .await
        .with_context(|| format!("opening the stream {}", settings.stream.name))?;
    let last = stream
        .info()
        .await
        .context("reading the stream's state")?
        .state
        .last_sequence;
    let prefix = &settings.stream.subject_prefix;
    let consumer: PullConsumer = stream
        .create_consumer(pull::Config {
            description: Some(format!("cacheflow {command}")),
            deliver_policy: match start {
                Start::First => DeliverPolicy::All,
                Start::Sequence(start_sequence) => {
                    DeliverPolicy::ByStartSequence { start_sequence }
                }
                Start::Time(start_time) => DeliverPolicy::ByStartTime { start_time },
            },
            ack_policy: AckPolicy::None,
            filter_subject: collection
                .map(|c| format!("{prefix}.{c}.*"))
                .unwrap_or_default(),
            inactive_threshold: INACTIVE_THRESHOLD,
            ..Default::default()
        })
        .await
        .context("creating the replay consumer")?;
    let mut info_consumer = consumer.clone();
    let total = info_consumer
        .info()
        .await
        .context("reading the replay consumer")?
        .num_pending;
    let label = collection.unwrap_or("all collections");
    let mut progress = Progress::start(command, label, Some(total));
    let mut replayed = Replayed {
        events: 0,
        applied: 0,
        deleted: 0,
        stale: 0,
        rejected: 0,
        skipped: 0,
        complete: false,
        summary: Summary::default(),
    };
    let mut finished = total == 0 || last == 0;
    while !finished {
        if ops.stopped() {
            break;
        }
        let fetched = consumer::fetch(&consumer, batch, FETCH_WAIT)
            .await
            .map_err(|err| anyhow::anyhow!("pulling from the stream: {err}"))?;
        if fetched.messages.is_empty() {
            // Nothing came within the wait: done if nothing is pending any more.
            finished = info_consumer
                .info()
                .await
                .context("reading the replay consumer")?
                .num_pending
                == 0;
            continue;
        }
        let mut events = Vec::with_capacity(fetched.messages.len());
        let mut read = 0;
        for message in &fetched.messages {
            let (sequence, pending) = position(message);
            if sequence > last {
                finished = true;
                break;
            }
            read += 1;
            finished |= sequence == last || pending == 0;
            match decode(prefix, message, collection) {
                Decoded::Event(event) => events.push(event),
                Decoded::Skip => replayed.skipped += 1,
                Decoded::Reject(reason) => {
                    replayed.rejected += 1;
                    tracing::warn!(subject = %message.subject, reason, "event skipped");
                }
            }
        }
        if !events.is_empty() {
            let outcomes =
                retry_transient(settings, "writing to redis", || writer.apply(&events)).await?;
            for (event, outcome) in events.iter().zip(outcomes) {
                match outcome {
                    ApplyOutcome::Applied => replayed.applied += 1,
                    ApplyOutcome::Deleted => replayed.deleted += 1,
                    ApplyOutcome::Stale | ApplyOutcome::Absent => replayed.stale += 1,
                    ApplyOutcome::Rejected(err) => {
                        replayed.rejected += 1;
                        tracing::warn!(collection = %event.collection, id = %event.id, %err, "event refused");
                    }
                }
            }
        }
        replayed.events += read;
        progress.advance(read);
    }
    replayed.complete = finished;
    replayed.summary = progress.finish();
    if let Err(err) = stream.delete_consumer(&consumer.cached_info().name).await {
        tracing::debug!(%err, "the replay consumer is left to expire");
    }
    Ok(replayed)
}

/// The message's stream sequence and how many messages the consumer still has after it.
fn position(message: &Message) -> (u64, u64) {
    match message.info() {
        Ok(info) => (info.stream_sequence, info.pending),
        // Every JetStream delivery has this metadata; without it, keep going.
        Err(_) => (0, u64::MAX),
    }
}

enum Decoded {
    Event(Event),
    Skip,
    Reject(String),
}

fn decode(prefix: &str, message: &Message, collection: Option<&str>) -> Decoded {
    if !is_event_subject(prefix, &message.subject) {
        return Decoded::Skip;
    }
    match Event::decode(&message.payload) {
        // A heartbeat measures live lag; replaying one would only measure the replay.
        Ok(event) if event.is_heartbeat() => Decoded::Skip,
        Ok(event) if collection.is_some_and(|c| c != event.collection) => Decoded::Skip,
        Ok(event) => Decoded::Event(event),
        Err(err) => Decoded::Reject(err.to_string()),
    }
}
