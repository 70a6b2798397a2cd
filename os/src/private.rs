//! State that is nobody else's business: the agent's and the collector's
//! state directories, the collector's PKI directory, and the databases, lock
//! files and keys in them.
//!
//! - A private directory is created 0700. An existing one must belong to
//!   root or the running user. One that group or others may **write** is
//!   refused: its content may have been replaced, and an operator must look
//!   before anything in it is trusted. One that group or others may only
//!   read or enter is **tightened** to 0700, with a warning: nothing in it
//!   could have been changed, and going on is safe. A symlink to a directory
//!   is followed (moving a state directory to another disk is common); the
//!   directory it leads to is what is judged.
//! - A private file (database, lock, state) is created 0600 whatever the
//!   umask, and an existing one is tightened to its owner's bits.

use crate::trusted::{Kind, Problem, TrustError, euid, type_name};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

/// What [`ensure_private_dir`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// It did not exist: created 0700.
    Created,
    /// It existed with no group or other access.
    Kept,
    /// It existed with group/other read or search bits, now removed.
    Tightened {
        /// The permission bits it had.
        from: u32,
    },
}

/// Makes sure `dir` is a private directory (see the module documentation),
/// creating it (and missing parents) 0700 when it does not exist.
pub fn ensure_private_dir(dir: &Path) -> Result<DirState, TrustError> {
    let fail = |problem| TrustError::new(dir, problem);
    let io = |action| move |source| TrustError::new(dir, Problem::Io { action, source });
    let mut state = DirState::Kept;
    let file = match open_dir(dir) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io("create the directory"))?;
            state = DirState::Created;
            open_dir(dir).map_err(|e| fail(Problem::Open(e)))?
        }
        Err(e) => return Err(fail(Problem::Open(e))),
    };
    let meta = file.metadata().map_err(io("fstat"))?;
    if !meta.is_dir() {
        return Err(fail(Problem::WrongType {
            found: type_name(meta.file_type()),
            expected: "directory",
        }));
    }
    let me = euid();
    if meta.uid() != 0 && meta.uid() != me {
        return Err(fail(Problem::Owner {
            uid: meta.uid(),
            euid: me,
            kind: Kind::PrivateDir,
        }));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(fail(Problem::Writable {
            mode,
            kind: Kind::PrivateDir,
        }));
    }
    if mode & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(mode & !0o077))
            .map_err(io("remove group/other access from the directory"))?;
        tracing::warn!(
            "{}: directory was mode {mode:04o}, readable by group or others; tightened to {:04o}",
            dir.display(),
            mode & !0o077
        );
        state = DirState::Tightened { from: mode };
    } else if state == DirState::Created && mode & 0o700 != 0o700 {
        // A umask such as 0277 took the owner's own bits away.
        file.set_permissions(std::fs::Permissions::from_mode(0o700))
            .map_err(io("set the directory's mode"))?;
    }
    Ok(state)
}

fn open_dir(dir: &Path) -> io::Result<File> {
    use rustix::fs::{Mode, OFlags};
    rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map(File::from)
    .map_err(io::Error::from)
}

/// Opens `path` for reading and writing, creating it empty with mode 0600
/// when missing (whatever the umask), and removing group/other bits from
/// an existing one. The final component must not be a symlink, and must be
/// a regular file.
pub fn open_private(path: &Path) -> io::Result<File> {
    let ctx = |e: io::Error, what: &str| {
        io::Error::new(e.kind(), format!("{}: cannot {what}: {e}", path.display()))
    };
    let open = |create_new: bool| {
        let mut o = OpenOptions::new();
        o.read(true).write(true).custom_flags(
            (rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::NONBLOCK).bits() as i32,
        );
        if create_new {
            o.create_new(true).mode(0o600);
        }
        o.open(path)
    };
    let (file, created) = match open(true) {
        Ok(f) => (f, true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            (open(false).map_err(|e| ctx(e, "open"))?, false)
        }
        Err(e) => return Err(ctx(e, "create")),
    };
    let meta = file.metadata().map_err(|e| ctx(e, "fstat"))?;
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: is {}, not a regular file",
                path.display(),
                type_name(meta.file_type())
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    // New: 0600 exactly (a umask may have taken more than group/other bits).
    // Existing: the owner's bits stay as they are.
    let want = if created { 0o600 } else { mode & !0o077 };
    if want != mode {
        file.set_permissions(std::fs::Permissions::from_mode(want))
            .map_err(|e| ctx(e, "remove group/other access"))?;
    }
    Ok(file)
}

