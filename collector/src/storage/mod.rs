//! Storage behind the collector. The handlers and queries only see the
//! [`Storage`] and [`Queries`] traits, so a PostgreSQL backend can be added
//! beside [`sqlite`] without touching them.

pub mod sqlite;
pub mod writer;

use plumb_core::event::Event;
use serde::Serialize;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed.
    #[error("{context}: {source}")]
    Db {
        /// what was being done
        context: String,
        /// the error
        source: rusqlite::Error,
    },
    /// The database is not one this version can use.
    #[error("{0}")]
    Schema(String),
}

/// One accepted batch, ready to be stored.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    /// Host identity (from the client certificate).
    pub host: String,
    /// Peer address, for the hosts table.
    pub address: Option<String>,
    /// Unix time of reception.
    pub received_at: i64,
    /// Events in strictly increasing `seq` order, times already validated.
    pub events: Vec<Event>,
}

/// What the ingestion path needs: one writer at a time.
pub trait Storage: Send {
    /// Stores every batch in one transaction (group commit) and returns, for
    /// each batch, the highest `seq` stored for its host. Events already
    /// stored (same host and seq) are left as they are.
    fn ingest(&mut self, batches: &[IngestBatch]) -> Result<Vec<u64>, StorageError>;
    /// Deletes events received before `cutoff` (unix time), except each
    /// host's latest snapshot; returns how many were deleted.
    fn prune(&mut self, cutoff: i64) -> Result<u64, StorageError>;
}

/// One host, as the `hosts` query shows it.
#[derive(Debug, Clone, Serialize)]
pub struct HostRow {
    /// Host identity.
    pub host: String,
    /// Unix time of the first batch.
    pub first_seen: i64,
    /// Unix time of the last batch.
    pub last_seen: i64,
    /// Peer address of the last batch.
    pub address: Option<String>,
    /// Agent version (last snapshot or agent event).
    pub agent_version: Option<String>,
    /// Baseline id in force.
    pub baseline_id: Option<String>,
    /// Baseline version in force.
    pub baseline_version: Option<u64>,
    /// FIM database digest from the last snapshot.
    pub fim_digest: Option<String>,
    /// Rules passing now.
    pub pass: u32,
    /// Rules failing now.
    pub fail: u32,
    /// Rules in error now.
    pub error: u32,
    /// Rules skipped now.
    pub skipped: u32,
    /// Drift events (check_changed, fim_change, fim_tamper) received since the `since` asked for.
    pub drift_recent: u32,
    /// Highest seq stored.
    pub acked_seq: u64,
}

/// A stored event.
#[derive(Debug, Clone, Serialize)]
pub struct EventRow {
    /// Host identity.
    pub host: String,
    /// Agent's sequence number.
    pub seq: u64,
    /// Event kind.
    pub kind: String,
    /// Severity name.
    pub severity: String,
    /// Unix time the agent produced it.
    pub time: i64,
    /// Unix time the collector stored it.
    pub received_at: i64,
    /// The whole event as received.
    pub body: serde_json::Value,
}

/// Filter for drift events.
#[derive(Debug, Clone, Default)]
pub struct DriftFilter {
    /// Only this host.
    pub host: Option<String>,
    /// Only events produced at or after this unix time.
    pub since: Option<i64>,
    /// Only events at least this severe (rank 0 = info .. 4 = critical).
    pub min_severity: Option<u8>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// One rule's current status on one host.
#[derive(Debug, Clone, Serialize)]
pub struct RuleStatusRow {
    /// Host identity.
    pub host: String,
    /// Rule id.
    pub rule: String,
    /// Status name.
    pub status: String,
    /// Severity name.
    pub severity: String,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// Rule title.
    pub title: String,
}

/// What the ops queries read.
pub trait Queries {
    /// Every host; `drift_recent` counts drift events produced since `drift_since`.
    fn hosts(&self, drift_since: i64) -> Result<Vec<HostRow>, StorageError>;
    /// Drift events, newest first.
    fn drift(&self, filter: &DriftFilter) -> Result<Vec<EventRow>, StorageError>;
    /// Every rule status on every host.
    fn rule_statuses(&self) -> Result<Vec<RuleStatusRow>, StorageError>;
}

/// Severity rank for filtering and sorting (info 0 .. critical 4).
pub fn severity_rank(s: plumb_core::Severity) -> u8 {
    use plumb_core::Severity::*;
    match s {
        Info => 0,
        Low => 1,
        Medium => 2,
        High => 3,
        Critical => 4,
    }
}

/// Event kinds that are drift.
pub const DRIFT_KINDS: [&str; 3] = ["check_changed", "fim_change", "fim_tamper"];

/// A verified bundle to publish.
#[derive(Debug, Clone)]
pub struct NewBaseline {
    /// Baseline id.
    pub id: String,
    /// Baseline version.
    pub version: u64,
    /// Key id of the signer.
    pub key_id: String,
    /// Host name glob (`*` and `?`, case-insensitive).
    pub hosts: String,
    /// The exact bundle bytes.
    pub bytes: Vec<u8>,
    /// Lowercase hex SHA-256 of `bytes`.
    pub sha256: String,
    /// Unix time of publication.
    pub published_at: i64,
}

/// What `publish` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Stored.
    Published,
    /// The same bytes were already published for the same hosts: nothing to do.
    AlreadyPublished,
    /// That id and version exist with other bytes or hosts (the reason).
    Conflict(String),
}

/// A published baseline, without its bytes.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BaselineRow {
    /// Baseline id.
    pub id: String,
    /// Baseline version.
    pub version: u64,
    /// Signer key id.
    pub key_id: String,
    /// Host name glob.
    pub hosts: String,
    /// Hex SHA-256 of the bundle bytes.
    pub sha256: String,
    /// Unix time of publication.
    pub published_at: i64,
}

/// Whether host name `host` matches `pattern`: `*` any run of characters,
/// `?` one character, everything else literal, ASCII case-insensitive
/// (host identities compare that way).
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let p: Vec<char> = pattern.chars().map(|c| c.to_ascii_lowercase()).collect();
    let h: Vec<char> = host.chars().map(|c| c.to_ascii_lowercase()).collect();
    // Iterative matcher with one backtrack point: linear-ish, no recursion.
    let (mut pi, mut hi) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while hi < h.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, hi));
                pi += 1;
            }
            Some(&c) if c == '?' || c == h[hi] => {
                pi += 1;
                hi += 1;
            }
            _ => match star {
                Some((sp, sh)) => {
                    pi = sp + 1;
                    hi = sh + 1;
                    star = Some((sp, sh + 1));
                }
                None => return false,
            },
        }
    }
    p[pi.min(p.len())..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::host_matches;

    #[test]
    fn host_globs() {
        assert!(host_matches("*", "web-12"));
        assert!(host_matches("web-*", "WEB-12"));
        assert!(host_matches("web-?2", "web-12"));
        assert!(!host_matches("web-?", "web-12"));
        assert!(!host_matches("db-*", "web-12"));
        assert!(host_matches("*-12", "web-12"));
        assert!(host_matches("w*b*2", "web-12"));
        assert!(!host_matches("web", "web-12"));
        assert!(host_matches("", ""));
        assert!(!host_matches("", "a"));
    }
}
