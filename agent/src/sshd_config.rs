//! Reading sshd's configuration the way sshd reads it, shared by the `sshd`
//! check and the `sshd_set` remediation so both see the same lines and the
//! same effective values. Modelled on servconf.c of OpenSSH 9.2p1 as Debian
//! 12 builds it; `tests/suite/sshd_oracle.rs` compares the result with the real
//! `sshd -T` over generated configurations.
//!
//! - `/etc/ssh/sshd_config` is read; `Include` directives are followed in
//!   place, each argument a glob expanded in lexical order (dot files only
//!   when the last component asks for them), relative paths taken from
//!   `/etc/ssh`, recursively up to sshd's depth limit (16), so an include
//!   loop is an error, as in sshd. A glob that matches nothing is not an
//!   error; a matched file that cannot be read is.
//! - Lines are split as sshd splits them: leading blanks dropped, a NUL
//!   byte ends the line *and joins it to the next one* (sshd stores lines
//!   with `strlen`), the keyword ends at white space, `=` or a quote, the
//!   arguments are `argv_split` words (quotes, backslash escapes, `#` at the
//!   start of a word ends the line).
//! - A `Match` block runs until the next `Match` or the end of the file it
//!   is in; without a connection only `Match all` matches. After an
//!   included file, the including file is back in the block (or global
//!   context) its `Include` was in. A file included from an inactive block
//!   never applies, even after its own `Match all` (`SSHCFG_NEVERMATCH`).
//! - sshd reads the configuration twice: at start-up the global context
//!   and active `Match all` blocks apply (first value wins for most
//!   keywords); then, for each connection, the matching Match blocks are
//!   applied *over* the global values for the keywords a Match block may
//!   set. With no connection only `Match all` matches, so a later line in
//!   a `Match all` block (also one coming through an Include after it)
//!   overrides an earlier global one, and a list keyword there replaces
//!   the global list. See [`Settings::effective`].
//! - Anything sshd refuses (unknown keyword, global-only keyword in a Match
//!   block, bad value, bad Match condition, unbalanced quote, extra
//!   arguments...) makes [`load`] fail with the file and line.

mod builds;
pub(crate) mod keywords;

pub(crate) use builds::Build;
use keywords::{Keyword, Merge, Names, Parsed, Syntax};

use crate::rootfs::RootFs;
use std::cell::OnceCell;

pub(crate) const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
pub(crate) const SSHD_DIR: &str = "/etc/ssh";
/// `SERVCONF_MAX_DEPTH` in servconf.c.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;

/// Why sshd would not start with the configuration, in the words it (or
/// Plumbline, for a file it cannot read) uses: the evidence of an `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct Refusal(pub String);

impl From<String> for Refusal {
    fn from(message: String) -> Refusal {
        Refusal(message)
    }
}

impl From<&str> for Refusal {
    fn from(message: &str) -> Refusal {
        Refusal(message.to_string())
    }
}

/// The build of sshd for an installed openssh-server version, and the
/// versions Plumbline knows.
pub(crate) fn build_of(version: &str) -> Result<&'static Build, Refusal> {
    builds::by_version(version).ok_or_else(|| {
        Refusal(format!(
            "openssh-server {version}: this sshd build is not known to Plumbline, so its defaults and accepted values are not guessed (supported: {})",
            builds::supported()
        ))
    })
}

/// Where a line sits, as sshd sees it without a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Outside any Match block.
    Global,
    /// In an active `Match all` block: applies at start-up and over the
    /// global values.
    MatchAll,
    /// In a block that does not match, or in a file included from one.
    Inactive,
}

/// What sshd reads on one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Directive {
    /// A keyword with its arguments; `rest` is the text after the keyword
    /// (for keywords that take the whole rest of the line).
    Setting {
        keyword: String,
        rest: String,
        args: Vec<String>,
    },
    /// A `Match` line: whether it is `Match all`, or why sshd refuses it.
    Match(Result<bool, Refusal>),
    /// A line sshd refuses before looking at its keyword.
    Bad(String),
}

/// One line of the configuration, met in the order sshd reads it. Valid
/// `Include` lines are not shown: the files they name are, in their place.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// In-root path of the file holding the line.
    pub path: &'a str,
    /// 0-based index of the line in its file.
    pub index: usize,
    /// Include depth of the file; 0 is `sshd_config` itself.
    pub depth: usize,
    /// The line's bytes as read, terminator included.
    pub raw: &'a [u8],
    /// `None` for blank lines and comments.
    pub directive: Option<Directive>,
    /// For a Match line, the scope it opens.
    pub scope: Scope,
}

impl Line<'_> {
    /// `path:line`, the evidence location of the line.
    pub fn at(&self) -> String {
        format!("{}:{}", self.path, self.index + 1)
    }
}

/// What [`walk`] reports to its visitor.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A line other than a valid `Include`.
    Line(Line<'a>),
    /// A file was read to its end; `depth` 0 is `sshd_config` itself.
    /// `opened_match`: it holds a `Match` line, whose block ends here.
    End { depth: usize, opened_match: bool },
}

/// Walks `sshd_config` and its includes, calling `visit` for each line and
/// at the end of each file. `read` gives a file's bytes (`None`: it does
/// not exist), so a remediation can see its planned writes; include globs
/// are expanded on `fs`.
pub(crate) fn walk(
    fs: &RootFs,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, String>,
    visit: impl FnMut(Event<'_>),
) -> Result<(), Refusal> {
    Walker { fs, read, visit }.file(SSHD_CONFIG, 0, Scope::Global)
}

struct Walker<'a, R, V> {
    fs: &'a RootFs,
    read: R,
    visit: V,
}

