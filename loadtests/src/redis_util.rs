//! What the scenarios read from Redis directly: the `places` document key the worker writes, the
//! versions it holds, and waiting until given versions are visible.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use redis::aio::MultiplexedConnection;
use serde::Deserialize;

/// Keys read per MGET.
const CHUNK: usize = 1000;

/// A Redis connection for the scenarios (not shared with the system under test).
pub async fn connect(url: &str) -> anyhow::Result<MultiplexedConnection> {
    redis::Client::open(url)
        .with_context(|| format!("invalid Redis URL {url}"))?
        .get_multiplexed_async_connection()
        .await
        .with_context(|| format!("cannot connect to Redis at {url}"))
}

/// The key of a place's document (the `document` projection of `config/pipeline.toml`).
pub fn doc_key(key_prefix: &str, id: &str) -> String {
    format!("{key_prefix}place:{id}")
}

/// The worker's bookkeeping hash of a place (docs/WORKER.md).
pub fn meta_key(key_prefix: &str, id: &str) -> String {
    format!("{key_prefix}cacheflow:meta:places:{id}")
}

/// The `version` field of a cached document.
pub fn version_of(json: &[u8]) -> Option<u64> {
    #[derive(Deserialize)]
    struct Versioned {
        version: u64,
    }
    serde_json::from_slice::<Versioned>(json)
        .ok()
        .map(|v| v.version)
}

/// The versions Redis holds under `keys`, in order (`None`: absent or not a document).
pub async fn versions(
    conn: &mut MultiplexedConnection,
    keys: &[String],
) -> anyhow::Result<Vec<Option<u64>>> {
    let mut out = Vec::with_capacity(keys.len());
    for chunk in keys.chunks(CHUNK) {
        let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
            .arg(chunk)
            .query_async(conn)
            .await
            .context("MGET")?;
        out.extend(values.iter().map(|v| v.as_deref().and_then(version_of)));
    }
    Ok(out)
}

/// Waits until every `(key, version)` holds that version or a newer one; returns how long it
/// took, or how many were still behind after `timeout`.
pub async fn wait_visible(
    conn: &mut MultiplexedConnection,
    items: &[(String, u64)],
    timeout: Duration,
) -> anyhow::Result<Result<Duration, usize>> {
    let started = Instant::now();
    let mut behind: Vec<&(String, u64)> = items.iter().collect();
    loop {
        let keys: Vec<String> = behind.iter().map(|(k, _)| k.clone()).collect();
        let held = versions(conn, &keys).await?;
        behind = behind
            .into_iter()
            .zip(held)
            .filter(|((_, want), have)| have.is_none_or(|have| have < *want))
            .map(|(item, _)| item)
            .collect();
        if behind.is_empty() {
            return Ok(Ok(started.elapsed()));
        }
        if started.elapsed() >= timeout {
            return Ok(Err(behind.len()));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The `notify-keyspace-events` flags with key-event notifications of string commands added:
/// `E` (key-event channel) and `$` (string commands) unless already covered (`A` = all classes).
pub fn with_string_events(flags: &str) -> String {
    let mut out = flags.to_owned();
    if !out.contains('E') {
        out.push('E');
    }
    if !(out.contains('$') || out.contains('A')) {
        out.push('$');
    }
    out
}

/// Turns on key-event notifications of string commands; returns the previous flags to restore.
pub async fn enable_set_events(conn: &mut MultiplexedConnection) -> anyhow::Result<String> {
    let (_, previous): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("notify-keyspace-events")
        .query_async(conn)
        .await
        .context("CONFIG GET notify-keyspace-events")?;
    let wanted = with_string_events(&previous);
    if wanted != previous {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("notify-keyspace-events")
            .arg(&wanted)
            .query_async::<()>(conn)
            .await
            .context("CONFIG SET notify-keyspace-events (needs a Redis that allows CONFIG)")?;
    }
    Ok(previous)
}

pub async fn restore_events(conn: &mut MultiplexedConnection, flags: &str) -> anyhow::Result<()> {
    redis::cmd("CONFIG")
        .arg("SET")
        .arg("notify-keyspace-events")
        .arg(flags)
        .query_async::<()>(conn)
        .await
        .context("restoring notify-keyspace-events")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert_eq!(doc_key("", "place-0001"), "place:place-0001");
        assert_eq!(doc_key("t1:", "a"), "t1:place:a");
        assert_eq!(meta_key("", "a"), "cacheflow:meta:places:a");
    }

    #[test]
    fn versions_of_documents() {
        assert_eq!(version_of(br#"{"id":"a","version":7,"name":"x"}"#), Some(7));
        assert_eq!(version_of(br#"{"id":"a"}"#), None);
        assert_eq!(version_of(b"\x00absent"), None);
        assert_eq!(version_of(br#"{"version":"7"}"#), None);
    }

    #[test]
    fn notification_flags() {
        assert_eq!(with_string_events(""), "E$");
        assert_eq!(with_string_events("Kx"), "KxE$");
        assert_eq!(with_string_events("E$"), "E$");
        assert_eq!(with_string_events("KEA"), "KEA");
        assert_eq!(with_string_events("Ex"), "Ex$");
    }
}
