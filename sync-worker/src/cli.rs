//! The command line. Configuration comes from the environment and the settings file
//! (`cacheflow_shared::config`), not from flags, so the same variables drive every deployment;
//! flags only say what an operator command should do this time.

use clap::{Args, Parser, Subcommand, ValueEnum};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

#[derive(Debug, Parser)]
#[command(name = "cacheflow-sync-worker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Operator commands: print the summary as one JSON document on stdout instead of text
    /// lines (logs and progress go to stderr either way).
    #[arg(long, global = true)]
    pub json: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Consume events and refresh Redis until SIGTERM or Ctrl-C (the default).
    Run,
    /// Stream every live document from the store into Redis through the versioned apply
    /// (safe while events flow; resumable).
    Backfill(BackfillArgs),
    /// Re-apply events from the stream through an ephemeral consumer.
    Replay(ReplayArgs),
    /// Build a fresh generation of a collection's keys, switch to it atomically, and delete
    /// the old one.
    Rebuild(RebuildArgs),
    /// Compare the store with Redis; exit non-zero on drift; `--repair` fixes it.
    Verify(VerifyArgs),
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct BackfillArgs {
    /// Only this collection (default: every collection of the pipeline).
    #[arg(long)]
    pub collection: Option<String>,
    /// Documents read from the store and applied per round trip.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// Ignore a checkpoint left by an interrupted backfill and start from the beginning.
    #[arg(long)]
    pub restart: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ReplayArgs {
    /// Start at this stream sequence (default: the first event the stream holds).
    #[arg(long, conflicts_with = "since")]
    pub from_seq: Option<u64>,
    /// Start at the first event stored at or after this time (RFC 3339).
    #[arg(long, value_parser = parse_rfc3339)]
    pub since: Option<OffsetDateTime>,
    /// Only this collection's events.
    #[arg(long)]
    pub collection: Option<String>,
    /// Events applied per round trip.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Source {
    /// Every live document of the store (the system of record).
    Store,
    /// The stream's events (with the default compacted stream: the latest event per entity),
    /// without touching the store.
    Stream,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct RebuildArgs {
    /// Only this collection (default: every collection, one after the other).
    #[arg(long)]
    pub collection: Option<String>,
    /// Where the new generation is built from.
    #[arg(long, value_enum, default_value_t = Source::Store)]
    pub from: Source,
    /// How long the old generation keeps being written after the switch, while readers move
    /// over, before it is deleted (default: 4 reader refresh intervals, at least 2 s).
    #[arg(long)]
    pub grace_ms: Option<u64>,
    /// Documents or events applied per round trip.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct VerifyArgs {
    /// Only this collection (default: every collection).
    #[arg(long)]
    pub collection: Option<String>,
    /// Check a random sample of this many entities per collection instead of all.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub sample: Option<u64>,
    /// Fix what is found, through the versioned apply.
    #[arg(long)]
    pub repair: bool,
    /// Entities compared per round trip.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch: u64,
    /// How many drifted ids to list per collection (in the summary and the audit record).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(0..=10_000))]
    pub list: u64,
}

fn parse_rfc3339(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|err| format!("expected an RFC 3339 time like 2026-11-26T09:00:00Z: {err}"))
}

impl Cli {
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Run)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_is_the_default() {
        assert_eq!(Cli::parse_from(["w"]).command(), Command::Run);
        assert_eq!(Cli::parse_from(["w", "run"]).command(), Command::Run);
        assert!(Cli::try_parse_from(["w", "nope"]).is_err());
    }

    #[test]
    fn operator_commands_parse_their_flags() {
        let Command::Backfill(args) =
            Cli::parse_from(["w", "backfill", "--collection", "places", "--batch", "50"]).command()
        else {
            panic!("not a backfill");
        };
        assert_eq!(args.collection.as_deref(), Some("places"));
        assert_eq!(args.batch, 50);
        assert!(!args.restart);
        assert!(Cli::try_parse_from(["w", "backfill", "--batch", "0"]).is_err());

        let Command::Replay(args) =
            Cli::parse_from(["w", "replay", "--since", "2026-11-26T09:00:00Z"]).command()
        else {
            panic!("not a replay");
        };
        assert_eq!(args.since.unwrap().unix_timestamp(), 1_795_683_600);
        assert!(Cli::try_parse_from(["w", "replay", "--since", "yesterday"]).is_err());
        assert!(Cli::try_parse_from([
            "w",
            "replay",
            "--from-seq",
            "3",
            "--since",
            "2026-11-26T09:00:00Z"
        ])
        .is_err());

        let Command::Rebuild(args) =
            Cli::parse_from(["w", "rebuild", "--from", "stream"]).command()
        else {
            panic!("not a rebuild");
        };
        assert_eq!(args.from, Source::Stream);
        assert!(Cli::try_parse_from(["w", "rebuild", "--from", "disk"]).is_err());

        let Command::Verify(args) =
            Cli::parse_from(["w", "verify", "--sample", "10", "--repair"]).command()
        else {
            panic!("not a verify");
        };
        assert_eq!(args.sample, Some(10));
        assert!(args.repair);
    }
}
