//! The agent's sender against the real collector (`plumb_collector::server`
//! run in-process, its PKI from `plumb_collector::pki`): mutual TLS, only
//! acknowledged events leave the outbox, delivery resumes after an outage
//! and is followed by a fresh snapshot.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use plumb_collector::pki::{self, Role};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Agent(Child);
impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The collector, served on its own runtime in a thread; stopped on drop.
struct Collector {
    rt: Option<tokio::runtime::Runtime>,
}
impl Drop for Collector {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_collector(dir: &Path, port: u16) -> Collector {
    start_collector_with(dir, port, "", "")
}

/// The collector with extra `[server]` and `[storage]` settings.
fn start_collector_with(dir: &Path, port: u16, server: &str, storage: &str) -> Collector {
    let p = dir.join("collector.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_secs = 1\n{server}\n\
             [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/servers/localhost.pem\"\nkey = \"pki/servers/localhost.key\"\ncrl = [\"pki/crl.pem\"]\n\n\
             [storage]\npath = \"collector.db\"\n{storage}\n"
        ),
    )
    .unwrap();
    let cfg = plumb_collector::config::Config::load(&p).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.spawn(async move {
        if let Err(e) = plumb_collector::server::serve(cfg).await {
            eprintln!("collector: {e}");
        }
    });
    // Wait until it listens.
    let end = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < end, "collector did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Collector { rt: Some(rt) }
}

struct Setup {
    dir: tempfile::TempDir,
    port: u16,
}

