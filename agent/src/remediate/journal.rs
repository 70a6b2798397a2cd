//! The remediation journal: one directory per run under
//! `STATE/remediation/ID/`, holding `entry.json` (what the run touched and
//! how each path was before) and `files/N` (the original bytes of each
//! regular file). A path's original state is written and fsynced before
//! the path is changed, so a crash at any point leaves enough to undo.

use super::plan::Op;
use plumb_os::atomic::{self, FileMeta};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::DirBuilderExt as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

/// What went wrong with the journal, or with a path it backs up or
/// restores. Each message is whole: causes are in it, not chained.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file system operation failed.
    #[error("cannot {doing} {}: {error}", path.display())]
    Io {
        /// What was being done (`create`, `back up`, `write backup`...).
        doing: &'static str,
        /// On which path.
        path: PathBuf,
        /// Why (in the message, so not a `source`).
        error: io::Error,
    },
    /// Another run holds the journal lock.
    #[error("another plumb remediate is running (lock {} is held): {error}", path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// Why the lock could not be taken.
        error: nix::Error,
    },
    /// Sixteen run ids in a row were taken.
    #[error("cannot pick a new run id in {}", .0.display())]
    NoFreeId(PathBuf),
    /// Not the form of a run id.
    #[error("\"{0}\" is not a remediation run id")]
    BadId(String),
    /// No run of that id.
    #[error("no remediation run {id} in {} (plumb remediate --list shows the runs)", dir.display())]
    NoSuchRun {
        /// The id asked for.
        id: String,
        /// The journal directory.
        dir: PathBuf,
    },
    /// `entry.json` does not parse.
    #[error("{}: {error}", path.display())]
    BadEntry {
        /// The entry file.
        path: PathBuf,
        /// Why.
        error: serde_json::Error,
    },
    /// An entry could not be encoded.
    #[error("journal entry: {0}")]
    Encode(serde_json::Error),
    /// A saved hex value is not hex.
    #[error("bad hex in journal: {0:?}")]
    BadHex(String),
    /// An xattr name cannot be saved in the journal.
    #[error("{}: xattr name {name:?} is not UTF-8; not touching this file", path.display())]
    XattrName {
        /// The file.
        path: PathBuf,
        /// The name.
        name: OsString,
    },
    /// A link text cannot be saved in the journal.
    #[error("{}: link text is not UTF-8", .0.display())]
    LinkText(PathBuf),
    /// A directory took the place of what the run changed.
    #[error("is a directory now; left as it is")]
    DirectoryNow,
    /// The saved bytes are not those backed up.
    #[error("backup {} is damaged (size differs)", .0.display())]
    Damaged(PathBuf),
    /// The run was rolled back before.
    #[error("run {id} was already rolled back at {at}")]
    AlreadyRolledBack {
        /// The run.
        id: String,
        /// When.
        at: String,
    },
    /// The run restored everything itself when it failed.
    #[error("run {0} failed half-way and was restored then; there is nothing to roll back")]
    WasRestored(String),
    /// Some paths could not be put back.
    #[error("rollback of {id} incomplete: {}", errors.join("; "))]
    Incomplete {
        /// The run.
        id: String,
        /// Each path not restored, with why.
        errors: Vec<String>,
    },
}

fn io_err(doing: &'static str, path: &Path) -> impl FnOnce(io::Error) -> JournalError {
    let path = path.to_path_buf();
    move |error| JournalError::Io { doing, path, error }
}

/// Version of the journal entry format.
pub const JOURNAL_SCHEMA: u32 = 1;
const ENTRY: &str = "entry.json";

/// The journal directory inside a state directory.
pub fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("remediation")
}

/// Where a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Changes are being made (or the run was interrupted while making them).
    Pending,
    /// Every change was made.
    Applied,
    /// A change failed half-way and what was already changed was restored.
    Restored,
    /// `plumb remediate --rollback` undid the run.
    RolledBack,
}

impl State {
    /// The word shown in listings.
    pub fn word(self) -> &'static str {
        match self {
            State::Pending => "incomplete",
            State::Applied => "applied",
            State::Restored => "failed, restored",
            State::RolledBack => "rolled back",
        }
    }
}

/// One extended attribute, value in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name (`user.test`, `system.posix_acl_access`...).
    pub name: String,
    /// Value bytes, hex.
    pub value_hex: String,
}

