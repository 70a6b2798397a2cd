//! Bulk loads into SQLite (prepared statements, one transaction per call)
//! and the read of a whole SQLite store for `storage migrate`.

use super::{
    BaselineRecord, BulkLoad, CursorRecord, EventRecord, HostRecord, MigrateReport, RefusalRecord,
    RuleRecord, ScoreDayRecord, TableCount,
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

    /// Runs one prepared statement per row in one write transaction; the
    /// rows it wrote.
    fn bulk_each<R>(
        &mut self,
        what: &str,
        sql: &str,
        rows: &[R],
        bind: impl Fn(&mut rusqlite::CachedStatement<'_>, &R) -> rusqlite::Result<usize>,
    ) -> Result<u64, StorageError> {
        self.bulk(what, |tx| {
            let mut st = tx.prepare_cached(sql)?;
            let mut n = 0u64;
            for r in rows {
                n += bind(&mut st, r)? as u64;
            }
            Ok(n)
        })
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

    fn load_score_days(&mut self, rows: &[ScoreDayRecord]) -> Result<u64, StorageError> {
        self.bulk_each(
            "daily scores",
            "INSERT INTO score_daily (day, score_sum, samples) VALUES (?1, ?2, ?3)
             ON CONFLICT (day) DO UPDATE SET score_sum = excluded.score_sum,
                samples = excluded.samples
             WHERE excluded.samples > score_daily.samples",
            rows,
            |st, d| st.execute(params![d.day, d.score_sum, d.samples]),
        )
    }

    fn load_refusals(&mut self, rows: &[RefusalRecord]) -> Result<u64, StorageError> {
        self.bulk_each(
            "baseline refusals",
            "INSERT INTO baseline_refusals (host, time, message) VALUES (?1, ?2, ?3)
             ON CONFLICT (host) DO UPDATE SET time = excluded.time, message = excluded.message
             WHERE excluded.time > baseline_refusals.time",
            rows,
            |st, r| st.execute(params![r.host, r.time, r.message]),
        )
    }

    fn load_cursors(&mut self, rows: &[CursorRecord]) -> Result<u64, StorageError> {
        self.bulk_each(
            "forwarding cursors",
            "INSERT INTO forward_cursors (consumer, host, seq, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (consumer, host) DO UPDATE SET seq = excluded.seq,
                updated_at = excluded.updated_at
             WHERE excluded.seq > forward_cursors.seq",
            rows,
            |st, c| st.execute(params![c.consumer, c.host, c.seq, c.updated_at]),
        )
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
    let limit = i64::try_from(chunk).unwrap_or(i64::MAX);
    let mut report = MigrateReport::default();
    copy_baselines(conn, at, target, limit, &mut report.baselines, progress)?;
    copy_events(conn, at, target, limit, &mut report.events, progress)?;
    copy_rules(conn, at, target, limit, &mut report.rule_status, progress)?;
    // What the console and the forwarders read, before the hosts' rows.
    copy_scores_refusals_cursors(conn, at, target, limit, &mut report, progress)?;
    copy_hosts(conn, at, target, limit, &mut report.hosts, progress)?;
    Ok(report)
}

/// Baselines: a few rows per published version, bytes included.
fn copy_baselines(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    limit: i64,
    count: &mut TableCount,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<(), StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
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
        count.add(rows.len(), n);
        progress("baselines", count);
    }
    Ok(())
}

/// Events by (host, seq): the UNIQUE (host, seq) index serves the order.
fn copy_events(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    limit: i64,
    count: &mut TableCount,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<(), StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
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
        count.add(rows.len(), n);
        progress("events", count);
    }
    Ok(())
}

/// Rule states by (host, rule).
fn copy_rules(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    limit: i64,
    count: &mut TableCount,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<(), StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
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
        count.add(rows.len(), n);
        progress("rule_status", count);
    }
    Ok(())
}

/// Hosts by name.
fn copy_hosts(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    limit: i64,
    count: &mut TableCount,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<(), StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
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
        count.add(rows.len(), n);
        progress("hosts", count);
    }
    Ok(())
}

/// Copies `score_daily`, `baseline_refusals` and `forward_cursors`, `limit`
/// rows per load, in key order (a re-run pages the same way).
fn copy_scores_refusals_cursors(
    conn: &Connection,
    at: &str,
    target: &mut dyn BulkLoad,
    limit: i64,
    report: &mut MigrateReport,
    progress: &mut dyn FnMut(&str, &TableCount),
) -> Result<(), StorageError> {
    let read = |what: &str| db(format!("{at}: reading {what}"));
    let mut st = conn
        .prepare(
            "SELECT day, score_sum, samples FROM score_daily WHERE day > ?1 ORDER BY day LIMIT ?2",
        )
        .map_err(read("daily scores"))?;
    let mut key = i64::MIN;
    loop {
        let rows: Vec<ScoreDayRecord> = st
            .query_map(params![key, limit], |r| {
                Ok(ScoreDayRecord {
                    day: r.get(0)?,
                    score_sum: r.get(1)?,
                    samples: r.get(2)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("daily scores"))?;
        let Some(last) = rows.last() else { break };
        key = last.day;
        let n = target.load_score_days(&rows)?;
        report.score_daily.add(rows.len(), n);
        progress("score_daily", &report.score_daily);
    }

    let mut st = conn
        .prepare(
            "SELECT host, time, message FROM baseline_refusals WHERE host > ?1 ORDER BY host
             LIMIT ?2",
        )
        .map_err(read("baseline refusals"))?;
    let mut key = String::new();
    loop {
        let rows: Vec<RefusalRecord> = st
            .query_map(params![key, limit], |r| {
                Ok(RefusalRecord {
                    host: r.get(0)?,
                    time: r.get(1)?,
                    message: r.get(2)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("baseline refusals"))?;
        let Some(last) = rows.last() else { break };
        key = last.host.clone();
        let n = target.load_refusals(&rows)?;
        report.baseline_refusals.add(rows.len(), n);
        progress("baseline_refusals", &report.baseline_refusals);
    }

    // Cursors are (consumer, host, seq) and seqs are kept: each translates
    // to the same position in the target, exactly.
    let mut st = conn
        .prepare(
            "SELECT consumer, host, seq, updated_at FROM forward_cursors
             WHERE (consumer, host) > (?1, ?2) ORDER BY consumer, host LIMIT ?3",
        )
        .map_err(read("forwarding cursors"))?;
    let mut key = (String::new(), String::new());
    loop {
        let rows: Vec<CursorRecord> = st
            .query_map(params![key.0, key.1, limit], |r| {
                Ok(CursorRecord {
                    consumer: r.get(0)?,
                    host: r.get(1)?,
                    seq: r.get(2)?,
                    updated_at: r.get(3)?,
                })
            })
            .and_then(Iterator::collect)
            .map_err(read("forwarding cursors"))?;
        let Some(last) = rows.last() else { break };
        key = (last.consumer.clone(), last.host.clone());
        let n = target.load_cursors(&rows)?;
        report.forward_cursors.add(rows.len(), n);
        progress("forward_cursors", &report.forward_cursors);
    }
    Ok(())
}
