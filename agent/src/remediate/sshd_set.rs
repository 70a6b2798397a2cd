//! `sshd_set`: edits the line sshd actually uses, so the change takes
//! effect: the line that decides the effective value in Include order
//! (`crate::sshd_config`): for most keywords the first one outside `Match`
//! blocks, or the first one of an active `Match all` block that overrides
//! it, for last-wins keywords (`MaxStartups`) the last one. It may be in a
//! drop-in under `/etc/ssh/sshd_config.d`. An unset keyword is inserted at
//! the top of the main `sshd_config`, before any `Include` or `Match`, so it
//! wins. The result is checked as the installed sshd would read it and the
//! change refused if sshd would refuse the configuration; on the live root
//! it is also checked with `sshd -t -f <candidate>`.

use super::plan::{self, Plan, PlanError, View};
use crate::sshd_config::{self, Directive, Event, SSHD_CONFIG, Scope, keywords, split_line};
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

/// The configuration as one file (includes inlined), for `sshd -t`.
///
/// What sshd does with an Include (servconf.c, `sInclude`): it saves the
/// including file's Match state, parses each included file starting in that
/// state, and restores it after each file, so a Match in an included file
/// ends with that file and the including file's lines after the Include stay
/// in the Match block (or global context) the Include was in. A file included
/// from an inactive block is parsed with `SSHCFG_NEVERMATCH`: its own
/// `Match all` does not reactivate it. Inlined, both must be spelled out:
/// after an included file that opened a Match, the including file's current
/// Match line (`Match all` at top level) is repeated, and an inactive
/// `Match all` is followed by the Match line that made it inactive.
fn flatten(view: &View) -> Result<Vec<u8>, PlanError> {
    let mut flat = Vec::new();
    // Per include depth, the Match line in force there (`None`: global).
    let mut scopes: Vec<Option<Vec<u8>>> = Vec::new();
    sshd_config::walk(
        &view.ctx.fs,
        |path| view.read(path).map_err(|e| e.to_string()),
        |event| match event {
            Event::Line(line) => {
                while scopes.len() <= line.depth {
                    // A file starts in the scope of the one including it.
                    let inherited = scopes.last().cloned().flatten();
                    scopes.push(inherited);
                }
                flat.extend_from_slice(line.raw);
                if !flat.ends_with(b"\n") {
                    flat.push(b'\n');
                }
                if let Some(Directive::Match(cond)) = &line.directive {
                    let all = cond == &Ok(true);
                    if all && line.scope == Scope::Inactive {
                        // NEVERMATCH: stay in the inactive block.
                        if let Some(scope) = &scopes[line.depth] {
                            flat.extend_from_slice(scope);
                        }
                    } else {
                        let mut scope = line.raw.to_vec();
                        if !scope.ends_with(b"\n") {
                            scope.push(b'\n');
                        }
                        scopes[line.depth] = Some(scope);
                    }
                }
            }
            Event::End {
                depth,
                opened_match,
            } => {
                scopes.truncate(depth);
                if opened_match && depth > 0 {
                    // Back to the including file's scope, as sshd restores it.
                    match scopes.last().cloned().flatten() {
                        Some(scope) => flat.extend_from_slice(&scope),
                        None => flat.extend_from_slice(b"Match all\n"),
                    }
                }
            }
        },
    )?;
    Ok(flat)
}

/// The configuration as the root's sshd reads it, through `view`.
fn settings(view: &View) -> Result<sshd_config::Settings, PlanError> {
    let version = match crate::checks::package::installed_version(view.ctx, "openssh-server") {
        Ok(Some((v, _))) => v,
        Ok(None) => return Err("openssh-server is not installed: the sshd build is unknown".into()),
        Err(out) => {
            return Err(PlanError::Refused(format!(
                "the sshd build is unknown: {}",
                out.evidence.join("; ")
            )));
        }
    };
    let build = sshd_config::build_of(&version)?;
    sshd_config::load(
        &view.ctx.fs,
        |p| view.read(p).map_err(|e| e.to_string()),
        build,
    )
    .map_err(|e| PlanError::Refused(e.to_string()))
}