/// How a path was before the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Before {
    /// A regular file; its bytes are in `files/<content>`.
    File {
        /// permission bits
        mode: u32,
        /// owner
        uid: u32,
        /// group
        gid: u32,
        /// every xattr
        xattrs: Vec<Xattr>,
        /// modification time, seconds and nanoseconds since the epoch
        mtime: (i64, i64),
        /// size in bytes
        size: u64,
        /// file name of the saved bytes, under `files/`
        content: String,
    },
    /// A directory or another entry whose metadata only may change.
    Meta {
        /// permission bits
        mode: u32,
        /// owner
        uid: u32,
        /// group
        gid: u32,
        /// every xattr
        xattrs: Vec<Xattr>,
    },
    /// A symlink.
    Symlink {
        /// link text
        target: String,
        /// owner of the link
        uid: u32,
        /// group of the link
        gid: u32,
    },
    /// Nothing was there.
    Absent,
    /// A runtime kernel parameter's value.
    Sysctl {
        /// value as read
        value: String,
    },
}

/// One path the run touched.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Item {
    /// In-root path (or sysctl key), for people.
    pub path: String,
    /// Host path restored on rollback.
    pub host: PathBuf,
    /// Its state before the run.
    pub before: Before,
}

/// `entry.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// [`JOURNAL_SCHEMA`]
    pub schema: u32,
    /// Run id (`20261127T221500Z-abcd`).
    pub id: String,
    /// RFC 3339 start time.
    pub time: String,
    /// The root remediated (host path).
    pub root: String,
    /// Where the run stands.
    pub state: State,
    /// Rules whose actions changed something.
    pub rules: Vec<String>,
    /// Paths touched, in the order first touched.
    pub items: Vec<Item>,
    /// The changes made, in words.
    #[serde(default)]
    pub changes: Vec<String>,
    /// Why the run stopped half-way, when it did.
    #[serde(default)]
    pub error: Option<String>,
    /// When it was rolled back.
    #[serde(default)]
    pub rolled_back_at: Option<String>,
}

/// An open journal entry of a run in progress.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    /// The entry as last saved.
    pub entry: Entry,
    _lock: nix::fcntl::Flock<File>,
}

/// Takes the journal lock: one remediation or rollback at a time.
fn lock(state_dir: &Path) -> Result<nix::fcntl::Flock<File>, JournalError> {
    let jdir = dir(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&jdir)
        .map_err(io_err("create", &jdir))?;
    let path = jdir.join(".lock");
    let f = plumb_os::private::open_private(&path).map_err(io_err("open", &path))?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock)
        .map_err(|(_, error)| JournalError::Locked { path, error })
}

/// A new run id: UTC time to the second and 4 random hex digits.
fn new_id() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let now = time::OffsetDateTime::now_utc();
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_else(|_| now.unix_timestamp().to_string());
    // RandomState is seeded from the OS: enough to tell runs of one second apart.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(now.unix_timestamp_nanos().unsigned_abs());
    format!("{stamp}-{:04x}", h.finish() & 0xffff)
}

/// Whether a string can be a run id (and so a directory name under the journal).
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Result<Vec<u8>, JournalError> {
    if s.len() % 2 != 0 {
        return Err(JournalError::BadHex(s.to_string()));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| JournalError::BadHex(s.to_string()))
        })
        .collect()
}

fn to_xattrs(list: Vec<(OsString, Vec<u8>)>, host: &Path) -> Result<Vec<Xattr>, JournalError> {
    list.into_iter()
        .map(|(n, v)| {
            let name = n.into_string().map_err(|name| JournalError::XattrName {
                path: host.to_path_buf(),
                name,
            })?;
            Ok(Xattr {
                name,
                value_hex: hex(&v),
            })
        })
        .collect()
}

fn from_xattrs(list: &[Xattr]) -> Result<Vec<(OsString, Vec<u8>)>, JournalError> {
    list.iter()
        .map(|x| Ok((OsString::from(&x.name), unhex(&x.value_hex)?)))
        .collect()
}

