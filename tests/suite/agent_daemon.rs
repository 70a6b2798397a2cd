//! End-to-end tests of `plumb agent` in standalone mode: the real binary
//! against a temporary root, a fake proc directory, a state directory and a
//! config written by the test. Events are read from the JSON-lines file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::Agent;

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASELINE_V1: &str = r#"schema = 1
id = "test-agent"
version = 1
title = "agent test baseline"

[[rule]]
id = "flag.present"
title = "The flag file exists"
severity = "high"
domains = [20]
criteria = ["I"]
check = { kind = "file", path = "/etc/flag", exists = true }

[[fim]]
path = "/etc"
exclude = ["/etc/skip"]
realtime = true
severity = "high"
domains = [20, 25]
"#;

struct Setup {
    dir: tempfile::TempDir,
}

impl Setup {
    fn new(extra_config: &str) -> Setup {
        let s = Setup {
            dir: tempfile::tempdir().unwrap(),
        };
        std::fs::create_dir_all(s.root().join("etc/skip")).unwrap();
        std::fs::create_dir_all(s.path("proc")).unwrap();
        std::fs::write(s.root().join("etc/flag"), "1").unwrap();
        std::fs::write(s.root().join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").unwrap();
        std::fs::write(s.path("baseline.toml"), BASELINE_V1).unwrap();
        s.write_config(extra_config);
        s
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn root(&self) -> PathBuf {
        self.path("root")
    }

    fn config(&self) -> PathBuf {
        self.path("agent.toml")
    }

    fn events_file(&self) -> PathBuf {
        self.path("log/events.jsonl")
    }

    fn write_config(&self, extra: &str) {
        let text = format!(
            "host_id = \"test-host\"\nroot = \"{root}\"\nproc = \"{proc}\"\nstate_dir = \"{state}\"\nbaselines = [\"{base}\"]\nevents_file = \"{events}\"\n{extra}\n",
            root = self.root().display(),
            proc = self.path("proc").display(),
            state = self.path("state").display(),
            base = self.path("baseline.toml").display(),
            events = self.events_file().display(),
        );
        let text = if text.contains("[intervals]") {
            text
        } else {
            format!("{text}\n[intervals]\nchecks = \"1s\"\n")
        };
        std::fs::write(self.config(), text).unwrap();
        std::fs::set_permissions(self.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
    }

    fn start(&self) -> Agent {
        self.start_with(&[])
    }

    fn start_with(&self, env: &[(&str, &str)]) -> Agent {
        let mut c = Command::new(env!("CARGO_BIN_EXE_plumb"));
        c.args(["agent", "--config"])
            .arg(self.config())
            .env("PLUMB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in env {
            c.env(k, v);
        }
        Agent(c.spawn().unwrap())
    }

    /// Every event in the file, in order.
    fn events(&self) -> Vec<Value> {
        common::read_jsonl(&self.events_file())
    }

    /// Waits until `pred` holds for the events, or fails the test.
    fn wait_for(
        &self,
        what: &str,
        within: Duration,
        pred: impl Fn(&[Value]) -> bool,
    ) -> Vec<Value> {
        let end = Instant::now() + within;
        loop {
            let ev = self.events();
            if pred(&ev) {
                return ev;
            }
            if Instant::now() > end {
                panic!("timed out waiting for {what}; events: {ev:#?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Waits for the `n`th snapshot (the agent is up after its first one).
    fn wait_snapshots(&self, n: usize) -> Vec<Value> {
        self.wait_for(&format!("{n} snapshot(s)"), Duration::from_secs(30), |ev| {
            count(ev, |e| e["kind"] == "snapshot") >= n
        })
    }
}

fn count(ev: &[Value], f: impl Fn(&Value) -> bool) -> usize {
    ev.iter().filter(|e| f(e)).count()
}

fn fim_changes<'a>(ev: &'a [Value], path: &str) -> Vec<&'a Value> {
    ev.iter()
        .filter(|e| e["kind"] == "fim_change" && e["path"] == path)
        .collect()
}

fn agent_events<'a>(ev: &'a [Value], what: &str) -> Vec<&'a Value> {
    ev.iter()
        .filter(|e| e["kind"] == "agent" && e["what"] == what)
        .collect()
}

fn assert_contiguous(ev: &[Value]) {
    let seqs: Vec<u64> = ev.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    let want: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, want, "seqs must be 1..=n, each once, in order");
}

fn plumb(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_accepts_a_good_config_and_the_shipped_example() {
    let s = Setup::new("");
    let cfg = s.config();
    let (code, out, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("valid"));
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("agent.example.toml");
    let copy = s.path("example.toml");
    std::fs::copy(&example, &copy).unwrap();
    std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = plumb(&["agent", "--config", copy.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 0, "{err}");
}

#[test]
fn validate_names_file_line_and_field_of_errors() {
    let s = Setup::new("\n[limits]\nnice = 5\nhash_mb_per_sec = 3\n");
    let cfg = s.config();
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2);
    let want = format!("{}:10:", cfg.display());
    assert!(
        err.contains(&want) && err.contains("hash_mb_per_sec"),
        "{err}"
    );

    s.write_config("remediation = \"sometimes\"");
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2);
    assert!(err.contains(":7:") && err.contains("sometimes"), "{err}");

    // A broken baseline named by the config is refused too.
    std::fs::write(
        s.path("baseline.toml"),
        "schema = 1\nid = \"x\"\nbogus = 1\n",
    )
    .unwrap();
    s.write_config("");
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2);
    assert!(err.contains("baseline.toml:3"), "{err}");
}

#[test]
fn validate_lists_every_problem_with_file_line_column_and_field() {
    let s = Setup::new("");
    let cfg = s.config();
    // Three independent problems: a limit out of range, a baseline file
    // and a trusted key that do not exist. None hides another.
    let text = format!(
        "host_id = \"test-host\"\nroot = \"{root}\"\nstate_dir = \"{state}\"\nbaselines = [\"{base}\"]\ntrusted_keys = [\"{key}\"]\nevents_file = \"{events}\"\n[limits]\nnice = 40\n",
        root = s.root().display(),
        state = s.path("state").display(),
        base = s.path("missing.toml").display(),
        key = s.path("missing.pub").display(),
        events = s.events_file().display(),
    );
    std::fs::write(&cfg, text).unwrap();
    let (code, out, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    let c = cfg.display();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 3, "one line per problem:\n{err}");
    for (at, what) in [
        (
            format!("{c}:8:8: limits.nice: "),
            "40 is not in 0..=19".to_string(),
        ),
        (
            format!("{c}:4:14: baselines[0]: "),
            format!("{}: cannot open", s.path("missing.toml").display()),
        ),
        (
            format!("{c}:5:17: trusted_keys[0]: "),
            format!("{}: cannot open", s.path("missing.pub").display()),
        ),
    ] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&at) && l.contains(&what)),
            "expected {at}{what}...:\n{err}"
        );
    }

    // A baseline that is there but broken is listed at its own lines,
    // beside the config's problems.
    std::fs::write(
        s.path("baseline.toml"),
        "schema = 1\nid = \"x\"\nversion = 1\n[[rule]]\nid = \"BAD\"\ntitle = \"\"\nseverity = \"high\"\ndomains = [99]\ncriteria = [\"I\"]\ncheck = { kind = \"file\", path = \"/etc/flag\", exists = true }\n",
    )
    .unwrap();
    s.write_config("[limits]\nnice = -1\n");
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2, "{err}");
    let b = s.path("baseline.toml");
    let b = b.display();
    for want in [
        format!("{c}:8:8: limits.nice: -1 is not in 0..=19"),
        format!("{b}:5:6: rule[0].id: \"BAD\" is not of the form"),
        format!("{b}:6:9: rule[0] (BAD).title: title is empty"),
        format!("{b}:8:11: rule[0] (BAD).domains: domain 99 is outside 1..=28"),
    ] {
        assert!(
            err.lines().any(|l| l.starts_with(&want)),
            "expected {want}...:\n{err}"
        );
    }
    assert_eq!(err.lines().count(), 4, "{err}");
}

