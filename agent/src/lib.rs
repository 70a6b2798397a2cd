//! The Plumbline agent: check evaluation, file integrity, the daemon and
//! remediation. `main.rs` only parses the command line and calls in here.
//!
//! Modules depend one way (scripts/check-layers.sh checks it):
//! `commands` → `daemon` → `policy`/`checks`/`fim`/`remediate` →
//! `rootfs`/`host` → `plumb-core`. Only what the binary, the integration
//! tests and the collector benchmark use is public.

mod checks;
pub mod cli;
pub mod commands;
mod coverage;
mod daemon;
mod dpkg;
mod fim;
/// Entry points for the cargo-fuzz targets in `fuzz/` (docs/fuzzing.md);
/// only with the `fuzzing` feature, which no shipped build enables.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzz;
mod host;
mod key_value;
mod output;
pub mod policy;
mod remediate;
mod rootfs;
mod sshd_config;
mod sysctl_d;
mod systemd_units;
pub mod trust;
mod userdb;

/// The agent's delivery client (mutual TLS, `POST /v1/events`), public so
/// that the collector benchmark (bench/loadgen) drives the code that ships.
pub mod delivery {
    pub use crate::daemon::config::Collector;
    pub use crate::daemon::sender::{Client, SendError};
}

/// The value sshd uses for `key` in the checked `root`, as `sshd -T` prints
/// it, through the `sshd` check's own code (`None`: unset, no default;
/// `Err`: the check would say `error` or `skipped`, with its reason).
/// Public for the differential test against the real `sshd -T`
/// (tests/suite/sshd_oracle.rs).
pub fn sshd_effective_value(root: &std::path::Path, key: &str) -> Result<Option<String>, String> {
    checks::sshd::effective_value(&checks::Ctx::new(root, None), key)
}

/// One check's status and evidence on `root` with no runtime state, as
/// `plumb check --root ROOT` computes it. Public for the differential tests
/// against systemd itself (tests/suite/systemd_oracle.rs).
pub fn evaluate_offline(
    root: &std::path::Path,
    spec: &plumb_core::check::CheckSpec,
) -> (plumb_core::report::Status, Vec<String>) {
    let o = checks::evaluate(spec, &checks::Ctx::new(root, None));
    (o.status, o.evidence)
}

/// Exit code: everything holds / no change.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one failure or change (drift).
pub const EXIT_DRIFT: u8 = 1;
/// Exit code: usage, config or input error.
pub const EXIT_ERROR: u8 = 2;
