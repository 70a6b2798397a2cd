//! The fleet's compliance per ISSP domain (`plumb-collector report`), as
//! a store answers it ([`super::Queries::compliance`]): SQLite aggregates
//! every rule state here ([`aggregate`]); PostgreSQL counts in SQL from
//! tallies its triggers keep and reads the failing rule states only
//! ([`WorstCandidate`], [`pick_worst`]). Both end in the same
//! [`Compliance`], ordered the same way.

use super::RuleStatusRow;
use plumb_core::Severity;
use plumb_core::report::Status;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};

/// Failing rules listed per domain.
pub const WORST_RULES: usize = 5;

/// The fleet's compliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compliance {
    /// Hosts with at least one rule status.
    pub hosts: usize,
    /// Hosts failing at least one rule.
    pub hosts_failing: usize,
    /// Every domain some passing, failing or erring rule belongs to, by domain.
    pub domains: Vec<DomainCompliance>,
}

/// One ISSP domain: each host counts once, as failing if one of its rules
/// in the domain fails, else in error if one errs, else passing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainCompliance {
    /// Domain number.
    pub domain: u8,
    /// Hosts passing every rule of the domain they run.
    pub hosts_passing: usize,
    /// Hosts failing a rule of the domain.
    pub hosts_failing: usize,
    /// Hosts failing none but with a rule in error.
    pub hosts_error: usize,
    /// The rules failing on most hosts (then the most severe, then by id),
    /// at most [`WORST_RULES`].
    pub worst: Vec<WorstRule>,
}

/// A failing rule of a domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WorstRule {
    /// Rule id.
    pub rule: String,
    /// Title, as the failing host first by name has it.
    pub title: String,
    /// Severity, as the failing host first by name has it.
    pub severity: Severity,
    /// How many hosts fail it.
    pub hosts_failing: usize,
    /// Those hosts, by name (bytewise).
    pub hosts: Vec<String>,
}

/// The ISSP domains of a stored `domains` value (`[13,20]`), each once;
/// anything but a JSON array of numbers 0-255 holds none.
pub(crate) fn parse_domains(text: &str) -> BTreeSet<u8> {
    serde_json::from_str::<Vec<u8>>(text)
        .unwrap_or_default()
        .into_iter()
        .collect()
}

/// A host's rules in one domain, by status.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    fail: u32,
    error: u32,
    pass: u32,
}

