//! Logging for both binaries: to the systemd journal with structured fields
//! when the process runs under systemd with its stderr connected to the
//! journal, to stderr otherwise (docs/integrations.md, "journald").
//!
//! Under systemd, `JOURNAL_STREAM` holds the `device:inode` of the stream
//! the journal gave as stderr; when it matches our stderr (not redirected
//! since), the `tracing-journald` layer sends each event to journald's
//! native socket with its tracing fields as journal fields, prefixed
//! `PLUMB_` (`rule` → `PLUMB_RULE`, `event_kind` → `PLUMB_EVENT_KIND`), so
//! `journalctl -u plumb-agent PLUMB_RULE=ssh.permit-root-login` works. When
//! the journal's socket cannot be reached, stderr is used as before.

use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// The prefix of every structured field in the journal.
pub const FIELD_PREFIX: &str = "PLUMB";

/// How a binary logs.
#[derive(Debug, Clone, Copy)]
pub struct Setup<'a> {
    /// Filter when `PLUMB_LOG` is unset (`info`, `warn`…).
    pub default_filter: &'a str,
    /// Show the event's module on stderr.
    pub show_target: bool,
}

/// Where the logs went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// journald, with structured fields.
    Journal,
    /// stderr, as text.
    Stderr,
}

/// Whether `JOURNAL_STREAM` (`device:inode`) names our stderr.
fn stderr_is_the_journal(journal_stream: &str) -> bool {
    let Some((dev, ino)) = journal_stream.split_once(':') else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (dev.parse::<u64>(), ino.parse::<u64>()) else {
        return false;
    };
    match rustix::fs::fstat(std::io::stderr()) {
        Ok(st) => st.st_dev == dev && st.st_ino == ino,
        Err(_) => false,
    }
}

/// Installs the global subscriber (once, at the start of `main`): the
/// journal when `JOURNAL_STREAM` names our stderr and journald answers,
/// stderr otherwise. The filter is `PLUMB_LOG` or `setup.default_filter`.
pub fn init(setup: Setup<'_>) -> Destination {
    let filter = || {
        EnvFilter::try_from_env("PLUMB_LOG")
            .unwrap_or_else(|_| EnvFilter::new(setup.default_filter))
    };
    let journal = std::env::var("JOURNAL_STREAM")
        .ok()
        .filter(|s| stderr_is_the_journal(s))
        .and_then(|_| tracing_journald::layer().ok());
    if let Some(layer) = journal {
        let layer = layer.with_field_prefix(Some(FIELD_PREFIX.to_string()));
        tracing_subscriber::registry()
            .with(filter())
            .with(layer)
            .init();
        return Destination::Journal;
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter())
        .with_writer(std::io::stderr)
        .with_target(setup.show_target)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    Destination::Stderr
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_stream_must_name_our_stderr() {
        let st = rustix::fs::fstat(std::io::stderr()).unwrap();
        assert!(stderr_is_the_journal(&format!(
            "{}:{}",
            st.st_dev, st.st_ino
        )));
        assert!(!stderr_is_the_journal(&format!(
            "{}:{}",
            st.st_dev,
            st.st_ino + 1
        )));
        assert!(!stderr_is_the_journal("garbage"));
        assert!(!stderr_is_the_journal(""));
    }
}
