//! The comparison: the scan (in key order) merge-joined against the
//! database (`ORDER BY path`), verifying every row's MAC and recomputing the
//! digest while streaming. Nothing proportional to the number of files is
//! held, only the findings.

use super::change::Change;
use super::db::{Db, Digest, Mac, Seal, Stored};
use super::diff;
use super::entry::{Entry, Kind, State, key_path, path_key};
use super::rules::{Attrs, Plan};
use super::walk::Item;
use plumb_core::fim::{FimFileError, FimTamper, ReportPath};
use plumb_core::{FimAttribute, Severity};

/// Findings of one comparison.
#[derive(Debug, Default)]
pub struct Findings {
    /// Changes in key order.
    pub changes: Vec<Change>,
    /// Tampering.
    pub tamper: Vec<FimTamper>,
    /// Paths that could not be read.
    pub errors: Vec<FimFileError>,
    /// Files that kept changing.
    pub unstable: Vec<ReportPath>,
    /// Entries scanned.
    pub scanned: u64,
    /// Digest recomputed over the rows as read.
    pub read: Digest,
    /// Digest of the state after an update (rows kept, changed and added).
    pub next: Digest,
}

/// The merge state.
pub struct Merge<'a> {
    plan: &'a Plan,
    db: &'a Db,
    writer: Option<&'a Db>,
    head: Option<Stored>,
    started: bool,
    exhausted: bool,
    last_key: Option<Vec<u8>>,
    unknown: Vec<Vec<u8>>,
    /// What was found.
    pub found: Findings,
    /// Whether a directory's mtime, ctime, size and nlink are reported (they
    /// move whenever an entry is added or removed, which is reported itself).
    pub dir_times: bool,
}

fn under(key: &[u8], prefix: &[u8]) -> bool {
    // The root's key is a single NUL, and every key starts with one.
    key == prefix || prefix == [0] || (key.starts_with(prefix) && key.get(prefix.len()) == Some(&0))
}

