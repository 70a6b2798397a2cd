//! `kind = "service"`: a systemd unit's enablement, read offline from the
//! checked root's unit directories, never from a running systemd.
//!
//! - masked: the unit's entry in /etc/systemd/system (or, when /etc has
//!   none, /run/systemd/system) is a symlink whose text is `/dev/null`;
//!   the link is read, never resolved inside the root.
//! - enabled: an entry named after the unit (or, for a template
//!   `foo@.service`, any instance `foo@X.service`) in a `*.wants/` or
//!   `*.requires/` directory of a unit search directory.

use super::{Ctx, Outcome};
use plumb_core::check::{ServiceCheck, UnitState};
use std::fs::Metadata;
use std::io;

/// Unit search directories, highest precedence first.
const SEARCH_DIRS: [&str; 5] = [
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Where `systemctl mask` (and `mask --runtime`) puts its links.
const MASK_DIRS: [&str; 2] = ["/etc/systemd/system", "/run/systemd/system"];

/// Unit type suffixes; a name without one is a service.
const UNIT_TYPES: [&str; 11] = [
    "service",
    "socket",
    "target",
    "timer",
    "mount",
    "automount",
    "swap",
    "path",
    "slice",
    "scope",
    "device",
];

/// Most enabling links listed in evidence.
const MAX_LINKS_SHOWN: usize = 5;

/// The full unit name (`ssh` → `ssh.service`), or why it is not one.
pub(crate) fn unit_name(unit: &str) -> Result<String, String> {
    if unit.is_empty()
        || unit.starts_with('.')
        || unit.contains(['/', '\0'])
        || unit.contains(char::is_whitespace)
    {
        return Err(format!("\"{unit}\" is not a unit name"));
    }
    let typed = unit
        .rsplit_once('.')
        .is_some_and(|(_, t)| UNIT_TYPES.contains(&t));
    Ok(if typed {
        unit.to_string()
    } else {
        format!("{unit}.service")
    })
}

/// `lstat` inside the root; a missing path (or a parent that is not a
/// directory) is `None`.
fn lstat_opt(ctx: &Ctx, path: &str) -> Result<Option<Metadata>, String> {
    match ctx.fs.lstat(path) {
        Ok(m) => Ok(Some(m)),
        Err(e) if gone(&e) => Ok(None),
        Err(e) => Err(format!("cannot read {path}: {e}")),
    }
}

fn gone(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ENOTDIR)
}

/// The text of a symlink inside the root, not followed.
fn link_text(ctx: &Ctx, path: &str) -> Result<String, String> {
    let host = ctx
        .fs
        .resolve(path, false)
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    let t = std::fs::read_link(host).map_err(|e| format!("cannot read link {path}: {e}"))?;
    Ok(t.to_string_lossy().into_owned())
}

/// Whether a link text, taken relative to the link's directory, names
/// `/dev/null` (`/dev/null`, `//dev/null`, `../../../dev/null`...).
pub(crate) fn names_dev_null(link_dir: &str, target: &str) -> bool {
    let joined = if target.starts_with('/') {
        target.to_string()
    } else {
        format!("{link_dir}/{target}")
    };
    let mut parts: Vec<&str> = Vec::new();
    for c in joined.split('/') {
        match c {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            c => parts.push(c),
        }
    }
    parts == ["dev", "null"]
}

/// Whether a directory entry's name enables `unit`.
pub(crate) fn enables(entry: &str, unit: &str) -> bool {
    if entry == unit {
        return true;
    }
    // A template `foo@.service` is enabled through its instances.
    match unit.split_once("@.") {
        Some((prefix, suffix)) => entry
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('@'))
            .and_then(|r| r.strip_suffix(suffix))
            .and_then(|r| r.strip_suffix('.'))
            .is_some_and(|instance| !instance.is_empty()),
        None => false,
    }
}

/// Entries of a directory, or none when it does not exist.
fn list(ctx: &Ctx, dir: &str) -> Result<Vec<String>, String> {
    match ctx.fs.list_dir(dir) {
        Ok(v) => Ok(v),
        Err(e) if gone(&e) => Ok(Vec::new()),
        Err(e) => Err(format!("cannot list {dir}: {e}")),
    }
}

fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// What the unit directories say about one unit.
#[derive(Debug, Default)]
struct Found {
    /// `masked: PATH -> /dev/null`
    mask: Option<String>,
    /// A mask in /run hidden by a unit file in /etc.
    shadowed_mask: Option<String>,
    /// Enabling entries, as evidence lines.
    links: Vec<String>,
    /// The first unit file found, in precedence order.
    unit_file: Option<String>,
}

fn inspect(ctx: &Ctx, unit: &str) -> Result<Found, String> {
    let mut found = Found::default();
    // Mask: the first entry for the unit in /etc, then /run, decides.
    for dir in MASK_DIRS {
        let path = format!("{dir}/{unit}");
        let Some(meta) = lstat_opt(ctx, &path)? else {
            continue;
        };
        if meta.file_type().is_symlink() {
            let target = link_text(ctx, &path)?;
            if names_dev_null(dir, &target) {
                found.mask = Some(format!("masked: {path} -> {target}"));
            }
        }
        break;
    }
    if found.mask.is_none() {
        // Say so when /etc overrides a runtime mask.
        let run = format!("{}/{unit}", MASK_DIRS[1]);
        if let Some(m) = lstat_opt(ctx, &run)? {
            if m.file_type().is_symlink() {
                let target = link_text(ctx, &run)?;
                if names_dev_null(MASK_DIRS[1], &target) {
                    found.shadowed_mask = Some(format!(
                        "runtime mask {run} -> {target} is overridden by {}/{unit}",
                        MASK_DIRS[0]
                    ));
                }
            }
        }
    }
    // Unit file: the unit itself, or its template for an instance.
    let template = unit.split_once('@').and_then(|(p, rest)| {
        let (_, suffix) = rest.rsplit_once('.')?;
        (!rest.starts_with('.')).then(|| format!("{p}@.{suffix}"))
    });
    'search: for name in std::iter::once(unit.to_string()).chain(template) {
        for dir in SEARCH_DIRS {
            let path = format!("{dir}/{name}");
            if lstat_opt(ctx, &path)?.is_some() {
                found.unit_file = Some(path);
                break 'search;
            }
        }
    }
    // Enabling links in every *.wants / *.requires directory. On a merged-/usr
    // system /lib is /usr/lib: read each directory once.
    let mut seen = std::collections::HashSet::new();
    for dir in SEARCH_DIRS {
        if let Ok(host) = ctx.fs.resolve(dir, true) {
            if !seen.insert(host) {
                continue;
            }
        }
        for sub in list(ctx, dir)? {
            let name = file_name(&sub);
            if !(name.ends_with(".wants") || name.ends_with(".requires")) {
                continue;
            }
            match ctx.fs.stat(&sub) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => continue,
                Err(e) if gone(&e) => continue,
                Err(e) => return Err(format!("cannot read {sub}: {e}")),
            }
            for entry in list(ctx, &sub)? {
                if !enables(file_name(&entry), unit) {
                    continue;
                }
                let Some(meta) = lstat_opt(ctx, &entry)? else {
                    continue;
                };
                // systemd pulls in whatever the entry names, link or not.
                found.links.push(if meta.file_type().is_symlink() {
                    format!("enabled: {entry} -> {}", link_text(ctx, &entry)?)
                } else {
                    format!("enabled: {entry} ({})", crate::rootfs::kind_name(&meta))
                });
            }
        }
    }
    Ok(found)
}

