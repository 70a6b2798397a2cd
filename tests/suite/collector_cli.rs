//! End-to-end tests of the collector's command line: PKI, config
//! validation, and the ops queries on a store populated through the server.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

fn out(cmd: &mut std::process::Command) -> (i32, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn version() {
    let (code, stdout, _) = out(collector().arg("--version"));
    assert_eq!(code, 0);
    assert!(stdout.starts_with("plumb-collector "));
}

#[test]
fn pki_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let (code, _, err) = out(collector().args(["pki", "init", "--dir"]).arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&dir.join("ca.key")), 0o600);
    assert!(dir.join("crl.pem").exists());
    let (code, _, err) = out(collector().args(["pki", "init", "--dir"]).arg(&dir));
    assert_eq!(code, 2);
    assert!(err.contains("refusing to overwrite"), "{err}");

    let (code, stdout, err) = out(collector()
        .args(["pki", "issue", "--agent", "web-12", "--days", "30", "--dir"])
        .arg(&dir));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("agents/web-12.pem"), "{stdout}");
    assert_eq!(mode(&dir.join("agents/web-12.key")), 0o600);
    let (code, _, err) = out(collector()
        .args(["pki", "issue", "--server", "10.1.2.3", "--dir"])
        .arg(&dir));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = out(collector()
        .args(["pki", "issue", "--agent", "../../etc/x", "--dir"])
        .arg(&dir));
    assert_eq!(code, 2);
    assert!(err.contains("not a valid host name"), "{err}");

    let (code, stdout, err) = out(collector()
        .args(["pki", "revoke", "--dir"])
        .arg(&dir)
        .arg(dir.join("agents/web-12.pem")));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains("revoked serial"), "{stdout}");
    let crl = plumb_collector::tls::read_crls(&dir.join("crl.pem")).unwrap();
    let (_, parsed) = <x509_parser::revocation_list::CertificateRevocationList as x509_parser::prelude::FromDer<_>>::from_der(&crl[0]).unwrap();
    assert_eq!(parsed.iter_revoked_certificates().count(), 1);
}

#[test]
fn validate_config() {
    let f = Fleet::new();
    let good = f.config("127.0.0.1:0", "", "");
    let (code, stdout, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&good));
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(": ok"));

    let bad = f.path("bad.toml");
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("[storage]\n", "[storage]\nretention = 3\n");
    std::fs::write(&bad, &text).unwrap();
    let line = text
        .lines()
        .position(|l| l.starts_with("retention ="))
        .unwrap()
        + 1;
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&bad));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "bad.toml:{line}:1: storage.retention: unknown field `retention`"
        )),
        "{err}"
    );

    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("[storage]\n", "[storage]\nsynchronous = \"sometimes\"\n");
    std::fs::write(&bad, &text).unwrap();
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&bad));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!("bad.toml:{line}:")) && err.contains("sometimes"),
        "{err}"
    );

    // Missing key file: named.
    let text = std::fs::read_to_string(&good)
        .unwrap()
        .replace("localhost.key", "missing.key");
    std::fs::write(&bad, &text).unwrap();
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&bad));
    assert_eq!(code, 2);
    assert!(err.contains("missing.key"), "{err}");

    // Writable by others: refused.
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o666)).unwrap();
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&good));
    assert_eq!(code, 2);
    assert!(err.contains("writable by group or others"), "{err}");
    std::fs::set_permissions(&good, std::fs::Permissions::from_mode(0o644)).unwrap();

    // A key readable by others: refused.
    let key = f.pki.join("servers/localhost.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&good));
    assert_eq!(code, 2);
    assert!(
        err.contains("localhost.key: mode 0644 gives group/other access to a private key"),
        "{err}"
    );
}

