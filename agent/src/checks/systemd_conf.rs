//! `kind = "systemd_conf"`: one setting of a systemd configuration file
//! (`journald.conf`, `logind.conf`, `coredump.conf`, `resolved.conf`,
//! `timesyncd.conf`, `system.conf`...) or of a unit, read as systemd 252+
//! reads it:
//!
//! - the main file is the first of `/etc/X`, `/run/X`, `/usr/local/lib/X`,
//!   `/usr/lib/X` that exists (systemd 252 reads only `/etc/X`; Debian 12
//!   ships nothing elsewhere, so both agree there); for a unit, the first
//!   `UNIT` in the unit directories, a symlink to `/dev/null` masking it;
//! - then the drop-ins `X.d/*.conf` (units: `UNIT.d/*.conf`, the template's
//!   `NAME@.TYPE.d/` for an instance, and the type-wide `TYPE.d/`) of every
//!   directory, same-named files shadowed by the one in the directory of
//!   higher precedence (`/etc` > `/run` > `/usr/local/lib` > `/usr/lib`),
//!   applied in file-name order, a drop-in symlinked to `/dev/null` hiding
//!   its namesakes;
//! - lines are `Key=Value` under a `[Section]`; `#` and `;` start comments;
//!   a trailing `\` continues the line; the last assignment wins and an
//!   empty assignment (`Key=`) resets the key to its default.
//!
//! Sections and keys compare exactly, as systemd does. Values compare
//! exactly, except booleans: systemd accepts `1/yes/y/true/t/on` and
//! `0/no/n/false/f/off` in any case, so both sides are normalized to
//! `yes`/`no` when they read as booleans.

use super::{Ctx, Outcome};
use plumb_core::check::SystemdConfCheck;
use plumb_core::compare::Comparison;
use std::path::Path;

/// Configuration directories, highest precedence first.
const CONF_DIRS: &[&str] = &["/etc", "/run", "/usr/local/lib", "/usr/lib"];

/// Unit directories (system manager), highest precedence first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// The value of a key after every file was read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Setting {
    value: String,
    at: String,
}

/// Whether a drop-in or unit path is a symlink to `/dev/null` (masked).
fn masked(ctx: &Ctx, path: &str) -> bool {
    ctx.fs
        .resolve(path, false)
        .is_ok_and(|host| std::fs::read_link(host).is_ok_and(|t| t == Path::new("/dev/null")))
}

/// The files systemd reads, in order: main file (if any), then drop-ins.
fn files(ctx: &Ctx, spec: &SystemdConfCheck) -> Result<(Vec<String>, Vec<String>), String> {
    let mut notes = Vec::new();
    let mut out = Vec::new();
    let drop_in_dirs: Vec<String> = match (&spec.path, &spec.unit) {
        (Some(path), _) => {
            let rel = path
                .strip_prefix("/etc/")
                .unwrap_or(path.trim_start_matches('/'));
            if let Some(main) = CONF_DIRS
                .iter()
                .map(|d| format!("{d}/{rel}"))
                .find(|p| ctx.fs.lstat(p).is_ok())
            {
                out.push(main);
            }
            CONF_DIRS.iter().map(|d| format!("{d}/{rel}.d")).collect()
        }
        (None, Some(unit)) => {
            let (name, ty) = unit.rsplit_once('.').unwrap_or((unit, ""));
            // An instance without a unit file of its own is its template.
            let template = name
                .split_once('@')
                .filter(|(_, i)| !i.is_empty())
                .map(|(p, _)| format!("{p}@.{ty}"));
            let main = [Some(unit.clone()), template]
                .into_iter()
                .flatten()
                .flat_map(|u| UNIT_DIRS.iter().map(move |d| format!("{d}/{u}")))
                .find(|p| ctx.fs.lstat(p).is_ok());
            match main {
                Some(m) if masked(ctx, &m) => notes.push(format!("{unit} is masked ({m})")),
                Some(m) => out.push(m),
                None => notes.push(format!("{unit} not found in the unit directories")),
            }
            // Type-wide drop-ins first, then the template's, then the unit's:
            // systemd sorts all drop-ins by file name anyway.
            let mut names = vec![format!("{ty}.d")];
            if let Some((prefix, instance)) = name.split_once('@') {
                if !instance.is_empty() {
                    names.push(format!("{prefix}@.{ty}.d"));
                }
            }
            names.push(format!("{unit}.d"));
            UNIT_DIRS
                .iter()
                .flat_map(|d| names.iter().map(move |n| format!("{d}/{n}")))
                .collect()
        }
        (None, None) => return Err("invalid check: give either path or unit".into()),
    };
    // Same-named drop-ins shadow each other across directories by
    // precedence (dirs are listed highest first); a /dev/null one hides.
    let mut by_name: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for dir in &drop_in_dirs {
        let entries = match ctx.fs.list_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(format!("cannot list {dir}: {e}")),
        };
        for path in entries {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            if !name.ends_with(".conf") || by_name.contains_key(&name) {
                continue;
            }
            if masked(ctx, &path) {
                notes.push(format!("{path} is masked (symlink to /dev/null)"));
                by_name.insert(name, None);
            } else {
                by_name.insert(name, Some(path));
            }
        }
    }
    out.extend(by_name.into_values().flatten());
    Ok((out, notes))
}

