//! `plumb remediate`: dry run (default), `--apply`, `--list`, `--rollback ID`.

use crate::checks::Ctx;
use crate::cli::{RemediateArgs, RemediateFormat};
use crate::policy::load_baselines;
use crate::remediate::{self, Mode, Report, RuleStatus, journal};
use crate::{EXIT_ERROR, EXIT_OK};
use anyhow::{Context as _, bail};
use plumb_core::{Rule, printable};
use std::io::Write as _;

pub fn run(args: &RemediateArgs) -> anyhow::Result<u8> {
    if args.list {
        return list(args);
    }
    if let Some(id) = &args.rollback {
        return rollback(args, id);
    }
    let baselines = load_baselines(&args.baseline)?;
    let root = &args.root.root;
    let meta = std::fs::metadata(root).with_context(|| format!("--root {}", root.display()))?;
    if !meta.is_dir() {
        bail!("--root {}: not a directory", root.display());
    }
    let proc = args.root.proc_dir();
    if let Some(p) = &proc {
        if !p.is_dir() {
            bail!("--proc {}: not a directory", p.display());
        }
    }
    let mut rules: Vec<&Rule> = baselines.iter().flat_map(|b| &b.rules).collect();
    for id in &args.rules {
        if !rules.iter().any(|r| &r.id == id) {
            bail!("--rule {id}: no such rule in the baselines given");
        }
    }
    if !args.rules.is_empty() {
        rules.retain(|r| args.rules.contains(&r.id));
    }
    let mode = if args.apply {
        Mode::Apply
    } else {
        Mode::DryRun
    };
    let ctx = Ctx::new(root.clone(), proc);
    let report = remediate::run(&rules, &ctx, mode, &args.state_dir);
    let mut out = std::io::stdout().lock();
    match args.format {
        RemediateFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &report)?;
            writeln!(out)?;
        }
        RemediateFormat::Text => write_text(&mut out, &report, args)?,
    }
    if let Some(e) = &report.error {
        eprintln!("plumb: error: {}", printable(e));
    }
    Ok(report.exit_code())
}

fn status_word(s: RuleStatus) -> &'static str {
    match s {
        RuleStatus::Passing => "passing, not touched",
        RuleStatus::Skipped => "skipped, not touched",
        RuleStatus::NotEvaluated => "could not be evaluated, not touched",
        RuleStatus::NoRemediation => "failing, no remediation declared",
        RuleStatus::WouldChange => "would change",
        RuleStatus::NothingToChange => "failing, but the action has nothing to change",
        RuleStatus::Fixed => "fixed",
        RuleStatus::StillFailing => "still failing",
        RuleStatus::Error => "error",
        RuleStatus::Restored => "changed, then restored (the run failed)",
    }
}

/// The report for a person. Everything taken from the host (evidence,
/// diffs of its files, paths, messages) goes through [`printable`]: a file
/// line cannot drive the terminal or forge a line of the report.
fn write_text(
    out: &mut impl std::io::Write,
    r: &Report,
    args: &RemediateArgs,
) -> std::io::Result<()> {
    match r.mode {
        Mode::DryRun => writeln!(
            out,
            "plumb remediate: dry run on {} (nothing is changed)",
            printable(&r.root)
        )?,
        Mode::Apply => writeln!(out, "plumb remediate: applying on {}", printable(&r.root))?,
    }
    for o in &r.results {
        let action = o
            .action
            .as_deref()
            .map(|a| format!(" [{}]", printable(a)))
            .unwrap_or_default();
        writeln!(
            out,
            "\n{}{action}: {}",
            printable(&o.rule),
            status_word(o.status)
        )?;
        for c in &o.changes {
            writeln!(out, "  {}", printable(&c.description))?;
            if let Some(d) = &c.diff {
                for l in d.lines() {
                    writeln!(out, "    {}", printable(l))?;
                }
            }
        }
        if let Some(e) = &o.error {
            writeln!(out, "  error: {}", printable(e))?;
        }
        for n in &o.notes {
            writeln!(out, "  note: {}", printable(n))?;
        }
        if !matches!(o.status, RuleStatus::Passing | RuleStatus::Skipped) {
            let label = if matches!(
                o.status,
                RuleStatus::Fixed | RuleStatus::StillFailing | RuleStatus::Error
            ) && !o.changes.is_empty()
            {
                "now"
            } else {
                "observed"
            };
            for e in &o.evidence {
                writeln!(out, "  {label}: {}", printable(e))?;
            }
        }
    }
    for n in &r.notes {
        writeln!(out, "\nnote: {}", printable(n))?;
    }
    let count = |s: RuleStatus| r.results.iter().filter(|o| o.status == s).count();
    writeln!(out)?;
    match r.mode {
        Mode::DryRun => {
            let n = count(RuleStatus::WouldChange);
            writeln!(
                out,
                "{n} rule(s) would change; run with --apply to make the changes"
            )?;
        }
        Mode::Apply => {
            writeln!(
                out,
                "{} fixed, {} still failing, {} error(s)",
                count(RuleStatus::Fixed),
                count(RuleStatus::StillFailing),
                count(RuleStatus::Error)
            )?;
            if let Some(id) = &r.rollback_id {
                writeln!(
                    out,
                    "rollback id: {id} (undo: plumb remediate --rollback {id} --state-dir {})",
                    args.state_dir.display()
                )?;
            }
        }
    }
    Ok(())
}

