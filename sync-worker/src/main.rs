//! `cacheflow-sync-worker [run | backfill | replay | rebuild | verify]`: loads the settings and
//! the pipeline, then runs the worker until SIGTERM or Ctrl-C, or one operator command. Everything
//! else lives in the library.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::pipeline::Pipeline;
use cacheflow_shared::telemetry;
use cacheflow_sync_worker::cli::{Cli, Command};
use cacheflow_sync_worker::ops::{report, Ops};
use cacheflow_sync_worker::shutdown;
use clap::Parser;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

// The same allocator as the API: the worker allocates per event (decode, plan, encode).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let token = CancellationToken::new();
    // Before anything slow: a SIGTERM during start-up must be a clean exit too.
    if let Err(err) = shutdown::cancel_on_signal(token.clone()) {
        eprintln!("cannot install the signal handlers: {err}");
        return ExitCode::FAILURE;
    }
    match start(cli.command(), cli.json, token).await {
        Ok(code) => code,
        Err(err) => {
            tracing::error!(error = format!("{err:#}"), "sync worker failed");
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

async fn start(command: Command, json: bool, token: CancellationToken) -> anyhow::Result<ExitCode> {
    let settings = Settings::load(Role::Worker)?;
    // An operator command's stdout is its summary, for scripts: its logs go to stderr.
    let output = match command {
        Command::Run => telemetry::Output::Stdout,
        _ => telemetry::Output::Stderr,
    };
    telemetry::init_to(&settings.log, output);
    let pipeline = Pipeline::load(&settings.pipeline_config).with_context(|| {
        format!(
            "loading the pipeline from {}",
            settings.pipeline_config.display()
        )
    })?;
    match command {
        Command::Run => {
            // Bound before the run: a taken port is a configuration error, reported at once.
            let metrics = TcpListener::bind(settings.metrics_addr)
                .await
                .with_context(|| {
                    format!(
                        "binding the metrics endpoint on METRICS_ADDR = {}",
                        settings.metrics_addr
                    )
                })?;
            let deadline = settings.shutdown.deadline();
            // Boxed: inline, the worker's future is deep enough to overflow the compiler's
            // layout query depth.
            let run = Box::pin(cacheflow_sync_worker::run_with_metrics(
                settings,
                Arc::new(pipeline),
                metrics,
                token.clone(),
            ));
            match shutdown::finish_within(run, &token, deadline).await {
                Some(result) => {
                    result?;
                }
                None => tracing::warn!(
                    deadline_ms = deadline.as_millis() as u64,
                    "shutdown deadline passed with a batch still in flight; exiting without its \
                     acks: JetStream redelivers those messages after ack_wait"
                ),
            }
            Ok(ExitCode::SUCCESS)
        }
        command => {
            let metrics = serve_ops_metrics(settings.metrics_addr).await;
            let ops = Ops::connect(settings, Arc::new(pipeline), token).await?;
            let code = report::run(&ops, command, json).await;
            metrics.cancel();
            code
        }
    }
}

/// Serves the operator command's progress metrics (`cacheflow_ops_*`, the audit's drift) on
/// `METRICS_ADDR` while it runs, if that address is free: a worker running on the same host
/// usually holds it, and a command must not fail for that (its summary is on stdout anyway).
async fn serve_ops_metrics(addr: std::net::SocketAddr) -> CancellationToken {
    let stop = CancellationToken::new();
    let handle = telemetry::install_recorder();
    match TcpListener::bind(addr).await {
        Ok(listener) => {
            tracing::info!(%addr, "serving the command's metrics on /metrics");
            tokio::spawn(telemetry::serve_metrics(listener, handle, stop.clone()));
        }
        Err(err) => {
            tracing::info!(%addr, %err, "metrics not served (METRICS_ADDR is taken)");
        }
    }
    stop
}
