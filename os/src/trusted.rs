//! Reading a file Plumbline must trust: a config, a baseline or bundle, a
//! public key, a certificate or CRL, a private key.
//!
//! [`open_trusted`] opens first (`O_NOFOLLOW`, `O_CLOEXEC`, `O_NONBLOCK` so a
//! FIFO cannot block it), then judges the open descriptor with `fstat`, and
//! the caller reads from that same descriptor: nothing can be swapped
//! between the check and the read. The rule, the same for both binaries:
//!
//! - a regular file, named directly (a symlink is refused);
//! - owned by root or by the user running plumb;
//! - no group or other write bit;
//! - for a private key, no group or other access at all (mode 0600 or 0400).

use std::fmt;
use std::fs::File;
use std::io::{self, Read as _};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::{Path, PathBuf};

/// What a trusted file is, which sets the rule it must pass and names it in
/// messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// The agent's or the collector's config file.
    Config,
    /// A baseline (TOML) or a signed baseline bundle.
    Baseline,
    /// A public key trusted to sign baselines.
    PublicKey,
    /// A certificate, certificate chain, CA or CRL (PEM).
    Certificate,
    /// A private key: TLS, CA, baseline signing, FIM seal.
    PrivateKey,
}

impl FileKind {
    /// Whether group and others must have no access at all.
    pub fn is_secret(self) -> bool {
        self == FileKind::PrivateKey
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::Config => "config file",
            FileKind::Baseline => "baseline",
            FileKind::PublicKey => "public key",
            FileKind::Certificate => "certificate",
            FileKind::PrivateKey => "private key",
        })
    }
}

/// Why a file (or a private directory) was refused: `PATH: problem`.
#[derive(Debug, thiserror::Error)]
#[error("{}: {problem}", .path.display())]
pub struct TrustError {
    /// The file or directory at fault.
    pub path: PathBuf,
    /// What is wrong with it.
    #[source]
    pub problem: Problem,
}

/// What is wrong with a trusted file or a private directory.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// It could not be opened (missing, no permission...).
    #[error("cannot open: {0}")]
    Open(#[source] io::Error),
    /// The last component is a symbolic link.
    #[error("is a symbolic link; refusing it (name the file itself: links are not followed)")]
    Symlink,
    /// Not a regular file (or, for a private directory, not a directory).
    #[error("is {found}, not a {expected}; refusing it")]
    WrongType {
        /// what it is ("a FIFO", "a directory"...)
        found: &'static str,
        /// what it should be ("regular file", "directory")
        expected: &'static str,
    },
    /// Owned by someone other than root or the running user.
    #[error(
        "owned by uid {uid}, not by root or the user running plumb (uid {euid}); refusing this {kind} (chown it)"
    )]
    Owner {
        /// its owner
        uid: u32,
        /// the running user
        euid: u32,
        /// what it is
        kind: Kind,
    },
    /// Group or others may write it.
    #[error(
        "mode {mode:04o} makes this {kind} writable by group or others; refusing it (chmod go-w)"
    )]
    Writable {
        /// its permission bits
        mode: u32,
        /// what it is
        kind: Kind,
    },
    /// A private key group or others may read, write or execute.
    #[error(
        "mode {mode:04o} gives group/other access to a private key; refusing it (chmod 600 it)"
    )]
    SecretAccess {
        /// its permission bits
        mode: u32,
    },
    /// Larger than the caller's limit.
    #[error("{size} bytes is larger than the {limit}-byte limit for a {kind}")]
    TooLarge {
        /// its size (at least)
        size: u64,
        /// the limit
        limit: u64,
        /// what it is
        kind: Kind,
    },
    /// Reading (or changing the mode of) the open file failed.
    #[error("cannot {action}: {source}")]
    Io {
        /// what was attempted
        action: &'static str,
        /// the cause
        source: io::Error,
    },
}

/// What a refused path is, in messages: a file of some [`FileKind`] or a
/// private directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A trusted file.
    File(FileKind),
    /// A state or PKI directory.
    PrivateDir,
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Kind::File(k) => k.fmt(f),
            Kind::PrivateDir => f.write_str("private directory"),
        }
    }
}

impl TrustError {
    pub(crate) fn new(path: &Path, problem: Problem) -> TrustError {
        TrustError {
            path: path.to_path_buf(),
            problem,
        }
    }

