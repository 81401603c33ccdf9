//! The durable pull consumer every worker process binds, and one bounded fetch.
//!
//! The stream captures `<subject_prefix>.>`, dead letters included (`<prefix>.dlq.<collection>.
//! <seq>`, one token deeper than an event). The consumer has **no** subject filter: on
//! nats-server 2.9 a wildcard filter (`<prefix>.*.*`) makes every consumer-info request cost
//! time proportional to the number of subjects (one per entity), and while it runs deliveries
//! stall (measured: ~10 ms per info at 12 500 entities, and 100+ ms fetch stalls under load),
//! so lag monitoring would slow the worker down. Instead [`is_event_subject`] recognises
//! non-event subjects, which the batch acks without processing.

use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy, PullConsumer};
use async_nats::jetstream::{self, Message};
use cacheflow_shared::config::Settings;
use futures::StreamExt;

/// Whether `subject` is a write event's, `<prefix>.<collection>.<id>`: exactly two tokens after
/// the prefix. Dead letters (three) and anything else in the stream are not.
pub fn is_event_subject(subject_prefix: &str, subject: &str) -> bool {
    let Some(rest) = subject
        .strip_prefix(subject_prefix)
        .and_then(|rest| rest.strip_prefix('.'))
    else {
        return false;
    };
    match rest.split_once('.') {
        Some((collection, id)) => !collection.is_empty() && !id.is_empty() && !id.contains('.'),
        None => false,
    }
}

pub fn config(settings: &Settings) -> pull::Config {
    let worker = &settings.worker;
    pull::Config {
        durable_name: Some(worker.consumer.clone()),
        description: Some("cacheflow sync worker: events -> Redis projections".into()),
        deliver_policy: DeliverPolicy::All,
        ack_policy: AckPolicy::Explicit,
        ack_wait: worker.ack_wait(),
        // Never give up on an event: a failing one is retried or dead-lettered by the worker.
        max_deliver: -1,
        max_ack_pending: worker.max_ack_pending,
        // No filter_subject: see the module note.
        ..Default::default()
    }
}

/// Creates the durable consumer, or updates it to the current settings (idempotent, so every
/// worker process does it at start-up).
pub async fn bind(
    js: &jetstream::Context,
    settings: &Settings,
) -> Result<PullConsumer, jetstream::stream::ConsumerError> {
    js.create_consumer_on_stream(config(settings), &settings.stream.name)
        .await
}

#[derive(Debug)]
pub struct Fetched {
    pub messages: Vec<Message>,
    /// Why the pull ended early, if the server or connection said so (max ack pending reached,
    /// a disconnection). The messages received before it are still valid.
    pub error: Option<async_nats::Error>,
    pub took: Duration,
}

/// One pull request: returns as soon as messages are available (up to `max`), or empty after
/// `wait`. A `fetch` (no_wait) with `expires` makes nats-server wait for the first message but
/// not for a full batch, so a quiet stream adds no latency and a busy one fills batches.
pub async fn fetch(
    consumer: &PullConsumer,
    max: usize,
    wait: Duration,
) -> Result<Fetched, async_nats::Error> {
    let started = Instant::now();
    let mut batch = consumer
        .fetch()
        .max_messages(max)
        .expires(wait)
        .messages()
        .await?;
    let mut messages = Vec::with_capacity(max);
    let mut error = None;
    // Not `while let Some(Ok(_))`: an error item must be seen, not end the loop silently.
    while let Some(item) = batch.next().await {
        match item {
            Ok(message) => messages.push(message),
            Err(err) => {
                error = Some(err);
                break;
            }
        }
    }
    Ok(Fetched {
        messages,
        error,
        took: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_event_subjects_only() {
        assert!(is_event_subject("cacheflow", "cacheflow.places.p1"));
        // A collection may be called `dlq`: its events still have two tokens.
        assert!(is_event_subject("cacheflow", "cacheflow.dlq.p1"));
        assert!(is_event_subject("a.b", "a.b.places.p1"));
        for other in [
            "cacheflow.dlq.places.42",
            "cacheflow.places",
            "cacheflow.places.",
            "other.places.p1",
            "cacheflowx.places.p1",
        ] {
            assert!(!is_event_subject("cacheflow", other), "{other}");
        }
        assert!(!is_event_subject("a.b", "a.b.places.p1.x"));
    }
}
