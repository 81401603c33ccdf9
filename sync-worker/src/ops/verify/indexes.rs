//! The index pass: members of the collection's index keys that should not be there. The keys are
//! every sorted-set and geo template rendered with `*` for its fields (`SCAN MATCH … TYPE zset`;
//! only existing keys can hold a stray member) plus the templates without fields. Only the set of
//! key names is held; members are read one `ZSCAN` page at a time.
//!
//! A member whose meta lists the index is *explained*: whether it belongs there (version, score,
//! the plan's key) is the entity pass's question, or the orphan pass's when the store does not hold
//! it live. Only the unexplained ones are looked up in the store, and are strays unless their plan
//! puts them in that index (then the entity pass counts the meta that forgot it). A stray is
//! counted here only if no other pass counts its entity:
//!
//! - live in the store: `wrong_index`, if the entity is otherwise in step;
//! - not live: `orphaned`, unless its meta says live (the meta pass counts it) or its read key
//!   holds a document (the read-key pass counts it).
//!
//! An entity stray in several indexes is counted once (the ids counted here are remembered: they
//! are drift, normally few).

use std::collections::{BTreeSet, HashSet};

use cacheflow_shared::document::Document;
use cacheflow_shared::pipeline::ProjectionKind;
use redis::{from_redis_value, Value};

use super::context::Ctx;
use super::entities;
use super::expected::Expected;
use super::repair;
use super::scan::{KeyScan, MemberScan};
use super::{Kind, Tally};

pub(super) async fn pass(ctx: &Ctx<'_>, repair: bool, tally: &mut Tally) -> anyhow::Result<()> {
    let mut counted = HashSet::new();
    for key in index_keys(ctx).await? {
        let mut members = MemberScan::new(key.clone());
        while let Some(page) = members.next(ctx).await? {
            ctx.check_stopped()?;
            let strays = strays(ctx, &key, page).await?;
            for (id, kind) in count(ctx, &strays).await? {
                if counted.insert(id.to_owned()) {
                    tally.found(kind, id);
                }
            }
            if repair && !strays.is_empty() {
                let ids: Vec<&str> = strays.iter().map(|s| s.id.as_str()).collect();
                repair::remove_strays(ctx, &key, &ids).await?;
            }
        }
    }
    Ok(())
}

/// The collection's index keys in the audited generation.
async fn index_keys(ctx: &Ctx<'_>) -> anyhow::Result<BTreeSet<String>> {
    let mut keys = BTreeSet::new();
    for projection in &ctx.spec.projections {
        let template = match &projection.kind {
            ProjectionKind::SortedSet { key, .. } | ProjectionKind::Geo { key, .. } => key,
            ProjectionKind::String { .. } | ProjectionKind::Hash { .. } => continue,
        };
        if template.fields().next().is_none() {
            keys.insert(ctx.layout.key(&template.render("", &Document::new())?));
            continue;
        }
        let mut scan = KeyScan::of_template(ctx.layout.prefix(), template, "zset");
        while let Some(page) = scan.next(ctx).await? {
            keys.extend(page.into_iter().filter(|key| !ctx.is_bookkeeping(key)));
        }
    }
    Ok(keys)
}

/// A member of an index that nothing explains.
struct Stray {
    id: String,
    /// The entity as the store holds it live (`Err` when the projections refuse its document),
    /// `None` when the store does not hold it live.
    live: Option<Result<Expected, ()>>,
    /// Its meta says live (`d = 0`).
    live_meta: bool,
}

