//! Keeping the readers on each collection's active cache generation: one refresh at start-up,
//! then a background refresh every `reads.generation_refresh_ms`, so a rebuild's switch reaches
//! the reads within one interval, without restarting and without a Redis round trip per read.

use std::time::Duration;

use cacheflow_shared::cache::redis::generations::ActiveLayouts;
use cacheflow_shared::config::Settings;
use cacheflow_shared::pipeline::Pipeline;
use redis::aio::ConnectionManager;
use tokio_util::sync::CancellationToken;

/// The background refresh of the readers' [`ActiveLayouts`], not yet running.
pub struct GenerationFollower {
    layouts: ActiveLayouts,
    conn: ConnectionManager,
    collections: Vec<String>,
    interval: Duration,
    timeout: Duration,
}

impl GenerationFollower {
    /// Reads the active generations once (bounded by the Redis timeout) and returns the layouts
    /// the reader uses with the follower that keeps them current. Redis may be down at start-up:
    /// reads then bypass it anyway, and the follower catches up once it is back.
    pub async fn start(
        settings: &Settings,
        pipeline: &Pipeline,
        mut conn: ConnectionManager,
    ) -> (ActiveLayouts, Self) {
        let layouts = ActiveLayouts::new(settings.worker.key_prefix.clone());
        let collections: Vec<String> = pipeline.collections().map(|c| c.name.clone()).collect();
        let timeout = settings.redis.timeout();
        if let Err(err) = layouts.refresh(&mut conn, &collections, timeout).await {
            tracing::warn!(%err, "cannot read the active cache generations; reading the default one until Redis answers");
        }
        let follower = Self {
            layouts: layouts.clone(),
            conn,
            collections,
            interval: settings.reads.generation_refresh(),
            timeout,
        };
        (layouts, follower)
    }

    /// Refreshes until `stop` is cancelled.
    pub async fn run(self, stop: CancellationToken) {
        self.layouts
            .follow(
                self.conn,
                self.collections,
                self.interval,
                self.timeout,
                stop,
            )
            .await;
    }
}
