//! File integrity monitoring: a parallel scanner, a tamper-evident SQLite
//! database, and the comparison behind `plumb fim init|check`.

pub mod change;
pub mod db;
pub mod diff;
pub mod entry;
pub mod hash;
pub mod merge;
pub mod package;
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

/// `DB.partial`, cleared of what an interrupted earlier attempt left.
fn fresh_partial(db: &Path) -> anyhow::Result<PathBuf> {
    let partial = with_suffix(db, ".partial");
    for sfx in ["", "-wal", "-shm", "-journal"] {
        let p = with_suffix(&partial, sfx);
        if p.exists() {
            std::fs::remove_file(&p).with_context(|| format!("removing stale {}", p.display()))?;
        }
    }
    Ok(partial)
}

/// Removes `db`'s WAL and journal files: a WAL left by an older database
/// must not be applied to the one that replaces it.
pub fn remove_sidecars(db: &Path) {
    for sfx in ["-wal", "-shm", "-journal"] {
        let _ = std::fs::remove_file(with_suffix(db, sfx));
    }
}

/// Puts the finished (closed, checkpointed) `partial` in place of `db`.
fn install(partial: &Path, db: &Path) -> anyhow::Result<()> {
    remove_sidecars(db);
    std::fs::rename(partial, db)
        .with_context(|| format!("renaming {} to {}", partial.display(), db.display()))
}

/// Makes the renames in `p`'s directory durable (best effort: the files
/// themselves are synced).
fn sync_parent(p: &Path) {
    if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
        let _ = plumb_os::atomic::sync_dir(dir);
    }
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

/// The plan of `rules` for a scan of `opts.root`: checks the root, leaves
/// our own files out, and raises the open-files limit.
pub fn plan(rules: &[FimRule], opts: &Options) -> anyhow::Result<Plan> {
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
    let partial = fresh_partial(&opts.db)?;
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
        None,
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
    db.write_watches(Some(&watch_roots(&plan)), &digest)?;
    db.commit()?;
    db.close()?;
    install(&partial, &opts.db)?;
    sync_parent(&opts.db);
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
    writer: Option<Prepared>,
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
        self.writer.map_or(Ok(()), Prepared::commit)
    }
}

/// A new state prepared in an open write transaction: what its seal and
/// watch list will say.
struct Prepared {
    db: Db,
    digest: Digest,
    root: Vec<u8>,
    /// The watch roots covered (see [`Db::watches`]); `None` when unknown.
    watches: Option<Vec<String>>,
}

impl Prepared {
    fn commit(self) -> anyhow::Result<()> {
        self.db.write_seal(self.digest, &self.root)?;
        self.db
            .write_watches(self.watches.as_deref(), &self.digest)?;
        self.db.commit()?;
        self.db.close()
    }
}

/// With metadata verify, what the walker uses to look up each regular
/// file's stored row (its content is reused when its metadata is the same).
fn reuser(
    opts: &Options,
    verify: Verify,
) -> anyhow::Result<Option<impl FnMut(&entry::Entry, hash::Want) -> Option<Reused> + Send>> {
    let lookup = match verify {
        Verify::Full => return Ok(None),
        Verify::Metadata => Db::open(&opts.db, Key::load(&opts.key)?)?,
    };
    lookup.begin_read()?;
    let mut ahead = reuse::Lookahead::new(lookup);
    Ok(Some(move |e: &entry::Entry, want: hash::Want| {
        ahead.reuse(e, want)
    }))
}

/// The roots of `plan`'s watches, as recorded in the database.
fn watch_roots(plan: &Plan) -> Vec<String> {
    plan.watches.iter().map(|w| w.name.to_string()).collect()
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
    let reuse = reuser(opts, verify)?;
    let counters = Arc::new(Counters::default());
    let progress = show_progress.then(|| Progress::start("fim check", counters.clone()));
    let mut stmt = reader.conn().prepare(&format!(
        "SELECT {} FROM entries ORDER BY path",
        db::COLUMNS
    ))?;
    let mut rows = stmt.query([])?;
    let mut merge = merge::Merge::new(&plan, &reader, writer.as_ref());
    scan::scan(&plan, &opts.root, reuse, &counters, None, |item| {
        merge.feed(item, &mut rows)
    })?;
    let mut found = merge.finish(&mut rows, &seal)?;
    drop(progress);
    let (packages, package_error) = judge(&plan, &opts.root, &mut found.changes);
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
        Some(db) => Some(Prepared {
            db,
            digest: found.next,
            root: root_bytes,
            watches: Some(watch_roots(&plan)),
        }),
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
        changes: found
            .changes
            .into_iter()
            .map(change::Change::into_report)
            .collect(),
        tamper: found.tamper,
        errors: found.errors,
        unstable: found.unstable,
        db_digest: shown.hex(),
        db_rows: shown.rows,
        updated: writer.is_some(),
        packages,
        package_error,
    };
    Ok(Checked { report, writer })
}

