//! End-to-end tests of `plumb remediate` on fixture roots: every action is
//! applied, verified by `plumb check`, and rolled back to identical bytes
//! and metadata; dry runs change nothing; a second apply changes nothing;
//! a failure half-way restores what the run had changed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Root, baseline, check_json, plumb, run, status_of};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

/// How a path is, in every respect a rollback must restore.
#[derive(Debug, PartialEq, Eq)]
enum Snap {
    Absent,
    Link(std::path::PathBuf, u32, u32),
    File {
        bytes: Vec<u8>,
        mode: u32,
        uid: u32,
        gid: u32,
        xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
    },
}

fn snap(p: &Path) -> Snap {
    match std::fs::symlink_metadata(p) {
        Err(_) => Snap::Absent,
        Ok(m) if m.file_type().is_symlink() => {
            Snap::Link(std::fs::read_link(p).unwrap(), m.uid(), m.gid())
        }
        Ok(m) => {
            let mut xattrs: Vec<_> = xattr::list(p)
                .map(|l| {
                    l.map(|n| (n.clone(), xattr::get(p, &n).unwrap().unwrap()))
                        .collect()
                })
                .unwrap_or_default();
            xattrs.sort();
            Snap::File {
                bytes: if m.is_file() {
                    std::fs::read(p).unwrap()
                } else {
                    vec![]
                },
                mode: m.mode() & 0o7777,
                uid: m.uid(),
                gid: m.gid(),
                xattrs,
            }
        }
    }
}

fn mtime(p: &Path) -> (i64, i64) {
    let m = std::fs::symlink_metadata(p).unwrap();
    (m.mtime(), m.mtime_nsec())
}

/// Sets `user.test` on a file, where the filesystem allows it.
fn tag(p: &Path) {
    let _ = xattr::set(p, "user.test", b"keep me");
}

/// A rule with a check and a remediation.
fn rrule(id: &str, check: &str, remediation: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"{id}\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\ncheck = {check}\nremediation = {remediation}\n\n"
    )
}

struct Fixture {
    root: Root,
    state: tempfile::TempDir,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            root: Root::new(),
            state: tempfile::tempdir().unwrap(),
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn baseline(&self, rules: &str) -> std::path::PathBuf {
        baseline(self.dir.path(), rules)
    }

    fn remediate(&self, b: &Path, extra: &[&str]) -> (i32, String, String) {
        run(plumb()
            .arg("remediate")
            .arg("--root")
            .arg(self.root.path())
            .arg("--baseline")
            .arg(b)
            .arg("--state-dir")
            .arg(self.state.path())
            .args(extra))
    }

    fn apply_json(&self, b: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
        let mut args = vec!["--apply", "--format", "json"];
        args.extend_from_slice(extra);
        let (code, out, err) = self.remediate(b, &args);
        let v = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("not JSON ({e}); exit {code}\n{out}\n{err}"));
        (code, v)
    }

    fn rollback(&self, id: &str) -> (i32, String, String) {
        run(plumb()
            .args(["remediate", "--rollback", id, "--state-dir"])
            .arg(self.state.path()))
    }

    /// Applies, checks the rules now pass, rolls back, and checks every
    /// path in `paths` is exactly as before.
    fn round_trip(&self, rules: &str, paths: &[&Path], extra: &[&str]) -> serde_json::Value {
        let b = self.baseline(rules);
        let before: Vec<Snap> = paths.iter().map(|p| snap(p)).collect();
        let (code, _) = check_json(self.root.path(), &b, extra);
        assert_eq!(code, 1, "the fixture must fail before remediation");
        let (code, report) = self.apply_json(&b, extra);
        assert_eq!(code, 0, "{report:#}");
        for r in report["results"].as_array().unwrap() {
            assert_eq!(r["status"], "fixed", "{report:#}");
        }
        let (code, after_check) = check_json(self.root.path(), &b, extra);
        assert_eq!(code, 0, "{after_check:#}");
        let id = report["rollback_id"].as_str().unwrap().to_string();
        let (code, out, err) = self.rollback(&id);
        assert_eq!(code, 0, "{out}{err}");
        let after: Vec<Snap> = paths.iter().map(|p| snap(p)).collect();
        assert_eq!(before, after, "rollback must restore bytes and metadata");
        let (code, _) = check_json(self.root.path(), &b, extra);
        assert_eq!(code, 1, "after rollback the rule fails again");
        report
    }
}