/// Reads the key from the files in order; the last assignment wins.
fn read(ctx: &Ctx, files: &[String], section: &str, key: &str) -> Result<Option<Setting>, Outcome> {
    let mut found = None;
    for f in files {
        let text = match ctx.fs.read_text(f) {
            Ok(t) => t,
            Err(e) => return Err(Outcome::read_error(&e)),
        };
        let mut current = String::new();
        let mut pending = String::new();
        let mut start = 0;
        for (n, line) in text.numbered() {
            if pending.is_empty() {
                start = n;
                let t = line.trim_start();
                if t.starts_with('#') || t.starts_with(';') {
                    continue;
                }
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            let l = full.trim();
            if let Some(name) = l.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
                current = name.to_string();
                continue;
            }
            let Some((k, v)) = l.split_once('=') else {
                continue;
            };
            if current == section && k.trim() == key {
                let v = v.trim();
                found = if v.is_empty() {
                    None
                } else {
                    Some(Setting {
                        value: v.to_string(),
                        at: text.at(start),
                    })
                };
            }
        }
    }
    Ok(found)
}

/// `yes`/`no` for a value systemd reads as a boolean, else the value.
fn normalize(v: &str) -> String {
    match v.to_ascii_lowercase().as_str() {
        "1" | "yes" | "y" | "true" | "t" | "on" => "yes".into(),
        "0" | "no" | "n" | "false" | "f" | "off" => "no".into(),
        _ => v.to_string(),
    }
}

/// The comparison with its expected values normalized as observed ones are.
fn normalized(c: Comparison) -> Comparison {
    match c {
        Comparison::Equals(v) => Comparison::Equals(normalize(&v)),
        Comparison::OneOf(vs) => Comparison::OneOf(vs.iter().map(|v| normalize(v)).collect()),
        Comparison::Excludes(vs) => Comparison::Excludes(vs.iter().map(|v| normalize(v)).collect()),
        other => other,
    }
}

