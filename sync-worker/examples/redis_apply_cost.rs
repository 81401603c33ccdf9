//! Redis's cost per event of the versioned apply alone: the events of `apply_throughput`, planned
//! and applied through the cache writer as the worker does (batches of `worker.batch_size`, two
//! in flight), with no NATS in the way.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 \
//!   cargo run --release -p cacheflow-sync-worker --example redis_apply_cost -- 200000
//! ```
//!
//! Prints the rate and the Redis CPU per event. On a machine shared with other work, CPU time
//! varies by ±20 % between runs; for comparing two versions of the script, count Redis's
//! instructions instead, which do not vary: run a `redis-server` under
//! `valgrind --tool=callgrind`, point this example at it with a small event count (e.g. 40000)
//! and a long `CACHEFLOW_REDIS__TIMEOUT_MS`, and divide the program total by the events (see
//! docs/WORKER.md, *Benchmark*). Uses its own key prefix, removed at the end.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context as _;
use cacheflow_shared::cache::{CacheWriter, RedisCacheWriter, RedisWriterOptions};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::event::Event;
use cacheflow_shared::pipeline::Pipeline;
use futures::StreamExt;

#[path = "support/bench.rs"]
#[allow(dead_code)] // Shared by the benchmark examples; each uses part of it.
mod bench;

use bench::{per_event, redis_cpu, remove_keys};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the argument is the number of events")?,
        None => 100_000,
    };
    anyhow::ensure!(events > 0, "the number of events must be at least 1");
    let mut settings = Settings::load(Role::Worker)?;
    settings.worker.key_prefix = format!("cost{}:", std::process::id());
    settings.pipeline_config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml");
    let pipeline = Arc::new(Pipeline::load(&settings.pipeline_config)?);
    let all: Vec<Event> = (0..events).map(|n| bench::event(n, events)).collect();
    let writer = RedisCacheWriter::connect(
        &settings.redis_url,
        pipeline,
        RedisWriterOptions::from_settings(&settings),
    )
    .await?;
    let mut redis = redis::Client::open(settings.redis_url.expose())?
        .get_multiplexed_async_connection()
        .await?;

    let cpu_before = redis_cpu(&mut redis).await?;
    let started = Instant::now();
    let writer = &writer;
    // In order, two batches at a time, like the worker (whose order does not matter either).
    let mut applied = futures::stream::iter(all.chunks(settings.worker.batch_size))
        .map(|batch| async move { writer.apply(batch).await.map(|outcomes| outcomes.len()) })
        .buffered(2);
    let mut done = 0u64;
    while let Some(outcomes) = applied.next().await {
        done += outcomes? as u64;
    }
    let elapsed = started.elapsed();
    let cpu = redis_cpu(&mut redis).await? - cpu_before;
    println!(
        "applied {done} events in {elapsed:.2?}: {:.0} events/s (batch_size {}); redis cpu \
         {cpu:.2} s ({})",
        done as f64 / elapsed.as_secs_f64(),
        settings.worker.batch_size,
        per_event(cpu, done),
    );
    remove_keys(settings.redis_url.expose(), &settings.worker.key_prefix).await?;
    Ok(())
}
