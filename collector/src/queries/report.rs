//! `plumb-collector report`: fleet compliance per ISSP domain, as the
//! store aggregates it ([`Compliance`]), and the file changes of the last
//! days, rendered as text or JSON.

use super::{Format, WIDTH, fit, to_json};
use crate::storage::{Compliance, Queries, StorageError};
use plumb_core::fim::ChangeSummary;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt::Write as _;

// The JSON report, serialized straight from the report (no `serde_json`
// values built: they cost more than the database at fleet size). Fields in
// the order of the `serde_json::Value` objects it was first written from
// (sorted), which scripts may have diffed against.
#[derive(Serialize)]
struct ReportJson<'a> {
    domains: Vec<DomainJson<'a>>,
    file_changes: FilesJson<'a>,
    hosts: usize,
    hosts_failing: usize,
}

#[derive(Serialize)]
struct DomainJson<'a> {
    domain: u8,
    hosts_error: usize,
    hosts_failing: usize,
    hosts_passing: usize,
    name: Option<&'static str>,
    worst_rules: Vec<WorstJson<'a>>,
}

#[derive(Serialize)]
struct WorstJson<'a> {
    hosts: &'a [String],
    hosts_failing: usize,
    rule: &'a str,
    severity: plumb_core::Severity,
    title: &'a str,
}

#[derive(Serialize)]
struct FilesJson<'a> {
    days: i64,
    hosts: Vec<HostFilesJson<'a>>,
}

#[derive(Serialize)]
struct HostFilesJson<'a> {
    counts: CountsJson<'a>,
    host: &'a str,
    text: String,
}

#[derive(Serialize)]
struct CountsJson<'a> {
    changes: u64,
    unexplained: &'a BTreeMap<String, u64>,
    unverified: u64,
    verified: u64,
}

fn render_json(r: &Compliance, files: &BTreeMap<String, ChangeSummary>) -> String {
    let domains = r
        .domains
        .iter()
        .map(|d| DomainJson {
            domain: d.domain,
            hosts_error: d.hosts_error,
            hosts_failing: d.hosts_failing,
            hosts_passing: d.hosts_passing,
            name: plumb_core::issp::domain_name(d.domain),
            worst_rules: d
                .worst
                .iter()
                .map(|w| WorstJson {
                    hosts: &w.hosts,
                    hosts_failing: w.hosts_failing,
                    rule: &w.rule,
                    severity: w.severity,
                    title: &w.title,
                })
                .collect(),
        })
        .collect();
    let hosts = files
        .iter()
        .map(|(h, s)| HostFilesJson {
            counts: CountsJson {
                changes: s.changes,
                unexplained: &s.unexplained,
                unverified: s.unverified,
                verified: s.verified,
            },
            host: h,
            text: s.describe(),
        })
        .collect();
    to_json(&ReportJson {
        domains,
        file_changes: FilesJson {
            days: FILE_CHANGES_DAYS,
            hosts,
        },
        hosts: r.hosts,
        hosts_failing: r.hosts_failing,
    })
}

fn render_text(r: &Compliance) -> String {
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
    // The two halves at once (on PostgreSQL, each on its connections).
    let (report, files) = std::thread::scope(|s| {
        let files = s.spawn(|| file_changes(q));
        let report = q.compliance();
        // A panic in the other thread is resumed here, as if it had run
        // on this one.
        let files = files
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (report, files)
    });
    let (report, files) = (report?, files?);
    let out = match format {
        Format::Json => render_json(&report, &files),
        Format::Text => {
            let mut t = render_text(&report);
            render_files(&mut t, &files);
            t
        }
    };
    Ok((out, report.hosts_failing > 0))
}

/// How far back the report counts file changes: this many UTC days,
/// today included.
const FILE_CHANGES_DAYS: i64 = 7;

/// Where the file changes counted start: midnight UTC [`FILE_CHANGES_DAYS`]
/// `- 1` days before `now`'s day. Whole days, so that a store may keep
/// the counts per day (PostgreSQL: `fim_daily`) and answer exactly.
fn file_changes_since(now: i64) -> i64 {
    (now.div_euclid(86_400) - (FILE_CHANGES_DAYS - 1)) * 86_400
}

