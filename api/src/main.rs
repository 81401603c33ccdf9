use std::io::Read as _;

use anyhow::{bail, Context as _};
use cacheflow_api::{shutdown_signal, Application};
use cacheflow_shared::config::{Role, Settings};
use cacheflow_shared::security::hash_key;
use cacheflow_shared::telemetry;

// mimalloc: glibc's allocator took ~16 % of the API's CPU on the cache-hit path (perf, 64
// connections); every request allocates (headers, key, body) across threads.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const USAGE: &str = "usage: cacheflow-api            serve the API (settings from the environment)
       cacheflow-api hash-key KEY   print the SHA-256 of KEY for API_KEYS
       cacheflow-api hash-key       the same, with the key read from standard input";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        [] => serve().await,
        ["hash-key", key] => print_hash(key),
        ["hash-key"] => {
            // From stdin, so the key stays out of shell history and the process list.
            let mut key = String::new();
            std::io::stdin()
                .read_to_string(&mut key)
                .context("reading the key from standard input")?;
            print_hash(key.trim_end_matches(['\r', '\n']))
        }
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => bail!("unexpected arguments\n{USAGE}"),
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
