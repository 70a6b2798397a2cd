//! The daemon's FIM backend on the real engine ([`crate::fim`]): the sealed
//! database `fim.db` in the state directory, its key `fim.db.key` (0600,
//! created on first start). Whole passes are `plumb fim check`; realtime
//! passes compare only the changed subtrees. A pass prepares the new state
//! in a write transaction that [`SealedFim::record`] commits.

use super::{Depth, IntegrityError, Pass, Scope};
use crate::daemon::limits::RateLimiter;
use crate::fim::rules::Plan;
use crate::fim::{self, Compared, Options, Verify};
use plumb_core::FimRule;
use plumb_core::baseline::normalize_fim_path;
use std::collections::HashMap;
use std::path::Path;

/// The prepared new state of a pass.
#[derive(Debug, Default)]
pub struct Pending(Option<Compared>);

/// The sealed backend.
#[derive(Debug)]
pub struct SealedFim {
    opts: Options,
    /// None when no baseline has a `[[fim]]` watch.
    plan: Option<Plan>,
    /// ISSP domains of each watch, by its normalized path.
    domains: HashMap<String, Vec<u8>>,
    /// Why the database was started anew although one existed before; kept
    /// until a pass reporting it is recorded.
    lost: Option<String>,
    /// The watch roots the last whole pass covered, as the database records
    /// them (sealed with it, so this survives a restart); `None` when the
    /// database cannot tell (made by `plumb fim init` of an older build).
    covered: Option<Vec<String>>,
    /// Watch roots of the baselines that no whole pass has covered yet:
    /// nothing was recorded under them, so the first whole pass adopts them
    /// silently instead of reporting every file as added.
    fresh: Vec<String>,
    /// The pass being recorded covers every watch (it retires `fresh`).
    whole_pass: bool,
}

impl SealedFim {
    /// Opens `state_dir/fim.db` with its key, creating both (empty, sealed)
    /// when the database does not exist yet. `first_start` says the state
    /// directory is new: otherwise a database missing (with or without its
    /// key) is reported as tampering by the first pass.
    pub fn open(
        state_dir: &Path,
        root: &Path,
        rules: &[FimRule],
        first_start: bool,
    ) -> Result<SealedFim, IntegrityError> {
        let db = state_dir.join("fim.db");
        let opts = Options {
            root: root.to_path_buf(),
            key: fim::db::default_key_path(&db),
            db,
        };
        // Losing the database or its key must not pass for a first start:
        // the new database's first pass is reported as tampering.
        let mut lost = None;
        let key_partial = state_dir.join("fim.db.key.partial");
        let had_db = opts.db.exists();
        // A key still `.partial` beside a database: a first start that was
        // interrupted; `ensure_db` completes it.
        let had_key = opts.key.exists() || (had_db && key_partial.exists());
        if had_db && !had_key {
            let aside = opts.db.with_file_name("fim.db.nokey");
            std::fs::rename(&opts.db, &aside).map_err(|error| IntegrityError::MoveAside {
                path: opts.db.clone(),
                error,
            })?;
            fim::remove_sidecars(&opts.db);
            lost = Some(format!(
                "key file {} was missing: the database could not be verified; moved to {} and started anew",
                opts.key.display(),
                aside.display()
            ));
        } else if !had_db && (had_key || !first_start) {
            lost = Some(format!(
                "database {} was missing (the agent had run before): started anew",
                opts.db.display()
            ));
        }
        fim::ensure_db(&opts).map_err(IntegrityError::Database)?;
        let covered = recorded_watches(&opts).map_err(IntegrityError::Database)?;
        let mut me = SealedFim {
            opts,
            plan: None,
            domains: HashMap::new(),
            lost,
            covered,
            fresh: Vec::new(),
            whole_pass: false,
        };
        me.set_rules(rules)?;
        Ok(me)
    }

