//! The daemon's FIM backend on the real engine ([`crate::fim`]): the sealed
//! database `fim.db` in the state directory, its key `fim.db.key` (0600,
//! created on first start). Whole passes are `plumb fim check`; realtime
//! passes compare only the changed subtrees. A pass prepares the new state
//! in a write transaction that [`Integrity::record`] commits.

use super::{Depth, Integrity, Pass, Scope};
use crate::daemon::limits::RateLimiter;
use crate::fim::rules::Plan;
use crate::fim::{self, Compared, Options, Verify};
use plumb_core::baseline::normalize_fim_path;
use plumb_core::event::FimChangeEvent;
use plumb_core::fim::FimChange;
use plumb_core::{FimRule, Severity};
use serde_json::Value;
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
}

impl SealedFim {
    /// Opens `state_dir/fim.db` with its key, creating both (empty, sealed)
    /// when the database does not exist yet.
    pub fn open(state_dir: &Path, root: &Path, rules: &[FimRule]) -> Result<SealedFim, String> {
        let db = state_dir.join("fim.db");
        let opts = Options {
            root: root.to_path_buf(),
            key: fim::db::default_key_path(&db),
            db,
        };
        fim::ensure_db(&opts).map_err(|e| format!("fim database: {e:#}"))?;
        let mut me = SealedFim {
            opts,
            plan: None,
            domains: HashMap::new(),
        };
        me.set_rules(rules)?;
        Ok(me)
    }

    fn event(&self, c: FimChange) -> Option<(Severity, FimChangeEvent)> {
        // A watch no longer in the baselines: its rows are dropped quietly.
        let domains = self.domains.get(&c.rule)?.clone();
        let obj = |m: Option<std::collections::BTreeMap<String, Value>>| {
            m.map_or(Value::Null, |m| Value::Object(m.into_iter().collect()))
        };
        Some((
            c.severity,
            FimChangeEvent {
                path: match &c.path {
                    plumb_core::fim::ReportPath::Text(s) => s.clone(),
                    p => p.display(),
                },
                change: c.change.name().to_string(),
                fields: c.fields,
                old: obj(c.old),
                new: obj(c.new),
                domains,
            },
        ))
    }

    fn compare(
        &self,
        plan: &Plan,
        roots: Option<&[Vec<u8>]>,
        depth: Depth,
        limiter: &RateLimiter,
    ) -> Result<Compared, String> {
        let verify = match depth {
            Depth::Full => Verify::Full,
            Depth::Metadata => Verify::Metadata,
        };
        let take = |n: usize| limiter.take(n as u64);
        let hook: Option<fim::hash::ReadHook<'_>> = (limiter.rate() > 0).then_some(&take);
        fim::compare(plan, &self.opts, verify, roots, hook).map_err(|e| format!("fim: {e:#}"))
    }
}

impl Integrity for SealedFim {
    fn scan(&mut self, scope: &Scope, depth: Depth, limiter: &RateLimiter) -> Result<Pass, String> {
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
        let found = std::mem::take(&mut c.found);
        let mut pass = Pass {
            scanned: found.scanned,
            initialised: c.empty,
            ..Pass::default()
        };
        if !c.empty {
            pass.changes = found
                .changes
                .into_iter()
                .filter_map(|ch| self.event(ch))
                .collect();
        }
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
        pass.pending = Pending(Some(c));
        Ok(pass)
    }

    fn record(&mut self, pass: Pass) -> Result<(), String> {
        match pass.pending.0 {
            Some(c) => c.commit().map_err(|e| format!("fim database: {e:#}")),
            None => Ok(()),
        }
    }

    fn set_rules(&mut self, rules: &[FimRule]) -> Result<(), String> {
        if rules.is_empty() {
            self.plan = None;
            self.domains.clear();
            return Ok(());
        }
        let plan = fim::plan(rules, &self.opts).map_err(|e| format!("{e:#}"))?;
        self.domains = rules
            .iter()
            .map(|r| (normalize_fim_path(&r.path), r.domains.clone()))
            .collect();
        self.plan = Some(plan);
        Ok(())
    }

    fn digest(&mut self) -> Option<String> {
        fim::sealed_digest(&self.opts.db, &self.opts.key).ok()
    }
}