/// Adds package verdicts to `changes` (see [`package`]), waiting up to
/// [`package::SETTLE_WAIT`] for a busy dpkg; returns the counts by verdict
/// (None without a package database) or why the database was unreadable.
pub fn judge(
    plan: &Plan,
    root: &Path,
    changes: &mut [change::Change],
) -> (Option<plumb_core::fim::ChangeSummary>, Option<String>) {
    match package::judge(plan, root, changes, package::SETTLE_WAIT) {
        Ok(false) => (None, None),
        Ok(true) => {
            let mut sum = plumb_core::fim::ChangeSummary::default();
            for c in changes.iter() {
                sum.add(&ReportPath::from_bytes(&c.path), c.package.as_deref());
            }
            (Some(sum), None)
        }
        Err(e) => (None, Some(e.to_string())),
    }
}

/// Targets above which a comparison collapses them into their directories
/// ([`collapse`]). As many as the daemon's default realtime bound: a burst
/// is compared path by path, each with one index range.
pub const MAX_ROOTS: usize = 65_536;

/// Creates an empty sealed database (and, when missing, its key, 0600)
/// unless the database exists; an existing one must open with its key.
/// Returns whether a database was created. A new key is written beside as
/// `KEY.partial` and renamed after the database, so an interrupted first
/// start never leaves a key without its database; the next call completes
/// or restarts it.
pub fn ensure_db(opts: &Options) -> anyhow::Result<bool> {
    let key_partial = with_suffix(&opts.key, ".partial");
    if opts.db.exists() {
        if !opts.key.exists() && key_partial.exists() {
            std::fs::rename(&key_partial, &opts.key)
                .with_context(|| format!("renaming {}", key_partial.display()))?;
        }
        Db::open(&opts.db, Key::load(&opts.key)?)?;
        return Ok(false);
    }
    let new_key = !opts.key.exists();
    let key = if new_key {
        if key_partial.exists() {
            std::fs::remove_file(&key_partial)
                .with_context(|| format!("removing stale {}", key_partial.display()))?;
        }
        Key::create(&key_partial)?
    } else {
        Key::load(&opts.key)?
    };
    let partial = fresh_partial(&opts.db)?;
    let db = Db::create(&partial, key)?;
    db.write_seal(Digest::default(), opts.root.as_os_str().as_bytes())?;
    db.close()?;
    install(&partial, &opts.db)?;
    if new_key {
        std::fs::rename(&key_partial, &opts.key)
            .with_context(|| format!("renaming {}", key_partial.display()))?;
    }
    sync_parent(&opts.db);
    Ok(true)
}

/// A comparison whose new state is written later, by [`Compared::commit`],
/// once its findings are reported (the daemon).
pub struct Compared {
    /// What was found. Directory times, size and link count are not
    /// reported (the entries added or removed are).
    pub found: merge::Findings,
    /// The database held nothing yet (and a valid seal): everything scanned
    /// is new, so the caller records it without reporting it.
    pub empty: bool,
    /// Whether only some subtrees were compared.
    pub partial: bool,
    writer: Option<Prepared>,
}

impl std::fmt::Debug for Compared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compared")
            .field("found", &self.found)
            .field("empty", &self.empty)
            .field("partial", &self.partial)
            .finish_non_exhaustive()
    }
}

impl Compared {
    /// Writes the new state and its seal, in one transaction. Nothing is
    /// written when the state cannot be sealed (a partial comparison of a
    /// database whose seal is broken).
    pub fn commit(self) -> anyhow::Result<()> {
        self.writer.map_or(Ok(()), Prepared::commit)
    }
}

