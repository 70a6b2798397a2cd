//! The `plumb fim check --format json` document, shared by the agent (which
//! writes it) and the collector (which reads it inside `fim_change` and
//! `fim_tamper` events).

use crate::baseline::Severity;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Version of the FIM report document.
pub const FIM_REPORT_SCHEMA: u32 = 1;

/// A path as reported: a plain JSON string when the path is valid UTF-8,
/// otherwise an object `{"hex": "...", "lossy": "..."}` whose `hex` holds
/// every byte of the path (lowercase hex) and `lossy` a display form with
/// U+FFFD for the bytes that are not UTF-8. The object form can never be
/// mistaken for a string path, so every path is reported losslessly and
/// distinctly.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReportPath {
    /// A valid UTF-8 path.
    Text(String),
    /// A path that is not valid UTF-8.
    Bytes {
        /// Every byte, lowercase hex.
        hex: String,
        /// Display form only; not unique.
        lossy: String,
    },
}

impl ReportPath {
    /// The top-level directory the path lies in (`/usr` for
    /// `/usr/bin/ls`, `/` for the root itself), from its display form:
    /// what [`ChangeSummary`] counts unexplained changes under. The
    /// collector stores it with each change (its SQL migrations derive it
    /// the same way: leading slashes trimmed, up to the next slash).
    pub fn top_dir(&self) -> String {
        let shown = match self {
            ReportPath::Text(s) => s.as_str(),
            ReportPath::Bytes { lossy, .. } => lossy.as_str(),
        };
        shown
            .trim_start_matches('/')
            .split('/')
            .next()
            .filter(|t| !t.is_empty())
            .map_or_else(|| "/".to_string(), |t| format!("/{t}"))
    }

    /// The report form of raw path bytes.
    pub fn from_bytes(b: &[u8]) -> ReportPath {
        match std::str::from_utf8(b) {
            Ok(s) => ReportPath::Text(s.to_string()),
            Err(_) => ReportPath::Bytes {
                hex: hex(b),
                lossy: String::from_utf8_lossy(b).into_owned(),
            },
        }
    }

    /// The raw bytes back (None when `hex` is malformed).
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            ReportPath::Text(s) => Some(s.as_bytes().to_vec()),
            ReportPath::Bytes { hex, .. } => unhex(hex),
        }
    }

    /// A one-line display form: the string itself, or `hex:<bytes>` with the
    /// lossy form in brackets. Control characters are escaped
    /// ([`crate::printable`]).
    pub fn display(&self) -> String {
        match self {
            ReportPath::Text(s) => crate::printable(s).into_owned(),
            ReportPath::Bytes { hex, lossy } => {
                format!("{} [hex:{hex}]", crate::printable(lossy))
            }
        }
    }
}

/// Lowercase hex of bytes.
pub fn hex(b: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(b.len() * 2);
    for &x in b {
        s.push(char::from(DIGITS[usize::from(x >> 4)]));
        s.push(char::from(DIGITS[usize::from(x & 15)]));
    }
    s
}

/// Bytes of a hex string (either case); None when malformed.
pub fn unhex(s: &str) -> Option<Vec<u8>> {
    let s = s.as_bytes();
    if s.len() % 2 != 0 {
        return None;
    }
    let val = |c: u8| char::from(c).to_digit(16);
    s.chunks(2)
        .map(|p| u8::try_from(val(p[0])? * 16 + val(p[1])?).ok())
        .collect()
}

/// Kind of change of one path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeKind {
    /// Present now, not in the database.
    Added,
    /// In the database, gone now.
    Removed,
    /// Present in both, with differing attributes.
    Modified,
}

