//! `kind = "package_files"`: every file the named installed packages
//! shipped still has the MD5 their dpkg database recorded (what `debsums`
//! checks). Configuration files are reported separately, by the rule's
//! `conffiles` policy: editing one is what it is for; a changed
//! `/usr/sbin/sshd` is not. What MD5 can and cannot prove: docs/fim.md.

use super::{Ctx, Outcome};
use crate::dpkg::{self, DpkgError, Package};
use plumb_core::check::{ConffilePolicy, PackageFilesCheck};
use plumb_core::report::Status;
use std::collections::{BTreeSet, HashSet};

/// Most problems listed one per line in evidence.
const MAX_SHOWN: usize = 50;

fn shown(p: &[u8]) -> String {
    plumb_core::fim::ReportPath::from_bytes(p).display()
}

/// Evaluates a `package_files` check.
pub fn evaluate(spec: &PackageFilesCheck, ctx: &Ctx) -> Outcome {
    let db = match ctx.dpkg_database() {
        Ok(db) => db,
        Err(DpkgError::Missing) => {
            return Outcome::skipped("no dpkg database in this root; rpm is not supported yet");
        }
        Err(e) => return Outcome::error(e.to_string()),
    };
    if let Some(why) = dpkg::busy(&ctx.fs) {
        return Outcome::error(format!("{why}: not verified while dpkg changes files"));
    }
    let mut wanted = Vec::new();
    for p in &spec.packages {
        let bare = p.split_once(':').map_or(p.as_str(), |(n, _)| n);
        match plumb_core::glob(bare) {
            Ok(g) => wanted.push(g),
            Err(e) => return Outcome::error(format!("packages: invalid glob \"{p}\": {e}")),
        }
    }
    let mut excludes = Vec::new();
    for g in &spec.exclude {
        match plumb_core::glob(g) {
            Ok(m) => excludes.push(m),
            Err(e) => return Outcome::error(format!("exclude: invalid glob \"{g}\": {e}")),
        }
    }
    let selected = |p: &Package| p.unpacked() && wanted.iter().any(|g| g.is_match(&p.name));
    let excluded = |path: &[u8]| {
        excludes
            .iter()
            .any(|g| g.is_match(String::from_utf8_lossy(path).as_ref()))
    };
    let chosen: Vec<String> = db
        .status
        .packages
        .iter()
        .filter(|p| selected(p))
        .map(|p| p.describe())
        .collect();
    if chosen.is_empty() {
        return Outcome::pass(vec![format!(
            "no installed package matches {}: nothing to verify",
            spec.packages.join(", ")
        )]);
    }
    // Conffiles of the chosen packages (also listed in some md5sums lists:
    // the Conffiles entry is what dpkg compares against).
    let conffiles: Vec<crate::dpkg::Conffile> = db.conffiles(|p| selected(p)).collect();
    let conffile_paths: HashSet<(usize, Vec<u8>)> = conffiles
        .iter()
        .map(|(i, p, _, _)| (*i, p.clone()))
        .collect();
    let root = ctx.fs.root().to_path_buf();
    let mut checked = 0u64;
    let mut bad: Vec<String> = Vec::new();
    let mut changed_conf: Vec<String> = Vec::new();
    let mut with_list = BTreeSet::new();
    let mut error = None;
    let r = db.each_md5sum(
        |p| selected(p),
        |i, path, md5, source| {
            with_list.insert(i);
            if excluded(path) || conffile_paths.contains(&(i, path.to_vec())) {
                return;
            }
            checked += 1;
            let pkg = &db.status.packages[i];
            match dpkg::file_md5(&root, path) {
                Ok(m) if m == md5 => {}
                Ok(m) => bad.push(format!(
                    "{}: MD5 {}, {} records {} ({source})",
                    shown(path),
                    dpkg::hex(&m),
                    pkg.describe(),
                    dpkg::hex(&md5)
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => bad.push(format!(
                    "{}: missing, shipped by {} ({source})",
                    shown(path),
                    pkg.describe()
                )),
                Err(e) => {
                    if error.is_none() {
                        error = Some(format!("{}: {e}", shown(path)));
                    }
                    bad.push(format!("{}: cannot be read: {e}", shown(path)));
                }
            }
        },
    );
    if let Err(e) = r {
        return Outcome::error(e.to_string());
    }
    if spec.conffiles != ConffilePolicy::Ignore {
        for (i, path, md5, obsolete) in &conffiles {
            let Some(md5) = md5 else { continue };
            if *obsolete || excluded(path) {
                continue;
            }
            checked += 1;
            let pkg = &db.status.packages[*i];
            let line = match dpkg::file_md5(&root, path) {
                Ok(m) if m == *md5 => continue,
                Ok(m) => format!(
                    "{}: configuration file of {} changed: MD5 {}, packaged {}",
                    shown(path),
                    pkg.describe(),
                    dpkg::hex(&m),
                    dpkg::hex(md5)
                ),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!(
                    "{}: configuration file of {} removed",
                    shown(path),
                    pkg.describe()
                ),
                Err(e) => format!("{}: cannot be read: {e}", shown(path)),
            };
            changed_conf.push(line);
        }
    }
    let no_list: Vec<String> = db
        .status
        .packages
        .iter()
        .enumerate()
        .filter(|(i, p)| selected(p) && !with_list.contains(i))
        .map(|(_, p)| p.describe())
        .collect();
    let failing = bad.len()
        + if spec.conffiles == ConffilePolicy::Fail {
            changed_conf.len()
        } else {
            0
        };
    let mut ev = vec![format!(
        "{} files of {} checked against the dpkg database: {} not matching{}",
        checked,
        list(&chosen),
        bad.len(),
        if changed_conf.is_empty() {
            String::new()
        } else {
            format!(", {} configuration files changed", changed_conf.len())
        }
    )];
    push_some(&mut ev, bad);
    if !changed_conf.is_empty() {
        let note = match spec.conffiles {
            ConffilePolicy::Fail => "configuration files (failing the rule):",
            _ => "configuration files (reported, not failing the rule):",
        };
        ev.push(note.into());
        push_some(&mut ev, changed_conf);
    }
    if !no_list.is_empty() {
        ev.push(format!(
            "no md5sums list, nothing verified: {}",
            list(&no_list)
        ));
    }
    if failing == 0 && error.is_some() {
        return Outcome {
            status: Status::Error,
            evidence: ev,
        };
    }
    Outcome::verdict(failing == 0, ev)
}

fn list(names: &[String]) -> String {
    if names.len() <= 8 {
        names.join(", ")
    } else {
        format!(
            "{} and {} more packages",
            names[..8].join(", "),
            names.len() - 8
        )
    }
}

fn push_some(ev: &mut Vec<String>, lines: Vec<String>) {
    let more = lines.len().saturating_sub(MAX_SHOWN);
    ev.extend(lines.into_iter().take(MAX_SHOWN));
    if more > 0 {
        ev.push(format!("and {more} more"));
    }
}

/// The in-root path as a host path (for tests' fixtures).
#[cfg(test)]
fn host(root: &std::path::Path, p: &str) -> std::path::PathBuf {
    use std::os::unix::ffi::OsStrExt;
    root.join(std::ffi::OsStr::from_bytes(
        p.trim_start_matches('/').as_bytes(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use md5::Digest as _;

    fn md5(b: &[u8]) -> String {
        dpkg::hex(&md5::Md5::digest(b).into())
    }

    /// A root with openssh-server (sshd matching, moduli conffile edited),
    /// coreutils (ls replaced, cat missing) and an odd file name.
    fn fixture() -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let put = |p: &str, b: &[u8]| {
            let h = host(r, p);
            std::fs::create_dir_all(h.parent().unwrap()).unwrap();
            std::fs::write(h, b).unwrap();
        };
        put("/usr/sbin/sshd", b"sshd v2");
        put("/etc/ssh/moduli", b"edited");
        put("/usr/bin/ls", b"evil ls");
        put("/usr/share/doc/a b\nc", b"doc");
        put("/usr/share/doc/skip/x", b"changed");
        let status = format!(
            "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2\nConffiles:\n /etc/ssh/moduli {}\n\nPackage: coreutils\nStatus: install ok installed\nVersion: 9.1-1\n\nPackage: nolist\nStatus: install ok installed\nVersion: 1\n",
            md5(b"original")
        );
        put("/var/lib/dpkg/status", status.as_bytes());
        put(
            "/var/lib/dpkg/info/openssh-server.md5sums",
            format!("{}  usr/sbin/sshd\n", md5(b"sshd v2")).as_bytes(),
        );
        put(
            "/var/lib/dpkg/info/coreutils.md5sums",
            format!(
                "{}  usr/bin/ls\n{}  usr/bin/cat\n\\{}  usr/share/doc/a b\\nc\n{}  usr/share/doc/skip/x\n",
                md5(b"ls"),
                md5(b"cat"),
                md5(b"doc"),
                md5(b"x")
            )
            .as_bytes(),
        );
        t
    }

    fn run(t: &tempfile::TempDir, packages: &[&str], conffiles: ConffilePolicy) -> Outcome {
        evaluate(
            &PackageFilesCheck {
                packages: packages.iter().map(|s| s.to_string()).collect(),
                exclude: vec!["/usr/share/doc/skip/**".into()],
                conffiles,
            },
            &Ctx::new(t.path(), None),
        )
    }

    #[test]
    fn matching_files_pass_and_conffiles_are_reported_apart() {
        let t = fixture();
        let out = run(&t, &["openssh-server"], ConffilePolicy::Report);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence[0],
            "2 files of openssh-server 1:9.2p1-2 (amd64) checked against the dpkg database: 0 not matching, 1 configuration files changed"
        );
        assert!(out.evidence[2].starts_with(
            "/etc/ssh/moduli: configuration file of openssh-server 1:9.2p1-2 (amd64) changed: MD5"
        ));
        assert_eq!(
            run(&t, &["openssh-*"], ConffilePolicy::Fail).status,
            Status::Fail
        );
        let out = run(&t, &["openssh-server"], ConffilePolicy::Ignore);
        assert_eq!(out.evidence.len(), 1, "{out:?}");
    }

    #[test]
    fn replaced_and_missing_files_fail_with_package_and_version() {
        let t = fixture();
        let out = run(&t, &["core*"], ConffilePolicy::Report);
        assert_eq!(out.status, Status::Fail, "{out:?}");
        let ev = out.evidence.join("\n");
        assert!(ev.contains(&format!(
            "/usr/bin/ls: MD5 {}, coreutils 9.1-1 records {} (/var/lib/dpkg/info/coreutils.md5sums)",
            md5(b"evil ls"),
            md5(b"ls")
        )), "{ev}");
        assert!(
            ev.contains("/usr/bin/cat: missing, shipped by coreutils 9.1-1"),
            "{ev}"
        );
        // The escaped name with a newline and a space matched its file;
        // the excluded tree was not looked at.
        assert!(!ev.contains("a b"), "{ev}");
        assert!(!ev.contains("skip"), "{ev}");
        assert!(
            out.evidence[0].starts_with("3 files of coreutils 9.1-1"),
            "{ev}"
        );
    }

    #[test]
    fn packages_without_lists_absent_packages_and_no_database() {
        let t = fixture();
        let out = run(&t, &["nolist"], ConffilePolicy::Report);
        assert_eq!(out.status, Status::Pass);
        assert_eq!(
            out.evidence[1],
            "no md5sums list, nothing verified: nolist 1"
        );
        let out = run(&t, &["sudo"], ConffilePolicy::Report);
        assert_eq!(out.status, Status::Pass);
        assert!(out.evidence[0].contains("no installed package matches sudo"));
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(
            run(&empty, &["*"], ConffilePolicy::Report).status,
            Status::Skipped
        );
    }
}