/// The query for the rows of `roots` (disjoint subtrees; every row
/// without), in key order. The roots go into a temporary table joined with
/// the primary key, one index range each: a burst has tens of thousands of
/// them, too many for one condition per root.
fn rows_query(conn: &rusqlite::Connection, roots: Option<&[Vec<u8>]>) -> anyhow::Result<String> {
    let Some(roots) = roots else {
        return Ok(format!("SELECT {} FROM entries ORDER BY path", db::COLUMNS));
    };
    // In memory: the agent's unit leaves no temporary directory writable
    // (ProtectSystem=strict), and a realtime pass has at most a few
    // thousand roots (tens of bytes each).
    conn.execute_batch(
        "PRAGMA temp_store = MEMORY;
         CREATE TEMP TABLE IF NOT EXISTS fim_roots (lo BLOB PRIMARY KEY, hi BLOB NOT NULL) WITHOUT ROWID;
         DELETE FROM temp.fim_roots;",
    )?;
    let mut insert =
        conn.prepare("INSERT OR IGNORE INTO temp.fim_roots (lo, hi) VALUES (?1, ?2)")?;
    for r in roots {
        // The key, then everything below it (the key and a NUL): up to the key and \x01.
        let lo = entry::path_key(r);
        let mut hi = lo.clone();
        hi.push(1);
        insert.execute(rusqlite::params![lo, hi])?;
    }
    // CROSS JOIN keeps the roots outside, in key order: the ranges are
    // disjoint, so the rows come out in key order without a sort.
    Ok(format!(
        "SELECT {} FROM temp.fim_roots r CROSS JOIN entries e
         WHERE e.path >= r.lo AND e.path < r.hi ORDER BY r.lo, e.path",
        db::COLUMNS
    ))
}

/// Compares the watches of `plan` with the database, verifying every row
/// read, or with `roots` only those subtrees (each with the attributes and
/// excludes of the watch governing it): only the rows below them are read,
/// so rows elsewhere are neither verified nor reported removed, and the
/// seal's totals are updated arithmetically. An empty database is compared
/// whole whatever `roots` says. `hook` is called before every chunk hashed.
/// The new state (tampered rows replaced or dropped) is prepared in a write
/// transaction held until [`Compared::commit`]; dropping it writes nothing.
pub fn compare(
    plan: &Plan,
    opts: &Options,
    verify: Verify,
    roots: Option<&[Vec<u8>]>,
    hook: Option<hash::ReadHook<'_>>,
) -> anyhow::Result<Compared> {
    let reader = Db::open(&opts.db, Key::load(&opts.key)?)?;
    let writer = Db::open(&opts.db, Key::load(&opts.key)?)?;
    // The write lock first, then the read snapshot: see `check`.
    writer.begin()?;
    reader.begin_read()?;
    let seal = reader.seal()?;
    let any_row: bool =
        reader
            .conn()
            .query_row("SELECT EXISTS (SELECT 1 FROM entries)", [], |r| r.get(0))?;
    let empty = !any_row && matches!(&seal, db::Seal::Valid { digest, .. } if digest.rows == 0);
    let restricted;
    let mut targets: Option<Vec<Vec<u8>>> = roots.map(|r| {
        r.iter()
            .filter_map(|p| walk::target(plan, &opts.root, p))
            .collect()
    });
    // Many changed paths (a burst, patch day): compare their directories
    // instead, re-hashing only the changed paths themselves and reusing
    // the stored hash of files whose metadata did not change, so the cost
    // follows the changes rather than the size of the watched trees.
    let mut forced: Option<std::collections::HashSet<Vec<u8>>> = None;
    if let Some(t) = targets.as_mut().filter(|t| t.len() > MAX_ROOTS) {
        if verify == Verify::Full {
            forced = Some(t.iter().cloned().collect());
        }
        *t = collapse(std::mem::take(t));
    }
    let verify = if forced.is_some() {
        Verify::Metadata
    } else {
        verify
    };
    let (plan, roots) = match &targets {
        Some(r) if !empty && r.len() <= MAX_ROOTS && !r.iter().any(|p| p == b"/") => {
            restricted = plan.restrict(r);
            if restricted.1.iter().any(|p| p == b"/") {
                (plan, None)
            } else {
                (&restricted.0, Some(restricted.1.as_slice()))
            }
        }
        _ => (plan, None),
    };
    let partial = roots.is_some();
    let reuse = reuser(opts, verify)?.map(|mut inner| {
        move |e: &entry::Entry, want: hash::Want| {
            let changed = forced.as_ref().is_some_and(|f| {
                f.contains(&e.path)
                    || e.path
                        .iter()
                        .rposition(|&b| b == b'/')
                        .is_some_and(|i| f.contains(&e.path[..i.max(1)]))
            });
            if changed { None } else { inner(e, want) }
        }
    });
    let counters = Counters::default();
    let sql = rows_query(reader.conn(), roots)?;
    let mut stmt = reader.conn().prepare(&sql)?;
    let mut rows = stmt.query([])?;
    let mut merge = merge::Merge::new(plan, &reader, Some(&writer));
    merge.dir_times = false;
    if roots.is_none_or(|r| !r.is_empty()) {
        scan::scan(plan, &opts.root, reuse, &counters, hook, |item| {
            merge.feed(item, &mut rows)
        })?;
    }
    let mut found = if partial {
        merge.finish_partial(&mut rows)?
    } else {
        merge.finish(&mut rows, &seal)?
    };
    drop(rows);
    drop(stmt);
    let writer = next_state(plan, opts, &seal, partial, &mut found, &reader, writer)?;
    Ok(Compared {
        found,
        empty,
        partial,
        writer,
    })
}

