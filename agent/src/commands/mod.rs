//! One module per command.

pub mod baseline;
pub mod check;
pub mod fim;

use crate::cli::{Cli, Command};

/// Runs a parsed command line; the value is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check::run(&args),
        Command::Baseline(cmd) => baseline::run(cmd),
        Command::Fim(cmd) => fim::run(cmd),
    }
}
