//! End-to-end: configuration read the way its program reads it — systemd
//! drop-ins, sudoers includes, PAM stacks, nftables includes, case, kernel
//! modules a root does not ship, rules about programs not installed — run
//! by the real `plumb` binary on fixture roots with the traps that fooled
//! line-oriented checks, and, for systemd, against `systemd-analyze
//! cat-config` as an oracle.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;

#[test]
fn journald_drop_ins_precedence_and_masks() {
    let r = Root::new();
    r.write("/etc/systemd/journald.conf", "[Journal]\n#Storage=auto\n");
    let check = r#"{ kind = "systemd_conf", path = "/etc/systemd/journald.conf", section = "Journal", key = "Storage", equals = "persistent" }"#;
    let (status, ev) = status_of(&r, check, &[]);
    assert_eq!(status, "fail", "{ev}");
    assert!(ev.contains("systemd's built-in default applies"), "{ev}");
    // The drop-in the old config_value check ignored.
    r.write(
        "/etc/systemd/journald.conf.d/60-persistent.conf",
        "[Journal]\nStorage=persistent\n",
    );
    let (status, ev) = status_of(&r, check, &[]);
    assert_eq!(status, "pass", "{ev}");
    assert_eq!(
        ev,
        "[Journal] Storage=persistent (/etc/systemd/journald.conf.d/60-persistent.conf:2)"
    );
    // A later name in a lower-precedence directory still wins per key...
    r.write(
        "/usr/lib/systemd/journald.conf.d/90-vendor.conf",
        "[Journal]\nStorage=volatile\n",
    );
    let (status, ev) = status_of(&r, check, &[]);
    assert_eq!(status, "fail", "{ev}");
    assert!(
        ev.starts_with(
            "[Journal] Storage=volatile (/usr/lib/systemd/journald.conf.d/90-vendor.conf:2)"
        ),
        "{ev}"
    );
    // ...until masked by a same-named /dev/null link in /etc.
    r.symlink("/dev/null", "/etc/systemd/journald.conf.d/90-vendor.conf");
    let (status, ev) = status_of(&r, check, &[]);
    assert_eq!(status, "pass", "{ev}");
    assert!(
        ev.contains("/etc/systemd/journald.conf.d/90-vendor.conf is masked (symlink to /dev/null)"),
        "{ev}"
    );
}

/// Parses `systemd-analyze cat-config` output: the files it read, in
/// order, and the last value of `[section] key` in them.
fn cat_config_value(out: &str, section: &str, key: &str) -> (Vec<String>, Option<String>) {
    let mut files = Vec::new();
    let mut current = String::new();
    let mut value = None;
    for line in out.lines() {
        if let Some(path) = line.strip_prefix("# /") {
            if !path.contains(char::is_whitespace) {
                files.push(format!("/{path}"));
                continue;
            }
        }
        let t = line.trim();
        if t.starts_with('#') || t.starts_with(';') || t.is_empty() {
            continue;
        }
        if let Some(s) = t.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
            current = s.to_string();
        } else if let Some((k, v)) = t.split_once('=') {
            if current == section && k.trim() == key {
                let v = v.trim();
                value = (!v.is_empty()).then(|| v.to_string());
            }
        }
    }
    (files, value)
}

