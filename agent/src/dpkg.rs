//! The dpkg database of a checked root, read-only: which installed package
//! owns a path and the MD5 it recorded for it (`info/PKG[:ARCH].md5sums`,
//! `Conffiles:` in `status`), and whether dpkg is busy (its lock held, its
//! journal not yet folded into `status`). Used by FIM verdicts and the
//! `package_files` check.
//!
//! Nothing is indexed whole: a lookup streams the md5sums lists once and
//! keeps only the paths asked for, so memory follows the number of paths
//! looked up, not the number of files installed.

use crate::rootfs::{ReadError, RootFs};
use std::collections::{HashMap, HashSet};
use std::os::fd::AsFd;
use std::sync::Arc;

/// Where dpkg keeps its database, inside the root.
pub const ADMINDIR: &str = "/var/lib/dpkg";

/// The dpkg database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DpkgError {
    /// `status` is missing: not a dpkg system (or not this root).
    #[error("no dpkg database in this root ({ADMINDIR}/status)")]
    Missing,
    /// A file of the database could not be read.
    #[error("dpkg database: {0}")]
    Read(#[from] ReadError),
    /// `info/` could not be listed.
    #[error("dpkg database: listing {ADMINDIR}/info: {0}")]
    List(std::io::Error),
}

/// An installed (or half-installed) package.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Package {
    /// Name without architecture.
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture, when the stanza names one.
    pub arch: Option<String>,
    /// The third word of `Status:` (`installed`, `unpacked`, `half-installed`...).
    pub state: String,
    /// Line of its `Package:` field in `status`.
    pub line: usize,
}

impl Package {
    /// `name version (arch)` for evidence.
    pub fn describe(&self) -> String {
        match &self.arch {
            Some(a) => format!("{} {} ({a})", self.name, self.version),
            None => format!("{} {}", self.name, self.version),
        }
    }

    /// Whether its files are in place as the database records them: the
    /// unpack completed (configuration may still be pending).
    pub fn unpacked(&self) -> bool {
        matches!(
            self.state.as_str(),
            "installed" | "triggers-pending" | "triggers-awaited" | "unpacked" | "half-configured"
        )
    }

    /// Its md5sums list, as named in `info/`.
    fn md5sums_names(&self) -> [String; 2] {
        [
            format!("{}.md5sums", self.name),
            match &self.arch {
                Some(a) => format!("{}:{a}.md5sums", self.name),
                None => format!("{}.md5sums", self.name),
            },
        ]
    }
}

/// What the database records for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// The owning package.
    pub package: Arc<Package>,
    /// The MD5 recorded, when there is one (`None`: a conffile not yet
    /// installed, `newconffile`).
    pub md5: Option<[u8; 16]>,
    /// A configuration file (from `Conffiles:`).
    pub conffile: bool,
    /// The conffile is obsolete (no longer shipped by the package).
    pub obsolete: bool,
    /// The file of the database the record comes from.
    pub source: String,
}

/// A conffile as `status` records it: `(path, md5 or None, obsolete, index
/// of its package in Status::packages)`.
type ConffileEntry = (Vec<u8>, Option<[u8; 16]>, bool, usize);

/// A conffile of a chosen package: `(package index, path, md5, obsolete)`.
pub type Conffile = (usize, Vec<u8>, Option<[u8; 16]>, bool);

/// The packages of `status`, with the conffiles of each.
#[derive(Debug, Default)]
pub struct Status {
    /// Packages whose files are (or may be) on disk, in `status` order.
    pub packages: Vec<Arc<Package>>,
    conffiles: Vec<ConffileEntry>,
}

/// Parses 32 hex digits.
pub fn parse_md5(s: &[u8]) -> Option<[u8; 16]> {
    if s.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, pair) in s.chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Lowercase hex of an MD5.
pub fn hex(md5: &[u8; 16]) -> String {
    md5.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads `status`: every package that is not `not-installed`, and the
/// `Conffiles:` of each (a `config-files` package keeps only those).
pub fn read_status(fs: &RootFs) -> Result<Status, DpkgError> {
    let path = format!("{ADMINDIR}/status");
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.is_not_found() => return Err(DpkgError::Missing),
        Err(e) => return Err(e.into()),
    };
    Ok(parse_status(&bytes))
}

