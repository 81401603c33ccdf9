//! `cacheflow-loadtests`: load generation and benchmark scenarios for cacheflow, one subcommand
//! per scenario. See docs/BENCHMARKS.md and `infra/scripts/bench.sh`.

mod args;
mod engine;
mod http;
mod pacing;
mod places;
mod redis_util;
mod release;
mod scenarios;
mod seed;
mod stats;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::scenarios::mixed::{Mixed, MixedArgs};
use crate::scenarios::reads::{Near, NearArgs, ReadHit, ReadHitArgs, Top, TopArgs};
use crate::scenarios::storm::StormArgs;
use crate::scenarios::sync_lag::SyncLagArgs;
use crate::scenarios::write_burst::WriteBurstArgs;

#[derive(Debug, Parser)]
#[command(name = "cacheflow-loadtests", version, about, propagate_version = true)]
struct Cli {
    /// Threads of the load generator (it shares the machine with what it measures).
    #[arg(long, global = true, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    threads: u16,
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// PUT deterministic demo places (/v1/places/{prefix}{n:04}) into the API.
    Seed(seed::SeedArgs),
    /// Cache-hit reads: GET /v1/places/{id} of uniformly random seeded ids.
    ReadHit(ReadHitArgs),
    /// Reads and writes of the seeded places: 90 % GET, 10 % PUT/PATCH by default.
    Mixed(MixedArgs),
    /// Nearby queries (GEOSEARCH) around random points of the seeded city.
    Near(NearArgs),
    /// Top-N queries by rating, overall and by category.
    Top(TopArgs),
    /// N concurrent GETs of one cold key; with --metrics, the store reads they caused.
    ColdMissStorm(StormArgs),
    /// PUTs at the highest rate the users (or --rate) allow; with --redis, the worker's catch-up.
    WriteBurst(WriteBurstArgs),
    /// PUTs at a fixed rate; per write, the time from the API's ack to visibility in Redis.
    SyncLag(SyncLagArgs),
}

impl Scenario {
    fn common(&self) -> Option<&args::CommonArgs> {
        match self {
            Scenario::Seed(_) => None,
            Scenario::ReadHit(a) => Some(&a.common),
            Scenario::Mixed(a) => Some(&a.common),
            Scenario::Near(a) => Some(&a.common),
            Scenario::Top(a) => Some(&a.common),
            Scenario::ColdMissStorm(a) => Some(&a.common),
            Scenario::WriteBurst(a) => Some(&a.common),
            Scenario::SyncLag(a) => Some(&a.common),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = if cli.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(usize::from(cli.threads))
            .enable_all()
            .build()
    };
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cacheflow-loadtests: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cacheflow-loadtests: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let threads = usize::from(cli.threads);
    if let Scenario::Seed(args) = &cli.command {
        return seed_step(args).await;
    }
    let common = cli
        .command
        .common()
        .expect("every scenario has common args");
    if let Some(seed_args) = common.seed_args() {
        if seed_step(&seed_args).await? != ExitCode::SUCCESS {
            anyhow::bail!("--seed-data: seeding failed");
        }
    }
    let report = match &cli.command {
        Scenario::Seed(_) => unreachable!("handled above"),
        Scenario::ReadHit(args) => {
            let workload = Arc::new(ReadHit::new(&args.common));
            scenarios::run_simple(
                "read-hit",
                &args.common,
                threads,
                scenarios::reads::DEFAULT_USERS,
                workload,
            )
            .await?
        }
        Scenario::Mixed(args) => {
            scenarios::run_simple(
                "mixed",
                &args.common,
                threads,
                scenarios::reads::DEFAULT_USERS,
                Arc::new(Mixed::new(args)),
            )
            .await?
        }
        Scenario::Near(args) => {
            scenarios::run_simple(
                "near",
                &args.common,
                threads,
                scenarios::reads::DEFAULT_USERS,
                Arc::new(Near::new(args)),
            )
            .await?
        }
        Scenario::Top(args) => {
            scenarios::run_simple(
                "top",
                &args.common,
                threads,
                scenarios::reads::DEFAULT_USERS,
                Arc::new(Top::new(args)),
            )
            .await?
        }
        Scenario::ColdMissStorm(args) => scenarios::storm::run(args, threads).await?,
        Scenario::WriteBurst(args) => scenarios::write_burst::run(args, threads).await?,
        Scenario::SyncLag(args) => scenarios::sync_lag::run(args, threads).await?,
    };
    scenarios::emit(&report, common.json.as_deref()).context("writing the report")?;
    Ok(if report.ok > 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("cacheflow-loadtests: no request succeeded");
        ExitCode::FAILURE
    })
}

