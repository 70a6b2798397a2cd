//! SQLite backend (WAL). Migrations are applied in order at open and
//! recorded in `PRAGMA user_version`.

use super::{
    BaselineRow, DRIFT_KINDS, DriftFilter, EventRow, HostRow, IngestBatch, NewBaseline,
    PublishOutcome, Queries, RuleStatusRow, Storage, StorageError, severity_rank,
};
use crate::config::Synchronous;
use plumb_core::event::{Event, EventBody};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::Path;

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
];

/// Schema version this build writes.
pub const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

fn db(context: impl Into<String>) -> impl FnOnce(rusqlite::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Db { context, source }
}

/// The SQLite store.
pub struct Sqlite {
    conn: Connection,
}

impl std::fmt::Debug for Sqlite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sqlite").finish_non_exhaustive()
    }
}

impl Sqlite {
    /// Opens (creating if needed) for writing and migrates.
    pub fn open(path: &Path, sync: Synchronous) -> Result<Sqlite, StorageError> {
        let at = path.display().to_string();
        // The state directory is private (0700, refused when others may
        // write it) and the database and its -wal/-shm 0600, whatever the umask.
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            plumb_os::private::ensure_private_dir(parent)
                .map_err(|e| StorageError::Schema(e.to_string()))?;
        }
        plumb_os::private::prepare_private_db(path)
            .map_err(|e| StorageError::Schema(e.to_string()))?;
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
        let mut s = Sqlite { conn };
        s.migrate(&at)?;
        Ok(s)
    }

    /// Opens an existing database read-only, for the queries.
    pub fn open_read_only(path: &Path) -> Result<Sqlite, StorageError> {
        let at = path.display().to_string();
        if !path.exists() {
            return Err(StorageError::Schema(format!(
                "{at}: no such database (has the collector run with this storage path?)"
            )));
        }
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(db(format!("{at}: open")))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(db(&at))?;
        let v: u32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db(&at))?;
        if v != SCHEMA_VERSION {
            return Err(StorageError::Schema(format!(
                "{at}: schema version {v}, this plumb-collector reads {SCHEMA_VERSION}; {}",
                if v < SCHEMA_VERSION {
                    "start the collector once to migrate it"
                } else {
                    "use a newer plumb-collector"
                }
            )));
        }
        Ok(Sqlite { conn })
    }

    /// The schema version of the open database.
    pub fn schema_version(&self) -> Result<u32, StorageError> {
        self.conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(db("user_version"))
    }

    fn migrate(&mut self, at: &str) -> Result<(), StorageError> {
        let current = self.schema_version()?;
        if current > SCHEMA_VERSION {
            return Err(StorageError::Schema(format!(
                "{at}: schema version {current} was written by a newer plumb-collector (this one knows {SCHEMA_VERSION})"
            )));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
            let tx = self.conn.transaction().map_err(db(at))?;
            tx.execute_batch(sql)
                .map_err(db(format!("{at}: migration to version {}", i + 1)))?;
            tx.pragma_update(None, "user_version", (i + 1) as u32)
                .map_err(db(at))?;
            tx.commit().map_err(db(at))?;
        }
        Ok(())
    }

    /// Stores a verified bundle. The same id and version with the same
    /// bytes is a no-op; with different bytes it is refused (a published
    /// version never changes).
    pub fn publish_baseline(&mut self, b: &NewBaseline) -> Result<PublishOutcome, StorageError> {
        let tx = self.conn.transaction().map_err(db("publish"))?;
        let version = i64::try_from(b.version)
            .map_err(|_| StorageError::Schema(format!("version {} is too large", b.version)))?;
        let existing: Option<(String, String)> = tx
            .query_row(
                "SELECT sha256, hosts FROM baselines WHERE id = ?1 AND version = ?2",
                params![b.id, version],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .map_err(db("publish: look up"))?;
        if let Some((sha, hosts)) = existing {
            if sha == b.sha256 && hosts == b.hosts {
                return Ok(PublishOutcome::AlreadyPublished);
            }
            return Ok(PublishOutcome::Conflict(if sha == b.sha256 {
                format!(
                    "{} v{} is already published for hosts {hosts:?}; publish a new version to change its hosts",
                    b.id, b.version
                )
            } else {
                format!(
                    "{} v{} is already published with different bytes (sha256 {sha}); publish a new version",
                    b.id, b.version
                )
            }));
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
        )
        .map_err(db("publish: insert"))?;
        tx.commit().map_err(db("publish: commit"))?;
        Ok(PublishOutcome::Published)
    }

    /// Every published baseline (without the bytes), newest version first.
    pub fn baselines(&self) -> Result<Vec<BaselineRow>, StorageError> {
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT id, version, key_id, hosts, sha256, published_at FROM baselines
                 ORDER BY version DESC, published_at DESC, id",
            )
            .map_err(db("baselines"))?;
        let rows = st
            .query_map([], |r| {
                Ok(BaselineRow {
                    id: r.get(0)?,
                    version: r.get::<_, i64>(1)?.max(0) as u64,
                    key_id: r.get(2)?,
                    hosts: r.get(3)?,
                    sha256: r.get(4)?,
                    published_at: r.get(5)?,
                })
            })
            .map_err(db("baselines"))?;
        rows.collect::<Result<Vec<_>, _>>().map_err(db("baselines"))
    }

    /// The newest baseline (highest version) whose hosts pattern matches
    /// `host`, without its bytes.
    pub fn baseline_for(&self, host: &str) -> Result<Option<BaselineRow>, StorageError> {
        Ok(self
            .baselines()?
            .into_iter()
            .find(|b| super::host_matches(&b.hosts, host)))
    }

    /// The stored bytes of one published baseline.
    pub fn baseline_bytes(&self, id: &str, version: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let version = i64::try_from(version).unwrap_or(i64::MAX);
        self.conn
            .query_row(
                "SELECT bytes FROM baselines WHERE id = ?1 AND version = ?2",
                params![id, version],
                |r| r.get(0),
            )
            .optional()
            .map_err(db("baseline bytes"))
    }

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
            "INSERT OR IGNORE INTO events (host, seq, kind, severity, sev_rank, time, received_at, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
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
            let n = insert.execute(params![
                b.host,
                seq,
                e.body.kind(),
                e.severity.name(),
                severity_rank(e.severity),
                event_time(e).unwrap_or(b.received_at),
                b.received_at,
                body
            ])?;
            if n == 1 {
                apply_state(tx, &b.host, seq, e, b.received_at)?;
            }
        }
        tx.prepare_cached("UPDATE hosts SET acked_seq = ?2 WHERE host = ?1")?
            .execute(params![b.host, top])?;
        Ok(u64::try_from(top).unwrap_or(0))
    }
}

