//! The shape of a dead letter, shared by the worker that writes them (`sync-worker/src/dlq.rs`)
//! and the API's operator routes that list, redrive and drop them: a message on
//! `<subject_prefix>.dlq.<collection>.<original stream sequence>` carrying the original payload,
//! with why and where from in these headers (docs/WORKER.md, "Dead letters").

/// Why the event could not be applied.
pub const REASON: &str = "Cacheflow-Dlq-Reason";
/// The original message's stream sequence.
pub const STREAM_SEQ: &str = "Cacheflow-Dlq-Stream-Seq";
/// The original message's subject (`<prefix>.<collection>.<id>`).
pub const SUBJECT: &str = "Cacheflow-Dlq-Subject";

/// The subject of the dead letter of the message at `stream_sequence`.
pub fn subject(subject_prefix: &str, collection: &str, stream_sequence: u64) -> String {
    format!("{subject_prefix}.dlq.{collection}.{stream_sequence}")
}

/// The subject filter matching every dead letter, or those of one collection.
pub fn filter(subject_prefix: &str, collection: Option<&str>) -> String {
    match collection {
        Some(collection) => format!("{subject_prefix}.dlq.{collection}.*"),
        None => format!("{subject_prefix}.dlq.>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_match_the_subjects_dead_letters_get() {
        assert_eq!(subject("cf", "places", 7), "cf.dlq.places.7");
        assert_eq!(filter("cf", Some("places")), "cf.dlq.places.*");
        assert_eq!(filter("cf", None), "cf.dlq.>");
    }
}
