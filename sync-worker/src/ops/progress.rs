//! Progress of an operator command: a bar with rate and ETA when stderr is a terminal, a log line
//! every few seconds otherwise (containers, CI), and the ops metrics either way
//! (`cacheflow_ops_items_total`, `cacheflow_ops_progress_ratio`).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use cacheflow_shared::telemetry::names::{OPS_ITEMS_TOTAL, OPS_PROGRESS_RATIO};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// How often a log line reports progress when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

/// One command's progress over one collection.
pub struct Progress {
    command: &'static str,
    label: String,
    total: Option<u64>,
    done: u64,
    started: Instant,
    last_log: Instant,
    bar: Option<ProgressBar>,
}

/// What a finished (or interrupted) command did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Summary {
    pub items: u64,
    pub elapsed: Duration,
    /// Items per second over the whole run.
    pub rate: f64,
}

impl Progress {
    /// `command` is one of `names::OPS_COMMANDS`; `total`, when known, gives the ratio and ETA.
    pub fn start(command: &'static str, label: impl Into<String>, total: Option<u64>) -> Self {
        let label = label.into();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = match total {
                Some(total) => ProgressBar::new(total),
                None => ProgressBar::new_spinner(),
            };
            let template = match total {
                Some(_) => "{prefix} [{bar:40}] {human_pos}/{human_len} {per_sec} ETA {eta}",
                None => "{prefix} {spinner} {human_pos} {per_sec}",
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("the template is valid")
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{command} {label}"));
            bar.set_draw_target(ProgressDrawTarget::stderr_with_hz(4));
            bar
        });
        tracing::info!(command, target = %label, total, "started");
        metrics::gauge!(OPS_PROGRESS_RATIO, "command" => command).set(0.0);
        let now = Instant::now();
        Self {
            command,
            label,
            total,
            done: 0,
            started: now,
            last_log: now,
            bar,
        }
    }

    pub fn advance(&mut self, items: u64) {
        self.done += items;
        metrics::counter!(OPS_ITEMS_TOTAL, "command" => self.command).increment(items);
        if let Some(total) = self.total.filter(|total| *total > 0) {
            let ratio = (self.done as f64 / total as f64).min(1.0);
            metrics::gauge!(OPS_PROGRESS_RATIO, "command" => self.command).set(ratio);
        }
        match &self.bar {
            Some(bar) => bar.inc(items),
            None if self.last_log.elapsed() >= LOG_EVERY => {
                self.last_log = Instant::now();
                let summary = self.summary();
                let eta = self.total.and_then(|total| {
                    let left = total.saturating_sub(self.done) as f64;
                    (summary.rate > 0.0).then(|| Duration::from_secs_f64(left / summary.rate))
                });
                tracing::info!(
                    command = self.command,
                    target = %self.label,
                    done = self.done,
                    total = self.total,
                    rate_per_sec = summary.rate.round(),
                    eta_secs = eta.map(|eta| eta.as_secs()),
                    "progress"
                );
            }
            None => {}
        }
    }

    /// Moves the position without counting the items as processed now (a resumed command's
    /// earlier work).
    pub fn skip(&mut self, items: u64) {
        self.done += items;
        if let Some(bar) = &self.bar {
            bar.inc(items);
        }
    }

    pub fn done(&self) -> u64 {
        self.done
    }

    fn summary(&self) -> Summary {
        let elapsed = self.started.elapsed();
        Summary {
            items: self.done,
            elapsed,
            rate: self.done as f64 / elapsed.as_secs_f64().max(1e-9),
        }
    }

    /// Ends the bar and logs the summary.
    pub fn finish(self) -> Summary {
        let summary = self.summary();
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        metrics::gauge!(OPS_PROGRESS_RATIO, "command" => self.command).set(1.0);
        tracing::info!(
            command = self.command,
            target = %self.label,
            items = summary.items,
            elapsed_ms = summary.elapsed.as_millis() as u64,
            rate_per_sec = summary.rate.round(),
            "finished"
        );
        summary
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_rates() {
        let mut progress = Progress::start("backfill", "places", Some(10));
        progress.advance(4);
        progress.advance(6);
        assert_eq!(progress.done(), 10);
        let summary = progress.finish();
        assert_eq!(summary.items, 10);
        assert!(summary.rate > 0.0);
    }
}
