//! Bulk loads into SQLite (prepared statements, one transaction per call)
//! and the read of a whole SQLite store for `storage migrate`.

use super::{
    BaselineRecord, BulkLoad, EventRecord, HostRecord, MigrateReport, RuleRecord, TableCount,
};
use crate::storage::sqlite::{Sqlite, db};
use crate::storage::{StorageError, fim_class_of_body};
use rusqlite::{Connection, TransactionBehavior, params};

impl Sqlite {
    /// Runs `f` in one write transaction, naming `what` in its errors.
    fn bulk<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&rusqlite::Transaction<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StorageError> {
        let context = format!("{}: loading {what}", self.at);
        let conn = self.conn_mut();
        let run = || -> rusqlite::Result<T> {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        };
        run().map_err(db(context))
    }
}

impl BulkLoad for Sqlite {
    fn load_hosts(&mut self, rows: &[HostRecord]) -> Result<u64, StorageError> {
        self.bulk("hosts", |tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO hosts (host, first_seen, last_seen, address, agent_version, baseline_id,
                    baseline_version, fim_digest, score, os, kernel, last_snapshot_seq, acked_seq,
                    pruned_seq)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)
                 ON CONFLICT (host) DO UPDATE SET
                    first_seen = min(first_seen, excluded.first_seen),
                    last_seen = max(last_seen, excluded.last_seen),
                    address = CASE WHEN excluded.last_seen >= last_seen THEN excluded.address ELSE address END,
                    agent_version = CASE WHEN excluded.last_seen >= last_seen THEN excluded.agent_version ELSE agent_version END,
                    baseline_id = CASE WHEN excluded.last_seen >= last_seen THEN excluded.baseline_id ELSE baseline_id END,
                    baseline_version = CASE WHEN excluded.last_seen >= last_seen THEN excluded.baseline_version ELSE baseline_version END,
                    fim_digest = CASE WHEN excluded.last_seen >= last_seen THEN excluded.fim_digest ELSE fim_digest END,
                    score = CASE WHEN excluded.last_seen >= last_seen THEN excluded.score ELSE score END,
                    os = CASE WHEN excluded.last_seen >= last_seen THEN excluded.os ELSE os END,
                    kernel = CASE WHEN excluded.last_seen >= last_seen THEN excluded.kernel ELSE kernel END,
                    last_snapshot_seq = max(last_snapshot_seq, excluded.last_snapshot_seq),
                    acked_seq = max(acked_seq, excluded.acked_seq),
                    pruned_seq = max(pruned_seq, excluded.pruned_seq)
                 WHERE excluded.first_seen < first_seen OR excluded.last_seen > last_seen
                    OR excluded.last_snapshot_seq > last_snapshot_seq
                    OR excluded.acked_seq > acked_seq OR excluded.pruned_seq > pruned_seq",
            )?;
            let mut n = 0u64;
            for h in rows {
                n += st.execute(params![
                    h.host,
                    h.first_seen,
                    h.last_seen,
                    h.address,
                    h.agent_version,
                    h.baseline_id,
                    h.baseline_version,
                    h.fim_digest,
                    h.score,
                    h.os,
                    h.kernel,
                    h.last_snapshot_seq,
                    h.acked_seq,
                    h.pruned_seq
                ])? as u64;
            }
            Ok(n)
        })
    }

    fn load_rules(&mut self, rows: &[RuleRecord]) -> Result<u64, StorageError> {
        self.bulk("rule states", |tx| {
            let mut st = tx.prepare_cached(
                "INSERT INTO rule_status (host, rule, status, severity, domains, title, seq, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
                    severity = excluded.severity, domains = excluded.domains, title = excluded.title,
                    seq = excluded.seq, updated_at = excluded.updated_at
                 WHERE excluded.seq > rule_status.seq",
            )?;
            let mut n = 0u64;
            for r in rows {
                n += st.execute(params![
                    r.host,
                    r.rule,
                    r.status,
                    r.severity,
                    r.domains,
                    r.title,
                    r.seq,
                    r.updated_at
                ])? as u64;
            }
            Ok(n)
        })
    }

    fn load_events(&mut self, rows: &[EventRecord]) -> Result<u64, StorageError> {
        self.bulk("events", |tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO events (host, seq, kind, severity, sev_rank, time, received_at, body,
                                               fim_verdict, fim_top)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )?;
            let mut n = 0u64;
            for e in rows {
                let (verdict, top) = fim_class_of_body(&e.kind, &e.body);
                n += st.execute(params![
                    e.host,
                    e.seq,
                    e.kind,
                    e.severity,
                    e.sev_rank,
                    e.time,
                    e.received_at,
                    e.body,
                    verdict,
                    top
                ])? as u64;
            }
            Ok(n)
        })
    }

    fn load_baselines(&mut self, rows: &[BaselineRecord]) -> Result<u64, StorageError> {
        self.bulk("baselines", |tx| {
            let mut st = tx.prepare_cached(
                "INSERT OR IGNORE INTO baselines (id, version, key_id, hosts, bytes, sha256, published_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut n = 0u64;
            for b in rows {
                n += st.execute(params![
                    b.id,
                    b.version,
                    b.key_id,
                    b.hosts,
                    b.bytes,
                    b.sha256,
                    b.published_at
                ])? as u64;
            }
            Ok(n)
        })
    }
}