/// Reads a regular file at a host path without following a final symlink
/// or blocking on anything that is not a regular file.
pub(super) fn read_regular(host: &Path) -> io::Result<Vec<u8>> {
    let f = File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(host)?;
    let m = f.metadata()?;
    if !m.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut buf = Vec::new();
    f.take(crate::rootfs::MAX_READ_BYTES + 1)
        .read_to_end(&mut buf)?;
    if buf.len() as u64 > crate::rootfs::MAX_READ_BYTES {
        return Err(io::Error::other("too large to back up"));
    }
    Ok(buf)
}

impl Journal {
    /// Starts a journal entry for a run on `root`.
    pub fn create(state_dir: &Path, root: &Path) -> Result<Journal, JournalError> {
        let lock = lock(state_dir)?;
        let jdir = dir(state_dir);
        for _ in 0..16 {
            let id = new_id();
            let d = jdir.join(&id);
            match std::fs::DirBuilder::new().mode(0o700).create(&d) {
                Ok(()) => {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(d.join("files"))
                        .map_err(io_err("create", &d.join("files")))?;
                    let j = Journal {
                        dir: d,
                        entry: Entry {
                            schema: JOURNAL_SCHEMA,
                            id,
                            time: crate::host::now_rfc3339(),
                            root: root.display().to_string(),
                            state: State::Pending,
                            rules: Vec::new(),
                            items: Vec::new(),
                            changes: Vec::new(),
                            error: None,
                            rolled_back_at: None,
                        },
                        _lock: lock,
                    };
                    j.save()?;
                    atomic::sync_dir(&jdir).map_err(io_err("sync", &jdir))?;
                    return Ok(j);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("create", &d)(e)),
            }
        }
        Err(JournalError::NoFreeId(jdir))
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// Writes `entry.json` atomically (fsynced file and directory).
    pub fn save(&self) -> Result<(), JournalError> {
        save_entry(&self.dir, &self.entry)
    }

    /// Saves how the path `op` changes is now, unless this run already
    /// saved it; returns once the backup is on disk.
    pub fn backup(&mut self, op: &Op) -> Result<(), JournalError> {
        let host = op.host();
        if self.entry.items.iter().any(|i| i.host == host) {
            return Ok(());
        }
        let before = match op {
            Op::SysctlRuntime { .. } => {
                let v = read_regular(host).map_err(io_err("back up", host))?;
                Before::Sysctl {
                    value: String::from_utf8_lossy(&v).trim().to_string(),
                }
            }
            _ => match std::fs::symlink_metadata(host) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Before::Absent,
                Err(e) => return Err(io_err("back up", host)(e)),
                Ok(m) if m.file_type().is_symlink() => {
                    let t = std::fs::read_link(host).map_err(io_err("back up", host))?;
                    Before::Symlink {
                        target: t
                            .into_os_string()
                            .into_string()
                            .map_err(|_| JournalError::LinkText(host.to_path_buf()))?,
                        uid: m.uid(),
                        gid: m.gid(),
                    }
                }
                Ok(m) if m.is_file() && m.len() <= crate::rootfs::MAX_READ_BYTES => {
                    let bytes = read_regular(host).map_err(io_err("back up", host))?;
                    let xattrs =
                        atomic::read_xattrs(host).map_err(io_err("back up xattrs of", host))?;
                    let name = self.entry.items.len().to_string();
                    let path = self.dir.join("files").join(&name);
                    atomic::write_atomic(&path, &bytes, 0o600, false)
                        .map_err(io_err("write backup", &path))?;
                    Before::File {
                        mode: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                        xattrs: to_xattrs(xattrs, host)?,
                        mtime: (m.mtime(), m.mtime_nsec()),
                        size: bytes.len() as u64,
                        content: name,
                    }
                }
                Ok(m) => {
                    let xattrs =
                        atomic::read_xattrs(host).map_err(io_err("back up xattrs of", host))?;
                    Before::Meta {
                        mode: m.mode() & 0o7777,
                        uid: m.uid(),
                        gid: m.gid(),
                        xattrs: to_xattrs(xattrs, host)?,
                    }
                }
            },
        };
        self.entry.items.push(Item {
            path: op.path().to_string(),
            host: host.to_path_buf(),
            before,
        });
        self.save()
    }

    /// Restores every path this run touched, newest first; the errors of
    /// the paths that could not be restored.
    pub fn restore_all(&self) -> Vec<String> {
        restore_items(&self.dir, &self.entry.items)
    }
}

