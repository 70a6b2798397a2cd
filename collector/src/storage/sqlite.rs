//! SQLite backend (WAL). Migrations are applied in order at open and
//! recorded in `PRAGMA user_version`. rusqlite's errors stop here: they
//! leave as [`StorageError::Backend`].

use super::{
    BaselineRow, Cursors, DRIFT_KINDS, DailyScore, DriftFilter, EventRow, FLEET_BASELINES_SQL,
    FLEET_HOSTS_SQL, FLEET_RULES_SQL, FimCount, FleetSummary, HostPage, HostQuery, HostRow,
    IngestBatch, NewBaseline, Pending, PublishOutcome, Queries, RefusalRow, RuleScope,
    RuleStatusRow, Storage, StorageError, event_time, fim_class, host_page, per_host_share,
    publish_conflict, severity_rank,
};
use crate::config::Synchronous;
use plumb_core::Severity;
use plumb_core::event::{AgentEventKind, Event, EventBody};
use plumb_core::report::Status;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Schema migrations; entry `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: hosts, events, rule status.
    "CREATE TABLE hosts (
        host TEXT PRIMARY KEY,
        first_seen INTEGER NOT NULL,
        last_seen INTEGER NOT NULL,
        address TEXT,
        agent_version TEXT,
        baseline_id TEXT,
        baseline_version INTEGER,
        fim_digest TEXT,
        score REAL,
        os TEXT,
        kernel TEXT,
        last_snapshot_seq INTEGER NOT NULL DEFAULT 0,
        acked_seq INTEGER NOT NULL DEFAULT 0,
        pruned_seq INTEGER NOT NULL DEFAULT 0
     );
     CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        host TEXT NOT NULL,
        seq INTEGER NOT NULL,
        kind TEXT NOT NULL,
        severity TEXT NOT NULL,
        sev_rank INTEGER NOT NULL,
        time INTEGER NOT NULL,
        received_at INTEGER NOT NULL,
        body TEXT NOT NULL,
        UNIQUE (host, seq)
     );
     CREATE INDEX events_received ON events (received_at);
     CREATE INDEX events_time ON events (time);
     CREATE TABLE rule_status (
        host TEXT NOT NULL,
        rule TEXT NOT NULL,
        status TEXT NOT NULL,
        severity TEXT NOT NULL,
        domains TEXT NOT NULL,
        title TEXT NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (host, rule)
     ) WITHOUT ROWID;",
    // 2: published signed baselines, every version kept.
    "CREATE TABLE baselines (
        id TEXT NOT NULL,
        version INTEGER NOT NULL,
        key_id TEXT NOT NULL,
        hosts TEXT NOT NULL DEFAULT '*',
        bytes BLOB NOT NULL,
        sha256 TEXT NOT NULL,
        published_at INTEGER NOT NULL,
        PRIMARY KEY (id, version)
     );",
    // 3: host identities in one canonical case, ASCII lowercase (the server
    // now stores them so). Hosts that differ only in case become one: an
    // event seq stored under both keeps the copy stored first, a rule's
    // status the newest, the host row the sum of both (earliest first_seen,
    // latest last_seen, highest seqs; the rest from the latest seen).
    "DELETE FROM events WHERE id NOT IN (SELECT min(id) FROM events GROUP BY lower(host), seq);
     UPDATE events SET host = lower(host) WHERE host <> lower(host);
     DELETE FROM rule_status WHERE EXISTS (
        SELECT 1 FROM rule_status o
        WHERE lower(o.host) = lower(rule_status.host) AND o.rule = rule_status.rule
          AND (o.seq > rule_status.seq OR (o.seq = rule_status.seq AND o.host < rule_status.host)));
     UPDATE rule_status SET host = lower(host) WHERE host <> lower(host);
     CREATE TEMP TABLE canonical_hosts AS
        SELECT lower(h.host) AS host,
               (SELECT min(x.first_seen) FROM hosts x WHERE lower(x.host) = lower(h.host)) AS first_seen,
               (SELECT max(x.last_seen) FROM hosts x WHERE lower(x.host) = lower(h.host)) AS last_seen,
               h.address, h.agent_version, h.baseline_id, h.baseline_version, h.fim_digest,
               h.score, h.os, h.kernel,
               (SELECT max(x.last_snapshot_seq) FROM hosts x WHERE lower(x.host) = lower(h.host))
                   AS last_snapshot_seq,
               (SELECT max(x.acked_seq) FROM hosts x WHERE lower(x.host) = lower(h.host)) AS acked_seq,
               (SELECT max(x.pruned_seq) FROM hosts x WHERE lower(x.host) = lower(h.host)) AS pruned_seq
        FROM hosts h
        WHERE h.rowid = (SELECT x.rowid FROM hosts x WHERE lower(x.host) = lower(h.host)
                         ORDER BY x.last_seen DESC, x.rowid LIMIT 1);
     DELETE FROM hosts;
     INSERT INTO hosts (host, first_seen, last_seen, address, agent_version, baseline_id,
                        baseline_version, fim_digest, score, os, kernel, last_snapshot_seq,
                        acked_seq, pruned_seq)
        SELECT host, first_seen, last_seen, address, agent_version, baseline_id,
               baseline_version, fim_digest, score, os, kernel, last_snapshot_seq,
               acked_seq, pruned_seq
        FROM canonical_hosts;
     DROP TABLE canonical_hosts;",
    // 4: forwarding and alert cursors: per consumer (a `[[forward]]` sink
    // or the alerts) and host, the highest seq the consumer has had
    // acknowledged.
    "CREATE TABLE forward_cursors (
        consumer TEXT NOT NULL,
        host TEXT NOT NULL,
        seq INTEGER NOT NULL,
        updated_at INTEGER NOT NULL,
        PRIMARY KEY (consumer, host)
     ) WITHOUT ROWID;",
    // 5: the fleet score per day (the console's compliance chart): each
    // stored snapshot adds its score to its day; one row a day, kept.
    "CREATE TABLE score_daily (
        day INTEGER PRIMARY KEY,
        score_sum REAL NOT NULL,
        samples INTEGER NOT NULL
     );
     CREATE TABLE baseline_refusals (
        host TEXT PRIMARY KEY,
        time INTEGER NOT NULL,
        message TEXT NOT NULL
     );
     -- Each host's recent drift counted from an index range (the fleet
     -- page, `hosts`), not from all of the host's events; as PostgreSQL's.
     CREATE INDEX events_drift_host ON events (host, time)
        WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper');",
    // 6: fleet queries that stay fast on 10,000 hosts. `rule_counts` holds
    // each host's rule statuses counted, kept by triggers in the same
    // transaction as `rule_status` (so the writer, `storage migrate` and
    // any repair by hand keep it true).
    "CREATE TABLE rule_counts (
        host TEXT PRIMARY KEY,
        pass INTEGER NOT NULL DEFAULT 0,
        fail INTEGER NOT NULL DEFAULT 0,
        error INTEGER NOT NULL DEFAULT 0,
        skipped INTEGER NOT NULL DEFAULT 0
     ) WITHOUT ROWID;
     INSERT INTO rule_counts (host, pass, fail, error, skipped)
        SELECT host, sum(status = 'pass'), sum(status = 'fail'), sum(status = 'error'),
               sum(status = 'skipped')
        FROM rule_status GROUP BY host;
     CREATE TRIGGER rule_counts_insert AFTER INSERT ON rule_status BEGIN
        INSERT INTO rule_counts (host, pass, fail, error, skipped)
        VALUES (new.host, new.status = 'pass', new.status = 'fail', new.status = 'error',
                new.status = 'skipped')
        ON CONFLICT (host) DO UPDATE SET
            pass = pass + excluded.pass, fail = fail + excluded.fail,
            error = error + excluded.error, skipped = skipped + excluded.skipped;
     END;
     CREATE TRIGGER rule_counts_delete AFTER DELETE ON rule_status BEGIN
        UPDATE rule_counts SET
            pass = pass - (old.status = 'pass'), fail = fail - (old.status = 'fail'),
            error = error - (old.status = 'error'), skipped = skipped - (old.status = 'skipped')
        WHERE host = old.host;
     END;
     CREATE TRIGGER rule_counts_update AFTER UPDATE OF host, status ON rule_status BEGIN
        UPDATE rule_counts SET
            pass = pass - (old.status = 'pass'), fail = fail - (old.status = 'fail'),
            error = error - (old.status = 'error'), skipped = skipped - (old.status = 'skipped')
        WHERE host = old.host;
        INSERT INTO rule_counts (host, pass, fail, error, skipped)
        VALUES (new.host, new.status = 'pass', new.status = 'fail', new.status = 'error',
                new.status = 'skipped')
        ON CONFLICT (host) DO UPDATE SET
            pass = pass + excluded.pass, fail = fail + excluded.fail,
            error = error + excluded.error, skipped = skipped + excluded.skipped;
     END;",
    // 7: each `fim_change`'s package verdict and, unless verified, its
    // top-level directory, stored with it (`storage::fim_class`: the
    // writer and bulk loads fill them) so that `report` counts file changes
    // from a covering index instead of reading event bodies. Filled here
    // for the events already stored, as `fim_class_of_body` derives them.
    "ALTER TABLE events ADD COLUMN fim_verdict TEXT;
     ALTER TABLE events ADD COLUMN fim_top TEXT;
     UPDATE events SET
        fim_verdict = CASE
            WHEN NOT json_valid(body) THEN NULL
            WHEN json_type(body, '$.package.name') = 'text'
                 AND json_type(body, '$.package.version') = 'text'
            THEN CASE json_type(body, '$.package.verified')
                    WHEN 'true' THEN 'verified' WHEN 'false' THEN 'unverified' END
            END,
        fim_top = CASE
            WHEN NOT json_valid(body) THEN '?'
            WHEN json_type(body, '$.path') = 'text' THEN json_extract(body, '$.path')
            WHEN json_type(body, '$.path.hex') = 'text' AND json_type(body, '$.path.lossy') = 'text'
            THEN json_extract(body, '$.path.lossy')
            ELSE '?' END
      WHERE kind = 'fim_change';
     UPDATE events SET fim_top = CASE
            WHEN fim_verdict = 'verified' THEN NULL
            WHEN instr(ltrim(fim_top, '/'), '/') > 0
            THEN '/' || substr(ltrim(fim_top, '/'), 1, instr(ltrim(fim_top, '/'), '/') - 1)
            ELSE '/' || ltrim(fim_top, '/') END
      WHERE kind = 'fim_change';
     CREATE INDEX events_fim ON events (time, host, fim_verdict, fim_top)
        WHERE kind = 'fim_change';
     -- The console's rule page reads one rule's statuses.
     CREATE INDEX rule_status_rule ON rule_status (rule, host);",
];

/// Schema version this build writes.
const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

pub(super) fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Backend {
        context,
        source: Box::new(source),
    }
}

/// The SQLite store: one connection. Writes take it by `&mut` (no lock);
/// reads share it behind a mutex, since a connection is not `Sync`.
pub(crate) struct Sqlite {
    conn: Mutex<Connection>,
    /// The file, for messages.
    pub(super) at: String,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Every host, or one (the subqueries run for the rows kept only).
    fn host_rows(
        &self,
        drift_since: i64,
        host: Option<&str>,
    ) -> Result<Vec<HostRow>, StorageError> {
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let sql = format!(
            "SELECT h.host, h.first_seen, h.last_seen, h.address, h.agent_version, h.baseline_id,
                    h.baseline_version, h.fim_digest, h.acked_seq,
                    coalesce(c.pass, 0), coalesce(c.fail, 0), coalesce(c.error, 0),
                    coalesce(c.skipped, 0),
                    (SELECT count(*) FROM events e WHERE e.host = h.host AND e.kind IN ({kinds})
                        AND e.time >= ?1)
             FROM hosts h LEFT JOIN rule_counts c ON c.host = h.host
             WHERE (?2 IS NULL OR h.host = ?2) ORDER BY h.host"
        );
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<HostRow>> {
            let mut st = conn.prepare(&sql)?;
            let rows = st.query_map(params![drift_since, host], |r| {
                Ok(HostRow {
                    drift_recent: r.get(13)?,
                    ..host_row(r)?
                })
            })?;
            rows.collect()
        };
        query().map_err(self.fail("hosts"))
    }

    /// Every rule status, one host's (the primary key's prefix) or one
    /// rule's (`rule_status_rule`).
    fn rule_rows(&self, scope: RuleScope<'_>) -> Result<Vec<RuleStatusRow>, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<RuleStatusRow>> {
            let (sql, args): (&str, Vec<&str>) = match scope {
                RuleScope::All => (
                    "SELECT host, rule, status, severity, domains, title FROM rule_status
                     ORDER BY host, rule",
                    vec![],
                ),
                RuleScope::Host(h) => (
                    "SELECT host, rule, status, severity, domains, title FROM rule_status
                     WHERE host = ?1 ORDER BY rule",
                    vec![h],
                ),
                RuleScope::Rule(rule) => (
                    "SELECT host, rule, status, severity, domains, title FROM rule_status
                     WHERE rule = ?1 ORDER BY host",
                    vec![rule],
                ),
            };
            let mut st = conn.prepare_cached(sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args), |r| {
                let Some(status) = parse_status(&r.get::<_, String>(2)?) else {
                    return Ok(None);
                };
                Ok(Some(RuleStatusRow {
                    host: r.get(0)?,
                    rule: r.get(1)?,
                    status,
                    severity: parse_severity(&r.get::<_, String>(3)?),
                    domains: parse_domains(&r.get::<_, String>(4)?),
                    title: r.get(5)?,
                }))
            })?;
            rows.filter_map(Result::transpose).collect()
        };
        query().map_err(self.fail("rule statuses"))
    }

    /// Opens (creating if needed) for writing and migrates.
    pub(crate) fn open(path: &Path, sync: Synchronous) -> Result<Sqlite, StorageError> {
        let at = path.display().to_string();
        // The state directory is private (0700, refused when others may
        // write it) and the database and its -wal/-shm 0600, whatever the umask.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            plumb_os::private::ensure_private_dir(parent)?;
        }
        plumb_os::private::prepare_private_db(path).map_err(|source| StorageError::File {
            path: path.to_path_buf(),
            source,
        })?;
        let conn = Connection::open(path).map_err(db(format!("{at}: open")))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db(&at))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(db(format!("{at}: WAL")))?;
        let level = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", level)
            .map_err(db(&at))?;
        let mut s = Sqlite {
            conn: Mutex::new(conn),
            at,
        };
        s.migrate()?;
        Ok(s)
    }

    /// Opens an existing database read-only, for the queries.
    pub(crate) fn open_read_only(path: &Path) -> Result<Sqlite, StorageError> {
        let at = path.display().to_string();
        if !path.exists() {
            return Err(StorageError::NoDatabase { at });
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db(format!("{at}: open")))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db(&at))?;
        let found = schema_version(&conn).map_err(db(&at))?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                at,
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found < SCHEMA_VERSION {
            return Err(StorageError::OlderSchema {
                at,
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(Sqlite {
            conn: Mutex::new(conn),
            at,
        })
    }

    /// Maps a failure while `doing` something to an error naming the file.
    fn fail<'a>(&'a self, doing: &'a str) -> impl FnOnce(rusqlite::Error) -> StorageError + 'a {
        move |e| db(format!("{}: {doing}", self.at))(e)
    }

    /// The connection, for a write (`&mut`: nobody else holds it).
    pub(super) fn conn_mut(&mut self) -> &mut Connection {
        self.conn.get_mut().unwrap_or_else(PoisonError::into_inner)
    }

    /// The connection, for a read. A poisoned lock only means a reader
    /// panicked; the connection holds no state between statements.
    pub(super) fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn migrate(&mut self) -> Result<(), StorageError> {
        let at = self.at.as_str();
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let current = schema_version(conn).map_err(db(at))?;
        if current > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                at: at.to_string(),
                found: current,
                known: SCHEMA_VERSION,
            });
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = write_tx(conn).map_err(db(at))?;
            tx.execute_batch(sql)
                .map_err(db(format!("{at}: migration to version {}", i + 1)))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(db(at))?;
            tx.commit().map_err(db(at))?;
        }
        Ok(())
    }
}

/// A host row from the columns `hosts` selects (see `Sqlite::host_rows`),
/// its drift not counted.
fn host_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<HostRow> {
    Ok(HostRow {
        host: r.get(0)?,
        first_seen: r.get(1)?,
        last_seen: r.get(2)?,
        address: r.get(3)?,
        agent_version: r.get(4)?,
        baseline_id: r.get(5)?,
        baseline_version: r.get::<_, Option<i64>>(6)?.map(|v| v.max(0) as u64),
        fim_digest: r.get(7)?,
        acked_seq: r.get::<_, i64>(8)?.max(0) as u64,
        pass: r.get(9)?,
        fail: r.get(10)?,
        error: r.get(11)?,
        skipped: r.get(12)?,
        drift_recent: 0,
    })
}

/// Stores one batch in `tx`; returns the host's acknowledged seq.
fn ingest_one(tx: &rusqlite::Transaction<'_>, b: &IngestBatch) -> rusqlite::Result<u64> {
    tx.prepare_cached(
        "INSERT INTO hosts (host, first_seen, last_seen, address) VALUES (?1, ?2, ?2, ?3)
             ON CONFLICT (host) DO UPDATE SET last_seen = max(last_seen, excluded.last_seen),
                                               address = coalesce(excluded.address, address)",
    )?
    .execute(params![b.host, b.received_at, b.address])?;
    let (acked, pruned): (i64, i64) = tx
        .prepare_cached("SELECT acked_seq, pruned_seq FROM hosts WHERE host = ?1")?
        .query_row([&b.host], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let mut insert = tx.prepare_cached(
            "INSERT OR IGNORE INTO events (host, seq, kind, severity, sev_rank, time, received_at, body,
                                           fim_verdict, fim_top)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
        )?;
    let mut top = acked;
    for e in &b.events {
        let seq = i64::try_from(e.seq).unwrap_or(i64::MAX);
        top = top.max(seq);
        // Pruned by retention: already stored once, must not come back.
        if seq <= pruned {
            continue;
        }
        let body = serde_json::to_string(e).unwrap_or_else(|_| "{}".into());
        let (verdict, fim_top) = fim_class(e);
        let n = insert.execute(params![
            b.host,
            seq,
            e.body.kind(),
            e.severity.name(),
            severity_rank(e.severity),
            event_time(e).unwrap_or(b.received_at),
            b.received_at,
            body,
            verdict,
            fim_top
        ])?;
        if n == 1 {
            apply_state(tx, &b.host, seq, e, b.received_at)?;
        }
    }
    tx.prepare_cached("UPDATE hosts SET acked_seq = ?2 WHERE host = ?1")?
        .execute(params![b.host, top])?;
    Ok(u64::try_from(top).unwrap_or(0))
}

/// A write transaction, holding the write lock from its start. A deferred
/// one that reads first cannot take the lock if another connection (the
/// collector's writer, `baseline publish`) committed since its read: SQLite
/// then fails it at once with "database is locked", without waiting.
fn write_tx(conn: &mut Connection) -> rusqlite::Result<rusqlite::Transaction<'_>> {
    conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
}

/// The schema version of a database.
fn schema_version(conn: &Connection) -> rusqlite::Result<u32> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// Host and rule state derived from a newly stored event. Guarded by seq so
/// an older event arriving late never overwrites newer state.
fn apply_state(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    seq: i64,
    e: &Event,
    now: i64,
) -> rusqlite::Result<()> {
    match &e.body {
        EventBody::Snapshot(s) => apply_snapshot(tx, host, seq, e, s, now)?,
        EventBody::CheckChanged(c) => {
            upsert_rule(tx)?.execute(params![
                host,
                c.rule,
                c.status.name(),
                e.severity.name(),
                domains_json(&c.domains),
                c.title,
                seq,
                now
            ])?;
        }
        EventBody::Agent(a) => apply_agent(tx, host, e, a, now)?,
        EventBody::FimChange(_) | EventBody::FimTamper { .. } | EventBody::Remediation(_) => {}
    }
    Ok(())
}

/// A snapshot newer than the host's last: the host's row, the day's score
/// sample, and the rule statuses it carries (older ones dropped).
fn apply_snapshot(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    seq: i64,
    e: &Event,
    s: &plumb_core::event::Snapshot,
    now: i64,
) -> rusqlite::Result<()> {
    let updated = tx
        .prepare_cached(
            "UPDATE hosts SET agent_version = ?3, baseline_id = ?4, baseline_version = ?5,
                fim_digest = ?6, score = ?7, os = ?8, kernel = ?9, last_snapshot_seq = ?2
             WHERE host = ?1 AND last_snapshot_seq < ?2",
        )?
        .execute(params![
            host,
            seq,
            s.agent_version,
            s.baseline.as_ref().map(|b| b.id.clone()),
            s.baseline
                .as_ref()
                .map(|b| i64::try_from(b.version).unwrap_or(i64::MAX)),
            s.fim_digest,
            s.summary.score,
            s.facts.os,
            s.facts.kernel
        ])?;
    if updated == 0 {
        return Ok(());
    }
    let day = crate::storage::event_time(e)
        .unwrap_or(now)
        .div_euclid(86_400);
    tx.prepare_cached(
        "INSERT INTO score_daily (day, score_sum, samples) VALUES (?1, ?2, 1)
         ON CONFLICT (day) DO UPDATE SET score_sum = score_sum + excluded.score_sum,
            samples = samples + 1",
    )?
    .execute(params![day, s.summary.score])?;
    // The snapshot is the full list: rules it no longer has are gone,
    // unless a newer check_changed already spoke for them.
    tx.prepare_cached("DELETE FROM rule_status WHERE host = ?1 AND seq < ?2")?
        .execute(params![host, seq])?;
    let mut up = upsert_rule(tx)?;
    for r in &s.rules {
        up.execute(params![
            host,
            r.id,
            r.status.name(),
            r.severity.name(),
            domains_json(&r.domains),
            r.title,
            seq,
            now
        ])?;
    }
    Ok(())
}

/// An agent event: version and baseline in force, the last refusal.
fn apply_agent(
    tx: &rusqlite::Transaction<'_>,
    host: &str,
    e: &Event,
    a: &plumb_core::event::AgentEvent,
    now: i64,
) -> rusqlite::Result<()> {
    if !a.agent_version.is_empty() {
        tx.prepare_cached("UPDATE hosts SET agent_version = ?2 WHERE host = ?1")?
            .execute(params![host, a.agent_version])?;
    }
    if let Some(b) = &a.baseline {
        tx.prepare_cached(
            "UPDATE hosts SET baseline_id = ?2, baseline_version = ?3 WHERE host = ?1",
        )?
        .execute(params![
            host,
            b.id,
            i64::try_from(b.version).unwrap_or(i64::MAX)
        ])?;
    }
    // A host's last refusal stands until it applies a bundle.
    match a.what {
        AgentEventKind::BaselineRefused => {
            tx.prepare_cached(
                "INSERT INTO baseline_refusals (host, time, message) VALUES (?1, ?2, ?3)
                 ON CONFLICT (host) DO UPDATE SET time = excluded.time, message = excluded.message",
            )?
            .execute(params![host, event_time(e).unwrap_or(now), a.message])?;
        }
        AgentEventKind::BaselineApplied => {
            tx.prepare_cached("DELETE FROM baseline_refusals WHERE host = ?1")?
                .execute(params![host])?;
        }
        _ => {}
    }
    Ok(())
}

fn upsert_rule<'a>(
    tx: &'a rusqlite::Transaction<'_>,
) -> rusqlite::Result<rusqlite::CachedStatement<'a>> {
    tx.prepare_cached(
        "INSERT INTO rule_status (host, rule, status, severity, domains, title, seq, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
            severity = excluded.severity, domains = excluded.domains, title = excluded.title,
            seq = excluded.seq, updated_at = excluded.updated_at
         WHERE excluded.seq > rule_status.seq",
    )
}

fn domains_json(d: &[u8]) -> String {
    serde_json::to_string(d).unwrap_or_else(|_| "[]".into())
}

impl Storage for Sqlite {
    fn ingest(&mut self, batches: &[IngestBatch]) -> Result<Vec<u64>, StorageError> {
        let at = &self.at;
        let fail = |doing: &str| db(format!("{at}: {doing}"));
        let conn = self.conn.get_mut().unwrap_or_else(PoisonError::into_inner);
        let tx = write_tx(conn).map_err(fail("begin"))?;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            out.push(
                ingest_one(&tx, b)
                    .map_err(|e| db(format!("{at}: storing a batch from {}", b.host))(e))?,
            );
        }
        tx.commit().map_err(fail("commit"))?;
        Ok(out)
    }

    fn prune(&mut self, cutoff: i64) -> Result<u64, StorageError> {
        const KEEP: &str = "received_at < ?1 AND NOT (kind = 'snapshot' AND seq =
            (SELECT last_snapshot_seq FROM hosts WHERE hosts.host = events.host))";
        let fail = db(format!("{}: retention", self.at));
        let conn = self.conn_mut();
        let mut prune = || -> rusqlite::Result<u64> {
            let tx = write_tx(conn)?;
            let tops: Vec<(String, i64)> = {
                let mut st = tx.prepare(&format!(
                    "SELECT host, max(seq) FROM events WHERE {KEEP} GROUP BY host"
                ))?;
                let rows = st.query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))?;
                rows.collect::<Result<_, _>>()?
            };
            let n = tx.execute(&format!("DELETE FROM events WHERE {KEEP}"), [cutoff])?;
            for (host, top) in tops {
                tx.execute(
                    "UPDATE hosts SET pruned_seq = max(pruned_seq, ?2) WHERE host = ?1",
                    params![host, top],
                )?;
            }
            tx.commit()?;
            Ok(n as u64)
        };
        prune().map_err(fail)
    }

    fn publish_baseline(&mut self, b: &NewBaseline) -> Result<PublishOutcome, StorageError> {
        let version = i64::try_from(b.version).map_err(|_| StorageError::OutOfRange {
            what: "baseline version",
            value: b.version,
        })?;
        let fail = db(format!("{}: publishing {} v{}", self.at, b.id, b.version));
        let tx = write_tx(self.conn_mut());
        let publish = || -> rusqlite::Result<PublishOutcome> {
            let tx = tx?;
            let existing: Option<(String, String)> = tx
                .query_row(
                    "SELECT sha256, hosts FROM baselines WHERE id = ?1 AND version = ?2",
                    params![b.id, version],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((sha, hosts)) = existing {
                return Ok(publish_conflict(b, &sha, &hosts));
            }
            tx.execute(
                "INSERT INTO baselines (id, version, key_id, hosts, bytes, sha256, published_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    b.id,
                    version,
                    b.key_id,
                    b.hosts,
                    b.bytes,
                    b.sha256,
                    b.published_at
                ],
            )?;
            tx.commit()?;
            Ok(PublishOutcome::Published)
        };
        publish().map_err(fail)
    }
}

fn parse_domains(s: &str) -> Vec<u8> {
    serde_json::from_str(s).unwrap_or_default()
}

/// A stored status name; `None` for one this build does not know (the
/// database was edited by hand).
fn parse_status(s: &str) -> Option<Status> {
    [Status::Pass, Status::Fail, Status::Error, Status::Skipped]
        .into_iter()
        .find(|st| st.name() == s)
}

/// A stored severity name; an unknown one reads as `info`.
fn parse_severity(s: &str) -> Severity {
    [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ]
    .into_iter()
    .find(|sev| sev.name() == s)
    .unwrap_or(Severity::Info)
}

impl Queries for Sqlite {
    fn hosts(&self, drift_since: i64) -> Result<Vec<HostRow>, StorageError> {
        self.host_rows(drift_since, None)
    }

    fn host(&self, host: &str, drift_since: i64) -> Result<Option<HostRow>, StorageError> {
        Ok(self.host_rows(drift_since, Some(host))?.pop())
    }

    fn drift(&self, f: &DriftFilter) -> Result<Vec<EventRow>, StorageError> {
        // The WHERE clause holds only the filters given: `(?1 IS NULL OR
        // host = ?1)` would keep SQLite's planner off the host index.
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let mut sql = format!(
            "SELECT host, seq, kind, severity, time, received_at, body FROM events
             WHERE kind IN ({kinds})"
        );
        let mut args: Vec<rusqlite::types::Value> = Vec::new();
        if let Some(host) = &f.host {
            args.push(host.clone().into());
            sql.push_str(&format!(" AND host = ?{}", args.len()));
        }
        if let Some(since) = f.since {
            args.push(since.into());
            sql.push_str(&format!(" AND time >= ?{}", args.len()));
        }
        if let Some(sev) = f.min_severity {
            args.push(i64::from(sev).into());
            sql.push_str(&format!(" AND sev_rank >= ?{}", args.len()));
        }
        args.push(i64::try_from(f.limit).unwrap_or(i64::MAX).into());
        sql.push_str(&format!(
            " ORDER BY time DESC, received_at DESC, seq DESC LIMIT ?{}",
            args.len()
        ));
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<EventRow>> {
            let mut st = conn.prepare(&sql)?;
            let rows = st.query_map(rusqlite::params_from_iter(args.iter()), event_row)?;
            rows.collect()
        };
        query().map_err(self.fail("drift"))
    }

    fn baseline_refusals(&self) -> Result<Vec<RefusalRow>, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<RefusalRow>> {
            let mut st = conn.prepare_cached(
                "SELECT host, time, message FROM baseline_refusals ORDER BY time DESC, host",
            )?;
            let rows = st.query_map([], |r| {
                Ok(RefusalRow {
                    host: r.get(0)?,
                    time: r.get(1)?,
                    message: r.get(2)?,
                })
            })?;
            rows.collect()
        };
        query().map_err(self.fail("baseline refusals"))
    }

    fn score_history(&self, since_day: i64) -> Result<Vec<DailyScore>, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<DailyScore>> {
            let mut st = conn.prepare_cached(
                "SELECT day, score_sum / samples, samples FROM score_daily
                 WHERE day >= ?1 AND samples > 0 ORDER BY day",
            )?;
            let rows = st.query_map(params![since_day], |r| {
                Ok(DailyScore {
                    day: r.get(0)?,
                    score: r.get(1)?,
                    samples: r.get(2)?,
                })
            })?;
            rows.collect()
        };
        query().map_err(self.fail("score history"))
    }

    fn host_events(&self, host: &str, limit: usize) -> Result<Vec<EventRow>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<EventRow>> {
            // The UNIQUE (host, seq) index answers it backwards.
            let mut st = conn.prepare_cached(
                "SELECT host, seq, kind, severity, time, received_at, body FROM events
                 WHERE host = ?1 ORDER BY seq DESC LIMIT ?2",
            )?;
            let rows = st.query_map(params![host, limit], event_row)?;
            rows.collect()
        };
        query().map_err(self.fail("host events"))
    }

    fn rule_changes(&self, rule: &str, hosts: &[String]) -> Result<Vec<EventRow>, StorageError> {
        let names = serde_json::to_string(hosts).unwrap_or_else(|_| "[]".into());
        let key = super::rule_key(rule);
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<EventRow>> {
            // One (host, seq) index range per host; the body test is a
            // substring search, checked by the caller.
            let mut st = conn.prepare_cached(
                "SELECT host, seq, kind, severity, time, received_at, body FROM events
                 WHERE host IN (SELECT value FROM json_each(?1)) AND kind = 'check_changed'
                   AND instr(body, ?2) > 0
                 ORDER BY host, seq DESC",
            )?;
            let rows = st.query_map(params![names, key], event_row)?;
            rows.collect()
        };
        query().map_err(self.fail("rule changes"))
    }

    fn host_page(&self, q: &HostQuery) -> Result<HostPage, StorageError> {
        let kinds = host_page::drift_kinds_sql();
        let dialect = host_page::Dialect {
            drift_join: String::new(),
            drift: format!(
                "(SELECT count(*) FROM events e WHERE e.host = h.host AND e.kind IN ({kinds})
                    AND e.time >= $3)"
            ),
            collate: "",
            round: |x| format!("CAST({x} + 0.5 AS INTEGER)"),
        };
        // SQLite numbers its parameters `?n`.
        let totals_sql = host_page::totals_sql(q).replace('$', "?");
        let rows_sql = host_page::rows_sql(q, &dialect).replace('$', "?");
        let pattern = q.glob.as_deref().map(host_page::like_pattern);
        let conn = self.conn();
        let query = || -> rusqlite::Result<HostPage> {
            let (matched, stale, failing) =
                conn.prepare(&totals_sql)?
                    .query_row(params![pattern, q.stale_before], |r| {
                        Ok((
                            r.get::<_, i64>(0)?.max(0) as u64,
                            r.get::<_, i64>(1)?.max(0) as u64,
                            r.get::<_, i64>(2)?.max(0) as u64,
                        ))
                    })?;
            let mut st = conn.prepare(&rows_sql)?;
            let mut rows: Vec<HostRow> = if host_page::rows_need_drift(q) {
                st.query_map(params![pattern, q.stale_before, q.drift_since], host_row)?
                    .collect::<rusqlite::Result<_>>()?
            } else {
                st.query_map(params![pattern, q.stale_before], host_row)?
                    .collect::<rusqlite::Result<_>>()?
            };
            // The page's drift: one index range (events_drift_host) per row.
            let mut count = conn.prepare_cached(&format!(
                "SELECT count(*) FROM events WHERE host = ?1 AND kind IN ({kinds}) AND time >= ?2"
            ))?;
            for h in &mut rows {
                h.drift_recent = count.query_row(params![h.host, q.drift_since], |r| r.get(0))?;
            }
            Ok(HostPage {
                rows,
                matched,
                stale,
                failing,
            })
        };
        query().map_err(self.fail("fleet page"))
    }

    fn rule_host_statuses(&self, rule: &str) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::Rule(rule))
    }

    fn file_changes(&self, since: i64) -> Result<Vec<FimCount>, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<FimCount>> {
            // events_fim covers it: no body read.
            let mut st = conn.prepare_cached(
                "SELECT host, fim_verdict, fim_top, count(*) FROM events
                 WHERE kind = 'fim_change' AND time >= ?1
                 GROUP BY host, fim_verdict, fim_top ORDER BY host",
            )?;
            let rows = st.query_map([since], |r| {
                Ok(FimCount {
                    host: r.get(0)?,
                    verdict: r.get(1)?,
                    top: r.get(2)?,
                    changes: r.get::<_, i64>(3)?.max(0) as u64,
                })
            })?;
            rows.collect()
        };
        query().map_err(self.fail("file changes"))
    }

    fn rule_statuses(&self) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::All)
    }

    fn host_rule_statuses(&self, host: &str) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::Host(host))
    }

    fn baselines(&self) -> Result<Vec<BaselineRow>, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<Vec<BaselineRow>> {
            let mut st = conn.prepare_cached(
                "SELECT id, version, key_id, hosts, sha256, published_at FROM baselines
                 ORDER BY version DESC, published_at DESC, id",
            )?;
            let rows = st.query_map([], |r| {
                Ok(BaselineRow {
                    id: r.get(0)?,
                    version: r.get::<_, i64>(1)?.max(0) as u64,
                    key_id: r.get(2)?,
                    hosts: r.get(3)?,
                    sha256: r.get(4)?,
                    published_at: r.get(5)?,
                })
            })?;
            rows.collect()
        };
        query().map_err(self.fail("baselines"))
    }

    fn fleet_summary(&self, stale_before: i64) -> Result<FleetSummary, StorageError> {
        let conn = self.conn();
        let query = || -> rusqlite::Result<FleetSummary> {
            let mut s = FleetSummary::default();
            let (hosts, stale): (i64, i64) =
                conn.query_row(&FLEET_HOSTS_SQL.replace("$1", "?1"), [stale_before], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })?;
            s.hosts = hosts.max(0) as u64;
            s.stale = stale.max(0) as u64;
            let mut st = conn.prepare(FLEET_RULES_SQL)?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                s.add_rules(&r.get::<_, String>(0)?, r.get(1)?, r.get(2)?);
            }
            let mut st = conn.prepare(FLEET_BASELINES_SQL)?;
            let mut rows = st.query([])?;
            while let Some(r) = rows.next()? {
                let version: Option<i64> = r.get(1)?;
                let n: i64 = r.get(2)?;
                s.baselines
                    .push((r.get(0)?, version.map(|v| v.max(0) as u64), n.max(0) as u64));
            }
            Ok(s)
        };
        query().map_err(self.fail("fleet summary"))
    }

    fn baseline_bytes(&self, id: &str, version: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.conn()
            .query_row(
                "SELECT bytes FROM baselines WHERE id = ?1 AND version = ?2",
                params![id, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.fail("baseline bytes"))
    }
}

