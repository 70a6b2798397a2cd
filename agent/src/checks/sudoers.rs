//! `kind = "sudoers"`: what sudo computes from `/etc/sudoers` and the files
//! it includes, as sudo 1.9 reads them:
//!
//! - `@include FILE` / `#include FILE` read one file (a relative name is
//!   relative to the including file's directory); `@includedir DIR` /
//!   `#includedir DIR` read every file of DIR in name order, skipping names
//!   that end in `~` or contain a `.` (so `/etc/sudoers.d/old.bak` is
//!   ignored, as sudo ignores it); nesting stops at 128 levels, as sudo's;
//! - other `#` lines and the rest of a line after an unquoted `#` are
//!   comments; a trailing `\` continues the line;
//! - `Defaults` lines anywhere set parameters, the last one winning: `name`
//!   is a flag turned on (`yes`), `!name` turns it off (`no` for the
//!   flags sudo knows, unset for the others, such as `!logfile`),
//!   `name=value` sets it. A `Defaults:user`, `Defaults@host`,
//!   `Defaults>runas` or `Defaults!cmd` line applies to some users or
//!   commands only: the check holds when the global value and every such
//!   scoped value satisfy the comparison. A parameter never set has sudo's
//!   compiled-in default (Debian 12's sudo 1.9.13: `use_pty` off,
//!   `authenticate` on, `timestamp_timeout` 15), and the evidence says so;
//! - user specifications (every other line but aliases) that carry a
//!   `NOPASSWD:` tag let commands run without a password.
//!
//! Names and values compare case-sensitively, as sudo reads them.

use super::{Ctx, Outcome};
use plumb_core::check::SudoersCheck;

const MAIN: &str = "/etc/sudoers";
const MAX_DEPTH: usize = 128;

/// Flags whose `!name` means `no` rather than "unset".
const FLAGS: &[&str] = &[
    "authenticate",
    "use_pty",
    "requiretty",
    "log_input",
    "log_output",
    "env_reset",
    "mail_badpass",
    "visiblepw",
    "targetpw",
    "rootpw",
    "runaspw",
    "lecture",
    "insults",
    "noexec",
    "log_allowed",
    "log_denied",
    "setenv",
];

/// Compiled-in defaults (sudo 1.9.13 as Debian 12 builds it).
const DEFAULTS: &[(&str, &str)] = &[
    ("authenticate", "yes"),
    ("use_pty", "no"),
    ("requiretty", "no"),
    ("timestamp_timeout", "15"),
    ("env_reset", "yes"),
    ("visiblepw", "no"),
];

/// A logical line of a sudoers file, continuation lines joined.
#[derive(Debug)]
struct Line {
    text: String,
    at: String,
}

/// One `Defaults` assignment.
#[derive(Debug)]
struct Setting {
    /// `None` for a global `Defaults` line; the binding (`:bob`) otherwise.
    scope: Option<String>,
    value: Option<String>,
    written: String,
    at: String,
}

/// Everything the check needs from the parsed files.
#[derive(Debug, Default)]
struct Sudoers {
    lines: Vec<Line>,
    notes: Vec<String>,
}

/// Strips an unquoted `#` comment (but not `#include` or a `#uid`).
fn strip_comment(l: &str) -> &str {
    let mut quoted = false;
    let b = l.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        match c {
            b'"' => quoted = !quoted,
            b'#' if !quoted => {
                // `#123` is a user id in a user list, not a comment.
                if b.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    continue;
                }
                return &l[..i];
            }
            _ => {}
        }
    }
    l
}

fn dir_of(path: &str) -> &str {
    path.rsplit_once('/')
        .map_or("/", |(d, _)| if d.is_empty() { "/" } else { d })
}

fn resolve_rel(from: &str, target: &str) -> String {
    if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{}/{target}", dir_of(from).trim_end_matches('/'))
    }
}

impl Sudoers {
    fn load(ctx: &Ctx) -> Result<Sudoers, Outcome> {
        let mut s = Sudoers::default();
        s.read(ctx, MAIN, 0)?;
        Ok(s)
    }

