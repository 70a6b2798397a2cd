//! End-to-end tests of `plumb fim init|check` on real trees in temporary
//! directories, with the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{Root, plumb};
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Runs with a deadline so a scanner that blocks (on a FIFO, a loop) fails
/// the test instead of hanging it.
fn run_limited(cmd: &mut Command) -> (i32, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        if t0.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("plumb did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A checked root, its baseline and a state directory outside the root.
struct Fix {
    root: Root,
    state: tempfile::TempDir,
}

impl Fix {
    fn new(fims: &str) -> Fix {
        let f = Fix {
            root: Root::new(),
            state: tempfile::tempdir().unwrap(),
        };
        std::fs::write(
            f.state.path().join("b.toml"),
            format!("schema = 1\nid = \"t\"\nversion = 1\n\n{fims}"),
        )
        .unwrap();
        f
    }

    fn db(&self) -> PathBuf {
        self.state.path().join("fim.db")
    }

    fn cmd(&self, sub: &str) -> Command {
        let mut c = plumb();
        c.args(["fim", sub, "--baseline"])
            .arg(self.state.path().join("b.toml"))
            .arg("--root")
            .arg(self.root.path())
            .arg("--db")
            .arg(self.db());
        c
    }

    fn init(&self) -> String {
        let (code, out, err) = run_limited(&mut self.cmd("init"));
        assert_eq!(code, 0, "init failed: {out}\n{err}");
        out
    }

    fn check(&self, extra: &[&str]) -> (i32, Value) {
        let (code, out, err) =
            run_limited(self.cmd("check").args(["--format", "json"]).args(extra));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| {
            panic!("not JSON ({e}); exit {code}\nstdout:\n{out}\nstderr:\n{err}")
        });
        (code, v)
    }

    fn sql(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.db()).unwrap()
    }
}

fn paths(v: &Value, kind: &str) -> Vec<String> {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["change"] == kind)
        .map(|c| {
            c["path"]
                .as_str()
                .map_or_else(|| c["path"].to_string(), str::to_string)
        })
        .collect()
}

fn change<'a>(v: &'a Value, path: &str) -> &'a Value {
    v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no change for {path} in {v:#}"))
}

fn fields(v: &Value, path: &str) -> Vec<String> {
    change(v, path)["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f.as_str().unwrap().to_string())
        .collect()
}

const ETC: &str = "[[fim]]\npath = \"/etc\"\n";

fn db_key(p: &str) -> Vec<u8> {
    p.bytes().map(|b| if b == b'/' { 0 } else { b }).collect()
}

#[test]
fn no_change_exits_0_and_changes_exit_1_with_fields() {
    let f = Fix::new(ETC);
    f.root.write("/etc/passwd", "root:x:0:0::/root:/bin/sh\n");
    f.root.write("/etc/hosts", "127.0.0.1 localhost\n");
    f.init();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 0, "{v:#}");
    assert_eq!(v["schema"], 1);
    assert_eq!(v["scanned"], 3);
    assert!(v["changes"].as_array().unwrap().is_empty());
    assert_eq!(v["db_digest"].as_str().unwrap().len(), 64);

    f.root.write(
        "/etc/passwd",
        "root:x:0:0::/root:/bin/bash\nnew:x:1:1::/:/bin/sh\n",
    );
    let (code, v) = f.check(&[]);
    assert_eq!(code, 1);
    let fl = fields(&v, "/etc/passwd");
    for want in ["sha256", "size", "mtime"] {
        assert!(fl.contains(&want.to_string()), "{fl:?}");
    }
    let c = change(&v, "/etc/passwd");
    assert_eq!(c["change"], "modified");
    assert_eq!(c["old"]["size"], 26);
    assert_eq!(c["new"]["size"], 49);
    assert_ne!(c["old"]["sha256"], c["new"]["sha256"]);
    assert_eq!(c["severity"], "medium");
    // Text output: one line per change with the fields, and a summary.
    let (code, out, _) = run_limited(&mut f.cmd("check"));
    assert_eq!(code, 1);
    assert!(
        out.lines()
            .any(|l| l.starts_with("modified  /etc/passwd") && l.contains("size 26 -> 49")),
        "{out}"
    );
    assert!(
        out.contains("3 scanned: 0 added, 0 removed, 1 modified"),
        "{out}"
    );
}

