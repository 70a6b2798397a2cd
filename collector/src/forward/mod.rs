//! Forwarding the stored event stream to SIEMs: `[[forward]]` sinks in
//! `collector.toml`. Each sink has a durable cursor in the store (per
//! host, the highest seq it acknowledged), one forwarder task (on
//! PostgreSQL one per sink across every collector of the store: `lease`),
//! and delivers at least once, in seq order per host, retrying with a
//! capped exponential backoff while the receiver is down.
//!
//! Modules: `sink` (configuration and filter), `cursor` (the durable
//! cursor), `lease` (one forwarder per sink), `format` (what each format
//! writes), `syslog` (RFC 5424/5425 sink), `http` (HTTP JSON sink),
//! `client` (TLS and HTTP client shared with the alert webhooks), `task`
//! (the forwarder loop), `metrics` (prometheus-client families).

pub(crate) mod client;
pub(crate) mod cursor;
pub(crate) mod format;
mod http;
pub(crate) mod lease;
pub mod metrics;
pub mod sink;
pub mod syslog;
mod task;

pub use metrics::ForwardMetrics;
pub use sink::{HttpFormat, SinkConfig, SinkKind};
pub use task::spawn;

use std::time::Duration;

/// A delivery failure (retried) or a sink that cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// A socket or TLS failure.
    #[error("{what}: {source}")]
    Io {
        /// what was being done, with whom
        what: String,
        /// the error
        source: std::io::Error,
    },
    /// An HTTP exchange failed.
    #[error("{what}: {source}")]
    Http {
        /// the request
        what: String,
        /// the error
        source: hyper::Error,
    },
    /// The exchange took too long.
    #[error("{what}: no answer within {after:?}")]
    Timeout {
        /// the exchange
        what: String,
        /// the limit
        after: Duration,
    },
    /// The receiver answered but did not acknowledge.
    #[error("{0}")]
    Refused(String),
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// A setting that cannot work (caught by `--validate` where it can be).
    #[error("{0}")]
    Config(String),
    /// The store.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// Capped exponential backoff: 1 s, 2 s, 4 s … up to the cap.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    pub(crate) fn new(cap: Duration) -> Backoff {
        Backoff {
            next: Duration::from_secs(1).min(cap),
            cap,
        }
    }

    /// The wait before the next attempt.
    pub(crate) fn next_wait(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.cap);
        d
    }

    pub(crate) fn reset(&mut self) {
        self.next = Duration::from_secs(1).min(self.cap);
    }
}

/// Runs the task `make` builds, and builds and runs it again whenever it
/// panics (a bug here, or a library's debug assertion): forwarding and
/// alerts must never stop silently. Restarting is safe because their state
/// is the durable cursor (the batch in flight is handled again). Aborting
/// the returned handle aborts the task it runs.
pub(crate) fn supervised<F, Fut>(what: String, make: F) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    struct AbortOnDrop(tokio::task::JoinHandle<()>);
    impl Drop for AbortOnDrop {
        fn drop(&mut self) {
            self.0.abort();
        }
    }
    tokio::spawn(async move {
        loop {
            let mut task = AbortOnDrop(tokio::spawn(make()));
            match (&mut task.0).await {
                Err(e) if e.is_panic() => {
                    tracing::error!("{what}: the task panicked; starting it again in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                _ => return,
            }
        }
    })
}

/// The first line of a secret file (token, HMAC key): a private file
/// (`plumb_os::FileKind::PrivateKey`: owner-only), read through the trust rule.
pub(crate) fn read_secret(path: &std::path::Path) -> Result<String, ForwardError> {
    let bytes = plumb_os::read_trusted(path, plumb_os::FileKind::PrivateKey, 64 * 1024)
        .map_err(|e| ForwardError::Config(e.to_string()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| ForwardError::Config(format!("{}: not UTF-8 text", path.display())))?;
    let line = text.lines().next().unwrap_or("").trim().to_string();
    if line.is_empty() {
        return Err(ForwardError::Config(format!("{}: empty", path.display())));
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(5));
        let waits: Vec<u64> = (0..5).map(|_| b.next_wait().as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_wait(), Duration::from_secs(1));
    }
}