impl<R, V> Walker<'_, R, V>
where
    R: Fn(&str) -> Result<Option<Vec<u8>>, String>,
    V: FnMut(Event<'_>),
{
    /// Reads one file, starting in the scope of the line that included it.
    fn file(&mut self, path: &str, depth: usize, start: Scope) -> Result<(), Refusal> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(Refusal(format!(
                "{path}: too many nested Include levels (more than {MAX_INCLUDE_DEPTH}), sshd refuses this configuration"
            )));
        }
        // sshd exits when a file it includes cannot be opened.
        let bytes = (self.read)(path)?.ok_or_else(|| format!("cannot read {path}: not found"))?;
        let never_match = start == Scope::Inactive;
        let mut scope = start;
        let mut opened_match = false;
        // Text before a NUL byte, which sshd joins to the next line.
        let mut carry: Vec<u8> = Vec::new();
        for (index, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            let line = raw.strip_suffix(b"\n").unwrap_or(raw);
            let start_at = line
                .iter()
                .position(|b| !matches!(b, b' ' | b'\t' | b'\r'))
                .unwrap_or(line.len());
            let line = &line[start_at..];
            if let Some(nul) = line.iter().position(|&b| b == 0) {
                carry.extend_from_slice(&line[..nul]);
                self.emit(path, index, depth, raw, None, scope);
                continue;
            }
            let logical = if carry.is_empty() {
                line.to_vec()
            } else {
                let mut l = std::mem::take(&mut carry);
                l.extend_from_slice(line);
                l
            };
            let mut directive = tokenize(&String::from_utf8_lossy(&logical));
            if let Some(Directive::Setting {
                keyword,
                rest,
                args,
            }) = &directive
            {
                if keyword.eq_ignore_ascii_case("include") {
                    let at = format!("{path}:{}", index + 1);
                    match self.include(args, depth, scope, &at)? {
                        None => continue,
                        Some(bad) => directive = Some(Directive::Bad(bad)),
                    }
                } else if keyword.eq_ignore_ascii_case("match") {
                    let cond = match_condition(rest);
                    scope = match cond {
                        Ok(true) if !never_match => Scope::MatchAll,
                        _ => Scope::Inactive,
                    };
                    opened_match = true;
                    directive = Some(Directive::Match(cond));
                }
            }
            self.emit(path, index, depth, raw, directive, scope);
        }
        if !carry.is_empty() {
            // The last line ended in a NUL: sshd reads what came before it.
            let directive = tokenize(&String::from_utf8_lossy(&carry));
            if directive.is_some() {
                let index = bytes.split_inclusive(|&b| b == b'\n').count();
                self.emit(path, index, depth, b"", directive, scope);
            }
        }
        (self.visit)(Event::End {
            depth,
            opened_match,
        });
        Ok(())
    }

    fn emit(
        &mut self,
        path: &str,
        index: usize,
        depth: usize,
        raw: &[u8],
        directive: Option<Directive>,
        scope: Scope,
    ) {
        (self.visit)(Event::Line(Line {
            path,
            index,
            depth,
            raw,
            directive,
            scope,
        }));
    }

    /// Follows an `Include` line; `Some(reason)` when sshd refuses it.
    fn include(
        &mut self,
        args: &[String],
        depth: usize,
        scope: Scope,
        at: &str,
    ) -> Result<Option<String>, Refusal> {
        if args.is_empty() {
            return Ok(Some("Include missing filename argument".into()));
        }
        for arg in args {
            if arg.is_empty() {
                return Ok(Some("keyword Include empty argument".into()));
            }
            // `~` is not expanded by sshd's glob(3) call: such a pattern
            // names a relative path, which matches nothing.
            if arg.starts_with('~') {
                continue;
            }
            let pattern = if arg.starts_with('/') {
                arg.to_string()
            } else {
                format!("{SSHD_DIR}/{arg}")
            };
            let files = self
                .fs
                .glob(&pattern)
                .map_err(|e| format!("Include {arg} ({at}): cannot expand: {e}"))?;
            let hidden_ok = pattern
                .rsplit('/')
                .next()
                .is_some_and(|last| last.starts_with('.'));
            for f in files {
                // glob(3) does not match dot files unless the pattern says so.
                let name = f.rsplit('/').next().unwrap_or_default();
                if name.starts_with('.') && !hidden_ok {
                    continue;
                }
                self.file(&f, depth + 1, scope)?;
            }
        }
        Ok(None)
    }
}

/// sshd's white space for keywords and Match words (`WHITESPACE`).
const WHITESPACE: &[char] = &[' ', '\t', '\r', '\n'];

/// `strdelim`: the next word of a configuration line, ending at white
/// space, `=` (once) or a quote, and what follows (`None` at the end).
/// `None` for the word itself when a quote is not closed.
fn strdelim(s: &str) -> (Option<String>, Option<&str>) {
    let Some(i) = s.find(|c: char| WHITESPACE.contains(&c) || c == '"' || c == '=') else {
        return (Some(s.to_string()), None);
    };
    if s[i..].starts_with('"') {
        let after = &s[i + 1..];
        return match after.find('"') {
            None => (None, None),
            Some(j) => {
                let word = format!("{}{}", &s[..i], &after[..j]);
                let rest = after[j + 1..].trim_start_matches(WHITESPACE);
                (Some(word), Some(rest))
            }
        };
    }
    let equals = s[i..].starts_with('=');
    let mut rest = s[i + 1..].trim_start_matches(WHITESPACE);
    if !equals && let Some(r) = rest.strip_prefix('=') {
        rest = r.trim_start_matches(WHITESPACE);
    }
    (Some(s[..i].to_string()), Some(rest))
}

/// What sshd reads on a line (leading blanks already dropped): `None` for
/// blank lines and comments.
fn tokenize(line: &str) -> Option<Directive> {
    let line = line.trim_end_matches([' ', '\t', '\r', '\n', '\x0c']);
    if line.is_empty() {
        return None;
    }
    let (mut keyword, mut rest) = strdelim(line);
    if keyword.as_deref() == Some("") {
        (keyword, rest) = strdelim(rest.unwrap_or(""));
    }
    let keyword = keyword.filter(|k| !k.is_empty() && !k.starts_with('#'))?;
    let rest = match rest {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Some(Directive::Bad(format!(
                "no argument after keyword \"{keyword}\""
            )));
        }
    };
    match argv_split(rest) {
        Some(args) => Some(Directive::Setting {
            keyword,
            rest: rest.to_string(),
            args,
        }),
        None => Some(Directive::Bad("invalid quotes".into())),
    }
}

