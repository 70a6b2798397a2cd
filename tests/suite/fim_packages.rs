//! File integrity that knows the package manager: `plumb fim check` and the
//! agent on roots with a dpkg database made by the test (status,
//! info/*.md5sums, conffiles), judging each change against what the owning
//! package recorded (docs/fim.md, "Package verification").
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Agent, Root, plumb};
use md5::Digest as _;
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn md5(b: &[u8]) -> String {
    md5::Md5::digest(b)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The non-UTF-8 file name shipped by `tools`.
const ODD: &[u8] = b"/usr/share/tools/caf\xe9";

/// Writes `content` at the in-root byte path `p`.
fn put(root: &Path, p: &[u8], content: &[u8]) {
    let h = root.join(OsStr::from_bytes(&p[1..]));
    std::fs::create_dir_all(h.parent().unwrap()).unwrap();
    std::fs::write(h, content).unwrap();
}

/// Replaces a file as dpkg unpacks: write a temporary beside, rename over.
fn replace(root: &Path, p: &[u8], content: &[u8]) {
    let mut tmp = p.to_vec();
    tmp.extend_from_slice(b".dpkg-new");
    put(root, &tmp, content);
    std::fs::rename(
        root.join(OsStr::from_bytes(&tmp[1..])),
        root.join(OsStr::from_bytes(&p[1..])),
    )
    .unwrap();
}

/// The files of package `tools` at `version` (contents depend on it).
fn tools_files(version: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut v: Vec<(Vec<u8>, Vec<u8>)> = (0..20)
        .map(|i| {
            (
                format!("/usr/bin/tool{i}").into_bytes(),
                format!("tool {i} {version}\n").into_bytes(),
            )
        })
        .collect();
    v.push((
        b"/usr/share/tools/a b\nc".to_vec(),
        format!("odd {version}").into_bytes(),
    ));
    v.push((ODD.to_vec(), format!("latin1 {version}").into_bytes()));
    v
}

/// Writes the dpkg database: `tools` at `version` (its md5sums list as
/// md5sum writes it: the name with a newline escaped), `openssh-server`
/// with a conffile, and `other` owning /usr/bin/cat.
fn dpkg_db(root: &Path, version: &str) {
    let mut sums = Vec::new();
    for (p, c) in tools_files(version) {
        let name = &p[1..];
        if name.contains(&b'\n') {
            let escaped: Vec<u8> = name
                .iter()
                .flat_map(|&b| if b == b'\n' { b"\\n".to_vec() } else { vec![b] })
                .collect();
            sums.extend_from_slice(format!("\\{}  ", md5(&c)).as_bytes());
            sums.extend_from_slice(&escaped);
        } else {
            sums.extend_from_slice(format!("{}  ", md5(&c)).as_bytes());
            sums.extend_from_slice(name);
        }
        sums.push(b'\n');
    }
    put(root, b"/var/lib/dpkg/info/tools.md5sums", &sums);
    // Its file list: directories are owned through it only.
    let mut list = b"/.\n/usr\n/usr/bin\n/usr/share\n/usr/share/tools\n".to_vec();
    for (p, _) in tools_files(version) {
        if !p.contains(&b'\n') {
            list.extend_from_slice(&p);
            list.push(b'\n');
        }
    }
    put(root, b"/var/lib/dpkg/info/tools.list", &list);
    put(
        root,
        b"/var/lib/dpkg/info/other:amd64.md5sums",
        format!("{}  usr/bin/cat\n", md5(b"cat 2.0\n")).as_bytes(),
    );
    put(
        root,
        b"/var/lib/dpkg/info/openssh-server.md5sums",
        format!("{}  usr/sbin/sshd\n", md5(b"sshd\n")).as_bytes(),
    );
    let status = format!(
        "Package: tools\nStatus: install ok installed\nVersion: {version}\n\n\
         Package: other\nStatus: install ok installed\nArchitecture: amd64\nVersion: 2.0\n\n\
         Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2\n\
         Conffiles:\n /etc/ssh/sshd_config {}\n",
        md5(b"Port 22\n")
    );
    put(root, b"/var/lib/dpkg/status", status.as_bytes());
}

/// A root with every package at its first version installed.
fn installed(root: &Path) {
    for (p, c) in tools_files("1.0") {
        put(root, &p, &c);
    }
    put(root, b"/usr/bin/cat", b"cat 2.0\n");
    put(root, b"/usr/sbin/sshd", b"sshd\n");
    put(root, b"/etc/ssh/sshd_config", b"Port 22\n");
    dpkg_db(root, "1.0");
}

const WATCHES: &str = "[[fim]]\npath = \"/usr\"\nseverity = \"medium\"\nrealtime = true\ndomains = [25]\n\n\
                       [[fim]]\npath = \"/etc\"\nseverity = \"medium\"\nrealtime = true\ndomains = [25]\n";

fn change<'a>(changes: &'a [Value], path: &str) -> &'a Value {
    changes
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no change for {path}: {changes:#?}"))
}

