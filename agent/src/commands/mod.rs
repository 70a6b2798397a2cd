//! One module per command.

mod agent;
mod baseline;
mod check;
mod fim;
mod keygen;
mod remediate;

use crate::cli::{Cli, Command};

/// Runs a parsed command line; the value is the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Check(args) => check::run(&args, cli.verbose > 0),
        Command::Baseline(cmd) => baseline::run(cmd),
        Command::Fim(cmd) => fim::run(cmd),
        Command::Agent(args) => agent::run(&args),
        Command::Keygen(args) => keygen::run(&args),
        Command::Remediate(args) => remediate::run(&args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed stdout.
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "plumb", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
            Ok(crate::EXIT_OK)
        }
    }
}
