//! Options every scenario takes.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;

use crate::engine::{Load, RunSpec};
use crate::http::{ApiKey, Target};
use crate::seed;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Base URL of the API (or of the baseline server) under test.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub api: String,
    /// API key sent as `Authorization: Bearer` when the API requires keys (`API_KEYS`); a writer
    /// key for the scenarios that write.
    #[arg(long, env = "CACHEFLOW_API_KEY", hide_env_values = true, value_parser = ApiKey::parse)]
    pub api_key: Option<ApiKey>,
    /// Open loop: start this many requests per second whatever the latency; latency counts from
    /// each request's scheduled time (coordinated omission corrected).
    #[arg(long, value_parser = parse_rate, conflicts_with = "users")]
    pub rate: Option<f64>,
    /// Closed loop: this many users, each on its own connection, sending its next request as
    /// soon as the previous one answered (the default load, with the scenario's default count).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub users: Option<u64>,
    /// Open loop: connections the requests are spread over.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=20_000))]
    pub connections: u64,
    /// Seconds of measured load.
    #[arg(long, default_value_t = 10.0, value_parser = parse_secs)]
    pub duration: f64,
    /// Seconds of the same load before the measured run, not counted.
    #[arg(long, default_value_t = 0.0, value_parser = parse_warmup)]
    pub warmup: f64,
    /// Per-request timeout, milliseconds.
    #[arg(long, default_value_t = 5000, value_parser = clap::value_parser!(u64).range(1..=600_000))]
    pub timeout_ms: u64,
    /// How many seeded places to address (`{prefix}{n}` for n in 1..=ids; must be the count they
    /// were seeded with, which sets the zero padding). Default: `--seed-data`, else 1000.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub ids: Option<u64>,
    /// Id prefix of the seeded places.
    #[arg(long, default_value = "place-", value_parser = seed::parse_prefix)]
    pub prefix: String,
    /// Seed of the place generator and of the request mix.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// First PUT this many demo places (the `seed` subcommand with `--prefix` and `--seed`) and,
    /// with `--redis`, wait until the worker has applied them.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub seed_data: Option<u64>,
    /// Redis the worker writes to, for scenarios that look at it (sync-lag, cold-miss-storm,
    /// write-burst) and for waiting after `--seed-data`.
    #[arg(long)]
    pub redis: Option<String>,
    /// `worker.key_prefix` of the stack (empty by default).
    #[arg(long, default_value = "")]
    pub key_prefix: String,
    /// Also write the report as JSON to this file (`-` = stdout; the text report then goes to
    /// stderr).
    #[arg(long)]
    pub json: Option<PathBuf>,
}

fn parse_rate(s: &str) -> Result<f64, String> {
    let rate: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if rate.is_finite() && rate > 0.0 && rate <= 10_000_000.0 {
        Ok(rate)
    } else {
        Err("the rate must be > 0 and at most 10,000,000 req/s".into())
    }
}

fn parse_secs(s: &str) -> Result<f64, String> {
    let secs: f64 = s.parse().map_err(|_| format!("not a number: {s}"))?;
    if secs.is_finite() && secs > 0.0 && secs <= 86_400.0 {
        Ok(secs)
    } else {
        Err("seconds must be > 0 and at most 86,400".into())
    }
}

fn parse_warmup(s: &str) -> Result<f64, String> {
    if s.parse::<f64>() == Ok(0.0) {
        Ok(0.0)
    } else {
        parse_secs(s)
    }
}

impl CommonArgs {
    /// The load: `--rate` (open loop) or `--users` (closed loop), else `default_users` users.
    pub fn load(&self, default_users: u64) -> Load {
        match (self.rate, self.users) {
            (Some(rate), _) => Load::Open {
                rate,
                connections: self.connections,
            },
            (None, Some(users)) => Load::Closed { users },
            (None, None) => Load::Closed {
                users: default_users,
            },
        }
    }

    pub fn ids(&self) -> u64 {
        self.ids.or(self.seed_data).unwrap_or(1000)
    }

    pub fn duration(&self) -> Duration {
        Duration::from_secs_f64(self.duration)
    }

    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    pub fn spec(&self, load: Load) -> anyhow::Result<RunSpec> {
        Ok(RunSpec {
            target: self.target()?,
            load,
            duration: self.duration(),
            timeout: self.timeout(),
            seed: self.seed,
        })
    }

    pub fn target(&self) -> anyhow::Result<Arc<Target>> {
        Target::parse_with_key(&self.api, self.api_key.as_ref())
    }

    /// The seed step `--seed-data N` asks for.
    pub fn seed_args(&self) -> Option<seed::SeedArgs> {
        self.seed_data.map(|count| seed::SeedArgs {
            api: self.api.clone(),
            api_key: self.api_key.clone(),
            count,
            concurrency: 16,
            seed: self.seed,
            prefix: self.prefix.clone(),
            timeout_secs: 10,
            tries: 5,
            redis: self.redis.clone(),
            key_prefix: self.key_prefix.clone(),
            wait_secs: 120,
        })
    }
}
