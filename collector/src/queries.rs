//! The ops team's queries: `hosts`, `drift`, `report`. They read through
//! [`Queries`], compute, and print text (80 columns) or one JSON document.

use crate::storage::{DriftFilter, EventRow, HostRow, Queries, RuleStatusRow, StorageError};
use plumb_core::fim::ReportPath;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

/// Terminal width the text output is laid out for.
pub const WIDTH: usize = 80;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text.
    Text,
    /// One JSON document.
    Json,
}

/// RFC 3339 UTC of a unix time.
pub fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

fn short_time(t: i64) -> String {
    // "2026-11-27 10:00:03" (UTC): RFC 3339 without the T and Z, for columns.
    let s = rfc3339(t);
    s.get(..19).map(|x| x.replace('T', " ")).unwrap_or(s)
}

/// "42s", "5m", "3h", "12d".
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Parses `--since`: RFC 3339, or a duration back from now (`30m`, `24h`, `7d`).
pub fn parse_since(s: &str, now: i64) -> Result<i64, String> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<i64>() {
        Ok(n) if mult > 0 && n >= 0 => Ok(now - n.saturating_mul(mult)),
        _ => Err(format!(
            "--since {s:?}: expected an RFC 3339 time (2026-11-27T10:00:00Z) or a duration such as 30m, 24h, 7d"
        )),
    }
}

/// Cuts a string to `max` characters, marking the cut with '…'.
pub fn fit(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn score(h: &HostRow) -> Option<f64> {
    let counted = h.pass + h.fail + h.error;
    (counted > 0).then(|| (1000.0 * f64::from(h.pass) / f64::from(counted)).round() / 10.0)
}

/// `plumb-collector hosts`.
pub fn hosts(
    q: &dyn Queries,
    now: i64,
    stale_after: u64,
    format: Format,
) -> Result<String, StorageError> {
    let rows = q.hosts(now - 86_400)?;
    let stale = |h: &HostRow| now - h.last_seen >= i64::try_from(stale_after).unwrap_or(i64::MAX);
    if format == Format::Json {
        let hosts: Vec<Value> = rows
            .iter()
            .map(|h| {
                json!({
                    "host": h.host,
                    "first_seen": rfc3339(h.first_seen),
                    "last_seen": rfc3339(h.last_seen),
                    "age_secs": (now - h.last_seen).max(0),
                    "stale": stale(h),
                    "address": h.address,
                    "score": score(h),
                    "rules": {"pass": h.pass, "fail": h.fail, "error": h.error, "skipped": h.skipped},
                    "failing_rules": h.fail,
                    "drift_24h": h.drift_recent,
                    "agent_version": h.agent_version,
                    "baseline": h.baseline_id.as_ref().map(|id| json!({"id": id, "version": h.baseline_version})),
                    "fim_digest": h.fim_digest,
                    "acked_seq": h.acked_seq,
                })
            })
            .collect();
        return Ok(to_json(&json!({
            "generated_at": rfc3339(now),
            "stale_after_secs": stale_after,
            "hosts": hosts,
        })));
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No host has reported yet.\n");
        return Ok(out);
    }
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>5} {:>4} {:>5}  {:<7} BASELINE",
        "HOST", "LAST SEEN", "SCORE", "FAIL", "DRIFT", "AGENT"
    );
    for h in &rows {
        let seen = if stale(h) {
            format!("{} STALE", age(now - h.last_seen))
        } else {
            age(now - h.last_seen)
        };
        let baseline = match (&h.baseline_id, h.baseline_version) {
            (Some(id), Some(v)) => format!("{id}@{v}"),
            (Some(id), None) => id.clone(),
            _ => "-".into(),
        };
        let line = format!(
            "{:<20} {:<10} {:>5} {:>4} {:>5}  {:<7} {}",
            fit(&h.host, 20),
            seen,
            score(h)
                .map(|s| format!("{s:.1}"))
                .unwrap_or_else(|| "-".into()),
            h.fail,
            h.drift_recent,
            fit(h.agent_version.as_deref().unwrap_or("-"), 7),
            baseline
        );
        let _ = writeln!(out, "{}", fit(&line, WIDTH));
    }
    let n_stale = rows.iter().filter(|h| stale(h)).count();
    let _ = writeln!(
        out,
        "\n{} hosts, {} stale (unseen for {}), {} failing a rule. DRIFT: last 24 h.",
        rows.len(),
        n_stale,
        age(i64::try_from(stale_after).unwrap_or(i64::MAX)),
        rows.iter().filter(|h| h.fail > 0).count()
    );
    Ok(out)
}