#[test]
fn a_group_writable_config_or_baseline_is_refused() {
    let s = Setup::new("");
    let cfg = s.config();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o660)).unwrap();
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2);
    assert!(err.contains("writable by group or others"), "{err}");
    // The daemon itself refuses to start on it.
    let mut a = s.start();
    assert_eq!(a.wait_exit(Duration::from_secs(10)), Some(2));

    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::set_permissions(
        s.path("baseline.toml"),
        std::fs::Permissions::from_mode(0o646),
    )
    .unwrap();
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("baseline.toml") && err.contains("writable"),
        "{err}"
    );
}

#[test]
fn a_change_under_a_realtime_path_yields_exactly_one_fim_change() {
    let s = Setup::new("");
    let _a = s.start();
    s.wait_snapshots(1);
    let f = s.root().join("etc/passwd");
    // A few writes in quick succession: one change, debounced.
    for i in 0..5 {
        std::fs::write(
            &f,
            format!("root:x:0:0::/root:/bin/sh\nu{i}:x:1000:1000::/home/u:/bin/sh\n"),
        )
        .unwrap();
    }
    // An excluded tree is never reported.
    std::fs::write(s.root().join("etc/skip/noise"), "x").unwrap();
    let ev = s.wait_for(
        "fim_change for /etc/passwd",
        Duration::from_secs(10),
        |ev| !fim_changes(ev, "/etc/passwd").is_empty(),
    );
    let started = Instant::now();
    let ch = fim_changes(&ev, "/etc/passwd")[0];
    assert_eq!(ch["change"], "modified");
    assert_eq!(ch["severity"], "high");
    assert!(
        ch["fields"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "sha256"),
        "{ch}"
    );
    // No second event for the same burst, and nothing for the excluded file.
    std::thread::sleep(Duration::from_millis(1500).saturating_sub(started.elapsed()));
    let ev = s.events();
    assert_eq!(fim_changes(&ev, "/etc/passwd").len(), 1, "{ev:#?}");
    assert!(fim_changes(&ev, "/etc/skip/noise").is_empty());
    // New directories are picked up: a file created inside one is reported.
    std::fs::create_dir(s.root().join("etc/new.d")).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    std::fs::write(s.root().join("etc/new.d/late"), "x").unwrap();
    s.wait_for(
        "the file in the new directory",
        Duration::from_secs(10),
        |ev| fim_changes(ev, "/etc/new.d/late").len() == 1,
    );
    assert_contiguous(&s.events());
}

