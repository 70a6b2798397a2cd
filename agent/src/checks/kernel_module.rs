//! `kind = "kernel_module"`: whether a module is loaded (`PROC/modules`)
//! and whether modprobe.d disables it. A module is disabled when the
//! `install` command kmod would run for it is `/bin/false` or `/bin/true`
//! (or their `/usr/bin` spellings), or when it is blacklisted. kmod uses the
//! first matching `install` line, in file order; files are `*.conf` in the
//! modprobe.d directories, a name in an earlier directory shadowing the same
//! name in later ones, applied in file-name order. `-` and `_` in module
//! names are the same everywhere, as in kmod.
//!
//! A module that no kernel of the root ships cannot be loaded, so it needs
//! no disabling: this is CIS's audit logic (Debian 12 benchmark v1.1.0,
//! 1.1.1.x), and what makes an image or container root without
//! `/lib/modules` pass. The modules a kernel ships are those listed in its
//! `modules.dep` (under `/lib/modules/VERSION` or `/usr/lib/modules/VERSION`);
//! a kernel directory without one is assumed to ship every module.

use super::{Ctx, Outcome};
use crate::rootfs::RootFs;
use plumb_core::check::KernelModuleCheck;
use std::path::Path;

/// Directories kmod reads, highest precedence first.
const MODPROBE_DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
];

/// Commands that make `modprobe NAME` load nothing (kmod runs the install
/// command through the shell, so the bare builtins count too).
const DISABLING: &[&str] = &[
    "/bin/false",
    "/bin/true",
    "/usr/bin/false",
    "/usr/bin/true",
    "false",
    "true",
];

