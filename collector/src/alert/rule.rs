//! One `[[alert]]` rule as configured, and which events fire it.

use crate::forward::format::summary;
use crate::forward::sink::{severity_of, valid_name};
use crate::storage::{EventRow, host_matches};
use plumb_core::Severity;
use plumb_core::{Diagnostic, Document};
use serde::Deserialize;
use std::path::PathBuf;

/// One `[[alert]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRule {
    /// Unique name (`[A-Za-z0-9_.-]`, at most 64): in the body and the metrics.
    pub name: String,
    /// What fires it.
    pub on: AlertOn,
    /// `rule_fail`: only rules at least this severe.
    #[serde(default = "default_min_severity")]
    pub min_severity: Severity,
    /// `host_stale`: a host unheard of for longer than this many seconds.
    #[serde(default)]
    pub stale_after_secs: Option<u64>,
    /// Only hosts matching this glob (`*`, `?`; case-insensitive).
    #[serde(default = "default_hosts")]
    pub hosts: String,
    /// The webhook URL (`https://…`; `http://` only on a trusted network).
    pub webhook: String,
    /// CA certificate(s) (PEM) of an `https` webhook. Unset: the system's
    /// usual public roots are not used; give the CA that signed the
    /// endpoint (for a public endpoint, a bundle such as
    /// `/etc/ssl/certs/ca-certificates.crt`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// File holding the HMAC-SHA256 key (first line; mode 0600): every
    /// request carries `X-Plumb-Signature: sha256=HEX` of its body.
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
    /// The body as a JSON template with `{{placeholder}}`s (see
    /// [`super::webhook::PLACEHOLDERS`]), replaced by JSON-escaped values;
    /// unset: the default body.
    #[serde(default)]
    pub template: Option<String>,
    /// The same (alert, host, rule) fires at most once per this many seconds.
    #[serde(default = "default_window")]
    pub dedup_window_secs: u64,
    /// Attempts per alert (with backoff 1 s, 2 s, 4 s …) before it is counted failed.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// One attempt must finish within this many seconds.
    #[serde(default = "default_timeout")]
    pub timeout_secs: u64,
    /// Events received longer ago than this (seconds) fire no alert: an
    /// alert configured on an old store does not page for its history.
    #[serde(default = "default_max_age")]
    pub max_event_age_secs: u64,
}

/// What fires an alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertOn {
    /// A `fim_tamper` event: the FIM database failed its seal.
    FimTamper,
    /// A `check_changed` event to `fail` of a rule at least `min_severity`.
    RuleFail,
    /// A host unheard of for longer than `stale_after_secs`.
    HostStale,
    /// An agent refused a baseline (`agent` event `baseline_refused`).
    BaselineRefused,
}

impl AlertOn {
    /// The name in the body.
    pub fn name(self) -> &'static str {
        match self {
            AlertOn::FimTamper => "fim_tamper",
            AlertOn::RuleFail => "rule_fail",
            AlertOn::HostStale => "host_stale",
            AlertOn::BaselineRefused => "baseline_refused",
        }
    }
}

fn default_min_severity() -> Severity {
    Severity::High
}
fn default_hosts() -> String {
    "*".into()
}
fn default_window() -> u64 {
    3600
}
fn default_attempts() -> u32 {
    5
}
fn default_timeout() -> u64 {
    10
}
fn default_max_age() -> u64 {
    3600
}

/// What an alert is about.
#[derive(Debug, Clone)]
pub struct Fired {
    /// The host.
    pub host: String,
    /// The rule id (`rule_fail`), else empty.
    pub rule: String,
    /// Severity name.
    pub severity: String,
    /// One line for people.
    pub summary: String,
    /// Unix time of what happened.
    pub time: i64,
    /// The event, when an event fired it.
    pub event: Option<EventRow>,
}

impl AlertRule {
    /// What `e` fires, if anything (`host_stale` is not fired by events).
    pub fn fired_by(&self, e: &EventRow) -> Option<Fired> {
        if !host_matches(&self.hosts, &e.host) {
            return None;
        }
        let b = &e.body;
        let rule = match self.on {
            AlertOn::FimTamper if e.kind == "fim_tamper" => String::new(),
            AlertOn::RuleFail
                if e.kind == "check_changed"
                    && b.get("status").and_then(|s| s.as_str()) == Some("fail")
                    && severity_of(&e.severity) >= self.min_severity =>
            {
                b.get("rule")
                    .and_then(|r| r.as_str())
                    .unwrap_or("")
                    .to_string()
            }
            AlertOn::BaselineRefused
                if e.kind == "agent"
                    && b.get("what").and_then(|w| w.as_str()) == Some("baseline_refused") =>
            {
                String::new()
            }
            _ => return None,
        };
        Some(Fired {
            host: e.host.clone(),
            rule,
            severity: e.severity.clone(),
            summary: summary(e),
            time: e.time,
            event: Some(e.clone()),
        })
    }

    /// The checks a parser cannot make, for entry `i` of `alert`.
    pub(crate) fn check(&self, i: usize, doc: &Document, out: &mut Vec<Diagnostic>) {
        let f = |field: &str| format!("alert[{i}].{field}");
        if !valid_name(&self.name) {
            out.push(doc.at(
                &f("name"),
                "must be 1 to 64 characters among A-Z a-z 0-9 _ . -",
            ));
        }
        match crate::forward::client::Endpoint::parse(&self.webhook) {
            Err(e) => out.push(doc.at(&f("webhook"), e.to_string())),
            Ok(ep) if ep.tls && self.ca.is_none() => out.push(doc.at(
                &f("webhook"),
                "an https webhook needs ca (the endpoint's CA certificate or bundle)",
            )),
            Ok(_) => {}
        }
        match (self.on, self.stale_after_secs) {
            (AlertOn::HostStale, None | Some(0)) => {
                out.push(doc.at(&f("on"), "host_stale needs stale_after_secs (at least 1)"))
            }
            (AlertOn::HostStale, _) | (_, None) => {}
            (_, Some(_)) => {
                out.push(doc.at(&f("stale_after_secs"), "only for on = \"host_stale\""))
            }
        }
        if let Some(t) = &self.template {
            if let Err(e) = super::webhook::check_template(t) {
                out.push(doc.at(&f("template"), e.to_string()));
            }
        }
        for (field, v) in [
            ("dedup_window_secs", self.dedup_window_secs),
            ("attempts", u64::from(self.attempts)),
            ("timeout_secs", self.timeout_secs),
            ("max_event_age_secs", self.max_event_age_secs),
        ] {
            if v == 0 {
                out.push(doc.at(&f(field), "must be at least 1"));
            }
        }
    }
}
