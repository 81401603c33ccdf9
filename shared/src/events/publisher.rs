//! The event-publisher port and its JetStream adapter.

use async_nats::jetstream::{self, message::PublishMessage};
use async_trait::async_trait;
use futures::future::join_all;

use crate::store::PendingEvent;

/// W3C trace-context header carried by every event, so a write can be followed into the worker.
pub const TRACEPARENT: &str = "traceparent";

/// The event's trace context: the trace id is the event id (the API logs it with the request id
/// when the write commits; the worker logs it when it applies the event), the parent id is new.
pub fn traceparent(event: &crate::event::Event) -> String {
    let span: u64 = rand::random::<u64>() | 1; // an all-zero parent id is invalid
    format!("00-{}-{span:016x}-01", event.event_id.simple())
}

/// The trace id of a `traceparent` header, if it is well formed.
pub fn trace_id(traceparent: &str) -> Option<&str> {
    let mut parts = traceparent.split('-');
    let (version, trace, parent) = (parts.next()?, parts.next()?, parts.next()?);
    let well_formed = version.len() == 2
        && trace.len() == 32
        && parent.len() == 16
        && trace
            .bytes()
            .chain(parent.bytes())
            .all(|b| b.is_ascii_hexdigit());
    well_formed.then_some(trace)
}

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
                .message_id(pending.event.event_id.to_string())
                .header(TRACEPARENT, traceparent(&pending.event).as_str());
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn traceparent_carries_the_event_id_as_trace_id() {
        let event = Event::delete("places", "p1", 2);
        let header = traceparent(&event);
        assert_eq!(header.len(), 55);
        assert!(
            header.starts_with("00-") && header.ends_with("-01"),
            "{header}"
        );
        assert_eq!(
            trace_id(&header),
            Some(event.event_id.simple().to_string().as_str())
        );
        assert_eq!(trace_id("garbage"), None);
        assert_eq!(trace_id("00-xyz-0000000000000001-01"), None);
    }
}
