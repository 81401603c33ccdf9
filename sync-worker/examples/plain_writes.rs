//! The operator benchmark's baseline (`infra/scripts/bench-ops.sh`): prints, in the Redis
//! protocol, the plainest commands that make Redis hold every live document of a collection
//! exactly as a backfill leaves it (per entity the string, the hash and the meta; per
//! [`BULK_RECORDS`] entities one `DEL` and one `ZADD` per index key), with no version check and
//! no transaction. `redis-cli --pipe` then measures what Redis needs at the very least.
//!
//! ```text
//! STORE_URL=sqlite:///tmp/places.db PIPELINE_CONFIG=config/pipeline.toml \
//!   cargo run --release -p cacheflow-sync-worker --example plain_writes -- places > plain.resp
//! ```

use std::io::{BufWriter, Write};

use anyhow::Context as _;
use cacheflow_shared::cache::redis::{unchecked_writes, LiveDocument, BULK_RECORDS};
use cacheflow_shared::cache::KeyLayout;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::store;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let collection = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "places".to_owned());
    let settings = Settings::load(Role::Worker)?;
    let pipeline = Pipeline::load(&settings.pipeline_config)?;
    let store = store::open(&settings.store_url, &pipeline, &settings.store).await?;
    let layout = KeyLayout::new(settings.worker.key_prefix.clone());
    let mut out = BufWriter::with_capacity(1 << 20, std::io::stdout().lock());
    let mut after: Option<String> = None;
    loop {
        let page = store
            .scan(&collection, after.as_deref(), BULK_RECORDS)
            .await
            .context("reading the store")?;
        let Some(last) = page.last() else {
            break;
        };
        let id_of = |live: &store::Versioned| {
            live.document
                .get("id")
                .and_then(|id| id.as_str())
                .unwrap_or_default()
                .to_owned()
        };
        after = Some(id_of(last));
        let ids: Vec<String> = page.iter().map(id_of).collect();
        let live: Vec<LiveDocument<'_>> = page
            .iter()
            .zip(&ids)
            .map(|(versioned, id)| LiveDocument {
                id,
                version: versioned.version,
                document: &versioned.document,
            })
            .collect();
        for cmd in unchecked_writes(&pipeline, &collection, &layout, &live)? {
            out.write_all(&cmd.get_packed_command())?;
        }
    }
    out.flush()?;
    Ok(())
}
