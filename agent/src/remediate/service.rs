//! `service_disable` and `service_mask`, on the unit a rule's name stands
//! for as the `service` check resolves it ([`crate::systemd_units`]): an
//! alias (`sshd`) acts on its unit (`ssh.service`). Disable removes what
//! `systemctl disable` removes in `/etc/systemd/system`: symlinks named
//! after the unit, an instance of it (template), or one of its `Alias=`
//! names, and symlinks to the unit file under another name, at the top or
//! in its `*.wants`/`*.requires`/`*.upholds` directories. Mask makes
//! `/etc/systemd/system/UNIT` a symlink to `/dev/null`. `systemctl
//! daemon-reload` follows only on the live root, when systemctl exists.

use super::plan::{Op, Plan, PlanError, View, io_err};
use crate::systemd_units::{
    self, PERSISTENT_CONFIG as ETC, names_dev_null, template_of, unit_name,
};

fn dir_entries(view: &View, dir: &str) -> Result<Vec<String>, PlanError> {
    match view.ctx.fs.list_dir(dir) {
        Ok(v) => Ok(v),
        Err(e)
            if e.kind() == std::io::ErrorKind::NotFound
                || e.raw_os_error() == Some(libc::ENOTDIR) =>
        {
            Ok(Vec::new())
        }
        Err(e) => Err(io_err("list", dir)(e)),
    }
}

fn name_of(p: &str) -> &str {
    p.rsplit('/').next().unwrap_or(p)
}

fn is_symlink(view: &View, p: &str) -> bool {
    view.ctx
        .fs
        .lstat(p)
        .is_ok_and(|m| m.file_type().is_symlink())
}

/// The symlinks under `/etc/systemd/system` (top level and its real
/// subdirectories) that `systemctl disable` removes for `unit`.
fn etc_links(view: &View, unit: &str, aliases: &[String]) -> Result<Vec<String>, PlanError> {
    let mut candidates = Vec::new();
    for e in dir_entries(view, ETC)? {
        if view.ctx.fs.lstat(&e).is_ok_and(|m| m.is_dir()) {
            candidates.extend(dir_entries(view, &e)?);
        } else {
            candidates.push(e);
        }
    }
    let mut out = Vec::new();
    for p in candidates {
        if !is_symlink(view, &p) {
            continue;
        }
        let name = name_of(&p);
        let text = link_text(view, &p)?;
        let dir = p.rsplit_once('/').map_or("/", |(d, _)| d);
        if names_dev_null(dir, &text) {
            // A mask, or a masked dependency: not an enablement.
            continue;
        }
        let dest = view
            .ctx
            .fs
            .resolve(&p, true)
            .ok()
            .and_then(|h| h.file_name().map(|n| n.to_string_lossy().into_owned()));
        if name == unit
            || template_of(name).is_some_and(|t| t == unit)
            || aliases.iter().any(|a| a == name)
            || name_of(&text) == unit
            || dest.as_deref() == Some(unit)
        {
            out.push(p);
        }
    }
    Ok(out)
}

fn link_text(view: &View, p: &str) -> Result<String, PlanError> {
    let host = view
        .ctx
        .fs
        .resolve(p, false)
        .map_err(io_err("resolve", p))?;
    std::fs::read_link(&host)
        .map(|t| t.to_string_lossy().into_owned())
        .map_err(io_err("read link", p))
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
    let units = systemd_units::UnitFiles::new(&view.ctx.fs);
    let mut p = Plan::default();
    let mut ev = Vec::new();
    let Some((name, state)) =
        systemd_units::resolve(&units, || view.ctx.unit_aliases(), &unit, &mut ev)?
    else {
        return Ok(p);
    };
    if name != unit {
        p.notes
            .push(format!("{unit} is a name of {name}; disabling {name}"));
    }
    for entry in etc_links(view, &name, &state.info.install.aliases)? {
        let host = view
            .ctx
            .fs
            .resolve(&entry, false)
            .map_err(io_err("resolve", &entry))?;
        let was = format!("-> {}", link_text(view, &entry)?);
        p.ops.push(Op::Remove {
            path: entry,
            host,
            was,
        });
    }
    let links = units
        .boot_links(&name)
        .map_err(systemd_units::UnitError::from)?;
    for l in links.iter().filter(|l| !l.starts_with(&format!("{ETC}/"))) {
        let whose = if l.starts_with("/run/") {
            "a runtime or generator link under /run (gone or regenerated at boot)"
        } else {
            "a vendor link"
        };
        p.notes.push(format!(
            "{l} still starts {name} at boot: {whose}; service_disable leaves it (service_mask overrides it)"
        ));
    }
    p.daemon_reload = !p.ops.is_empty() && reload(view);
    Ok(p)
}

/// Plans `systemctl mask UNIT` done by hand.
pub fn plan_mask(view: &View, unit: &str) -> Result<Plan, PlanError> {
    let unit = unit_name(unit)?;
    // An alias is masked through the unit it names.
    let mut ev = Vec::new();
    let name = match systemd_units::resolve(
        &systemd_units::UnitFiles::new(&view.ctx.fs),
        || view.ctx.unit_aliases(),
        &unit,
        &mut ev,
    ) {
        Ok(Some((name, _))) => name,
        _ => unit.clone(),
    };
    let path = format!("{ETC}/{name}");
    if !view.ctx.fs.stat(ETC).is_ok_and(|m| m.is_dir()) {
        return Err(format!("{ETC} does not exist in this root").into());
    }
    let host = view
        .ctx
        .fs
        .resolve(&path, false)
        .map_err(io_err("resolve", &path))?;
    let replaces = match std::fs::symlink_metadata(&host) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(io_err("stat", &path)(e)),
        Ok(m) if m.file_type().is_symlink() => {
            let t = std::fs::read_link(&host).map_err(io_err("read link", &path))?;
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