fn list(args: &RemediateArgs) -> anyhow::Result<u8> {
    let entries = journal::list(&args.state_dir)?;
    let mut out = std::io::stdout().lock();
    let mut bad = false;
    match args.format {
        RemediateFormat::Json => {
            let v: Vec<serde_json::Value> = entries
                .iter()
                .map(|e| match e {
                    Ok(e) => serde_json::json!({
                        "id": e.id, "time": e.time, "root": e.root, "state": e.state,
                        "rules": e.rules,
                        "files": e.items.iter().map(|i| &i.path).collect::<Vec<_>>(),
                        "rolled_back_at": e.rolled_back_at, "error": e.error,
                    }),
                    Err(err) => serde_json::json!({ "error": err.to_string() }),
                })
                .collect();
            serde_json::to_writer_pretty(&mut out, &v)?;
            writeln!(out)?;
        }
        RemediateFormat::Text => {
            if entries.is_empty() {
                writeln!(
                    out,
                    "no remediation runs in {}",
                    journal::dir(&args.state_dir).display()
                )?;
            }
            for e in &entries {
                match e {
                    Ok(e) => {
                        // A journal is the agent's own file, but what it
                        // names came from the host and the baseline.
                        writeln!(
                            out,
                            "{}  {}  {}  root {}",
                            printable(&e.id),
                            printable(&e.time),
                            e.state.word(),
                            printable(&e.root)
                        )?;
                        writeln!(out, "  rules: {}", printable(&e.rules.join(", ")))?;
                        let files: Vec<&str> = e.items.iter().map(|i| i.path.as_str()).collect();
                        writeln!(out, "  files: {}", printable(&files.join(", ")))?;
                        if let Some(t) = &e.rolled_back_at {
                            writeln!(out, "  rolled back at {}", printable(t))?;
                        }
                        if let Some(err) = &e.error {
                            writeln!(out, "  error: {}", printable(err))?;
                        }
                    }
                    Err(err) => {
                        bad = true;
                        eprintln!("plumb: {err}");
                    }
                }
            }
        }
    }
    Ok(if bad { EXIT_ERROR } else { EXIT_OK })
}

fn rollback(args: &RemediateArgs, id: &str) -> anyhow::Result<u8> {
    let entry = journal::rollback(&args.state_dir, id)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        RemediateFormat::Json => {
            serde_json::to_writer_pretty(&mut out, &entry)?;
            writeln!(out)?;
        }
        RemediateFormat::Text => {
            writeln!(
                out,
                "rolled back {}: {} path(s) restored",
                printable(&entry.id),
                entry.items.len()
            )?;
            for i in &entry.items {
                writeln!(out, "  {}", printable(&i.path))?;
            }
        }
    }
    Ok(EXIT_OK)
}
