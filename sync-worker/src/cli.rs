//! The command line. Configuration comes from the environment and the settings file
//! (`cacheflow_shared::config`), not from flags, so the same variables drive every deployment.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "cacheflow-sync-worker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Consume events and refresh Redis until SIGTERM or Ctrl-C (the default).
    Run,
}

impl Cli {
    pub fn command(&self) -> Command {
        self.command.unwrap_or(Command::Run)
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
}
