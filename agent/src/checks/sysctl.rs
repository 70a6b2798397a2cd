//! `kind = "sysctl"`: a kernel parameter at runtime (`PROC/sys/...`) and,
//! with `persistent = true`, the value sysctl.d and sysctl.conf set at boot,
//! computed as systemd-sysctl does: `*.conf` files from the sysctl.d
//! directories (a name in an earlier directory shadows the same name in
//! later ones), applied in file-name order, then `/etc/sysctl.conf`; later
//! assignments win, and an explicit key beats a glob pattern such as
//! `net.ipv4.conf.*.rp_filter` whatever their order.

use super::{Ctx, Outcome};
use crate::rootfs::{ReadError, RootFs};
use plumb_core::check::SysctlCheck;
use plumb_core::compare::Comparison;
use std::path::Path;

/// Directories systemd-sysctl reads, highest precedence first.
const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
const SYSCTL_CONF: &str = "/etc/sysctl.conf";

/// The `*.conf` files of drop-in directories in the order they apply:
/// sorted by file name, a name in an earlier directory shadowing the same
/// name in later ones, and a name masked by a symlink to `/dev/null` (or an
/// empty file, which sets nothing anyway) dropped. Missing directories are
/// fine; a directory that cannot be listed is an error.
pub(super) fn drop_in_files(ctx: &Ctx, dirs: &[&str]) -> Result<Vec<String>, String> {
    let mut by_name: std::collections::BTreeMap<String, Option<String>> = Default::default();
    for dir in dirs {
        let entries = match ctx.fs.list_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
            Err(e) => return Err(format!("cannot list {dir}: {e}")),
        };
        for path in entries {
            let name = path.rsplit('/').next().unwrap_or_default().to_string();
            if !name.ends_with(".conf") || by_name.contains_key(&name) {
                continue;
            }
            // Resolved inside the root: the directory itself may be a symlink.
            let masked = ctx.fs.resolve(&path, false).is_ok_and(|host| {
                std::fs::read_link(host).is_ok_and(|t| t == Path::new("/dev/null"))
            });
            by_name.insert(name, (!masked).then_some(path));
        }
    }
    Ok(by_name.into_values().flatten().collect())
}

/// A key in systemd's normalized form: `/` separates components. When the
/// first separator is `.`, dots and slashes swap (`net.ipv4.conf.eth0/1.x`
/// names the interface `eth0.1`), as `sysctl_normalize` does.
pub(crate) fn normalize(key: &str) -> String {
    let key = key.trim().trim_start_matches('/');
    match key.find(['.', '/']) {
        Some(i) if key.as_bytes()[i] == b'.' => key
            .chars()
            .map(|c| match c {
                '.' => '/',
                '/' => '.',
                c => c,
            })
            .collect(),
        _ => key.to_string(),
    }
}

