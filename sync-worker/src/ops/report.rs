//! Runs an operator command and prints its summary on stdout (text lines, or with `--json` one
//! JSON document); logs and progress go to stderr, so a script can read stdout alone. The exit
//! code tells scripts what happened: 0 done, 1 failed (the error is printed), 2 drift found
//! (verify), 3 interrupted (run the command again to resume).

use std::process::ExitCode;

use serde_json::{json, Value};

use super::progress::Summary;
use super::verify::{Audit, Drift};
use super::{backfill, rebuild, replay, verify, Ops};
use crate::cli::Command;

pub const DRIFT: u8 = 2;
pub const INTERRUPTED: u8 = 3;

/// What a command prints: the same facts as text lines and as JSON.
struct Report {
    lines: Vec<String>,
    json: Value,
    code: ExitCode,
}

pub async fn run(ops: &Ops, command: Command, as_json: bool) -> anyhow::Result<ExitCode> {
    let report = match command {
        Command::Run => anyhow::bail!("`run` is not an operator command"),
        Command::Backfill(args) => backfilled(&backfill::run(ops, &args).await?),
        Command::Replay(args) => replayed(&replay::run(ops, &args).await?),
        Command::Rebuild(args) => rebuilt(&rebuild::run(ops, &args).await?),
        Command::Verify(args) => verified(&verify::run(ops, &args).await?),
    };
    if as_json {
        println!("{}", report.json);
    } else {
        for line in &report.lines {
            println!("{line}");
        }
    }
    Ok(report.code)
}

fn timing(summary: &Summary) -> Value {
    json!({ "seconds": summary.elapsed.as_secs_f64(), "per_second": summary.rate })
}

fn backfilled(report: &[backfill::Filled]) -> Report {
    let lines = report
        .iter()
        .map(|filled| {
            format!(
                "backfill {}: {} documents in {:.1} s ({:.0}/s), {} in bulk transactions, {} \
                 rejected{}{}",
                filled.collection,
                filled.documents,
                filled.summary.elapsed.as_secs_f64(),
                filled.summary.rate,
                filled.in_bulk,
                filled.rejected,
                filled
                    .resumed_after
                    .as_ref()
                    .map(|id| format!(", resumed after `{id}`"))
                    .unwrap_or_default(),
                if filled.complete { "" } else { ", INTERRUPTED" },
            )
        })
        .collect();
    let collections: Vec<Value> = report
        .iter()
        .map(|filled| {
            json!({
                "collection": filled.collection, "documents": filled.documents,
                "in_bulk": filled.in_bulk, "rejected": filled.rejected,
                "resumed_after": filled.resumed_after, "complete": filled.complete,
                "timing": timing(&filled.summary),
            })
        })
        .collect();
    let complete = report.iter().all(|f| f.complete);
    Report {
        lines,
        json: json!({ "command": "backfill", "complete": complete, "collections": collections }),
        code: done_unless(complete),
    }
}

fn replayed(replayed: &replay::Replayed) -> Report {
    let line = format!(
        "replay: {} events in {:.1} s ({:.0}/s): {} applied, {} deleted, {} stale, {} rejected, \
         {} skipped{}",
        replayed.events,
        replayed.summary.elapsed.as_secs_f64(),
        replayed.summary.rate,
        replayed.applied,
        replayed.deleted,
        replayed.stale,
        replayed.rejected,
        replayed.skipped,
        if replayed.complete {
            ""
        } else {
            ", INTERRUPTED"
        },
    );
    Report {
        lines: vec![line],
        json: json!({
            "command": "replay", "complete": replayed.complete, "events": replayed.events,
            "applied": replayed.applied, "deleted": replayed.deleted, "stale": replayed.stale,
            "rejected": replayed.rejected, "skipped": replayed.skipped,
            "timing": timing(&replayed.summary),
        }),
        code: done_unless(replayed.complete),
    }
}

fn rebuilt(rebuilt: &[rebuild::Rebuilt]) -> Report {
    let lines = rebuilt
        .iter()
        .map(|r| {
            format!(
                "rebuild {}: generation `{}` replaced `{}`: {} items written in {:.1} s, {} old \
                 keys deleted",
                r.collection,
                r.generation,
                r.previous,
                r.items,
                r.elapsed.as_secs_f64(),
                r.removed,
            )
        })
        .collect();
    let collections: Vec<Value> = rebuilt
        .iter()
        .map(|r| {
            json!({
                "collection": r.collection, "generation": r.generation, "previous": r.previous,
                "items": r.items, "seconds": r.elapsed.as_secs_f64(), "removed": r.removed,
            })
        })
        .collect();
    Report {
        lines,
        json: json!({ "command": "rebuild", "collections": collections }),
        code: ExitCode::SUCCESS,
    }
}

fn drift_line(drift: &Drift) -> String {
    format!(
        "{} missing, {} stale, {} orphaned, {} wrong index",
        drift.missing, drift.stale, drift.orphaned, drift.wrong_index
    )
}

fn drift_json(drift: &Drift) -> Value {
    json!({
        "missing": drift.missing, "stale": drift.stale, "orphaned": drift.orphaned,
        "wrong_index": drift.wrong_index,
    })
}

fn verified(audits: &[Audit]) -> Report {
    let mut lines = Vec::new();
    for audit in audits {
        lines.push(format!(
            "verify {}: {} checked in {:.1} s ({:.0}/s): {}",
            audit.collection,
            audit.checked,
            audit.summary.elapsed.as_secs_f64(),
            audit.summary.rate,
            drift_line(&audit.found),
        ));
        if let Some(remaining) = &audit.remaining {
            lines.push(format!(
                "verify {}: after repair: {}",
                audit.collection,
                drift_line(remaining)
            ));
        }
        if !audit.drifted_ids.is_empty() {
            let more = if (audit.drifted_ids.len() as u64) < audit.left().total() {
                ", ..."
            } else {
                ""
            };
            lines.push(format!(
                "verify {}: drifted: {}{more}",
                audit.collection,
                audit.drifted_ids.join(", ")
            ));
        }
    }
    let drifted = audits.iter().any(|audit| audit.left().total() > 0);
    let collections: Vec<Value> = audits
        .iter()
        .map(|audit| {
            json!({
                "collection": audit.collection, "generation": audit.generation,
                "checked": audit.checked, "rejected": audit.rejected,
                "found": drift_json(&audit.found),
                "after_repair": audit.remaining.as_ref().map(drift_json),
                "drifted_ids": audit.drifted_ids, "timing": timing(&audit.summary),
            })
        })
        .collect();
    Report {
        lines,
        json: json!({ "command": "verify", "drifted": drifted, "collections": collections }),
        code: if drifted {
            ExitCode::from(DRIFT)
        } else {
            ExitCode::SUCCESS
        },
    }
}

fn done_unless(complete: bool) -> ExitCode {
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INTERRUPTED)
    }
}