impl ChangeKind {
    /// The name used in JSON and text.
    pub fn name(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Removed => "removed",
            ChangeKind::Modified => "modified",
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FimChange {
    /// In-root path.
    pub path: ReportPath,
    /// added / removed / modified.
    pub change: ChangeKind,
    /// The `[[fim]]` rule (its path) that governs this path.
    pub rule: String,
    /// That rule's severity.
    pub severity: Severity,
    /// Every attribute that differs (modified); empty for added/removed.
    pub fields: Vec<String>,
    /// Old values: the differing fields (modified) or every recorded attribute (removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<BTreeMap<String, serde_json::Value>>,
    /// New values: the differing fields (modified) or every recorded attribute (added).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<BTreeMap<String, serde_json::Value>>,
    /// The installed package that owns the path, and whether the content
    /// matches what the package database records; absent when no package
    /// owns it, or when the content did not change (docs/fim.md).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<PackageVerdict>,
}

/// What the package manager's database says about a changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackageVerdict {
    /// Package name (without architecture).
    pub name: String,
    /// Installed version.
    pub version: String,
    /// Architecture of the installed package, when the database names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arch: Option<String>,
    /// The content matches the digest the package database records for
    /// this path (and the package is installed and its database settled).
    pub verified: bool,
    /// The path is one of the package's configuration files: local edits
    /// are normal, so a mismatch does not raise the severity.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub conffile: bool,
    /// The MD5 the package database records (lowercase hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_md5: Option<String>,
    /// The MD5 of the content found (lowercase hex), when it was read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub md5: Option<String>,
    /// The verdict in words: which digest was expected, from which package
    /// and version, and why it did or did not match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub evidence: String,
}

/// Counts of changes by package verdict, for the one-line summaries of
/// `plumb fim check` and the collector ("1,204 changes, all
/// package-verified", "3 unexplained changes under /usr").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSummary {
    /// Changes counted.
    pub changes: u64,
    /// Content verified by the owning package's database.
    pub verified: u64,
    /// Owned by a package whose database records another content (or
    /// the file missing): replaced binaries, older copies, local edits of
    /// configuration files.
    pub unverified: u64,
    /// Changes not verified (unverified or owned by no package), by the
    /// top-level directory they lie in (`/usr`, `/etc`).
    pub unexplained: BTreeMap<String, u64>,
}

impl ChangeSummary {
    /// Counts one change of `path` with its verdict.
    pub fn add(&mut self, path: &ReportPath, package: Option<&PackageVerdict>) {
        self.changes += 1;
        match package {
            Some(p) if p.verified => {
                self.verified += 1;
                return;
            }
            Some(_) => self.unverified += 1,
            None => {}
        }
        *self.unexplained.entry(path.top_dir()).or_default() += 1;
    }

    /// Changes not verified by a package database.
    pub fn unexplained_total(&self) -> u64 {
        self.changes - self.verified
    }

    /// One line: `1,204 changes, all package-verified`, `3 unexplained
    /// changes under /usr`, `1,207 changes: 1,204 package-verified, 3
    /// unexplained under /usr (1 not matching its package)`.
    pub fn describe(&self) -> String {
        let n = self.unexplained_total();
        let s = |k: u64| if k == 1 { "" } else { "s" };
        if self.changes == 0 {
            return "no changes".into();
        }
        if n == 0 {
            return if self.changes == 1 {
                "1 change, package-verified".into()
            } else {
                format!("{} changes, all package-verified", thousands(self.changes))
            };
        }
        let mut under: Vec<(&String, &u64)> = self.unexplained.iter().collect();
        // Most first, then by name.
        under.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        let mismatch = (self.unverified > 0).then(|| {
            format!(
                "{} not matching {} package",
                thousands(self.unverified),
                if self.unverified == 1 { "its" } else { "their" }
            )
        });
        let (place, notes) = match under.as_slice() {
            [(dir, _)] => (format!(" under {dir}"), mismatch.into_iter().collect()),
            many => {
                let parts: Vec<String> = many
                    .iter()
                    .take(4)
                    .map(|(d, k)| format!("{} under {d}", thousands(**k)))
                    .collect();
                let more = if many.len() > 4 { ", …" } else { "" };
                let mut notes = vec![format!("{}{more}", parts.join(", "))];
                notes.extend(mismatch);
                (String::new(), notes)
            }
        };
        let notes = if notes.is_empty() {
            String::new()
        } else {
            format!(" ({})", notes.join("; "))
        };
        if self.verified == 0 {
            format!("{} unexplained change{}{place}{notes}", thousands(n), s(n))
        } else {
            format!(
                "{} changes: {} package-verified, {} unexplained{place}{notes}",
                thousands(self.changes),
                thousands(self.verified),
                thousands(n)
            )
        }
    }
}

