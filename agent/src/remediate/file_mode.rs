//! `file_mode`: chmod of a path (or every path a glob matches). A symlink
//! is followed inside the root, as the `file` check does.

use super::plan::{Op, Plan, PlanError, View, io_err};
use std::os::unix::fs::MetadataExt as _;

/// The paths a file action acts on, with the host path of each (symlinks
/// resolved inside the root) and its metadata.
pub(super) fn targets(
    view: &View,
    path: &str,
) -> Result<Vec<(String, std::path::PathBuf, std::fs::Metadata)>, PlanError> {
    let paths = view.ctx.fs.glob(path).map_err(io_err("list", path))?;
    paths
        .into_iter()
        .map(|p| {
            let host = view
                .ctx
                .fs
                .resolve(&p, true)
                .map_err(io_err("resolve", &p))?;
            let m = std::fs::symlink_metadata(&host).map_err(io_err("stat", &p))?;
            Ok((p, host, m))
        })
        .collect()
}

/// Plans `chmod mode path`.
pub fn plan(view: &View, path: &str, mode: &str) -> Result<Plan, PlanError> {
    let want = u32::from_str_radix(mode, 8)
        .ok()
        .filter(|m| *m <= 0o7777)
        .ok_or_else(|| format!("mode \"{mode}\" is not an octal permission mode"))?;
    let mut p = Plan::default();
    let found = targets(view, path)?;
    if found.is_empty() {
        p.notes.push(format!(
            "{path} does not exist; file_mode does not create files"
        ));
    }
    for (path, host, m) in found {
        let old = m.mode() & 0o7777;
        if old != want {
            p.ops.push(Op::Chmod {
                path,
                host,
                old,
                new: want,
            });
        }
    }
    Ok(p)
}
