//! The boot-time kernel parameters as systemd-sysctl (systemd 252) reads
//! and applies them, shared by the `sysctl` check and the `sysctl_set`
//! remediation so both see the same configuration. Differential tests run
//! the real systemd-sysctl on generated trees (tests/systemd_oracle.rs).
//!
//! - **Files.** Every entry whose name ends in `.conf` and does not start
//!   with `.`, in `/etc/sysctl.d`, `/run/sysctl.d`, `/usr/local/lib/sysctl.d`,
//!   `/usr/lib/sysctl.d` and `/lib/sysctl.d`. The first directory holding a
//!   name takes it, whatever the entry is: a dangling link or a directory
//!   reads nothing and still hides the same name in later directories, a
//!   link to `/dev/null` is empty. Files apply in byte order of their names.
//!   `/etc/sysctl.conf` is read only through a link to it (Debian's
//!   `/etc/sysctl.d/99-sysctl.conf`), at that link's place in the order.
//! - **Lines** end at `\n`, `\r`, `\r\n` or a NUL byte (`read_line`), are
//!   stripped of spaces, tabs, CR and LF; empty lines and lines starting
//!   with `#` or `;` are skipped. `key = value` splits at the first `=`; a
//!   leading `-` there only ignores write errors. A bare `-key` assigns
//!   nothing and excludes the key from glob assignments; any other line
//!   without `=` is ignored. Quotes are part of the value.
//! - **Keys** are normalized as `sysctl_normalize` does: when the first
//!   separator is `.`, dots and slashes swap (`net.ipv4.conf.eth0/100.x`
//!   names interface `eth0.100`); then empty and `.` components go (so
//!   `kernel..kptr_restrict` is `kernel/kptr_restrict`) and a leading `/`.
//! - **Order.** Assignments form an ordered map: assigning a key a new
//!   value (or `-key`) moves it to the end; assigning the value it already
//!   has leaves it where it is.
//! - **Apply.** A key without `*`, `?` or `[` is written its value. A glob
//!   is expanded over the kernel's parameters (`{a,b}` alternatives
//!   included, `*` not matching a leading `.`), skipping every parameter
//!   the map names explicitly (`-key` included); globs apply in map order,
//!   so the last matching one wins. Braces in a key without glob
//!   characters are literal.

use crate::rootfs::{ReadError, RootFs};
use std::collections::{BTreeMap, HashMap};
use std::io;

/// Directories systemd-sysctl reads, highest precedence first.
pub(crate) const DIRS: [&str; 5] = [
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];

/// Why the configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Error {
    /// A sysctl.d directory exists but cannot be listed (systemd-sysctl
    /// then applies nothing at all).
    #[error("cannot list {dir}: {source}")]
    List {
        /// in-root directory
        dir: String,
        /// cause
        source: io::Error,
    },
    /// A file cannot be read.
    #[error("cannot read {0}")]
    Read(ReadError),
}

/// One assignment (or `-key` exclusion) as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Assignment {
    /// Normalized key (`net/ipv4/ip_forward`).
    pub key: String,
    /// The key as written, `-` included, for evidence.
    pub written: String,
    /// `None` for a bare `-key`.
    pub value: Option<String>,
    /// `path:line`, with the link it was read through if any.
    pub at: String,
}

