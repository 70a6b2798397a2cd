//! End-to-end: the shipped ISSP baseline lints clean and covers what the
//! policy needs, the built-in copy runs on an empty root, and the baseline
//! language refuses bad input with the file, line and reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;
use plumb_core::check::CheckSpec;
use plumb_core::{Baseline, Criterion};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../baselines/issp-linux-server.toml"
);

const ALL_KINDS: &[&str] = &[
    "file",
    "file_regex",
    "config_value",
    "sshd",
    "sysctl",
    "kernel_module",
    "mount",
    "service",
    "process",
    "listening",
    "accounts",
    "package",
    "package_files",
    "find",
    "systemd_conf",
    "sudoers",
    "pam",
    "nftables",
];

fn shipped() -> Baseline {
    Baseline::load(Path::new(SHIPPED)).unwrap_or_else(|e| panic!("{e}"))
}

// ---------------------------------------------------------------------------
// The shipped baseline
// ---------------------------------------------------------------------------

#[test]
fn shipped_baseline_lints_clean_through_the_binary() {
    let (code, out, err) = run(plumb().args(["baseline", "lint", SHIPPED]));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.contains("ok: issp-linux-server"), "{out}");
}

#[test]
fn shipped_baseline_has_enough_rules_and_every_check_kind() {
    let b = shipped();
    assert!(b.rules.len() >= 80, "only {} rules", b.rules.len());
    let used: BTreeSet<&str> = b.rules.iter().map(|r| r.check.kind()).collect();
    for kind in ALL_KINDS {
        assert!(used.contains(kind), "no rule uses check kind {kind}");
    }
    // Several sysctl rules also check the boot-time configuration.
    let persistent = b
        .rules
        .iter()
        .filter(|r| matches!(&r.check, CheckSpec::Sysctl(s) if s.persistent))
        .count();
    assert!(persistent >= 3, "{persistent} persistent sysctl rules");
    assert!(
        b.rules.iter().any(|r| r.remediation.is_some()),
        "no remediation at all"
    );
    assert!(!b.fim.is_empty(), "no default file integrity watches");
    assert!(
        b.fim.iter().any(|f| f.path == "/etc" && f.realtime),
        "/etc is not watched in real time"
    );
    assert!(
        b.fim
            .iter()
            .filter(|f| f.path != "/etc")
            .all(|f| !f.realtime),
        "only /etc is realtime"
    );
}

#[test]
fn shipped_baseline_covers_the_host_domains() {
    let b = shipped();
    let covered: BTreeSet<u8> = b.rules.iter().flat_map(|r| r.domains.clone()).collect();
    for d in [11, 13, 19, 20, 21, 22, 23, 24] {
        assert!(covered.contains(&d), "ISSP domain {d} has no rule");
    }
    for r in &b.rules {
        assert!(!r.domains.is_empty(), "{}: no domain", r.id);
        for d in &r.domains {
            assert!((1..=28).contains(d), "{}: domain {d}", r.id);
        }
        assert!(!r.criteria.is_empty(), "{}: no criterion", r.id);
    }
    for f in &b.fim {
        for d in &f.domains {
            assert!((1..=28).contains(d), "fim {}: domain {d}", f.path);
        }
    }
    // Every criterion the policy names is served by some rule.
    let criteria: BTreeSet<Criterion> = b.rules.iter().flat_map(|r| r.criteria.clone()).collect();
    for c in [Criterion::A, Criterion::I, Criterion::C, Criterion::T] {
        assert!(criteria.contains(&c), "criterion {c} unused");
    }
}

#[test]
fn every_shipped_rule_has_a_rationale_and_a_framework_reference() {
    let b = shipped();
    for r in &b.rules {
        assert!(
            r.rationale.trim().len() >= 20,
            "{}: rationale missing or too short",
            r.id
        );
        // Which items the references name, and that the reference lists know
        // them, is `plumb baseline coverage`'s business (suite::coverage).
        assert!(
            r.references.iter().any(|x| {
                x.starts_with("CIS Debian Linux 12 Benchmark ") || x.starts_with("ANSSI BP-028 R")
            }),
            "{}: no CIS Debian Linux 12 Benchmark or ANSSI BP-028 reference",
            r.id
        );
    }
}