impl<'a> Merge<'a> {
    /// A merge reading rows verified with `db`'s key and, with `writer`,
    /// writing the new state there.
    pub fn new(plan: &'a Plan, db: &'a Db, writer: Option<&'a Db>) -> Merge<'a> {
        Merge {
            plan,
            db,
            writer,
            head: None,
            started: false,
            exhausted: false,
            last_key: None,
            unknown: Vec::new(),
            found: Findings::default(),
            dir_times: true,
        }
    }

    fn attrs_of(&self, rule: &str) -> (Attrs, Severity) {
        match self.plan.by_name(rule) {
            Some(w) => (w.attrs, w.severity),
            // A watch no longer in the baseline: report with every attribute.
            None => (Attrs::of(FimAttribute::DEFAULT), Severity::Medium),
        }
    }

    fn peek(&mut self, rows: &mut rusqlite::Rows<'_>) -> anyhow::Result<()> {
        if self.head.is_none() && !self.exhausted {
            self.started = true;
            match rows.next()? {
                Some(r) => self.head = Some(self.db.stored(r)?),
                None => self.exhausted = true,
            }
        }
        Ok(())
    }

    /// Verifies a row and adds it to the read digest.
    fn account(&mut self, s: &Stored) {
        if let Some(l) = &self.last_key {
            if s.key <= *l {
                self.found.tamper.push(FimTamper {
                    path: Some(ReportPath::from_bytes(&key_path(&s.key))),
                    reason: "duplicate or out-of-order row".into(),
                });
            }
        }
        self.last_key = Some(s.key.clone());
        self.found.read.add(&s.mac);
        if !s.intact {
            let reason = match &s.entry {
                Err(m) => format!("row cannot be decoded ({m}): edited without the key"),
                Ok(_) => "row seal (HMAC) does not verify: edited or forged without the key".into(),
            };
            self.found.tamper.push(FimTamper {
                path: Some(ReportPath::from_bytes(&key_path(&s.key))),
                reason,
            });
        }
    }

    fn under_unknown(&mut self, key: &[u8]) -> bool {
        while let Some(top) = self.unknown.last() {
            if under(key, top) {
                return true;
            }
            if key > top.as_slice() {
                self.unknown.pop();
            } else {
                return false;
            }
        }
        false
    }

    /// A row with no scanned entry: removed, or kept when it lies where the
    /// scan could not look.
    fn db_only(&mut self, s: Stored) -> anyhow::Result<()> {
        self.account(&s);
        if self.under_unknown(&s.key) {
            self.found.next.add(&s.mac);
            return Ok(());
        }
        let old = match s.entry {
            Ok(old) if s.intact => old,
            // Reported as tampering; an update drops the forged row.
            _ => {
                if let Some(w) = self.writer {
                    w.delete(&s.key)?;
                }
                return Ok(());
            }
        };
        let (attrs, severity) = self.attrs_of(&old.rule);
        if let Some(w) = self.writer {
            w.delete(&s.key)?;
        }
        self.found
            .changes
            .push(Change::removed(old, attrs, severity));
        Ok(())
    }

    fn write(&mut self, e: &Entry) -> anyhow::Result<Mac> {
        let mac = self.db.key().row_mac(e);
        self.found.next.add(&mac);
        if let Some(w) = self.writer {
            w.put(e, &mac)?;
        }
        Ok(mac)
    }

    fn note_state(&mut self, e: &Entry) {
        match &e.state {
            State::Ok => {}
            State::Unstable => self.found.unstable.push(ReportPath::from_bytes(&e.path)),
            State::Error(m) => self.found.errors.push(FimFileError {
                path: ReportPath::from_bytes(&e.path),
                error: m.clone(),
            }),
        }
    }

    fn entry(&mut self, e: Entry, rows: &mut rusqlite::Rows<'_>) -> anyhow::Result<()> {
        self.found.scanned += 1;
        self.note_state(&e);
        let key = path_key(&e.path);
        loop {
            self.peek(rows)?;
            match &self.head {
                Some(h) if h.key < key => {
                    if let Some(s) = self.head.take() {
                        self.db_only(s)?;
                    }
                }
                _ => break,
            }
        }
        let (attrs, severity) = self.attrs_of(&e.rule);
        match self.head.take_if(|h| h.key == key) {
            Some(s) => {
                self.account(&s);
                match (s.entry, s.intact) {
                    (Ok(old), true) => {
                        let mut fields = diff::fields(&old, &e, attrs);
                        if !self.dir_times && e.kind == Kind::Dir && old.kind == Kind::Dir {
                            fields.retain(|f| {
                                !matches!(
                                    f,
                                    FimAttribute::Mtime
                                        | FimAttribute::Ctime
                                        | FimAttribute::Size
                                        | FimAttribute::Nlink
                                )
                            });
                        }
                        if old == e {
                            self.found.next.add(&s.mac);
                        } else {
                            self.write(&e)?;
                        }
                        if !fields.is_empty() {
                            self.found.changes.push(Change::modified(
                                old,
                                e,
                                Attrs::of(&fields),
                                severity,
                            ));
                        }
                    }
                    // Tampered row: reported as such; its content is not trusted for a diff.
                    _ => {
                        self.write(&e)?;
                    }
                }
            }
            None => {
                self.write(&e)?;
                self.found.changes.push(Change::added(e, attrs, severity));
            }
        }
        Ok(())
    }

    /// Takes one scanned item.
    pub fn feed(&mut self, item: Item, rows: &mut rusqlite::Rows<'_>) -> anyhow::Result<()> {
        match item {
            Item::Entry(e) => self.entry(e, rows),
            Item::Unknown(p) => {
                // Rows before this prefix belong to what was scanned (or to
                // earlier unknown prefixes): settle them first, so that the
                // stack of prefixes stays one nested chain.
                let key = path_key(&p);
                loop {
                    self.peek(rows)?;
                    match self.head.take_if(|h| h.key < key) {
                        Some(s) => self.db_only(s)?,
                        None => break,
                    }
                }
                while self.unknown.last().is_some_and(|top| !under(&key, top)) {
                    self.unknown.pop();
                }
                self.unknown.push(key);
                Ok(())
            }
            Item::Error { path, message } => {
                self.found.errors.push(FimFileError {
                    path: ReportPath::from_bytes(&path),
                    error: message,
                });
                Ok(())
            }
        }
    }

    /// Drains the remaining rows without checking totals: for a scan of
    /// some subtrees, whose rows are only part of what the seal covers.
    pub fn finish_partial(mut self, rows: &mut rusqlite::Rows<'_>) -> anyhow::Result<Findings> {
        self.drain(rows)?;
        Ok(self.found)
    }

    fn drain(&mut self, rows: &mut rusqlite::Rows<'_>) -> anyhow::Result<()> {
        loop {
            self.peek(rows)?;
            match self.head.take() {
                Some(s) => self.db_only(s)?,
                None => return Ok(()),
            }
        }
    }

    /// Drains the remaining rows and checks the totals against the seal.
    pub fn finish(
        mut self,
        rows: &mut rusqlite::Rows<'_>,
        seal: &Seal,
    ) -> anyhow::Result<Findings> {
        self.drain(rows)?;
        let read = self.found.read;
        match seal {
            Seal::Valid { digest, .. } => {
                if read.rows != digest.rows {
                    let what = if read.rows < digest.rows {
                        "deleted"
                    } else {
                        "inserted"
                    };
                    self.found.tamper.push(FimTamper {
                        path: None,
                        reason: format!(
                            "{} rows read, {} sealed: rows were {what} without the key",
                            read.rows, digest.rows
                        ),
                    });
                } else if read.sum != digest.sum {
                    self.found.tamper.push(FimTamper {
                        path: None,
                        reason: "the rows do not add up to the sealed digest: rows were replaced \
                                 (e.g. by older copies) without the key"
                            .into(),
                    });
                }
            }
            Seal::Broken(why) => self.found.tamper.push(FimTamper {
                path: None,
                reason: format!("database seal: {why}"),
            }),
        }
        Ok(self.found)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_matches_subtrees_and_the_root_holds_everything() {
        let k = |p: &[u8]| path_key(p);
        assert!(under(&k(b"/etc/a"), &k(b"/etc")));
        assert!(under(&k(b"/etc"), &k(b"/etc")));
        assert!(!under(&k(b"/etcx"), &k(b"/etc")));
        assert!(under(&k(b"/etc/a"), &k(b"/")));
        assert!(under(&k(b"/"), &k(b"/")));
    }
}
