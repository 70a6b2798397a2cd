//! What the daemon needs from file integrity: scan a scope against the
//! database ([`sealed::SealedFim::scan`]), then record what was reported. The daemon
//! commits the resulting events to the outbox *before* it records them in
//! the FIM database, so a crash in between reports a change twice (at
//! least once) but never loses it.

pub mod sealed;

use crate::fim::change::Change;
use plumb_core::Severity;
use plumb_core::event::FimChangeEvent;
use std::collections::HashMap;

/// Why the FIM backend failed. Each message is whole (causes in it).
#[derive(Debug, thiserror::Error)]
pub enum IntegrityError {
    /// A database whose key is lost could not be moved aside.
    #[error("fim database: moving {}: {error}", path.display())]
    MoveAside {
        /// The database.
        path: std::path::PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The sealed database could not be opened, read or written.
    #[error("fim database: {0:#}")]
    Database(anyhow::Error),
    /// A comparison with the disk failed.
    #[error("fim: {0:#}")]
    Compare(anyhow::Error),
    /// The watches of the baselines cannot be planned.
    #[error("{0:#}")]
    Watches(anyhow::Error),
    /// An exclude of a watch is not a valid glob.
    #[error("exclude {glob:?}: {error}")]
    Exclude {
        /// The glob.
        glob: String,
        /// Why.
        error: globset::Error,
    },
}

/// What a pass covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Every `[[fim]]` watch.
    All,
    /// These in-root paths, each with everything below it when it is (or
    /// was) a directory.
    Paths(Vec<Vec<u8>>),
}

/// How hard a pass looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Depth {
    /// Re-hash only files whose size, times or inode changed.
    Metadata,
    /// Re-hash every file.
    Full,
}

/// The result of a pass, not yet recorded in the database.
#[derive(Debug, Default)]
pub struct Pass {
    /// Changes found (compact: see [`crate::fim::change`]).
    pub changes: Vec<Change>,
    /// ISSP domains of each watch, by its normalized path.
    pub domains: HashMap<String, Vec<u8>>,
    /// Database integrity failures (tampering).
    pub tamper: Vec<String>,
    /// Paths that could not be read, with why.
    pub errors: Vec<String>,
    /// Files looked at.
    pub scanned: u64,
    /// True when the database was empty and this pass only initialised it.
    pub initialised: bool,
    /// Backend data needed by [`sealed::SealedFim::record`].
    pub(crate) pending: sealed::Pending,
}

impl Pass {
    /// Takes the changes out as events, built one at a time as the
    /// iterator is consumed (a burst's report values are never all held).
    pub fn change_events(&mut self) -> impl Iterator<Item = (Severity, FimChangeEvent)> + use<> {
        let domains = std::mem::take(&mut self.domains);
        std::mem::take(&mut self.changes).into_iter().map(move |c| {
            let domains = domains.get(&*c.rule).cloned().unwrap_or_default();
            let c = c.into_report();
            (
                c.severity,
                FimChangeEvent {
                    path: c.path,
                    change: c.change.name().to_string(),
                    fields: c.fields,
                    old: c.old.map_or(serde_json::Value::Null, |m| {
                        serde_json::Value::Object(m.into_iter().collect())
                    }),
                    new: c.new.map_or(serde_json::Value::Null, |m| {
                        serde_json::Value::Object(m.into_iter().collect())
                    }),
                    domains,
                    package: c.package,
                },
            )
        })
    }
}

/// The `[[fim]]` watches with their compiled excludes.
#[derive(Debug, Clone, Default)]
pub struct Watches {
    list: Vec<(plumb_core::FimRule, Vec<globset::GlobMatcher>)>,
}

impl Watches {
    /// Compiles the watches of the baselines.
    pub fn new(rules: &[plumb_core::FimRule]) -> Result<Watches, IntegrityError> {
        let mut list = Vec::new();
        for r in rules {
            let ex = r
                .exclude
                .iter()
                .map(|g| {
                    plumb_core::glob(g).map_err(|error| IntegrityError::Exclude {
                        glob: g.clone(),
                        error,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            list.push((r.clone(), ex));
        }
        Ok(Watches { list })
    }

    /// Every watch.
    pub fn rules(&self) -> impl Iterator<Item = &plumb_core::FimRule> {
        self.list.iter().map(|(r, _)| r)
    }

    /// The watch governing an in-root path: the deepest one at or above
    /// it, unless it excludes the path.
    pub fn governing(&self, p: &[u8]) -> Option<&plumb_core::FimRule> {
        let (rule, ex) = self
            .list
            .iter()
            .filter(|(r, _)| below(r.path.as_bytes(), p))
            .max_by_key(|(r, _)| r.path.len())?;
        let s = String::from_utf8_lossy(p);
        if ex.iter().any(|g| g.is_match(s.as_ref())) {
            None
        } else {
            Some(rule)
        }
    }
}

/// Whether `inner` is `outer` or below it (in-root paths).
pub fn below(outer: &[u8], inner: &[u8]) -> bool {
    outer == b"/"
        || inner == outer
        || (inner.starts_with(outer) && inner.get(outer.len()) == Some(&b'/'))
}