#[test]
fn a_rule_flipping_yields_check_changed_with_evidence() {
    let s = Setup::new("");
    let _a = s.start();
    let ev = s.wait_snapshots(1);
    let first: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "check_changed").collect();
    assert_eq!(first.len(), 1, "first evaluation is reported once");
    assert_eq!(first[0]["status"], "pass");
    assert!(first[0]["previous"].is_null());
    std::fs::remove_file(s.root().join("etc/flag")).unwrap();
    let ev = s.wait_for("check_changed to fail", Duration::from_secs(10), |ev| {
        ev.iter()
            .any(|e| e["kind"] == "check_changed" && e["status"] == "fail")
    });
    let c = ev
        .iter()
        .find(|e| e["kind"] == "check_changed" && e["status"] == "fail")
        .unwrap();
    assert_eq!(c["rule"], "flag.present");
    assert_eq!(c["previous"], "pass");
    assert_eq!(c["severity"], "high");
    assert_eq!(c["baseline"]["id"], "test-agent");
    assert!(!c["evidence"].as_array().unwrap().is_empty(), "{c}");
    // Unchanged status over the next evaluations: no more events.
    std::thread::sleep(Duration::from_millis(2500));
    let ev = s.events();
    assert_eq!(count(&ev, |e| e["kind"] == "check_changed"), 2, "{ev:#?}");
}

