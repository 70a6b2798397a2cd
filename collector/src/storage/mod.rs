//! Storage behind the collector, backend-neutral: the server, the writer and
//! the commands see the [`Storage`] (writes) and [`Queries`] (reads) traits
//! and [`StorageError`], and pick a backend with [`open`] and
//! [`open_read_only`] from the `[storage]` section: `sqlite` (embedded, one
//! collector) or `postgres` (one database, any number of collectors).
//!
//! Every method may block (SQLite does disk I/O): callers run them off the
//! async runtime's worker threads — the `writer` thread for ingestion and
//! retention, `spawn_blocking` for the server's reads, plain threads in the
//! commands. A backend with an async driver implements them by blocking on
//! its own futures there (`tokio::runtime::Handle::block_on`).

pub mod bulk;
pub mod compliance;
pub mod host_page;
pub(crate) mod postgres;
pub(crate) mod sqlite;
pub(crate) mod writer;

use crate::config::StorageSection;
pub use compliance::{Compliance, DomainCompliance, WorstRule};
pub use host_page::{HostPage, HostQuery, HostSort, HostStatus};
use plumb_core::Severity;
use plumb_core::event::Event;
use plumb_core::report::Status;
use serde::Serialize;

/// The error of a backend (driver or database), boxed so that no driver's
/// type appears in the traits.
pub type BackendError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A storage failure.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The database refused or failed.
    #[error("{context}: {source}")]
    Backend {
        /// what was being done (and on which database)
        context: String,
        /// the backend's error
        source: BackendError,
    },
    /// The state directory is missing and cannot be created, or others
    /// may write it (`plumb_os::private`).
    #[error(transparent)]
    Directory(#[from] plumb_os::TrustError),
    /// The database file could not be created or made private (0600).
    #[error("{}: {source}", path.display())]
    File {
        /// the database file
        path: std::path::PathBuf,
        /// the error
        source: std::io::Error,
    },
    /// A read-only open of a database that does not exist.
    #[error("{at}: no such database (has the collector run with this storage path?)")]
    NoDatabase {
        /// the database
        at: String,
    },
    /// The schema was written by a newer collector.
    #[error(
        "{at}: schema version {found} was written by a newer plumb-collector (this one knows {known})"
    )]
    NewerSchema {
        /// the database
        at: String,
        /// its schema version
        found: u32,
        /// the newest version this build knows
        known: u32,
    },
    /// A read-only open of a schema older than this build's (only a
    /// read-write open migrates).
    #[error(
        "{at}: schema version {found}, this plumb-collector reads {known}; start the collector once to migrate it"
    )]
    OlderSchema {
        /// the database
        at: String,
        /// its schema version
        found: u32,
        /// the version this build reads
        known: u32,
    },
    /// A number the database cannot hold.
    #[error("{what} {value} is too large to store")]
    OutOfRange {
        /// what it is
        what: &'static str,
        /// its value
        value: u64,
    },
    /// `[storage] backend` names no backend of this build.
    #[error("storage backend {0:?} is not supported by this build")]
    UnknownBackend(String),
    /// The backend does not keep this (SQLite keeps revocations in the CRL file).
    #[error("the {backend} backend does not store {what}")]
    Unsupported {
        /// the backend
        backend: &'static str,
        /// what it does not store
        what: &'static str,
    },
}

/// Opens the configured store for writing (creating and migrating it).
pub fn open(cfg: &StorageSection) -> Result<Box<dyn Storage>, StorageError> {
    match cfg.backend.as_str() {
        "sqlite" => Ok(Box::new(sqlite::Sqlite::open(&cfg.path, cfg.synchronous)?)),
        "postgres" => Ok(Box::new(postgres::Postgres::open(&cfg.postgres)?)),
        other => Err(StorageError::UnknownBackend(other.to_string())),
    }
}

/// Opens the configured store for reading; it must exist with the schema of
/// this build (nothing is created or migrated).
pub fn open_read_only(cfg: &StorageSection) -> Result<Box<dyn Queries>, StorageError> {
    match cfg.backend.as_str() {
        "sqlite" => Ok(Box::new(sqlite::Sqlite::open_read_only(&cfg.path)?)),
        "postgres" => Ok(Box::new(postgres::Postgres::open_read_only(&cfg.postgres)?)),
        other => Err(StorageError::UnknownBackend(other.to_string())),
    }
}

