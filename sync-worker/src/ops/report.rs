//! Runs an operator command and prints its summary on stdout; the exit code tells scripts what
//! happened: 0 done, 1 failed (the error is printed), 2 drift found (verify), 3 interrupted
//! (run the command again to resume).

use std::process::ExitCode;

use super::{backfill, rebuild, replay, verify, Ops};
use crate::cli::Command;

pub const DRIFT: u8 = 2;
pub const INTERRUPTED: u8 = 3;

pub async fn run(ops: &Ops, command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run => anyhow::bail!("`run` is not an operator command"),
        Command::Backfill(args) => {
            let report = backfill::run(ops, &args).await?;
            for filled in &report {
                println!(
                    "backfill {}: {} documents in {:.1} s ({:.0}/s), {} in bulk transactions, \
                     {} rejected{}{}",
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
                );
            }
            Ok(done_unless(report.iter().all(|f| f.complete)))
        }
        Command::Replay(args) => {
            let replayed = replay::run(ops, &args).await?;
            println!(
                "replay: {} events in {:.1} s ({:.0}/s): {} applied, {} deleted, {} stale, {} \
                 rejected, {} skipped{}",
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
            Ok(done_unless(replayed.complete))
        }
        Command::Rebuild(args) => {
            let rebuilt = rebuild::run(ops, &args).await?;
            for r in &rebuilt {
                println!(
                    "rebuild {}: generation `{}` replaced `{}`: {} items written in {:.1} s, \
                     {} old keys deleted",
                    r.collection,
                    r.generation,
                    r.previous,
                    r.items,
                    r.elapsed.as_secs_f64(),
                    r.removed,
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify(args) => {
            let audits = verify::run(ops, &args).await?;
            let mut drifted = false;
            for audit in &audits {
                let found = audit.found;
                println!(
                    "verify {}: {} checked in {:.1} s ({:.0}/s): {} missing, {} stale, {} \
                     orphaned, {} wrong index",
                    audit.collection,
                    audit.checked,
                    audit.summary.elapsed.as_secs_f64(),
                    audit.summary.rate,
                    found.missing,
                    found.stale,
                    found.orphaned,
                    found.wrong_index,
                );
                let left = match audit.remaining {
                    Some(remaining) => {
                        println!(
                            "verify {}: after repair: {} missing, {} stale, {} orphaned, {} \
                             wrong index",
                            audit.collection,
                            remaining.missing,
                            remaining.stale,
                            remaining.orphaned,
                            remaining.wrong_index,
                        );
                        remaining.total()
                    }
                    None => found.total(),
                };
                drifted |= left > 0;
            }
            Ok(if drifted {
                ExitCode::from(DRIFT)
            } else {
                ExitCode::SUCCESS
            })
        }
    }
}

fn done_unless(complete: bool) -> ExitCode {
    if complete {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(INTERRUPTED)
    }
}
