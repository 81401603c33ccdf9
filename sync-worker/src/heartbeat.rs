//! Heartbeats: the API writes one per collection through the outbox every
//! `outbox.heartbeat_interval_ms` (`Op::Heartbeat`, no document). The worker applies no
//! projection for it; it measures how long after its commit the heartbeat got here, into
//! `cacheflow_heartbeat_lag_seconds{collection}`, and keeps the last one in Redis at
//! `<key_prefix>cacheflow:heartbeat:<collection>` (`last_ms`, `at`), which
//! `GET /v1/admin/status` shows. So the end-to-end lag is measured even while nobody writes, and
//! a pipeline that stopped (the relay, NATS, the worker) shows as a heartbeat that stops moving.

use std::collections::HashMap;
use std::time::Duration;

use cacheflow_shared::cache::status::heartbeat_key;
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::telemetry::names::{label, HEARTBEAT_LAG_SECONDS};
use metrics::{histogram, Histogram};
use redis::aio::ConnectionManager;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub struct Heartbeats {
    lag: HashMap<String, Histogram>,
    redis: ConnectionManager,
    key_prefix: String,
    timeout: Duration,
}

impl Heartbeats {
    /// Registers the lag histogram of every collection of the pipeline (at zero).
    pub fn new(
        pipeline: &Pipeline,
        redis: ConnectionManager,
        key_prefix: &str,
        timeout: Duration,
    ) -> Self {
        let lag = pipeline
            .collection_names()
            .map(|collection| {
                let series =
                    histogram!(HEARTBEAT_LAG_SECONDS, label::COLLECTION => collection.to_owned());
                (collection.to_owned(), series)
            })
            .collect();
        Self {
            lag,
            redis,
            key_prefix: key_prefix.to_owned(),
            timeout,
        }
    }

    /// Records the heartbeats of one batch. Best effort: a heartbeat that cannot be written to
    /// Redis is only a missing sample (the next comes within an interval), never a reason to hold
    /// the batch back.
    pub async fn record(&self, beats: &[&Event]) {
        if beats.is_empty() {
            return;
        }
        let now = OffsetDateTime::now_utc();
        let at = now.format(&Rfc3339).unwrap_or_default();
        let mut pipe = redis::pipe();
        for beat in beats {
            // A collection outside the pipeline has no series: it cannot grow the label set.
            let Some(series) = self.lag.get(&beat.collection) else {
                continue;
            };
            let lag = (now - beat.occurred_at).as_seconds_f64().max(0.0);
            series.record(lag);
            pipe.cmd("HSET")
                .arg(heartbeat_key(&self.key_prefix, &beat.collection))
                .arg("last_ms")
                .arg(format!("{:.3}", lag * 1000.0))
                .arg("at")
                .arg(&at)
                .ignore();
        }
        let mut conn = self.redis.clone();
        match tokio::time::timeout(self.timeout, pipe.query_async::<()>(&mut conn)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::debug!(error = %err, "recording a heartbeat failed"),
            Err(_) => tracing::debug!("recording a heartbeat timed out"),
        }
    }
}