/// An upgrade of `tools` whose files all match the new database is
/// verified (severity info); a binary put back from an older version and a
/// file matching nothing are not (high), naming the digest expected, the
/// package and its version; an unowned file keeps the watch's severity and
/// has no verdict; an edited conffile is reported as such, not raised.
#[test]
fn fim_check_judges_each_change_against_the_package_database() {
    let root = Root::new();
    let r = root.path();
    installed(r);
    let state = tempfile::tempdir().unwrap();
    let baseline = state.path().join("b.toml");
    std::fs::write(
        &baseline,
        format!("schema = 1\nid = \"t\"\nversion = 1\n\n{WATCHES}"),
    )
    .unwrap();
    let db = state.path().join("fim.db");
    let args = |cmd: &mut Command| {
        cmd.arg("--baseline")
            .arg(&baseline)
            .arg("--root")
            .arg(r)
            .arg("--db")
            .arg(&db);
    };
    let mut init = plumb();
    init.args(["fim", "init"]);
    args(&mut init);
    let (code, _, err) = common::run(&mut init);
    assert_eq!(code, 0, "{err}");

    // The upgrade to 2.0, as dpkg does it.
    for (p, c) in tools_files("2.0") {
        replace(r, &p, &c);
    }
    dpkg_db(r, "2.0");
    // tool3 put back at its older version; tool4 matching nothing.
    replace(r, b"/usr/bin/tool3", b"tool 3 1.0\n");
    replace(r, b"/usr/bin/tool4", b"evil\n");
    put(r, b"/usr/bin/unowned", b"who?\n");
    put(r, b"/etc/ssh/sshd_config", b"Port 2222\n");

    let mut check = plumb();
    check.args(["fim", "check", "--format", "json"]);
    args(&mut check);
    let (code, out, err) = common::run(&mut check);
    assert_eq!(code, 1, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    let changes = report["changes"].as_array().unwrap();
    for i in (0..20).filter(|i| ![3, 4].contains(i)) {
        let c = change(changes, &format!("/usr/bin/tool{i}"));
        assert_eq!(c["package"]["verified"], true, "{c:#}");
        assert_eq!(c["package"]["name"], "tools");
        assert_eq!(c["package"]["version"], "2.0");
        assert_eq!(c["severity"], "info", "{c:#}");
    }
    for dir in ["/usr/bin", "/usr/share/tools"] {
        let d = change(changes, dir);
        assert_eq!(d["package"]["verified"], true, "{d:#}");
        assert_eq!(d["severity"], "info", "{d:#}");
    }
    let odd = change(changes, "/usr/share/tools/a b\nc");
    assert_eq!(odd["package"]["verified"], true, "{odd:#}");
    let latin = changes
        .iter()
        .find(|c| c["path"]["lossy"] == "/usr/share/tools/caf\u{fffd}")
        .unwrap_or_else(|| panic!("non-UTF-8 path: {changes:#?}"));
    assert_eq!(latin["package"]["verified"], true, "{latin:#}");

    let old = change(changes, "/usr/bin/tool3");
    assert_eq!(old["package"]["verified"], false, "{old:#}");
    assert_eq!(old["severity"], "high");
    let want = md5(b"tool 3 2.0\n");
    assert_eq!(old["package"]["expected_md5"], want.as_str());
    let ev = old["package"]["evidence"].as_str().unwrap();
    assert!(
        ev.contains(&want)
            && ev.contains("tools 2.0")
            && ev.contains("/var/lib/dpkg/info/tools.md5sums"),
        "{ev}"
    );
    let evil = change(changes, "/usr/bin/tool4");
    assert_eq!(evil["package"]["verified"], false);
    assert_eq!(evil["severity"], "high");
    assert_eq!(evil["package"]["md5"], md5(b"evil\n").as_str());

    let unowned = change(changes, "/usr/bin/unowned");
    assert!(unowned.get("package").is_none(), "{unowned:#}");
    assert_eq!(unowned["severity"], "medium");

    let conf = change(changes, "/etc/ssh/sshd_config");
    assert_eq!(conf["package"]["verified"], false, "{conf:#}");
    assert_eq!(conf["package"]["conffile"], true);
    assert_eq!(conf["package"]["name"], "openssh-server");
    assert_eq!(conf["severity"], "medium", "a local edit is not raised");

    let sum = &report["packages"];
    assert_eq!(sum["verified"], 22, "{sum:#}");
    assert_eq!(sum["unverified"], 3, "{sum:#}");
    assert_eq!(sum["unexplained"]["/usr"], 3, "{sum:#}");
    assert_eq!(sum["unexplained"]["/etc"], 1, "{sum:#}");

    // The same verdicts in text.
    let mut text = plumb();
    text.args(["fim", "check"]);
    args(&mut text);
    let (_, out, _) = common::run(&mut text);
    assert!(
        out.contains("package tools 2.0: NOT verified: MD5 "),
        "{out}"
    );
    assert!(out.contains("package tools 2.0: package-verified"), "{out}");
    assert!(
        out.contains(
            "packages: 26 changes: 22 package-verified, 4 unexplained (3 under /usr, 1 under /etc; 3 not matching their package)"
        ),
        "{out}"
    );
}

/// A root whose dpkg database cannot be read says so, and still reports
/// every change (without verdicts).
#[test]
fn an_unreadable_package_database_is_an_error_not_silence() {
    let root = Root::new();
    let r = root.path();
    installed(r);
    let state = tempfile::tempdir().unwrap();
    let baseline = state.path().join("b.toml");
    std::fs::write(
        &baseline,
        format!("schema = 1\nid = \"t\"\nversion = 1\n\n{WATCHES}"),
    )
    .unwrap();
    let db = state.path().join("fim.db");
    let run = |sub: &str| {
        let mut c = plumb();
        c.args(["fim", sub, "--format", "json"][..if sub == "init" { 2 } else { 4 }].iter())
            .arg("--baseline")
            .arg(&baseline)
            .arg("--root")
            .arg(r)
            .arg("--db")
            .arg(&db);
        common::run(&mut c)
    };
    assert_eq!(run("init").0, 0);
    replace(r, b"/usr/bin/tool1", b"x");
    // The status file replaced by a directory: not readable as a file.
    std::fs::remove_file(r.join("var/lib/dpkg/status")).unwrap();
    std::fs::create_dir(r.join("var/lib/dpkg/status")).unwrap();
    let (code, out, err) = run("check");
    assert_eq!(code, 1, "{err}");
    let report: Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["package_error"]
            .as_str()
            .unwrap()
            .contains("/var/lib/dpkg/status"),
        "{report:#}"
    );
    let c = change(report["changes"].as_array().unwrap(), "/usr/bin/tool1");
    assert!(c.get("package").is_none());
}

