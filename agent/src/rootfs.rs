//! Reading a checked root safely. Baselines name absolute paths *inside* the
//! root; symlinks met on the way are resolved as if the root were `/`, so an
//! image's `/etc/alternatives/x -> /usr/bin/y` stays in the image and never
//! reads the host running the check. Files are opened without blocking and
//! refused unless they are regular: a FIFO or a device is never read.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

/// Largest file a check reads; configuration files are far smaller.
pub const MAX_READ_BYTES: u64 = 16 * 1024 * 1024;

/// Most symlinks followed while resolving one path (Linux's own limit).
const MAX_SYMLINKS: u32 = 40;

/// Why a file inside the root could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The path does not exist.
    #[error("{0}: not found")]
    NotFound(String),
    /// Permission denied or another I/O error.
    #[error("{path}: {source}")]
    Io {
        /// in-root path
        path: String,
        /// cause
        source: io::Error,
    },
    /// Not a regular file.
    #[error("{path}: is a {kind}, not a regular file")]
    NotRegular {
        /// in-root path
        path: String,
        /// what it is
        kind: &'static str,
    },
    /// Larger than [`MAX_READ_BYTES`].
    #[error(
        "{path}: {size} bytes, larger than the {MAX_READ_BYTES}-byte limit for files a check reads"
    )]
    TooLarge {
        /// in-root path
        path: String,
        /// its size
        size: u64,
    },
}

impl ReadError {
    /// The file does not exist (as opposed to existing but unreadable).
    pub fn is_not_found(&self) -> bool {
        matches!(self, ReadError::NotFound(_))
    }
}

/// A text file read from the root, split into lines. Bytes that are not
/// UTF-8 are replaced, so odd bytes never stop a check.
#[derive(Debug, Clone)]
pub struct TextFile {
    /// In-root path, for evidence.
    pub path: String,
    /// Lines without their terminators.
    pub lines: Vec<String>,
}

impl TextFile {
    /// `(1-based line number, line)` pairs.
    pub fn numbered(&self) -> impl Iterator<Item = (usize, &str)> {
        self.lines
            .iter()
            .enumerate()
            .map(|(i, l)| (i + 1, l.as_str()))
    }

    /// `path:line`, the evidence location of a line.
    pub fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path)
    }
}

/// Names the kind of a file from its metadata.
pub fn kind_name(meta: &Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let t = meta.file_type();
    if t.is_file() {
        "regular file"
    } else if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symlink"
    } else if t.is_fifo() {
        "fifo"
    } else if t.is_socket() {
        "socket"
    } else if t.is_block_device() {
        "block device"
    } else if t.is_char_device() {
        "character device"
    } else {
        "special file"
    }
}

/// A root directory that in-root paths are resolved against.
#[derive(Debug, Clone)]
pub struct RootFs {
    root: PathBuf,
    is_host_root: bool,
}

impl RootFs {
    /// A root at `root` (`/` for the running system).
    pub fn new(root: impl Into<PathBuf>) -> RootFs {
        let root = root.into();
        let is_host_root = root == Path::new("/");
        RootFs { root, is_host_root }
    }

    /// The root directory on the host.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Host path of an in-root path, joined without resolving anything: the
    /// path itself, for `lstat`.
    pub fn host(&self, in_root: &str) -> PathBuf {
        self.host_bytes(in_root.as_bytes())
    }

    fn host_bytes(&self, in_root: &[u8]) -> PathBuf {
        let rel = Path::new(OsStr::from_bytes(in_root));
        let mut p = self.root.clone();
        for c in rel.components() {
            match c {
                Component::Normal(n) => p.push(n),
                // Never climb above the root lexically.
                Component::ParentDir if p != self.root => {
                    p.pop();
                }
                _ => {}
            }
        }
        p
    }