async fn seed_step(args: &seed::SeedArgs) -> anyhow::Result<ExitCode> {
    let report = seed::run(args).await?;
    for failure in &report.failures {
        eprintln!("failed: {failure}");
    }
    // On stderr when a scenario follows, so that `--json -` keeps stdout to the JSON.
    eprintln!("{}", report.summary());
    Ok(if report.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use clap::CommandFactory;

    use super::*;
    use crate::engine::Load;

    pub(crate) fn parse(args: &[&str]) -> Cli {
        let mut argv = vec!["cacheflow-loadtests"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).unwrap()
    }

    fn fails(args: &[&str]) -> bool {
        let mut argv = vec!["cacheflow-loadtests"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).is_err()
    }

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_defaults_and_flags() {
        let cli = parse(&["seed"]);
        let Scenario::Seed(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.api, "http://127.0.0.1:8080");
        assert_eq!(
            (
                args.count,
                args.concurrency,
                args.seed,
                args.prefix.as_str()
            ),
            (1000, 16, 42, "place-")
        );
        assert_eq!(args.redis, None);

        let cli = parse(&[
            "seed",
            "--api",
            "http://127.0.0.1:9000",
            "--count",
            "5",
            "--concurrency",
            "2",
            "--seed",
            "7",
            "--prefix",
            "demo_",
            "--redis",
            "redis://127.0.0.1:1",
        ]);
        let Scenario::Seed(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.api, "http://127.0.0.1:9000");
        assert_eq!(
            (
                args.count,
                args.concurrency,
                args.seed,
                args.prefix.as_str()
            ),
            (5, 2, 7, "demo_")
        );
        assert_eq!(args.redis.as_deref(), Some("redis://127.0.0.1:1"));

        assert!(fails(&["seed", "--count", "0"]));
        assert!(fails(&["seed", "--prefix", "a b"]));
        assert!(fails(&[]));
    }

    #[test]
    fn every_scenario_parses_with_defaults() {
        for name in [
            "read-hit",
            "mixed",
            "near",
            "top",
            "cold-miss-storm",
            "write-burst",
            "sync-lag",
        ] {
            let cli = parse(&[name]);
            let common = cli.command.common().unwrap();
            assert_eq!(common.api, "http://127.0.0.1:8080", "{name}");
            assert_eq!(common.duration, 10.0, "{name}");
            assert_eq!(common.ids(), 1000, "{name}");
            assert_eq!(common.load(7), Load::Closed { users: 7 }, "{name}");
            assert!(common.seed_args().is_none());
            assert_eq!(cli.threads, 1);
        }
    }

    #[test]
    fn rate_or_users() {
        let cli = parse(&[
            "read-hit",
            "--rate",
            "2500.5",
            "--connections",
            "8",
            "--duration",
            "12",
        ]);
        let common = cli.command.common().unwrap();
        assert_eq!(
            common.load(32),
            Load::Open {
                rate: 2500.5,
                connections: 8
            }
        );
        assert_eq!(common.duration().as_secs(), 12);

        let cli = parse(&["mixed", "--users", "3", "--threads", "2"]);
        assert_eq!(
            cli.command.common().unwrap().load(32),
            Load::Closed { users: 3 }
        );
        assert_eq!(cli.threads, 2);

        assert!(fails(&["read-hit", "--rate", "10", "--users", "2"]));
        assert!(fails(&["read-hit", "--rate", "0"]));
        assert!(fails(&["read-hit", "--rate", "-5"]));
        assert!(fails(&["read-hit", "--rate", "inf"]));
        assert!(fails(&["read-hit", "--users", "0"]));
        assert!(fails(&["read-hit", "--duration", "0"]));
        assert!(fails(&["read-hit", "--duration", "abc"]));
        assert!(fails(&["read-hit", "--threads", "0"]));
        assert!(fails(&["read-hit", "--bogus"]));
    }

    #[test]
    fn seed_data_runs_the_seed_step_with_the_scenarios_ids() {
        let cli = parse(&[
            "near",
            "--seed-data",
            "5000",
            "--prefix",
            "p-",
            "--seed",
            "9",
            "--redis",
            "redis://127.0.0.1:7",
            "--warmup",
            "1.5",
            "--json",
            "out.json",
        ]);
        let common = cli.command.common().unwrap();
        assert_eq!(common.ids(), 5000);
        let seed = common.seed_args().unwrap();
        assert_eq!(
            (seed.count, seed.seed, seed.prefix.as_str()),
            (5000, 9, "p-")
        );
        assert_eq!(seed.redis.as_deref(), Some("redis://127.0.0.1:7"));
        assert_eq!(common.warmup, 1.5);
        assert_eq!(
            common.json.as_deref(),
            Some(std::path::Path::new("out.json"))
        );
        // --ids wins over --seed-data for addressing.
        let cli = parse(&["near", "--seed-data", "50", "--ids", "10"]);
        assert_eq!(cli.command.common().unwrap().ids(), 10);
    }

    #[test]
    fn scenario_specific_flags() {
        let cli = parse(&["mixed", "--write-percent", "25"]);
        let Scenario::Mixed(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.write_percent, 25);
        assert!(fails(&["mixed", "--write-percent", "101"]));

        let cli = parse(&["near", "--radius-m", "250", "--limit", "50"]);
        let Scenario::Near(args) = cli.command else {
            panic!()
        };
        assert_eq!((args.radius_m, args.limit), (250.0, 50));

        let cli = parse(&[
            "cold-miss-storm",
            "--users",
            "500",
            "--rounds",
            "3",
            "--metrics",
            "http://127.0.0.1:9464",
        ]);
        let Scenario::ColdMissStorm(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.rounds, 3);
        assert_eq!(args.common.users, Some(500));

        let cli = parse(&[
            "sync-lag",
            "--rate",
            "1000",
            "--redis",
            "redis://127.0.0.1:6390",
            "--watch",
            "poll",
        ]);
        let Scenario::SyncLag(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.watch, scenarios::sync_lag::Watch::Poll);
        assert_eq!(args.visibility_timeout_ms, 5000);
        assert!(fails(&["sync-lag", "--watch", "sometimes"]));
        let cli = parse(&[
            "sync-lag",
            "--redis",
            "redis://127.0.0.1:6390",
            "--watch",
            "api",
            "--read-api",
            "http://127.0.0.1:8081",
        ]);
        let Scenario::SyncLag(args) = cli.command else {
            panic!()
        };
        assert_eq!(args.watch, scenarios::sync_lag::Watch::Api);
        assert_eq!(args.read_api.as_deref(), Some("http://127.0.0.1:8081"));

        let cli = parse(&["write-burst", "--write-ids", "5", "--write-prefix", "wb_"]);
        let Scenario::WriteBurst(args) = cli.command else {
            panic!()
        };
        assert_eq!((args.write_ids, args.write_prefix.as_str()), (5, "wb_"));
    }
}