/// What applies to one kernel parameter at boot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Boot<'a> {
    /// Assigned by its own name.
    Explicit(&'a Assignment),
    /// Assigned by a glob (the last matching one in order).
    Glob(&'a Assignment),
    /// Named by a bare `-key`: no glob applies to it. The glob that would
    /// have, if any.
    Excluded(&'a Assignment, Option<&'a Assignment>),
    /// Nothing assigns it.
    Unset,
}

/// The parsed configuration: systemd-sysctl's ordered map.
#[derive(Debug, Default)]
pub(crate) struct Config {
    /// In order; `None` where an assignment moved to the end.
    slots: Vec<Option<Assignment>>,
    index: HashMap<String, usize>,
}

impl Config {
    /// Reads the configuration of the root. `planned` lists files a
    /// remediation is about to write (in-root path, content): they take
    /// part as if written already.
    pub(crate) fn load(fs: &RootFs, planned: &[(&str, &[u8])]) -> Result<Config, Error> {
        let mut by_name: BTreeMap<String, String> = BTreeMap::new();
        for dir in DIRS {
            let entries = match fs.list_dir(dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(source) => {
                    return Err(Error::List {
                        dir: dir.to_string(),
                        source,
                    });
                }
            };
            for path in entries {
                let name = file_name(&path);
                if name.starts_with('.') || !name.ends_with(".conf") {
                    continue;
                }
                by_name.entry(name.to_string()).or_insert(path);
            }
        }
        for (path, _) in planned {
            let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
            if DIRS[0] == dir {
                by_name.insert(name.to_string(), (*path).to_string());
            }
        }
        let mut config = Config::default();
        for path in by_name.into_values() {
            if let Some((_, bytes)) = planned.iter().find(|(p, _)| *p == path) {
                config.parse(&path, None, bytes);
                continue;
            }
            let bytes = match fs.read(&path) {
                Ok(b) => b,
                // A dangling link or a directory: the name is taken, nothing
                // is read (systemd-sysctl logs and goes on).
                Err(ReadError::NotFound(_)) => continue,
                Err(ReadError::NotRegular {
                    kind: "directory", ..
                }) => continue,
                // /dev/null in a root that has one.
                Err(ReadError::NotRegular {
                    kind: "character device",
                    ..
                }) => continue,
                Err(e) => return Err(Error::Read(e)),
            };
            match link_target(fs, &path) {
                Some(target) => config.parse(&target, Some(&path), &bytes),
                None => config.parse(&path, None, &bytes),
            }
        }
        Ok(config)
    }

    /// Adds a file's lines; evidence names `file`, and the link it was read
    /// through (`via`) if any.
    pub(crate) fn parse(&mut self, file: &str, via: Option<&str>, bytes: &[u8]) {
        let via = via.map(|v| format!(" via {v}")).unwrap_or_default();
        for (n, line) in read_lines(bytes).into_iter().enumerate() {
            let line = String::from_utf8_lossy(strip(line));
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            let (written, value) = match line.split_once('=') {
                Some((k, v)) => (k.trim_matches(WHITESPACE), Some(strip_str(v))),
                None if line.starts_with('-') => (line.as_ref(), None),
                // "Line is not an assignment, ignoring".
                None => continue,
            };
            let key = normalize(strip_str(written.strip_prefix('-').unwrap_or(written)));
            self.assign(Assignment {
                key,
                written: written.to_string(),
                value: value.map(str::to_string),
                at: format!("{file}:{}{via}", n + 1),
            });
        }
    }

    fn assign(&mut self, a: Assignment) {
        if let Some(&i) = self.index.get(&a.key) {
            if let Some(old) = &self.slots[i] {
                // The same value again: it keeps its place.
                if old.value == a.value {
                    return;
                }
            }
            self.slots[i] = None;
        }
        self.index.insert(a.key.clone(), self.slots.len());
        self.slots.push(Some(a));
    }

    /// Assignments in the order systemd-sysctl applies them.
    fn ordered(&self) -> impl DoubleEndedIterator<Item = &Assignment> {
        self.slots.iter().flatten()
    }

    /// What sets the normalized, glob-free `key` at boot.
    pub(crate) fn boot_value(&self, key: &str) -> Boot<'_> {
        let glob = self
            .ordered()
            .rev()
            .find(|a| a.value.is_some() && is_glob(&a.key) && glob_matches(&a.key, key));
        match self.index.get(key).and_then(|&i| self.slots[i].as_ref()) {
            Some(a) if a.value.is_some() => Boot::Explicit(a),
            Some(a) => Boot::Excluded(a, glob),
            None => glob.map_or(Boot::Unset, Boot::Glob),
        }
    }

    /// The assignment of exactly this (normalized) key, glob or not.
    pub(crate) fn assignment(&self, key: &str) -> Option<&Assignment> {
        self.index.get(key).and_then(|&i| self.slots[i].as_ref())
    }
}

