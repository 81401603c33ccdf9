//! `--repair`: every fix goes through a write that re-checks, inside Redis, that it does not undo
//! something newer than what the auditor saw, so repairing is safe while events flow.
//!
//! - Missing, stale, wrong index: the store's document written in populate mode
//!   (`fill_events`): the same version may be written again, a newer one or a tombstone never.
//! - Orphaned: `purge`, only if the meta still holds the version the auditor observed.
//! - Stray index members: `ZREM`, only if the member's meta does not list that index ([`STRAY`]).

use cacheflow_shared::cache::ApplyOutcome;
use cacheflow_shared::event::Event;

use super::super::retry_transient;
use super::context::Ctx;
use super::entities::Checked;
use super::expected::Expected;

/// Removes member `ARGV[1]` from index `KEYS[1]` unless its meta `KEYS[2]` lists that index:
/// atomic, so an event that has just moved the entity there is never undone. A meta whose list
/// does not parse is left alone rather than guessed at.
const STRAY: &str = r"
local idx = redis.call('HGET', KEYS[2], 'idx')
if idx then
  local ok, keys = pcall(cjson.decode, idx)
  if not ok then return 0 end
  for _, key in ipairs(keys) do
    if key == KEYS[1] then return 0 end
  end
end
return redis.call('ZREM', KEYS[1], ARGV[1])
";

/// Rewrites the drifted entities of a page from their store documents.
pub(super) async fn refill(
    ctx: &Ctx<'_>,
    expected: &[Expected],
    checked: &[Checked],
) -> anyhow::Result<()> {
    let mut events: Vec<Event> = Vec::new();
    for (entity, verdict) in expected.iter().zip(checked) {
        if verdict.kind.is_none() {
            continue;
        }
        // A tombstone at exactly the store's version blocks a fill (it never writes over a
        // tombstone): remove it first, if it is still the one seen.
        if verdict.tombstone == Some(entity.version()) {
            purge_as(ctx, entity.id(), entity.version(), None).await?;
        }
        events.push(entity.event.clone());
    }
    if events.is_empty() {
        return Ok(());
    }
    let outcomes = retry_transient(&ctx.ops.settings, "repairing entities", || {
        ctx.ops.writer.fill_events(&events)
    })
    .await?;
    for (event, outcome) in events.iter().zip(outcomes) {
        if let ApplyOutcome::Rejected(err) = outcome {
            tracing::warn!(collection = ctx.name(), id = event.id, %err, "repair refused");
        }
    }
    Ok(())
}

/// Clears an orphan if the cache still holds `observed` for it (0 = no meta), leaving the
/// store's tombstone version, if it has one.
pub(super) async fn purge(ctx: &Ctx<'_>, id: &str, observed: u64) -> anyhow::Result<()> {
    let tombstone = retry_transient(&ctx.ops.settings, "reading the store", || {
        ctx.store.latest_version(ctx.name(), id)
    })
    .await?;
    purge_as(ctx, id, observed, tombstone).await
}

async fn purge_as(
    ctx: &Ctx<'_>,
    id: &str,
    observed: u64,
    tombstone: Option<u64>,
) -> anyhow::Result<()> {
    let outcome = retry_transient(&ctx.ops.settings, "purging an orphan", || {
        ctx.ops.writer.purge(ctx.name(), id, observed, tombstone)
    })
    .await?;
    match outcome {
        ApplyOutcome::Rejected(err) => {
            tracing::warn!(collection = ctx.name(), id, %err, "purge refused");
        }
        ApplyOutcome::Stale => {
            tracing::debug!(collection = ctx.name(), id, "changed meanwhile; not purged");
        }
        _ => {}
    }
    Ok(())
}

/// Removes stray `members` from the index `key`, in one round trip.
pub(super) async fn remove_strays(
    ctx: &Ctx<'_>,
    key: &str,
    members: &[&str],
) -> anyhow::Result<()> {
    let mut pipe = redis::pipe();
    for member in members {
        pipe.cmd("EVAL")
            .arg(STRAY)
            .arg(2)
            .arg(key)
            .arg(ctx.layout.meta(ctx.name(), member))
            .arg(*member);
    }
    for (member, result) in members
        .iter()
        .zip(ctx.each("removing stray members", &pipe).await?)
    {
        if let Err(err) = result {
            tracing::warn!(collection = ctx.name(), key, member, %err, "stray member not removed");
        }
    }
    Ok(())
}
