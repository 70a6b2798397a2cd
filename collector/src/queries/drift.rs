//! `plumb-collector drift`: drift events, newest first, each with what
//! changed (evidence for rules, old → new for files).

use super::{Format, WIDTH, fit, rfc3339, short_time, to_json};
use crate::storage::{DriftFilter, EventRow, Queries, StorageError};
use plumb_core::fim::ReportPath;
use serde_json::{Value, json};
use std::fmt::Write as _;

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
    let out = match format {
        Format::Json => render_json(&rows),
        Format::Text => render_text(&rows, filter.limit),
    };
    Ok((out, rows.len()))
}

fn render_json(rows: &[EventRow]) -> String {
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
    to_json(&json!({ "events": events }))
}

fn render_text(rows: &[EventRow], limit: usize) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No drift matches.\n");
    }
    for e in rows {
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
    if rows.len() == limit {
        let _ = writeln!(out, "(first {limit} shown; use --limit for more)");
    }
    out
}
