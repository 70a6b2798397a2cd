//! `sysctl_set`: the runtime value through `PROC/sys` (when there is a proc
//! directory for the root) and the boot-time value in the Plumbline-owned
//! `/etc/sysctl.d/60-plumbline.conf`, where the key's line is replaced if
//! present and appended otherwise. The boot-time configuration is then
//! read as the `sysctl` check reads it ([`crate::sysctl_d`]), with the
//! planned file in place: a line elsewhere that would still decide the
//! value at boot is named in a note.

use super::plan::{self, Op, Plan, PlanError, View};
use crate::rootfs::RootFs;
use crate::sysctl_d::{self, Boot, Config, dotted, normalize};
use plumb_core::compare::Scalar;

/// The file this action owns.
pub const OWNED: &str = "/etc/sysctl.d/60-plumbline.conf";
const HEADER: &str = "# Written by Plumbline (plumb remediate): kernel parameters the baseline sets.\n# Lines here are replaced when the baseline's value changes.\n";

/// Plans setting `key` to `value`.
pub fn plan(view: &View, key: &str, value: &Scalar) -> Result<Plan, PlanError> {
    let value = value.as_text();
    plan::one_line("value", &value)?;
    let norm = normalize(key);
    if norm.is_empty()
        || !norm
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-' | '*'))
        || norm.split('/').any(|c| c.is_empty() || c == "..")
    {
        return Err(format!("\"{key}\" is not a kernel parameter name").into());
    }
    let name = dotted(&norm);
    let mut p = Plan::default();

    match &view.ctx.proc {
        None => p.notes.push(format!(
            "{name}: runtime value not changed: no proc directory for this root (persistent setting only)"
        )),
        Some(proc) => {
            let fs = RootFs::new(proc);
            let keys = if crate::rootfs::has_glob_chars(&norm) {
                fs.glob(&format!("/sys/{norm}"))
                    .map_err(|e| format!("cannot list {}/sys/{norm}: {e}", proc.display()))?
            } else {
                vec![format!("/sys/{norm}")]
            };
            for k in keys {
                let host = fs
                    .resolve(&k, false)
                    .map_err(|e| format!("{}{k}: {e}", proc.display()))?;
                match fs.read(&k) {
                    Ok(b) => {
                        let old = String::from_utf8_lossy(&b)
                            .split_whitespace()
                            .collect::<Vec<_>>()
                            .join(" ");
                        if old != value.split_whitespace().collect::<Vec<_>>().join(" ") {
                            p.ops.push(Op::SysctlRuntime {
                                key: dotted(k.trim_start_matches("/sys/")),
                                host,
                                old,
                                new: value.clone(),
                            });
                        }
                    }
                    Err(e) if e.is_not_found() => p.notes.push(format!(
                        "{name}: no such parameter in this kernel ({}{k}); persistent setting only",
                        proc.display()
                    )),
                    Err(e) => return Err(format!("cannot read {}{e}", proc.display()).into()),
                }
            }
        }
    }

    let old = view.read(OWNED)?;
    let line = format!("{name} = {value}");
    let mut new = Vec::new();
    let mut done = false;
    match &old {
        None => new.extend_from_slice(HEADER.as_bytes()),
        Some(bytes) => {
            for l in plan::lines(bytes) {
                let t = plan::text(l);
                let t = t.trim();
                let is_key = !t.starts_with(['#', ';'])
                    && t.split_once('=').is_some_and(|(k, _)| {
                        let k = k.trim();
                        normalize(k.strip_prefix('-').unwrap_or(k)) == norm
                    });
                if !is_key {
                    new.extend_from_slice(l);
                } else if !done {
                    new.extend_from_slice(line.as_bytes());
                    new.extend_from_slice(match plan::terminator(l) {
                        b"" => b"\n",
                        t => t,
                    });
                    done = true;
                }
                // Further lines for the key in our own file are dropped.
            }
        }
    }
    if !done {
        plan::append_line(&mut new, &line);
    }
    p.notes
        .extend(still_decided_elsewhere(view, &norm, &value, &new)?);
    p.ops.extend(view.write_owned(OWNED, old, new)?);
    Ok(p)
}

/// A note when, with `owned` written, the boot-time value of `key` would
/// still come from another line (a later file, a later glob, or a `-key`
/// that keeps our glob off a parameter).
fn still_decided_elsewhere(
    view: &View,
    key: &str,
    value: &str,
    owned: &[u8],
) -> Result<Option<String>, sysctl_d::Error> {
    if sysctl_d::is_glob(key) {
        return Ok(None);
    }
    let config = Config::load(&view.ctx.fs, &[(OWNED, owned)])?;
    let name = dotted(key);
    let value = value.trim_matches([' ', '\t', '\r', '\n']);
    Ok(match config.boot_value(key) {
        Boot::Explicit(a) | Boot::Glob(a) if a.value.as_deref() == Some(value) => None,
        Boot::Explicit(a) | Boot::Glob(a) => Some(format!(
            "{name}: {} = {} ({}) applies after {OWNED} and still decides the value at boot",
            a.written,
            a.value.as_deref().unwrap_or_default(),
            a.at
        )),
        Boot::Excluded(a, _) => Some(format!(
            "{name}: {} ({}) is applied after {OWNED} and leaves the key unset at boot",
            a.written, a.at
        )),
        Boot::Unset => None,
    })
}