    fn compare(
        &self,
        plan: &Plan,
        roots: Option<&[Vec<u8>]>,
        depth: Depth,
        limiter: &RateLimiter,
    ) -> Result<Compared, IntegrityError> {
        let verify = match depth {
            Depth::Full => Verify::Full,
            Depth::Metadata => Verify::Metadata,
        };
        let take = |n: usize| limiter.take(n as u64);
        let hook: Option<fim::hash::ReadHook<'_>> = (limiter.rate() > 0).then_some(&take);
        fim::compare(plan, &self.opts, verify, roots, hook).map_err(IntegrityError::Compare)
    }

    /// Compares `scope` on disk with the database; reads through `limiter`.
    pub fn scan(
        &mut self,
        scope: &Scope,
        depth: Depth,
        limiter: &RateLimiter,
    ) -> Result<Pass, IntegrityError> {
        let Some(plan) = &self.plan else {
            return Ok(Pass::default());
        };
        let roots = match scope {
            Scope::All => None,
            Scope::Paths(p) => Some(p.as_slice()),
        };
        let mut c = self.compare(plan, roots, depth, limiter)?;
        if c.partial && !c.found.tamper.is_empty() {
            // The seal's totals only hold for the whole database: look at
            // all of it, so the tampering is reported in full and the
            // database re-sealed consistently.
            drop(c);
            c = self.compare(plan, None, depth, limiter)?;
        }
        let judging = std::time::Instant::now();
        let package_error = if c.empty {
            None
        } else {
            fim::judge(plan, &self.opts.root, &mut c.found.changes).1
        };
        tracing::debug!(
            changes = c.found.changes.len(),
            judge_ms = judging.elapsed().as_millis(),
            "FIM package verdicts"
        );
        let found = std::mem::take(&mut c.found);
        let mut pass = Pass {
            scanned: found.scanned,
            initialised: c.empty,
            ..Pass::default()
        };
        if !c.empty {
            // A watch no longer in the baselines: its rows are dropped quietly.
            pass.changes = found
                .changes
                .into_iter()
                .filter(|ch| {
                    // Watch roots are text: a path that is not keeps its
                    // UTF-8 prefix in its lossy form.
                    self.domains.contains_key(&*ch.rule)
                        && (self.fresh.is_empty() || {
                            let p = String::from_utf8_lossy(&ch.path);
                            !self.fresh.iter().any(|f| under(f, &p))
                        })
                })
                .collect();
            pass.domains.clone_from(&self.domains);
        }
        self.whole_pass = matches!(scope, Scope::All);
        pass.tamper = found
            .tamper
            .into_iter()
            .map(|t| match t.path {
                Some(p) => format!("{}: {}", p.display(), t.reason),
                None => t.reason,
            })
            .collect();
        pass.errors = found
            .errors
            .into_iter()
            .map(|e| format!("{}: {}", e.path.display(), e.error))
            .chain(
                found
                    .unstable
                    .into_iter()
                    .map(|p| format!("{}: kept changing while hashed", p.display())),
            )
            .collect();
        if let Some(e) = package_error {
            pass.errors.push(format!("package database: {e}"));
        }
        if let Some(why) = &self.lost {
            pass.tamper.push(why.clone());
        }
        pass.pending = Pending(Some(c));
        Ok(pass)
    }

    /// Records a pass's findings as the new known state.
    pub fn record(&mut self, pass: Pass) -> Result<(), IntegrityError> {
        let reported_loss = self.lost.is_some() && !pass.tamper.is_empty();
        if let Some(c) = pass.pending.0 {
            c.commit().map_err(IntegrityError::Database)?;
        }
        if reported_loss {
            self.lost = None;
        }
        if self.whole_pass {
            self.fresh.clear();
            self.covered = Some(self.domains.keys().cloned().collect());
        }
        Ok(())
    }

