//! The event stream: `<prefix>.>` subjects, limits retention, and by default one message per
//! subject, which makes it a compacted log holding the latest event of every entity.

use std::time::Duration;

use async_nats::jetstream::{self, stream};

use crate::config::StreamSettings;

#[derive(Debug, thiserror::Error)]
#[error("cannot create or update stream {name}: {reason}")]
pub struct StreamError {
    name: String,
    reason: String,
}

pub fn stream_config(settings: &StreamSettings) -> stream::Config {
    stream::Config {
        name: settings.name.clone(),
        subjects: vec![format!("{}.>", settings.subject_prefix)],
        retention: stream::RetentionPolicy::Limits,
        storage: stream::StorageType::File,
        max_messages_per_subject: settings.max_msgs_per_subject,
        duplicate_window: Duration::from_secs(settings.duplicate_window_secs),
        max_age: Duration::from_secs(settings.max_age_secs),
        num_replicas: settings.replicas,
        description: Some("cacheflow write events (latest per entity when compacted)".into()),
        ..Default::default()
    }
}

/// Creates the stream, or brings an existing one in line with the settings. Idempotent, so every
/// process may call it at start-up.
pub async fn ensure_stream(
    js: &jetstream::Context,
    settings: &StreamSettings,
) -> Result<stream::Info, StreamError> {
    js.create_or_update_stream(stream_config(settings))
        .await
        .map_err(|err| StreamError {
            name: settings.name.clone(),
            reason: err.to_string(),
        })
}