impl Cursors for Sqlite {
    fn pending(&mut self, consumer: &str, limit: usize) -> Result<Pending, StorageError> {
        // One read transaction: the hosts' acked seqs and their events agree.
        let query = |conn: &mut Connection| -> rusqlite::Result<Pending> {
            let tx = conn.transaction()?;
            let hosts: Vec<(String, i64, i64)> = {
                let mut st = tx.prepare_cached(
                    "SELECT h.host, coalesce(c.seq, 0), h.acked_seq FROM hosts h
                     LEFT JOIN forward_cursors c ON c.consumer = ?1 AND c.host = h.host
                     WHERE h.acked_seq > coalesce(c.seq, 0)
                     ORDER BY coalesce(c.updated_at, 0), h.host",
                )?;
                st.query_map([consumer], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            let share = i64::try_from(per_host_share(limit, hosts.len())).unwrap_or(i64::MAX);
            let mut out = Pending::default();
            let mut st = tx.prepare_cached(
                "SELECT host, seq, kind, severity, time, received_at, body FROM events
                 WHERE host = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )?;
            for (host, from, acked) in hosts {
                if out.events.len() >= limit {
                    break;
                }
                let before = out.events.len();
                for row in st.query_map(params![host, from, share], event_row)? {
                    out.events.push(row?);
                }
                if out.events.len() == before {
                    out.gone.push((host, acked.max(0) as u64));
                }
            }
            Ok(out)
        };
        let at = self.at.clone();
        query(self.conn_mut()).map_err(db(format!("{at}: events to forward")))
    }

    fn advance(
        &mut self,
        consumer: &str,
        to: &[(String, u64)],
        now: i64,
    ) -> Result<(), StorageError> {
        let at = self.at.clone();
        let conn = self.conn_mut();
        let run = |conn: &mut Connection| -> rusqlite::Result<()> {
            let tx = write_tx(conn)?;
            {
                let mut st = tx.prepare_cached(
                    "INSERT INTO forward_cursors (consumer, host, seq, updated_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (consumer, host) DO UPDATE
                     SET seq = max(seq, excluded.seq), updated_at = excluded.updated_at",
                )?;
                for (host, seq) in to {
                    let seq = i64::try_from(*seq).unwrap_or(i64::MAX);
                    st.execute(params![consumer, host, seq, now])?;
                }
            }
            tx.commit()
        };
        run(conn).map_err(db(format!("{at}: advancing the cursor of {consumer}")))
    }
}

/// An [`EventRow`] from `SELECT host, seq, kind, severity, time,
/// received_at, body`; a body that is not JSON (edited by hand) reads as null.
fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<EventRow> {
    let body: String = r.get(6)?;
    Ok(EventRow {
        host: r.get(0)?,
        seq: r.get::<_, i64>(1)?.max(0) as u64,
        kind: r.get(2)?,
        severity: r.get(3)?,
        time: r.get(4)?,
        received_at: r.get(5)?,
        body: serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::event::*;
    use plumb_core::report::{BaselineRef, Summary};

    /// Seqs stored for a host, in order.
    fn seqs(s: &Sqlite, host: &str) -> Vec<u64> {
        let conn = s.conn();
        let mut st = conn
            .prepare("SELECT seq FROM events WHERE host = ?1 ORDER BY seq")
            .unwrap();
        st.query_map([host], |r| r.get::<_, i64>(0).map(|v| v as u64))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    fn ev(seq: u64, body: EventBody) -> Event {
        Event {
            seq,
            time: "2026-11-27T10:00:00Z".into(),
            severity: Severity::High,
            body,
        }
    }

    fn changed(rule: &str, status: Status) -> EventBody {
        EventBody::CheckChanged(CheckChanged {
            rule: rule.into(),
            title: "t".into(),
            previous: None,
            status,
            domains: vec![13],
            criteria: vec![],
            evidence: vec!["e".into()],
            baseline: BaselineRef {
                id: "b".into(),
                version: 1,
            },
        })
    }

    fn snapshot(rules: &[(&str, Status)]) -> EventBody {
        EventBody::Snapshot(Box::new(Snapshot {
            agent_version: "0.1.0".into(),
            baseline: Some(BaselineRef {
                id: "b".into(),
                version: 7,
            }),
            facts: HostFacts::default(),
            fim_digest: Some("abcd".into()),
            summary: Summary::default(),
            rules: rules
                .iter()
                .map(|(id, s)| RuleStatus {
                    id: (*id).into(),
                    status: *s,
                    severity: Severity::High,
                    domains: vec![13],
                    title: String::new(),
                })
                .collect(),
        }))
    }

    fn batch(host: &str, events: Vec<Event>) -> IngestBatch {
        IngestBatch {
            host: host.into(),
            address: Some("127.0.0.1".into()),
            received_at: 1_000,
            events,
        }
    }

    /// (host, seq) of what `pending` returned.
    fn pending_of(s: &mut Sqlite, consumer: &str, limit: usize) -> Vec<(String, u64)> {
        Cursors::pending(s, consumer, limit)
            .unwrap()
            .events
            .into_iter()
            .map(|e| (e.host, e.seq))
            .collect()
    }

    #[test]
    fn cursors_are_per_consumer_and_host_durable_and_never_move_back() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        let mut s = Sqlite::open(&p, Synchronous::Full).unwrap();
        let evs = |r: std::ops::RangeInclusive<u64>| {
            r.map(|q| ev(q, changed("r", Status::Fail)))
                .collect::<Vec<_>>()
        };
        s.ingest(&[batch("a", evs(1..=40)), batch("b", evs(1..=3))])
            .unwrap();
        // An even share per host (at least 16): b is not starved by a.
        let first = pending_of(&mut s, "forward:x", 20);
        assert_eq!(first.iter().filter(|(h, _)| h == "a").count(), 16);
        assert_eq!(first.iter().filter(|(h, _)| h == "b").count(), 3);
        let a: Vec<u64> = first
            .iter()
            .filter(|(h, _)| h == "a")
            .map(|e| e.1)
            .collect();
        assert_eq!(a, (1..=16).collect::<Vec<_>>(), "in seq order per host");
        s.advance("forward:x", &[("a".into(), 16), ("b".into(), 3)], 5)
            .unwrap();
        // Another consumer has its own cursor.
        assert_eq!(pending_of(&mut s, "alerts", 1000).len(), 43);
        // A cursor never moves back.
        s.advance("forward:x", &[("a".into(), 2)], 6).unwrap();
        drop(s);
        let mut s = Sqlite::open(&p, Synchronous::Full).unwrap();
        let rest = pending_of(&mut s, "forward:x", 1000);
        assert_eq!(
            rest,
            (17..=40).map(|q| ("a".to_string(), q)).collect::<Vec<_>>()
        );
        // Events gone before they were handled (retention): the cursor may skip them.
        s.prune(2_000).unwrap();
        let p = Cursors::pending(&mut s, "forward:x", 1000).unwrap();
        assert!(p.events.is_empty());
        assert_eq!(p.gone, vec![("a".to_string(), 40)]);
        s.advance("forward:x", &p.gone, 7).unwrap();
        assert!(pending_of(&mut s, "forward:x", 1000).is_empty());
    }

    #[test]
    fn fleet_summary_counts_hosts_rules_and_baselines() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Sqlite::open(&tmp.path().join("c.db"), Synchronous::Full).unwrap();
        assert_eq!(s.fleet_summary(0).unwrap(), FleetSummary::default());
        let mut old = batch(
            "a",
            vec![ev(
                1,
                snapshot(&[("r1", Status::Pass), ("r2", Status::Fail)]),
            )],
        );
        old.received_at = 500;
        let b = batch("b", vec![ev(1, snapshot(&[("r1", Status::Error)]))]);
        let c = batch("c", vec![ev(1, changed("r1", Status::Pass))]);
        s.ingest(&[old, b, c]).unwrap();
        let f = s.fleet_summary(600).unwrap();
        assert_eq!(
            f,
            FleetSummary {
                hosts: 3,
                stale: 1,
                failing: 1,
                pass: 2,
                fail: 1,
                error: 1,
                baselines: vec![(None, None, 1), (Some("b".into()), Some(7), 2)],
            }
        );
    }

    #[test]
    fn dedup_state_and_acks() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        let mut s = Sqlite::open(&p, Synchronous::Full).unwrap();
        let b1 = batch(
            "a",
            vec![
                ev(1, snapshot(&[("r1", Status::Pass), ("r2", Status::Pass)])),
                ev(2, changed("r1", Status::Fail)),
            ],
        );
        let b2 = batch("b", vec![ev(5, changed("r9", Status::Fail))]);
        assert_eq!(s.ingest(&[b1.clone(), b2]).unwrap(), vec![2, 5]);
        // Resent: nothing new, same ack, state untouched.
        assert_eq!(s.ingest(&[b1]).unwrap(), vec![2]);
        assert_eq!(seqs(&s, "a"), vec![1, 2]);
        // A late, older snapshot does not overwrite newer state.
        let rules = s.rule_statuses().unwrap();
        let r1 = rules
            .iter()
            .find(|r| r.host == "a" && r.rule == "r1")
            .unwrap();
        assert_eq!(r1.status, Status::Fail);
        let hosts = s.hosts(0).unwrap();
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].fail, 1);
        assert_eq!(hosts[0].pass, 1);
        assert_eq!(hosts[0].baseline_version, Some(7));
        assert_eq!(hosts[0].drift_recent, 1);
        // Empty batch: the current ack.
        assert_eq!(s.ingest(&[batch("a", vec![])]).unwrap(), vec![2]);
    }