#[test]
#[ignore = "needs systemd-analyze (systemd package) as an oracle"]
fn systemd_conf_agrees_with_systemd_analyze_cat_config() {
    let analyze = ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("systemd-analyze is not installed: this oracle test needs it");
    // Layouts that exercise precedence, shadowing, masking, sections and resets.
    let layouts: Vec<Vec<(&str, Option<&str>)>> = vec![
        vec![(
            "/etc/systemd/journald.conf",
            Some("[Journal]\nStorage=volatile\n"),
        )],
        vec![
            (
                "/etc/systemd/journald.conf",
                Some("[Journal]\nStorage=volatile\n"),
            ),
            (
                "/usr/lib/systemd/journald.conf.d/10-a.conf",
                Some("[Journal]\nStorage=persistent\n"),
            ),
        ],
        vec![
            (
                "/etc/systemd/journald.conf",
                Some("[Journal]\nStorage=auto\n"),
            ),
            (
                "/usr/lib/systemd/journald.conf.d/10-a.conf",
                Some("[Journal]\nStorage=persistent\n"),
            ),
            (
                "/etc/systemd/journald.conf.d/10-a.conf",
                Some("[Journal]\nCompress=no\n"),
            ),
        ],
        vec![
            (
                "/etc/systemd/journald.conf",
                Some("[Journal]\nStorage=auto\n"),
            ),
            (
                "/run/systemd/journald.conf.d/20-b.conf",
                Some("[Other]\nStorage=none\n[Journal]\nStorage=volatile\n"),
            ),
            (
                "/usr/lib/systemd/journald.conf.d/30-c.conf",
                Some("[Journal]\nStorage=persistent\n"),
            ),
            ("/etc/systemd/journald.conf.d/30-c.conf", None),
        ],
        vec![
            (
                "/etc/systemd/journald.conf",
                Some("[Journal]\nStorage=persistent\n"),
            ),
            (
                "/usr/local/lib/systemd/journald.conf.d/50-x.conf",
                Some("[Journal]\nStorage=\n"),
            ),
        ],
    ];
    for (i, layout) in layouts.iter().enumerate() {
        let r = Root::new();
        for (path, content) in layout {
            match content {
                Some(c) => {
                    r.write(path, c);
                }
                None => r.symlink("/dev/null", path),
            }
        }
        let out = std::process::Command::new(analyze)
            .arg("cat-config")
            .arg(format!("--root={}", r.path().display()))
            .arg("systemd/journald.conf")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text =
            String::from_utf8_lossy(&out.stdout).replace(&r.path().display().to_string(), "");
        let (_, value) = cat_config_value(&text, "Journal", "Storage");
        let check = match &value {
            Some(v) => format!(
                r#"{{ kind = "systemd_conf", path = "/etc/systemd/journald.conf", section = "Journal", key = "Storage", equals = "{v}" }}"#
            ),
            None => r#"{ kind = "systemd_conf", path = "/etc/systemd/journald.conf", section = "Journal", key = "Storage", absent = true }"#.to_string(),
        };
        let (status, ev) = status_of(&r, &check, &[]);
        assert_eq!(
            status, "pass",
            "layout {i}: systemd reads {value:?}; plumb: {ev}\n{text}"
        );
    }
}

#[test]
fn sudoers_follows_includes_and_skip_rules() {
    let r = Root::new();
    r.write(
        "/etc/sudoers",
        "Defaults\tenv_reset\nDefaults\tuse_pty\nroot\tALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
    );
    // sudo ignores both of these files: a dot in the name, a trailing ~.
    r.write(
        "/etc/sudoers.d/old.bak",
        "ops ALL=(ALL) NOPASSWD: ALL\nDefaults !use_pty\n",
    );
    r.write("/etc/sudoers.d/ops~", "ops ALL=(ALL) NOPASSWD: ALL\n");
    r.write(
        "/etc/sudoers.d/logging",
        "Defaults logfile=\"/var/log/sudo.log\"\n",
    );
    let (status, ev) = status_of(&r, r#"{ kind = "sudoers", nopasswd = false }"#, &[]);
    assert_eq!(status, "pass", "{ev}");
    assert!(
        ev.contains("/etc/sudoers.d/old.bak ignored: sudo skips names with '.' or ending in '~'"),
        "{ev}"
    );
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "sudoers", defaults = "use_pty", equals = true }"#,
        &[],
    );
    assert_eq!(status, "pass", "{ev}");
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "sudoers", defaults = "logfile", absent = false }"#,
        &[],
    );
    assert_eq!(status, "pass", "{ev}");
    assert!(
        ev.starts_with("Defaults logfile=\"/var/log/sudo.log\" (/etc/sudoers.d/logging:1)"),
        "{ev}"
    );
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "sudoers", defaults = "timestamp_timeout", min = 0, max = 15 }"#,
        &[],
    );
    assert_eq!(status, "pass", "{ev}");
    assert!(ev.contains("compiled-in default 15"), "{ev}");
    // A file sudo does read.
    r.write(
        "/etc/sudoers.d/ops",
        "Defaults:ops !authenticate\nops ALL=(ALL) NOPASSWD: /usr/bin/apt\n",
    );
    let (status, ev) = status_of(&r, r#"{ kind = "sudoers", nopasswd = false }"#, &[]);
    assert_eq!(status, "fail", "{ev}");
    assert!(
        ev.starts_with("NOPASSWD: ops ALL=(ALL) NOPASSWD: /usr/bin/apt (/etc/sudoers.d/ops:2)"),
        "{ev}"
    );
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "sudoers", defaults = "authenticate", equals = true }"#,
        &[],
    );
    assert_eq!(status, "fail", "{ev}");
    assert!(
        ev.contains(
            "Defaults:ops !authenticate (/etc/sudoers.d/ops:1): for some users or commands"
        ),
        "{ev}"
    );
}