/// Evaluates a `service` check.
pub fn evaluate(spec: &ServiceCheck, ctx: &Ctx) -> Outcome {
    let unit = match unit_name(&spec.unit) {
        Ok(u) => u,
        Err(e) => return Outcome::error(e),
    };
    let found = match inspect(ctx, &unit) {
        Ok(f) => f,
        Err(e) => return Outcome::error(e),
    };
    let masked = found.mask.is_some();
    let enabled = !found.links.is_empty();
    let mut ev: Vec<String> = Vec::new();
    ev.extend(found.mask.clone());
    ev.extend(found.shadowed_mask.clone());
    if enabled {
        ev.extend(found.links.iter().take(MAX_LINKS_SHOWN).cloned());
        if found.links.len() > MAX_LINKS_SHOWN {
            ev.push(format!(
                "and {} more enabling links",
                found.links.len() - MAX_LINKS_SHOWN
            ));
        }
    } else if !masked {
        // (A masked unit's "file" is the mask link itself: said above.)
        ev.push(match &found.unit_file {
            Some(f) => {
                format!("not enabled: no *.wants or *.requires link to {unit} (unit file {f})")
            }
            None => format!("{unit} not installed: no unit file and no links"),
        });
    }
    if !masked && spec.state == UnitState::Masked {
        ev.insert(0, format!("{unit} is not masked"));
    }
    let ok = match spec.state {
        UnitState::Enabled => enabled && !masked,
        UnitState::Disabled => !enabled || masked,
        UnitState::Masked => masked,
    };
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::report::Status;
    use std::os::unix::fs::symlink;
    use std::path::Path;

    fn write(root: &Path, p: &str, content: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    fn link(root: &Path, target: &str, p: &str) {
        let p = root.join(p.trim_start_matches('/'));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    fn run(root: &Path, unit: &str, state: UnitState) -> Outcome {
        let c = Ctx::new(root.to_path_buf(), None);
        evaluate(
            &ServiceCheck {
                unit: unit.into(),
                state,
            },
            &c,
        )
    }

    const UNIT: &str = "[Unit]\nDescription=x\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn unit_names() {
        assert_eq!(unit_name("ssh").unwrap(), "ssh.service");
        assert_eq!(unit_name("ssh.socket").unwrap(), "ssh.socket");
        assert_eq!(unit_name("getty@tty1").unwrap(), "getty@tty1.service");
        assert_eq!(unit_name("org.foo").unwrap(), "org.foo.service");
        for bad in ["", "..", "../x", "a b", "a/b"] {
            assert!(unit_name(bad).is_err(), "{bad}");
        }
        assert_eq!(
            run(Path::new("/nonexistent"), "../etc", UnitState::Disabled).status,
            Status::Error
        );
    }

    #[test]
    fn enabled_via_wants_link() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/ssh.service", UNIT);
        link(
            r,
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
        );
        let out = run(r, "ssh", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "enabled: /etc/systemd/system/multi-user.target.wants/ssh.service -> /lib/systemd/system/ssh.service"
            ]
        );
        assert_eq!(run(r, "ssh", UnitState::Disabled).status, Status::Fail);
        let out = run(r, "ssh.service", UnitState::Masked);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(out.evidence[0], "ssh.service is not masked");
    }

    #[test]
    fn enabled_via_requires_and_vendor_wants() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/usr/lib/systemd/system/journald.service", UNIT);
        link(
            r,
            "../journald.service",
            "/usr/lib/systemd/system/sysinit.target.wants/journald.service",
        );
        assert_eq!(run(r, "journald", UnitState::Enabled).status, Status::Pass);
        link(
            r,
            "/x",
            "/etc/systemd/system/local-fs.target.requires/data.mount",
        );
        assert_eq!(
            run(r, "data.mount", UnitState::Enabled).status,
            Status::Pass
        );
    }

    #[test]
    fn installed_but_not_enabled() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/telnet.service", UNIT);
        // A link for another unit, and one whose name only starts alike.
        link(
            r,
            "/lib/systemd/system/cron.service",
            "/etc/systemd/system/multi-user.target.wants/cron.service",
        );
        link(
            r,
            "/x",
            "/etc/systemd/system/multi-user.target.wants/telnet.service.bak",
        );
        let out = run(r, "telnet", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "not enabled: no *.wants or *.requires link to telnet.service (unit file /lib/systemd/system/telnet.service)"
            ]
        );
        assert_eq!(run(r, "telnet", UnitState::Enabled).status, Status::Fail);
        assert_eq!(run(r, "telnet", UnitState::Masked).status, Status::Fail);
    }

    #[test]
    fn not_installed_counts_as_disabled() {
        let t = tempfile::tempdir().unwrap();
        let out = run(t.path(), "rsh", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec!["rsh.service not installed: no unit file and no links"]
        );
        assert_eq!(
            run(t.path(), "rsh", UnitState::Enabled).status,
            Status::Fail
        );
    }

    #[test]
    fn masked_link_is_read_not_resolved_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/avahi-daemon.service", UNIT);
        // The root has no /dev at all: the link text alone decides.
        link(r, "/dev/null", "/etc/systemd/system/avahi-daemon.service");
        let out = run(r, "avahi-daemon", UnitState::Masked);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec!["masked: /etc/systemd/system/avahi-daemon.service -> /dev/null"]
        );
        assert_eq!(
            run(r, "avahi-daemon", UnitState::Disabled).status,
            Status::Pass
        );
        // Masked wins over a leftover wants link: not enabled.
        link(
            r,
            "/lib/systemd/system/avahi-daemon.service",
            "/etc/systemd/system/multi-user.target.wants/avahi-daemon.service",
        );
        let out = run(r, "avahi-daemon", UnitState::Enabled);
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert_eq!(out.evidence.len(), 2);
        assert_eq!(
            run(r, "avahi-daemon", UnitState::Disabled).status,
            Status::Pass
        );
    }

    #[test]
    fn dev_null_inside_the_root_is_never_looked_up() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // An image whose /dev/null is a plain file, or a link elsewhere:
        // neither changes the link text.
        write(r, "/dev/null", "not a device");
        link(r, "/dev/null", "/etc/systemd/system/cups.service");
        assert_eq!(run(r, "cups", UnitState::Masked).status, Status::Pass);
        std::fs::remove_file(r.join("dev/null")).unwrap();
        link(r, "/lib/systemd/system/cups.service", "/dev/null");
        write(r, "/lib/systemd/system/cups.service", UNIT);
        assert_eq!(run(r, "cups", UnitState::Masked).status, Status::Pass);
        // A relative link that names /dev/null is a mask too.
        link(
            r,
            "../../../dev/null",
            "/etc/systemd/system/rpcbind.service",
        );
        assert_eq!(run(r, "rpcbind", UnitState::Masked).status, Status::Pass);
    }

    #[test]
    fn empty_file_or_other_link_is_not_a_mask() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/etc/systemd/system/nfs.service", "");
        let out = run(r, "nfs", UnitState::Masked);
        assert_eq!(out.status, Status::Fail, "{out:?}");
        link(
            r,
            "/lib/systemd/system/x.service",
            "/etc/systemd/system/x.service",
        );
        assert_eq!(run(r, "x", UnitState::Masked).status, Status::Fail);
    }

    #[test]
    fn runtime_mask_under_run() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/bluetooth.service", UNIT);
        link(r, "/dev/null", "/run/systemd/system/bluetooth.service");
        let out = run(r, "bluetooth", UnitState::Masked);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec!["masked: /run/systemd/system/bluetooth.service -> /dev/null"]
        );
        // A unit file in /etc takes precedence over the runtime mask.
        write(r, "/etc/systemd/system/bluetooth.service", UNIT);
        let out = run(r, "bluetooth", UnitState::Masked);
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert!(out.evidence.iter().any(|e| e.contains("is overridden by")));
    }

    #[test]
    fn template_enabled_through_an_instance() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        write(r, "/lib/systemd/system/getty@.service", UNIT);
        link(
            r,
            "/lib/systemd/system/getty@.service",
            "/etc/systemd/system/getty.target.wants/getty@tty1.service",
        );
        let out = run(r, "getty@.service", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(
            out.evidence[0].contains("getty@tty1.service -> "),
            "{out:?}"
        );
        assert_eq!(
            run(r, "getty@tty1", UnitState::Enabled).status,
            Status::Pass
        );
        // Another instance is installed (through the template) but not enabled.
        let out = run(r, "getty@tty2", UnitState::Disabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].contains("unit file /lib/systemd/system/getty@.service"));
        assert!(!enables("getty@.service", "getty@.socket"));
        assert!(!enables("gettyx@tty1.service", "getty@.service"));
        assert!(!enables("getty@.service.wants", "getty@.service"));
    }

    #[test]
    fn symlinked_unit_dirs_stay_in_the_root() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        // Merged /usr: /lib -> usr/lib.
        write(r, "/usr/lib/systemd/system/ssh.service", UNIT);
        link(r, "usr/lib", "/lib");
        link(
            r,
            "/lib/systemd/system/ssh.service",
            "/etc/systemd/system/multi-user.target.wants/ssh.service",
        );
        let out = run(r, "ssh", UnitState::Enabled);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        // A vendor link is listed once, not once per name of the directory.
        link(
            r,
            "../ssh.service",
            "/usr/lib/systemd/system/multi-user.target.wants/ssh.service",
        );
        let out = run(r, "ssh", UnitState::Enabled);
        assert_eq!(out.evidence.len(), 2, "{out:?}");
    }
}
