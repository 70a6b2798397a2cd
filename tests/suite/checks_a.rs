//! End-to-end: the `sshd`, `sysctl` and `kernel_module` checks through the
//! real `plumb` binary on fixture roots.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;

/// A fake proc directory with the given files (path relative to proc).
fn fake_proc(files: &[(&str, &str)]) -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    for (rel, content) in files {
        let p = d.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    d
}

fn proc_args(p: &tempfile::TempDir) -> Vec<String> {
    vec!["--proc".into(), p.path().to_str().unwrap().into()]
}

/// dpkg's record of an installed openssh-server: the sshd build the
/// `sshd` check reads defaults and accepted values for.
const OPENSSH_SERVER: &str = "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u10\n";

/// A root where Debian 12's openssh-server is installed.
fn sshd_root() -> Root {
    let root = Root::new();
    root.write("/var/lib/dpkg/status", OPENSSH_SERVER);
    root
}

#[test]
fn sshd_effective_setting_follows_includes_and_ignores_match() {
    let root = sshd_root();
    root.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\n\
         PermitRootLogin yes\n\
         Match User backup\n    PasswordAuthentication yes\n",
    );
    root.write(
        "/etc/ssh/sshd_config.d/10-hardening.conf",
        "PermitRootLogin no\nPasswordAuthentication no\n",
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "PermitRootLogin", equals = "no" }"#,
        &[],
    );
    assert_eq!(
        (s.as_str(), ev.as_str()),
        (
            "pass",
            "PermitRootLogin no (/etc/ssh/sshd_config.d/10-hardening.conf:1)"
        )
    );
    let (s, _) = status_of(
        &root,
        r#"{ kind = "sshd", key = "passwordauthentication", equals = "NO" }"#,
        &[],
    );
    assert_eq!(s, "pass");
}

#[test]
fn sshd_defaults_failures_and_skips() {
    let root = sshd_root();
    root.write(
        "/etc/ssh/sshd_config",
        "PermitRootLogin yes\nCiphers +3des-cbc\n",
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "PermitRootLogin", one_of = ["no", "prohibit-password"] }"#,
        &[],
    );
    assert_eq!(s, "fail");
    assert_eq!(
        ev,
        "PermitRootLogin yes (/etc/ssh/sshd_config:1)\nexpected one of \"no\", \"prohibit-password\""
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "MaxAuthTries", max = 4 }"#,
        &[],
    );
    assert_eq!(s, "fail");
    assert!(
        ev.starts_with("MaxAuthTries not set: default 6 (openssh-server 1:9.2p1-2+deb12u10)\n"),
        "{ev}"
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "Ciphers", excludes = ["3des-cbc"] }"#,
        &[],
    );
    assert_eq!(s, "fail", "{ev}");

    let empty = Root::new();
    let (s, ev) = status_of(
        &empty,
        r#"{ kind = "sshd", key = "PermitRootLogin", equals = "no" }"#,
        &[],
    );
    assert_eq!(s, "skipped");
    assert!(ev.contains("sshd not installed"), "{ev}");

    let broken = sshd_root();
    broken.mkdir("/etc/ssh/sshd_config");
    let (s, _) = status_of(
        &broken,
        r#"{ kind = "sshd", key = "PermitRootLogin", equals = "no" }"#,
        &[],
    );
    assert_eq!(s, "error");

    // A build Plumbline does not know: its defaults are not guessed.
    let ubuntu = Root::new();
    ubuntu.write("/etc/ssh/sshd_config", "PermitRootLogin no\n");
    ubuntu.write(
        "/var/lib/dpkg/status",
        OPENSSH_SERVER.replace("1:9.2p1-2+deb12u10", "1:8.9p1-3ubuntu0.10"),
    );
    let (s, ev) = status_of(
        &ubuntu,
        r#"{ kind = "sshd", key = "PermitRootLogin", equals = "no" }"#,
        &[],
    );
    assert_eq!(s, "error");
    assert!(
        ev.contains(
            "openssh-server 1:8.9p1-3ubuntu0.10: this sshd build is not known to Plumbline"
        ),
        "{ev}"
    );
}

#[test]
fn sshd_configuration_sshd_refuses_is_an_error_and_fails_validity() {
    let root = sshd_root();
    root.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n",
    );
    root.write(
        "/etc/ssh/sshd_config.d/50-cloud.conf",
        "PasswordAuthentication no\nMatch User deploy\n  UsePAM no\n",
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "PermitRootLogin", equals = "no" }"#,
        &[],
    );
    let refusal = "sshd refuses this configuration: /etc/ssh/sshd_config.d/50-cloud.conf:3: Directive 'UsePAM' is not allowed within a Match block";
    assert_eq!((s.as_str(), ev.as_str()), ("error", refusal));
    let (s, ev) = status_of(&root, r#"{ kind = "sshd", valid = true }"#, &[]);
    assert_eq!((s.as_str(), ev.as_str()), ("fail", refusal));

    root.write(
        "/etc/ssh/sshd_config.d/50-cloud.conf",
        "PasswordAuthentication no\nMatch all\n  UsePAM yes\n",
    );
    let (s, ev) = status_of(&root, r#"{ kind = "sshd", valid = true }"#, &[]);
    assert_eq!(s, "pass", "{ev}");
    assert!(
        ev.starts_with("sshd (openssh-server 1:9.2p1-2+deb12u10) accepts /etc/ssh/sshd_config"),
        "{ev}"
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "UsePAM", equals = "yes" }"#,
        &[],
    );
    assert_eq!(
        (s.as_str(), ev.as_str()),
        (
            "pass",
            "UsePAM yes (/etc/ssh/sshd_config.d/50-cloud.conf:3)"
        )
    );
}

