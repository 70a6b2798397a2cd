//! One recorded path: what the scanner observed and the database stores.

use rustix::fs::{FileType, Stat};
use std::sync::Arc;

/// File type of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// regular file
    File,
    /// directory
    Dir,
    /// symbolic link
    Symlink,
    /// named pipe
    Fifo,
    /// unix socket
    Socket,
    /// character device
    Char,
    /// block device
    Block,
    /// anything else
    Unknown,
}

impl Kind {
    /// From an lstat mode.
    pub fn of_mode(mode: u32) -> Kind {
        match FileType::from_raw_mode(mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::Char,
            FileType::BlockDevice => Kind::Block,
            FileType::Unknown => Kind::Unknown,
        }
    }

    /// Name in the database and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Symlink => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::Char => "char",
            Kind::Block => "block",
            Kind::Unknown => "unknown",
        }
    }

    /// Inverse of [`Kind::name`].
    pub fn from_name(s: &str) -> Option<Kind> {
        Some(match s {
            "file" => Kind::File,
            "dir" => Kind::Dir,
            "symlink" => Kind::Symlink,
            "fifo" => Kind::Fifo,
            "socket" => Kind::Socket,
            "char" => Kind::Char,
            "block" => Kind::Block,
            "unknown" => Kind::Unknown,
            _ => return None,
        })
    }
}

/// Content hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlg {
    /// SHA-256
    Sha256,
    /// SHA-512
    Sha512,
}

impl HashAlg {
    /// Name in the database and in reports.
    pub fn name(self) -> &'static str {
        match self {
            HashAlg::Sha256 => "sha256",
            HashAlg::Sha512 => "sha512",
        }
    }

    /// Inverse of [`HashAlg::name`].
    pub fn from_name(s: &str) -> Option<HashAlg> {
        match s {
            "sha256" => Some(HashAlg::Sha256),
            "sha512" => Some(HashAlg::Sha512),
            _ => None,
        }
    }

    /// The ring algorithm.
    pub fn ring(self) -> &'static ring::digest::Algorithm {
        match self {
            HashAlg::Sha256 => &ring::digest::SHA256,
            HashAlg::Sha512 => &ring::digest::SHA512,
        }
    }
}

/// Whether the entry was read completely.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Everything requested was recorded.
    Ok,
    /// A regular file kept changing while hashed; no hash recorded.
    Unstable,
    /// Something requested could not be read (the message says what).
    Error(String),
}

impl State {
    /// Name in the database.
    pub fn name(&self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Unstable => "unstable",
            State::Error(_) => "error",
        }
    }
}

/// One recorded path. Metadata always comes from `lstat` (or, for a hashed
/// file, from `fstat` of the very descriptor that was read).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// In-root path, raw bytes, starting with `/`.
    pub path: Vec<u8>,
    /// Path of the governing `[[fim]]` rule.
    pub rule: Arc<str>,
    /// File type.
    pub kind: Kind,
    /// Full `st_mode` (type and permission bits).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, ns since the epoch.
    pub mtime_ns: i64,
    /// Status change time, ns since the epoch.
    pub ctime_ns: i64,
    /// Inode number.
    pub inode: u64,
    /// Hard link count.
    pub nlink: u64,
    /// Content hash of a regular file, when the rule asks for one.
    pub hash: Option<(HashAlg, Vec<u8>)>,
    /// Target of a symlink (raw bytes).
    pub link_target: Option<Vec<u8>>,
    /// Extended attributes, canonical form (see [`crate::fim::xattr`]), when asked for.
    pub xattrs: Option<Vec<u8>>,
    /// Whether everything requested was read.
    pub state: State,
}

fn ns(sec: i64, nsec: u64) -> i64 {
    sec.saturating_mul(1_000_000_000)
        .saturating_add(i64::try_from(nsec).unwrap_or(0))
}

impl Entry {
    /// An entry with the metadata of a stat.
    pub fn from_stat(path: Vec<u8>, rule: Arc<str>, st: &Stat) -> Entry {
        let mut e = Entry {
            path,
            rule,
            kind: Kind::of_mode(st.st_mode),
            mode: 0,
            uid: 0,
            gid: 0,
            size: 0,
            mtime_ns: 0,
            ctime_ns: 0,
            inode: 0,
            nlink: 0,
            hash: None,
            link_target: None,
            xattrs: None,
            state: State::Ok,
        };
        e.set_stat(st);
        e
    }

    /// Takes the metadata of a stat (kind included).
    #[allow(clippy::unnecessary_cast, clippy::useless_conversion)] // field widths vary by arch
    pub fn set_stat(&mut self, st: &Stat) {
        self.kind = Kind::of_mode(st.st_mode);
        self.mode = st.st_mode;
        self.uid = st.st_uid;
        self.gid = st.st_gid;
        self.size = u64::try_from(st.st_size).unwrap_or(0);
        self.mtime_ns = ns(st.st_mtime as i64, st.st_mtime_nsec as u64);
        self.ctime_ns = ns(st.st_ctime as i64, st.st_ctime_nsec as u64);
        self.inode = st.st_ino as u64;
        self.nlink = st.st_nlink as u64;
    }

    /// The database key of this entry's path.
    pub fn key(&self) -> Vec<u8> {
        path_key(&self.path)
    }
}

/// Database key of an in-root path: each `/` becomes a NUL byte. No path
/// component contains NUL or `/`, so the byte order of keys is exactly the
/// order of a depth-first walk that visits each directory's entries sorted by
/// name (a directory, then its whole subtree, then its next sibling), which
/// lets a scan be merge-joined against `ORDER BY path`.
pub fn path_key(path: &[u8]) -> Vec<u8> {
    path.iter()
        .map(|&b| if b == b'/' { 0 } else { b })
        .collect()
}

/// Inverse of [`path_key`].
pub fn key_path(key: &[u8]) -> Vec<u8> {
    key.iter().map(|&b| if b == 0 { b'/' } else { b }).collect()
}

/// A regular file's entry under the `/etc` watch, for tests.
#[cfg(test)]
pub fn sample(path: &[u8], hash: u8) -> Entry {
    Entry {
        path: path.to_vec(),
        rule: Arc::from("/etc"),
        kind: Kind::File,
        mode: 0o100644,
        uid: 0,
        gid: 0,
        size: 1200,
        mtime_ns: 1_000_000_000,
        ctime_ns: 1_000_000_000,
        inode: 5,
        nlink: 1,
        hash: Some((HashAlg::Sha256, vec![hash; 32])),
        link_target: None,
        xattrs: Some(Vec::new()),
        state: State::Ok,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_order_is_walk_order() {
        // Walk order: /a, /a/b, /a.txt  (children of / sorted: "a" < "a.txt").
        let walk: Vec<&[u8]> = vec![b"/", b"/a", b"/a/b", b"/a/b/c", b"/a.txt", b"/b"];
        let keys: Vec<Vec<u8>> = walk.iter().map(|p| path_key(p)).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted);
        assert_eq!(key_path(&path_key(b"/x/y")), b"/x/y");
    }
}
