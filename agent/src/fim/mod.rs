//! File integrity monitoring: a parallel scanner, a tamper-evident SQLite
//! database, and the comparison behind `plumb fim init|check`.

pub mod db;
pub mod diff;
pub mod entry;
pub mod hash;
pub mod merge;
pub mod progress;
pub mod reuse;
pub mod rules;
pub mod scan;
pub mod walk;
pub mod xattr;

pub use db::sealed_digest;

use anyhow::{Context, bail};
use db::{BATCH, Db, Digest, Key};
use entry::State;
use plumb_core::FimRule;
use plumb_core::fim::{FIM_REPORT_SCHEMA, FimFileError, FimReport, ReportPath};
use progress::{Counters, Progress};
use rules::Plan;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use walk::{Item, Reused};

/// How `check` verifies content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verify {
    /// Re-hash every regular file.
    Full,
    /// Re-hash only files whose size, mtime, ctime, inode or type changed.
    Metadata,
}

impl Verify {
    /// Name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Verify::Full => "full",
            Verify::Metadata => "metadata",
        }
    }
}

/// Where a scan looks and where its state lives.
#[derive(Debug, Clone)]
pub struct Options {
    /// Root directory; watch paths are inside it.
    pub root: PathBuf,
    /// Database file.
    pub db: PathBuf,
    /// Key file.
    pub key: PathBuf,
}

/// Result of `init`.
#[derive(Debug)]
pub struct InitSummary {
    /// Entries recorded.
    pub entries: u64,
    /// `db_digest` of the new database.
    pub digest: String,
    /// Paths that could not be read.
    pub errors: Vec<FimFileError>,
    /// Files that kept changing while hashed.
    pub unstable: Vec<ReportPath>,
    /// Whether a new key file was created.
    pub key_created: bool,
}

fn with_suffix(p: &Path, suffix: &str) -> PathBuf {
    let mut s = p.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// In-root paths of our own files (database, its WAL, the key) when they lie
/// inside the root, so a watch over their directory does not record them.
fn own_files(opts: &Options) -> Vec<Vec<u8>> {
    let Ok(root) = opts.root.canonicalize() else {
        return Vec::new();
    };
    let mut files = Vec::new();
    for base in [with_suffix(&opts.db, ""), with_suffix(&opts.db, ".partial")] {
        for sfx in ["", "-wal", "-shm", "-journal"] {
            files.push(with_suffix(&base, sfx));
        }
    }
    files.push(opts.key.clone());
    files
        .into_iter()
        .filter_map(|f| {
            let dir = f
                .parent()
                .filter(|d| !d.as_os_str().is_empty())
                .unwrap_or(Path::new("."));
            let abs = dir.canonicalize().ok()?.join(f.file_name()?);
            let rel = abs.strip_prefix(&root).ok()?;
            let mut p = b"/".to_vec();
            p.extend_from_slice(rel.as_os_str().as_bytes());
            Some(p)
        })
        .collect()
}

fn plan(rules: &[FimRule], opts: &Options) -> anyhow::Result<Plan> {
    let meta =
        std::fs::metadata(&opts.root).with_context(|| format!("--root {}", opts.root.display()))?;
    if !meta.is_dir() {
        bail!("--root {}: not a directory", opts.root.display());
    }
    let mut plan = Plan::new(rules)?;
    plan.skip = own_files(opts);
    raise_fd_limit();
    Ok(plan)
}

/// Each file in flight holds its directory's descriptor: allow more than the
/// usual 1024 when the hard limit permits.
fn raise_fd_limit() {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if let Ok((soft, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let want = hard.min(65_536);
        if soft < want {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, want, hard);
        }
    }
}

fn note(e: &entry::Entry, errors: &mut Vec<FimFileError>, unstable: &mut Vec<ReportPath>) {
    match &e.state {
        State::Ok => {}
        State::Unstable => unstable.push(ReportPath::from_bytes(&e.path)),
        State::Error(m) => errors.push(FimFileError {
            path: ReportPath::from_bytes(&e.path),
            error: m.clone(),
        }),
    }
}

/// `plumb fim init`: scans and writes a new sealed database. The database
/// is built beside the target as `DB.partial` and renamed over it only when
/// complete, so an interrupted init leaves the previous database intact. An
/// existing key file is reused, never overwritten; a missing one is created.
pub fn init(rules: &[FimRule], opts: &Options, show_progress: bool) -> anyhow::Result<InitSummary> {
    let plan = plan(rules, opts)?;
    let key_created = !opts.key.exists();
    let key = if key_created {
        Key::create(&opts.key)?
    } else {
        Key::load(&opts.key)?
    };
    let partial = with_suffix(&opts.db, ".partial");
    for sfx in ["", "-wal", "-shm", "-journal"] {
        let p = with_suffix(&partial, sfx);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    let db = Db::create(&partial, key)?;
    let counters = Arc::new(Counters::default());
    let progress = show_progress.then(|| Progress::start("fim init", counters.clone()));
    let mut digest = Digest::default();
    let (mut errors, mut unstable) = (Vec::new(), Vec::new());
    let mut in_batch = 0usize;
    db.begin()?;
    let scanned = scan::scan(
        &plan,
        &opts.root,
        None::<fn(&entry::Entry, hash::Want) -> Option<Reused>>,
        &counters,
        |item| {
            match item {
                Item::Entry(e) => {
                    note(&e, &mut errors, &mut unstable);
                    let mac = db.key().row_mac(&e);
                    db.put(&e, &mac)?;
                    digest.add(&mac);
                    in_batch += 1;
                    if in_batch >= BATCH {
                        db.commit()?;
                        db.begin()?;
                        in_batch = 0;
                    }
                }
                Item::Error { path, message } => errors.push(FimFileError {
                    path: ReportPath::from_bytes(&path),
                    error: message,
                }),
                Item::Unknown(_) => {}
            }
            Ok(())
        },
    );
    drop(progress);
    if let Err(e) = scanned {
        db.rollback();
        drop(db);
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    db.write_seal(digest, opts.root.as_os_str().as_bytes())?;
    db.commit()?;
    db.close()?;
    // A WAL left by an older database must not be applied to the new one.
    for sfx in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(&opts.db, sfx));
    }
    std::fs::rename(&partial, &opts.db)
        .with_context(|| format!("renaming {} to {}", partial.display(), opts.db.display()))?;
    if let Some(dir) = opts.db.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = std::fs::File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(InitSummary {
        entries: digest.rows,
        digest: digest.hex(),
        errors,
        unstable,
        key_created,
    })
}

/// An update prepared by `check --update`, written by [`Checked::commit`].
pub struct Checked {
    /// The report (with `updated` and `db_digest` set for the update).
    pub report: FimReport,
    writer: Option<(Db, Digest, Vec<u8>)>,
}

impl std::fmt::Debug for Checked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checked")
            .field("report", &self.report)
            .finish()
    }
}

