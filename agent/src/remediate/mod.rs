//! Remediation: puts back what a baseline declares, and only that. Typed
//! actions only (a baseline never carries a shell command); a rule that
//! passes is never touched; every change is previewed in a dry run, backed
//! up byte for byte in a journal before it is made, made atomically,
//! verified by re-running the rule, and can be rolled back.
//!
//! [`run`] is the library entry point (`plumb remediate` and the daemon);
//! [`events`] turns its report into `remediation` events.

pub mod config_set;
pub mod diff;
pub mod file_mode;
pub mod file_owner;
pub mod journal;
pub mod kernel_module_disable;
pub mod line_absent;
pub mod plan;
pub mod service;
pub mod sshd_set;
pub mod sysctl_set;

use crate::checks::{self, Ctx};
use journal::{Journal, JournalError, State};
use plan::{Op, Plan, PlanError, View};
use plumb_core::Rule;
use plumb_core::baseline::Severity;
use plumb_core::check::CheckSpec;
use plumb_core::event::RemediationEvent;
use plumb_core::remediation::RemediationSpec;
use plumb_core::report::Status;
use plumb_os::atomic::{self, FileMeta};
use serde::Serialize;
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Version of the remediation report format.
pub const REPORT_SCHEMA: u32 = 1;

/// Preview or change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Say what would change; change nothing.
    DryRun,
    /// Make the changes, journaled.
    Apply,
}

/// What happened to one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RuleStatus {
    /// The rule holds: not touched.
    Passing,
    /// The check was skipped (not applicable here): not touched.
    Skipped,
    /// The check could not be evaluated: never remediated on a guess.
    NotEvaluated,
    /// The rule fails and the baseline declares no remediation for it.
    NoRemediation,
    /// Dry run: these changes would be made.
    WouldChange,
    /// The rule fails but its action's targets already hold the values.
    NothingToChange,
    /// Changed, and the rule now passes.
    Fixed,
    /// Changed, and the rule still fails.
    StillFailing,
    /// The action was refused or failed.
    Error,
    /// Changed, then restored because a later change of the run failed.
    Restored,
}

/// One change, described.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Change {
    /// In-root path or sysctl key.
    pub path: String,
    /// In words: `/etc/shadow: mode 0644 → 0600`.
    pub description: String,
    /// Unified diff, for file edits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// The outcome for one rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleOutcome {
    /// Rule id.
    pub rule: String,
    /// Rule title.
    pub title: String,
    /// Rule severity.
    pub severity: Severity,
    /// Action kind, when the rule declares one.
    pub action: Option<String>,
    /// What happened.
    pub status: RuleStatus,
    /// Changes made (or, in a dry run, that would be).
    pub changes: Vec<Change>,
    /// Remarks: validation skipped, runtime value not changed...
    pub notes: Vec<String>,
    /// The rule's evidence: after the change when one was made, else before.
    pub evidence: Vec<String>,
    /// Why the action was refused or failed.
    pub error: Option<String>,
}

/// A remediation run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`]
    pub schema: u32,
    /// Dry run or apply.
    pub mode: Mode,
    /// The root remediated.
    pub root: String,
    /// RFC 3339 start time.
    pub started_at: String,
    /// Journal id of the changes (`plumb remediate --rollback ID`); none
    /// when nothing was changed.
    pub rollback_id: Option<String>,
    /// One outcome per rule considered.
    pub results: Vec<RuleOutcome>,
    /// Notes about the run as a whole.
    pub notes: Vec<String>,
    /// Set when the run stopped half-way (everything it changed restored).
    pub error: Option<String>,
}

impl Report {
    /// Exit code: 0 nothing to do / all fixed, 1 something still fails or
    /// would change, 2 the run itself failed.
    pub fn exit_code(&self) -> u8 {
        if self.error.is_some() {
            return crate::EXIT_ERROR;
        }
        let clean = self.results.iter().all(|r| {
            matches!(
                r.status,
                RuleStatus::Passing | RuleStatus::Skipped | RuleStatus::Fixed
            )
        });
        if clean {
            crate::EXIT_OK
        } else {
            crate::EXIT_DRIFT
        }
    }
}

