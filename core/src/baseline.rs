//! Baselines: parsing and strict validation. Every refusal names the file,
//! the line and column, and the field, so a security engineer can fix a
//! baseline from the message alone.

use crate::check::CheckSpec;
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
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// Descend into other filesystems below `path`.
    pub cross_devices: bool,
    /// Line of the watch's `path` in its file.
    pub line: usize,
}

/// One problem found in a baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// File (or origin) name.
    pub origin: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// The field at fault, dotted (`rule[3].domains`), or empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: ", self.origin, self.line, self.column)?;
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
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

fn display_all(d: &[Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
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

/// Maps byte offsets to 1-based line and column.
struct Lines<'a> {
    text: &'a str,
    origin: &'a str,
}

impl Lines<'_> {
    fn pos(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let before = &self.text.as_bytes()[..offset];
        let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
        let col = offset
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1)
            + 1;
        (line, col)
    }

    fn diag(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Diagnostic {
        let (line, column) = self.pos(span.start);
        Diagnostic {
            origin: self.origin.to_string(),
            line,
            column,
            field: field.into(),
            message: message.into(),
        }
    }
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
        let read_err = |cause| BaselineError::Read {
            path: shown.clone(),
            cause,
        };
        let meta = std::fs::metadata(path).map_err(read_err)?;
        if meta.len() > MAX_BASELINE_BYTES {
            return Err(BaselineError::TooLarge {
                path: shown,
                size: meta.len(),
            });
        }
        let bytes = std::fs::read(path).map_err(read_err)?;
        Baseline::from_bytes(&bytes, &shown)
    }

    /// Validates a baseline from its bytes; `origin` names it in messages.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Baseline, BaselineError> {
        let text = match std::str::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let valid = &bytes[..e.valid_up_to()];
                let line = valid.iter().filter(|&&b| b == b'\n').count() + 1;
                return Err(BaselineError::Invalid(vec![Diagnostic {
                    origin: origin.to_string(),
                    line,
                    column: valid.len()
                        - valid.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1)
                        + 1,
                    field: String::new(),
                    message: "baseline is not valid UTF-8".into(),
                }]));
            }
        };
        Baseline::from_str(text, origin)
    }

    /// Validates a baseline from TOML text; `origin` names it in messages.
    pub fn from_str(text: &str, origin: &str) -> Result<Baseline, BaselineError> {
        let lines = Lines { text, origin };
        let raw: RawBaseline = toml::from_str(text).map_err(|e| {
            let span = e.span().unwrap_or(0..0);
            BaselineError::Invalid(vec![lines.diag(span, "", e.message().to_string())])
        })?;
        let mut diags = Vec::new();
        if *raw.schema.get_ref() != SCHEMA {
            diags.push(lines.diag(
                raw.schema.span(),
                "schema",
                format!(
                    "unsupported schema {}, this build reads schema {SCHEMA}",
                    raw.schema.get_ref()
                ),
            ));
        }
        if !valid_id(raw.id.get_ref()) {
            diags.push(lines.diag(
                raw.id.span(),
                "id",
                format!("\"{}\" is not of the form [a-z0-9._-]+", raw.id.get_ref()),
            ));
        }
        let mut rules = Vec::with_capacity(raw.rule.len());
        let mut seen: Vec<(String, usize)> = Vec::new();
        for (i, r) in raw.rule.into_iter().enumerate() {
            let id = r.id.get_ref().clone();
            let at = |f: &str| format!("rule[{i}] ({id}).{f}");
            if !valid_id(&id) {
                diags.push(lines.diag(
                    r.id.span(),
                    format!("rule[{i}].id"),
                    format!("\"{id}\" is not of the form [a-z0-9._-]+"),
                ));
            }
            let (line, _) = lines.pos(r.id.span().start);
            if let Some((_, first)) = seen.iter().find(|(s, _)| *s == id) {
                diags.push(lines.diag(
                    r.id.span(),
                    at("id"),
                    format!("duplicate rule id, first defined at line {first}"),
                ));
            } else {
                seen.push((id.clone(), line));
            }
            if r.title.get_ref().trim().is_empty() {
                diags.push(lines.diag(r.title.span(), at("title"), "title is empty"));
            }
            check_domains(&lines, &r.domains, &at("domains"), true, &mut diags);
            if r.criteria.get_ref().is_empty() {
                diags.push(lines.diag(
                    r.criteria.span(),
                    at("criteria"),
                    "at least one criterion (A, I, C, T, P) is required",
                ));
            }
            let check_span = r.check.span();
            for problem in validate_check(r.check.get_ref()) {
                diags.push(lines.diag(check_span.clone(), at("check"), problem));
            }
            if let Some(rem) = &r.remediation {
                let kind = r.check.get_ref().kind();
                if !rem.get_ref().fixes().contains(&kind) {
                    diags.push(lines.diag(
                        rem.span(),
                        at("remediation"),
                        format!(
                            "{} cannot fix a {kind} check (it fixes: {})",
                            rem.get_ref().kind(),
                            rem.get_ref().fixes().join(", ")
                        ),
                    ));
                }
                for problem in validate_remediation(rem.get_ref()) {
                    diags.push(lines.diag(rem.span(), at("remediation"), problem));
                }
            }
            rules.push(Rule {
                id,
                title: r.title.into_inner(),
                severity: r.severity,
                domains: r.domains.into_inner(),
                criteria: r.criteria.into_inner(),
                references: r.references,
                rationale: r.rationale,
                check: r.check.into_inner(),
                remediation: r.remediation.map(Spanned::into_inner),
                line,
            });
        }
        let mut fim = Vec::with_capacity(raw.fim.len());
        let mut fim_spans = Vec::with_capacity(raw.fim.len());
        for (i, f) in raw.fim.into_iter().enumerate() {
            let at = |x: &str| format!("fim[{i}].{x}");
            if !f.path.get_ref().starts_with('/') {
                diags.push(lines.diag(
                    f.path.span(),
                    at("path"),
                    format!("\"{}\" is not an absolute path", f.path.get_ref()),
                ));
            } else if f.path.get_ref().split('/').any(|c| c == "." || c == "..") {
                diags.push(lines.diag(
                    f.path.span(),
                    at("path"),
                    format!(
                        "\"{}\" has a . or .. component; write the path plainly",
                        f.path.get_ref()
                    ),
                ));
            }
            fim_spans.push(f.path.span());
            for g in f.exclude.get_ref() {
                if let Err(e) = crate::glob(g) {
                    diags.push(lines.diag(
                        f.exclude.span(),
                        at("exclude"),
                        format!("invalid glob \"{g}\": {e}"),
                    ));
                }
            }
            check_domains(&lines, &f.domains, &at("domains"), false, &mut diags);
            let attributes = match &f.attributes {
                Some(a) => {
                    let a = a.get_ref();
                    if a.contains(&FimAttribute::Sha256) && a.contains(&FimAttribute::Sha512) {
                        diags.push(lines.diag(
                            f.attributes.as_ref().map_or(0..0, Spanned::span),
                            at("attributes"),
                            "name one content hash: sha256 or sha512, not both",
                        ));
                    }
                    a.clone()
                }
                None => FimAttribute::DEFAULT.to_vec(),
            };
            let (line, _) = lines.pos(f.path.span().start);
            fim.push(FimRule {
                path: normalize_fim_path(f.path.get_ref()),
                exclude: f.exclude.into_inner(),
                attributes,
                realtime: f.realtime,
                severity: f.severity,
                domains: f.domains.into_inner(),
                cross_devices: f.cross_devices,
                line,
            });
        }
        lint_fim_overlaps(&lines, &fim, &fim_spans, &mut diags);
        if !diags.is_empty() {
            return Err(BaselineError::Invalid(diags));
        }
        Ok(Baseline {
            schema: *raw.schema.get_ref(),
            id: raw.id.into_inner(),
            version: *raw.version.get_ref(),
            title: raw.title,
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

/// `/etc//ssh/` → `/etc/ssh`; `/` stays `/`. Paths are compared in this form.
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
    lines: &Lines<'_>,
    fim: &[FimRule],
    spans: &[Range<usize>],
    diags: &mut Vec<Diagnostic>,
) {
    for (j, inner) in fim.iter().enumerate() {
        let span = spans.get(j).cloned().unwrap_or(0..0);
        for (i, outer) in fim.iter().enumerate().take(j) {
            if outer.path == inner.path {
                diags.push(lines.diag(
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
                        diags.push(lines.diag(
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
    lines: &Lines<'_>,
    d: &Spanned<Vec<u8>>,
    field: &str,
    required: bool,
    diags: &mut Vec<Diagnostic>,
) {
    if required && d.get_ref().is_empty() {
        diags.push(lines.diag(
            d.span(),
            field,
            "at least one ISSP domain (1..=28) is required",
        ));
    }
    for n in d.get_ref() {
        if !(1..=DOMAIN_COUNT).contains(n) {
            diags.push(lines.diag(d.span(), field, format!("domain {n} is outside 1..=28")));
        }
    }
}

fn absolute(path: &str, field: &str, out: &mut Vec<String>) {
    if !path.starts_with('/') {
        out.push(format!("{field} \"{path}\" is not an absolute path"));
    }
}

fn path_glob(path: &str, field: &str, out: &mut Vec<String>) {
    absolute(path, field, out);
    if let Err(e) = crate::glob(path) {
        out.push(format!("{field}: invalid glob \"{path}\": {e}"));
    }
}

fn octal(mode: &str, field: &str, out: &mut Vec<String>) {
    if u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o7777) {
        out.push(format!(
            "{field} \"{mode}\" is not an octal mode such as \"0640\""
        ));
    }
}

/// Semantic checks of one check spec; each string is one problem.
pub fn validate_check(spec: &CheckSpec) -> Vec<String> {
    use CheckSpec as C;
    let mut out = Vec::new();
    match spec {
        C::File(c) => {
            path_glob(&c.path, "path", &mut out);
            if let Some(m) = &c.mode_max {
                octal(m, "mode_max", &mut out);
            }
            let asserts = c.file_type.is_some()
                || c.mode_max.is_some()
                || c.owner.is_some()
                || c.group.is_some();
            if c.exists == Some(false) && asserts {
                out.push(
                    "exists = false cannot be combined with type, mode_max, owner or group".into(),
                );
            }
            if c.exists.is_none() && !asserts {
                out.push("asserts nothing: give exists, type, mode_max, owner or group".into());
            }
        }
        C::FileRegex(c) => {
            path_glob(&c.path, "path", &mut out);
            if let Err(e) = regex::Regex::new(&c.pattern) {
                out.push(format!("pattern: invalid regex: {e}"));
            }
        }
        C::ConfigValue(c) => {
            path_glob(&c.path, "path", &mut out);
            if c.key.trim().is_empty() {
                out.push("key is empty".into());
            }
            if c.separator.as_deref() == Some("") {
                out.push("separator is empty".into());
            }
            if let Err(e) = c.comparison() {
                out.push(e);
            }
        }
        C::Sshd(c) if c.valid.is_some() => {
            let compares = c.equals.is_some()
                || c.one_of.is_some()
                || c.min.is_some()
                || c.max.is_some()
                || c.absent.is_some()
                || c.excludes.is_some();
            if !c.key.is_empty() || compares {
                out.push("valid takes no key and no comparison".into());
            }
        }
        C::Sshd(c) => {
            if c.key.trim().is_empty() || c.key.contains(char::is_whitespace) {
                out.push(format!("key \"{}\" is not an sshd keyword", c.key));
            }
            if let Err(e) = c.comparison() {
                out.push(e);
            }
        }
        C::Sysctl(c) => {
            let ok = !c.key.is_empty()
                && c.key.split(['.', '/']).all(|p| {
                    !p.is_empty()
                        && p != ".."
                        && p.bytes()
                            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*'))
                });
            if !ok {
                out.push(format!(
                    "key \"{}\" is not a sysctl key such as net.ipv4.ip_forward",
                    c.key
                ));
            }
            if let Err(e) = c.comparison() {
                out.push(e);
            }
        }
        C::KernelModule(c) => {
            if c.name.is_empty()
                || !c
                    .name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
            {
                out.push(format!("name \"{}\" is not a kernel module name", c.name));
            }
            if c.loaded.is_none() && c.disabled.is_none() {
                out.push("asserts nothing: give loaded and/or disabled".into());
            }
        }
        C::Mount(c) => {
            absolute(&c.path, "path", &mut out);
            if !c.separate && !c.options_include.is_empty() {
                out.push("options_include needs separate = true".into());
            }
        }
        C::Service(c) => {
            if c.unit.is_empty() || c.unit.contains('/') {
                out.push(format!("unit \"{}\" is not a unit name", c.unit));
            }
        }
        C::Process(c) => {
            if c.name.is_empty() || c.name.len() > 15 {
                out.push(format!(
                    "name \"{}\" must be 1 to 15 bytes, as the kernel keeps it",
                    c.name
                ));
            }
        }
        C::Listening(c) => {
            if c.forbidden_ports.is_empty() && c.allowed_ports.is_none() {
                out.push("asserts nothing: give forbidden_ports and/or allowed_ports".into());
            }
        }
        C::Accounts(c) => {
            if !(c.uid0_only
                || c.no_empty_passwords
                || c.no_duplicate_uids
                || c.no_duplicate_names
                || c.system_shell_nologin)
                && c.pass_max_days_max.is_none()
            {
                out.push("asserts nothing: set at least one invariant".into());
            }
        }
        C::Package(c) => {
            if c.name.is_empty() || c.name.contains(char::is_whitespace) {
                out.push(format!("name \"{}\" is not a package name", c.name));
            }
        }
        C::Find(c) => {
            if c.paths.is_empty() {
                out.push("paths is empty".into());
            }
            for p in &c.paths {
                absolute(p, "paths", &mut out);
            }
            for g in &c.allow {
                if let Err(e) = crate::glob(g) {
                    out.push(format!("allow: invalid glob \"{g}\": {e}"));
                }
            }
            if !(c.world_writable || c.unowned || c.setid) {
                out.push("asserts nothing: set world_writable, unowned and/or setid".into());
            }
        }
    }
    out
}

fn validate_remediation(spec: &RemediationSpec) -> Vec<String> {
    use RemediationSpec as R;
    let mut out = Vec::new();
    match spec {
        R::FileMode { path, mode } => {
            absolute(path, "path", &mut out);
            octal(mode, "mode", &mut out);
        }
        R::FileOwner { path, owner, group } => {
            absolute(path, "path", &mut out);
            if owner.is_none() && group.is_none() {
                out.push("file_owner needs owner and/or group".into());
            }
        }
        R::ConfigSet { path, .. } => absolute(path, "path", &mut out),
        R::LineAbsent { path, pattern } => {
            absolute(path, "path", &mut out);
            if let Err(e) = regex::Regex::new(pattern) {
                out.push(format!("pattern: invalid regex: {e}"));
            }
        }
        R::SysctlSet { .. }
        | R::SshdSet { .. }
        | R::KernelModuleDisable { .. }
        | R::ServiceDisable { .. }
        | R::ServiceMask { .. } => {}
    }
    out
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
    fn dot_components_are_refused() {
        let e = lint("[[fim]]\npath = \"/etc/../root\"\n").unwrap_err();
        assert!(e.contains(". or .. component"), "{e}");
    }
}
