//! Signed baselines from the security team's key to every agent: the real
//! `plumb` and `plumb-collector` binaries, mutual TLS on loopback,
//! certificates from the collector's PKI, bundles signed in the test and
//! published with `plumb-collector baseline publish`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::Collector;
use crate::common::pki::Pki;
use crate::common::{Agent, collector_bin};
use plumb_core::bundle::{Bundle, SigningKey};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

struct Key {
    sk: SigningKey,
    pub_path: PathBuf,
}

fn key(dir: &Path, name: &str) -> Key {
    let g = SigningKey::generate(name).unwrap();
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(&pub_path, g.public.to_text()).unwrap();
    Key {
        sk: SigningKey::from_pem(&g.private_pem, name).unwrap(),
        pub_path,
    }
}

/// Baseline `version`; from version 2 on it also watches /opt (a new FIM
/// root the agent must adopt without reporting its files as added).
fn baseline(version: u64) -> String {
    let mut s = format!(
        "schema = 1\nid = \"fleet\"\nversion = {version}\ntitle = \"fleet\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = {{ kind = \"file\", path = \"/etc/flag\", exists = true }}\n\
         [[fim]]\npath = \"/etc\"\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n"
    );
    if version >= 2 {
        s.push_str(
            "[[fim]]\npath = \"/opt\"\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
        );
    }
    s
}

fn signed(k: &Key, version: u64) -> Vec<u8> {
    Bundle::sign(baseline(version).as_bytes(), "fleet.toml", &k.sk)
        .unwrap()
        .to_bytes()
}

struct Fleet {
    dir: tempfile::TempDir,
    pki: Pki,
    port: u16,
}

