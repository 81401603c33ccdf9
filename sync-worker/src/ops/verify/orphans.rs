//! The orphan passes: entities the audited generation holds that the store does not hold live.
//! Both look only at entities absent from the store, which the entity pass never sees, and they
//! split them by their meta, so no entity is counted twice:
//!
//! - [`metas`]: a meta that says live (`d = 0`);
//! - [`read_keys`]: a document under the read key while the meta is absent or a tombstone (a
//!   meta lost to eviction, or a key written by something else). The absent marker is not one.
//!
//! Each page: one `SCAN` step, one pipelined read of the metas, one store read of the candidates.

use cacheflow_shared::pipeline::{KeyTemplate, Segment};
use redis::from_redis_value;

use super::context::Ctx;
use super::indexes::starts_a_document;
use super::scan::{template_matches, KeyScan};
use super::{repair, Kind, Tally};
use cacheflow_shared::cache::redis::glob_escape;

/// An entity the cache holds that the store may not.
struct Candidate {
    id: String,
    /// The meta version seen (0 = no meta): a purge happens only if it is still there.
    observed: u64,
}

pub(super) async fn metas(ctx: &Ctx<'_>, repair: bool, tally: &mut Tally) -> anyhow::Result<()> {
    let prefix = ctx.layout.meta(ctx.name(), "");
    let mut scan = KeyScan::new(format!("{}*", glob_escape(&prefix)), "hash");
    while let Some(page) = scan.next(ctx).await? {
        ctx.check_stopped()?;
        let ids: Vec<String> = page
            .iter()
            .filter_map(|key| key.strip_prefix(&prefix))
            .map(str::to_owned)
            .collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            ask_meta_head(&mut pipe, ctx, id);
        }
        let mut candidates = Vec::new();
        for (id, meta) in ids.into_iter().zip(ctx.each("reading metas", &pipe).await?) {
            if let MetaHead::Live(observed) = MetaHead::of(meta) {
                candidates.push(Candidate { id, observed });
            }
        }
        settle(ctx, candidates, repair, tally).await?;
    }
    Ok(())
}

pub(super) async fn read_keys(
    ctx: &Ctx<'_>,
    repair: bool,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let Some(template) = ctx.read_key else {
        return Ok(());
    };
    let Some((before, after)) = around_id(template) else {
        tracing::debug!(template = %template, "read key is not `…{{id}}…`; no read-key orphan pass");
        return Ok(());
    };
    // Other templates whose keys the read key's pattern also matches (`place:{id}:h` under
    // `place:*`): such a key is not a read key, and purging "its" id would delete another
    // entity's projection.
    let others: Vec<&KeyTemplate> = ctx
        .spec
        .projections
        .iter()
        .map(|p| p.kind.key())
        .filter(|t| *t != template)
        .collect();
    let mut scan = KeyScan::of_template(ctx.layout.prefix(), template, "string");
    while let Some(page) = scan.next(ctx).await? {
        ctx.check_stopped()?;
        let ids: Vec<String> = page
            .iter()
            .filter(|key| !ctx.is_bookkeeping(key))
            .filter_map(|key| key.strip_prefix(ctx.layout.prefix()))
            .filter(|key| !others.iter().any(|t| template_matches(t, key)))
            .filter_map(|key| key.strip_prefix(before)?.strip_suffix(after))
            .filter(|id| !id.is_empty())
            .map(str::to_owned)
            .collect();
        let mut pipe = redis::pipe();
        for id in &ids {
            ask_meta_head(&mut pipe, ctx, id);
            let key = ctx.layout.key(&format!("{before}{id}{after}"));
            pipe.cmd("GETRANGE").arg(key).arg(0).arg(0);
        }
        let mut replies = ctx.each("reading read keys", &pipe).await?.into_iter();
        let mut candidates = Vec::new();
        for id in ids {
            let (Some(meta), Some(first)) = (replies.next(), replies.next()) else {
                break;
            };
            let observed = match MetaHead::of(meta) {
                MetaHead::Live(_) => continue,
                MetaHead::Tombstone(version) => version,
                MetaHead::Missing => 0,
            };
            if starts_a_document(first) {
                candidates.push(Candidate { id, observed });
            }
        }
        settle(ctx, candidates, repair, tally).await?;
    }
    Ok(())
}

/// What an entity's meta says, from `HMGET meta v d`.
enum MetaHead {
    Live(u64),
    Tombstone(u64),
    Missing,
}

impl MetaHead {
    fn of(reply: redis::RedisResult<redis::Value>) -> Self {
        let (v, d): (Option<String>, Option<String>) = reply
            .ok()
            .and_then(|value| from_redis_value(value).ok())
            .unwrap_or_default();
        match (v, d.as_deref() == Some("1")) {
            (None, _) => MetaHead::Missing,
            (Some(v), false) => MetaHead::Live(v.parse().unwrap_or(0)),
            (Some(v), true) => MetaHead::Tombstone(v.parse().unwrap_or(0)),
        }
    }
}

fn ask_meta_head(pipe: &mut redis::Pipeline, ctx: &Ctx<'_>, id: &str) {
    pipe.cmd("HMGET")
        .arg(ctx.layout.meta(ctx.name(), id))
        .arg("v")
        .arg("d");
}

/// Counts (and purges) the candidates the store does not hold live.
async fn settle(
    ctx: &Ctx<'_>,
    candidates: Vec<Candidate>,
    repair: bool,
    tally: &mut Tally,
) -> anyhow::Result<()> {
    let ids: Vec<String> = candidates.iter().map(|c| c.id.clone()).collect();
    let documents = ctx.live(&ids).await?;
    for (candidate, document) in candidates.into_iter().zip(documents) {
        if document.is_some() {
            continue;
        }
        tally.found(Kind::Orphaned, &candidate.id);
        if repair {
            repair::purge(ctx, &candidate.id, candidate.observed).await?;
        }
    }
    Ok(())
}

/// The literal text before and after `{id}` when `template` is exactly `…{id}…`.
fn around_id(template: &KeyTemplate) -> Option<(&str, &str)> {
    fn literal(segment: Option<&Segment>) -> Option<&str> {
        match segment {
            Some(Segment::Literal(text)) => Some(text.as_str()),
            _ => None,
        }
    }
    let segments = template.segments();
    let at = segments
        .iter()
        .position(|s| matches!(s, Segment::Field(f) if f == "id"))?;
    if segments.len() > 3 || template.fields().count() != 1 {
        return None;
    }
    let before = if at == 0 {
        ""
    } else {
        literal(segments.first())?
    };
    let after = if at + 1 == segments.len() {
        ""
    } else {
        literal(segments.last())?
    };
    Some((before, after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_key_templates_split_around_the_id() {
        let around = |raw: &str| {
            let template = KeyTemplate::parse(raw).unwrap();
            around_id(&template).map(|(a, b)| (a.to_owned(), b.to_owned()))
        };
        assert_eq!(around("place:{id}"), Some(("place:".into(), String::new())));
        assert_eq!(around("{id}:doc"), Some((String::new(), ":doc".into())));
        assert_eq!(around("p:{id}:d"), Some(("p:".into(), ":d".into())));
        assert_eq!(around("{id}"), Some((String::new(), String::new())));
        assert_eq!(around("p:{id}:{id}"), None);
        assert_eq!(around("p:{category}"), None);
    }
}
