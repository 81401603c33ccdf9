use std::io::Read as _;

use anyhow::{bail, Context as _};
use cacheflow_api::{shutdown_signal, Application};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::env_help::environment_help;
use cacheflow_shared::security::hash_key;
use cacheflow_shared::telemetry;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

// mimalloc: glibc's allocator took ~16 % of the API's CPU on the cache-hit path (perf, 64
// connections); every request allocates (headers, key, body) across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line. Settings come from the environment (listed by `--help`), not from flags,
/// so the same variables drive every deployment.
#[derive(Debug, Parser)]
#[command(name = "cacheflow-api", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the API until SIGTERM or Ctrl-C (the default).
    Serve,
    /// Print the SHA-256 of a key, for `API_KEYS`.
    HashKey {
        /// The key; without it, read from standard input (out of the shell history and the
        /// process list).
        key: Option<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let matches = Cli::command()
        .after_help(environment_help(Role::Api))
        .get_matches();
    let cli = Cli::from_arg_matches(&matches)?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::HashKey { key: Some(key) } => print_hash(&key),
        Command::HashKey { key: None } => {
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("reading the key from standard input")?;
            print_hash(key.trim_end_matches(['\r', '\n']))
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::load(Role::Api)?;
    telemetry::init(&settings.log);
    // Installed before the slow start-up, so an early SIGTERM is a clean stop too.
    let signal = shutdown_signal();
    tracing::info!(
        store = %settings.store_url,
        redis = %settings.redis_url,
        nats = %settings.nats_url,
        addr = %settings.api_addr,
        "starting cacheflow-api"
    );
    let app = Application::build(settings).await?;
    tracing::info!(addr = %app.local_addr(), "listening");
    app.run_until(signal).await?;
    tracing::info!("stopped");
    Ok(())
}

fn print_hash(key: &str) -> anyhow::Result<()> {
    if key.is_empty() {
        bail!("the key is empty");
    }
    println!("{}", hash_key(key));
    Ok(())
}