/// Splits a line the way sshd does: the keyword and its arguments. `None`
/// for blank and comment lines and lines sshd refuses.
pub(crate) fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let start = line.trim_start_matches([' ', '\t', '\r']);
    match tokenize(start)? {
        Directive::Setting { keyword, args, .. } => Some((keyword, args)),
        _ => None,
    }
}

/// sshd's `argv_split` with comments: words separated by spaces and tabs,
/// `"`/`'` quoting, backslash escapes of quotes, backslash and (outside
/// quotes) space; a word beginning with `#` ends the line. `None` when a
/// quote is not closed.
fn argv_split(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == '\t') {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && (c == ' ' || c == '\t') {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&n) if matches!(n, '\'' | '"' | '\\') || (n == ' ' && quote.is_none()) => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c => word.push(c),
            }
        }
        if quote.is_some() {
            return None;
        }
        out.push(word);
    }
    Some(out)
}

/// `match_cfg_line` without a connection: `Ok(true)` for `Match all`,
/// `Ok(false)` for criteria that need one (they never match here), `Err`
/// for a condition sshd refuses.
fn match_condition(condition: &str) -> Result<bool, Refusal> {
    let mut cp = Some(condition);
    let mut attributes = 0;
    while let Some(c) = cp {
        let (attrib, next) = strdelim(c);
        let Some(attrib) = attrib.filter(|a| !a.is_empty()) else {
            break;
        };
        cp = next;
        if attrib.starts_with('#') {
            break;
        }
        attributes += 1;
        let (arg, after) = match cp {
            Some(c) => strdelim(c),
            None => (None, None),
        };
        if attrib.eq_ignore_ascii_case("all") {
            let more = arg.is_some_and(|a| !a.is_empty() && !a.starts_with('#'));
            if attributes > 1 || more {
                return Err("'all' cannot be combined with other Match attributes".into());
            }
            return Ok(true);
        }
        let Some(arg) = arg.filter(|a| !a.is_empty() && !a.starts_with('#')) else {
            return Err(Refusal(format!("Missing Match criteria for {attrib}")));
        };
        cp = after;
        match attrib.to_ascii_lowercase().as_str() {
            "user" | "group" | "host" | "rdomain" => {}
            "address" | "localaddress" => {
                if keywords::address_list_invalid(&arg) {
                    return Err(Refusal(format!("Invalid Match {attrib} argument '{arg}'")));
                }
            }
            "localport" => {
                let ok = arg.parse::<u32>().is_ok_and(|p| p <= 65535)
                    && arg.chars().all(|c| c.is_ascii_digit());
                if !ok && !arg.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(Refusal(format!("Invalid LocalPort '{arg}' on Match line")));
                }
            }
            _ => return Err(Refusal(format!("Unsupported Match attribute {attrib}"))),
        }
    }
    if attributes == 0 {
        return Err("One or more attributes required for Match".into());
    }
    Ok(false)
}

/// One line that sets a keyword, parsed and valid.
#[derive(Debug)]
pub(crate) struct Setting {
    pub keyword: &'static Keyword,
    /// The keyword as written.
    pub spelling: String,
    /// The arguments as written, joined by one space.
    pub written: String,
    pub value: Parsed,
    pub path: String,
    /// 0-based line index in `path`.
    pub index: usize,
    pub scope: Scope,
}

impl Setting {
    /// `path:line`
    pub fn at(&self) -> String {
        format!("{}:{}", self.path, self.index + 1)
    }
}

/// Why [`load`] gives no settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LoadError {
    /// sshd would not start with this configuration.
    Refused { at: String, reason: Refusal },
    /// The configuration could not be read or evaluated.
    Other(Refusal),
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LoadError::Refused { at, reason } => {
                write!(f, "sshd refuses this configuration: {at}: {reason}")
            }
            LoadError::Other(e) => write!(f, "{e}"),
        }
    }
}

/// The valid configuration: every line that sets a keyword, in the order
/// sshd reads them, for one build of sshd.
#[derive(Debug)]
pub(crate) struct Settings {
    pub build: &'static Build,
    pub lines: Vec<Setting>,
}

/// Service names of the checked root's /etc/services, read when needed.
struct RootNames<'a> {
    fs: &'a RootFs,
    services: OnceCell<Vec<(String, u16)>>,
}

impl Names for RootNames<'_> {
    fn service_port(&self, name: &str) -> Option<u16> {
        let services = self.services.get_or_init(|| {
            let Ok(text) = self.fs.read("/etc/services") else {
                return Vec::new();
            };
            let mut out = Vec::new();
            for line in String::from_utf8_lossy(&text).lines() {
                let line = line.split('#').next().unwrap_or("");
                let mut words = line.split_whitespace();
                let (Some(service), Some(port)) = (words.next(), words.next()) else {
                    continue;
                };
                let Some(port) = port.strip_suffix("/tcp").and_then(|p| p.parse().ok()) else {
                    continue;
                };
                out.push((service.to_string(), port));
                for alias in words {
                    out.push((alias.to_string(), port));
                }
            }
            out
        });
        services.iter().find(|(n, _)| n == name).map(|(_, p)| *p)
    }
}

