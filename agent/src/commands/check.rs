//! `plumb check`.

use crate::checks::{self, Ctx};
use crate::cli::{CheckArgs, CheckFormat};
use crate::host;
use crate::output;
use crate::policy::load_baselines;
use crate::{EXIT_DRIFT, EXIT_OK};
use anyhow::{Context, bail};
use plumb_core::Rule;
use plumb_core::report::{BaselineRef, CheckReport, REPORT_SCHEMA, Status, Summary};
use std::time::Instant;

/// `show_pass` (`--verbose`): the text output shows pass evidence too.
pub fn run(args: &CheckArgs, show_pass: bool) -> anyhow::Result<u8> {
    let started = Instant::now();
    let started_at = host::now_rfc3339();
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
    if !args.rules.is_empty() {
        for id in &args.rules {
            if !rules.iter().any(|r| &r.id == id) {
                bail!("--rule {id}: no such rule in the baselines given");
            }
        }
        rules.retain(|r| args.rules.contains(&r.id));
    }
    let ctx = Ctx::new(root.clone(), proc);
    let results = checks::run(&rules, &ctx);
    let refs: Vec<BaselineRef> = baselines
        .iter()
        .map(|b| BaselineRef {
            id: b.id.clone(),
            version: b.version,
        })
        .collect();
    let report = CheckReport {
        schema: REPORT_SCHEMA,
        host: host::host_name(root),
        root: root.display().to_string(),
        baseline: refs[0].clone(),
        baselines: if refs.len() > 1 { refs } else { Vec::new() },
        started_at,
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        summary: Summary::of(&results),
        results,
    };
    // Buffered: stdout is line-buffered, and a JSON report of hundreds of
    // rules would otherwise cost one write(2) per line.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    match args.format {
        CheckFormat::Text => {
            output::text::write_check(&mut out, &report, output::use_colour(), show_pass)?
        }
        CheckFormat::Json => output::json::write(&mut out, &report)?,
        CheckFormat::Junit => output::junit::write_check(&mut out, &report)?,
    }
    std::io::Write::flush(&mut out)?;
    let holds = report
        .results
        .iter()
        .all(|r| matches!(r.status, Status::Pass | Status::Skipped));
    Ok(if holds { EXIT_OK } else { EXIT_DRIFT })
}
