//! Writes places into the store named by `STORE_URL` through the store port, as the API would,
//! for the operator commands' benchmarks (`infra/scripts/bench-ops.sh`).
//!
//! ```text
//! STORE_URL=sqlite:///tmp/places.db cargo run --release -p cacheflow-sync-worker \
//!   --example seed_store -- 1000000 [--publish]
//! ```
//!
//! Ids are `p0000000 …`; each place has a category, a rating and a location spread over the
//! globe. With `--publish` every write's event is also published to the stream (settings from
//! the environment, e.g. `NATS_URL`), so `replay` has something to replay; the outbox of the
//! store is left as it is (no relay runs here).

use anyhow::Context as _;
use async_nats::jetstream;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::events::{self, EventPublisher, JetStreamPublisher};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::store::{self, PendingEvent, Precondition};
use serde_json::json;

const CATEGORIES: [&str; 4] = ["cafe", "bar", "restaurant", "bakery"];
/// Events published per round of acks.
const PUBLISH_BATCH: usize = 1_000;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let count: usize = args
        .next()
        .unwrap_or_else(|| "100000".into())
        .parse()
        .context("the first argument is the number of places")?;
    let publish = args.any(|arg| arg == "--publish");
    let settings = Settings::load(Role::Worker)?;
    let pipeline = Pipeline::load(&settings.pipeline_config)?;
    let store = store::open(&settings.store_url, &pipeline, &settings.store).await?;
    let publisher = if publish {
        let client = events::connect(&settings, "cacheflow-seed").await?;
        let js = jetstream::new(client);
        events::ensure_stream(&js, &settings.stream).await?;
        Some(JetStreamPublisher::new(
            js,
            settings.stream.subject_prefix.clone(),
        ))
    } else {
        None
    };
    let started = std::time::Instant::now();
    let mut pending = Vec::with_capacity(PUBLISH_BATCH);
    for n in 0..count {
        let id = format!("p{n:07}");
        // A cheap, deterministic spread (no RNG needed for a benchmark fixture).
        let spread = (n as u64).wrapping_mul(2_654_435_761) % 1_000_000;
        let document = json!({
            "name": format!("Place {n}"),
            "category": CATEGORIES[n % CATEGORIES.len()],
            "rating": (spread % 51) as f64 / 10.0,
            "price": spread % 4 + 1,
            "location": {"type": "Point", "coordinates": [
                (spread % 3_580) as f64 / 10.0 - 179.0,
                (spread % 1_600) as f64 / 10.0 - 80.0,
            ]},
        });
        let document = document.as_object().expect("an object").clone();
        let written = store
            .put("places", &id, document, Precondition::None)
            .await
            .with_context(|| format!("writing {id}"))?;
        if let Some(publisher) = &publisher {
            pending.push(PendingEvent {
                seq: n as u64,
                event: written.event,
            });
            if pending.len() == PUBLISH_BATCH || n + 1 == count {
                for result in publisher.publish(&pending).await {
                    result.map_err(|failure| anyhow::anyhow!("publishing: {failure:?}"))?;
                }
                pending.clear();
            }
        }
    }
    println!(
        "seeded {count} places in {:.1} s{}",
        started.elapsed().as_secs_f64(),
        if publish { " (events published)" } else { "" }
    );
    Ok(())
}
