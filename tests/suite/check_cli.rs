//! End-to-end: the real `plumb` binary — exit codes and the three report
//! formats of `plumb check`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;

fn two_rules(dir: &std::path::Path) -> std::path::PathBuf {
    baseline(
        dir,
        r#"
[[rule]]
id = "fs.shadow-mode"
title = "shadow is not readable by others"
severity = "high"
domains = [20, 13]
criteria = ["C"]
check = { kind = "file", path = "/etc/shadow", mode_max = "0640" }

[[rule]]
id = "acct.pass-max-days"
title = "Passwords expire within a year"
severity = "medium"
domains = [13]
criteria = ["C", "T"]
check = { kind = "config_value", path = "/etc/login.defs", key = "PASS_MAX_DAYS", max = 365 }
"#,
    )
}

#[test]
fn version_and_usage_errors() {
    let (code, out, _) = run(plumb().arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("plumb "));
    let (code, _, err) = run(plumb().args(["check", "--format", "yaml"]));
    assert_eq!(code, 2, "{err}");
    let (code, out, err) = run(plumb().args(["check", "--root", "/nonexistent-plumb-root"]));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("/nonexistent-plumb-root"), "{err}");
}

#[test]
fn json_report_has_the_design_shape_and_exit_codes_follow_results() {
    let root = Root::new();
    root.write("/etc/shadow", "");
    root.chmod("/etc/shadow", 0o640);
    root.write("/etc/login.defs", "PASS_MAX_DAYS 99999\n");
    let dir = tempfile::tempdir().unwrap();
    let b = two_rules(dir.path());
    let (code, r) = check_json(root.path(), &b, &[]);
    assert_eq!(code, 1, "a failing rule exits 1");
    assert_eq!(r["schema"], 1);
    assert_eq!(r["root"], root.path().display().to_string());
    assert_eq!(r["baseline"]["id"], "test");
    assert_eq!(r["baseline"]["version"], 1);
    assert!(r["host"].as_str().is_some_and(|h| !h.is_empty()));
    let started = r["started_at"].as_str().unwrap();
    assert!(started.len() == 20 && started.ends_with('Z'), "{started}");
    assert!(r["duration_ms"].is_u64());
    assert_eq!(r["summary"]["pass"], 1);
    assert_eq!(r["summary"]["fail"], 1);
    assert_eq!(r["summary"]["score"], 50.0);
    let fail = result(&r, "acct.pass-max-days");
    assert_eq!(fail["status"], "fail");
    assert_eq!(fail["severity"], "medium");
    assert_eq!(fail["domains"], serde_json::json!([13]));
    assert_eq!(fail["criteria"], serde_json::json!(["C", "T"]));
    assert_eq!(fail["title"], "Passwords expire within a year");
    assert_eq!(
        fail["evidence"][0],
        "PASS_MAX_DAYS 99999 (/etc/login.defs:1)"
    );

    root.write("/etc/login.defs", "PASS_MAX_DAYS 90\n");
    let (code, r) = check_json(root.path(), &b, &[]);
    assert_eq!(code, 0, "everything holds exits 0");
    assert_eq!(r["summary"]["score"], 100.0);
}

#[test]
fn rule_filter_and_unknown_rule() {
    let root = Root::new();
    let dir = tempfile::tempdir().unwrap();
    let b = two_rules(dir.path());
    let (_, r) = check_json(root.path(), &b, &["--rule", "fs.shadow-mode"]);
    assert_eq!(r["results"].as_array().unwrap().len(), 1);
    let (code, out, err) = run(plumb()
        .args(["check", "--rule", "no.such-rule", "--baseline"])
        .arg(&b));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("no.such-rule"), "{err}");
}

#[test]
fn text_report_groups_by_domain_with_evidence_for_failures() {
    let root = Root::new();
    root.write("/etc/shadow", "");
    root.chmod("/etc/shadow", 0o644);
    root.write("/etc/login.defs", "PASS_MAX_DAYS 30\n");
    let dir = tempfile::tempdir().unwrap();
    let b = two_rules(dir.path());
    let (code, out, _) = run(plumb()
        .args(["check", "--root"])
        .arg(root.path())
        .arg("--baseline")
        .arg(&b));
    assert_eq!(code, 1);
    assert!(!out.contains('\x1b'), "no colour when not on a terminal");
    let d13 = out
        .find("[13] Identity, authentication and access management")
        .expect(&out);
    let d20 = out.find("[20] Configuration and hardening").expect(&out);
    assert!(d13 < d20);
    assert!(out.contains("FAIL  high     fs.shadow-mode"), "{out}");
    assert!(
        out.contains("/etc/shadow: mode 0644 exceeds 0640 (extra bits 0004)"),
        "{out}"
    );
    assert!(out.contains("PASS  medium   acct.pass-max-days"), "{out}");
    assert!(
        !out.contains("PASS_MAX_DAYS 30"),
        "no evidence printed for passes: {out}"
    );
    assert!(
        out.trim_end()
            .lines()
            .last()
            .unwrap()
            .starts_with("1 pass, 1 fail, 0 error, 0 skipped; score 50.0%"),
        "{out}"
    );
}