#[test]
fn restart_keeps_seqs_and_does_not_rereport_unchanged_state() {
    let s = Setup::new("");
    let mut a = s.start();
    s.wait_snapshots(1);
    std::fs::write(s.root().join("etc/passwd"), "changed\n").unwrap();
    s.wait_for("the fim_change", Duration::from_secs(10), |ev| {
        fim_changes(ev, "/etc/passwd").len() == 1
    });
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    let ev = s.events();
    assert_eq!(agent_events(&ev, "stopped").len(), 1);
    let before = ev.len();
    let _b = s.start();
    let ev = s.wait_snapshots(2);
    assert_contiguous(&ev);
    assert_eq!(agent_events(&ev, "started").len(), 2);
    let after = &ev[before..];
    assert!(
        after
            .iter()
            .all(|e| e["kind"] != "check_changed" && e["kind"] != "fim_change"),
        "nothing changed, nothing re-reported: {after:#?}"
    );
}

#[test]
fn kill_9_in_a_loop_during_a_burst_loses_and_duplicates_nothing() {
    let s = Setup::new("");
    let mut a = s.start();
    s.wait_snapshots(1);
    let mut written = BTreeSet::new();
    for round in 0..6 {
        // A burst of changes, and a kill at an arbitrary moment in it.
        let writer = {
            let root = s.root();
            std::thread::spawn(move || {
                let mut names = Vec::new();
                for i in 0..40 {
                    let name = format!("/etc/burst/r{round}-{i}");
                    std::fs::create_dir_all(root.join("etc/burst")).unwrap();
                    std::fs::write(
                        root.join(name.trim_start_matches('/')),
                        format!("{round} {i}"),
                    )
                    .unwrap();
                    names.push(name);
                    std::thread::sleep(Duration::from_millis(3));
                }
                names
            })
        };
        std::thread::sleep(Duration::from_millis(40 + 37 * round));
        a.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = a.wait_exit(Duration::from_secs(5));
        written.extend(writer.join().unwrap());
        a = s.start();
    }
    // The last agent lives: every file is reported, seqs are 1..=n.
    let ev = s.wait_for("every burst file reported", Duration::from_secs(60), |ev| {
        written.iter().all(|p| !fim_changes(ev, p).is_empty())
    });
    assert_contiguous(&ev);
    let mut seen: HashMap<u64, usize> = HashMap::new();
    for e in &ev {
        *seen.entry(e["seq"].as_u64().unwrap()).or_default() += 1;
    }
    assert!(seen.values().all(|&n| n == 1));
}

#[test]
fn an_overflow_is_followed_by_a_rescan_that_finds_every_change() {
    // A dirty-path bound of 5 forces the overflow path with a small burst.
    let s = Setup::new("[limits]\nrealtime_max_dirty = 5\n");
    let _a = s.start();
    s.wait_snapshots(1);
    let mut names = Vec::new();
    // Straight into a watched directory, so each file is a notification.
    for i in 0..60 {
        let name = format!("/etc/many-{i}");
        std::fs::write(s.root().join(name.trim_start_matches('/')), "x").unwrap();
        names.push(name);
    }
    let ev = s.wait_for(
        "every file after the overflow",
        Duration::from_secs(20),
        |ev| names.iter().all(|n| !fim_changes(ev, n).is_empty()),
    );
    let warnings = agent_events(&ev, "warning");
    assert!(
        warnings
            .iter()
            .any(|w| w["message"].as_str().unwrap().contains("more than 5")),
        "{warnings:#?}"
    );
    for n in &names {
        assert_eq!(fim_changes(&ev, n).len(), 1, "{n} reported once");
    }
    assert_contiguous(&ev);
}

