//! End-to-end: the real `plumb` binary on fixture roots and fake proc
//! trees for the mount, process, listening, service and package checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;
use common::*;

/// A fake proc directory, outside the checked root.
struct Proc {
    dir: tempfile::TempDir,
}

impl Proc {
    fn new() -> Proc {
        Proc {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self) -> &str {
        self.dir.path().to_str().unwrap()
    }

    fn write(&self, rel: &str, content: &str) {
        let p = self.dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    /// A process `pid` named `comm`, holding the given socket inodes.
    fn process(&self, pid: u32, comm: &str, sockets: &[u64]) {
        self.write(&format!("{pid}/comm"), &format!("{comm}\n"));
        let fd = self.dir.path().join(format!("{pid}/fd"));
        std::fs::create_dir_all(&fd).unwrap();
        for (i, inode) in sockets.iter().enumerate() {
            std::os::unix::fs::symlink(format!("socket:[{inode}]"), fd.join((i + 3).to_string()))
                .unwrap();
        }
    }

    /// `net/NAME` with a header and rows `(local, remote, state, inode)`,
    /// addresses as a little-endian kernel prints them.
    fn table(&self, name: &str, rows: &[(&str, &str, &str, u64)]) {
        let mut s = String::from(
            "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n",
        );
        for (i, (l, r, st, inode)) in rows.iter().enumerate() {
            s.push_str(&format!(
                "{i:4}: {l} {r} {st} 00000000:00000000 00:00000000 00000000     0        0 {inode} 1 0000000000000000 100 0 0 10 0\n"
            ));
        }
        self.write(&format!("net/{name}"), &s);
    }
}

fn with_proc(p: &Proc) -> [&str; 2] {
    ["--proc", p.path()]
}

#[test]
fn mount_options_from_proc_mounts() {
    let root = Root::new();
    let proc = Proc::new();
    proc.write(
        "mounts",
        "/dev/sda1 / ext4 rw,relatime 0 0\n\
         tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n\
         /dev/sdb1 /mnt/usb\\040key vfat rw,nosuid 0 0\n\
         tmpfs /tmp tmpfs rw,nosuid 0 0\n",
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "mount", path = "/tmp", options_include = ["nodev", "nosuid", "noexec"] }"#,
        &with_proc(&proc),
    );
    // The later tmpfs mounted over /tmp is what a lookup reaches.
    assert_eq!(s, "fail", "{ev}");
    assert_eq!(
        ev,
        format!(
            "/tmp mounted (tmpfs, rw,nosuid) ({}/mounts:4, top-most of 2 mounts there)\nmissing nodev\nmissing noexec",
            proc.path()
        )
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "mount", path = "/mnt/usb key", options_include = ["nosuid"] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "pass", "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "mount", path = "/var/tmp" }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "fail");
    assert!(
        ev.starts_with("/var/tmp is not a separate mount point"),
        "{ev}"
    );
    // A root other than / has no proc unless one is given.
    let (s, ev) = status_of(&root, r#"{ kind = "mount", path = "/tmp" }"#, &[]);
    assert_eq!(s, "skipped", "{ev}");
    assert!(ev.contains("--proc"), "{ev}");
}

#[test]
fn process_running_or_not() {
    let root = Root::new();
    let proc = Proc::new();
    proc.process(1, "systemd", &[]);
    proc.process(640, "sshd", &[]);
    proc.process(641, "sshd", &[]);
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "process", name = "sshd", running = true }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "pass", "{ev}");
    assert!(ev.starts_with("sshd running: pid 640, 641"), "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "process", name = "telnetd", running = false }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "pass", "{ev}");
    assert!(
        ev.starts_with("no process named telnetd (3 processes"),
        "{ev}"
    );
    let (s, _) = status_of(
        &root,
        r#"{ kind = "process", name = "sshd", running = false }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "fail");
    let (s, _) = status_of(
        &root,
        r#"{ kind = "process", name = "sshd", running = true }"#,
        &[],
    );
    assert_eq!(s, "skipped");
}

#[test]
fn listening_sockets_v4_and_v6() {
    let root = Root::new();
    let proc = Proc::new();
    let any6 = "00000000000000000000000000000000";
    proc.table(
        "tcp",
        &[
            ("00000000:0016", "00000000:0000", "0A", 100),
            // established from port 23: not a listener
            ("0500000A:0017", "0900000A:C738", "01", 101),
            ("0100007F:0017", "00000000:0000", "0A", 102),
        ],
    );
    proc.table(
        "tcp6",
        &[(&format!("{any6}:0016"), &format!("{any6}:0000"), "0A", 200)],
    );
    proc.table("udp", &[("00000000:0044", "00000000:0000", "07", 300)]);
    proc.table(
        "udp6",
        &[(&format!("{any6}:006F"), &format!("{any6}:0000"), "07", 400)],
    );
    proc.process(812, "inetd", &[102]);
    proc.process(500, "rpcbind", &[400]);
    let p = proc.path();
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "listening", forbidden_ports = [23, 111] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "fail", "{ev}");
    assert_eq!(
        ev,
        format!(
            "tcp 127.0.0.1:23 LISTEN by inetd[812] ({p}/net/tcp:4): port 23 is forbidden\n\
             udp6 [::]:111 by rpcbind[500] ({p}/net/udp6:2): port 111 is forbidden"
        )
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "listening", allowed_ports = [22, 23, 68, 111] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "pass", "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "listening", allowed_ports = [22] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "fail", "{ev}");
    assert_eq!(ev.lines().count(), 3, "{ev}");
    // IPv6 disabled: no tcp6/udp6 tables is fine.
    std::fs::remove_file(proc.dir.path().join("net/tcp6")).unwrap();
    std::fs::remove_file(proc.dir.path().join("net/udp6")).unwrap();
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "listening", forbidden_ports = [111] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "pass", "{ev}");
    // No TCP table at all: cannot tell.
    std::fs::remove_file(proc.dir.path().join("net/tcp")).unwrap();
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "listening", forbidden_ports = [111] }"#,
        &with_proc(&proc),
    );
    assert_eq!(s, "error", "{ev}");
}