impl Checked {
    /// Writes the prepared update (one transaction), if any.
    pub fn commit(self) -> anyhow::Result<()> {
        if let Some((db, digest, root)) = self.writer {
            db.write_seal(digest, &root)?;
            db.commit()?;
            db.close()?;
        }
        Ok(())
    }
}

/// `plumb fim check`: scans, compares with the database while verifying
/// every row, and with `update` prepares the new state (not yet committed:
/// the caller reports first, then calls [`Checked::commit`]). An update is
/// refused when the database shows tampering.
pub fn check(
    rules: &[FimRule],
    opts: &Options,
    verify: Verify,
    update: bool,
    show_progress: bool,
) -> anyhow::Result<Checked> {
    let started = Instant::now();
    let plan = plan(rules, opts)?;
    if !opts.db.is_file() {
        bail!(
            "database {} does not exist (run `plumb fim init` first)",
            opts.db.display()
        );
    }
    let reader = Db::open(&opts.db, Key::load(&opts.key)?)?;
    // The write lock is taken before the read snapshot, so two updates
    // cannot both compare against the same old state.
    let writer = if update {
        let w = Db::open(&opts.db, Key::load(&opts.key)?)?;
        w.begin()?;
        Some(w)
    } else {
        None
    };
    reader.begin_read()?;
    let seal = reader.seal()?;
    // Metadata verify: the walker looks up each regular file's stored row.
    let lookup = match verify {
        Verify::Full => None,
        Verify::Metadata => Some(Db::open(&opts.db, Key::load(&opts.key)?)?),
    };
    if let Some(l) = &lookup {
        l.begin_read()?;
    }
    let reuse = lookup.map(|l| {
        let mut ahead = reuse::Lookahead::new(l);
        move |e: &entry::Entry, want: hash::Want| ahead.reuse(e, want)
    });
    let counters = Arc::new(Counters::default());
    let progress = show_progress.then(|| Progress::start("fim check", counters.clone()));
    let mut stmt = reader.conn().prepare(&format!(
        "SELECT {} FROM entries ORDER BY path",
        db::COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    let mut merge = merge::Merge::new(&plan, &reader, writer.as_ref());
    scan::scan(&plan, &opts.root, reuse, &counters, |item| {
        merge.feed(item, &mut rows)
    })?;
    let found = merge.finish(&mut rows, &seal)?;
    drop(progress);
    drop(rows);
    drop(stmt);
    let root_bytes = opts.root.as_os_str().as_bytes().to_vec();
    let tampered = !found.tamper.is_empty();
    let writer = match writer {
        Some(w) if tampered => {
            w.rollback();
            eprintln!(
                "plumb: fim: database tampering found: --update refused; run `plumb fim init` after investigating"
            );
            None
        }
        Some(w) => Some((w, found.next, root_bytes)),
        None => None,
    };
    let shown = if writer.is_some() {
        found.next
    } else {
        found.read
    };
    let report = FimReport {
        schema: FIM_REPORT_SCHEMA,
        root: opts.root.display().to_string(),
        scanned: found.scanned,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        verify: verify.name().to_string(),
        changes: found.changes,
        tamper: found.tamper,
        errors: found.errors,
        unstable: found.unstable,
        db_digest: shown.hex(),
        db_rows: shown.rows,
        updated: writer.is_some(),
    };
    Ok(Checked { report, writer })
}
