//! `plumb-collector hosts`: every host, when it was last heard from (stale
//! or not), its score, failing rules, recent drift and versions.

use super::{Format, WIDTH, age, fit, rfc3339, to_json};
use crate::storage::{HostRow, Queries, StorageError};
use serde::Serialize;
use std::fmt::Write as _;

/// `DRIFT` counts drift events of this last period.
const DRIFT_WINDOW_SECS: i64 = 86_400;

pub(crate) fn score(h: &HostRow) -> Option<f64> {
    let counted = h.pass + h.fail + h.error;
    (counted > 0).then(|| (1000.0 * f64::from(h.pass) / f64::from(counted)).round() / 10.0)
}

/// How the listing judges time: now, and after how long a host is stale.
#[derive(Debug, Clone, Copy)]
struct Clock {
    now: i64,
    stale_after: u64,
}

impl Clock {
    fn stale(self, h: &HostRow) -> bool {
        self.now - h.last_seen >= i64::try_from(self.stale_after).unwrap_or(i64::MAX)
    }
}

/// `plumb-collector hosts`.
pub fn hosts(
    q: &dyn Queries,
    now: i64,
    stale_after: u64,
    format: Format,
) -> Result<String, StorageError> {
    let rows = q.hosts(now - DRIFT_WINDOW_SECS)?;
    let clock = Clock { now, stale_after };
    Ok(match format {
        Format::Json => render_json(&rows, clock),
        Format::Text => render_text(&rows, clock),
    })
}

/// One host of the JSON listing. Serialized directly (10,000 hosts are
/// 140,000 fields: building `serde_json::Value` maps of them cost more
/// than the database's work); fields in name order, as `Value` objects
/// print them, so the document is the one `json!` made.
#[derive(Serialize)]
struct HostJson<'a> {
    acked_seq: u64,
    address: &'a Option<String>,
    age_secs: i64,
    agent_version: &'a Option<String>,
    baseline: Option<BaselineJson<'a>>,
    drift_24h: u32,
    failing_rules: u32,
    fim_digest: &'a Option<String>,
    first_seen: String,
    host: &'a str,
    last_seen: String,
    rules: RulesJson,
    score: Option<f64>,
    stale: bool,
}

#[derive(Serialize)]
struct BaselineJson<'a> {
    id: &'a str,
    version: Option<u64>,
}

#[derive(Serialize)]
struct RulesJson {
    error: u32,
    fail: u32,
    pass: u32,
    skipped: u32,
}

#[derive(Serialize)]
struct HostsJson<'a> {
    generated_at: String,
    hosts: Vec<HostJson<'a>>,
    stale_after_secs: u64,
}

fn render_json(rows: &[HostRow], clock: Clock) -> String {
    let now = clock.now;
    let hosts: Vec<HostJson<'_>> = rows
        .iter()
        .map(|h| HostJson {
            acked_seq: h.acked_seq,
            address: &h.address,
            age_secs: (now - h.last_seen).max(0),
            agent_version: &h.agent_version,
            baseline: h.baseline_id.as_deref().map(|id| BaselineJson {
                id,
                version: h.baseline_version,
            }),
            drift_24h: h.drift_recent,
            failing_rules: h.fail,
            fim_digest: &h.fim_digest,
            first_seen: rfc3339(h.first_seen),
            host: &h.host,
            last_seen: rfc3339(h.last_seen),
            rules: RulesJson {
                error: h.error,
                fail: h.fail,
                pass: h.pass,
                skipped: h.skipped,
            },
            // `json!` made a NaN null; a score never is one.
            score: score(h).filter(|s| s.is_finite()),
            stale: clock.stale(h),
        })
        .collect();
    to_json(&HostsJson {
        generated_at: rfc3339(now),
        hosts,
        stale_after_secs: clock.stale_after,
    })
}

fn render_text(rows: &[HostRow], clock: Clock) -> String {
    let now = clock.now;
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No host has reported yet.\n");
        return out;
    }
    let _ = writeln!(
        out,
        "{:<20} {:<10} {:>5} {:>4} {:>5}  {:<7} BASELINE",
        "HOST", "LAST SEEN", "SCORE", "FAIL", "DRIFT", "AGENT"
    );
    for h in rows {
        let seen = if clock.stale(h) {
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
    let n_stale = rows.iter().filter(|h| clock.stale(h)).count();
    let _ = writeln!(
        out,
        "\n{} hosts, {} stale (unseen for {}), {} failing a rule. DRIFT: last 24 h.",
        rows.len(),
        n_stale,
        age(i64::try_from(clock.stale_after).unwrap_or(i64::MAX)),
        rows.iter().filter(|h| h.fail > 0).count()
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn row(host: &str, baseline: Option<(&str, Option<u64>)>, pass: u32, fail: u32) -> HostRow {
        HostRow {
            host: host.into(),
            first_seen: 1_796_000_000,
            last_seen: 1_796_030_000,
            address: (pass > 0).then(|| "10.0.0.1".to_string()),
            agent_version: Some("0.1.0".into()),
            baseline_id: baseline.map(|b| b.0.to_string()),
            baseline_version: baseline.and_then(|b| b.1),
            fim_digest: None,
            pass,
            fail,
            error: 1,
            skipped: 2,
            drift_recent: 7,
            acked_seq: 42,
        }
    }

    /// The document is, byte for byte, the one the listing made with
    /// `json!` before it was serialized directly.
    #[test]
    fn json_is_what_json_values_printed() {
        let rows = [
            row("a", Some(("issp", Some(7))), 3, 1),
            row("b", Some(("issp", None)), 0, 0),
            row("c", None, 2, 0),
        ];
        let clock = Clock {
            now: 1_796_031_000,
            stale_after: 900,
        };
        let hosts: Vec<serde_json::Value> = rows
            .iter()
            .map(|h| {
                json!({
                    "host": h.host,
                    "first_seen": rfc3339(h.first_seen),
                    "last_seen": rfc3339(h.last_seen),
                    "age_secs": (clock.now - h.last_seen).max(0),
                    "stale": clock.stale(h),
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
        let want = to_json(&json!({
            "generated_at": rfc3339(clock.now),
            "stale_after_secs": clock.stale_after,
            "hosts": hosts,
        }));
        assert_eq!(render_json(&rows, clock), want);
    }
}