/// The members of one page of `key` that their metas do not explain and their plans do not put
/// there.
async fn strays(ctx: &Ctx<'_>, key: &str, page: Vec<(String, f64)>) -> anyhow::Result<Vec<Stray>> {
    let mut pipe = redis::pipe();
    for (id, _) in &page {
        pipe.cmd("HMGET")
            .arg(ctx.layout.meta(ctx.name(), id))
            .arg("d")
            .arg("idx");
    }
    let metas = ctx.each("reading index members' metas", &pipe).await?;
    let mut unexplained = Vec::new();
    for ((id, _), meta) in page.into_iter().zip(metas) {
        let (d, idx): (Option<String>, Option<String>) = meta
            .ok()
            .and_then(|value| from_redis_value(value).ok())
            .unwrap_or_default();
        let listed = idx
            .and_then(|idx| serde_json::from_str::<Vec<String>>(&idx).ok())
            .is_some_and(|idx| idx.iter().any(|k| k == key));
        if !listed {
            unexplained.push((id, d.as_deref() == Some("0")));
        }
    }
    let ids: Vec<String> = unexplained.iter().map(|(id, _)| id.clone()).collect();
    let documents = ctx.live(&ids).await?;
    let mut strays = Vec::new();
    for ((id, live_meta), document) in unexplained.into_iter().zip(documents) {
        let live = document.map(|live| Expected::of(ctx.spec, ctx.read_key, live).map_err(drop));
        let planned_here = matches!(&live, Some(Ok(e)) if e.is_member_of(&ctx.layout, key));
        if !planned_here {
            strays.push(Stray {
                id,
                live,
                live_meta,
            });
        }
    }
    Ok(strays)
}

/// The strays this pass counts, with their kind (see the module comment).
async fn count<'s>(ctx: &Ctx<'_>, strays: &'s [Stray]) -> anyhow::Result<Vec<(&'s str, Kind)>> {
    let mut counted = Vec::new();
    // Live entities: only those the entity pass will find in step.
    let live: Vec<(&Stray, &Expected)> = strays
        .iter()
        .filter_map(|s| match &s.live {
            Some(Ok(expected)) => Some((s, expected)),
            _ => None,
        })
        .collect();
    let expected: Vec<Expected> = live.iter().map(|(_, e)| (*e).clone()).collect();
    let verdicts = entities::check(ctx, &expected).await?;
    for ((stray, _), verdict) in live.iter().zip(verdicts) {
        if verdict.kind.is_none() {
            counted.push((stray.id.as_str(), Kind::WrongIndex));
        }
    }
    counted.extend(
        strays
            .iter()
            .filter(|s| matches!(s.live, Some(Err(()))))
            .map(|s| (s.id.as_str(), Kind::WrongIndex)),
    );
    // Not live: only those no orphan pass counts.
    let gone: Vec<&Stray> = strays
        .iter()
        .filter(|s| s.live.is_none() && !s.live_meta)
        .collect();
    let documents = read_key_documents(ctx, gone.iter().map(|s| s.id.as_str())).await?;
    for (stray, document) in gone.into_iter().zip(documents) {
        if !document {
            counted.push((stray.id.as_str(), Kind::Orphaned));
        }
    }
    Ok(counted)
}

/// Whether the read key of each id holds a document (what the read-key pass looks for).
pub(super) async fn read_key_documents<'i>(
    ctx: &Ctx<'_>,
    ids: impl Iterator<Item = &'i str>,
) -> anyhow::Result<Vec<bool>> {
    let ids: Vec<&str> = ids.collect();
    let Some(template) = ctx.read_key else {
        return Ok(vec![false; ids.len()]);
    };
    let mut pipe = redis::pipe();
    for id in &ids {
        let key = template.render(id, &Document::new())?;
        pipe.cmd("GETRANGE").arg(ctx.layout.key(&key)).arg(0).arg(0);
    }
    let replies = ctx.each("reading read keys", &pipe).await?;
    Ok(replies.into_iter().map(starts_a_document).collect())
}

/// A string whose first byte opens a JSON object: documents always do; the absent marker (empty)
/// and everything else never.
pub(super) fn starts_a_document(reply: redis::RedisResult<Value>) -> bool {
    matches!(reply, Ok(Value::BulkString(first)) if first == b"{")
}