#[test]
fn update_then_check_shows_no_change() {
    let f = Fix::new(ETC);
    f.root.write("/etc/a", "1");
    f.init();
    f.root.write("/etc/a", "22");
    f.root.write("/etc/b", "new");
    let (code, v) = f.check(&["--update"]);
    assert_eq!(code, 1);
    assert_eq!(v["updated"], true);
    assert_eq!(paths(&v, "added"), ["/etc/b"]);
    let (code, v2) = f.check(&[]);
    assert_eq!(code, 0, "{v2:#}");
    assert!(v2["tamper"].as_array().unwrap().is_empty());
    // The digest printed by the update is the one the database now holds.
    assert_eq!(v["db_digest"], v2["db_digest"]);
    let (code, v3) = f.check(&["--verify", "metadata"]);
    assert_eq!(code, 0, "{v3:#}");
}

#[test]
fn content_changed_with_mtime_restored_is_found_by_full_verify() {
    let f = Fix::new(ETC);
    let p = f.root.write("/etc/shadow", "root:HASH1:19000::::::\n");
    let mtime = std::fs::metadata(&p).unwrap().modified().unwrap();
    f.init();
    std::fs::write(&p, "root:HASH2:19000::::::\n").unwrap(); // same size
    let file = std::fs::File::options().write(true).open(&p).unwrap();
    file.set_times(std::fs::FileTimes::new().set_modified(mtime))
        .unwrap();
    drop(file);
    let (code, v) = f.check(&["--verify", "full"]);
    assert_eq!(code, 1);
    let fl = fields(&v, "/etc/shadow");
    assert!(fl.contains(&"sha256".to_string()), "{fl:?}");
    assert!(!fl.contains(&"mtime".to_string()), "{fl:?}");
    assert!(!fl.contains(&"size".to_string()), "{fl:?}");
    // Metadata verify still re-hashes: the ctime moved (it cannot be put back).
    let (_, v) = f.check(&["--verify", "metadata"]);
    assert!(fields(&v, "/etc/shadow").contains(&"sha256".to_string()));
}

#[test]
fn metadata_verify_reuses_hashes_of_unchanged_files() {
    let f = Fix::new(ETC);
    f.root.write("/etc/a", "same");
    f.root.write("/etc/b", "before");
    f.init();
    f.root.write("/etc/b", "after!");
    let (code, v) = f.check(&["--verify", "metadata"]);
    assert_eq!(code, 1);
    assert_eq!(v["verify"], "metadata");
    assert_eq!(paths(&v, "modified"), ["/etc/b"]);
    assert!(fields(&v, "/etc/b").contains(&"sha256".to_string()));
}

#[test]
fn replaced_by_symlink_renamed_chmod_chown() {
    let f = Fix::new(ETC);
    f.root.write("/etc/target", "t");
    f.root.write("/etc/old-name", "r");
    f.root.write("/etc/perm", "p");
    f.root.write("/etc/owner", "o");
    f.init();
    std::fs::remove_file(f.root.p("/etc/target")).unwrap();
    f.root.symlink("/etc/owner", "/etc/target");
    std::fs::rename(f.root.p("/etc/old-name"), f.root.p("/etc/new-name")).unwrap();
    f.root.chmod("/etc/perm", 0o4755);
    std::os::unix::fs::lchown(f.root.p("/etc/owner"), Some(1234), Some(5678)).unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 1);
    let fl = fields(&v, "/etc/target");
    for want in ["sha256", "type", "link_target"] {
        assert!(fl.contains(&want.to_string()), "{fl:?}");
    }
    assert_eq!(change(&v, "/etc/target")["new"]["type"], "symlink");
    assert_eq!(
        change(&v, "/etc/target")["new"]["link_target"],
        "/etc/owner"
    );
    assert_eq!(paths(&v, "removed"), ["/etc/old-name"]);
    assert_eq!(paths(&v, "added"), ["/etc/new-name"]);
    assert_eq!(change(&v, "/etc/perm")["old"]["mode"], "0644");
    assert_eq!(change(&v, "/etc/perm")["new"]["mode"], "4755");
    let fl = fields(&v, "/etc/owner");
    assert!(
        fl.contains(&"uid".to_string()) && fl.contains(&"gid".to_string()),
        "{fl:?}"
    );
    assert_eq!(change(&v, "/etc/owner")["new"]["uid"], 1234);
}

