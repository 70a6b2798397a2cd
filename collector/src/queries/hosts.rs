//! `plumb-collector hosts`: every host, when it was last heard from (stale
//! or not), its score, failing rules, recent drift and versions.

use super::{Format, WIDTH, age, fit, rfc3339, to_json};
use crate::storage::{HostRow, Queries, StorageError};
use serde_json::{Value, json};
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

fn render_json(rows: &[HostRow], clock: Clock) -> String {
    let now = clock.now;
    let hosts: Vec<Value> = rows
        .iter()
        .map(|h| {
            json!({
                "host": h.host,
                "first_seen": rfc3339(h.first_seen),
                "last_seen": rfc3339(h.last_seen),
                "age_secs": (now - h.last_seen).max(0),
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
    to_json(&json!({
        "generated_at": rfc3339(now),
        "stale_after_secs": clock.stale_after,
        "hosts": hosts,
    }))
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
