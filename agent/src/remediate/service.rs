//! `service_disable` and `service_mask`. Disable removes the unit's
//! `*.wants`/`*.requires` entries in `/etc/systemd/system` (what
//! `systemctl disable` removes); mask makes `/etc/systemd/system/UNIT` a
//! symlink to `/dev/null`. `systemctl daemon-reload` follows only on the
//! live root, when systemctl exists.

use super::plan::{Op, Plan, PlanError, View};
use crate::checks::service::{enables, names_dev_null, unit_name};

const ETC: &str = "/etc/systemd/system";
/// Vendor unit directories, whose enabling links an admin (and we) leave alone.
const VENDOR: &[&str] = &[
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

fn dir_entries(view: &View, dir: &str) -> Result<Vec<String>, String> {
    match view.ctx.fs.list_dir(dir) {
        Ok(v) => Ok(v),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(format!("cannot list {dir}: {e}")),
    }
}

fn name_of(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

/// The unit's enabling entries under `dir`'s `*.wants`/`*.requires`.
fn links(view: &View, dir: &str, unit: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for sub in dir_entries(view, dir)? {
        let n = name_of(&sub);
        if !(n.ends_with(".wants") || n.ends_with(".requires")) {
            continue;
        }
        if !view.ctx.fs.stat(&sub).is_ok_and(|m| m.is_dir()) {
            continue;
        }
        for e in dir_entries(view, &sub)? {
            if enables(name_of(&e), unit) {
                out.push(e);
            }
        }
    }
    Ok(out)
}

fn reload(view: &View) -> bool {
    view.live()
        && ["/usr/bin/systemctl", "/bin/systemctl"]
            .iter()
            .any(|p| std::path::Path::new(p).is_file())
}

/// Plans `systemctl disable UNIT` done by hand.
pub fn plan_disable(view: &View, unit: &str) -> Result<Plan, PlanError> {
    let unit = unit_name(unit)?;
    let mut p = Plan::default();
    for entry in links(view, ETC, &unit)? {
        let host = view
            .ctx
            .fs
            .resolve(&entry, false)
            .map_err(|e| format!("cannot resolve {entry}: {e}"))?;
        let m =
            std::fs::symlink_metadata(&host).map_err(|e| format!("cannot stat {entry}: {e}"))?;
        if m.is_dir() {
            return Err(format!("{entry} is a directory; not removing it").into());
        }
        let was = if m.file_type().is_symlink() {
            std::fs::read_link(&host)
                .map(|t| format!("-> {}", t.display()))
                .map_err(|e| format!("cannot read link {entry}: {e}"))?
        } else {
            crate::rootfs::kind_name(&m).to_string()
        };
        p.ops.push(Op::Remove {
            path: entry,
            host,
            was,
        });
    }
    for dir in VENDOR {
        for l in links(view, dir, &unit)? {
            p.notes.push(format!(
                "{l} enables {unit} from a vendor directory; service_disable leaves it (service_mask overrides it)"
            ));
        }
    }
    p.daemon_reload = !p.ops.is_empty() && reload(view);
    Ok(p)
}

/// Plans `systemctl mask UNIT` done by hand.
pub fn plan_mask(view: &View, unit: &str) -> Result<Plan, PlanError> {
    let unit = unit_name(unit)?;
    let path = format!("{ETC}/{unit}");
    if !view.ctx.fs.stat(ETC).is_ok_and(|m| m.is_dir()) {
        return Err(format!("{ETC} does not exist in this root").into());
    }
    let host = view
        .ctx
        .fs
        .resolve(&path, false)
        .map_err(|e| format!("cannot resolve {path}: {e}"))?;
    let replaces = match std::fs::symlink_metadata(&host) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(format!("cannot stat {path}: {e}").into()),
        Ok(m) if m.file_type().is_symlink() => {
            let t =
                std::fs::read_link(&host).map_err(|e| format!("cannot read link {path}: {e}"))?;
            let t = t.to_string_lossy().into_owned();
            if names_dev_null(ETC, &t) {
                return Ok(Plan::default());
            }
            Some(t)
        }
        // As systemctl does: a unit file written here by an admin is not overwritten.
        Ok(m) => {
            return Err(format!(
                "{path} is a {} (a local unit file); refusing to replace it with a mask",
                crate::rootfs::kind_name(&m)
            )
            .into());
        }
    };
    let mut p = Plan::default();
    p.ops.push(Op::Symlink {
        path,
        host,
        target: "/dev/null".into(),
        replaces,
    });
    p.daemon_reload = reload(view);
    Ok(p)
}
