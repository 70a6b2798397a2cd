//! Bulk loads into PostgreSQL: events through binary `COPY` (after the day
//! partitions they need exist, and without those already stored), the
//! other tables through one `INSERT … SELECT unnest(…)` per call.

use super::{
    BaselineRecord, BulkLoad, CursorRecord, EventRecord, HostRecord, RefusalRecord, RuleRecord,
    ScoreDayRecord,
};
use crate::storage::postgres::{DAY, LOCK_PARTITIONS, Postgres, client, partition_name, pg};
use crate::storage::{StorageError, fim_class_of_body};
use std::collections::{BTreeMap, BTreeSet, HashSet};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};

impl Postgres {
    /// Creates the day partitions of `days` that do not exist. A day whose
    /// rows already sit in the default partition cannot get one
    /// (PostgreSQL refuses): its events go on landing there, which only
    /// costs retention a row-by-row delete for that day.
    fn ensure_days(&self, days: &BTreeSet<i64>) -> Result<(), StorageError> {
        let at = self.at.as_str();
        self.block_on(async {
            let mut c = client(&self.pool, at).await?;
            let existing: HashSet<String> = c
                .query(
                    "SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'events'::regclass",
                    &[],
                )
                .await
                .map_err(pg(format!("{at}: listing partitions")))?
                .iter()
                .map(|r| r.get(0))
                .collect();
            for &day in days {
                let name = partition_name(day);
                if existing.contains(&name) {
                    continue;
                }
                let tx = c
                    .transaction()
                    .await
                    .map_err(pg(format!("{at}: creating {name}")))?;
                let created = async {
                    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_PARTITIONS])
                        .await?;
                    tx.batch_execute(&format!(
                        "CREATE TABLE IF NOT EXISTS {name} PARTITION OF events
                         FOR VALUES FROM ({}) TO ({})",
                        day * DAY,
                        (day + 1) * DAY
                    ))
                    .await?;
                    tx.commit().await
                };
                if let Err(e) = created.await {
                    tracing::warn!("{at}: creating {name}: {e}; its events stay in events_default");
                }
            }
            Ok(())
        })
    }
}