#[test]
fn sighup_with_a_broken_baseline_keeps_the_old_one() {
    let s = Setup::new("");
    let a = s.start();
    s.wait_snapshots(1);
    std::fs::write(
        s.path("baseline.toml"),
        "schema = 1\nid = \"test-agent\"\nversion = 2\ntitle = \"t\"\n[[rule]]\nid = \"BAD ID\"\n",
    )
    .unwrap();
    a.signal(nix::sys::signal::Signal::SIGHUP);
    let ev = s.wait_for("baseline_refused", Duration::from_secs(10), |ev| {
        !agent_events(ev, "baseline_refused").is_empty()
    });
    let r = agent_events(&ev, "baseline_refused")[0];
    let msg = r["message"].as_str().unwrap();
    assert!(msg.contains("test-agent v1 stays in force"), "{msg}");
    assert!(msg.contains("baseline.toml:"), "{msg}");
    // The old baseline still runs: its rule still flips.
    std::fs::remove_file(s.root().join("etc/flag")).unwrap();
    s.wait_for(
        "check_changed from the old baseline",
        Duration::from_secs(10),
        |ev| {
            ev.iter().any(|e| {
                e["kind"] == "check_changed"
                    && e["status"] == "fail"
                    && e["baseline"]["version"] == 1
            })
        },
    );
    // A valid new one is applied, with a `reloaded` event.
    std::fs::write(
        s.path("baseline.toml"),
        BASELINE_V1.replace("version = 1", "version = 2"),
    )
    .unwrap();
    a.signal(nix::sys::signal::Signal::SIGHUP);
    s.wait_for("reloaded", Duration::from_secs(10), |ev| {
        agent_events(ev, "reloaded")
            .iter()
            .any(|e| e["message"].as_str().unwrap().contains("test-agent v2"))
    });
}

#[test]
fn systemd_readiness_and_stop_with_sigterm() {
    let s = Setup::new("");
    let sock_path = s.path("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut a = s.start_with(&[
        ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
        ("WATCHDOG_USEC", "400000"),
    ]);
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    while !(got.iter().any(|m: &String| m.starts_with("READY=1"))
        && got.iter().any(|m| m == "WATCHDOG=1"))
    {
        let n = sock.recv(&mut buf).expect("a notification");
        got.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    s.wait_snapshots(1);
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    loop {
        let n = sock.recv(&mut buf).expect("STOPPING=1");
        if &buf[..n] == b"STOPPING=1" {
            break;
        }
    }
    let ev = s.events();
    assert_eq!(agent_events(&ev, "stopped").len(), 1);
    assert_eq!(
        ev.last().unwrap()["what"],
        "stopped",
        "stopped is the last event"
    );
}

/// Issue 13 point 6: started under umask 022 (a shell's usual one), every
/// database, lock and state file the agent creates is 0600 and every
/// directory 0700, signed-baseline state included. A state directory others
/// may enter is tightened to 0700; one they may write is refused.
#[test]
fn under_umask_022_the_state_stays_private() {
    let s = Setup::new("");
    // Signed baselines, so the trust state, its lock and the stored bundle
    // are created too.
    let key = s.path("signing.key");
    let (code, _, err) = plumb(&["keygen", "-o", key.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let bundle = s.path("baseline.bundle");
    let (code, _, err) = plumb(&[
        "baseline",
        "sign",
        "--key",
        key.to_str().unwrap(),
        s.path("baseline.toml").to_str().unwrap(),
        "-o",
        bundle.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{err}");
    std::fs::write(
        s.config(),
        std::fs::read_to_string(s.config())
            .unwrap()
            .replace("baseline.toml", "baseline.bundle")
            .replace(
                "host_id = ",
                &format!("trusted_keys = [\"{}.pub\"]\nhost_id = ", key.display()),
            ),
    )
    .unwrap();
    // A state directory as a package might leave it: 0755.
    let state = s.path("state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).unwrap();

    let spawn = || {
        Agent(
            Command::new("sh")
                .args(["-c", "umask 022 && exec \"$0\" agent --config \"$1\""])
                .arg(env!("CARGO_BIN_EXE_plumb"))
                .arg(s.config())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(s.path("agent.log")).unwrap())
                .spawn()
                .unwrap(),
        )
    };
    let mut a = spawn();
    let ev = s.wait_snapshots(1);
    assert!(
        !agent_events(&ev, "baseline_applied").is_empty(),
        "the signed baseline was applied: {ev:?}"
    );
    a.signal(nix::sys::signal::Signal::SIGTERM);
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(0));
    let log = std::fs::read_to_string(s.path("agent.log")).unwrap();
    assert!(log.contains("tightened to 0700"), "{log}");

    let mut seen = Vec::new();
    let mut todo = vec![state.clone()];
    while let Some(dir) = todo.pop() {
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o700, "{}", dir.display());
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                todo.push(p);
            } else {
                let mode = m.permissions().mode() & 0o7777;
                assert_eq!(mode, 0o600, "{}", p.display());
                seen.push(p.strip_prefix(&state).unwrap().display().to_string());
            }
        }
    }
    seen.sort();
    for want in [
        "baseline-trust.json",
        "baseline-trust.lock",
        "baselines/test-agent.bundle",
        "fim.db",
        "fim.db.key",
        "state.db",
    ] {
        assert!(seen.iter().any(|p| p == want), "{want} in {seen:?}");
    }

    // Others may write the state directory: refused, nothing is started.
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut a = spawn();
    assert_eq!(a.wait_exit(Duration::from_secs(15)), Some(2));
    let log = std::fs::read_to_string(s.path("agent.log")).unwrap();
    assert!(
        log.contains(&format!(
            "{}: mode 0777 makes this private directory writable by group or others",
            state.display()
        )),
        "{log}"
    );
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o7777,
        0o777,
        "a refused directory is left for the operator to inspect"
    );
}

