//! A small FIM backend used by the daemon until the full `fim` module (with
//! its sealed database) is wired in: it walks the `[[fim]]` watches without
//! following symlinks, hashes regular files (SHA-256, streamed, through the
//! rate limiter, never opening FIFOs or devices), and keeps the known state
//! in `fim.db` (SQLite) under the state directory.

use super::{Depth, Integrity, Pass, Scope, Watches};
use crate::daemon::limits::RateLimiter;
use plumb_core::FimRule;
use plumb_core::baseline::FimAttribute;
use plumb_core::event::FimChangeEvent;
use rusqlite::{Connection, params};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// What one path looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rec {
    kind: &'static str,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    nlink: u64,
    sha256: Option<String>,
    link: Option<String>,
}

/// Rows to write when a pass is recorded.
#[derive(Debug, Default)]
pub struct Pending {
    upserts: Vec<(Vec<u8>, Rec)>,
    deletes: Vec<Vec<u8>>,
    /// Fresh watch roots this pass covered whole (now initialised).
    initialised_roots: Vec<Vec<u8>>,
}

/// The interim backend.
pub struct InterimFim {
    conn: Connection,
    root: PathBuf,
    watches: Watches,
    /// Watch roots added by a baseline change and not yet scanned whole:
    /// their files are recorded silently the first time (they are new to
    /// the agent, not new on the host), as for an empty database.
    fresh: Vec<Vec<u8>>,
}

impl std::fmt::Debug for InterimFim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InterimFim")
            .field("root", &self.root)
            .finish()
    }
}

fn kind_of(ft: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if ft.is_file() {
        "file"
    } else if ft.is_dir() {
        "dir"
    } else if ft.is_symlink() {
        "symlink"
    } else if ft.is_fifo() {
        "fifo"
    } else if ft.is_socket() {
        "socket"
    } else if ft.is_block_device() {
        "block_device"
    } else {
        "char_device"
    }
}

/// In-root path of `rel` as bytes: `/etc/x`.
fn disp(p: &[u8]) -> String {
    String::from_utf8_lossy(p).into_owned()
}