/// The attacks of issue 13 point 6 on the collector: a server key its group
/// can read, a CA key its group can read, a PKI directory others can enter
/// or write, and a start under umask 022 that must still leave the database
/// and its -wal/-shm 0600.
#[test]
fn keys_and_state_are_private() {
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "", "");
    let key = f.pki.join("servers/localhost.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let want = format!(
        "{}: mode 0640 gives group/other access to a private key",
        key.display()
    );
    let (code, _, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&cfg));
    assert_eq!(code, 2);
    assert!(err.contains(&want), "{err}");
    // The server itself refuses to start on it.
    let (code, _, err) = out(collector().args(["serve", "--config"]).arg(&cfg));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&want), "{err}");
    assert!(!f.db().exists(), "nothing was created");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // The CA key: `pki issue` refuses to sign with one its group can read.
    let ca_key = f.pki.join("ca.key");
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o640)).unwrap();
    let (code, _, err) = out(collector()
        .args(["pki", "issue", "--agent", "web-1", "--dir"])
        .arg(&f.pki.dir));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: mode 0640 gives group/other access to a private key",
            ca_key.display()
        )),
        "{err}"
    );
    assert!(!f.pki.join("agents/web-1.pem").exists());
    std::fs::set_permissions(&ca_key, std::fs::Permissions::from_mode(0o600)).unwrap();

    // A PKI directory others may enter is tightened; one they may write is refused.
    std::fs::set_permissions(&f.pki.dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (code, _, err) = out(collector()
        .args(["pki", "issue", "--agent", "web-1", "--dir"])
        .arg(&f.pki.dir));
    assert_eq!(code, 0, "{err}");
    assert_eq!(mode(&f.pki.dir), 0o700);
    std::fs::set_permissions(&f.pki.dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (code, _, err) = out(collector()
        .args(["pki", "issue", "--agent", "web-2", "--dir"])
        .arg(&f.pki.dir));
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "{}: mode 0777 makes this private directory writable by group or others",
            f.pki.display()
        )),
        "{err}"
    );
    assert!(!f.pki.join("agents/web-2.pem").exists());
    std::fs::set_permissions(&f.pki.dir, std::fs::Permissions::from_mode(0o700)).unwrap();

    // umask 022 (the usual shell default) and the database is still 0600.
    let child = std::process::Command::new("sh")
        .args(["-c", "umask 022 && exec \"$0\" serve --config \"$1\""])
        .arg(crate::common::collector_bin())
        .arg(&cfg)
        .env_remove("NOTIFY_SOCKET")
        .env("PLUMB_LOG", "info")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut server = Spawned(child);
    let stderr = server.0.stderr.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stderr));
    let started = lines.any(|l| l.is_ok_and(|l| l.contains("listening on")));
    assert!(started, "the collector did not start");
    let mut names: Vec<String> = std::fs::read_dir(f.tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("collector.db"))
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["collector.db", "collector.db-shm", "collector.db-wal"]
    );
    for n in &names {
        assert_eq!(mode(&f.path(n)), 0o600, "{n}");
    }
}

/// A spawned process, killed on drop.
struct Spawned(std::process::Child);

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn validate_lists_every_problem_with_file_line_column_and_field() {
    let f = Fleet::new();
    // Independent problems: two settings out of range, a CRL file and a
    // baseline key that do not exist. None hides another.
    let cfg = f.config("127.0.0.1:0", "max_connections = 0", "queue_batches = 0");
    let text = std::fs::read_to_string(&cfg)
        .unwrap()
        .replace("pki/crl.pem", "pki/nocrl.pem")
        + "[baselines]\ntrusted_keys = [\"keys/missing.pub\"]\n";
    std::fs::write(&cfg, text).unwrap();
    let (code, stdout, err) = out(collector()
        .args(["serve", "--validate", "--config"])
        .arg(&cfg));
    assert_eq!(code, 2, "{err}");
    assert!(stdout.is_empty(), "{stdout}");
    let c = cfg.display();
    let want = [
        format!("{c}:4:19: server.max_connections: must be at least 1"),
        format!(
            "{c}:9:8: tls.crl[0]: {}: ",
            f.path("pki/nocrl.pem").display()
        ),
        format!("{c}:13:17: storage.queue_batches: must be at least 1"),
        format!(
            "{c}:15:17: baselines.trusted_keys[0]: {}: ",
            f.path("keys/missing.pub").display()
        ),
    ];
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), want.len(), "one line per problem:\n{err}");
    for (line, want) in lines.iter().zip(&want) {
        assert!(
            line.starts_with(want.as_str()),
            "expected {want}...:\n{err}"
        );
    }
}

