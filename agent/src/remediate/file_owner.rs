//! `file_owner`: chown of a path (or every path a glob matches), names
//! resolved in the checked root's passwd and group, never the host's.

use super::plan::{Op, Plan, PlanError, View};
use std::os::unix::fs::MetadataExt as _;

/// Plans `chown owner:group path`.
pub fn plan(
    view: &View,
    path: &str,
    owner: Option<&str>,
    group: Option<&str>,
) -> Result<Plan, PlanError> {
    let users = view.ctx.users()?;
    let uid = owner
        .map(|o| {
            users
                .uid_of(o)
                .ok_or_else(|| format!("owner \"{o}\" is not in the root's /etc/passwd"))
        })
        .transpose()?;
    let gid = group
        .map(|g| {
            users
                .gid_of(g)
                .ok_or_else(|| format!("group \"{g}\" is not in the root's /etc/group"))
        })
        .transpose()?;
    let mut p = Plan::default();
    let found = super::file_mode::targets(view, path)?;
    if found.is_empty() {
        p.notes.push(format!(
            "{path} does not exist; file_owner does not create files"
        ));
    }
    for (path, host, m) in found {
        let old = (m.uid(), m.gid());
        let new = (uid.unwrap_or(old.0), gid.unwrap_or(old.1));
        if old == new {
            continue;
        }
        let mut words = Vec::new();
        if new.0 != old.0 {
            words.push(format!(
                "owner {} → {}",
                users.show_uid(old.0),
                users.show_uid(new.0)
            ));
        }
        if new.1 != old.1 {
            words.push(format!(
                "group {} → {}",
                users.show_gid(old.1),
                users.show_gid(new.1)
            ));
        }
        p.ops.push(Op::Chown {
            path,
            host,
            old,
            new,
            shown: words.join(", "),
        });
    }
    Ok(p)
}