    /// The file does not exist.
    pub fn is_not_found(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
    }

    /// The underlying I/O error, for an open or read failure (not for a
    /// refusal by the rule).
    pub fn io_error(&self) -> Option<&io::Error> {
        match &self.problem {
            Problem::Open(e) | Problem::Io { source: e, .. } => Some(e),
            _ => None,
        }
    }
}

/// A file that passed the rule, open for reading.
#[derive(Debug)]
pub struct TrustedFile {
    file: File,
    path: PathBuf,
    kind: FileKind,
    size: u64,
}

impl TrustedFile {
    /// The path it was opened by.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its size when it was checked.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Reads the whole file, refusing one larger than `limit` bytes (also
    /// one that grows past it while being read).
    pub fn read_capped(self, limit: u64) -> Result<Vec<u8>, TrustError> {
        let too_large = |size| {
            TrustError::new(
                &self.path,
                Problem::TooLarge {
                    size,
                    limit,
                    kind: Kind::File(self.kind),
                },
            )
        };
        if self.size > limit {
            return Err(too_large(self.size));
        }
        let mut bytes = Vec::with_capacity(usize::try_from(self.size).unwrap_or(0));
        (&self.file)
            .take(limit.saturating_add(1))
            .read_to_end(&mut bytes)
            .map_err(|source| {
                TrustError::new(
                    &self.path,
                    Problem::Io {
                        action: "read",
                        source,
                    },
                )
            })?;
        if bytes.len() as u64 > limit {
            return Err(too_large(bytes.len() as u64));
        }
        Ok(bytes)
    }

    /// The open file, to read as the caller wishes.
    pub fn into_file(self) -> File {
        self.file
    }
}

/// Opens `path` and checks it against the rule for `kind` (see the module
/// documentation). Read from the returned file, never from the path again.
pub fn open_trusted(path: &Path, kind: FileKind) -> Result<TrustedFile, TrustError> {
    use rustix::fs::{Mode, OFlags};
    let flags =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY;
    let fd = match rustix::fs::open(path, flags, Mode::empty()) {
        Ok(fd) => fd,
        Err(e) if e == rustix::io::Errno::LOOP && is_symlink(path) => {
            return Err(TrustError::new(path, Problem::Symlink));
        }
        Err(e) => return Err(TrustError::new(path, Problem::Open(e.into()))),
    };
    let file = File::from(fd);
    let meta = file.metadata().map_err(|source| {
        TrustError::new(
            path,
            Problem::Io {
                action: "fstat",
                source,
            },
        )
    })?;
    judge(&meta, kind, euid()).map_err(|p| TrustError::new(path, p))?;
    Ok(TrustedFile {
        file,
        path: path.to_path_buf(),
        kind,
        size: meta.len(),
    })
}

/// [`open_trusted`], then the whole content, at most `limit` bytes.
pub fn read_trusted(path: &Path, kind: FileKind, limit: u64) -> Result<Vec<u8>, TrustError> {
    open_trusted(path, kind)?.read_capped(limit)
}