    /// Host path of an in-root path with every symlink on the way resolved
    /// inside the root; the last component is followed when `follow_last`.
    pub fn resolve(&self, in_root: &str, follow_last: bool) -> io::Result<PathBuf> {
        if self.is_host_root {
            // On the live system the kernel resolves exactly this way.
            let p = self.host(in_root);
            return if follow_last {
                std::fs::canonicalize(p)
            } else {
                Ok(p)
            };
        }
        let mut pending: Vec<Vec<u8>> = split(in_root.as_bytes());
        pending.reverse();
        let mut cur: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(comp) = pending.pop() {
            match comp.as_slice() {
                b"." => continue,
                b".." => {
                    cur.pop();
                    continue;
                }
                _ => {}
            }
            cur.push(comp);
            let last = pending.is_empty();
            if last && !follow_last {
                break;
            }
            let host = self.host_bytes(&join(&cur));
            match std::fs::symlink_metadata(&host) {
                Ok(m) if m.file_type().is_symlink() => {
                    hops += 1;
                    if hops > MAX_SYMLINKS {
                        return Err(io::Error::other("too many levels of symbolic links"));
                    }
                    let target = std::fs::read_link(&host)?;
                    let tb = target.as_os_str().as_bytes();
                    cur.pop();
                    if tb.starts_with(b"/") {
                        cur.clear();
                    }
                    let mut t = split(tb);
                    t.reverse();
                    pending.extend(t);
                }
                Ok(_) => {}
                // A missing component: the rest cannot be symlinks either.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    while let Some(c) = pending.pop() {
                        cur.push(c);
                    }
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(self.host_bytes(&join(&cur)))
    }

    /// `lstat` of the in-root path itself (a final symlink is not followed,
    /// symlinks in parent directories are resolved inside the root).
    pub fn lstat(&self, in_root: &str) -> io::Result<Metadata> {
        std::fs::symlink_metadata(self.resolve(in_root, false)?)
    }

    /// `stat` following symlinks inside the root.
    pub fn stat(&self, in_root: &str) -> io::Result<Metadata> {
        std::fs::symlink_metadata(self.resolve(in_root, true)?)
    }

    /// Reads a regular file whole (up to [`MAX_READ_BYTES`]), following
    /// symlinks inside the root, never blocking and never opening anything
    /// but a regular file.
    pub fn read(&self, in_root: &str) -> Result<Vec<u8>, ReadError> {
        let io_err = |source: io::Error| {
            if source.kind() == io::ErrorKind::NotFound {
                ReadError::NotFound(in_root.to_string())
            } else {
                ReadError::Io {
                    path: in_root.to_string(),
                    source,
                }
            }
        };
        let host = self.resolve(in_root, true).map_err(io_err)?;
        let before = std::fs::symlink_metadata(&host).map_err(io_err)?;
        if !before.file_type().is_file() {
            return Err(ReadError::NotRegular {
                path: in_root.to_string(),
                kind: kind_name(&before),
            });
        }
        let file = File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
            .open(&host)
            .map_err(io_err)?;
        let meta = file.metadata().map_err(io_err)?;
        // The path may have been swapped between lstat and open.
        if !meta.file_type().is_file() || meta.ino() != before.ino() || meta.dev() != before.dev() {
            return Err(ReadError::Io {
                path: in_root.to_string(),
                source: io::Error::other("file changed while being opened"),
            });
        }
        if meta.len() > MAX_READ_BYTES {
            return Err(ReadError::TooLarge {
                path: in_root.to_string(),
                size: meta.len(),
            });
        }
        let mut buf = Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0));
        file.take(MAX_READ_BYTES + 1)
            .read_to_end(&mut buf)
            .map_err(io_err)?;
        if buf.len() as u64 > MAX_READ_BYTES {
            return Err(ReadError::TooLarge {
                path: in_root.to_string(),
                size: buf.len() as u64,
            });
        }
        Ok(buf)
    }

    /// Reads a text file as lines (see [`TextFile`]).
    pub fn read_text(&self, in_root: &str) -> Result<TextFile, ReadError> {
        let bytes = self.read(in_root)?;
        let text = String::from_utf8_lossy(&bytes);
        Ok(TextFile {
            path: in_root.to_string(),
            lines: text.lines().map(str::to_string).collect(),
        })
    }

    /// In-root paths of the directory's entries, sorted by name; symlinks
    /// in the directory's own path are resolved inside the root.
    pub fn list_dir(&self, in_root: &str) -> io::Result<Vec<String>> {
        let host = self.resolve(in_root, true)?;
        let mut names: Vec<Vec<u8>> = std::fs::read_dir(host)?
            .filter_map(Result::ok)
            .map(|e| e.file_name().as_bytes().to_vec())
            .collect();
        names.sort();
        let base = in_root.trim_end_matches('/');
        Ok(names
            .into_iter()
            .map(|n| format!("{base}/{}", String::from_utf8_lossy(&n)))
            .collect())
    }

    /// Expands a glob to the existing in-root paths it matches, sorted. A
    /// pattern without glob characters yields itself if it exists (as a
    /// symlink too). `**` matches any depth; walking never follows symlinks.
    pub fn glob(&self, pattern: &str) -> io::Result<Vec<String>> {
        if !has_glob_chars(pattern) {
            return Ok(match self.lstat(pattern) {
                Ok(_) => vec![pattern.to_string()],
                Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
                Err(e) => return Err(e),
            });
        }
        let matcher = plumb_core::glob(pattern).map_err(io::Error::other)?;
        // Walk from the longest literal directory prefix.
        let mut base = String::new();
        let mut depth: Option<usize> = Some(0);
        let comps: Vec<&str> = pattern.split('/').filter(|c| !c.is_empty()).collect();
        let mut i = 0;
        while i < comps.len() && !has_glob_chars(comps[i]) {
            base.push('/');
            base.push_str(comps[i]);
            i += 1;
        }
        for c in &comps[i..] {
            if c.contains("**") {
                depth = None;
                break;
            }
            depth = depth.map(|d| d + 1);
        }
        if base.is_empty() {
            base.push('/');
        }
        let mut out = Vec::new();
        let walk = Walk {
            matcher,
            depth,
            prune: Prune::new(&comps[i..]),
            base_len: base.trim_end_matches('/').len(),
        };
        self.walk_glob(&base, &walk, 0, &mut out)?;
        out.sort();
        Ok(out)
    }

    fn walk_glob(
        &self,
        dir: &str,
        walk: &Walk,
        level: usize,
        out: &mut Vec<String>,
    ) -> io::Result<()> {
        let (m, depth) = (&walk.matcher, walk.depth);
        const MAX_DEPTH: usize = 64;
        if depth.is_some_and(|d| level >= d) || level > MAX_DEPTH {
            return Ok(());
        }
        let entries = match self.list_dir(dir) {
            Ok(e) => e,
            Err(e) if level > 0 => {
                tracing::debug!("glob: cannot list {dir}: {e}");
                return Ok(());
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            if m.is_match(&entry) {
                out.push(entry.clone());
            }
            if depth.is_none_or(|d| level + 1 < d) && walk.may_hold_matches(&entry[walk.base_len..])
            {
                let is_dir =
                    std::fs::symlink_metadata(self.host(&entry)).is_ok_and(|md| md.is_dir());
                if is_dir {
                    self.walk_glob(&entry, walk, level + 1, out)?;
                }
            }
        }
        Ok(())
    }
}