/// Reads and checks the whole configuration as `build` of sshd would.
pub(crate) fn load(
    fs: &RootFs,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, String>,
    build: &'static Build,
) -> Result<Settings, LoadError> {
    let names = RootNames {
        fs,
        services: OnceCell::new(),
    };
    let mut lines = Vec::new();
    let mut refused: Option<LoadError> = None;
    walk(fs, read, |event| {
        let Event::Line(line) = event else { return };
        if refused.is_some() {
            return;
        }
        let refuse = |reason: String| LoadError::Refused {
            at: line.at(),
            reason: Refusal(reason),
        };
        match &line.directive {
            None | Some(Directive::Match(Ok(_))) => {}
            Some(Directive::Match(Err(e))) => {
                refused = Some(refuse(format!("Bad Match condition: {e}")));
            }
            Some(Directive::Bad(e)) => refused = Some(refuse(e.clone())),
            Some(Directive::Setting {
                keyword,
                rest,
                args,
            }) => {
                let Some((k, allowed)) = keywords::lookup(keyword) else {
                    refused = Some(refuse(if line.scope == Scope::Inactive {
                        format!("Directive '{keyword}' is not allowed within a Match block (it is not an sshd keyword)")
                    } else {
                        format!("Bad configuration option: {keyword}")
                    }));
                    return;
                };
                if line.scope == Scope::Inactive && allowed == keywords::Scope::Global {
                    refused = Some(refuse(format!(
                        "Directive '{keyword}' is not allowed within a Match block"
                    )));
                    return;
                }
                match keywords::parse(k, keyword, args, rest, &names, build) {
                    Ok(value) => lines.push(Setting {
                        keyword: k,
                        spelling: keyword.clone(),
                        written: if matches!(k.syntax, Syntax::Rest | Syntax::Command) {
                            rest.clone()
                        } else {
                            args.join(" ")
                        },
                        value,
                        path: line.path.to_string(),
                        index: line.index,
                        scope: line.scope,
                    }),
                    Err(e) => refused = Some(refuse(e.0)),
                }
            }
        }
    })
    .map_err(LoadError::Other)?;
    if let Some(r) = refused {
        return Err(r);
    }
    let settings = Settings { build, lines };
    settings.check_whole()?;
    Ok(settings)
}

/// A keyword's combined value before printing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Value {
    Text(String),
    Items(Vec<String>),
    Startups([Option<i64>; 3]),
    Rekey(Option<i64>, Option<i64>),
}

/// The value sshd uses for one keyword, and where it comes from.
#[derive(Debug)]
pub(crate) struct Effective<'a> {
    /// As `sshd -T` prints it (list items joined by one space); `None`
    /// when unset and without a default.
    pub value: Option<String>,
    /// The global lines that give the value (empty: the default); when
    /// `matched` is not empty, the global lines it overrides.
    pub global: Vec<&'a Setting>,
    /// The `Match all` lines that set it over the global value.
    pub matched: Vec<&'a Setting>,
}

impl Effective<'_> {
    /// Some line of the configuration sets the keyword.
    pub fn is_set(&self) -> bool {
        !self.global.is_empty() || !self.matched.is_empty()
    }
}

impl<'a> Effective<'a> {
    /// The line that decides the value: the one to edit to change it.
    pub fn deciding(&self, k: &Keyword) -> Option<&'a Setting> {
        let lines = if self.matched.is_empty() {
            &self.global
        } else {
            &self.matched
        };
        match k.merge {
            Merge::Last | Merge::Startups | Merge::TimeoutOrNone => lines.last().copied(),
            _ => lines.first().copied(),
        }
    }
}