/// Opens the configured store for the forwarding and alert cursors
/// (`crate::forward`): a connection of its own beside the writer's. The
/// writer opens (and migrates) the store first.
pub fn open_cursors(cfg: &StorageSection) -> Result<Box<dyn Cursors>, StorageError> {
    match cfg.backend.as_str() {
        "sqlite" => Ok(Box::new(sqlite::Sqlite::open(&cfg.path, cfg.synchronous)?)),
        "postgres" => Ok(Box::new(postgres::Postgres::open(&cfg.postgres)?)),
        other => Err(StorageError::UnknownBackend(other.to_string())),
    }
}

/// The canonical form of a host identity, the one storage keeps and
/// queries compare with: ASCII lowercase (identities compare ASCII
/// case-insensitively, so `WEB-12` and `web-12` are one host).
pub fn canonical_host(name: &str) -> String {
    name.to_ascii_lowercase()
}

/// One accepted batch, ready to be stored.
#[derive(Debug, Clone)]
pub struct IngestBatch {
    /// Host identity (from the client certificate), canonical
    /// ([`canonical_host`]): a backend stores it as given.
    pub host: String,
    /// Peer address, for the hosts table.
    pub address: Option<String>,
    /// Unix time of reception.
    pub received_at: i64,
    /// Events in strictly increasing `seq` order, times already validated.
    pub events: Vec<Event>,
}

/// The write side. The collector has one writer (the `writer` thread);
/// `baseline publish` opens another for one transaction.
pub trait Storage: Send {
    /// Stores every batch in one transaction (group commit) and returns, for
    /// each batch, the highest `seq` stored for its host. Events already
    /// stored (same host and seq) are left as they are. Returns only after
    /// the commit is durable: the answer is the agent's acknowledgement.
    fn ingest(&mut self, batches: &[IngestBatch]) -> Result<Vec<u64>, StorageError>;
    /// Deletes events received before `cutoff` (unix time), except each
    /// host's latest snapshot; returns how many were deleted.
    fn prune(&mut self, cutoff: i64) -> Result<u64, StorageError>;
    /// Stores a verified bundle. The same id and version with the same
    /// bytes and hosts is a no-op; with anything else it is refused (a
    /// published version never changes).
    fn publish_baseline(&mut self, b: &NewBaseline) -> Result<PublishOutcome, StorageError>;
    /// Records a revoked agent certificate for every collector of the
    /// store; `false` when it was already recorded. Backends without shared
    /// revocations (SQLite: the CRL file is the record) refuse.
    fn record_revocation(&mut self, r: &Revocation) -> Result<bool, StorageError> {
        let _ = r;
        Err(StorageError::Unsupported {
            backend: "sqlite",
            what: "revocations (the CRL file is the record)",
        })
    }
}

/// What a consumer (a forwarding sink, the alerts) has to handle next.
#[derive(Debug, Clone, Default)]
pub struct Pending {
    /// Events past the consumer's cursor, by host then seq (each host's in
    /// seq order).
    pub events: Vec<EventRow>,
    /// Hosts whose events past the cursor are gone (pruned by retention
    /// before they were handled), with the seq the cursor may move to.
    pub gone: Vec<(String, u64)>,
}

/// The durable cursors of the consumers of the event stream: per consumer
/// and host, the highest seq handled (acknowledged by the sink). Per host,
/// since a host's seqs are stored in order on every backend (the agent
/// sends in order, one batch at a time) while a global id is not commit
/// ordered across PostgreSQL collectors.
pub trait Cursors: Send {
    /// At most about `limit` events past `consumer`'s cursors, taken from
    /// the hosts advanced least recently first, so that no host's backlog
    /// starves the others.
    fn pending(&mut self, consumer: &str, limit: usize) -> Result<Pending, StorageError>;
    /// Moves `consumer`'s cursor of each host to at least the given seq
    /// (a cursor never moves back), in one transaction.
    fn advance(
        &mut self,
        consumer: &str,
        to: &[(String, u64)],
        now: i64,
    ) -> Result<(), StorageError>;
}

/// Events taken per host in one [`Cursors::pending`] call: an even share
/// of `limit`, at least a few.
pub(crate) fn per_host_share(limit: usize, hosts: usize) -> usize {
    (limit / hosts.max(1)).max(16).min(limit.max(1))
}