/// One glob expansion: the matcher of the whole pattern, how deep to
/// walk, and which directories can hold a match.
struct Walk {
    matcher: globset::GlobMatcher,
    depth: Option<usize>,
    prune: Option<Prune>,
    /// Length of the walk's starting directory (without a trailing `/`):
    /// what follows it in an entry is the part the pattern matches.
    base_len: usize,
}

impl Walk {
    /// Whether the directory `rel` (`/c1/c2...` under the starting one)
    /// can hold a path the pattern matches: without this, a pattern such
    /// as `/{root,home/*}/.netrc` lists every directory two levels under
    /// `/` (and `/proc/*`), where only `/root` and `/home/*` can matter.
    fn may_hold_matches(&self, rel: &str) -> bool {
        self.prune.as_ref().is_none_or(|p| p.may_hold_matches(rel))
    }
}

/// The pattern's alternatives (`{a,b}` expanded) split into components,
/// each component a matcher. The pattern matches a path only when one
/// alternative matches it component by component (`*` and `?` never match
/// `/`), so a directory is worth walking only when its components match
/// the first ones of some longer alternative. An alternative with `**`
/// matches at any depth from there on.
struct Prune(Vec<Vec<Option<globset::GlobMatcher>>>);

impl Prune {
    /// Most alternatives tried; a pattern with more is walked whole.
    const MAX_ALTERNATIVES: usize = 64;

