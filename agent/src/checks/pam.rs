//! `kind = "pam"`: a module in one stack (`auth`, `account`, `password`,
//! `session`) of a PAM service, as Linux-PAM builds it from
//! `/etc/pam.d/SERVICE`:
//!
//! - `#` starts a comment, a trailing `\` continues the line; a line is
//!   `TYPE CONTROL MODULE ARGS...`, a leading `-` on the type meaning "skip
//!   silently if the module is missing"; a control or an argument may be a
//!   `[...]` group holding spaces; types and the control keywords compare
//!   case-insensitively (Linux-PAM uses `strcasecmp`), module names and
//!   arguments exactly;
//! - `TYPE include FILE` and `TYPE substack FILE` bring in FILE's lines of
//!   that TYPE, `@include FILE` all of FILE's lines (FILE relative to
//!   `/etc/pam.d`), recursively, up to 32 levels;
//! - a service without a file uses `/etc/pam.d/other`, as Linux-PAM does.
//!
//! A module is named by its file name without `.so` (`pam_unix`). An
//! `option` is read from the module's arguments (`remember=24`; a bare
//! flag reads `yes`), else from the module's own configuration files
//! (`pam_pwquality`: `/etc/security/pwquality.conf` then
//! `/etc/security/pwquality.conf.d/*.conf`; `pam_faillock`:
//! `/etc/security/faillock.conf`; `pam_pwhistory`:
//! `/etc/security/pwhistory.conf`), else from the module's compiled-in
//! default, and the evidence says which.

use super::{Ctx, Outcome};
use crate::key_value::split_line;
use plumb_core::check::PamCheck;

const PAM_D: &str = "/etc/pam.d";
const MAX_DEPTH: usize = 32;

/// A module's configuration files, read in order (later settings win).
const MODULE_CONF: &[(&str, &[&str])] = &[
    (
        "pam_pwquality",
        &[
            "/etc/security/pwquality.conf",
            "/etc/security/pwquality.conf.d/*.conf",
        ],
    ),
    ("pam_faillock", &["/etc/security/faillock.conf"]),
    ("pam_pwhistory", &["/etc/security/pwhistory.conf"]),
];

/// Compiled-in defaults of options the baseline asks about.
const MODULE_DEFAULTS: &[(&str, &str, &str)] = &[
    ("pam_pwquality", "minlen", "8"),
    ("pam_pwquality", "retry", "1"),
    ("pam_faillock", "deny", "3"),
    ("pam_faillock", "unlock_time", "600"),
    ("pam_faillock", "fail_interval", "900"),
    ("pam_pwhistory", "remember", "10"),
];

/// One line of the service's stack, includes resolved.
#[derive(Debug, Clone)]
struct Entry {
    control: String,
    module: String,
    args: Vec<String>,
    at: String,
}

/// `pam_unix` for `pam_unix.so`, `/lib/x86_64-linux-gnu/security/pam_unix.so`...
fn module_name(m: &str) -> &str {
    let base = m.rsplit('/').next().unwrap_or(m);
    base.strip_suffix(".so").unwrap_or(base)
}

/// Splits a PAM line into words, `[...]` groups kept whole.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut depth = 0usize;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if depth > 0 && chars.peek() == Some(&']') => {
                cur.push(']');
                chars.next();
            }
            '[' if cur.is_empty() && depth == 0 => depth = 1,
            ']' if depth > 0 => depth = 0,
            c if c.is_whitespace() && depth == 0 => {
                if !cur.is_empty() {
                    out.push(std::mem::take(&mut cur));
                }
            }
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn service_path(name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("{PAM_D}/{name}")
    }
}