impl Settings {
    /// What sshd uses for keyword `k` without a connection: the global
    /// value (start-up), replaced by what active `Match all` blocks set for
    /// keywords a Match block may set, else the build's default.
    pub fn effective(&self, k: &'static Keyword) -> Result<Effective<'_>, LoadError> {
        let global: Vec<&Setting> = self
            .lines
            .iter()
            .filter(|s| std::ptr::eq(s.keyword, k) && s.scope != Scope::Inactive)
            .collect();
        let matched: Vec<&Setting> = if k.per_connection {
            global
                .iter()
                .copied()
                .filter(|s| s.scope == Scope::MatchAll)
                .collect()
        } else {
            Vec::new()
        };
        let (g_value, g_from) = fold(k, &global)?;
        let (mut m_value, mut m_from) = fold(k, &matched)?;
        if k.name == "permituserenvironment" {
            // Only the pattern list of PermitUserEnvironment is copied from
            // a matching block (`permit_user_env_allowlist`), and sshd -T
            // prints it instead of yes/no when there is one.
            let first = global.iter().find(|s| s.scope == Scope::MatchAll);
            if let Some(s) = first
                && let Parsed::One(v) = &s.value
                && v != "yes"
                && v != "no"
            {
                m_value = Some(Value::Text(v.clone()));
                m_from = vec![*s];
            }
        }
        let (value, at, clear) = match (m_value, g_value) {
            (Some(v), _) => (Some(v), m_from.last().map(|s| s.at()), false),
            (None, Some(v)) => (Some(v), g_from.last().map(|s| s.at()), true),
            (None, None) => (None, None, true),
        };
        let printed = render(k, value, clear, self.build).map_err(|reason| LoadError::Refused {
            at: at.unwrap_or_else(|| "(default)".into()),
            reason,
        })?;
        // What a Match all block overrides, without the lines that are in
        // that block themselves.
        let global = g_from
            .into_iter()
            .filter(|g| !m_from.iter().any(|m| std::ptr::eq(*g, *m)))
            .collect();
        Ok(Effective {
            value: printed,
            global,
            matched: m_from,
        })
    }

    /// The value at start-up, before Match blocks are applied over it
    /// (what sshd.c checks its cross-keyword rules on).
    fn start_up(&self, k: &'static Keyword) -> Result<Option<String>, LoadError> {
        let global: Vec<&Setting> = self
            .lines
            .iter()
            .filter(|s| std::ptr::eq(s.keyword, k) && s.scope != Scope::Inactive)
            .collect();
        let (value, from) = fold(k, &global)?;
        render(k, value, true, self.build).map_err(|reason| LoadError::Refused {
            at: from.last().map_or_else(|| "(default)".into(), |s| s.at()),
            reason,
        })
    }

    /// Checks sshd makes once the whole file is read: every keyword's
    /// value can be assembled at start-up and with Match blocks applied,
    /// and the cross-keyword rules of sshd.c hold at start-up.
    fn check_whole(&self) -> Result<(), LoadError> {
        for k in keywords::all() {
            self.start_up(k)?;
            self.effective(k)?;
        }
        let value = |name: &str| -> Option<String> {
            keywords::keyword(name).and_then(|k| self.start_up(k).ok().flatten())
        };
        let refuse = |name: &str, reason: String| {
            let at = keywords::keyword(name)
                .and_then(|k| self.effective(k).ok())
                .and_then(|e| e.deciding(keywords::keyword(name)?).map(Setting::at))
                .unwrap_or_else(|| "(default)".into());
            Err(LoadError::Refused {
                at,
                reason: Refusal(reason),
            })
        };
        for (command, user) in [
            ("authorizedkeyscommand", "AuthorizedKeysCommandUser"),
            (
                "authorizedprincipalscommand",
                "AuthorizedPrincipalsCommandUser",
            ),
        ] {
            let set = value(command).is_some_and(|c| !c.eq_ignore_ascii_case("none"));
            let user_set = value(&user.to_ascii_lowercase()).is_some_and(|u| u != "none");
            if set && !user_set {
                let display = keywords::keyword(command).map_or(command, |k| k.display);
                return refuse(command, format!("{display} set without {user}"));
            }
        }
        if let Some(methods) = value("authenticationmethods").filter(|m| m != "any") {
            let enabled = |m: &str| {
                let flag = match m {
                    "publickey" => "pubkeyauthentication",
                    "password" => "passwordauthentication",
                    "keyboard-interactive" => "kbdinteractiveauthentication",
                    "hostbased" => "hostbasedauthentication",
                    "gssapi-keyex" | "gssapi-with-mic" => "gssapiauthentication",
                    _ => return false,
                };
                value(flag).as_deref() == Some("yes")
            };
            let satisfiable = methods
                .split(' ')
                .any(|list| keywords::disabled_methods(list, enabled).is_empty());
            if !satisfiable {
                return refuse(
                    "authenticationmethods",
                    "AuthenticationMethods cannot be satisfied by enabled authentication methods"
                        .into(),
                );
            }
        }
        Ok(())
    }
}

/// Combines the lines setting one keyword as sshd does (`Merge`). The
/// value and the lines that made it; `Err` for limits sshd enforces across
/// lines.
fn fold<'a>(
    k: &Keyword,
    lines: &[&'a Setting],
) -> Result<(Option<Value>, Vec<&'a Setting>), LoadError> {
    let mut from: Vec<&Setting> = Vec::new();
    let value = match k.merge {
        Merge::Nothing => None,
        Merge::First => lines.iter().find_map(|s| match &s.value {
            Parsed::One(v) => {
                from.push(s);
                Some(Value::Text(v.clone()))
            }
            _ => None,
        }),
        Merge::Last => lines.iter().rev().find_map(|s| match &s.value {
            Parsed::One(v) => {
                from.push(s);
                Some(Value::Text(v.clone()))
            }
            _ => None,
        }),
        Merge::TimeoutOrNone => {
            let mut v: Option<String> = None;
            for s in lines {
                match &s.value {
                    Parsed::NoTimeout => {
                        v = Some("none".into());
                        from = vec![s];
                    }
                    Parsed::One(t) if v.is_none() => {
                        v = Some(t.clone());
                        from = vec![s];
                    }
                    _ => {}
                }
            }
            v.map(Value::Text)
        }
        Merge::Append => append(k, lines, &mut from)?,
        Merge::FirstLine => lines.iter().find_map(|s| match &s.value {
            Parsed::Items(items) if !items.is_empty() => {
                from.push(s);
                Some(Value::Items(items.clone()))
            }
            _ => None,
        }),
        Merge::Startups => {
            let mut v = [None; 3];
            for s in lines {
                if let Parsed::Startups(begin, rate, full) = &s.value {
                    v[0] = Some(*begin);
                    if let Some(r) = rate {
                        v[1] = Some(*r);
                    }
                    v[2] = Some(*full);
                    from = vec![s];
                }
            }
            v[0].map(|_| Value::Startups(v))
        }
        Merge::Rekey => rekey(lines, &mut from),
    };
    Ok((value, from))
}

/// `Merge::Append`: the items of every line in order (`Subsystem` names
/// once each), refused past [`keywords::MAX_PORTS`] entries as sshd does.
fn append<'a>(
    k: &Keyword,
    lines: &[&'a Setting],
    from: &mut Vec<&'a Setting>,
) -> Result<Option<Value>, LoadError> {
    let refuse = |s: &Setting, reason: String| LoadError::Refused {
        at: s.at(),
        reason: Refusal(reason),
    };
    let mut items: Vec<String> = Vec::new();
    for s in lines {
        if let Parsed::Items(add) = &s.value {
            if add.is_empty() {
                continue;
            }
            if k.name == "subsystem" {
                let name = add[0].split(' ').next().unwrap_or("");
                if items.iter().any(|i| i.split(' ').next() == Some(name)) {
                    return Err(refuse(s, format!("Subsystem '{name}' already defined.")));
                }
            }
            items.extend(add.iter().cloned());
            if items.len() > keywords::MAX_PORTS {
                return Err(refuse(s, format!("too many {} entries", k.display)));
            }
            from.push(s);
        }
    }
    Ok((!items.is_empty()).then_some(Value::Items(items)))
}

/// `Merge::Rekey`: the first line's limit, and the first interval given.
fn rekey<'a>(lines: &[&'a Setting], from: &mut Vec<&'a Setting>) -> Option<Value> {
    let (mut limit, mut interval) = (None, None);
    for s in lines {
        if let Parsed::Rekey(l, i) = &s.value {
            if limit.is_none() {
                limit = Some(*l);
                from.push(s);
            }
            if interval.is_none() && i.is_some() {
                interval = *i;
                if !from.iter().any(|f| std::ptr::eq(*f, *s)) {
                    from.push(s);
                }
            }
        }
    }
    limit.map(|_| Value::Rekey(limit, interval))
}