fn save_entry(dir: &Path, entry: &Entry) -> Result<(), JournalError> {
    let mut json = serde_json::to_vec_pretty(entry).map_err(JournalError::Encode)?;
    json.push(b'\n');
    let p = dir.join(ENTRY);
    atomic::write_atomic(&p, &json, 0o600, true).map_err(io_err("write", &p))
}

fn restore_items(dir: &Path, items: &[Item]) -> Vec<String> {
    items
        .iter()
        .rev()
        .filter_map(|i| restore(dir, i).err().map(|e| format!("{}: {e}", i.path)))
        .collect()
}

/// Puts one path back as it was.
fn restore(dir: &Path, item: &Item) -> Result<(), JournalError> {
    let host = &item.host;
    let now = std::fs::symlink_metadata(host);
    let is_dir = now.as_ref().is_ok_and(|m| m.is_dir());
    match &item.before {
        Before::File {
            mode,
            uid,
            gid,
            xattrs,
            mtime,
            size,
            content,
        } => {
            if is_dir {
                return Err(JournalError::DirectoryNow);
            }
            let saved = dir.join("files").join(content);
            let bytes = std::fs::read(&saved).map_err(io_err("read backup", &saved))?;
            if bytes.len() as u64 != *size {
                return Err(JournalError::Damaged(saved));
            }
            let meta = FileMeta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
                xattrs: from_xattrs(xattrs)?,
            };
            atomic::write_atomic_with(host, &bytes, &meta, true)
                .map_err(io_err("restore", host))?;
            restore_mtime(host, *mtime)
        }
        Before::Meta {
            mode,
            uid,
            gid,
            xattrs,
        } => {
            let xattrs = from_xattrs(xattrs)?;
            let restore = io_err("restore", host);
            std::os::unix::fs::lchown(host, Some(*uid), Some(*gid))
                .and_then(|()| atomic::set_xattrs_exact(host, &xattrs))
                .and_then(|()| {
                    std::fs::set_permissions(host, std::fs::Permissions::from_mode(*mode))
                })
                .map_err(restore)
        }
        Before::Symlink { target, uid, gid } => {
            if is_dir {
                return Err(JournalError::DirectoryNow);
            }
            atomic::symlink_atomic(Path::new(target), host, Some((*uid, *gid)))
                .map_err(io_err("restore", host))
        }
        Before::Absent => match now {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("inspect", host)(e)),
            // A directory the run created; its files were restored (removed) first.
            Ok(_) if is_dir => std::fs::remove_dir(host)
                .map_err(io_err("remove the directory the run created", host))
                .and_then(|()| sync_parent(host)),
            Ok(_) => std::fs::remove_file(host)
                .map_err(io_err("remove", host))
                .and_then(|()| sync_parent(host)),
        },
        Before::Sysctl { value } => File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()))
            .map_err(io_err("restore", host)),
    }
}

/// Sets a restored file's modification time back.
fn restore_mtime(host: &Path, mtime: (i64, i64)) -> Result<(), JournalError> {
    let t = if mtime.0 >= 0 {
        std::time::UNIX_EPOCH
            + std::time::Duration::new(mtime.0.unsigned_abs(), u32::try_from(mtime.1).unwrap_or(0))
    } else {
        std::time::UNIX_EPOCH
    };
    File::options()
        .write(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(host)
        .and_then(|f| f.set_times(std::fs::FileTimes::new().set_modified(t)))
        .map_err(io_err("restore the mtime of", host))
}

/// Makes a removal durable.
fn sync_parent(host: &Path) -> Result<(), JournalError> {
    match host.parent() {
        Some(p) => atomic::sync_dir(p).map_err(io_err("sync", p)),
        None => Ok(()),
    }
}

/// The entry of run `id`.
pub fn load(state_dir: &Path, id: &str) -> Result<Entry, JournalError> {
    let jdir = dir(state_dir);
    if !valid_id(id) {
        return Err(JournalError::BadId(id.to_string()));
    }
    let p = jdir.join(id).join(ENTRY);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(JournalError::NoSuchRun {
                id: id.to_string(),
                dir: jdir,
            });
        }
        Err(e) => return Err(io_err("read", &p)(e)),
    };
    serde_json::from_slice(&bytes).map_err(|error| JournalError::BadEntry { path: p, error })
}

