//! What an action would do, as a list of operations on host paths, and the
//! view of the root that actions plan against (the disk, plus the file
//! contents earlier rules of a dry run would have written).

use crate::checks::{Ctx, UsersError};
use crate::rootfs::ReadError;
use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Why an action cannot be planned: nothing is changed for the rule, and
/// the report says why. Each message is whole (causes in it).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// A path of the root cannot be listed, resolved or looked at.
    #[error("cannot {doing} {path}: {error}")]
    Io {
        /// What was being done (`list`, `resolve`, `stat`...).
        doing: &'static str,
        /// In-root path.
        path: String,
        /// Why.
        error: std::io::Error,
    },
    /// A file of the root cannot be read.
    #[error("cannot read {0}")]
    Read(ReadError),
    /// The root's account database cannot be read.
    #[error(transparent)]
    Users(#[from] UsersError),
    /// The root's sysctl configuration cannot be read.
    #[error(transparent)]
    Sysctl(#[from] crate::sysctl_d::Error),
    /// The rule's systemd unit cannot be resolved.
    #[error(transparent)]
    Unit(#[from] crate::systemd_units::UnitError),
    /// The action refuses: what it would write is not safe or not possible
    /// here (the reason, for the report).
    #[error("{0}")]
    Refused(String),
}

impl From<String> for PlanError {
    fn from(why: String) -> PlanError {
        PlanError::Refused(why)
    }
}

impl From<crate::sshd_config::Refusal> for PlanError {
    fn from(why: crate::sshd_config::Refusal) -> PlanError {
        PlanError::Refused(why.0)
    }
}

impl From<&str> for PlanError {
    fn from(why: &str) -> PlanError {
        PlanError::Refused(why.to_string())
    }
}

/// `PlanError::Io` for `doing` on `path`.
pub(super) fn io_err(doing: &'static str, path: &str) -> impl FnOnce(std::io::Error) -> PlanError {
    let path = path.to_string();
    move |error| PlanError::Io { doing, path, error }
}

/// One change to the host. Every path is the host path actually touched
/// (symlinks already resolved inside the root) with its in-root form for
/// display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Replace a regular file's content (or create it when `old` is None),
    /// keeping its owner, mode and xattrs.
    Write {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
        /// content planned against; the write is refused if it changed since
        old: Option<Vec<u8>>,
        /// new content
        new: Vec<u8>,
    },
    /// chmod
    Chmod {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
        /// bits now (`& 0o7777`)
        old: u32,
        /// bits wanted
        new: u32,
    },
    /// chown (the mode is put back afterwards: chown clears setuid bits)
    Chown {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
        /// (uid, gid) now
        old: (u32, u32),
        /// (uid, gid) wanted
        new: (u32, u32),
        /// `owner root(0) → shadow(42)`-style words
        shown: String,
    },
    /// Remove a symlink (or other non-directory entry).
    Remove {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
        /// what it was, for the description
        was: String,
    },
    /// Create (or replace an existing symlink with) a symlink.
    Symlink {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
        /// link text
        target: String,
        /// link text replaced, when there was a link
        replaces: Option<String>,
    },
    /// Create a directory (mode 0755) for a Plumbline-owned file.
    Mkdir {
        /// in-root path
        path: String,
        /// host path
        host: PathBuf,
    },
    /// Write a runtime kernel parameter under PROC/sys.
    SysctlRuntime {
        /// dotted key
        key: String,
        /// host path of the proc file
        host: PathBuf,
        /// value now
        old: String,
        /// value wanted
        new: String,
    },
}

impl Op {
    /// The host path the operation changes.
    pub fn host(&self) -> &Path {
        match self {
            Op::Write { host, .. }
            | Op::Chmod { host, .. }
            | Op::Chown { host, .. }
            | Op::Remove { host, .. }
            | Op::Symlink { host, .. }
            | Op::Mkdir { host, .. }
            | Op::SysctlRuntime { host, .. } => host,
        }
    }

    /// The in-root path (or sysctl key) the operation changes, for display.
    pub fn path(&self) -> &str {
        match self {
            Op::Write { path, .. }
            | Op::Chmod { path, .. }
            | Op::Chown { path, .. }
            | Op::Remove { path, .. }
            | Op::Symlink { path, .. }
            | Op::Mkdir { path, .. } => path,
            Op::SysctlRuntime { key, .. } => key,
        }
    }

    /// A one-line description of the change.
    pub fn describe(&self) -> String {
        match self {
            Op::Write {
                path, old: None, ..
            } => format!("create {path}"),
            Op::Write { path, .. } => format!("edit {path}"),
            Op::Chmod { path, old, new, .. } => format!("{path}: mode {old:04o} → {new:04o}"),
            Op::Chown { path, shown, .. } => format!("{path}: {shown}"),
            Op::Remove { path, was, .. } => format!("remove {path} ({was})"),
            Op::Mkdir { path, .. } => format!("create directory {path} (mode 0755)"),
            Op::Symlink {
                path,
                target,
                replaces: None,
                ..
            } => format!("create link {path} -> {target}"),
            Op::Symlink {
                path,
                target,
                replaces: Some(old),
                ..
            } => format!("replace link {path} -> {old} with {path} -> {target}"),
            Op::SysctlRuntime {
                key,
                host,
                old,
                new,
            } => format!("runtime {key}: {old} → {new} ({})", host.display()),
        }
    }

    /// A unified diff, for file edits.
    pub fn diff(&self) -> Option<String> {
        match self {
            Op::Write { path, old, new, .. } => Some(super::diff::unified(
                path,
                old.as_deref().unwrap_or_default(),
                new,
            )),
            _ => None,
        }
    }
}

/// What one action would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Changes, in order. Empty: the targets already hold the values.
    pub ops: Vec<Op>,
    /// Things the operator should know (validation skipped, runtime value
    /// not changed, a vendor link this action cannot remove...).
    pub notes: Vec<String>,
    /// `systemctl daemon-reload` is due once the changes are made.
    pub daemon_reload: bool,
}

