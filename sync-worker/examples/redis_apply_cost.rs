//! SCRATCH (not to keep): Redis CPU per event of the versioned apply, without NATS.
use std::sync::Arc;
use std::time::Instant;

use cacheflow_shared::cache::{CacheWriter, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use futures::StreamExt;
use serde_json::json;

const CATEGORIES: [&str; 4] = ["cafe", "bar", "restaurant", "bakery"];

async fn redis_cpu(conn: &mut redis::aio::MultiplexedConnection) -> f64 {
    let info: String = redis::cmd("INFO")
        .arg("cpu")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .map(|l| l.split(':').nth(1).unwrap().trim().parse::<f64>().unwrap())
        .sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = std::env::args()
        .nth(1)
        .map_or(200_000, |n| n.parse().unwrap());
    let batch: usize = std::env::args().nth(2).map_or(512, |n| n.parse().unwrap());
    let mut settings = Settings::load(Role::Worker)?;
    settings.worker.key_prefix = format!("cost{}:", std::process::id());
    let pipeline = Arc::new(Pipeline::load(
        &std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml"),
    )?);
    let entities = (events / 4).max(1);
    let all: Vec<Event> = (0..events)
        .map(|n| {
            let id = format!("p{}", n % entities);
            let version = (n / entities + 1) as u64;
            let document = json!({
                "id": id, "version": version, "name": format!("Place {n}"),
                "category": CATEGORIES[n % CATEGORIES.len()], "rating": (n % 50) as f64 / 10.0,
                "price": n % 4 + 1,
                "location": {"type": "Point", "coordinates": [(n % 360) as f64 - 180.0, (n % 170) as f64 - 85.0]},
            });
            Event::upsert("places", &id, version, document.as_object().unwrap().clone())
        })
        .collect();
    let writer = RedisCacheWriter::connect(
        &settings.redis_url,
        pipeline,
        RedisWriterOptions::from_settings(&settings),
    )
    .await?;
    let mut conn = redis::Client::open(settings.redis_url.expose())?
        .get_multiplexed_async_connection()
        .await?;
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await?;
    let cpu0 = redis_cpu(&mut conn).await;
    let started = Instant::now();
    let writer = &writer;
    let mut done = futures::stream::iter(all.chunks(batch))
        .map(|chunk| async move { writer.apply(chunk).await.unwrap().len() })
        .buffered(2);
    let mut n = 0;
    while let Some(k) = done.next().await {
        n += k;
    }
    let elapsed = started.elapsed();
    let cpu1 = redis_cpu(&mut conn).await;
    println!(
        "{n} events in {elapsed:.2?}: {:.0}/s, redis cpu {:.2} us/event",
        n as f64 / elapsed.as_secs_f64(),
        (cpu1 - cpu0) * 1e6 / n as f64
    );
    let _: () = redis::cmd("FLUSHDB").query_async(&mut conn).await?;
    Ok(())
}