#[test]
fn shipped_find_rules_share_their_walks() {
    let b = shipped();
    let starts: BTreeSet<Vec<String>> = b
        .rules
        .iter()
        .filter_map(|r| match &r.check {
            CheckSpec::Find(f) => Some(f.paths.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        starts.len(),
        1,
        "find rules walk different trees: {starts:?}"
    );
}

#[test]
fn builtin_baseline_is_the_shipped_file() {
    assert_eq!(
        plumb_agent::policy::BUILTIN_BASELINE,
        std::fs::read_to_string(SHIPPED).unwrap()
    );
}

#[test]
fn builtin_baseline_runs_on_an_empty_root() {
    let root = Root::new();
    let (code, out, err) = run(plumb()
        .args(["check", "--format", "json", "--root"])
        .arg(root.path()));
    assert!(code == 0 || code == 1, "exit {code}; stderr:\n{err}");
    assert!(!err.contains("panicked"), "{err}");
    let report: serde_json::Value = serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}):\n{out}\nstderr:\n{err}"));
    let b = shipped();
    let results = report["results"].as_array().unwrap();
    assert_eq!(results.len(), b.rules.len(), "one result per rule");
    assert_eq!(report["baseline"]["id"], "issp-linux-server");
    for (r, res) in b.rules.iter().zip(results) {
        assert_eq!(res["id"], r.id.as_str(), "results are in rule order");
        let status = res["status"].as_str().unwrap();
        assert!(
            ["pass", "fail", "error", "skipped"].contains(&status),
            "{}: {status}",
            r.id
        );
        assert!(
            !res["evidence"].as_array().unwrap().is_empty(),
            "{}: {status} without evidence",
            r.id
        );
        // Rules that only read the running system have nothing to read here.
        let runtime_only = match &r.check {
            CheckSpec::Process(_) | CheckSpec::Listening(_) | CheckSpec::Mount(_) => true,
            CheckSpec::Sysctl(s) => !s.persistent,
            _ => false,
        };
        if runtime_only {
            assert_eq!(status, "skipped", "{}: {res}", r.id);
        }
    }
}

/// Status of each listed shipped rule on a root.
fn shipped_statuses(root: &Root, ids: &[&str]) -> BTreeMap<String, String> {
    let mut cmd = plumb();
    cmd.args(["check", "--format", "json", "--baseline", SHIPPED, "--root"])
        .arg(root.path());
    for id in ids {
        cmd.args(["--rule", id]);
    }
    let (_, out, err) = run(&mut cmd);
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\n{err}"));
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["id"].as_str().unwrap().to_owned(),
                r["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// The rules added for CIS v1.1.0 and ANSSI that read files with patterns:
/// each passes on a compliant file and fails on the usual mistake.
#[test]
fn pattern_rules_for_cis_and_anssi_tell_compliant_from_not() {
    let ids = [
        "shell.timeout",
        "shell.timeout-readonly",
        "shell.timeout-exported",
        "mail.exim-local-only",
        "boot.grub-superuser",
        "boot.grub-password",
        "boot.apparmor-param",
        "pam.pwquality-enforce-for-root",
        "accounts.gid0-only-root",
        "group.gid0-only-root",
        "accounts.root-access",
        "passwd.shadowed",
        "group.shadow-empty",
        "root.umask",
        "home.no-netrc-rhosts-forward",
    ];
    let good = Root::new();
    good.write(
        "/etc/profile.d/tmout.sh",
        "TMOUT=900\nreadonly TMOUT\nexport TMOUT\n",
    );
    good.write(
        "/etc/exim4/update-exim4.conf.conf",
        "dc_local_interfaces='127.0.0.1 ; ::1'\n",
    );
    good.write(
        "/boot/grub/grub.cfg",
        "set superusers=\"admin\"\npassword_pbkdf2 admin grub.pbkdf2.sha512.10000.AB.CD\n",
    );
    good.write(
        "/etc/default/grub",
        "GRUB_CMDLINE_LINUX=\"quiet apparmor=1 security=apparmor\"\n",
    );
    good.write(
        "/etc/security/pwquality.conf",
        "minlen = 14\nenforce_for_root\n",
    );
    good.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nrooter:x:1000:1000::/home/rooter:/bin/bash\n",
    );
    good.write("/etc/group", "root:x:0:\nshadow:x:42:\nrooter:x:1000:\n");
    good.write(
        "/etc/shadow",
        "root:!:20000::::::\nrooter:$y$j9T$abc:20000::::::\n",
    );
    good.write("/root/.bashrc", "umask 027\n");
    let all_pass: BTreeMap<String, String> =
        ids.iter().map(|i| (i.to_string(), "pass".into())).collect();
    assert_eq!(shipped_statuses(&good, &ids), all_pass);

    let bad = Root::new();
    bad.write("/etc/profile", "TMOUT=3600\n");
    bad.write(
        "/etc/exim4/update-exim4.conf.conf",
        "dc_local_interfaces='10.0.0.1 ; 127.0.0.1'\n",
    );
    bad.write("/boot/grub/grub.cfg", "set timeout=5\n");
    bad.write(
        "/etc/default/grub",
        "GRUB_CMDLINE_LINUX_DEFAULT=\"apparmor=1\"\n",
    );
    bad.write("/etc/security/pwquality.conf", "# enforce_for_root\n");
    bad.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\nroo:x:5:0::/:/bin/sh\nbob:$6$abc:1000:1000::/home/bob:/bin/bash\n",
    );
    bad.write("/etc/group", "root:x:0:\nshadow:x:42:bob\nwheel:x:0:\n");
    bad.write("/etc/shadow", "root::20000::::::\n");
    bad.write("/root/.bashrc", "umask 022\n");
    bad.write("/home/bob/.netrc", "machine x login bob password hunter2\n");
    let all_fail: BTreeMap<String, String> =
        ids.iter().map(|i| (i.to_string(), "fail".into())).collect();
    assert_eq!(shipped_statuses(&bad, &ids), all_fail);
}