/// The root as actions see it while planning: the disk, overlaid with the
/// file contents earlier rules of a dry run would have written.
#[derive(Debug)]
pub struct View<'a> {
    /// The checked root.
    pub ctx: &'a Ctx,
    overlay: HashMap<PathBuf, Vec<u8>>,
}

impl<'a> View<'a> {
    /// A view of the disk as it is.
    pub fn new(ctx: &'a Ctx) -> View<'a> {
        View {
            ctx,
            overlay: HashMap::new(),
        }
    }

    /// Records the writes of a plan, so later plans build on them.
    pub fn overlay(&mut self, plan: &Plan) {
        for op in &plan.ops {
            if let Op::Write { host, new, .. } = op {
                self.overlay.insert(host.clone(), new.clone());
            }
        }
    }

    /// The host path a file edit at `in_root` lands on: symlinks (the
    /// last one too) resolved inside the root; a missing file is placed in
    /// its resolved parent directory.
    pub fn target(&self, in_root: &str) -> Result<PathBuf, PlanError> {
        match self.ctx.fs.resolve(in_root, true) {
            Ok(p) => Ok(p),
            // On the live root, canonicalize refuses a missing last component.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let (dir, name) = in_root
                    .rsplit_once('/')
                    .ok_or_else(|| format!("{in_root}: not an absolute path"))?;
                let dir = if dir.is_empty() { "/" } else { dir };
                let d = self
                    .ctx
                    .fs
                    .resolve(dir, true)
                    .map_err(io_err("resolve", dir))?;
                Ok(d.join(name))
            }
            Err(e) => Err(io_err("resolve", in_root)(e)),
        }
    }

    /// The content of a regular file, `None` when it does not exist.
    pub fn read(&self, in_root: &str) -> Result<Option<Vec<u8>>, PlanError> {
        let host = self.target(in_root)?;
        if let Some(b) = self.overlay.get(&host) {
            return Ok(Some(b.clone()));
        }
        match self.ctx.fs.read(in_root) {
            Ok(b) => Ok(Some(b)),
            Err(ReadError::NotFound(_)) => Ok(None),
            Err(e) => Err(PlanError::Read(e)),
        }
    }