/// The entries of stack `ty` from `path`, includes followed.
fn stack(
    ctx: &Ctx,
    path: &str,
    ty: &str,
    depth: usize,
    out: &mut Vec<Entry>,
    notes: &mut Vec<String>,
) -> Result<(), Outcome> {
    if depth > MAX_DEPTH {
        notes.push(format!("{path}: includes nested too deep, not read"));
        return Ok(());
    }
    let text = match ctx.fs.read_text(path) {
        Ok(t) => t,
        Err(e) if e.is_not_found() && depth > 0 => {
            notes.push(format!("{path} is included but does not exist"));
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
        let line = full.split('#').next().unwrap_or_default();
        let w = words(line);
        let Some(first) = w.first() else { continue };
        if first == "@include" {
            if let Some(f) = w.get(1) {
                stack(ctx, &service_path(f), ty, depth + 1, out, notes)?;
            }
            continue;
        }
        if !first.trim_start_matches('-').eq_ignore_ascii_case(ty) || w.len() < 3 {
            continue;
        }
        let control = &w[1];
        if control.eq_ignore_ascii_case("include") || control.eq_ignore_ascii_case("substack") {
            stack(ctx, &service_path(&w[2]), ty, depth + 1, out, notes)?;
            continue;
        }
        out.push(Entry {
            control: control.clone(),
            module: module_name(&w[2]).to_string(),
            args: w[3..].to_vec(),
            at: text.at(start),
        });
    }
    Ok(())
}

/// The control as compared: keywords lower-cased, `[...]` groups as written.
fn norm_control(c: &str) -> String {
    if c.contains('=') {
        c.split_whitespace().collect::<Vec<_>>().join(" ")
    } else {
        c.to_ascii_lowercase()
    }
}

/// `name=value` or bare `name` (`yes`) among a module's arguments; last wins.
fn arg_value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter().rev().find_map(|a| match a.split_once('=') {
        Some((k, v)) if k == name => Some(v),
        None if a == name => Some("yes"),
        _ => None,
    })
}

/// The option from the module's configuration files, with its location.
fn conf_value(ctx: &Ctx, module: &str, name: &str) -> Result<Option<(String, String)>, Outcome> {
    let Some((_, patterns)) = MODULE_CONF.iter().find(|(m, _)| *m == module) else {
        return Ok(None);
    };
    let mut found = None;
    for pattern in *patterns {
        let paths = ctx
            .fs
            .glob(pattern)
            .map_err(|e| Outcome::error(format!("cannot list {pattern}: {e}")))?;
        for p in paths {
            let text = ctx.fs.read_text(&p).map_err(|e| Outcome::read_error(&e))?;
            for (n, line) in text.numbered() {
                // libpwquality and pam_faillock cut comments anywhere.
                let line = line.split('#').next().unwrap_or_default();
                // Flags such as `enforce_for_root` stand alone on a line.
                let kv = split_line(line, Some("=")).or_else(|| {
                    let t = line.trim();
                    (!t.is_empty() && !t.starts_with('#')).then_some((t, "yes"))
                });
                if let Some((k, v)) = kv {
                    if k == name {
                        found = Some((v.to_string(), text.at(n)));
                    }
                }
            }
        }
    }
    Ok(found)
}

/// Evaluates a `pam` check.
pub fn evaluate(spec: &PamCheck, ctx: &Ctx) -> Outcome {
    if ctx.fs.lstat(PAM_D).is_err() {
        return Outcome::skipped(format!("PAM is not installed: {PAM_D} does not exist"));
    }
    let ty = spec.stack.name();
    let mut path = service_path(&spec.service);
    let mut notes = Vec::new();
    if ctx.fs.lstat(&path).is_err() {
        notes.push(format!(
            "{path} does not exist: Linux-PAM uses {PAM_D}/other"
        ));
        path = format!("{PAM_D}/other");
    }
    let mut entries = Vec::new();
    if let Err(o) = stack(ctx, &path, ty, 0, &mut entries, &mut notes) {
        return o;
    }
    let want = module_name(&spec.module);
    let mine: Vec<&Entry> = entries.iter().filter(|e| e.module == want).collect();
    let mut ev: Vec<String> = mine
        .iter()
        .map(|e| {
            let args = if e.args.is_empty() {
                String::new()
            } else {
                format!(" {}", e.args.join(" "))
            };
            format!("{ty} {} {want}{args} ({})", e.control, e.at)
        })
        .collect();
    if mine.is_empty() {
        ev.push(format!(
            "{want} is not in the {ty} stack of {}",
            spec.service
        ));
    }
    let mut ok = true;
    let present = !mine.is_empty();
    if spec.present == Some(false) {
        ev.extend(notes);
        return Outcome::verdict(!present, ev);
    }
    if !present {
        ev.extend(notes);
        return Outcome::fail(ev);
    }
    ok &= controls_and_order(spec, &entries, &mine, ty, &mut ev);
    ok &= arguments(spec, &mine, &mut ev);
    if let Some(name) = &spec.option {
        ok = match option(spec, ctx, &mine, name, ok, &mut ev) {
            Ok(ok) => ok,
            Err(o) => return o,
        };
    }
    ev.extend(notes);
    Outcome::verdict(ok, ev)
}

