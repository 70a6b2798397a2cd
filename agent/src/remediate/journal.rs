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
fn lock(state_dir: &Path) -> Result<nix::fcntl::Flock<File>, String> {
    let jdir = dir(state_dir);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&jdir)
        .map_err(|e| format!("cannot create {}: {e}", jdir.display()))?;
    let path = jdir.join(".lock");
    let f = plumb_os::private::open_private(&path).map_err(|e| e.to_string())?;
    nix::fcntl::Flock::lock(f, nix::fcntl::FlockArg::LockExclusiveNonblock).map_err(|(_, e)| {
        format!(
            "another plumb remediate is running (lock {} is held): {e}",
            path.display()
        )
    })
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

fn unhex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err(format!("bad hex in journal: {s:?}"));
    }
    (0..s.len())
        .step_by(2)
        .map(|i| {
            s.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad hex in journal: {s:?}"))
        })
        .collect()
}

fn to_xattrs(list: Vec<(OsString, Vec<u8>)>, host: &Path) -> Result<Vec<Xattr>, String> {
    list.into_iter()
        .map(|(n, v)| {
            let name = n.into_string().map_err(|n| {
                format!(
                    "{}: xattr name {:?} is not UTF-8; not touching this file",
                    host.display(),
                    n
                )
            })?;
            Ok(Xattr {
                name,
                value_hex: hex(&v),
            })
        })
        .collect()
}

