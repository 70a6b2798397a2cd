//! `kind = "package"`: is a package installed, from the dpkg status file
//! of the checked root (rpm is not supported yet).

use super::{Ctx, Outcome};
use plumb_core::check::PackageCheck;
use plumb_core::report::Status;
use std::collections::HashMap;

/// The dpkg database: one stanza per package and architecture.
const DPKG_STATUS: &str = "/var/lib/dpkg/status";

/// Most stanzas of one package listed in evidence (one per architecture).
const MAX_SHOWN: usize = 10;

/// One stanza's fields that matter here.
#[derive(Debug, Default, Clone)]
struct Stanza {
    /// Line of the `Package:` field.
    line: usize,
    package: Option<String>,
    status: Option<String>,
    version: Option<String>,
    arch: Option<String>,
}

/// Splits the status file into stanzas (blank-line separated). Continuation
/// lines (leading white space) belong to multi-line fields we do not need.
fn stanzas<'a>(lines: impl Iterator<Item = (usize, &'a str)>) -> Vec<Stanza> {
    let mut out = Vec::new();
    let mut cur = Stanza::default();
    for (n, line) in lines {
        if line.trim().is_empty() {
            if cur.package.is_some() {
                out.push(std::mem::take(&mut cur));
            } else {
                cur = Stanza::default();
            }
            continue;
        }
        if line.starts_with([' ', '\t']) {
            continue;
        }
        let Some((field, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim().to_string();
        let slot = match field.trim().to_ascii_lowercase().as_str() {
            "package" => {
                cur.line = n;
                &mut cur.package
            }
            "status" => &mut cur.status,
            "version" => &mut cur.version,
            "architecture" => &mut cur.arch,
            _ => continue,
        };
        if slot.is_none() {
            *slot = Some(value);
        }
    }
    if cur.package.is_some() {
        out.push(cur);
    }
    out
}

/// A package name without its `:arch` qualifier.
fn bare(name: &str) -> &str {
    name.split_once(':').map_or(name, |(n, _)| n)
}

/// What a dpkg current state means for "installed": `Ok(None)` when it is
/// installed, `Ok(Some(why not))` otherwise, `Err` when it is not a state.
fn installed_state(state: &str) -> Result<Option<&'static str>, ()> {
    match state {
        // Configured; only trigger processing is outstanding.
        "installed" | "triggers-pending" | "triggers-awaited" => Ok(None),
        "not-installed" => Ok(Some("not installed")),
        "config-files" => Ok(Some("removed, only its configuration files remain")),
        "half-installed" => Ok(Some("installation or removal did not complete")),
        "unpacked" => Ok(Some("unpacked but not configured")),
        "half-configured" => Ok(Some("configuration did not complete")),
        _ => Err(()),
    }
}

/// The dpkg database of a root, read and indexed once per run: a
/// baseline has many package rules and the status file is large.
#[derive(Debug)]
pub struct Db {
    /// In-root path of the status file, for evidence. Its text is not
    /// kept: a Debian server's is 30,000 lines, megabytes as `String`s.
    path: String,
    /// Stanzas by lower-case bare package name.
    by_name: HashMap<String, Vec<Stanza>>,
}

impl Db {
    /// `path:line` of a line of the status file.
    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path)
    }
}

