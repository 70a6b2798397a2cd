//! Remediation in the daemon: after each check run, with
//! `remediation = "dry-run" | "enforce"` in the local config, the failing
//! rules that the local config allows (`remediation_allow`,
//! `remediation_min_severity`) and that declare a remediation are passed to
//! [`crate::remediate::run`] — only when the baseline in force is signed
//! (it came through the trust policy). Every change is journaled under
//! `state_dir/remediation/` and reported by a `remediation` event carrying
//! the rollback id.

use super::Shared;
use super::config::RemediationMode;
use super::outbox::{NewEvent, OutboxError};
use super::scheduler;
use crate::checks::Ctx;
use crate::remediate::{self, Mode};
use plumb_core::Rule;
use plumb_core::Severity;
use plumb_core::event::EventBody;

/// The scheduled check job: evaluate, then remediate what is allowed.
pub fn checks_then_remediate(shared: &Shared) -> Result<(), OutboxError> {
    scheduler::run_checks(shared)?;
    if remediate_allowed(shared) {
        // Report the new statuses now rather than at the next run.
        scheduler::run_checks(shared)?;
    }
    Ok(())
}

/// Runs remediation per the config and the policy in force. Returns whether
/// something was changed on the host.
pub fn remediate_allowed(shared: &Shared) -> bool {
    let cfg = shared.config();
    let mode = match cfg.remediation {
        RemediationMode::Off => return false,
        RemediationMode::DryRun => Mode::DryRun,
        RemediationMode::Enforce => Mode::Apply,
    };
    let policy = shared.policy();
    // Never from an unsigned baseline (remediation_notice said why).
    if !policy.signed {
        return false;
    }
    let rules: Vec<&Rule> = policy
        .baselines
        .iter()
        .flat_map(|b| &b.rules)
        .filter(|r| r.remediation.is_some() && cfg.remediation_allows(r))
        .collect();
    if rules.is_empty() {
        return false;
    }
    let ctx = Ctx::new(shared.root.clone(), shared.proc.clone());
    let report = remediate::run(&rules, &ctx, mode, &cfg.state_dir);
    let mut events = remediate::events(&report);
    if mode == Mode::DryRun {
        // A plan is reported when it first appears or changes, not at every
        // check run.
        let mut seen = shared
            .dry_run_seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let planned: Vec<String> = events.iter().map(|e| e.rule.clone()).collect();
        seen.retain(|rule, _| planned.contains(rule));
        events.retain(|e| {
            seen.insert(e.rule.clone(), e.changes.clone()).as_ref() != Some(&e.changes)
        });
    }
    let changed = mode == Mode::Apply && report.rollback_id.is_some();
    let mut out: Vec<NewEvent> = events
        .into_iter()
        .map(|e| NewEvent {
            severity: match e.result.as_str() {
                "fixed" | "dry_run" => Severity::Medium,
                _ => Severity::High,
            },
            body: EventBody::Remediation(e),
        })
        .collect();
    if let Some(err) = &report.error {
        out.push(NewEvent::agent(
            plumb_core::event::AgentEventKind::Error,
            Severity::High,
            format!("remediation run failed, its changes were restored: {err}"),
        ));
    }
    shared.emit(out);
    changed
}
