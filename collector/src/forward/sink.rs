//! A `[[forward]]` sink as configured: its name, where the events go (a
//! syslog receiver or an HTTP endpoint), in which format, and which events
//! (kinds, minimum severity, host glob).

use crate::storage::{EventRow, host_matches};
use plumb_core::Severity;
use plumb_core::{Diagnostic, Document};
use serde::Deserialize;
use std::path::PathBuf;

/// Event kinds a filter may name (those agents send).
pub const KINDS: [&str; 6] = [
    "check_changed",
    "fim_change",
    "fim_tamper",
    "snapshot",
    "remediation",
    "agent",
];

/// One `[[forward]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkConfig {
    /// Unique name: the key of its cursor in the store, of its lock and of
    /// its metrics (`[A-Za-z0-9_.-]`, at most 64 characters).
    pub name: String,
    /// `syslog` (RFC 5424 over TLS, RFC 5425 framing) or `http` (batched
    /// JSON POSTs).
    #[serde(rename = "type")]
    pub kind: SinkKind,
    /// syslog: the receiver, `HOST:PORT` (TLS; 6514 is the registered port).
    #[serde(default)]
    pub address: Option<String>,
    /// http: the URL POSTed to (`https://…`; `http://` only for a receiver
    /// on the same machine or a trusted network).
    #[serde(default)]
    pub url: Option<String>,
    /// http: the body format.
    #[serde(default)]
    pub format: HttpFormat,
    /// The name the receiver's certificate must carry; default: the host
    /// of `address` or `url`.
    #[serde(default)]
    pub server_name: Option<String>,
    /// CA certificate(s) (PEM) the receiver's certificate must chain to.
    /// Required for syslog and `https` URLs.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Client certificate (PEM) presented to the receiver (with `client_key`).
    #[serde(default)]
    pub client_cert: Option<PathBuf>,
    /// Client certificate's private key (PEM, mode 0600).
    #[serde(default)]
    pub client_key: Option<PathBuf>,
    /// http: file holding the token sent as `Authorization: Bearer TOKEN`
    /// (`Splunk TOKEN` for `splunk_hec`); first line, mode 0600.
    #[serde(default)]
    pub token_file: Option<PathBuf>,
    /// http `elasticsearch`: the index (or data stream) written to.
    #[serde(default = "default_index")]
    pub index: String,
    /// syslog: the facility of every message (0..=23; default 13, log audit).
    #[serde(default = "default_facility")]
    pub facility: u8,
    /// Only these event kinds (empty: every kind).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// Only events at least this severe.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// Only hosts matching this glob (`*`, `?`; case-insensitive).
    #[serde(default = "default_hosts")]
    pub hosts: String,
    /// Most events read from the store and sent at once (one POST, one
    /// syslog connection).
    #[serde(default = "default_batch_events")]
    pub batch_events: usize,
    /// How often the store is polled once everything is forwarded (ms).
    #[serde(default = "default_poll_interval")]
    pub poll_interval_ms: u64,
    /// Longest wait between two attempts while the receiver fails (seconds;
    /// the wait starts at 1 s and doubles).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_secs: u64,
    /// One delivery (connect, send, answer) must finish within this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
}

/// Where a sink sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SinkKind {
    /// RFC 5424 messages over TLS (RFC 5425).
    Syslog,
    /// Batched HTTP POSTs.
    Http,
}

/// The body of an HTTP sink's POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HttpFormat {
    /// One JSON object per line (`application/x-ndjson`).
    #[default]
    Jsonl,
    /// Elasticsearch/OpenSearch `_bulk`: a `create` action line, then the document.
    Elasticsearch,
    /// Splunk HTTP Event Collector: concatenated `{"time","host","event"}` objects.
    SplunkHec,
    /// Graylog GELF 1.1 objects, one per line.
    Gelf,
}

fn default_index() -> String {
    "plumbline".into()
}
fn default_facility() -> u8 {
    13
}
fn default_min_severity() -> Severity {
    Severity::Info
}
fn default_hosts() -> String {
    "*".into()
}
fn default_batch_events() -> usize {
    500
}
fn default_poll_interval() -> u64 {
    1000
}
fn default_max_backoff() -> u64 {
    60
}
fn default_timeout() -> u64 {
    10
}