#[test]
fn pam_include_chains_order_and_arguments() {
    let r = Root::new();
    r.write(
        "/etc/pam.d/common-auth",
        "auth\trequired\t\t\tpam_faillock.so preauth\n\
         auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
         auth\t[default=die]\t\tpam_faillock.so authfail\n\
         auth\trequisite\t\t\tpam_deny.so\n",
    );
    r.write(
        "/etc/pam.d/common-password",
        "password\trequisite\tpam_pwquality.so retry=3\n\
         password\trequired\tpam_pwhistory.so remember=24 use_authtok\n\
         password\t[success=1 default=ignore]\tpam_unix.so obscure use_authtok yescrypt\n",
    );
    r.write("/etc/pam.d/login", "@include common-auth\n");
    r.write(
        "/etc/pam.d/sshd",
        "auth include login\npassword substack common-password\n",
    );
    r.write("/etc/security/pwquality.conf", "minlen = 14\n");
    let cases = [
        (
            r#"{ kind = "pam", service = "sshd", type = "auth", module = "pam_faillock", before = "pam_unix" }"#,
            "pass",
        ),
        (
            r#"{ kind = "pam", service = "sshd", type = "auth", module = "pam_unix", args_exclude = ["nullok"] }"#,
            "fail",
        ),
        (
            r#"{ kind = "pam", service = "sshd", type = "password", module = "pam_pwquality", option = "minlen", min = 14 }"#,
            "pass",
        ),
        (
            r#"{ kind = "pam", service = "sshd", type = "password", module = "pam_pwhistory", args_include = ["use_authtok"], option = "remember", min = 24 }"#,
            "pass",
        ),
        (
            r#"{ kind = "pam", service = "sshd", type = "auth", module = "pam_pwquality", present = true }"#,
            "fail",
        ),
        (
            r#"{ kind = "pam", service = "common-auth", type = "auth", module = "pam_faillock", option = "deny", min = 1, max = 5 }"#,
            "pass",
        ),
    ];
    for (check, want) in cases {
        let (status, ev) = status_of(&r, check, &[]);
        assert_eq!(status, want, "{check}: {ev}");
    }
    let (_, ev) = status_of(&r, cases[5].0, &[]);
    assert!(
        ev.contains("deny=3 for /etc/pam.d/common-auth:1 (pam_faillock's compiled-in default)"),
        "{ev}"
    );
    // faillock.conf alone proves nothing: the module must be in the stack.
    r.write("/etc/pam.d/common-auth", "auth required pam_unix.so\n");
    r.write("/etc/security/faillock.conf", "deny = 4\n");
    let (status, ev) = status_of(&r, cases[5].0, &[]);
    assert_eq!(status, "fail", "{ev}");
    assert!(
        ev.contains("pam_faillock is not in the auth stack of common-auth"),
        "{ev}"
    );
}

