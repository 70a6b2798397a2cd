//! `kind = "mount"`: a path is its own mount point and carries options,
//! read from `PROC/1/mounts` (init's mount namespace) or, where there is
//! no pid 1, `PROC/mounts`.

use super::process::for_each_proc_line;
use super::{Ctx, Outcome};
use plumb_core::check::MountCheck;

/// `PROC/mounts` is one short line per mount; even a container host with
/// thousands of mounts stays far below this.
const MAX_MOUNTS_BYTES: u64 = 8 * 1024 * 1024;

/// One line of `PROC/mounts`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mount {
    line: usize,
    point: String,
    fstype: String,
    options: String,
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash) in a mounts field.
fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..=i + 3].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = u32::from(b[i + 1] - b'0') * 64
                + u32::from(b[i + 2] - b'0') * 8
                + u32::from(b[i + 3] - b'0');
            // Three octal digits can exceed a byte (\777): keep them literal.
            if let Ok(byte) = u8::try_from(v) {
                out.push(byte);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn parse_line(n: usize, line: &str) -> Option<Mount> {
    let mut f = line.split([' ', '\t']).filter(|s| !s.is_empty());
    let _device = f.next()?;
    let point = unescape(f.next()?);
    let fstype = unescape(f.next()?);
    let options = unescape(f.next()?);
    Some(Mount {
        line: n,
        point,
        fstype,
        options,
    })
}

/// `/tmp/`, `//tmp` and `/tmp/.` all name `/tmp`, as mount points are shown.
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect();
    format!("/{}", parts.join("/"))
}

