//! Dead letters: events that can never be applied are published, with the reason in headers, to
//! `<subject_prefix>.dlq.<collection>.<stream sequence>` and only then acked.
//!
//! The subject lies inside the event stream (`<prefix>.>`), so a dead letter is stored durably
//! (the publish waits for the stream's ack); with one token more than an event's subject, the
//! worker recognises it when it comes round and acks it unprocessed
//! ([`crate::consumer::is_event_subject`]). The trailing stream sequence gives each dead letter
//! its own subject, so the stream's `max_msgs_per_subject = 1` compaction never discards one;
//! read them all with
//! `<prefix>.dlq.>` (or `<prefix>.dlq.<collection>.*`). `Nats-Msg-Id` = `dlq:<stream>:<seq>`
//! makes a repeated publish (crash between publish and ack) a no-op within the duplicate window.

use async_nats::header::{HeaderMap, NATS_MESSAGE_ID};
use async_nats::jetstream::{self, Message};

pub use cacheflow_shared::events::dlq::{subject, REASON, STREAM_SEQ, SUBJECT};
/// The collection used when the payload cannot even be decoded.
pub const UNKNOWN_COLLECTION: &str = "unknown";
/// Header values stay readable and within what NATS servers accept.
const MAX_REASON_LEN: usize = 1024;

/// One poison event, ready to publish.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
}

impl DeadLetter {
    /// `collection` is the event's (or [`UNKNOWN_COLLECTION`]); it must be a subject token,
    /// which the pipeline's collection-name rule guarantees for known collections.
    pub fn new(message: &Message, subject_prefix: &str, collection: &str, reason: &str) -> Self {
        let (stream, sequence) = match message.info() {
            Ok(info) => (info.stream.to_owned(), info.stream_sequence),
            // Only a message without a JetStream reply subject lacks info; the consumer never
            // delivers one, but a dead letter must still be written.
            Err(_) => (String::new(), 0),
        };
        let collection = if is_token(collection) {
            collection
        } else {
            UNKNOWN_COLLECTION
        };
        let mut headers = HeaderMap::new();
        headers.insert(REASON, header_text(reason).as_str());
        headers.insert(STREAM_SEQ, sequence.to_string().as_str());
        headers.insert(SUBJECT, message.subject.as_str());
        headers.insert(NATS_MESSAGE_ID, format!("dlq:{stream}:{sequence}").as_str());
        Self {
            subject: subject(subject_prefix, collection, sequence),
            headers,
            payload: message.payload.clone(),
        }
    }

    /// Publishes and waits for the stream to store it (bounded by the context's timeout).
    pub async fn publish(&self, js: &jetstream::Context) -> Result<(), async_nats::Error> {
        js.publish_with_headers(
            self.subject.clone(),
            self.headers.clone(),
            self.payload.clone(),
        )
        .await?
        .await?;
        Ok(())
    }
}

fn is_token(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// One line, printable, bounded: header values cannot carry CR/LF.
fn header_text(reason: &str) -> String {
    let mut text: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if text.len() > MAX_REASON_LEN {
        let mut end = MAX_REASON_LEN;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_subjects_are_not_event_subjects() {
        let dead = subject("cacheflow", "places", 42);
        assert_eq!(dead, "cacheflow.dlq.places.42");
        assert!(!crate::consumer::is_event_subject("cacheflow", &dead));
    }

    #[test]
    fn reasons_become_one_bounded_line() {
        assert_eq!(header_text("a\r\nb"), "a  b");
        assert_eq!(header_text(&"é".repeat(2_000)).len(), MAX_REASON_LEN);
        assert!(is_token("places") && !is_token("a.b") && !is_token(""));
    }
}