#[test]
fn auditd_values_are_case_insensitive() {
    let r = Root::new();
    r.write(
        "/etc/audit/auditd.conf",
        "max_log_file_action = KEEP_LOGS\n",
    );
    let strict = r#"{ kind = "config_value", path = "/etc/audit/auditd.conf", key = "max_log_file_action", separator = "=", equals = "keep_logs" }"#;
    assert_eq!(status_of(&r, strict, &[]).0, "fail");
    let folded = r#"{ kind = "config_value", path = "/etc/audit/auditd.conf", key = "max_log_file_action", separator = "=", ignore_case = true, equals = "keep_logs" }"#;
    let (status, ev) = status_of(&r, folded, &[]);
    assert_eq!(status, "pass", "{ev}");
    // systemd booleans fold, its string values do not.
    r.write(
        "/etc/systemd/journald.conf",
        "[Journal]\nCompress=OFF\nStorage=Persistent\n",
    );
    let (status, _) = status_of(
        &r,
        r#"{ kind = "systemd_conf", path = "/etc/systemd/journald.conf", section = "Journal", key = "Compress", excludes = [false] }"#,
        &[],
    );
    assert_eq!(status, "fail");
    let (status, _) = status_of(
        &r,
        r#"{ kind = "systemd_conf", path = "/etc/systemd/journald.conf", section = "Journal", key = "Storage", equals = "persistent" }"#,
        &[],
    );
    assert_eq!(status, "fail");
}

#[test]
fn nftables_from_files_with_includes() {
    let r = Root::new();
    r.write(
        "/etc/nftables.conf",
        "#!/usr/sbin/nft -f\nflush ruleset\ninclude \"nftables.d/*.nft\"\n",
    );
    r.write(
        "/etc/nftables.d/filter.nft",
        "table inet filter {\n  chain input {\n    type filter hook input priority filter; policy drop;\n    iif \"lo\" accept\n    ip saddr 127.0.0.0/8 counter drop\n    ip6 saddr ::1 counter drop\n    ct state established,related accept\n  }\n  chain forward { type filter hook forward priority filter; policy drop; }\n  chain output { type filter hook output priority filter; policy accept; }\n}\n",
    );
    let cases = [
        (r#"{ kind = "nftables", table = true }"#, "pass"),
        (
            r#"{ kind = "nftables", base_chains = ["input", "forward", "output"] }"#,
            "pass",
        ),
        (
            r#"{ kind = "nftables", loopback = true, established = true }"#,
            "pass",
        ),
        (
            r#"{ kind = "nftables", base_chains = ["input"], policy = "drop" }"#,
            "pass",
        ),
        (
            r#"{ kind = "nftables", base_chains = ["forward", "output"], policy = "drop" }"#,
            "fail",
        ),
        (
            r#"{ kind = "nftables", source = "kernel", table = true }"#,
            "skipped",
        ),
    ];
    for (check, want) in cases {
        let (status, ev) = status_of(&r, check, &[]);
        assert_eq!(status, want, "{check}: {ev}");
    }
    let (_, ev) = status_of(&r, cases[3].0, &[]);
    assert!(
        ev.starts_with(
            "config: chain inet filter input hook input policy drop (/etc/nftables.d/filter.nft:2)"
        ),
        "{ev}"
    );
}

#[test]
fn modules_a_root_does_not_ship_and_programs_not_installed() {
    let r = Root::new();
    let (status, ev) = status_of(
        &r,
        r#"{ kind = "kernel_module", name = "cramfs", disabled = true }"#,
        &[],
    );
    assert_eq!(status, "pass", "{ev}");
    assert!(
        ev.contains("cramfs cannot be loaded: no kernel modules in this root"),
        "{ev}"
    );
    // A rule about sshd on a root with a dpkg database but no openssh-server.
    r.write(
        "/var/lib/dpkg/status",
        "Package: sudo\nStatus: install ok installed\nVersion: 1.9.13p3-1+deb12u1\n\n",
    );
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &format!(
            "{}\nif_installed = [\"openssh-server\"]\n",
            rule(
                "ssh",
                r#"{ kind = "file", path = "/etc/ssh/sshd_config", type = "file", mode_max = "0600" }"#
            )
            .trim_end()
        ),
    );
    let (code, report) = check_json(r.path(), &b, &[]);
    let res = result(&report, "ssh");
    assert_eq!(res["status"], "skipped", "{res}");
    assert_eq!(
        res["evidence"][0],
        "not applicable: openssh-server not installed"
    );
    assert_eq!(code, 0);
}