/// Every run in the journal, oldest first; entries that cannot be read are
/// reported as errors beside them.
pub fn list(state_dir: &Path) -> Result<Vec<Result<Entry, JournalError>>, JournalError> {
    let jdir = dir(state_dir);
    let rd = match std::fs::read_dir(&jdir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err("list", &jdir)(e)),
    };
    let mut ids: Vec<String> = rd
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| valid_id(n))
        .collect();
    ids.sort();
    Ok(ids.iter().map(|id| load(state_dir, id)).collect())
}

/// Undoes run `id`: every path put back as it was before the run.
pub fn rollback(state_dir: &Path, id: &str) -> Result<Entry, JournalError> {
    let _lock = lock(state_dir)?;
    let mut entry = load(state_dir, id)?;
    match entry.state {
        State::RolledBack => {
            return Err(JournalError::AlreadyRolledBack {
                id: id.to_string(),
                at: entry
                    .rolled_back_at
                    .unwrap_or_else(|| "an unknown time".into()),
            });
        }
        State::Restored => return Err(JournalError::WasRestored(id.to_string())),
        State::Pending | State::Applied => {}
    }
    let d = dir(state_dir).join(id);
    let errors = restore_items(&d, &entry.items);
    if !errors.is_empty() {
        return Err(JournalError::Incomplete {
            id: id.to_string(),
            errors,
        });
    }
    entry.state = State::RolledBack;
    entry.rolled_back_at = Some(crate::host::now_rfc3339());
    save_entry(&d, &entry)?;
    Ok(entry)
}

/// Marks the open run finished.
pub fn finish(j: &mut Journal, state: State, error: Option<String>) -> Result<(), JournalError> {
    j.entry.state = state;
    j.entry.error = error;
    j.save()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_and_hex() {
        let id = new_id();
        assert!(valid_id(&id), "{id}");
        assert_eq!(id.len(), "20261127T221500Z-abcd".len());
        assert!(!valid_id("../x"));
        assert!(!valid_id(""));
        assert_eq!(unhex(&hex(b"\x00\xffa")).unwrap(), b"\x00\xffa");
        assert!(unhex("f").is_err());
        assert!(unhex("zz").is_err());
    }

    #[test]
    fn backup_then_restore_every_kind() {
        let state = tempfile::tempdir().unwrap();
        let t = tempfile::tempdir().unwrap();
        let f = t.path().join("f");
        std::fs::write(&f, b"orig\xfe").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o640)).unwrap();
        let l = t.path().join("l");
        std::os::unix::fs::symlink("/dev/null", &l).unwrap();
        let n = t.path().join("new");
        let mut j = Journal::create(state.path(), t.path()).unwrap();
        // A second run cannot start while this one holds the lock.
        assert!(Journal::create(state.path(), t.path()).is_err());
        let w = |host: &Path| Op::Write {
            path: "/x".into(),
            host: host.to_path_buf(),
            old: None,
            new: vec![],
        };
        for p in [&f, &l, &n] {
            j.backup(&w(p)).unwrap();
            j.backup(&w(p)).unwrap();
        }
        assert_eq!(j.entry.items.len(), 3);
        std::fs::write(&f, b"changed").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::remove_file(&l).unwrap();
        std::fs::write(&n, b"created").unwrap();
        assert!(j.restore_all().is_empty());
        assert_eq!(std::fs::read(&f).unwrap(), b"orig\xfe");
        assert_eq!(std::fs::metadata(&f).unwrap().mode() & 0o7777, 0o640);
        assert_eq!(std::fs::read_link(&l).unwrap(), Path::new("/dev/null"));
        assert!(!n.exists());
        let id = j.id().to_string();
        finish(&mut j, State::Applied, None).unwrap();
        drop(j);
        let e = rollback(state.path(), &id).unwrap();
        assert_eq!(e.state, State::RolledBack);
        assert!(
            rollback(state.path(), &id)
                .unwrap_err()
                .to_string()
                .contains("already rolled back")
        );
        assert!(
            rollback(state.path(), "nope")
                .unwrap_err()
                .to_string()
                .contains("no remediation run nope")
        );
        let all = list(state.path()).unwrap();
        assert_eq!(all.len(), 1);
    }
}