const SSHD_CHECK: &str =
    r#"{ kind = "sshd", key = "PermitRootLogin", one_of = ["no", "prohibit-password"] }"#;
const SSHD_FIX: &str = r#"{ kind = "sshd_set", key = "PermitRootLogin", value = "no" }"#;

fn sshd_fixture(f: &Fixture) -> (std::path::PathBuf, std::path::PathBuf) {
    // The installed sshd build, which the check and sshd_set read values for.
    f.root.write(
        "/var/lib/dpkg/status",
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u10\n",
    );
    let main = f.root.write(
        "/etc/ssh/sshd_config",
        b"Include /etc/ssh/sshd_config.d/*.conf\n# caf\xc3\xa9 \xff odd bytes\r\nPermitRootLogin no\n".as_slice(),
    );
    let drop = f.root.write(
        "/etc/ssh/sshd_config.d/50-cloud.conf",
        b"# \xfe\xff\nPermitRootLogin yes\nPasswordAuthentication no".as_slice(),
    );
    f.root.chmod("/etc/ssh/sshd_config.d/50-cloud.conf", 0o640);
    tag(&drop);
    (main, drop)
}

#[test]
fn dry_run_shows_a_diff_and_changes_nothing() {
    let f = Fixture::new();
    let (main, drop) = sshd_fixture(&f);
    let b = f.baseline(&rrule("ssh.root", SSHD_CHECK, SSHD_FIX));
    let before = (snap(&main), snap(&drop), mtime(&drop));
    let (code, out, err) = f.remediate(&b, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("would change"), "{out}");
    assert!(out.contains("-PermitRootLogin yes"), "{out}");
    assert!(out.contains("+PermitRootLogin no"), "{out}");
    assert!(
        out.contains("--- /etc/ssh/sshd_config.d/50-cloud.conf"),
        "{out}"
    );
    assert!(out.contains("not validated"), "offline roots say so: {out}");
    assert_eq!(before, (snap(&main), snap(&drop), mtime(&drop)));
    // Nothing journaled either.
    assert!(
        !f.state.path().join("remediation").exists() || {
            let (_, out, _) = run(plumb()
                .args(["remediate", "--list", "--state-dir"])
                .arg(f.state.path()));
            out.contains("no remediation runs")
        }
    );
    let (code, out, _) = f.remediate(&b, &["--format", "json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["mode"], "dry_run");
    assert_eq!(v["results"][0]["status"], "would_change");
    assert!(
        v["results"][0]["changes"][0]["diff"]
            .as_str()
            .unwrap()
            .contains("+PermitRootLogin no")
    );
}

#[test]
fn sshd_set_edits_the_winning_drop_in_then_rolls_back() {
    let f = Fixture::new();
    let (main, drop) = sshd_fixture(&f);
    let report = f.round_trip(
        &rrule("ssh.root", SSHD_CHECK, SSHD_FIX),
        &[&main, &drop],
        &[],
    );
    let ev = report["results"][0]["evidence"].to_string();
    assert!(ev.contains("50-cloud.conf:2"), "{ev}");
}

#[test]
fn sshd_set_keeps_odd_bytes_and_metadata_and_is_idempotent() {
    let f = Fixture::new();
    let (main, drop) = sshd_fixture(&f);
    let b = f.baseline(&rrule("ssh.root", SSHD_CHECK, SSHD_FIX));
    let (code, report) = f.apply_json(&b, &[]);
    assert_eq!(code, 0, "{report:#}");
    assert_eq!(
        std::fs::read(&drop).unwrap(),
        b"# \xfe\xff\nPermitRootLogin no\nPasswordAuthentication no"
    );
    let Snap::File { mode, xattrs, .. } = snap(&drop) else {
        panic!()
    };
    assert_eq!(mode, 0o640);
    if xattr::get(&drop, "user.test").is_ok() {
        assert!(
            xattrs
                .iter()
                .any(|(n, v)| n == "user.test" && v == b"keep me")
        );
    }
    // Second run: nothing to do, nothing written, no new journal entry.
    let state = (snap(&main), snap(&drop), mtime(&drop), mtime(&main));
    let (code, report2) = f.apply_json(&b, &[]);
    assert_eq!(code, 0, "{report2:#}");
    assert_eq!(report2["results"][0]["status"], "passing");
    assert!(report2["rollback_id"].is_null());
    assert_eq!(
        state,
        (snap(&main), snap(&drop), mtime(&drop), mtime(&main))
    );
    let (code, out, _) = run(plumb()
        .args(["remediate", "--list", "--state-dir"])
        .arg(f.state.path()));
    assert_eq!(code, 0);
    let id = report["rollback_id"].as_str().unwrap();
    assert!(out.contains(id), "{out}");
    assert!(out.contains("applied"), "{out}");
    assert!(out.contains("ssh.root"), "{out}");
    assert!(
        out.contains("/etc/ssh/sshd_config.d/50-cloud.conf"),
        "{out}"
    );
    assert_eq!(out.matches("root ").count(), 1, "one run listed: {out}");
    f.rollback(id);
    let (_, out, _) = run(plumb()
        .args(["remediate", "--list", "--state-dir"])
        .arg(f.state.path()));
    assert!(out.contains("rolled back"), "{out}");
    let (code, _, err) = f.rollback(id);
    assert_eq!(code, 2);
    assert!(err.contains("already rolled back"), "{err}");
}

#[test]
fn sysctl_set_runtime_and_persistent() {
    let f = Fixture::new();
    let proc = tempfile::tempdir().unwrap();
    let pv = proc.path().join("sys/net/ipv4/ip_forward");
    std::fs::create_dir_all(pv.parent().unwrap()).unwrap();
    std::fs::write(&pv, "1\n").unwrap();
    f.root.mkdir("/etc/sysctl.d");
    f.root
        .write("/etc/sysctl.d/10-other.conf", "net.ipv4.ip_forward = 1\n");
    let owned = f.root.p("/etc/sysctl.d/60-plumbline.conf");
    let procs = proc.path().to_str().unwrap();
    let report = f.round_trip(
        &rrule(
            "net.forward",
            r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0, persistent = true }"#,
            r#"{ kind = "sysctl_set", key = "net.ipv4.ip_forward", value = 0 }"#,
        ),
        &[&owned, &pv, &f.root.p("/etc/sysctl.d/10-other.conf")],
        &["--proc", procs],
    );
    let changes = report["results"][0]["changes"].to_string();
    assert!(
        changes.contains("runtime net.ipv4.ip_forward: 1 → 0"),
        "{changes}"
    );
    assert!(
        changes.contains("create /etc/sysctl.d/60-plumbline.conf"),
        "{changes}"
    );
}

#[test]
fn sysctl_set_names_a_later_line_that_still_decides_at_boot() {
    let f = Fixture::new();
    f.root
        .write("/etc/sysctl.conf", "# local\nnet.ipv4.ip_forward = 1\n");
    f.root
        .symlink("../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf");
    let b = f.baseline(&rrule(
        "net.forward",
        r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0, persistent = true }"#,
        r#"{ kind = "sysctl_set", key = "net.ipv4.ip_forward", value = 0 }"#,
    ));
    let want = "net.ipv4.ip_forward: net.ipv4.ip_forward = 1 (/etc/sysctl.conf:2 via /etc/sysctl.d/99-sysctl.conf) applies after /etc/sysctl.d/60-plumbline.conf and still decides the value at boot";
    let (code, out, err) = f.remediate(&b, &[]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains(want), "{out}");
    // Applied, the check still fails and says which line wins.
    let (_, report) = f.apply_json(&b, &[]);
    let r = &report["results"][0];
    assert_eq!(r["status"], "still_failing", "{report:#}");
    assert!(
        r["notes"].to_string().contains("still decides"),
        "{report:#}"
    );
    let (s, ev) = status_of(
        &f.root,
        r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0, persistent = true }"#,
        &[],
    );
    assert_eq!(s, "fail");
    assert!(
        ev.contains("(/etc/sysctl.conf:2 via /etc/sysctl.d/99-sysctl.conf)"),
        "{ev}"
    );
}

