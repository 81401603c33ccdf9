//! The event-publisher port and its JetStream adapter.

use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use futures::future::join_all;

use crate::store::PendingEvent;

#[derive(Debug, Clone, thiserror::Error)]
#[error("publishing event {event_id} failed: {reason}")]
pub struct PublishFailure {
    pub event_id: uuid::Uuid,
    pub reason: String,
}

#[async_trait]
pub trait EventPublisher: Send + Sync + 'static {
    /// Publishes the events (pipelined) and waits for the server's acknowledgements. The result
    /// has one entry per event, in order: `Ok` only once the stream has stored it (or had already
    /// stored it: a duplicate `Nats-Msg-Id` is success).
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), PublishFailure>>;
}

pub struct JetStreamPublisher {
    js: jetstream::Context,
    subject_prefix: String,
}

impl JetStreamPublisher {
    /// `js` should carry the configured request timeout: it bounds the wait for each ack.
    pub fn new(js: jetstream::Context, subject_prefix: impl Into<String>) -> Self {
        Self {
            js,
            subject_prefix: subject_prefix.into(),
        }
    }
}

#[async_trait]
impl EventPublisher for JetStreamPublisher {
    async fn publish(&self, events: &[PendingEvent]) -> Vec<Result<(), PublishFailure>> {
        let failure = |pending: &PendingEvent, reason: String| PublishFailure {
            event_id: pending.event.event_id,
            reason,
        };
        // Send everything first so the acks come back pipelined, then wait for all of them.
        let mut acks = Vec::with_capacity(events.len());
        for pending in events {
            let message = PublishMessage::build()
                .payload(pending.event.encode().into())
                .message_id(pending.event.event_id.to_string());
            let sent = self
                .js
                .send_publish(pending.event.subject(&self.subject_prefix), message)
                .await;
            acks.push(sent);
        }
        let waits = acks
            .into_iter()
            .zip(events)
            .map(|(sent, pending)| async move {
                match sent {
                    Ok(ack) => ack
                        .await
                        .map(|_| ())
                        .map_err(|e| failure(pending, e.to_string())),
                    Err(err) => Err(failure(pending, err.to_string())),
                }
            });
        join_all(waits).await
    }
}
