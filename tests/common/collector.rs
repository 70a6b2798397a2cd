//! Fixtures for the collector's end-to-end tests: a throwaway PKI, configs,
//! the real `plumb-collector serve` (killed on drop, even on panic), and a
//! small mTLS client.

pub use super::http::{Conn, HttpResponse};
use super::pki::Pki;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub fn collector() -> Command {
    let mut c = Command::new(super::collector_bin());
    c.env_remove("NOTIFY_SOCKET");
    c
}

pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// A temporary directory with a fleet PKI: CA, server cert for localhost, agents on demand.
pub struct Fleet {
    pub tmp: tempfile::TempDir,
    pub pki: Pki,
}

impl Fleet {
    pub fn new() -> Fleet {
        let tmp = tempfile::tempdir().unwrap();
        let pki = Pki::new(&tmp.path().join("pki"));
        Fleet { tmp, pki }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.tmp.path().join(rel)
    }

    pub fn agent(&self, host: &str) -> (PathBuf, PathBuf) {
        self.pki.agent(host)
    }

    pub fn db(&self) -> PathBuf {
        self.path("collector.db")
    }

    /// Writes collector.toml listening on `listen`, with `extra` TOML appended to sections.
    pub fn config(&self, listen: &str, server_extra: &str, storage_extra: &str) -> PathBuf {
        self.config_named("collector.toml", listen, server_extra, storage_extra)
    }

    /// [`Fleet::config`] into another file (several collectors in one fleet).
    pub fn config_named(
        &self,
        name: &str,
        listen: &str,
        server_extra: &str,
        storage_extra: &str,
    ) -> PathBuf {
        let p = self.path(name);
        let text = format!(
            "[server]\nlisten = \"{listen}\"\nshutdown_timeout_secs = 3\n{server_extra}\n\
             [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/servers/localhost.pem\"\nkey = \"pki/servers/localhost.key\"\ncrl = [\"pki/crl.pem\"]\n\n\
             [storage]\npath = \"collector.db\"\n{storage_extra}\n"
        );
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn client_config(&self, host: Option<&str>) -> Arc<rustls::ClientConfig> {
        self.pki.client_config(host)
    }
}

/// A running `plumb-collector serve`; killed on drop. Its configuration may
/// listen on port 0: the address it bound is read from its log.
pub struct Collector {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: Arc<Mutex<String>>,
}

impl Collector {
    pub fn start(config: &Path) -> Collector {
        let mut child = collector()
            .args(["serve", "--config"])
            .arg(config)
            .env("PLUMB_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                // The INFO line `listening on ADDR` the collector logs once bound.
                if let Some(Ok(a)) = line
                    .split("listening on ")
                    .nth(1)
                    .map(|a| a.trim().parse::<SocketAddr>())
                {
                    let _ = tx.send(a);
                }
                let mut l = log2.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        let mut server = Collector {
            child,
            addr: "127.0.0.1:1".parse().unwrap(),
            log: log.clone(),
        };
        match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(addr) => server.addr = addr,
            Err(_) => panic!("collector did not start; log:\n{}", log.lock().unwrap()),
        }
        server
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn signal(&self, sig: &str) {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .unwrap();
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(s) = self.child.try_wait().unwrap() {
                return Some(s);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }
}

impl Drop for Collector {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub async fn connect(cfg: Arc<rustls::ClientConfig>, addr: SocketAddr) -> std::io::Result<Conn> {
    Conn::connect(cfg, addr, "localhost").await
}

/// Connects and sends one request; an Err means the TLS session was refused.
pub async fn one_request(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    let mut c = connect(cfg, addr).await?;
    c.request(method, path, body).await
}

pub fn event(seq: u64, kind_body: serde_json::Value) -> serde_json::Value {
    let mut e = serde_json::json!({
        "seq": seq, "time": "2026-11-27T10:00:00Z", "severity": "high",
    });
    for (k, v) in kind_body.as_object().unwrap() {
        e[k] = v.clone();
    }
    e
}

pub fn fim_event(seq: u64) -> serde_json::Value {
    event(
        seq,
        serde_json::json!({
            "kind": "fim_change", "path": format!("/etc/file{seq}"), "change": "modified",
            "fields": ["sha256", "size"],
            "old": {"sha256": "a".repeat(64), "size": 1200},
            "new": {"sha256": "b".repeat(64), "size": 1234},
            "domains": [20, 25]
        }),
    )
}

/// A batch of fim_change events with these seqs.
pub fn batch(host: &str, seqs: impl IntoIterator<Item = u64>) -> Vec<u8> {
    let events: Vec<_> = seqs.into_iter().map(fim_event).collect();
    serde_json::to_vec(&serde_json::json!({"schema": 1, "host": host, "events": events})).unwrap()
}

/// The seqs stored for `host`, in order, read from the database file.
pub fn stored_seqs(db: &Path, host: &str) -> Vec<u64> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let c = rusqlite::Connection::open_with_flags(db, flags).unwrap();
    let mut st = c
        .prepare("SELECT seq FROM events WHERE host = ?1 ORDER BY seq")
        .unwrap();
    st.query_map([host], |r| r.get::<_, i64>(0).map(|v| v as u64))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}
