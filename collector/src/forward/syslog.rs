//! The syslog sink: one RFC 5424 message per event, its fields in the
//! structured data element `plumb@32473`, sent over TLS with RFC 5425
//! octet-counting framing (`LEN SP MSG`).
//!
//! Syslog has no acknowledgement. A batch is one connection: the messages,
//! then our close_notify and FIN, then we wait for the receiver to close
//! its side. A receiver closes only once it has read everything we sent,
//! so that close is the acknowledgement the cursor waits for; a reset or a
//! timeout instead sends the batch again (at least once).

use super::format::{rfc3339, summary, syslog_severity};
use super::{ForwardError, client};
use crate::storage::EventRow;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The SD-ID: a name `@` a private enterprise number (32473 is the one
/// IANA reserves for documentation and examples, RFC 5612).
pub const SD_ID: &str = "plumb@32473";

/// One syslog receiver.
pub(crate) struct SyslogSink {
    host: String,
    port: u16,
    tls: Arc<rustls::ClientConfig>,
    server_name: String,
    facility: u8,
    timeout: Duration,
}

impl SyslogSink {
    pub(crate) fn new(
        host: &str,
        port: u16,
        tls: Arc<rustls::ClientConfig>,
        server_name: String,
        facility: u8,
        timeout: Duration,
    ) -> SyslogSink {
        SyslogSink {
            host: host.to_string(),
            port,
            tls,
            server_name,
            facility,
            timeout,
        }
    }

    /// Sends `events` on one connection and waits for the receiver's close.
    pub(crate) async fn deliver(&self, events: &[&EventRow]) -> Result<(), ForwardError> {
        let mut out = Vec::with_capacity(events.len() * 600);
        for e in events {
            let msg = message(e, self.facility);
            out.extend_from_slice(msg.len().to_string().as_bytes());
            out.push(b' ');
            out.extend_from_slice(&msg);
        }
        let what = format!("syslog {}:{}", self.host, self.port);
        let io = |source| ForwardError::Io {
            what: what.clone(),
            source,
        };
        let exchange = async {
            let mut s = client::connect(
                &self.host,
                self.port,
                Some((&self.tls, self.server_name.as_str())),
            )
            .await?;
            s.write_all(&out).await.map_err(io)?;
            s.flush().await.map_err(io)?;
            s.shutdown().await.map_err(io)?;
            // Anything the receiver says is ignored; its close is the answer.
            let mut sink = [0u8; 1024];
            loop {
                match s.read(&mut sink).await {
                    Ok(0) => return Ok(()),
                    Ok(_) => {}
                    // A TLS peer that closes without close_notify has still
                    // read everything before closing.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                    Err(e) => return Err(io(e)),
                }
            }
        };
        match tokio::time::timeout(self.timeout, exchange).await {
            Ok(r) => r,
            Err(_) => Err(ForwardError::Timeout {
                what: what.clone(),
                after: self.timeout,
            }),
        }
    }
}

/// `s` restricted to printable US-ASCII (RFC 5424 header fields), at most
/// `max` characters; `-` (the nil value) when empty.
fn header_field(s: &str, max: usize) -> String {
    let v: String = s
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if v.is_empty() { "-".into() } else { v }
}

/// An SD-NAME: printable US-ASCII except `=`, space, `]`, `"`; at most 32.
fn sd_name(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_graphic() && !matches!(c, '=' | ']' | '"'))
        .take(32)
        .collect()
}

/// A PARAM-VALUE with `"`, `\` and `]` escaped (RFC 5424 §6.3.3).
pub(crate) fn escape_param(v: &str, out: &mut String) {
    for c in v.chars() {
        if matches!(c, '"' | '\\' | ']') {
            out.push('\\');
        }
        out.push(c);
    }
}

/// The RFC 5424 message of one event: `<PRI>1 TIME HOST plumbline - KIND
/// [plumb@32473 host=… seq=… kind=… severity=… received_at=… FIELD=…] BOM SUMMARY`.
/// Every top-level field of the event is a parameter (objects and arrays
/// as JSON text).
pub(crate) fn message(e: &EventRow, facility: u8) -> Vec<u8> {
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(&e.severity));
    let mut m = format!(
        "<{pri}>1 {} {} plumbline - {} [{SD_ID}",
        rfc3339(e.time),
        header_field(&e.host, 255),
        header_field(&e.kind, 32),
    );
    let mut param = |name: &str, value: &str| {
        let name = sd_name(name);
        if name.is_empty() {
            return;
        }
        let _ = write!(m, " {name}=\"");
        escape_param(value, &mut m);
        m.push('"');
    };
    param("host", &e.host);
    param("seq", &e.seq.to_string());
    param("kind", &e.kind);
    param("severity", &e.severity);
    param("received_at", &rfc3339(e.received_at));
    if let Value::Object(fields) = &e.body {
        for (k, v) in fields {
            if matches!(k.as_str(), "host" | "seq" | "kind" | "severity") {
                continue;
            }
            match v {
                Value::String(s) => param(k, s),
                Value::Null => {}
                other => param(k, &other.to_string()),
            }
        }
    }
    m.push_str("] ");
    let mut bytes = m.into_bytes();
    // MSG in UTF-8 starts with a BOM (RFC 5424 §6.4).
    bytes.extend_from_slice("\u{feff}".as_bytes());
    bytes.extend_from_slice(summary(e).replace('\n', " ").as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn message_escapes_params_and_keeps_fields() {
        let e = EventRow {
            host: "web-12".into(),
            seq: 7,
            kind: "check_changed".into(),
            severity: "high".into(),
            time: 1_800_000_000,
            received_at: 1_800_000_001,
            body: json!({"rule": "ssh.x", "status": "fail", "title": "a \"quoted\" [x] \\ y",
                         "domains": [13], "previous": null}),
        };
        let m = String::from_utf8(message(&e, 13)).unwrap();
        assert!(
            m.starts_with("<107>1 2027-01-15T08:00:00Z web-12 plumbline - check_changed [plumb@32473 host=\"web-12\" seq=\"7\""),
            "{m}"
        );
        assert!(m.contains(r#"title="a \"quoted\" [x\] \\ y""#), "{m}");
        assert!(m.contains(r#"domains="[13\]""#), "{m}");
        assert!(!m.contains("previous="), "{m}");
        assert!(
            m.ends_with(
                "] \u{feff}web-12: rule ssh.x is fail (was unknown): a \"quoted\" [x] \\ y"
            ),
            "{m}"
        );
    }
}