/// Unix time of an event's `time` (validated at the door).
pub fn event_time(e: &Event) -> Option<i64> {
    time::OffsetDateTime::parse(&e.time, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
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
        EventBody::Snapshot(s) => {
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
        }
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
        EventBody::Agent(a) => {
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
        }
        EventBody::FimChange(_) | EventBody::FimTamper { .. } | EventBody::Remediation(_) => {}
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
        let tx = self.conn.transaction().map_err(db("begin"))?;
        let mut out = Vec::with_capacity(batches.len());
        for b in batches {
            out.push(
                Self::ingest_one(&tx, b).map_err(db(format!("storing a batch from {}", b.host)))?,
            );
        }
        tx.commit().map_err(db("commit"))?;
        Ok(out)
    }

    fn prune(&mut self, cutoff: i64) -> Result<u64, StorageError> {
        const KEEP: &str = "received_at < ?1 AND NOT (kind = 'snapshot' AND seq =
            (SELECT last_snapshot_seq FROM hosts WHERE hosts.host = events.host))";
        let tx = self.conn.transaction().map_err(db("begin"))?;
        let tops: Vec<(String, i64)> = {
            let mut st = tx
                .prepare(&format!(
                    "SELECT host, max(seq) FROM events WHERE {KEEP} GROUP BY host"
                ))
                .map_err(db("prune"))?;
            let rows = st
                .query_map([cutoff], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(db("prune"))?;
            rows.collect::<Result<_, _>>().map_err(db("prune"))?
        };
        let n = tx
            .execute(&format!("DELETE FROM events WHERE {KEEP}"), [cutoff])
            .map_err(db("prune"))?;
        for (host, top) in tops {
            tx.execute(
                "UPDATE hosts SET pruned_seq = max(pruned_seq, ?2) WHERE host = ?1",
                params![host, top],
            )
            .map_err(db("prune"))?;
        }
        tx.commit().map_err(db("commit"))?;
        Ok(n as u64)
    }
}

fn parse_domains(s: &str) -> Vec<u8> {
    serde_json::from_str(s).unwrap_or_default()
}