/// Evaluates a `mount` check.
pub fn evaluate(spec: &MountCheck, ctx: &Ctx) -> Outcome {
    let proc = match ctx.proc_dir() {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    // init's view, not ours: under systemd's ProtectSystem= the agent has
    // its own mount namespace, whose /proc/self/mounts is not the host's.
    let init = proc.join("1/mounts");
    let file = if init.is_file() {
        init
    } else {
        proc.join("mounts")
    };
    let shown = file.display().to_string();
    let path = normalize(&spec.path);
    let mut found: Vec<Mount> = Vec::new();
    let read = for_each_proc_line(&file, MAX_MOUNTS_BYTES, |n, line| {
        if let Some(m) = parse_line(n, line) {
            if m.point == path {
                found.push(m);
            }
        }
    });
    if let Err(e) = read {
        return Outcome::error(format!("cannot read {shown}: {e}"));
    }
    // The last entry for a mount point is the one on top: what a path
    // lookup reaches.
    let Some(top) = found.last() else {
        return Outcome::verdict(
            !spec.separate,
            vec![format!("{path} is not a separate mount point ({shown})")],
        );
    };
    let over = if found.len() > 1 {
        format!(", top-most of {} mounts there", found.len())
    } else {
        String::new()
    };
    let mut ev = vec![format!(
        "{path} mounted ({}, {}) ({shown}:{}{over})",
        top.fstype, top.options, top.line
    )];
    if !spec.separate {
        ev[0] = format!("{path} is a separate mount point: {}", ev[0]);
        return Outcome::fail(ev);
    }
    let have: Vec<&str> = top.options.split(',').collect();
    let mut ok = true;
    for want in &spec.options_include {
        if !have.contains(&want.as_str()) {
            ok = false;
            ev.push(format!("missing {want}"));
        }
    }
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::report::Status;
    use std::path::Path;

    const MOUNTS: &str = "\
sysfs /sys sysfs rw,nosuid,nodev,noexec,relatime 0 0
proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0
/dev/sda1 / ext4 rw,relatime,errors=remount-ro 0 0
tmpfs /tmp tmpfs rw,nosuid,nodev 0 0
/dev/sda2 /srv/my\\040data ext4 rw,nodev,nosuid 0 0
/dev/sda3 /var/tmp ext4 rw,nodev,nosuid,noexec 0 0
tmpfs /var/tmp tmpfs rw,relatime 0 0
malformed
";

    fn ctx(proc: &Path) -> Ctx {
        Ctx::new("/nonexistent-root", Some(proc.to_path_buf()))
    }

    fn fake(mounts: &str) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("mounts"), mounts).unwrap();
        t
    }

    fn check(path: &str, separate: bool, opts: &[&str]) -> MountCheck {
        MountCheck {
            path: path.into(),
            separate,
            options_include: opts.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn separate_mount_with_all_options_passes() {
        let t = fake(MOUNTS);
        let out = evaluate(&check("/tmp", true, &["nodev", "nosuid"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![format!(
                "/tmp mounted (tmpfs, rw,nosuid,nodev) ({}/mounts:4)",
                t.path().display()
            )]
        );
        // A trailing slash names the same mount point.
        let out = evaluate(&check("/tmp/", true, &[]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
    }

    #[test]
    fn missing_option_fails_naming_it() {
        let t = fake(MOUNTS);
        let out = evaluate(
            &check("/tmp", true, &["nodev", "noexec", "nosuid"]),
            &ctx(t.path()),
        );
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert_eq!(out.evidence[1], "missing noexec");
        assert_eq!(out.evidence.len(), 2);
        // Options are whole words: "exec" is not in "noexec".
        let out = evaluate(&check("/sys", true, &["exec"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
    }

    #[test]
    fn octal_escapes_in_mount_points() {
        let t = fake(MOUNTS);
        let out = evaluate(&check("/srv/my data", true, &["nodev"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].starts_with("/srv/my data mounted (ext4"));
        assert_eq!(unescape("a\\011b\\134c\\012"), "a\tb\\c\n");
        // Not an escape: kept as is, no panic at the end of the field.
        assert_eq!(unescape("x\\9\\0"), "x\\9\\0");
        assert_eq!(unescape("\\"), "\\");
    }

    #[test]
    fn the_top_most_over_mount_wins() {
        let t = fake(MOUNTS);
        // /var/tmp was mounted noexec, then a tmpfs was mounted over it.
        let out = evaluate(&check("/var/tmp", true, &["noexec"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert!(out.evidence[0].contains("tmpfs, rw,relatime"), "{out:?}");
        assert!(out.evidence[0].contains(":7, top-most of 2"), "{out:?}");
        assert_eq!(out.evidence[1], "missing noexec");
    }

    #[test]
    fn not_a_mount_point() {
        let t = fake(MOUNTS);
        let out = evaluate(&check("/home", true, &["nodev"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert!(
            out.evidence[0].starts_with("/home is not a separate mount point"),
            "{out:?}"
        );
        // separate = false asserts the opposite.
        let out = evaluate(&check("/home", false, &[]), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        let out = evaluate(&check("/tmp", false, &[]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
    }

    #[test]
    fn no_proc_is_skipped_and_unreadable_mounts_is_an_error() {
        let c = Ctx::new("/nonexistent-root", None);
        let out = evaluate(&check("/tmp", true, &[]), &c);
        assert_eq!(out.status, Status::Skipped);
        let t = tempfile::tempdir().unwrap();
        let out = evaluate(&check("/tmp", true, &[]), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
        std::fs::create_dir(t.path().join("mounts")).unwrap();
        let out = evaluate(&check("/tmp", true, &[]), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
    }

    #[test]
    fn odd_bytes_do_not_panic() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("mounts"),
            b"\xff\xfe /tmp tmpfs rw,\xffnodev 0 0\n\x00\n\\\n",
        )
        .unwrap();
        let out = evaluate(&check("/tmp", true, &["nodev"]), &ctx(t.path()));
        assert_eq!(out.status, Status::Fail, "{out:?}");
    }

    #[test]
    fn init_namespace_is_preferred_over_our_own() {
        let t = fake("tmpfs /tmp tmpfs rw,nosuid,nodev,noexec 0 0\n");
        std::fs::create_dir(t.path().join("1")).unwrap();
        std::fs::write(t.path().join("1/mounts"), "/dev/sda1 / ext4 rw 0 0\n").unwrap();
        let ctx = Ctx::new("/nonexistent", Some(t.path().to_path_buf()));
        let out = evaluate(&check("/tmp", true, &[]), &ctx);
        assert_eq!(out.status, Status::Fail, "{:?}", out.evidence);
        assert!(
            out.evidence[0].contains("not a separate mount point"),
            "{:?}",
            out.evidence
        );
    }
}