/// The line that decides the value of keyword `key`, if any line sets it.
fn deciding(view: &View, key: &str) -> Result<Option<Hit>, PlanError> {
    let k = keywords::keyword(key).ok_or_else(|| format!("\"{key}\" is not an sshd keyword"))?;
    let s = settings(view)?;
    let eff = s.effective(k).map_err(|e| e.to_string())?;
    Ok(eff.deciding(k).map(|line| Hit {
        path: line.path.clone(),
        index: line.index,
        keyword: line.spelling.clone(),
    }))
}

/// Plans setting sshd keyword `key` to `value`.
pub fn plan(view: &View, key: &str, value: &Scalar) -> Result<Plan, PlanError> {
    let value = value.as_text();
    plan::one_line("value", &value)?;
    if value.trim().is_empty() {
        return Err("sshd_set needs a non-empty value".into());
    }
    if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Err(format!("\"{key}\" is not an sshd keyword").into());
    }
    if key.eq_ignore_ascii_case("match") || key.eq_ignore_ascii_case("include") {
        return Err(format!("sshd_set cannot set {key}").into());
    }
    let found = deciding(view, key)?;
    let (path, old, new) = match &found {
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
    // The whole configuration as sshd would read it after the change.
    let mut after = View::new(view.ctx);
    after.overlay(&Plan {
        ops: vec![op.clone()],
        ..Plan::default()
    });
    settings(&after).map_err(|e| format!("refused: after the change, {e}"))?;
    if view.live() {
        match SSHD_BINARIES.iter().map(Path::new).find(|b| b.is_file()) {
            Some(sshd) => {
                validate(sshd, &flatten(&after)?)?;
                p.notes
                    .push(format!("validated with {} -t", sshd.display()));
            }
            None => p.notes.push(
                "sshd not found on this host: configuration not validated with sshd -t".into(),
            ),
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
fn validate(sshd: &Path, candidate: &[u8]) -> Result<(), PlanError> {
    let tmp = std::env::temp_dir().join(format!(
        "plumb-sshd-candidate-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    ));
    plumb_os::atomic::write_atomic(&tmp, candidate, 0o600, false)
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
        Err(PlanError::Refused(format!(
            "refused: {} -t rejects the resulting configuration: {}",
            sshd.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
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
    fn edits_the_line_that_decides_the_value() {
        // A later `Match all` line overrides the global one: edit it.
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "PermitRootLogin yes\nMatch all\nInclude late.conf\n",
            ),
            (
                "/etc/ssh/late.conf",
                "# late\nPermitRootLogin without-password\n",
            ),
        ]);
        let (path, new) = edit(&t, "PermitRootLogin", "no");
        assert_eq!(path, "/etc/ssh/late.conf");
        assert_eq!(new, "# late\nPermitRootLogin no\n");
        // MaxStartups keeps its last value: edit the last line.
        let t = root(&[
            ("/etc/ssh/sshd_config", "Include d/*.conf\nMaxStartups 10\n"),
            ("/etc/ssh/d/a.conf", "MaxStartups 10:30:60\n"),
        ]);
        let (path, new) = edit(&t, "MaxStartups", "10:30:60");
        assert_eq!(path, "/etc/ssh/sshd_config");
        assert_eq!(new, "Include d/*.conf\nMaxStartups 10:30:60\n");
    }

    #[test]
    fn refuses_a_change_sshd_would_refuse() {
        let plan_err = |config: &str, key: &str, value: &str| {
            let t = root(&[("/etc/ssh/sshd_config", config)]);
            let ctx = Ctx::new(t.path(), None);
            plan(&View::new(&ctx), key, &Scalar::Str(value.into()))
                .unwrap_err()
                .to_string()
        };
        let e = plan_err("PermitRootLogin yes\n", "PermitRootLogin", "sometimes");
        assert_eq!(
            e,
            "refused: after the change, sshd refuses this configuration: /etc/ssh/sshd_config:1: unsupported option \"sometimes\" for PermitRootLogin"
        );
        // A configuration sshd already refuses cannot be checked after the change.
        let e = plan_err("Match User x\nUsePAM no\n", "PermitRootLogin", "no");
        assert!(
            e.contains("Directive 'UsePAM' is not allowed within a Match block"),
            "{e}"
        );
        let e = plan_err("", "PermitRootLogn", "no");
        assert_eq!(e, "\"PermitRootLogn\" is not an sshd keyword");
        // The build must be known.
        let t = root(&[("/etc/ssh/sshd_config", "")]);
        std::fs::remove_file(t.path().join("var/lib/dpkg/status")).unwrap();
        let ctx = Ctx::new(t.path(), None);
        let e = plan(
            &View::new(&ctx),
            "PermitRootLogin",
            &Scalar::Str("no".into()),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("the sshd build is unknown"), "{e}");
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
        let (flat, hit) = candidate(&t, "permitrootlogin");
        assert_eq!(
            flat,
            "# top\nMatch User x\n  X11Forwarding yes\nMatch all\nPermitRootLogin no\n"
        );
        assert_eq!(
            hit,
            Some(Hit {
                path: "/etc/ssh/sshd_config".into(),
                index: 2,
                keyword: "PermitRootLogin".into()
            })
        );
    }

    /// The inlined candidate and the line found for `want`.
    fn candidate(t: &tempfile::TempDir, want: &str) -> (String, Option<Hit>) {
        let ctx = Ctx::new(t.path(), None);
        let view = View::new(&ctx);
        let flat = flatten(&view).unwrap();
        (
            String::from_utf8(flat).unwrap(),
            deciding(&view, want).unwrap(),
        )
    }

    #[test]
    fn candidate_reopens_the_match_block_an_include_sits_in() {
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "PermitRootLogin no\nMatch User bob\nInclude d/*.conf\nX11Forwarding no\nMatch all\nPasswordAuthentication no",
            ),
            (
                "/etc/ssh/d/10-a.conf",
                "AllowTcpForwarding no\n  match Address 10.0.0.0/8 # lab\r\nPermitTTY no",
            ),
            // Starts in bob's block too: sshd restores it after each file.
            ("/etc/ssh/d/20-b.conf", "MaxSessions 2\n"),
        ]);
        let (flat, hit) = candidate(&t, "x11forwarding");
        assert_eq!(
            flat,
            "PermitRootLogin no\nMatch User bob\n\
             AllowTcpForwarding no\n  match Address 10.0.0.0/8 # lab\r\nPermitTTY no\n\
             Match User bob\n\
             MaxSessions 2\n\
             X11Forwarding no\nMatch all\nPasswordAuthentication no\n"
        );
        // In bob's block, as in sshd: not the line to edit.
        assert_eq!(hit, None);
        let (_, hit) = candidate(&t, "passwordauthentication");
        assert_eq!(hit.map(|h| h.index), Some(5));
    }

    #[test]
    fn candidate_at_top_level_closes_an_included_match_with_match_all() {
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "Include a.conf b.conf\nPermitRootLogin no\n",
            ),
            ("/etc/ssh/a.conf", "Match User x\n  X11Forwarding yes"),
            // No Match of its own: nothing to close.
            ("/etc/ssh/b.conf", "PermitTTY no\n"),
        ]);
        let (flat, hit) = candidate(&t, "permitrootlogin");
        assert_eq!(
            flat,
            "Match User x\n  X11Forwarding yes\nMatch all\nPermitTTY no\nPermitRootLogin no\n"
        );
        assert_eq!(hit.map(|h| h.index), Some(1));
    }

    #[test]
    fn candidate_keeps_never_match_files_inactive() {
        let t = root(&[
            (
                "/etc/ssh/sshd_config",
                "Match User bob\nInclude a.conf\nX11Forwarding no\n",
            ),
            // Nested: a.conf is never-match, so b.conf is too.
            (
                "/etc/ssh/a.conf",
                "Match all\nPermitTTY no\nInclude b.conf\n",
            ),
            (
                "/etc/ssh/b.conf",
                "Match Address 10.0.0.0/8\nMaxSessions 2\n",
            ),
        ]);
        let (flat, _) = candidate(&t, "permittty");
        assert_eq!(
            flat,
            "Match User bob\n\
             Match all\nMatch User bob\nPermitTTY no\n\
             Match Address 10.0.0.0/8\nMaxSessions 2\nMatch User bob\n\
             Match User bob\n\
             X11Forwarding no\n"
        );
    }

    /// The inlined candidate against a real `sshd -t`, the way `plan` runs
    /// it: sshd from `PLUMB_TEST_SSHD` or where `plan` looks. As root it
    /// needs its privilege separation user and directory:
    /// scripts/test-oracles.sh provides an sshd that brings its own.
    #[test]
    #[ignore = "needs sshd: PLUMB_TEST_SSHD from scripts/test-oracles.sh"]
    fn real_sshd_accepts_the_candidate_and_keeps_match_scope() {
        let sshd = std::env::var_os("PLUMB_TEST_SSHD")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                SSHD_BINARIES
                    .iter()
                    .map(std::path::PathBuf::from)
                    .find(|b| b.is_file())
            });
        let sshd = sshd
            .expect("no sshd: set PLUMB_TEST_SSHD (eval \"$(scripts/test-oracles.sh)\" sets it)");
        let keys = tempfile::tempdir().unwrap();
        let key = keys.path().join("host_ed25519");
        let made = std::process::Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&key)
            .status();
        assert!(
            made.is_ok_and(|s| s.success()),
            "ssh-keygen cannot make a host key"
        );
        // The host's own keys may be absent or unreadable: use a temp one.
        let host_key = format!("HostKey {}\n", key.display());
        if let Err(e) = validate(&sshd, host_key.as_bytes()) {
            panic!(
                "{} -t cannot check even a bare configuration here (as root, use the sshd of scripts/test-oracles.sh): {e}",
                sshd.display()
            );
        }
        let check = |main: &str, included: &str| {
            let t = root(&[
                ("/etc/ssh/sshd_config", &format!("{host_key}{main}")),
                ("/etc/ssh/a.conf", included),
            ]);
            let ctx = Ctx::new(t.path(), None);
            let flat = flatten(&View::new(&ctx)).unwrap();
            validate(&sshd, &flat)
        };
        let included = "Match Address 10.0.0.0/8\nPermitTTY no\n";
        check(
            "PermitRootLogin no\nMatch User bob\nInclude a.conf\nX11Forwarding no\n",
            included,
        )
        .unwrap();
        // sshd keeps the lines after the Include in bob's block, where Port
        // is refused; closing the included block with `Match all` hid that.
        let e = check("Match User bob\nInclude a.conf\nPort 2222\n", included)
            .unwrap_err()
            .to_string();
        assert!(e.contains("not allowed within a Match block"), "{e}");
        check("Include a.conf\nPort 2222\n", included).unwrap();
        // Included from bob's block, a.conf's own `Match all` applies nowhere.
        let e = check("Match User bob\nInclude a.conf\n", "Match all\nPort 2222\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not allowed within a Match block"), "{e}");
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
            .to_string()
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
        let e = validate(&fake, b"Bad yes\n").unwrap_err().to_string();
        assert!(e.contains("refused") && e.contains("Bad option"), "{e}");
    }
}