/// `WHITESPACE` in systemd: what `strstrip` removes.
const WHITESPACE: &[char] = &[' ', '\t', '\n', '\r'];

fn strip(b: &[u8]) -> &[u8] {
    let ws = |c: &u8| matches!(c, b' ' | b'\t' | b'\n' | b'\r');
    let start = b.iter().position(|c| !ws(c)).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !ws(c)).map_or(start, |i| i + 1);
    &b[start..end]
}

fn strip_str(s: &str) -> &str {
    s.trim_matches(WHITESPACE)
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The in-root file an entry that is a symlink leads to.
fn link_target(fs: &RootFs, path: &str) -> Option<String> {
    if !fs.lstat(path).ok()?.file_type().is_symlink() {
        return None;
    }
    let host = fs.resolve(path, true).ok()?;
    Some(match host.strip_prefix(fs.root()) {
        Ok(rel) => format!("/{}", rel.display()),
        Err(_) => host.display().to_string(),
    })
}

/// Splits a file into lines as systemd's `read_line` does: a line ends at
/// `\n`, `\r` or NUL; a run of end markers is one line end as long as no
/// kind repeats (`\r\n` and `\n\r` are one, `\n\n` two), and a NUL ends
/// the run.
pub(crate) fn read_lines(bytes: &[u8]) -> Vec<&[u8]> {
    const NL: u8 = 1;
    const CR: u8 = 2;
    const NUL: u8 = 4;
    let kind = |c: u8| match c {
        b'\n' => NL,
        b'\r' => CR,
        0 => NUL,
        _ => 0,
    };
    let mut lines = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        while i < bytes.len() && kind(bytes[i]) == 0 {
            i += 1;
        }
        let end = i;
        let mut seen = 0;
        while i < bytes.len() {
            let k = kind(bytes[i]);
            if seen & NUL != 0 || k == 0 || seen & k != 0 {
                break;
            }
            seen |= k;
            i += 1;
        }
        lines.push(&bytes[start..end]);
    }
    lines
}

/// A key in systemd's normalized form (`sysctl_normalize`): `/` separates
/// components. When the first separator is `.`, dots and slashes swap.
/// Empty and `.` components are dropped, and a leading `/`.
pub(crate) fn normalize(key: &str) -> String {
    let swapped: String = match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    };
    let simple = path_simplify(&swapped);
    match simple.strip_prefix('/') {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => simple,
    }
}

/// systemd's `path_simplify`: redundant slashes and `.` components go,
/// `..` stays; an emptied relative path is `.`.
fn path_simplify(p: &str) -> String {
    if p.is_empty() {
        return String::new();
    }
    let comps: Vec<&str> = p
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    let joined = comps.join("/");
    if p.starts_with('/') {
        format!("/{joined}")
    } else if joined.is_empty() {
        ".".to_string()
    } else {
        joined
    }
}

