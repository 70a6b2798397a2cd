//! Events: what an agent sends to the collector (`POST /v1/events`). Every
//! event carries the agent's monotonically increasing `seq`; the collector
//! deduplicates on (host, seq) and acknowledges the highest stored.

use crate::baseline::Severity;
use crate::issp::Criterion;
use crate::report::{BaselineRef, Status, Summary};
use serde::{Deserialize, Serialize};

/// Version of the event wire format.
pub const EVENT_SCHEMA: u32 = 1;

/// One event, as stored in the agent's outbox and sent on the wire.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Per-agent sequence number, starting at 1, never reused.
    pub seq: u64,
    /// RFC 3339 UTC time the event was produced.
    pub time: String,
    /// How urgent it is (a rule's or watch's severity; `info` for routine events).
    pub severity: Severity,
    /// What happened.
    #[serde(flatten)]
    pub body: EventBody,
}

/// The kinds of event (docs/reference/wire.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A rule's status changed since the last evaluation.
    CheckChanged(CheckChanged),
    /// A watched file changed.
    FimChange(FimChangeEvent),
    /// The FIM database failed its seal: someone edited it without the key.
    FimTamper {
        /// What failed verification.
        detail: Vec<String>,
    },
    /// Periodic full state.
    Snapshot(Box<Snapshot>),
    /// A remediation run.
    Remediation(RemediationEvent),
    /// The agent's own life: started, stopped, reloaded, baseline applied or refused, errors.
    Agent(AgentEvent),
}

impl EventBody {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            EventBody::CheckChanged(_) => "check_changed",
            EventBody::FimChange(_) => "fim_change",
            EventBody::FimTamper { .. } => "fim_tamper",
            EventBody::Snapshot(_) => "snapshot",
            EventBody::Remediation(_) => "remediation",
            EventBody::Agent(_) => "agent",
        }
    }
}

/// `check_changed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckChanged {
    /// Rule id.
    pub rule: String,
    /// Rule title.
    pub title: String,
    /// Status before (`None`: first evaluation of this rule).
    pub previous: Option<Status>,
    /// Status now.
    pub status: Status,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// ISSP criteria.
    pub criteria: Vec<Criterion>,
    /// What was observed.
    pub evidence: Vec<String>,
    /// The baseline the rule comes from.
    pub baseline: BaselineRef,
}

/// `fim_change`: the same fields as a change in `plumb fim check --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FimChangeEvent {
    /// In-root path: a string, or `{"hex", "lossy"}` when it is not UTF-8
    /// (as in `plumb fim` reports), so every path arrives distinct and whole.
    pub path: crate::fim::ReportPath,
    /// `added`, `removed` or `modified`.
    pub change: String,
    /// Attributes that differ.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Old values of those attributes.
    #[serde(default)]
    pub old: serde_json::Value,
    /// New values of those attributes.
    #[serde(default)]
    pub new: serde_json::Value,
    /// ISSP domains of the watch.
    #[serde(default)]
    pub domains: Vec<u8>,
    /// The owning package's verdict, as in `plumb fim check`; absent when
    /// no package owns the path or its content did not change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub package: Option<crate::fim::PackageVerdict>,
}

/// Host facts carried by snapshots.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostFacts {
    /// host name
    pub hostname: String,
    /// OS name and version
    pub os: String,
    /// kernel release
    pub kernel: String,
    /// seconds since boot
    pub uptime_s: u64,
    /// logical CPUs
    pub cpus: u32,
    /// total memory in bytes
    pub memory_bytes: u64,
}

/// One rule's current status in a snapshot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleStatus {
    /// Rule id.
    pub id: String,
    /// Status.
    pub status: Status,
    /// Severity.
    pub severity: Severity,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// Rule title.
    #[serde(default)]
    pub title: String,
}

/// `snapshot`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Agent version.
    pub agent_version: String,
    /// Baseline in force.
    pub baseline: Option<BaselineRef>,
    /// Host facts.
    pub facts: HostFacts,
    /// Sealed digest of the FIM database (hex), when there is one.
    pub fim_digest: Option<String>,
    /// Counts and score.
    pub summary: Summary,
    /// Every rule's status.
    pub rules: Vec<RuleStatus>,
}

/// `remediation`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RemediationEvent {
    /// Journal id; `plumb remediate --rollback ID` undoes the run.
    pub rollback_id: String,
    /// Rule id.
    pub rule: String,
    /// Action kind.
    pub action: String,
    /// `fixed`, `still_failing`, `error`, `dry_run`.
    pub result: String,
    /// What was changed, in words.
    pub changes: Vec<String>,
}

/// What an `agent` event reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AgentEventKind {
    /// The daemon started.
    Started,
    /// The daemon stopped.
    Stopped,
    /// Config and baseline reloaded.
    Reloaded,
    /// A new baseline was verified and applied.
    BaselineApplied,
    /// A baseline was refused (reason in the message).
    BaselineRefused,
    /// Something degraded but the agent carries on (watch limit, queue overflow...).
    Warning,
    /// Events were dropped because the outbox was full.
    EventsDropped,
    /// An error.
    Error,
}

/// `agent`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentEvent {
    /// What happened.
    pub what: AgentEventKind,
    /// In words.
    pub message: String,
    /// Agent version.
    #[serde(default)]
    pub agent_version: String,
    /// Baseline in force, when there is one.
    #[serde(default)]
    pub baseline: Option<BaselineRef>,
}

/// `POST /v1/events` body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventBatch {
    /// Wire format version ([`EVENT_SCHEMA`]).
    pub schema: u32,
    /// The host the events are from; must match the client certificate.
    pub host: String,
    /// Events in increasing `seq` order.
    pub events: Vec<Event>,
}

/// `POST /v1/events` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchAck {
    /// Highest `seq` stored for this host; the agent may delete up to it.
    pub acked_seq: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_shape_is_flat_with_a_kind_tag() {
        let e = Event {
            seq: 7,
            time: "2026-11-27T10:00:00Z".into(),
            severity: Severity::High,
            body: EventBody::FimTamper {
                detail: vec!["row 3 seal mismatch".into()],
            },
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["kind"], "fim_tamper");
        assert_eq!(v["seq"], 7);
        assert_eq!(serde_json::from_value::<Event>(v).unwrap(), e);
    }

    /// Found by the `event_batch` fuzz target: a number serde_json's default
    /// (best-effort) float parser read 1 ULP off, so the stored event no
    /// longer read back as the one the agent sent. Parsing is exact now
    /// (`float_roundtrip`).
    #[test]
    fn a_number_in_an_event_reads_back_exactly_as_sent() {
        let sent = r#"{"seq":42,"time":"2026-11-27T10:00:04Z","severity":"medium","kind":"fim_change","path":"/etc/passwd","change":"modified","fields":["mtime"],"old":{"mtime":0.5},"new":{"mtime":100000000000700000000000000000000000000000000000000.0}}"#;
        let e: Event = serde_json::from_str(sent).unwrap();
        let stored = serde_json::to_string(&e).unwrap();
        let back: Event = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, e, "stored as {stored}");
    }
}
