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

    #[test]
    fn hex_round_trip() {
        assert_eq!(unhex(&hex(&[0, 1, 254, 255])), Some(vec![0, 1, 254, 255]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
    }
}
