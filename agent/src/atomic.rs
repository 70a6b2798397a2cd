//! Atomic file replacement ("nothing lost", docs/reference/README.md): a
//! reader sees the old file or the new one, never a half-written one, and a
//! crash loses neither.

use std::fs::{File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically with permission bits `mode`: a new
/// temporary file beside it (created exclusively, with `mode` from the start
/// so the content is never readable more widely), fsync, then rename over
/// `path` — or, when `overwrite` is false, a hard link that fails if `path`
/// exists — and fsync of the directory so the new name survives a crash.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: bool) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let (tmp, mut file) = create_temp(&dir, &name.to_string_lossy(), mode)?;
    let result = (|| {
        file.write_all(bytes)?;
        file.sync_all()?;
        drop(file);
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            // link(2) refuses an existing target, so two writers cannot
            // both believe they created `path`.
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

/// Ownership, permission bits and extended attributes a replacement file
/// takes over from the file it replaces. POSIX ACLs are the
/// `system.posix_acl_access` xattr, so they are carried too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileMeta {
    /// Permission bits, including setuid/setgid/sticky (`& 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Every extended attribute, name and value, in listing order.
    pub xattrs: Vec<(std::ffi::OsString, Vec<u8>)>,
}

impl FileMeta {
    /// Reads the metadata of `path` itself (a final symlink is not followed).
    pub fn of(path: &Path) -> io::Result<FileMeta> {
        use std::os::unix::fs::MetadataExt as _;
        let m = std::fs::symlink_metadata(path)?;
        Ok(FileMeta {
            mode: m.mode() & 0o7777,
            uid: m.uid(),
            gid: m.gid(),
            xattrs: read_xattrs(path)?,
        })
    }
}

/// Every extended attribute of `path` itself; none where the filesystem
/// has no xattr support.
pub fn read_xattrs(path: &Path) -> io::Result<Vec<(std::ffi::OsString, Vec<u8>)>> {
    let names = match xattr::list(path) {
        Ok(n) => n,
        Err(e) if unsupported(&e) => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        // An attribute removed between list and get is simply gone.
        if let Some(v) = xattr::get(path, &name)? {
            out.push((name, v));
        }
    }
    Ok(out)
}

fn unsupported(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EOPNOTSUPP) || e.kind() == io::ErrorKind::Unsupported
}

/// Makes the xattrs of `path` itself exactly `want`: missing ones set,
/// extra ones (such as an ACL inherited from a default ACL) removed.
pub fn set_xattrs_exact(path: &Path, want: &[(std::ffi::OsString, Vec<u8>)]) -> io::Result<()> {
    for (name, _) in read_xattrs(path)? {
        if !want.iter().any(|(n, _)| *n == name) {
            xattr::remove(path, &name).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot remove xattr {}: {e}", name.to_string_lossy()),
                )
            })?;
        }
    }
    for (name, value) in want {
        xattr::set(path, name, value).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot set xattr {}: {e}", name.to_string_lossy()),
            )
        })?;
    }
    Ok(())
}

/// Replaces (or creates, when `overwrite` is false) `path` atomically like
/// [`write_atomic`], the new file carrying `meta` — owner, group, mode and
/// exactly its xattrs — before it takes the name, so no reader ever sees
/// the content with other permissions.
pub fn write_atomic_with(
    path: &Path,
    bytes: &[u8],
    meta: &FileMeta,
    overwrite: bool,
) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    // 0600 until ownership and attributes are in place.
    let (tmp, mut file) = create_temp(&dir, &name.to_string_lossy(), 0o600)?;
    let result = (|| {
        use std::os::unix::fs::PermissionsExt as _;
        file.write_all(bytes)?;
        std::os::unix::fs::fchown(&file, Some(meta.uid), Some(meta.gid))?;
        set_xattrs_exact(&tmp, &meta.xattrs)?;
        // After chown (which clears setuid bits) and after the ACL (which
        // carries the group bits): the mode as it was.
        file.set_permissions(std::fs::Permissions::from_mode(meta.mode))?;
        file.sync_all()?;
        drop(file);
        if overwrite {
            std::fs::rename(&tmp, path)
        } else {
            std::fs::hard_link(&tmp, path)?;
            std::fs::remove_file(&tmp)
        }
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result?;
    sync_dir(&dir)
}

/// Replaces (or creates) `path` with a symlink to `target` atomically: a
/// new link beside it, renamed over it, then the directory fsynced.
pub fn symlink_atomic(target: &Path, path: &Path, owner: Option<(u32, u32)>) -> io::Result<()> {
    let dir = parent_dir(path);
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{n}",
            name.to_string_lossy(),
            std::process::id()
        ));
        match std::os::unix::fs::symlink(target, &tmp) {
            Ok(()) => {
                let result = (|| {
                    if let Some((uid, gid)) = owner {
                        std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid))?;
                    }
                    std::fs::rename(&tmp, path)
                })();
                if result.is_err() {
                    let _ = std::fs::remove_file(&tmp);
                }
                result?;
                return sync_dir(&dir);
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a temporary link")))
}

/// fsyncs a directory, making renames and creations in it durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(PathBuf, File)> {
    let pid = std::process::id();
    let mut last = None;
    for _ in 0..16 {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = dir.join(format!(".{name}.tmp-{pid}-{n}-{nanos}"));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
        {
            Ok(f) => {
                // The umask may have removed bits the caller asked for.
                use std::os::unix::fs::PermissionsExt as _;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
                return Ok((tmp, f));
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("cannot create a temporary file")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn writes_replaces_and_refuses_without_overwrite() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        write_atomic(&p, b"one", 0o600, false).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        assert_eq!(
            std::fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let e = write_atomic(&p, b"two", 0o600, false).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read(&p).unwrap(), b"one");
        write_atomic(&p, b"two", 0o644, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        // No temporary file is left behind.
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn replacement_keeps_owner_mode_and_exact_xattrs() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, b"old").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o640)).unwrap();
        let has_xattrs = xattr::set(&p, "user.test", b"v").is_ok();
        let meta = FileMeta::of(&p).unwrap();
        write_atomic_with(&p, b"new\xff", &meta, true).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"new\xff");
        assert_eq!(FileMeta::of(&p).unwrap(), meta);
        if has_xattrs {
            assert_eq!(xattr::get(&p, "user.test").unwrap().unwrap(), b"v");
        }
        symlink_atomic(Path::new("/dev/null"), &d.path().join("l"), None).unwrap();
        symlink_atomic(Path::new("/x"), &d.path().join("l"), None).unwrap();
        assert_eq!(
            std::fs::read_link(d.path().join("l")).unwrap(),
            Path::new("/x")
        );
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
    }
}
