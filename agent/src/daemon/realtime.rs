//! Real-time integrity: inotify watches (through `notify`) on every
//! directory of the `realtime = true` watches, added one directory at a time
//! (non-recursive) so excluded trees are never watched.
//!
//! Notifications only mark paths dirty in a bounded set; the daemon flushes
//! the set after a quiet period (the debounce) and re-scans exactly those
//! paths against the FIM database. Nothing is ever dropped silently:
//! - more dirty paths than the bound: the watch roots concerned are marked
//!   for a full rescan instead of remembering each path;
//! - a kernel queue overflow (`Rescan` flag) or a watcher error: every
//!   realtime root is rescanned, with a warning event;
//! - a directory that cannot be watched (the `max_watches` cap, or ENOSPC
//!   from `fs.inotify.max_user_watches`): a warning event, and that subtree
//!   is re-scanned on each degraded poll instead.

use crate::daemon::integrity::{Watches, below};
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, INotifyWatcher, RecursiveMode, Watcher};
use std::collections::{BTreeSet, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

/// The inotify watcher could not be started.
#[derive(Debug, thiserror::Error)]
#[error("cannot start inotify: {0}")]
pub struct InotifyError(notify::Error);

/// What the watcher thread leaves for the daemon.
#[derive(Debug, Default)]
pub struct Dirty {
    /// In-root paths touched since the last flush.
    pub paths: BTreeSet<Vec<u8>>,
    /// Subtrees to rescan whole, with metadata verify: watch roots (the set
    /// or the kernel queue overflowed for them), and new directories a
    /// root rescan found (see [`Shared::requeue`]).
    pub roots: BTreeSet<Vec<u8>>,
    /// Warnings to report (overflows, watcher errors).
    pub warnings: Vec<String>,
    /// When the first unflushed change arrived.
    pub first: Option<Instant>,
    /// When the last one arrived.
    pub last: Option<Instant>,
}

impl Dirty {
    /// Whether there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty() && self.roots.is_empty() && self.warnings.is_empty()
    }
}

/// Shared between the notify thread and the daemon.
#[derive(Debug)]
pub struct Shared {
    dirty: Mutex<Dirty>,
    /// Wakes the flusher.
    pub wake: tokio::sync::Notify,
    root: PathBuf,
    /// The realtime watch roots (in-root paths).
    rt_roots: Vec<Vec<u8>>,
    max_dirty: usize,
}

impl Shared {
    /// Takes everything dirty.
    pub fn take(&self) -> Dirty {
        std::mem::take(&mut *lock(&self.dirty))
    }

    /// A peek at timing, for the debounce: the first and last unflushed
    /// change, and whether a whole watch root awaits a rescan.
    pub fn timing(&self) -> (Option<Instant>, Option<Instant>, bool) {
        let d = lock(&self.dirty);
        (d.first, d.last, !d.roots.is_empty())
    }

    /// Marks subtrees for a metadata rescan (not from inotify): directories
    /// a root rescan found new are compared once more after they are
    /// watched, so nothing written between that rescan and the watch is
    /// missed.
    pub fn requeue(&self, dirs: Vec<Vec<u8>>) {
        if dirs.is_empty() {
            return;
        }
        let mut d = lock(&self.dirty);
        d.roots.extend(dirs);
        touch(&mut d);
        drop(d);
        self.wake.notify_one();
    }

    fn in_root(&self, host: &Path) -> Option<Vec<u8>> {
        let rel = host.strip_prefix(&self.root).ok()?;
        let mut p = b"/".to_vec();
        p.extend_from_slice(rel.as_os_str().as_bytes());
        Some(p)
    }

    fn rt_root_of(&self, p: &[u8]) -> Option<&Vec<u8>> {
        self.rt_roots
            .iter()
            .filter(|r| below(r, p))
            .max_by_key(|r| r.len())
    }

