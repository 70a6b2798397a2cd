//! The policy the agent enforces: the baselines it runs, where they come
//! from (files named on the command line or in the config, else the
//! built-in one), and whether they came through the trust policy. Both the
//! one-shot commands and the daemon load baselines through here.

use plumb_core::baseline::BaselineError;
use plumb_core::{Baseline, FimRule};
use std::path::PathBuf;

/// The shipped baseline, used when no baseline file is named.
pub const BUILTIN_BASELINE: &str = include_str!("../../baselines/issp-linux-server.toml");

/// Where the built-in baseline says it comes from in messages.
const BUILTIN_ORIGIN: &str = "<built-in issp-linux-server.toml>";

/// Loads the baselines named, or the built-in one when none is; rule ids
/// must be unique across them.
pub(crate) fn load_baselines(files: &[PathBuf]) -> Result<Vec<Baseline>, BaselineError> {
    let baselines = if files.is_empty() {
        vec![Baseline::from_str(BUILTIN_BASELINE, BUILTIN_ORIGIN)?]
    } else {
        files
            .iter()
            .map(|f| Baseline::load(f))
            .collect::<Result<Vec<_>, _>>()?
    };
    Baseline::check_unique(&baselines)?;
    Ok(baselines)
}

/// The policy in force: the baselines.
#[derive(Debug)]
pub(crate) struct Policy {
    /// Loaded baselines (checks and FIM watches).
    pub baselines: Vec<Baseline>,
    /// Every baseline came through the trust policy (signed by a trusted
    /// key); only then may the agent remediate.
    pub signed: bool,
}

impl Policy {
    /// Every `[[fim]]` watch of the baselines.
    pub fn fim_rules(&self) -> Vec<FimRule> {
        self.baselines
            .iter()
            .flat_map(|b| b.fim.iter().cloned())
            .collect()
    }
}