#[test]
fn service_actions_act_on_the_unit_an_alias_names() {
    let f = Fixture::new();
    f.root.write(
        "/lib/systemd/system/ssh.service",
        "[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
    );
    f.root.symlink(
        "/lib/systemd/system/ssh.service",
        "/etc/systemd/system/multi-user.target.wants/ssh.service",
    );
    f.root.symlink(
        "/lib/systemd/system/ssh.service",
        "/etc/systemd/system/sshd.service",
    );
    // systemctl ignores a regular file in a *.wants: so does the action.
    let stray = f.root.write(
        "/etc/systemd/system/multi-user.target.wants/ssh.service.bak",
        "x",
    );
    let wants = f
        .root
        .p("/etc/systemd/system/multi-user.target.wants/ssh.service");
    let alias = f.root.p("/etc/systemd/system/sshd.service");
    let report = f.round_trip(
        &rrule(
            "svc.sshd",
            r#"{ kind = "service", unit = "sshd", state = "disabled" }"#,
            r#"{ kind = "service_disable", unit = "sshd" }"#,
        ),
        &[&wants, &alias, &stray],
        &[],
    );
    let r = report["results"][0].to_string();
    assert!(r.contains("sshd.service is a name of ssh.service"), "{r}");
    assert!(
        r.contains("remove /etc/systemd/system/sshd.service (-> /lib/systemd/system/ssh.service)"),
        "{r}"
    );
    assert!(stray.exists());
    // Masking the alias masks the unit it names.
    let report = f.round_trip(
        &rrule(
            "svc.sshd",
            r#"{ kind = "service", unit = "sshd", state = "masked" }"#,
            r#"{ kind = "service_mask", unit = "sshd" }"#,
        ),
        &[&f.root.p("/etc/systemd/system/ssh.service")],
        &[],
    );
    assert!(
        report["results"][0]
            .to_string()
            .contains("create link /etc/systemd/system/ssh.service -> /dev/null"),
        "{report:#}"
    );
}