/// Plans one action against the view.
pub fn plan_action(
    spec: &RemediationSpec,
    check: &CheckSpec,
    view: &View,
) -> Result<Plan, PlanError> {
    use RemediationSpec as R;
    match spec {
        R::SysctlSet { key, value } => sysctl_set::plan(view, key, value),
        R::FileMode { path, mode } => file_mode::plan(view, path, mode),
        R::FileOwner { path, owner, group } => {
            file_owner::plan(view, path, owner.as_deref(), group.as_deref())
        }
        R::ConfigSet {
            path,
            key,
            value,
            separator,
        } => {
            let cv = match check {
                CheckSpec::ConfigValue(c) => Some(c),
                _ => None,
            };
            config_set::plan(view, path, key, value, separator.as_deref(), cv)
        }
        R::SshdSet { key, value } => sshd_set::plan(view, key, value),
        R::KernelModuleDisable { name } => kernel_module_disable::plan(view, name),
        R::ServiceDisable { unit } => service::plan_disable(view, unit),
        R::ServiceMask { unit } => service::plan_mask(view, unit),
        R::LineAbsent { path, pattern } => line_absent::plan(view, path, pattern),
    }
}

fn describe(plan: &Plan) -> Vec<Change> {
    plan.ops
        .iter()
        .map(|op| Change {
            path: op.path().to_string(),
            description: op.describe(),
            diff: op.diff(),
        })
        .collect()
}

/// Remediates the failing rules among `rules` on `ctx`'s root. A rule
/// that passes, is skipped or cannot be evaluated is not touched. With
/// [`Mode::Apply`] the changes are journaled under
/// `STATE/remediation/ID/` before they are made; a change that fails
/// half-way restores everything the run changed.
pub fn run(rules: &[&Rule], ctx: &Ctx, mode: Mode, state_dir: &Path) -> Report {
    let mut run = Run {
        ctx,
        mode,
        state_dir,
        report: Report {
            schema: REPORT_SCHEMA,
            mode,
            root: ctx.fs.root().display().to_string(),
            started_at: crate::host::now_rfc3339(),
            rollback_id: None,
            results: Vec::new(),
            notes: Vec::new(),
            error: None,
        },
        view: View::new(ctx),
        journal: None,
        applied: Vec::new(),
        reload: false,
        done_ops: 0,
    };
    for rule in rules {
        if run.rule(rule).is_err() {
            return run.report;
        }
    }
    run.finish()
}

/// A run in progress.
struct Run<'a> {
    ctx: &'a Ctx,
    mode: Mode,
    state_dir: &'a Path,
    report: Report,
    /// The root as the changes planned so far leave it.
    view: View<'a>,
    /// Opened with the run's first change.
    journal: Option<Journal>,
    /// Rules changed, with the index of their outcome in the report.
    applied: Vec<(usize, &'a Rule)>,
    /// A unit file changed: systemd must re-read them.
    reload: bool,
    /// Changes made so far.
    done_ops: usize,
}

/// The run stopped half-way; its report says why.
struct Stopped;

impl<'a> Run<'a> {
    /// One rule: evaluated, and when it fails, planned and (applying)
    /// changed.
    fn rule(&mut self, rule: &'a Rule) -> Result<(), Stopped> {
        let before = checks::evaluate(&rule.check, self.ctx);
        let failing = before.status == Status::Fail;
        let mut o = RuleOutcome {
            rule: rule.id.clone(),
            title: rule.title.clone(),
            severity: rule.severity,
            action: rule.remediation.as_ref().map(|r| r.kind().to_string()),
            status: match before.status {
                Status::Pass => RuleStatus::Passing,
                Status::Skipped => RuleStatus::Skipped,
                Status::Error => RuleStatus::NotEvaluated,
                Status::Fail => RuleStatus::NoRemediation,
            },
            changes: Vec::new(),
            notes: Vec::new(),
            evidence: before.evidence,
            error: None,
        };
        let Some(spec) = rule.remediation.as_ref().filter(|_| failing) else {
            self.report.results.push(o);
            return Ok(());
        };
        let plan = match self.plan(rule, spec) {
            Ok(p) => p,
            Err(e) => {
                o.status = RuleStatus::Error;
                o.error = Some(e.to_string());
                self.report.results.push(o);
                return Ok(());
            }
        };
        o.notes.clone_from(&plan.notes);
        o.changes = describe(&plan);
        if plan.ops.is_empty() {
            o.status = RuleStatus::NothingToChange;
        } else if self.mode == Mode::DryRun {
            self.view.overlay(&plan);
            o.status = RuleStatus::WouldChange;
        } else {
            return self.apply(rule, &plan, o);
        }
        self.report.results.push(o);
        Ok(())
    }

