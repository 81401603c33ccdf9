//! One batch, from fetched messages to acks. The only place that acks, and it acks a message
//! only once its event is in Redis (applied, or already there: stale) or in the dead-letter
//! subject, or when it is not an event at all (a dead letter coming round, see `consumer`). Anything else leaves the whole batch unacked for redelivery, which is harmless
//! because applying is idempotent and version-checked.

use std::time::Instant;

use async_nats::jetstream::{self, Message};
use backon::ExponentialBuilder;
use cacheflow_shared::cache::{ApplyOutcome, CacheError, CacheWriter};
use cacheflow_shared::event::Event;
use cacheflow_shared::events::publisher::{trace_id, TRACEPARENT};
use cacheflow_shared::telemetry::names::UNKNOWN_COLLECTION as UNKNOWN_LABEL;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use tracing::instrument;

use crate::consumer::is_event_subject;
use crate::dlq::{DeadLetter, UNKNOWN_COLLECTION};
use crate::heartbeat::Heartbeats;
use crate::metrics::{Dependency, Outcome, WorkerMetrics};
use crate::notices::Notices;
use crate::retry;
use crate::stats::Stats;

/// What one batch needs besides its messages.
pub struct BatchContext<'a> {
    pub writer: &'a dyn CacheWriter,
    pub js: &'a jetstream::Context,
    pub subject_prefix: &'a str,
    pub backoff: ExponentialBuilder,
    pub shutdown: &'a CancellationToken,
    pub metrics: &'a WorkerMetrics,
    /// Where the API near-caches learn what this batch applied.
    pub notices: &'a Notices,
    pub heartbeats: &'a Heartbeats,
}

#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    /// Shutdown was requested while a dependency was down; nothing was acked.
    #[error("shutdown requested while the batch could not be completed; left for redelivery")]
    Interrupted,
    /// Redis refuses the worker in a way retrying cannot fix (credentials, ACL, a reply this
    /// build does not understand). Nothing was acked.
    #[error(transparent)]
    Fatal(CacheError),
}

#[instrument(skip_all, fields(messages = messages.len()))]
pub async fn process(ctx: &BatchContext<'_>, messages: Vec<Message>) -> Result<Stats, BatchError> {
    let started = Instant::now();
    let mut stats = Stats {
        batches: 1,
        ..Stats::default()
    };
    // Recorded once the batch's fate is sealed (just before the acks), like `stats`: an
    // interrupted batch comes back and must not be counted twice.
    let mut outcomes: Vec<(&str, Outcome)> = Vec::with_capacity(messages.len());
    let mut lags: Vec<(&str, time::Duration)> = Vec::new();
    // (message index, event) for the decodable ones; dead letters for the others.
    let mut events = Vec::with_capacity(messages.len());
    let mut positions = Vec::with_capacity(messages.len());
    let mut dead = Vec::new();
    let mut beats = Vec::new();
    for (index, message) in messages.iter().enumerate() {
        if !is_event_subject(ctx.subject_prefix, &message.subject) {
            // A dead letter (ours or another worker's) coming round: not an event.
            stats.skipped += 1;
            outcomes.push((UNKNOWN_LABEL, Outcome::Skipped));
            continue;
        }
        match Event::decode(&message.payload) {
            // Measured, not applied (`heartbeat`).
            Ok(event) if event.is_heartbeat() => {
                stats.skipped += 1;
                outcomes.push((UNKNOWN_LABEL, Outcome::Skipped));
                beats.push(event);
            }
            Ok(event) => {
                // Follows a write from the API's "write committed" line into the worker.
                if tracing::enabled!(tracing::Level::DEBUG) {
                    let trace_id = message
                        .headers
                        .as_ref()
                        .and_then(|h| h.get(TRACEPARENT))
                        .and_then(|v| trace_id(v.as_str()).map(str::to_owned));
                    tracing::debug!(
                        trace_id = trace_id.as_deref().unwrap_or(""),
                        collection = %event.collection,
                        id = %event.id,
                        version = event.version,
                        "applying event"
                    );
                }
                events.push(event);
                positions.push(index);
            }
            Err(err) => {
                stats.dead_lettered += 1;
                outcomes.push((UNKNOWN_LABEL, Outcome::DeadLettered));
                let reason = format!("undecodable event: {err}");
                tracing::warn!(subject = %message.subject, %reason, "dead-lettering a poison event");
                dead.push(DeadLetter::new(
                    message,
                    ctx.subject_prefix,
                    UNKNOWN_COLLECTION,
                    &reason,
                ));
            }
        }
    }

    if !events.is_empty() {
        let applied = retry::until_shutdown(
            "applying a batch to redis",
            Dependency::Redis,
            ctx.backoff,
            ctx.shutdown,
            CacheError::is_retryable,
            || ctx.writer.apply(&events),
        )
        .await
        .map_err(|err| {
            if err.is_retryable() {
                BatchError::Interrupted
            } else {
                BatchError::Fatal(err)
            }
        })?;
        let now = OffsetDateTime::now_utc();
        let mut noticed = Vec::new();
        for ((event, index), outcome) in events.iter().zip(&positions).zip(&applied) {
            stats.count(outcome);
            let counted = Outcome::of(outcome);
            outcomes.push((&event.collection, counted));
            if matches!(counted, Outcome::Applied | Outcome::Deleted) {
                lags.push((&event.collection, now - event.occurred_at));
                noticed.push(cacheflow_shared::notice::AppliedEntity {
                    collection: event.collection.clone(),
                    id: event.id.clone(),
                    version: event.version,
                });
            }
            if let ApplyOutcome::Rejected(err) = outcome {
                let reason = err.to_string();
                tracing::warn!(
                    collection = %event.collection, id = %event.id, version = event.version,
                    %reason, "dead-lettering a poison event"
                );
                dead.push(DeadLetter::new(
                    &messages[*index],
                    ctx.subject_prefix,
                    &event.collection,
                    &reason,
                ));
            }
        }
        ctx.notices.publish(noticed).await;
    }

    for letter in &dead {
        retry::until_shutdown(
            "publishing a dead letter",
            Dependency::Nats,
            ctx.backoff,
            ctx.shutdown,
            |_| true,
            || letter.publish(ctx.js),
        )
        .await
        .map_err(|_| BatchError::Interrupted)?;
    }

    for (collection, outcome) in outcomes {
        ctx.metrics.events(collection, outcome, 1);
    }
    for (collection, lag) in lags {
        ctx.metrics.lag(collection, lag);
    }
    ctx.heartbeats
        .record(&beats.iter().collect::<Vec<_>>())
        .await;
    for message in &messages {
        // A lost ack only means a redelivery, which the version check turns into a no-op.
        if let Err(err) = message.ack().await {
            stats.ack_failures += 1;
            tracing::warn!(error = %err, subject = %message.subject, "ack failed; the event will be redelivered");
        }
    }
    ctx.metrics.batch(messages.len(), started.elapsed());
    tracing::debug!(?stats, "batch done");
    Ok(stats)
}