    fn read(&mut self, ctx: &Ctx, path: &str, depth: usize) -> Result<(), Outcome> {
        if depth > MAX_DEPTH {
            self.notes.push(format!(
                "{path}: includes nested too deep, not read (sudo refuses them)"
            ));
            return Ok(());
        }
        let text = match ctx.fs.read_text(path) {
            Ok(t) => t,
            Err(e) if e.is_not_found() && depth > 0 => {
                self.notes
                    .push(format!("{path} is included but does not exist"));
                return Ok(());
            }
            Err(e) => return Err(Outcome::read_error(&e)),
        };
        let mut pending = String::new();
        let mut start = 0;
        for (n, raw) in text.numbered() {
            if pending.is_empty() {
                start = n;
            }
            if let Some(head) = raw.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(raw);
            let full = std::mem::take(&mut pending);
            let t = full.trim();
            let at = text.at(start);
            let words: Vec<&str> = t.split_whitespace().collect();
            match words.first().copied() {
                Some("@include" | "#include") if words.len() >= 2 => {
                    let target = resolve_rel(path, words[1].trim_matches('"'));
                    self.read(ctx, &target, depth + 1)?;
                }
                Some("@includedir" | "#includedir") if words.len() >= 2 => {
                    let dir = resolve_rel(path, words[1].trim_matches('"'));
                    let entries = match ctx.fs.list_dir(&dir) {
                        Ok(e) => e,
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                            self.notes
                                .push(format!("{dir} (included at {at}) does not exist"));
                            continue;
                        }
                        Err(e) => return Err(Outcome::error(format!("cannot list {dir}: {e}"))),
                    };
                    for f in entries {
                        let name = f.rsplit('/').next().unwrap_or_default();
                        if name.ends_with('~') || name.contains('.') {
                            self.notes.push(format!(
                                "{f} ignored: sudo skips names with '.' or ending in '~'"
                            ));
                            continue;
                        }
                        if ctx.fs.stat(&f).is_ok_and(|m| m.is_file()) {
                            self.read(ctx, &f, depth + 1)?;
                        }
                    }
                }
                _ => {
                    let body = strip_comment(t).trim();
                    if !body.is_empty() {
                        self.lines.push(Line {
                            text: body.to_string(),
                            at,
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// Every `Defaults` assignment of `name`, in file order.
    fn settings(&self, name: &str) -> Vec<Setting> {
        let mut out = Vec::new();
        for l in &self.lines {
            let Some(rest) = l.text.strip_prefix("Defaults") else {
                continue;
            };
            let (scope, list) = match rest.chars().next() {
                Some(c) if c.is_whitespace() => (None, rest),
                Some(':' | '@' | '>' | '!') => {
                    let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
                    (Some(rest[..end].to_string()), &rest[end..])
                }
                _ => continue,
            };
            for item in split_list(list) {
                let item = item.trim();
                let (negated, item) = match item.strip_prefix('!') {
                    Some(i) => (true, i.trim_start()),
                    None => (false, item),
                };
                let (key, value) = match item.split_once('=') {
                    Some((k, v)) => (
                        k.trim_end_matches(['+', '-']).trim(),
                        Some(v.trim().trim_matches('"').to_string()),
                    ),
                    None => (item.trim(), None),
                };
                if key != name {
                    continue;
                }
                let value = match (negated, value) {
                    (true, _) if FLAGS.contains(&key) => Some("no".to_string()),
                    (true, _) => None,
                    (false, None) => Some("yes".to_string()),
                    (false, Some(v)) => Some(v),
                };
                out.push(Setting {
                    scope: scope.clone(),
                    value,
                    written: format!(
                        "Defaults{} {}{item}",
                        scope.as_deref().unwrap_or(""),
                        if negated { "!" } else { "" }
                    ),
                    at: l.at.clone(),
                });
            }
        }
        out
    }

    /// User specifications carrying `NOPASSWD:`.
    fn nopasswd(&self) -> Vec<&Line> {
        const ALIASES: &[&str] = &[
            "User_Alias",
            "Runas_Alias",
            "Host_Alias",
            "Cmnd_Alias",
            "Cmd_Alias",
        ];
        self.lines
            .iter()
            .filter(|l| {
                let first = l.text.split_whitespace().next().unwrap_or_default();
                !first.starts_with("Defaults") && !ALIASES.contains(&first)
            })
            .filter(|l| {
                l.text.match_indices("NOPASSWD").any(|(i, _)| {
                    l.text[i + 8..].trim_start().starts_with(':')
                        && (i == 0 || !l.text.as_bytes()[i - 1].is_ascii_alphanumeric())
                })
            })
            .collect()
    }
}

/// Splits a Defaults list on commas outside double quotes.
fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

/// Evaluates a `sudoers` check.
pub fn evaluate(spec: &SudoersCheck, ctx: &Ctx) -> Outcome {
    if ctx.fs.lstat(MAIN).is_err() {
        return Outcome::skipped(format!("sudo is not installed: {MAIN} does not exist"));
    }
    let sudoers = match Sudoers::load(ctx) {
        Ok(s) => s,
        Err(o) => return o,
    };
    if let Some(want) = spec.nopasswd {
        let found = sudoers.nopasswd();
        let mut ev: Vec<String> = found
            .iter()
            .map(|l| {
                let folded: Vec<&str> = l.text.split_whitespace().collect();
                format!("NOPASSWD: {} ({})", folded.join(" "), l.at)
            })
            .collect();
        if found.is_empty() {
            ev.push("no user specification carries NOPASSWD".into());
        }
        ev.extend(sudoers.notes.iter().cloned());
        return Outcome::verdict(found.is_empty() != want, ev);
    }
    let Some(name) = spec.defaults.as_deref() else {
        return Outcome::error("invalid check: give either defaults or nopasswd");
    };
    let cmp = match spec.comparison() {
        Ok(c) => c,
        Err(e) => return Outcome::error(format!("invalid check: {e}")),
    };
    let settings = sudoers.settings(name);
    let global = settings.iter().rfind(|s| s.scope.is_none());
    let builtin = DEFAULTS.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let mut ev = Vec::new();
    let global_value = match global {
        Some(s) => {
            ev.push(format!("{} ({})", s.written, s.at));
            s.value.clone()
        }
        None => {
            ev.push(match builtin {
                Some(v) => {
                    format!("Defaults {name} not set: sudo's compiled-in default {v} applies")
                }
                None => format!("Defaults {name} not set"),
            });
            builtin.map(str::to_string)
        }
    };
    let mut ok = cmp.holds(global_value.as_deref(), false);
    for s in settings.iter().filter(|s| s.scope.is_some()) {
        let holds = cmp.holds(s.value.as_deref(), false);
        ok &= holds;
        ev.push(format!(
            "{} ({}){}",
            s.written,
            s.at,
            if holds {
                ""
            } else {
                ": for some users or commands"
            }
        ));
    }
    ev.extend(sudoers.notes);
    if !ok {
        ev.push(cmp.to_string());
    }
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;
    use std::fs;
    use std::path::Path;

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn defaults(name: &str) -> SudoersCheck {
        SudoersCheck {
            defaults: Some(name.into()),
            nopasswd: None,
            equals: None,
            one_of: None,
            min: None,
            max: None,
            absent: None,
            excludes: None,
        }
    }

    #[test]
    fn includedir_skips_dotted_and_tilde_names() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/sudoers",
            "Defaults\tenv_reset\nroot ALL=(ALL:ALL) ALL\n@includedir /etc/sudoers.d\n",
        );
        put(r, "/etc/sudoers.d/old.bak", "bob ALL=(ALL) NOPASSWD: ALL\n");
        put(r, "/etc/sudoers.d/ops~", "bob ALL=(ALL) NOPASSWD: ALL\n");
        let ctx = Ctx::new(r, None);
        let s = SudoersCheck {
            nopasswd: Some(false),
            ..defaults("x")
        };
        let s = SudoersCheck {
            defaults: None,
            ..s
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert!(
            out.evidence
                .iter()
                .any(|e| e.starts_with("/etc/sudoers.d/old.bak ignored"))
        );
        put(
            r,
            "/etc/sudoers.d/ops",
            "# NOPASSWD: in a comment\n%ops ALL=(ALL) \\\n  NOPASSWD: /usr/bin/systemctl\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[0],
            "NOPASSWD: %ops ALL=(ALL) NOPASSWD: /usr/bin/systemctl (/etc/sudoers.d/ops:2)"
        );
    }

    #[test]
    fn defaults_anywhere_last_wins_and_scoped_ones_count() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/sudoers",
            "Defaults use_pty\n#includedir /etc/sudoers.d\n@include extra\n",
        );
        put(
            r,
            "/etc/sudoers.d/log",
            "Defaults logfile=\"/var/log/sudo.log\", !lecture\n",
        );
        put(r, "/etc/extra", "Defaults timestamp_timeout=30\n");
        let ctx = Ctx::new(r, None);
        let s = SudoersCheck {
            equals: Some(Scalar::Bool(true)),
            ..defaults("use_pty")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(out.evidence, vec!["Defaults use_pty (/etc/sudoers:1)"]);
        let s = SudoersCheck {
            absent: Some(false),
            ..defaults("logfile")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert_eq!(
            out.evidence[0],
            "Defaults logfile=\"/var/log/sudo.log\" (/etc/sudoers.d/log:1)"
        );
        let s = SudoersCheck {
            min: Some(0),
            max: Some(15),
            ..defaults("timestamp_timeout")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[0],
            "Defaults timestamp_timeout=30 (/etc/extra:1)"
        );
        // A scoped !authenticate fails the rule; unset means the default.
        let s = SudoersCheck {
            equals: Some(Scalar::Bool(true)),
            ..defaults("authenticate")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence,
            vec!["Defaults authenticate not set: sudo's compiled-in default yes applies"]
        );
        put(r, "/etc/sudoers.d/bob", "Defaults:bob !authenticate\n");
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[1],
            "Defaults:bob !authenticate (/etc/sudoers.d/bob:1): for some users or commands"
        );
    }

    #[test]
    fn no_sudoers_is_skipped() {
        let t = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(t.path(), None);
        assert_eq!(evaluate(&defaults("use_pty"), &ctx).status, Status::Skipped);
    }
}