type Tls = rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>;

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let pki_dir = dir.path().join("pki");
        pki::init(&pki_dir, "Test fleet CA", 30).unwrap();
        pki::issue(&pki_dir, Role::Server, "localhost", 30).unwrap();
        pki::issue(&pki_dir, Role::Agent, "test-host", 30).unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc")).unwrap();
        std::fs::write(root.join("etc/flag"), "1").unwrap();
        std::fs::write(
            dir.path().join("baseline.toml"),
            "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\
             [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
             check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n\
             [[fim]]\npath = \"/etc\"\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
        )
        .unwrap();
        let port = free_port();
        let d = dir.path();
        let cfg = d.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "host_id = \"test-host\"\nroot = \"{root}\"\nproc = \"{d}/proc\"\nstate_dir = \"{d}/state\"\n\
                 baselines = [\"{d}/baseline.toml\"]\nevents_file = \"{d}/events.jsonl\"\n\
                 [intervals]\nchecks = \"1s\"\n\
                 [collector]\nurl = \"https://localhost:{port}\"\nca = \"{d}/pki/ca.pem\"\n\
                 cert = \"{d}/pki/agents/test-host.pem\"\nkey = \"{d}/pki/agents/test-host.key\"\nmax_backoff = \"2s\"\n",
                root = root.display(),
                d = d.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        Setup { dir, port }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn start_agent(&self) -> Agent {
        Agent(
            Command::new(env!("CARGO_BIN_EXE_plumb"))
                .args(["agent", "--config"])
                .arg(self.path("agent.toml"))
                .env("PLUMB_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.path("agent.log")).unwrap())
                .spawn()
                .unwrap(),
        )
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.path("agent.log")).unwrap_or_default()
    }

    /// A TLS connection to the collector as agent `host` (certificate issued
    /// on demand).
    fn connect_as(&self, host: &str) -> Tls {
        let pki_dir = self.path("pki");
        if !pki_dir.join(format!("agents/{host}.pem")).exists() {
            pki::issue(&pki_dir, Role::Agent, host, 30).unwrap();
        }
        let mut roots = rustls::RootCertStore::empty();
        for c in plumb_os::pem::load_certs(&pki_dir.join("ca.pem")).unwrap() {
            roots.add(c).unwrap();
        }
        let certs = plumb_os::pem::load_certs(&pki_dir.join(format!("agents/{host}.pem"))).unwrap();
        let key =
            plumb_os::pem::load_private_key(&pki_dir.join(format!("agents/{host}.key"))).unwrap();
        let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(certs, key)
        .unwrap();
        let conn = rustls::ClientConnection::new(
            std::sync::Arc::new(cfg),
            "localhost".try_into().unwrap(),
        )
        .unwrap();
        let tcp = std::net::TcpStream::connect(("127.0.0.1", self.port)).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        rustls::StreamOwned::new(conn, tcp)
    }

    /// (kind, seq) of every event the collector stored for test-host.
    fn stored(&self) -> Vec<(String, u64)> {
        let Ok(db) = rusqlite::Connection::open_with_flags(
            self.path("collector.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        ) else {
            return Vec::new();
        };
        let Ok(mut st) =
            db.prepare("SELECT kind, seq FROM events WHERE host = 'test-host' ORDER BY seq")
        else {
            return Vec::new();
        };
        st.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))
            .map(|rows| rows.filter_map(Result::ok).collect())
            .unwrap_or_default()
    }

    /// Events still in the agent's outbox.
    fn outbox_len(&self) -> i64 {
        // 0 until the agent has created it.
        rusqlite::Connection::open_with_flags(
            self.path("state/state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|db| db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)))
        .unwrap_or(0)
    }

    fn wait(
        &self,
        what: &str,
        within: Duration,
        f: impl Fn(&[(String, u64)]) -> bool,
    ) -> Vec<(String, u64)> {
        let end = Instant::now() + within;
        loop {
            let s = self.stored();
            if f(&s) {
                return s;
            }
            assert!(Instant::now() < end, "timed out waiting for {what}: {s:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn contiguous(s: &[(String, u64)]) -> bool {
    s.iter()
        .enumerate()
        .all(|(i, (_, seq))| *seq == i as u64 + 1)
}

#[test]
fn events_reach_the_real_collector_over_mtls_and_leave_the_outbox() {
    let s = Setup::new();
    let _c = start_collector(s.dir.path(), s.port);
    let _a = s.start_agent();
    let got = s.wait("the start-up events", Duration::from_secs(30), |st| {
        st.iter().any(|(k, _)| k == "snapshot")
    });
    assert!(contiguous(&got), "{got:?}");
    assert!(got.iter().any(|(k, _)| k == "check_changed"));
    std::fs::write(s.path("root/etc/new"), "x").unwrap();
    s.wait("the fim_change", Duration::from_secs(10), |st| {
        st.iter().any(|(k, _)| k == "fim_change")
    });
    // Acknowledged events are deleted from the outbox; nothing went to the file.
    let end = Instant::now() + Duration::from_secs(5);
    while s.outbox_len() != 0 {
        assert!(Instant::now() < end, "outbox not drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!s.path("events.jsonl").exists());
}

#[test]
fn an_outage_is_ridden_out_and_followed_by_a_snapshot() {
    let s = Setup::new();
    // Collector down: the agent keeps everything in its outbox.
    let _a = s.start_agent();
    std::thread::sleep(Duration::from_secs(2));
    std::fs::write(s.path("root/etc/during-outage"), "x").unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert!(
        s.outbox_len() >= 3,
        "started, check_changed, snapshot, fim_change kept"
    );
    let _c = start_collector(s.dir.path(), s.port);
    let got = s.wait(
        "delivery after the outage, then a snapshot",
        Duration::from_secs(30),
        |st| {
            st.iter().filter(|(k, _)| k == "snapshot").count() >= 2
                && st.iter().any(|(k, _)| k == "fim_change")
        },
    );
    assert!(contiguous(&got), "nothing lost or duplicated: {got:?}");
}

/// Sends a POST /v1/events head announcing `len` body bytes, and `body`.
fn post(tls: &mut Tls, len: usize, body: &[u8]) {
    use std::io::Write;
    write!(
        tls,
        "POST /v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
    .unwrap();
    tls.write_all(body).unwrap();
    tls.flush().unwrap();
}

/// The status code of the reply on `tls`.
fn status(tls: &mut Tls) -> u16 {
    use std::io::Read;
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n") {
        assert_eq!(tls.read(&mut b).unwrap(), 1, "reply cut short: {head:?}");
        head.push(b[0]);
    }
    let line = String::from_utf8(head).unwrap();
    line.split(' ').nth(1).unwrap().parse().unwrap()
}

#[test]
fn a_busy_collector_is_waited_for_as_its_retry_after_says_then_gets_everything() {
    let s = Setup::new();
    // One batch admitted at a time, turned away at once, "come back in 3 s".
    let _c = start_collector_with(
        s.dir.path(),
        s.port,
        "",
        "queue_batches = 1\nqueue_wait_ms = 20\nretry_after_secs = 3\n",
    );
    // Another agent holds the only slot: its body never finishes arriving.
    let mut squatter = s.connect_as("squatter");
    post(&mut squatter, 100, b"{");
    // The slot is taken once a probe is turned away with 429.
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let mut probe = s.connect_as("probe");
        post(&mut probe, 2, b"{}");
        if status(&mut probe) == 429 {
            break;
        }
        assert!(Instant::now() < end, "the squatter never held the slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    // max_backoff is 2 s: an agent that ignored Retry-After would be back
    // well before 3 s.
    let _a = s.start_agent();
    let end = Instant::now() + Duration::from_secs(20);
    while !s.agent_log().contains("HTTP 429, Retry-After 3s") {
        assert!(Instant::now() < end, "no 429 seen: {}", s.agent_log());
        std::thread::sleep(Duration::from_millis(20));
    }
    let turned_away = Instant::now();
    drop(squatter);
    let got = s.wait(
        "delivery once the collector has room",
        Duration::from_secs(20),
        |st| !st.is_empty(),
    );
    let waited = turned_away.elapsed();
    assert!(
        waited >= Duration::from_millis(2700),
        "came back after {waited:?}, before Retry-After: {got:?}"
    );
    let got = s.wait("the start-up events", Duration::from_secs(20), |st| {
        st.iter().any(|(k, _)| k == "snapshot")
    });
    assert!(contiguous(&got), "nothing lost or duplicated: {got:?}");
}

#[test]
fn batches_too_large_for_the_collector_are_halved_until_they_fit() {
    let s = Setup::new();
    // Collector down while 60 changes pile up in the outbox.
    let _a = s.start_agent();
    std::thread::sleep(Duration::from_secs(2));
    for i in 0..60 {
        std::fs::write(s.path(&format!("root/etc/f{i:02}")), "x").unwrap();
    }
    let end = Instant::now() + Duration::from_secs(20);
    while s.outbox_len() < 63 {
        assert!(Instant::now() < end, "outbox has {}", s.outbox_len());
        std::thread::sleep(Duration::from_millis(50));
    }
    let pending = s.outbox_len() as usize;
    // A 4 KiB body cap: a few events per request at most.
    let _c = start_collector_with(s.dir.path(), s.port, "max_body_bytes = 4096", "");
    let end = Instant::now() + Duration::from_secs(30);
    let got = loop {
        let st = s.stored();
        if st.len() >= pending && st.iter().filter(|(k, _)| k == "fim_change").count() == 60 {
            break st;
        }
        assert!(
            Instant::now() < end,
            "not all delivered: {st:?}\n{}",
            s.agent_log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(contiguous(&got), "nothing lost or duplicated: {got:?}");
    assert!(
        !s.agent_log().contains("removed from the outbox"),
        "{}",
        s.agent_log()
    );
}

#[test]
fn an_unreadable_or_refused_event_becomes_a_notice_under_its_seq() {
    let s = Setup::new();
    // Collector down: the start-up events stay in the outbox.
    let mut a = s.start_agent();
    let end = Instant::now() + Duration::from_secs(20);
    while s.outbox_len() < 3 {
        assert!(Instant::now() < end, "outbox has {}", s.outbox_len());
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(a);
    // Seq 2: not JSON any more (a disk error, a hand edit). Seq 3: valid
    // for this agent but refused by the collector (its time is not RFC 3339).
    let db = rusqlite::Connection::open(s.path("state/state.db")).unwrap();
    db.execute("UPDATE outbox SET event = '{garbage' WHERE seq = 2", [])
        .unwrap();
    let third: String = db
        .query_row("SELECT event FROM outbox WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    let mut third: serde_json::Value = serde_json::from_str(&third).unwrap();
    third["time"] = "yesterday".into();
    db.execute(
        "UPDATE outbox SET event = ?1 WHERE seq = 3",
        [third.to_string()],
    )
    .unwrap();
    drop(db);
    let _c = start_collector(s.dir.path(), s.port);
    a = s.start_agent();
    // The restarted agent's own snapshot comes after them.
    let got = s.wait(
        "delivery past the bad events",
        Duration::from_secs(30),
        |st| st.iter().any(|(k, seq)| k == "snapshot" && *seq > 3),
    );
    assert!(contiguous(&got), "no gap: {got:?}");
    let db = rusqlite::Connection::open_with_flags(
        s.path("collector.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let body = |seq: i64| -> serde_json::Value {
        let t: String = db
            .query_row(
                "SELECT body FROM events WHERE host = 'test-host' AND seq = ?1",
                [seq],
                |r| r.get(0),
            )
            .unwrap();
        serde_json::from_str(&t).unwrap()
    };
    let (two, three) = (body(2), body(3));
    assert_eq!(two["kind"], "agent", "{two}");
    let m2 = two["message"].as_str().unwrap();
    assert!(
        m2.contains("seq 2") && m2.contains("could not be read"),
        "{m2}"
    );
    assert_eq!(three["kind"], "agent", "{three}");
    let m3 = three["message"].as_str().unwrap();
    assert!(m3.contains("seq 3") && m3.contains("RFC 3339"), "{m3}");
    assert!(
        m3.contains(r#""time":"yesterday""#),
        "the original is kept: {m3}"
    );
    drop(a);
}

/// A TLS server on `port` (the fleet's server certificate) that answers
/// every request `400` with `reason`, as a collector speaking another
/// protocol would. Runs until the test process ends.
fn refusing_server(s: &Setup, reason: &'static str) {
    use std::io::{BufRead, BufReader, Read, Write};
    let pki_dir = s.path("pki");
    let certs = plumb_os::pem::load_certs(&pki_dir.join("servers/localhost.pem")).unwrap();
    let key = plumb_os::pem::load_private_key(&pki_dir.join("servers/localhost.key")).unwrap();
    let cfg = std::sync::Arc::new(
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap(),
    );
    let listener = std::net::TcpListener::bind(("127.0.0.1", s.port)).unwrap();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let cfg = cfg.clone();
            std::thread::spawn(move || {
                let conn = rustls::ServerConnection::new(cfg).unwrap();
                let mut tls = BufReader::new(rustls::StreamOwned::new(conn, tcp));
                loop {
                    let mut len = 0usize;
                    loop {
                        let mut line = String::new();
                        if tls.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap();
                        }
                        if line == "\r\n" {
                            break;
                        }
                    }
                    let mut body = vec![0; len];
                    if tls.read_exact(&mut body).is_err() {
                        return;
                    }
                    let reply = format!(r#"{{"error":"{reason}"}}"#);
                    let out = format!(
                        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{reply}",
                        reply.len()
                    );
                    if tls.get_mut().write_all(out.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

#[test]
fn a_collector_that_refuses_everything_destroys_nothing() {
    let s = Setup::new();
    refusing_server(&s, "schema 1 is not supported");
    let _a = s.start_agent();
    let end = Instant::now() + Duration::from_secs(20);
    while !s.agent_log().contains("refuses even the notice at seq 1") {
        assert!(Instant::now() < end, "{}", s.agent_log());
        std::thread::sleep(Duration::from_millis(50));
    }
    // Let it retry a few times: still nothing more is replaced.
    std::thread::sleep(Duration::from_secs(3));
    let db = rusqlite::Connection::open_with_flags(
        s.path("state/state.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let rows: Vec<(i64, String)> = db
        .prepare("SELECT seq, event FROM outbox ORDER BY seq")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(rows.len() >= 3, "{rows:?}");
    let notices: Vec<i64> = rows
        .iter()
        .filter(|(_, e)| e.contains("not deliverable:"))
        .map(|(seq, _)| *seq)
        .collect();
    assert_eq!(
        notices,
        [1],
        "only the first event became a notice: {rows:?}"
    );
    assert!(
        rows[0].1.contains("schema 1 is not supported"),
        "{}",
        rows[0].1
    );
    assert!(
        rows.iter()
            .skip(1)
            .any(|(_, e)| e.contains(r#""kind":"snapshot""#))
    );
}

/// Issue 13 point 6: the agent's client key readable by everyone (0644) is
/// refused by `--validate` and by the daemon, naming the file and the mode;
/// nothing is sent.
#[test]
fn a_client_key_others_can_read_is_refused() {
    let s = Setup::new();
    let key = s.path("pki/agents/test-host.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let want = format!(
        "{}: mode 0644 gives group/other access to a private key",
        key.display()
    );
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["agent", "--validate", "--config"])
        .arg(s.path("agent.toml"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&want), "{err}");
    let mut a = s.start_agent();
    let end = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(st) = a.0.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < end,
            "the agent started with a readable key"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(2));
    let log = s.agent_log();
    assert!(log.contains(&want), "{log}");
    assert!(!s.path("state/state.db").exists(), "no state was created");
}
