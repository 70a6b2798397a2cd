//! `kind = "file"`: existence, type, mode and ownership of a path or of
//! every path a glob matches. A literal path that is missing fails unless
//! `exists = false`; a glob that matches nothing has nothing to violate
//! and passes, unless `exists = true` asks for at least one match.

use super::{Ctx, Outcome};
use crate::rootfs::kind_name;
use plumb_core::check::{FileCheck, FileKind};
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};

fn kind_of(m: &Metadata) -> FileKind {
    let t = m.file_type();
    if t.is_dir() {
        FileKind::Directory
    } else if t.is_symlink() {
        FileKind::Symlink
    } else if t.is_fifo() {
        FileKind::Fifo
    } else if t.is_socket() {
        FileKind::Socket
    } else if t.is_block_device() {
        FileKind::BlockDevice
    } else if t.is_char_device() {
        FileKind::CharDevice
    } else {
        FileKind::File
    }
}

/// Evaluates a `file` check.
pub fn evaluate(spec: &FileCheck, ctx: &Ctx) -> Outcome {
    let is_glob = crate::rootfs::has_glob_chars(&spec.path);
    let paths = match ctx.fs.glob(&spec.path) {
        Ok(p) => p,
        Err(e) => return Outcome::error(format!("cannot list {}: {e}", spec.path)),
    };
    if paths.is_empty() {
        let what = if is_glob {
            "no file matches"
        } else {
            "does not exist"
        };
        let ev = vec![format!("{}: {what}", spec.path)];
        return match spec.exists {
            Some(false) => Outcome::pass(ev),
            Some(true) => Outcome::fail(ev),
            None if is_glob => Outcome::pass(ev),
            None => Outcome::fail(ev),
        };
    }
    if spec.exists == Some(false) {
        return Outcome::fail(paths.iter().map(|p| format!("{p}: exists")).collect());
    }
    let mut evidence = Vec::new();
    let mut ok = true;
    for path in &paths {
        match check_one(spec, ctx, path) {
            Ok((holds, ev)) => {
                ok &= holds;
                evidence.push(ev);
            }
            Err(out) => return out,
        }
    }
    Outcome::verdict(ok, evidence)
}

