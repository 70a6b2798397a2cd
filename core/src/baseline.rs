//! Baselines: parsing and strict validation. Every refusal names the file,
//! the line and column, and the field, so a security engineer can fix a
//! baseline from the message alone.

use crate::check::CheckSpec;
use crate::diagnostic::{Diagnostic, LineIndex, Source, display_all};
use crate::issp::{Criterion, DOMAIN_COUNT};
use crate::remediation::RemediationSpec;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::ops::Range;
use std::path::Path;
use toml::Spanned;

/// The only baseline schema this build understands.
pub const SCHEMA: u32 = 1;

/// Largest baseline file accepted; a baseline is policy text, not data.
pub const MAX_BASELINE_BYTES: u64 = 8 * 1024 * 1024;

/// Severity of a rule or FIM watch; ordered from `info` to `critical`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// informational
    Info,
    /// low
    Low,
    /// medium
    Medium,
    /// high
    High,
    /// critical
    Critical,
}

impl Severity {
    /// The name as written in TOML and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A file attribute a FIM watch records and compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FimAttribute {
    /// SHA-256 of the content
    Sha256,
    /// SHA-512 of the content
    Sha512,
    /// permission bits and file type bits
    Mode,
    /// owner
    Uid,
    /// group
    Gid,
    /// size in bytes
    Size,
    /// modification time
    Mtime,
    /// status change time
    Ctime,
    /// inode number
    Inode,
    /// hard link count
    Nlink,
    /// file type
    Type,
    /// target of a symlink
    LinkTarget,
    /// extended attributes
    Xattrs,
}

impl FimAttribute {
    /// Attributes recorded when a watch names none: everything, SHA-256 for content.
    pub const DEFAULT: &'static [FimAttribute] = &[
        FimAttribute::Sha256,
        FimAttribute::Mode,
        FimAttribute::Uid,
        FimAttribute::Gid,
        FimAttribute::Size,
        FimAttribute::Mtime,
        FimAttribute::Ctime,
        FimAttribute::Inode,
        FimAttribute::Nlink,
        FimAttribute::Type,
        FimAttribute::LinkTarget,
        FimAttribute::Xattrs,
    ];

    /// The name as written in TOML and JSON.
    pub fn name(self) -> &'static str {
        match self {
            FimAttribute::Sha256 => "sha256",
            FimAttribute::Sha512 => "sha512",
            FimAttribute::Mode => "mode",
            FimAttribute::Uid => "uid",
            FimAttribute::Gid => "gid",
            FimAttribute::Size => "size",
            FimAttribute::Mtime => "mtime",
            FimAttribute::Ctime => "ctime",
            FimAttribute::Inode => "inode",
            FimAttribute::Nlink => "nlink",
            FimAttribute::Type => "type",
            FimAttribute::LinkTarget => "link_target",
            FimAttribute::Xattrs => "xattrs",
        }
    }
}

/// A validated baseline.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Baseline {
    /// Format version (always [`SCHEMA`]).
    pub schema: u32,
    /// Baseline id, `[a-z0-9._-]+`.
    pub id: String,
    /// Version; agents refuse a lower one.
    pub version: u64,
    /// Human title.
    pub title: String,
    /// Check rules, in file order.
    pub rules: Vec<Rule>,
    /// File integrity watches, in file order.
    pub fim: Vec<FimRule>,
    /// Where it was loaded from (for messages).
    pub origin: String,
}

/// A validated rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Rule {
    /// Unique id, `[a-z0-9._-]+`.
    pub id: String,
    /// One-line statement of what must hold.
    pub title: String,
    /// Severity.
    pub severity: Severity,
    /// ISSP domains, each in 1..=28.
    pub domains: Vec<u8>,
    /// ISSP criteria.
    pub criteria: Vec<Criterion>,
    /// External references (CIS items...).
    pub references: Vec<String>,
    /// Why the rule exists.
    pub rationale: String,
    /// What to check.
    pub check: CheckSpec,
    /// How to fix it, if it may be fixed.
    pub remediation: Option<RemediationSpec>,
    /// The rule applies only when one of these packages is installed
    /// (empty: always); otherwise it is `skipped`, saying so.
    pub if_installed: Vec<String>,
    /// The rule does not apply when one of these packages is installed.
    pub unless_installed: Vec<String>,
    /// Line of the rule's `id` in its file.
    pub line: usize,
}