    /// `None` (walk everything, as before) for patterns this reading
    /// cannot follow exactly: classes (`[...]`, which may hold `{`, `,`
    /// or `/`), escapes and nested braces.
    fn new(comps: &[&str]) -> Option<Prune> {
        let rest = comps.join("/");
        if rest.contains(['[', '\\']) {
            return None;
        }
        let mut alts = Vec::new();
        for alt in expand_braces(&rest, Self::MAX_ALTERNATIVES)? {
            let mut matchers = Vec::new();
            for c in alt.split('/') {
                if c.contains("**") {
                    matchers.push(None);
                    break;
                }
                matchers.push(Some(plumb_core::glob(c).ok()?));
            }
            alts.push(matchers);
        }
        Some(Prune(alts))
    }

    fn may_hold_matches(&self, rel: &str) -> bool {
        let comps: Vec<&str> = rel.split('/').filter(|c| !c.is_empty()).collect();
        self.0.iter().any(|alt| {
            for (k, c) in comps.iter().enumerate() {
                match alt.get(k) {
                    // A `**` from here on: anything below may match.
                    Some(None) => return true,
                    Some(Some(m)) if m.is_match(c) => {}
                    _ => return false,
                }
            }
            // Something must remain to be matched below the directory.
            alt.len() > comps.len()
        })
    }
}

/// The alternatives of a pattern with `{a,b}` groups (not nested), in
/// order; `None` when the braces nest or do not balance, or there would
/// be more than `max`.
fn expand_braces(pattern: &str, max: usize) -> Option<Vec<String>> {
    let Some(open) = pattern.find('{') else {
        return (!pattern.contains('}')).then(|| vec![pattern.to_string()]);
    };
    let close = open + pattern[open..].find('}')?;
    let inner = &pattern[open + 1..close];
    if inner.contains('{') || pattern[..open].contains('}') {
        return None;
    }
    let tails = expand_braces(&pattern[close + 1..], max)?;
    let mut out = Vec::new();
    for choice in inner.split(',') {
        for tail in &tails {
            out.push(format!("{}{choice}{tail}", &pattern[..open]));
            if out.len() > max {
                return None;
            }
        }
    }
    Some(out)
}

/// Whether a path holds glob metacharacters.
pub fn has_glob_chars(s: &str) -> bool {
    s.contains(['*', '?', '[', '{'])
}

