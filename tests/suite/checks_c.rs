//! End-to-end: the `accounts` and `find` check kinds, run by the real
//! `plumb` binary on fixture roots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;
use std::os::unix::fs::PermissionsExt;

fn accounts_root() -> Root {
    let r = Root::new();
    r.write(
        "/etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\nbob:x:1000:1000::/home/bob:/bin/bash\n",
    );
    r.write(
        "/etc/shadow",
        "root:*:19000:0:99999:7:::\ntoor:$6$s$h:19000:0:30:7:::\nbob::19000:0:30:7:::\n",
    );
    r.write("/etc/group", "root:x:0:\nbob:x:1000:\n");
    r.write("/etc/login.defs", "# ageing\nPASS_MAX_DAYS 30\n");
    r
}

#[test]
fn accounts_violations_name_file_and_line() {
    let r = accounts_root();
    let (status, ev) = status_of(&r, r#"{ kind = "accounts", uid0_only = true }"#, &[]);
    assert_eq!(status, "fail");
    assert!(ev.contains("toor has UID 0 (/etc/passwd:2)"), "{ev}");
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "accounts", no_empty_passwords = true, pass_max_days_max = 30 }"#,
        &[],
    );
    assert_eq!(status, "fail");
    assert!(
        ev.contains("bob has an empty password (/etc/shadow:3)"),
        "{ev}"
    );
    assert!(ev.contains("PASS_MAX_DAYS 30 (/etc/login.defs:2)"), "{ev}");
    let (status, _) = status_of(
        &r,
        r#"{ kind = "accounts", no_duplicate_uids = false, pass_max_days_max = 30 }"#,
        &[],
    );
    assert_eq!(status, "pass");
}

#[test]
fn accounts_without_shadow_is_an_error_not_a_pass() {
    let r = accounts_root();
    std::fs::remove_file(r.p("/etc/shadow")).unwrap();
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "accounts", no_empty_passwords = true }"#,
        &[],
    );
    assert_eq!(status, "error", "{ev}");
    assert!(ev.contains("cannot read /etc/shadow: not found"), "{ev}");
}

#[test]
fn find_reports_setid_outside_the_allow_list_and_exits_1() {
    let r = Root::new();
    r.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    r.write("/etc/group", "root:x:0:\n");
    r.write("/usr/bin/su", "");
    r.chmod("/usr/bin/su", 0o4755);
    r.write("/usr/bin/odd\nname", "");
    r.chmod("/usr/bin/odd\nname", 0o4755);
    r.symlink("usr/bin", "/bin");
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &rule(
            "suid",
            r#"{ kind = "find", paths = ["/bin", "/sbin"], setid = true, allow = ["/usr/bin/su"] }"#,
        ),
    );
    let (code, report) = check_json(r.path(), &b, &[]);
    assert_eq!(code, 1);
    let res = result(&report, "suid");
    assert_eq!(res["status"], "fail");
    let ev = res["evidence"].as_array().unwrap();
    assert_eq!(ev[0], "/usr/bin/odd\\nname: setuid root(0) mode 4755");
    let all: Vec<&str> = ev.iter().map(|e| e.as_str().unwrap()).collect();
    assert!(all.contains(&"1 file(s) matched the allow list"), "{all:?}");
    assert!(
        all.contains(&"/sbin: does not exist, nothing to walk"),
        "{all:?}"
    );
    assert!(
        all.contains(&"/bin resolves to /usr/bin in the root"),
        "{all:?}"
    );
}

#[test]
#[ignore = "needs root (chown)"]
fn find_unowned_uses_the_roots_accounts() {
    require_root("chown");
    let r = Root::new();
    // The checked root knows uid 4242 and not uid 1 (the host's daemon).
    r.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/sh\nimg:x:4242:0::/:/bin/sh\n",
    );
    r.write("/etc/group", "root:x:0:\n");
    let a = r.write("/opt/a", "");
    let b = r.write("/opt/b", "");
    std::os::unix::fs::chown(a, Some(4242), Some(0)).unwrap();
    std::os::unix::fs::chown(b, Some(1), Some(0)).unwrap();
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "find", paths = ["/opt"], unowned = true }"#,
        &[],
    );
    assert_eq!(status, "fail");
    assert!(ev.starts_with("/opt/b: unowned uid 1\n"), "{ev}");
    assert!(!ev.contains("/opt/a"), "{ev}");
}

fn nix_is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

#[test]
fn find_counts_unreadable_directories_and_goes_on() {
    use std::os::unix::process::CommandExt;
    let r = Root::new();
    r.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    r.write("/etc/group", "root:x:0:\n");
    r.write("/srv/open/file", "");
    r.chmod("/srv/open/file", 0o666);
    r.write("/srv/locked/hidden", "");
    r.chmod("/srv/locked/hidden", 0o666);
    r.chmod("/srv/locked", 0o700);
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &rule(
            "ww",
            r#"{ kind = "find", paths = ["/srv"], world_writable = true }"#,
        ),
    );
    let mut cmd = plumb();
    cmd.args(["check", "--format", "json", "--root"])
        .arg(r.path())
        .arg("--baseline")
        .arg(&b);
    if nix_is_root() {
        // Root reads every directory: run as nobody, which can reach the
        // fixture but not /srv/locked.
        for p in [r.path(), dir.path()] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        cmd.uid(65534).gid(65534);
    } else {
        r.chmod("/srv/locked", 0o000);
    }
    let (code, out, err) = run(&mut cmd);
    r.chmod("/srv/locked", 0o755);
    assert_eq!(code, 1, "{err}");
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    let res = result(&report, "ww");
    assert_eq!(res["status"], "fail");
    let ev: Vec<&str> = res["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    assert_eq!(ev[0], "/srv/open/file: world-writable mode 0666");
    assert!(
        ev.iter().any(|e| e.starts_with(
            "1 path(s) could not be read and were not examined: /srv/locked (Permission denied"
        )),
        "{ev:?}"
    );
    assert!(!ev.iter().any(|e| e.contains("hidden")));
}

#[test]
fn find_rules_over_one_tree_agree() {
    let r = Root::new();
    r.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    r.write("/etc/group", "root:x:0:\n");
    r.write("/usr/bin/s", "");
    r.chmod("/usr/bin/s", 0o4755);
    r.mkdir("/tmp");
    r.chmod("/tmp", 0o1777);
    r.write("/var/w", "");
    r.chmod("/var/w", 0o666);
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &format!(
            "{}{}{}",
            rule(
                "suid",
                r#"{ kind = "find", paths = ["/usr"], setid = true }"#
            ),
            rule(
                "ww",
                r#"{ kind = "find", paths = ["/"], world_writable = true }"#
            ),
            rule(
                "all",
                r#"{ kind = "find", paths = ["/", "/usr"], setid = true, world_writable = true, unowned = true }"#
            ),
        ),
    );
    let (code, report) = check_json(r.path(), &b, &[]);
    assert_eq!(code, 1);
    let ev = |id: &str| -> Vec<String> {
        result(&report, id)["evidence"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e.as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ev("suid")[0], "/usr/bin/s: setuid root(0) mode 4755");
    assert_eq!(ev("ww")[0], "/var/w: world-writable mode 0666");
    // Overlapping paths in one rule do not report a file twice.
    assert_eq!(
        ev("all")[..2],
        [
            "/usr/bin/s: setuid root(0) mode 4755",
            "/var/w: world-writable mode 0666"
        ]
    );
    assert_eq!(
        ev("all").iter().filter(|e| e.contains(" mode ")).count(),
        2,
        "{:?}",
        ev("all")
    );
}