    fn overflow_all(&self, why: String) {
        let mut d = lock(&self.dirty);
        d.paths.clear();
        d.roots.extend(self.rt_roots.iter().cloned());
        if d.warnings.len() < 16 {
            d.warnings.push(why);
        }
        touch(&mut d);
        drop(d);
        self.wake.notify_one();
    }

    fn mark(&self, host: &Path) {
        let Some(p) = self.in_root(host) else { return };
        let Some(rt) = self.rt_root_of(&p).cloned() else {
            return;
        };
        let mut d = lock(&self.dirty);
        if d.roots.contains(&rt) {
            touch(&mut d);
            return;
        }
        if d.paths.len() >= self.max_dirty {
            // Past the bound: forget this root's paths, rescan the root.
            d.paths.retain(|x| !below(&rt, x));
            d.roots.insert(rt);
            let msg = format!(
                "realtime: more than {} changed paths before a flush; rescanning the watched trees instead",
                self.max_dirty
            );
            if !d.warnings.contains(&msg) {
                d.warnings.push(msg);
            }
        } else {
            d.paths.insert(p);
        }
        touch(&mut d);
        drop(d);
        self.wake.notify_one();
    }
}

fn touch(d: &mut Dirty) {
    let now = Instant::now();
    d.first.get_or_insert(now);
    d.last = Some(now);
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave Dirty inconsistent in a
    // way that matters (it is only sets); carry on with it.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The inotify side: the watcher and the set of watched directories.
pub struct Realtime {
    watcher: INotifyWatcher,
    /// Shared with the notify thread.
    pub shared: Arc<Shared>,
    watches: Watches,
    watched: HashSet<Vec<u8>>,
    /// Subtrees that could not be watched; re-scanned on each degraded poll.
    pub unwatched: BTreeSet<Vec<u8>>,
    max_watches: usize,
}

impl std::fmt::Debug for Realtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Realtime")
            .field("watched", &self.watched.len())
            .field("unwatched", &self.unwatched)
            .finish()
    }
}

impl Realtime {
    /// Directories under inotify watch now.
    pub fn watched_count(&self) -> usize {
        self.watched.len()
    }

    /// Starts the watcher for the realtime watches among `watches`. Adds no
    /// watch yet: call [`Realtime::add_tree`] for each root.
    pub fn new(
        root: &Path,
        watches: Watches,
        max_dirty: usize,
        max_watches: usize,
    ) -> Result<Realtime, InotifyError> {
        let rt_roots: Vec<Vec<u8>> = watches
            .rules()
            .filter(|r| r.realtime)
            .map(|r| r.path.as_bytes().to_vec())
            .collect();
        let shared = Arc::new(Shared {
            dirty: Mutex::new(Dirty::default()),
            wake: tokio::sync::Notify::new(),
            root: root.to_path_buf(),
            rt_roots,
            max_dirty,
        });
        let s2 = shared.clone();
        let watcher = INotifyWatcher::new(
            move |res: notify::Result<notify::Event>| match res {
                Ok(ev) => {
                    if ev.need_rescan() {
                        s2.overflow_all(
                            "realtime: the kernel's inotify queue overflowed; rescanning the watched trees"
                                .into(),
                        );
                        return;
                    }
                    if matches!(
                        ev.kind,
                        EventKind::Access(AccessKind::Open(_))
                            | EventKind::Access(AccessKind::Read)
                            | EventKind::Access(AccessKind::Close(AccessMode::Read))
                    ) {
                        return;
                    }
                    for p in &ev.paths {
                        s2.mark(p);
                    }
                }
                Err(e) => s2.overflow_all(format!(
                    "realtime: watcher error ({e}); rescanning the watched trees"
                )),
            },
            notify::Config::default(),
        )
        .map_err(InotifyError)?;
        Ok(Realtime {
            watcher,
            shared,
            watches,
            watched: HashSet::new(),
            unwatched: BTreeSet::new(),
            max_watches,
        })
    }

