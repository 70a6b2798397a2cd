//! `line_absent`: every line matching the pattern (comment lines aside)
//! is commented out with `# plumb: `, so the change is visible and easy to
//! undo by hand; every other byte stays as it was.

use super::plan::{self, COMMENT_PREFIX, Plan, PlanError, View, io_err};

/// Plans commenting out the lines of `path` (or every file a glob
/// matches) that match `pattern`.
pub fn plan(view: &View, path: &str, pattern: &str) -> Result<Plan, PlanError> {
    let re = regex::Regex::new(pattern).map_err(|e| format!("invalid pattern: {e}"))?;
    let paths = if crate::rootfs::has_glob_chars(path) {
        view.ctx.fs.glob(path).map_err(io_err("list", path))?
    } else {
        vec![path.to_string()]
    };
    let mut p = Plan::default();
    for f in paths {
        let Some(old) = view.read(&f)? else {
            continue;
        };
        let mut new = Vec::with_capacity(old.len() + 32);
        for l in plan::lines(&old) {
            let t = plan::text(l);
            if !t.trim_start().starts_with('#') && re.is_match(&t) {
                new.extend_from_slice(COMMENT_PREFIX);
            }
            new.extend_from_slice(l);
        }
        p.ops.extend(view.write(&f, Some(old), new)?);
    }
    Ok(p)
}
