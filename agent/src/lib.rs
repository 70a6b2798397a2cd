//! The Plumbline agent: check evaluation, file integrity, the daemon and
//! remediation. `main.rs` only parses the command line and calls in here.

pub mod atomic;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod daemon;
pub mod fim;
pub mod output;
pub mod remediate;
pub mod rootfs;
mod sshd_config;
pub(crate) mod sysctl_d;
pub(crate) mod systemd_units;
pub mod trust;
pub mod userdb;

/// Exit code: everything holds / no change.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one failure or change (drift).
pub const EXIT_DRIFT: u8 = 1;
/// Exit code: usage, config or input error.
pub const EXIT_ERROR: u8 = 2;
