//! What the benchmark examples share: the same events, and the CPU counters that show what
//! limits the rate. Included by each example with `#[path]` (each uses part of it).

use cacheflow_shared::event::Event;
use serde_json::json;

const CATEGORIES: [&str; 4] = ["cafe", "bar", "restaurant", "bakery"];

/// The entities of a run of `events` events: event `n` is version `n / entities + 1` of entity
/// `p{n % entities}`, so most events replace an older version of their entity.
pub fn entities(events: usize) -> usize {
    (events / 4).max(1)
}

/// Event `n` of `events`: an upsert of the shipped `places` pipeline (every projection kind).
pub fn event(n: usize, events: usize) -> Event {
    let entities = entities(events);
    let id = format!("p{}", n % entities);
    let version = (n / entities + 1) as u64;
    let document = json!({
        "id": id, "version": version, "name": format!("Place {n}"),
        "category": CATEGORIES[n % CATEGORIES.len()], "rating": (n % 50) as f64 / 10.0,
        "price": n % 4 + 1,
        "location": {"type": "Point", "coordinates": [(n % 360) as f64 - 180.0, (n % 170) as f64 - 85.0]},
    });
    let document = document.as_object().expect("an object").clone();
    Event::upsert("places", &id, version, document)
}

/// The entity and version of the last of `events` events.
pub fn last_event(events: usize) -> (String, u64) {
    let n = events - 1;
    let entities = entities(events);
    (format!("p{}", n % entities), (n / entities + 1) as u64)
}

/// Seconds of CPU the Redis server has used (`INFO cpu`, all its threads).
pub async fn redis_cpu(redis: &mut redis::aio::MultiplexedConnection) -> anyhow::Result<f64> {
    let info: String = redis::cmd("INFO").arg("cpu").query_async(redis).await?;
    let fields = info.lines().filter_map(|line| {
        let (name, value) = line.split_once(':')?;
        matches!(name, "used_cpu_user" | "used_cpu_sys").then(|| value.trim().parse::<f64>())
    });
    Ok(fields.sum::<Result<f64, _>>()?)
}

/// Seconds of CPU this process (all threads, dead ones included) has used, from
/// `/proc/self/stat` (utime + stime, in the kernel's fixed 100 Hz `USER_HZ` ticks); `None`
/// where there is no such file.
pub fn own_cpu() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) may contain spaces; the fields after its ')' are fixed.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // utime and stime are fields 14 and 15 of the file: 0-based 11 and 12 after the `)`.
    Some((ticks(11)? + ticks(12)?) as f64 / 100.0)
}

/// `seconds` of CPU per event, for printing.
pub fn per_event(seconds: f64, events: u64) -> String {
    format!("{:.1} µs/event", seconds * 1e6 / events as f64)
}

/// Removes every key under `prefix` (the run's own: never the rest of the database).
pub async fn remove_keys(url: &str, prefix: &str) -> anyhow::Result<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let mut cursor: u64 = 0;
    loop {
        let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("UNLINK")
                .arg(&keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}