/// Parses the bytes of a `status` file (see [`read_status`]).
pub fn parse_status(bytes: &[u8]) -> Status {
    #[derive(Default)]
    struct Cur {
        line: usize,
        name: Option<String>,
        version: Option<String>,
        arch: Option<String>,
        status: Option<String>,
        conffiles: Vec<(Vec<u8>, Option<[u8; 16]>, bool)>,
    }
    fn flush(cur: &mut Cur, out: &mut Status) {
        let c = std::mem::take(cur);
        let (Some(name), Some(status)) = (c.name, c.status) else {
            return;
        };
        let state = status.split_whitespace().nth(2).unwrap_or("").to_string();
        if state == "not-installed" {
            return;
        }
        let name = name
            .split_once(':')
            .map_or(name.as_str(), |(n, _)| n)
            .to_string();
        out.packages.push(Arc::new(Package {
            name,
            version: c.version.unwrap_or_default(),
            arch: c.arch,
            state,
            line: c.line,
        }));
        let i = out.packages.len() - 1;
        for (p, m, o) in c.conffiles {
            out.conffiles.push((p, m, o, i));
        }
    }
    let mut out = Status::default();
    let mut cur = Cur::default();
    let mut in_conffiles = false;
    for (n, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = raw.strip_suffix(b"\r").unwrap_or(raw);
        if line.iter().all(u8::is_ascii_whitespace) {
            flush(&mut cur, &mut out);
            in_conffiles = false;
            continue;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            if in_conffiles {
                // " /etc/ssh/sshd_config 0123abcd... [obsolete|remove-on-upgrade]":
                // the path may hold spaces, so the hash is found from the end.
                let body = &line[1..];
                let mut words: Vec<&[u8]> = body.rsplitn(3, |&b| b == b' ').collect();
                words.reverse();
                let (path, hash, flag) = match words.as_slice() {
                    [p, h, f] if parse_md5(h).is_some() || *h == b"newconffile" => {
                        (p.to_vec(), *h, Some(*f))
                    }
                    [a, b, c] => ([*a, b" ", *b].concat(), *c, None),
                    [p, h] => (p.to_vec(), *h, None),
                    _ => continue,
                };
                let obsolete = flag == Some(b"obsolete".as_slice());
                cur.conffiles.push((path, parse_md5(hash), obsolete));
            }
            continue;
        }
        in_conffiles = false;
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let field = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(&line[colon + 1..])
            .trim()
            .to_string();
        let slot = match field.trim() {
            "package" => {
                cur.line = n + 1;
                &mut cur.name
            }
            "status" => &mut cur.status,
            "version" => &mut cur.version,
            "architecture" => &mut cur.arch,
            "conffiles" => {
                in_conffiles = true;
                continue;
            }
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    flush(&mut cur, &mut out);
    out
}

/// Parses one line of an md5sums list: 32 hex digits, two spaces (or a
/// space and `*`), the path relative to `/`, as `md5sum` writes it. A line
/// starting with `\` has its path escaped (`\\`, `\n`), which is how
/// `md5sum` writes names holding a newline or a backslash. Any other byte
/// (spaces, non-UTF-8) is part of the name.
pub fn parse_md5sums_line(line: &[u8]) -> Option<([u8; 16], Vec<u8>)> {
    let (escaped, line) = match line.strip_prefix(b"\\") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let md5 = parse_md5(line.get(..32)?)?;
    let sep = line.get(32..34)?;
    if sep != b"  " && sep != b" *" {
        return None;
    }
    let name = &line[34..];
    if name.is_empty() {
        return None;
    }
    let mut path = Vec::with_capacity(name.len() + 1);
    path.push(b'/');
    let name = name.strip_prefix(b"./").unwrap_or(name);
    let name = name.strip_prefix(b"/").unwrap_or(name);
    if escaped {
        let mut it = name.iter();
        while let Some(&b) = it.next() {
            if b == b'\\' {
                match it.next() {
                    Some(b'n') => path.push(b'\n'),
                    Some(b'\\') => path.push(b'\\'),
                    Some(&o) => path.extend([b'\\', o]),
                    None => path.push(b'\\'),
                }
            } else {
                path.push(b);
            }
        }
    } else {
        path.extend_from_slice(name);
    }
    Some((md5, path))
}

/// Top-level directories that the root merges into `/usr` (`/bin` →
/// `usr/bin`): a package may list `bin/ls` for what lives at `/usr/bin/ls`.
fn merged_dirs(fs: &RootFs) -> Vec<&'static str> {
    ["bin", "sbin", "lib", "lib32", "lib64", "libx32"]
        .into_iter()
        .filter(|d| {
            std::fs::read_link(fs.host(&format!("/{d}"))).is_ok_and(|t| {
                let t = t.as_os_str().as_encoded_bytes();
                t == format!("usr/{d}").as_bytes() || t == format!("/usr/{d}").as_bytes()
            })
        })
        .collect()
}

/// The path as it lives on disk: `/bin/x` is `/usr/bin/x` when `/bin` is
/// merged.
fn canonical(path: &[u8], merged: &[&str]) -> Vec<u8> {
    for d in merged {
        let top = format!("/{d}");
        if path.starts_with(top.as_bytes()) && (path.len() == top.len() || path[top.len()] == b'/')
        {
            let mut p = b"/usr".to_vec();
            p.extend_from_slice(path);
            return p;
        }
    }
    path.to_vec()
}

/// The database of a root, ready for lookups.
#[derive(Debug)]
pub struct Database {
    fs: RootFs,
    /// What `status` says.
    pub status: Status,
    merged: Vec<&'static str>,
    /// The file names in `info/`, listed once: every md5sums lookup needs
    /// them and a Debian root has thousands.
    info: std::sync::OnceLock<HashSet<String>>,
}

impl Database {
    /// Reads `status` of the root.
    pub fn open(fs: &RootFs) -> Result<Database, DpkgError> {
        Ok(Database {
            status: read_status(fs)?,
            merged: merged_dirs(fs),
            fs: fs.clone(),
            info: std::sync::OnceLock::new(),
        })
    }

    /// The file names in `info/`, listed on first use (a failed listing
    /// is not kept: the next use tries again and reports it).
    fn info_names(&self) -> Result<&HashSet<String>, DpkgError> {
        if let Some(names) = self.info.get() {
            return Ok(names);
        }
        let names = match self.fs.list_dir(&format!("{ADMINDIR}/info")) {
            Ok(v) => v
                .into_iter()
                .map(|p| p.rsplit('/').next().unwrap_or_default().to_string())
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashSet::new(),
            Err(e) => return Err(DpkgError::List(e)),
        };
        Ok(self.info.get_or_init(|| names))
    }

    /// Streams the md5sums list of each package `keep` accepts (index and
    /// package): `each(package index, path as on disk, md5, source)`.
    pub fn each_md5sum(
        &self,
        keep: impl Fn(&Package) -> bool,
        mut each: impl FnMut(usize, &[u8], [u8; 16], &str),
    ) -> Result<(), DpkgError> {
        let names = self.info_names()?;
        for (i, p) in self.status.packages.iter().enumerate() {
            if !keep(p) {
                continue;
            }
            // A `config-files` package's md5sums list is gone (or stale).
            if p.state == "config-files" {
                continue;
            }
            let [plain, qualified] = p.md5sums_names();
            let name = if names.contains(&qualified) {
                qualified
            } else if names.contains(&plain) {
                plain
            } else {
                continue;
            };
            let source = format!("{ADMINDIR}/info/{name}");
            let bytes = match self.fs.read(&source) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for line in bytes.split(|&b| b == b'\n') {
                if let Some((md5, path)) = parse_md5sums_line(line) {
                    each(i, &canonical(&path, &self.merged), md5, &source);
                }
            }
        }
        Ok(())
    }

    /// Conffiles of the packages `keep` accepts: `(index, path, md5, obsolete)`.
    pub fn conffiles<F>(&self, keep: F) -> impl Iterator<Item = Conffile> + use<'_, F>
    where
        F: Fn(&Package) -> bool,
    {
        self.status
            .conffiles
            .iter()
            .filter(move |(_, _, _, i)| keep(&self.status.packages[*i]))
            .map(|(p, m, o, i)| (*i, canonical(p, &self.merged), *m, *o))
    }

    /// What the database records for each of `paths` (in-root paths as on
    /// disk): every package that lists it, conffiles included. One pass
    /// over the lists whatever the number of paths.
    pub fn lookup(
        &self,
        paths: &HashSet<Vec<u8>>,
    ) -> Result<HashMap<Vec<u8>, Vec<Record>>, DpkgError> {
        let mut out: HashMap<Vec<u8>, Vec<Record>> = HashMap::new();
        if paths.is_empty() {
            return Ok(out);
        }
        let status_path = format!("{ADMINDIR}/status");
        for (i, path, md5, obsolete) in self.conffiles(|_| true) {
            if paths.contains(&path) {
                out.entry(path).or_default().push(Record {
                    package: self.status.packages[i].clone(),
                    md5,
                    conffile: true,
                    obsolete,
                    source: status_path.clone(),
                });
            }
        }
        self.each_md5sum(
            |_| true,
            |i, path, md5, source| {
                if paths.contains(path) {
                    let recs = out.entry(path.to_vec()).or_default();
                    // A conffile listed in md5sums too (old packages):
                    // the Conffiles entry is what dpkg compares against.
                    if !recs
                        .iter()
                        .any(|r| r.conffile && Arc::ptr_eq(&r.package, &self.status.packages[i]))
                    {
                        recs.push(Record {
                            package: self.status.packages[i].clone(),
                            md5: Some(md5),
                            conffile: false,
                            obsolete: false,
                            source: source.to_string(),
                        });
                    }
                }
            },
        )?;
        Ok(out)
    }
}

impl Database {
    /// The packages whose file list (`info/PKG[:ARCH].list`) names each of
    /// `paths`: how directories and symlinks, which have no digest, are
    /// owned. One pass over the lists, only when some path is asked for.
    pub fn listed(
        &self,
        paths: &HashSet<Vec<u8>>,
    ) -> Result<HashMap<Vec<u8>, Vec<Arc<Package>>>, DpkgError> {
        let mut out: HashMap<Vec<u8>, Vec<Arc<Package>>> = HashMap::new();
        if paths.is_empty() {
            return Ok(out);
        }
        let names = self.info_names()?;
        for p in &self.status.packages {
            if p.state == "config-files" {
                continue;
            }
            let qualified = p.arch.as_ref().map(|a| format!("{}:{a}.list", p.name));
            let plain = format!("{}.list", p.name);
            let name = match qualified {
                Some(q) if names.contains(&q) => q,
                _ if names.contains(&plain) => plain,
                _ => continue,
            };
            let source = format!("{ADMINDIR}/info/{name}");
            let bytes = match self.fs.read(&source) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e.into()),
            };
            for line in bytes.split(|&b| b == b'\n') {
                let path = canonical(line, &self.merged);
                if paths.contains(&path) {
                    out.entry(path).or_default().push(p.clone());
                }
            }
        }
        Ok(out)
    }
}

