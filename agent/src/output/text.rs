//! `--format text`: results grouped by ISSP domain (a rule sits under its
//! first domain), failures first with their evidence, then a summary line.
//! With `--verbose` passes show their evidence too, so a pass that rests on
//! a compiled-in default says so.
//! Everything that comes from a file (the host name, the baseline, evidence
//! quoted from host files) goes through [`printable`]: a hostile line cannot
//! drive the terminal or forge a line of the report.

use plumb_core::issp::domain_name;
use plumb_core::printable;
use plumb_core::report::{CheckReport, RuleResult, Status};
use std::collections::BTreeMap;
use std::io::Write;

fn paint(colour: bool, code: &str, s: &str) -> String {
    if colour {
        format!("\x1b[{code}m{s}\x1b[0m")
    } else {
        s.to_string()
    }
}

fn rank(s: Status) -> u8 {
    match s {
        Status::Fail => 0,
        Status::Error => 1,
        Status::Skipped => 2,
        Status::Pass => 3,
    }
}

/// Writes a check report for a person.
pub fn write_check<W: Write>(
    out: &mut W,
    r: &CheckReport,
    colour: bool,
    show_pass: bool,
) -> std::io::Result<()> {
    writeln!(
        out,
        "plumb check: host {}, root {}, baseline {} v{}",
        printable(&r.host),
        printable(&r.root),
        printable(&r.baseline.id),
        r.baseline.version
    )?;
    let mut by_domain: BTreeMap<u8, Vec<&RuleResult>> = BTreeMap::new();
    for res in &r.results {
        by_domain
            .entry(res.domains.first().copied().unwrap_or(0))
            .or_default()
            .push(res);
    }
    for (domain, mut rules) in by_domain {
        rules.sort_by_key(|x| (rank(x.status), std::cmp::Reverse(x.severity)));
        let fails = rules.iter().filter(|x| x.status == Status::Fail).count();
        let name = domain_name(domain).unwrap_or("No domain");
        let head = format!("[{domain:>2}] {name}");
        let tail = format!("{fails} fail / {}", rules.len());
        writeln!(out)?;
        writeln!(
            out,
            "{}",
            paint(colour, "1", &format!("{head:<66} {tail:>12}"))
        )?;
        for x in rules {
            let (label, code) = match x.status {
                Status::Fail => ("FAIL", "31;1"),
                Status::Error => ("ERROR", "35;1"),
                Status::Skipped => ("SKIP", "2"),
                Status::Pass => ("PASS", "32"),
            };
            let label = paint(colour, code, &format!("{label:<5}"));
            writeln!(
                out,
                "  {label} {:<8} {}  {}",
                x.severity.name(),
                printable(&x.id),
                printable(&x.title)
            )?;
            if x.status != Status::Pass || show_pass {
                for e in &x.evidence {
                    writeln!(out, "        {}", printable(e))?;
                }
            }
        }
    }
    let s = &r.summary;
    writeln!(out)?;
    writeln!(
        out,
        "{}",
        paint(
            colour,
            "1",
            &format!(
                "{} pass, {} fail, {} error, {} skipped; score {:.1}% ({} ms)",
                s.pass, s.fail, s.error, s.skipped, s.score, r.duration_ms
            )
        )
    )
}