#[test]
fn verbose_text_shows_pass_evidence_with_tabs_readable() {
    let root = Root::new();
    root.write("/etc/shadow", "");
    root.chmod("/etc/shadow", 0o600);
    root.write("/etc/login.defs", "PASS_MAX_DAYS\t30\n");
    root.write("/etc/sysctl.d/99-x.conf", "net.ipv4.ip_forward = 1\n");
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &format!(
            "{}{}",
            std::fs::read_to_string(two_rules(dir.path()))
                .unwrap()
                .split_once("\n\n")
                .unwrap()
                .1,
            rule(
                "net.forward",
                r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0, persistent = true }"#
            )
        ),
    );
    let (code, out, _) = run(plumb()
        .args(["check", "--verbose", "--root"])
        .arg(root.path())
        .arg("--baseline")
        .arg(&b));
    assert_eq!(code, 1, "{out}");
    // Pass evidence, the tab shown as a space.
    assert!(
        out.contains("        PASS_MAX_DAYS 30 (/etc/login.defs:1)"),
        "{out}"
    );
    // The reason for the failure comes before the note on what was not checked.
    let value = out
        .find("net.ipv4.ip_forward = 1 (/etc/sysctl.d/99-x.conf:1)")
        .expect(&out);
    let reason = out.find("expected \"0\"").expect(&out);
    let note = out.find("runtime value not checked").expect(&out);
    assert!(value < reason && reason < note, "{out}");
}

#[test]
fn junit_report_has_one_testcase_per_rule() {
    let root = Root::new();
    root.write("/etc/shadow", "");
    root.chmod("/etc/shadow", 0o666);
    root.write("/etc/login.defs", "PASS_MAX_DAYS <&>\n");
    let dir = tempfile::tempdir().unwrap();
    let b = two_rules(dir.path());
    let (code, out, _) = run(plumb()
        .args(["check", "--format", "junit", "--root"])
        .arg(root.path())
        .arg("--baseline")
        .arg(&b));
    assert_eq!(code, 1);
    assert!(out.starts_with("<?xml"));
    assert_eq!(out.matches("<testcase ").count(), 2);
    assert_eq!(out.matches("<failure ").count(), 2);
    assert!(
        out.contains(r#"tests="2" failures="2" errors="0" skipped="0""#),
        "{out}"
    );
    assert!(
        out.contains("PASS_MAX_DAYS &lt;&amp;&gt;"),
        "XML is escaped: {out}"
    );
}

#[test]
fn several_baselines_are_reported_together() {
    let root = Root::new();
    let d1 = tempfile::tempdir().unwrap();
    let d2 = tempfile::tempdir().unwrap();
    let a = two_rules(d1.path());
    let b = d2.path().join("extra.toml");
    std::fs::write(
        &b,
        format!(
            "schema = 1\nid = \"extra\"\nversion = 3\n\n{}",
            rule(
                "extra.hosts-equiv",
                r#"{ kind = "file", path = "/etc/hosts.equiv", exists = false }"#
            )
        ),
    )
    .unwrap();
    let (_, r) = check_json(root.path(), &a, &["--baseline", b.to_str().unwrap()]);
    assert_eq!(r["results"].as_array().unwrap().len(), 3);
    assert_eq!(r["baselines"][1]["id"], "extra");
    assert_eq!(result(&r, "extra.hosts-equiv")["status"], "pass");
}

/// A local user who can write a file the agent quotes as evidence (here a
/// PAM line) must not reach the admin's terminal through `plumb check`:
/// ESC sequences and line breaks are shown escaped, a tab stays a tab, and
/// the JSON report keeps the exact bytes.
#[test]
fn evidence_quoted_from_a_host_file_cannot_drive_the_terminal_or_forge_lines() {
    let root = Root::new();
    let hostile = "auth nullok\x1b]0;owned\x07\x1b[2J\tx\rPASS  high     all.good\u{9b}1m";
    root.write("/etc/pam.d/common-auth", format!("{hostile}\n"));
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &rule(
            "pam.nullok",
            r#"{ kind = "file_regex", path = "/etc/pam.d/common-auth", pattern = "nullok", expect = "no_match" }"#,
        ),
    );
    let (code, out, err) = run(plumb()
        .args(["check", "--root"])
        .arg(root.path())
        .arg("--baseline")
        .arg(&b));
    assert_eq!(code, 1, "{err}");
    assert!(
        !out.contains(['\x1b', '\x07', '\r', '\u{9b}']),
        "raw control characters in the text report: {out:?}"
    );
    let quoted = out
        .lines()
        .find(|l| l.contains("auth nullok"))
        .unwrap_or_else(|| panic!("the line is not quoted: {out}"));
    assert!(
        quoted.contains("nullok\\x1b]0;owned\\x07\\x1b[2J\tx\\rPASS  high     all.good\\u{009b}1m"),
        "{quoted:?}"
    );
    // The forged "PASS" result stays inside the evidence line.
    assert!(
        !out.lines().any(|l| l.trim_start().starts_with("PASS")),
        "{out}"
    );
    // JSON is exact.
    let (_, report) = check_json(root.path(), &b, &[]);
    let ev = result(&report, "pam.nullok")["evidence"].to_string();
    let exact: String = serde_json::to_string(hostile).unwrap();
    assert!(
        ev.contains(exact.trim_matches('"')),
        "{ev} does not hold {exact}"
    );
}