#[test]
fn special_files_are_recorded_never_opened_or_followed() {
    let f = Fix::new(ETC);
    let r = &f.root;
    r.write("/etc/plain", "x");
    r.write("/etc/empty", "");
    nix::unistd::mkfifo(
        &r.p("/etc/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(r.p("/etc/sock")).unwrap();
    r.symlink("loop-b", "/etc/loop-a");
    r.symlink("loop-a", "/etc/loop-b");
    r.symlink("/", "/etc/to-root");
    r.symlink("..", "/etc/up");
    r.symlink("/nonexistent/file", "/etc/dangling");
    std::fs::hard_link(r.p("/etc/plain"), r.p("/etc/hard")).unwrap();
    // Sparse: 64 MiB hole then one byte.
    let sparse = std::fs::File::create(r.p("/etc/sparse")).unwrap();
    sparse.set_len(64 << 20).unwrap();
    drop(sparse);
    r.write("/etc/new\nline", "n");
    let bad = r.p("/etc").join(OsStr::from_bytes(b"bad-\xff\xfe-name"));
    std::fs::write(&bad, "b").unwrap();
    let mut deep = String::from("/etc/deep");
    for _ in 0..200 {
        deep.push_str("/d");
    }
    r.write(&format!("{deep}/leaf"), "leaf");
    f.init();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 0, "{v:#}");
    // /etc + 14 names (one the deep dir) + 200 levels + leaf
    assert_eq!(v["scanned"], 1 + 14 + 200 + 1, "{v:#}");

    let c = f.sql();
    let kind = |p: &[u8]| -> (String, Option<Vec<u8>>) {
        let k: Vec<u8> = p.iter().map(|&b| if b == b'/' { 0 } else { b }).collect();
        c.query_row(
            "SELECT kind, hash FROM entries WHERE path = ?1",
            [k],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .unwrap()
    };
    assert_eq!(kind(b"/etc/fifo"), ("fifo".into(), None));
    assert_eq!(kind(b"/etc/sock"), ("socket".into(), None));
    assert_eq!(kind(b"/etc/to-root").0, "symlink");
    assert_eq!(kind(b"/etc/loop-a").0, "symlink");
    assert_eq!(kind(b"/etc/dangling").0, "symlink");
    assert_eq!(kind(b"/etc/empty").1.unwrap().len(), 32);
    assert_eq!(kind(b"/etc/sparse").1.unwrap().len(), 32);
    assert_eq!(kind(b"/etc/new\nline").0, "file");
    assert_eq!(kind(b"/etc/bad-\xff\xfe-name").0, "file");
    let nlink: i64 = c
        .query_row(
            "SELECT nlink FROM entries WHERE path = ?1",
            [db_key("/etc/hard")],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(nlink, 2);

    // The path that is not UTF-8 is reported losslessly, as an object.
    std::fs::write(&bad, "changed").unwrap();
    std::fs::write(r.p("/etc/new\nline"), "changed").unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 1);
    let odd = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"].is_object())
        .unwrap_or_else(|| panic!("{v:#}"));
    assert_eq!(odd["path"]["hex"], "2f6574632f6261642dfffe2d6e616d65");
    assert_eq!(change(&v, "/etc/new\nline")["change"], "modified");
    let (_, out, _) = run_limited(&mut f.cmd("check"));
    assert!(
        out.contains("/etc/new\\nline"),
        "newline escaped in text: {out}"
    );
}

#[test]
fn forged_database_rows_are_reported_as_tampering() {
    let f = Fix::new(ETC);
    f.root.write("/etc/a", "aaa");
    f.root.write("/etc/b", "bbb");
    f.root.write("/etc/c", "ccc");
    f.init();
    let pristine = std::fs::read(f.db()).unwrap();
    let restore = || std::fs::write(f.db(), &pristine).unwrap();
    let tamper = |v: &Value| -> String { v["tamper"].to_string() };

    // 1. Swap two rows' hashes.
    {
        let c = f.sql();
        let ha: Vec<u8> = c
            .query_row(
                "SELECT hash FROM entries WHERE path = ?1",
                [db_key("/etc/a")],
                |r| r.get(0),
            )
            .unwrap();
        let hb: Vec<u8> = c
            .query_row(
                "SELECT hash FROM entries WHERE path = ?1",
                [db_key("/etc/b")],
                |r| r.get(0),
            )
            .unwrap();
        c.execute(
            "UPDATE entries SET hash = ?1 WHERE path = ?2",
            rusqlite::params![hb, db_key("/etc/a")],
        )
        .unwrap();
        c.execute(
            "UPDATE entries SET hash = ?1 WHERE path = ?2",
            rusqlite::params![ha, db_key("/etc/b")],
        )
        .unwrap();
    }
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2, "{v:#}");
    let t = tamper(&v);
    assert!(
        t.contains("/etc/a") && t.contains("/etc/b") && t.contains("does not verify"),
        "{t}"
    );
    assert!(
        v["changes"].as_array().unwrap().is_empty(),
        "forged rows are not diffed: {v:#}"
    );
    // --update is refused while the database is tampered with.
    let (code, v) = f.check(&["--update"]);
    assert_eq!(code, 2);
    assert_eq!(v["updated"], false);
    restore();

    // 2. Delete a row.
    f.sql()
        .execute("DELETE FROM entries WHERE path = ?1", [db_key("/etc/b")])
        .unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2);
    assert!(tamper(&v).contains("deleted"), "{v:#}");
    restore();

    // 3. Insert a row: a copy of /etc/a's row under a new path.
    f.sql()
        .execute(
            "INSERT INTO entries SELECT ?1, rule, kind, mode, uid, gid, size, mtime_ns, ctime_ns, inode, nlink, \
             hash_alg, hash, link_target, xattrs, state, error, mac FROM entries WHERE path = ?2",
            rusqlite::params![db_key("/etc/zz"), db_key("/etc/a")],
        )
        .unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2);
    let t = tamper(&v);
    assert!(t.contains("/etc/zz") && t.contains("inserted"), "{t}");
    restore();

    // 4. Replay: an older, validly sealed row put back after an update.
    let old_row: Vec<u8> = f
        .sql()
        .query_row(
            "SELECT hash FROM entries WHERE path = ?1",
            [db_key("/etc/c")],
            |r| r.get(0),
        )
        .unwrap();
    let old_mac: Vec<u8> = f
        .sql()
        .query_row(
            "SELECT mac FROM entries WHERE path = ?1",
            [db_key("/etc/c")],
            |r| r.get(0),
        )
        .unwrap();
    let old_cols: (i64, i64, i64, i64) = f
        .sql()
        .query_row(
            "SELECT size, mtime_ns, ctime_ns, inode FROM entries WHERE path = ?1",
            [db_key("/etc/c")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    f.root.write("/etc/c", "cccc");
    assert_eq!(f.check(&["--update"]).0, 1);
    f.sql()
        .execute(
            "UPDATE entries SET hash = ?1, mac = ?2, size = ?3, mtime_ns = ?4, ctime_ns = ?5, inode = ?6 WHERE path = ?7",
            rusqlite::params![old_row, old_mac, old_cols.0, old_cols.1, old_cols.2, old_cols.3, db_key("/etc/c")],
        )
        .unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2, "{v:#}");
    assert!(tamper(&v).contains("do not add up"), "{v:#}");
    restore();

    // 5. The seal edited.
    f.sql()
        .execute("UPDATE seal SET rows = rows + 1", [])
        .unwrap();
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2);
    assert!(tamper(&v).contains("seal"), "{v:#}");
    restore();

    // 6. The key file missing: a clear error, exit 2.
    let (code, v) = f.check(&[]);
    assert_eq!(code, 1, "/etc/c changed since the pristine copy: {v:#}");
    assert!(v["tamper"].as_array().unwrap().is_empty());
    std::fs::rename(
        f.state.path().join("fim.db.key"),
        f.state.path().join("moved"),
    )
    .unwrap();
    let (code, out, err) = run_limited(f.cmd("check").args(["--format", "json"]));
    assert_eq!(code, 2);
    assert!(out.is_empty());
    assert!(err.contains("fim.db.key is missing"), "{err}");
}