fn split(p: &[u8]) -> Vec<Vec<u8>> {
    p.split(|&b| b == b'/')
        .filter(|c| !c.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

fn join(comps: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for c in comps {
        out.push(b'/');
        out.extend_from_slice(c);
    }
    if out.is_empty() {
        out.push(b'/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn absolute_symlinks_stay_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/ssh")).unwrap();
        std::fs::create_dir_all(r.join("real")).unwrap();
        std::fs::write(r.join("real/sshd_config"), "PermitRootLogin no\n").unwrap();
        symlink("/real/sshd_config", r.join("etc/ssh/sshd_config")).unwrap();
        symlink("/", r.join("etc/loop")).unwrap();
        let fs = RootFs::new(r);
        assert_eq!(
            fs.read("/etc/ssh/sshd_config").unwrap(),
            b"PermitRootLogin no\n"
        );
        assert_eq!(
            fs.resolve("/etc/loop/etc/loop/real", true).unwrap(),
            r.join("real")
        );
        assert_eq!(fs.resolve("/../../..", true).unwrap(), r.to_path_buf());
        symlink("a", r.join("b")).unwrap();
        symlink("b", r.join("a")).unwrap();
        assert!(fs.read("/a").is_err());
    }

    #[test]
    fn refuses_fifos_and_reports_missing_files() {
        let t = tempfile::tempdir().unwrap();
        nix::unistd::mkfifo(
            &t.path().join("fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let fs = RootFs::new(t.path());
        assert!(matches!(
            fs.read("/fifo"),
            Err(ReadError::NotRegular { .. })
        ));
        assert!(fs.read("/nope").unwrap_err().is_not_found());
    }

    #[test]
    fn globs() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        std::fs::create_dir_all(r.join("etc/d/sub")).unwrap();
        for f in [
            "etc/d/a.conf",
            "etc/d/b.conf",
            "etc/d/c.txt",
            "etc/d/sub/x.conf",
        ] {
            std::fs::write(r.join(f), "").unwrap();
        }
        let fs = RootFs::new(r);
        assert_eq!(
            fs.glob("/etc/d/*.conf").unwrap(),
            vec!["/etc/d/a.conf", "/etc/d/b.conf"]
        );
        assert_eq!(
            fs.glob("/etc/d/**/*.conf").unwrap(),
            vec!["/etc/d/a.conf", "/etc/d/b.conf", "/etc/d/sub/x.conf"]
        );
        assert_eq!(fs.glob("/etc/d/c.txt").unwrap(), vec!["/etc/d/c.txt"]);
        assert!(fs.glob("/etc/nope/*").unwrap().is_empty());
    }

    /// Alternatives walk only the directories that can hold a match, and
    /// find exactly what the whole walk finds.
    #[test]
    fn globs_with_alternatives() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        for d in [
            "root",
            "home/alice",
            "home/bob/sub",
            "usr/lib/x",
            "etc/profile.d/deep",
            "etc/other",
        ] {
            std::fs::create_dir_all(r.join(d)).unwrap();
        }
        for f in [
            "root/.netrc",
            "home/alice/.forward",
            "home/bob/.netrc",
            "home/bob/sub/.netrc",
            "usr/lib/.netrc",
            "usr/lib/x/.netrc",
            "etc/profile",
            "etc/profile.d/a.sh",
            "etc/profile.d/b.txt",
            "etc/profile.d/deep/c.sh",
            "etc/other/profile",
        ] {
            std::fs::write(r.join(f), "").unwrap();
        }
        // A symlinked directory is not walked into, pruned or not.
        std::os::unix::fs::symlink("alice", r.join("home/carol")).unwrap();
        let fs = RootFs::new(r);
        assert_eq!(
            fs.glob("/{root,home/*}/.{netrc,rhosts,forward}").unwrap(),
            vec!["/home/alice/.forward", "/home/bob/.netrc", "/root/.netrc"]
        );
        assert_eq!(
            fs.glob("/etc/{profile,bash.bashrc,profile.d/*.sh}")
                .unwrap(),
            vec!["/etc/profile", "/etc/profile.d/a.sh"]
        );
        assert_eq!(
            fs.glob("/{etc,usr}/**/.netrc").unwrap(),
            vec!["/usr/lib/.netrc", "/usr/lib/x/.netrc"]
        );
        assert_eq!(
            fs.glob("/etc/{profile.d/**/*.sh,other/*}").unwrap(),
            vec![
                "/etc/other/profile",
                "/etc/profile.d/a.sh",
                "/etc/profile.d/deep/c.sh"
            ]
        );
        // Classes are walked whole, as before.
        assert_eq!(
            fs.glob("/[hr]*/*/.netrc").unwrap(),
            vec!["/home/bob/.netrc"]
        );
        assert_eq!(
            expand_braces("/a{b,}c{d,e}", 64).unwrap(),
            vec!["/abcd", "/abce", "/acd", "/ace"]
        );
        assert!(expand_braces("/a{b{c}}", 64).is_none());
        assert!(expand_braces("/a}{b", 64).is_none());
        assert!(expand_braces("/{a,b}{c,d}", 3).is_none());
    }
}