fn from_xattrs(list: &[Xattr]) -> Result<Vec<(OsString, Vec<u8>)>, String> {
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
    pub fn create(state_dir: &Path, root: &Path) -> Result<Journal, String> {
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
                        .map_err(|e| format!("cannot create {}/files: {e}", d.display()))?;
                    let j = Journal {
                        dir: d,
                        entry: Entry {
                            schema: JOURNAL_SCHEMA,
                            id,
                            time: crate::output::now_rfc3339(),
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
                    atomic::sync_dir(&jdir).map_err(|e| format!("{}: {e}", jdir.display()))?;
                    return Ok(j);
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(format!("cannot create {}: {e}", d.display())),
            }
        }
        Err(format!("cannot pick a new run id in {}", jdir.display()))
    }

    /// The run id.
    pub fn id(&self) -> &str {
        &self.entry.id
    }

    /// Writes `entry.json` atomically (fsynced file and directory).
    pub fn save(&self) -> Result<(), String> {
        save_entry(&self.dir, &self.entry)
    }

    /// Saves how the path `op` changes is now, unless this run already
    /// saved it; returns once the backup is on disk.
    pub fn backup(&mut self, op: &Op) -> Result<(), String> {
        let host = op.host();
        if self.entry.items.iter().any(|i| i.host == host) {
            return Ok(());
        }
        let shown = host.display();
        let before = match op {
            Op::SysctlRuntime { .. } => {
                let v = read_regular(host).map_err(|e| format!("cannot back up {shown}: {e}"))?;
                Before::Sysctl {
                    value: String::from_utf8_lossy(&v).trim().to_string(),
                }
            }
            _ => match std::fs::symlink_metadata(host) {
                Err(e) if e.kind() == io::ErrorKind::NotFound => Before::Absent,
                Err(e) => return Err(format!("cannot back up {shown}: {e}")),
                Ok(m) if m.file_type().is_symlink() => {
                    let t = std::fs::read_link(host)
                        .map_err(|e| format!("cannot back up {shown}: {e}"))?;
                    Before::Symlink {
                        target: t
                            .into_os_string()
                            .into_string()
                            .map_err(|_| format!("{shown}: link text is not UTF-8"))?,
                        uid: m.uid(),
                        gid: m.gid(),
                    }
                }
                Ok(m) if m.is_file() && m.len() <= crate::rootfs::MAX_READ_BYTES => {
                    let bytes =
                        read_regular(host).map_err(|e| format!("cannot back up {shown}: {e}"))?;
                    let xattrs = atomic::read_xattrs(host)
                        .map_err(|e| format!("cannot back up xattrs of {shown}: {e}"))?;
                    let name = self.entry.items.len().to_string();
                    let path = self.dir.join("files").join(&name);
                    atomic::write_atomic(&path, &bytes, 0o600, false)
                        .map_err(|e| format!("cannot write backup {}: {e}", path.display()))?;
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
                    let xattrs = atomic::read_xattrs(host)
                        .map_err(|e| format!("cannot back up xattrs of {shown}: {e}"))?;
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

fn save_entry(dir: &Path, entry: &Entry) -> Result<(), String> {
    let mut json = serde_json::to_vec_pretty(entry).map_err(|e| format!("journal entry: {e}"))?;
    json.push(b'\n');
    let p = dir.join(ENTRY);
    atomic::write_atomic(&p, &json, 0o600, true)
        .map_err(|e| format!("cannot write {}: {e}", p.display()))
}

fn restore_items(dir: &Path, items: &[Item]) -> Vec<String> {
    items
        .iter()
        .rev()
        .filter_map(|i| restore(dir, i).err().map(|e| format!("{}: {e}", i.path)))
        .collect()
}

/// Puts one path back as it was.
fn restore(dir: &Path, item: &Item) -> Result<(), String> {
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
                return Err("is a directory now; left as it is".into());
            }
            let saved = dir.join("files").join(content);
            let bytes = std::fs::read(&saved)
                .map_err(|e| format!("cannot read backup {}: {e}", saved.display()))?;
            if bytes.len() as u64 != *size {
                return Err(format!(
                    "backup {} is damaged (size differs)",
                    saved.display()
                ));
            }
            let meta = FileMeta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
                xattrs: from_xattrs(xattrs)?,
            };
            atomic::write_atomic_with(host, &bytes, &meta, true).map_err(|e| e.to_string())?;
            let t = if mtime.0 >= 0 {
                std::time::UNIX_EPOCH
                    + std::time::Duration::new(
                        mtime.0.unsigned_abs(),
                        u32::try_from(mtime.1).unwrap_or(0),
                    )
            } else {
                std::time::UNIX_EPOCH
            };
            File::options()
                .write(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(host)
                .and_then(|f| f.set_times(std::fs::FileTimes::new().set_modified(t)))
                .map_err(|e| format!("cannot restore mtime: {e}"))
        }
        Before::Meta {
            mode,
            uid,
            gid,
            xattrs,
        } => {
            std::os::unix::fs::lchown(host, Some(*uid), Some(*gid)).map_err(|e| e.to_string())?;
            atomic::set_xattrs_exact(host, &from_xattrs(xattrs)?).map_err(|e| e.to_string())?;
            std::fs::set_permissions(host, std::fs::Permissions::from_mode(*mode))
                .map_err(|e| e.to_string())
        }
        Before::Symlink { target, uid, gid } => {
            if is_dir {
                return Err("is a directory now; left as it is".into());
            }
            atomic::symlink_atomic(Path::new(target), host, Some((*uid, *gid)))
                .map_err(|e| e.to_string())
        }
        Before::Absent => match now {
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.to_string()),
            // A directory the run created; its files were restored (removed) first.
            Ok(_) if is_dir => {
                std::fs::remove_dir(host)
                    .map_err(|e| format!("directory created by the run, now not removable: {e}"))?;
                match host.parent() {
                    Some(p) => atomic::sync_dir(p).map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            }
            Ok(_) => {
                std::fs::remove_file(host).map_err(|e| e.to_string())?;
                match host.parent() {
                    Some(p) => atomic::sync_dir(p).map_err(|e| e.to_string()),
                    None => Ok(()),
                }
            }
        },
        Before::Sysctl { value } => File::options()
            .write(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .and_then(|mut f| f.write_all(format!("{value}\n").as_bytes()))
            .map_err(|e| e.to_string()),
    }
}

/// The entry of run `id`.
pub fn load(state_dir: &Path, id: &str) -> Result<Entry, String> {
    let jdir = dir(state_dir);
    if !valid_id(id) {
        return Err(format!("\"{id}\" is not a remediation run id"));
    }
    let p = jdir.join(id).join(ENTRY);
    let bytes = match std::fs::read(&p) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(format!(
                "no remediation run {id} in {} (plumb remediate --list shows the runs)",
                jdir.display()
            ));
        }
        Err(e) => return Err(format!("cannot read {}: {e}", p.display())),
    };
    serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", p.display()))
}

/// Every run in the journal, oldest first; entries that cannot be read are
/// reported as errors beside them.
pub fn list(state_dir: &Path) -> Result<Vec<Result<Entry, String>>, String> {
    let jdir = dir(state_dir);
    let rd = match std::fs::read_dir(&jdir) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(format!("cannot list {}: {e}", jdir.display())),
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
pub fn rollback(state_dir: &Path, id: &str) -> Result<Entry, String> {
    let _lock = lock(state_dir)?;
    let mut entry = load(state_dir, id)?;
    match entry.state {
        State::RolledBack => {
            return Err(format!(
                "run {id} was already rolled back at {}",
                entry.rolled_back_at.as_deref().unwrap_or("an unknown time")
            ));
        }
        State::Restored => {
            return Err(format!(
                "run {id} failed half-way and was restored then; there is nothing to roll back"
            ));
        }
        State::Pending | State::Applied => {}
    }
    let d = dir(state_dir).join(id);
    let errors = restore_items(&d, &entry.items);
    if !errors.is_empty() {
        return Err(format!(
            "rollback of {id} incomplete: {}",
            errors.join("; ")
        ));
    }
    entry.state = State::RolledBack;
    entry.rolled_back_at = Some(crate::output::now_rfc3339());
    save_entry(&d, &entry)?;
    Ok(entry)
}

/// Marks the open run finished.
pub fn finish(j: &mut Journal, state: State, error: Option<String>) -> Result<(), String> {
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
                .contains("already rolled back")
        );
        assert!(
            rollback(state.path(), "nope")
                .unwrap_err()
                .contains("no remediation run nope")
        );
        let all = list(state.path()).unwrap();
        assert_eq!(all.len(), 1);
    }
}
