//! Bulk loads of whole stored rows, as a store keeps them, without the
//! ingestion's derivations: `plumb-collector storage migrate` (a SQLite
//! store copied into PostgreSQL) and `plumb-loadgen seed` (a synthetic
//! fleet for the benchmarks). Both backends load through [`BulkLoad`]
//! (PostgreSQL with `COPY`, SQLite with prepared statements in one
//! transaction per call), into the schema the collector itself creates
//! ([`open_target`] runs its migrations first).
//!
//! Every load is idempotent: a row already stored is left as it is (events:
//! same host and seq; rule states: same host and rule unless newer; hosts:
//! merged; baselines: same id and version; daily scores: the day counted
//! from more snapshots; refusals: the newer; forwarding cursors: the
//! further), so an interrupted migration re-run completes without
//! duplicates.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use super::{StorageError, postgres::Postgres, sqlite::Sqlite};
use crate::config::{PostgresSection, Synchronous};
use serde::Serialize;
use std::path::Path;

/// One `hosts` row.
#[derive(Debug, Clone, PartialEq)]
pub struct HostRecord {
    /// Host identity, canonical (lowercase).
    pub host: String,
    /// Unix time of the first batch.
    pub first_seen: i64,
    /// Unix time of the last batch.
    pub last_seen: i64,
    /// Peer address of the last batch.
    pub address: Option<String>,
    /// Agent version.
    pub agent_version: Option<String>,
    /// Baseline id in force.
    pub baseline_id: Option<String>,
    /// Baseline version in force.
    pub baseline_version: Option<i64>,
    /// FIM database digest.
    pub fim_digest: Option<String>,
    /// Compliance score of the last snapshot.
    pub score: Option<f64>,
    /// OS of the last snapshot.
    pub os: Option<String>,
    /// Kernel of the last snapshot.
    pub kernel: Option<String>,
    /// Seq of the last snapshot stored.
    pub last_snapshot_seq: i64,
    /// Highest seq stored (the acknowledgement).
    pub acked_seq: i64,
    /// Highest seq removed by retention.
    pub pruned_seq: i64,
}

/// One `rule_status` row.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleRecord {
    /// Host identity.
    pub host: String,
    /// Rule id.
    pub rule: String,
    /// Status name.
    pub status: String,
    /// Severity name.
    pub severity: String,
    /// ISSP domains, as JSON (`[13,20]`).
    pub domains: String,
    /// Rule title.
    pub title: String,
    /// Seq of the event that set it.
    pub seq: i64,
    /// Unix time it was set.
    pub updated_at: i64,
}

/// One `events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRecord {
    /// Host identity.
    pub host: String,
    /// Agent's sequence number.
    pub seq: i64,
    /// Event kind.
    pub kind: String,
    /// Severity name.
    pub severity: String,
    /// Severity rank (info 0 .. critical 4).
    pub sev_rank: i16,
    /// Unix time the agent produced it.
    pub time: i64,
    /// Unix time the collector stored it.
    pub received_at: i64,
    /// The whole event as received (JSON).
    pub body: String,
}

/// One `baselines` row.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineRecord {
    /// Baseline id.
    pub id: String,
    /// Version.
    pub version: i64,
    /// Signer key id.
    pub key_id: String,
    /// Host glob.
    pub hosts: String,
    /// The exact bundle bytes.
    pub bytes: Vec<u8>,
    /// Hex SHA-256 of `bytes`.
    pub sha256: String,
    /// Unix time of publication.
    pub published_at: i64,
}

/// One `score_daily` row: the fleet score of one UTC day (the console's
/// compliance chart).
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreDayRecord {
    /// UTC day number (unix time / 86,400).
    pub day: i64,
    /// Sum of the scores of the snapshots stored that day.
    pub score_sum: f64,
    /// Snapshots stored that day.
    pub samples: i64,
}

/// One `baseline_refusals` row: a host's standing refusal of a bundle.
#[derive(Debug, Clone, PartialEq)]
pub struct RefusalRecord {
    /// Host identity.
    pub host: String,
    /// Unix time of the refusal.
    pub time: i64,
    /// The agent's reason.
    pub message: String,
}

/// One `forward_cursors` row: how far a consumer (`forward:NAME`, a
/// `[[forward]]` sink, or `alerts`) got in one host's events.
#[derive(Debug, Clone, PartialEq)]
pub struct CursorRecord {
    /// The consumer's key.
    pub consumer: String,
    /// Host identity.
    pub host: String,
    /// Highest seq of the host the consumer had acknowledged.
    pub seq: i64,
    /// Unix time the cursor last moved.
    pub updated_at: i64,
}