/// The dotted form for evidence.
pub(crate) fn dotted(normalized: &str) -> String {
    normalized
        .chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

/// One assignment in a sysctl file.
#[derive(Debug, Clone)]
struct Assignment {
    /// The key as written, for evidence.
    key: String,
    value: String,
    at: String,
}

/// What the boot-time configuration sets for a key.
#[derive(Debug, Default)]
struct Persistent {
    explicit: Option<Assignment>,
    pattern: Option<Assignment>,
}

impl Persistent {
    fn effective(&self) -> Option<&Assignment> {
        self.explicit.as_ref().or(self.pattern.as_ref())
    }
}

/// Reads the boot-time configuration for one normalized key.
fn persistent(ctx: &Ctx, key: &str) -> Result<Persistent, String> {
    let mut files = drop_in_files(ctx, SYSCTL_DIRS)?;
    match ctx.fs.lstat(SYSCTL_CONF) {
        Ok(_) => files.push(SYSCTL_CONF.to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {SYSCTL_CONF}: {e}")),
    }
    let mut found = Persistent::default();
    for f in files {
        let text = ctx
            .fs
            .read_text(&f)
            .map_err(|e| format!("cannot read {e}"))?;
        for (n, line) in text.numbered() {
            let line = line.trim();
            if line.is_empty() || line.starts_with(['#', ';']) {
                continue;
            }
            // systemd ignores (with a warning) lines without `=`.
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let written = k.trim();
            let k = normalize(written.strip_prefix('-').unwrap_or(written));
            let a = Assignment {
                key: written.to_string(),
                value: v.trim().to_string(),
                at: text.at(n),
            };
            if k == key {
                found.explicit = Some(a);
            } else if crate::rootfs::has_glob_chars(&k)
                && plumb_core::glob(&k).is_ok_and(|g| g.is_match(key))
            {
                found.pattern = Some(a);
            }
        }
    }
    Ok(found)
}

/// The runtime values of a normalized key, `(key, value)` with white space
/// folded; a key with glob characters (`net/ipv4/conf/*/rp_filter`) names
/// every matching parameter. Empty when the kernel has no such parameter.
fn runtime(proc: &Path, key: &str) -> Result<Vec<(String, String)>, String> {
    let fs = RootFs::new(proc);
    let keys = if crate::rootfs::has_glob_chars(key) {
        fs.glob(&format!("/sys/{key}"))
            .map_err(|e| format!("cannot list {}/sys/{key}: {e}", proc.display()))?
            .into_iter()
            .filter_map(|p| p.strip_prefix("/sys/").map(str::to_string))
            .collect()
    } else {
        vec![key.to_string()]
    };
    let mut out = Vec::new();
    for k in keys {
        match fs.read(&format!("/sys/{k}")) {
            Ok(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                out.push((k, text.split_whitespace().collect::<Vec<_>>().join(" ")));
            }
            Err(ReadError::NotFound(_)) => {}
            Err(e) => return Err(format!("cannot read {}{e}", proc.display())),
        }
    }
    Ok(out)
}

/// Evaluates a `sysctl` check.
pub fn evaluate(spec: &SysctlCheck, ctx: &Ctx) -> Outcome {
    let cmp = match spec.comparison() {
        Ok(c) => c,
        Err(e) => return Outcome::error(format!("invalid check: {e}")),
    };
    let key = normalize(&spec.key);
    let name = dotted(&key);
    let mut evidence = Vec::new();
    let mut ok = true;
    let mut checked_any = false;
    // Said last: the value and the reason for a failure come first.
    let mut note = None;

    match &ctx.proc {
        None if !spec.persistent => {
            return Outcome::skipped(format!(
                "{name}: runtime state not available: no proc directory for this root (give --proc DIR)"
            ));
        }
        None => {
            note = Some(format!(
                "{name}: runtime value not checked: no proc directory for this root (give --proc DIR); persistent configuration only"
            ));
        }
        Some(proc) => match runtime(proc, &key) {
            Err(e) => return Outcome::error(e),
            Ok(values) if values.is_empty() => {
                if !spec.persistent && !matches!(cmp, Comparison::Absent(_)) {
                    return Outcome::skipped(format!(
                        "{name}: no such kernel parameter in this kernel ({}/sys/{key} does not exist)",
                        proc.display()
                    ));
                }
                evidence.push(format!("{name}: not present in this kernel (runtime)"));
                if matches!(cmp, Comparison::Absent(_)) {
                    ok &= cmp.holds(None, false);
                    checked_any = true;
                }
            }
            Ok(values) => {
                for (k, v) in values {
                    evidence.push(format!("{} = {v} (runtime)", dotted(&k)));
                    ok &= cmp.holds(Some(&v), false);
                }
                checked_any = true;
            }
        },
    }

    if spec.persistent {
        let found = match persistent(ctx, &key) {
            Ok(f) => f,
            Err(e) => return Outcome::error(e),
        };
        match found.effective() {
            Some(a) => {
                evidence.push(format!("{} = {} ({})", a.key, a.value, a.at));
                ok &= cmp.holds(Some(&a.value), false);
            }
            None => {
                evidence.push(format!("{name} not set in sysctl.d/sysctl.conf"));
                ok &= cmp.holds(None, false);
            }
        }
        checked_any = true;
    }
    if !checked_any {
        evidence.extend(note);
        return Outcome::skipped(evidence.join("; "));
    }
    if !ok {
        evidence.push(cmp.to_string());
    }
    evidence.extend(note);
    Outcome::verdict(ok, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture::{Fixture, assert_status};
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;

    impl Fixture {
        fn proc_value(&self, key: &str, content: &str) -> &Fixture {
            self.proc_file(&format!("sys/{}", key.replace('.', "/")), content)
        }
        fn sysctl(&self, key: &str, equals: &str, persistent: bool, with_proc: bool) -> Outcome {
            let spec = SysctlCheck {
                key: key.into(),
                persistent,
                equals: Some(Scalar::Str(equals.into())),
                one_of: None,
                min: None,
                max: None,
                absent: None,
                excludes: None,
            };
            evaluate(&spec, &self.ctx(with_proc))
        }
    }

    #[test]
    fn runtime_value_from_fake_proc() {
        let f = Fixture::new();
        f.proc_value("net.ipv4.ip_forward", "1\n");
        let o = f.sysctl("net.ipv4.ip_forward", "0", false, true);
        assert_status(&o, Status::Fail);
        assert_eq!(
            o.evidence,
            vec!["net.ipv4.ip_forward = 1 (runtime)", "expected \"0\""]
        );
        assert_status(
            &f.sysctl("net/ipv4/ip_forward", "1", false, true),
            Status::Pass,
        );
        // Several numbers with tabs compare with white space folded.
        f.proc_value("kernel.printk", "4\t4\t1\t7\n");
        assert_status(
            &f.sysctl("kernel.printk", "4 4 1 7", false, true),
            Status::Pass,
        );
    }

    #[test]
    fn unknown_key_and_no_proc_are_skipped() {
        let f = Fixture::new();
        let o = f.sysctl("net.ipv4.nope", "1", false, true);
        assert_status(&o, Status::Skipped);
        assert!(o.evidence[0].contains("no such kernel parameter"));
        let o = f.sysctl("net.ipv4.ip_forward", "0", false, false);
        assert_status(&o, Status::Skipped);
        assert!(o.evidence[0].contains("no proc directory"));
    }

    #[test]
    fn persistent_without_proc_checks_files_only_and_says_so() {
        let f = Fixture::new();
        f.write(
            "/etc/sysctl.d/99-x.conf",
            "# c\n; c\nnet.ipv4.ip_forward = 0\n",
        );
        let o = f.sysctl("net.ipv4.ip_forward", "0", true, false);
        assert_status(&o, Status::Pass);
        assert!(o.evidence[1].contains("runtime value not checked"));
        assert_eq!(
            o.evidence[0],
            "net.ipv4.ip_forward = 0 (/etc/sysctl.d/99-x.conf:3)"
        );
    }

    #[test]
    fn both_runtime_and_persistent_must_hold() {
        let f = Fixture::new();
        f.proc_value("net.ipv4.ip_forward", "1\n");
        f.write("/etc/sysctl.d/99-x.conf", "net.ipv4.ip_forward=0\n");
        let o = f.sysctl("net.ipv4.ip_forward", "0", true, true);
        assert_status(&o, Status::Fail);
        assert_eq!(o.evidence[0], "net.ipv4.ip_forward = 1 (runtime)");
        assert_eq!(
            o.evidence[1],
            "net.ipv4.ip_forward = 0 (/etc/sysctl.d/99-x.conf:1)"
        );
        f.proc_value("net.ipv4.ip_forward", "0\n");
        assert_status(
            &f.sysctl("net.ipv4.ip_forward", "0", true, true),
            Status::Pass,
        );
        // Not set anywhere.
        let o = f.sysctl("net.ipv4.tcp_syncookies", "1", true, false);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[1].contains("not set in sysctl.d/sysctl.conf"));
    }

    #[test]
    fn earlier_directory_shadows_same_file_name() {
        let f = Fixture::new();
        f.write(
            "/usr/lib/sysctl.d/50-default.conf",
            "kernel.kptr_restrict = 1\n",
        );
        f.write(
            "/etc/sysctl.d/50-default.conf",
            "kernel.kptr_restrict = 2\n",
        );
        // The /usr/lib file is shadowed, so it does not apply even though
        // a later-sorted name would otherwise win.
        f.write(
            "/usr/lib/sysctl.d/10-other.conf",
            "kernel.yama.ptrace_scope = 1\n",
        );
        let o = f.sysctl("kernel.kptr_restrict", "2", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[1],
            "kernel.kptr_restrict = 2 (/etc/sysctl.d/50-default.conf:1)"
        );
        // A /dev/null symlink masks the name entirely.
        std::fs::remove_file(f.root.path().join("etc/sysctl.d/50-default.conf")).unwrap();
        std::os::unix::fs::symlink(
            "/dev/null",
            f.root.path().join("etc/sysctl.d/50-default.conf"),
        )
        .unwrap();
        let o = f.sysctl("kernel.kptr_restrict", "1", true, false);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[1].contains("not set"), "{:?}", o.evidence);
    }

    #[test]
    fn symlinked_drop_in_directory_stays_inside_the_root() {
        let f = Fixture::new();
        f.write("/srv/sysctl/10-a.conf", "kernel.x = 1\n");
        std::fs::create_dir_all(f.root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv/sysctl", f.root.path().join("etc/sysctl.d")).unwrap();
        let o = f.sysctl("kernel.x", "1", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(o.evidence[1], "kernel.x = 1 (/etc/sysctl.d/10-a.conf:1)");
        // A mask inside the symlinked directory is seen inside the root too.
        f.write("/usr/lib/sysctl.d/50-y.conf", "kernel.y = 1\n");
        std::os::unix::fs::symlink("/dev/null", f.root.path().join("srv/sysctl/50-y.conf"))
            .unwrap();
        let o = f.sysctl("kernel.y", "1", true, false);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[1].contains("not set"), "{:?}", o.evidence);
    }

    #[test]
    fn files_apply_in_name_order_across_directories_then_sysctl_conf() {
        let f = Fixture::new();
        f.write(
            "/usr/lib/sysctl.d/90-z.conf",
            "net.ipv4.conf.all.rp_filter = 2\n",
        );
        f.write(
            "/etc/sysctl.d/10-a.conf",
            "net.ipv4.conf.all.rp_filter = 1\n",
        );
        f.write(
            "/etc/sysctl.d/readme.txt",
            "net.ipv4.conf.all.rp_filter = 9\n",
        );
        let o = f.sysctl("net.ipv4.conf.all.rp_filter", "2", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[1],
            "net.ipv4.conf.all.rp_filter = 2 (/usr/lib/sysctl.d/90-z.conf:1)"
        );
        f.write(
            "/etc/sysctl.conf",
            "# local\n-net/ipv4/conf/all/rp_filter=1\n",
        );
        let o = f.sysctl("net.ipv4.conf.all.rp_filter", "1", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[1],
            "-net/ipv4/conf/all/rp_filter = 1 (/etc/sysctl.conf:2)"
        );
    }

    #[test]
    fn explicit_keys_beat_glob_patterns() {
        let f = Fixture::new();
        f.write(
            "/etc/sysctl.d/10.conf",
            "net.ipv4.conf.all.accept_redirects = 0\n",
        );
        f.write(
            "/etc/sysctl.d/20.conf",
            "net.ipv4.conf.*.accept_redirects = 1\n",
        );
        assert_status(
            &f.sysctl("net.ipv4.conf.all.accept_redirects", "0", true, false),
            Status::Pass,
        );
        let o = f.sysctl("net.ipv4.conf.eth0.accept_redirects", "0", true, false);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[1].contains("net.ipv4.conf.*.accept_redirects = 1"));
    }

    #[test]
    fn keys_with_dots_in_components() {
        assert_eq!(
            normalize("net.ipv4.conf.eth0/100.rp_filter"),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            normalize("net/ipv4/conf/eth0.100/rp_filter"),
            "net/ipv4/conf/eth0.100/rp_filter"
        );
        assert_eq!(
            dotted("net/ipv4/conf/eth0.100/rp_filter"),
            "net.ipv4.conf.eth0/100.rp_filter"
        );
    }

    #[test]
    fn glob_key_checks_every_matching_parameter() {
        let f = Fixture::new();
        f.proc_value("net.ipv4.conf.all.rp_filter", "1");
        f.proc_value("net.ipv4.conf.eth0.rp_filter", "0");
        let o = f.sysctl("net.ipv4.conf.*.rp_filter", "1", false, true);
        assert_status(&o, Status::Fail);
        assert_eq!(o.evidence.len(), 3, "{:?}", o.evidence);
    }

    #[test]
    fn unreadable_inputs_are_errors() {
        let f = Fixture::new();
        std::fs::create_dir_all(f.root.path().join("etc/sysctl.d/bad.conf")).unwrap();
        let o = f.sysctl("net.ipv4.ip_forward", "0", true, false);
        assert_status(&o, Status::Error);
        assert!(o.evidence[0].contains("directory"), "{:?}", o.evidence);
        let g = Fixture::new();
        std::fs::create_dir_all(g.proc.path().join("sys/net/ipv4/ip_forward")).unwrap();
        assert_status(
            &g.sysctl("net.ipv4.ip_forward", "0", false, true),
            Status::Error,
        );
        let h = Fixture::new();
        h.write(
            "/etc/sysctl.conf",
            "\u{feff}odd \u{0} line without equals\nkernel.x = \u{fffd}\n",
        );
        assert_status(&h.sysctl("kernel.x", "1", true, false), Status::Fail);
    }
}