/// `control` and `before`: whether the module's lines have an allowed
/// control and come before the other module.
fn controls_and_order(
    spec: &PamCheck,
    entries: &[Entry],
    mine: &[&Entry],
    ty: &str,
    ev: &mut Vec<String>,
) -> bool {
    let want = module_name(&spec.module);
    let mut ok = true;
    if let Some(controls) = &spec.control {
        let allowed: Vec<String> = controls.iter().map(|c| norm_control(c)).collect();
        for e in mine {
            if !allowed.contains(&norm_control(&e.control)) {
                ok = false;
                ev.push(format!(
                    "{} has control {}, expected {}",
                    e.at,
                    e.control,
                    controls.join(" or ")
                ));
            }
        }
    }
    if let Some(other) = &spec.before {
        let other = module_name(other);
        let first_mine = entries.iter().position(|e| e.module == want);
        match entries.iter().position(|e| e.module == other) {
            Some(o) if first_mine.is_some_and(|m| m > o) => {
                ok = false;
                ev.push(format!("{other} ({}) comes before {want}", entries[o].at));
            }
            Some(_) => {}
            None => ev.push(format!("{other} is not in the {ty} stack")),
        }
    }
    ok
}

/// `args_include` and `args_exclude` on each of the module's lines.
fn arguments(spec: &PamCheck, mine: &[&Entry], ev: &mut Vec<String>) -> bool {
    let mut ok = true;
    for a in &spec.args_include {
        for e in mine {
            if !e.args.iter().any(|x| x == a) {
                ok = false;
                ev.push(format!("{} lacks argument {a}", e.at));
            }
        }
    }
    for a in &spec.args_exclude {
        for e in mine {
            let bad = e.args.iter().any(|x| {
                x == a || (!a.contains('=') && x.split_once('=').is_some_and(|(k, _)| k == a))
            });
            if bad {
                ok = false;
                ev.push(format!("{} carries argument {a}", e.at));
            }
        }
    }
    ok
}

