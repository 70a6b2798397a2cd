//! Processes and ports a test owns: a spawned agent that dies with the test,
//! and a loopback port held before anything listens on it.

use std::net::SocketAddr;
use std::process::Child;
use std::time::{Duration, Instant};

/// A spawned `plumb agent` (or any process a test owns), killed and reaped
/// when dropped, even when the test panics.
pub struct Agent(pub Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Agent {
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.0.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    pub fn hup(&self) {
        self.signal(nix::sys::signal::Signal::SIGHUP);
    }

    /// The exit code once the process has exited (-1 for a signal), or None
    /// if it is still running after `within`.
    pub fn wait_exit(&mut self, within: Duration) -> Option<i32> {
        let end = Instant::now() + within;
        while Instant::now() < end {
            if let Some(st) = self.0.try_wait().unwrap() {
                return Some(st.code().unwrap_or(-1));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    /// SIGTERM, and the agent must exit 0 within 15 s.
    pub fn stop(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGTERM);
        match self.wait_exit(Duration::from_secs(15)) {
            Some(code) => assert_eq!(code, 0, "the agent's exit code after SIGTERM"),
            None => panic!("the agent did not stop"),
        }
    }
}

/// A loopback port this test holds from before anything listens on it until
/// it is dropped: for an agent configured, and started, before its
/// collector, or a collector restarted on the same address.
///
/// Binding port 0 and closing the socket to pass its number on (what a
/// `free_port()` does) lets any other process take the port in between. This
/// keeps a socket bound to it instead, with SO_REUSEADDR and not listening:
/// the kernel hands the port to no other `bind(0)` nor outgoing connection
/// while it lives, connections to it are refused as from a server that is
/// down, and a server that also sets SO_REUSEADDR (the collector does;
/// Rust's `TcpListener::bind` does) may bind and listen on it.
pub struct Port {
    _held: tokio::net::TcpSocket,
    pub port: u16,
}

impl Port {
    pub fn reserve() -> Port {
        let s = tokio::net::TcpSocket::new_v4().unwrap();
        s.set_reuseaddr(true).unwrap();
        s.bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let port = s.local_addr().unwrap().port();
        Port { _held: s, port }
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }
}