    /// Replaces the watches (baseline reload).
    pub fn set_rules(&mut self, rules: &[FimRule]) -> Result<(), IntegrityError> {
        if rules.is_empty() {
            self.plan = None;
            self.domains.clear();
            return Ok(());
        }
        let plan = fim::plan(rules, &self.opts).map_err(IntegrityError::Watches)?;
        // What was recorded: the database's list, else (an older database)
        // the watches running until now, if any.
        let known: Option<Vec<String>> = match &self.covered {
            Some(c) => Some(c.clone()),
            None => self.plan.is_some().then(|| {
                self.domains
                    .keys()
                    .filter(|k| !self.fresh.contains(k))
                    .cloned()
                    .collect()
            }),
        };
        if let Some(known) = known {
            self.fresh.clear();
            for r in rules {
                let p = normalize_fim_path(&r.path);
                if !known.iter().any(|o| under(o, &p)) && !self.fresh.contains(&p) {
                    self.fresh.push(p);
                }
            }
        }
        self.domains = rules
            .iter()
            .map(|r| (normalize_fim_path(&r.path), r.domains.clone()))
            .collect();
        self.plan = Some(plan);
        Ok(())
    }

    /// The database's digest (hex), for snapshots.
    pub fn digest(&mut self) -> Option<String> {
        fim::sealed_digest(&self.opts.db, &self.opts.key).ok()
    }
}

/// The watch roots recorded with the database's seal, if it can tell.
fn recorded_watches(opts: &Options) -> anyhow::Result<Option<Vec<String>>> {
    let db = fim::db::Db::open(&opts.db, fim::db::Key::load(&opts.key)?)?;
    match db.seal()? {
        fim::db::Seal::Valid { digest, .. } => db.watches(&digest),
        fim::db::Seal::Broken(_) => Ok(None),
    }
}

