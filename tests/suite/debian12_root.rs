//! The shipped baseline on a freshly installed Debian 12 server root (made by
//! `scripts/debian12-root.sh`: debootstrap's default package set plus
//! openssh-server, nothing configured). Every rule's verdict must be the one
//! such a system must get: the table below, with the reason wherever it is
//! not obvious from the rule. The root is checked offline (`--root`, no
//! `--proc`), so the runtime checks (process, mount, listening, the running
//! sysctl values) are skipped and only the files decide.
//!
//! A new or changed rule of the shipped baseline needs its line here: the
//! test names the rules missing from the table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// (rule id, expected status, why, where not obvious).
const EXPECTED: &[(&str, &str, &str)] = &[
    (
        "kmod.cramfs",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.freevxfs",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.hfs",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.hfsplus",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.jffs2",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.squashfs",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.udf",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.usb-storage",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    ("mount.tmp", "skipped", "runtime only: no --proc"),
    ("mount.dev-shm", "skipped", "runtime only: no --proc"),
    ("mount.home", "skipped", "runtime only: no --proc"),
    ("mount.var", "skipped", "runtime only: no --proc"),
    ("mount.var-tmp", "skipped", "runtime only: no --proc"),
    ("mount.var-log", "skipped", "runtime only: no --proc"),
    ("mount.var-log-audit", "skipped", "runtime only: no --proc"),
    (
        "pkg.unattended-upgrades",
        "fail",
        "not part of debootstrap's set",
    ),
    (
        "apt.unattended-upgrade-enabled",
        "fail",
        "not part of debootstrap's set",
    ),
    ("apt.no-unauthenticated", "pass", ""),
    ("pkg.no-prelink", "pass", "not installed"),
    ("pkg.no-apport", "pass", "not installed"),
    (
        "pkg.apparmor",
        "fail",
        "apparmor is not in debootstrap's set (the installer adds it)",
    ),
    (
        "svc.apparmor",
        "fail",
        "apparmor is not in debootstrap's set (the installer adds it)",
    ),
    (
        "boot.grub-cfg",
        "fail",
        "no boot loader in a debootstrap root: no grub.cfg nor /etc/default/grub",
    ),
    (
        "boot.apparmor-param",
        "fail",
        "no boot loader in a debootstrap root: no grub.cfg nor /etc/default/grub",
    ),
    (
        "boot.grub-superuser",
        "fail",
        "no boot loader in a debootstrap root: no grub.cfg nor /etc/default/grub",
    ),
    (
        "boot.grub-password",
        "fail",
        "no boot loader in a debootstrap root: no grub.cfg nor /etc/default/grub",
    ),
    (
        "sysctl.randomize-va-space",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.ptrace-scope",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.suid-dumpable",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.dmesg-restrict",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.kptr-restrict",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.perf-event-paranoid",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.sysrq",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.unprivileged-bpf",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.mmap-min-addr",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.protected-symlinks",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.protected-hardlinks",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.protected-fifos",
        "fail",
        "Debian sets 1 in /usr/lib/sysctl.d/99-protect-links.conf; ANSSI wants 2",
    ),
    (
        "sysctl.protected-regular",
        "pass",
        "Debian sets 2 in /usr/lib/sysctl.d/99-protect-links.conf",
    ),
    ("banner.issue", "fail", "Debian's text names the OS"),
    ("banner.issue-net", "fail", "Debian's text names the OS"),
    ("banner.issue-net-perms", "pass", ""),
    ("banner.motd-perms", "pass", ""),
    ("banner.motd", "fail", "Debian's text names the OS"),
    ("banner.issue-perms", "pass", ""),
    ("pkg.no-gdm3", "pass", "not installed"),
    (
        "gdm.no-xdmcp",
        "pass",
        "not installed: no configuration file",
    ),
    ("svc.no-autofs", "pass", "not installed"),
    ("svc.no-avahi", "pass", "not installed"),
    ("svc.no-dhcp-server", "pass", "not installed"),
    ("svc.no-dns-server", "pass", "not installed"),
    ("svc.no-dnsmasq", "pass", "not installed"),
    ("svc.no-ftp-server", "pass", "not installed"),
    ("svc.no-ldap-server", "pass", "not installed"),
    ("svc.no-imap-pop3", "pass", "not installed"),
    ("svc.no-nfs-server", "pass", "not installed"),
    ("svc.no-nis-server", "pass", "not installed"),
    ("svc.no-cups", "pass", "not installed"),
    ("svc.no-rpcbind", "pass", "not installed"),
    ("svc.no-rsync", "pass", "not installed"),
    ("svc.no-samba", "pass", "not installed"),
    ("svc.no-snmp", "pass", "not installed"),
    ("svc.no-tftp-server", "pass", "not installed"),
    ("svc.no-web-proxy", "pass", "not installed"),
    ("svc.no-xinetd", "pass", "not installed"),
    (
        "listen.no-remote-shell",
        "skipped",
        "runtime only: no --proc",
    ),
    (
        "listen.no-clear-file-transfer",
        "skipped",
        "runtime only: no --proc",
    ),
    ("listen.no-rpc-nis", "skipped", "runtime only: no --proc"),
    (
        "listen.no-legacy-discovery",
        "skipped",
        "runtime only: no --proc",
    ),
    ("listen.no-x11", "skipped", "runtime only: no --proc"),
    ("pkg.no-nis", "pass", "not installed"),
    ("pkg.no-rsh-client", "pass", "not installed"),
    ("pkg.no-talk", "pass", "not installed"),
    ("pkg.no-telnet", "pass", "not installed"),
    ("pkg.no-inetutils-telnet", "pass", "not installed"),
    ("pkg.no-ldap-utils", "pass", "not installed"),
    ("pkg.no-ftp", "pass", "not installed"),
    (
        "pkg.systemd-timesyncd",
        "fail",
        "systemd-timesyncd is not in debootstrap's set",
    ),
    (
        "svc.systemd-timesyncd",
        "fail",
        "systemd-timesyncd is not in debootstrap's set",
    ),
    (
        "proc.systemd-timesyncd",
        "skipped",
        "runtime only: no --proc",
    ),
    (
        "timesyncd.ntp",
        "fail",
        "systemd-timesyncd is not in debootstrap's set",
    ),
    (
        "timesyncd.fallback-ntp",
        "fail",
        "systemd-timesyncd is not in debootstrap's set",
    ),
    ("pkg.no-chrony", "pass", "not installed"),
    ("pkg.no-ntp", "pass", "not installed"),
    ("pkg.no-ntpsec", "pass", "not installed"),
    ("svc.cron", "pass", ""),
    ("cron.crontab-perms", "fail", "Debian ships 0644/0755"),
    ("cron.hourly-perms", "fail", "Debian ships 0644/0755"),
    ("cron.daily-perms", "fail", "Debian ships 0644/0755"),
    ("cron.weekly-perms", "fail", "Debian ships 0644/0755"),
    ("cron.monthly-perms", "fail", "Debian ships 0644/0755"),
    ("cron.d-perms", "fail", "Debian ships 0644/0755"),
    ("cron.allow", "fail", "Debian ships none"),
    ("pkg.no-at", "pass", "not installed"),
    ("mail.root-alias", "fail", "no MTA: no /etc/aliases"),
    (
        "mail.exim-local-only",
        "pass",
        "not installed: no configuration file",
    ),
    (
        "kmod.dccp",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.tipc",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.rds",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    (
        "kmod.sctp",
        "pass",
        "no kernel in debootstrap's set: no module can be loaded (no /lib/modules)",
    ),
    ("net.no-wireless", "pass", "no /sys in the root"),
    ("pkg.no-bluez", "pass", "not installed"),
    ("svc.no-bluetooth", "pass", "not installed"),
    (
        "sysctl.ip-forward",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.ipv6-forwarding",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.send-redirects-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.send-redirects-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.icmp-ignore-bogus",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.icmp-echo-ignore-broadcasts",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.accept-redirects-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.accept-redirects-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.ipv6-accept-redirects-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.ipv6-accept-redirects-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.secure-redirects-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.secure-redirects-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.rp-filter-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.rp-filter-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.accept-source-route-all",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.accept-source-route-default",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.ipv6-accept-source-route-all",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.log-martians-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.log-martians-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.tcp-syncookies",
        "skipped",
        "kernel default complies: runtime only, no --proc",
    ),
    (
        "sysctl.ipv6-accept-ra-all",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    (
        "sysctl.ipv6-accept-ra-default",
        "fail",
        "not set in sysctl.d: the kernel default does not comply",
    ),
    ("pkg.nftables", "pass", ""),
    ("pkg.no-ufw", "pass", "not installed"),
    ("svc.nftables", "fail", "installed, not enabled"),
    (
        "nft.input-policy-drop",
        "fail",
        "Debian's sample ruleset accepts everything",
    ),
    ("pkg.no-iptables-persistent", "pass", "not installed"),
    ("ssh.config-perms", "fail", "Debian ships 0644"),
    (
        "ssh.config-valid",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.host-private-keys",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.host-public-keys",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.ciphers",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.client-alive-interval",
        "fail",
        "sshd default does not comply",
    ),
    (
        "ssh.client-alive-count-max",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.disable-forwarding",
        "fail",
        "sshd default does not comply",
    ),
    (
        "ssh.gssapi",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.hostbased-authentication",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.ignore-rhosts",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.kex-algorithms",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.login-grace-time",
        "fail",
        "sshd default does not comply",
    ),
    (
        "ssh.log-level",
        "pass",
        "sshd default or Debian setting complies",
    ),
    ("ssh.macs", "fail", "sshd default does not comply"),
    ("ssh.max-auth-tries", "fail", "sshd default does not comply"),
    (
        "ssh.max-sessions",
        "pass",
        "sshd default or Debian setting complies",
    ),
    ("ssh.max-startups", "fail", "sshd default does not comply"),
    (
        "ssh.permit-empty-passwords",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.permit-root-login",
        "fail",
        "sshd default is prohibit-password; CIS wants no",
    ),
    (
        "ssh.permit-user-environment",
        "pass",
        "sshd default or Debian setting complies",
    ),
    (
        "ssh.use-pam",
        "pass",
        "sshd default or Debian setting complies",
    ),
    ("ssh.allow-groups", "fail", "not set"),
    ("ssh.banner", "fail", "sshd default does not comply"),
    ("pkg.sudo", "fail", "sudo is not in debootstrap's set"),
    (
        "sudo.use-pty",
        "skipped",
        "sudo is not in debootstrap's set: no /etc/sudoers",
    ),
    (
        "sudo.logfile",
        "skipped",
        "sudo is not in debootstrap's set: no /etc/sudoers",
    ),
    (
        "sudo.password-required",
        "skipped",
        "sudo is not in debootstrap's set: no /etc/sudoers",
    ),
    (
        "sudo.reauthentication",
        "skipped",
        "sudo is not in debootstrap's set: no /etc/sudoers",
    ),
    (
        "su.restricted",
        "fail",
        "Debian ships pam_wheel commented out",
    ),
    (
        "pkg.libpam-pwquality",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    ("pkg.libpam-modules", "pass", ""),
    ("pkg.libpam-runtime", "pass", ""),
    (
        "pam.faillock-deny",
        "fail",
        "Debian's faillock.conf has every setting commented out",
    ),
    (
        "pam.pwquality-minlen",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    (
        "pam.faillock-unlock-time",
        "fail",
        "Debian's faillock.conf has every setting commented out",
    ),
    (
        "pam.pwquality-difok",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    (
        "pam.pwquality-maxrepeat",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    (
        "pam.pwquality-maxsequence",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    (
        "pam.pwquality-dictcheck",
        "pass",
        "unset: the built-in default (on) complies",
    ),
    (
        "pam.pwquality-enforcing",
        "pass",
        "unset: the built-in default (on) complies",
    ),
    (
        "pam.pwquality-enforce-for-root",
        "fail",
        "libpam-pwquality is not installed: no pwquality.conf",
    ),
    ("pam.no-nullok", "fail", "Debian's common-auth has nullok"),
    ("pam.unix-strong-hash", "pass", "Debian uses yescrypt"),
    (
        "login.pass-max-days",
        "fail",
        "Debian defaults do not comply",
    ),
    (
        "login.pass-min-days",
        "fail",
        "Debian defaults do not comply",
    ),
    ("login.pass-warn-age", "pass", ""),
    ("login.encrypt-method", "pass", ""),
    ("login.inactive", "fail", "Debian defaults do not comply"),
    ("login.umask", "fail", "Debian defaults do not comply"),
    ("accounts.uid0-only-root", "pass", ""),
    (
        "accounts.pass-max-days",
        "fail",
        "Debian defaults do not comply",
    ),
    ("accounts.system-shell-nologin", "pass", ""),
    ("accounts.nologin-locked", "pass", ""),
    ("accounts.no-empty-passwords", "pass", ""),
    ("accounts.no-duplicate-uids", "pass", ""),
    ("accounts.primary-groups-exist", "pass", ""),
    ("accounts.no-duplicate-gids", "pass", ""),
    ("accounts.no-duplicate-names", "pass", ""),
    ("accounts.gid0-only-root", "pass", ""),
    ("group.gid0-only-root", "pass", ""),
    ("accounts.root-access", "pass", ""),
    ("root.umask", "pass", ""),
    ("shell.timeout", "fail", "no TMOUT"),
    ("shell.timeout-readonly", "fail", "no TMOUT"),
    ("shell.timeout-exported", "fail", "no TMOUT"),
    ("pkg.aide", "fail", "aide is not installed"),
    ("svc.dailyaidecheck", "fail", "aide is not installed"),
    ("proc.journald", "skipped", "runtime only: no --proc"),
    ("pkg.no-rsyslog", "pass", "not installed"),
    (
        "pkg.systemd-journal-remote",
        "fail",
        "not installed: logs are not shipped",
    ),
    (
        "svc.systemd-journal-upload",
        "fail",
        "not installed: logs are not shipped",
    ),
    ("svc.no-journal-remote-socket", "pass", "not installed"),
    ("svc.no-journal-remote", "pass", "not installed"),
    (
        "journald.storage-persistent",
        "fail",
        "not set in journald.conf",
    ),
    (
        "journald.compress",
        "pass",
        "unset: the built-in default (yes) complies",
    ),
    (
        "journald.no-forward-to-syslog",
        "fail",
        "unset: the built-in default forwards",
    ),
    ("pkg.auditd", "fail", "auditd is not installed"),
    ("svc.auditd", "fail", "auditd is not installed"),
    ("proc.auditd", "skipped", "runtime only: no --proc"),
    (
        "audit.boot-param",
        "fail",
        "no boot loader in a debootstrap root: no grub.cfg nor /etc/default/grub",
    ),
    ("audit.keep-logs", "fail", "auditd is not installed"),
    ("audit.log-dir-perms", "fail", "auditd is not installed"),
    ("audit.config-perms", "fail", "auditd is not installed"),
    ("perm.passwd", "pass", ""),
    ("perm.passwd-backup", "pass", ""),
    ("perm.group", "pass", ""),
    ("perm.group-backup", "pass", ""),
    ("perm.shadow", "pass", ""),
    ("perm.shadow-backup", "pass", ""),
    ("perm.gshadow", "pass", ""),
    ("perm.gshadow-backup", "pass", ""),
    ("perm.shells", "pass", ""),
    ("perm.opasswd", "pass", "no such file on a fresh install"),
    (
        "find.world-writable",
        "pass",
        "walks the root (about 10,000 entries)",
    ),
    (
        "find.unowned",
        "pass",
        "walks the root (about 10,000 entries)",
    ),
    (
        "find.setid",
        "pass",
        "walks the root (about 10,000 entries)",
    ),
    ("passwd.shadowed", "pass", ""),
    ("group.shadow-empty", "pass", ""),
    ("accounts.no-shadow-primary-group", "pass", ""),
    ("home.perms", "pass", "no such file on a fresh install"),
    (
        "home.no-netrc-rhosts-forward",
        "pass",
        "no such file on a fresh install",
    ),
    (
        "nft.table",
        "pass",
        "Debian's sample /etc/nftables.conf has a table",
    ),
    (
        "nft.base-chains",
        "pass",
        "the sample ruleset hooks input, forward and output",
    ),
    (
        "nft.default-deny",
        "fail",
        "the sample ruleset accepts by default",
    ),
    ("nft.established", "fail", "the sample ruleset has no rules"),
    ("nft.loopback", "fail", "the sample ruleset has no rules"),
    (
        "nft.permanent",
        "pass",
        "the sample ruleset is loaded at boot by /etc/nftables.conf",
    ),
    ("pam.unix-enabled", "pass", ""),
    (
        "pam.faillock-enabled",
        "fail",
        "Debian does not enable pam_faillock",
    ),
    (
        "pam.pwquality-enabled",
        "fail",
        "libpam-pwquality is not installed",
    ),
    (
        "pam.pwhistory-enabled",
        "fail",
        "Debian does not enable pam_pwhistory",
    ),
    (
        "pam.pwhistory-root",
        "fail",
        "Debian does not enable pam_pwhistory",
    ),
    (
        "pam.no-nullok-password",
        "pass",
        "nullok is on the auth line only",
    ),
    (
        "pam.unix-no-remember",
        "pass",
        "Debian's pam_unix line has no remember=",
    ),
    (
        "pam.unix-use-authtok",
        "fail",
        "Debian's pam_unix line has no use_authtok",
    ),
    (
        "sudo.timestamp-timeout",
        "skipped",
        "sudo is not in debootstrap's set: no /etc/sudoers",
    ),
    (
        "pkgfiles.openssh-server",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.sudo",
        "pass",
        "sudo not installed: nothing to verify",
    ),
    (
        "pkgfiles.login-passwd",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.coreutils",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.util-linux",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.systemd",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.libpam",
        "pass",
        "files as their packages shipped them",
    ),
    (
        "pkgfiles.kernel",
        "pass",
        "no kernel in debootstrap's set: nothing to verify",
    ),
];

fn debian12_root() -> PathBuf {
    let root = std::env::var_os("PLUMB_TEST_DEBIAN12_ROOT").map(PathBuf::from);
    let root = root.unwrap_or_else(|| {
        panic!(
            "PLUMB_TEST_DEBIAN12_ROOT is not set: run `eval \"$(scripts/debian12-root.sh)\"` first (as root), as .ci/run does"
        )
    });
    assert!(
        root.join("etc/debian_version").is_file(),
        "{} is not a Debian root: remake it with scripts/debian12-root.sh",
        root.display()
    );
    root
}

#[test]
#[ignore = "needs a Debian 12 root: eval \"$(scripts/debian12-root.sh)\" (root, debootstrap)"]
fn shipped_baseline_verdicts_on_a_fresh_debian12_server() {
    require_root("the root's files are owned by root and some are readable by root only");
    let root = debian12_root();
    let (code, out, err) = run(plumb()
        .args(["check", "--format", "json", "--root"])
        .arg(&root));
    assert_eq!(code, 1, "a fresh install fails rules; stderr:\n{err}");
    let report: serde_json::Value =
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}\n{err}"));
    let got: BTreeMap<String, (String, String)> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let evidence: Vec<&str> = r["evidence"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e.as_str().unwrap())
                .collect();
            (
                r["id"].as_str().unwrap().to_owned(),
                (
                    r["status"].as_str().unwrap().to_owned(),
                    evidence.join(" | "),
                ),
            )
        })
        .collect();
    let expected: BTreeMap<&str, &str> = EXPECTED.iter().map(|(id, s, _)| (*id, *s)).collect();
    assert_eq!(
        expected.len(),
        EXPECTED.len(),
        "a rule is listed twice in EXPECTED"
    );
    let mut problems = Vec::new();
    for (id, (status, evidence)) in &got {
        match expected.get(id.as_str()) {
            None => problems.push(format!("{id}: not in EXPECTED (got {status}: {evidence})")),
            Some(want) if want != status => {
                problems.push(format!("{id}: expected {want}, got {status}: {evidence}"));
            }
            Some(_) => {}
        }
    }
    for id in expected.keys() {
        if !got.contains_key(*id) {
            problems.push(format!("{id}: in EXPECTED, not in the shipped baseline"));
        }
    }
    assert!(
        problems.is_empty(),
        "{} verdicts differ:\n{}",
        problems.len(),
        problems.join("\n")
    );
    // Nothing on a sane Debian root is unreadable or malformed.
    assert!(got.values().all(|(s, _)| s != "error"));
}
