//! Events applied per second by one in-process worker from a pre-filled stream.
//!
//! ```text
//! REDIS_URL=redis://127.0.0.1:6379 NATS_URL=nats://127.0.0.1:4222 \
//!   cargo run --release -p cacheflow-sync-worker --example apply_throughput -- 200000
//! ```
//!
//! Takes the usual settings from the environment (e.g. `CACHEFLOW_WORKER__BATCH_SIZE`), but
//! always uses a fresh stream, subject prefix, consumer and key prefix, removed at the end. The
//! events are upserts of the shipped `places` pipeline over `events / 4` entities (so most
//! events replace an older version of their entity), in version order. Besides the rate it
//! prints the CPU Redis and this process (the worker) used per event while applying: the three
//! processes (Redis, NATS, worker) share the machine's cores, and Redis runs the scripts on one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use async_nats::jetstream;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::pipeline::Pipeline;
use tokio_util::sync::CancellationToken;

#[path = "support/bench.rs"]
#[allow(dead_code)] // Shared by the benchmark examples; each uses part of it.
mod bench;

use bench::{last_event, own_cpu, per_event, redis_cpu, remove_keys};

// The worker binary's allocator, so the rate is the worker's and not the system allocator's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let events: usize = match std::env::args().nth(1) {
        Some(n) => n.parse().context("the argument is the number of events")?,
        None => 100_000,
    };
    anyhow::ensure!(events > 0, "the number of events must be at least 1");
    let mut settings = Settings::load(Role::Worker)?;
    let run = format!("bench{}", std::process::id());
    settings.stream.name = run.to_uppercase();
    settings.stream.subject_prefix = run.clone();
    settings.stream.max_msgs_per_subject = -1;
    settings.worker.consumer = format!("{run}_sync");
    settings.worker.key_prefix = format!("{run}:");
    settings.pipeline_config =
        std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../config/pipeline.toml");
    let pipeline = Arc::new(Pipeline::load(&settings.pipeline_config)?);

    let client = async_nats::connect(settings.nats_url.expose()).await?;
    let js = jetstream::new(client);
    cacheflow_shared::events::ensure_stream(&js, &settings.stream).await?;
    let filled = Instant::now();
    prefill(&js, &settings.stream.subject_prefix, events).await?;
    println!("pre-filled {events} events in {:.2?}", filled.elapsed());

    let mut redis = redis::Client::open(settings.redis_url.expose())?
        .get_multiplexed_async_connection()
        .await?;
    let token = CancellationToken::new();
    let (redis_cpu_before, own_cpu_before) = (redis_cpu(&mut redis).await?, own_cpu());
    let started = Instant::now();
    let worker = tokio::spawn(cacheflow_sync_worker::run(
        settings.clone(),
        pipeline,
        token.clone(),
    ));
    // The last event's version in Redis means the end is near: batches run concurrently, so
    // a few earlier ones may still be in flight. Only then is the consumer asked (not polled
    // throughout: each request costs nats-server time) until nothing is pending or unacked.
    let (last_id, last_version) = last_event(events);
    let meta = cacheflow_shared::cache::KeyLayout::new(settings.worker.key_prefix.clone())
        .meta("places", &last_id);
    loop {
        let version: Option<u64> = redis::cmd("HGET")
            .arg(&meta)
            .arg("v")
            .query_async(&mut redis)
            .await?;
        if version == Some(last_version) {
            break;
        }
        anyhow::ensure!(!worker.is_finished(), "the worker stopped early");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_consumer_from_stream(&settings.worker.consumer, &settings.stream.name)
        .await?;
    loop {
        let info = consumer.info().await?;
        if info.num_pending == 0 && info.num_ack_pending == 0 {
            break;
        }
        anyhow::ensure!(!worker.is_finished(), "the worker stopped early");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let elapsed = started.elapsed();
    // Redis runs the scripts on one thread: at ~1 s of Redis CPU per second it is the limit.
    let redis_cpu = redis_cpu(&mut redis).await? - redis_cpu_before;
    let own_cpu = own_cpu()
        .zip(own_cpu_before)
        .map(|(after, before)| after - before);
    token.cancel();
    let stats = worker.await??;
    let per_event = |cpu: f64| per_event(cpu, stats.events());
    println!(
        "applied {} events in {elapsed:.2?}: {:.0} events/s (batch_size {}; {stats:?})",
        stats.events(),
        stats.events() as f64 / elapsed.as_secs_f64(),
        settings.worker.batch_size,
    );
    println!(
        "cpu while applying: redis {:.2} s ({}), worker {}",
        redis_cpu,
        per_event(redis_cpu),
        own_cpu.map_or("unknown (no /proc)".into(), |cpu| format!(
            "{cpu:.2} s ({})",
            per_event(cpu)
        )),
    );

    js.delete_stream(&settings.stream.name).await?;
    remove_keys(settings.redis_url.expose(), &settings.worker.key_prefix).await?;
    Ok(())
}

async fn prefill(js: &jetstream::Context, prefix: &str, events: usize) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(1024);
    for n in 0..events {
        let event = bench::event(n, events);
        acks.push(
            js.send_publish(
                event.subject(prefix),
                jetstream::message::PublishMessage::build()
                    .payload(event.encode().into())
                    .message_id(event.event_id.to_string()),
            )
            .await?,
        );
        if acks.len() == acks.capacity() {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
