//! The durable outbox and the agent's small state, in one SQLite database
//! (WAL, `synchronous = FULL`: a committed event survives power loss).
//!
//! Every event gets the next sequence number inside the same transaction
//! that inserts it, so `kill -9` at any moment leaves either the event with
//! its seq or neither: seqs are never lost, reused or duplicated. An event
//! leaves the outbox only when it was delivered (acknowledged by the
//! collector, or appended and fsynced to the events file).

use plumb_core::Severity;
use plumb_core::event::{AgentEvent, AgentEventKind, Event, EventBody};
use plumb_core::report::Status;
use rusqlite::{Connection, OptionalExtension, Transaction, params};
use std::path::Path;

/// Why the state database failed.
#[derive(Debug, thiserror::Error)]
pub enum OutboxError {
    /// SQLite error, with what was being done.
    #[error("state database {what}: {source}")]
    Sql {
        /// What was being done.
        what: &'static str,
        /// The cause.
        source: rusqlite::Error,
    },
    /// A stored event does not decode (database edited by hand?).
    #[error("state database: event seq {seq} does not decode: {source}")]
    Decode {
        /// Its seq.
        seq: u64,
        /// The cause.
        source: serde_json::Error,
    },
    /// The database file could not be created 0600 (or tightened).
    #[error("state database: {0}")]
    File(std::io::Error),
}

fn sql(what: &'static str) -> impl FnOnce(rusqlite::Error) -> OutboxError {
    move |source| OutboxError::Sql { what, source }
}

/// How the notice replacing an undeliverable event begins (see
/// [`Outbox::replace`]).
pub const UNDELIVERABLE: &str = "not deliverable:";

/// The first 512 characters of `text`, for a notice (kept small so that
/// the notice itself fits any collector's body cap).
pub fn excerpt(text: &str) -> String {
    const MAX: usize = 512;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_string(),
    }
}

/// An event before it has a seq.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// How urgent.
    pub severity: Severity,
    /// What happened.
    pub body: EventBody,
}

impl NewEvent {
    /// An `agent` event.
    pub fn agent(what: AgentEventKind, severity: Severity, message: impl Into<String>) -> Self {
        NewEvent {
            severity,
            body: EventBody::Agent(AgentEvent {
                what,
                message: message.into(),
                agent_version: env!("CARGO_PKG_VERSION").to_string(),
                baseline: None,
            }),
        }
    }
}

/// The last stored result of a rule.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredCheck {
    /// Status.
    pub status: Status,
    /// Evidence.
    pub evidence: Vec<String>,
}

/// The state database.
#[derive(Debug)]
pub struct Outbox {
    conn: Connection,
    cap: u64,
}

fn sev_rank(s: Severity) -> i64 {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

/// [`Outbox::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxStats {
    /// Events not delivered yet.
    pub waiting: u64,
    /// `time` of the oldest of them.
    pub oldest_time: Option<String>,
    /// Events dropped over the cap since the state was created.
    pub dropped: u64,
}