    /// The plan of `spec` against the root as the run left it so far.
    fn plan(&self, rule: &Rule, spec: &RemediationSpec) -> Result<Plan, PlanError> {
        if !spec.fixes().contains(&rule.check.kind()) {
            return Err(format!("{} cannot fix a {} check", spec.kind(), rule.check.kind()).into());
        }
        plan_action(spec, &rule.check, &self.view)
    }

    /// Makes the changes of one rule, each backed up in the journal first.
    /// A failure restores everything the run changed and stops it.
    fn apply(&mut self, rule: &'a Rule, plan: &Plan, mut o: RuleOutcome) -> Result<(), Stopped> {
        let root = self.ctx.fs.root();
        let j = match open_journal(&mut self.journal, &mut self.report, self.state_dir, root) {
            Ok(j) => j,
            Err(e) => {
                o.status = RuleStatus::Error;
                o.error = Some(format!("nothing changed: {e}"));
                self.report.results.push(o);
                self.report.error = Some(e.to_string());
                return Err(Stopped);
            }
        };
        let mut failed = None;
        for op in &plan.ops {
            let made = j.backup(op).map_err(ChangeError::from);
            if let Err(e) = made.and_then(|()| execute(op, self.done_ops)) {
                failed = Some(format!("{}: {e}", op.describe()));
                break;
            }
            self.done_ops += 1;
        }
        // Rules evaluated from now on must see the files as changed.
        self.ctx.forget_files();
        j.entry.rules.push(rule.id.clone());
        j.entry.changes.extend(
            o.changes
                .iter()
                .map(|c| format!("{}: {}", rule.id, c.description)),
        );
        if let Some(e) = failed {
            self.restore(rule, e, o);
            return Err(Stopped);
        }
        if let Err(e) = j.save() {
            self.report.notes.push(e.to_string());
        }
        self.reload |= plan.daemon_reload;
        self.applied.push((self.report.results.len(), rule));
        self.report.results.push(o);
        Ok(())
    }

    /// After a failed change of `rule`: restores everything the run
    /// changed and says so in the report and the journal.
    fn restore(&mut self, rule: &Rule, e: String, mut o: RuleOutcome) {
        let Some(j) = self.journal.as_mut() else {
            return;
        };
        let errors = j.restore_all();
        let msg = if errors.is_empty() {
            format!(
                "rule {}: {e}; the run stopped and every change it made was restored",
                rule.id
            )
        } else {
            format!(
                "rule {}: {e}; the run stopped, and restoring failed for: {} (journal {})",
                rule.id,
                errors.join("; "),
                j.id()
            )
        };
        let state = if errors.is_empty() {
            State::Restored
        } else {
            State::Pending
        };
        if let Err(je) = journal::finish(j, state, Some(msg.clone())) {
            self.report.notes.push(je.to_string());
        }
        for (i, _) in &self.applied {
            self.report.results[*i].status = RuleStatus::Restored;
        }
        o.status = RuleStatus::Error;
        o.error = Some(e);
        self.report.results.push(o);
        self.report.error = Some(msg);
        if errors.is_empty() {
            self.report.rollback_id = None;
        }
    }

    /// Closes the journal, has systemd re-read changed units, and
    /// evaluates every changed rule again, after all changes.
    fn finish(mut self) -> Report {
        if let Some(j) = self.journal.as_mut() {
            if let Err(e) = journal::finish(j, State::Applied, None) {
                self.report.notes.push(e.to_string());
            }
        }
        if self.reload {
            self.report.notes.push(daemon_reload());
        }
        for (i, rule) in self.applied {
            let after = checks::evaluate(&rule.check, self.ctx);
            let r = &mut self.report.results[i];
            r.evidence = after.evidence;
            r.status = match after.status {
                Status::Pass => RuleStatus::Fixed,
                Status::Fail => RuleStatus::StillFailing,
                Status::Error | Status::Skipped => RuleStatus::Error,
            };
        }
        self.report
    }
}

