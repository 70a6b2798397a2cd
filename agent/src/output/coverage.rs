//! Text form of `plumb baseline coverage`: one block per item of the
//! profile (automated ones, then manual ones), then the figures.

use crate::coverage::{Assessment, CoverageReport, ItemCoverage};
use plumb_core::printable;
use std::io::Write;

/// Writes the report for people.
pub fn write<W: Write>(out: &mut W, r: &CoverageReport) -> std::io::Result<()> {
    let baselines: Vec<String> = r
        .baselines
        .iter()
        .map(|b| format!("{} v{}", printable(&b.id), b.version))
        .collect();
    writeln!(out, "{} ({})", r.framework.title, r.framework.id)?;
    writeln!(out, "baseline: {}", baselines.join(", "))?;
    let (automated, manual): (Vec<&ItemCoverage>, Vec<&ItemCoverage>) = r
        .items
        .iter()
        .partition(|i| i.assessment == Assessment::Automated);
    writeln!(out)?;
    for i in &automated {
        item(out, i)?;
    }
    if !manual.is_empty() {
        writeln!(out)?;
        writeln!(out, "manual items (not counted):")?;
        for i in &manual {
            item(out, i)?;
        }
    }
    if !r.other_levels.is_empty() {
        writeln!(out)?;
        writeln!(out, "items of other levels referred to (not counted):")?;
        for o in &r.other_levels {
            writeln!(
                out,
                "  {} (level {}): {}",
                o.id,
                o.level,
                printable(&o.rules.join(", "))
            )?;
        }
    }
    if !r.unknown_references.is_empty() {
        writeln!(out)?;
        writeln!(out, "references this list does not know:")?;
        for u in &r.unknown_references {
            writeln!(
                out,
                "  {}: {:?}: {}",
                printable(&u.rule),
                u.reference,
                printable(&u.problem)
            )?;
        }
    }
    let s = &r.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{} automated items: {} covered, {} not applicable (site choices), {} partly, {} not covered",
        s.automated, s.covered, s.not_applicable, s.partly, s.not_covered
    )?;
    writeln!(
        out,
        "coverage: {:.1}% ({:.1}% counting the partly covered); {} manual items, {} with rules",
        s.percent, s.percent_with_partly, s.manual, s.manual_with_rules
    )
}

fn item<W: Write>(out: &mut W, i: &ItemCoverage) -> std::io::Result<()> {
    writeln!(
        out,
        "{:<11} {:<11} {}",
        i.id,
        i.status.word(),
        printable(&i.title)
    )?;
    if !i.rules.is_empty() {
        writeln!(out, "{:23} rules: {}", "", printable(&i.rules.join(", ")))?;
    }
    if !i.reason.is_empty() {
        writeln!(out, "{:23} why: {}", "", printable(&i.reason))?;
    }
    Ok(())
}