    /// The in-root roots watched in real time.
    pub fn roots(&self) -> Vec<Vec<u8>> {
        self.shared.rt_roots.clone()
    }

    /// Number of directories watched.
    #[cfg(test)]
    pub fn watch_count(&self) -> usize {
        self.watched.len()
    }

    fn host(&self, p: &[u8]) -> PathBuf {
        let rel = p.strip_prefix(b"/").unwrap_or(p);
        self.shared.root.join(OsStr::from_bytes(rel))
    }

    /// Watches `start` and every directory below it that a realtime watch
    /// governs, without following symlinks or entering excluded trees.
    /// Returns warnings (directories left unwatched, and why).
    pub fn add_tree(&mut self, start: &[u8]) -> Vec<String> {
        use std::os::unix::fs::MetadataExt;
        let mut warnings = Vec::new();
        let mut stack = vec![start.to_vec()];
        // The device of each watch root met, for watches that stay on it.
        let mut root_dev: std::collections::HashMap<String, Option<u64>> = Default::default();
        while let Some(p) = stack.pop() {
            // Already watched or not, walk on: entries may be new dirs.
            let (rule_root, cross) = match self.watches.governing(&p) {
                Some(r) if r.realtime => (r.path.clone(), r.cross_devices),
                _ => continue,
            };
            let host = self.host(&p);
            let Ok(meta) = std::fs::symlink_metadata(&host) else {
                continue;
            };
            if !meta.is_dir() {
                continue;
            }
            if !cross && p != rule_root.as_bytes() {
                let host_root = self.host(rule_root.as_bytes());
                let dev = *root_dev
                    .entry(rule_root)
                    .or_insert_with(|| std::fs::symlink_metadata(host_root).ok().map(|m| m.dev()));
                if dev.is_some_and(|d| d != meta.dev()) {
                    // A mount point: the whole pass records it without
                    // entering it, so nothing below is watched either.
                    continue;
                }
            }
            if !self.watched.contains(&p) {
                if self.watched.len() >= self.max_watches {
                    if self.unwatched.insert(p.clone()) {
                        warnings.push(format!(
                            "realtime: the limit of {} watched directories (limits.max_watches) is reached; {} and below are covered by rescans only",
                            self.max_watches,
                            String::from_utf8_lossy(&p)
                        ));
                    }
                    continue;
                }
                match self.watcher.watch(&host, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched.insert(p.clone());
                        self.unwatched.remove(&p);
                    }
                    Err(e) => {
                        let why = if matches!(e.kind, notify::ErrorKind::MaxFilesWatch) {
                            "the kernel's inotify watch limit (fs.inotify.max_user_watches) is reached".to_string()
                        } else {
                            e.to_string()
                        };
                        if self.unwatched.insert(p.clone()) {
                            warnings.push(format!(
                                "realtime: cannot watch {}: {why}; it and everything below are covered by rescans only",
                                String::from_utf8_lossy(&p)
                            ));
                        }
                        continue;
                    }
                }
            }
            if let Ok(rd) = std::fs::read_dir(&host) {
                for ent in rd.flatten() {
                    if ent.file_type().is_ok_and(|t| t.is_dir()) {
                        let mut child = p.clone();
                        if child != b"/" {
                            child.push(b'/');
                        }
                        child.extend_from_slice(ent.file_name().as_bytes());
                        stack.push(child);
                    }
                }
            }
        }
        warnings
    }

    /// After a rescan of whole roots (the dirty set or the kernel queue
    /// overflowed): brings the watches up to date with the paths the rescan
    /// reported added, removed or replaced, without walking the roots
    /// again. Returns the directories (re)watched, to be compared once
    /// more, and warnings.
    pub fn watch_changed(&mut self, changed: &[Vec<u8>]) -> (Vec<Vec<u8>>, Vec<String>) {
        let mut fresh: Vec<Vec<u8>> = Vec::new();
        let mut gone = Vec::new();
        let mut warnings = Vec::new();
        let mut sorted: Vec<&Vec<u8>> = changed.iter().collect();
        // Sorted: a new tree's root comes before its subdirectories, which
        // its own walk covers.
        sorted.sort();
        for p in sorted {
            if fresh.last().is_some_and(|l| below(l, p)) {
                continue;
            }
            match std::fs::symlink_metadata(self.host(p)) {
                Ok(m) if m.is_dir() => {
                    // A directory replaced under the same name has a new
                    // inode: its old watch went with the old one.
                    self.watched.remove(p);
                    warnings.extend(self.add_tree(p));
                    fresh.push(p.clone());
                }
                Ok(_) => {}
                Err(_) => gone.push(p.clone()),
            }
        }
        warnings.extend(self.refresh(&gone));
        (fresh, warnings)
    }

    /// After a flush: watches directories that appeared among `paths`, and
    /// forgets watches of directories that are gone.
    pub fn refresh(&mut self, paths: &[Vec<u8>]) -> Vec<String> {
        let mut warnings = Vec::new();
        for p in paths {
            let host = self.host(p);
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => warnings.extend(self.add_tree(p)),
                Ok(_) => {}
                // A directory below is only ever watched through a watched
                // parent: a path that was not a watched directory (a
                // removed file, a dpkg temporary renamed away) has nothing
                // to forget, without looking at every watch.
                Err(_) if !self.watched.contains(p) && !self.unwatched.contains(p) => {}
                Err(_) => {
                    // inotify dropped the kernel watches itself.
                    let gone: Vec<Vec<u8>> = self
                        .watched
                        .iter()
                        .filter(|w| below(p, w))
                        .cloned()
                        .collect();
                    for g in gone {
                        let _ = self.watcher.unwatch(&self.host(&g));
                        self.watched.remove(&g);
                    }
                    self.unwatched.retain(|u| !below(p, u));
                }
            }
        }
        warnings
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;
    use std::time::Duration;

    fn rules(extra: &str) -> Watches {
        let b = Baseline::from_str(
            &format!("schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\"]\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n{extra}"),
            "t.toml",
        )
        .unwrap();
        Watches::new(&b.fim).unwrap()
    }

    fn wait(rt: &Realtime, f: impl Fn(&Dirty) -> bool) -> bool {
        for _ in 0..100 {
            if f(&lock(&rt.shared.dirty)) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    #[test]
    fn excluded_trees_are_never_watched_and_new_dirs_are() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/a/b")).unwrap();
        std::fs::create_dir_all(root.join("etc/skip/deep")).unwrap();
        let mut rt = Realtime::new(root, rules(""), 100, 1000).unwrap();
        assert!(rt.add_tree(b"/etc").is_empty());
        assert_eq!(rt.watch_count(), 3, "/etc, /etc/a, /etc/a/b");
        std::fs::write(root.join("etc/skip/deep/x"), "x").unwrap();
        std::fs::write(root.join("etc/a/b/f"), "x").unwrap();
        assert!(wait(&rt, |d| d.paths.contains(b"/etc/a/b/f".as_slice())));
        let d = rt.shared.take();
        assert!(
            d.paths.iter().all(|p| !p.starts_with(b"/etc/skip")),
            "{:?}",
            d.paths
        );
        std::fs::create_dir(root.join("etc/new")).unwrap();
        assert!(wait(&rt, |d| d.paths.contains(b"/etc/new".as_slice())));
        let d = rt.shared.take();
        let paths: Vec<Vec<u8>> = d.paths.into_iter().collect();
        rt.refresh(&paths);
        assert_eq!(rt.watch_count(), 4);
        std::fs::write(root.join("etc/new/g"), "x").unwrap();
        assert!(wait(&rt, |d| d.paths.contains(b"/etc/new/g".as_slice())));
    }

    #[test]
    fn a_removed_tree_forgets_its_watches_and_a_removed_file_none() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/a/b")).unwrap();
        std::fs::create_dir_all(root.join("etc/c")).unwrap();
        std::fs::write(root.join("etc/c/f"), "x").unwrap();
        let mut rt = Realtime::new(root, rules(""), 100, 1000).unwrap();
        rt.add_tree(b"/etc");
        assert_eq!(rt.watch_count(), 4);
        std::fs::remove_file(root.join("etc/c/f")).unwrap();
        std::fs::remove_dir_all(root.join("etc/a")).unwrap();
        let gone: Vec<Vec<u8>> = (0..5000)
            .map(|i| format!("/etc/c/f{i}.dpkg-new").into_bytes())
            .chain([b"/etc/c/f".to_vec(), b"/etc/a".to_vec()])
            .collect();
        assert!(rt.refresh(&gone).is_empty());
        assert_eq!(rt.watch_count(), 2, "/etc and /etc/c stay watched");
        assert!(!rt.watched.contains(b"/etc/a/b".as_slice()));
    }

    #[test]
    fn after_a_root_rescan_only_the_changed_directories_are_watched_again() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/old/deep")).unwrap();
        std::fs::create_dir_all(root.join("etc/keep")).unwrap();
        let mut rt = Realtime::new(root, rules(""), 100, 1000).unwrap();
        rt.add_tree(b"/etc");
        assert_eq!(rt.watch_count(), 4);
        // While the queue overflowed: a new tree, a removed one, a file.
        std::fs::create_dir_all(root.join("etc/new/a/b")).unwrap();
        std::fs::remove_dir_all(root.join("etc/old")).unwrap();
        std::fs::write(root.join("etc/keep/f"), "x").unwrap();
        let changed: Vec<Vec<u8>> = [
            "/etc/new",
            "/etc/new/a",
            "/etc/new/a/b",
            "/etc/old",
            "/etc/old/deep",
            "/etc/keep/f",
        ]
        .iter()
        .map(|p| p.as_bytes().to_vec())
        .collect();
        let (fresh, warnings) = rt.watch_changed(&changed);
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(fresh, [b"/etc/new".to_vec()], "one walk for the new tree");
        let mut watched: Vec<&[u8]> = rt.watched.iter().map(Vec::as_slice).collect();
        watched.sort();
        assert_eq!(
            watched,
            [
                b"/etc".as_slice(),
                b"/etc/keep",
                b"/etc/new",
                b"/etc/new/a",
                b"/etc/new/a/b"
            ]
        );
        std::fs::write(root.join("etc/new/a/b/g"), "x").unwrap();
        assert!(wait(&rt, |d| d
            .paths
            .contains(b"/etc/new/a/b/g".as_slice())));
        // Re-compared once they are watched, with metadata verify.
        rt.shared.requeue(fresh);
        assert!(rt.shared.take().roots.contains(b"/etc/new".as_slice()));
    }

    #[test]
    fn past_the_bound_the_root_is_rescanned_instead() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc")).unwrap();
        let mut rt = Realtime::new(root, rules(""), 5, 1000).unwrap();
        rt.add_tree(b"/etc");
        for i in 0..50 {
            std::fs::write(root.join(format!("etc/f{i}")), "x").unwrap();
        }
        assert!(wait(&rt, |d| d.roots.contains(b"/etc".as_slice())));
        std::thread::sleep(Duration::from_millis(100));
        let d = rt.shared.take();
        assert!(d.paths.len() <= 5);
        assert!(
            d.warnings.iter().any(|w| w.contains("more than 5")),
            "{:?}",
            d.warnings
        );
    }

    #[test]
    fn the_watch_cap_is_reported_not_silent() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/a")).unwrap();
        std::fs::create_dir_all(root.join("etc/b")).unwrap();
        let mut rt = Realtime::new(root, rules(""), 100, 2).unwrap();
        let w = rt.add_tree(b"/etc");
        assert_eq!(rt.watch_count(), 2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("limits.max_watches"));
        assert_eq!(rt.unwatched.len(), 1);
    }
}
