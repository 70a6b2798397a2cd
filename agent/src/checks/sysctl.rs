//! `kind = "sysctl"`: a kernel parameter at runtime (`PROC/sys/...`) and,
//! with `persistent = true`, the value systemd-sysctl applies at boot, as
//! [`crate::sysctl_d`] computes it (sysctl.d files in name order, explicit
//! keys beating globs, `-key` exclusions, `/etc/sysctl.conf` only through
//! Debian's `99-sysctl.conf` link). Evidence names the line that decided.

use super::{Ctx, Outcome};
use crate::rootfs::{ReadError, RootFs};
use crate::sysctl_d::{self, Boot, Config, dotted, normalize};
use plumb_core::check::SysctlCheck;
use plumb_core::compare::Comparison;
use std::path::Path;

/// The boot-time value of a normalized key and the evidence line saying
/// where it comes from.
fn boot(config: &Config, key: &str) -> (Option<String>, String) {
    let name = dotted(key);
    let set = |a: &sysctl_d::Assignment| {
        let v = a.value.clone().unwrap_or_default();
        let line = format!("{} = {v} ({})", a.written, a.at);
        (Some(v), line)
    };
    if sysctl_d::is_glob(key) {
        // A glob rule without runtime parameters to expand it over: what
        // the configuration assigns to that very pattern.
        return match config.assignment(key) {
            Some(a) if a.value.is_some() => set(a),
            _ => (None, format!("{name} not set in sysctl.d")),
        };
    }
    match config.boot_value(key) {
        Boot::Explicit(a) | Boot::Glob(a) => set(a),
        Boot::Excluded(a, Some(g)) => (
            None,
            format!(
                "{name} not set at boot: {} ({}) keeps the glob {} ({}) from applying to it",
                a.written, a.at, g.written, g.at
            ),
        ),
        Boot::Excluded(a, None) => (
            None,
            format!(
                "{name} not set at boot: excluded from globs by {} ({}), assigned nowhere",
                a.written, a.at
            ),
        ),
        Boot::Unset => (None, format!("{name} not set in sysctl.d")),
    }
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
    let mut runtime_keys = Vec::new();
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
                    runtime_keys.push(k);
                }
                checked_any = true;
            }
        },
    }

    if spec.persistent {
        let loaded = ctx.sysctl_d();
        let config = match loaded.as_ref() {
            Ok(c) => c,
            Err(e) => return Outcome::error(e.clone()),
        };
        // A glob rule judges every parameter it names in this kernel.
        let keys = if sysctl_d::is_glob(&key) && !runtime_keys.is_empty() {
            runtime_keys
        } else {
            vec![key.clone()]
        };
        for k in keys {
            let (value, line) = boot(config, &k);
            evidence.push(line);
            ok &= cmp.holds(value.as_deref(), false);
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
        assert!(o.evidence[0].contains("not set in sysctl.d"));
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
            o.evidence[0],
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
        assert!(o.evidence[0].contains("not set"), "{:?}", o.evidence);
    }

    #[test]
    fn symlinked_drop_in_directory_stays_inside_the_root() {
        let f = Fixture::new();
        f.write("/srv/sysctl/10-a.conf", "kernel.x = 1\n");
        std::fs::create_dir_all(f.root.path().join("etc")).unwrap();
        std::os::unix::fs::symlink("/srv/sysctl", f.root.path().join("etc/sysctl.d")).unwrap();
        let o = f.sysctl("kernel.x", "1", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(o.evidence[0], "kernel.x = 1 (/etc/sysctl.d/10-a.conf:1)");
        // A mask inside the symlinked directory is seen inside the root too.
        f.write("/usr/lib/sysctl.d/50-y.conf", "kernel.y = 1\n");
        std::os::unix::fs::symlink("/dev/null", f.root.path().join("srv/sysctl/50-y.conf"))
            .unwrap();
        let o = f.sysctl("kernel.y", "1", true, false);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[0].contains("not set"), "{:?}", o.evidence);
    }

    #[test]
    fn files_apply_in_name_order_across_directories() {
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
        // Hidden files are skipped.
        f.write(
            "/etc/sysctl.d/.zz.conf",
            "net.ipv4.conf.all.rp_filter = 8\n",
        );
        let o = f.sysctl("net.ipv4.conf.all.rp_filter", "2", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[0],
            "net.ipv4.conf.all.rp_filter = 2 (/usr/lib/sysctl.d/90-z.conf:1)"
        );
    }

    #[test]
    fn sysctl_conf_counts_only_through_the_99_sysctl_link() {
        let f = Fixture::new();
        f.write("/usr/lib/sysctl.d/50-default.conf", "kernel.x = 1\n");
        f.write("/etc/sysctl.conf", "# local\n-kernel/x=2\n");
        // Without Debian's link, systemd-sysctl never reads sysctl.conf.
        let o = f.sysctl("kernel.x", "1", true, false);
        assert_status(&o, Status::Pass);
        std::fs::create_dir_all(f.root.path().join("etc/sysctl.d")).unwrap();
        std::os::unix::fs::symlink(
            "../sysctl.conf",
            f.root.path().join("etc/sysctl.d/99-sysctl.conf"),
        )
        .unwrap();
        let o = f.sysctl("kernel.x", "2", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[0],
            "-kernel/x = 2 (/etc/sysctl.conf:2 via /etc/sysctl.d/99-sysctl.conf)"
        );
        // It applies at that name's place: a later name still wins.
        f.write("/run/sysctl.d/zz-late.conf", "kernel.x = 3\n");
        let o = f.sysctl("kernel.x", "3", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(o.evidence[0], "kernel.x = 3 (/run/sysctl.d/zz-late.conf:1)");
    }

    #[test]
    fn entries_that_read_nothing_still_take_their_name() {
        let f = Fixture::new();
        f.write("/usr/lib/sysctl.d/50-a.conf", "kernel.x = 1\n");
        f.write("/usr/lib/sysctl.d/50-b.conf", "kernel.y = 1\n");
        std::fs::create_dir_all(f.root.path().join("etc/sysctl.d/50-a.conf")).unwrap();
        std::fs::create_dir_all(f.root.path().join("run/sysctl.d")).unwrap();
        std::os::unix::fs::symlink(
            "/nonexistent.conf",
            f.root.path().join("run/sysctl.d/50-b.conf"),
        )
        .unwrap();
        for key in ["kernel.x", "kernel.y"] {
            let o = f.sysctl(key, "1", true, false);
            assert_status(&o, Status::Fail);
            assert_eq!(o.evidence[0], format!("{key} not set in sysctl.d"));
        }
    }

    #[test]
    fn minus_key_keeps_globs_off_it() {
        // systemd's own 50-default.conf does this for rp_filter.
        let f = Fixture::new();
        f.write(
            "/usr/lib/sysctl.d/50-default.conf",
            "net.ipv4.conf.default.rp_filter = 2\nnet.ipv4.conf.*.rp_filter = 2\n-net.ipv4.conf.all.rp_filter\n",
        );
        let o = f.sysctl("net.ipv4.conf.all.rp_filter", "2", true, false);
        assert_status(&o, Status::Fail);
        assert_eq!(
            o.evidence[0],
            "net.ipv4.conf.all.rp_filter not set at boot: -net.ipv4.conf.all.rp_filter (/usr/lib/sysctl.d/50-default.conf:3) keeps the glob net.ipv4.conf.*.rp_filter (/usr/lib/sysctl.d/50-default.conf:2) from applying to it"
        );
        let o = f.sysctl("net.ipv4.conf.eth0.rp_filter", "2", true, false);
        assert_status(&o, Status::Pass);
        // Doubled separators still name the key.
        f.write(
            "/etc/sysctl.d/60-x.conf",
            "net.ipv4..conf.all.rp_filter = 1\n",
        );
        let o = f.sysctl("net.ipv4.conf.all.rp_filter", "1", true, false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[0],
            "net.ipv4..conf.all.rp_filter = 1 (/etc/sysctl.d/60-x.conf:1)"
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
        assert!(o.evidence[0].contains("net.ipv4.conf.*.accept_redirects = 1"));
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
        std::fs::create_dir_all(f.root.path().join("etc/sysctl.d")).unwrap();
        nix::unistd::mkfifo(
            &f.root.path().join("etc/sysctl.d/bad.conf"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let o = f.sysctl("net.ipv4.ip_forward", "0", true, false);
        assert_status(&o, Status::Error);
        assert!(o.evidence[0].contains("fifo"), "{:?}", o.evidence);
        let g = Fixture::new();
        std::fs::create_dir_all(g.proc.path().join("sys/net/ipv4/ip_forward")).unwrap();
        assert_status(
            &g.sysctl("net.ipv4.ip_forward", "0", false, true),
            Status::Error,
        );
        let h = Fixture::new();
        h.write(
            "/etc/sysctl.d/x.conf",
            "\u{feff}odd \u{0} line without equals\nkernel.x = \u{fffd}\n",
        );
        assert_status(&h.sysctl("kernel.x", "1", true, false), Status::Fail);
    }
}