/// The dotted form of a normalized key, for evidence.
pub(crate) fn dotted(normalized: &str) -> String {
    normalized
        .chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// Whether systemd-sysctl treats a key as a glob (`string_is_glob`).
pub(crate) fn is_glob(key: &str) -> bool {
    key.contains(['*', '?', '['])
}

/// Whether glob(3) with `GLOB_BRACE` expands normalized pattern `pat` to
/// the parameter `key`: alternatives first, then each `/` component
/// matched with `fnmatch(FNM_PERIOD)`.
pub(crate) fn glob_matches(pat: &str, key: &str) -> bool {
    let keys: Vec<&str> = key.split('/').collect();
    let mut alts = Vec::new();
    // More alternatives than this: glob(3) would run out of memory and
    // systemd-sysctl apply nothing for the pattern.
    if !expand_braces(pat, &mut alts) {
        return false;
    }
    alts.iter().any(|alt| {
        let comps: Vec<&str> = alt.split('/').filter(|c| !c.is_empty()).collect();
        comps.len() == keys.len()
            && comps
                .iter()
                .zip(&keys)
                .all(|(p, k)| fnmatch(p.as_bytes(), k.as_bytes()))
    })
}

/// Most brace alternatives one pattern expands to.
const MAX_ALTERNATIVES: usize = 1024;

/// glibc's `GLOB_BRACE` expansion into `out`; an unbalanced `{` is
/// literal. False when there would be more than [`MAX_ALTERNATIVES`].
fn expand_braces(p: &str, out: &mut Vec<String>) -> bool {
    let b = p.as_bytes();
    let mut i = 0;
    let mut open = None;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'{' => {
                open = Some(i);
                break;
            }
            _ => {}
        }
        i += 1;
    }
    let Some(open) = open else {
        out.push(p.to_string());
        return out.len() <= MAX_ALTERNATIVES;
    };
    // Top-level commas and the matching close brace.
    let mut depth = 0;
    let mut cuts = vec![open];
    let mut close = None;
    let mut j = open + 1;
    while j < b.len() {
        match b[j] {
            b'\\' => j += 1,
            b'{' => depth += 1,
            b'}' if depth == 0 => {
                close = Some(j);
                break;
            }
            b'}' => depth -= 1,
            b',' if depth == 0 => cuts.push(j),
            _ => {}
        }
        j += 1;
    }
    let Some(close) = close else {
        out.push(p.to_string());
        return out.len() <= MAX_ALTERNATIVES;
    };
    cuts.push(close);
    // The braces and commas are ASCII, so these are char boundaries.
    let (head, tail) = (&p[..open], &p[close + 1..]);
    for w in cuts.windows(2) {
        let alt = &p[w[0] + 1..w[1]];
        if !expand_braces(&format!("{head}{alt}{tail}"), out) {
            return false;
        }
    }
    true
}

/// glibc `fnmatch(FNM_PERIOD)` on one path component: `*`, `?`, `[...]`
/// (with `!` or `^`, ranges and `[:class:]`), `\` escapes; a leading `.`
/// only matches a literal `.`. Linear backtracking to the last `*`.
fn fnmatch(p: &[u8], s: &[u8]) -> bool {
    if s.first() == Some(&b'.') && !(p.first() == Some(&b'.') || p.starts_with(b"\\.")) {
        return false;
    }
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        let c = s[si];
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, si));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match bracket(&p[pi + 1..], Some(c)) {
                Some((true, used)) => Some(1 + used),
                Some((false, _)) => None,
                // No closing `]`: a literal `[`.
                None => (c == b'[').then_some(1),
            },
            Some(b'\\') if pi + 1 < p.len() => (p[pi + 1] == c).then_some(2),
            Some(&q) => (q == c).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                si += 1;
            }
            (None, Some((sp, ss))) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == b'*')
}