impl Outbox {
    /// Opens (creating) the database at `path`; `cap` is the most events kept.
    pub fn open(path: &Path, cap: u64) -> Result<Outbox, OutboxError> {
        // 0600 whatever the umask; SQLite gives -wal and -shm the same mode.
        plumb_os::private::prepare_private_db(path).map_err(OutboxError::File)?;
        let conn = Connection::open(path).map_err(sql("open"))?;
        conn.busy_timeout(std::time::Duration::from_secs(10))
            .map_err(sql("busy timeout"))?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(sql("set WAL"))?;
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(sql("set synchronous"))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta (key, value) VALUES ('last_seq', 0), ('schema', 1);
             CREATE TABLE IF NOT EXISTS outbox (
                 seq INTEGER PRIMARY KEY,
                 severity INTEGER NOT NULL,
                 kind TEXT NOT NULL,
                 event TEXT NOT NULL);
             CREATE INDEX IF NOT EXISTS outbox_drop ON outbox (severity, seq);
             CREATE TABLE IF NOT EXISTS check_state (
                 rule TEXT PRIMARY KEY,
                 status TEXT NOT NULL,
                 evidence TEXT NOT NULL);",
        )
        .map_err(sql("create schema"))?;
        Ok(Outbox { conn, cap })
    }

    /// Changes the cap (on reload).
    pub fn set_cap(&mut self, cap: u64) {
        self.cap = cap;
    }

    /// Commits events with consecutive new seqs; returns them as stored.
    #[cfg(test)]
    pub fn push(&mut self, events: Vec<NewEvent>) -> Result<Vec<Event>, OutboxError> {
        self.with_tx(|tx, cap| insert_all(tx, events, cap))
    }

    /// Commits a stream of events in one transaction, as [`Outbox::push`]
    /// does, without holding them: each is built as the stream is read,
    /// handed to `stored` once written, then dropped (a burst of file
    /// changes). Returns how many were written.
    pub fn push_each(
        &mut self,
        events: impl IntoIterator<Item = NewEvent>,
        mut stored: impl FnMut(&Event),
    ) -> Result<usize, OutboxError> {
        self.with_tx(|tx, cap| {
            let mut n = 0;
            let note = insert_each(tx, events, cap, |e| {
                n += 1;
                stored(&e);
            })?;
            if let Some(e) = note {
                stored(&e);
            }
            Ok(n)
        })
    }

    /// Compares results with the stored ones and, in one transaction,
    /// stores the new ones and commits a `check_changed` (built by `make`)
    /// for every rule whose status changed. A restart therefore never
    /// re-reports an unchanged status, and never loses a change.
    pub fn record_checks<F>(
        &mut self,
        results: &[(String, Status, Vec<String>)],
        mut make: F,
    ) -> Result<Vec<Event>, OutboxError>
    where
        F: FnMut(usize, Option<Status>) -> NewEvent,
    {
        self.with_tx(|tx, cap| {
            let mut events = Vec::new();
            for (i, (rule, status, evidence)) in results.iter().enumerate() {
                let prev: Option<String> = tx
                    .query_row(
                        "SELECT status FROM check_state WHERE rule = ?1",
                        [rule],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(sql("read check state"))?;
                let prev = prev.and_then(|s| parse_status(&s));
                if prev != Some(*status) {
                    events.push(make(i, prev));
                }
                let ev = serde_json::to_string(evidence).unwrap_or_else(|_| "[]".into());
                tx.execute(
                    "INSERT INTO check_state (rule, status, evidence) VALUES (?1, ?2, ?3)
                     ON CONFLICT (rule) DO UPDATE SET status = ?2, evidence = ?3",
                    params![rule, status.name(), ev],
                )
                .map_err(sql("store check state"))?;
            }
            insert_all(tx, events, cap)
        })
    }

    /// The stored result of every rule.
    pub fn checks(&self) -> Result<Vec<(String, StoredCheck)>, OutboxError> {
        let mut st = self
            .conn
            .prepare("SELECT rule, status, evidence FROM check_state ORDER BY rule")
            .map_err(sql("read check state"))?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                ))
            })
            .map_err(sql("read check state"))?;
        let mut out = Vec::new();
        for row in rows {
            let (rule, status, ev) = row.map_err(sql("read check state"))?;
            if let Some(status) = parse_status(&status) {
                let evidence = serde_json::from_str(&ev).unwrap_or_default();
                out.push((rule, StoredCheck { status, evidence }));
            }
        }
        Ok(out)
    }

    /// Forgets rules no longer in the baselines, so re-adding one reports it.
    pub fn retain_checks(&mut self, rules: &[String]) -> Result<(), OutboxError> {
        self.with_tx(|tx, _| {
            let stored: Vec<String> = {
                let mut st = tx
                    .prepare("SELECT rule FROM check_state")
                    .map_err(sql("read check state"))?;
                let rows = st
                    .query_map([], |r| r.get(0))
                    .map_err(sql("read check state"))?;
                rows.collect::<Result<_, _>>()
                    .map_err(sql("read check state"))?
            };
            for r in stored.iter().filter(|r| !rules.contains(r)) {
                tx.execute("DELETE FROM check_state WHERE rule = ?1", [r])
                    .map_err(sql("prune check state"))?;
            }
            Ok(())
        })
    }

    /// The oldest `limit` events, in seq order.
    pub fn peek(&mut self, limit: usize) -> Result<Vec<Event>, OutboxError> {
        let rows: Vec<(i64, String)> = {
            let mut st = self
                .conn
                .prepare_cached("SELECT seq, event FROM outbox ORDER BY seq LIMIT ?1")
                .map_err(sql("read outbox"))?;
            st.query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(sql("read outbox"))?
            .collect::<Result<_, _>>()
            .map_err(sql("read outbox"))?
        };
        let mut out = Vec::with_capacity(rows.len());
        for (seq, text) in rows {
            let seq = u64::try_from(seq).unwrap_or(0);
            match serde_json::from_str::<Event>(&text) {
                Ok(ev) => out.push(ev),
                // A row this agent cannot read (edited by hand, or written
                // by another version) would block delivery for good: it
                // becomes a notice under the same seq, so nothing goes
                // silently and the collector sees no gap.
                Err(e) => {
                    let why = format!(
                        "event seq {seq} in the outbox could not be read ({e}); it began: {}",
                        excerpt(&text)
                    );
                    tracing::error!("{why}; replaced by a notice under the same seq");
                    out.push(self.replace(seq, &why)?);
                }
            }
        }
        Ok(out)
    }

    /// Replaces event `seq` by an `agent` error event saying why it cannot
    /// be delivered, under the same seq. Returns the new event.
    pub fn replace(&mut self, seq: u64, why: &str) -> Result<Event, OutboxError> {
        let notice = NewEvent::agent(
            AgentEventKind::Error,
            Severity::High,
            format!("{UNDELIVERABLE} {why}"),
        );
        write_event(&self.conn, notice, seq, Write::Replace)
    }

    /// Removes every event up to and including `seq` (delivered).
    pub fn ack(&mut self, seq: u64) -> Result<usize, OutboxError> {
        let seq = i64::try_from(seq).unwrap_or(i64::MAX);
        self.conn
            .execute("DELETE FROM outbox WHERE seq <= ?1", [seq])
            .map_err(sql("delete delivered events"))
    }

    /// What the metrics file shows of the outbox: events waiting, the
    /// time (RFC 3339, as the agent wrote it) of the oldest, and the events
    /// dropped over the cap since the state was created.
    pub fn stats(&self) -> Result<OutboxStats, OutboxError> {
        let waiting: i64 = self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .map_err(sql("count outbox"))?;
        let oldest: Option<String> = self
            .conn
            .query_row("SELECT event FROM outbox ORDER BY seq LIMIT 1", [], |r| {
                r.get(0)
            })
            .optional()
            .map_err(sql("read the oldest event"))?;
        let oldest_time = oldest
            .and_then(|e| serde_json::from_str::<Event>(&e).ok())
            .map(|e| e.time);
        let dropped: i64 = self
            .conn
            .query_row(
                "SELECT coalesce((SELECT value FROM meta WHERE key = 'dropped'), 0)",
                [],
                |r| r.get(0),
            )
            .map_err(sql("read the dropped count"))?;
        Ok(OutboxStats {
            waiting: u64::try_from(waiting).unwrap_or(0),
            oldest_time,
            dropped: u64::try_from(dropped).unwrap_or(0),
        })
    }

    /// Events waiting.
    #[cfg(test)]
    pub fn len(&self) -> Result<u64, OutboxError> {
        let n: i64 = self
            .conn
            .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
            .map_err(sql("count outbox"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    /// Whether no event waits.
    #[cfg(test)]
    pub fn is_empty(&self) -> Result<bool, OutboxError> {
        Ok(self.len()? == 0)
    }

    /// The last seq allocated (0 when none yet).
    #[cfg(test)]
    pub fn last_seq(&self) -> Result<u64, OutboxError> {
        last_seq(&self.conn)
    }

    fn with_tx<T>(
        &mut self,
        f: impl FnOnce(&Transaction<'_>, u64) -> Result<T, OutboxError>,
    ) -> Result<T, OutboxError> {
        let cap = self.cap;
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sql("begin"))?;
        let out = f(&tx, cap)?;
        tx.commit().map_err(sql("commit"))?;
        Ok(out)
    }
}

fn parse_status(s: &str) -> Option<Status> {
    Some(match s {
        "pass" => Status::Pass,
        "fail" => Status::Fail,
        "error" => Status::Error,
        "skipped" => Status::Skipped,
        _ => return None,
    })
}

fn last_seq(conn: &Connection) -> Result<u64, OutboxError> {
    let n: i64 = conn
        .query_row("SELECT value FROM meta WHERE key = 'last_seq'", [], |r| {
            r.get(0)
        })
        .map_err(sql("read last seq"))?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// How [`write_event`] stores a row.
#[derive(Clone, Copy)]
enum Write {
    /// A new seq: a row already there is an error.
    Insert,
    /// Over the row of that seq.
    Replace,
}

/// Stores `ev` as event `seq`, stamped now.
fn write_event(
    conn: &Connection,
    ev: NewEvent,
    seq: u64,
    how: Write,
) -> Result<Event, OutboxError> {
    let event = Event {
        seq,
        time: crate::host::now_rfc3339(),
        severity: ev.severity,
        body: ev.body,
    };
    let text =
        serde_json::to_string(&event).map_err(|source| OutboxError::Decode { seq, source })?;
    let (sql_text, what) = match how {
        Write::Insert => ("INSERT", "insert event"),
        Write::Replace => ("REPLACE", "replace an undeliverable event"),
    };
    conn.execute(
        &format!("{sql_text} INTO outbox (seq, severity, kind, event) VALUES (?1, ?2, ?3, ?4)"),
        params![
            i64::try_from(seq).unwrap_or(i64::MAX),
            sev_rank(event.severity),
            event.body.kind(),
            text
        ],
    )
    .map_err(sql(what))?;
    Ok(event)
}

/// Inserts events with the next seqs, then enforces the cap: the oldest of
/// the lowest severity go first, and an `events_dropped` event (itself
/// `high`, so it outlives what it reports) says how many. Returns the events
/// as stored (those the cap dropped at once left out).
fn insert_all(
    tx: &Transaction<'_>,
    events: Vec<NewEvent>,
    cap: u64,
) -> Result<Vec<Event>, OutboxError> {
    let mut out = Vec::with_capacity(events.len());
    let note = insert_each(tx, events, cap, |e| out.push(e))?;
    if let Some(note) = note {
        out.retain(|e| {
            tx.query_row(
                "SELECT 1 FROM outbox WHERE seq = ?1",
                [i64::try_from(e.seq).unwrap_or(i64::MAX)],
                |_| Ok(()),
            )
            .optional()
            .ok()
            .flatten()
            .is_some()
        });
        out.push(note);
    }
    Ok(out)
}

/// [`insert_all`] for a stream: each event is handed to `stored` once
/// written, and not kept. Returns the `events_dropped` event when the cap
/// dropped some.
fn insert_each(
    tx: &Transaction<'_>,
    events: impl IntoIterator<Item = NewEvent>,
    cap: u64,
    mut stored: impl FnMut(Event),
) -> Result<Option<Event>, OutboxError> {
    let first = last_seq(tx)?;
    let mut seq = first;
    for ev in events {
        seq += 1;
        stored(write_event(tx, ev, seq, Write::Insert)?);
    }
    if seq == first {
        return Ok(None);
    }
    let count: i64 = tx
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .map_err(sql("count outbox"))?;
    let cap_i = i64::try_from(cap).unwrap_or(i64::MAX);
    let mut note = None;
    if count > cap_i {
        // Room for the events_dropped event too.
        let excess = count - cap_i + 1;
        let dropped = tx
            .execute(
                "DELETE FROM outbox WHERE seq IN
                   (SELECT seq FROM outbox ORDER BY severity, seq LIMIT ?1)",
                [excess],
            )
            .map_err(sql("drop events over the cap"))?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('dropped', ?1)
             ON CONFLICT (key) DO UPDATE SET value = value + excluded.value",
            [i64::try_from(dropped).unwrap_or(i64::MAX)],
        )
        .map_err(sql("count dropped events"))?;
        seq += 1;
        let ev = NewEvent::agent(
            AgentEventKind::EventsDropped,
            Severity::High,
            format!(
                "outbox full ({cap} events): dropped the {dropped} oldest lowest-severity events"
            ),
        );
        note = Some(write_event(tx, ev, seq, Write::Insert)?);
    }
    tx.execute(
        "UPDATE meta SET value = ?1 WHERE key = 'last_seq'",
        [i64::try_from(seq).unwrap_or(i64::MAX)],
    )
    .map_err(sql("store last seq"))?;
    Ok(note)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(msg: &str) -> NewEvent {
        NewEvent::agent(AgentEventKind::Warning, Severity::Info, msg)
    }

    #[test]
    fn seqs_are_consecutive_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.db");
        let mut o = Outbox::open(&p, 1000).unwrap();
        let a = o.push(vec![info("a"), info("b")]).unwrap();
        assert_eq!(a.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        o.ack(2).unwrap();
        drop(o);
        let mut o = Outbox::open(&p, 1000).unwrap();
        assert!(o.is_empty().unwrap());
        let b = o.push(vec![info("c")]).unwrap();
        assert_eq!(b[0].seq, 3, "a seq is never reused, even after delivery");
        assert_eq!(o.peek(10).unwrap(), b);
    }

    #[test]
    fn ack_removes_only_up_to_the_seq() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("s.db"), 1000).unwrap();
        o.push((0..5).map(|i| info(&i.to_string())).collect())
            .unwrap();
        o.ack(3).unwrap();
        let left: Vec<u64> = o.peek(10).unwrap().iter().map(|e| e.seq).collect();
        assert_eq!(left, [4, 5]);
    }

    #[test]
    fn cap_drops_oldest_low_severity_first_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut o = Outbox::open(&dir.path().join("s.db"), 100).unwrap();
        o.push(vec![NewEvent::agent(
            AgentEventKind::Error,
            Severity::Critical,
            "keep me",
        )])
        .unwrap();
        o.push((0..99).map(|i| info(&i.to_string())).collect())
            .unwrap();
        assert_eq!(o.len().unwrap(), 100);
        let out = o.push(vec![info("one more")]).unwrap();
        assert_eq!(o.len().unwrap(), 100);
        let all = o.peek(1000).unwrap();
        assert_eq!(all[0].seq, 1, "the critical event is kept");
        let last = out.last().unwrap();
        match &last.body {
            EventBody::Agent(a) => {
                assert_eq!(a.what, AgentEventKind::EventsDropped);
                assert!(a.message.contains("dropped the 2 oldest"), "{}", a.message);
            }
            other => panic!("{other:?}"),
        }
        // The dropped ones are the oldest info events: seqs 2 and 3.
        assert!(all.iter().all(|e| e.seq != 2 && e.seq != 3));
        assert_eq!(o.last_seq().unwrap(), 102);
        let st = o.stats().unwrap();
        assert_eq!((st.waiting, st.dropped), (100, 2), "{st:?}");
        assert_eq!(st.oldest_time.as_deref(), Some(all[0].time.as_str()));
        o.push((0..5).map(|i| info(&i.to_string())).collect())
            .unwrap();
        assert_eq!(o.stats().unwrap().dropped, 8, "the count adds up");
    }

    #[test]
    fn record_checks_reports_only_changes_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mk = |_: usize, prev: Option<Status>| {
            NewEvent::agent(AgentEventKind::Warning, Severity::Info, format!("{prev:?}"))
        };
        let mut o = Outbox::open(&p, 1000).unwrap();
        let r1 = vec![("a".to_string(), Status::Pass, vec![])];
        assert_eq!(o.record_checks(&r1, mk).unwrap().len(), 1);
        assert_eq!(o.record_checks(&r1, mk).unwrap().len(), 0);
        drop(o);
        let mut o = Outbox::open(&p, 1000).unwrap();
        assert_eq!(o.record_checks(&r1, mk).unwrap().len(), 0, "restart");
        let r2 = vec![("a".to_string(), Status::Fail, vec!["x".into()])];
        let ev = o.record_checks(&r2, mk).unwrap();
        assert_eq!(ev.len(), 1);
        assert_eq!(o.checks().unwrap()[0].1.evidence, vec!["x".to_string()]);
    }

    #[test]
    fn an_excerpt_is_cut_on_a_character() {
        assert_eq!(excerpt("abc"), "abc");
        let long = "é".repeat(600);
        let e = excerpt(&long);
        assert_eq!(e.chars().count(), 513);
        assert!(e.ends_with("é…"));
    }

    #[test]
    fn an_unreadable_row_becomes_a_notice_under_its_seq() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.db");
        let mut o = Outbox::open(&p, 1000).unwrap();
        o.push(vec![
            NewEvent::agent(AgentEventKind::Started, Severity::Info, "a"),
            NewEvent::agent(AgentEventKind::Started, Severity::Info, "b"),
        ])
        .unwrap();
        o.conn
            .execute("UPDATE outbox SET event = 'not json' WHERE seq = 1", [])
            .unwrap();
        let got = o.peek(10).unwrap();
        assert_eq!(got.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2]);
        let EventBody::Agent(a) = &got[0].body else {
            panic!("{:?}", got[0]);
        };
        assert!(a.message.starts_with(UNDELIVERABLE), "{}", a.message);
        assert!(a.message.contains("seq 1"), "{}", a.message);
        assert!(a.message.ends_with("it began: not json"), "{}", a.message);
        assert_eq!(got[0].severity, Severity::High);
        // Stored: the same notice comes back.
        assert_eq!(o.peek(10).unwrap(), got);
    }
}