// ---------------------------------------------------------------------------
// The baseline language: lint errors name the file, the line and the reason
// ---------------------------------------------------------------------------

const HEADER: &str = "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\n";

/// A rule block whose lines can be overridden: `extra` is appended inside the rule.
fn rule_block(id: &str, check: &str, extra: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"{id}\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\ncheck = {check}\n{extra}\n"
    )
}

const CHECK: &str = "{ kind = \"file\", path = \"/etc/passwd\", mode_max = \"0644\" }";

fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Lints `content` and returns stderr, asserting exit 2 and that `file:line:`
/// and `message` appear on the same diagnostic line.
fn lint_error(content: impl AsRef<[u8]>, line: usize, message: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "b.toml", content);
    let (code, out, err) = run(plumb().args(["baseline", "lint"]).arg(&p));
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    let at = format!("{}:{line}:", p.display());
    assert!(
        err.lines()
            .any(|l| l.starts_with(&at) && l.contains(message)),
        "expected a line starting {at:?} containing {message:?}; stderr:\n{err}"
    );
    err
}

#[test]
fn lint_reports_an_unknown_field() {
    // Line 14: the misspelt field.
    let text = format!(
        "{HEADER}{}",
        rule_block("a", CHECK, "rationale = \"r\"\nseverty = \"low\"")
    );
    lint_error(text, 14, "unknown field `severty`");
}

#[test]
fn lint_reports_an_unknown_field_inside_a_check() {
    let check = "{ kind = \"file\", path = \"/etc/passwd\", mode = \"0644\" }";
    let err = lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "mode",
    );
    assert!(err.contains("unknown field"), "{err}");
}

#[test]
fn lint_reports_an_sshd_validity_check_with_a_key_or_a_comparison() {
    let check = "{ kind = \"sshd\", valid = true, key = \"PermitRootLogin\" }";
    lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "valid takes no key and no comparison",
    );
    let check = "{ kind = \"sshd\", valid = true, equals = \"no\" }";
    lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "valid takes no key and no comparison",
    );
    // Without `valid`, a key is still required.
    let check = "{ kind = \"sshd\", equals = \"no\" }";
    lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "is not an sshd keyword",
    );
}

#[test]
fn lint_reports_a_wrong_type() {
    let text = HEADER.replace("version = 1", "version = \"seven\"");
    lint_error(
        text + &rule_block("a", CHECK, ""),
        3,
        "invalid type: string \"seven\", expected u64",
    );
}

#[test]
fn lint_reports_a_bad_rule_id() {
    let err = lint_error(
        format!("{HEADER}{}", rule_block("SSH Root", CHECK, "")),
        7,
        "is not of the form [a-z0-9._-]+",
    );
    assert!(err.contains("\"SSH Root\""), "{err}");
}

#[test]
fn lint_reports_a_duplicate_id_naming_the_first_line() {
    let text = format!(
        "{HEADER}{}{}",
        rule_block("same", CHECK, ""),
        rule_block("same", CHECK, "")
    );
    // First rule's id is on line 7; the second rule's id on line 16.
    lint_error(text, 15, "duplicate rule id, first defined at line 7");
}

#[test]
fn lint_reports_a_domain_out_of_range() {
    let text = format!("{HEADER}{}", rule_block("a", CHECK, "")).replace("[20]", "[20, 29]");
    lint_error(text, 10, "domain 29 is outside 1..=28");
}