/// A revoked agent certificate.
#[derive(Debug, Clone)]
pub struct Revocation {
    /// Serial, lowercase hex (as `pki issue` prints it).
    pub serial: String,
    /// The certificate's subject (for people).
    pub subject: String,
    /// Unix time of the revocation.
    pub revoked_at: i64,
}

/// One host, as the `hosts` query shows it.
#[derive(Debug, Clone)]
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
#[derive(Debug, Clone)]
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
    /// Only this host (canonical, [`canonical_host`]).
    pub host: Option<String>,
    /// Only events produced at or after this unix time.
    pub since: Option<i64>,
    /// Only events at least this severe (rank 0 = info .. 4 = critical).
    pub min_severity: Option<u8>,
    /// At most this many, newest first.
    pub limit: usize,
}

/// Which rule statuses a backend reads.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RuleScope<'a> {
    /// Every one, by host then rule.
    All,
    /// One host's (canonical), by rule.
    Host(&'a str),
    /// One rule's, by host.
    Rule(&'a str),
}

/// One rule's current status on one host.
#[derive(Debug, Clone)]
pub struct RuleStatusRow {
    /// Host identity.
    pub host: String,
    /// Rule id.
    pub rule: String,
    /// Status.
    pub status: Status,
    /// Severity.
    pub severity: Severity,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// Rule title.
    pub title: String,
}

/// The read side: what the ops queries and `GET /v1/baseline` read. Shared
/// between threads (the server's baseline lookups run concurrently).
pub trait Queries: Send + Sync {
    /// Every host; `drift_recent` counts drift events produced since `drift_since`.
    fn hosts(&self, drift_since: i64) -> Result<Vec<HostRow>, StorageError>;
    /// One host (canonical), as [`Queries::hosts`] shows it (the console's
    /// host page: one row, not the fleet).
    fn host(&self, host: &str, drift_since: i64) -> Result<Option<HostRow>, StorageError> {
        Ok(self
            .hosts(drift_since)?
            .into_iter()
            .find(|h| h.host == host))
    }
    /// One page of the fleet: hosts filtered, sorted and cut by the
    /// database, `drift_recent` counted for the page's rows only, and the
    /// totals of every host kept (the console's fleet page).
    fn host_page(&self, q: &HostQuery) -> Result<HostPage, StorageError>;
    /// One rule's status on every host, by host (the console's rule page;
    /// indexed by rule).
    fn rule_host_statuses(&self, rule: &str) -> Result<Vec<RuleStatusRow>, StorageError>;
    /// Drift events, newest first.
    fn drift(&self, filter: &DriftFilter) -> Result<Vec<EventRow>, StorageError>;
    /// `fim_change` events produced since `since` (unix time), counted per
    /// host, package verdict and top-level directory ([`fim_class`]), by
    /// host (the report's file changes: no event body read; the report
    /// asks from a midnight UTC, which PostgreSQL answers from its daily
    /// counts).
    fn file_changes(&self, since: i64) -> Result<Vec<FimCount>, StorageError>;
    /// Every rule status on every host, by host then rule.
    fn rule_statuses(&self) -> Result<Vec<RuleStatusRow>, StorageError>;
    /// The fleet's compliance per ISSP domain (`report`). By default
    /// aggregated from every rule status ([`compliance::aggregate`]);
    /// PostgreSQL counts in SQL instead.
    fn compliance(&self) -> Result<Compliance, StorageError> {
        Ok(compliance::aggregate(&self.rule_statuses()?))
    }
    /// The fleet score per day (UTC day number: unix time / 86400) from
    /// `since_day` on, oldest first: the mean of the scores of the
    /// snapshots stored that day (the console's compliance chart).
    fn score_history(&self, since_day: i64) -> Result<Vec<DailyScore>, StorageError>;
    /// Each host's standing baseline refusal (its last `baseline_refused`
    /// not followed by a `baseline_applied`), newest first.
    fn baseline_refusals(&self) -> Result<Vec<RefusalRow>, StorageError>;
    /// One host's (canonical) rule statuses, by rule (the console's host
    /// page; indexed by host).
    fn host_rule_statuses(&self, host: &str) -> Result<Vec<RuleStatusRow>, StorageError>;
    /// One host's (canonical) events of any kind, highest seq first, at
    /// most `limit` (the console's host page; indexed by host and seq).
    fn host_events(&self, host: &str, limit: usize) -> Result<Vec<EventRow>, StorageError>;
    /// The `check_changed` events of `rule` on `hosts` (canonical names),
    /// each host's highest seq first (the console's rule page, for each
    /// host's last evidence): at least each host's newest (PostgreSQL
    /// returns only that one). A backend may return more rows than that
    /// rule's (it matches the rule's key in the stored body text): callers
    /// check the body's `rule`.
    fn rule_changes(&self, rule: &str, hosts: &[String]) -> Result<Vec<EventRow>, StorageError>;
    /// Every published baseline (without the bytes), newest version first.
    fn baselines(&self) -> Result<Vec<BaselineRow>, StorageError>;
    /// The stored bytes of one published baseline.
    fn baseline_bytes(&self, id: &str, version: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// The fleet in a few numbers, for the metrics endpoint: aggregates
    /// computed by the database (a handful of rows whatever the fleet's
    /// size). A host last seen at or before `stale_before` (unix time) is stale.
    fn fleet_summary(&self, stale_before: i64) -> Result<FleetSummary, StorageError>;
    /// The serials revoked in the store, `None` when the backend keeps no
    /// revocations (SQLite: the CRL files are the record).
    fn revoked_serials(&self) -> Result<Option<std::collections::HashSet<String>>, StorageError> {
        Ok(None)
    }
    /// The newest baseline (highest version) whose hosts pattern matches
    /// `host`, without its bytes: what `GET /v1/baseline` serves older
    /// agents, one bundle whatever the number of ids (ties: the one
    /// published last, then the first id), as [`Queries::baselines`] orders
    /// them.
    fn baseline_for(&self, host: &str) -> Result<Option<BaselineRow>, StorageError> {
        Ok(self
            .baselines()?
            .into_iter()
            .find(|b| host_matches(&b.hosts, host)))
    }
    /// For each baseline id, the newest version whose hosts pattern matches
    /// `host`, without the bytes, by id: what `GET /v1/baselines` lists. One
    /// id never shadows another (a fleet-wide id and one for a few hosts are
    /// both served to those hosts). Derived from [`Queries::baselines`]
    /// (a few rows per published version); a backend may answer it with
    /// one query instead.
    fn baselines_for(&self, host: &str) -> Result<Vec<BaselineRow>, StorageError> {
        let mut newest: std::collections::BTreeMap<String, BaselineRow> =
            std::collections::BTreeMap::new();
        for b in self.baselines()? {
            if !host_matches(&b.hosts, host) {
                continue;
            }
            match newest.get(&b.id) {
                Some(kept) if kept.version >= b.version => {}
                _ => {
                    newest.insert(b.id.clone(), b);
                }
            }
        }
        Ok(newest.into_values().collect())
    }
}

/// The fleet in a few numbers ([`Queries::fleet_summary`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FleetSummary {
    /// Hosts that ever reported.
    pub hosts: u64,
    /// Hosts not heard from since the `stale_before` asked for.
    pub stale: u64,
    /// Hosts with at least one failing rule now.
    pub failing: u64,
    /// Rule statuses over every host now: passing, failing, in error.
    pub pass: u64,
    /// See `pass`.
    pub fail: u64,
    /// See `pass`.
    pub error: u64,
    /// Hosts per baseline in force (id, version; `None` before a host
    /// reported one), by id then version.
    pub baselines: Vec<(Option<String>, Option<u64>, u64)>,
}

/// The SQL of [`Queries::fleet_summary`], the same on both backends:
/// hosts and stale hosts (parameter 1: `stale_before`)…
pub(crate) const FLEET_HOSTS_SQL: &str =
    "SELECT count(*), count(*) FILTER (WHERE last_seen <= $1) FROM hosts";
/// … rule statuses and the hosts having each …
pub(crate) const FLEET_RULES_SQL: &str =
    "SELECT status, count(*), count(DISTINCT host) FROM rule_status GROUP BY status";
/// … and hosts per baseline.
pub(crate) const FLEET_BASELINES_SQL: &str =
    "SELECT baseline_id, baseline_version, count(*) FROM hosts
     GROUP BY baseline_id, baseline_version ORDER BY baseline_id, baseline_version";

impl FleetSummary {
    /// Adds one row of [`FLEET_RULES_SQL`].
    pub(crate) fn add_rules(&mut self, status: &str, rules: i64, hosts: i64) {
        let rules = u64::try_from(rules).unwrap_or(0);
        match status {
            "pass" => self.pass += rules,
            "fail" => {
                self.fail += rules;
                self.failing += u64::try_from(hosts).unwrap_or(0);
            }
            "error" => self.error += rules,
            _ => {}
        }
    }
}

/// A host's standing baseline refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusalRow {
    /// Host identity.
    pub host: String,
    /// Unix time of the refusal (the agent's).
    pub time: i64,
    /// The agent's reason.
    pub message: String,
}

