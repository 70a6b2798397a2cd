//! `sshd_set`: edits the line sshd actually uses, so the change takes
//! effect: the first occurrence of the keyword (or an alias) in Include
//! order outside `Match` blocks, which may be in a drop-in under
//! `/etc/ssh/sshd_config.d`. An unset keyword is inserted at the top of
//! the main `sshd_config`, before any `Include` or `Match`, so it wins. On
//! the live root, the resulting configuration is checked with
//! `sshd -t -f <candidate>` first and the change refused if sshd rejects it.

use super::plan::{self, Plan, View};
use crate::checks::sshd::canonical;
use crate::sshd_config::{self, Event, SSHD_CONFIG, split_line};
use plumb_core::compare::Scalar;
use std::path::Path;

/// Where sshd is looked for on the live root.
const SSHD_BINARIES: &[&str] = &["/usr/sbin/sshd", "/usr/local/sbin/sshd", "/sbin/sshd"];

/// The line sshd uses: file and 0-based line index, and the keyword as written.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    path: String,
    index: usize,
    keyword: String,
}

/// What a walk over sshd_config and its includes gives: the effective line
/// of one option, and the configuration as one file (includes inlined) for
/// `sshd -t`.
struct Walk {
    hit: Option<Hit>,
    flat: Vec<u8>,
}

/// Walks the configuration for option `want` (canonical form).
fn walk(view: &View, want: &str) -> Result<Walk, String> {
    let mut hit = None;
    let mut flat = Vec::new();
    sshd_config::walk(
        &view.ctx.fs,
        |path| view.read(path),
        |event| match event {
            Event::Line(line) => {
                match line.setting {
                    Some((keyword, _))
                        if line.active && hit.is_none() && canonical(&keyword) == want =>
                    {
                        hit = Some(Hit {
                            path: line.path.to_string(),
                            index: line.index,
                            keyword,
                        });
                    }
                    _ => {}
                }
                flat.extend_from_slice(line.raw);
            }
            Event::End {
                depth,
                opened_match,
            } => {
                if !flat.ends_with(b"\n") {
                    flat.push(b'\n');
                }
                if opened_match && depth > 0 {
                    // A Match block ends with its file; inlined, it must be closed.
                    flat.extend_from_slice(b"Match all\n");
                }
            }
        },
    )?;
    Ok(Walk { hit, flat })
}

/// Plans setting sshd keyword `key` to `value`.
pub fn plan(view: &View, key: &str, value: &Scalar) -> Result<Plan, String> {
    let value = value.as_text();
    plan::one_line("value", &value)?;
    if value.trim().is_empty() {
        return Err("sshd_set needs a non-empty value".into());
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("\"{key}\" is not an sshd keyword"));
    }
    let want = canonical(key);
    if matches!(want.as_str(), "match" | "include") {
        return Err(format!("sshd_set cannot set {key}"));
    }
    let found = walk(view, &want)?;
    let (path, old, new) = match &found.hit {
        Some(hit) => {
            let old = view.read(&hit.path)?.unwrap_or_default();
            let mut new = Vec::with_capacity(old.len() + 16);
            for (i, l) in plan::lines(&old).into_iter().enumerate() {
                if i == hit.index {
                    new.extend_from_slice(plan::indent(l));
                    new.extend_from_slice(format!("{} {value}", hit.keyword).as_bytes());
                    new.extend_from_slice(match plan::terminator(l) {
                        b"" => b"\n",
                        t => t,
                    });
                } else {
                    new.extend_from_slice(l);
                }
            }
            (hit.path.clone(), old, new)
        }
        None => {
            let old = view.read(SSHD_CONFIG)?.unwrap_or_default();
            let mut new = Vec::with_capacity(old.len() + 32);
            let mut inserted = false;
            for l in plan::lines(&old) {
                if !inserted && split_line(&plan::text(l)).is_some() {
                    new.extend_from_slice(format!("{key} {value}\n").as_bytes());
                    inserted = true;
                }
                new.extend_from_slice(l);
            }
            if !inserted {
                plan::append_line(&mut new, &format!("{key} {value}"));
            }
            (SSHD_CONFIG.to_string(), old, new)
        }
    };
    let mut p = Plan::default();
    let Some(op) = view.write(&path, Some(old), new.clone())? else {
        return Ok(p);
    };
    if view.live() {
        match SSHD_BINARIES.iter().map(Path::new).find(|b| b.is_file()) {
            Some(sshd) => {
                // The whole configuration as sshd would read it after the change.
                let mut v = View::new(view.ctx);
                v.overlay(&Plan {
                    ops: vec![op.clone()],
                    ..Plan::default()
                });
                let candidate = walk(&v, &want)?.flat;
                validate(sshd, &candidate)?;
                p.notes
                    .push(format!("validated with {} -t", sshd.display()));
            }
            None => p
                .notes
                .push("sshd not found on this host: configuration not validated".into()),
        }
    } else {
        p.notes.push(
            "offline root: configuration not validated with sshd -t (only done on the live root)"
                .into(),
        );
    }
    p.ops.push(op);
    Ok(p)
}

