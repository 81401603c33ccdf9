//! Whether a document's event fits in the event stream. NATS refuses a message larger than its
//! `max_payload` (headers included), so a committed write whose event is too large could never
//! be published: the write must be refused before it is committed.

use cacheflow_shared::document::Document;
use cacheflow_shared::event::Event;

/// What the message headers (`Nats-Msg-Id`, `traceparent`) and the stamped `id` / `version`
/// fields can add on top of the envelope; generous, because refusing a write a few bytes early is
/// harmless and publishing one a few bytes too large is not.
const SLACK: usize = 512;

/// The size the event of `document` would have, an upper bound.
pub fn event_size(collection: &str, id: &str, document: &Document) -> usize {
    // The envelope without the document, at the largest version.
    let envelope = Event::upsert(collection, id, u64::MAX, Document::new())
        .encode()
        .len();
    let document = serde_json::to_vec(document)
        .map(|json| json.len())
        .unwrap_or(usize::MAX / 2);
    envelope + document + id.len() + SLACK
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
