//! `kind = "kernel_module"`: whether a module is loaded (`PROC/modules`)
//! and whether modprobe.d disables it. A module is disabled when the
//! `install` command kmod would run for it is `/bin/false` or `/bin/true`
//! (or their `/usr/bin` spellings), or when it is blacklisted. kmod uses the
//! first matching `install` line, in file order; files are `*.conf` in the
//! modprobe.d directories, a name in an earlier directory shadowing the same
//! name in later ones, applied in file-name order. `-` and `_` in module
//! names are the same everywhere, as in kmod.

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