/// Runs `sshd -t -f <candidate>`; the change is refused when sshd rejects it.
fn validate(sshd: &Path, candidate: &[u8]) -> Result<(), String> {
    let tmp = std::env::temp_dir().join(format!(
        "plumb-sshd-candidate-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    crate::atomic::write_atomic(&tmp, candidate, 0o600, false)
        .map_err(|e| format!("cannot write sshd candidate {}: {e}", tmp.display()))?;
    let out = std::process::Command::new(sshd)
        .arg("-t")
        .arg("-f")
        .arg(&tmp)
        .stdin(std::process::Stdio::null())
        .output();
    let _ = std::fs::remove_file(&tmp);
    let out = out.map_err(|e| format!("cannot run {}: {e}", sshd.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "refused: {} -t rejects the resulting configuration: {}",
            sshd.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::Ctx;
    use crate::sshd_config::tests::root;
    use std::os::unix::fs::PermissionsExt as _;

    fn edit(t: &tempfile::TempDir, key: &str, value: &str) -> (String, String) {
        let ctx = Ctx::new(t.path(), None);
        let v = View::new(&ctx);
        let p = plan(&v, key, &Scalar::Str(value.into())).unwrap();
        match &p.ops[..] {
            [super::super::plan::Op::Write { path, new, .. }] => {
                (path.clone(), String::from_utf8(new.clone()).unwrap())
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn edits_the_drop_in_that_wins() {
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n",
            ),
            (
                "/etc/ssh/sshd_config.d/10-a.conf",
                "# x\n  permitrootlogin=yes\n",
            ),
            (
                "/etc/ssh/sshd_config.d/20-b.conf",
                "PermitRootLogin without-password\n",
            ),
        ]);
        let (path, new) = edit(&t, "PermitRootLogin", "no");
        assert_eq!(path, "/etc/ssh/sshd_config.d/10-a.conf");
        assert_eq!(new, "# x\n  permitrootlogin no\n");
    }

    #[test]
    fn match_blocks_are_not_edited_and_unset_goes_on_top() {
        let t = root(&[(
            "/etc/ssh/sshd_config",
            "# header\n\nInclude /nope/*.conf\nMatch User bob\n  X11Forwarding yes\n",
        )]);
        let (path, new) = edit(&t, "X11Forwarding", "no");
        assert_eq!(path, "/etc/ssh/sshd_config");
        assert_eq!(
            new,
            "# header\n\nX11Forwarding no\nInclude /nope/*.conf\nMatch User bob\n  X11Forwarding yes\n"
        );
    }

    #[test]
    fn candidate_inlines_includes_and_closes_their_match_blocks() {
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "# top\nInclude a.conf\nPermitRootLogin no",
            ),
            ("/etc/ssh/a.conf", "Match User x\n  X11Forwarding yes"),
        ]);
        let ctx = Ctx::new(t.path(), None);
        let w = walk(&View::new(&ctx), "permitrootlogin").unwrap();
        assert_eq!(
            String::from_utf8(w.flat).unwrap(),
            "# top\nMatch User x\n  X11Forwarding yes\nMatch all\nPermitRootLogin no\n"
        );
        assert_eq!(
            w.hit,
            Some(Hit {
                path: "/etc/ssh/sshd_config".into(),
                index: 2,
                keyword: "PermitRootLogin".into()
            })
        );
    }

    #[test]
    fn the_walk_sees_earlier_planned_writes() {
        let t = root(&[("/etc/ssh/sshd_config", "Include /nope/*.conf\n")]);
        let ctx = Ctx::new(t.path(), None);
        let mut v = View::new(&ctx);
        let first = plan(&v, "X11Forwarding", &Scalar::Str("no".into())).unwrap();
        assert_eq!(first.ops.len(), 1);
        v.overlay(&first);
        // The line inserted by the first plan is found, not inserted again.
        let again = plan(&v, "X11Forwarding", &Scalar::Str("no".into())).unwrap();
        assert!(again.ops.is_empty(), "{:?}", again.ops);
    }

    /// These errors once had their own wording here; they are now the
    /// `sshd` check's, from the shared walk.
    #[test]
    fn include_errors_are_the_checks() {
        let err = |t: &tempfile::TempDir| {
            let ctx = Ctx::new(t.path(), None);
            plan(
                &View::new(&ctx),
                "PermitRootLogin",
                &Scalar::Str("no".into()),
            )
            .unwrap_err()
        };
        let t = root(&[("/etc/ssh/sshd_config", "Include /etc/ssh/sshd_config\n")]);
        assert_eq!(
            err(&t),
            "/etc/ssh/sshd_config: too many nested Include levels (more than 16), sshd refuses this configuration"
        );
        let t = root(&[("/etc/ssh/sshd_config", "\nInclude [x\n")]);
        let e = err(&t);
        assert!(
            e.starts_with("Include [x (/etc/ssh/sshd_config:2): cannot expand: "),
            "{e}"
        );
        let t = root(&[("/etc/ssh/sshd_config", "Include gone.conf\n")]);
        std::os::unix::fs::symlink("/etc/ssh/nowhere", t.path().join("etc/ssh/gone.conf")).unwrap();
        assert_eq!(err(&t), "cannot read /etc/ssh/gone.conf: not found");
        let t = root(&[("/etc/ssh/x", "")]);
        assert_eq!(err(&t), "cannot read /etc/ssh/sshd_config: not found");
    }

    #[test]
    fn refuses_values_that_would_add_lines() {
        let t = root(&[("/etc/ssh/sshd_config", "")]);
        let ctx = Ctx::new(t.path(), None);
        let v = View::new(&ctx);
        assert!(
            plan(
                &v,
                "PermitRootLogin",
                &Scalar::Str("no\nPermitRootLogin yes".into())
            )
            .is_err()
        );
        assert!(plan(&v, "Permit Root", &Scalar::Str("no".into())).is_err());
    }

    #[test]
    fn validation_refuses_what_sshd_rejects() {
        let t = tempfile::tempdir().unwrap();
        let fake = t.path().join("sshd");
        std::fs::write(
            &fake,
            "#!/bin/sh\ngrep -q '^Bad' \"$3\" && { echo 'line 1: Bad option' >&2; exit 255; }\nexit 0\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(validate(&fake, b"PermitRootLogin no\n").is_ok());
        let e = validate(&fake, b"Bad yes\n").unwrap_err();
        assert!(e.contains("refused") && e.contains("Bad option"), "{e}");
    }
}