#[test]
fn service_disable_names_links_it_cannot_remove() {
    let f = Fixture::new();
    f.root.write(
        "/lib/systemd/system/cups.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    f.root.symlink(
        "../cups.service",
        "/lib/systemd/system/multi-user.target.wants/cups.service",
    );
    let b = f.baseline(&rrule(
        "svc.cups",
        r#"{ kind = "service", unit = "cups", state = "disabled" }"#,
        r#"{ kind = "service_disable", unit = "cups" }"#,
    ));
    let (_, out, _) = f.remediate(&b, &[]);
    assert!(
        out.contains("/lib/systemd/system/multi-user.target.wants/cups.service -> ../cups.service still starts cups.service at boot: a vendor link"),
        "{out}"
    );
}

#[test]
fn file_mode_and_owner() {
    let f = Fixture::new();
    f.root.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nauditor:x:1234:1234::/:/bin/false\n",
    );
    f.root.write("/etc/group", "root:x:0:\nshadow:x:42:\n");
    let shadow = f.root.write("/etc/shadow", "root:*:1::::::\n");
    f.root.chmod("/etc/shadow", 0o644);
    tag(&shadow);
    // A symlink is followed inside the root, as the check does.
    let conf = f.root.write("/real/app.conf", "x\n");
    f.root.chmod("/real/app.conf", 0o4755);
    f.root.symlink("/real/app.conf", "/etc/app.conf");
    f.round_trip(
        &[
            rrule(
                "shadow.mode",
                r#"{ kind = "file", path = "/etc/shadow", mode_max = "0640" }"#,
                r#"{ kind = "file_mode", path = "/etc/shadow", mode = "0640" }"#,
            ),
            rrule(
                "shadow.group",
                r#"{ kind = "file", path = "/etc/shadow", group = "shadow" }"#,
                r#"{ kind = "file_owner", path = "/etc/shadow", owner = "root", group = "shadow" }"#,
            ),
            rrule(
                "app.owner",
                r#"{ kind = "file", path = "/etc/app.conf", owner = "auditor" }"#,
                r#"{ kind = "file_owner", path = "/etc/app.conf", owner = "auditor" }"#,
            ),
        ]
        .concat(),
        &[&shadow, &conf, &f.root.p("/etc/app.conf")],
        &[],
    );
}