/// Whether `name` may name a sink or an alert: `[A-Za-z0-9_.-]{1,64}`.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl SinkConfig {
    /// Whether this sink forwards `e`.
    pub fn accepts(&self, e: &EventRow) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&e.kind))
            && severity_of(&e.severity) >= self.min_severity
            && host_matches(&self.hosts, &e.host)
    }

    /// The checks a parser cannot make, for entry `i` of `forward`.
    pub(crate) fn check(&self, i: usize, doc: &Document, out: &mut Vec<Diagnostic>) {
        let f = |field: &str| format!("forward[{i}].{field}");
        if !valid_name(&self.name) {
            out.push(doc.at(
                &f("name"),
                "must be 1 to 64 characters among A-Z a-z 0-9 _ . -",
            ));
        }
        match self.kind {
            SinkKind::Syslog => match &self.address {
                None => out.push(doc.at(&f("type"), "a syslog sink needs address = \"HOST:PORT\"")),
                Some(a) => {
                    if split_host_port(a).is_none() {
                        out.push(doc.at(&f("address"), "must be HOST:PORT"));
                    }
                    if self.ca.is_none() {
                        out.push(doc.at(
                            &f("type"),
                            "a syslog sink needs ca (the receiver's CA: syslog goes over TLS)",
                        ));
                    }
                }
            },
            SinkKind::Http => match &self.url {
                None => out.push(doc.at(&f("type"), "an http sink needs url")),
                Some(u) => match super::client::Endpoint::parse(u) {
                    Err(e) => out.push(doc.at(&f("url"), e.to_string())),
                    Ok(ep) if ep.tls && self.ca.is_none() => out.push(doc.at(
                        &f("url"),
                        "an https url needs ca (the receiver's CA certificate)",
                    )),
                    Ok(_) => {}
                },
            },
        }
        if self.client_cert.is_some() != self.client_key.is_some() {
            out.push(doc.at(&f("client_cert"), "client_cert and client_key go together"));
        }
        if self.facility > 23 {
            out.push(doc.at(&f("facility"), "must be 0 to 23"));
        }
        for (k, kind) in self.kinds.iter().enumerate() {
            if !KINDS.contains(&kind.as_str()) {
                out.push(doc.at(
                    &format!("forward[{i}].kinds[{k}]"),
                    format!("unknown event kind (one of {})", KINDS.join(", ")),
                ));
            }
        }
        for (field, v) in [
            ("batch_events", self.batch_events as u64),
            ("poll_interval_ms", self.poll_interval_ms),
            ("max_backoff_secs", self.max_backoff_secs),
            ("timeout_secs", self.timeout_secs),
        ] {
            if v == 0 {
                out.push(doc.at(&f(field), "must be at least 1"));
            }
        }
        if self.batch_events > 100_000 {
            out.push(doc.at(&f("batch_events"), "must be at most 100000"));
        }
    }

    /// The host name the receiver's certificate must carry.
    pub(crate) fn tls_name(&self) -> Option<String> {
        if let Some(n) = &self.server_name {
            return Some(n.clone());
        }
        match self.kind {
            SinkKind::Syslog => self
                .address
                .as_deref()
                .and_then(split_host_port)
                .map(|(h, _)| h.to_string()),
            SinkKind::Http => self
                .url
                .as_deref()
                .and_then(|u| super::client::Endpoint::parse(u).ok())
                .map(|e| e.host),
        }
    }
}

/// `HOST:PORT` (IPv6 in brackets) split, `None` when it is not that.
pub(crate) fn split_host_port(a: &str) -> Option<(&str, u16)> {
    let (host, port) = a.rsplit_once(':')?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let port = port.parse().ok()?;
    (!host.is_empty()).then_some((host, port))
}

/// The severity a stored name means (`info` for an unknown one).
pub(crate) fn severity_of(name: &str) -> Severity {
    [
        Severity::Info,
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|s| s.name() == name)
    .unwrap_or(Severity::Info)
}