/// Whole-row loads, each call one transaction: what it commits stays even
/// if the process is killed before the next.
pub trait BulkLoad {
    /// Inserts hosts; a host already stored is merged (earliest first
    /// seen, latest last seen, highest seqs, the rest from the one seen
    /// last). Returns the rows inserted or changed.
    fn load_hosts(&mut self, rows: &[HostRecord]) -> Result<u64, StorageError>;
    /// Inserts rule states; one already stored is replaced only by a newer
    /// one (higher seq). Returns the rows inserted or changed.
    fn load_rules(&mut self, rows: &[RuleRecord]) -> Result<u64, StorageError>;
    /// Inserts events not stored yet (same host and seq: left as is).
    /// Returns the rows inserted.
    fn load_events(&mut self, rows: &[EventRecord]) -> Result<u64, StorageError>;
    /// Inserts published baselines not stored yet (same id and version:
    /// left as is). Returns the rows inserted.
    fn load_baselines(&mut self, rows: &[BaselineRecord]) -> Result<u64, StorageError>;
    /// Inserts daily fleet scores; a day already stored is replaced only
    /// by one counted from more snapshots (the two cannot be added: a
    /// re-run would count the same snapshots twice). Returns the rows
    /// inserted or changed.
    fn load_score_days(&mut self, rows: &[ScoreDayRecord]) -> Result<u64, StorageError>;
    /// Inserts standing refusals; one already stored is replaced only by a
    /// newer one. Returns the rows inserted or changed.
    fn load_refusals(&mut self, rows: &[RefusalRecord]) -> Result<u64, StorageError>;
    /// Inserts forwarding cursors; one already stored only moves forward.
    /// Returns the rows inserted or changed.
    fn load_cursors(&mut self, rows: &[CursorRecord]) -> Result<u64, StorageError>;
}

/// A store to bulk-load: `sqlite:PATH` or a PostgreSQL connection string.
#[derive(Debug, Clone)]
pub enum Target {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL database.
    Postgres(PostgresSection),
}

/// Opens `target` for bulk loads, creating and migrating its schema as the
/// collector does.
pub fn open_target(target: &Target) -> Result<Box<dyn BulkLoad>, StorageError> {
    Ok(match target {
        Target::Sqlite(path) => Box::new(Sqlite::open(path, Synchronous::Normal)?),
        Target::Postgres(cfg) => Box::new(Postgres::open(cfg)?),
    })
}

/// What a migration did to one table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct TableCount {
    /// Rows in the source store.
    pub source: u64,
    /// Rows inserted (or, for hosts and rule states, changed).
    pub copied: u64,
    /// Rows already in the target as they are (a re-run).
    pub unchanged: u64,
}

/// What `storage migrate` did, per table.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct MigrateReport {
    /// Published baselines.
    pub baselines: TableCount,
    /// Hosts.
    pub hosts: TableCount,
    /// Rule states.
    pub rule_status: TableCount,
    /// Events (seqs preserved).
    pub events: TableCount,
    /// Fleet score per day (the console's compliance chart).
    pub score_daily: TableCount,
    /// Standing baseline refusals (the console's baselines page).
    pub baseline_refusals: TableCount,
    /// Forwarding and alert cursors: per consumer and host, the seq
    /// reached. Seqs are kept, so each sink resumes exactly where it
    /// stopped on SQLite (same `[[forward]] name`): nothing resent, nothing
    /// skipped.
    pub forward_cursors: TableCount,
}

impl TableCount {
    fn add(&mut self, source: usize, copied: u64) {
        let source = source as u64;
        self.source += source;
        self.copied += copied;
        self.unchanged += source.saturating_sub(copied);
    }
}

/// Copies everything a SQLite store holds into `to` (a PostgreSQL
/// database, migrated first), in transactions of at most `chunk` rows;
/// `progress` is told after each. The source is read in one read
/// transaction (a consistent copy, even if its collector still runs; stop
/// it first, or events it stores meanwhile are not copied).
///
/// Order: baselines, events by (host, seq), rule states, daily scores,
/// refusals, forwarding cursors, then hosts last:
/// a host's row (and its `acked_seq`, the promise that everything up to it
/// is stored) appears only once its events are in. An interrupted run
/// leaves a prefix of that order; a re-run skips what is there.
pub fn migrate_sqlite(
    from: &Path,
    to: &Target,
    chunk: usize,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<MigrateReport, StorageError> {
    let source = Sqlite::open_read_only(from)?;
    let mut target = open_target(to)?;
    sqlite::copy_out(&source, target.as_mut(), chunk.max(1), progress)
}