/// The agent end to end: a simulated upgrade of `tools` while dpkg holds
/// its lock (the test holds it, as dpkg would) is judged once the lock is
/// released, and every `fim_change` is verified, except the one binary
/// replaced by other content: not verified, severity high.
#[test]
fn the_agent_judges_an_upgrade_once_dpkg_settles() {
    let dir = tempfile::tempdir().unwrap();
    let p = |s: &str| dir.path().join(s);
    let r = p("root");
    installed(&r);
    std::fs::create_dir_all(p("proc")).unwrap();
    std::fs::write(
        p("baseline.toml"),
        format!("schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\n{WATCHES}"),
    )
    .unwrap();
    std::fs::write(
        p("agent.toml"),
        format!(
            "host_id = \"h\"\nroot = \"{}\"\nproc = \"{}\"\nstate_dir = \"{}\"\nbaselines = [\"{}\"]\nevents_file = \"{}\"\n",
            r.display(),
            p("proc").display(),
            p("state").display(),
            p("baseline.toml").display(),
            p("log/events.jsonl").display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(p("agent.toml"), std::fs::Permissions::from_mode(0o600)).unwrap();
    let events = || common::read_jsonl(&p("log/events.jsonl"));
    let wait_for = |what: &str, pred: &dyn Fn(&[Value]) -> bool| {
        let end = Instant::now() + Duration::from_secs(30);
        loop {
            let ev = events();
            if pred(&ev) {
                return ev;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}: {ev:#?}"
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    };
    let _agent = Agent(
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["agent", "--config"])
            .arg(p("agent.toml"))
            .env("PLUMB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    wait_for("a snapshot", &|ev| {
        ev.iter().any(|e| e["kind"] == "snapshot")
    });

    // dpkg's lock, held by this process (an open file description lock
    // conflicts with the record locks other processes ask about).
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(r.join("var/lib/dpkg/lock"))
        .unwrap();
    let fl = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    nix::fcntl::fcntl(&lock, nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)).unwrap();
    // Unpack: files first, the database last (as dpkg does).
    for (path, c) in tools_files("2.0") {
        replace(&r, &path, &c);
    }
    replace(&r, b"/usr/bin/tool7", b"#!/bin/sh\nexec /tmp/.x\n");
    std::thread::sleep(Duration::from_millis(800));
    assert!(
        !events().iter().any(|e| e["kind"] == "fim_change"),
        "nothing is judged while dpkg holds its lock"
    );
    dpkg_db(&r, "2.0");
    drop(lock);

    let ev = wait_for("22 fim_change events", &|ev| {
        ev.iter().filter(|e| e["kind"] == "fim_change").count() >= 22
    });
    let changes: Vec<&Value> = ev.iter().filter(|e| e["kind"] == "fim_change").collect();
    assert_eq!(changes.len(), 22, "{changes:#?}");
    for c in &changes {
        if c["path"] == "/usr/bin/tool7" {
            assert_eq!(c["package"]["verified"], false, "{c:#}");
            assert_eq!(c["severity"], "high", "{c:#}");
            let ev = c["package"]["evidence"].as_str().unwrap();
            assert!(
                ev.contains(&md5(b"tool 7 2.0\n")) && ev.contains("tools 2.0"),
                "{ev}"
            );
        } else {
            assert_eq!(c["package"]["verified"], true, "{c:#}");
            assert_eq!(c["package"]["version"], "2.0", "{c:#}");
            assert_eq!(c["severity"], "info", "{c:#}");
        }
    }
}