/// Aggregates every rule status (skipped rules count for nothing; a rule
/// listing a domain twice counts once there).
pub(crate) fn aggregate(rules: &[RuleStatusRow]) -> Compliance {
    let hosts: BTreeSet<&str> = rules.iter().map(|r| r.host.as_str()).collect();
    let failing_hosts: BTreeSet<&str> = rules
        .iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| r.host.as_str())
        .collect();
    // domain -> host -> tally
    let mut per_domain: BTreeMap<u8, BTreeMap<&str, Tally>> = BTreeMap::new();
    // (domain, rule) -> what `pick_worst` needs
    let mut candidates: BTreeMap<(u8, &str), WorstCandidate> = BTreeMap::new();
    for r in rules {
        if r.status == Status::Skipped {
            continue;
        }
        let domains: BTreeSet<u8> = r.domains.iter().copied().collect();
        for d in domains {
            let t = per_domain.entry(d).or_default().entry(&r.host).or_default();
            match r.status {
                Status::Fail => t.fail += 1,
                Status::Error => t.error += 1,
                Status::Pass => t.pass += 1,
                Status::Skipped => {}
            }
            if r.status == Status::Fail {
                candidates
                    .entry((d, &r.rule))
                    .and_modify(|c| c.add(1, &r.host, r.severity, &r.title))
                    .or_insert_with(|| WorstCandidate {
                        domain: d,
                        rule: r.rule.clone(),
                        hosts_failing: 1,
                        first_host: r.host.clone(),
                        severity: r.severity,
                        title: r.title.clone(),
                    });
            }
        }
    }
    let mut worst = pick_worst(candidates.into_values());
    // The hosts of the rules listed, by name.
    let mut sorted: Vec<&RuleStatusRow> =
        rules.iter().filter(|r| r.status == Status::Fail).collect();
    sorted.sort_by(|a, b| a.host.as_bytes().cmp(b.host.as_bytes()));
    for r in sorted {
        let domains: BTreeSet<u8> = r.domains.iter().copied().collect();
        for d in domains {
            if let Some(w) = worst
                .get_mut(&d)
                .and_then(|l| l.iter_mut().find(|w| w.rule == r.rule))
            {
                w.hosts.push(r.host.clone());
            }
        }
    }
    let domains = per_domain
        .iter()
        .map(|(&domain, by_host)| {
            let mut s = DomainCompliance {
                domain,
                hosts_passing: 0,
                hosts_failing: 0,
                hosts_error: 0,
                worst: worst.remove(&domain).unwrap_or_default(),
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
    Compliance {
        hosts: hosts.len(),
        hosts_failing: failing_hosts.len(),
        domains,
    }
}

/// A rule failing in a domain, before the worst are picked: how many
/// hosts fail it, and the title and severity of the first of them by name.
#[derive(Debug, Clone)]
pub(crate) struct WorstCandidate {
    /// Domain.
    pub domain: u8,
    /// Rule id.
    pub rule: String,
    /// Hosts failing it.
    pub hosts_failing: usize,
    /// The first of them by name (bytewise).
    pub first_host: String,
    /// Its severity there.
    pub severity: Severity,
    /// Its title there.
    pub title: String,
}

impl WorstCandidate {
    /// Adds `n` failing hosts, the first of which by name is `host`.
    pub(crate) fn add(&mut self, n: usize, host: &str, severity: Severity, title: &str) {
        self.hosts_failing += n;
        if host.as_bytes() < self.first_host.as_bytes() {
            self.first_host = host.to_string();
            self.severity = severity;
            self.title = title.to_string();
        }
    }
}

/// Per domain, the [`WORST_RULES`] worst candidates (most hosts failing,
/// then most severe, then by id), their hosts not filled in yet.
pub(crate) fn pick_worst(
    candidates: impl IntoIterator<Item = WorstCandidate>,
) -> BTreeMap<u8, Vec<WorstRule>> {
    let mut by_domain: BTreeMap<u8, Vec<WorstRule>> = BTreeMap::new();
    for c in candidates {
        by_domain.entry(c.domain).or_default().push(WorstRule {
            rule: c.rule,
            title: c.title,
            severity: c.severity,
            hosts_failing: c.hosts_failing,
            hosts: Vec::new(),
        });
    }
    for list in by_domain.values_mut() {
        list.sort_by(|a, b| {
            b.hosts_failing
                .cmp(&a.hosts_failing)
                .then(b.severity.cmp(&a.severity))
                .then(a.rule.cmp(&b.rule))
        });
        list.truncate(WORST_RULES);
    }
    by_domain
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
    fn worst_rules_most_hosts_then_most_severe_titles_from_the_first_host() {
        let mut rules = vec![
            row("b", "low", Status::Fail, Severity::Low, &[1]),
            row("a", "low", Status::Fail, Severity::Low, &[1, 1]),
            row("a", "crit", Status::Fail, Severity::Critical, &[1]),
            row("a", "high", Status::Fail, Severity::High, &[1]),
        ];
        rules[0].title = "b's title".into();
        let r = aggregate(&rules);
        let order: Vec<&str> = r.domains[0].worst.iter().map(|w| w.rule.as_str()).collect();
        assert_eq!(order, ["low", "crit", "high"]);
        let low = &r.domains[0].worst[0];
        assert_eq!(low.hosts, ["a", "b"], "a domain listed twice counts once");
        assert_eq!(low.title, "low title", "the title of host a, first by name");
    }

    #[test]
    fn domains_parse_as_a_json_array_of_bytes_or_nothing() {
        assert_eq!(parse_domains("[13,20,13]"), BTreeSet::from([13, 20]));
        assert!(parse_domains("[256]").is_empty());
        assert!(parse_domains("13").is_empty());
        assert!(parse_domains("").is_empty());
    }
}