/// Replaces paths by their parent directories, level by level, until at
/// most [`MAX_ROOTS`] subtrees remain (or only `/`), dropping those inside
/// another.
fn collapse(mut paths: Vec<Vec<u8>>) -> Vec<Vec<u8>> {
    loop {
        paths.sort();
        paths.dedup();
        // Sorted, a subtree follows its root directly: keep the first of each.
        let mut kept: Vec<Vec<u8>> = Vec::with_capacity(paths.len());
        for p in paths {
            let inside = kept.last().is_some_and(|k: &Vec<u8>| {
                k.as_slice() == b"/" || (p.starts_with(k) && p.get(k.len()) == Some(&b'/'))
            });
            if !inside {
                kept.push(p);
            }
        }
        if kept.len() <= MAX_ROOTS || kept.iter().all(|p| p == b"/") {
            return kept;
        }
        // Up one level: the deepest paths first would be finer, but one
        // level for all keeps this linear and is enough for real bursts.
        paths = kept
            .into_iter()
            .map(|p| match p.iter().rposition(|&b| b == b'/') {
                Some(0) | None => b"/".to_vec(),
                Some(i) => p[..i].to_vec(),
            })
            .collect();
    }
}

/// The state a comparison leaves, prepared in `writer` for
/// [`Compared::commit`]: a whole pass seals what it found; a partial one
/// updates the seal's totals arithmetically, which needs a valid seal (a
/// broken one is reported and nothing is written).
fn next_state(
    plan: &Plan,
    opts: &Options,
    seal: &db::Seal,
    partial: bool,
    found: &mut merge::Findings,
    reader: &Db,
    writer: Db,
) -> anyhow::Result<Option<Prepared>> {
    let digest = match (seal, partial) {
        (_, false) => found.next,
        (db::Seal::Valid { digest, .. }, true) => digest.replace(&found.read, &found.next),
        (db::Seal::Broken(why), true) => {
            found.tamper.push(plumb_core::fim::FimTamper {
                path: None,
                reason: format!("database seal: {why}"),
            });
            writer.rollback();
            return Ok(None);
        }
    };
    // A whole pass covered the plan's roots; a partial one keeps what the
    // last whole pass recorded, re-bound to the new seal.
    let watches = match (seal, partial) {
        (_, false) => Some(watch_roots(plan)),
        (db::Seal::Valid { digest, .. }, true) => reader.watches(digest)?,
        (db::Seal::Broken(_), true) => None,
    };
    Ok(Some(Prepared {
        db: writer,
        digest,
        root: opts.root.as_os_str().as_bytes().to_vec(),
        watches,
    }))
}

#[cfg(test)]
mod collapse_tests {
    use super::*;

    #[test]
    fn many_paths_become_their_directories() {
        let few: Vec<Vec<u8>> = vec![b"/etc/a".to_vec(), b"/etc/a/b".to_vec()];
        assert_eq!(collapse(few), vec![b"/etc/a".to_vec()]);
        let many: Vec<Vec<u8>> = (0..=MAX_ROOTS)
            .map(|i| format!("/usr/lib/d{}/f{i}", i % 3).into_bytes())
            .chain([b"/etc/x".to_vec()])
            .collect();
        assert_eq!(
            collapse(many),
            vec![
                b"/etc".to_vec(),
                b"/usr/lib/d0".to_vec(),
                b"/usr/lib/d1".to_vec(),
                b"/usr/lib/d2".to_vec()
            ]
        );
        let spread: Vec<Vec<u8>> = (0..=MAX_ROOTS)
            .map(|i| format!("/d{i}").into_bytes())
            .collect();
        assert_eq!(collapse(spread), vec![b"/".to_vec()]);
    }
}
