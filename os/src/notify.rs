//! systemd `Type=notify`: readiness, watchdog and stopping messages on the
//! datagram socket named by `NOTIFY_SOCKET` (a path, or `@name` for an
//! abstract socket). Without the variable every call does nothing.
//!
//! Written here rather than taken from the `sd-notify` crate: the protocol
//! is one datagram, and the crate reads the environment on every call, so a
//! test could only aim it at its own socket by changing the process
//! environment (unsafe in edition 2024). [`Notifier`] reads it once.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

/// Where systemd listens, read once at start.
#[derive(Debug, Clone)]
pub struct Notifier {
    socket: Option<String>,
    watchdog: Option<Duration>,
}

impl Notifier {
    /// From `NOTIFY_SOCKET` and `WATCHDOG_USEC` (and `WATCHDOG_PID`, which
    /// must be ours when set).
    pub fn from_env() -> Notifier {
        let socket = std::env::var("NOTIFY_SOCKET")
            .ok()
            .filter(|s| !s.is_empty());
        let pid_ok = std::env::var("WATCHDOG_PID")
            .ok()
            .and_then(|p| p.parse::<u32>().ok())
            .is_none_or(|p| p == std::process::id());
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|u| u.parse::<u64>().ok())
            .filter(|&u| u > 0 && pid_ok)
            .map(Duration::from_micros);
        Notifier { socket, watchdog }
    }

    /// How often to ping the watchdog (half its timeout), when enabled.
    pub fn watchdog_interval(&self) -> Option<Duration> {
        self.socket.as_ref()?;
        self.watchdog.map(|d| d / 2)
    }

    /// `READY=1`.
    pub fn ready(&self) {
        self.send("READY=1\nSTATUS=running");
    }
    /// `RELOADING=1` then `READY=1` when done is the caller's business.
    pub fn status(&self, status: &str) {
        self.send(&format!("STATUS={status}"));
    }
    /// `WATCHDOG=1`. Call it every [`Notifier::watchdog_interval`] from
    /// the loop whose progress it vouches for.
    pub fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Pings the watchdog every [`Notifier::watchdog_interval`] from a task
    /// of the current runtime (which it thereby shows alive); `None` when
    /// systemd asked for no watchdog. Abort the task when stopping.
    #[cfg(feature = "tokio")]
    pub fn spawn_watchdog(&self) -> Option<tokio::task::JoinHandle<()>> {
        let every = self.watchdog_interval()?;
        let me = self.clone();
        Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(every.max(Duration::from_millis(100)));
            loop {
                tick.tick().await;
                me.watchdog();
            }
        }))
    }
    /// `STOPPING=1`.
    pub fn stopping(&self) {
        self.send("STOPPING=1");
    }

    fn send(&self, msg: &str) {
        let Some(path) = &self.socket else { return };
        if let Err(e) = send_to(path, msg.as_bytes()) {
            tracing::warn!("sd_notify to {path}: {e}");
        }
    }
}

fn send_to(path: &str, msg: &[u8]) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(msg, &addr)?;
    } else {
        sock.send_to(msg, path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn messages_reach_a_path_socket() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("notify.sock");
        let server = UnixDatagram::bind(&p).unwrap();
        let n = Notifier {
            socket: Some(p.display().to_string()),
            watchdog: Some(Duration::from_secs(10)),
        };
        n.ready();
        n.watchdog();
        let mut buf = [0u8; 256];
        let k = server.recv(&mut buf).unwrap();
        assert!(buf[..k].starts_with(b"READY=1"));
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"WATCHDOG=1");
        assert_eq!(n.watchdog_interval(), Some(Duration::from_secs(5)));
    }

    #[test]
    fn messages_reach_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("plumb-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let server = UnixDatagram::bind_addr(&addr).unwrap();
        let n = Notifier {
            socket: Some(format!("@{name}")),
            watchdog: None,
        };
        n.stopping();
        let mut buf = [0u8; 64];
        let k = server.recv(&mut buf).unwrap();
        assert_eq!(&buf[..k], b"STOPPING=1");
        assert_eq!(n.watchdog_interval(), None);
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier {
            socket: None,
            watchdog: Some(Duration::from_secs(1)),
        };
        n.ready();
        assert_eq!(n.watchdog_interval(), None);
    }
}