/// Keywords whose `none` sshd turns into "unset" at start-up (so `sshd -T`
/// prints `none` whatever its case).
const CLEARED_ON_NONE: &[&str] = &[
    "pidfile",
    "xauthlocation",
    "banner",
    "trustedusercakeys",
    "revokedkeys",
    "securitykeyprovider",
    "authorizedprincipalsfile",
    "forcecommand",
    "chrootdirectory",
    "hostkeyagent",
];

/// The value as `sshd -T` prints it. `global`: it is the start-up value
/// (sshd clears `none` values then); otherwise it was set by a Match block.
fn render(
    k: &Keyword,
    value: Option<Value>,
    global: bool,
    build: &Build,
) -> Result<Option<String>, Refusal> {
    if let Some((default, all)) = keywords::algorithm_lists(k, build) {
        let spec = match &value {
            Some(Value::Text(s)) => Some(s.as_str()),
            _ => None,
        };
        let list = keywords::assemble(spec, &default, all)?;
        // sshd assembles the start-up lists a second time when it applies
        // Match blocks (`copy_set_server_options`): a `-` list that removed
        // everything becomes the default then.
        if global && list.is_empty() {
            return Ok(Some(default));
        }
        return Ok(Some(list));
    }
    let Some(value) = value else {
        return Ok(match k.default {
            keywords::DefaultValue::Text(t) => Some(t.to_string()),
            _ => None,
        });
    };
    Ok(Some(match value {
        Value::Text(t) => {
            let cleared = if global {
                CLEARED_ON_NONE.contains(&k.name)
            } else {
                matches!(k.name, "forcecommand" | "chrootdirectory")
            };
            if cleared && t.eq_ignore_ascii_case("none") {
                "none".into()
            } else {
                t
            }
        }
        Value::Items(items) => {
            if global && k.name == "channeltimeout" && items == ["none"] {
                return Ok(None);
            }
            items.join(" ")
        }
        Value::Startups([begin, rate, full]) => format!(
            "{}:{}:{}",
            begin.unwrap_or(10),
            rate.unwrap_or(30),
            full.unwrap_or(100)
        ),
        Value::Rekey(limit, interval) => {
            format!("{} {}", limit.unwrap_or(0), interval.unwrap_or(0))
        }
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The openssh-server version test roots claim.
    pub(crate) const TEST_VERSION: &str = "1:9.2p1-2+deb12u10";

    /// A root holding `files` (in-root path, content) and a dpkg database
    /// naming openssh-server [`TEST_VERSION`]; shared with `sshd_set`'s and
    /// the check's tests.
    pub(crate) fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let status = format!(
            "Package: openssh-server\nStatus: install ok installed\nVersion: {TEST_VERSION}\n"
        );
        for (p, c) in [("/var/lib/dpkg/status", status.as_str())]
            .iter()
            .chain(files.iter())
        {
            let p = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        t
    }

    fn disk(fs: &RootFs) -> impl Fn(&str) -> Result<Option<Vec<u8>>, String> {
        |p| match fs.read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(format!("cannot read {e}")),
        }
    }

    /// Every event as text: `at keyword args [inactive|match-all]` for
    /// settings, `end DEPTH [match]` for ends of files.
    fn events(t: &tempfile::TempDir) -> Result<Vec<String>, String> {
        let fs = RootFs::new(t.path());
        let mut out = Vec::new();
        walk(&fs, disk(&fs), |e| match e {
            Event::Line(l) => {
                if let Some(Directive::Setting { keyword, args, .. }) = &l.directive {
                    let scope = match l.scope {
                        Scope::Global => "",
                        Scope::MatchAll => " match-all",
                        Scope::Inactive => " inactive",
                    };
                    out.push(format!("{} {keyword} {}{scope}", l.at(), args.join(",")));
                }
            }
            Event::End {
                depth,
                opened_match,
            } => out.push(format!(
                "end {depth}{}",
                if opened_match { " match" } else { "" }
            )),
        })
        .map_err(|e| e.0)?;
        Ok(out)
    }

    fn settings(t: &tempfile::TempDir) -> Result<Settings, LoadError> {
        let fs = RootFs::new(t.path());
        load(&fs, disk(&fs), build_of(TEST_VERSION).unwrap())
    }

    fn value(t: &tempfile::TempDir, key: &str) -> Result<Option<String>, String> {
        let s = settings(t).map_err(|e| e.to_string())?;
        let k = keywords::keyword(key).unwrap();
        s.effective(k).map(|e| e.value).map_err(|e| e.to_string())
    }

    #[test]
    fn nested_relative_includes_in_place_and_in_lexical_order() {
        let t = root(&[
            (SSHD_CONFIG, "Include sshd_config.d/*.conf\nA 1\n"),
            ("/etc/ssh/sshd_config.d/20-b.conf", "B 2"),
            (
                "/etc/ssh/sshd_config.d/10-a.conf",
                "Include inner/x.conf\r\nC 3\r\n",
            ),
            // Relative to /etc/ssh, not to the including file.
            ("/etc/ssh/inner/x.conf", "D 4\n"),
            ("/etc/ssh/sshd_config.d/inner/x.conf", "Wrong 1\n"),
            ("/etc/ssh/sshd_config.d/.00-hidden.conf", "Hidden 1\n"),
            ("/etc/ssh/sshd_config.d/05-x.txt", "Txt 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            [
                "/etc/ssh/inner/x.conf:1 D 4",
                "end 2",
                "/etc/ssh/sshd_config.d/10-a.conf:2 C 3",
                "end 1",
                "/etc/ssh/sshd_config.d/20-b.conf:1 B 2",
                "end 1",
                "/etc/ssh/sshd_config:2 A 1",
                "end 0",
            ]
        );
    }

    #[test]
    fn dot_files_only_when_the_pattern_names_them() {
        let t = root(&[
            (SSHD_CONFIG, "Include /etc/ssh/d/.*.conf\n"),
            ("/etc/ssh/d/.h.conf", "H 1\n"),
            ("/etc/ssh/d/v.conf", "V 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            ["/etc/ssh/d/.h.conf:1 H 1", "end 1", "end 0"]
        );
    }

    #[test]
    fn match_scope_ends_with_its_file_and_never_match_is_inherited() {
        let t = root(&[
            (
                SSHD_CONFIG,
                "Include a.conf\nA 1\nMatch User bob\nInclude b.conf\nB 1\nMATCH All\nC 1\nInclude c.conf\n",
            ),
            ("/etc/ssh/a.conf", "Match Address 10.0.0.0/8\nX 1\n"),
            ("/etc/ssh/b.conf", "Match all\nY 1\n"),
            ("/etc/ssh/c.conf", "Z 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            [
                "/etc/ssh/a.conf:2 X 1 inactive",
                "end 1 match",
                "/etc/ssh/sshd_config:2 A 1",
                // Included from an inactive block: its own `Match all` cannot apply.
                "/etc/ssh/b.conf:2 Y 1 inactive",
                "end 1 match",
                "/etc/ssh/sshd_config:5 B 1 inactive",
                "/etc/ssh/sshd_config:7 C 1 match-all",
                // Included after `Match all`: in that block.
                "/etc/ssh/c.conf:1 Z 1 match-all",
                "end 1",
                "end 0 match",
            ]
        );
    }

    #[test]
    fn depth_limit_allows_sixteen_levels_and_stops_loops() {
        let mut files = vec![(SSHD_CONFIG.to_string(), "Include l1.conf\n".to_string())];
        for n in 1..=MAX_INCLUDE_DEPTH {
            files.push((
                format!("/etc/ssh/l{n}.conf"),
                format!("Include l{}.conf\n", n + 1),
            ));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        // l17.conf does not exist: sixteen levels, then a glob that matches nothing.
        assert!(events(&root(&refs)).is_ok());
        files.push(("/etc/ssh/l17.conf".into(), "Deep 1\n".into()));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let e = events(&root(&refs)).unwrap_err();
        assert_eq!(
            e,
            "/etc/ssh/l17.conf: too many nested Include levels (more than 16), sshd refuses this configuration"
        );

        let e = events(&root(&[(SSHD_CONFIG, "Include /etc/ssh/sshd_config\n")])).unwrap_err();
        assert!(e.contains("too many nested Include levels"), "{e}");
    }

    #[test]
    fn missing_includes_unreadable_files_and_bad_globs() {
        // A glob or a path that matches nothing is skipped, as in sshd.
        let t = root(&[(
            SSHD_CONFIG,
            "Include /etc/ssh/nothing.d/*.conf absent.conf\nA 1\n",
        )]);
        assert_eq!(events(&t).unwrap(), ["/etc/ssh/sshd_config:2 A 1", "end 0"]);

        // A matched file that cannot be read is an error (sshd exits).
        let t = root(&[(SSHD_CONFIG, "Include gone.conf\n")]);
        std::os::unix::fs::symlink("/etc/ssh/nowhere", t.path().join("etc/ssh/gone.conf")).unwrap();
        assert_eq!(
            events(&t).unwrap_err(),
            "cannot read /etc/ssh/gone.conf: not found"
        );

        let t = root(&[(SSHD_CONFIG, "# x\nInclude [x\n")]);
        let e = events(&t).unwrap_err();
        assert!(
            e.starts_with("Include [x (/etc/ssh/sshd_config:2): cannot expand: "),
            "{e}"
        );

        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            events(&t).unwrap_err(),
            "cannot read /etc/ssh/sshd_config: not found"
        );
    }

    #[test]
    fn files_are_read_through_the_callers_reader() {
        let t = root(&[
            (SSHD_CONFIG, "Include a.conf\n"),
            ("/etc/ssh/a.conf", "A 1\n"),
        ]);
        let fs = RootFs::new(t.path());
        let disk = disk(&fs);
        let mut seen = Vec::new();
        walk(
            &fs,
            |p| match p {
                "/etc/ssh/a.conf" => Ok(Some(b"  A  2\n# c\n".to_vec())),
                _ => disk(p),
            },
            |e| {
                if let Event::Line(l) = e {
                    seen.push((l.index, l.raw.to_vec(), l.directive));
                }
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                (
                    0,
                    b"  A  2\n".to_vec(),
                    Some(Directive::Setting {
                        keyword: "A".into(),
                        rest: "2".into(),
                        args: vec!["2".into()]
                    })
                ),
                (1, b"# c\n".to_vec(), None),
            ]
        );
    }

    #[test]
    fn lines_split_as_sshd_splits_them() {
        let args = |l: &str| match tokenize(l) {
            Some(Directive::Setting { keyword, args, .. }) => {
                format!("{keyword}|{}", args.join("|"))
            }
            Some(Directive::Bad(e)) => format!("bad: {e}"),
            other => format!("{other:?}"),
        };
        assert_eq!(args("PermitRootLogin=no"), "PermitRootLogin|no");
        assert_eq!(args("PermitRootLogin = no"), "PermitRootLogin|no");
        assert_eq!(
            args("Banner \"/etc/my banner\" # c"),
            "Banner|/etc/my banner"
        );
        assert_eq!(args("AllowUsers a\\ b 'c d'"), "AllowUsers|a b|c d");
        assert_eq!(args("Banner \"/x"), "bad: invalid quotes");
        assert_eq!(
            args("PermitRootLogin"),
            "bad: no argument after keyword \"PermitRootLogin\""
        );
        assert_eq!(
            args("PermitRootLogin\x0cno"),
            "bad: no argument after keyword \"PermitRootLogin\x0cno\""
        );
        // A carriage return inside a line is part of the word.
        assert_eq!(args("X a\rb"), "X|a\rb");
        assert_eq!(tokenize("# comment"), None);
        assert_eq!(tokenize("   "), None);
    }

    #[test]
    fn a_nul_byte_joins_a_line_to_the_next() {
        let t = root(&[(
            SSHD_CONFIG,
            "# hidden \0 junk\nPermitRootLogin yes\nPasswordAuthentication no\0x\n",
        )]);
        // The first two lines are one comment for sshd; the last one ends
        // at the NUL byte.
        assert_eq!(
            value(&t, "permitrootlogin").unwrap().as_deref(),
            Some("without-password")
        );
        assert_eq!(
            value(&t, "passwordauthentication").unwrap().as_deref(),
            Some("no")
        );
    }

    #[test]
    fn match_conditions() {
        assert_eq!(match_condition("all"), Ok(true));
        assert_eq!(match_condition("ALL # c"), Ok(true));
        assert_eq!(match_condition("User bob Address 10.0.0.0/8"), Ok(false));
        assert_eq!(match_condition("User=bob"), Ok(false));
        for bad in [
            "all User x",
            "User",
            "Bogus x",
            "Address 10.0.0.1/8",
            "User bob all",
        ] {
            assert!(match_condition(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn match_all_overrides_global_values_and_replaces_lists() {
        let t = root(&[
            (
                SSHD_CONFIG,
                "PermitRootLogin yes\nAllowUsers a\nCiphers aes128-ctr\nMatch all\nPermitRootLogin no\nAllowUsers b c\nCiphers aes256-ctr\nInclude d.conf\n",
            ),
            ("/etc/ssh/d.conf", "MaxAuthTries 3\n"),
        ]);
        assert_eq!(value(&t, "PermitRootLogin").unwrap().as_deref(), Some("no"));
        assert_eq!(value(&t, "AllowUsers").unwrap().as_deref(), Some("b c"));
        // Ciphers cannot be set per connection: the first value stays.
        assert_eq!(value(&t, "Ciphers").unwrap().as_deref(), Some("aes128-ctr"));
        assert_eq!(value(&t, "MaxAuthTries").unwrap().as_deref(), Some("3"));
        let s = settings(&t).unwrap();
        let e = s
            .effective(keywords::keyword("PermitRootLogin").unwrap())
            .unwrap();
        assert_eq!(e.matched[0].at(), "/etc/ssh/sshd_config:5");
        assert_eq!(e.global[0].at(), "/etc/ssh/sshd_config:1");
    }

    #[test]
    fn max_startups_keeps_the_last_value() {
        let t = root(&[
            (SSHD_CONFIG, "Include d/*.conf\nMaxStartups 3\n"),
            ("/etc/ssh/d/a.conf", "MaxStartups 5:20:30\n"),
        ]);
        assert_eq!(value(&t, "MaxStartups").unwrap().as_deref(), Some("3:20:3"));
        let t = root(&[(SSHD_CONFIG, "MaxStartups 10\n")]);
        assert_eq!(
            value(&t, "MaxStartups").unwrap().as_deref(),
            Some("10:30:10")
        );
    }

    #[test]
    fn refusals_name_the_file_and_line() {
        let refused = |c: &str| match settings(&root(&[(SSHD_CONFIG, c)])) {
            Err(e @ LoadError::Refused { .. }) => e.to_string(),
            other => panic!("{c:?}: {other:?}"),
        };
        assert_eq!(
            refused("PermitRootLogn no\n"),
            "sshd refuses this configuration: /etc/ssh/sshd_config:1: Bad configuration option: PermitRootLogn"
        );
        assert!(
            refused("Match User x\nCiphers aes128-ctr\n")
                .contains(":2: Directive 'Ciphers' is not allowed within a Match block")
        );
        assert!(refused("Match User x\nUsePAM yes\n").contains("not allowed within a Match block"));
        assert!(refused("Match Address 10.0.0.0/8\nLoginGraceTime 1\n").contains("not allowed"));
        assert!(refused("PermitRootLogin no\nPermitRootLogin maybe\n").contains(":2: "));
        assert!(refused("MaxAuthTries 4x\n").contains("integer value invalid"));
        assert!(refused("KexAlgorithms curve25519*\n").contains("Bad SSH2 KexAlgorithms"));
        assert!(refused("Ciphers aes512-ctr\n").contains("cipher spec"));
        assert!(refused("Banner \"/etc/x\n").contains("invalid quotes"));
        assert!(refused("Match Bogus x\n").contains("Bad Match condition"));
        assert!(
            refused("AuthorizedKeysCommand /bin/true\n")
                .contains("without AuthorizedKeysCommandUser")
        );
        assert!(
            refused("PasswordAuthentication no\nAuthenticationMethods password\n")
                .contains("cannot be satisfied")
        );
        // sshd checks AuthenticationMethods against the start-up values,
        // before `Match all` turns password authentication off.
        assert!(settings(&root(&[(
            SSHD_CONFIG,
            "PasswordAuthentication yes\nAuthenticationMethods password\nMatch all\nPasswordAuthentication no\n"
        )]))
        .is_ok());
        // Global-only keywords are fine in an active `Match all`.
        assert!(settings(&root(&[(SSHD_CONFIG, "Match all\nCiphers aes128-ctr\n")])).is_ok());
    }

    #[test]
    fn defaults_follow_the_build() {
        let t = root(&[(SSHD_CONFIG, "\n")]);
        let kex = value(&t, "KexAlgorithms").unwrap().unwrap();
        assert!(
            kex.starts_with("sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"),
            "{kex}"
        );
        let fs = RootFs::new(t.path());
        let old = load(&fs, disk(&fs), build_of("1:9.2p1-2+deb12u3").unwrap()).unwrap();
        let kex = old
            .effective(keywords::keyword("kexalgorithms").unwrap())
            .unwrap()
            .value
            .unwrap();
        assert!(
            kex.starts_with("sntrup761x25519-sha512@openssh.com,curve25519"),
            "{kex}"
        );
        // And so does what the build accepts.
        let t = root(&[(SSHD_CONFIG, "KexAlgorithms sntrup761x25519-sha512\n")]);
        let fs = RootFs::new(t.path());
        assert!(load(&fs, disk(&fs), build_of("1:9.2p1-2+deb12u3").unwrap()).is_err());
        assert!(load(&fs, disk(&fs), build_of("1:9.2p1-2+deb12u4").unwrap()).is_ok());
        assert!(
            build_of("1:8.9p1-3ubuntu0.10")
                .unwrap_err()
                .0
                .contains("not known to Plumbline")
        );
    }
}