fn service_root() -> Root {
    let root = Root::new();
    root.write(
        "/lib/systemd/system/ssh.service",
        "[Install]\nWantedBy=multi-user.target\n",
    );
    root.write("/lib/systemd/system/avahi-daemon.service", "[Unit]\n");
    root.write("/lib/systemd/system/cups.service", "[Unit]\n");
    root.write("/lib/systemd/system/getty@.service", "[Unit]\n");
    root.symlink(
        "/lib/systemd/system/ssh.service",
        "/etc/systemd/system/multi-user.target.wants/ssh.service",
    );
    root.symlink(
        "/lib/systemd/system/getty@.service",
        "/etc/systemd/system/getty.target.wants/getty@tty1.service",
    );
    root.symlink("/dev/null", "/etc/systemd/system/avahi-daemon.service");
    root
}

#[test]
fn service_states_offline() {
    let root = service_root();
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "ssh", state = "enabled" }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert_eq!(
        ev,
        "systemctl is-enabled ssh.service: enabled, by /etc/systemd/system/multi-user.target.wants/ssh.service -> /lib/systemd/system/ssh.service"
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "avahi-daemon.service", state = "masked" }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert_eq!(
        ev,
        "systemctl is-enabled avahi-daemon.service: masked, by /etc/systemd/system/avahi-daemon.service -> /dev/null"
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "cups", state = "disabled" }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "cups", state = "masked" }"#,
        &[],
    );
    assert_eq!(s, "fail", "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "getty@.service", state = "enabled" }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "service", unit = "telnet.socket", state = "disabled" }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert_eq!(
        ev,
        "systemctl is-enabled telnet.socket: not-found, telnet.socket is not installed (no unit file named telnet.socket)"
    );
}

#[test]
fn package_from_dpkg_status() {
    let root = Root::new();
    root.write(
        "/var/lib/dpkg/status",
        "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\n\
         Description: ssh\n more text\n\n\
         Package: telnet\nStatus: deinstall ok config-files\nVersion: 0.17-44\n",
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "package", name = "openssh-server", installed = true }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert_eq!(
        ev,
        "openssh-server 1:9.2p1-2+deb12u3 install ok installed (/var/lib/dpkg/status:1)"
    );
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "package", name = "telnet", installed = false }"#,
        &[],
    );
    assert_eq!(s, "pass", "{ev}");
    assert!(ev.contains("deinstall ok config-files"), "{ev}");
    let (s, ev) = status_of(
        &root,
        r#"{ kind = "package", name = "nis", installed = true }"#,
        &[],
    );
    assert_eq!(s, "fail", "{ev}");
    assert_eq!(ev, "nis not in the dpkg database (/var/lib/dpkg/status)");
    let empty = Root::new();
    let (s, ev) = status_of(
        &empty,
        r#"{ kind = "package", name = "nis", installed = false }"#,
        &[],
    );
    assert_eq!(s, "skipped", "{ev}");
}

#[test]
fn failures_set_the_exit_code() {
    let root = service_root();
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(
        dir.path(),
        &(rule(
            "ssh-enabled",
            r#"{ kind = "service", unit = "ssh", state = "enabled" }"#,
        ) + &rule(
            "cups-masked",
            r#"{ kind = "service", unit = "cups", state = "masked" }"#,
        )),
    );
    let (code, report) = check_json(root.path(), &b, &[]);
    assert_eq!(code, 1, "{report:#}");
    assert_eq!(result(&report, "ssh-enabled")["status"], "pass");
    assert_eq!(result(&report, "cups-masked")["status"], "fail");
}
