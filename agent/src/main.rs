//! `plumb`: the Plumbline agent and its one-shot commands. This file parses
//! the command line and maps outcomes to exit codes; the work is in modules.

use clap::Parser;
use plumb_agent::{EXIT_ERROR, cli, commands};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_logging(cli.verbose);
    match commands::run(cli) {
        Ok(code) => ExitCode::from(code),
        // A reader that went away (`plumb check | head`) is not an error.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::from(EXIT_ERROR)
        }
        Err(e) => {
            eprintln!("plumb: error: {e:#}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    plumb_os::log::init(plumb_os::log::Setup {
        default_filter: default,
        show_target: false,
    });
}