#[test]
fn file_owner_keeps_the_setuid_bit() {
    let f = Fixture::new();
    f.root.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nauditor:x:1234:1234::/:/bin/false\n",
    );
    f.root.write("/etc/group", "root:x:0:\n");
    let bin = f.root.write("/usr/bin/tool", "#!/bin/sh\n");
    f.root.chmod("/usr/bin/tool", 0o4755);
    let b = f.baseline(&rrule(
        "tool.owner",
        r#"{ kind = "file", path = "/usr/bin/tool", owner = "auditor" }"#,
        r#"{ kind = "file_owner", path = "/usr/bin/tool", owner = "auditor" }"#,
    ));
    let (code, report) = f.apply_json(&b, &[]);
    assert_eq!(code, 0, "{report:#}");
    let m = std::fs::metadata(&bin).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (1234, 0o4755));
}

#[test]
fn config_set_replaces_the_effective_line_and_comments_the_others() {
    let f = Fixture::new();
    let defs = f.root.write(
        "/etc/login.defs",
        b"# PASS_MAX_DAYS 1\nPASS_MAX_DAYS\t99999\n\xff\xfe odd\r\nPASS_MAX_DAYS 400\nUMASK 022\n"
            .as_slice(),
    );
    f.root.chmod("/etc/login.defs", 0o600);
    tag(&defs);
    f.round_trip(
        &rrule(
            "login.max-days",
            r#"{ kind = "config_value", path = "/etc/login.defs", key = "PASS_MAX_DAYS", max = 365 }"#,
            r#"{ kind = "config_set", path = "/etc/login.defs", key = "PASS_MAX_DAYS", value = 365, separator = "\t" }"#,
        ),
        &[&defs],
        &[],
    );
    // And the edit itself, byte for byte.
    let b = f.baseline(&rrule(
        "login.max-days",
        r#"{ kind = "config_value", path = "/etc/login.defs", key = "PASS_MAX_DAYS", max = 365 }"#,
        r#"{ kind = "config_set", path = "/etc/login.defs", key = "PASS_MAX_DAYS", value = 365, separator = "\t" }"#,
    ));
    f.apply_json(&b, &[]);
    assert_eq!(
        std::fs::read(&defs).unwrap(),
        b"# PASS_MAX_DAYS 1\n# plumb: PASS_MAX_DAYS\t99999\n\xff\xfe odd\r\nPASS_MAX_DAYS\t365\nUMASK 022\n"
    );
    // An absent key is appended; an absent file is created.
    let b = f.baseline(&rrule(
        "umask",
        r#"{ kind = "config_value", path = "/etc/default/x", key = "A", equals = "b" }"#,
        r#"{ kind = "config_set", path = "/etc/default/x", key = "A", value = "b", separator = "=" }"#,
    ));
    f.root.mkdir("/etc/default");
    let x = f.root.p("/etc/default/x");
    let report = f.round_trip(
        &rrule(
            "umask",
            r#"{ kind = "config_value", path = "/etc/default/x", key = "A", equals = "b" }"#,
            r#"{ kind = "config_set", path = "/etc/default/x", key = "A", value = "b", separator = "=" }"#,
        ),
        &[&x],
        &[],
    );
    assert!(
        report["results"][0]["changes"]
            .to_string()
            .contains("create /etc/default/x")
    );
    f.apply_json(&b, &[]);
    assert_eq!(std::fs::read(&x).unwrap(), b"A=b\n");
}

