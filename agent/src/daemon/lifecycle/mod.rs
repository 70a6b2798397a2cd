//! Process lifecycle: systemd notifications and signals.

pub mod notify;
pub mod signals;