/// The MD5 of the regular file at in-root `path` (never following a
/// symlink, never opening anything else).
pub fn file_md5(root: &std::path::Path, path: &[u8]) -> std::io::Result<[u8; 16]> {
    use md5::Digest as _;
    use std::io::Read;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::OpenOptionsExt;
    let host = root.join(std::ffi::OsStr::from_bytes(
        path.strip_prefix(b"/").unwrap_or(path),
    ));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(host)?;
    if !f.metadata()?.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mut h = md5::Md5::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut r = &f;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(h.finalize().as_slice());
    Ok(out)
}

/// Why the database is not settled.
pub fn busy(fs: &RootFs) -> Option<String> {
    for lock in ["lock-frontend", "lock"] {
        let path = format!("{ADMINDIR}/{lock}");
        if lock_held(&fs.host(&path)) {
            return Some(format!("dpkg is running ({path} is locked)"));
        }
    }
    let updates = format!("{ADMINDIR}/updates");
    if let Ok(names) = fs.list_dir(&updates) {
        // Journal entries are named by digits; `tmp.i` is a partial one.
        if names.iter().any(|p| {
            let n = p.rsplit('/').next().unwrap_or_default();
            !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())
        }) {
            return Some(format!(
                "the dpkg database has journal entries not yet applied ({updates})"
            ));
        }
    }
    None
}

