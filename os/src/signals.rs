//! Signals become one stream of [`Signal`]s (as in vector's `signal.rs`):
//! SIGHUP reloads, SIGTERM/SIGINT stop. What a stop means (a drain
//! deadline, a second stop exiting at once) is the daemon's business.

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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn hangup_reloads_and_terminate_stops() {
        let mut s = stream().unwrap();
        let me = rustix::process::getpid();
        for (sig, want) in [
            (rustix::process::Signal::HUP, Signal::Reload),
            (rustix::process::Signal::TERM, Signal::Stop),
            (rustix::process::Signal::INT, Signal::Stop),
        ] {
            rustix::process::kill_process(me, sig).unwrap();
            let got = tokio::time::timeout(std::time::Duration::from_secs(10), s.recv())
                .await
                .unwrap();
            assert_eq!(got, Some(want));
        }
    }
}