/// `option`: the module option `name` on each line (argument, then the
/// module's configuration file, then its compiled-in default) compared.
/// `ok` is the verdict so far: the comparison is shown when it is false.
fn option(
    spec: &PamCheck,
    ctx: &Ctx,
    mine: &[&Entry],
    name: &str,
    mut ok: bool,
    ev: &mut Vec<String>,
) -> Result<bool, Outcome> {
    let want = module_name(&spec.module);
    let cmp = spec
        .comparison()
        .map_err(|e| Outcome::error(format!("invalid check: {e}")))?;
    let conf = conf_value(ctx, want, name)?;
    let builtin = MODULE_DEFAULTS
        .iter()
        .find(|(m, o, _)| *m == want && *o == name)
        .map(|(_, _, v)| *v);
    for e in mine {
        let (value, from) = match (arg_value(&e.args, name), &conf, builtin) {
            (Some(v), _, _) => (Some(v.to_string()), format!("argument at {}", e.at)),
            (None, Some((v, at)), _) => (Some(v.clone()), at.clone()),
            (None, None, Some(d)) => (Some(d.to_string()), format!("{want}'s compiled-in default")),
            (None, None, None) => (None, "not set".into()),
        };
        let holds = cmp.holds(value.as_deref(), false);
        ok &= holds;
        ev.push(match value {
            Some(v) => format!("{name}={v} for {} ({from})", e.at),
            None => format!("{name} not set for {}", e.at),
        });
    }
    if !ok {
        ev.push(cmp.to_string());
    }
    Ok(ok)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::check::PamType;
    use plumb_core::report::Status;
    use std::fs;
    use std::path::Path;

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn spec(service: &str, stack: PamType, module: &str) -> PamCheck {
        PamCheck {
            service: service.into(),
            stack,
            module: module.into(),
            present: None,
            control: None,
            before: None,
            args_include: vec![],
            args_exclude: vec![],
            option: None,
            equals: None,
            one_of: None,
            min: None,
            max: None,
            absent: None,
            excludes: None,
        }
    }

    fn debian(r: &Path) {
        put(
            r,
            "/etc/pam.d/common-auth",
            "auth\trequired\tpam_faillock.so preauth\n\
             auth\t[success=1 default=ignore]\tpam_unix.so nullok\n\
             auth\t[default=die]\tpam_faillock.so authfail\n\
             auth\trequisite\t\t\tpam_deny.so\n\
             auth\trequired\t\t\tpam_permit.so\n",
        );
        put(
            r,
            "/etc/pam.d/common-password",
            "password requisite pam_pwquality.so retry=3\n\
             password [success=1 default=ignore] pam_unix.so obscure use_authtok try_first_pass yescrypt\n\
             password requisite pam_deny.so\n",
        );
        put(
            r,
            "/etc/pam.d/login",
            "auth optional pam_faildelay.so delay=3000000\n@include common-auth\n",
        );
        put(
            r,
            "/etc/pam.d/sshd",
            "# PAM for sshd\n@include login\npassword substack common-password\n",
        );
    }

    #[test]
    fn include_chains_and_ordering() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        debian(r);
        let ctx = Ctx::new(r, None);
        let s = PamCheck {
            before: Some("pam_unix".into()),
            ..spec("sshd", PamType::Auth, "pam_faillock.so")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert_eq!(
            out.evidence,
            vec![
                "auth required pam_faillock preauth (/etc/pam.d/common-auth:1)",
                "auth default=die pam_faillock authfail (/etc/pam.d/common-auth:3)"
            ]
        );
        let s = PamCheck {
            args_exclude: vec!["nullok".into()],
            ..spec("sshd", PamType::Auth, "pam_unix")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[1],
            "/etc/pam.d/common-auth:2 carries argument nullok"
        );
        // pam_pwquality reached through a substack, not in the auth stack.
        let s = PamCheck {
            present: Some(true),
            ..spec("sshd", PamType::Password, "pam_pwquality")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        let s = PamCheck {
            present: Some(true),
            ..spec("sshd", PamType::Auth, "pam_pwquality")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Fail);
        // Reordered: pam_unix first.
        put(
            r,
            "/etc/pam.d/common-auth",
            "auth sufficient pam_unix.so\nauth required pam_faillock.so authfail\n",
        );
        let s = PamCheck {
            before: Some("pam_unix".into()),
            ..spec("login", PamType::Auth, "pam_faillock")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[1],
            "pam_unix (/etc/pam.d/common-auth:1) comes before pam_faillock"
        );
    }

    #[test]
    fn options_from_arguments_then_conf_then_default() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        debian(r);
        let ctx = Ctx::new(r, None);
        let s = PamCheck {
            option: Some("minlen".into()),
            min: Some(14),
            ..spec("common-password", PamType::Password, "pam_pwquality")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence[1],
            "minlen=8 for /etc/pam.d/common-password:1 (pam_pwquality's compiled-in default)"
        );
        put(
            r,
            "/etc/security/pwquality.conf",
            "# minlen = 8\nminlen = 14 # CIS\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence[1],
            "minlen=14 for /etc/pam.d/common-password:1 (/etc/security/pwquality.conf:2)"
        );
        put(
            r,
            "/etc/pam.d/common-password",
            "password requisite pam_pwquality.so minlen=10\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        let s = PamCheck {
            args_include: vec!["remember=24".into()],
            ..spec("common-password", PamType::Password, "pam_pwhistory")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Fail);
    }

    #[test]
    fn controls_compare_case_insensitively_and_missing_services_use_other() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/pam.d/su",
            "AUTH   Required   pam_wheel.so use_uid\n",
        );
        put(r, "/etc/pam.d/other", "auth required pam_deny.so\n");
        let ctx = Ctx::new(r, None);
        let s = PamCheck {
            control: Some(vec!["required".into(), "requisite".into()]),
            args_include: vec!["use_uid".into()],
            ..spec("su", PamType::Auth, "pam_wheel")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        let s = PamCheck {
            present: Some(true),
            ..spec("nosuch", PamType::Auth, "pam_deny")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence[1],
            "/etc/pam.d/nosuch does not exist: Linux-PAM uses /etc/pam.d/other"
        );
    }
}
