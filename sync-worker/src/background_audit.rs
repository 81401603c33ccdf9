//! The sampled background audit: every `worker.audit_interval_secs` one worker compares
//! `worker.audit_sample` random live documents of each collection with Redis (exactly
//! `verify --sample`, without repairing) and records the result where `verify` does: the
//! summary at `cacheflow:audit:last` (source `background`) and each collection's hash, which every
//! worker exports as `cacheflow_audit_drift_entities` and `cacheflow_audit_inconsistency_ratio`.
//! So drift shows continuously, not only when an operator thinks of running `verify`.
//!
//! Which worker audits: the one that takes the `<key_prefix>cacheflow:audit:lock` key
//! (`SET NX PX` for one interval), so N workers audit once per interval, not N times. A failed
//! audit (the store unreachable from this worker, Redis down) is a warning; the next interval
//! tries again.

use std::sync::Arc;
use std::time::Duration;

use cacheflow_shared::cache::status::AuditSource;
use cacheflow_shared::cache::RedisCacheWriter;
use cacheflow_shared::config::Settings;
use cacheflow_shared::pipeline::Pipeline;
use tokio_util::sync::CancellationToken;

use crate::cli::VerifyArgs;
use crate::ops::{verify, Ops};

/// Entities compared per round trip, as `verify`'s default.
const BATCH: u64 = 500;
/// Drifted ids listed per collection.
const LIST: u64 = 10;

/// `<key_prefix>cacheflow:audit:lock`.
pub fn lock_key(key_prefix: &str) -> String {
    format!("{key_prefix}cacheflow:audit:lock")
}

/// Audits every interval until `stop` is cancelled; returns at once when the audit is off.
pub async fn run(
    settings: &Settings,
    pipeline: &Arc<Pipeline>,
    writer: &RedisCacheWriter,
    stop: &CancellationToken,
) {
    let Some(interval) = settings.worker.audit_interval() else {
        return;
    };
    let ops = Ops {
        settings: settings.clone(),
        pipeline: pipeline.clone(),
        writer: writer.clone(),
        shutdown: stop.clone(),
    };
    let args = VerifyArgs {
        collection: None,
        sample: Some(settings.worker.audit_sample),
        repair: false,
        batch: BATCH,
        list: LIST,
    };
    loop {
        // The first audit one interval after start-up: a worker that just started has a backlog
        // to apply, which an audit would count as drift.
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match take_turn(writer, interval).await {
            Ok(true) => {}
            Ok(false) => continue,
            Err(err) => {
                tracing::warn!(error = %err, "background audit skipped: redis unavailable");
                continue;
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            audited = verify::run_as(&ops, &args, AuditSource::Background) => match audited {
                Ok(audits) => {
                    let drifted: u64 = audits.iter().map(|a| a.left().total()).sum();
                    let checked: u64 = audits.iter().map(|a| a.checked).sum();
                    tracing::info!(checked, drifted, "background audit done");
                }
                Err(err) => tracing::warn!(error = format!("{err:#}"), "background audit failed"),
            },
        }
    }
}

/// Whether this worker audits this interval: it took the lock, which expires a little before the
/// next interval so the next turn is free for anyone.
async fn take_turn(writer: &RedisCacheWriter, interval: Duration) -> redis::RedisResult<bool> {
    let hold = interval
        .saturating_sub(interval / 10)
        .max(Duration::from_millis(1));
    let mut conn = writer.connection();
    let taken: Option<String> = redis::cmd("SET")
        .arg(lock_key(writer.key_prefix()))
        .arg(std::process::id())
        .arg("NX")
        .arg("PX")
        .arg(hold.as_millis() as u64)
        .query_async(&mut conn)
        .await?;
    Ok(taken.is_some())
}