/// A validated file integrity watch.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FimRule {
    /// Absolute path inside the root.
    pub path: String,
    /// Globs matched against in-root paths; matching directories are not entered.
    pub exclude: Vec<String>,
    /// Attributes recorded and compared.
    pub attributes: Vec<FimAttribute>,
    /// Watched in real time by the daemon.
    pub realtime: bool,
    /// Severity of a change.
    pub severity: Severity,
    /// Severity of a change whose new content the package database
    /// verifies (docs/fim.md, "Package verification"); `severity` keeps it.
    pub verified_severity: Severity,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// Descend into other filesystems below `path`.
    pub cross_devices: bool,
    /// Line of the watch's `path` in its file.
    pub line: usize,
}

/// Why a baseline was refused.
#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    /// The file could not be read.
    // The cause is in the message and deliberately not a `source`, so a
    // context chain does not print it twice.
    #[error("{path}: cannot read baseline: {cause}")]
    Read {
        /// file
        path: String,
        /// cause
        cause: std::io::Error,
    },
    /// The file failed the trust rule (a symlink, another owner, writable
    /// by group or others).
    #[error(transparent)]
    Untrusted(plumb_os::TrustError),
    /// The file is larger than [`MAX_BASELINE_BYTES`].
    #[error("{path}: baseline is {size} bytes, larger than the {MAX_BASELINE_BYTES}-byte limit")]
    TooLarge {
        /// file
        path: String,
        /// its size
        size: u64,
    },
    /// The baseline is invalid; every problem found is listed.
    #[error("{}", display_all(.0))]
    Invalid(Vec<Diagnostic>),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBaseline {
    schema: Spanned<u32>,
    id: Spanned<String>,
    version: Spanned<u64>,
    #[serde(default)]
    title: String,
    #[serde(default)]
    rule: Vec<RawRule>,
    #[serde(default)]
    fim: Vec<RawFim>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    id: Spanned<String>,
    title: Spanned<String>,
    severity: Severity,
    domains: Spanned<Vec<u8>>,
    criteria: Spanned<Vec<Criterion>>,
    #[serde(default)]
    references: Vec<String>,
    #[serde(default)]
    rationale: String,
    check: Spanned<CheckSpec>,
    remediation: Option<Spanned<RemediationSpec>>,
    #[serde(default = "empty_spanned")]
    if_installed: Spanned<Vec<String>>,
    #[serde(default = "empty_spanned")]
    unless_installed: Spanned<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFim {
    path: Spanned<String>,
    #[serde(default = "empty_spanned")]
    exclude: Spanned<Vec<String>>,
    attributes: Option<Spanned<Vec<FimAttribute>>>,
    #[serde(default)]
    realtime: bool,
    #[serde(default = "default_fim_severity")]
    severity: Severity,
    #[serde(default = "default_verified_severity")]
    verified_severity: Severity,
    #[serde(default = "empty_spanned")]
    domains: Spanned<Vec<u8>>,
    #[serde(default)]
    cross_devices: bool,
}

fn empty_spanned<T>() -> Spanned<Vec<T>> {
    Spanned::new(0..0, Vec::new())
}

fn default_fim_severity() -> Severity {
    Severity::Medium
}

fn default_verified_severity() -> Severity {
    Severity::Info
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

impl Baseline {
    /// Reads and validates a baseline file.
    pub fn load(path: &Path) -> Result<Baseline, BaselineError> {
        let shown = path.display().to_string();
        use plumb_os::{FileKind, Problem, TrustError};
        let bytes =
            plumb_os::read_trusted(path, FileKind::Baseline, MAX_BASELINE_BYTES).map_err(|e| {
                match e.problem {
                    Problem::Open(cause) | Problem::Io { source: cause, .. } => {
                        BaselineError::Read {
                            path: shown.clone(),
                            cause,
                        }
                    }
                    Problem::TooLarge { size, .. } => BaselineError::TooLarge {
                        path: shown.clone(),
                        size,
                    },
                    problem => BaselineError::Untrusted(TrustError {
                        path: e.path,
                        problem,
                    }),
                }
            })?;
        Baseline::from_bytes(&bytes, &shown)
    }

    /// Validates a baseline from its bytes; `origin` names it in messages.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Baseline, BaselineError> {
        match std::str::from_utf8(bytes) {
            Ok(text) => Baseline::from_str(text, origin),
            Err(e) => {
                // The bytes before the first invalid one are valid UTF-8.
                let valid = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
                let at = Source::new(&valid, origin).at(
                    valid.len()..valid.len(),
                    "",
                    "baseline is not valid UTF-8",
                );
                Err(BaselineError::Invalid(vec![at]))
            }
        }
    }

    /// Validates a baseline from TOML text; `origin` names it in messages.
    /// Malformed TOML, an unknown field or a value of the wrong type stops
    /// at the first; every other problem is listed.
    pub fn from_str(text: &str, origin: &str) -> Result<Baseline, BaselineError> {
        let src = Source::new(text, origin);
        let raw: RawBaseline =
            toml::from_str(text).map_err(|e| BaselineError::Invalid(vec![src.toml_error(&e)]))?;
        let RawBaseline {
            schema,
            id,
            version,
            title,
            rule,
            fim,
        } = raw;
        let mut diags = Vec::new();
        check_header(&src, &schema, &id, &mut diags);
        let rules = check_rules(&src, rule, &mut diags);
        let fim = check_fims(&src, fim, &mut diags);
        if !diags.is_empty() {
            return Err(BaselineError::Invalid(diags));
        }
        Ok(Baseline {
            schema: schema.into_inner(),
            id: id.into_inner(),
            version: version.into_inner(),
            title,
            rules,
            fim,
            origin: origin.to_string(),
        })
    }

    /// Refuses rule ids that repeat across several baselines used together.
    pub fn check_unique(baselines: &[Baseline]) -> Result<(), BaselineError> {
        let mut diags = Vec::new();
        for (i, b) in baselines.iter().enumerate() {
            for r in &b.rules {
                if let Some((ob, or)) = baselines[..i]
                    .iter()
                    .find_map(|o| o.rules.iter().find(|x| x.id == r.id).map(|x| (o, x)))
                {
                    diags.push(Diagnostic {
                        origin: b.origin.clone(),
                        line: r.line,
                        column: 1,
                        field: format!("rule ({}).id", r.id),
                        message: format!("rule id already defined in {}:{}", ob.origin, or.line),
                    });
                }
            }
        }
        if diags.is_empty() {
            Ok(())
        } else {
            Err(BaselineError::Invalid(diags))
        }
    }
}

fn check_header(
    src: &Source<'_>,
    schema: &Spanned<u32>,
    id: &Spanned<String>,
    diags: &mut Vec<Diagnostic>,
) {
    if *schema.get_ref() != SCHEMA {
        diags.push(src.at(
            schema.span(),
            "schema",
            format!(
                "unsupported schema {}, this build reads schema {SCHEMA}",
                schema.get_ref()
            ),
        ));
    }
    if !valid_id(id.get_ref()) {
        diags.push(src.at(
            id.span(),
            "id",
            format!("\"{}\" is not of the form [a-z0-9._-]+", id.get_ref()),
        ));
    }
}

/// Every rule, each validated, and their ids unique within the file.
fn check_rules(src: &Source<'_>, raw: Vec<RawRule>, diags: &mut Vec<Diagnostic>) -> Vec<Rule> {
    let mut rules: Vec<Rule> = Vec::with_capacity(raw.len());
    let lines = src.line_index();
    for (i, r) in raw.into_iter().enumerate() {
        let id = r.id.get_ref().clone();
        if !valid_id(&id) {
            diags.push(src.at(
                r.id.span(),
                format!("rule[{i}].id"),
                format!("\"{id}\" is not of the form [a-z0-9._-]+"),
            ));
        }
        if let Some(first) = rules.iter().find(|x| x.id == id) {
            diags.push(src.at(
                r.id.span(),
                format!("rule[{i}] ({id}).id"),
                format!("duplicate rule id, first defined at line {}", first.line),
            ));
        }
        rules.push(check_rule(src, &lines, i, r, diags));
    }
    rules
}

/// One rule's fields, its check and its remediation.
fn check_rule(
    src: &Source<'_>,
    lines: &LineIndex,
    i: usize,
    r: RawRule,
    diags: &mut Vec<Diagnostic>,
) -> Rule {
    let at = |f: &str| format!("rule[{i}] ({}).{f}", r.id.get_ref());
    if r.title.get_ref().trim().is_empty() {
        diags.push(src.at(r.title.span(), at("title"), "title is empty"));
    }
    check_domains(src, &r.domains, &at("domains"), true, diags);
    if r.criteria.get_ref().is_empty() {
        diags.push(src.at(
            r.criteria.span(),
            at("criteria"),
            "at least one criterion (A, I, C, T, P) is required",
        ));
    }
    for problem in r.check.get_ref().validate() {
        diags.push(src.at(r.check.span(), at("check"), problem));
    }
    if let Some(rem) = &r.remediation {
        let kind = r.check.get_ref().kind();
        if !rem.get_ref().fixes().contains(&kind) {
            diags.push(src.at(
                rem.span(),
                at("remediation"),
                format!(
                    "{} cannot fix a {kind} check (it fixes: {})",
                    rem.get_ref().kind(),
                    rem.get_ref().fixes().join(", ")
                ),
            ));
        }
        for problem in rem.get_ref().validate() {
            diags.push(src.at(rem.span(), at("remediation"), problem));
        }
    }
    for (field, list) in [
        ("if_installed", &r.if_installed),
        ("unless_installed", &r.unless_installed),
    ] {
        for name in list.get_ref() {
            if name.is_empty() || name.contains(char::is_whitespace) {
                diags.push(src.at(
                    list.span(),
                    at(field),
                    format!("\"{name}\" is not a package name"),
                ));
            }
        }
    }
    Rule {
        line: lines.line(r.id.span().start),
        id: r.id.into_inner(),
        title: r.title.into_inner(),
        severity: r.severity,
        domains: r.domains.into_inner(),
        criteria: r.criteria.into_inner(),
        references: r.references,
        rationale: r.rationale,
        check: r.check.into_inner(),
        remediation: r.remediation.map(Spanned::into_inner),
        if_installed: r.if_installed.into_inner(),
        unless_installed: r.unless_installed.into_inner(),
    }
}

/// Every watch, each validated, then how they overlap.
fn check_fims(src: &Source<'_>, raw: Vec<RawFim>, diags: &mut Vec<Diagnostic>) -> Vec<FimRule> {
    let spans: Vec<_> = raw.iter().map(|f| f.path.span()).collect();
    let fim: Vec<FimRule> = raw
        .into_iter()
        .enumerate()
        .map(|(i, f)| check_fim(src, i, f, diags))
        .collect();
    lint_fim_overlaps(src, &fim, &spans, diags);
    fim
}

/// One watch: its path, excludes, domains and attributes.
fn check_fim(src: &Source<'_>, i: usize, f: RawFim, diags: &mut Vec<Diagnostic>) -> FimRule {
    let at = |x: &str| format!("fim[{i}].{x}");
    let path = f.path.get_ref();
    if !path.starts_with('/') {
        diags.push(src.at(
            f.path.span(),
            at("path"),
            format!("\"{path}\" is not an absolute path"),
        ));
    } else if path.split('/').any(|c| c == "." || c == "..") {
        diags.push(src.at(
            f.path.span(),
            at("path"),
            format!("\"{path}\" has a . or .. component; write the path plainly"),
        ));
    }
    for g in f.exclude.get_ref() {
        if let Err(e) = crate::glob(g) {
            diags.push(src.at(
                f.exclude.span(),
                at("exclude"),
                format!("invalid glob \"{g}\": {e}"),
            ));
        }
    }
    check_domains(src, &f.domains, &at("domains"), false, diags);
    if f.verified_severity > f.severity {
        diags.push(src.at(
            f.path.span(),
            at("verified_severity"),
            format!(
                "{} is above the watch's severity {}: a change the package database verifies would look worse than one it does not",
                f.verified_severity, f.severity
            ),
        ));
    }
    let attributes = match &f.attributes {
        Some(a) => {
            if a.get_ref().contains(&FimAttribute::Sha256)
                && a.get_ref().contains(&FimAttribute::Sha512)
            {
                diags.push(src.at(
                    a.span(),
                    at("attributes"),
                    "name one content hash: sha256 or sha512, not both",
                ));
            }
            a.get_ref().clone()
        }
        None => FimAttribute::DEFAULT.to_vec(),
    };
    FimRule {
        path: normalize_fim_path(path),
        line: src.position(f.path.span().start).0,
        exclude: f.exclude.into_inner(),
        attributes,
        realtime: f.realtime,
        severity: f.severity,
        verified_severity: f.verified_severity,
        domains: f.domains.into_inner(),
        cross_devices: f.cross_devices,
    }
}

pub fn normalize_fim_path(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
    if parts.is_empty() {
        "/".to_string()
    } else {
        format!("/{}", parts.join("/"))
    }
}

/// Whether `inner` lies strictly below `outer` (both normalized).
pub fn fim_path_below(outer: &str, inner: &str) -> bool {
    inner != outer
        && (outer == "/"
            || inner
                .strip_prefix(outer)
                .is_some_and(|rest| rest.starts_with('/')))
}

/// Overlapping watches: the most specific path governs its tree (its
/// attributes, severity and excludes). Two watches of one path are
/// ambiguous, and an outer watch that excludes an inner watch's path
/// contradicts it: both are errors.
fn lint_fim_overlaps(
    src: &Source<'_>,
    fim: &[FimRule],
    spans: &[Range<usize>],
    diags: &mut Vec<Diagnostic>,
) {
    for (j, inner) in fim.iter().enumerate() {
        let span = spans.get(j).cloned().unwrap_or(0..0);
        for (i, outer) in fim.iter().enumerate().take(j) {
            if outer.path == inner.path {
                diags.push(src.at(
                    span.clone(),
                    format!("fim[{j}].path"),
                    format!(
                        "\"{}\" is already watched by fim[{i}] (line {}); merge the two watches",
                        inner.path, outer.line
                    ),
                ));
            }
        }
        for (i, outer) in fim.iter().enumerate() {
            if !fim_path_below(&outer.path, &inner.path) {
                continue;
            }
            // Every path from the inner root up to (not including) the outer root.
            let mut p = inner.path.as_str();
            'up: while fim_path_below(&outer.path, p) {
                for g in &outer.exclude {
                    if crate::glob(g).is_ok_and(|m| m.is_match(p)) {
                        diags.push(src.at(
                            span.clone(),
                            format!("fim[{j}].path"),
                            format!(
                                "\"{}\" lies inside fim[{i}] \"{}\" (line {}), whose exclude \"{g}\" \
                                 matches \"{p}\"; the more specific watch governs its own tree, \
                                 so the exclude contradicts it: drop one of them",
                                inner.path, outer.path, outer.line
                            ),
                        ));
                        break 'up;
                    }
                }
                p = match p.rfind('/') {
                    Some(0) => "/",
                    Some(k) => &p[..k],
                    None => break,
                };
            }
        }
    }
}