fn to_json(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

fn show_value(v: &Value) -> String {
    let s = match v {
        Value::Null => "(none)".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    // Digests are long: head and tail identify them well enough on screen.
    if s.chars().count() > 28 {
        let head: String = s.chars().take(12).collect();
        let tail: String = s
            .chars()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("{head}…{tail}")
    } else {
        s
    }
}

/// The lines under a drift event: evidence, or field diffs.
fn details(e: &EventRow) -> (String, Vec<String>) {
    let b = &e.body;
    let s = |k: &str| b.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    match e.kind.as_str() {
        "check_changed" => {
            let prev = b.get("previous").and_then(Value::as_str).unwrap_or("new");
            let head = format!("{}: {} → {}", s("rule"), prev, s("status"));
            let mut lines: Vec<String> = vec![s("title")];
            if let Some(ev) = b.get("evidence").and_then(Value::as_array) {
                lines.extend(ev.iter().filter_map(Value::as_str).map(String::from));
            }
            lines.retain(|l| !l.is_empty() && l != "?");
            (head, lines)
        }
        "fim_change" => {
            let path = b
                .get("path")
                .and_then(|p| serde_json::from_value::<ReportPath>(p.clone()).ok())
                .map_or_else(|| "?".to_string(), |p| p.display());
            let head = format!("{path} {}", s("change"));
            let mut lines = Vec::new();
            if let Some(fields) = b.get("fields").and_then(Value::as_array) {
                for f in fields.iter().filter_map(Value::as_str) {
                    let old = b.get("old").and_then(|o| o.get(f)).unwrap_or(&Value::Null);
                    let new = b.get("new").and_then(|o| o.get(f)).unwrap_or(&Value::Null);
                    lines.push(format!("{f}: {} → {}", show_value(old), show_value(new)));
                }
            }
            (head, lines)
        }
        "fim_tamper" => {
            let lines = b
                .get("detail")
                .and_then(Value::as_array)
                .map(|d| {
                    d.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            ("FIM database failed its seal".into(), lines)
        }
        other => (other.to_string(), Vec::new()),
    }
}

/// `plumb-collector drift`. Returns the output and how many events it lists.
pub fn drift(
    q: &dyn Queries,
    filter: &DriftFilter,
    format: Format,
) -> Result<(String, usize), StorageError> {
    let rows = q.drift(filter)?;
    if format == Format::Json {
        let events: Vec<Value> = rows
            .iter()
            .map(|e| {
                json!({
                    "host": e.host, "seq": e.seq, "kind": e.kind, "severity": e.severity,
                    "time": rfc3339(e.time), "received_at": rfc3339(e.received_at),
                    "event": e.body,
                })
            })
            .collect();
        return Ok((to_json(&json!({ "events": events })), rows.len()));
    }
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No drift matches.\n");
    }
    for e in &rows {
        let (head, lines) = details(e);
        let line = format!(
            "{}  {:<8} {}  {}",
            short_time(e.time),
            e.severity,
            e.host,
            head
        );
        let _ = writeln!(out, "{}", fit(&line, WIDTH));
        for l in lines {
            let _ = writeln!(out, "{}", fit(&format!("    {l}"), WIDTH));
        }
    }
    if rows.len() == filter.limit {
        let _ = writeln!(out, "(first {} shown; use --limit for more)", filter.limit);
    }
    Ok((out, rows.len()))
}

#[derive(Debug, Default, Serialize)]
struct WorstRule {
    rule: String,
    title: String,
    severity: String,
    hosts_failing: usize,
    hosts: Vec<String>,
}

/// `plumb-collector report`: fleet compliance per ISSP domain. Returns the
/// output and whether any host fails any rule.
pub fn report(q: &dyn Queries, format: Format) -> Result<(String, bool), StorageError> {
    let rules = q.rule_statuses()?;
    let hosts: BTreeSet<&str> = rules.iter().map(|r| r.host.as_str()).collect();
    let failing_hosts: BTreeSet<&str> = rules
        .iter()
        .filter(|r| r.status == "fail")
        .map(|r| r.host.as_str())
        .collect();
    // domain -> host -> (fail, error, pass) counts; domain -> rule -> failing rows
    let mut per_domain: BTreeMap<u8, BTreeMap<&str, [u32; 3]>> = BTreeMap::new();
    let mut failing: BTreeMap<u8, BTreeMap<&str, Vec<&RuleStatusRow>>> = BTreeMap::new();
    for r in &rules {
        let idx = match r.status.as_str() {
            "fail" => 0,
            "error" => 1,
            "pass" => 2,
            _ => continue,
        };
        for &d in &r.domains {
            per_domain.entry(d).or_default().entry(&r.host).or_default()[idx] += 1;
            if idx == 0 {
                failing
                    .entry(d)
                    .or_default()
                    .entry(&r.rule)
                    .or_default()
                    .push(r);
            }
        }
    }
    let sev_rank = |s: &str| {
        ["info", "low", "medium", "high", "critical"]
            .iter()
            .position(|x| *x == s)
            .unwrap_or(0)
    };
    let mut domains = Vec::new();
    for (d, by_host) in &per_domain {
        let (mut pass, mut fail, mut err) = (0, 0, 0);
        for c in by_host.values() {
            if c[0] > 0 {
                fail += 1;
            } else if c[1] > 0 {
                err += 1;
            } else {
                pass += 1;
            }
        }
        let mut worst: Vec<WorstRule> = failing
            .get(d)
            .map(|m| {
                m.iter()
                    .map(|(rule, rows)| WorstRule {
                        rule: (*rule).to_string(),
                        title: rows.first().map(|r| r.title.clone()).unwrap_or_default(),
                        severity: rows.first().map(|r| r.severity.clone()).unwrap_or_default(),
                        hosts_failing: rows.len(),
                        hosts: rows.iter().map(|r| r.host.clone()).collect(),
                    })
                    .collect()
            })
            .unwrap_or_default();
        worst.sort_by(|a, b| {
            b.hosts_failing
                .cmp(&a.hosts_failing)
                .then(sev_rank(&b.severity).cmp(&sev_rank(&a.severity)))
                .then(a.rule.cmp(&b.rule))
        });
        worst.truncate(5);
        domains.push((*d, pass, fail, err, worst));
    }
    let any_fail = !failing_hosts.is_empty();
    if format == Format::Json {
        let ds: Vec<Value> = domains
            .iter()
            .map(|(d, p, f, e, w)| {
                json!({
                    "domain": d,
                    "name": plumb_core::issp::domain_name(*d),
                    "hosts_passing": p, "hosts_failing": f, "hosts_error": e,
                    "worst_rules": w,
                })
            })
            .collect();
        return Ok((
            to_json(&json!({
                "hosts": hosts.len(),
                "hosts_failing": failing_hosts.len(),
                "domains": ds,
            })),
            any_fail,
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Fleet compliance: {} hosts, {} failing at least one rule.\n",
        hosts.len(),
        failing_hosts.len()
    );
    if domains.is_empty() {
        out.push_str("No rule status stored yet (agents send them in snapshots).\n");
        return Ok((out, any_fail));
    }
    let _ = writeln!(
        out,
        "{:>2}  {:<50} {:>5} {:>5} {:>5}",
        "#", "ISSP DOMAIN", "PASS", "FAIL", "ERROR"
    );
    for (d, p, f, e, w) in &domains {
        let name = plumb_core::issp::domain_name(*d).unwrap_or("(unknown domain)");
        let _ = writeln!(
            out,
            "{:>2}  {:<50} {:>5} {:>5} {:>5}",
            d,
            fit(name, 50),
            p,
            f,
            e
        );
        if !w.is_empty() {
            let list: Vec<String> = w
                .iter()
                .take(3)
                .map(|r| format!("{} ({})", r.rule, r.hosts_failing))
                .collect();
            let _ = writeln!(
                out,
                "{}",
                fit(&format!("      worst: {}", list.join(", ")), WIDTH)
            );
        }
    }
    out.push_str("\nPASS/FAIL/ERROR count hosts; worst: failing rules (hosts failing).\n");
    Ok((out, any_fail))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_fit() {
        assert_eq!(parse_since("24h", 100_000).unwrap(), 100_000 - 86_400);
        assert_eq!(
            parse_since("2026-11-27T10:00:00Z", 0).unwrap(),
            1_795_773_600
        );
        assert!(parse_since("yesterday", 0).is_err());
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(age(3700), "1h");
    }
}
