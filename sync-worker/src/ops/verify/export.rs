//! The audit's result as a metric. `verify` is one-shot, so a Prometheus scrape would rarely find
//! it running: each collection's last result is kept in Redis, at
//! `<key_prefix>cacheflow:audit:<collection>` (a hash: `missing`, `stale`, `orphaned`,
//! `wrong_index`, `checked`, `repaired`, `sample`, `generation`, `at` in unix seconds), and the
//! long-running workers read it back into `cacheflow_audit_drift_entities{collection, kind}`
//! (`crate::metrics`). The counts are the drift left after the run: what was found, or with
//! `--repair` what the re-check found.

use std::collections::{BTreeMap, HashMap};
use std::time::{SystemTime, UNIX_EPOCH};

use cacheflow_shared::cache::status::{
    audit_last_key, inconsistency_rate, AuditSource, AuditSummary, CollectionAudit,
};
use cacheflow_shared::telemetry::names::{label, AUDIT_DRIFT_ENTITIES, AUDIT_INCONSISTENCY_RATIO};
use redis::aio::ConnectionLike;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::super::{retry_transient, Ops};
use super::context::cache_error;
use super::{Audit, Drift, Kind};

/// `<key_prefix>cacheflow:audit:<collection>`: under the key prefix, not a generation, so it
/// outlives rebuilds.
pub fn audit_key(key_prefix: &str, collection: &str) -> String {
    format!("{key_prefix}cacheflow:audit:{collection}")
}

/// Keeps `audit` in Redis and sets the gauges of this process.
pub(super) async fn record(ops: &Ops, audit: &Audit, sample: Option<u64>) -> anyhow::Result<()> {
    let left = audit.left();
    let at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_secs());
    let repaired = audit.remaining.map_or(0, |remaining| {
        audit.found.total().saturating_sub(remaining.total())
    });
    let mut fields: Vec<(&str, String)> = Kind::ALL
        .iter()
        .map(|kind| (kind.label(), left.get(*kind).to_string()))
        .collect();
    fields.extend([
        ("checked", audit.checked.to_string()),
        ("repaired", repaired.to_string()),
        ("sample", sample.unwrap_or(0).to_string()),
        ("generation", audit.generation.clone()),
        ("at", at.to_string()),
    ]);
    let mut cmd = redis::cmd("HSET");
    cmd.arg(audit_key(ops.writer.key_prefix(), &audit.collection));
    for (field, value) in &fields {
        cmd.arg(*field).arg(value);
    }
    let what = "recording the audit in redis";
    let _: u64 = retry_transient(&ops.settings, what, || {
        let (mut conn, cmd) = (ops.writer.connection(), &cmd);
        async move {
            cmd.query_async(&mut conn)
                .await
                .map_err(|err| cache_error(what, &err))
        }
    })
    .await?;
    set_gauges(&audit.collection, &left, audit.checked);
    Ok(())
}

/// The summary of `audits` as `GET /v1/admin/audit` shows it.
pub fn summary(source: AuditSource, audits: &[Audit]) -> AuditSummary {
    let collections: BTreeMap<String, CollectionAudit> = audits
        .iter()
        .map(|audit| {
            let left = audit.left();
            let entry = CollectionAudit {
                checked: audit.checked,
                missing: left.missing,
                stale: left.stale,
                orphaned: left.orphaned,
                wrong_index: left.wrong_index,
                drifted_ids: audit.drifted_ids.clone(),
            };
            (audit.collection.clone(), entry)
        })
        .collect();
    let finished_at = OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_default();
    AuditSummary::new(source, finished_at, collections)
}

/// Keeps the summary of `audits` at `<key_prefix>cacheflow:audit:last`, replacing the last one.
pub async fn record_summary(
    ops: &Ops,
    source: AuditSource,
    audits: &[Audit],
) -> anyhow::Result<AuditSummary> {
    let summary = summary(source, audits);
    let json = serde_json::to_string(&summary)?;
    let key = audit_last_key(ops.writer.key_prefix());
    let what = "recording the audit summary in redis";
    let () = retry_transient(&ops.settings, what, || {
        let (mut conn, key, json) = (ops.writer.connection(), &key, &json);
        async move {
            redis::cmd("SET")
                .arg(key)
                .arg(json)
                .query_async(&mut conn)
                .await
                .map_err(|err| cache_error(what, &err))
        }
    })
    .await?;
    Ok(summary)
}

/// Sets `cacheflow_audit_drift_entities` for every kind of one collection, and its
/// `cacheflow_audit_inconsistency_ratio` (drifted / checked).
pub fn set_gauges(collection: &str, drift: &Drift, checked: u64) {
    for kind in Kind::ALL {
        metrics::gauge!(
            AUDIT_DRIFT_ENTITIES,
            label::COLLECTION => collection.to_owned(),
            label::KIND => kind.label()
        )
        .set(drift.get(kind) as f64);
    }
    metrics::gauge!(AUDIT_INCONSISTENCY_RATIO, label::COLLECTION => collection.to_owned())
        .set(inconsistency_rate(drift.total(), checked));
}

/// The last recorded drift of each collection, in one round trip (`None` if never audited).
pub async fn read_last(
    conn: &mut impl ConnectionLike,
    key_prefix: &str,
    collections: &[&str],
) -> redis::RedisResult<Vec<Option<(Drift, u64)>>> {
    if collections.is_empty() {
        return Ok(Vec::new());
    }
    let mut pipe = redis::pipe();
    for collection in collections {
        pipe.cmd("HGETALL").arg(audit_key(key_prefix, collection));
    }
    let hashes: Vec<HashMap<String, String>> = pipe.query_async(conn).await?;
    Ok(hashes.iter().map(parse).collect())
}

/// The drift and the `checked` count of one recorded audit.
fn parse(hash: &HashMap<String, String>) -> Option<(Drift, u64)> {
    if hash.is_empty() {
        return None;
    }
    let count = |field: &str| hash.get(field).and_then(|n| n.parse().ok()).unwrap_or(0);
    let mut drift = Drift::default();
    for kind in Kind::ALL {
        drift.set(kind, count(kind.label()));
    }
    Some((drift, count("checked")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_the_documented_kinds() {
        let labels: Vec<&str> = Kind::ALL.iter().map(|k| k.label()).collect();
        assert_eq!(labels, cacheflow_shared::telemetry::names::DRIFT_KINDS);
    }

    #[test]
    fn parses_what_record_writes() {
        assert_eq!(parse(&HashMap::new()), None);
        let hash: HashMap<String, String> = [
            ("missing", "1"),
            ("stale", "2"),
            ("orphaned", "3"),
            ("wrong_index", "4"),
            ("checked", "10"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let (drift, checked) = parse(&hash).unwrap();
        assert_eq!(checked, 10);
        assert_eq!(
            (
                drift.missing,
                drift.stale,
                drift.orphaned,
                drift.wrong_index
            ),
            (1, 2, 3, 4)
        );
    }
}
