//! `kernel_module_disable`: `install NAME /bin/false` and `blacklist NAME`
//! in the Plumbline-owned `/etc/modprobe.d/plumbline.conf`. A loaded module
//! is not unloaded: that takes effect at the next boot or `modprobe -r`.

use super::plan::{self, Plan, PlanError, View};

/// The file this action owns.
pub const OWNED: &str = "/etc/modprobe.d/plumbline.conf";
const HEADER: &str =
    "# Written by Plumbline (plumb remediate): kernel modules the baseline disables.\n";

/// Plans disabling module `name`.
pub fn plan(view: &View, name: &str) -> Result<Plan, PlanError> {
    // kmod runs install commands through the shell: the name must be a
    // plain module name, never anything a shell would interpret.
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(format!("\"{name}\" is not a kernel module name").into());
    }
    let norm = name.replace('-', "_");
    let old = view.read(OWNED)?;
    let mut new = match &old {
        Some(b) => b.clone(),
        None => HEADER.as_bytes().to_vec(),
    };
    let has = |words: &[&str]| {
        plan::lines(&new).iter().any(|l| {
            let t = plan::text(l);
            let w: Vec<&str> = t.split_whitespace().collect();
            w.len() == words.len()
                && w[0] == words[0]
                && w[1].replace('-', "_") == norm
                && w[2..] == words[2..]
        })
    };
    let install = has(&["install", name, "/bin/false"]);
    let blacklist = has(&["blacklist", name]);
    if !install {
        plan::append_line(&mut new, &format!("install {name} /bin/false"));
    }
    if !blacklist {
        plan::append_line(&mut new, &format!("blacklist {name}"));
    }
    let mut p = Plan::default();
    p.ops.extend(view.write_owned(OWNED, old, new)?);
    if view.ctx.proc.is_some() {
        p.notes.push(format!(
            "{name} is not unloaded if it is loaded now: that takes `modprobe -r {name}` or a reboot"
        ));
    }
    Ok(p)
}