impl BulkLoad for Postgres {
    fn load_hosts(&mut self, rows: &[HostRecord]) -> Result<u64, StorageError> {
        let col = |f: fn(&HostRecord) -> Option<String>| rows.iter().map(f).collect::<Vec<_>>();
        let hosts = col(|h| Some(h.host.clone()));
        let address = col(|h| h.address.clone());
        let agent_version = col(|h| h.agent_version.clone());
        let baseline_id = col(|h| h.baseline_id.clone());
        let fim_digest = col(|h| h.fim_digest.clone());
        let os = col(|h| h.os.clone());
        let kernel = col(|h| h.kernel.clone());
        let int = |f: fn(&HostRecord) -> i64| rows.iter().map(f).collect::<Vec<_>>();
        let first_seen = int(|h| h.first_seen);
        let last_seen = int(|h| h.last_seen);
        let last_snapshot_seq = int(|h| h.last_snapshot_seq);
        let acked_seq = int(|h| h.acked_seq);
        let pruned_seq = int(|h| h.pruned_seq);
        let baseline_version: Vec<Option<i64>> = rows.iter().map(|h| h.baseline_version).collect();
        let score: Vec<Option<f64>> = rows.iter().map(|h| h.score).collect();
        // The row seen last wins the descriptive columns; seqs only grow.
        let newer = "CASE WHEN excluded.last_seen >= hosts.last_seen";
        let sql = format!(
            "INSERT INTO hosts (host, first_seen, last_seen, address, agent_version, baseline_id,
                baseline_version, fim_digest, score, os, kernel, last_snapshot_seq, acked_seq,
                pruned_seq)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::text[], $5::text[],
                $6::text[], $7::bigint[], $8::text[], $9::float8[], $10::text[], $11::text[],
                $12::bigint[], $13::bigint[], $14::bigint[])
             ON CONFLICT (host) DO UPDATE SET
                first_seen = least(hosts.first_seen, excluded.first_seen),
                last_seen = greatest(hosts.last_seen, excluded.last_seen),
                address = {newer} THEN excluded.address ELSE hosts.address END,
                agent_version = {newer} THEN excluded.agent_version ELSE hosts.agent_version END,
                baseline_id = {newer} THEN excluded.baseline_id ELSE hosts.baseline_id END,
                baseline_version = {newer} THEN excluded.baseline_version ELSE hosts.baseline_version END,
                fim_digest = {newer} THEN excluded.fim_digest ELSE hosts.fim_digest END,
                score = {newer} THEN excluded.score ELSE hosts.score END,
                os = {newer} THEN excluded.os ELSE hosts.os END,
                kernel = {newer} THEN excluded.kernel ELSE hosts.kernel END,
                last_snapshot_seq = greatest(hosts.last_snapshot_seq, excluded.last_snapshot_seq),
                acked_seq = greatest(hosts.acked_seq, excluded.acked_seq),
                pruned_seq = greatest(hosts.pruned_seq, excluded.pruned_seq)
             WHERE excluded.first_seen < hosts.first_seen OR excluded.last_seen > hosts.last_seen
                OR excluded.last_snapshot_seq > hosts.last_snapshot_seq
                OR excluded.acked_seq > hosts.acked_seq OR excluded.pruned_seq > hosts.pruned_seq"
        );
        let params: [&(dyn ToSql + Sync); 14] = [
            &hosts,
            &first_seen,
            &last_seen,
            &address,
            &agent_version,
            &baseline_id,
            &baseline_version,
            &fim_digest,
            &score,
            &os,
            &kernel,
            &last_snapshot_seq,
            &acked_seq,
            &pruned_seq,
        ];
        self.execute("hosts", &sql, &params)
    }

    fn load_rules(&mut self, rows: &[RuleRecord]) -> Result<u64, StorageError> {
        let col = |f: fn(&RuleRecord) -> &str| rows.iter().map(f).collect::<Vec<_>>();
        let (hosts, rules, statuses) = (col(|r| &r.host), col(|r| &r.rule), col(|r| &r.status));
        let (sevs, domains, titles) =
            (col(|r| &r.severity), col(|r| &r.domains), col(|r| &r.title));
        let seqs: Vec<i64> = rows.iter().map(|r| r.seq).collect();
        let updated: Vec<i64> = rows.iter().map(|r| r.updated_at).collect();
        let sql = "INSERT INTO rule_status (host, rule, status, severity, domains, title, seq, updated_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                  $6::text[], $7::bigint[], $8::bigint[])
             ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
                severity = excluded.severity, domains = excluded.domains, title = excluded.title,
                seq = excluded.seq, updated_at = excluded.updated_at
             WHERE excluded.seq > rule_status.seq";
        self.execute(
            "rule states",
            sql,
            &[
                &hosts, &rules, &statuses, &sevs, &domains, &titles, &seqs, &updated,
            ],
        )
    }

    fn load_events(&mut self, rows: &[EventRecord]) -> Result<u64, StorageError> {
        if rows.is_empty() {
            return Ok(0);
        }
        let days: BTreeSet<i64> = rows.iter().map(|e| e.received_at.div_euclid(DAY)).collect();
        self.ensure_days(&days)?;
        // Each host's seq range in this chunk: what may be stored already.
        let mut ranges: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for e in rows {
            let r = ranges.entry(&e.host).or_insert((e.seq, e.seq));
            r.0 = r.0.min(e.seq);
            r.1 = r.1.max(e.seq);
        }
        let r_hosts: Vec<&str> = ranges.keys().copied().collect();
        let r_lo: Vec<i64> = ranges.values().map(|r| r.0).collect();
        let r_hi: Vec<i64> = ranges.values().map(|r| r.1).collect();
        let at = self.at.as_str();
        let fail = |doing: &str| pg(format!("{at}: loading events: {doing}"));
        self.block_on(async {
            let mut c = client(&self.pool, at).await?;
            let tx = c.transaction().await.map_err(fail("begin"))?;
            let stored: HashSet<(String, i64)> = tx
                .query(
                    "SELECT e.host, e.seq
                       FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS r(h, lo, hi)
                       JOIN events e ON e.host = r.h AND e.seq BETWEEN r.lo AND r.hi",
                    &[&r_hosts, &r_lo, &r_hi],
                )
                .await
                .map_err(fail("reading what is stored"))?
                .iter()
                .map(|r| (r.get(0), r.get(1)))
                .collect();
            let sink = tx
                .copy_in(
                    "COPY events (host, seq, kind, severity, sev_rank, time, received_at, body,
                                 fim_verdict, fim_top)
                     FROM STDIN BINARY",
                )
                .await
                .map_err(fail("copy"))?;
            let types = [
                Type::TEXT,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::INT2,
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ];
            let writer = BinaryCopyInWriter::new(sink, &types);
            let mut writer = std::pin::pin!(writer);
            // One copy of a (host, seq) repeated within the chunk, too.
            let mut seen: HashSet<(&str, i64)> = HashSet::new();
            for e in rows {
                if !seen.insert((&e.host, e.seq)) || stored.contains(&(e.host.clone(), e.seq)) {
                    continue;
                }
                let (verdict, top) = fim_class_of_body(&e.kind, &e.body);
                writer
                    .as_mut()
                    .write(&[
                        &e.host,
                        &e.seq,
                        &e.kind,
                        &e.severity,
                        &e.sev_rank,
                        &e.time,
                        &e.received_at,
                        &e.body,
                        &verdict,
                        &top,
                    ])
                    .await
                    .map_err(fail("copy"))?;
            }
            let n = writer.finish().await.map_err(fail("copy"))?;
            tx.commit().await.map_err(fail("commit"))?;
            Ok(n)
        })
    }

    fn load_baselines(&mut self, rows: &[BaselineRecord]) -> Result<u64, StorageError> {
        let at = self.at.as_str();
        self.block_on(async {
            let mut c = client(&self.pool, at).await?;
            let fail = || pg(format!("{at}: loading baselines"));
            let tx = c.transaction().await.map_err(fail())?;
            let mut n = 0;
            for b in rows {
                n += tx
                    .execute(
                        "INSERT INTO baselines (id, version, key_id, hosts, bytes, sha256, published_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id, version) DO NOTHING",
                        &[&b.id, &b.version, &b.key_id, &b.hosts, &b.bytes, &b.sha256, &b.published_at],
                    )
                    .await
                    .map_err(fail())?;
            }
            tx.commit().await.map_err(fail())?;
            Ok(n)
        })
    }

    fn load_score_days(&mut self, rows: &[ScoreDayRecord]) -> Result<u64, StorageError> {
        let days: Vec<i64> = rows.iter().map(|d| d.day).collect();
        let sums: Vec<f64> = rows.iter().map(|d| d.score_sum).collect();
        let samples: Vec<i64> = rows.iter().map(|d| d.samples).collect();
        self.execute(
            "daily scores",
            "INSERT INTO score_daily (day, score_sum, samples)
             SELECT * FROM unnest($1::bigint[], $2::float8[], $3::bigint[])
             ON CONFLICT (day) DO UPDATE SET score_sum = excluded.score_sum,
                samples = excluded.samples
             WHERE excluded.samples > score_daily.samples",
            &[&days, &sums, &samples],
        )
    }

    fn load_refusals(&mut self, rows: &[RefusalRecord]) -> Result<u64, StorageError> {
        let hosts: Vec<&str> = rows.iter().map(|r| r.host.as_str()).collect();
        let times: Vec<i64> = rows.iter().map(|r| r.time).collect();
        let messages: Vec<&str> = rows.iter().map(|r| r.message.as_str()).collect();
        self.execute(
            "baseline refusals",
            "INSERT INTO baseline_refusals (host, time, message)
             SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[])
             ON CONFLICT (host) DO UPDATE SET time = excluded.time, message = excluded.message
             WHERE excluded.time > baseline_refusals.time",
            &[&hosts, &times, &messages],
        )
    }

    fn load_cursors(&mut self, rows: &[CursorRecord]) -> Result<u64, StorageError> {
        let consumers: Vec<&str> = rows.iter().map(|c| c.consumer.as_str()).collect();
        let hosts: Vec<&str> = rows.iter().map(|c| c.host.as_str()).collect();
        let seqs: Vec<i64> = rows.iter().map(|c| c.seq).collect();
        let updated: Vec<i64> = rows.iter().map(|c| c.updated_at).collect();
        self.execute(
            "forwarding cursors",
            "INSERT INTO forward_cursors (consumer, host, seq, updated_at)
             SELECT * FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[])
             ON CONFLICT (consumer, host) DO UPDATE SET seq = excluded.seq,
                updated_at = excluded.updated_at
             WHERE excluded.seq > forward_cursors.seq",
            &[&consumers, &hosts, &seqs, &updated],
        )
    }
}

impl Postgres {
    /// One statement in its own transaction; the rows it wrote.
    fn execute(
        &self,
        what: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StorageError> {
        let at = self.at.as_str();
        self.block_on(async {
            let c = client(&self.pool, at).await?;
            c.execute(sql, params)
                .await
                .map_err(pg(format!("{at}: loading {what}")))
        })
    }
}
