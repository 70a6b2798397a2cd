//! `kind = "find"`: world-writable, unowned and SUID/SGID files in trees of
//! the checked root.
//!
//! Walking is the costly part, so all `find` rules of a run share walks
//! (`Ctx::walks`): a tree is walked once, keeping only the *candidates* any
//! rule could report, and each rule filters them. A walk of `/usr` asked for
//! after a walk of `/` is cut from the `/` walk when they are on the same
//! filesystem; a walk of `/` started after one of `/usr` takes the `/usr`
//! result instead of descending there again. Waits only ever go to walks
//! registered earlier, so two rules cannot wait for each other.
//!
//! The walk never follows symlinks (`DirEntry::metadata` is an `lstat`),
//! never opens anything but directories, stays on the filesystem of its
//! starting path, and survives unreadable directories (counted in evidence).

use super::{Ctx, Outcome};
use crate::userdb::UserDb;
use plumb_core::check::FindCheck;
use plumb_core::report::Status;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::Metadata;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

/// Candidates kept per walk and category; beyond, they are only counted.
#[cfg(not(test))]
pub const MAX_CANDIDATES: u64 = 10_000;
/// Small in unit tests so that the cap can be reached.
#[cfg(test)]
pub const MAX_CANDIDATES: u64 = 40;
/// Unreadable paths remembered per walk (all are counted).
const MAX_UNREADABLE: usize = 100;
/// Findings listed in a rule's evidence.
const MAX_EVIDENCE: usize = 25;
/// Unreadable paths listed in a rule's evidence.
const MAX_UNREADABLE_SHOWN: usize = 5;

const WW: u8 = 1;
const SETID: u8 = 2;
const NOUSER: u8 = 4;
const NOGROUP: u8 = 8;
/// Flag masks of the three categories candidates are capped by.
const CATEGORIES: [(u8, &str); 3] = [
    (WW, "world-writable"),
    (SETID, "SUID/SGID"),
    (NOUSER | NOGROUP, "unowned"),
];

const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFDIR: u32 = 0o040_000;

/// A file some `find` rule might report.
#[derive(Debug, Clone)]
struct Candidate {
    /// In-root path, raw bytes.
    path: Box<[u8]>,
    /// `st_mode` with the type bits.
    mode: u32,
    uid: u32,
    gid: u32,
    flags: u8,
}

/// What one walk found.
#[derive(Debug, Clone, Default)]
struct Found {
    candidates: Vec<Candidate>,
    /// Per category: candidates seen (exact) and kept.
    total: [u64; 3],
    stored: [u64; 3],
    /// In-root paths that could not be read, with why (the first few).
    unreadable: Vec<(Box<[u8]>, String)>,
    unreadable_total: u64,
    /// Entries examined, including those of walks merged in.
    entries: u64,
    /// Entries this walk examined itself.
    walked: u64,
    /// Key of the walk this result was cut from, if it was.
    from: Option<String>,
}

impl Found {
    fn keep(&mut self, c: Candidate) {
        let mut room = false;
        for (i, (mask, _)) in CATEGORIES.iter().enumerate() {
            if c.flags & mask != 0 {
                self.total[i] += 1;
                room |= self.stored[i] < MAX_CANDIDATES;
            }
        }
        if room {
            self.store(c);
        }
    }

    fn store(&mut self, c: Candidate) {
        for (i, (mask, _)) in CATEGORIES.iter().enumerate() {
            if c.flags & mask != 0 {
                self.stored[i] += 1;
            }
        }
        self.candidates.push(c);
    }

    fn unreadable(&mut self, path: Box<[u8]>, e: &io::Error) {
        self.unreadable_total += 1;
        if self.unreadable.len() < MAX_UNREADABLE {
            self.unreadable.push((path, e.to_string()));
        }
    }

    /// Adds the result of a walk of a subtree.
    fn merge(&mut self, other: &Found) {
        for c in &other.candidates {
            let room = CATEGORIES
                .iter()
                .enumerate()
                .any(|(i, (mask, _))| c.flags & mask != 0 && self.stored[i] < MAX_CANDIDATES);
            if room {
                self.store(c.clone());
            }
        }
        for i in 0..3 {
            self.total[i] += other.total[i];
        }
        for (p, e) in &other.unreadable {
            if self.unreadable.len() < MAX_UNREADABLE {
                self.unreadable.push((p.clone(), e.clone()));
            }
        }
        self.unreadable_total += other.unreadable_total;
        self.entries += other.entries;
    }

    /// Whether every candidate and unreadable path seen was kept.
    fn complete(&self) -> bool {
        self.total == self.stored && self.unreadable_total == self.unreadable.len() as u64
    }
}