impl InterimFim {
    /// Opens (creating) the database and takes the watches to scan.
    pub fn open(db: &Path, root: &Path, rules: &[FimRule]) -> Result<InterimFim, String> {
        let conn = Connection::open(db).map_err(|e| format!("{}: {e}", db.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| {
                conn.execute_batch(
                    "CREATE TABLE IF NOT EXISTS files (path BLOB PRIMARY KEY, rec TEXT NOT NULL);",
                )
            })
            .map_err(|e| format!("{}: {e}", db.display()))?;
        let mut me = InterimFim {
            conn,
            root: root.to_path_buf(),
            watches: Watches::default(),
            fresh: Vec::new(),
        };
        me.watches = Watches::new(rules)?;
        Ok(me)
    }

    fn host(&self, p: &[u8]) -> PathBuf {
        let rel = p.strip_prefix(b"/").unwrap_or(p);
        self.root.join(OsStr::from_bytes(rel))
    }

    fn load(&self, scope: &Scope) -> Result<HashMap<Vec<u8>, Rec>, String> {
        let mut out = HashMap::new();
        let mut add = |path: Vec<u8>, rec: String| {
            if let Some(r) = decode(&rec) {
                out.insert(path, r);
            }
        };
        let err = |e: rusqlite::Error| format!("fim database: {e}");
        match scope {
            Scope::All => {
                let mut st = self
                    .conn
                    .prepare("SELECT path, rec FROM files")
                    .map_err(err)?;
                let rows = st
                    .query_map([], |r| {
                        Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                    })
                    .map_err(err)?;
                for row in rows {
                    let (p, r) = row.map_err(err)?;
                    add(p, r);
                }
            }
            Scope::Paths(ps) => {
                let mut st = self
                    .conn
                    .prepare_cached(
                        "SELECT path, rec FROM files WHERE path = ?1 OR (path > ?2 AND path < ?3)",
                    )
                    .map_err(err)?;
                for p in ps {
                    let mut lo = p.clone();
                    let mut hi = p.clone();
                    if p != b"/" {
                        lo.push(b'/');
                        hi.push(b'/' + 1);
                    } else {
                        hi = vec![b'/' + 1];
                    }
                    let rows = st
                        .query_map(params![p, lo, hi], |r| {
                            Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, String>(1)?))
                        })
                        .map_err(err)?;
                    for row in rows {
                        let (p, r) = row.map_err(err)?;
                        add(p, r);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Walks `start` (an in-root path) without following symlinks, skipping
    /// excluded paths and paths governed by another watch's walk.
    fn walk(
        &self,
        start: &[u8],
        old: &HashMap<Vec<u8>, Rec>,
        depth: Depth,
        limiter: &RateLimiter,
        seen: &mut HashMap<Vec<u8>, Rec>,
        errors: &mut Vec<String>,
    ) {
        let mut stack = vec![start.to_vec()];
        while let Some(p) = stack.pop() {
            if seen.contains_key(&p) {
                continue;
            }
            let Some(rule) = self.watches.governing(&p) else {
                continue;
            };
            let host = self.host(&p);
            let meta = match std::fs::symlink_metadata(&host) {
                Ok(m) => m,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => {
                    errors.push(format!("{}: {e}", disp(&p)));
                    continue;
                }
            };
            let want_hash = rule.attributes.contains(&FimAttribute::Sha256);
            let mut rec = rec_of(&meta);
            if rec.kind == "symlink" {
                rec.link = std::fs::read_link(&host)
                    .ok()
                    .map(|t| t.as_os_str().to_string_lossy().into_owned());
            }
            if rec.kind == "file" && want_hash {
                let reuse = old.get(&p).filter(|o| {
                    depth == Depth::Metadata
                        && o.kind == "file"
                        && o.size == rec.size
                        && o.mtime_ns == rec.mtime_ns
                        && o.ctime_ns == rec.ctime_ns
                        && o.ino == rec.ino
                });
                rec.sha256 = match reuse {
                    Some(o) => o.sha256.clone(),
                    None => match hash_file(&host, &meta, limiter) {
                        Ok(h) => Some(h),
                        Err(e) => {
                            errors.push(format!("{}: {e}", disp(&p)));
                            // Keep the old hash so an unreadable file is not a change.
                            old.get(&p).and_then(|o| o.sha256.clone())
                        }
                    },
                };
            }
            let is_dir = rec.kind == "dir";
            let same_dev = rule.cross_devices
                || p == rule.path.as_bytes()
                || std::fs::symlink_metadata(self.host(rule.path.as_bytes()))
                    .is_ok_and(|m| m.dev() == meta.dev());
            seen.insert(p.clone(), rec);
            if is_dir && same_dev {
                match std::fs::read_dir(&host) {
                    Ok(rd) => {
                        for ent in rd.flatten() {
                            let mut child = p.clone();
                            if child != b"/" {
                                child.push(b'/');
                            }
                            child.extend_from_slice(ent.file_name().as_bytes());
                            stack.push(child);
                        }
                    }
                    Err(e) => errors.push(format!("{}: {e}", disp(&p))),
                }
            }
        }
    }
}

fn rec_of(m: &std::fs::Metadata) -> Rec {
    Rec {
        kind: kind_of(m.file_type()),
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        size: m.size(),
        mtime_ns: m
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.mtime_nsec()),
        ctime_ns: m
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(m.ctime_nsec()),
        ino: m.ino(),
        nlink: m.nlink(),
        sha256: None,
        link: None,
    }
}

/// Hashes a regular file: opened without following symlinks and without
/// blocking (a FIFO swapped in is refused by the fstat check), streamed in
/// 64 KiB chunks through the limiter, re-read when it changes meanwhile.
fn hash_file(
    host: &Path,
    lst: &std::fs::Metadata,
    limiter: &RateLimiter,
) -> Result<String, String> {
    for _ in 0..3 {
        let mut f = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(host)
            .map_err(|e| e.to_string())?;
        let before = f.metadata().map_err(|e| e.to_string())?;
        if !before.is_file() || before.ino() != lst.ino() {
            return Err("replaced while being read".into());
        }
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            limiter.take(buf.len() as u64);
            let n = match f.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            ctx.update(&buf[..n]);
        }
        let after = f.metadata().map_err(|e| e.to_string())?;
        if after.size() == before.size()
            && after.mtime() == before.mtime()
            && after.mtime_nsec() == before.mtime_nsec()
        {
            return Ok(plumb_hex(ctx.finish().as_ref()));
        }
    }
    Err("unstable: changed while being hashed, three times".into())
}

fn plumb_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn encode(r: &Rec) -> String {
    json!({"type": r.kind, "mode": r.mode, "uid": r.uid, "gid": r.gid, "size": r.size,
           "mtime": r.mtime_ns, "ctime": r.ctime_ns, "inode": r.ino, "nlink": r.nlink,
           "sha256": r.sha256, "link_target": r.link})
    .to_string()
}

fn decode(s: &str) -> Option<Rec> {
    let v: Value = serde_json::from_str(s).ok()?;
    let kind = match v.get("type")?.as_str()? {
        "file" => "file",
        "dir" => "dir",
        "symlink" => "symlink",
        "fifo" => "fifo",
        "socket" => "socket",
        "block_device" => "block_device",
        _ => "char_device",
    };
    let u = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    let i = |k: &str| v.get(k).and_then(Value::as_i64).unwrap_or(0);
    Some(Rec {
        kind,
        mode: u32::try_from(u("mode")).unwrap_or(0),
        uid: u32::try_from(u("uid")).unwrap_or(0),
        gid: u32::try_from(u("gid")).unwrap_or(0),
        size: u("size"),
        mtime_ns: i("mtime"),
        ctime_ns: i("ctime"),
        ino: u("inode"),
        nlink: u("nlink"),
        sha256: v.get("sha256").and_then(Value::as_str).map(str::to_string),
        link: v
            .get("link_target")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

/// The attributes of `r` a watch records, as JSON values.
fn values(r: &Rec, attrs: &[FimAttribute]) -> BTreeMap<&'static str, Value> {
    let mut m = BTreeMap::new();
    for a in attrs {
        let v = match a {
            FimAttribute::Sha256 => json!(r.sha256),
            FimAttribute::Mode => json!(format!("{:04o}", r.mode)),
            FimAttribute::Uid => json!(r.uid),
            FimAttribute::Gid => json!(r.gid),
            FimAttribute::Size => json!(r.size),
            FimAttribute::Mtime => json!(r.mtime_ns),
            FimAttribute::Ctime => json!(r.ctime_ns),
            FimAttribute::Inode => json!(r.ino),
            FimAttribute::Nlink => json!(r.nlink),
            FimAttribute::Type => json!(r.kind),
            FimAttribute::LinkTarget => json!(r.link),
            // Not recorded by the interim backend.
            FimAttribute::Sha512 | FimAttribute::Xattrs => continue,
        };
        m.insert(a.name(), v);
    }
    m
}

fn obj(m: BTreeMap<&'static str, Value>) -> Value {
    Value::Object(
        m.into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect::<Map<_, _>>(),
    )
}

impl Integrity for InterimFim {
    fn scan(&mut self, scope: &Scope, depth: Depth, limiter: &RateLimiter) -> Result<Pass, String> {
        let empty: i64 = self
            .conn
            .query_row("SELECT count(*) FROM files", [], |r| r.get(0))
            .map_err(|e| format!("fim database: {e}"))?;
        let (scope, initialised) = if empty == 0 {
            (&Scope::All, true)
        } else {
            (scope, false)
        };
        let old = self.load(scope)?;
        let mut seen = HashMap::new();
        let mut errors = Vec::new();
        let starts: Vec<Vec<u8>> = match scope {
            Scope::All => self
                .watches
                .rules()
                .map(|r| r.path.as_bytes().to_vec())
                .collect(),
            Scope::Paths(ps) => ps.clone(),
        };
        for s in &starts {
            self.walk(s, &old, depth, limiter, &mut seen, &mut errors);
        }
        let mut pass = Pass {
            scanned: seen.len() as u64,
            initialised,
            ..Pass::default()
        };
        pass.pending.initialised_roots = self
            .fresh
            .iter()
            .filter(|r| match scope {
                Scope::All => true,
                Scope::Paths(ps) => ps.iter().any(|s| super::below(s, r)),
            })
            .cloned()
            .collect();
        for (p, new) in &seen {
            let Some(rule) = self.watches.governing(p) else {
                continue;
            };
            let attrs: &[FimAttribute] = &rule.attributes;
            match old.get(p) {
                None => {
                    let fresh = self.fresh.iter().any(|r| super::below(r, p));
                    if !initialised && !fresh {
                        pass.changes.push((
                            rule.severity,
                            FimChangeEvent {
                                path: disp(p),
                                change: "added".into(),
                                fields: Vec::new(),
                                old: Value::Null,
                                new: obj(values(new, attrs)),
                                domains: rule.domains.clone(),
                            },
                        ));
                    }
                    pass.pending.upserts.push((p.clone(), new.clone()));
                }
                Some(o) => {
                    let (ov, nv) = (values(o, attrs), values(new, attrs));
                    let mut fields = Vec::new();
                    let (mut om, mut nm) = (BTreeMap::new(), BTreeMap::new());
                    for (k, v) in &nv {
                        // A directory's times change whenever an entry does;
                        // the entries themselves are reported.
                        if new.kind == "dir" && matches!(*k, "mtime" | "ctime" | "size" | "nlink") {
                            continue;
                        }
                        if ov.get(k) != Some(v) {
                            fields.push(k.to_string());
                            om.insert(*k, ov.get(k).cloned().unwrap_or(Value::Null));
                            nm.insert(*k, v.clone());
                        }
                    }
                    if !fields.is_empty() {
                        pass.changes.push((
                            rule.severity,
                            FimChangeEvent {
                                path: disp(p),
                                change: "modified".into(),
                                fields,
                                old: obj(om),
                                new: obj(nm),
                                domains: rule.domains.clone(),
                            },
                        ));
                    }
                    if o != new {
                        pass.pending.upserts.push((p.clone(), new.clone()));
                    }
                }
            }
        }
        for (p, o) in &old {
            if seen.contains_key(p) {
                continue;
            }
            pass.pending.deletes.push(p.clone());
            let Some(rule) = self.watches.governing(p) else {
                continue;
            };
            pass.changes.push((
                rule.severity,
                FimChangeEvent {
                    path: disp(p),
                    change: "removed".into(),
                    fields: Vec::new(),
                    old: obj(values(o, &rule.attributes)),
                    new: Value::Null,
                    domains: rule.domains.clone(),
                },
            ));
        }
        pass.changes.sort_by(|a, b| a.1.path.cmp(&b.1.path));
        pass.errors = errors;
        Ok(pass)
    }

    fn record(&mut self, pass: Pass) -> Result<(), String> {
        let err = |e: rusqlite::Error| format!("fim database: {e}");
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut up = tx
                .prepare_cached(
                    "INSERT INTO files (path, rec) VALUES (?1, ?2)
                     ON CONFLICT (path) DO UPDATE SET rec = ?2",
                )
                .map_err(err)?;
            for (p, r) in &pass.pending.upserts {
                up.execute(params![p, encode(r)]).map_err(err)?;
            }
            let mut del = tx
                .prepare_cached("DELETE FROM files WHERE path = ?1")
                .map_err(err)?;
            for p in &pass.pending.deletes {
                del.execute([p]).map_err(err)?;
            }
        }
        tx.commit().map_err(err)?;
        self.fresh
            .retain(|r| !pass.pending.initialised_roots.contains(r));
        Ok(())
    }

    fn set_rules(&mut self, rules: &[FimRule]) -> Result<(), String> {
        let new = Watches::new(rules)?;
        let old: Vec<Vec<u8>> = self
            .watches
            .rules()
            .map(|r| r.path.as_bytes().to_vec())
            .collect();
        for r in new.rules() {
            let root = r.path.as_bytes().to_vec();
            // Covered by an old watch: its files are already known.
            if old.iter().any(|o| super::below(o, &root)) || self.fresh.contains(&root) {
                continue;
            }
            self.fresh.push(root);
        }
        self.watches = new;
        Ok(())
    }

    fn digest(&mut self) -> Option<String> {
        let mut st = self
            .conn
            .prepare("SELECT path, rec FROM files ORDER BY path")
            .ok()?;
        let mut rows = st.query([]).ok()?;
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        while let Ok(Some(r)) = rows.next() {
            let p: Vec<u8> = r.get(0).ok()?;
            let rec: String = r.get(1).ok()?;
            ctx.update(&(p.len() as u64).to_be_bytes());
            ctx.update(&p);
            ctx.update(&(rec.len() as u64).to_be_bytes());
            ctx.update(rec.as_bytes());
        }
        Some(plumb_hex(ctx.finish().as_ref()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;

    fn setup(dir: &Path) -> (PathBuf, Baseline) {
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::create_dir_all(root.join("etc/skip")).unwrap();
        std::fs::write(root.join("etc/a"), "a").unwrap();
        std::fs::write(root.join("etc/sub/b"), "b").unwrap();
        std::fs::write(root.join("etc/skip/c"), "c").unwrap();
        let b = Baseline::from_str(
            "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\"]\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
            "t.toml",
        )
        .unwrap();
        (root, b)
    }

    #[test]
    fn a_watch_root_added_by_a_new_baseline_is_recorded_silently_first() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        std::fs::create_dir_all(root.join("opt/app")).unwrap();
        std::fs::write(root.join("opt/app/bin"), "x").unwrap();
        let lim = RateLimiter::new(0);
        let mut f = InterimFim::open(&dir.path().join("fim.db"), &root, &b.fim).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        let mut rules = b.fim.clone();
        let mut opt = rules[0].clone();
        opt.path = "/opt".into();
        opt.exclude.clear();
        rules.push(opt);
        f.set_rules(&rules).unwrap();
        std::fs::write(root.join("etc/new"), "n").unwrap();
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        let got: Vec<String> = p.changes.iter().map(|(_, c)| c.path.clone()).collect();
        // The old watch still reports; the new root's files are adopted.
        assert_eq!(got, ["/etc/new"]);
        f.record(p).unwrap();
        std::fs::write(root.join("opt/app/new"), "n").unwrap();
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        let got: Vec<String> = p.changes.iter().map(|(_, c)| c.path.clone()).collect();
        assert_eq!(got, ["/opt/app/new"]);
    }

    #[test]
    fn first_pass_initialises_then_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        let lim = RateLimiter::new(0);
        let mut f = InterimFim::open(&dir.path().join("fim.db"), &root, &b.fim).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.initialised && p.changes.is_empty());
        f.record(p).unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        std::fs::remove_file(root.join("etc/sub/b")).unwrap();
        std::fs::write(root.join("etc/new"), "n").unwrap();
        std::fs::write(root.join("etc/skip/c"), "excluded").unwrap();
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        let got: Vec<(String, String)> = p
            .changes
            .iter()
            .map(|(_, c)| (c.path.clone(), c.change.clone()))
            .collect();
        assert_eq!(
            got,
            [
                ("/etc/a".to_string(), "modified".to_string()),
                ("/etc/new".into(), "added".into()),
                ("/etc/sub/b".into(), "removed".into()),
            ]
        );
        assert!(p.changes[0].1.fields.contains(&"sha256".to_string()));
        f.record(p).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.changes.is_empty(), "{:?}", p.changes);
    }

    #[test]
    fn a_path_scope_looks_only_there() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        let lim = RateLimiter::new(0);
        let mut f = InterimFim::open(&dir.path().join("fim.db"), &root, &b.fim).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        std::fs::remove_dir_all(root.join("etc/sub")).unwrap();
        let p = f
            .scan(
                &Scope::Paths(vec![b"/etc/sub".to_vec()]),
                Depth::Metadata,
                &lim,
            )
            .unwrap();
        let got: Vec<&str> = p.changes.iter().map(|(_, c)| c.path.as_str()).collect();
        assert_eq!(got, ["/etc/sub", "/etc/sub/b"]);
    }

    #[test]
    fn fifos_are_recorded_not_opened() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        nix::unistd::mkfifo(&root.join("etc/fifo"), nix::sys::stat::Mode::S_IRWXU).unwrap();
        let lim = RateLimiter::new(0);
        let mut f = InterimFim::open(&dir.path().join("fim.db"), &root, &b.fim).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.errors.is_empty(), "{:?}", p.errors);
    }
}