#[test]
fn init_reuses_the_key_and_never_overwrites_it() {
    let f = Fix::new(ETC);
    f.root.write("/etc/a", "1");
    f.init();
    let key = std::fs::read(f.state.path().join("fim.db.key")).unwrap();
    let mode = std::fs::metadata(f.state.path().join("fim.db.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    f.root.write("/etc/b", "2");
    f.init();
    assert_eq!(
        std::fs::read(f.state.path().join("fim.db.key")).unwrap(),
        key
    );
    assert_eq!(f.check(&[]).0, 0);
    // --key names another file.
    let other = f.state.path().join("other.key");
    let (code, _, err) = run_limited(f.cmd("init").arg("--key").arg(&other));
    assert_eq!(code, 0, "{err}");
    assert!(other.exists());
    let (code, _, _) = run_limited(f.cmd("check").arg("--key").arg(&other));
    assert_eq!(code, 0);
    // The database is now sealed with the other key: the default key does not verify it.
    let (code, v) = f.check(&[]);
    assert_eq!(code, 2, "{v:#}");
}

#[test]
fn nested_watches_most_specific_wins() {
    let f = Fix::new(
        "[[fim]]\npath = \"/etc\"\nattributes = [\"mode\"]\nseverity = \"low\"\nexclude = [\"**/*.tmp\"]\n\n\
         [[fim]]\npath = \"/etc/ssh\"\nseverity = \"critical\"\nexclude = [\"**/*.bak\"]\n",
    );
    f.root.write("/etc/hosts", "h");
    f.root.write("/etc/x.tmp", "t");
    f.root.write("/etc/ssh/sshd_config", "PermitRootLogin no\n");
    f.root.write("/etc/ssh/a.tmp", "t");
    f.root.write("/etc/ssh/b.bak", "b");
    f.init();
    let c = f.sql();
    let rule = |p: &str| -> Option<String> {
        c.query_row(
            "SELECT rule FROM entries WHERE path = ?1",
            [db_key(p)],
            |r| r.get(0),
        )
        .ok()
    };
    assert_eq!(rule("/etc/hosts").as_deref(), Some("/etc"));
    assert_eq!(rule("/etc/ssh").as_deref(), Some("/etc/ssh"));
    assert_eq!(rule("/etc/ssh/sshd_config").as_deref(), Some("/etc/ssh"));
    assert_eq!(
        rule("/etc/x.tmp"),
        None,
        "outer exclude applies outside /etc/ssh"
    );
    assert_eq!(
        rule("/etc/ssh/a.tmp").as_deref(),
        Some("/etc/ssh"),
        "outer exclude does not apply inside"
    );
    assert_eq!(rule("/etc/ssh/b.bak"), None);
    drop(c);
    f.root.write("/etc/hosts", "changed content");
    f.root
        .write("/etc/ssh/sshd_config", "PermitRootLogin yes\n");
    let (code, v) = f.check(&[]);
    assert_eq!(code, 1);
    // /etc watches mode only: a content change there is not drift.
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["path"] != "/etc/hosts"),
        "{v:#}"
    );
    let c = change(&v, "/etc/ssh/sshd_config");
    assert_eq!(c["severity"], "critical");
    assert_eq!(c["rule"], "/etc/ssh");
    assert!(fields(&v, "/etc/ssh/sshd_config").contains(&"sha256".to_string()));

    // Lint: an outer exclude covering an inner watch is refused.
    let bad = f.state.path().join("bad.toml");
    std::fs::write(
        &bad,
        "schema = 1\nid = \"t\"\nversion = 1\n[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/ssh\"]\n[[fim]]\npath = \"/etc/ssh\"\n",
    )
    .unwrap();
    let (code, _, err) = run_limited(plumb().args(["baseline", "lint"]).arg(&bad));
    assert_eq!(code, 2);
    assert!(
        err.contains("fim[1].path") && err.contains("exclude \"/etc/ssh\""),
        "{err}"
    );
}

