//! Telemetry shared by both binaries.
//!
//! - this module: tracing set-up ([`init`]): an env filter (`RUST_LOG` wins over the configured
//!   filter) and optional JSON output.
//! - [`names`]: every metric name, label name and label value set (`cacheflow_*`).
//! - [`metrics`](mod@metrics): the process-global Prometheus recorder ([`install_recorder`]), the
//!   description of every metric, and the `GET /metrics` endpoint ([`serve_metrics`]).
//! - [`dashboards`]: the metric names Grafana dashboards query and a scrape holds, for tests.
//! - [`request_log`]: the request a log line was written for (the API's requests).

pub mod dashboards;
pub mod metrics;
pub mod names;
pub mod request_log;

pub use self::metrics::{describe_all, install_recorder, serve_metrics};
pub use dashboards::dashboard_metric_names;

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

use crate::config::LogSettings;
use request_log::RequestLines;

/// Installs the global subscriber, writing to stdout. Calling it twice is harmless (the second
/// call is ignored), so tests may call it freely.
pub fn init(settings: &LogSettings) {
    init_to(settings, Output::Stdout);
}

/// Where log lines go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// The services: their logs are their output.
    Stdout,
    /// Operator commands: stdout carries the summary a script reads, logs go beside it.
    Stderr,
}

/// [`init`], writing to `output`.
pub fn init_to(settings: &LogSettings, output: Output) {
    // Colours only on a terminal: in a log file or a collector they are escape-code noise, and
    // styling every span's fields costs each request a little.
    match output {
        Output::Stdout => install(settings, std::io::stdout, std::io::stdout().is_terminal()),
        Output::Stderr => install(settings, std::io::stderr, std::io::stderr().is_terminal()),
    }
}

/// Generic over the writer so that a service's log line costs no boxed writer.
fn install<W>(settings: &LogSettings, writer: W, ansi: bool)
where
    W: for<'a> tracing_subscriber::fmt::MakeWriter<'a> + Send + Sync + 'static,
{
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.filter))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = if settings.json {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_writer(RequestLines::new(writer, true)),
            )
            .try_init()
    } else {
        registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(ansi)
                    .with_writer(RequestLines::new(writer, false)),
            )
            .try_init()
    };
    // A second init (tests) fails harmlessly; the first subscriber stays.
    drop(result);
}
