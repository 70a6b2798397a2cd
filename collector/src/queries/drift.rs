//! `plumb-collector drift`: drift events, newest first, each with what
//! changed (evidence for rules, old → new for files).

use super::{Format, WIDTH, fit, rfc3339, short_time, to_json};
use crate::storage::{DriftFilter, EventRow, Queries, StorageError};
use plumb_core::fim::{ChangeSummary, PackageVerdict, ReportPath};
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
pub(crate) fn details(e: &EventRow) -> (String, Vec<String>) {
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
            if let Some(p) = package(b) {
                let verdict = match (p.verified, p.conffile) {
                    (true, _) => "package-verified",
                    (false, true) => "configuration file, not verified",
                    (false, false) => "NOT verified",
                };
                lines.push(format!("package {} {}: {verdict}", p.name, p.version));
                if !p.evidence.is_empty() {
                    lines.push(p.evidence.escape_debug().to_string());
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

/// The package verdict of a `fim_change` body, if it has one.
fn package(b: &Value) -> Option<PackageVerdict> {
    serde_json::from_value(b.get("package")?.clone()).ok()
}

/// The `fim_change` events of `rows` counted by package verdict.
pub(crate) fn fim_summary<'a>(rows: impl IntoIterator<Item = &'a EventRow>) -> ChangeSummary {
    let mut sum = ChangeSummary::default();
    for e in rows.into_iter().filter(|e| e.kind == "fim_change") {
        let path = e
            .body
            .get("path")
            .and_then(|p| serde_json::from_value::<ReportPath>(p.clone()).ok())
            .unwrap_or_else(|| ReportPath::Text("?".into()));
        sum.add(&path, package(&e.body).as_ref());
    }
    sum
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
    let sum = fim_summary(rows);
    if sum.changes == 0 {
        return to_json(&json!({ "events": events }));
    }
    to_json(&json!({
        "events": events,
        "fim_summary": { "counts": sum, "text": sum.describe() },
    }))
}

fn render_text(rows: &[EventRow], limit: usize) -> String {
    let mut out = String::new();
    if rows.is_empty() {
        out.push_str("No drift matches.\n");
    }
    let sum = fim_summary(rows);
    if sum.changes > 0 {
        let _ = writeln!(out, "File changes listed: {}", sum.describe());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn fim(seq: u64, path: &str, package: Value) -> EventRow {
        let mut body = json!({"kind": "fim_change", "path": path, "change": "modified",
                              "fields": [], "old": null, "new": null, "domains": []});
        if !package.is_null() {
            body["package"] = package;
        }
        EventRow {
            host: "web-1".into(),
            seq,
            kind: "fim_change".into(),
            severity: "info".into(),
            time: 1_795_000_000,
            received_at: 1_795_000_001,
            body,
        }
    }

    #[test]
    fn file_changes_are_summed_up_by_package_verdict() {
        let ok = json!({"name": "coreutils", "version": "9.1-2", "verified": true});
        let rows: Vec<EventRow> = (0..1204)
            .map(|i| fim(i, &format!("/usr/bin/f{i}"), ok.clone()))
            .collect();
        let text = render_text(&rows, 5000);
        assert!(
            text.starts_with("File changes listed: 1,204 changes, all package-verified\n"),
            "{text}"
        );
        assert!(
            text.contains("    package coreutils 9.1-2: package-verified"),
            "{text}"
        );
        let bad = json!({"name": "coreutils", "version": "9.1-2", "verified": false,
                         "evidence": "MD5 x is not what coreutils 9.1-2 installed"});
        let rows = vec![
            fim(1, "/usr/bin/ls", bad),
            fim(2, "/usr/lib/evil.so", Value::Null),
            fim(3, "/usr/sbin/x", Value::Null),
        ];
        let text = render_text(&rows, 100);
        assert!(
            text.starts_with(
                "File changes listed: 3 unexplained changes under /usr (1 not matching its package)\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("    package coreutils 9.1-2: NOT verified\n    MD5 x is not"),
            "{text}"
        );
        let j: Value = serde_json::from_str(&render_json(&rows)).unwrap();
        assert_eq!(j["fim_summary"]["counts"]["unexplained"]["/usr"], 3, "{j}");
        // No file change, no summary.
        let j: Value = serde_json::from_str(&render_json(&[])).unwrap();
        assert!(j.get("fim_summary").is_none());
    }
}
