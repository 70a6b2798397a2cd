//! The work the daemon schedules, as blocking functions run on tokio's
//! blocking pool: check evaluation (with change detection against the
//! stored results), FIM passes and snapshots.

use crate::checks::{self, Ctx};
use crate::daemon::Shared;
use crate::daemon::integrity::{Depth, IntegrityError, Scope};
use crate::daemon::outbox::{NewEvent, OutboxError};
use plumb_core::Severity;
use plumb_core::event::{AgentEventKind, CheckChanged, EventBody, RuleStatus, Snapshot};
use plumb_core::fim::ChangeKind;
use plumb_core::report::{BaselineRef, RuleResult, Status, Summary};
use plumb_core::{Baseline, Rule};
use std::collections::HashMap;
use std::time::Instant;

fn baseline_ref(b: &Baseline) -> BaselineRef {
    BaselineRef {
        id: b.id.clone(),
        version: b.version,
    }
}

/// Evaluates every rule and commits a `check_changed` for each status that
/// differs from the stored one (the comparison and the store are one
/// transaction). Returns how many changed.
pub fn run_checks(shared: &Shared) -> Result<usize, OutboxError> {
    let policy = shared.policy();
    let rules: Vec<(&Rule, &Baseline)> = policy
        .baselines
        .iter()
        .flat_map(|b| b.rules.iter().map(move |r| (r, b)))
        .collect();
    let only_rules: Vec<&Rule> = rules.iter().map(|(r, _)| *r).collect();
    let ctx = Ctx::new(shared.root.clone(), shared.proc.clone());
    let results = checks::run(&only_rules, &ctx);
    let rows: Vec<(String, Status, Vec<String>)> = results
        .iter()
        .map(|r| (r.id.clone(), r.status, r.evidence.clone()))
        .collect();
    let mut outbox = shared.outbox();
    let ids: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    outbox.retain_checks(&ids)?;
    let events = outbox.record_checks(&rows, |i, previous| {
        let r: &RuleResult = &results[i];
        let severity = match r.status {
            Status::Fail | Status::Error => r.severity,
            Status::Pass | Status::Skipped => Severity::Info,
        };
        NewEvent {
            severity,
            body: EventBody::CheckChanged(CheckChanged {
                rule: r.id.clone(),
                title: r.title.clone(),
                previous,
                status: r.status,
                domains: r.domains.clone(),
                criteria: r.criteria.clone(),
                evidence: r.evidence.clone(),
                baseline: baseline_ref(rules[i].1),
            }),
        }
    })?;
    drop(outbox);
    // Committed here, not through `Shared::emit`: logged here.
    let mut file_changes = 0;
    for e in &events {
        crate::daemon::log_event(&shared.host, &e.body, &mut file_changes);
    }
    if !events.is_empty() {
        shared.delivery.notify_one();
    }
    Ok(events.len())
}

/// One FIM pass over `scope`: changes are committed to the outbox first
/// (one transaction), then recorded in the FIM database (one transaction).
/// Returns the in-root paths reported added, removed or replaced (a new
/// inode): the realtime flusher updates its watches from them.
pub fn fim_pass(
    shared: &Shared,
    scope: &Scope,
    depth: Depth,
) -> Result<Vec<Vec<u8>>, IntegrityError> {
    let mut fim = shared
        .fim
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let started = Instant::now();
    let mut pass = fim.scan(scope, depth, &shared.limiter)?;
    let scanned = started.elapsed();
    let (paths, changes) = (pass.scanned, pass.changes.len());
    // Added, removed or replaced (a new inode): the watches follow them.
    let changed: Vec<Vec<u8>> = pass
        .changes
        .iter()
        .filter(|c| c.kind != ChangeKind::Modified || c.field_names().any(|f| f == "inode"))
        .map(|c| c.path.clone())
        .collect();
    let mut others: Vec<NewEvent> = Vec::new();
    if !pass.tamper.is_empty() {
        others.push(NewEvent {
            severity: Severity::Critical,
            body: EventBody::FimTamper {
                detail: pass.tamper.clone(),
            },
        });
    }
    if !pass.errors.is_empty() {
        let mut msg = format!("FIM: {} path(s) could not be read: ", pass.errors.len());
        msg.push_str(
            &pass
                .errors
                .iter()
                .take(10)
                .cloned()
                .collect::<Vec<_>>()
                .join("; "),
        );
        others.push(NewEvent::agent(AgentEventKind::Warning, Severity::Low, msg));
    }
    if pass.initialised {
        tracing::info!("FIM database initialised: {} paths", pass.scanned);
    }
    // One transaction; each change's event is built as it is written.
    let events = pass
        .change_events()
        .map(|(severity, c)| NewEvent {
            severity,
            body: EventBody::FimChange(c),
        })
        .chain(others);
    shared.emit_each(events);
    let emitted = started.elapsed();
    fim.record(pass)?;
    // Where a pass's time goes (a burst, patch day): debug level.
    tracing::debug!(
        paths,
        changes,
        scan_ms = scanned.as_millis(),
        outbox_ms = (emitted - scanned).as_millis(),
        record_ms = (started.elapsed() - emitted).as_millis(),
        "FIM pass"
    );
    Ok(changed)
}

/// Builds and commits a snapshot: every rule's last status, the FIM
/// digest, host facts and versions.
pub fn snapshot(shared: &Shared) -> Result<(), OutboxError> {
    let policy = shared.policy();
    let stored: HashMap<String, _> = shared.outbox().checks()?.into_iter().collect();
    let mut results = Vec::new();
    let mut rules = Vec::new();
    for r in policy.baselines.iter().flat_map(|b| &b.rules) {
        let Some(s) = stored.get(&r.id) else { continue };
        rules.push(RuleStatus {
            id: r.id.clone(),
            status: s.status,
            severity: r.severity,
            domains: r.domains.clone(),
            title: r.title.clone(),
        });
        results.push(RuleResult {
            id: r.id.clone(),
            status: s.status,
            severity: r.severity,
            domains: r.domains.clone(),
            criteria: r.criteria.clone(),
            title: r.title.clone(),
            evidence: Vec::new(),
        });
    }
    let fim_digest = shared
        .fim
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .digest();
    let snap = Snapshot {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        baseline: policy.baselines.first().map(baseline_ref),
        facts: crate::daemon::facts::collect(&shared.host),
        fim_digest,
        summary: Summary::of(&results),
        rules,
    };
    shared.emit(vec![NewEvent {
        severity: Severity::Info,
        body: EventBody::Snapshot(Box::new(snap)),
    }]);
    Ok(())
}