/// The run's journal, created (and its id put in the report) with the
/// first change.
fn open_journal<'j>(
    slot: &'j mut Option<Journal>,
    report: &mut Report,
    state_dir: &Path,
    root: &Path,
) -> Result<&'j mut Journal, JournalError> {
    match slot {
        Some(j) => Ok(j),
        None => {
            let j = Journal::create(state_dir, root)?;
            report.rollback_id = Some(j.id().to_string());
            Ok(slot.insert(j))
        }
    }
}

fn daemon_reload() -> String {
    match std::process::Command::new("systemctl")
        .arg("daemon-reload")
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => "systemctl daemon-reload: done".into(),
        Ok(o) => format!(
            "systemctl daemon-reload failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => format!("systemctl daemon-reload: cannot run: {e}"),
    }
}

/// Why one change could not be made. The message follows the change's
/// description (which names the path).
#[derive(Debug, thiserror::Error)]
enum ChangeError {
    /// Its backup could not be saved: the change was not made.
    #[error(transparent)]
    Backup(#[from] JournalError),
    /// The file is not what the plan was made from.
    #[error("changed since it was read; not overwriting")]
    Changed,
    /// The change itself failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// `PLUMB_REMEDIATE_FAIL_AFTER` (tests).
    #[error("injected failure (PLUMB_REMEDIATE_FAIL_AFTER)")]
    Injected,
}

/// A failure injected after `n` changes, for tests of the half-way restore
/// (debug builds only: a release binary never reads the variable).
fn injected_failure(done: usize) -> Result<(), ChangeError> {
    if cfg!(debug_assertions) {
        if let Some(n) = std::env::var("PLUMB_REMEDIATE_FAIL_AFTER")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
        {
            if done >= n {
                return Err(ChangeError::Injected);
            }
        }
    }
    Ok(())
}

/// Makes one change (its backup is already in the journal).
fn execute(op: &Op, done: usize) -> Result<(), ChangeError> {
    injected_failure(done)?;
    match op {
        Op::Write { host, old, new, .. } => {
            let meta = match old {
                Some(old) => {
                    let now = journal::read_regular(host)?;
                    if &now != old {
                        return Err(ChangeError::Changed);
                    }
                    FileMeta::of(host)?
                }
                None => FileMeta {
                    mode: 0o644,
                    uid: nix::unistd::geteuid().as_raw(),
                    gid: nix::unistd::getegid().as_raw(),
                    xattrs: Vec::new(),
                },
            };
            atomic::write_atomic_with(host, new, &meta, old.is_some()).map_err(ChangeError::from)
        }
        Op::Chmod { host, new, .. } => {
            std::fs::set_permissions(host, std::fs::Permissions::from_mode(*new))
                .map_err(ChangeError::from)
        }
        Op::Chown { host, new, .. } => {
            use std::os::unix::fs::MetadataExt as _;
            let mode = std::fs::symlink_metadata(host)
                .map_err(ChangeError::from)?
                .mode()
                & 0o7777;
            std::os::unix::fs::lchown(host, Some(new.0), Some(new.1))?;
            // chown clears setuid/setgid bits; the action changes ownership only.
            std::fs::set_permissions(host, std::fs::Permissions::from_mode(mode))
                .map_err(ChangeError::from)
        }
        Op::Remove { host, .. } => {
            std::fs::remove_file(host)?;
            match host.parent() {
                Some(d) => atomic::sync_dir(d).map_err(ChangeError::from),
                None => Ok(()),
            }
        }
        Op::Symlink { host, target, .. } => {
            atomic::symlink_atomic(Path::new(target), host, None).map_err(ChangeError::from)
        }
        Op::Mkdir { host, .. } => {
            use std::os::unix::fs::DirBuilderExt as _;
            std::fs::DirBuilder::new().mode(0o755).create(host)?;
            match host.parent() {
                Some(d) => atomic::sync_dir(d).map_err(ChangeError::from),
                None => Ok(()),
            }
        }
        Op::SysctlRuntime { host, new, .. } => std::fs::File::options()
            .write(true)
            .truncate(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(host)
            .and_then(|mut f| f.write_all(format!("{new}\n").as_bytes()))
            .map_err(ChangeError::from),
    }
}

/// The `remediation` events of a run, one per rule whose action did (or,
/// in a dry run, would do) something.
pub fn events(report: &Report) -> Vec<RemediationEvent> {
    report
        .results
        .iter()
        .filter_map(|r| {
            let result = match r.status {
                RuleStatus::WouldChange => "dry_run",
                RuleStatus::Fixed => "fixed",
                RuleStatus::StillFailing => "still_failing",
                RuleStatus::Error | RuleStatus::Restored => "error",
                _ => return None,
            };
            let mut changes: Vec<String> =
                r.changes.iter().map(|c| c.description.clone()).collect();
            if let Some(e) = &r.error {
                changes.push(format!("error: {e}"));
            }
            if r.status == RuleStatus::Restored {
                changes.push("restored: a later change of the run failed".into());
            }
            Some(RemediationEvent {
                rollback_id: report.rollback_id.clone().unwrap_or_default(),
                rule: r.rule.clone(),
                action: r.action.clone().unwrap_or_default(),
                result: result.to_string(),
                changes,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;

    const BASELINE: &str = r#"schema = 1
id = "t"
version = 1
title = "t"

[[rule]]
id = "shadow.mode"
title = "shadow"
severity = "high"
domains = [13]
criteria = ["C"]
check = { kind = "file", path = "/etc/shadow", mode_max = "0640" }
remediation = { kind = "file_mode", path = "/etc/shadow", mode = "0640" }

[[rule]]
id = "a"
title = "a"
severity = "low"
domains = [20]
criteria = ["I"]
check = { kind = "config_value", path = "/etc/x.conf", key = "A", equals = 1 }
remediation = { kind = "config_set", path = "/etc/x.conf", key = "A", value = 1 }

[[rule]]
id = "b"
title = "b"
severity = "low"
domains = [20]
criteria = ["I"]
check = { kind = "config_value", path = "/etc/x.conf", key = "B", equals = 2 }
remediation = { kind = "config_set", path = "/etc/x.conf", key = "B", value = 2 }
"#;

    #[test]
    fn library_api_dry_run_then_apply_and_events() {
        use std::os::unix::fs::PermissionsExt as _;
        let t = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/shadow"), "x\n").unwrap();
        std::fs::set_permissions(
            t.path().join("etc/shadow"),
            std::fs::Permissions::from_mode(0o644),
        )
        .unwrap();
        std::fs::write(t.path().join("etc/x.conf"), "A 0\n").unwrap();
        let b = Baseline::from_str(BASELINE, "t.toml").unwrap();
        let rules: Vec<&Rule> = b.rules.iter().collect();
        let ctx = Ctx::new(t.path(), None);

        let dry = run(&rules, &ctx, Mode::DryRun, state.path());
        assert_eq!(dry.exit_code(), crate::EXIT_DRIFT);
        assert!(dry.rollback_id.is_none());
        // Two rules editing one file: the second diff builds on the first.
        let d = dry.results[2].changes[0].diff.clone().unwrap();
        assert!(
            d.contains(" A 1\n+B 2\n"),
            "the second plan sees the first: {d}"
        );
        let ev = events(&dry);
        assert_eq!(ev.len(), 3);
        assert!(ev.iter().all(|e| e.result == "dry_run"));
        assert!(ev[0].changes[0].contains("mode 0644 → 0640"), "{:?}", ev[0]);
        assert_eq!(
            std::fs::read(t.path().join("etc/x.conf")).unwrap(),
            b"A 0\n"
        );
        assert!(!journal::dir(state.path()).exists());

        let done = run(&rules, &ctx, Mode::Apply, state.path());
        assert_eq!(done.exit_code(), crate::EXIT_OK, "{done:#?}");
        let id = done.rollback_id.clone().unwrap();
        let ev = events(&done);
        assert!(
            ev.iter()
                .all(|e| e.result == "fixed" && e.rollback_id == id)
        );
        assert_eq!(
            std::fs::read(t.path().join("etc/x.conf")).unwrap(),
            b"A 1\nB 2\n"
        );
        let again = run(&rules, &ctx, Mode::Apply, state.path());
        assert!(again.rollback_id.is_none());
        assert!(events(&again).is_empty());
        let e = journal::load(state.path(), &id).unwrap();
        assert_eq!(e.rules, vec!["shadow.mode", "a", "b"]);
        // x.conf backed up once, before its first change.
        assert_eq!(e.items.len(), 2);
    }
}