fn now_rfc3339(offset_secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

fn populate(f: &Fleet) {
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    let rule = |id: &str, status: &str, domains: serde_json::Value| json!({"id": id, "status": status, "severity": "high", "domains": domains, "title": format!("title of {id}")});
    let snapshot = |seq: u64, rules: Vec<serde_json::Value>| {
        json!({"seq": seq, "time": now_rfc3339(-600), "severity": "info", "kind": "snapshot",
               "agent_version": "0.1.0", "baseline": {"id": "issp-linux-server", "version": 7},
               "facts": {"hostname": "x", "os": "Debian 12", "kernel": "6.1", "uptime_s": 1, "cpus": 2, "memory_bytes": 1},
               "fim_digest": "f00d", "summary": {"pass": 0, "fail": 0, "error": 0, "skipped": 0, "score": 0.0},
               "rules": rules})
    };
    let web = json!({"schema": 1, "host": "web-12", "events": [
        snapshot(1, vec![rule("ssh.permit-root-login", "pass", json!([13])), rule("sysctl.ip-forward", "pass", json!([20, 21]))]),
        {"seq": 2, "time": now_rfc3339(-300), "severity": "high", "kind": "check_changed",
         "rule": "ssh.permit-root-login", "title": "SSH does not allow root to log in", "previous": "pass", "status": "fail",
         "domains": [13], "criteria": ["C", "T"], "evidence": ["PermitRootLogin yes (/etc/ssh/sshd_config:32)"],
         "baseline": {"id": "issp-linux-server", "version": 7}},
        {"seq": 3, "time": now_rfc3339(-200), "severity": "medium", "kind": "fim_change",
         "path": "/etc/passwd", "change": "modified", "fields": ["sha256", "size"],
         "old": {"sha256": "3f2a".repeat(16), "size": 1200}, "new": {"sha256": "8c1d".repeat(16), "size": 1234},
         "domains": [20, 25]},
        {"seq": 4, "time": now_rfc3339(-100), "severity": "medium", "kind": "fim_change",
         "path": {"hex": "2f6574632f62ff", "lossy": "/etc/b\u{fffd}"}, "change": "added",
         "domains": [25]},
    ]});
    let db = json!({"schema": 1, "host": "db-01", "events": [
        snapshot(1, vec![rule("ssh.permit-root-login", "pass", json!([13])), rule("sysctl.ip-forward", "fail", json!([20, 21]))]),
    ]});
    rt().block_on(async {
        for (host, b) in [("web-12", web), ("db-01", db)] {
            let r = one_request(
                f.client_config(Some(host)),
                server.addr,
                "POST",
                "/v1/events",
                &serde_json::to_vec(&b).unwrap(),
            )
            .await
            .unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    });
}

#[test]
fn queries_on_a_populated_store() {
    let f = Fleet::new();
    populate(&f);
    let db = f.db();

    // hosts
    let (code, text, err) = out(collector().args(["hosts", "--db"]).arg(&db));
    assert_eq!(code, 0, "{err}");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let web = text.lines().find(|l| l.starts_with("web-12")).unwrap();
    assert!(
        web.contains("50.0") && web.contains("issp-linux-server@7") && web.contains("0.1.0"),
        "{web}"
    );
    assert!(!web.contains("STALE"));
    let (_, text, _) = out(collector()
        .args(["hosts", "--stale-after", "0s", "--db"])
        .arg(&db));
    assert!(
        text.lines()
            .find(|l| l.starts_with("web-12"))
            .unwrap()
            .contains("STALE"),
        "{text}"
    );
    let (code, js, _) = out(collector()
        .args(["hosts", "--format", "json", "--db"])
        .arg(&db));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    let w = hosts.iter().find(|h| h["host"] == "web-12").unwrap();
    assert_eq!(w["failing_rules"], 1);
    assert_eq!(w["drift_24h"], 3);
    assert_eq!(w["stale"], false);
    assert_eq!(w["baseline"]["version"], 7);
    assert_eq!(w["fim_digest"], "f00d");

    // drift: newest first, evidence, field diffs
    let (code, text, _) = out(collector().args(["drift", "--db"]).arg(&db));
    assert_eq!(code, 1, "drift found → exit 1");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    let fim = text.find("/etc/passwd modified").unwrap();
    let ssh = text.find("ssh.permit-root-login: pass → fail").unwrap();
    assert!(fim < ssh, "newest first:\n{text}");
    assert!(
        text.contains("PermitRootLogin yes (/etc/ssh/sshd_config:32)"),
        "{text}"
    );
    assert!(text.contains("size: 1200 → 1234"), "{text}");
    // A path that is not UTF-8 is shown with its bytes.
    assert!(
        text.contains("/etc/b\u{fffd} [hex:2f6574632f62ff] added"),
        "{text}"
    );
    assert!(text.contains("sha256: 3f2a3f2a3f2a…"), "{text}");
    let (code, js, _) = out(collector()
        .args(["drift", "--severity", "high", "--format", "json", "--db"])
        .arg(&db));
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let events = v["events"].as_array().unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"]["rule"], "ssh.permit-root-login");
    let (code, text, _) = out(collector()
        .args(["drift", "--host", "db-01", "--db"])
        .arg(&db));
    assert_eq!(code, 0, "no drift → exit 0");
    assert!(text.contains("No drift"));
    let (code, _, _) = out(collector()
        .args(["drift", "--since", "1m", "--db"])
        .arg(&db));
    assert_eq!(code, 0, "both drift events are older than a minute");
    let (code, _, err) = out(collector()
        .args(["drift", "--since", "last tuesday", "--db"])
        .arg(&db));
    assert_eq!(code, 2);
    assert!(err.contains("--since"), "{err}");

    // report per ISSP domain
    let (code, text, _) = out(collector().args(["report", "--db"]).arg(&db));
    assert_eq!(code, 1, "a host fails → exit 1");
    assert!(text.lines().all(|l| l.chars().count() <= 80), "{text}");
    assert!(text.contains("2 hosts, 2 failing"), "{text}");
    let d13 = text
        .lines()
        .find(|l| l.trim_start().starts_with("13 "))
        .unwrap();
    assert!(
        d13.contains("Identity, authentication and access management"),
        "{d13}"
    );
    let nums: Vec<&str> = d13.split_whitespace().rev().take(3).collect();
    assert_eq!(nums, ["0", "1", "1"], "pass 1, fail 1, error 0: {d13}");
    assert!(text.contains("worst: ssh.permit-root-login (1)"), "{text}");
    let (_, js, _) = out(collector()
        .args(["report", "--format", "json", "--db"])
        .arg(&db));
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    let d21 = v["domains"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["domain"] == 21)
        .unwrap();
    assert_eq!(d21["name"], "Network security");
    assert_eq!(d21["hosts_failing"], 1);
    assert_eq!(d21["worst_rules"][0]["hosts"], json!(["db-01"]));

    // --config reads the same store; a missing db is a clear error.
    let cfg = f.config("127.0.0.1:0", "", "");
    let (code, _, err) = out(collector().args(["hosts", "--config"]).arg(&cfg));
    assert_eq!(code, 0, "{err}");
    let (code, _, err) = out(collector().args(["hosts", "--db"]).arg(f.path("nope.db")));
    assert_eq!(code, 2);
    assert!(err.contains("no such database"), "{err}");
}

#[test]
fn reopening_an_existing_store_is_idempotent() {
    let f = Fleet::new();
    populate(&f);
    // Second start on the same db: migrations already applied, data intact.
    populate(&f);
    let (code, js, _) = out(collector()
        .args(["hosts", "--format", "json", "--db"])
        .arg(f.db()));
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2);
    assert_eq!(stored_seqs(&f.db(), "web-12"), vec![1, 2, 3, 4]);
}

/// `Type=notify` with `WatchdogSec=`: the unit's watchdog gets pinged, so
/// systemd does not kill a healthy collector; SIGTERM says STOPPING=1.
#[test]
fn systemd_readiness_watchdog_and_stopping() {
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "", "");
    let sock_path = f.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(std::time::Duration::from_secs(20)))
        .unwrap();
    let server = Spawned(
        collector()
            .args(["serve", "--config"])
            .arg(&cfg)
            .env("NOTIFY_SOCKET", &sock_path)
            .env("WATCHDOG_USEC", "400000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while got.iter().filter(|m: &&String| *m == "WATCHDOG=1").count() < 2 {
        let n = sock.recv(&mut buf).expect("a notification");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    assert!(got[0].starts_with("READY=1"), "{got:?}");
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &server.0.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    loop {
        let n = sock.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
}

/// An agent (a compromised host, or a hostile file it quotes) posts a rule
/// id, title and evidence carrying ESC sequences and a newline followed by
/// a line forged to look like another host's drift. The operator's text
/// views show every character escaped on the line it belongs to: nothing
/// drives the terminal, and `drift --host` for the attacker's host shows no
/// line of another host. JSON keeps the exact strings.
#[test]
fn agent_supplied_control_characters_cannot_forge_lines_or_drive_the_terminal() {
    let f = Fleet::new();
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    let forged = "\n2026-11-27 10:00:00  critical db-01  ssh.permit-root-login: pass → fail";
    let rule = format!("evil\x1b[2J\x1b]0;pwned\x07{forged}");
    let evidence = format!("PermitRootLogin no\x1b[1A\x1b[2K{forged}\r");
    let snapshot = json!({"seq": 1, "time": now_rfc3339(-600), "severity": "info", "kind": "snapshot",
        "agent_version": "0.1\x1b[5m", "baseline": {"id": "b\x1b[31m\nforged-host", "version": 1},
        "facts": {"hostname": "x", "os": "Debian 12", "kernel": "6.1", "uptime_s": 1, "cpus": 2, "memory_bytes": 1},
        "fim_digest": "f00d", "summary": {"pass": 0, "fail": 1, "error": 0, "skipped": 0, "score": 0.0},
        "rules": [{"id": rule, "status": "fail", "severity": "high", "domains": [13], "title": "t"}]});
    let changed = json!({"seq": 2, "time": now_rfc3339(-60), "severity": "high", "kind": "check_changed",
        "rule": rule, "title": format!("title\x1b[8m{forged}"), "previous": "pass", "status": "fail",
        "domains": [13], "criteria": ["C"], "evidence": [evidence],
        "baseline": {"id": "b", "version": 1}});
    let batch = json!({"schema": 1, "host": "web-12", "events": [snapshot, changed]});
    rt().block_on(async {
        let r = one_request(
            f.client_config(Some("web-12")),
            server.addr,
            "POST",
            "/v1/events",
            &serde_json::to_vec(&batch).unwrap(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    });
    drop(server);
    let db = f.db();
    let raw = |s: &str| s.contains(['\x1b', '\x07', '\r']);

    let (code, text, err) = out(collector()
        .args(["drift", "--host", "web-12", "--db"])
        .arg(&db));
    assert_eq!(code, 1, "{err}");
    assert!(!raw(&text), "raw control characters: {text:?}");
    // Every event line is web-12's; whatever mentions db-01 is visibly part
    // of an escaped value on a web-12 line or an indented detail line.
    for l in text.lines().filter(|l| l.contains("db-01")) {
        assert!(
            l.contains("\\n2026-11-27 10:00:00  critical db-01"),
            "{l:?}"
        );
    }
    for l in text.lines().filter(|l| l.starts_with("20")) {
        assert!(
            l.contains(" web-12  "),
            "a line of another host: {l:?}\n{text}"
        );
    }
    assert!(text.contains("evil\\x1b[2J\\x1b]0;pwned\\x07\\n"), "{text}");
    assert!(
        text.contains("PermitRootLogin no\\x1b[1A\\x1b[2K\\n"),
        "{text}"
    );

    let (_, text, _) = out(collector().args(["hosts", "--db"]).arg(&db));
    assert!(!raw(&text), "raw control characters: {text:?}");
    assert!(
        !text.lines().any(|l| l.starts_with("forged-host")),
        "{text}"
    );
    let (_, text, _) = out(collector().args(["report", "--db"]).arg(&db));
    assert!(!raw(&text), "raw control characters: {text:?}");
    assert!(text.contains("worst: evil\\x1b[2J"), "{text}");

    // JSON is exact.
    let (_, js, _) = out(collector()
        .args(["drift", "--format", "json", "--db"])
        .arg(&db));
    let v: serde_json::Value = serde_json::from_str(&js).unwrap();
    assert_eq!(v["events"][0]["event"]["rule"], rule.as_str());
    assert_eq!(v["events"][0]["event"]["evidence"][0], evidence.as_str());
}