#[test]
fn lint_reports_an_unknown_criterion() {
    let text =
        format!("{HEADER}{}", rule_block("a", CHECK, "")).replace("[\"I\"]", "[\"I\", \"X\"]");
    let err = lint_error(text, 11, "unknown variant `X`");
    assert!(err.contains("`A`"), "lists the valid criteria: {err}");
}

#[test]
fn lint_reports_an_invalid_regex() {
    let check = "{ kind = \"file_regex\", path = \"/etc/issue\", pattern = \"(unclosed\" }";
    lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "pattern: invalid regex",
    );
}

#[test]
fn lint_reports_an_invalid_glob() {
    let check = "{ kind = \"file\", path = \"/etc/[abc\", exists = true }";
    let err = lint_error(
        format!("{HEADER}{}", rule_block("a", check, "")),
        12,
        "invalid glob \"/etc/[abc\"",
    );
    assert!(err.contains("check"), "names the field: {err}");
}

#[test]
fn lint_reports_an_invalid_glob_in_a_fim_exclude() {
    let text = format!("{HEADER}[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/{{a\"]\n");
    lint_error(text, 8, "fim[0].exclude: invalid glob");
}

#[test]
fn lint_reports_a_remediation_of_the_wrong_kind() {
    let rem = "remediation = { kind = \"sysctl_set\", key = \"net.ipv4.ip_forward\", value = 0 }";
    lint_error(
        format!("{HEADER}{}", rule_block("a", CHECK, rem)),
        13,
        "sysctl_set cannot fix a file check (it fixes: sysctl)",
    );
}

#[test]
fn lint_reports_malformed_toml() {
    let text = format!("{HEADER}{}", rule_block("a", CHECK, ""))
        .replace("severity = \"high\"", "severity = \"high");
    // The unterminated string on line 9 (the severity).
    lint_error(text, 9, "invalid basic string");
}

#[test]
fn lint_reports_a_non_utf8_file_with_its_line() {
    let text = format!("{HEADER}{}", rule_block("a", CHECK, ""));
    let mut bytes = Vec::new();
    for (i, line) in text.lines().enumerate() {
        bytes.extend_from_slice(line.as_bytes());
        if i + 1 == 8 {
            // A Latin-1 byte in a comment on line 8.
            bytes.extend_from_slice(b" # caf\xe9");
        }
        bytes.push(b'\n');
    }
    lint_error(bytes, 8, "baseline is not valid UTF-8");
}

#[test]
fn lint_reports_a_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("nope.toml");
    let (code, _, err) = run(plumb().args(["baseline", "lint"]).arg(&p));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains(&p.display().to_string()), "{err}");
    assert!(err.contains("cannot read baseline"), "{err}");
}

#[test]
fn lint_lists_every_problem_not_just_the_first() {
    let bad_domain = rule_block("a", CHECK, "").replace("[20]", "[0]");
    let bad_id = rule_block("B", CHECK, "");
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "b.toml",
        format!("{HEADER}{bad_domain}{bad_id}"),
    );
    let (code, _, err) = run(plumb().args(["baseline", "lint"]).arg(&p));
    assert_eq!(code, 2);
    assert!(err.contains("domain 0 is outside 1..=28"), "{err}");
    assert!(err.contains("\"B\" is not of the form"), "{err}");
}

#[test]
fn two_baselines_with_the_same_rule_id_are_refused_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let a = write(
        dir.path(),
        "a.toml",
        format!("{HEADER}{}", rule_block("shared", CHECK, "")),
    );
    let b = write(
        dir.path(),
        "b.toml",
        format!(
            "{}{}{}",
            HEADER.replace("id = \"t\"", "id = \"u\""),
            rule_block("other", CHECK, ""),
            rule_block("shared", CHECK, "")
        ),
    );
    let root = Root::new();
    let (code, out, err) = run(plumb()
        .args(["check", "--format", "json", "--root"])
        .arg(root.path())
        .arg("--baseline")
        .arg(&a)
        .arg("--baseline")
        .arg(&b));
    assert_eq!(code, 2, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "no report on a refused baseline: {out}");
    let expected = format!(
        "{}:15:1: rule (shared).id: rule id already defined in {}:7",
        b.display(),
        a.display()
    );
    assert!(err.contains(&expected), "expected {expected:?} in:\n{err}");
    // The same through lint.
    let (code, _, err) = run(plumb().args(["baseline", "lint"]).arg(&a).arg(&b));
    assert_eq!(code, 2);
    assert!(err.contains(&expected), "{err}");
}