/// Whether in-root path `inner` is `outer` or below it.
fn under(outer: &str, inner: &str) -> bool {
    outer == "/"
        || inner == outer
        || (inner.starts_with(outer) && inner.as_bytes().get(outer.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn setup(dir: &Path) -> (PathBuf, Baseline) {
        let root = dir.join("root");
        std::fs::create_dir_all(root.join("etc/sub")).unwrap();
        std::fs::create_dir_all(root.join("etc/skip")).unwrap();
        std::fs::write(root.join("etc/a"), "a").unwrap();
        std::fs::write(root.join("etc/sub/b"), "b").unwrap();
        std::fs::write(root.join("etc/skip/c"), "c").unwrap();
        let b = Baseline::from_str(
            "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\"]\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
            "t.toml",
        )
        .unwrap();
        (root, b)
    }

    fn open(dir: &Path) -> (PathBuf, SealedFim) {
        let (root, b) = setup(dir);
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let f = SealedFim::open(&dir.join("state"), &root, &b.fim, true).unwrap();
        (root, f)
    }

    fn changes(p: &Pass) -> Vec<(String, String)> {
        p.changes
            .iter()
            .map(|c| {
                (
                    String::from_utf8_lossy(&c.path).into_owned(),
                    c.kind.name().to_string(),
                )
            })
            .collect()
    }

    fn pair(p: &str, c: &str) -> (String, String) {
        (p.to_string(), c.to_string())
    }

    #[test]
    fn first_pass_initialises_silently_then_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (root, mut f) = open(dir.path());
        let key = dir.path().join("state/fim.db.key");
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.initialised && p.changes.is_empty(), "{:?}", p.changes);
        assert_eq!(p.scanned, 4, "/etc, /etc/a, /etc/sub, /etc/sub/b");
        f.record(p).unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        std::fs::remove_file(root.join("etc/sub/b")).unwrap();
        std::fs::write(root.join("etc/new"), "n").unwrap();
        std::fs::write(root.join("etc/skip/c"), "excluded").unwrap();
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        assert!(!p.initialised);
        // The directories' times moved too; only their entries are reported.
        assert_eq!(
            changes(&p),
            [
                pair("/etc/a", "modified"),
                pair("/etc/new", "added"),
                pair("/etc/sub/b", "removed"),
            ]
        );
        let mut p = p;
        let (sev, a) = p.change_events().next().unwrap();
        assert_eq!(sev, plumb_core::Severity::High);
        assert_eq!(a.domains, [25]);
        assert!(a.fields.contains(&"sha256".to_string()), "{a:?}");
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        f.record(p).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.changes.is_empty() && p.tamper.is_empty(), "{p:?}");
    }

    #[test]
    fn an_unrecorded_pass_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert_eq!(changes(&p), [pair("/etc/a", "modified")]);
        // Dropped, as when the process dies before the events are committed.
        drop(p);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert_eq!(changes(&p), [pair("/etc/a", "modified")]);
    }

    #[test]
    fn a_path_scope_reads_only_its_subtrees_and_keeps_the_seal_whole() {
        let dir = tempfile::tempdir().unwrap();
        let (root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        std::fs::remove_dir_all(root.join("etc/sub")).unwrap();
        std::fs::write(root.join("etc/skip/late"), "x").unwrap();
        let scope = Scope::Paths(vec![
            b"/etc/sub".to_vec(),
            b"/etc/skip/late".to_vec(),
            b"/usr/x".to_vec(),
        ]);
        let p = f.scan(&scope, Depth::Metadata, &lim).unwrap();
        // /etc/a changed too but lies elsewhere: not reported, and its row
        // is not taken for removed.
        assert_eq!(
            changes(&p),
            [pair("/etc/sub", "removed"), pair("/etc/sub/b", "removed")]
        );
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        f.record(p).unwrap();
        let d1 = f.digest().unwrap();
        // The whole database still verifies after the partial update, and
        // the rest is reported by the next whole pass.
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        assert_eq!(changes(&p), [pair("/etc/a", "modified")]);
        f.record(p).unwrap();
        assert_ne!(f.digest().unwrap(), d1);
        // A new file in a path scope is added, with its governing watch.
        std::fs::write(root.join("etc/fresh"), "f").unwrap();
        let p = f
            .scan(
                &Scope::Paths(vec![b"/etc/fresh".to_vec()]),
                Depth::Full,
                &lim,
            )
            .unwrap();
        assert_eq!(changes(&p), [pair("/etc/fresh", "added")]);
        let mut p = p;
        assert_eq!(p.change_events().next().unwrap().1.domains, [25]);
    }

    #[test]
    fn a_burst_of_thousands_of_paths_is_compared_path_by_path() {
        let dir = tempfile::tempdir().unwrap();
        let (root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        std::fs::create_dir_all(root.join("etc/old/deep")).unwrap();
        std::fs::write(root.join("etc/old/deep/x"), "x").unwrap();
        std::fs::create_dir_all(root.join("etc/burst")).unwrap();
        for i in 0..500 {
            std::fs::write(root.join(format!("etc/burst/keep{i}")), "k").unwrap();
        }
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        // 3,000 new files beside 500 untouched ones, one rewritten, a
        // removed tree, a new directory with a file, a name with a newline
        // and a byte that is not UTF-8; /etc/a changed but is not in scope.
        let mut scope: Vec<Vec<u8>> = Vec::new();
        for i in 0..3000 {
            std::fs::write(root.join(format!("etc/burst/new{i}")), "n").unwrap();
            scope.push(format!("/etc/burst/new{i}").into_bytes());
        }
        std::fs::write(root.join("etc/burst/keep7"), "rewritten").unwrap();
        std::fs::remove_dir_all(root.join("etc/old")).unwrap();
        std::fs::create_dir_all(root.join("etc/newdir")).unwrap();
        std::fs::write(root.join("etc/newdir/inner"), "i").unwrap();
        let odd = std::ffi::OsStr::from_bytes(b"etc/burst/odd\n\xff");
        std::fs::write(root.join(odd), "o").unwrap();
        std::fs::write(root.join("etc/a"), "changed").unwrap();
        scope.extend([
            b"/etc/burst/keep7".to_vec(),
            b"/etc/old".to_vec(),
            b"/etc/newdir".to_vec(),
            b"/etc/burst/odd\n\xff".to_vec(),
        ]);
        let p = f.scan(&Scope::Paths(scope), Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        let got = changes(&p);
        assert_eq!(got.len(), 3000 + 1 + 3 + 2 + 1, "{:?}", &got[..10]);
        for want in [
            pair("/etc/burst/keep7", "modified"),
            pair("/etc/old", "removed"),
            pair("/etc/old/deep/x", "removed"),
            pair("/etc/newdir", "added"),
            pair("/etc/newdir/inner", "added"),
            pair("/etc/burst/new2999", "added"),
        ] {
            assert!(got.contains(&want), "{want:?} missing");
        }
        assert!(
            !got.iter()
                .any(|(p, _)| p == "/etc/a" || p.starts_with("/etc/burst/keep1"))
        );
        assert!(p.changes.iter().any(|c| c.path == b"/etc/burst/odd\n\xff"));
        f.record(p).unwrap();
        // The seal holds, and only the change outside the scope is left.
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        assert_eq!(changes(&p), [pair("/etc/a", "modified")]);
    }

    fn with_srv(dir: &Path, root: &Path) -> Baseline {
        std::fs::create_dir_all(root.join("srv/app")).unwrap();
        std::fs::write(root.join("srv/app/conf"), "c").unwrap();
        let _ = dir;
        Baseline::from_str(
            "schema = 1\nid = \"t\"\nversion = 2\ntitle = \"t\"\n\
             [[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\"]\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n\
             [[fim]]\npath = \"/srv\"\nseverity = \"medium\"\ndomains = [25]\n",
            "t2.toml",
        )
        .unwrap()
    }

    /// A state directory whose first whole pass is recorded; the backend
    /// is closed (as if the agent stopped). Returns the root and state dir.
    fn recorded(dir: &Path) -> (PathBuf, PathBuf) {
        let (root, mut f) = open(dir);
        let p = f
            .scan(&Scope::All, Depth::Full, &RateLimiter::new(0))
            .unwrap();
        f.record(p).unwrap();
        (root, dir.join("state"))
    }

    #[test]
    fn a_new_watch_root_is_adopted_silently_even_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("state");
        let (root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        // A new baseline adds /srv; a realtime pass runs, then the agent
        // restarts before any whole pass.
        let b2 = with_srv(dir.path(), &root);
        f.set_rules(&b2.fim).unwrap();
        std::fs::write(root.join("etc/a"), "rt").unwrap();
        let p = f
            .scan(&Scope::Paths(vec![b"/etc/a".to_vec()]), Depth::Full, &lim)
            .unwrap();
        assert_eq!(changes(&p), [pair("/etc/a", "modified")]);
        f.record(p).unwrap();
        drop(f);
        let mut f = SealedFim::open(&st, &root, &b2.fim, false).unwrap();
        std::fs::write(root.join("etc/new"), "n").unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        // /etc is still compared; nothing under /srv is "added".
        assert_eq!(changes(&p), [pair("/etc/new", "added")]);
        f.record(p).unwrap();
        // Once adopted, /srv is watched like the rest, also after a restart.
        drop(f);
        let mut f = SealedFim::open(&st, &root, &b2.fim, false).unwrap();
        std::fs::write(root.join("srv/app/conf"), "changed").unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert_eq!(changes(&p), [pair("/srv/app/conf", "modified")]);
        assert_eq!(p.changes[0].severity, plumb_core::Severity::Medium);
    }

    #[test]
    fn a_baseline_changed_while_stopped_adopts_its_new_roots() {
        let dir = tempfile::tempdir().unwrap();
        let (root, st) = recorded(dir.path());
        let lim = RateLimiter::new(0);
        let b2 = with_srv(dir.path(), &root);
        let mut f = SealedFim::open(&st, &root, &b2.fim, false).unwrap();
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        assert!(p.changes.is_empty() && !p.initialised, "{:?}", p.changes);
        f.record(p).unwrap();
    }

    #[test]
    fn an_edited_watch_list_adopts_nothing_silently() {
        let dir = tempfile::tempdir().unwrap();
        let (root, st) = recorded(dir.path());
        let lim = RateLimiter::new(0);
        // Claiming /srv was never covered, to hide a file planted there,
        // breaks the list's MAC: it is ignored, and /srv is compared.
        let b2 = with_srv(dir.path(), &root);
        let mut f = SealedFim::open(&st, &root, &b2.fim, false).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        drop(f);
        let c = rusqlite::Connection::open(st.join("fim.db")).unwrap();
        c.execute("UPDATE watches SET roots = CAST('[\"/etc\"]' AS BLOB)", [])
            .unwrap();
        drop(c);
        std::fs::write(root.join("srv/app/planted"), "p").unwrap();
        let mut f = SealedFim::open(&st, &root, &b2.fim, false).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert_eq!(changes(&p), [pair("/srv/app/planted", "added")]);
    }

    fn edit_row(dir: &Path, path: &[u8], sql: &str) {
        let c = rusqlite::Connection::open(dir.join("state/fim.db")).unwrap();
        let key = crate::fim::entry::path_key(path);
        let n = c.execute(sql, [key]).unwrap();
        assert_eq!(n, 1);
    }

    #[test]
    fn an_edited_row_is_tampering_reported_once_then_resealed() {
        let dir = tempfile::tempdir().unwrap();
        let (_root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        edit_row(
            dir.path(),
            b"/etc/sub/b",
            "UPDATE entries SET uid = 4242 WHERE path = ?1",
        );
        // A realtime pass elsewhere does not read the row.
        let p = f
            .scan(&Scope::Paths(vec![b"/etc/a".to_vec()]), Depth::Full, &lim)
            .unwrap();
        assert!(p.tamper.is_empty(), "{:?}", p.tamper);
        drop(p);
        // One over it finds it, and looks at the whole database.
        let p = f
            .scan(&Scope::Paths(vec![b"/etc/sub".to_vec()]), Depth::Full, &lim)
            .unwrap();
        assert!(
            p.tamper.iter().any(|t| t.contains("/etc/sub/b")),
            "{:?}",
            p.tamper
        );
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        assert!(f.digest().is_some());
        f.record(p).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty() && p.changes.is_empty(), "{p:?}");
    }

    #[test]
    fn deleted_rows_and_a_forged_seal_are_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let (_root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        edit_row(dir.path(), b"/etc/a", "DELETE FROM entries WHERE path = ?1");
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        assert!(
            p.tamper.iter().any(|t| t.contains("deleted")),
            "{:?}",
            p.tamper
        );
        f.record(p).unwrap();
        let c = rusqlite::Connection::open(dir.path().join("state/fim.db")).unwrap();
        c.execute("UPDATE seal SET rows = rows + 1", []).unwrap();
        drop(c);
        assert!(f.digest().is_none(), "a broken seal has no digest");
        let p = f
            .scan(&Scope::Paths(vec![b"/etc/a".to_vec()]), Depth::Full, &lim)
            .unwrap();
        assert!(
            p.tamper.iter().any(|t| t.contains("seal")),
            "{:?}",
            p.tamper
        );
        f.record(p).unwrap();
        assert!(f.digest().is_some());
    }

    #[test]
    fn a_forged_row_for_a_path_not_on_disk_is_tampering_and_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let (_root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        let c = rusqlite::Connection::open(dir.path().join("state/fim.db")).unwrap();
        c.execute(
            &format!(
                "INSERT INTO entries SELECT ?1, {} FROM entries WHERE path = ?2",
                crate::fim::db::COLUMNS.replacen("path, ", "", 1)
            ),
            rusqlite::params![
                crate::fim::entry::path_key(b"/etc/ghost"),
                crate::fim::entry::path_key(b"/etc/a")
            ],
        )
        .unwrap();
        drop(c);
        let p = f.scan(&Scope::All, Depth::Metadata, &lim).unwrap();
        assert!(
            p.tamper.iter().any(|t| t.contains("/etc/ghost")),
            "{:?}",
            p.tamper
        );
        // Not a removal: the row was never genuine.
        assert!(p.changes.is_empty(), "{:?}", p.changes);
        f.record(p).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty() && p.changes.is_empty(), "{p:?}");
    }

    #[test]
    fn a_lost_database_or_key_is_reported_not_silently_reinitialised() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        let st = dir.path().join("state");
        std::fs::create_dir_all(&st).unwrap();
        let lim = RateLimiter::new(0);
        let mut f = SealedFim::open(&st, &root, &b.fim, true).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.is_empty());
        f.record(p).unwrap();
        drop(f);
        for (gone, what) in [("fim.db", "database"), ("fim.db.key", "key file")] {
            std::fs::remove_file(st.join(gone)).unwrap();
            let mut f = SealedFim::open(&st, &root, &b.fim, true).unwrap();
            let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
            assert!(p.initialised);
            assert!(
                p.tamper.len() == 1 && p.tamper[0].contains(what),
                "{:?}",
                p.tamper
            );
            f.record(p).unwrap();
            let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
            assert!(p.tamper.is_empty(), "reported once: {:?}", p.tamper);
        }
        assert!(st.join("fim.db.nokey").exists());
        // Both gone, on a host where the agent had run before.
        std::fs::remove_file(st.join("fim.db")).unwrap();
        std::fs::remove_file(st.join("fim.db.key")).unwrap();
        let mut f = SealedFim::open(&st, &root, &b.fim, false).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.tamper.len() == 1 && p.tamper[0].contains("database"));
    }

    #[test]
    fn an_interrupted_first_start_is_completed_not_reported() {
        let dir = tempfile::tempdir().unwrap();
        let (root, b) = setup(dir.path());
        let st = dir.path().join("state");
        std::fs::create_dir_all(&st).unwrap();
        drop(SealedFim::open(&st, &root, &b.fim, true).unwrap());
        // As if killed between the two renames.
        std::fs::rename(st.join("fim.db.key"), st.join("fim.db.key.partial")).unwrap();
        let lim = RateLimiter::new(0);
        let mut f = SealedFim::open(&st, &root, &b.fim, false).unwrap();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.initialised && p.tamper.is_empty(), "{:?}", p.tamper);
        assert!(st.join("fim.db.key").exists());
    }

    #[test]
    fn the_digest_is_the_sealed_digest() {
        let dir = tempfile::tempdir().unwrap();
        let (_root, mut f) = open(dir.path());
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        f.record(p).unwrap();
        let d = f.digest().unwrap();
        assert_eq!(d.len(), 64);
        assert!(d.bytes().all(|b| b.is_ascii_hexdigit()));
        let st = dir.path().join("state");
        assert_eq!(
            d,
            fim::sealed_digest(&st.join("fim.db"), &st.join("fim.db.key")).unwrap()
        );
    }

    #[test]
    fn hashing_goes_through_the_rate_limiter() {
        let dir = tempfile::tempdir().unwrap();
        let (root, mut f) = open(dir.path());
        std::fs::write(root.join("etc/big"), vec![7u8; 2_000_000]).unwrap();
        // 4 MB/s from an empty bucket: 2 MB take about half a second.
        let lim = RateLimiter::bytes_per_s(4_000_000);
        let t = std::time::Instant::now();
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.initialised);
        assert!(
            t.elapsed() >= std::time::Duration::from_millis(350),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn no_watches_no_pass() {
        let dir = tempfile::tempdir().unwrap();
        let (_root, mut f) = open(dir.path());
        f.set_rules(&[]).unwrap();
        let lim = RateLimiter::new(0);
        let p = f.scan(&Scope::All, Depth::Full, &lim).unwrap();
        assert!(p.changes.is_empty() && p.scanned == 0);
        f.record(p).unwrap();
    }
}
