//! What the HTTP sinks write of an event, per format, and the one-line
//! summary that syslog messages and alerts carry.

use super::sink::HttpFormat;
use crate::storage::EventRow;
use serde_json::{Map, Value, json};

/// RFC 3339 (UTC, seconds) of a unix time.
pub(crate) fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| "1970-01-01T00:00:00Z".into())
}

/// The event as one JSON object: every field the agent sent, plus `host`
/// (the certificate identity) and `received_at` (RFC 3339, collector clock).
pub(crate) fn document(e: &EventRow) -> Map<String, Value> {
    let mut doc = match &e.body {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    doc.insert("host".into(), Value::from(e.host.as_str()));
    doc.insert("seq".into(), Value::from(e.seq));
    doc.insert("kind".into(), Value::from(e.kind.as_str()));
    doc.insert("severity".into(), Value::from(e.severity.as_str()));
    doc.insert("received_at".into(), Value::from(rfc3339(e.received_at)));
    doc
}

/// Syslog severity (RFC 5424 numbers) of a Plumbline severity.
pub(crate) fn syslog_severity(severity: &str) -> u8 {
    match severity {
        "critical" => 2,
        "high" => 3,
        "medium" => 4,
        "low" => 5,
        _ => 6,
    }
}

fn s<'a>(body: &'a Value, key: &str) -> &'a str {
    body.get(key).and_then(Value::as_str).unwrap_or("")
}

