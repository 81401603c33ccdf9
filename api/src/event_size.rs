//! Whether a document's event fits in the event stream. NATS refuses a message larger than its
//! `max_payload` (headers included), so a committed write whose event is too large could never
//! be published: the write must be refused before it is committed.

use std::io;
use std::sync::LazyLock;

use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;

/// What the message headers (`Nats-Msg-Id`, `traceparent`) and the stamped `id` / `version`
/// fields can add on top of the envelope; generous, because refusing a write a few bytes early is
/// harmless and publishing one a few bytes too large is not.
const SLACK: usize = 512;

/// The envelope of an event without its document, its collection and its id (each appears once
/// in it), at the largest version: measured once.
static ENVELOPE: LazyLock<usize> = LazyLock::new(|| {
    Event::upsert("", "", u64::MAX, Document::new())
        .encode()
        .len()
});

/// The size the event of `document` would have, an upper bound. Counts the document's JSON
/// without writing it anywhere: this runs on every write.
pub fn event_size(collection: &str, id: &str, document: &Document) -> usize {
    let mut counted = ByteCount(0);
    let document = match serde_json::to_writer(&mut counted, document) {
        Ok(()) => counted.0,
        Err(_) => usize::MAX / 2,
    };
    // The id also appears in the stamped document.
    *ENVELOPE + collection.len() + 2 * id.len() + document + SLACK
}

/// A writer that only counts the bytes written to it.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// `Err(size)` when the event of `document` would exceed `limit` bytes.
pub fn check(collection: &str, id: &str, document: &Document, limit: usize) -> Result<(), usize> {
    match event_size(collection, id, document) {
        size if size > limit => Err(size),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_bound_covers_the_real_event() {
        let document = json!({"name": "x".repeat(10_000), "rating": 4.5})
            .as_object()
            .unwrap()
            .clone();
        let mut stamped = document.clone();
        stamped.insert("id".into(), json!("p1"));
        stamped.insert("version".into(), json!(u64::MAX));
        let real = Event::upsert("places", "p1", u64::MAX, stamped)
            .encode()
            .len();
        let bound = event_size("places", "p1", &document);
        assert!(bound >= real + 256, "{bound} vs {real}");
        assert!(
            bound < real + 1024,
            "not wildly pessimistic: {bound} vs {real}"
        );
        // The envelope's timestamp varies by a few bytes from one event to the next.
        assert!(check("places", "p1", &document, bound + 32).is_ok());
        assert!(check("places", "p1", &document, bound - 32).is_err());
    }
}
