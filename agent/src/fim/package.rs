//! Package verdicts: for each added or modified path of a comparison, what
//! the root's dpkg database says about it (docs/fim.md, "Package
//! verification"). A regular file whose content matches the MD5 its
//! installed package recorded is *verified* and takes the watch's
//! `verified_severity` (default `info`); one the database records with
//! another digest is *not verified* and raised to at least `high` (a
//! configuration file keeps its severity: local edits are normal); a path
//! no package lists keeps today's report, without a `package`.
//!
//! The cost follows the changes: the database is read once per comparison
//! (one pass over the md5sums lists, keeping only the changed paths) and
//! only changed files are read again, in parallel. The content is read
//! with its FIM digest too: a file that changed again since the comparison
//! hashed it is not verified, so a verdict never vouches for other
//! content than the one recorded.

use super::change::Change;
use super::rules::Plan;
use crate::dpkg::{self, Database, Record};
use crate::rootfs::RootFs;
use md5::Digest as _;
use plumb_core::Severity;
use plumb_core::fim::{ChangeKind, PackageVerdict};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a comparison waits for a busy dpkg database (lock held,
/// journal not applied) before judging with what it records.
pub const SETTLE_WAIT: Duration = Duration::from_secs(120);

/// How often a busy database is looked at again.
const SETTLE_POLL: Duration = Duration::from_millis(250);

/// Larger files are read anyway (packages ship them); the buffer is fixed.
const BUF: usize = 256 * 1024;

/// What a file holds now.
struct Content {
    md5: [u8; 16],
    /// Hex digest with the FIM's algorithm, when one was asked for.
    fim: Option<String>,
}

fn host(root: &Path, p: &[u8]) -> PathBuf {
    root.join(OsStr::from_bytes(p.strip_prefix(b"/").unwrap_or(p)))
}

/// Why a file's content could not be read (the text ends the verdict's
/// evidence: "content could not be read: ...").
#[derive(Debug, thiserror::Error)]
enum DigestError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a regular file")]
    NotRegular,
}

/// Reads `p` (never following a symlink, never opening anything but a
/// regular file) and digests it.
fn digest(root: &Path, p: &[u8], fim_alg: Option<&str>) -> Result<Content, DigestError> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(host(root, p))?;
    let meta = f.metadata()?;
    if !meta.is_file() {
        return Err(DigestError::NotRegular);
    }
    let mut md5 = md5::Md5::new();
    let mut fim = fim_alg.and_then(|a| match a {
        "sha256" => Some(ring::digest::Context::new(&ring::digest::SHA256)),
        "sha512" => Some(ring::digest::Context::new(&ring::digest::SHA512)),
        _ => None,
    });
    let mut buf = vec![0u8; BUF.min(usize::try_from(meta.size()).unwrap_or(BUF).max(1))];
    let mut r = &f;
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        md5.update(&buf[..n]);
        if let Some(c) = fim.as_mut() {
            c.update(&buf[..n]);
        }
    }
    let mut out = [0u8; 16];
    out.copy_from_slice(md5.finalize().as_slice());
    Ok(Content {
        md5: out,
        fim: fim.map(|c| plumb_core::fim::hex(c.finish().as_ref())),
    })
}

/// Fields of a directory that move whenever an entry is added or removed.
fn only_entry_fields(c: &Change) -> bool {
    c.kind == ChangeKind::Added
        || c.field_names()
            .all(|f| matches!(f, "mtime" | "ctime" | "size" | "nlink"))
}

/// Waits (up to `wait`) for dpkg to leave its database settled; `Some(why)`
/// when it is still busy.
pub fn settle(root: &Path, wait: Duration) -> Option<String> {
    let fs = RootFs::new(root);
    let start = Instant::now();
    loop {
        let why = dpkg::busy(&fs)?;
        if start.elapsed() >= wait {
            return Some(why);
        }
        std::thread::sleep(SETTLE_POLL.min(wait.saturating_sub(start.elapsed())));
    }
}