fn db(ctx: &Ctx) -> Result<&Db, Outcome> {
    ctx.dpkg
        .get_or_init(|| {
            let bytes = match ctx.fs.read(DPKG_STATUS) {
                Ok(b) => b,
                Err(e) if e.is_not_found() => {
                    return Err(Outcome::skipped(
                        "no dpkg database in this root; rpm is not supported yet",
                    ));
                }
                Err(e) => return Err(Outcome::read_error(&e)),
            };
            // Lines are walked in the text as read (as `read_text` splits
            // them), not copied one `String` each: only a few fields of each
            // stanza are kept.
            let text = String::from_utf8_lossy(&bytes);
            let mut by_name: HashMap<String, Vec<Stanza>> = HashMap::new();
            for s in stanzas(text.lines().enumerate().map(|(i, l)| (i + 1, l))) {
                if let Some(p) = &s.package {
                    by_name
                        .entry(bare(p).to_ascii_lowercase())
                        .or_default()
                        .push(s);
                }
            }
            Ok(Db {
                path: DPKG_STATUS.to_string(),
                by_name,
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The version of an installed package and where its entry is
/// (`path:line`); `Ok(None)` when the package is not installed. `Err` is the
/// outcome when there is no readable dpkg database.
pub(crate) fn installed_version(
    ctx: &Ctx,
    name: &str,
) -> Result<Option<(String, String)>, Outcome> {
    let db = db(ctx)?;
    let found = db.by_name.get(&name.to_ascii_lowercase());
    Ok(found.into_iter().flatten().find_map(|s| {
        let state = s.status.as_deref()?.split_whitespace().nth(2)?;
        match installed_state(state) {
            Ok(None) => Some((s.version.clone()?, db.at(s.line))),
            _ => None,
        }
    }))
}

/// Evaluates a `package` check.
pub fn evaluate(spec: &PackageCheck, ctx: &Ctx) -> Outcome {
    let db = match db(ctx) {
        Ok(db) => db,
        Err(out) => return out,
    };
    let name = bare(spec.name.trim());
    let found: Vec<Stanza> = db
        .by_name
        .get(&name.to_ascii_lowercase())
        .cloned()
        .unwrap_or_default();
    if found.is_empty() {
        return Outcome::verdict(
            !spec.installed,
            vec![format!("{name} not in the dpkg database ({DPKG_STATUS})")],
        );
    }
    let qualify = found.len() > 1;
    let mut installed = false;
    let mut ev = Vec::new();
    let mut broken = false;
    for s in &found {
        let shown = match (&s.arch, qualify) {
            (Some(a), true) => format!("{name}:{a}"),
            _ => name.to_string(),
        };
        let version = s
            .version
            .as_deref()
            .map(|v| format!(" {v}"))
            .unwrap_or_default();
        let at = db.at(s.line);
        let Some(status) = s.status.as_deref() else {
            broken = true;
            ev.push(format!("{shown}{version}: no Status field ({at})"));
            continue;
        };
        let words: Vec<&str> = status.split_whitespace().collect();
        let state = match words.as_slice() {
            [_want, _flag, state] => installed_state(state),
            _ => Err(()),
        };
        match state {
            Ok(None) => {
                installed = true;
                ev.push(format!("{shown}{version} {status} ({at})"));
            }
            Ok(Some(why)) => ev.push(format!("{shown}{version} {status}: {why} ({at})")),
            Err(()) => {
                broken = true;
                ev.push(format!(
                    "{shown}{version}: unrecognised Status \"{status}\" ({at})"
                ));
            }
        }
    }
    if ev.len() > MAX_SHOWN {
        let more = ev.len() - MAX_SHOWN;
        ev.truncate(MAX_SHOWN);
        ev.push(format!("and {more} more entries"));
    }
    // An unreadable entry decides nothing only if another one is installed.
    if broken && !installed {
        return Outcome {
            status: Status::Error,
            evidence: ev,
        };
    }
    Outcome::verdict(installed == spec.installed, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const DB: &str = "\
Package: openssh-server
Status: install ok installed
Priority: optional
Section: net
Architecture: amd64
Version: 1:9.2p1-2+deb12u3
Depends: libc6 (>= 2.36),
 libssl3 (>= 3.0.0)
Description: secure shell (SSH) server
 Package: telnet
 Status: install ok installed
 .
 A continuation line that looks like a field must not count.

Package: telnet
Status: deinstall ok config-files
Architecture: amd64
Version: 0.17+2.4-2

Package: rsh-server
Status: purge ok not-installed
Architecture: amd64

Package: libc6
Status: install ok installed
Architecture: amd64
Version: 2.36-9+deb12u4

Package: libc6
Status: deinstall ok config-files
Architecture: i386
Version: 2.36-9+deb12u4

Package: nis
Status: install reinstreq half-installed
Architecture: amd64
Version: 4.0

Package: held
Status: hold ok installed
Version: 1.0

Package: trig
Status: install ok triggers-pending
Version: 2.0

Package: weird
Status: install ok sideways
";

    fn root(db: impl AsRef<[u8]>) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(t.path().join("var/lib/dpkg/status"), db).unwrap();
        t
    }

    fn run(r: &Path, name: &str, installed: bool) -> Outcome {
        evaluate(
            &PackageCheck {
                name: name.into(),
                installed,
            },
            &Ctx::new(r.to_path_buf(), None),
        )
    }

    #[test]
    fn installed_package() {
        let t = root(DB);
        let out = run(t.path(), "openssh-server", true);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec!["openssh-server 1:9.2p1-2+deb12u3 install ok installed (/var/lib/dpkg/status:1)"]
        );
        assert_eq!(run(t.path(), "openssh-server", false).status, Status::Fail);
        assert_eq!(run(t.path(), "held", true).status, Status::Pass);
        assert_eq!(run(t.path(), "trig", true).status, Status::Pass);
    }

    #[test]
    fn continuation_lines_are_not_fields() {
        let t = root(DB);
        // "telnet ... installed" appears only inside a Description.
        let out = run(t.path(), "telnet", false);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec![
                "telnet 0.17+2.4-2 deinstall ok config-files: removed, only its configuration files remain (/var/lib/dpkg/status:15)"
            ]
        );
    }

    #[test]
    fn states_that_are_not_installed_say_which() {
        let t = root(DB);
        let out = run(t.path(), "rsh-server", true);
        assert_eq!(out.status, Status::Fail, "{out:?}");
        assert!(out.evidence[0].contains("purge ok not-installed: not installed"));
        let out = run(t.path(), "nis", false);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(
            out.evidence[0].contains("half-installed: installation or removal did not complete")
        );
        let out = run(t.path(), "telnetd", false);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert_eq!(
            out.evidence,
            vec!["telnetd not in the dpkg database (/var/lib/dpkg/status)"]
        );
        assert_eq!(run(t.path(), "telnetd", true).status, Status::Fail);
    }

    #[test]
    fn multiple_architectures_and_qualified_names() {
        let t = root(DB);
        for name in ["libc6", "libc6:amd64", "libc6:i386"] {
            let out = run(t.path(), name, true);
            assert_eq!(out.status, Status::Pass, "{name}: {out:?}");
            assert_eq!(out.evidence.len(), 2);
            assert!(out.evidence[0].starts_with("libc6:amd64 2.36-9+deb12u4 install ok installed"));
            assert!(
                out.evidence[1].starts_with("libc6:i386 2.36-9+deb12u4 deinstall ok config-files")
            );
        }
        assert_eq!(run(t.path(), "libc6", false).status, Status::Fail);
    }

    #[test]
    fn unrecognised_status_is_an_error() {
        let t = root(DB);
        let out = run(t.path(), "weird", false);
        assert_eq!(out.status, Status::Error, "{out:?}");
        assert!(out.evidence[0].contains("unrecognised Status \"install ok sideways\""));
        let t = root("Package: nostatus\nVersion: 1\n");
        assert_eq!(run(t.path(), "nostatus", false).status, Status::Error);
    }

    #[test]
    fn odd_bytes_and_crlf_do_not_panic() {
        let t = root(
            b"Package: a\xff\r\nStatus: install ok installed\r\n\r\n\xfe\xff: x\n:\n\nPackage: b\r\nStatus: install ok installed\r\n"
                .as_slice(),
        );
        assert_eq!(run(t.path(), "b", true).status, Status::Pass);
        assert_eq!(run(t.path(), "c", false).status, Status::Pass);
    }

    #[test]
    fn missing_database_is_skipped_unreadable_is_an_error() {
        let t = tempfile::tempdir().unwrap();
        let out = run(t.path(), "telnet", false);
        assert_eq!(out.status, Status::Skipped);
        assert_eq!(
            out.evidence,
            vec!["no dpkg database in this root; rpm is not supported yet"]
        );
        std::fs::create_dir_all(t.path().join("var/lib/dpkg/status")).unwrap();
        let out = run(t.path(), "telnet", false);
        assert_eq!(out.status, Status::Error, "{out:?}");
    }
}