    /// A planned file edit: `None` when `new` is what is there already.
    pub fn write(
        &self,
        in_root: &str,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<Option<Op>, PlanError> {
        if old.as_deref() == Some(new.as_slice()) {
            return Ok(None);
        }
        if old.is_none() {
            let host = self.target(in_root)?;
            let dir = host.parent().unwrap_or(Path::new("/"));
            if !dir.is_dir() {
                return Err(
                    format!("cannot create {in_root}: its directory does not exist").into(),
                );
            }
        }
        Ok(Some(Op::Write {
            path: in_root.to_string(),
            host: self.target(in_root)?,
            old,
            new,
        }))
    }

    /// Like [`View::write`] for a file Plumbline owns: its directory
    /// (`/etc/sysctl.d`, `/etc/modprobe.d`) is created first when missing.
    pub fn write_owned(
        &self,
        in_root: &str,
        old: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<Vec<Op>, PlanError> {
        let mut ops = Vec::new();
        if old.is_none() {
            let (dir, _) = in_root.rsplit_once('/').unwrap_or(("/", in_root));
            let host = self.target(dir)?;
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(format!("{dir} exists and is not a directory").into()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    if !host.parent().is_some_and(Path::is_dir) {
                        return Err(
                            format!("cannot create {dir}: its parent does not exist").into()
                        );
                    }
                    ops.push(Op::Mkdir {
                        path: dir.to_string(),
                        host: host.clone(),
                    });
                    ops.push(Op::Write {
                        path: in_root.to_string(),
                        host: host.join(in_root.rsplit('/').next().unwrap_or(in_root)),
                        old,
                        new,
                    });
                    return Ok(ops);
                }
                Err(e) => return Err(io_err("stat", dir)(e)),
            }
        }
        ops.extend(self.write(in_root, old, new)?);
        Ok(ops)
    }

    /// Whether the root is the running system's own `/`.
    pub fn live(&self) -> bool {
        self.ctx.fs.root() == Path::new("/")
    }
}

/// A file's lines, each with its terminator, so edits keep every other
/// byte as it was (odd bytes, CRLF, a missing final newline).
pub fn lines(bytes: &[u8]) -> Vec<&[u8]> {
    bytes.split_inclusive(|&b| b == b'\n').collect()
}

/// A line's text without its terminator, odd bytes replaced (for matching
/// only; the bytes written are the original ones).
pub fn text(line: &[u8]) -> Cow<'_, str> {
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    String::from_utf8_lossy(body)
}

/// The terminator of a line (`\n`, `\r\n`, or nothing on a last line).
pub fn terminator(line: &[u8]) -> &'static [u8] {
    if line.ends_with(b"\r\n") {
        b"\r\n"
    } else if line.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    }
}

/// The leading white space of a line.
pub fn indent(line: &[u8]) -> &[u8] {
    let n = line
        .iter()
        .take_while(|&&b| b == b' ' || b == b'\t')
        .count();
    &line[..n]
}

/// Prefix that marks a line Plumbline commented out.
pub const COMMENT_PREFIX: &[u8] = b"# plumb: ";

/// Appends a line to file content, adding the missing final newline first.
pub fn append_line(out: &mut Vec<u8>, line: &str) {
    if !out.is_empty() && !out.ends_with(b"\n") {
        out.push(b'\n');
    }
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
}

/// Refuses text that would break out of one line of a configuration file
/// (a newline would let a value add directives of its own).
pub fn one_line(what: &str, s: &str) -> Result<(), PlanError> {
    if s.chars().any(|c| c.is_control() && c != '\t') {
        return Err(format!(
            "{what} {s:?} holds a newline or control character; refusing to write it"
        )
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_keep_every_byte() {
        let b = b"a\r\nb\xff\n\nlast";
        let ls = lines(b);
        assert_eq!(ls.concat(), b);
        assert_eq!(ls.len(), 4);
        assert_eq!(text(ls[0]), "a");
        assert_eq!(terminator(ls[0]), b"\r\n");
        assert_eq!(terminator(ls[3]), b"");
        assert_eq!(text(ls[1]), "b\u{fffd}");
        let mut out = b"x".to_vec();
        append_line(&mut out, "y");
        assert_eq!(out, b"x\ny\n");
        assert!(one_line("value", "a\nb").is_err());
        assert!(one_line("value", "a b\tc").is_ok());
    }
}
