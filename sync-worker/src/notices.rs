//! Publishes, after a batch is applied, one near-cache notice naming the entities it applied (see
//! `cacheflow_shared::notice`). Fire-and-forget on core NATS: a notice that cannot be published is
//! only logged, the API's near-cache bounds what it costs (`max_staleness`).

use cacheflow_shared::notice::{self, AppliedEntity, AppliedNotice};

pub struct Notices {
    client: async_nats::Client,
    subject: String,
}

impl Notices {
    pub fn new(client: async_nats::Client, subject_prefix: &str) -> Self {
        Self {
            client,
            subject: notice::subject(subject_prefix),
        }
    }

    /// Publishes the applied entities, if any.
    pub async fn publish(&self, applied: Vec<AppliedEntity>) {
        if applied.is_empty() {
            return;
        }
        let payload = AppliedNotice { applied }.encode();
        if let Err(err) = self
            .client
            .publish(self.subject.clone(), payload.into())
            .await
        {
            tracing::debug!(%err, "near-cache notice not published");
        }
    }
}