impl Fleet {
    fn new() -> (Fleet, Collector) {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::new(&dir.path().join("pki"));
        let p = dir.path().join("collector.toml");
        std::fs::write(
            &p,
            // Port 0: the collector says which port it bound.
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout_secs = 1\n\
             [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/servers/localhost.pem\"\nkey = \"pki/servers/localhost.key\"\ncrl = [\"pki/crl.pem\"]\n\n\
             [storage]\npath = \"collector.db\"\n",
        )
        .unwrap();
        let collector = Collector::start(&p);
        let port = collector.addr.port();
        (Fleet { dir, pki, port }, collector)
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `plumb-collector baseline publish`: verified with the collector's
    /// trusted keys, then stored.
    fn publish(&self, bytes: &[u8], hosts: &str, keys: &[&Key]) -> Result<(), String> {
        let bundle = self.path(&format!("publish-{}.bundle", bytes.len()));
        std::fs::write(&bundle, bytes).unwrap();
        let mut cmd = Command::new(collector_bin());
        cmd.args(["baseline", "publish"])
            .arg(&bundle)
            .args(["--hosts", hosts, "--db"])
            .arg(self.path("collector.db"));
        for k in keys {
            cmd.arg("--trusted-key").arg(&k.pub_path);
        }
        let out = cmd.output().unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// Writes into the collector's store directly, bypassing publish's
    /// verification: a compromised or tampered collector.
    fn tamper(&self, version: i64, bytes: &[u8], tag: &str) {
        let db = rusqlite::Connection::open(self.path("collector.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute(
            "INSERT INTO baselines (id, version, key_id, hosts, bytes, sha256, published_at)
             VALUES ('fleet', ?1, 'forged', '*', ?2, ?3, 2)",
            rusqlite::params![version, bytes, tag],
        )
        .unwrap();
    }

    fn untamper(&self, version: i64) {
        let db = rusqlite::Connection::open(self.path("collector.db")).unwrap();
        db.busy_timeout(Duration::from_secs(5)).unwrap();
        db.execute("DELETE FROM baselines WHERE version = ?1", [version])
            .unwrap();
    }

    /// An agent for `host` whose local baseline is `local` (a bundle).
    fn agent_config(&self, host: &str, local: &[u8], keys: &[&Key]) -> PathBuf {
        let d = self.path(host);
        let root = d.join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::fs::create_dir_all(d.join("proc")).unwrap();
        std::fs::write(root.join("etc/flag"), "1").unwrap();
        std::fs::write(root.join("opt/app/bin"), "x").unwrap();
        std::fs::write(d.join("local.bundle"), local).unwrap();
        self.pki.agent(host);
        self.write_config(host, keys);
        d.join("agent.toml")
    }

    fn write_config(&self, host: &str, keys: &[&Key]) {
        let d = self.path(host);
        let pki = self.path("pki");
        let keys: Vec<String> = keys
            .iter()
            .map(|k| format!("\"{}\"", k.pub_path.display()))
            .collect();
        let cfg = d.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "host_id = \"{host}\"\nroot = \"{d}/root\"\nproc = \"{d}/proc\"\nstate_dir = \"{d}/state\"\n\
                 baselines = [\"{d}/local.bundle\"]\nevents_file = \"{d}/events.jsonl\"\n\
                 trusted_keys = [{keys}]\n\
                 [intervals]\nchecks = \"1s\"\nbaseline_poll = \"1s\"\n\
                 [collector]\nurl = \"https://localhost:{port}\"\nca = \"{pki}/ca.pem\"\n\
                 cert = \"{pki}/agents/{host}.pem\"\nkey = \"{pki}/agents/{host}.key\"\nmax_backoff = \"2s\"\n",
                d = d.display(),
                pki = pki.display(),
                keys = keys.join(", "),
                port = self.port,
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn start(&self, cfg: &Path) -> Agent {
        Agent(
            Command::new(env!("CARGO_BIN_EXE_plumb"))
                .args(["agent", "--config"])
                .arg(cfg)
                .env("PLUMB_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    /// Every event the collector stored for `host`, as JSON, read from its
    /// database file.
    fn events(&self, host: &str) -> Vec<serde_json::Value> {
        let flags = rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY;
        let Ok(db) = rusqlite::Connection::open_with_flags(self.path("collector.db"), flags) else {
            return Vec::new();
        };
        let Ok(mut st) = db.prepare("SELECT body FROM events WHERE host = ?1 ORDER BY seq") else {
            return Vec::new();
        };
        st.query_map([host], |r| r.get::<_, String>(0))
            .map(|rows| {
                rows.flatten()
                    .flat_map(|b| serde_json::from_str(&b))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn agent_events(&self, host: &str, what: &str) -> Vec<String> {
        self.events(host)
            .iter()
            .filter(|e| e["kind"] == "agent" && e["what"] == what)
            .map(|e| e["message"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn wait_for(&self, host: &str, what: &str, needle: &str, within: Duration) -> String {
        let end = Instant::now() + within;
        loop {
            if let Some(m) = self
                .agent_events(host, what)
                .into_iter()
                .find(|m| m.contains(needle))
            {
                return m;
            }
            assert!(
                Instant::now() < end,
                "{host}: no {what} event containing {needle:?}; events: {:#?}",
                self.events(host)
                    .iter()
                    .filter(|e| e["kind"] == "agent")
                    .collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `plumb-collector hosts --format json`: host -> baseline version.
    fn host_versions(&self) -> Vec<(String, Option<u64>)> {
        let out = Command::new(collector_bin())
            .args(["hosts", "--format", "json", "--db"])
            .arg(self.path("collector.db"))
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut rows: Vec<(String, Option<u64>)> = v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h["host"].as_str().unwrap().to_string(),
                    h["baseline"]["version"].as_u64(),
                )
            })
            .collect();
        rows.sort();
        rows
    }

    fn wait_versions(&self, want: &[(&str, u64)], within: Duration) {
        let want: Vec<(String, Option<u64>)> = want
            .iter()
            .map(|(h, v)| (h.to_string(), Some(*v)))
            .collect();
        let end = Instant::now() + within;
        loop {
            let got = self.host_versions();
            if got == want {
                return;
            }
            assert!(Instant::now() < end, "hosts: {got:?}, want {want:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

const WAIT: Duration = Duration::from_secs(30);

#[test]
fn a_published_baseline_reaches_two_agents_and_both_report_it() {
    let (f, _c) = Fleet::new();
    let team = key(f.dir.path(), "team");
    let v1 = signed(&team, 1);
    let a = f.start(&f.agent_config("web-1", &v1, &[&team]));
    let b = f.start(&f.agent_config("web-2", &v1, &[&team]));
    f.wait_for("web-1", "baseline_applied", "fleet v1", WAIT);
    f.wait_for("web-2", "baseline_applied", "fleet v1", WAIT);
    f.wait_versions(&[("web-1", 1), ("web-2", 1)], WAIT);

    f.publish(&signed(&team, 2), "web-*", &[&team]).unwrap();
    for h in ["web-1", "web-2"] {
        let m = f.wait_for(h, "baseline_applied", "fleet v2", WAIT);
        assert!(m.contains("from the collector"), "{m}");
    }
    f.wait_versions(&[("web-1", 2), ("web-2", 2)], WAIT);
    // The new watch root /opt was adopted silently; a change under it after
    // that is reported.
    std::thread::sleep(Duration::from_secs(2));
    let added_opt = |h: &str| {
        f.events(h)
            .iter()
            .filter(|e| {
                e["kind"] == "fim_change" && e["path"].as_str().unwrap_or("").starts_with("/opt")
            })
            .map(|e| e["path"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()
    };
    assert!(added_opt("web-1").is_empty(), "{:?}", added_opt("web-1"));
    std::fs::write(f.path("web-1/root/opt/app/new"), "n").unwrap();
    let end = Instant::now() + WAIT;
    while !added_opt("web-1").contains(&"/opt/app/new".to_string()) {
        assert!(
            Instant::now() < end,
            "the change under /opt was not reported"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(added_opt("web-1"), ["/opt/app/new"]);
    // A restart runs the applied v2 (stored), not the older local v1 file,
    // and says nothing about that older file.
    drop(a);
    let _a = f.start(&f.path("web-1/agent.toml"));
    let end = Instant::now() + WAIT;
    while f.agent_events("web-1", "started").len() < 2 {
        assert!(Instant::now() < end, "no second start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    f.wait_versions(&[("web-1", 2), ("web-2", 2)], WAIT);
    assert!(f.agent_events("web-1", "baseline_refused").is_empty());
    drop(b);
}

#[test]
fn tampered_foreign_replayed_and_forged_bundles_are_refused_and_the_old_baseline_keeps_running() {
    let (f, _c) = Fleet::new();
    let team = key(f.dir.path(), "team");
    let stranger = key(f.dir.path(), "stranger");
    let _a = f.start(&f.agent_config("web-1", &signed(&team, 1), &[&team]));
    f.publish(&signed(&team, 2), "*", &[&team]).unwrap();
    f.wait_for("web-1", "baseline_applied", "fleet v2", WAIT);

    // One flipped byte in the baseline text: publish refuses it...
    let mut flipped = signed(&team, 3);
    let n = flipped.len();
    flipped[n - 3] ^= 0x01;
    assert!(f.publish(&flipped, "*", &[&team]).is_err());
    // ...and a tampered store serving it anyway is refused by the agent.
    f.tamper(3, &flipped, "flipped");
    let m = f.wait_for("web-1", "baseline_refused", "bad signature", WAIT);
    assert!(m.contains("from the collector"), "{m}");
    f.untamper(3);

    // Signed by a key the agent does not trust.
    let foreign = signed(&stranger, 4);
    assert!(f.publish(&foreign, "*", &[&team]).is_err());
    f.tamper(4, &foreign, "foreign");
    f.wait_for("web-1", "baseline_refused", "unknown key", WAIT);
    f.untamper(4);

    // An older genuine version replayed (the newer ones withdrawn).
    f.untamper(2);
    f.publish(&signed(&team, 1), "*", &[&team]).unwrap();
    f.wait_for(
        "web-1",
        "baseline_refused",
        "not newer than applied version 2",
        WAIT,
    );

    // An unsigned baseline (plain TOML) written straight into the store.
    f.tamper(9, baseline(9).as_bytes(), "unsigned");
    f.wait_for("web-1", "baseline_refused", "not a baseline bundle", WAIT);

    // Through all of it v2 kept running: the refusals and the snapshots
    // carry it.
    f.wait_versions(&[("web-1", 2)], WAIT);
    let refused: Vec<serde_json::Value> = f
        .events("web-1")
        .into_iter()
        .filter(|e| e["what"] == "baseline_refused")
        .collect();
    assert!(refused.len() >= 4, "{refused:#?}");
    for e in &refused {
        assert_eq!(e["baseline"]["version"], 2, "{e}");
    }
    assert!(
        f.agent_events("web-1", "baseline_applied")
            .iter()
            .all(|m| !m.contains("v9"))
    );
}

#[test]
fn a_key_removed_from_the_config_on_sighup_no_longer_signs_anything() {
    let (f, _c) = Fleet::new();
    let old = key(f.dir.path(), "old");
    let new = key(f.dir.path(), "new");
    let cfg = f.agent_config("web-1", &signed(&old, 1), &[&old, &new]);
    let a = f.start(&cfg);
    f.wait_for("web-1", "baseline_applied", "fleet v1", WAIT);
    // Both keys trusted: a bundle from the new key is applied.
    f.publish(&signed(&new, 2), "*", &[&old, &new]).unwrap();
    f.wait_for("web-1", "baseline_applied", "fleet v2", WAIT);
    // Retire the old key: the local file (signed by it) must go too.
    std::fs::write(f.path("web-1/local.bundle"), signed(&new, 2)).unwrap();
    f.write_config("web-1", &[&new]);
    a.hup();
    f.wait_for("web-1", "reloaded", "fleet v2", WAIT);
    // The collector (still trusting both) serves v3 signed by the old key.
    f.publish(&signed(&old, 3), "*", &[&old, &new]).unwrap();
    let m = f.wait_for("web-1", "baseline_refused", "unknown key", WAIT);
    assert!(m.contains("from the collector"), "{m}");
    f.wait_versions(&[("web-1", 2)], WAIT);
    assert!(
        f.agent_events("web-1", "baseline_applied")
            .iter()
            .all(|m| !m.contains("v3"))
    );
}

/// A baseline `id` v`version` whose one rule `rule` checks that `path`
/// exists.
fn other_baseline(id: &str, version: u64, rule: &str, path: &str) -> String {
    format!(
        "schema = 1\nid = \"{id}\"\nversion = {version}\ntitle = \"{id}\"\n\
         [[rule]]\nid = \"{rule}\"\ntitle = \"{rule}\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = {{ kind = \"file\", path = \"{path}\", exists = true }}\n"
    )
}

fn signed_other(k: &Key, id: &str, version: u64, rule: &str, path: &str) -> Vec<u8> {
    Bundle::sign(
        other_baseline(id, version, rule, path).as_bytes(),
        &format!("{id}.toml"),
        &k.sk,
    )
    .unwrap()
    .to_bytes()
}

/// The rule ids of the newest snapshot `host` sent.
fn snapshot_rules(f: &Fleet, host: &str) -> Vec<String> {
    let events = f.events(host);
    let Some(s) = events.iter().rev().find(|e| e["kind"] == "snapshot") else {
        return Vec::new();
    };
    let mut ids: Vec<String> = s["rules"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|r| r["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Issue 13.5: a fleet-wide id with a high version must not shadow an id
/// published for a few hosts. Each id is served on its own newest version
/// for the hosts its glob matches, each is judged against its own applied
/// version, and all of them run together.
#[test]
fn two_baseline_ids_for_overlapping_hosts_both_reach_the_hosts_they_target() {
    let (f, _c) = Fleet::new();
    let team = key(f.dir.path(), "team");
    let v1 = signed(&team, 1);
    let _a = f.start(&f.agent_config("host-a", &v1, &[&team]));
    let _b = f.start(&f.agent_config("host-b", &v1, &[&team]));
    f.wait_for("host-a", "baseline_applied", "fleet v1", WAIT);
    f.wait_for("host-b", "baseline_applied", "fleet v1", WAIT);

    // secret-b v1 for host-b only, then fleet v5 for everyone: v1 is below
    // fleet's version, and fleet's newest version would be all that a
    // single "newest bundle" lookup serves.
    let secret = |v| signed_other(&team, "secret-b", v, "secret.flag", "/etc/secret");
    f.publish(&secret(1), "host-b", &[&team]).unwrap();
    f.publish(&signed(&team, 5), "*", &[&team]).unwrap();
    for h in ["host-a", "host-b"] {
        let m = f.wait_for(h, "baseline_applied", "fleet v5", WAIT);
        assert!(m.contains("from the collector"), "{m}");
    }
    let m = f.wait_for("host-b", "baseline_applied", "secret-b v1", WAIT);
    assert!(m.contains("from the collector"), "{m}");

    // Both run on host-b (its snapshot lists both rules); host-a runs
    // fleet only and was never offered secret-b.
    let end = Instant::now() + WAIT;
    while snapshot_rules(&f, "host-b") != ["flag", "secret.flag"] {
        assert!(
            Instant::now() < end,
            "host-b runs {:?}",
            snapshot_rules(&f, "host-b")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // A new version of the small id is applied on its own floor.
    f.publish(&secret(2), "host-b", &[&team]).unwrap();
    f.wait_for("host-b", "baseline_applied", "secret-b v2", WAIT);
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(snapshot_rules(&f, "host-a"), ["flag"]);
    for what in ["baseline_applied", "baseline_refused"] {
        assert!(
            f.agent_events("host-a", what)
                .iter()
                .all(|m| !m.contains("secret-b")),
            "{:?}",
            f.agent_events("host-a", what)
        );
    }
    // Nothing was refused on host-b either: no id was held to another's
    // version, and no bundle was judged twice.
    assert!(
        f.agent_events("host-b", "baseline_refused").is_empty(),
        "{:?}",
        f.agent_events("host-b", "baseline_refused")
    );
    let applied = f.agent_events("host-b", "baseline_applied");
    for v in ["fleet v5", "secret-b v1", "secret-b v2"] {
        assert_eq!(
            applied.iter().filter(|m| m.contains(v)).count(),
            1,
            "{applied:?}"
        );
    }
}
