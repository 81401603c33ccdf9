//! The entity pass: every live document of the store (or a sample) against the audited generation.
//! The store is read in id order one page ahead (`store_pages`, as backfill does); each page's
//! Redis state is read in one pipelined round trip: per entity its meta, its strings, its hashes
//! and its score in each planned index.

use redis::{from_redis_value, RedisResult, Value};

use super::super::progress::Progress;
use super::super::store_pages::StorePages;
use super::classify::{classify, Meta, Observed};
use super::context::Ctx;
use super::expected::Expected;
use super::sample::Sampler;
use super::{repair, Kind, Tally};

/// One entity's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Checked {
    pub kind: Option<Kind>,
    /// The version of a tombstone the cache holds for the entity.
    pub tombstone: Option<u64>,
}

pub(super) async fn pass(
    ctx: &Ctx<'_>,
    mut sampler: Option<Sampler>,
    repair: bool,
    progress: &mut Progress,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let mut pages = StorePages::read_ahead(
        ctx.store.clone(),
        &ctx.ops.settings,
        ctx.name(),
        ctx.batch,
        None,
    );
    let result = async {
        while let Some(page) = pages.next().await {
            ctx.check_stopped()?;
            let scanned = page.len() as u64;
            let mut expected = Vec::with_capacity(page.len());
            for live in page {
                if !sampler.as_mut().is_none_or(Sampler::take) {
                    continue;
                }
                match Expected::of(ctx.spec, ctx.read_key, live) {
                    Ok(entity) => expected.push(entity),
                    Err(rejected) => {
                        tally.rejected += 1;
                        tracing::warn!(
                            collection = ctx.name(),
                            id = rejected.id,
                            reason = rejected.reason,
                            "a live document the projections refuse; not compared"
                        );
                    }
                }
            }
            let checked = check(ctx, &expected).await?;
            tally.checked += expected.len() as u64;
            for (entity, verdict) in expected.iter().zip(&checked) {
                if let Some(kind) = verdict.kind {
                    tally.found(kind, entity.id());
                }
            }
            if repair {
                repair::refill(ctx, &expected, &checked).await?;
            }
            progress.advance(scanned);
            if sampler.as_ref().is_some_and(Sampler::is_full) {
                break;
            }
        }
        anyhow::Ok(())
    }
    .await;
    // Whatever happened, stop the reader before returning.
    let read = pages.finish().await;
    result?;
    read
}

/// The verdict on each entity, in order: one round trip for all of them.
pub(super) async fn check(ctx: &Ctx<'_>, expected: &[Expected]) -> anyhow::Result<Vec<Checked>> {
    let layout = &ctx.layout;
    let mut pipe = redis::pipe();
    for entity in expected {
        let plan = &entity.projections;
        pipe.cmd("HMGET")
            .arg(layout.meta(ctx.name(), entity.id()))
            .arg(&["v", "d", "keys", "idx"][..]);
        for string in &plan.strings {
            pipe.cmd("GET").arg(layout.key(&string.key));
        }
        for hash in &plan.hashes {
            pipe.cmd("HGETALL").arg(layout.key(&hash.key));
        }
        for key in entity.index_keys() {
            pipe.cmd("ZSCORE").arg(layout.key(key)).arg(entity.id());
        }
    }
    let mut replies = ctx
        .each("reading the cache's entities", &pipe)
        .await?
        .into_iter();
    let mut verdicts = Vec::with_capacity(expected.len());
    for entity in expected {
        let observed = observe(entity, &mut replies);
        verdicts.push(Checked {
            kind: classify(entity, &observed, layout),
            tombstone: observed
                .meta
                .filter(|meta| meta.deleted)
                .map(|meta| meta.version),
        });
    }
    Ok(verdicts)
}

/// Decodes one entity's replies, in the order [`check`] sent its commands.
fn observe(entity: &Expected, replies: &mut impl Iterator<Item = RedisResult<Value>>) -> Observed {
    let mut observed = Observed::default();
    let mut refused = false;
    let mut read = || match replies.next() {
        Some(Ok(value)) => value,
        // WRONGTYPE (a key of another type), or a reply missing: either way not what the plan
        // says, and a fill at the same version rewrites it.
        _ => {
            refused = true;
            Value::Nil
        }
    };
    let meta: Vec<Option<String>> = from_redis_value(read()).unwrap_or_default();
    observed.meta = <[Option<String>; 4]>::try_from(meta)
        .ok()
        .and_then(Meta::parse);
    for _ in &entity.projections.strings {
        let value = match read() {
            Value::Nil => None,
            value => from_redis_value::<Vec<u8>>(value).ok(),
        };
        observed.strings.push(value);
    }
    for _ in &entity.projections.hashes {
        let value = from_redis_value(read()).unwrap_or_default();
        observed.hashes.push(value);
    }
    for _ in &entity.scores {
        let value = from_redis_value::<Option<f64>>(read());
        observed.scores.push(value.ok().flatten());
    }
    observed.refused = refused;
    observed
}
