//! `plumb-collector report`: fleet compliance per ISSP domain. The rule
//! statuses are first aggregated into a [`FleetReport`], which is then
//! rendered as text or JSON.

use super::{Format, WIDTH, fit, to_json};
use crate::storage::{Queries, RuleStatusRow, StorageError};
use plumb_core::Severity;
use plumb_core::fim::ChangeSummary;
use plumb_core::report::Status;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Failing rules listed per domain (JSON); the text shows the first three.
const WORST_RULES: usize = 5;

/// The fleet's compliance, aggregated from every rule status.
#[derive(Debug)]
struct FleetReport {
    /// Hosts with at least one rule status.
    hosts: usize,
    /// Hosts failing at least one rule.
    hosts_failing: usize,
    /// Every domain some passing, failing or erring rule belongs to, in order.
    domains: Vec<DomainSummary>,
}

/// One ISSP domain: each host counts once, as failing if one of its rules
/// in the domain fails, else in error if one errs, else passing.
#[derive(Debug)]
struct DomainSummary {
    domain: u8,
    hosts_passing: usize,
    hosts_failing: usize,
    hosts_error: usize,
    /// The rules failing on most hosts (then the most severe), at most
    /// [`WORST_RULES`].
    worst: Vec<WorstRule>,
}

#[derive(Debug, Serialize)]
struct WorstRule {
    rule: String,
    title: String,
    severity: Severity,
    hosts_failing: usize,
    hosts: Vec<String>,
}

/// A host's rules in one domain, by status.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    fail: u32,
    error: u32,
    pass: u32,
}

/// Aggregates rule statuses (skipped rules count for nothing).
fn aggregate(rules: &[RuleStatusRow]) -> FleetReport {
    let hosts: BTreeSet<&str> = rules.iter().map(|r| r.host.as_str()).collect();
    let failing_hosts: BTreeSet<&str> = rules
        .iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| r.host.as_str())
        .collect();
    // domain -> host -> tally; domain -> rule -> its failing rows
    let mut per_domain: BTreeMap<u8, BTreeMap<&str, Tally>> = BTreeMap::new();
    let mut failing: BTreeMap<u8, BTreeMap<&str, Vec<&RuleStatusRow>>> = BTreeMap::new();
    for r in rules {
        if r.status == Status::Skipped {
            continue;
        }
        for &d in &r.domains {
            let t = per_domain.entry(d).or_default().entry(&r.host).or_default();
            match r.status {
                Status::Fail => t.fail += 1,
                Status::Error => t.error += 1,
                Status::Pass => t.pass += 1,
                Status::Skipped => {}
            }
            if r.status == Status::Fail {
                failing
                    .entry(d)
                    .or_default()
                    .entry(&r.rule)
                    .or_default()
                    .push(r);
            }
        }
    }
    let domains = per_domain
        .iter()
        .map(|(&domain, by_host)| {
            let mut s = DomainSummary {
                domain,
                hosts_passing: 0,
                hosts_failing: 0,
                hosts_error: 0,
                worst: failing.get(&domain).map(worst_rules).unwrap_or_default(),
            };
            for t in by_host.values() {
                if t.fail > 0 {
                    s.hosts_failing += 1;
                } else if t.error > 0 {
                    s.hosts_error += 1;
                } else {
                    s.hosts_passing += 1;
                }
            }
            s
        })
        .collect();
    FleetReport {
        hosts: hosts.len(),
        hosts_failing: failing_hosts.len(),
        domains,
    }
}

/// The worst of a domain's failing rules (rule -> its failing rows).
fn worst_rules(failing: &BTreeMap<&str, Vec<&RuleStatusRow>>) -> Vec<WorstRule> {
    let mut worst: Vec<WorstRule> = failing
        .iter()
        .map(|(rule, rows)| WorstRule {
            rule: (*rule).to_string(),
            title: rows.first().map(|r| r.title.clone()).unwrap_or_default(),
            severity: rows.first().map_or(Severity::Info, |r| r.severity),
            hosts_failing: rows.len(),
            hosts: rows.iter().map(|r| r.host.clone()).collect(),
        })
        .collect();
    worst.sort_by(|a, b| {
        b.hosts_failing
            .cmp(&a.hosts_failing)
            .then(b.severity.cmp(&a.severity))
            .then(a.rule.cmp(&b.rule))
    });
    worst.truncate(WORST_RULES);
    worst
}

fn render_json(r: &FleetReport) -> String {
    let domains: Vec<Value> = r
        .domains
        .iter()
        .map(|d| {
            json!({
                "domain": d.domain,
                "name": plumb_core::issp::domain_name(d.domain),
                "hosts_passing": d.hosts_passing, "hosts_failing": d.hosts_failing,
                "hosts_error": d.hosts_error,
                "worst_rules": d.worst,
            })
        })
        .collect();
    to_json(&json!({
        "hosts": r.hosts,
        "hosts_failing": r.hosts_failing,
        "domains": domains,
    }))
}

fn render_text(r: &FleetReport) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Fleet compliance: {} hosts, {} failing at least one rule.\n",
        r.hosts, r.hosts_failing
    );
    if r.domains.is_empty() {
        out.push_str("No rule status stored yet (agents send them in snapshots).\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:>2}  {:<50} {:>5} {:>5} {:>5}",
        "#", "ISSP DOMAIN", "PASS", "FAIL", "ERROR"
    );
    for d in &r.domains {
        let name = plumb_core::issp::domain_name(d.domain).unwrap_or("(unknown domain)");
        let _ = writeln!(
            out,
            "{:>2}  {:<50} {:>5} {:>5} {:>5}",
            d.domain,
            fit(name, 50),
            d.hosts_passing,
            d.hosts_failing,
            d.hosts_error
        );
        if !d.worst.is_empty() {
            let list: Vec<String> = d
                .worst
                .iter()
                .take(3)
                .map(|w| format!("{} ({})", w.rule, w.hosts_failing))
                .collect();
            let _ = writeln!(
                out,
                "{}",
                fit(&format!("      worst: {}", list.join(", ")), WIDTH)
            );
        }
    }
    out.push_str("\nPASS/FAIL/ERROR count hosts; worst: failing rules (hosts failing).\n");
    out
}