/// Evaluates a `systemd_conf` check.
pub fn evaluate(spec: &SystemdConfCheck, ctx: &Ctx) -> Outcome {
    let cmp = match spec.comparison() {
        Ok(c) => normalized(c),
        Err(e) => return Outcome::error(format!("invalid check: {e}")),
    };
    let (files, notes) = match files(ctx, spec) {
        Ok(f) => f,
        Err(e) => return Outcome::error(e),
    };
    let found = match read(ctx, &files, &spec.section, &spec.key) {
        Ok(f) => f,
        Err(o) => return o,
    };
    let observed = found.as_ref().map(|s| normalize(&s.value));
    let holds = match (&cmp, observed.as_deref()) {
        // Numbers compare as numbers: no boolean folding of "1"/"0".
        (Comparison::Range { .. }, _) => cmp.holds(found.as_ref().map(|s| s.value.as_str()), false),
        (_, o) => cmp.holds(o, false),
    };
    let what = format!("[{}] {}", spec.section, spec.key);
    let mut ev = vec![match &found {
        Some(s) => format!("{what}={} ({})", s.value, s.at),
        None if files.is_empty() => format!("{what} not set: no configuration file exists"),
        None => format!(
            "{what} not set in {} (systemd's built-in default applies)",
            files.join(", ")
        ),
    }];
    ev.extend(notes);
    if !holds {
        ev.push(cmp.to_string());
    }
    Outcome::verdict(holds, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;
    use std::fs;

    fn spec(path: &str, section: &str, key: &str, equals: &str) -> SystemdConfCheck {
        SystemdConfCheck {
            path: Some(path.into()),
            unit: None,
            section: section.into(),
            key: key.into(),
            equals: Some(Scalar::Str(equals.into())),
            one_of: None,
            min: None,
            max: None,
            absent: None,
            excludes: None,
        }
    }

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    #[test]
    fn drop_ins_override_the_main_file_by_name_and_precedence() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/systemd/journald.conf",
            "[Journal]\n#Storage=auto\nStorage=volatile\n",
        );
        let ctx = Ctx::new(r, None);
        let s = spec(
            "/etc/systemd/journald.conf",
            "Journal",
            "Storage",
            "persistent",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec![
                "[Journal] Storage=volatile (/etc/systemd/journald.conf:3)",
                "expected \"persistent\""
            ]
        );
        // A drop-in wins over the main file.
        put(
            r,
            "/usr/lib/systemd/journald.conf.d/50-a.conf",
            "[Journal]\nStorage=persistent\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        // The same name under /etc shadows the /usr/lib one, even when it
        // does not set the key.
        put(
            r,
            "/etc/systemd/journald.conf.d/50-a.conf",
            "[Journal]\nCompress=yes\n",
        );
        assert_eq!(evaluate(&s, &ctx).status, Status::Fail);
        // A later name wins per key; the wrong section does not count.
        put(
            r,
            "/run/systemd/journald.conf.d/60-b.conf",
            "[Other]\nStorage=volatile\n[Journal]\nStorage=persistent\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence,
            vec!["[Journal] Storage=persistent (/run/systemd/journald.conf.d/60-b.conf:4)"]
        );
        // An empty assignment resets to the default.
        put(
            r,
            "/etc/systemd/journald.conf.d/70-c.conf",
            "[Journal]\nStorage=\n",
        );
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert!(
            out.evidence[0].contains("built-in default"),
            "{:?}",
            out.evidence
        );
    }

    #[test]
    fn masked_drop_ins_hide_their_namesakes() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/systemd/journald.conf",
            "[Journal]\nStorage=persistent\n",
        );
        put(
            r,
            "/usr/lib/systemd/journald.conf.d/10-v.conf",
            "[Journal]\nStorage=volatile\n",
        );
        let ctx = Ctx::new(r, None);
        let s = spec(
            "/etc/systemd/journald.conf",
            "Journal",
            "Storage",
            "persistent",
        );
        assert_eq!(evaluate(&s, &ctx).status, Status::Fail);
        fs::create_dir_all(r.join("etc/systemd/journald.conf.d")).unwrap();
        std::os::unix::fs::symlink("/dev/null", r.join("etc/systemd/journald.conf.d/10-v.conf"))
            .unwrap();
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence,
            vec![
                "[Journal] Storage=persistent (/etc/systemd/journald.conf:2)",
                "/etc/systemd/journald.conf.d/10-v.conf is masked (symlink to /dev/null)"
            ]
        );
    }

    #[test]
    fn booleans_fold_but_other_values_are_exact() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/systemd/coredump.conf",
            "[Coredump]\nStorage=None\nProcessSizeMax=0\n; comment\nCompress=\\\n  off\n",
        );
        let ctx = Ctx::new(r, None);
        let s = spec("/etc/systemd/coredump.conf", "Coredump", "Storage", "none");
        assert_eq!(
            evaluate(&s, &ctx).status,
            Status::Fail,
            "Storage is case-sensitive"
        );
        let s = SystemdConfCheck {
            equals: None,
            excludes: Some(vec![Scalar::Bool(false)]),
            ..spec("/etc/systemd/coredump.conf", "Coredump", "Compress", "")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail, "{:?}", out.evidence);
        assert_eq!(
            out.evidence[0],
            "[Coredump] Compress=off (/etc/systemd/coredump.conf:5)"
        );
        let s = SystemdConfCheck {
            equals: None,
            max: Some(0),
            ..spec(
                "/etc/systemd/coredump.conf",
                "Coredump",
                "ProcessSizeMax",
                "",
            )
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }

    #[test]
    fn units_read_template_and_type_drop_ins() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/usr/lib/systemd/system/tmp.mount",
            "[Mount]\nOptions=mode=1777,strictatime\n",
        );
        put(
            r,
            "/etc/systemd/system/tmp.mount.d/options.conf",
            "[Mount]\nOptions=mode=1777,nosuid,nodev,noexec\n",
        );
        let ctx = Ctx::new(r, None);
        let s = SystemdConfCheck {
            path: None,
            unit: Some("tmp.mount".into()),
            ..spec("", "Mount", "Options", "mode=1777,nosuid,nodev,noexec")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        put(
            r,
            "/usr/lib/systemd/system/getty@.service",
            "[Service]\nRestart=always\n",
        );
        put(
            r,
            "/etc/systemd/system/getty@.service.d/x.conf",
            "[Service]\nRestart=no\n",
        );
        let s = SystemdConfCheck {
            path: None,
            unit: Some("getty@tty1.service".into()),
            ..spec("", "Service", "Restart", "no")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
    }
}