/// Names known in the checked root, for `unowned`.
struct Owners {
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl Owners {
    /// `None` when unowned cannot be told (the rule reports why).
    fn of(db: Option<&UserDb>) -> Option<Owners> {
        let db = db?;
        if db.users.is_empty() || db.groups.is_empty() {
            return None;
        }
        let mut uids: Vec<u32> = db.users.iter().map(|u| u.uid).collect();
        let mut gids: Vec<u32> = db.groups.iter().map(|g| g.gid).collect();
        uids.sort_unstable();
        uids.dedup();
        gids.sort_unstable();
        gids.dedup();
        Some(Owners { uids, gids })
    }
}

fn classify(md: &Metadata, owners: Option<&Owners>) -> u8 {
    let mode = md.mode();
    let kind = mode & S_IFMT;
    let mut f = 0;
    let sticky_dir = kind == S_IFDIR && mode & 0o1000 != 0;
    // Regular files and directories only, as CIS's audit does: device
    // nodes, FIFOs and sockets are world-writable by design (/dev/null).
    if mode & 0o002 != 0 && (kind == S_IFREG || kind == S_IFDIR) && !sticky_dir {
        f |= WW;
    }
    if kind == S_IFREG && mode & 0o6000 != 0 {
        f |= SETID;
    }
    if let Some(o) = owners {
        if o.uids.binary_search(&md.uid()).is_err() {
            f |= NOUSER;
        }
        if o.gids.binary_search(&md.gid()).is_err() {
            f |= NOGROUP;
        }
    }
    f
}

/// One shared walk of a tree, computed once (whoever asks first walks,
/// others wait for the result).
#[derive(Debug)]
pub struct Walk {
    key: String,
    in_root: Vec<u8>,
    host: PathBuf,
    dev: u64,
    is_dir: bool,
    /// The nearest walk of an ancestor registered before this one.
    ancestor: Option<Arc<Walk>>,
    /// Walks of subtrees registered before this one, by host path.
    descendants: HashMap<PathBuf, Arc<Walk>>,
    found: OnceLock<Found>,
}

impl Walk {
    /// Entries this walk examined itself, not counting those of walks it
    /// took results from, once it has run (0 for a result cut from another
    /// walk). Each entry of a run is examined by exactly one walk.
    #[cfg(test)]
    pub fn walked_entries(&self) -> Option<u64> {
        self.found.get().map(|f| f.walked)
    }

    fn found(&self, ctx: &Ctx) -> &Found {
        self.found.get_or_init(|| self.compute(ctx))
    }

    fn compute(&self, ctx: &Ctx) -> Found {
        if let Some(a) = &self.ancestor {
            if let Some(f) = self.cut_from(a, a.found(ctx)) {
                return f;
            }
        }
        self.walk(ctx)
    }

    /// This walk's part of an ancestor's result, when the ancestor's walk
    /// certainly covered this whole subtree.
    fn cut_from(&self, a: &Walk, af: &Found) -> Option<Found> {
        if !a.is_dir || a.dev != self.dev || !af.complete() {
            return None;
        }
        // Every directory on the way down must be on the ancestor's
        // filesystem, or the ancestor's walk never went there.
        let mut reached = false;
        for p in self.host.ancestors() {
            if p == a.host {
                reached = true;
                break;
            }
            let md = std::fs::symlink_metadata(p).ok()?;
            if md.dev() != a.dev || (p != self.host && !md.is_dir()) {
                return None;
            }
        }
        if !reached {
            return None;
        }
        let mine = |p: &[u8]| p == self.in_root.as_slice() || is_under(p, &self.in_root);
        let covers = |p: &[u8]| p == self.in_root.as_slice() || is_under(&self.in_root, p);
        if af.unreadable.iter().any(|(p, _)| covers(p)) {
            return None;
        }
        let mut f = Found {
            from: Some(a.key.clone()),
            ..Found::default()
        };
        for c in af.candidates.iter().filter(|c| mine(&c.path)) {
            f.keep(c.clone());
        }
        for (p, e) in af.unreadable.iter().filter(|(p, _)| mine(p)) {
            f.unreadable_total += 1;
            f.unreadable.push((p.clone(), e.clone()));
        }
        Some(f)
    }