/// `1204` as `1,204`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Evidence that the database was altered without the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FimTamper {
    /// The row's path when one row is at fault; absent for whole-database
    /// findings (row count or digest mismatch, broken seal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<ReportPath>,
    /// What does not verify.
    pub reason: String,
}

/// A path that could not be (fully) read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FimFileError {
    /// In-root path.
    pub path: ReportPath,
    /// Why.
    pub error: String,
}

/// `plumb fim check --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FimReport {
    /// Always [`FIM_REPORT_SCHEMA`].
    pub schema: u32,
    /// The root directory scanned.
    pub root: String,
    /// Entries scanned (every recorded path).
    pub scanned: u64,
    /// Wall time of the command.
    pub duration_ms: u64,
    /// `full` (every regular file re-hashed) or `metadata`.
    pub verify: String,
    /// Changes, in path order.
    pub changes: Vec<FimChange>,
    /// Database tampering; non-empty means the comparison cannot be trusted.
    pub tamper: Vec<FimTamper>,
    /// Paths that could not be read or listed.
    pub errors: Vec<FimFileError>,
    /// Regular files that kept changing while hashed (3 attempts); no hash recorded.
    pub unstable: Vec<ReportPath>,
    /// Digest of the database after this command (see docs/fim.md).
    pub db_digest: String,
    /// Rows in the database after this command.
    pub db_rows: u64,
    /// Whether `--update` wrote the new state.
    pub updated: bool,
    /// Changes counted by package verdict, when the root has a package
    /// database (absent otherwise, and in reports of earlier builds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<ChangeSummary>,
    /// The package database could not be read: why (no verdicts then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package_error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utf8_paths_are_strings_and_others_objects() {
        let p = ReportPath::from_bytes(b"/etc/passwd");
        assert_eq!(
            serde_json::to_string(&p).unwrap_or_default(),
            "\"/etc/passwd\""
        );
        let raw = b"/tmp/a\xff\nb";
        let p = ReportPath::from_bytes(raw);
        let j = serde_json::to_value(&p).unwrap_or_default();
        assert_eq!(j["hex"], "2f746d702f61ff0a62");
        assert_eq!(p.to_bytes().as_deref(), Some(&raw[..]));
        let back: ReportPath = serde_json::from_value(j).unwrap_or(ReportPath::Text(String::new()));
        assert_eq!(back, p);
    }

    fn verdict(verified: bool) -> PackageVerdict {
        PackageVerdict {
            name: "coreutils".into(),
            version: "9.1-1".into(),
            arch: None,
            verified,
            conffile: false,
            expected_md5: None,
            md5: None,
            evidence: String::new(),
        }
    }

    #[test]
    fn summaries_say_what_the_package_database_explains() {
        let p = |s: &str| ReportPath::Text(s.into());
        let mut all = ChangeSummary::default();
        for i in 0..1204 {
            all.add(&p(&format!("/usr/bin/f{i}")), Some(&verdict(true)));
        }
        assert_eq!(all.describe(), "1,204 changes, all package-verified");
        let mut some = ChangeSummary::default();
        some.add(&p("/usr/bin/ls"), Some(&verdict(false)));
        some.add(&p("/usr/lib/evil.so"), None);
        some.add(&p("/usr/sbin/x"), None);
        assert_eq!(
            some.describe(),
            "3 unexplained changes under /usr (1 not matching its package)"
        );
        some.add(&p("/etc/motd"), None);
        some.add(&p("/usr/bin/cat"), Some(&verdict(true)));
        assert_eq!(
            some.describe(),
            "5 changes: 1 package-verified, 4 unexplained (3 under /usr, 1 under /etc; 1 not matching its package)"
        );
        assert_eq!(ChangeSummary::default().describe(), "no changes");
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_234_567), "1,234,567");
        // A change without a verdict stays readable in old reports.
        let c: FimChange = serde_json::from_str(
            r#"{"path": "/etc/a", "change": "added", "rule": "/etc", "severity": "high", "fields": []}"#,
        )
        .unwrap();
        assert!(c.package.is_none());
        let j = serde_json::to_value(&c).unwrap();
        assert!(j.get("package").is_none(), "{j}");
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