    #[test]
    fn prune_keeps_latest_snapshot_and_refuses_pruned_resend() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Sqlite::open(&tmp.path().join("c.db"), Synchronous::Normal).unwrap();
        s.ingest(&[batch(
            "a",
            vec![
                ev(1, snapshot(&[("r1", Status::Pass)])),
                ev(2, changed("r1", Status::Fail)),
                ev(3, snapshot(&[("r1", Status::Fail)])),
                ev(4, changed("r1", Status::Pass)),
            ],
        )])
        .unwrap();
        assert_eq!(s.prune(2_000).unwrap(), 3);
        assert_eq!(seqs(&s, "a"), vec![3]);
        // A resend of pruned events does not bring them back.
        s.ingest(&[batch("a", vec![ev(2, changed("r1", Status::Fail))])])
            .unwrap();
        assert_eq!(seqs(&s, "a"), vec![3]);
    }

    #[test]
    fn migrations_are_idempotent_and_newer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        drop(Sqlite::open(&p, Synchronous::Full).unwrap());
        let s = Sqlite::open(&p, Synchronous::Full).unwrap();
        assert_eq!(schema_version(&s.conn()).unwrap(), SCHEMA_VERSION);
        s.conn()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(s);
        let e = Sqlite::open(&p, Synchronous::Full).unwrap_err().to_string();
        assert!(e.contains("newer plumb-collector"), "{e}");
        let e = Sqlite::open_read_only(&p).unwrap_err().to_string();
        assert!(e.contains("newer plumb-collector"), "{e}");
    }

    #[test]
    fn migration_3_merges_hosts_that_differ_only_in_case() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        {
            // A database as schema 2 left it: HOST-A and host-a are two hosts.
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..2] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 2).unwrap();
            c.execute_batch(
                "INSERT INTO hosts (host, first_seen, last_seen, agent_version, acked_seq)
                    VALUES ('HOST-A', 10, 50, 'old', 7), ('host-a', 20, 90, 'new', 3),
                           ('Other', 5, 5, 'x', 1);
                 INSERT INTO events (host, seq, kind, severity, sev_rank, time, received_at, body)
                    VALUES ('HOST-A', 1, 'fim_change', 'high', 3, 1, 1, 'first'),
                           ('host-a', 1, 'fim_change', 'high', 3, 1, 2, 'second'),
                           ('host-a', 2, 'fim_change', 'high', 3, 1, 2, '{}'),
                           ('Other', 1, 'fim_change', 'high', 3, 1, 2, '{}');
                 INSERT INTO rule_status VALUES ('HOST-A', 'r1', 'fail', 'high', '[]', '', 5, 1),
                                                ('host-a', 'r1', 'pass', 'high', '[]', '', 2, 1);",
            )
            .unwrap();
        }
        let s = Sqlite::open(&p, Synchronous::Full).unwrap();
        let hosts = s.hosts(0).unwrap();
        let names: Vec<_> = hosts.iter().map(|h| h.host.as_str()).collect();
        assert_eq!(names, ["host-a", "other"]);
        let a = &hosts[0];
        assert_eq!((a.first_seen, a.last_seen, a.acked_seq), (10, 90, 7));
        assert_eq!(a.agent_version.as_deref(), Some("new"));
        assert_eq!(
            (a.fail, a.pass),
            (1, 0),
            "the newest status of r1 (seq 5) wins"
        );
        assert_eq!(seqs(&s, "host-a"), vec![1, 2]);
        assert!(seqs(&s, "HOST-A").is_empty());
        let first: String = s
            .conn()
            .query_row(
                "SELECT body FROM events WHERE host = 'host-a' AND seq = 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(first, "first", "the copy stored first is kept");
    }

    #[test]
    fn migration_6_counts_existing_rule_states_and_triggers_keep_them() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        {
            // A database as schema 5 left it, with rule states already stored.
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..5] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 5).unwrap();
            c.execute_batch(
                "INSERT INTO hosts (host, first_seen, last_seen) VALUES ('a', 1, 1), ('b', 1, 1);
                 INSERT INTO events (host, seq, kind, severity, sev_rank, time, received_at, body)
                    VALUES ('a', 1, 'fim_change', 'high', 3, 100, 100, '{}'),
                           ('a', 2, 'fim_change', 'high', 3, 10, 10, '{}'),
                           ('a', 3, 'heartbeat', 'info', 0, 100, 100, '{}');
                 INSERT INTO rule_status VALUES ('a', 'r1', 'fail', 'high', '[]', '', 1, 1),
                                                ('a', 'r2', 'fail', 'high', '[]', '', 1, 1),
                                                ('a', 'r3', 'pass', 'high', '[]', '', 1, 1),
                                                ('a', 'r4', 'error', 'high', '[]', '', 1, 1),
                                                ('a', 'r5', 'skipped', 'high', '[]', '', 1, 1);",
            )
            .unwrap();
        }
        let s = Sqlite::open(&p, Synchronous::Full).unwrap();
        let counts = |s: &Sqlite| -> Vec<(String, u32, u32, u32, u32, u32)> {
            s.hosts(50)
                .unwrap()
                .into_iter()
                .map(|h| (h.host, h.pass, h.fail, h.error, h.skipped, h.drift_recent))
                .collect()
        };
        assert_eq!(
            counts(&s),
            [("a".into(), 1, 2, 1, 1, 1), ("b".into(), 0, 0, 0, 0, 0)]
        );
        // The writer's upsert (a newer status), a new rule, a deletion.
        s.conn()
            .execute_batch(
                "INSERT INTO rule_status VALUES ('a', 'r1', 'pass', 'high', '[]', '', 2, 2),
                                                ('a', 'r2', 'fail', 'high', '[]', '', 2, 2),
                                                ('b', 'r1', 'fail', 'high', '[]', '', 2, 2)
                    ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
                        seq = excluded.seq WHERE excluded.seq > rule_status.seq;
                 INSERT INTO rule_status VALUES ('a', 'r3', 'fail', 'high', '[]', '', 1, 1)
                    ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
                        seq = excluded.seq WHERE excluded.seq > rule_status.seq;
                 DELETE FROM rule_status WHERE host = 'a' AND rule = 'r4';",
            )
            .unwrap();
        assert_eq!(
            counts(&s),
            [("a".into(), 2, 1, 0, 1, 1), ("b".into(), 0, 1, 0, 0, 0)],
            "r1 fail->pass, r3's older status ignored, r4 deleted, b's r1 added"
        );
    }

    /// A `fim_change` of `path` (a JSON path: a string or the hex/lossy
    /// object) with a package verdict (`Some(verified)`) or none.
    fn fim(seq: u64, time: &str, path: serde_json::Value, verified: Option<bool>) -> Event {
        let package = verified.map(|v| plumb_core::fim::PackageVerdict {
            name: "pkg".into(),
            version: "1.0".into(),
            arch: None,
            verified: v,
            conffile: false,
            expected_md5: None,
            md5: None,
            evidence: String::new(),
        });
        Event {
            seq,
            time: time.into(),
            severity: Severity::Medium,
            body: EventBody::FimChange(FimChangeEvent {
                path: serde_json::from_value(path).unwrap(),
                change: "modified".into(),
                fields: vec![],
                old: serde_json::Value::Null,
                new: serde_json::Value::Null,
                domains: vec![],
                package,
            }),
        }
    }

    /// File changes of every kind of verdict and path, one older than the
    /// window, and a rule change (not a file change).
    fn fim_events() -> Vec<Event> {
        use serde_json::json;
        let t = "2026-11-27T10:00:00Z";
        vec![
            fim(1, t, json!("/usr/bin/ls"), Some(true)),
            fim(2, t, json!("/usr/bin/ssh"), Some(false)),
            fim(3, t, json!("/etc/passwd"), None),
            fim(4, t, json!("/etc/shadow"), None),
            fim(
                5,
                t,
                json!({"hex": "2f6f70742f62ff", "lossy": "/opt/b\u{fffd}"}),
                None,
            ),
            fim(6, t, json!("/"), None),
            fim(7, t, json!("//srv//x"), Some(false)),
            fim(8, "2026-11-01T00:00:00Z", json!("/usr/bin/old"), None),
            ev(9, changed("r1", Status::Fail)),
        ]
    }

    /// What [`fim_events`] counts since 2026-11-27.
    fn fim_expected() -> Vec<FimCount> {
        let c = |verdict: Option<&str>, top: Option<&str>, changes| FimCount {
            host: "web".into(),
            verdict: verdict.map(String::from),
            top: top.map(String::from),
            changes,
        };
        let mut v = vec![
            c(Some("verified"), None, 1),
            c(Some("unverified"), Some("/usr"), 1),
            c(Some("unverified"), Some("/srv"), 1),
            c(None, Some("/etc"), 2),
            c(None, Some("/opt"), 1),
            c(None, Some("/"), 1),
        ];
        v.sort_by(|a, b| (&a.verdict, &a.top).cmp(&(&b.verdict, &b.top)));
        v
    }

    fn file_changes_sorted(s: &Sqlite) -> Vec<FimCount> {
        let since = 1_795_737_600; // 2026-11-27T00:00:00Z
        let mut v = s.file_changes(since).unwrap();
        v.sort_by(|a, b| (&a.verdict, &a.top).cmp(&(&b.verdict, &b.top)));
        v
    }

    /// The verdict columns the writer fills, the ones bulk loads fill and
    /// the ones migration 7 derives in SQL from stored bodies agree.
    #[test]
    fn file_change_verdicts_from_writer_bulk_load_and_migration_7_agree() {
        use crate::storage::bulk::{BulkLoad, EventRecord};
        let tmp = tempfile::tempdir().unwrap();
        let mut written = Sqlite::open(&tmp.path().join("w.db"), Synchronous::Full).unwrap();
        written.ingest(&[batch("web", fim_events())]).unwrap();
        assert_eq!(file_changes_sorted(&written), fim_expected(), "writer");

        let records: Vec<EventRecord> = fim_events()
            .iter()
            .map(|e| EventRecord {
                host: "web".into(),
                seq: e.seq as i64,
                kind: e.body.kind().into(),
                severity: e.severity.name().into(),
                sev_rank: 2,
                time: event_time(e).unwrap(),
                received_at: 1_000,
                body: serde_json::to_string(e).unwrap(),
            })
            .collect();
        let mut loaded = Sqlite::open(&tmp.path().join("b.db"), Synchronous::Full).unwrap();
        assert_eq!(loaded.load_events(&records).unwrap(), 9);
        assert_eq!(file_changes_sorted(&loaded), fim_expected(), "bulk load");

        let p = tmp.path().join("m.db");
        {
            // A database as schema 6 left it, the same events stored.
            let c = Connection::open(&p).unwrap();
            for sql in &MIGRATIONS[..6] {
                c.execute_batch(sql).unwrap();
            }
            c.pragma_update(None, "user_version", 6).unwrap();
            for r in &records {
                c.execute(
                    "INSERT INTO events (host, seq, kind, severity, sev_rank, time, received_at, body)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    params![r.host, r.seq, r.kind, r.severity, r.sev_rank, r.time, r.received_at, r.body],
                )
                .unwrap();
            }
            // A body the report cannot read counts with path `?`.
            c.execute_batch(
                "INSERT INTO events (host, seq, kind, severity, sev_rank, time, received_at, body)
                 VALUES ('web', 10, 'fim_change', 'high', 3, 1795780000, 1000, 'not json')",
            )
            .unwrap();
        }
        let migrated = Sqlite::open(&p, Synchronous::Full).unwrap();
        let mut expected = fim_expected();
        expected.push(FimCount {
            host: "web".into(),
            verdict: None,
            top: Some("/?".into()),
            changes: 1,
        });
        expected.sort_by(|a, b| (&a.verdict, &a.top).cmp(&(&b.verdict, &b.top)));
        assert_eq!(file_changes_sorted(&migrated), expected, "migration 7");
        // The same as the bulk loads' derivation of that body.
        assert_eq!(
            crate::storage::fim_class_of_body("fim_change", "not json"),
            (None, Some("/?".into()))
        );
        // The report reads the covering index, not the bodies.
        let plan: String = migrated
            .conn()
            .query_row(
                "EXPLAIN QUERY PLAN SELECT host, fim_verdict, fim_top, count(*) FROM events
                 WHERE kind = 'fim_change' AND time >= 1 GROUP BY host, fim_verdict, fim_top",
                [],
                |r| r.get(3),
            )
            .unwrap();
        assert!(plan.contains("COVERING INDEX events_fim"), "{plan}");
    }

    fn nb(version: u64, hosts: &str, sha: &str) -> crate::storage::NewBaseline {
        crate::storage::NewBaseline {
            id: "fleet".into(),
            version,
            key_id: "k".into(),
            hosts: hosts.into(),
            bytes: sha.as_bytes().to_vec(),
            sha256: sha.into(),
            published_at: 1,
        }
    }

    #[test]
    fn publishing_while_the_collector_ingests_waits_for_the_lock() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        let mut writer = Sqlite::open(&p, Synchronous::Normal).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let ingesting = {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut seq = 0;
                while !stop.load(Ordering::Relaxed) {
                    seq += 1;
                    let b = batch("a", vec![ev(seq, changed("r1", Status::Fail))]);
                    writer.ingest(&[b]).unwrap();
                }
            })
        };
        let mut publisher = Sqlite::open(&p, Synchronous::Normal).unwrap();
        let published: Vec<_> = (1..=50)
            .map(|v| publisher.publish_baseline(&nb(v, "*", &v.to_string())))
            .collect();
        stop.store(true, Ordering::Relaxed);
        ingesting.join().unwrap();
        for r in published {
            assert_eq!(r.unwrap(), PublishOutcome::Published);
        }
    }

    #[test]
    fn published_baselines_keep_every_version_and_never_change() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Sqlite::open(&tmp.path().join("c.db"), Synchronous::Full).unwrap();
        assert_eq!(s.baseline_for("web-1").unwrap(), None);
        assert_eq!(
            s.publish_baseline(&nb(1, "*", "a")).unwrap(),
            PublishOutcome::Published
        );
        assert_eq!(
            s.publish_baseline(&nb(1, "*", "a")).unwrap(),
            PublishOutcome::AlreadyPublished
        );
        assert!(matches!(
            s.publish_baseline(&nb(1, "*", "b")).unwrap(),
            PublishOutcome::Conflict(w) if w.contains("different bytes")
        ));
        assert!(matches!(
            s.publish_baseline(&nb(1, "web-*", "a")).unwrap(),
            PublishOutcome::Conflict(_)
        ));
        s.publish_baseline(&nb(2, "db-*", "c")).unwrap();
        assert_eq!(s.baseline_for("web-1").unwrap().unwrap().version, 1);
        assert_eq!(s.baseline_for("DB-1").unwrap().unwrap().version, 2);
        assert_eq!(s.baseline_bytes("fleet", 2).unwrap().unwrap(), b"c");
        assert_eq!(s.baselines().unwrap().len(), 2);
    }

    #[test]
    fn each_baseline_id_is_served_on_its_own_newest_matching_version() {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = Sqlite::open(&tmp.path().join("c.db"), Synchronous::Full).unwrap();
        let with_id = |id: &str, version, hosts: &str| crate::storage::NewBaseline {
            id: id.into(),
            ..nb(version, hosts, &format!("{id}{version}"))
        };
        for b in [
            with_id("fleet", 5, "*"),
            with_id("fleet", 6, "db-*"),
            with_id("secret-b", 1, "host-b"),
            with_id("secret-b", 2, "host-b"),
        ] {
            s.publish_baseline(&b).unwrap();
        }
        let served = |host: &str| -> Vec<(String, u64)> {
            s.baselines_for(host)
                .unwrap()
                .into_iter()
                .map(|b| (b.id, b.version))
                .collect()
        };
        assert_eq!(
            served("HOST-B"),
            [("fleet".into(), 5), ("secret-b".into(), 2)]
        );
        assert_eq!(served("host-a"), [("fleet".into(), 5)]);
        assert_eq!(served("db-1"), [("fleet".into(), 6)]);
        // The one bundle older agents get: the highest version of any id.
        assert_eq!(s.baseline_for("host-b").unwrap().unwrap().id, "fleet");
    }
}