    fn walk(&self, ctx: &Ctx) -> Found {
        let owners = Owners::of(ctx.users().ok());
        let owners = owners.as_ref();
        let root = ctx.fs.root();
        let mut f = Found::default();
        let md = match std::fs::symlink_metadata(&self.host) {
            Ok(m) => m,
            Err(e) => {
                f.unreadable(self.in_root.clone().into(), &e);
                return f;
            }
        };
        f.entries += 1;
        f.walked += 1;
        let flags = classify(&md, owners);
        if flags != 0 {
            f.keep(candidate(self.in_root.clone(), &md, flags));
        }
        if !md.is_dir() {
            return f;
        }
        let mut stack = vec![self.host.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) => {
                    f.unreadable(in_root(root, &dir).into(), &e);
                    continue;
                }
            };
            for ent in entries {
                let ent = match ent {
                    Ok(e) => e,
                    Err(e) => {
                        f.unreadable(in_root(root, &dir).into(), &e);
                        break;
                    }
                };
                // lstat relative to the directory: never follows a symlink.
                let md = match ent.metadata() {
                    Ok(m) => m,
                    // Removed while we walk: nothing to report.
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => {
                        f.unreadable(in_root(root, &ent.path()).into(), &e);
                        continue;
                    }
                };
                f.entries += 1;
                f.walked += 1;
                let descend = md.is_dir() && md.dev() == self.dev;
                let flags = classify(&md, owners);
                if flags == 0 && !descend {
                    continue;
                }
                let path = ent.path();
                if descend {
                    if let Some(d) = self.descendants.get(&path) {
                        if d.dev == self.dev {
                            // Registered before us, so it never waits for
                            // us; it examines its own top directory.
                            f.entries -= 1;
                            f.walked -= 1;
                            f.merge(d.found(ctx));
                            continue;
                        }
                    }
                }
                if flags != 0 {
                    f.keep(candidate(in_root(root, &path), &md, flags));
                }
                if descend {
                    stack.push(path);
                }
            }
        }
        f
    }
}

fn candidate(path: Vec<u8>, md: &Metadata, flags: u8) -> Candidate {
    Candidate {
        path: path.into(),
        mode: md.mode(),
        uid: md.uid(),
        gid: md.gid(),
        flags,
    }
}

/// Whether in-root path `p` lies strictly below directory `dir`.
fn is_under(p: &[u8], dir: &[u8]) -> bool {
    if dir == b"/" {
        return p.len() > 1 && p.starts_with(b"/");
    }
    p.len() > dir.len() && p.starts_with(dir) && p[dir.len()] == b'/'
}

/// The in-root path of a host path below the root.
fn in_root(root: &Path, host: &Path) -> Vec<u8> {
    let rel = host.strip_prefix(root).unwrap_or(host);
    let mut out = Vec::with_capacity(rel.as_os_str().len() + 1);
    out.push(b'/');
    out.extend_from_slice(rel.as_os_str().as_bytes());
    if out.len() > 1 && out.ends_with(b"/") {
        out.pop();
    }
    out
}