#[test]
fn kernel_module_disable_writes_the_owned_file() {
    let f = Fixture::new();
    // No /etc/modprobe.d yet: it is created, and removed again on rollback.
    f.root.mkdir("/etc");
    // A kernel that ships cramfs (a module no kernel ships passes as is).
    f.root.write(
        "/lib/modules/6.1.0-9-amd64/modules.dep",
        "kernel/fs/cramfs/cramfs.ko.xz:\n",
    );
    let owned = f.root.p("/etc/modprobe.d/plumbline.conf");
    let report = f.round_trip(
        &rrule(
            "mod.cramfs",
            r#"{ kind = "kernel_module", name = "cramfs", disabled = true }"#,
            r#"{ kind = "kernel_module_disable", name = "cramfs" }"#,
        ),
        &[&owned, &f.root.p("/etc/modprobe.d")],
        &[],
    );
    assert!(
        report["results"][0]["changes"]
            .to_string()
            .contains("create directory /etc/modprobe.d"),
        "{report:#}"
    );
    assert!(!f.root.p("/etc/modprobe.d").exists());
    f.root.mkdir("/etc/modprobe.d");
    std::fs::write(&owned, "# mine\ninstall cramfs /bin/true\n").unwrap();
    let b = f.baseline(&rrule(
        "mod.cramfs",
        r#"{ kind = "kernel_module", name = "cramfs", disabled = true }"#,
        r#"{ kind = "kernel_module_disable", name = "cramfs" }"#,
    ));
    f.apply_json(&b, &[]);
    // Disabled already by the install line: the rule passes, nothing is written.
    assert_eq!(
        std::fs::read_to_string(&owned).unwrap(),
        "# mine\ninstall cramfs /bin/true\n"
    );
    std::fs::write(
        &owned,
        "# mine\ninstall cramfs /sbin/modprobe --ignore-install cramfs",
    )
    .unwrap();
    f.apply_json(&b, &[]);
    assert_eq!(
        std::fs::read_to_string(&owned).unwrap(),
        "# mine\ninstall cramfs /sbin/modprobe --ignore-install cramfs\ninstall cramfs /bin/false\nblacklist cramfs\n"
    );
}

#[test]
fn service_disable_and_mask_with_symlinks_recreated_on_rollback() {
    let f = Fixture::new();
    let unit = "[Unit]\n[Install]\nWantedBy=multi-user.target\n";
    f.root.write("/lib/systemd/system/telnet.service", unit);
    f.root.write("/lib/systemd/system/rsh.service", unit);
    f.root.symlink(
        "/lib/systemd/system/telnet.service",
        "/etc/systemd/system/multi-user.target.wants/telnet.service",
    );
    f.root.symlink(
        "/lib/systemd/system/telnet.service",
        "/etc/systemd/system/sockets.target.requires/telnet.service",
    );
    let wants = f
        .root
        .p("/etc/systemd/system/multi-user.target.wants/telnet.service");
    let req = f
        .root
        .p("/etc/systemd/system/sockets.target.requires/telnet.service");
    let mask = f.root.p("/etc/systemd/system/rsh.service");
    let report = f.round_trip(
        &[
            rrule(
                "svc.telnet",
                r#"{ kind = "service", unit = "telnet", state = "disabled" }"#,
                r#"{ kind = "service_disable", unit = "telnet" }"#,
            ),
            rrule(
                "svc.rsh",
                r#"{ kind = "service", unit = "rsh", state = "masked" }"#,
                r#"{ kind = "service_mask", unit = "rsh" }"#,
            ),
        ]
        .concat(),
        &[&wants, &req, &mask],
        &[],
    );
    let changes = report["results"].to_string();
    assert!(
        changes.contains(
            "remove /etc/systemd/system/multi-user.target.wants/telnet.service (-> /lib/systemd/system/telnet.service)"
        ),
        "{changes}"
    );
    assert!(
        changes.contains("create link /etc/systemd/system/rsh.service -> /dev/null"),
        "{changes}"
    );
    // A local unit file is never replaced by a mask.
    f.root.write("/etc/systemd/system/rsh.service", unit);
    let b = f.baseline(&rrule(
        "svc.rsh",
        r#"{ kind = "service", unit = "rsh", state = "masked" }"#,
        r#"{ kind = "service_mask", unit = "rsh" }"#,
    ));
    let (code, report) = f.apply_json(&b, &[]);
    assert_eq!(code, 1);
    assert_eq!(report["results"][0]["status"], "error");
    assert!(
        report["results"][0]["error"]
            .as_str()
            .unwrap()
            .contains("refusing")
    );
}

#[test]
fn line_absent_comments_out_matching_lines() {
    let f = Fixture::new();
    let pam = f.root.write(
        "/etc/pam.d/common-auth",
        b"auth [success=1] pam_unix.so nullok\n# nullok in a comment\n\xffauth required pam_deny.so".as_slice(),
    );
    tag(&pam);
    let rules = rrule(
        "pam.nullok",
        r#"{ kind = "file_regex", path = "/etc/pam.d/common-auth", pattern = "nullok", expect = "no_match" }"#,
        r#"{ kind = "line_absent", path = "/etc/pam.d/common-auth", pattern = "nullok" }"#,
    );
    f.round_trip(&rules, &[&pam], &[]);
    f.apply_json(&f.baseline(&rules), &[]);
    assert_eq!(
        std::fs::read(&pam).unwrap(),
        b"# plumb: auth [success=1] pam_unix.so nullok\n# nullok in a comment\n\xffauth required pam_deny.so"
    );
}

