//! Signals become one stream of [`Signal`]s (as in vector's `signal.rs`):
//! SIGHUP reloads, SIGTERM/SIGINT stop with a drain deadline, and a second
//! stop signal while draining exits at once.

use tokio::signal::unix::{SignalKind, signal};
use tokio::sync::mpsc;

/// What a signal asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: reload config and baselines.
    Reload,
    /// SIGTERM or SIGINT: drain and stop.
    Stop,
}

/// Installs the handlers and returns the stream. Must run inside the runtime.
pub fn stream() -> std::io::Result<mpsc::Receiver<Signal>> {
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let (tx, rx) = mpsc::channel(8);
    tokio::spawn(async move {
        loop {
            let s = tokio::select! {
                Some(()) = hup.recv() => Signal::Reload,
                Some(()) = term.recv() => Signal::Stop,
                Some(()) = int.recv() => Signal::Stop,
                else => break,
            };
            if tx.send(s).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}