#[test]
fn sshd_match_all_and_last_wins_keywords() {
    let root = sshd_root();
    root.write(
        "/etc/ssh/sshd_config",
        "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\nMaxStartups 10\nMatch all\nInclude /etc/ssh/late.d/*.conf\n",
    );
    root.write("/etc/ssh/sshd_config.d/10-a.conf", "MaxStartups 10:30:60\n");
    root.write("/etc/ssh/late.d/z.conf", "PermitRootLogin no\n");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "PermitRootLogin", one_of = ["no", "prohibit-password"] }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert_eq!(
        ev,
        "PermitRootLogin no (/etc/ssh/late.d/z.conf:1), in a Match all block\noverrides PermitRootLogin yes (/etc/ssh/sshd_config:2)"
    );
    // The main file's later MaxStartups wins, and `10` is `10:30:10`.
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sshd", key = "MaxStartups", equals = "10:30:60" }"#,
        &[],
    );
    assert_eq!(s, "fail");
    assert!(
        ev.starts_with("MaxStartups 10 (/etc/ssh/sshd_config:3) (sshd -T: 10:30:10)"),
        "{ev}"
    );
}

#[test]
fn sysctl_runtime_and_persistent() {
    let root = Root::new();
    root.write(
        "/usr/lib/sysctl.d/50-default.conf",
        "net.ipv4.ip_forward = 1\n",
    );
    root.write(
        "/etc/sysctl.d/99-x.conf",
        "# hardening\n\nnet.ipv4.ip_forward = 0\n",
    );
    let proc = fake_proc(&[("sys/net/ipv4/ip_forward", "1\n")]);
    let pa = proc_args(&proc);
    let pa: Vec<&str> = pa.iter().map(String::as_str).collect();

    let check =
        r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0, persistent = true }"#;
    let (s, ev) = status_of(&root, check, &pa);
    assert_eq!(s, "fail");
    assert_eq!(
        ev,
        "net.ipv4.ip_forward = 1 (runtime)\nnet.ipv4.ip_forward = 0 (/etc/sysctl.d/99-x.conf:3)\nexpected \"0\""
    );
    // No proc: the persistent part alone, said so.
    let (s, ev) = status_of(&root, check, &[]);
    assert_eq!(s, "pass", "{ev}");
    assert!(ev.contains("runtime value not checked"), "{ev}");
    // Not persistent and no proc: skipped.
    let (s, _) = status_of(
        &root,
        r#"{ kind = "sysctl", key = "net.ipv4.ip_forward", equals = 0 }"#,
        &[],
    );
    assert_eq!(s, "skipped");
    // A parameter this kernel does not have.
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "sysctl", key = "net.ipv4.nope", equals = 0 }"#,
        &pa,
    );
    assert_eq!(s, "skipped");
    assert!(ev.contains("no such kernel parameter"), "{ev}");
}

#[test]
fn sysctl_conf_applies_only_through_the_99_sysctl_link() {
    let root = Root::new();
    root.write("/etc/sysctl.d/50-z.conf", "kernel.randomize_va_space = 1\n");
    root.write("/etc/sysctl.conf", "kernel.randomize_va_space=2\n");
    let check =
        r#"{ kind = "sysctl", key = "kernel.randomize_va_space", equals = 2, persistent = true }"#;
    // systemd-sysctl never reads /etc/sysctl.conf by itself.
    let (s, ev) = status_of(&root, check, &[]);
    assert_eq!(s, "fail", "{ev}");
    // Debian's link reads it at that name's place in the order.
    root.symlink("../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf");
    let (s, ev) = status_of(&root, check, &[]);
    assert_eq!(s, "pass", "{ev}");
    assert!(
        ev.contains(
            "kernel.randomize_va_space = 2 (/etc/sysctl.conf:1 via /etc/sysctl.d/99-sysctl.conf)"
        ),
        "{ev}"
    );
}

#[test]
fn kernel_module_disabled_and_loaded() {
    let root = Root::new();
    root.write("/etc/modprobe.d/cramfs.conf", "install cramfs /bin/false\n");
    root.write("/etc/modprobe.d/usb.conf", "blacklist usb_storage\n");
    let proc = fake_proc(&[(
        "modules",
        "usb_storage 81920 0 - Live 0x0000000000000000\next4 1 0 - Live 0x0\n",
    )]);
    let pa = proc_args(&proc);
    let pa: Vec<&str> = pa.iter().map(String::as_str).collect();

    let (s, ev) = status_of(
        &root,
        r#"{ kind = "kernel_module", name = "cramfs", loaded = false, disabled = true }"#,
        &pa,
    );
    assert_eq!(s, "pass", "{ev}");
    assert!(ev.contains("cramfs is not loaded ("), "{ev}");
    assert!(
        ev.contains("install cramfs /bin/false (/etc/modprobe.d/cramfs.conf:1)"),
        "{ev}"
    );

    let (s, ev) = status_of(
        &root,
        r#"{ kind = "kernel_module", name = "usb-storage", loaded = false, disabled = true }"#,
        &pa,
    );
    assert_eq!(s, "fail", "{ev}");
    assert!(ev.contains("usb-storage is loaded ("), "{ev}");
    assert!(
        ev.contains("blacklist usb_storage (/etc/modprobe.d/usb.conf:1)"),
        "{ev}"
    );

    // Without proc only `disabled` is evaluated, and the report says so.
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "kernel_module", name = "cramfs", loaded = false, disabled = true }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert!(ev.contains("loaded state not checked"), "{ev}");
    let (s, _) = status_of(
        &root,
        r#"{ kind = "kernel_module", name = "cramfs", loaded = false }"#,
        &[],
    );
    assert_eq!(s, "skipped");
}