/// A path for evidence: UTF-8 shown as is, control characters and
/// backslashes escaped, other bytes as `\xNN`, so distinct names stay
/// distinct and one name stays one line.
pub fn show(p: &[u8]) -> String {
    let mut out = String::with_capacity(p.len());
    for chunk in p.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                c if c.is_control() => out.extend(c.escape_default()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The shared walk of a resolved starting path, registered if new.
fn walk_for(ctx: &Ctx, in_root: Vec<u8>, host: PathBuf, md: &Metadata) -> Arc<Walk> {
    let key = show(&in_root);
    // A poisoned map only means another rule panicked; its entries are whole.
    let mut map = ctx.walks.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(w) = map.get(&key) {
        return Arc::clone(w);
    }
    let mut ancestor: Option<&Arc<Walk>> = None;
    let mut descendants = HashMap::new();
    for w in map.values() {
        if is_under(&in_root, &w.in_root) {
            if ancestor.is_none_or(|a| w.in_root.len() > a.in_root.len()) {
                ancestor = Some(w);
            }
        } else if is_under(&w.in_root, &in_root) {
            descendants.insert(w.host.clone(), Arc::clone(w));
        }
    }
    let w = Arc::new(Walk {
        key: key.clone(),
        in_root,
        host,
        dev: md.dev(),
        is_dir: md.is_dir(),
        ancestor: ancestor.cloned(),
        descendants,
        found: OnceLock::new(),
    });
    map.insert(key, Arc::clone(&w));
    w
}

/// Resolves a starting path inside the root: `Ok(None)` when it does not
/// exist.
fn start(ctx: &Ctx, path: &str) -> io::Result<Option<(Vec<u8>, PathBuf, Metadata)>> {
    let host = match ctx.fs.resolve(path, true) {
        Ok(h) => h,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    match std::fs::symlink_metadata(&host) {
        Ok(md) => Ok(Some((in_root(ctx.fs.root(), &host), host, md))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn kind_word(mode: u32) -> &'static str {
    match mode & S_IFMT {
        0o040_000 => "directory ",
        0o010_000 => "fifo ",
        0o140_000 => "socket ",
        0o060_000 => "block device ",
        0o020_000 => "character device ",
        _ => "",
    }
}

/// Evaluates a `find` check.
pub fn evaluate(spec: &FindCheck, ctx: &Ctx) -> Outcome {
    if let Some(error) = unowned_untellable(spec, ctx) {
        return error;
    }
    let allow = match allow_list(spec) {
        Ok(a) => a,
        Err(error) => return error,
    };
    let mut review = Review {
        spec,
        allow,
        users: ctx.users().ok(),
        findings: BTreeSet::new(),
        allowed: BTreeSet::new(),
        notes: Vec::new(),
        incomplete: Vec::new(),
        unreadable: BTreeSet::new(),
        unreadable_total: 0,
    };
    let mut seen = HashSet::new();
    for p in &spec.paths {
        let (in_root, host, md) = match start(ctx, p) {
            Ok(Some(s)) => s,
            Ok(None) => {
                review
                    .notes
                    .push(format!("{p}: does not exist, nothing to walk"));
                continue;
            }
            Err(e) => {
                review.unreadable_total += 1;
                review
                    .unreadable
                    .insert((p.as_bytes().into(), e.to_string()));
                continue;
            }
        };
        if in_root != p.trim_end_matches('/').as_bytes() && p != "/" {
            review
                .notes
                .push(format!("{p} resolves to {} in the root", show(&in_root)));
        }
        let w = walk_for(ctx, in_root, host, &md);
        if seen.insert(w.key.clone()) {
            review.walked(&w.key, w.found(ctx));
        }
    }
    review.outcome()
}

/// The rule's error when `unowned` cannot be told in this root.
fn unowned_untellable(spec: &FindCheck, ctx: &Ctx) -> Option<Outcome> {
    if !spec.unowned {
        return None;
    }
    let why = match ctx.users() {
        Err(e) => format!("unowned: {e}"),
        Ok(db) if db.users.is_empty() => {
            "unowned: /etc/passwd of this root has no accounts, so every file would be unowned"
                .into()
        }
        Ok(db) if db.groups.is_empty() => {
            "unowned: /etc/group of this root has no groups, so every file would be unowned".into()
        }
        Ok(_) => return None,
    };
    Some(Outcome::error(why))
}

/// The compiled `allow` globs, or the rule's error outcome.
fn allow_list(spec: &FindCheck) -> Result<Vec<globset::GlobMatcher>, Outcome> {
    spec.allow
        .iter()
        .map(|g| {
            plumb_core::glob(g)
                .map_err(|e| Outcome::error(format!("allow: invalid glob \"{g}\": {e}")))
        })
        .collect()
}

/// One rule's reading of the walks it asked for.
struct Review<'a> {
    spec: &'a FindCheck,
    allow: Vec<globset::GlobMatcher>,
    users: Option<&'a UserDb>,
    /// Reported files, in path order, with their evidence line.
    findings: BTreeSet<(Box<[u8]>, String)>,
    /// Files the allow list excused.
    allowed: BTreeSet<Box<[u8]>>,
    notes: Vec<String>,
    /// Categories whose candidates were capped.
    incomplete: Vec<String>,
    unreadable: BTreeSet<(Box<[u8]>, String)>,
    unreadable_total: u64,
}

impl Review<'_> {
    /// Takes in the result of the walk `key`.
    fn walked(&mut self, key: &str, found: &Found) {
        match &found.from {
            Some(a) => self
                .notes
                .push(format!("{key}: examined within the walk of {a}")),
            None => self
                .notes
                .push(format!("{key}: {} entries examined", found.entries)),
        }
        for c in &found.candidates {
            self.candidate(c);
        }
        for (i, (_, name)) in CATEGORIES.iter().enumerate() {
            let wanted = match i {
                0 => self.spec.world_writable,
                1 => self.spec.setid,
                _ => self.spec.unowned,
            };
            let missing = found.total[i] - found.stored[i];
            if wanted && missing > 0 {
                self.incomplete.push(format!(
                    "{key}: {} {name} candidates, only the first {MAX_CANDIDATES} were examined",
                    found.total[i]
                ));
            }
        }
        self.unreadable_total += found.unreadable_total;
        self.unreadable.extend(found.unreadable.iter().cloned());
    }

    fn show_uid(&self, uid: u32) -> String {
        self.users
            .map_or_else(|| uid.to_string(), |u| u.show_uid(uid))
    }

    fn show_gid(&self, gid: u32) -> String {
        self.users
            .map_or_else(|| gid.to_string(), |u| u.show_gid(gid))
    }

    /// Reports (or excuses) a candidate in each category the rule asks for.
    fn candidate(&mut self, c: &Candidate) {
        let is_allowed = || {
            let path = Path::new(OsStr::from_bytes(&c.path));
            self.allow.iter().any(|m| m.is_match(path))
        };
        let at = show(&c.path);
        let perm = c.mode & 0o7777;
        let mut lines = Vec::new();
        let mut excused = false;
        if self.spec.setid && c.flags & SETID != 0 {
            if is_allowed() {
                excused = true;
            } else {
                let mut what = Vec::new();
                if c.mode & 0o4000 != 0 {
                    what.push(format!("setuid {}", self.show_uid(c.uid)));
                }
                if c.mode & 0o2000 != 0 {
                    what.push(format!("setgid {}", self.show_gid(c.gid)));
                }
                lines.push(format!("{at}: {} mode {perm:04o}", what.join(" ")));
            }
        }
        if self.spec.world_writable && c.flags & WW != 0 {
            if is_allowed() {
                excused = true;
            } else {
                lines.push(format!(
                    "{at}: world-writable {}mode {perm:04o}",
                    kind_word(c.mode)
                ));
            }
        }
        if self.spec.unowned && c.flags & (NOUSER | NOGROUP) != 0 {
            let mut what = Vec::new();
            if c.flags & NOUSER != 0 {
                what.push(format!("uid {}", c.uid));
            }
            if c.flags & NOGROUP != 0 {
                what.push(format!("gid {}", c.gid));
            }
            lines.push(format!("{at}: unowned {}", what.join(" ")));
        }
        if excused {
            self.allowed.insert(c.path.clone());
        }
        for line in lines {
            self.findings.insert((c.path.clone(), line));
        }
    }

    /// The verdict and its evidence: findings (capped), capped categories,
    /// the allow list's count, unreadable paths, then the notes.
    fn outcome(self) -> Outcome {
        let status = if !self.findings.is_empty() {
            Status::Fail
        } else if !self.incomplete.is_empty() {
            Status::Error
        } else {
            Status::Pass
        };
        let n = self.findings.len();
        let mut evidence: Vec<String> = self
            .findings
            .into_iter()
            .take(MAX_EVIDENCE)
            .map(|(_, l)| l)
            .collect();
        if n > MAX_EVIDENCE {
            evidence.push(format!("… and {} more", n - MAX_EVIDENCE));
        }
        if n == 0 {
            let spec = self.spec;
            let what: Vec<&str> = [
                (spec.world_writable, "world-writable"),
                (spec.unowned, "unowned"),
                (spec.setid, "unexpected SUID/SGID"),
            ]
            .into_iter()
            .filter_map(|(on, w)| on.then_some(w))
            .collect();
            evidence.push(format!("no {} files", what.join(", ")));
        }
        evidence.extend(self.incomplete);
        if !self.allowed.is_empty() {
            evidence.push(format!(
                "{} file(s) matched the allow list",
                self.allowed.len()
            ));
        }
        if self.unreadable_total > 0 {
            evidence.push(unreadable_line(&self.unreadable, self.unreadable_total));
        }
        evidence.extend(self.notes);
        Outcome { status, evidence }
    }
}

/// The evidence line of paths that could not be read (the first few shown).
fn unreadable_line(unreadable: &BTreeSet<(Box<[u8]>, String)>, total: u64) -> String {
    let shown: Vec<String> = unreadable
        .iter()
        .take(MAX_UNREADABLE_SHOWN)
        .map(|(p, e)| format!("{} ({e})", show(p)))
        .collect();
    format!(
        "{total} path(s) could not be read and were not examined: {}{}",
        shown.join(", "),
        if total as usize > shown.len() {
            ", …"
        } else {
            ""
        }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{PermissionsExt, symlink};

    struct Fx {
        t: tempfile::TempDir,
    }

    impl Fx {
        fn new() -> Fx {
            let fx = Fx {
                t: tempfile::tempdir().unwrap(),
            };
            fx.file("/etc/passwd", 0o644);
            std::fs::write(
                fx.p("/etc/passwd"),
                "root:x:0:0::/root:/bin/bash\nimg:x:4242:4242::/:/bin/sh\n",
            )
            .unwrap();
            std::fs::write(fx.p("/etc/group"), "root:x:0:\nimg:x:4242:\n").unwrap();
            fx
        }
        fn p(&self, in_root: &str) -> PathBuf {
            self.t.path().join(in_root.trim_start_matches('/'))
        }
        fn dir(&self, in_root: &str, mode: u32) -> PathBuf {
            let p = self.p(in_root);
            std::fs::create_dir_all(&p).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        fn file(&self, in_root: &str, mode: u32) -> PathBuf {
            let p = self.p(in_root);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        }
        fn ctx(&self) -> Ctx {
            Ctx::new(self.t.path(), None)
        }
    }

    fn spec(paths: &[&str]) -> FindCheck {
        FindCheck {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            world_writable: false,
            unowned: false,
            setid: false,
            allow: vec![],
        }
    }

    fn ww(paths: &[&str]) -> FindCheck {
        FindCheck {
            world_writable: true,
            ..spec(paths)
        }
    }

    fn has(o: &Outcome, s: &str) -> bool {
        o.evidence.iter().any(|e| e == s)
    }

    #[test]
    fn world_writable_files_and_directories_but_not_sticky_ones_or_symlinks() {
        let fx = Fx::new();
        fx.file("/srv/open", 0o666);
        fx.file("/srv/closed", 0o644);
        fx.dir("/srv/tmp", 0o1777);
        fx.file("/srv/tmp/inside", 0o646);
        fx.dir("/srv/drop", 0o777);
        symlink("closed", fx.p("/srv/link")).unwrap();
        // A FIFO is world-writable by design, like /dev/null: not reported.
        nix::unistd::mkfifo(
            &fx.p("/srv/pipe"),
            nix::sys::stat::Mode::from_bits_truncate(0o666),
        )
        .unwrap();
        std::fs::set_permissions(fx.p("/srv/pipe"), std::fs::Permissions::from_mode(0o666))
            .unwrap();
        let o = evaluate(&ww(&["/srv"]), &fx.ctx());
        assert_eq!(o.status, Status::Fail, "{o:?}");
        assert!(!o.evidence.iter().any(|e| e.contains("pipe")), "{o:?}");
        assert_eq!(
            o.evidence[..3],
            [
                "/srv/drop: world-writable directory mode 0777",
                "/srv/open: world-writable mode 0666",
                "/srv/tmp/inside: world-writable mode 0646",
            ]
        );
        assert!(has(&o, "/srv: 8 entries examined"), "{o:?}");
        fx.dir("/srv/drop", 0o755);
        std::fs::remove_file(fx.p("/srv/open")).unwrap();
        std::fs::remove_file(fx.p("/srv/tmp/inside")).unwrap();
        let o = evaluate(&ww(&["/srv"]), &fx.ctx());
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert_eq!(o.evidence[0], "no world-writable files");
    }

    #[test]
    fn symlinks_are_never_followed() {
        let fx = Fx::new();
        let outside = tempfile::tempdir().unwrap();
        let victim = outside.path().join("victim");
        std::fs::write(&victim, "").unwrap();
        std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o4777)).unwrap();
        fx.dir("/srv", 0o755);
        symlink("/", fx.p("/srv/root")).unwrap();
        symlink(outside.path(), fx.p("/srv/out")).unwrap();
        symlink(&victim, fx.p("/srv/victim")).unwrap();
        symlink("b", fx.p("/srv/a")).unwrap();
        symlink("a", fx.p("/srv/b")).unwrap();
        symlink(".", fx.p("/srv/self")).unwrap();
        let check = FindCheck {
            world_writable: true,
            setid: true,
            ..spec(&["/srv"])
        };
        let o = evaluate(&check, &fx.ctx());
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(has(&o, "/srv: 7 entries examined"), "{o:?}");
    }

    #[test]
    fn setid_files_outside_the_allow_list() {
        let fx = Fx::new();
        fx.file("/usr/bin/su", 0o4755);
        fx.file("/usr/bin/rogue", 0o4711);
        let wall = fx.file("/usr/bin/wall", 0o755);
        // chown clears SGID, so the mode is set after it.
        std::os::unix::fs::chown(&wall, None, Some(4242)).ok();
        std::fs::set_permissions(&wall, std::fs::Permissions::from_mode(0o2755)).unwrap();
        fx.file("/usr/bin/both", 0o6755);
        fx.file("/usr/bin/plain", 0o755);
        // SGID on a directory only sets the group of new files.
        fx.dir("/usr/share/shared", 0o2775);
        let check = FindCheck {
            setid: true,
            allow: vec!["/usr/bin/su".into(), "/usr/lib/*/helper".into()],
            ..spec(&["/usr"])
        };
        let o = evaluate(&check, &fx.ctx());
        assert_eq!(o.status, Status::Fail);
        let wall_group = if nix::unistd::geteuid().is_root() {
            "img(4242)"
        } else {
            "root(0)"
        };
        assert_eq!(
            o.evidence[..4],
            [
                "/usr/bin/both: setuid root(0) setgid root(0) mode 6755".to_string(),
                "/usr/bin/rogue: setuid root(0) mode 4711".to_string(),
                format!("/usr/bin/wall: setgid {wall_group} mode 2755"),
                "1 file(s) matched the allow list".to_string(),
            ],
            "{o:?}"
        );
        // Globs match the in-root path; `*` does not cross `/`.
        fx.file("/usr/lib/x86_64/helper", 0o4755);
        fx.file("/usr/lib/a/b/helper", 0o4755);
        let o = evaluate(&check, &fx.ctx());
        assert!(
            has(&o, "/usr/lib/a/b/helper: setuid root(0) mode 4755"),
            "{o:?}"
        );
        assert!(!o.evidence.iter().any(|e| e.contains("x86_64")));
    }

    #[test]
    #[ignore = "needs root (chown)"]
    fn unowned_is_resolved_in_the_checked_root() {
        assert!(nix::unistd::geteuid().is_root(), "needs root (chown)");
        let fx = Fx::new();
        // 4242 exists only in the checked root; uid 1 (daemon on the host)
        // and gid 7 do not exist there.
        let owned = fx.file("/opt/owned", 0o644);
        std::os::unix::fs::chown(&owned, Some(4242), Some(4242)).unwrap();
        let host_user = fx.file("/opt/hostuser", 0o644);
        std::os::unix::fs::chown(&host_user, Some(1), Some(0)).unwrap();
        let nogroup = fx.file("/opt/nogroup", 0o644);
        std::os::unix::fs::chown(&nogroup, Some(0), Some(7)).unwrap();
        symlink("owned", fx.p("/opt/link")).unwrap();
        std::os::unix::fs::lchown(fx.p("/opt/link"), Some(5555), Some(5555)).unwrap();
        let check = FindCheck {
            unowned: true,
            ..spec(&["/opt"])
        };
        let o = evaluate(&check, &fx.ctx());
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.evidence[..3],
            [
                "/opt/hostuser: unowned uid 1",
                "/opt/link: unowned uid 5555 gid 5555",
                "/opt/nogroup: unowned gid 7",
            ],
            "{o:?}"
        );
    }

    #[test]
    fn unowned_needs_an_account_database() {
        let fx = Fx::new();
        std::fs::write(fx.p("/etc/passwd"), "# nothing\n").unwrap();
        let check = FindCheck {
            unowned: true,
            ..spec(&["/"])
        };
        let o = evaluate(&check, &fx.ctx());
        assert_eq!(o.status, Status::Error);
        assert!(o.evidence[0].contains("has no accounts"));
    }

    #[test]
    fn evidence_is_bounded_and_sorted() {
        let fx = Fx::new();
        for i in 0..30 {
            fx.file(&format!("/data/f{i:02}"), 0o666);
        }
        let o = evaluate(&ww(&["/data"]), &fx.ctx());
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.evidence[0], "/data/f00: world-writable mode 0666");
        assert_eq!(o.evidence[24], "/data/f24: world-writable mode 0666");
        assert_eq!(o.evidence[25], "… and 5 more");
    }

    #[test]
    fn candidate_cap_is_reported_and_never_a_silent_pass() {
        let fx = Fx::new();
        let n = MAX_CANDIDATES + 5;
        for i in 0..n {
            fx.file(&format!("/data/f{i:03}"), 0o666);
        }
        let o = evaluate(&ww(&["/data"]), &fx.ctx());
        assert_eq!(o.status, Status::Fail);
        let cap = format!(
            "/data: {n} world-writable candidates, only the first {MAX_CANDIDATES} were examined"
        );
        assert!(has(&o, &cap), "{o:?}");
        // Everything kept is allowed, but what was dropped was not examined.
        let allowed = FindCheck {
            allow: vec!["/data/*".into()],
            ..ww(&["/data"])
        };
        let o = evaluate(&allowed, &fx.ctx());
        assert_eq!(o.status, Status::Error, "{o:?}");
    }

    #[test]
    fn odd_names_are_shown_escaped_and_distinct() {
        use std::os::unix::ffi::OsStrExt;
        let fx = Fx::new();
        fx.dir("/odd", 0o755);
        let names: [&[u8]; 4] = [b"new\nline", b"bad\xff", b"bad\\xff", b"tab\tx"];
        for n in names {
            let p = fx.p("/odd").join(OsStr::from_bytes(n));
            std::fs::write(&p, "").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o666)).unwrap();
        }
        let o = evaluate(&ww(&["/odd"]), &fx.ctx());
        assert_eq!(
            o.evidence[..4],
            [
                "/odd/bad\\\\xff: world-writable mode 0666",
                "/odd/bad\\xff: world-writable mode 0666",
                "/odd/new\\nline: world-writable mode 0666",
                "/odd/tab\\tx: world-writable mode 0666",
            ],
            "{o:?}"
        );
    }

    #[test]
    fn missing_start_paths_contribute_nothing() {
        let fx = Fx::new();
        fx.file("/srv/x", 0o666);
        let o = evaluate(&ww(&["/nope", "/srv"]), &fx.ctx());
        assert_eq!(o.status, Status::Fail);
        assert!(has(&o, "/nope: does not exist, nothing to walk"));
        let o = evaluate(&ww(&["/nope"]), &fx.ctx());
        assert_eq!(o.status, Status::Pass);
        assert!(has(&o, "/nope: does not exist, nothing to walk"));
    }

    #[test]
    fn start_symlinks_resolve_inside_the_root() {
        let fx = Fx::new();
        fx.file("/usr/bin/x", 0o4755);
        symlink("usr/bin", fx.p("/bin")).unwrap();
        symlink("/", fx.p("/up")).unwrap();
        let check = FindCheck {
            setid: true,
            ..spec(&["/bin", "/up/usr/bin"])
        };
        let ctx = fx.ctx();
        let o = evaluate(&check, &ctx);
        assert_eq!(o.evidence[0], "/usr/bin/x: setuid root(0) mode 4755");
        assert!(has(&o, "/bin resolves to /usr/bin in the root"), "{o:?}");
        // One finding, one walk, though two paths lead to it.
        assert_eq!(o.evidence.iter().filter(|e| e.contains("/x:")).count(), 1);
        assert_eq!(ctx.walks.lock().unwrap().len(), 1);
    }

    fn tree(fx: &Fx) -> u64 {
        fx.file("/usr/bin/s", 0o4755);
        fx.file("/usr/lib/a", 0o644);
        fx.file("/var/tmp/w", 0o666);
        // / + etc{passwd,group} + usr{bin/s, lib/a} + var{tmp/w}
        1 + 3 + 5 + 3
    }

    fn walked(ctx: &Ctx) -> u64 {
        let map = ctx.walks.lock().unwrap();
        map.values().map(|w| w.walked_entries().unwrap()).sum()
    }

    #[test]
    fn rules_share_walks() {
        let fx = Fx::new();
        let total = tree(&fx);
        let setid = FindCheck {
            setid: true,
            ..spec(&["/usr"])
        };
        // Same path twice: one walk.
        let ctx = fx.ctx();
        evaluate(&ww(&["/"]), &ctx);
        let o = evaluate(&setid, &ctx);
        evaluate(&ww(&["/"]), &ctx);
        assert_eq!(walked(&ctx), total);
        // /usr after /: cut from the walk of /.
        assert_eq!(o.evidence[0], "/usr/bin/s: setuid root(0) mode 4755");
        assert!(has(&o, "/usr: examined within the walk of /"), "{o:?}");
        // / after /usr: /usr is not walked again.
        let ctx = fx.ctx();
        evaluate(&setid, &ctx);
        let o = evaluate(&ww(&["/"]), &ctx);
        assert_eq!(walked(&ctx), total);
        assert!(has(&o, &format!("/: {total} entries examined")), "{o:?}");
        assert!(has(&o, "/var/tmp/w: world-writable mode 0666"));
    }

    #[test]
    fn concurrent_rules_walk_once() {
        let fx = Fx::new();
        let total = tree(&fx);
        for _ in 0..20 {
            let ctx = fx.ctx();
            let specs = [ww(&["/"]), ww(&["/usr"]), ww(&["/"]), ww(&["/usr/bin"])];
            std::thread::scope(|s| {
                for sp in &specs {
                    let ctx = &ctx;
                    s.spawn(move || evaluate(sp, ctx));
                }
            });
            assert_eq!(walked(&ctx), total);
        }
    }

    #[test]
    fn paths_for_evidence() {
        assert_eq!(show(b"/a b/\xc3\xa9"), "/a b/é");
        assert_eq!(show(b"/\x1b[31m"), "/\\u{1b}[31m");
        assert!(is_under(b"/usr/bin", b"/usr"));
        assert!(!is_under(b"/usrx", b"/usr"));
        assert!(!is_under(b"/usr", b"/usr"));
        assert!(is_under(b"/usr", b"/"));
        assert!(!is_under(b"/", b"/"));
        assert_eq!(in_root(Path::new("/r/"), Path::new("/r")), b"/");
        assert_eq!(in_root(Path::new("/r"), Path::new("/r/a/b")), b"/a/b");
    }
}
