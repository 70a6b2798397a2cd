//! `kind = "package_files"`: every file the named installed packages
//! shipped still has the MD5 their dpkg database recorded (what `debsums`
//! checks). Configuration files are reported separately, by the rule's
//! `conffiles` policy: editing one is what it is for; a changed
//! `/usr/sbin/sshd` is not. What MD5 can and cannot prove: docs/fim.md.

use super::{Ctx, Outcome};
use crate::dpkg::{self, Database, DpkgError, Package};
use plumb_core::check::{ConffilePolicy, PackageFilesCheck};
use plumb_core::report::Status;
use std::collections::{BTreeSet, HashSet};

/// Most problems listed one per line in evidence.
const MAX_SHOWN: usize = 50;

fn shown(p: &[u8]) -> String {
    plumb_core::fim::ReportPath::from_bytes(p).display()
}

/// The packages and paths a rule names.
struct Selection {
    /// Globs of package names (architecture qualifier dropped).
    wanted: Vec<globset::GlobMatcher>,
    /// Globs of paths left out.
    excludes: Vec<globset::GlobMatcher>,
}

impl Selection {
    /// The rule's globs, or the error outcome naming the bad one.
    fn of(spec: &PackageFilesCheck) -> Result<Selection, Outcome> {
        let mut wanted = Vec::new();
        for p in &spec.packages {
            let bare = p.split_once(':').map_or(p.as_str(), |(n, _)| n);
            match plumb_core::glob(bare) {
                Ok(g) => wanted.push(g),
                Err(e) => {
                    return Err(Outcome::error(format!(
                        "packages: invalid glob \"{p}\": {e}"
                    )));
                }
            }
        }
        let mut excludes = Vec::new();
        for g in &spec.exclude {
            match plumb_core::glob(g) {
                Ok(m) => excludes.push(m),
                Err(e) => {
                    return Err(Outcome::error(format!(
                        "exclude: invalid glob \"{g}\": {e}"
                    )));
                }
            }
        }
        Ok(Selection { wanted, excludes })
    }

    /// An installed package the rule names.
    fn selected(&self, p: &Package) -> bool {
        p.unpacked() && self.wanted.iter().any(|g| g.is_match(&p.name))
    }

    /// A path the rule leaves out.
    fn excluded(&self, path: &[u8]) -> bool {
        self.excludes
            .iter()
            .any(|g| g.is_match(String::from_utf8_lossy(path).as_ref()))
    }
}

/// What the comparison with the database found.
#[derive(Default)]
struct Findings {
    /// Files compared.
    checked: u64,
    /// Shipped files that differ, are missing or cannot be read.
    bad: Vec<String>,
    /// Configuration files changed or removed.
    changed_conf: Vec<String>,
    /// Indexes of the packages that have an md5sums list.
    with_list: BTreeSet<usize>,
    /// The first read error, if any (the rule is an error, not a pass).
    error: Option<String>,
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
    let sel = match Selection::of(spec) {
        Ok(s) => s,
        Err(o) => return o,
    };
    let chosen: Vec<String> = db
        .status
        .packages
        .iter()
        .filter(|p| sel.selected(p))
        .map(|p| p.describe())
        .collect();
    if chosen.is_empty() {
        return Outcome::pass(vec![format!(
            "no installed package matches {}: nothing to verify",
            spec.packages.join(", ")
        )]);
    }
    let root = ctx.fs.root();
    // Conffiles of the chosen packages (also listed in some md5sums lists:
    // the Conffiles entry is what dpkg compares against).
    let conffiles: Vec<crate::dpkg::Conffile> = db.conffiles(|p| sel.selected(p)).collect();
    let mut found = Findings::default();
    if let Err(e) = check_shipped(db, &sel, &conffiles, root, &mut found) {
        return Outcome::error(e.to_string());
    }
    if spec.conffiles != ConffilePolicy::Ignore {
        check_conffiles(db, &sel, &conffiles, root, &mut found);
    }
    let no_list: Vec<String> = db
        .status
        .packages
        .iter()
        .enumerate()
        .filter(|(i, p)| sel.selected(p) && !found.with_list.contains(i))
        .map(|(_, p)| p.describe())
        .collect();
    verdict(spec, &chosen, &no_list, found)
}

/// Compares the files of the md5sums lists of the selected packages, except
/// the conffiles (judged apart) and excluded paths.
fn check_shipped(
    db: &Database,
    sel: &Selection,
    conffiles: &[crate::dpkg::Conffile],
    root: &std::path::Path,
    found: &mut Findings,
) -> Result<(), DpkgError> {
    let conffile_paths: HashSet<(usize, &[u8])> = conffiles
        .iter()
        .map(|(i, p, _, _)| (*i, p.as_slice()))
        .collect();
    db.each_md5sum(
        |p| sel.selected(p),
        |i, path, md5, source| {
            found.with_list.insert(i);
            if sel.excluded(path) || conffile_paths.contains(&(i, path)) {
                return;
            }
            found.checked += 1;
            let pkg = &db.status.packages[i];
            match dpkg::file_md5(root, path) {
                Ok(m) if m == md5 => {}
                Ok(m) => found.bad.push(format!(
                    "{}: MD5 {}, {} records {} ({source})",
                    shown(path),
                    dpkg::hex(&m),
                    pkg.describe(),
                    dpkg::hex(&md5)
                )),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => found.bad.push(format!(
                    "{}: missing, shipped by {} ({source})",
                    shown(path),
                    pkg.describe()
                )),
                Err(e) => {
                    if found.error.is_none() {
                        found.error = Some(format!("{}: {e}", shown(path)));
                    }
                    found
                        .bad
                        .push(format!("{}: cannot be read: {e}", shown(path)));
                }
            }
        },
    )
}

/// Compares the conffiles of the selected packages with what they shipped.
fn check_conffiles(
    db: &Database,
    sel: &Selection,
    conffiles: &[crate::dpkg::Conffile],
    root: &std::path::Path,
    found: &mut Findings,
) {
    for (i, path, md5, obsolete) in conffiles {
        let Some(md5) = md5 else { continue };
        if *obsolete || sel.excluded(path) {
            continue;
        }
        found.checked += 1;
        let pkg = &db.status.packages[*i];
        let line = match dpkg::file_md5(root, path) {
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
        found.changed_conf.push(line);
    }
}

/// The outcome and its evidence: a summary line, the failing files, the
/// changed conffiles under the rule's policy, the packages without a list.
fn verdict(
    spec: &PackageFilesCheck,
    chosen: &[String],
    no_list: &[String],
    found: Findings,
) -> Outcome {
    let Findings {
        checked,
        bad,
        changed_conf,
        error,
        ..
    } = found;
    let failing = bad.len()
        + if spec.conffiles == ConffilePolicy::Fail {
            changed_conf.len()
        } else {
            0
        };
    let mut ev = vec![format!(
        "{} files of {} checked against the dpkg database: {} not matching{}",
        checked,
        list(chosen),
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
            list(no_list)
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
