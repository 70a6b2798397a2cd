//! `plumb agent --config FILE [--validate]`: the daemon.

use crate::cli::AgentArgs;
use crate::daemon::{self, config::Config};
use crate::{EXIT_ERROR, EXIT_OK};

/// Validates the config (and the files it names), then runs the daemon
/// unless `--validate` was given. Exit 0 valid / stopped, 2 invalid.
pub fn run(args: &AgentArgs) -> anyhow::Result<u8> {
    let cfg = match Config::load(&args.config).and_then(|c| c.check_files().map(|()| c)) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("plumb: {e}");
            return Ok(EXIT_ERROR);
        }
    };
    // The baselines are part of what the daemon would run (signed bundles
    // when trusted keys are configured).
    if let Err(e) = daemon::distribution::validate(&cfg) {
        eprintln!("plumb: {e:#}");
        return Ok(EXIT_ERROR);
    }
    if let Some(c) = &cfg.collector {
        if let Err(e) = daemon::sender::Client::new(c) {
            eprintln!("plumb: {}: collector: {e:#}", args.config.display());
            return Ok(EXIT_ERROR);
        }
    }
    if args.validate {
        println!("{}: valid", args.config.display());
        return Ok(EXIT_OK);
    }
    daemon::run(args.config.clone(), cfg)
}
