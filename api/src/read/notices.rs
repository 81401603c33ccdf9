//! The API's side of the near-cache notices: one subscription on the worker's notice subject
//! (`cacheflow_shared::notice`), each applied entity handed to the reader's near-cache.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::notice::{self, AppliedNotice};
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use super::Reader;

/// How often the near-cache's size is brought up to date and exported.
const HOUSEKEEPING: Duration = Duration::from_secs(1);

pub struct NoticeSubscriber {
    reader: Arc<Reader>,
    subscriber: Option<async_nats::Subscriber>,
}

impl NoticeSubscriber {
    /// Subscribes when the reader has a near-cache (async-nats subscribes again by itself after a
    /// reconnect; the near-cache is flushed meanwhile).
    pub async fn start(
        nats: &async_nats::Client,
        subject_prefix: &str,
        reader: Arc<Reader>,
    ) -> anyhow::Result<Self> {
        let subscriber = match reader.near {
            Some(_) => Some(nats.subscribe(notice::subject(subject_prefix)).await?),
            None => None,
        };
        Ok(Self { reader, subscriber })
    }

    pub async fn run(self, stop: CancellationToken) {
        let Some(mut subscriber) = self.subscriber else {
            return;
        };
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        loop {
            let message = tokio::select! {
                () = stop.cancelled() => break,
                _ = housekeeping.tick() => {
                    if let Some(near) = &self.reader.near {
                        near.refresh_bytes();
                    }
                    continue;
                }
                message = subscriber.next() => message,
            };
            let Some(message) = message else { break };
            match AppliedNotice::decode(&message.payload) {
                Ok(notice) => {
                    for entity in notice.applied {
                        self.reader
                            .applied(&entity.collection, &entity.id, entity.version);
                    }
                }
                Err(err) => tracing::warn!(%err, "undecodable near-cache notice ignored"),
            }
        }
        let _ = subscriber.unsubscribe().await;
    }
}
