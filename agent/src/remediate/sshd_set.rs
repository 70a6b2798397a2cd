//! `sshd_set`: edits the line sshd actually uses, so the change takes
//! effect: the first occurrence of the keyword (or an alias) in Include
//! order outside `Match` blocks, which may be in a drop-in under
//! `/etc/ssh/sshd_config.d`. An unset keyword is inserted at the top of
//! the main `sshd_config`, before any `Include` or `Match`, so it wins. On
//! the live root, the resulting configuration is checked with
//! `sshd -t -f <candidate>` first and the change refused if sshd rejects it.

use super::plan::{self, Plan, View};
use crate::checks::sshd::{MAX_INCLUDE_DEPTH, SSHD_CONFIG, SSHD_DIR, canonical, split_line};
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

/// A walk over sshd_config and its includes: finds the effective line of
/// one option and builds the configuration as one file (includes inlined)
/// for `sshd -t`.
struct Walk<'a> {
    view: &'a View<'a>,
    want: String,
    hit: Option<Hit>,
    flat: Vec<u8>,
}

impl Walk<'_> {
    fn file(&mut self, path: &str, depth: usize, active: bool) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!("{path}: too many nested Include levels"));
        }
        let Some(bytes) = self.view.read(path)? else {
            return Err(format!("{path}: does not exist"));
        };
        let never_match = !active;
        let mut active = active;
        let mut saw_match = false;
        for (i, l) in plan::lines(&bytes).into_iter().enumerate() {
            let text = plan::text(l);
            let Some((keyword, args)) = split_line(&text) else {
                self.flat.extend_from_slice(l);
                continue;
            };
            match canonical(&keyword).as_str() {
                "match" => {
                    active = !never_match && args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                    saw_match = true;
                    self.flat.extend_from_slice(l);
                }
                "include" => {
                    for arg in &args {
                        self.include(arg, depth, active)?;
                    }
                }
                k if k == self.want && active && self.hit.is_none() => {
                    self.hit = Some(Hit {
                        path: path.to_string(),
                        index: i,
                        keyword,
                    });
                    self.flat.extend_from_slice(l);
                }
                _ => self.flat.extend_from_slice(l),
            }
        }
        if !self.flat.ends_with(b"\n") {
            self.flat.push(b'\n');
        }
        if saw_match && depth > 0 {
            // A Match block ends with its file; inlined, it must be closed.
            self.flat.extend_from_slice(b"Match all\n");
        }
        Ok(())
    }

    fn include(&mut self, arg: &str, depth: usize, active: bool) -> Result<(), String> {
        let pattern = if arg.starts_with('/') {
            arg.to_string()
        } else {
            format!("{SSHD_DIR}/{arg}")
        };
        let files = self
            .view
            .ctx
            .fs
            .glob(&pattern)
            .map_err(|e| format!("Include {arg}: cannot expand: {e}"))?;
        let hidden_ok = pattern
            .rsplit('/')
            .next()
            .is_some_and(|last| last.starts_with('.'));
        for f in files {
            let name = f.rsplit('/').next().unwrap_or_default();
            if name.starts_with('.') && !hidden_ok {
                continue;
            }
            self.file(&f, depth + 1, active)?;
        }
        Ok(())
    }
}

/// Walks the configuration for option `want` (canonical form).
fn walk<'a>(view: &'a View<'a>, want: &str) -> Result<Walk<'a>, String> {
    let mut w = Walk {
        view,
        want: want.to_string(),
        hit: None,
        flat: Vec::new(),
    };
    w.file(SSHD_CONFIG, 0, true)?;
    Ok(w)
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
    use std::os::unix::fs::PermissionsExt as _;

    fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        t
    }

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