/// The metrics file (`metrics_file`) for node_exporter's textfile
/// collector: rewritten after every job, 0644, with the figures of the
/// running agent.
fn metrics_setup() -> (Setup, PathBuf) {
    let s = Setup::new("");
    let file = s.path("textfile/plumb.prom");
    s.write_config(&format!("metrics_file = \"{}\"\n", file.display()));
    std::fs::create_dir_all(file.parent().unwrap()).unwrap();
    // flag.present (high) fails.
    std::fs::remove_file(s.root().join("etc/flag")).unwrap();
    (s, file)
}

/// Waits until the metrics file has every series of `want`.
fn wait_metrics(file: &Path, want: &[&str]) -> String {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(file).unwrap_or_default();
        if want
            .iter()
            .all(|w| super::metrics::sample(&text, w).is_some())
        {
            return text;
        }
        assert!(
            Instant::now() < end,
            "timed out waiting for {want:?} in:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_metrics_file_shows_the_agent_after_each_job() {
    let (s, file) = metrics_setup();
    let _a = s.start();
    s.wait_snapshots(1);
    let text = wait_metrics(
        &file,
        &[
            "plumb_agent_last_check_run_timestamp_seconds",
            "plumb_agent_last_fim_scan_duration_seconds",
            "plumb_agent_last_delivery_timestamp_seconds",
        ],
    );
    let v = |s: &str| super::metrics::value(&text, s);
    assert_eq!(v("plumb_agent_failing_rules{severity=\"high\"}"), 1.0);
    assert_eq!(v("plumb_agent_failing_rules{severity=\"low\"}"), 0.0);
    assert_eq!(
        v("plumb_agent_baseline_info{baseline=\"test-agent\",version=\"1\"}"),
        1.0
    );
    assert_eq!(v("plumb_agent_fim_watch_rules"), 1.0);
    // /etc is watched in real time, /etc/skip is excluded.
    assert_eq!(v("plumb_agent_fim_realtime_watched_directories"), 1.0);
    assert_eq!(v("plumb_agent_events_dropped_total"), 0.0);
    assert!(v("plumb_agent_outbox_events") >= 0.0);
    assert!(v("plumb_agent_outbox_oldest_event_age_seconds") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let ran = v("plumb_agent_last_check_run_timestamp_seconds");
    assert!((now - ran).abs() < 60.0, "{ran} vs {now}");
    assert!(v("plumb_agent_last_check_run_duration_seconds") < 30.0);
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "node_exporter runs as another user");
    // A write in flight is a hidden temporary file node_exporter skips
    // (it reads `*.prom` only).
    let proms: Vec<_> = std::fs::read_dir(file.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".prom"))
        .collect();
    assert_eq!(proms, vec!["plumb.prom".to_string()]);

    // Fixed: the next check run (every second here) says so.
    std::fs::write(s.root().join("etc/flag"), "1").unwrap();
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        if super::metrics::sample(&text, "plumb_agent_failing_rules{severity=\"high\"}")
            == Some(0.0)
        {
            break;
        }
        assert!(Instant::now() < end, "still failing:\n{text}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_metrics_file_not_ending_in_prom_is_refused() {
    let s = Setup::new("metrics_file = \"/var/lib/node-exporter/plumb.txt\"\n");
    let cfg = s.config();
    let (code, _, err) = plumb(&["agent", "--config", cfg.to_str().unwrap(), "--validate"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("metrics_file: /var/lib/node-exporter/plumb.txt must end in .prom"),
        "{err}"
    );
}

#[test]
#[ignore = "needs promtool (Debian's prometheus package)"]
fn promtool_accepts_the_agents_metrics_file() {
    let (s, file) = metrics_setup();
    let _a = s.start();
    let text = wait_metrics(&file, &["plumb_agent_last_check_run_timestamp_seconds"]);
    super::metrics::promtool_check(&text);
}

/// One journald native-protocol datagram as (field, value) pairs: `KEY=value`
/// lines, or `KEY\n`, a little-endian u64 length, the value and `\n`.
fn journal_fields(mut d: &[u8]) -> Vec<(String, String)> {
    let mut out = Vec::new();
    while !d.is_empty() {
        let nl = d.iter().position(|&b| b == b'\n').unwrap_or(d.len());
        let line = &d[..nl];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8_lossy(&line[..eq]).into_owned(),
                String::from_utf8_lossy(&line[eq + 1..]).into_owned(),
            ));
            d = &d[(nl + 1).min(d.len())..];
        } else {
            let key = String::from_utf8_lossy(line).into_owned();
            let len = u64::from_le_bytes(d[nl + 1..nl + 9].try_into().unwrap()) as usize;
            let value = &d[nl + 9..nl + 9 + len];
            out.push((key, String::from_utf8_lossy(value).into_owned()));
            d = &d[(nl + 10 + len).min(d.len())..];
        }
    }
    out
}

