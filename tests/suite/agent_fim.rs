//! End-to-end tests of the agent's sealed FIM database: the real `plumb
//! agent` against a temporary root, with `STATE/fim.db` edited behind its
//! back while it is stopped, and compared with `plumb fim check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::Agent;

use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASELINE: &str = r#"schema = 1
id = "test-agent-fim"
version = 1
title = "agent fim test baseline"

[[fim]]
path = "/etc"
realtime = true
severity = "high"
domains = [25]
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new() -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.root().join("etc/sub")).unwrap();
        std::fs::create_dir_all(s.path("proc")).unwrap();
        std::fs::write(s.root().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(s.root().join("etc/sub/conf"), "a = 1\n").unwrap();
        std::fs::write(s.path("baseline.toml"), BASELINE).unwrap();
        let text = format!(
            "host_id = \"test-host\"\nroot = \"{}\"\nproc = \"{}\"\nstate_dir = \"{}\"\nbaselines = [\"{}\"]\nevents_file = \"{}\"\n",
            s.root().display(),
            s.path("proc").display(),
            s.path("state").display(),
            s.path("baseline.toml").display(),
            s.path("log/events.jsonl").display(),
        );
        std::fs::write(s.path("agent.toml"), text).unwrap();
        std::fs::set_permissions(s.path("agent.toml"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn start(&self) -> Agent {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_plumb"));
        cmd.args(["agent", "--config"]).arg(self.path("agent.toml"));
        spawn(cmd)
    }

    fn events(&self) -> Vec<Value> {
        common::read_jsonl(&self.path("log/events.jsonl"))
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; events: {ev:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn wait_snapshots(&self, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} snapshot(s)"), |ev| snapshots(ev).len() >= n)
    }

    /// `plumb fim check --format json` on the agent's database.
    fn fim_check(&self) -> (i32, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["fim", "check", "--format", "json", "--baseline"])
            .arg(self.path("baseline.toml"))
            .arg("--root")
            .arg(self.root())
            .arg("--db")
            .arg(self.path("state/fim.db"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let v = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{e}: {text}\n{}", String::from_utf8_lossy(&out.stderr)));
        (out.status.code().unwrap_or(-1), v)
    }
}

/// Runs an agent command, quiet.
fn spawn(mut cmd: Command) -> Agent {
    cmd.env("PLUMB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    Agent(cmd.spawn().unwrap())
}

fn snapshots(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["kind"] == "snapshot").collect()
}

fn tampers(ev: &[Value]) -> Vec<&Value> {
    ev.iter().filter(|e| e["kind"] == "fim_tamper").collect()
}

#[test]
fn the_database_is_sealed_with_a_private_key_and_its_digest_is_sent() {
    let s = Setup::new();
    let mut a = s.start();
    let ev = s.wait_snapshots(1);
    a.stop();
    let key = s.path("state/fim.db.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the key is private");
    let digest = snapshots(&ev)[0]["fim_digest"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(digest.len(), 64);
    assert!(digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    // `plumb fim check` reads the agent's database: it verifies, nothing
    // changed, and its digest is the one in the snapshot.
    let (code, v) = s.fim_check();
    assert_eq!(code, 0, "{v:#}");
    assert!(v["tamper"].as_array().unwrap().is_empty(), "{v:#}");
    assert!(v["changes"].as_array().unwrap().is_empty(), "{v:#}");
    assert_eq!(v["db_digest"], digest.as_str());
    assert_eq!(v["db_rows"], 4, "/etc, passwd, sub, sub/conf: {v:#}");
    // No fim_change for the initial recording.
    assert!(ev.iter().all(|e| e["kind"] != "fim_change"), "{ev:#?}");
}

#[test]
fn a_row_edited_while_stopped_is_reported_as_fim_tamper_on_restart() {
    let s = Setup::new();
    let mut a = s.start();
    s.wait_snapshots(1);
    a.stop();
    // Hide a change the way an intruder without the key would: edit the
    // recorded owner of /etc/passwd to match a forged file.
    let c = rusqlite::Connection::open(s.path("state/fim.db")).unwrap();
    let n = c
        .execute(
            "UPDATE entries SET uid = 4242 WHERE path = ?1",
            [b"\0etc\0passwd".to_vec()],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(c);
    let (code, v) = s.fim_check();
    assert_eq!(code, 2, "plumb fim check sees the tampering too: {v:#}");
    let _b = s.start();
    let ev = s.wait_for("a fim_tamper event", |ev| !tampers(ev).is_empty());
    let t = tampers(&ev)[0];
    assert_eq!(t["severity"], "critical");
    let detail: Vec<&str> = t["detail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        detail
            .iter()
            .any(|d| d.contains("/etc/passwd") && d.contains("HMAC")),
        "{detail:?}"
    );
    // The forged row is not trusted for a diff: no fim_change for it.
    assert!(
        ev.iter()
            .all(|e| !(e["kind"] == "fim_change" && e["path"] == "/etc/passwd")),
        "{ev:#?}"
    );
    // Reported once, then the database is sealed again over what is on disk.
    let ev = s.wait_snapshots(2);
    assert_eq!(tampers(&ev).len(), 1, "{ev:#?}");
    let last = snapshots(&ev).last().unwrap()["fim_digest"].clone();
    assert_eq!(last.as_str().map(str::len), Some(64), "{last}");
}

fn fim_changes(ev: &[Value]) -> Vec<String> {
    ev.iter()
        .filter(|e| e["kind"] == "fim_change")
        .map(|e| {
            format!(
                "{} {}",
                e["change"].as_str().unwrap(),
                e["path"].as_str().unwrap()
            )
        })
        .collect()
}

/// A file system mounted inside a watch that does not cross devices is not
/// recorded by a whole pass, so a realtime event below it must not be
/// either. The mount lives in a private mount namespace of the agent
/// (`unshare`), so the host is not touched; needs root.
#[test]
#[ignore = "needs root and unshare(1): a private mount namespace"]
fn a_realtime_change_below_a_mount_point_is_not_recorded() {
    common::require_root("mounts in a private mount namespace");
    let private_ns = Command::new("unshare")
        .args(["--mount", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(private_ns, "needs unshare(1) and mount namespaces");
    let s = Setup::new();
    let mnt = s.root().join("etc/mnt");
    std::fs::create_dir(&mnt).unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(r#"mount -t tmpfs plumb-test "$1" && exec "$2" agent --config "$3""#)
        .arg("sh")
        .arg(&mnt)
        .arg(env!("CARGO_BIN_EXE_plumb"))
        .arg(s.path("agent.toml"));
    let a = spawn(cmd);
    s.wait_snapshots(1);
    let pid = a.0.id().to_string();
    // Written inside the agent's namespace: onto the tmpfs.
    let st = Command::new("nsenter")
        .args(["--mount", "--target", &pid, "sh", "-c"])
        .arg(r#"echo x > "$1/below" && mkdir "$1/dir" && echo y > "$1/dir/deeper""#)
        .arg("sh")
        .arg(&mnt)
        .status()
        .unwrap();
    assert!(st.success());
    assert!(!mnt.join("below").exists(), "the host's view is untouched");
    std::fs::write(s.root().join("etc/beside"), "z").unwrap();
    s.wait_for("the change beside the mount", |ev| {
        fim_changes(ev).contains(&"added /etc/beside".to_string())
    });
    // Time for a straggling realtime pass over the tmpfs.
    std::thread::sleep(Duration::from_secs(2));
    let got = fim_changes(&s.events());
    assert_eq!(got, ["added /etc/beside"], "nothing below /etc/mnt");
    assert_eq!(inotify_watches(&pid), 2, "/etc and /etc/sub, not the mount");
}

/// The inotify watches process `pid` holds (from /proc/PID/fdinfo).
fn inotify_watches(pid: &str) -> usize {
    let mut n = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fdinfo")).unwrap() {
        let text = std::fs::read_to_string(fd.unwrap().path()).unwrap_or_default();
        n += text
            .lines()
            .filter(|l| l.starts_with("inotify wd:"))
            .count();
    }
    n
}

#[test]
fn a_file_name_that_is_not_utf8_is_reported_whole() {
    use std::os::unix::ffi::OsStrExt;
    let s = Setup::new();
    let _a = s.start();
    s.wait_snapshots(1);
    let name = std::ffi::OsStr::from_bytes(b"odd-\xff\xfe");
    std::fs::write(s.root().join("etc").join(name), "x").unwrap();
    let ev = s.wait_for("the fim_change", |ev| {
        ev.iter().any(|e| e["kind"] == "fim_change")
    });
    let e = ev.iter().find(|e| e["kind"] == "fim_change").unwrap();
    assert_eq!(e["change"], "added");
    assert_eq!(
        e["path"],
        serde_json::json!({"hex": "2f6574632f6f64642dfffe", "lossy": "/etc/odd-\u{fffd}\u{fffd}"}),
        "{e:#}"
    );
}

/// More changed paths than `limits.realtime_max_dirty` before a flush: the
/// watched tree is rescanned (metadata verify, one batched commit) instead
/// of each path. Every changed file is reported once, nothing unchanged is,
/// and the directories the burst created are watched afterwards without
/// the tree being walked again.
#[test]
fn an_overflowing_burst_is_rescanned_whole_and_new_directories_watched() {
    let s = Setup::new();
    let mut cfg = std::fs::read_to_string(s.path("agent.toml")).unwrap();
    cfg.push_str("[limits]\nrealtime_max_dirty = 20\n");
    std::fs::write(s.path("agent.toml"), cfg).unwrap();
    // A watched directory: each file written in it is a changed path (in a
    // directory the burst creates, only the directory would be).
    std::fs::create_dir_all(s.root().join("etc/pre")).unwrap();
    let _a = s.start();
    s.wait_snapshots(1);
    for i in 0..200 {
        std::fs::write(s.root().join(format!("etc/pre/f{i}")), "x").unwrap();
    }
    std::fs::create_dir_all(s.root().join("etc/burst/sub")).unwrap();
    std::fs::write(s.root().join("etc/burst/sub/g"), "g").unwrap();
    std::fs::write(s.root().join("etc/passwd"), "root:x:0:0::/root:/bin/bash\n").unwrap();
    let ev = s.wait_for("204 changes", |ev| fim_changes(ev).len() >= 204);
    let mut want: Vec<String> = (0..200)
        .map(|i| format!("added /etc/pre/f{i}"))
        .chain([
            "added /etc/burst".to_string(),
            "added /etc/burst/sub".to_string(),
            "added /etc/burst/sub/g".to_string(),
            "modified /etc/passwd".to_string(),
        ])
        .collect();
    want.sort();
    let mut got = fim_changes(&ev);
    got.sort();
    assert_eq!(got, want, "each change once, /etc/sub/conf not at all");
    assert!(
        ev.iter().any(|e| e["kind"] == "agent"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("more than 20 changed paths"))),
        "the overflow is said: {ev:#?}"
    );
    // The new directory is watched: a later write in it is reported alone.
    std::thread::sleep(Duration::from_millis(500));
    std::fs::write(s.root().join("etc/burst/sub/late"), "late").unwrap();
    let ev = s.wait_for("the late write", |ev| {
        fim_changes(ev).contains(&"added /etc/burst/sub/late".to_string())
    });
    assert_eq!(fim_changes(&ev).len(), 205, "{:#?}", fim_changes(&ev));
}