/// One day of the fleet score history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct DailyScore {
    /// UTC day number (unix time / 86400).
    pub day: i64,
    /// Mean score of the snapshots stored that day.
    pub score: f64,
    /// How many snapshots.
    pub samples: i64,
}

/// The text a stored `check_changed` body holds for `rule` (bodies are
/// compact JSON): `"rule":"ID"`, with the id JSON-escaped.
pub(crate) fn rule_key(rule: &str) -> String {
    format!(
        "\"rule\":{}",
        serde_json::to_string(rule).unwrap_or_else(|_| "\"\"".into())
    )
}

/// Severity rank for filtering and sorting (info 0 .. critical 4).
pub(crate) fn severity_rank(s: Severity) -> u8 {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// Unix time of an event's `time` (RFC 3339), `None` when it is not one.
pub(crate) fn event_time(e: &Event) -> Option<i64> {
    time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Event kinds that are drift.
pub(crate) const DRIFT_KINDS: [&str; 3] = ["check_changed", "fim_change", "fim_tamper"];

/// What `report` counts of a `fim_change`, stored with it at ingestion
/// (columns `fim_verdict` and `fim_top` of `events`) so that the report
/// counts in SQL instead of reading event bodies: the package verdict
/// (`verified`, `unverified`, `None` when no package owns the path) and,
/// unless verified, the top-level directory ([`ReportPath::top_dir`]).
/// `(None, None)` for any other kind.
///
/// [`ReportPath::top_dir`]: plumb_core::fim::ReportPath::top_dir
pub(crate) fn fim_class(e: &Event) -> (Option<&'static str>, Option<String>) {
    match &e.body {
        plumb_core::event::EventBody::FimChange(c) => match &c.package {
            Some(p) if p.verified => (Some("verified"), None),
            Some(_) => (Some("unverified"), Some(c.path.top_dir())),
            None => (None, Some(c.path.top_dir())),
        },
        _ => (None, None),
    }
}

/// [`fim_class`] of a stored row (kind and body as stored), for bulk loads:
/// a field the report cannot read counts as it always has (no package;
/// path `?`).
pub(crate) fn fim_class_of_body(kind: &str, body: &str) -> (Option<&'static str>, Option<String>) {
    use plumb_core::fim::{PackageVerdict, ReportPath};
    if kind != "fim_change" {
        return (None, None);
    }
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let path = v
        .get("path")
        .and_then(|p| serde_json::from_value::<ReportPath>(p.clone()).ok())
        .unwrap_or_else(|| ReportPath::Text("?".into()));
    let package = v
        .get("package")
        .and_then(|p| serde_json::from_value::<PackageVerdict>(p.clone()).ok());
    match package {
        Some(p) if p.verified => (Some("verified"), None),
        Some(_) => (Some("unverified"), Some(path.top_dir())),
        None => (None, Some(path.top_dir())),
    }
}

/// File changes of one host with one verdict and top-level directory
/// ([`Queries::file_changes`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FimCount {
    /// Host identity.
    pub host: String,
    /// `verified`, `unverified`, `None`: no package owns the path.
    pub verdict: Option<String>,
    /// Top-level directory (`None` when verified).
    pub top: Option<String>,
    /// How many changes.
    pub changes: u64,
}

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

/// What publishing `b` again means when (`sha`, `hosts`) is stored under
/// its id and version (every backend judges it here).
pub(crate) fn publish_conflict(b: &NewBaseline, sha: &str, hosts: &str) -> PublishOutcome {
    if sha == b.sha256 && hosts == b.hosts {
        return PublishOutcome::AlreadyPublished;
    }
    PublishOutcome::Conflict(if sha == b.sha256 {
        format!(
            "{} v{} is already published for hosts {hosts:?}; publish a new version to change its hosts",
            b.id, b.version
        )
    } else {
        format!(
            "{} v{} is already published with different bytes (sha256 {sha}); publish a new version",
            b.id, b.version
        )
    })
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
pub(crate) fn host_matches(pattern: &str, host: &str) -> bool {
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