/// `plumb-collector report`. Returns the output and whether any host fails
/// any rule.
pub fn report(q: &dyn Queries, format: Format) -> Result<(String, bool), StorageError> {
    let report = aggregate(&q.rule_statuses()?);
    let files = file_changes(q)?;
    let out = match format {
        Format::Json => {
            let mut v: Value = serde_json::from_str(&render_json(&report)).unwrap_or(Value::Null);
            if let Some(o) = v.as_object_mut() {
                o.insert("file_changes".into(), files_json(&files));
            }
            to_json(&v)
        }
        Format::Text => {
            let mut t = render_text(&report);
            render_files(&mut t, &files);
            t
        }
    };
    Ok((out, report.hosts_failing > 0))
}

/// How far back the report counts file changes.
const FILE_CHANGES_DAYS: i64 = 7;

/// File changes of the last [`FILE_CHANGES_DAYS`] days per host, counted
/// by package verdict (docs/fim.md). The store keeps each change's verdict
/// and top-level directory beside it and counts them ([`Queries::file_changes`]).
fn file_changes(q: &dyn Queries) -> Result<BTreeMap<String, ChangeSummary>, StorageError> {
    let since = time::OffsetDateTime::now_utc().unix_timestamp() - FILE_CHANGES_DAYS * 86_400;
    let mut by_host: BTreeMap<String, ChangeSummary> = BTreeMap::new();
    for c in q.file_changes(since)? {
        let s = by_host.entry(c.host).or_default();
        s.changes += c.changes;
        match c.verdict.as_deref() {
            Some("verified") => {
                s.verified += c.changes;
                continue;
            }
            Some(_) => s.unverified += c.changes,
            None => {}
        }
        let top = c.top.unwrap_or_else(|| "/?".into());
        *s.unexplained.entry(top).or_default() += c.changes;
    }
    Ok(by_host)
}

fn files_json(files: &BTreeMap<String, ChangeSummary>) -> Value {
    let hosts: Vec<Value> = files
        .iter()
        .map(|(h, s)| json!({ "host": h, "counts": s, "text": s.describe() }))
        .collect();
    json!({ "days": FILE_CHANGES_DAYS, "hosts": hosts })
}

fn render_files(out: &mut String, files: &BTreeMap<String, ChangeSummary>) {
    if files.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nFile changes, last {FILE_CHANGES_DAYS} days:");
    // Hosts with unexplained changes first.
    let mut list: Vec<(&String, &ChangeSummary)> = files.iter().collect();
    list.sort_by(|a, b| {
        b.1.unexplained_total()
            .cmp(&a.1.unexplained_total())
            .then(a.0.cmp(b.0))
    });
    for (h, s) in list {
        let _ = writeln!(out, "{}", fit(&format!("  {h}: {}", s.describe()), WIDTH));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(
        host: &str,
        rule: &str,
        status: Status,
        severity: Severity,
        domains: &[u8],
    ) -> RuleStatusRow {
        RuleStatusRow {
            host: host.into(),
            rule: rule.into(),
            status,
            severity,
            domains: domains.to_vec(),
            title: format!("{rule} title"),
        }
    }

    #[test]
    fn a_host_counts_once_per_domain_by_its_worst_status() {
        let rules = [
            row("a", "r1", Status::Fail, Severity::Low, &[13]),
            row("a", "r2", Status::Error, Severity::High, &[13]),
            row("b", "r2", Status::Error, Severity::High, &[13, 21]),
            row("c", "r1", Status::Pass, Severity::Low, &[13]),
            row("d", "r3", Status::Skipped, Severity::Low, &[13]),
        ];
        let r = aggregate(&rules);
        assert_eq!((r.hosts, r.hosts_failing), (4, 1));
        let d13 = &r.domains[0];
        assert_eq!(d13.domain, 13);
        assert_eq!(
            (d13.hosts_passing, d13.hosts_failing, d13.hosts_error),
            (1, 1, 1),
            "d only has a skipped rule: not counted"
        );
        assert_eq!(d13.worst.len(), 1);
        assert_eq!(d13.worst[0].hosts, ["a"]);
        let d21 = &r.domains[1];
        assert_eq!((d21.domain, d21.hosts_error), (21, 1));
        assert!(d21.worst.is_empty());
    }

    #[test]
    fn worst_rules_most_hosts_then_most_severe() {
        let rules = [
            row("a", "low", Status::Fail, Severity::Low, &[1]),
            row("b", "low", Status::Fail, Severity::Low, &[1]),
            row("a", "crit", Status::Fail, Severity::Critical, &[1]),
            row("a", "high", Status::Fail, Severity::High, &[1]),
        ];
        let r = aggregate(&rules);
        let order: Vec<&str> = r.domains[0].worst.iter().map(|w| w.rule.as_str()).collect();
        assert_eq!(order, ["low", "crit", "high"]);
        let text = render_text(&r);
        assert!(
            text.contains("worst: low (2), crit (1), high (1)"),
            "{text}"
        );
    }
}