impl Queries for Sqlite {
    fn hosts(&self, drift_since: i64) -> Result<Vec<HostRow>, StorageError> {
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let sql = format!(
            "SELECT h.host, h.first_seen, h.last_seen, h.address, h.agent_version, h.baseline_id,
                    h.baseline_version, h.fim_digest, h.acked_seq,
                    (SELECT count(*) FROM rule_status r WHERE r.host = h.host AND r.status = 'pass'),
                    (SELECT count(*) FROM rule_status r WHERE r.host = h.host AND r.status = 'fail'),
                    (SELECT count(*) FROM rule_status r WHERE r.host = h.host AND r.status = 'error'),
                    (SELECT count(*) FROM rule_status r WHERE r.host = h.host AND r.status = 'skipped'),
                    (SELECT count(*) FROM events e WHERE e.host = h.host AND e.kind IN ({kinds})
                        AND e.time >= ?1)
             FROM hosts h ORDER BY h.host"
        );
        let mut st = self.conn.prepare(&sql).map_err(db("hosts"))?;
        let rows = st
            .query_map([drift_since], |r| {
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
                    drift_recent: r.get(13)?,
                })
            })
            .map_err(db("hosts"))?;
        rows.collect::<Result<_, _>>().map_err(db("hosts"))
    }

    fn drift(&self, f: &DriftFilter) -> Result<Vec<EventRow>, StorageError> {
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let sql = format!(
            "SELECT host, seq, kind, severity, time, received_at, body FROM events
             WHERE kind IN ({kinds})
               AND (?1 IS NULL OR host = ?1)
               AND (?2 IS NULL OR time >= ?2)
               AND (?3 IS NULL OR sev_rank >= ?3)
             ORDER BY time DESC, received_at DESC, seq DESC
             LIMIT ?4"
        );
        let mut st = self.conn.prepare(&sql).map_err(db("drift"))?;
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let rows = st
            .query_map(params![f.host, f.since, f.min_severity, limit], event_row)
            .map_err(db("drift"))?;
        rows.collect::<Result<_, _>>().map_err(db("drift"))
    }

    fn rule_statuses(&self) -> Result<Vec<RuleStatusRow>, StorageError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT host, rule, status, severity, domains, title FROM rule_status
                 ORDER BY host, rule",
            )
            .map_err(db("rules"))?;
        let rows = st
            .query_map([], |r| {
                let d: String = r.get(4)?;
                Ok(RuleStatusRow {
                    host: r.get(0)?,
                    rule: r.get(1)?,
                    status: r.get(2)?,
                    severity: r.get(3)?,
                    domains: parse_domains(&d),
                    title: r.get(5)?,
                })
            })
            .map_err(db("rules"))?;
        rows.collect::<Result<_, _>>().map_err(db("rules"))
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

impl Sqlite {
    /// Every stored event of a host, in seq order (tests and audits).
    pub fn events_of(&self, host: &str) -> Result<Vec<EventRow>, StorageError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT host, seq, kind, severity, time, received_at, body FROM events
                 WHERE host = ?1 ORDER BY seq",
            )
            .map_err(db("events"))?;
        let rows = st.query_map([host], event_row).map_err(db("events"))?;
        rows.collect::<Result<_, _>>().map_err(db("events"))
    }

    /// Acknowledged seq of a host (0 when unknown).
    pub fn acked_seq(&self, host: &str) -> Result<u64, StorageError> {
        let v: Option<i64> = self
            .conn
            .query_row("SELECT acked_seq FROM hosts WHERE host = ?1", [host], |r| {
                r.get(0)
            })
            .optional()
            .map_err(db("acked"))?;
        Ok(v.unwrap_or(0).max(0) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Severity;
    use plumb_core::event::*;
    use plumb_core::report::{BaselineRef, Status, Summary};

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
        assert_eq!(s.events_of("a").unwrap().len(), 2);
        // A late, older snapshot does not overwrite newer state.
        let rules = s.rule_statuses().unwrap();
        let r1 = rules
            .iter()
            .find(|r| r.host == "a" && r.rule == "r1")
            .unwrap();
        assert_eq!(r1.status, "fail");
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
        let left: Vec<u64> = s.events_of("a").unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(left, vec![3]);
        // A resend of pruned events does not bring them back.
        s.ingest(&[batch("a", vec![ev(2, changed("r1", Status::Fail))])])
            .unwrap();
        assert_eq!(s.events_of("a").unwrap().len(), 1);
    }

    #[test]
    fn migrations_are_idempotent_and_newer_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("c.db");
        drop(Sqlite::open(&p, Synchronous::Full).unwrap());
        let s = Sqlite::open(&p, Synchronous::Full).unwrap();
        assert_eq!(s.schema_version().unwrap(), SCHEMA_VERSION);
        s.conn
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(s);
        let e = Sqlite::open(&p, Synchronous::Full).unwrap_err().to_string();
        assert!(e.contains("newer plumb-collector"), "{e}");
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
}
