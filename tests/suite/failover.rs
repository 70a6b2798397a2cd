//! Agents fail over (issue 14.4): `[collector] url` lists two real
//! collectors, each with its own SQLite store. The agent sends to the first,
//! moves to the second when the first dies (`kill -9`: a batch may have
//! been stored without its acknowledgement reaching the agent), and returns
//! to the first once it is back and `failback_after` has passed. Every
//! event must reach at least one store, and no store may hold one twice.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::Collector;
use crate::common::pki::Pki;
use crate::common::{Agent, Port};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const WAIT: Duration = Duration::from_secs(40);

struct Site {
    dir: tempfile::TempDir,
    ports: [Port; 2],
}

impl Site {
    fn new() -> Site {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        pki.agent("web-1");
        let d = dir.path();
        let root = d.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(d.join("proc")).unwrap();
        std::fs::write(root.join("etc/flag"), "1").unwrap();
        std::fs::write(
            d.join("baseline.toml"),
            "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\
             [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
             check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n\
             [[fim]]\npath = \"/etc\"\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
        )
        .unwrap();
        let ports = [Port::reserve(), Port::reserve()];
        let cfg = d.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "host_id = \"web-1\"\nroot = \"{root}\"\nproc = \"{d}/proc\"\nstate_dir = \"{d}/state\"\n\
                 baselines = [\"{d}/baseline.toml\"]\nevents_file = \"{d}/events.jsonl\"\n\
                 [intervals]\nchecks = \"1s\"\n\
                 [collector]\nurl = [\"https://localhost:{p1}\", \"https://localhost:{p2}\"]\n\
                 ca = \"{d}/pki/ca.pem\"\ncert = \"{d}/pki/agents/web-1.pem\"\nkey = \"{d}/pki/agents/web-1.key\"\n\
                 max_backoff = \"1s\"\ntimeout = \"5s\"\nfailback_after = \"3s\"\n",
                root = root.display(),
                d = d.display(),
                p1 = ports[0].port,
                p2 = ports[1].port,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        Site { dir, ports }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// Collector `i` (0 or 1) on its reserved port, with its own store.
    fn collector(&self, i: usize) -> Collector {
        let d = self.dir.path();
        let own = d.join(format!("c{i}"));
        std::fs::create_dir_all(&own).unwrap();
        let p = own.join("collector.toml");
        std::fs::write(
            &p,
            format!(
                "[server]\nlisten = \"127.0.0.1:{port}\"\nshutdown_timeout_secs = 1\n\
                 [tls]\nca = \"{d}/pki/ca.pem\"\ncert = \"{d}/pki/servers/localhost.pem\"\n\
                 key = \"{d}/pki/servers/localhost.key\"\ncrl = [\"{d}/pki/crl.pem\"]\n\n\
                 [storage]\npath = \"{own}/collector.db\"\n",
                port = self.ports[i].port,
                d = d.display(),
                own = own.display(),
            ),
        )
        .unwrap();
        Collector::start(&p)
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

    /// (seq, kind, path) of every event store `i` holds for web-1.
    fn stored(&self, i: usize) -> Vec<(u64, String, String)> {
        stored(&self.path(&format!("c{i}/collector.db")))
    }

    /// Waits until store `i` holds a fim_change for each of `paths`.
    fn wait_paths(&self, i: usize, paths: &[String]) {
        let end = Instant::now() + WAIT;
        loop {
            let got: BTreeSet<String> = self.stored(i).into_iter().map(|(_, _, p)| p).collect();
            if paths.iter().all(|p| got.contains(p)) {
                return;
            }
            assert!(
                Instant::now() < end,
                "store {i} lacks some of {paths:?}: {got:?}\nagent log:\n{}",
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits until store `i` holds the agent's first snapshot: its FIM
    /// database and watches are set up, so later changes are reported.
    fn wait_started(&self, i: usize) {
        let end = Instant::now() + WAIT;
        while !self.stored(i).iter().any(|(_, k, _)| k == "snapshot") {
            assert!(
                Instant::now() < end,
                "no snapshot in store {i}: {:?}\nagent log:\n{}",
                self.stored(i),
                self.agent_log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Writes `n` new files under /etc named `{tag}-k`; returns their paths.
    fn change(&self, tag: &str, n: usize) -> Vec<String> {
        (0..n)
            .map(|k| {
                let p = format!("/etc/{tag}-{k}");
                std::fs::write(self.path(&format!("root{p}")), "x").unwrap();
                p
            })
            .collect()
    }
}

fn stored(db: &Path) -> Vec<(u64, String, String)> {
    let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
    let Ok(c) = rusqlite::Connection::open_with_flags(db, flags) else {
        return Vec::new();
    };
    let Ok(mut st) = c.prepare(
        "SELECT seq, kind, coalesce(json_extract(body, '$.path'), '') FROM events
         WHERE host = 'web-1' ORDER BY seq",
    ) else {
        return Vec::new();
    };
    st.query_map([], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get(1)?, r.get(2)?))
    })
    .map(|rows| rows.filter_map(Result::ok).collect())
    .unwrap_or_default()
}

#[test]
fn an_agent_moves_to_the_next_collector_and_back_without_losing_an_event() {
    let s = Site::new();
    let c0 = s.collector(0);
    let _c1 = s.collector(1);
    let mut agent = s.start_agent();
    s.wait_started(0);

    // The preferred collector gets everything while it is up.
    let before = s.change("before", 5);
    s.wait_paths(0, &before);
    assert!(s.stored(1).is_empty(), "{:?}", s.stored(1));

    // It dies hard, mid-stream: the next changes go to the second one.
    drop(c0);
    let during = s.change("during", 20);
    s.wait_paths(1, &during);
    let log = s.agent_log();
    assert!(log.contains("now sending to"), "{log}");
    // The second collector was told the full state too.
    s.wait_started(1);

    // Back up (same address, same store): after failback_after (3 s) the
    // agent returns to it.
    let _c0 = s.collector(0);
    std::thread::sleep(Duration::from_secs(4));
    let after = s.change("after", 5);
    s.wait_paths(0, &after);
    let log = s.agent_log();
    assert!(log.contains("trying it again"), "{log}");

    // Drain, then compare the stores with what the agent numbered.
    let end = Instant::now() + WAIT;
    loop {
        let pending: i64 = rusqlite::Connection::open_with_flags(
            s.path("state/state.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .and_then(|db| db.query_row("SELECT count(*) FROM outbox", [], |r| r.get(0)))
        .unwrap();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "{pending} events never left the outbox"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    agent.stop();
    let stores = [s.stored(0), s.stored(1)];
    let mut all = BTreeSet::new();
    for (i, st) in stores.iter().enumerate() {
        let seqs: Vec<u64> = st.iter().map(|(q, _, _)| *q).collect();
        let distinct: BTreeSet<u64> = seqs.iter().copied().collect();
        assert_eq!(
            seqs.len(),
            distinct.len(),
            "store {i} holds a seq twice: {seqs:?}"
        );
        all.extend(distinct);
    }
    // Every seq the agent numbered, 1..=max, reached a store: none lost.
    let max = *all.iter().next_back().unwrap();
    assert_eq!(all, (1..=max).collect::<BTreeSet<u64>>(), "{stores:?}");
    // Every change is somewhere, and each store holds it at most once.
    for p in before.iter().chain(&during).chain(&after) {
        let n: Vec<usize> = stores
            .iter()
            .map(|st| st.iter().filter(|(_, _, q)| q == p).count())
            .collect();
        assert!(
            n.iter().sum::<usize>() >= 1 && n.iter().all(|c| *c <= 1),
            "{p}: {n:?}"
        );
    }
}

/// A name that resolves to several addresses is tried address by address.
/// The agent runs in a private mount namespace whose /etc/hosts maps
/// `collectors.test` to 127.0.0.1 and 127.0.0.2 (the host's /etc/hosts is
/// not touched); a collector listens on each, same port, separate stores.
#[test]
#[ignore = "needs root (a private mount namespace for /etc/hosts)"]
fn a_name_with_two_addresses_is_tried_address_by_address() {
    crate::common::require_root("unshare -m and a bind mount over /etc/hosts");
    let s = Site::new();
    let d = s.dir.path();
    plumb_collector::pki::issue(
        &d.join("pki"),
        plumb_collector::pki::Role::Server,
        "collectors.test",
        30,
    )
    .unwrap();
    let port = s.ports[0].port;
    let hosts = d.join("hosts");
    std::fs::write(
        &hosts,
        "127.0.0.1 collectors.test\n127.0.0.2 collectors.test\n",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(s.path("agent.toml")).unwrap();
    let start = cfg.find("url = [").unwrap();
    let end = start + cfg[start..].find('\n').unwrap();
    let cfg = format!(
        "{}url = \"https://collectors.test:{port}\"{}",
        &cfg[..start],
        &cfg[end..]
    );
    std::fs::write(s.path("agent.toml"), cfg).unwrap();
    let collector_on = |i: usize, ip: &str| {
        let own = d.join(format!("c{i}"));
        std::fs::create_dir_all(&own).unwrap();
        let p = own.join("collector.toml");
        std::fs::write(
            &p,
            format!(
                "[server]\nlisten = \"{ip}:{port}\"\nshutdown_timeout_secs = 1\n\
                 [tls]\nca = \"{d}/pki/ca.pem\"\ncert = \"{d}/pki/servers/collectors.test.pem\"\n\
                 key = \"{d}/pki/servers/collectors.test.key\"\ncrl = [\"{d}/pki/crl.pem\"]\n\n\
                 [storage]\npath = \"{own}/collector.db\"\n",
                d = d.display(),
                own = own.display(),
            ),
        )
        .unwrap();
        Collector::start(&p)
    };
    let first = collector_on(0, "127.0.0.1");
    let _second = collector_on(1, "127.0.0.2");
    let mut agent = Agent(
        Command::new("unshare")
            .arg("-m")
            .arg("sh")
            .arg("-c")
            .arg(format!(
                "mount --make-rprivate / && mount --bind {} /etc/hosts && exec {} agent --config {}",
                hosts.display(),
                env!("CARGO_BIN_EXE_plumb"),
                s.path("agent.toml").display()
            ))
            .env("PLUMB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(s.path("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    s.wait_started(0);
    let before = s.change("before", 3);
    s.wait_paths(0, &before);
    drop(first);
    let during = s.change("during", 3);
    s.wait_paths(1, &during);
    let log = s.agent_log();
    assert!(
        log.contains("now sending to collectors.test:") && log.contains("(127.0.0.2:"),
        "{log}"
    );
    agent.stop();
}