#[test]
fn a_failure_half_way_restores_the_first_change() {
    let f = Fixture::new();
    let (main, drop) = sshd_fixture(&f);
    let shadow = f.root.write("/etc/shadow", "x\n");
    f.root.chmod("/etc/shadow", 0o644);
    let rules = [
        rrule("ssh.root", SSHD_CHECK, SSHD_FIX),
        rrule(
            "shadow.mode",
            r#"{ kind = "file", path = "/etc/shadow", mode_max = "0640" }"#,
            r#"{ kind = "file_mode", path = "/etc/shadow", mode = "0640" }"#,
        ),
    ]
    .concat();
    let b = f.baseline(&rules);
    let before = (snap(&main), snap(&drop), snap(&shadow));
    let (code, out, err) = run(plumb()
        .arg("remediate")
        .arg("--apply")
        .arg("--root")
        .arg(f.root.path())
        .arg("--baseline")
        .arg(&b)
        .arg("--state-dir")
        .arg(f.state.path())
        .env("PLUMB_REMEDIATE_FAIL_AFTER", "1"));
    assert_eq!(code, 2, "{out}{err}");
    assert!(err.contains("injected failure"), "{err}");
    assert!(err.contains("restored"), "{err}");
    assert!(out.contains("changed, then restored"), "{out}");
    assert_eq!(before, (snap(&main), snap(&drop), snap(&shadow)));
    let (_, out, _) = run(plumb()
        .args(["remediate", "--list", "--state-dir"])
        .arg(f.state.path()));
    assert!(out.contains("failed, restored"), "{out}");
}

#[test]
fn lint_refuses_an_action_for_the_wrong_check_kind() {
    let f = Fixture::new();
    let b = f.baseline(&rrule(
        "ssh.root",
        SSHD_CHECK,
        r#"{ kind = "file_mode", path = "/etc/ssh/sshd_config", mode = "0600" }"#,
    ));
    let (code, _, err) = run(plumb().args(["baseline", "lint"]).arg(&b));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("file_mode cannot fix a sshd check"), "{err}");
    assert!(err.contains("remediation"), "{err}");
}

#[test]
fn rollback_of_an_unknown_id_is_a_clear_error() {
    let f = Fixture::new();
    let (code, out, err) = f.rollback("20990101T000000Z-dead");
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("no remediation run 20990101T000000Z-dead"),
        "{err}"
    );
    let (code, _, err) = f.rollback("../../etc");
    assert_eq!(code, 2);
    assert!(err.contains("not a remediation run id"), "{err}");
    let (code, _, _) = run(plumb().args(["remediate", "--apply", "--list"]));
    assert_eq!(code, 2, "--apply and --list exclude each other");
}

#[test]
fn rules_without_remediation_or_passing_are_not_touched() {
    let f = Fixture::new();
    let shadow = f.root.write("/etc/shadow", "x\n");
    f.root.chmod("/etc/shadow", 0o644);
    let rules = [
        common::rule(
            "no.fix",
            r#"{ kind = "file", path = "/etc/shadow", mode_max = "0600" }"#,
        ),
        rrule(
            "ok",
            r#"{ kind = "file", path = "/etc/shadow", mode_max = "0644" }"#,
            r#"{ kind = "file_mode", path = "/etc/shadow", mode = "0600" }"#,
        ),
    ]
    .concat();
    let b = f.baseline(&rules);
    let (code, report) = f.apply_json(&b, &[]);
    assert_eq!(code, 1, "a failing rule without remediation remains");
    assert_eq!(report["results"][0]["status"], "no_remediation");
    assert_eq!(report["results"][1]["status"], "passing");
    assert!(report["rollback_id"].is_null());
    assert_eq!(std::fs::metadata(&shadow).unwrap().mode() & 0o777, 0o644);
}
