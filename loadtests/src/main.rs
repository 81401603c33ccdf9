//! `cacheflow-loadtests`: load generation and benchmark scenarios for cacheflow, one subcommand
//! per scenario.

mod places;
mod seed;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cacheflow-loadtests", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Scenario,
}

#[derive(Debug, Subcommand)]
enum Scenario {
    /// PUT deterministic demo places (/v1/places/{prefix}{n:04}) into the API.
    Seed(seed::SeedArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Scenario::Seed(args) => {
            let report = seed::run(&args).await?;
            for failure in &report.failures {
                eprintln!("failed: {failure}");
            }
            println!("{}", report.summary());
            Ok(if report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn seed_defaults_and_flags() {
        let cli = Cli::try_parse_from(["cacheflow-loadtests", "seed"]).unwrap();
        let Scenario::Seed(args) = cli.command;
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

        let cli = Cli::try_parse_from([
            "cacheflow-loadtests",
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
        ])
        .unwrap();
        let Scenario::Seed(args) = cli.command;
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

        assert!(Cli::try_parse_from(["cacheflow-loadtests", "seed", "--count", "0"]).is_err());
        assert!(Cli::try_parse_from(["cacheflow-loadtests", "seed", "--prefix", "a b"]).is_err());
        assert!(Cli::try_parse_from(["cacheflow-loadtests"]).is_err());
    }
}