/// Whether another process holds an `fcntl` lock on `path` (how dpkg
/// locks its database). Opened read-only and non-blocking; a file that
/// does not exist or cannot be opened holds no lock we can see.
fn lock_held(path: &std::path::Path) -> bool {
    use std::os::unix::fs::OpenOptionsExt;
    let Ok(f) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
    else {
        return false;
    };
    let mut fl = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    };
    let r = nix::fcntl::fcntl(f.as_fd(), nix::fcntl::FcntlArg::F_GETLK(&mut fl));
    r.is_ok() && fl.l_type != libc::F_UNLCK as libc::c_short
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5sums_lines_as_dpkg_and_md5sum_write_them() {
        let h = "0123456789abcdef0123456789abcdef";
        let (m, p) = parse_md5sums_line(format!("{h}  usr/bin/ls").as_bytes()).unwrap();
        assert_eq!(hex(&m), h);
        assert_eq!(p, b"/usr/bin/ls");
        // Spaces and non-UTF-8 bytes are part of the name.
        let mut line = format!("{h}  usr/share/a b  c").into_bytes();
        line.extend_from_slice(b"\xff\xfe");
        assert_eq!(
            parse_md5sums_line(&line).unwrap().1,
            b"/usr/share/a b  c\xff\xfe"
        );
        // md5sum's escaped form for a newline and a backslash.
        let line = format!("\\{h}  usr/share/new\\nline\\\\x");
        assert_eq!(
            parse_md5sums_line(line.as_bytes()).unwrap().1,
            b"/usr/share/new\nline\\x"
        );
        // Unescaped backslashes stay as they are.
        let line = format!("{h}  usr/a\\nb");
        assert_eq!(
            parse_md5sums_line(line.as_bytes()).unwrap().1,
            b"/usr/a\\nb"
        );
        for bad in [
            "",
            "xyz",
            &format!("{h} usr/x"),
            &format!("{h}  "),
            &h[..31],
        ] {
            assert!(parse_md5sums_line(bad.as_bytes()).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn status_packages_and_conffiles() {
        let s = parse_status(
            b"Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2\nConffiles:\n /etc/ssh/moduli 0123456789abcdef0123456789abcdef\n /etc/pam.d/sshd fedcba9876543210fedcba9876543210 obsolete\n /etc/with space/x 0123456789abcdef0123456789abcdef\n /etc/new newconffile\nDescription: x\n y\n\nPackage: gone\nStatus: purge ok not-installed\n\nPackage: old\nStatus: deinstall ok config-files\nVersion: 1\nConffiles:\n /etc/old.conf 0123456789abcdef0123456789abcdef\n",
        );
        let names: Vec<&str> = s.packages.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(names, ["openssh-server", "old"]);
        assert_eq!(s.packages[0].describe(), "openssh-server 1:9.2p1-2 (amd64)");
        assert!(s.packages[0].unpacked());
        assert!(!s.packages[1].unpacked());
        let c: Vec<(&[u8], bool, bool)> = s
            .conffiles
            .iter()
            .map(|(p, m, o, _)| (p.as_slice(), m.is_some(), *o))
            .collect();
        assert_eq!(
            c,
            [
                (b"/etc/ssh/moduli".as_slice(), true, false),
                (b"/etc/pam.d/sshd".as_slice(), true, true),
                (b"/etc/with space/x".as_slice(), true, false),
                (b"/etc/new".as_slice(), false, false),
                (b"/etc/old.conf".as_slice(), true, false),
            ]
        );
    }

    #[test]
    fn a_lock_held_by_another_process_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let dir = t.path().join("var/lib/dpkg");
        std::fs::create_dir_all(dir.join("updates")).unwrap();
        std::fs::write(dir.join("lock"), b"").unwrap();
        let fs = RootFs::new(t.path());
        assert_eq!(busy(&fs), None);
        // An open-file-description lock conflicts with the record locks
        // F_GETLK asks about even within one process (fcntl(2)), so the
        // test can hold the lock dpkg would hold.
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("lock"))
            .unwrap();
        let fl = libc::flock {
            l_type: libc::F_WRLCK as libc::c_short,
            l_whence: libc::SEEK_SET as libc::c_short,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        nix::fcntl::fcntl(&f, nix::fcntl::FcntlArg::F_OFD_SETLK(&fl)).unwrap();
        assert!(busy(&fs).unwrap().contains("/var/lib/dpkg/lock is locked"));
        drop(f);
        assert_eq!(busy(&fs), None);
        std::fs::write(dir.join("updates/0001"), b"Package: x\n").unwrap();
        assert!(busy(&fs).unwrap().contains("journal entries"));
    }
}