/// One path: `(holds, evidence line)`, or an outcome that ends the check.
fn check_one(spec: &FileCheck, ctx: &Ctx, path: &str) -> Result<(bool, String), Outcome> {
    let io_err = |e: io::Error| Outcome::error(format!("cannot stat {path}: {e}"));
    let lmeta = ctx.fs.lstat(path).map_err(io_err)?;
    let mut seen = Vec::new();
    let mut problems = Vec::new();
    let kind = kind_of(&lmeta);
    if let Some(want) = spec.file_type {
        seen.push(kind.name().to_string());
        if want != kind {
            problems.push(format!(
                "is a {}, expected {}",
                kind_name(&lmeta),
                want.name()
            ));
        }
    }
    // Mode and ownership of a symlink are those of its target (inside the root).
    let meta = if kind == FileKind::Symlink && spec.file_type != Some(FileKind::Symlink) {
        match ctx.fs.stat(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if spec.mode_max.is_some() || spec.owner.is_some() || spec.group.is_some() {
                    problems.push("dangling symlink".into());
                }
                lmeta.clone()
            }
            Err(e) => return Err(io_err(e)),
        }
    } else {
        lmeta.clone()
    };
    if let Some(max) = &spec.mode_max {
        // Validated as octal at load time; 0 would only make the check stricter.
        let max = u32::from_str_radix(max, 8).unwrap_or(0);
        let mode = meta.mode() & 0o7777;
        seen.push(format!("mode {mode:04o}"));
        let extra = mode & !max;
        if extra != 0 {
            problems.push(format!(
                "mode {mode:04o} exceeds {max:04o} (extra bits {extra:04o})"
            ));
        }
    }
    if spec.owner.is_some() || spec.group.is_some() {
        let users = ctx.users().map_err(|e| Outcome::error(e.to_string()))?;
        if let Some(owner) = &spec.owner {
            let Some(want) = users.uid_of(owner) else {
                return Err(Outcome::error(format!(
                    "owner \"{owner}\" is not in the root's /etc/passwd"
                )));
            };
            seen.push(format!("owner {}", users.show_uid(meta.uid())));
            if meta.uid() != want {
                problems.push(format!(
                    "owner {}, expected {owner}",
                    users.show_uid(meta.uid())
                ));
            }
        }
        if let Some(group) = &spec.group {
            let Some(want) = users.gid_of(group) else {
                return Err(Outcome::error(format!(
                    "group \"{group}\" is not in the root's /etc/group"
                )));
            };
            seen.push(format!("group {}", users.show_gid(meta.gid())));
            if meta.gid() != want {
                problems.push(format!(
                    "group {}, expected {group}",
                    users.show_gid(meta.gid())
                ));
            }
        }
    }
    if seen.is_empty() {
        seen.push(format!("exists ({})", kind_name(&lmeta)));
    }
    let ev = if problems.is_empty() {
        format!("{path}: {}", seen.join(", "))
    } else {
        format!("{path}: {}", problems.join("; "))
    };
    Ok((problems.is_empty(), ev))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::report::Status;
    use std::os::unix::fs::PermissionsExt;

    fn spec(path: &str) -> FileCheck {
        FileCheck {
            path: path.into(),
            exists: None,
            file_type: None,
            mode_max: None,
            owner: None,
            group: None,
        }
    }

    fn root() -> (tempfile::TempDir, Ctx) {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(
            t.path().join("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nimg:x:4242:4242::/:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("etc/group"),
            "root:x:0:\nshadow:x:42:\nimg:x:4242:\n",
        )
        .unwrap();
        std::fs::write(t.path().join("etc/shadow"), "").unwrap();
        let ctx = Ctx::new(t.path(), None);
        (t, ctx)
    }

    #[test]
    fn mode_max_names_the_extra_bits() {
        let (t, ctx) = root();
        std::fs::set_permissions(
            t.path().join("etc/shadow"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        let s = FileCheck {
            mode_max: Some("0640".into()),
            ..spec("/etc/shadow")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec!["/etc/shadow: mode 0644 exceeds 0640 (extra bits 0004)"]
        );
        std::fs::set_permissions(
            t.path().join("etc/shadow"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }

    #[test]
    fn owner_is_resolved_in_the_checked_root() {
        let (t, ctx) = root();
        nix::unistd::chown(
            &t.path().join("etc/shadow"),
            Some(4242.into()),
            Some(42.into()),
        )
        .unwrap();
        let s = FileCheck {
            owner: Some("img".into()),
            group: Some("shadow".into()),
            ..spec("/etc/shadow")
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert_eq!(
            out.evidence,
            vec!["/etc/shadow: owner img(4242), group shadow(42)"]
        );
        let s = FileCheck {
            owner: Some("root".into()),
            ..spec("/etc/shadow")
        };
        assert_eq!(
            evaluate(&s, &ctx).evidence,
            vec!["/etc/shadow: owner img(4242), expected root"]
        );
        let s = FileCheck {
            owner: Some("nosuchuser".into()),
            ..spec("/etc/shadow")
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Error);
    }

    #[test]
    fn existence_and_globs() {
        let (t, ctx) = root();
        assert_eq!(
            evaluate(
                &FileCheck {
                    exists: Some(false),
                    ..spec("/etc/hosts.equiv")
                },
                &ctx
            )
            .status,
            Status::Pass
        );
        assert_eq!(
            evaluate(
                &FileCheck {
                    exists: Some(true),
                    ..spec("/etc/hosts.equiv")
                },
                &ctx
            )
            .status,
            Status::Fail
        );
        assert_eq!(
            evaluate(
                &FileCheck {
                    mode_max: Some("0600".into()),
                    ..spec("/etc/nope")
                },
                &ctx
            )
            .status,
            Status::Fail
        );
        // A glob with no match has nothing to violate.
        assert_eq!(
            evaluate(
                &FileCheck {
                    mode_max: Some("0600".into()),
                    ..spec("/etc/cron.d/*")
                },
                &ctx
            )
            .status,
            Status::Pass
        );
        std::fs::create_dir_all(t.path().join("etc/cron.d")).unwrap();
        std::fs::write(t.path().join("etc/cron.d/a"), "").unwrap();
        std::fs::write(t.path().join("etc/cron.d/b"), "").unwrap();
        std::fs::set_permissions(
            t.path().join("etc/cron.d/b"),
            std::fs::Permissions::from_mode(0o666),
        )
        .unwrap();
        std::fs::set_permissions(
            t.path().join("etc/cron.d/a"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let out = evaluate(
            &FileCheck {
                mode_max: Some("0644".into()),
                ..spec("/etc/cron.d/*")
            },
            &ctx,
        );
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec![
                "/etc/cron.d/a: mode 0600",
                "/etc/cron.d/b: mode 0666 exceeds 0644 (extra bits 0022)"
            ]
        );
    }

    #[test]
    fn types_and_symlinks_inside_the_root() {
        let (t, ctx) = root();
        std::os::unix::fs::symlink("/etc/shadow", t.path().join("etc/link")).unwrap();
        std::fs::set_permissions(
            t.path().join("etc/shadow"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        let out = evaluate(
            &FileCheck {
                file_type: Some(FileKind::File),
                ..spec("/etc/link")
            },
            &ctx,
        );
        assert_eq!(out.evidence, vec!["/etc/link: is a symlink, expected file"]);
        // Mode follows the link to /etc/shadow of the root, not the host's.
        let out = evaluate(
            &FileCheck {
                mode_max: Some("0600".into()),
                ..spec("/etc/link")
            },
            &ctx,
        );
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert_eq!(
            evaluate(
                &FileCheck {
                    file_type: Some(FileKind::Directory),
                    ..spec("/etc")
                },
                &ctx
            )
            .status,
            Status::Pass
        );
    }
}