#[test]
fn sha512_on_request() {
    let f = Fix::new("[[fim]]\npath = \"/etc\"\nattributes = [\"sha512\", \"size\"]\n");
    f.root.write("/etc/a", "1");
    f.init();
    f.root.write("/etc/a", "2");
    let (_, v) = f.check(&[]);
    assert_eq!(fields(&v, "/etc/a"), ["sha512"]);
    assert_eq!(
        change(&v, "/etc/a")["new"]["sha512"]
            .as_str()
            .unwrap()
            .len(),
        128
    );
}

/// Runs plumb as `nobody` (uid/gid 65534); the caller needs root.
fn as_nobody(mut c: Command) -> Command {
    c.uid(65534).gid(65534);
    c
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// A fixture whose root and state are traversable by nobody.
fn nobody_fix(fims: &str) -> Fix {
    let f = Fix::new(fims);
    std::fs::set_permissions(f.root.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(f.state.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    f
}

#[test]
#[ignore = "needs root: runs plumb as nobody"]
fn unreadable_files_are_per_file_errors_not_fatal() {
    common::require_root("runs plumb as nobody");
    let f = nobody_fix(ETC);
    f.root.write("/etc/public", "p");
    f.root.write("/etc/shadow", "secret");
    f.root.chmod("/etc/shadow", 0o600);
    f.root.write("/etc/private/inner", "i");
    f.root.chmod("/etc/private", 0o700);
    let (code, out, err) = run_limited(&mut as_nobody(f.cmd("init")));
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        err.contains("/etc/shadow: cannot open: Permission denied"),
        "{err}"
    );
    assert!(
        err.contains("/etc/private: cannot open directory: Permission denied"),
        "{err}"
    );
    let (code, out, err) = run_limited(as_nobody(f.cmd("check")).args(["--format", "json"]));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(code, 1, "errors mean nothing proves the files hold: {v:#}");
    let errs = v["errors"].to_string();
    assert!(
        errs.contains("/etc/shadow") && errs.contains("/etc/private"),
        "{errs}"
    );
    assert!(v["changes"].as_array().unwrap().is_empty(), "{v:#}");
}

#[test]
#[ignore = "needs root: runs plumb as nobody"]
fn rows_below_an_unlistable_directory_are_kept_not_removed() {
    common::require_root("runs plumb as nobody");
    let f = nobody_fix(ETC);
    f.root.write("/etc/private/inner", "i");
    f.root.chmod("/etc/private", 0o700);
    // Root records everything; nobody then cannot list /etc/private.
    f.init();
    for p in [f.db(), f.state.path().join("fim.db.key")] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    let (code, out, _) =
        run_limited(as_nobody(f.cmd("check")).args(["--format", "json", "--update"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(code, 1);
    assert!(paths(&v, "removed").is_empty(), "{v:#}");
    assert!(v["errors"].to_string().contains("/etc/private"), "{v:#}");
    // The kept row survives the update. Back to root's: root refuses a seal
    // key another user owns (that user could have rewritten it).
    for p in [f.db(), f.state.path().join("fim.db.key")] {
        std::os::unix::fs::chown(&p, Some(0), Some(0)).unwrap();
    }
    let (code, v) = f.check(&[]);
    assert_eq!(code, 0, "{v:#}");
}

#[test]
#[ignore = "needs root: runs plumb as nobody"]
fn rows_below_unstattable_siblings_are_all_kept() {
    common::require_root("runs plumb as nobody");
    let f = nobody_fix(ETC);
    f.root.write("/etc/a/x", "1");
    f.root.write("/etc/b/y", "2");
    f.root.write("/etc/c", "3");
    f.init();
    for p in [f.db(), f.state.path().join("fim.db.key")] {
        std::os::unix::fs::chown(&p, Some(65534), Some(65534)).unwrap();
    }
    // Readable but not searchable: nobody lists /etc but cannot lstat inside it.
    f.root.chmod("/etc", 0o744);
    let (code, out, err) = run_limited(as_nobody(f.cmd("check")).args(["--format", "json"]));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|_| panic!("{out}\n{err}"));
    assert_eq!(code, 1);
    assert!(paths(&v, "removed").is_empty(), "{v:#}");
    let errs = v["errors"].to_string();
    assert!(
        errs.contains("/etc/a") && errs.contains("/etc/b") && errs.contains("/etc/c"),
        "{errs}"
    );
}

#[test]
fn excluded_trees_are_not_descended() {
    let f = nobody_fix(
        "[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\", \"**/*.swp\", \"/etc/mtab\"]\n",
    );
    f.root.write("/etc/keep", "k");
    f.root.write("/etc/a/.x.swp", "s");
    f.root.write("/etc/mtab", "m");
    f.root.write("/etc/skip/locked/secret", "s");
    nix::unistd::mkfifo(
        &f.root.p("/etc/skip/fifo"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    f.root.chmod("/etc/skip/locked", 0o700);
    f.root.chmod("/etc/skip", 0o700);
    let cmd = if is_root() {
        as_nobody(f.cmd("init"))
    } else {
        f.cmd("init")
    };
    let (code, out, err) = run_limited(&mut { cmd });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("0 errors"),
        "the excluded tree was entered: {out}\n{err}"
    );
    let c = f.sql();
    let keys: Vec<Vec<u8>> = c
        .prepare("SELECT path FROM entries ORDER BY path")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let shown: Vec<String> = keys
        .iter()
        .map(|k| {
            String::from_utf8_lossy(
                &k.iter()
                    .map(|&b| if b == 0 { b'/' } else { b })
                    .collect::<Vec<_>>(),
            )
            .into_owned()
        })
        .collect();
    assert_eq!(shown, ["/etc", "/etc/a", "/etc/keep"], "{shown:?}");
}

#[test]
fn usage_errors_exit_2() {
    let f = Fix::new(ETC);
    f.root.write("/etc/a", "1");
    // No database yet.
    let (code, _, err) = run_limited(&mut f.cmd("check"));
    assert_eq!(code, 2);
    assert!(err.contains("does not exist"), "{err}");
    // A baseline without [[fim]].
    let nofim = Fix::new("");
    let (code, _, err) = run_limited(&mut nofim.cmd("init"));
    assert_eq!(code, 2);
    assert!(err.contains("no [[fim]]"), "{err}");
    // Not a database.
    std::fs::write(f.db(), "not sqlite").unwrap();
    let (code, _, err) = run_limited(&mut f.cmd("check"));
    assert_eq!(code, 2, "{err}");
}

#[test]
fn watch_root_behind_a_symlink_is_not_followed() {
    let f = Fix::new("[[fim]]\npath = \"/srv/data\"\n");
    f.root.write("/elsewhere/data/file", "x");
    f.root.symlink("elsewhere", "/srv");
    let (code, out, err) = run_limited(&mut f.cmd("init"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("0 entries"), "{out}");
    assert!(err.contains("watch root not reached"), "{err}");
}

#[test]
fn database_and_key_inside_the_watched_tree_are_not_recorded() {
    let f = Fix::new("[[fim]]\npath = \"/var\"\n");
    f.root.write("/var/lib/x", "x");
    let db = f.root.p("/var/lib/fim.db");
    let (code, _, err) = run_limited(
        plumb()
            .args(["fim", "init", "--baseline"])
            .arg(f.state.path().join("b.toml"))
            .arg("--root")
            .arg(f.root.path())
            .arg("--db")
            .arg(&db),
    );
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = run_limited(
        plumb()
            .args(["fim", "check", "--format", "json", "--baseline"])
            .arg(f.state.path().join("b.toml"))
            .arg("--root")
            .arg(f.root.path())
            .arg("--db")
            .arg(&db),
    );
    // The directory holding the database changes with it (documented), but the
    // database, its WAL and the key are never recorded.
    assert!(code <= 1, "{out}\n{err}");
    assert!(!out.contains("fim.db"), "{out}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["changes"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["path"] == "/var/lib"),
        "{v:#}"
    );
}