/// File changes of the last [`FILE_CHANGES_DAYS`] UTC days per host,
/// counted by package verdict (docs/fim.md). The store keeps each change's
/// verdict and top-level directory beside it and counts them
/// ([`Queries::file_changes`]).
fn file_changes(q: &dyn Queries) -> Result<BTreeMap<String, ChangeSummary>, StorageError> {
    let since = file_changes_since(time::OffsetDateTime::now_utc().unix_timestamp());
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

fn render_files(out: &mut String, files: &BTreeMap<String, ChangeSummary>) {
    if files.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\nFile changes, last {FILE_CHANGES_DAYS} days (UTC, today included):"
    );
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
    use crate::storage::{DomainCompliance, WorstRule};
    use plumb_core::Severity;

    #[test]
    fn file_changes_count_seven_utc_days_today_included() {
        // 2026-12-01T15:30:00Z: from 2026-11-25T00:00:00Z.
        let now = 1_796_139_000;
        assert_eq!(file_changes_since(now), 1_796_139_000 - 55_800 - 6 * 86_400);
        assert_eq!(file_changes_since(now).rem_euclid(86_400), 0);
        // At midnight the window is six whole days and today's first second.
        let midnight = now - 55_800;
        assert_eq!(file_changes_since(midnight), midnight - 6 * 86_400);
    }

    /// The JSON as it was first written, from `serde_json` values: the
    /// report written straight from its structs must keep every byte.
    fn render_json_from_values(r: &Compliance, files: &BTreeMap<String, ChangeSummary>) -> String {
        use serde_json::json;
        let domains: Vec<serde_json::Value> = r
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
        let hosts: Vec<serde_json::Value> = files
            .iter()
            .map(|(h, s)| json!({ "host": h, "counts": s, "text": s.describe() }))
            .collect();
        to_json(&json!({
            "hosts": r.hosts,
            "hosts_failing": r.hosts_failing,
            "domains": domains,
            "file_changes": json!({ "days": FILE_CHANGES_DAYS, "hosts": hosts }),
        }))
    }

    #[test]
    fn json_is_byte_for_byte_what_the_values_gave() {
        let w = |rule: &str, title: &str, severity, hosts: &[&str]| WorstRule {
            rule: rule.into(),
            title: title.into(),
            severity,
            hosts_failing: hosts.len(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        };
        let r = Compliance {
            hosts: 3,
            hosts_failing: 2,
            domains: vec![
                DomainCompliance {
                    domain: 7,
                    hosts_passing: 1,
                    hosts_failing: 2,
                    hosts_error: 0,
                    worst: vec![
                        w(
                            "ssh.root",
                            "No \"root\" login\n",
                            Severity::High,
                            &["a", "b"],
                        ),
                        w("ssh.x11", "", Severity::Low, &["b"]),
                    ],
                },
                DomainCompliance {
                    domain: 250,
                    hosts_passing: 0,
                    hosts_failing: 0,
                    hosts_error: 3,
                    worst: Vec::new(),
                },
            ],
        };
        let mut files = BTreeMap::new();
        files.insert(
            "a".to_string(),
            ChangeSummary {
                changes: 1_204,
                verified: 1_200,
                unverified: 1,
                unexplained: BTreeMap::from([("/usr".into(), 1), ("/\u{e9}t\u{e9}".into(), 3)]),
            },
        );
        files.insert("b\u{1}".to_string(), ChangeSummary::default());
        assert_eq!(render_json(&r, &files), render_json_from_values(&r, &files));
        let empty = Compliance {
            hosts: 0,
            hosts_failing: 0,
            domains: Vec::new(),
        };
        assert_eq!(
            render_json(&empty, &BTreeMap::new()),
            render_json_from_values(&empty, &BTreeMap::new())
        );
    }

    #[test]
    fn text_lists_the_first_three_worst_rules() {
        let w = |rule: &str, n: usize| WorstRule {
            rule: rule.into(),
            title: String::new(),
            severity: Severity::Low,
            hosts_failing: n,
            hosts: Vec::new(),
        };
        let r = Compliance {
            hosts: 2,
            hosts_failing: 2,
            domains: vec![DomainCompliance {
                domain: 1,
                hosts_passing: 0,
                hosts_failing: 2,
                hosts_error: 0,
                worst: vec![w("low", 2), w("crit", 1), w("high", 1), w("med", 1)],
            }],
        };
        let text = render_text(&r);
        assert!(
            text.contains("worst: low (2), crit (1), high (1)\n"),
            "{text}"
        );
    }
}
