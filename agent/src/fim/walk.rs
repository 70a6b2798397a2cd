//! The walker: a depth-first walk of the watched trees inside the root,
//! relative to directory descriptors (never following a symlink, never
//! re-resolving a path), visiting each directory's entries sorted by name so
//! that the output is in database key order (see [`super::entry::path_key`]).
//!
//! Paths between the root and the watch roots are crossed in *transit*: only
//! the components leading to a watch root are opened, nothing is recorded.
//! A watch root met inside another watch's tree takes over (most specific
//! wins), even past the other watch's device boundary.

use super::entry::{Entry, Kind, State};
use super::hash::Want;
use super::rules::Plan;
use super::xattr;
use plumb_core::FimAttribute;
use rustix::fs::{AtFlags, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where a targeted pass over in-root path `p` must start so that it records
/// what the whole walk records: `p` itself; its parent when `p` is a mount
/// point inside a watch that does not cross devices (the mount point is
/// recorded, nothing below it); `None` when `p` lies below such a mount
/// point or below a symlink, where the whole walk never goes. Ancestors
/// that do not exist (a removed tree) end the check.
pub fn target(plan: &Plan, root: &Path, p: &[u8]) -> Option<Vec<u8>> {
    let Some(w) = plan.governing(p) else {
        return Some(p.to_vec());
    };
    if w.cross_devices || w.path == p {
        return Some(p.to_vec());
    }
    let at = |q: &[u8]| root.join(OsStr::from_bytes(q.strip_prefix(b"/").unwrap_or(q)));
    let Ok(top) = rustix::fs::lstat(at(&w.path)) else {
        return Some(p.to_vec());
    };
    let start = if w.path == b"/" { 0 } else { w.path.len() };
    let mut cut = start + 1;
    while cut <= p.len() {
        let end = p[cut..]
            .iter()
            .position(|&b| b == b'/')
            .map_or(p.len(), |i| cut + i);
        let q = &p[..end];
        let Ok(st) = rustix::fs::lstat(at(q)) else {
            break;
        };
        let last = end == p.len();
        let dir = Kind::of_mode(st.st_mode) == Kind::Dir;
        if !last && !dir {
            return None;
        }
        if dir && st.st_dev != top.st_dev {
            if !last {
                return None;
            }
            let parent = p[..cut - 1].to_vec();
            return Some(if parent.is_empty() {
                b"/".to_vec()
            } else {
                parent
            });
        }
        cut = end + 1;
    }
    Some(p.to_vec())
}

/// Something the scan reports, in key order.
#[derive(Debug)]
pub enum Item {
    /// A recorded path.
    Entry(Entry),
    /// Rows at or below this path could not be observed this time (a
    /// directory that could not be listed): they are kept, not reported removed.
    Unknown(Vec<u8>),
    /// A path that could not be read or reached, with no entry recorded.
    Error {
        /// In-root path.
        path: Vec<u8>,
        /// Why.
        message: String,
    },
}

/// A regular file to be read by a worker.
#[derive(Debug)]
pub struct Job {
    /// Its parent directory, verified by the walker.
    pub dir: Arc<OwnedFd>,
    /// Its name in that directory.
    pub name: Vec<u8>,
    /// The walker's lstat.
    pub lst: Stat,
    /// The entry so far (lstat metadata).
    pub entry: Entry,
    /// What to read.
    pub want: Want,
}

/// What the walker hands on.
#[derive(Debug)]
pub enum Out {
    /// Complete.
    Ready(Item),
    /// Needs a worker.
    Job(Box<Job>),
}

/// Content of an unchanged file taken from the database (metadata verify).
#[derive(Debug)]
pub struct Reused {
    /// Stored hash.
    pub hash: Option<(super::entry::HashAlg, Vec<u8>)>,
    /// Stored xattrs.
    pub xattrs: Option<Vec<u8>>,
}

/// Looks up a file's stored content when its metadata did not change.
pub type ReuseFn<'a> = dyn FnMut(&Entry, Want) -> Option<Reused> + 'a;

struct Frame {
    fd: Arc<OwnedFd>,
    path: Vec<u8>,
    /// Governing watch for listed children; None in transit.
    gov: Option<usize>,
    /// Device of the governing watch's root.
    dev: u64,
    children: Vec<Vec<u8>>,
    next: usize,
}

fn join(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut p = Vec::with_capacity(dir.len() + 1 + name.len());
    p.extend_from_slice(dir);
    if dir != b"/" {
        p.push(b'/');
    }
    p.extend_from_slice(name);
    p
}

/// Why a directory was not entered.
#[derive(Debug, thiserror::Error)]
enum OpenDirError {
    #[error("cannot open directory: {0}")]
    Open(Errno),
    #[error("fstat: {0}")]
    Stat(Errno),
    #[error("directory replaced during the scan; not entered")]
    Replaced,
}

fn open_dir(parent: &OwnedFd, name: &[u8], st: &Stat) -> Result<OwnedFd, OpenDirError> {
    let fd = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY
            | OFlags::DIRECTORY
            | OFlags::NOFOLLOW
            | OFlags::NONBLOCK
            | OFlags::NOCTTY
            | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(OpenDirError::Open)?;
    let now = rustix::fs::fstat(&fd).map_err(OpenDirError::Stat)?;
    if now.st_dev != st.st_dev || now.st_ino != st.st_ino {
        return Err(OpenDirError::Replaced);
    }
    Ok(fd)
}

fn list(fd: &OwnedFd) -> Result<Vec<Vec<u8>>, Errno> {
    // A duplicate of the descriptor: reopening "." would need search permission.
    let dup = fd
        .try_clone()
        .map_err(|e| Errno::from_io_error(&e).unwrap_or(Errno::IO))?;
    let mut dir = rustix::fs::Dir::new(dup)?;
    let mut names = Vec::new();
    while let Some(ent) = dir.read() {
        let ent = ent?;
        let n = ent.file_name().to_bytes();
        if n != b"." && n != b".." {
            names.push(n.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// The walk. `emit` returns false to stop early.
pub struct Walk<'a> {
    plan: &'a Plan,
    root: PathBuf,
    reuse: Option<&'a mut ReuseFn<'a>>,
    emit: &'a mut dyn FnMut(Out) -> bool,
}

impl<'a> Walk<'a> {
    /// A walk of `plan` inside `root` (a host path).
    pub fn new(
        plan: &'a Plan,
        root: &Path,
        reuse: Option<&'a mut ReuseFn<'a>>,
        emit: &'a mut dyn FnMut(Out) -> bool,
    ) -> Walk<'a> {
        Walk {
            plan,
            root: root.to_path_buf(),
            reuse,
            emit,
        }
    }

    fn host(&self, path: &[u8]) -> PathBuf {
        self.root
            .join(OsStr::from_bytes(path.strip_prefix(b"/").unwrap_or(path)))
    }

    fn error(&mut self, path: &[u8], message: String) -> bool {
        (self.emit)(Out::Ready(Item::Error {
            path: path.to_vec(),
            message,
        }))
    }

    /// Records one path under watch `w`; false when the consumer stopped.
    fn record(
        &mut self,
        w: usize,
        parent: &Arc<OwnedFd>,
        name: &[u8],
        path: Vec<u8>,
        st: &Stat,
    ) -> bool {
        let watch = &self.plan.watches[w];
        let attrs = watch.attrs;
        let mut e = Entry::from_stat(path, watch.name.clone(), st);
        let want = Want {
            hash: attrs.hash(),
            xattrs: attrs.has(FimAttribute::Xattrs),
        };
        match e.kind {
            Kind::File if want.hash.is_some() || want.xattrs => {
                if let Some(reuse) = self.reuse.as_mut() {
                    if let Some(r) = reuse(&e, want) {
                        e.hash = r.hash;
                        e.xattrs = r.xattrs;
                        return (self.emit)(Out::Ready(Item::Entry(e)));
                    }
                }
                return (self.emit)(Out::Job(Box::new(Job {
                    dir: parent.clone(),
                    name: name.to_vec(),
                    lst: *st,
                    entry: e,
                    want,
                })));
            }
            Kind::Symlink if attrs.has(FimAttribute::LinkTarget) => {
                match rustix::fs::readlinkat(&**parent, name, Vec::new()) {
                    Ok(t) => e.link_target = Some(t.into_bytes()),
                    Err(err) => e.state = State::Error(format!("readlink: {err}")),
                }
            }
            _ => {}
        }
        if want.xattrs && e.kind != Kind::File {
            // FIFOs, sockets and devices are never opened: l* calls on the path.
            match xattr::of_path(&self.host(&e.path)) {
                Ok(x) => e.xattrs = Some(x),
                Err(err) => {
                    if e.state == State::Ok {
                        e.state = State::Error(err.to_string());
                    }
                }
            }
        }
        (self.emit)(Out::Ready(Item::Entry(e)))
    }

    /// Reports `path` as unreadable (`Item::Error`) and its rows as not
    /// observed (`Item::Unknown`).
    fn unknown(&mut self, path: &[u8], message: String) -> Result<(), Stopped> {
        let go = self.error(path, message) && (self.emit)(Out::Ready(Item::Unknown(path.to_vec())));
        if go { Ok(()) } else { Err(Stopped) }
    }

    /// Reports every watch root below `path` as not reached, and why.
    fn roots_not_reached(&mut self, path: &[u8], why: &str) -> Result<(), Stopped> {
        let roots: Vec<Vec<u8>> = self
            .plan
            .roots_below(path)
            .map(|w| w.path.clone())
            .collect();
        for r in roots {
            if !self.error(&r, format!("watch root not reached: {why}")) {
                return Err(Stopped);
            }
        }
        Ok(())
    }

    /// Runs the walk to the end (or until the consumer stops).
    pub fn run(mut self) -> anyhow::Result<()> {
        let root_fd = rustix::fs::open(
            &self.root,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| anyhow::anyhow!("--root {}: {e}", self.root.display()))?;
        let root_st = rustix::fs::fstat(&root_fd)?;
        // A stop is the consumer's decision: it knows why.
        let Ok(mut stack) = self.root_frame(Arc::new(root_fd), &root_st) else {
            return Ok(());
        };
        while let Some(top) = stack.last_mut() {
            let Some(name) = top.children.get_mut(top.next).map(std::mem::take) else {
                stack.pop();
                continue;
            };
            top.next += 1;
            let path = join(&top.path, &name);
            let (parent, parent_gov, parent_dev) = (top.fd.clone(), top.gov, top.dev);
            match self.visit(&parent, parent_gov, parent_dev, &name, path) {
                Ok(Some(frame)) => stack.push(frame),
                Ok(None) => {}
                Err(Stopped) => return Ok(()),
            }
        }
        Ok(())
    }

    /// The walk's first frame: the root, recorded like any directory when
    /// a watch is rooted there, else crossed in transit.
    fn root_frame(&mut self, root_fd: Arc<OwnedFd>, root_st: &Stat) -> Result<Vec<Frame>, Stopped> {
        let Some(w) = self.plan.rooted_at(b"/") else {
            return Ok(vec![Frame {
                fd: root_fd,
                path: b"/".to_vec(),
                gov: None,
                dev: root_st.st_dev,
                children: self.plan.next_components(b"/"),
                next: 0,
            }]);
        };
        let mut e = Entry::from_stat(b"/".to_vec(), self.plan.watches[w].name.clone(), root_st);
        if self.plan.watches[w].attrs.has(FimAttribute::Xattrs) {
            match xattr::of_fd(&*root_fd) {
                Ok(x) => e.xattrs = Some(x),
                Err(m) => e.state = State::Error(m.to_string()),
            }
        }
        if !(self.emit)(Out::Ready(Item::Entry(e))) {
            return Err(Stopped);
        }
        let (children, gov) = self.children(&root_fd, b"/", Some(w))?;
        Ok(vec![Frame {
            fd: root_fd,
            path: b"/".to_vec(),
            gov,
            dev: root_st.st_dev,
            children,
            next: 0,
        }])
    }

    /// The names to visit in directory `fd` governed by `gov`: all of them,
    /// or when it cannot be listed (reported), only the way to the watch
    /// roots below it, crossed in transit.
    fn children(
        &mut self,
        fd: &OwnedFd,
        path: &[u8],
        gov: Option<usize>,
    ) -> Result<(Vec<Vec<u8>>, Option<usize>), Stopped> {
        match list(fd) {
            Ok(c) => Ok((c, gov)),
            Err(err) => {
                self.unknown(path, format!("cannot list: {err}"))?;
                Ok((self.plan.next_components(path), None))
            }
        }
    }

    /// Visits one child; returns the frame to descend into, if any.
    fn visit(
        &mut self,
        parent: &Arc<OwnedFd>,
        parent_gov: Option<usize>,
        parent_dev: u64,
        name: &[u8],
        path: Vec<u8>,
    ) -> Result<Option<Frame>, Stopped> {
        if self.plan.skip.contains(&path) {
            return Ok(None);
        }
        let own = self.plan.rooted_at(&path);
        let gov = own.or_else(|| parent_gov.filter(|&w| !self.plan.watches[w].excludes(&path)));
        let transit = self.plan.has_roots_below(&path);
        if gov.is_none() && !transit {
            return Ok(None);
        }
        let st = match rustix::fs::statat(&**parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            // Absent (or gone since listed): nothing to record.
            Err(Errno::NOENT) => return Ok(None),
            Err(err) => {
                self.unknown(&path, format!("lstat: {err}"))?;
                return Ok(None);
            }
        };
        let kind = Kind::of_mode(st.st_mode);
        if let Some(w) = gov {
            if !self.record(w, parent, name, path.clone(), &st) {
                return Err(Stopped);
            }
        }
        if kind != Kind::Dir {
            if transit {
                let why = format!(
                    "{} is a {}, not a directory (not followed)",
                    String::from_utf8_lossy(&path),
                    kind.name()
                );
                self.roots_not_reached(&path, &why)?;
            }
            return Ok(None);
        }
        let dev = if own.is_some() { st.st_dev } else { parent_dev };
        let descend = gov.is_some_and(|w| {
            own.is_some() || st.st_dev == parent_dev || self.plan.watches[w].cross_devices
        });
        if !descend && !transit {
            return Ok(None);
        }
        let fd = match open_dir(parent, name, &st) {
            Ok(fd) => fd,
            Err(e) => {
                let msg = e.to_string();
                if descend {
                    self.unknown(&path, msg.clone())?;
                }
                let why = format!("{}: {msg}", String::from_utf8_lossy(&path));
                self.roots_not_reached(&path, &why)?;
                return Ok(None);
            }
        };
        let (children, gov) = if descend {
            self.children(&fd, &path, gov)?
        } else {
            (self.plan.next_components(&path), None)
        };
        Ok(Some(Frame {
            fd: Arc::new(fd),
            path,
            gov,
            dev,
            children,
            next: 0,
        }))
    }
}

/// The consumer stopped the walk (`emit` returned false).
#[derive(Debug)]
struct Stopped;

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;

    #[test]
    fn a_target_below_a_symlink_is_not_walked() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("etc/real")).unwrap();
        std::fs::write(root.join("etc/real/x"), "x").unwrap();
        std::os::unix::fs::symlink("real", root.join("etc/link")).unwrap();
        let b = Baseline::from_str(
            "schema = 1\nid = \"t\"\nversion = 1\n[[fim]]\npath = \"/etc\"\nseverity = \"high\"\n",
            "t",
        )
        .unwrap();
        let plan = Plan::new(&b.fim).unwrap();
        let t = |p: &[u8]| target(&plan, root, p);
        assert_eq!(t(b"/etc/real/x"), Some(b"/etc/real/x".to_vec()));
        assert_eq!(
            t(b"/etc/link"),
            Some(b"/etc/link".to_vec()),
            "the link itself is recorded"
        );
        assert_eq!(t(b"/etc/link/x"), None);
        assert_eq!(t(b"/etc/gone/deeper"), Some(b"/etc/gone/deeper".to_vec()));
        assert_eq!(t(b"/etc"), Some(b"/etc".to_vec()));
    }
}