/// Reads every table of `source` (one read transaction) and loads it into
/// `target`, `chunk` rows per load.
pub(super) fn copy_out(
    source: &Sqlite,
    target: &mut dyn BulkLoad,
    chunk: usize,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<MigrateReport, StorageError> {
    let conn = source.conn();
    let at = source.at.as_str();
    let read = |what: &str| db(format!("{at}: reading {what}"));
    // One snapshot of the whole store, whatever its collector does meanwhile.
    conn.execute_batch("BEGIN").map_err(read("the store"))?;
    let out = copy_tables(&conn, at, target, chunk, progress);
    // A read transaction: nothing to keep, ending it cannot lose anything.
    let _ = conn.execute_batch("ROLLBACK");
    out
}

fn copy_tables(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    chunk: usize,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<MigrateReport, StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
    let limit = i64::try_from(chunk).unwrap_or(i64::MAX);
    let mut report = MigrateReport::default();

    // Baselines: a few rows per published version, bytes included.
    let mut st = conn
        .prepare(
            "SELECT id, version, key_id, hosts, bytes, sha256, published_at FROM baselines
             WHERE (id, version) > (?1, ?2) ORDER BY id, version LIMIT ?3",
        )
        .map_err(read("baselines"))?;
    let mut key = (String::new(), i64::MIN);
    loop {
        let rows: Vec<BaselineRecord> = st
            .query_map(params![key.0, key.1, limit.min(100)], |r| {
                Ok(BaselineRecord {
                    id: r.get(0)?,
                    version: r.get(1)?,
                    key_id: r.get(2)?,
                    hosts: r.get(3)?,
                    bytes: r.get(4)?,
                    sha256: r.get(5)?,
                    published_at: r.get(6)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("baselines"))?;
        let Some(last) = rows.last() else { break };
        key = (last.id.clone(), last.version);
        let n = target.load_baselines(&rows)?;
        report.baselines.add(rows.len(), n);
        progress("baselines", &report.baselines);
    }

    // Events by (host, seq): the UNIQUE (host, seq) index serves the order.
    let mut st = conn
        .prepare(
            "SELECT host, seq, kind, severity, sev_rank, time, received_at, body FROM events
             WHERE (host, seq) > (?1, ?2) ORDER BY host, seq LIMIT ?3",
        )
        .map_err(read("events"))?;
    let mut key = (String::new(), i64::MIN);
    loop {
        let rows: Vec<EventRecord> = st
            .query_map(params![key.0, key.1, limit], |r| {
                Ok(EventRecord {
                    host: r.get(0)?,
                    seq: r.get(1)?,
                    kind: r.get(2)?,
                    severity: r.get(3)?,
                    sev_rank: r.get(4)?,
                    time: r.get(5)?,
                    received_at: r.get(6)?,
                    body: r.get(7)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("events"))?;
        let Some(last) = rows.last() else { break };
        key = (last.host.clone(), last.seq);
        let n = target.load_events(&rows)?;
        report.events.add(rows.len(), n);
        progress("events", &report.events);
    }
    let mut st = conn
        .prepare(
            "SELECT host, rule, status, severity, domains, title, seq, updated_at FROM rule_status
             WHERE (host, rule) > (?1, ?2) ORDER BY host, rule LIMIT ?3",
        )
        .map_err(read("rule states"))?;
    let mut key = (String::new(), String::new());
    loop {
        let rows: Vec<RuleRecord> = st
            .query_map(params![key.0, key.1, limit], |r| {
                Ok(RuleRecord {
                    host: r.get(0)?,
                    rule: r.get(1)?,
                    status: r.get(2)?,
                    severity: r.get(3)?,
                    domains: r.get(4)?,
                    title: r.get(5)?,
                    seq: r.get(6)?,
                    updated_at: r.get(7)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("rule states"))?;
        let Some(last) = rows.last() else { break };
        key = (last.host.clone(), last.rule.clone());
        let n = target.load_rules(&rows)?;
        report.rule_status.add(rows.len(), n);
        progress("rule_status", &report.rule_status);
    }

    let mut st = conn
        .prepare(
            "SELECT host, first_seen, last_seen, address, agent_version, baseline_id,
                    baseline_version, fim_digest, score, os, kernel, last_snapshot_seq, acked_seq,
                    pruned_seq
             FROM hosts WHERE host > ?1 ORDER BY host LIMIT ?2",
        )
        .map_err(read("hosts"))?;
    let mut key = String::new();
    loop {
        let rows: Vec<HostRecord> = st
            .query_map(params![key, limit], |r| {
                Ok(HostRecord {
                    host: r.get(0)?,
                    first_seen: r.get(1)?,
                    last_seen: r.get(2)?,
                    address: r.get(3)?,
                    agent_version: r.get(4)?,
                    baseline_id: r.get(5)?,
                    baseline_version: r.get(6)?,
                    fim_digest: r.get(7)?,
                    score: r.get(8)?,
                    os: r.get(9)?,
                    kernel: r.get(10)?,
                    last_snapshot_seq: r.get(11)?,
                    acked_seq: r.get(12)?,
                    pruned_seq: r.get(13)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("hosts"))?;
        let Some(last) = rows.last() else { break };
        key = last.host.clone();
        let n = target.load_hosts(&rows)?;
        report.hosts.add(rows.len(), n);
        progress("hosts", &report.hosts);
    }

    Ok(report)
}
