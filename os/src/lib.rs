//! What the Plumbline agent (`plumb`) and collector (`plumb-collector`) need
//! from the operating system, written once so both apply the same rules:
//!
//! - [`trusted`]: reading a config, baseline, key or certificate only after
//!   judging the open file (owner, mode, type): [`open_trusted`];
//! - [`private`]: state and PKI directories (0700, refused or tightened) and
//!   state files (0600 whatever the umask);
//! - [`atomic`]: replacing a file so a reader or a crash never sees half of it;
//! - [`notify`]: systemd readiness and watchdog;
//! - [`signals`] (feature `tokio`): SIGHUP/SIGTERM/SIGINT as one stream;
//! - [`pem`] (feature `pem`): certificates, keys and CRLs via `rustls-pki-types`;
//! - [`log`] (feature `log`): journald with structured fields under systemd,
//!   stderr otherwise.
//!
//! Layering: this crate is the lowest one in the workspace and depends on no
//! other Plumbline crate. `plumb-core` uses it too, without features, so
//! that its key, baseline and bundle loaders (`PublicKey::load`,
//! `SigningKey::load`, `Baseline::load`, `Bundle::load`) apply the same
//! trust rule as every other read: a key or baseline file is policy, and
//! whoever can rewrite it decides what the agent enforces.

pub mod atomic;
#[cfg(feature = "log")]
pub mod log;
pub mod notify;
#[cfg(feature = "pem")]
pub mod pem;
pub mod private;
#[cfg(feature = "tokio")]
pub mod signals;
pub mod trusted;

pub use trusted::{FileKind, Problem, TrustError, TrustedFile, open_trusted, read_trusted};