fn is_symlink(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// The effective uid of this process.
pub(crate) fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// What a file type is, for messages.
pub(crate) fn type_name(t: std::fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_char_device() {
        "a character device"
    } else {
        "an unknown file type"
    }
}

/// The rule, on the metadata of the open file; `euid` is the running user.
fn judge(meta: &std::fs::Metadata, kind: FileKind, euid: u32) -> Result<(), Problem> {
    if !meta.file_type().is_file() {
        return Err(Problem::WrongType {
            found: type_name(meta.file_type()),
            expected: "regular file",
        });
    }
    let uid = meta.uid();
    if uid != 0 && uid != euid {
        return Err(Problem::Owner {
            uid,
            euid,
            kind: Kind::File(kind),
        });
    }
    let mode = meta.mode() & 0o7777;
    if kind.is_secret() && mode & 0o077 != 0 {
        return Err(Problem::SecretAccess { mode });
    }
    if mode & 0o022 != 0 {
        return Err(Problem::Writable {
            mode,
            kind: Kind::File(kind),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn file(dir: &Path, name: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, b"content").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    fn err(p: &Path, kind: FileKind) -> String {
        open_trusted(p, kind).unwrap_err().to_string()
    }

    #[test]
    fn owner_or_root_only() {
        let d = tempfile::tempdir().unwrap();
        let p = file(d.path(), "c.toml", 0o644);
        let meta = std::fs::metadata(&p).unwrap();
        let me = meta.uid();
        judge(&meta, FileKind::Config, me).unwrap();
        // The same file judged for another running user: its owner is
        // neither root nor that user (unless it is root's, which passes).
        let other = me.wrapping_add(1).max(1);
        let r = judge(&meta, FileKind::Config, other);
        if me == 0 {
            r.unwrap();
        } else {
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&format!("owned by uid {me}")), "{e}");
        }
        // A file owned by someone else, checked for real (root can chown).
        if euid() == 0 {
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            let e = err(&p, FileKind::Config);
            assert!(e.contains("owned by uid 65534, not by root"), "{e}");
            assert!(e.starts_with(&p.display().to_string()), "{e}");
        }
    }

    #[test]
    fn group_or_other_write_is_refused() {
        let d = tempfile::tempdir().unwrap();
        for (mode, kind) in [
            (0o664, FileKind::Config),
            (0o620, FileKind::Baseline),
            (0o646, FileKind::PublicKey),
            (0o602, FileKind::Certificate),
        ] {
            let p = file(d.path(), "f", mode);
            let e = err(&p, kind);
            assert!(
                e.contains(&format!(
                    "mode {mode:04o} makes this {kind} writable by group or others"
                )),
                "{e}"
            );
        }
        for mode in [0o644, 0o640, 0o600, 0o444, 0o400] {
            let p = file(d.path(), "f", mode);
            assert_eq!(read_trusted(&p, FileKind::Config, 100).unwrap(), b"content");
        }
    }

    #[test]
    fn private_keys_allow_no_group_or_other_access() {
        let d = tempfile::tempdir().unwrap();
        for mode in [0o640, 0o604, 0o644, 0o610, 0o601, 0o660] {
            let p = file(d.path(), "agent.key", mode);
            let e = err(&p, FileKind::PrivateKey);
            assert_eq!(
                e,
                format!(
                    "{}: mode {mode:04o} gives group/other access to a private key; refusing it (chmod 600 it)",
                    p.display()
                )
            );
        }
        for mode in [0o600, 0o400] {
            let p = file(d.path(), "agent.key", mode);
            read_trusted(&p, FileKind::PrivateKey, 100).unwrap();
        }
        // The same 0640 is fine for a certificate.
        let p = file(d.path(), "agent.pem", 0o640);
        read_trusted(&p, FileKind::Certificate, 100).unwrap();
    }

    #[test]
    fn a_symlink_is_refused_even_to_a_good_file() {
        let d = tempfile::tempdir().unwrap();
        let real = file(d.path(), "real.toml", 0o600);
        let link = d.path().join("link.toml");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let e = open_trusted(&link, FileKind::Config).unwrap_err();
        assert!(matches!(e.problem, Problem::Symlink), "{e}");
        assert!(
            e.to_string().contains("link.toml: is a symbolic link"),
            "{e}"
        );
        // A dangling one too.
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        let e = open_trusted(&dangling, FileKind::Config).unwrap_err();
        assert!(matches!(e.problem, Problem::Symlink), "{e}");
    }

    #[test]
    fn a_fifo_does_not_block_and_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &p,
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        // No writer: a blocking open would hang here forever.
        let e = err(&p, FileKind::Config);
        assert!(e.contains("fifo: is a FIFO, not a regular file"), "{e}");
        let e = err(d.path(), FileKind::Config);
        assert!(e.contains("is a directory, not a regular file"), "{e}");
    }

    #[test]
    fn missing_and_too_large() {
        let d = tempfile::tempdir().unwrap();
        let e = open_trusted(&d.path().join("missing"), FileKind::Baseline).unwrap_err();
        assert!(e.is_not_found());
        assert!(e.to_string().contains("missing: cannot open"), "{e}");
        let p = file(d.path(), "big", 0o600);
        let e = read_trusted(&p, FileKind::Baseline, 3).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "{}: 7 bytes is larger than the 3-byte limit for a baseline",
                p.display()
            )
        );
        assert_eq!(read_trusted(&p, FileKind::Baseline, 7).unwrap(), b"content");
    }
}