/// Under systemd (`JOURNAL_STREAM` naming its stderr), the agent logs to
/// journald's native socket with structured fields. The socket is the
/// test's own, bind-mounted over `/run` in a private mount namespace of the
/// agent, so the host's journal is never touched.
#[test]
#[ignore = "needs root and unshare(1): a private mount namespace"]
fn under_systemd_logs_go_to_the_journal_with_structured_fields() {
    common::require_root("bind mounts in a private mount namespace");
    let s = Setup::new("");
    std::fs::remove_file(s.root().join("etc/flag")).unwrap();
    let run = s.path("run");
    std::fs::create_dir_all(run.join("systemd/journal")).unwrap();
    let sock = std::os::unix::net::UnixDatagram::bind(run.join("systemd/journal/socket")).unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(concat!(
            r#"mount --bind "$1" /run && "#,
            r#"JOURNAL_STREAM=$(stat -L -c %d:%i /proc/self/fd/2) && export JOURNAL_STREAM && "#,
            r#"exec "$2" agent --config "$3""#
        ))
        .arg("sh")
        .arg(&run)
        .arg(env!("CARGO_BIN_EXE_plumb"))
        .arg(s.config())
        .env("PLUMB_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _a = Agent(cmd.spawn().unwrap());
    let mut seen: Vec<Vec<(String, String)>> = Vec::new();
    let has = |seen: &[Vec<(String, String)>], want: &[(&str, &str)]| {
        seen.iter().any(|m| {
            want.iter()
                .all(|(k, v)| m.iter().any(|(mk, mv)| mk == k && mv.contains(v)))
        })
    };
    let rule = [
        ("PLUMB_EVENT_KIND", "check_changed"),
        ("PLUMB_RULE", "flag.present"),
        ("PLUMB_HOST", "test-host"),
        ("PRIORITY", "4"),
        ("MESSAGE", "rule flag.present: new -> fail"),
    ];
    let started = [
        ("PLUMB_EVENT_KIND", "agent"),
        ("PLUMB_WHAT", "started"),
        ("SYSLOG_IDENTIFIER", "plumb"),
    ];
    let end = Instant::now() + Duration::from_secs(30);
    let mut buf = vec![0u8; 1 << 16];
    while !(has(&seen, &rule) && has(&seen, &started)) {
        assert!(
            Instant::now() < end,
            "journal fields missing; got {seen:#?}"
        );
        if let Ok(n) = sock.recv(&mut buf) {
            if n > 0 {
                seen.push(journal_fields(&buf[..n]));
            }
        }
    }
}
