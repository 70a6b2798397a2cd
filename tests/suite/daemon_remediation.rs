//! Remediation in the daemon: the real `plumb agent` (standalone, events to
//! a file) on a temporary root, with a signed local baseline whose rule
//! fixes a file mode.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::Agent;

use plumb_core::bundle::{Bundle, SigningKey};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BASELINE: &str = r#"schema = 1
id = "fleet"
version = 1
title = "fleet"

[[rule]]
id = "secret.mode"
title = "the secret is not world-readable"
severity = "high"
domains = [20]
criteria = ["C"]
check = { kind = "file", path = "/etc/secret", mode_max = "0640" }
remediation = { kind = "file_mode", path = "/etc/secret", mode = "0640" }
"#;

struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    /// `signed`: the baseline is a bundle and the key is trusted; else a
    /// plain TOML file and no trusted keys.
    fn new(signed: bool, extra: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("root/etc")).unwrap();
        std::fs::write(d.join("root/etc/secret"), "s").unwrap();
        std::fs::set_permissions(
            d.join("root/etc/secret"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let (baseline, keys) = if signed {
            let g = SigningKey::generate("team").unwrap();
            std::fs::write(d.join("team.pub"), g.public.to_text()).unwrap();
            let k = SigningKey::from_pem(&g.private_pem, "team").unwrap();
            let b = Bundle::sign(BASELINE.as_bytes(), "b.toml", &k).unwrap();
            std::fs::write(d.join("fleet.bundle"), b.to_bytes()).unwrap();
            (
                d.join("fleet.bundle"),
                format!("[\"{}\"]", d.join("team.pub").display()),
            )
        } else {
            std::fs::write(d.join("fleet.toml"), BASELINE).unwrap();
            (d.join("fleet.toml"), "[]".to_string())
        };
        let cfg = d.join("agent.toml");
        std::fs::write(
            &cfg,
            format!(
                "host_id = \"h\"\nroot = \"{d}/root\"\nstate_dir = \"{d}/state\"\n\
                 baselines = [\"{b}\"]\nevents_file = \"{d}/events.jsonl\"\ntrusted_keys = {keys}\n{extra}\n\
                 [intervals]\nchecks = \"1s\"\n",
                d = d.display(),
                b = baseline.display(),
            ),
        )
        .unwrap();
        std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
        Host { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn start(&self) -> Agent {
        Agent(
            Command::new(env!("CARGO_BIN_EXE_plumb"))
                .args(["agent", "--config"])
                .arg(self.path("agent.toml"))
                .env("PLUMB_LOG", "warn")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        )
    }

    fn events(&self) -> Vec<serde_json::Value> {
        common::read_jsonl(&self.path("events.jsonl"))
    }

    fn wait(&self, what: &str, f: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(e) = self.events().into_iter().find(|e| f(e)) {
                return e;
            }
            assert!(Instant::now() < end, "no {what}: {:#?}", self.events());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn mode(&self) -> u32 {
        std::fs::metadata(self.path("root/etc/secret"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777
    }

    /// Waits for the failing check, then a few more check runs.
    fn settle(&self) {
        self.wait("the failing check", |e| {
            e["kind"] == "check_changed" && e["rule"] == "secret.mode" && e["status"] == "fail"
        });
        std::thread::sleep(Duration::from_secs(3));
    }

    fn remediation_events(&self) -> Vec<serde_json::Value> {
        self.events()
            .into_iter()
            .filter(|e| e["kind"] == "remediation")
            .collect()
    }
}

fn warning(e: &serde_json::Value, needle: &str) -> bool {
    e["kind"] == "agent"
        && e["what"] == "warning"
        && e["message"].as_str().unwrap_or("").contains(needle)
}

#[test]
fn remediation_off_changes_nothing() {
    let h = Host::new(
        true,
        "remediation = \"off\"\nremediation_allow = [\"secret.mode\"]",
    );
    let _a = h.start();
    h.settle();
    assert_eq!(h.mode(), 0o644);
    assert!(h.remediation_events().is_empty());
}

#[test]
fn dry_run_reports_the_plan_once_and_changes_nothing() {
    let h = Host::new(
        true,
        "remediation = \"dry-run\"\nremediation_allow = [\"secret.mode\"]",
    );
    let _a = h.start();
    h.settle();
    let e = h.wait("a dry_run remediation event", |e| {
        e["kind"] == "remediation" && e["result"] == "dry_run"
    });
    assert_eq!(e["rule"], "secret.mode");
    assert!(e["changes"][0].as_str().unwrap().contains("0644"), "{e}");
    assert_eq!(h.mode(), 0o644);
    // Several check runs later, still one event: the plan did not change.
    assert_eq!(
        h.remediation_events().len(),
        1,
        "{:#?}",
        h.remediation_events()
    );
}

#[test]
fn enforce_fixes_an_allowed_rule_with_a_rollback_id_and_rollback_restores_it() {
    let h = Host::new(
        true,
        "remediation = \"enforce\"\nremediation_allow = [\"secret.mode\"]",
    );
    let a = h.start();
    let e = h.wait("a fixed remediation event", |e| {
        e["kind"] == "remediation" && e["result"] == "fixed"
    });
    let id = e["rollback_id"].as_str().unwrap().to_string();
    assert!(!id.is_empty(), "{e}");
    assert_eq!(h.mode(), 0o640);
    // The check now passes, reported without waiting for another run.
    h.wait("the check passing again", |e| {
        e["kind"] == "check_changed" && e["rule"] == "secret.mode" && e["status"] == "pass"
    });
    drop(a);
    let out = Command::new(env!("CARGO_BIN_EXE_plumb"))
        .args(["remediate", "--rollback", &id, "--state-dir"])
        .arg(h.path("state"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(h.mode(), 0o644);
}

#[test]
fn enforce_without_an_allowed_rule_changes_nothing_and_says_why() {
    let h = Host::new(
        true,
        "remediation = \"enforce\"\nremediation_min_severity = \"critical\"",
    );
    let _a = h.start();
    h.wait("the not-allowed warning", |e| {
        warning(e, "remediation_allow")
    });
    h.settle();
    assert_eq!(h.mode(), 0o644);
    assert!(h.remediation_events().is_empty());
}

#[test]
fn enforce_with_an_unsigned_local_baseline_does_not_remediate_and_says_why() {
    let h = Host::new(
        false,
        "remediation = \"enforce\"\nremediation_allow = [\"secret.mode\"]",
    );
    let _a = h.start();
    let w = h.wait("the unsigned warning", |e| warning(e, "not signed"));
    assert!(
        w["message"]
            .as_str()
            .unwrap()
            .contains("no trusted_keys configured"),
        "{w}"
    );
    h.settle();
    assert_eq!(h.mode(), 0o644);
    assert!(h.remediation_events().is_empty());
}