/// Prepares a SQLite database file to be opened by SQLite: creates it 0600
/// (SQLite would create it 0644 less the umask) or tightens an existing
/// one, and tightens its existing `-wal`, `-shm` and `-journal` files.
/// SQLite creates those with the mode of the database file, so once it is
/// 0600 they are too.
///
/// An existing file is changed by path, never opened: closing any
/// descriptor of a file drops every POSIX lock the process holds on it, so
/// opening the database beside a connection of this process (the
/// collector's reader) would silently take SQLite's locks away from it. The
/// directory is private, so nobody can swap the file between the check and
/// the chmod.
pub fn prepare_private_db(path: &Path) -> io::Result<()> {
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => drop(open_private(path)?),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!("{}: cannot stat: {e}", path.display()),
            ));
        }
        Ok(meta) => tighten_by_path(path, &meta)?,
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut side = path.as_os_str().to_os_string();
        side.push(suffix);
        let side = PathBuf::from(side);
        if let Ok(meta) = std::fs::symlink_metadata(&side) {
            tighten_by_path(&side, &meta)?;
        }
    }
    Ok(())
}

fn tighten_by_path(path: &Path, meta: &std::fs::Metadata) -> io::Result<()> {
    if !meta.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{}: is {}, not a regular file",
                path.display(),
                type_name(meta.file_type())
            ),
        ));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & !0o077)).map_err(
            |e| {
                io::Error::new(
                    e.kind(),
                    format!("{}: cannot remove group/other access: {e}", path.display()),
                )
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().mode() & 0o7777
    }

    fn chmod(p: &Path, m: u32) {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    }

    #[test]
    fn directories_created_kept_tightened_or_refused() {
        let d = tempfile::tempdir().unwrap();
        let s = d.path().join("a/b/state");
        assert_eq!(ensure_private_dir(&s).unwrap(), DirState::Created);
        assert_eq!(mode(&s), 0o700);
        assert_eq!(ensure_private_dir(&s).unwrap(), DirState::Kept);
        chmod(&s, 0o755);
        assert_eq!(
            ensure_private_dir(&s).unwrap(),
            DirState::Tightened { from: 0o755 }
        );
        assert_eq!(mode(&s), 0o700);
        for loose in [0o777, 0o770, 0o1777, 0o702] {
            chmod(&s, loose);
            let e = ensure_private_dir(&s).unwrap_err().to_string();
            assert!(
                e.contains(&format!(
                    "state: mode {loose:04o} makes this private directory writable by group or others"
                )),
                "{e}"
            );
            assert_eq!(mode(&s), loose, "a refused directory is left as it is");
        }
        chmod(&s, 0o700);
        // Through a symlink: the directory it leads to is judged.
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&s, &link).unwrap();
        assert_eq!(ensure_private_dir(&link).unwrap(), DirState::Kept);
        let f = d.path().join("file");
        std::fs::write(&f, "").unwrap();
        assert!(ensure_private_dir(&f).is_err());
    }

    #[test]
    fn private_files_are_0600_whatever_their_creation() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.lock");
        drop(open_private(&p).unwrap());
        assert_eq!(mode(&p), 0o600);
        chmod(&p, 0o644);
        drop(open_private(&p).unwrap());
        assert_eq!(mode(&p), 0o600);
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&p, &link).unwrap();
        assert!(open_private(&link).is_err(), "a symlink is not followed");

        let db = d.path().join("x.db");
        let wal = d.path().join("x.db-wal");
        std::fs::write(&wal, "").unwrap();
        chmod(&wal, 0o644);
        prepare_private_db(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&wal), 0o600);
        assert!(
            !d.path().join("x.db-shm").exists(),
            "only existing sidecars"
        );
    }
}