/// Adds package verdicts to `changes` (and adjusts their severity), waiting
/// up to `wait` for a busy dpkg database. Returns whether the root has a
/// dpkg database; one without leaves the changes as they are, and one that
/// cannot be read is returned as an error, with the changes left as they are.
pub fn judge(
    plan: &Plan,
    root: &Path,
    changes: &mut [Change],
    wait: Duration,
) -> Result<bool, dpkg::DpkgError> {
    let candidates: Vec<usize> = changes
        .iter()
        .enumerate()
        .filter(|(_, c)| c.kind != ChangeKind::Removed)
        .map(|(i, _)| i)
        .collect();
    let fs = RootFs::new(root);
    if !fs.host(&format!("{}/status", dpkg::ADMINDIR)).exists() {
        return Ok(false);
    }
    if candidates.is_empty() {
        return Ok(true);
    }
    let busy = settle(root, wait);
    let db = match Database::open(&fs) {
        Ok(db) => db,
        Err(dpkg::DpkgError::Missing) => return Ok(false),
        Err(e) => return Err(e),
    };
    let paths: Vec<Option<Vec<u8>>> = candidates
        .iter()
        .map(|&i| Some(changes[i].path.clone()))
        .collect();
    let wanted: HashSet<Vec<u8>> = paths.iter().flatten().cloned().collect();
    let records = db.lookup(&wanted)?;
    // Directories and symlinks are in the `.list` files only.
    let kinds: HashMap<&[u8], std::fs::FileType> = paths
        .iter()
        .flatten()
        .filter_map(|p| {
            Some((
                p.as_slice(),
                std::fs::symlink_metadata(host(root, p)).ok()?.file_type(),
            ))
        })
        .collect();
    let unlisted: HashSet<Vec<u8>> = kinds
        .iter()
        .filter(|(p, t)| !t.is_file() && !records.contains_key(**p))
        .map(|(p, _)| p.to_vec())
        .collect();
    let listed = db.listed(&unlisted)?;
    // Read the owned regular files, in parallel.
    let jobs: Vec<(usize, Vec<u8>, Option<&'static str>)> = candidates
        .iter()
        .zip(&paths)
        .filter_map(|(&i, p)| {
            let p = p.as_ref()?;
            records.contains_key(p).then(|| {
                let alg = changes[i].new_digest().map(|(a, _)| a);
                (i, p.clone(), alg)
            })
        })
        .collect();
    let contents = read_all(root, &jobs);
    for (&i, p) in candidates.iter().zip(&paths) {
        let Some(p) = p else { continue };
        let watch = plan.by_name(&changes[i].rule);
        let (severity, verified_severity) = watch
            .map_or((changes[i].severity, Severity::Info), |w| {
                (w.severity, w.verified_severity)
            });
        let verdict = if let Some(recs) = records.get(p) {
            let content = contents.get(&i);
            file_verdict(&changes[i], recs, content, busy.as_deref())
        } else if let Some(pkgs) = listed.get(p) {
            let is_dir = kinds
                .get(p.as_slice())
                .is_some_and(std::fs::FileType::is_dir);
            Some(listed_verdict(
                &changes[i],
                &pkgs[0],
                is_dir,
                busy.is_some(),
            ))
        } else {
            None
        };
        if let Some((v, mismatch)) = verdict {
            apply(&mut changes[i], v, mismatch, severity, verified_severity);
        }
    }
    Ok(true)
}

/// The verdict for a path a package lists without a digest (a directory, a
/// symlink): only a directory whose entries alone changed is verified.
fn listed_verdict(
    change: &Change,
    pkg: &dpkg::Package,
    is_dir: bool,
    busy: bool,
) -> (PackageVerdict, bool) {
    let ok = is_dir && only_entry_fields(change) && !busy && pkg.unpacked();
    (
        PackageVerdict {
            name: pkg.name.clone(),
            version: pkg.version.clone(),
            arch: pkg.arch.clone(),
            verified: ok,
            conffile: false,
            expected_md5: None,
            md5: None,
            evidence: if ok {
                format!(
                    "directory listed by {}; only its entries changed (each is reported itself)",
                    pkg.describe()
                )
            } else if is_dir {
                format!(
                    "directory listed by {}; dpkg records no mode or owner to compare",
                    pkg.describe()
                )
            } else {
                format!(
                    "listed by {}; dpkg records no digest or target for it",
                    pkg.describe()
                )
            },
        },
        false,
    )
}

/// Records the verdict on the change and sets its severity: the watch's
/// `verified_severity` when verified, at least high when proven different
/// from what the package installed, the watch's severity otherwise.
fn apply(
    c: &mut Change,
    v: PackageVerdict,
    mismatch: bool,
    severity: Severity,
    verified_severity: Severity,
) {
    if v.verified {
        c.severity = verified_severity;
    } else if mismatch {
        // Proven different from what the package installed.
        c.severity = severity.max(Severity::High);
    } else {
        c.severity = severity;
    }
    c.package = Some(Box::new(v));
}

/// Digests the files of `jobs` with two threads (the comparison itself
/// has finished, so they do not compete with it).
fn read_all(
    root: &Path,
    jobs: &[(usize, Vec<u8>, Option<&'static str>)],
) -> HashMap<usize, Result<Content, DigestError>> {
    let threads = std::thread::available_parallelism()
        .map_or(1, std::num::NonZero::get)
        .clamp(1, 4);
    let chunk = jobs.len().div_ceil(threads).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = jobs
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|(i, p, alg)| (*i, digest(root, p, *alg)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

/// The verdict for a regular file the database records.
fn file_verdict(
    change: &Change,
    recs: &[Record],
    content: Option<&Result<Content, DigestError>>,
    busy: Option<&str>,
) -> Option<(PackageVerdict, bool)> {
    // Prefer the record the content matches (several packages may ship
    // the same path: Multi-Arch: same), then an installed package's.
    let now = match content {
        Some(Ok(c)) => Some(c),
        _ => None,
    };
    let matching = now.and_then(|c| recs.iter().find(|r| r.md5 == Some(c.md5)));
    let rec = matching
        .or_else(|| recs.iter().find(|r| r.package.unpacked() && !r.obsolete))
        .unwrap_or(&recs[0]);
    let pkg = &rec.package;
    let expected = rec.md5.as_ref().map(dpkg::hex);
    let found = now.map(|c| dpkg::hex(&c.md5));
    let what = if rec.conffile {
        "configuration file of"
    } else {
        "file of"
    };
    let mut v = PackageVerdict {
        name: pkg.name.clone(),
        version: pkg.version.clone(),
        arch: pkg.arch.clone(),
        verified: false,
        conffile: rec.conffile,
        expected_md5: expected.clone(),
        md5: found.clone(),
        evidence: String::new(),
    };
    let recorded = change.new_digest();
    let mut mismatch = false;
    v.evidence = match (busy, now, &expected) {
        (Some(why), _, _) => format!(
            "{what} {}: not judged: {why} (waited {} s)",
            pkg.describe(),
            SETTLE_WAIT.as_secs()
        ),
        (None, None, _) => {
            let e = match content {
                Some(Err(e)) => e.to_string(),
                _ => "not read".to_owned(),
            };
            format!("{what} {}: content could not be read: {e}", pkg.describe())
        }
        (None, Some(_), None) => format!(
            "{what} {}: the package database records no digest for it ({})",
            pkg.describe(),
            rec.source
        ),
        (None, Some(c), Some(exp)) => {
            let changed_again =
                matches!((&recorded, &c.fim), (Some((_, want)), Some(got)) if want != got);
            let found = found.unwrap_or_default();
            if changed_again {
                v.md5 = None;
                format!(
                    "{what} {}: changed again while being verified; the next comparison judges it",
                    pkg.describe()
                )
            } else if found == *exp && !pkg.unpacked() {
                format!(
                    "{what} {}: MD5 {found} matches {}, but the package is {}",
                    pkg.describe(),
                    rec.source,
                    pkg.state
                )
            } else if found == *exp {
                v.verified = true;
                format!(
                    "MD5 {found} matches the {what} {} ({})",
                    pkg.describe(),
                    rec.source
                )
            } else if rec.conffile {
                format!(
                    "configuration file of {}: MD5 {found}, the packaged version has {exp} ({}): edited locally",
                    pkg.describe(),
                    rec.source
                )
            } else {
                mismatch = true;
                format!(
                    "MD5 {found} is not what {} installed: expected {exp} ({})",
                    pkg.describe(),
                    rec.source
                )
            }
        }
    };
    Some((v, mismatch))
}