/// One line saying what happened, for people.
pub(crate) fn summary(e: &EventRow) -> String {
    let b = &e.body;
    let path = |v: &Value| match v.get("path") {
        Some(Value::String(p)) => p.clone(),
        Some(p) => p
            .get("lossy")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_string(),
        None => "?".into(),
    };
    match e.kind.as_str() {
        "check_changed" => format!(
            "{}: rule {} is {} (was {}): {}",
            e.host,
            s(b, "rule"),
            s(b, "status"),
            b.get("previous")
                .and_then(Value::as_str)
                .unwrap_or("unknown"),
            s(b, "title")
        ),
        "fim_change" => format!("{}: {} {}", e.host, path(b), s(b, "change")),
        "fim_tamper" => {
            let detail: Vec<&str> = b
                .get("detail")
                .and_then(Value::as_array)
                .map(|d| d.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            format!(
                "{}: FIM database tampered with: {}",
                e.host,
                detail.join("; ")
            )
        }
        "agent" => format!("{}: agent {}: {}", e.host, s(b, "what"), s(b, "message")),
        "snapshot" => format!(
            "{}: snapshot, score {}",
            e.host,
            b.pointer("/summary/score").unwrap_or(&Value::Null)
        ),
        other => format!("{}: {other}", e.host),
    }
}

/// The body of one POST of `events` in `format`, and its content type.
pub(crate) fn http_body(
    format: HttpFormat,
    index: &str,
    events: &[&EventRow],
) -> (Vec<u8>, &'static str) {
    let mut out = Vec::with_capacity(events.len() * 512);
    let mut line = |v: &Value| {
        // Serializing a `Value` cannot fail (no non-string keys).
        if serde_json::to_writer(&mut out, v).is_ok() {
            out.push(b'\n');
        }
    };
    for e in events {
        match format {
            HttpFormat::Jsonl => line(&Value::Object(document(e))),
            HttpFormat::Elasticsearch => {
                // `create` with an id of host and seq: a batch sent again
                // after a lost answer creates no duplicate (409 per item).
                line(&json!({"create": {"_index": index, "_id": format!("{}:{}", e.host, e.seq)}}));
                let mut doc = document(e);
                doc.insert("@timestamp".into(), Value::from(rfc3339(e.time)));
                line(&Value::Object(doc));
            }
            HttpFormat::SplunkHec => line(&json!({
                "time": e.time,
                "host": e.host,
                "source": "plumbline",
                "sourcetype": "plumbline:event",
                "event": Value::Object(document(e)),
            })),
            HttpFormat::Gelf => line(&gelf(e)),
        }
    }
    let ctype = match format {
        HttpFormat::Jsonl | HttpFormat::Elasticsearch => "application/x-ndjson",
        HttpFormat::SplunkHec | HttpFormat::Gelf => "application/json",
    };
    (out, ctype)
}

/// A GELF 1.1 message: the standard fields, every event field as an
/// additional `_field` (objects and arrays as JSON text, GELF wants scalars).
fn gelf(e: &EventRow) -> Value {
    let mut m = Map::new();
    m.insert("version".into(), "1.1".into());
    m.insert("host".into(), Value::from(e.host.as_str()));
    m.insert("short_message".into(), Value::from(summary(e)));
    m.insert("timestamp".into(), Value::from(e.time));
    m.insert("level".into(), Value::from(syslog_severity(&e.severity)));
    for (k, v) in document(e) {
        // `_id` is reserved by GELF; `host` is the standard field already.
        if k == "id" || k == "host" {
            continue;
        }
        let v = match v {
            Value::Object(_) | Value::Array(_) => Value::from(v.to_string()),
            Value::Null => continue,
            v => v,
        };
        m.insert(format!("_{k}"), v);
    }
    Value::Object(m)
}

/// Why an Elasticsearch `_bulk` answer does not acknowledge the batch.
#[derive(Debug, thiserror::Error)]
pub(crate) enum BulkError {
    #[error("the _bulk answer is not JSON: {0}")]
    NotJson(serde_json::Error),
    #[error("the _bulk answer has no \"errors\" field")]
    NoErrorsField,
    #[error("_bulk item refused ({status}): {error}")]
    Refused { status: u64, error: Value },
}

/// Whether an Elasticsearch `_bulk` answer acknowledges every item: an
/// `errors: true` answer is refused unless each failed item is a 409 (the
/// document exists: sent before, its answer lost). `Err` names the first
/// real failure.
pub(crate) fn bulk_acknowledged(answer: &[u8]) -> Result<(), BulkError> {
    let v: Value = serde_json::from_slice(answer).map_err(BulkError::NotJson)?;
    if v.get("errors").and_then(Value::as_bool) != Some(true) {
        return match v.get("errors") {
            Some(Value::Bool(false)) => Ok(()),
            _ => Err(BulkError::NoErrorsField),
        };
    }
    let items = v.get("items").and_then(Value::as_array);
    for item in items.into_iter().flatten() {
        let Some(result) = item.as_object().and_then(|o| o.values().next()) else {
            continue;
        };
        let status = result.get("status").and_then(Value::as_u64).unwrap_or(0);
        if !(200..300).contains(&status) && status != 409 {
            return Err(BulkError::Refused {
                status,
                error: result.get("error").cloned().unwrap_or(Value::Null),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> EventRow {
        EventRow {
            host: "web-12".into(),
            seq: 3,
            kind: "fim_change".into(),
            severity: "medium".into(),
            time: 1_800_000_000,
            received_at: 1_800_000_005,
            body: json!({"seq": 3, "kind": "fim_change", "severity": "medium",
                         "time": "2027-01-15T08:00:00Z", "path": "/etc/passwd",
                         "change": "modified", "domains": [20, 25]}),
        }
    }

    #[test]
    fn elasticsearch_bulk_has_action_and_document_lines() {
        let e = ev();
        let (body, ctype) = http_body(HttpFormat::Elasticsearch, "plumb", &[&e]);
        assert_eq!(ctype, "application/x-ndjson");
        let lines: Vec<Value> = body
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["create"]["_id"], "web-12:3");
        assert_eq!(lines[0]["create"]["_index"], "plumb");
        assert_eq!(lines[1]["path"], "/etc/passwd");
        assert_eq!(lines[1]["host"], "web-12");
        assert_eq!(lines[1]["@timestamp"], "2027-01-15T08:00:00Z");
    }

    #[test]
    fn splunk_and_gelf_shapes() {
        let e = ev();
        let (body, _) = http_body(HttpFormat::SplunkHec, "", &[&e, &e]);
        let text = String::from_utf8(body).unwrap();
        let objs: Vec<Value> = serde_json::Deserializer::from_str(&text)
            .into_iter()
            .map(Result::unwrap)
            .collect();
        assert_eq!(objs.len(), 2);
        assert_eq!(objs[0]["time"], 1_800_000_000);
        assert_eq!(objs[0]["host"], "web-12");
        assert_eq!(objs[0]["event"]["change"], "modified");
        let (body, _) = http_body(HttpFormat::Gelf, "", &[&e]);
        let g: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(g["version"], "1.1");
        assert_eq!(g["level"], 4);
        assert_eq!(g["short_message"], "web-12: /etc/passwd modified");
        assert_eq!(g["_domains"], "[20,25]");
        assert_eq!(g["_seq"], 3);
        assert!(g.get("_host").is_none() && g.get("_id").is_none());
    }

    #[test]
    fn bulk_answers() {
        assert!(bulk_acknowledged(br#"{"errors":false,"items":[]}"#).is_ok());
        let dup = br#"{"errors":true,"items":[{"create":{"status":201}},{"create":{"status":409,"error":{"type":"version_conflict_engine_exception"}}}]}"#;
        assert!(bulk_acknowledged(dup).is_ok());
        let bad = br#"{"errors":true,"items":[{"create":{"status":400,"error":{"type":"mapper_parsing_exception"}}}]}"#;
        assert!(
            bulk_acknowledged(bad)
                .unwrap_err()
                .to_string()
                .contains("mapper_parsing_exception")
        );
        assert!(bulk_acknowledged(b"<html>").is_err());
    }
}
