//! `plumb agent --config FILE [--validate]`: the daemon.

use crate::cli::AgentArgs;
use crate::daemon::{self, config::Config, config::ConfigFile};
use crate::trust::load_trusted_keys;
use crate::{EXIT_ERROR, EXIT_OK};
use plumb_core::{Diagnostic, PublicKey};
use std::path::Path;

/// Validates the config (and the files it names), then runs the daemon
/// unless `--validate` was given. Exit 0 valid / stopped, 2 invalid, with
/// every problem listed.
pub fn run(args: &AgentArgs) -> anyhow::Result<u8> {
    let cfg = match validate(&args.config) {
        Ok(c) => c,
        Err(problems) => {
            for p in problems {
                eprintln!("{p}");
            }
            return Ok(EXIT_ERROR);
        }
    };
    if args.validate {
        println!("{}: valid", args.config.display());
        return Ok(EXIT_OK);
    }
    daemon::run(args.config.clone(), cfg)
}

/// Everything the daemon would refuse at start: the config, the trust of
/// the files it names, the trusted keys, the baselines as the daemon would
/// load them, the collector's TLS files. A file already refused is not
/// examined further, so each problem is said once.
fn validate(path: &Path) -> Result<Config, Vec<Diagnostic>> {
    let file = Config::read(path).map_err(|d| d.0)?;
    let mut problems = file.problems.clone();
    let keys = trusted_keys(&file, &mut problems);
    problems.extend(daemon::distribution::validate(&file, keys.as_deref()));
    let tls_faulty = file.is_faulty("collector.ca") || file.is_faulty("collector.key");
    if let Some(c) = file.config.collector.as_ref().filter(|_| !tls_faulty) {
        if let Err(e) = daemon::sender::Client::new(c) {
            problems.push(file.at("collector", format!("{e:#}")));
        }
    }
    if problems.is_empty() {
        Ok(file.config)
    } else {
        Err(problems)
    }
}

/// The trusted keys, each loaded, when all of them load.
fn trusted_keys(file: &ConfigFile, problems: &mut Vec<Diagnostic>) -> Option<Vec<PublicKey>> {
    let paths = &file.config.trusted_keys;
    if paths.is_empty() {
        return None;
    }
    let mut usable = true;
    for (i, p) in paths.iter().enumerate() {
        let field = format!("trusted_keys[{i}]");
        if file.is_faulty(&field) {
            usable = false;
        } else if let Err(e) = PublicKey::load(p) {
            problems.push(file.at(&field, e));
            usable = false;
        }
    }
    if !usable {
        return None;
    }
    match load_trusted_keys(paths) {
        Ok(keys) => Some(keys),
        Err(e) => {
            problems.push(file.at("trusted_keys", e));
            None
        }
    }
}