/// The `*.conf` files of drop-in directories in the order they apply:
/// sorted by file name, a name in an earlier directory shadowing the same
/// name in later ones, and a name masked by a symlink to `/dev/null` (or an
/// empty file, which sets nothing anyway) dropped. Missing directories are
/// fine; a directory that cannot be listed is an error.
fn drop_in_files(ctx: &Ctx, dirs: &[&str]) -> Result<Vec<String>, String> {
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

/// A module name as kmod compares it.
fn norm(name: &str) -> String {
    name.replace('-', "_")
}

/// A modprobe.d line that concerns the module.
#[derive(Debug, Clone)]
struct Directive {
    /// The line as written (white space folded), for evidence.
    text: String,
    at: String,
}

#[derive(Debug, Default)]
struct Modprobe {
    /// The first `install` line for the module, and whether it disables it.
    install: Option<(Directive, bool)>,
    blacklist: Option<Directive>,
}

/// Reads modprobe.d for one normalized module name.
fn modprobe(ctx: &Ctx, name: &str) -> Result<Modprobe, Outcome> {
    let files = drop_in_files(ctx, MODPROBE_DIRS).map_err(Outcome::error)?;
    let mut found = Modprobe::default();
    for f in files {
        let text = ctx.fs.read_text(&f).map_err(|e| Outcome::read_error(&e))?;
        // Lines ending in `\` continue on the next one; the directive is
        // reported at its first line.
        let mut pending = String::new();
        let mut start = 0;
        for (n, line) in text.numbered() {
            if pending.is_empty() {
                start = n;
            }
            if let Some(head) = line.strip_suffix('\\') {
                pending.push_str(head);
                pending.push(' ');
                continue;
            }
            pending.push_str(line);
            let full = std::mem::take(&mut pending);
            let words: Vec<&str> = full.split_whitespace().collect();
            let (Some(cmd), Some(module)) = (words.first(), words.get(1)) else {
                continue;
            };
            if cmd.starts_with('#') {
                continue;
            }
            let d = || Directive {
                text: words.join(" "),
                at: text.at(start),
            };
            match *cmd {
                "install" if found.install.is_none() && module_matches(module, name) => {
                    let disables = words.get(2).is_some_and(|c| DISABLING.contains(c));
                    found.install = Some((d(), disables));
                }
                "blacklist" if found.blacklist.is_none() && norm(module) == name => {
                    found.blacklist = Some(d());
                }
                _ => {}
            }
        }
    }
    Ok(found)
}

/// kmod matches `install` module names with fnmatch.
fn module_matches(pattern: &str, name: &str) -> bool {
    let pattern = norm(pattern);
    if crate::rootfs::has_glob_chars(&pattern) {
        plumb_core::glob(&pattern).is_ok_and(|g| g.is_match(name))
    } else {
        pattern == name
    }
}

/// Whether the module is listed in `PROC/modules`.
fn loaded(proc: &Path, name: &str) -> Result<bool, Outcome> {
    let text = match RootFs::new(proc).read_text("/modules") {
        Ok(t) => t,
        // A real proc without `modules` is a kernel built without loadable
        // module support (CONFIG_MODULES=n): nothing can be loaded.
        Err(e) if e.is_not_found() && proc.join("sys/kernel").is_dir() => return Ok(false),
        Err(e) => {
            return Err(Outcome::error(format!("cannot read {}{e}", proc.display())));
        }
    };
    Ok(text
        .lines
        .iter()
        .filter_map(|l| l.split_whitespace().next())
        .any(|m| norm(m) == name))
}

/// Directories holding one directory per installed kernel.
const MODULE_TREES: &[&str] = &["/lib/modules", "/usr/lib/modules"];

/// Normalized names of the modules the root's kernels ship; `None` when
/// that cannot be told (a kernel directory without modules.dep).
fn shipped(ctx: &Ctx) -> Option<std::collections::HashSet<String>> {
    let mut names = std::collections::HashSet::new();
    let mut seen = std::collections::HashSet::new();
    for tree in MODULE_TREES {
        // /lib is often a symlink to /usr/lib: read each kernel once.
        let Ok(host) = ctx.fs.resolve(tree, true) else {
            continue;
        };
        if !seen.insert(host) {
            continue;
        }
        let Ok(versions) = ctx.fs.list_dir(tree) else {
            continue;
        };
        for v in versions {
            if !ctx.fs.stat(&v).is_ok_and(|m| m.is_dir()) {
                continue;
            }
            let dep = ctx.fs.read_text(&format!("{v}/modules.dep")).ok()?;
            for line in &dep.lines {
                let Some(path) = line.split(':').next() else {
                    continue;
                };
                let file = path.rsplit('/').next().unwrap_or(path);
                if let Some(stem) = file.split(".ko").next().filter(|s| !s.is_empty()) {
                    names.insert(norm(stem));
                }
            }
            if let Ok(builtin) = ctx.fs.read_text(&format!("{v}/modules.builtin")) {
                for line in &builtin.lines {
                    let file = line.rsplit('/').next().unwrap_or(line);
                    if let Some(stem) = file.split(".ko").next().filter(|s| !s.is_empty()) {
                        names.insert(norm(stem));
                    }
                }
            }
        }
    }
    Some(names)
}

/// Why the module cannot be loaded on this root, if it cannot.
fn unavailable(ctx: &Ctx, name: &str) -> Option<String> {
    let shipped = ctx.modules.get_or_init(|| shipped(ctx)).as_ref()?;
    let any_kernel = MODULE_TREES
        .iter()
        .any(|t| ctx.fs.list_dir(t).is_ok_and(|v| !v.is_empty()));
    if !any_kernel {
        return Some("no kernel modules in this root (no /lib/modules/VERSION)".into());
    }
    (!shipped.contains(name)).then(|| "no kernel of this root ships it (not in modules.dep)".into())
}

/// Evaluates a `kernel_module` check.
pub fn evaluate(spec: &KernelModuleCheck, ctx: &Ctx) -> Outcome {
    if spec.loaded.is_none() && spec.disabled.is_none() {
        return Outcome::error("invalid check: asserts nothing: give loaded and/or disabled");
    }
    let shown = spec.name.trim();
    let name = norm(shown);
    let mut evidence = Vec::new();
    let mut ok = true;

    if let Some(want_loaded) = spec.loaded {
        match &ctx.proc {
            None if spec.disabled.is_none() => {
                return Outcome::skipped(format!(
                    "{shown}: loaded state not available: no proc directory for this root (give --proc DIR)"
                ));
            }
            None => evidence.push(format!(
                "{shown}: loaded state not checked: no proc directory for this root (give --proc DIR)"
            )),
            Some(proc) => match loaded(proc, &name) {
                Ok(is) => {
                    let modules = proc.join("modules");
                    let state = if is { "is loaded" } else { "is not loaded" };
                    if modules.exists() {
                        evidence.push(format!("{shown} {state} ({})", modules.display()));
                    } else {
                        evidence.push(format!(
                            "{shown} {state}: this kernel has no loadable module support (no {})",
                            modules.display()
                        ));
                    }
                    if is != want_loaded {
                        ok = false;
                        evidence.push(format!(
                            "expected {shown} {}",
                            if want_loaded { "loaded" } else { "not loaded" }
                        ));
                    }
                }
                Err(e) => return e,
            },
        }
    }

    if let Some(want_disabled) = spec.disabled {
        let found = match modprobe(ctx, &name) {
            Ok(f) => f,
            Err(e) => return e,
        };
        let mut disabled = false;
        if let Some((d, disables)) = &found.install {
            disabled |= *disables;
            let note = if *disables {
                ""
            } else {
                ": runs a command, does not disable"
            };
            evidence.push(format!("{} ({}){note}", d.text, d.at));
        }
        if let Some(d) = &found.blacklist {
            disabled = true;
            evidence.push(format!("{} ({})", d.text, d.at));
        }
        if found.install.is_none() && found.blacklist.is_none() {
            evidence.push(format!(
                "{shown}: no install or blacklist line in modprobe.d"
            ));
        }
        if want_disabled && !disabled {
            if let Some(why) = unavailable(ctx, &name) {
                evidence.push(format!("{shown} cannot be loaded: {why}"));
                return Outcome::verdict(ok, evidence);
            }
        }
        if disabled != want_disabled {
            ok = false;
            evidence.push(format!(
                "expected {shown} {}",
                if want_disabled {
                    "disabled (install /bin/false or blacklist in modprobe.d)"
                } else {
                    "not disabled"
                }
            ));
        }
    }
    Outcome::verdict(ok, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checks::fixture::{Fixture, assert_status};
    use plumb_core::report::Status;

    impl Fixture {
        fn modules(&self, content: &str) -> &Fixture {
            self.proc_file("modules", content)
        }
        fn kmod(
            &self,
            name: &str,
            loaded: Option<bool>,
            disabled: Option<bool>,
            proc: bool,
        ) -> Outcome {
            // A kernel that ships the modules these tests name.
            self.write(
                "/lib/modules/6.1.0-9-amd64/modules.dep",
                "kernel/fs/cramfs/cramfs.ko.xz:\n\
                 kernel/drivers/usb/storage/usb-storage.ko.xz: kernel/drivers/usb/common/usb-common.ko.xz\n\
                 kernel/net/dccp/dccp_ipv4.ko.xz: kernel/net/dccp/dccp.ko.xz\n",
            );
            let spec = KernelModuleCheck {
                name: name.into(),
                loaded,
                disabled,
            };
            evaluate(&spec, &self.ctx(proc))
        }
    }

    #[test]
    fn install_false_disables_with_evidence() {
        let f = Fixture::new();
        f.write("/etc/modprobe.d/cramfs.conf", "install cramfs /bin/false\n");
        let o = f.kmod("cramfs", None, Some(true), false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["install cramfs /bin/false (/etc/modprobe.d/cramfs.conf:1)"]
        );
        for cmd in ["/bin/true", "/usr/bin/false", "/usr/bin/true", "false"] {
            f.write(
                "/etc/modprobe.d/cramfs.conf",
                &format!("install cramfs {cmd}\n"),
            );
            assert_status(&f.kmod("cramfs", None, Some(true), false), Status::Pass);
        }
    }

    #[test]
    fn blacklist_disables_and_other_install_commands_do_not() {
        let f = Fixture::new();
        f.write(
            "/etc/modprobe.d/a.conf",
            "install usb-storage /sbin/modprobe --ignore-install usb-storage\n",
        );
        let o = f.kmod("usb-storage", None, Some(true), false);
        assert_status(&o, Status::Fail);
        assert!(
            o.evidence[0].contains("does not disable"),
            "{:?}",
            o.evidence
        );
        // kmod runs the first install line only: a later /bin/false is dead.
        f.write("/etc/modprobe.d/b.conf", "install usb-storage /bin/false\n");
        assert_status(
            &f.kmod("usb-storage", None, Some(true), false),
            Status::Fail,
        );
        f.write("/etc/modprobe.d/c.conf", "blacklist usb_storage\n");
        let o = f.kmod("usb-storage", None, Some(true), false);
        assert_status(&o, Status::Pass);
        assert!(
            o.evidence
                .iter()
                .any(|e| e == "blacklist usb_storage (/etc/modprobe.d/c.conf:1)")
        );
    }

    #[test]
    fn dash_and_underscore_are_the_same_both_ways() {
        let f = Fixture::new();
        f.write(
            "/etc/modprobe.d/x.conf",
            "install usb_storage /bin/false\nblacklist dccp-ipv4\n",
        );
        assert_status(
            &f.kmod("usb-storage", None, Some(true), false),
            Status::Pass,
        );
        assert_status(&f.kmod("dccp_ipv4", None, Some(true), false), Status::Pass);
        f.modules("usb_storage 81920 0 - Live 0x0000000000000000\n");
        let o = f.kmod("usb-storage", Some(false), None, true);
        assert_status(&o, Status::Fail);
        assert!(o.evidence[0].starts_with("usb-storage is loaded ("));
        f.modules("dccp_ipv4 1 0 - Live 0x0\n");
        assert_status(&f.kmod("dccp-ipv4", Some(true), None, true), Status::Pass);
    }

    #[test]
    fn comments_continuations_and_non_conf_files() {
        let f = Fixture::new();
        f.write(
            "/etc/modprobe.d/x.conf",
            "# install cramfs /bin/false\n  #blacklist cramfs\noptions cramfs x=1\n",
        );
        f.write(
            "/etc/modprobe.d/cramfs.disabled",
            "install cramfs /bin/false\n",
        );
        let o = f.kmod("cramfs", None, Some(true), false);
        assert_status(&o, Status::Fail);
        assert!(
            o.evidence[0].contains("no install or blacklist"),
            "{:?}",
            o.evidence
        );
        f.write(
            "/etc/modprobe.d/y.conf",
            "\ninstall cramfs \\\n  /bin/false\n",
        );
        let o = f.kmod("cramfs", None, Some(true), false);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["install cramfs /bin/false (/etc/modprobe.d/y.conf:2)"]
        );
    }

    #[test]
    fn a_module_no_kernel_ships_cannot_be_loaded() {
        let f = Fixture::new();
        let check = |f: &Fixture| {
            let spec = KernelModuleCheck {
                name: "freevxfs".into(),
                loaded: None,
                disabled: Some(true),
            };
            evaluate(&spec, &f.ctx(false))
        };
        // An image or container root: no /lib/modules at all.
        let o = check(&f);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec![
                "freevxfs: no install or blacklist line in modprobe.d",
                "freevxfs cannot be loaded: no kernel modules in this root (no /lib/modules/VERSION)"
            ]
        );
        // A kernel that does not ship it.
        f.write(
            "/lib/modules/6.1.0-9-amd64/modules.dep",
            "kernel/fs/udf/udf.ko.xz:\n",
        );
        let o = check(&f);
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence[1],
            "freevxfs cannot be loaded: no kernel of this root ships it (not in modules.dep)"
        );
        // One kernel that ships it is enough to require disabling.
        f.write(
            "/usr/lib/modules/6.1.0-10-amd64/modules.dep",
            "kernel/fs/freevxfs/freevxfs.ko.xz:\n",
        );
        assert_status(&check(&f), Status::Fail);
        // A kernel directory without modules.dep: assume it ships everything.
        std::fs::remove_file(
            f.root
                .path()
                .join("usr/lib/modules/6.1.0-10-amd64/modules.dep"),
        )
        .unwrap();
        assert_status(&check(&f), Status::Fail);
    }

    #[test]
    fn shadowed_file_does_not_apply() {
        let f = Fixture::new();
        f.write("/lib/modprobe.d/blacklist.conf", "blacklist cramfs\n");
        assert_status(&f.kmod("cramfs", None, Some(true), false), Status::Pass);
        f.write("/etc/modprobe.d/blacklist.conf", "# local override\n");
        assert_status(&f.kmod("cramfs", None, Some(true), false), Status::Fail);
        assert_status(&f.kmod("cramfs", None, Some(false), false), Status::Pass);
    }

    #[test]
    fn loaded_needs_proc() {
        let f = Fixture::new();
        let o = f.kmod("cramfs", Some(false), None, false);
        assert_status(&o, Status::Skipped);
        f.write("/etc/modprobe.d/c.conf", "install cramfs /bin/false\n");
        let o = f.kmod("cramfs", Some(false), Some(true), false);
        assert_status(&o, Status::Pass);
        assert!(o.evidence[0].contains("loaded state not checked"));
        // A proc directory without a modules file cannot tell...
        assert_status(&f.kmod("cramfs", Some(false), None, true), Status::Error);
        // ...unless it is a real proc: the kernel has no module support.
        std::fs::create_dir_all(f.proc.path().join("sys/kernel")).unwrap();
        assert_status(&f.kmod("cramfs", Some(false), None, true), Status::Pass);
        std::fs::remove_dir_all(f.proc.path().join("sys")).unwrap();
        f.modules("ext4 1 0 - Live 0x0\ncramfsx 1 0 - Live 0x0\n");
        let o = f.kmod("cramfs", Some(false), Some(true), true);
        assert_status(&o, Status::Pass);
        assert!(o.evidence[0].starts_with("cramfs is not loaded ("));
    }

    #[test]
    fn unreadable_modprobe_file_is_an_error() {
        let f = Fixture::new();
        std::fs::create_dir_all(f.root.path().join("etc/modprobe.d/odd.conf")).unwrap();
        let o = f.kmod("cramfs", None, Some(true), false);
        assert_status(&o, Status::Error);
        f.write(
            "/lib/modprobe.d/x.conf",
            "\u{fffd}\u{0}\ninstall\nblacklist\n",
        );
        std::fs::remove_dir(f.root.path().join("etc/modprobe.d/odd.conf")).unwrap();
        assert_status(&f.kmod("cramfs", None, Some(true), false), Status::Fail);
    }
}