/// A bracket expression after its `[`: whether `c` matches, and the bytes
/// used up to and including `]`; `None` when there is no closing `]`.
fn bracket(p: &[u8], c: Option<u8>) -> Option<(bool, usize)> {
    let mut i = 0;
    let negate = matches!(p.first(), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut hit = false;
    let mut first = true;
    loop {
        let &b = p.get(i)?;
        if b == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        if b == b'[' && p.get(i + 1) == Some(&b':') {
            let rest = &p[i + 2..];
            let end = rest.windows(2).position(|w| w == b":]")?;
            let class = &rest[..end];
            if let Some(c) = c {
                hit |= match class {
                    b"alpha" => c.is_ascii_alphabetic(),
                    b"digit" => c.is_ascii_digit(),
                    b"alnum" => c.is_ascii_alphanumeric(),
                    b"upper" => c.is_ascii_uppercase(),
                    b"lower" => c.is_ascii_lowercase(),
                    b"space" => c.is_ascii_whitespace(),
                    b"punct" => c.is_ascii_punctuation(),
                    b"xdigit" => c.is_ascii_hexdigit(),
                    _ => false,
                };
            }
            i += 2 + end + 2;
            continue;
        }
        let lo = if b == b'\\' {
            i += 1;
            *p.get(i)?
        } else {
            b
        };
        i += 1;
        let hi = if p.get(i) == Some(&b'-') && p.get(i + 1).is_some_and(|&n| n != b']') {
            let mut h = p[i + 1];
            i += 2;
            if h == b'\\' {
                h = *p.get(i)?;
                i += 1;
            }
            h
        } else {
            lo
        };
        if let Some(c) = c {
            hit |= lo <= c && c <= hi;
        }
    }
    Some((c.is_some() && (hit != negate), i))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_normalize_as_systemd_does() {
        for (written, want) in [
            ("net.ipv4.ip_forward", "net/ipv4/ip_forward"),
            ("net/ipv4/ip_forward", "net/ipv4/ip_forward"),
            (
                "net.ipv4.conf.eth0/100.rp_filter",
                "net/ipv4/conf/eth0.100/rp_filter",
            ),
            (
                "net/ipv4/conf/eth0.100/rp_filter",
                "net/ipv4/conf/eth0.100/rp_filter",
            ),
            ("kernel..kptr_restrict", "kernel/kptr_restrict"),
            ("kernel.kptr_restrict.", "kernel/kptr_restrict"),
            ("/kernel/kptr_restrict", "kernel/kptr_restrict"),
            // A leading slash makes it the first separator: dots stay dots.
            ("/kernel.kptr_restrict", "kernel.kptr_restrict"),
            (".kernel.x", "kernel/x"),
            ("net/ipv4/./ip_forward", "net/ipv4/ip_forward"),
            ("net/ipv4/conf/../ip_forward", "net/ipv4/conf/../ip_forward"),
            ("", ""),
        ] {
            assert_eq!(normalize(written), want, "{written}");
        }
        assert_eq!(
            dotted("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn lines_end_as_read_line_ends_them() {
        let l =
            |b: &[u8]| -> Vec<Vec<u8>> { read_lines(b).into_iter().map(<[u8]>::to_vec).collect() };
        assert_eq!(l(b"a\nb"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(l(b"a\r\nb\r\n"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(l(b"a\rb\r"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(l(b"a\n\nb"), vec![b"a".to_vec(), vec![], b"b".to_vec()]);
        assert_eq!(l(b"a\n\rb"), vec![b"a".to_vec(), b"b".to_vec()]);
        assert_eq!(l(b"a=1\0junk\n"), vec![b"a=1".to_vec(), b"junk".to_vec()]);
        assert_eq!(l(b"a\0\nb"), vec![b"a".to_vec(), vec![], b"b".to_vec()]);
        assert!(l(b"").is_empty());
    }

    #[test]
    fn globs_match_as_glob3_does() {
        let m = |p: &str, k: &str| glob_matches(&normalize(p), k);
        assert!(m(
            "net.ipv4.conf.*.rp_filter",
            "net/ipv4/conf/eth0.100/rp_filter"
        ));
        assert!(!m("net.ipv4.conf.*.rp_filter", "net/ipv4/conf/rp_filter"));
        assert!(m("kernel.*_restrict", "kernel/kptr_restrict"));
        assert!(m(
            "net.ipv4.conf.eth?.rp_filter",
            "net/ipv4/conf/eth0/rp_filter"
        ));
        assert!(m(
            "net.ipv4.conf.[ad]*.rp_filter",
            "net/ipv4/conf/default/rp_filter"
        ));
        assert!(!m(
            "net.ipv4.conf.[!ad]*.rp_filter",
            "net/ipv4/conf/all/rp_filter"
        ));
        assert!(m(
            "net.ipv4.conf.{all,default}.rp_filte[r]",
            "net/ipv4/conf/all/rp_filter"
        ));
        assert!(!m(
            "net.ipv4.conf.{all,default}.rp_filte[r]",
            "net/ipv4/conf/eth0/rp_filter"
        ));
        assert!(m("kernel.[[:alpha:]]*", "kernel/x"));
        // `*` does not match a leading dot; an unclosed `[` is literal.
        assert!(!m("kernel.*", "kernel/.hidden"));
        assert!(m("kernel.a[b", "kernel/a[b"));
        assert!(!is_glob("kernel.{kptr,dmesg}_restrict"));
        // Many stars cost linear time; too many alternatives match nothing.
        let stars = format!("kernel.{}y", "*".repeat(64));
        assert!(!m(&stars, &format!("kernel/{}", "x".repeat(200))));
        assert!(!m("kernel.*x*y", "kernel/axbyc"));
        assert!(m("kernel.*x*y", "kernel/axby"));
        assert!(m("kernel.*x*y*", "kernel/axbyc"));
        let braces = format!("kernel.{}x*", "{a,b}".repeat(12));
        assert!(!m(&braces, "kernel/aaaaaaaaaaaax"));
    }

    fn config(files: &[(&str, &str)]) -> Config {
        let mut c = Config::default();
        for (name, text) in files {
            c.parse(name, None, text.as_bytes());
        }
        c
    }

    #[test]
    fn explicit_beats_glob_and_minus_excludes() {
        let c = config(&[(
            "/usr/lib/sysctl.d/50-default.conf",
            "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n",
        )]);
        assert!(matches!(
            c.boot_value("net/ipv4/conf/default/rp_filter"),
            Boot::Explicit(a) if a.at.ends_with(":1")
        ));
        assert!(matches!(
            c.boot_value("net/ipv4/conf/eth0/rp_filter"),
            Boot::Glob(a) if a.written == "net.ipv4.conf.*.rp_filter"
        ));
        assert!(matches!(
            c.boot_value("net/ipv4/conf/all/rp_filter"),
            Boot::Excluded(a, Some(_)) if a.written == "-net.ipv4.conf.all.rp_filter"
        ));
        assert_eq!(c.boot_value("kernel/x"), Boot::Unset);
    }

    #[test]
    fn same_value_keeps_its_place() {
        // The first glob is re-assigned the same value after the second:
        // it stays first, so the second still wins where both match.
        let c = config(&[(
            "f",
            "net.ipv4.conf.*.rp_filter = 1\nnet.ipv4.conf.all.* = 2\nnet.ipv4.conf.*.rp_filter = 1\n",
        )]);
        assert!(
            matches!(c.boot_value("net/ipv4/conf/all/rp_filter"), Boot::Glob(a) if a.value.as_deref() == Some("2"))
        );
        // A different value moves it to the end.
        let c = config(&[(
            "f",
            "net.ipv4.conf.*.rp_filter = 1\nnet.ipv4.conf.all.* = 2\nnet.ipv4.conf.*.rp_filter = 3\n",
        )]);
        assert!(
            matches!(c.boot_value("net/ipv4/conf/all/rp_filter"), Boot::Glob(a) if a.value.as_deref() == Some("3"))
        );
    }

    #[test]
    fn line_syntax() {
        let c = config(&[(
            "f",
            "  # c\n;c\n\tkernel.a\t=\t1 \nkernel.b =\n- kernel.c = \"2\"\nkernel.d 4\nkernel.e = a=b\n",
        )]);
        let v = |k: &str| c.assignment(k).and_then(|a| a.value.clone());
        assert_eq!(v("kernel/a").as_deref(), Some("1"));
        assert_eq!(v("kernel/b").as_deref(), Some(""));
        assert_eq!(v("kernel/c").as_deref(), Some("\"2\""));
        assert_eq!(c.assignment("kernel/d"), None);
        assert_eq!(v("kernel/e").as_deref(), Some("a=b"));
        assert_eq!(c.assignment("kernel/c").map(|a| a.at.as_str()), Some("f:5"));
    }
}
