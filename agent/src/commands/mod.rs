//! One module per command.

pub mod agent;
pub mod baseline;
pub mod check;

use crate::cli::{Cli, Command};

/// Runs a parsed command line; the value is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Baseline(cmd) => baseline::run(cmd),
        Command::Agent(args) => agent::run(&args),
    }
}