fn check_domains(
    src: &Source<'_>,
    d: &Spanned<Vec<u8>>,
    field: &str,
    required: bool,
    diags: &mut Vec<Diagnostic>,
) {
    if required && d.get_ref().is_empty() {
        diags.push(src.at(
            d.span(),
            field,
            "at least one ISSP domain (1..=28) is required",
        ));
    }
    for n in d.get_ref() {
        if !(1..=DOMAIN_COUNT).contains(n) {
            diags.push(src.at(d.span(), field, format!("domain {n} is outside 1..=28")));
        }
    }
}

#[cfg(test)]
mod fim_overlap_tests {
    use super::*;

    fn lint(fims: &str) -> Result<Baseline, String> {
        Baseline::from_str(
            &format!("schema = 1\nid = \"t\"\nversion = 1\n{fims}"),
            "t.toml",
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn nested_watches_are_fine_and_paths_normalized() {
        let b = lint("[[fim]]\npath = \"/etc/\"\n[[fim]]\npath = \"/etc//ssh\"\n").unwrap();
        assert_eq!(b.fim[0].path, "/etc");
        assert_eq!(b.fim[1].path, "/etc/ssh");
    }

    #[test]
    fn same_path_twice_is_an_error() {
        let e = lint("[[fim]]\npath = \"/etc\"\n[[fim]]\npath = \"/etc/\"\n").unwrap_err();
        assert!(e.contains("t.toml:7:8: fim[1].path"), "{e}");
        assert!(e.contains("already watched by fim[0] (line 5)"), "{e}");
    }

    #[test]
    fn outer_exclude_of_inner_watch_is_an_error() {
        let e = lint(
            "[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/ssh\"]\n[[fim]]\npath = \"/etc/ssh/keys\"\n",
        )
        .unwrap_err();
        assert!(e.contains("fim[1].path"), "{e}");
        assert!(
            e.contains("exclude \"/etc/ssh\" matches \"/etc/ssh\""),
            "{e}"
        );
        // An exclude that does not cover the inner root is fine.
        lint("[[fim]]\npath = \"/etc\"\nexclude = [\"**/*.swp\"]\n[[fim]]\npath = \"/etc/ssh\"\n")
            .unwrap();
    }

    #[test]
    fn verified_severity_defaults_to_info_and_may_not_exceed_severity() {
        let b = lint("[[fim]]\npath = \"/usr\"\nseverity = \"high\"\n").unwrap();
        assert_eq!(b.fim[0].verified_severity, Severity::Info);
        let b =
            lint("[[fim]]\npath = \"/usr\"\nseverity = \"high\"\nverified_severity = \"high\"\n")
                .unwrap();
        assert_eq!(b.fim[0].verified_severity, Severity::High);
        let e =
            lint("[[fim]]\npath = \"/usr\"\nseverity = \"low\"\nverified_severity = \"high\"\n")
                .unwrap_err();
        assert!(e.contains("t.toml:5:8: fim[0].verified_severity"), "{e}");
        assert!(e.contains("above the watch's severity low"), "{e}");
    }

    #[test]
    fn dot_components_are_refused() {
        let e = lint("[[fim]]\npath = \"/etc/../root\"\n").unwrap_err();
        assert!(e.contains(". or .. component"), "{e}");
    }
}
