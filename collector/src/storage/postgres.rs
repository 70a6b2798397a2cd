//! PostgreSQL backend: the store several collectors share. The traits are
//! blocking (the writer is a thread, reads run in `spawn_blocking`), the
//! driver is async (tokio-postgres behind a deadpool pool): each store owns
//! a one-worker runtime that runs the connections, and each call blocks on
//! its future there. That keeps SQLite and PostgreSQL behind the same
//! traits, and the collector's async workers never wait on the database.
//!
//! Schema: versioned migrations in `plumb_schema`, applied at start inside
//! one transaction holding an advisory lock, so collectors starting together
//! apply each once. Events are partitioned by day of reception
//! (`events_pYYYYMMDD`, plus a default partition that catches the rest);
//! retention drops whole partitions. Host names are stored lowercase.
//!
//! (host, seq) uniqueness: PostgreSQL cannot enforce a unique index across
//! partitions unless it contains the partition key, so it is enforced by
//! locking the host's row first (the `hosts` upsert), then inserting only
//! seqs above the host's `acked_seq` (the highest stored) and, for the rare
//! resend below it, only those not stored yet. Two collectors storing the
//! same host serialize on that row lock; hosts are locked in name order, so
//! group commits of two collectors cannot deadlock.

use super::compliance::{WorstCandidate, parse_domains, pick_worst};
use super::{
    BaselineRow, Compliance, Cursors, DRIFT_KINDS, DailyScore, DomainCompliance, DriftFilter,
    EventRow, FLEET_BASELINES_SQL, FLEET_HOSTS_SQL, FLEET_RULES_SQL, FimCount, FleetSummary,
    HostPage, HostQuery, HostRow, IngestBatch, NewBaseline, Pending, PublishOutcome, Queries,
    RefusalRow, Revocation, RuleScope, RuleStatusRow, Storage, StorageError, event_time, fim_class,
    host_page, per_host_share, publish_conflict, severity_rank,
};
use crate::config::PostgresSection;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Transaction};
use plumb_core::Severity;
use plumb_core::event::{AgentEventKind, Event, EventBody};
use plumb_core::report::Status;
use std::collections::HashSet;
use std::future::Future;
use std::time::Duration;

/// Schema migrations; entry `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // 1: hosts, events (partitioned by day of reception), rule status,
    // baselines, revocations.
    "CREATE TABLE hosts (
        host text PRIMARY KEY CHECK (host = lower(host)),
        first_seen bigint NOT NULL,
        last_seen bigint NOT NULL,
        address text,
        agent_version text,
        baseline_id text,
        baseline_version bigint,
        fim_digest text,
        score double precision,
        os text,
        kernel text,
        last_snapshot_seq bigint NOT NULL DEFAULT 0,
        acked_seq bigint NOT NULL DEFAULT 0,
        pruned_seq bigint NOT NULL DEFAULT 0
     );
     CREATE TABLE events (
        host text NOT NULL,
        seq bigint NOT NULL,
        kind text NOT NULL,
        severity text NOT NULL,
        sev_rank smallint NOT NULL,
        time bigint NOT NULL,
        received_at bigint NOT NULL,
        body text NOT NULL
     ) PARTITION BY RANGE (received_at);
     CREATE TABLE events_default PARTITION OF events DEFAULT;
     CREATE INDEX events_host_seq ON events (host, seq);
     CREATE INDEX events_drift_host ON events (host, time)
        WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper');
     CREATE INDEX events_drift_time ON events (time)
        WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper');
     CREATE TABLE rule_status (
        host text NOT NULL,
        rule text NOT NULL,
        status text NOT NULL,
        severity text NOT NULL,
        domains text NOT NULL,
        title text NOT NULL,
        seq bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (host, rule)
     );
     CREATE TABLE baselines (
        id text NOT NULL,
        version bigint NOT NULL,
        key_id text NOT NULL,
        hosts text NOT NULL DEFAULT '*',
        bytes bytea NOT NULL,
        sha256 text NOT NULL,
        published_at bigint NOT NULL,
        PRIMARY KEY (id, version)
     );
     CREATE TABLE revocations (
        serial text PRIMARY KEY,
        subject text NOT NULL,
        revoked_at bigint NOT NULL
     );",
    // 2: forwarding and alert cursors: per consumer (a `[[forward]]` sink
    // or the alerts) and host, the highest seq the consumer has had
    // acknowledged.
    "CREATE TABLE forward_cursors (
        consumer text NOT NULL,
        host text NOT NULL,
        seq bigint NOT NULL,
        updated_at bigint NOT NULL,
        PRIMARY KEY (consumer, host)
     );",
    // 3: the fleet score per day (the console's compliance chart): each
    // stored snapshot adds its score to its day; one row a day, kept.
    "CREATE TABLE score_daily (
        day bigint PRIMARY KEY,
        score_sum double precision NOT NULL,
        samples bigint NOT NULL
     );
     CREATE TABLE baseline_refusals (
        host text PRIMARY KEY,
        time bigint NOT NULL,
        message text NOT NULL
     );",
    // 4: each host's rule statuses counted, so `hosts` reads one row per
    // host instead of recounting every rule state. Kept by a trigger in
    // the same transaction as `rule_status` (the writer, `storage
    // migrate` and any repair by hand keep it true).
    "CREATE TABLE rule_counts (
        host text PRIMARY KEY,
        pass bigint NOT NULL DEFAULT 0,
        fail bigint NOT NULL DEFAULT 0,
        error bigint NOT NULL DEFAULT 0,
        skipped bigint NOT NULL DEFAULT 0
     );
     INSERT INTO rule_counts (host, pass, fail, error, skipped)
        SELECT host, count(*) FILTER (WHERE status = 'pass'),
               count(*) FILTER (WHERE status = 'fail'),
               count(*) FILTER (WHERE status = 'error'),
               count(*) FILTER (WHERE status = 'skipped')
        FROM rule_status GROUP BY host;
     CREATE FUNCTION rule_counts_apply() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN
            UPDATE rule_counts SET
                pass = pass - (OLD.status = 'pass')::int,
                fail = fail - (OLD.status = 'fail')::int,
                error = error - (OLD.status = 'error')::int,
                skipped = skipped - (OLD.status = 'skipped')::int
            WHERE host = OLD.host;
        END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN
            INSERT INTO rule_counts AS c (host, pass, fail, error, skipped)
            VALUES (NEW.host, (NEW.status = 'pass')::int, (NEW.status = 'fail')::int,
                    (NEW.status = 'error')::int, (NEW.status = 'skipped')::int)
            ON CONFLICT (host) DO UPDATE SET
                pass = c.pass + excluded.pass, fail = c.fail + excluded.fail,
                error = c.error + excluded.error, skipped = c.skipped + excluded.skipped;
        END IF;
        RETURN NULL;
     END
     $$;
     CREATE TRIGGER rule_counts_sync AFTER INSERT OR DELETE OR UPDATE OF host, status
        ON rule_status FOR EACH ROW EXECUTE FUNCTION rule_counts_apply();",
    // 5: each `fim_change`'s package verdict and, unless verified, its
    // top-level directory, stored with it (`storage::fim_class`: the
    // writer and bulk loads fill them) so that `report` counts file changes
    // from a covering index instead of reading event bodies. Filled here
    // for the events already stored, as `fim_class_of_body` derives them
    // (a body holding an escaped NUL, which PostgreSQL's JSON functions
    // refuse to unescape, counts with path `?`).
    "ALTER TABLE events ADD COLUMN fim_verdict text, ADD COLUMN fim_top text;
     UPDATE events SET (fim_verdict, fim_top) = (
        SELECT CASE WHEN json_typeof(j -> 'package' -> 'name') = 'string'
                     AND json_typeof(j -> 'package' -> 'version') = 'string'
                    THEN CASE j -> 'package' ->> 'verified'
                            WHEN 'true' THEN 'verified' WHEN 'false' THEN 'unverified' END
               END,
               coalesce(CASE json_typeof(j -> 'path')
                   WHEN 'string' THEN j ->> 'path'
                   WHEN 'object' THEN CASE WHEN json_typeof(j -> 'path' -> 'hex') = 'string'
                                            AND json_typeof(j -> 'path' -> 'lossy') = 'string'
                                           THEN j -> 'path' ->> 'lossy' END
               END, '?')
          FROM (SELECT CASE WHEN strpos(body, '\\u0000') = 0 THEN body::json END AS j) AS b)
      WHERE kind = 'fim_change';
     UPDATE events SET fim_top = CASE WHEN fim_verdict = 'verified' THEN NULL
                                      ELSE '/' || split_part(ltrim(fim_top, '/'), '/', 1) END
      WHERE kind = 'fim_change';
     CREATE INDEX events_fim ON events (time, host, fim_verdict, fim_top)
        WHERE kind = 'fim_change';
     -- The console's rule page reads one rule's statuses.
     CREATE INDEX rule_status_rule ON rule_status (rule, host);",
    // 6: what `hosts` and `report` count, kept as the rows they count are
    // written, so that neither reads the events or every rule state:
    // - `drift_ring`: per host, its drift events of each of the 25 hours
    //   ending with the newest hour one of them carries (`head`, hours of
    //   the agent's time: unix time / 3600, floored); `hosts` adds the
    //   window's first partial hour, and any hour the ring does not hold,
    //   counted from the events (`Postgres::host_rows`);
    // - `fim_daily`: file changes per UTC day of the agent's time, host,
    //   package verdict and top directory ('' for none); `report` counts
    //   whole days;
    // - `rule_domains`: per host and ISSP domain, its rule states passing,
    //   failing, in error, and `host_domains`: per host, its domains by its
    //   worst status there (`report`'s per-domain figures, one row a host),
    //   beside the partial index of failing states its worst rules are
    //   read from.
    // Statement-level triggers with transition tables keep them in the
    // writing transaction, whoever writes (the collector's group commits,
    // `COPY` of the seeder and `storage migrate`, a repair by hand, a
    // retention delete in the default partition); a dropped day partition
    // is subtracted first (`events_tally`, called by retention). Each row is
    // a host's own (no counter shared by all hosts): collectors storing
    // different hosts never wait on one another. Filled here from what is
    // stored.
    r#"CREATE FUNCTION plumb_div(a bigint, b bigint) RETURNS bigint
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT (a - mod(mod(a, b) + b, b)) / b $$;
     CREATE TABLE drift_ring (
        host text PRIMARY KEY,
        head bigint NOT NULL,
        counts integer[] NOT NULL
     );
     -- The count of `hour` in a ring ending at `head` (slot hour mod 25).
     CREATE FUNCTION drift_ring_at(head bigint, counts integer[], hour bigint) RETURNS integer
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN hour BETWEEN head - 24 AND head
                    THEN coalesce(counts[1 + mod(mod(hour, 25) + 25, 25)], 0) ELSE 0 END $$;
     -- Two rings added, ending at the later head (a ring with a NULL head
     -- is empty). PL/pgSQL: called once per host a statement touches, it
     -- costs a fraction of a set-returning SQL function.
     CREATE FUNCTION drift_ring_merge(h1 bigint, c1 integer[], h2 bigint, c2 integer[])
        RETURNS integer[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
     DECLARE
        h bigint := greatest(h1, h2);
        o integer[] := array_fill(0, ARRAY[25]);
        hr bigint;
        s integer;
     BEGIN
        FOR i IN 0 .. 24 LOOP
            hr := h - i;
            s := 1 + mod(mod(hr, 25) + 25, 25)::integer;
            IF hr BETWEEN h1 - 24 AND h1 THEN o[s] := o[s] + coalesce(c1[s], 0); END IF;
            IF hr BETWEEN h2 - 24 AND h2 THEN o[s] := o[s] + coalesce(c2[s], 0); END IF;
        END LOOP;
        RETURN o;
     END $$;
     -- The ring of counts `ns` of hours `hours`, ending at the latest of them.
     CREATE FUNCTION drift_ring_of(hours bigint[], ns integer[])
        RETURNS integer[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
     DECLARE
        h bigint := (SELECT max(x) FROM unnest(hours) AS x);
        o integer[] := array_fill(0, ARRAY[25]);
        s integer;
     BEGIN
        FOR i IN 1 .. coalesce(array_length(hours, 1), 0) LOOP
            IF hours[i] BETWEEN h - 24 AND h THEN
                s := 1 + mod(mod(hours[i], 25) + 25, 25)::integer;
                o[s] := o[s] + ns[i];
            END IF;
        END LOOP;
        RETURN o;
     END $$;
     CREATE TABLE fim_daily (
        day bigint NOT NULL,
        host text NOT NULL,
        verdict text NOT NULL,
        top text NOT NULL,
        n bigint NOT NULL,
        PRIMARY KEY (day, host, verdict, top)
     );
     -- The statements adding rows of events (%2$s: a table or transition
     -- table) to the counts, each row counted %1$s times (1 or -1).
     CREATE FUNCTION events_tally_sql() RETURNS text[] LANGUAGE sql IMMUTABLE AS $f$ SELECT ARRAY[
        $t$WITH d AS (
               SELECT host, plumb_div(time, 3600) AS hour, (%1$s * count(*))::integer AS n
                 FROM %2$s WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper')
                GROUP BY 1, 2)
        INSERT INTO drift_ring AS x (host, head, counts)
        SELECT host, max(hour), drift_ring_of(array_agg(hour), array_agg(n))
          FROM d GROUP BY host ORDER BY host
        ON CONFLICT (host) DO UPDATE SET head = greatest(x.head, excluded.head),
           counts = drift_ring_merge(x.head, x.counts, excluded.head, excluded.counts)$t$,
        $t$INSERT INTO fim_daily AS x (day, host, verdict, top, n)
        SELECT plumb_div(time, 86400), host, coalesce(fim_verdict, ''), coalesce(fim_top, ''),
               %1$s * count(*)
          FROM %2$s WHERE kind = 'fim_change' GROUP BY 1, 2, 3, 4 ORDER BY 2, 1, 3, 4
        ON CONFLICT (day, host, verdict, top) DO UPDATE SET n = x.n + excluded.n$t$] $f$;
     CREATE FUNCTION events_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$
     DECLARE q text;
     BEGIN
        FOREACH q IN ARRAY events_tally_sql() LOOP
            IF TG_OP IN ('UPDATE', 'DELETE') THEN EXECUTE format(q, -1, 'old_rows'); END IF;
            IF TG_OP IN ('INSERT', 'UPDATE') THEN EXECUTE format(q, 1, 'new_rows'); END IF;
        END LOOP;
        RETURN NULL;
     END $$;
     -- What retention calls before it drops a day partition.
     CREATE FUNCTION events_tally(src regclass, sign integer) RETURNS void LANGUAGE plpgsql AS $$
     DECLARE q text;
     BEGIN
        FOREACH q IN ARRAY events_tally_sql() LOOP
            EXECUTE format(q, sign, src::text);
        END LOOP;
     END $$;
     CREATE TRIGGER events_tally_insert AFTER INSERT ON events
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     CREATE TRIGGER events_tally_update AFTER UPDATE ON events
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     CREATE TRIGGER events_tally_delete AFTER DELETE ON events
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     -- Statements naming the default partition itself (retention's
     -- row-by-row delete) fire its own triggers, not the parent's.
     CREATE TRIGGER events_tally_insert AFTER INSERT ON events_default
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     CREATE TRIGGER events_tally_update AFTER UPDATE ON events_default
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     CREATE TRIGGER events_tally_delete AFTER DELETE ON events_default
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION events_tally_apply();
     INSERT INTO fim_daily (day, host, verdict, top, n)
        SELECT plumb_div(time, 86400), host, coalesce(fim_verdict, ''), coalesce(fim_top, ''),
               count(*)
          FROM events WHERE kind = 'fim_change' GROUP BY 1, 2, 3, 4;
     WITH t AS (SELECT host, max(plumb_div(time, 3600)) AS head FROM events
                 WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper') GROUP BY host),
          d AS (SELECT e.host, plumb_div(e.time, 3600) AS hour, count(*)::integer AS n
                  FROM t JOIN events e ON e.host = t.host AND e.time >= (t.head - 24) * 3600
                 WHERE e.kind IN ('check_changed', 'fim_change', 'fim_tamper') GROUP BY 1, 2)
     INSERT INTO drift_ring (host, head, counts)
     SELECT host, max(hour), drift_ring_of(array_agg(hour), array_agg(n)) FROM d GROUP BY host;
     -- A stored `domains` ('[13,20]', as the writer makes it: numbers 0 to
     -- 255) as an array; anything else holds none (as the readers parse
     -- it). One expression, so that the planner inlines it. A domain listed
     -- twice counts twice in `rule_domains`, where only whether a count is
     -- 0 matters.
     CREATE FUNCTION plumb_domains(d text) RETURNS smallint[]
        LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
        SELECT CASE WHEN d ~ '^\[(([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5])(,([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5]))*)?\]$'
               THEN coalesce(string_to_array(nullif(btrim(d, '[]'), ''), ',')::smallint[], '{}')
               ELSE '{}' END $$;
     CREATE TABLE rule_domains (
        host text NOT NULL,
        domain smallint NOT NULL,
        pass bigint NOT NULL DEFAULT 0,
        fail bigint NOT NULL DEFAULT 0,
        error bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (host, domain)
     );
     CREATE FUNCTION rule_domains_sql() RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT
        $t$INSERT INTO rule_domains AS c (host, domain, pass, fail, error)
        SELECT r.host, d.domain, %1$s * count(*) FILTER (WHERE r.status = 'pass'),
               %1$s * count(*) FILTER (WHERE r.status = 'fail'),
               %1$s * count(*) FILTER (WHERE r.status = 'error')
          FROM %2$s r CROSS JOIN LATERAL unnest(plumb_domains(r.domains)) AS d(domain)
         WHERE r.status IN ('pass', 'fail', 'error')
         GROUP BY r.host, d.domain ORDER BY r.host, d.domain
        ON CONFLICT (host, domain) DO UPDATE SET pass = c.pass + excluded.pass,
           fail = c.fail + excluded.fail, error = c.error + excluded.error$t$ $f$;
     -- Each host's domains by its worst status there, for the hosts of
     -- %1$s (a query; each host's rows read through the primary key: a
     -- transition table has no statistics to plan a join with): what
     -- `report` reads, one row a host.
     CREATE TABLE host_domains (
        host text PRIMARY KEY,
        failing smallint[] NOT NULL,
        erring smallint[] NOT NULL,
        passing smallint[] NOT NULL
     );
     CREATE FUNCTION host_domains_sql() RETURNS text LANGUAGE sql IMMUTABLE AS $f$ SELECT
        $t$INSERT INTO host_domains AS h (host, failing, erring, passing)
        SELECT t.host, a.failing, a.erring, a.passing
          FROM (SELECT DISTINCT host FROM (%1$s) AS q) AS t
         CROSS JOIN LATERAL (
               SELECT coalesce(array_agg(c.domain ORDER BY c.domain)
                               FILTER (WHERE c.fail > 0), '{}') AS failing,
                      coalesce(array_agg(c.domain ORDER BY c.domain)
                               FILTER (WHERE c.fail = 0 AND c.error > 0), '{}') AS erring,
                      coalesce(array_agg(c.domain ORDER BY c.domain)
                               FILTER (WHERE c.fail = 0 AND c.error = 0 AND c.pass > 0), '{}')
                        AS passing
                 FROM rule_domains c WHERE c.host = t.host) AS a
         ORDER BY t.host
        ON CONFLICT (host) DO UPDATE SET failing = excluded.failing, erring = excluded.erring,
           passing = excluded.passing$t$ $f$;
     CREATE FUNCTION rule_domains_apply() RETURNS trigger LANGUAGE plpgsql AS $$
     BEGIN
        IF TG_OP IN ('UPDATE', 'DELETE') THEN EXECUTE format(rule_domains_sql(), -1, 'old_rows'); END IF;
        IF TG_OP IN ('INSERT', 'UPDATE') THEN EXECUTE format(rule_domains_sql(), 1, 'new_rows'); END IF;
        IF TG_OP = 'INSERT' THEN
            EXECUTE format(host_domains_sql(), 'SELECT host FROM new_rows');
        ELSIF TG_OP = 'DELETE' THEN
            EXECUTE format(host_domains_sql(), 'SELECT host FROM old_rows');
        ELSE
            EXECUTE format(host_domains_sql(),
                           'SELECT host FROM old_rows UNION SELECT host FROM new_rows');
        END IF;
        RETURN NULL;
     END $$;
     CREATE TRIGGER rule_domains_insert AFTER INSERT ON rule_status
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION rule_domains_apply();
     CREATE TRIGGER rule_domains_update AFTER UPDATE ON rule_status
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION rule_domains_apply();
     CREATE TRIGGER rule_domains_delete AFTER DELETE ON rule_status
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION rule_domains_apply();
     DO $$ BEGIN
        EXECUTE format(rule_domains_sql(), 1, 'rule_status');
        EXECUTE format(host_domains_sql(), 'SELECT host FROM rule_domains');
     END $$;
     -- `report`'s worst rules: the failing states only, by rule.
     CREATE INDEX rule_status_failing ON rule_status (rule, domains, host)
        WHERE status = 'fail';"#,
    // 7: `fim_ring`, per host, package verdict and top directory, its file
    // changes of each of the 9 UTC days ending with the newest day one of
    // them carries (`head`, days of the agent's time), kept by the same
    // statement triggers as `fim_daily`: `report`'s week is one row a host
    // instead of seven. Days a ring does not hold (a clock that ran more
    // than two days ahead) are read from `fim_daily`
    // (`Postgres::file_changes`). Filled here from `fim_daily`.
    r#"CREATE FUNCTION plumb_ring_merge(h1 bigint, c1 bigint[], h2 bigint, c2 bigint[], size integer)
        RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
     DECLARE
        h bigint := greatest(h1, h2);
        o bigint[] := array_fill(0::bigint, ARRAY[size]);
        k bigint;
        s integer;
     BEGIN
        FOR i IN 0 .. size - 1 LOOP
            k := h - i;
            s := 1 + mod(mod(k, size) + size, size)::integer;
            IF k BETWEEN h1 - size + 1 AND h1 THEN o[s] := o[s] + coalesce(c1[s], 0); END IF;
            IF k BETWEEN h2 - size + 1 AND h2 THEN o[s] := o[s] + coalesce(c2[s], 0); END IF;
        END LOOP;
        RETURN o;
     END $$;
     CREATE FUNCTION plumb_ring_of(keys bigint[], ns bigint[], size integer)
        RETURNS bigint[] LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
     DECLARE
        h bigint := (SELECT max(x) FROM unnest(keys) AS x);
        o bigint[] := array_fill(0::bigint, ARRAY[size]);
        s integer;
     BEGIN
        FOR i IN 1 .. coalesce(array_length(keys, 1), 0) LOOP
            IF keys[i] BETWEEN h - size + 1 AND h THEN
                s := 1 + mod(mod(keys[i], size) + size, size)::integer;
                o[s] := o[s] + ns[i];
            END IF;
        END LOOP;
        RETURN o;
     END $$;
     CREATE TABLE fim_ring (
        host text NOT NULL,
        verdict text NOT NULL,
        top text NOT NULL,
        head bigint NOT NULL,
        counts bigint[] NOT NULL,
        PRIMARY KEY (host, verdict, top)
     );
     CREATE INDEX fim_ring_head ON fim_ring (head);
     -- Migration 6's statements, kept under another name, and the ring's.
     ALTER FUNCTION events_tally_sql() RENAME TO events_tally_sql_6;
     CREATE FUNCTION events_tally_sql() RETURNS text[] LANGUAGE sql IMMUTABLE AS $f$
        SELECT events_tally_sql_6() || ARRAY[
        $t$WITH d AS (
               SELECT host, coalesce(fim_verdict, '') AS verdict, coalesce(fim_top, '') AS top,
                      plumb_div(time, 86400) AS day, %1$s * count(*) AS n
                 FROM %2$s WHERE kind = 'fim_change' GROUP BY 1, 2, 3, 4)
        INSERT INTO fim_ring AS x (host, verdict, top, head, counts)
        SELECT host, verdict, top, max(day), plumb_ring_of(array_agg(day), array_agg(n), 9)
          FROM d GROUP BY 1, 2, 3 ORDER BY 1, 2, 3
        ON CONFLICT (host, verdict, top) DO UPDATE SET head = greatest(x.head, excluded.head),
           counts = plumb_ring_merge(x.head, x.counts, excluded.head, excluded.counts, 9)$t$] $f$;
     INSERT INTO fim_ring (host, verdict, top, head, counts)
        SELECT host, verdict, top, max(day), plumb_ring_of(array_agg(day), array_agg(n), 9)
          FROM fim_daily GROUP BY 1, 2, 3;"#,
];

/// Schema version this build writes.
const SCHEMA_VERSION: u32 = MIGRATIONS.len() as u32;

/// Advisory lock keys (one namespace per purpose; "plumb" in ASCII, then
/// a purpose number).
const LOCK_MIGRATE: i64 = 0x706c_756d_0001;
pub(super) const LOCK_PARTITIONS: i64 = 0x706c_756d_0002;
const LOCK_PRUNE: i64 = 0x706c_756d_0003;

/// Days of partitions created ahead of the current one.
const DAYS_AHEAD: i64 = 3;
pub(super) const DAY: i64 = 86_400;

/// Days a `fim_ring` row holds (migration 7).
const FIM_RING_DAYS: i64 = 9;
const HOUR: i64 = 3_600;
/// Hours a `drift_ring` holds (migration 6): its head and the 24 before.
const RING_HOURS: i64 = 25;

/// What a ring of `size` slots ending at `head` (a `drift_ring` of hours,
/// a `fim_ring` of days; key `k` in slot `k mod size`, as the database's
/// `1 + mod(mod(k, size) + size, size)`) holds for the keys from `from` on.
/// No event counted there is later than `head`; the keys before the ring
/// are not in it (the caller counts them from elsewhere).
fn ring_since<T: Copy + Into<i64>>(head: i64, counts: &[T], from: i64, size: i64) -> i64 {
    let first = from.max(head - (size - 1));
    (first..=head)
        .map(|k| {
            usize::try_from(k.rem_euclid(size))
                .ok()
                .and_then(|slot| counts.get(slot))
                .map_or(0, |&n| n.into())
        })
        .sum()
}

pub(super) fn pg(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> StorageError {
    let context = context.into();
    move |source| StorageError::Backend {
        context,
        source: Box::new(source),
    }
}

/// The PostgreSQL store: a pool, and the runtime its connections live on.
pub(crate) struct Postgres {
    /// `Some` until drop (shut down without blocking, since a store may be
    /// dropped on an async worker).
    rt: Option<tokio::runtime::Runtime>,
    pub(super) pool: Pool,
    /// The database, for messages (never the password).
    pub(super) at: String,
    /// Unix time up to which day partitions exist (writer only).
    partitions_until: i64,
}

impl std::fmt::Debug for Postgres {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Postgres")
            .field("at", &self.at)
            .finish_non_exhaustive()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

/// The connection settings of `cfg`: its string, the password from the
/// file or `PGPASSWORD`, the connect timeout.
fn connection_config(cfg: &PostgresSection) -> Result<tokio_postgres::Config, StorageError> {
    let mut pc: tokio_postgres::Config =
        cfg.url
            .parse()
            .map_err(|e: tokio_postgres::Error| StorageError::Backend {
                context: "storage.postgres.url".into(),
                source: Box::new(e),
            })?;
    if let Some(p) = &cfg.password_file {
        let bytes = plumb_os::read_trusted(p, plumb_os::FileKind::PrivateKey, 4096)?;
        let text = String::from_utf8_lossy(&bytes);
        pc.password(text.lines().next().unwrap_or("").trim_end());
    } else if let Ok(pw) = std::env::var("PGPASSWORD") {
        pc.password(pw);
    }
    pc.connect_timeout(Duration::from_secs(cfg.connect_timeout_secs));
    pc.application_name("plumb-collector");
    // Every statement of the collector is short: JIT compiling one (which
    // the planner does past `jit_above_cost`, e.g. for a plan over many
    // day partitions) costs more than running it (seconds for `hosts`).
    let options = match pc.get_options() {
        Some(o) if !o.trim().is_empty() => format!("{o} -c jit=off"),
        _ => "-c jit=off".to_string(),
    };
    pc.options(&options);
    Ok(pc)
}

/// "postgres HOST/DB" for messages.
fn describe(pc: &tokio_postgres::Config) -> String {
    let host = match pc.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".into(),
    };
    let port = pc.get_ports().first().copied().unwrap_or(5432);
    format!(
        "postgres {host}:{port}/{}",
        pc.get_dbname().or(pc.get_user()).unwrap_or("")
    )
}

/// The rustls client configuration verifying the server against `ca`.
fn tls_config(ca: &std::path::Path) -> Result<rustls::ClientConfig, StorageError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = plumb_os::pem::load_certs(ca).map_err(|e| StorageError::Backend {
        context: format!("storage.postgres.ca {}", ca.display()),
        source: Box::new(e),
    })?;
    for c in certs {
        roots.add(c).map_err(|e| StorageError::Backend {
            context: format!("storage.postgres.ca {}", ca.display()),
            source: Box::new(e),
        })?;
    }
    rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| StorageError::Backend {
            context: "TLS to PostgreSQL".into(),
            source: Box::new(e),
        })
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
}

impl Postgres {
    /// Every host, or one, with its drift since `drift_since`
    /// ([`Postgres::drift_counts`], on connections of its own meanwhile).
    fn host_rows(
        &self,
        drift_since: i64,
        host: Option<&str>,
    ) -> Result<Vec<HostRow>, StorageError> {
        let sql =
            "SELECT h.host, h.first_seen, h.last_seen, h.address, h.agent_version, h.baseline_id,
                    h.baseline_version, h.fim_digest, h.acked_seq,
                    coalesce(r.pass, 0), coalesce(r.fail, 0), coalesce(r.error, 0),
                    coalesce(r.skipped, 0)
               FROM hosts h
               LEFT JOIN rule_counts r ON r.host = h.host
              WHERE ($1::text IS NULL OR h.host = lower($1::text))
              ORDER BY h.host";
        let fail = pg(format!("{}: hosts", self.at));
        self.block_on(async {
            // Two connections, as the drift counts need: the rows are
            // read on the first one, pipelined with the rings.
            let (c, c2) = tokio::try_join!(self.client(), self.client())?;
            let rows = async { c.query(sql, &[&host]).await.map_err(fail) };
            let (rows, drift) =
                tokio::try_join!(rows, self.drift_counts(&c, &c2, drift_since, host))?;
            Ok(rows
                .iter()
                .map(|r| {
                    let h = host_row(r);
                    HostRow {
                        drift_recent: drift.get(&h.host).copied().unwrap_or(0),
                        ..h
                    }
                })
                .collect())
        })
    }

    /// Each host's drift events since `drift_since` (every host's, or
    /// `host`'s), what counting the events would say (migration 6): its
    /// `drift_ring` for the whole hours it holds, plus, counted from the
    /// events (`events_drift_time`, `events_drift_host`), the window's
    /// first partial hour and, for the rare host whose ring starts after
    /// the window's first whole hour (an event from a clock running ahead,
    /// or a window further back than 25 hours), the whole hours before its
    /// ring. Hosts with none are left out.
    /// The rings are read on `c`, the partial hour on `c2` meanwhile.
    async fn drift_counts(
        &self,
        c: &tokio_postgres::Client,
        c2: &tokio_postgres::Client,
        drift_since: i64,
        host: Option<&str>,
    ) -> Result<std::collections::HashMap<String, u32>, StorageError> {
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let first_hour = drift_since.div_euclid(HOUR).saturating_add(1);
        let first_hour_at = first_hour.saturating_mul(HOUR);
        let ring_sql = "SELECT host, head, counts FROM drift_ring
                         WHERE ($1::text IS NULL OR host = lower($1::text))";
        // The window's first, partial hour, on a connection of its own
        // meanwhile (planned over every day partition). Each statement
        // sees its own snapshot: under ingestion the parts may be a few
        // milliseconds apart, each exact.
        let partial_sql = format!(
            "SELECT host, count(*) FROM events
              WHERE kind IN ({kinds}) AND time >= $1 AND time < $2
                AND ($3::text IS NULL OR host = lower($3::text))
              GROUP BY host"
        );
        let before_ring = format!(
            "SELECT u.h, (SELECT count(*) FROM events e
                           WHERE e.host = u.h AND e.kind IN ({kinds}) AND e.time >= $2
                             AND e.time < u.t)
               FROM unnest($1::text[], $3::bigint[]) AS u(h, t)"
        );
        let fail = || pg(format!("{}: drift counts", self.at));
        let ring_params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&host];
        let partial_params: [&(dyn tokio_postgres::types::ToSql + Sync); 3] =
            [&drift_since, &first_hour_at, &host];
        let (rings, partial) = tokio::try_join!(
            c.query(ring_sql, &ring_params),
            c2.query(&partial_sql, &partial_params)
        )
        .map_err(fail())?;
        let mut out: std::collections::HashMap<String, i64> = partial
            .iter()
            .map(|r| (r.get::<_, String>(0), r.get::<_, i64>(1)))
            .collect();
        // Hosts whose ring starts after `first_hour`, and where.
        let (mut ahead, mut ring_starts): (Vec<&str>, Vec<i64>) = (Vec::new(), Vec::new());
        for r in &rings {
            let head: i64 = r.get(1);
            // Elements are never NULL but for a repair by hand: 0.
            let counts: Vec<i32> = r
                .get::<_, Vec<Option<i32>>>(2)
                .iter()
                .map(|n| n.unwrap_or(0))
                .collect();
            let start = head - (RING_HOURS - 1);
            if start > first_hour {
                ahead.push(r.get(0));
                ring_starts.push(start.saturating_mul(HOUR));
            }
            *out.entry(r.get(0)).or_default() += ring_since(head, &counts, first_hour, RING_HOURS);
        }
        if !ahead.is_empty() {
            let extra = c
                .query(&before_ring, &[&ahead, &first_hour_at, &ring_starts])
                .await
                .map_err(fail())?;
            for r in &extra {
                *out.entry(r.get(0)).or_default() += r.get::<_, i64>(1);
            }
        }
        Ok(out
            .into_iter()
            .map(|(h, n)| (h, u32::try_from(n.max(0)).unwrap_or(u32::MAX)))
            .collect())
    }

    /// Every rule status, one host's (the primary key's prefix) or one
    /// rule's (`rule_status_rule`).
    fn rule_rows(&self, scope: RuleScope<'_>) -> Result<Vec<RuleStatusRow>, StorageError> {
        let fail = pg(format!("{}: rule statuses", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = match scope {
                RuleScope::All => {
                    c.query(
                        "SELECT host, rule, status, severity, domains, title FROM rule_status
                         ORDER BY host, rule",
                        &[],
                    )
                    .await
                }
                RuleScope::Host(h) => {
                    c.query(
                        "SELECT host, rule, status, severity, domains, title FROM rule_status
                         WHERE host = lower($1::text) ORDER BY rule",
                        &[&h],
                    )
                    .await
                }
                RuleScope::Rule(rule) => {
                    c.query(
                        "SELECT host, rule, status, severity, domains, title FROM rule_status
                         WHERE rule = $1::text ORDER BY host",
                        &[&rule],
                    )
                    .await
                }
            }
            .map_err(fail)?;
            Ok(rows
                .iter()
                .filter_map(|r| {
                    Some(RuleStatusRow {
                        host: r.get(0),
                        rule: r.get(1),
                        status: parse_status(r.get(2))?,
                        severity: parse_severity(r.get(3)),
                        domains: serde_json::from_str(r.get(4)).unwrap_or_default(),
                        title: r.get(5),
                    })
                })
                .collect())
        })
    }

    /// Connects, migrates (under the migration lock) and creates the
    /// current day partitions: what the writer and `baseline publish` use.
    pub(crate) fn open(cfg: &PostgresSection) -> Result<Postgres, StorageError> {
        let mut s = Self::connect(cfg)?;
        s.block_on(migrate(&s.pool, &s.at))?;
        s.ensure_partitions(now())?;
        Ok(s)
    }

    /// Connects and checks the schema is this build's (nothing created).
    pub(crate) fn open_read_only(cfg: &PostgresSection) -> Result<Postgres, StorageError> {
        let s = Self::connect(cfg)?;
        let found = s.block_on(async {
            let c = s.client().await?;
            let exists = c
                .query_one("SELECT to_regclass('plumb_schema') IS NOT NULL", &[])
                .await
                .map_err(pg(format!("{}: schema version", s.at)))?
                .get::<_, bool>(0);
            if !exists {
                return Ok(0);
            }
            version(&**c, &s.at).await
        })?;
        if found > SCHEMA_VERSION {
            return Err(StorageError::NewerSchema {
                at: s.at.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        if found == 0 {
            return Err(StorageError::NoDatabase { at: s.at.clone() });
        }
        if found < SCHEMA_VERSION {
            return Err(StorageError::OlderSchema {
                at: s.at.clone(),
                found,
                known: SCHEMA_VERSION,
            });
        }
        Ok(s)
    }

    fn connect(cfg: &PostgresSection) -> Result<Postgres, StorageError> {
        let pc = connection_config(cfg)?;
        let at = describe(&pc);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("postgres")
            .enable_all()
            .build()
            .map_err(|source| StorageError::File {
                path: "postgres runtime".into(),
                source,
            })?;
        let mc = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &cfg.ca {
            Some(ca) => {
                let mut pc = pc;
                pc.ssl_mode(tokio_postgres::config::SslMode::Require);
                let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca)?);
                Manager::from_config(pc, tls, mc)
            }
            None => Manager::from_config(pc, tokio_postgres::NoTls, mc),
        };
        let timeout = Some(Duration::from_secs(cfg.connect_timeout_secs));
        let pool = Pool::builder(manager)
            .max_size(cfg.pool_size)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(timeout)
            .create_timeout(timeout)
            .recycle_timeout(timeout)
            .build()
            .map_err(|e| StorageError::Backend {
                context: format!("{at}: pool"),
                source: Box::new(e),
            })?;
        Ok(Postgres {
            rt: Some(rt),
            pool,
            at,
            partitions_until: 0,
        })
    }

    /// Runs `f` to completion on this store's runtime. Called from the
    /// writer thread, `spawn_blocking` or a command's main thread, never
    /// from an async worker.
    pub(super) fn block_on<F: Future>(&self, f: F) -> F::Output {
        match &self.rt {
            Some(rt) => rt.block_on(f),
            // Invariant: `rt` is only taken in `drop`.
            None => unreachable!("postgres runtime used after drop"),
        }
    }

    async fn client(&self) -> Result<deadpool_postgres::Object, StorageError> {
        client(&self.pool, &self.at).await
    }

    /// Day partitions from yesterday to [`DAYS_AHEAD`] days ahead of `t`.
    fn ensure_partitions(&mut self, t: i64) -> Result<(), StorageError> {
        let at = self.at.clone();
        self.block_on(async {
            let mut c = client(&self.pool, &at).await?;
            let tx = c
                .transaction()
                .await
                .map_err(pg(format!("{at}: partitions")))?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_PARTITIONS])
                .await
                .map_err(pg(format!("{at}: partitions")))?;
            let today = t.div_euclid(DAY);
            for day in today - 1..=today + DAYS_AHEAD {
                let sql = format!(
                    "CREATE TABLE IF NOT EXISTS {} PARTITION OF events FOR VALUES FROM ({}) TO ({})",
                    partition_name(day),
                    day * DAY,
                    (day + 1) * DAY
                );
                tx.batch_execute(&sql)
                    .await
                    .map_err(pg(format!("{at}: creating {}", partition_name(day))))?;
            }
            tx.commit()
                .await
                .map_err(pg(format!("{at}: partitions")))?;
            Ok::<_, StorageError>(())
        })?;
        self.partitions_until = (t.div_euclid(DAY) + DAYS_AHEAD + 1) * DAY;
        Ok(())
    }

    /// `SELECT host, max(seq)` over events to be deleted, for `pruned_seq`.
    fn prune_now(&mut self, cutoff: i64) -> Result<u64, StorageError> {
        let at = self.at.clone();
        self.block_on(async {
            let fail = |doing: &str| pg(format!("{at}: retention: {doing}"));
            let mut c = client(&self.pool, &at).await?;
            let tx = c.transaction().await.map_err(fail("begin"))?;
            let mine: bool = tx
                .query_one("SELECT pg_try_advisory_xact_lock($1)", &[&LOCK_PRUNE])
                .await
                .map_err(fail("lock"))?
                .get(0);
            if !mine {
                tracing::debug!("retention: another collector is pruning");
                return Ok(0);
            }
            let mut deleted = 0u64;
            // Whole day partitions entirely before the cutoff.
            let parts = tx
                .query(
                    "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                     WHERE i.inhparent = 'events'::regclass AND c.relname LIKE 'events\\_p%'
                     ORDER BY c.relname",
                    &[],
                )
                .await
                .map_err(fail("listing partitions"))?;
            for row in parts {
                let name: String = row.get(0);
                let Some(day) = partition_day(&name) else {
                    continue;
                };
                if (day + 1) * DAY > cutoff {
                    continue;
                }
                // Its rows leave the counts kept from them (migration 6)
                // first: dropping a table fires no delete trigger.
                tx.batch_execute(&format!(
                    "SELECT events_tally('{name}'::regclass, -1);
                     UPDATE hosts h SET pruned_seq = greatest(h.pruned_seq, t.top)
                       FROM (SELECT host, max(seq) AS top FROM {name} GROUP BY host) t
                      WHERE h.host = t.host;
                     CREATE TEMP TABLE plumb_keep ON COMMIT DROP AS
                       SELECT e.* FROM {name} e JOIN hosts h ON h.host = e.host
                        WHERE e.kind = 'snapshot' AND e.seq = h.last_snapshot_seq;"
                ))
                .await
                .map_err(fail(&name))?;
                let n: i64 = tx
                    .query_one(
                        &format!("SELECT (SELECT count(*) FROM {name}) - (SELECT count(*) FROM plumb_keep)"),
                        &[],
                    )
                    .await
                    .map_err(fail(&name))?
                    .get(0);
                // The host's latest snapshot stays: it lands in the default
                // partition once its day is gone.
                tx.batch_execute(&format!(
                    "DROP TABLE {name};
                     INSERT INTO events SELECT * FROM plumb_keep;
                     DROP TABLE plumb_keep;"
                ))
                .await
                .map_err(fail(&name))?;
                deleted += u64::try_from(n).unwrap_or(0);
                tracing::info!(partition = %name, deleted = n, "retention dropped a partition");
            }
            // Rows outside any day partition (the default one), row by row.
            const KEEP: &str = "received_at < $1 AND NOT (kind = 'snapshot' AND seq =
                (SELECT last_snapshot_seq FROM hosts WHERE hosts.host = events_default.host))";
            tx.execute(
                &format!(
                    "UPDATE hosts h SET pruned_seq = greatest(h.pruned_seq, t.top)
                       FROM (SELECT host, max(seq) AS top FROM events_default WHERE {KEEP}
                             GROUP BY host) t
                      WHERE h.host = t.host"
                ),
                &[&cutoff],
            )
            .await
            .map_err(fail("default partition"))?;
            // Its delete trigger takes the rows out of the counts.
            let n = tx
                .execute(&format!("DELETE FROM events_default WHERE {KEEP}"), &[&cutoff])
                .await
                .map_err(fail("default partition"))?;
            if deleted + n > 0 {
                // Days whose file changes are all gone, and rings of
                // days before the cutoff only.
                tx.execute("DELETE FROM fim_daily WHERE n = 0", &[])
                    .await
                    .map_err(fail("daily file changes"))?;
                tx.execute(
                    "DELETE FROM fim_ring WHERE head < plumb_div($1, 86400)",
                    &[&cutoff],
                )
                .await
                .map_err(fail("file change rings"))?;
            }
            tx.commit().await.map_err(fail("commit"))?;
            Ok(deleted + n)
        })
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// `events_pYYYYMMDD` for a day number (unix days).
pub(super) fn partition_name(day: i64) -> String {
    let d = time::OffsetDateTime::from_unix_timestamp(day * DAY)
        .map(|t| t.date())
        .unwrap_or(time::Date::MIN);
    format!(
        "events_p{:04}{:02}{:02}",
        d.year(),
        u8::from(d.month()),
        d.day()
    )
}

/// The unix day of a partition name made by [`partition_name`].
fn partition_day(name: &str) -> Option<i64> {
    let digits = name.strip_prefix("events_p")?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i32 = digits[..4].parse().ok()?;
    let m: u8 = digits[4..6].parse().ok()?;
    let d: u8 = digits[6..].parse().ok()?;
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).ok()?, d).ok()?;
    Some(
        date.midnight()
            .assume_utc()
            .unix_timestamp()
            .div_euclid(DAY),
    )
}

pub(super) async fn client(
    pool: &Pool,
    at: &str,
) -> Result<deadpool_postgres::Object, StorageError> {
    pool.get().await.map_err(|e| StorageError::Backend {
        context: format!("{at}: connecting"),
        source: Box::new(e),
    })
}

async fn version(c: &impl tokio_postgres::GenericClient, at: &str) -> Result<u32, StorageError> {
    let v: Option<i32> = c
        .query_one("SELECT max(version) FROM plumb_schema", &[])
        .await
        .map_err(pg(format!("{at}: schema version")))?
        .get(0);
    Ok(v.unwrap_or(0).max(0) as u32)
}

/// Applies the missing migrations in one transaction holding the
/// migration lock: a second collector starting meanwhile waits, then finds
/// them applied.
async fn migrate(pool: &Pool, at: &str) -> Result<(), StorageError> {
    let mut c = client(pool, at).await?;
    let tx = c
        .transaction()
        .await
        .map_err(pg(format!("{at}: migration")))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK_MIGRATE])
        .await
        .map_err(pg(format!("{at}: migration lock")))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS plumb_schema (
            version integer PRIMARY KEY,
            applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(pg(format!("{at}: migration")))?;
    let current = version(&*tx, at).await?;
    if current > SCHEMA_VERSION {
        return Err(StorageError::NewerSchema {
            at: at.to_string(),
            found: current,
            known: SCHEMA_VERSION,
        });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let v = (i + 1) as i32;
        tx.batch_execute(sql)
            .await
            .map_err(pg(format!("{at}: migration to version {v}")))?;
        tx.execute("INSERT INTO plumb_schema (version) VALUES ($1)", &[&v])
            .await
            .map_err(pg(format!("{at}: migration to version {v}")))?;
        tracing::info!("{at}: schema migrated to version {v}");
    }
    tx.commit().await.map_err(pg(format!("{at}: migration")))?;
    Ok(())
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// One host of a group commit: what its `hosts` row said before the group
/// (locked until commit) and its acknowledged seq after the group (the
/// higher of the stored one and the highest seq the group brings).
struct GroupHost {
    acked: i64,
    pruned: i64,
    top: i64,
}

/// Stores a group of batches in `tx` with a fixed number of statements
/// whatever the group's size (one round trip each: on one connection the
/// round trips, not the rows, bounded a group before): lock and upsert the
/// hosts in name order, find the resent events already stored, insert the
/// new events, upsert the rule statuses the `check_changed` events set,
/// apply the rarer snapshots and agent events one by one, move `acked_seq`.
/// Returns, for each batch, its host's acknowledged seq after the group.
async fn ingest_group(
    tx: &Transaction<'_>,
    batches: &[IngestBatch],
) -> Result<Vec<u64>, tokio_postgres::Error> {
    let names: Vec<String> = batches
        .iter()
        .map(|b| b.host.to_ascii_lowercase())
        .collect();
    // Indexing `hosts` by a name of `names` cannot miss: `lock_hosts`
    // returns an entry for every one of them.
    let hosts = lock_hosts(tx, batches, &names).await?;
    let stored = stored_resends(tx, batches, &names, &hosts).await?;
    // The new events, in (host, seq) order, each once even if two batches
    // of the group carry it.
    let mut new: Vec<(&str, i64, &Event)> = Vec::new();
    let mut received: Vec<i64> = Vec::new();
    let mut seen: HashSet<(&str, i64)> = HashSet::new();
    for (b, name) in batches.iter().zip(&names) {
        let h = &hosts[name.as_str()];
        for e in &b.events {
            let s = i64_of(e.seq);
            let resent_and_stored = s <= h.acked && stored.contains(&(name.clone(), s));
            if s > h.pruned && !resent_and_stored && seen.insert((name.as_str(), s)) {
                new.push((name.as_str(), s, e));
                received.push(b.received_at);
            }
        }
    }
    let mut order: Vec<usize> = (0..new.len()).collect();
    order.sort_by_key(|&i| (new[i].0, new[i].1));
    insert_events(tx, &new, &received).await?;
    upsert_checks(tx, &new, &received).await?;
    for &i in &order {
        let (host, seq, e) = new[i];
        if !matches!(e.body, EventBody::CheckChanged(_)) {
            apply_state(tx, host, seq, e, received[i]).await?;
        }
    }
    let moved: Vec<(&str, i64)> = hosts
        .iter()
        .filter(|(_, h)| h.top > h.acked)
        .map(|(n, h)| (*n, h.top))
        .collect();
    if !moved.is_empty() {
        let (hs, tops): (Vec<&str>, Vec<i64>) = moved.into_iter().unzip();
        let st = tx
            .prepare_cached(
                "UPDATE hosts SET acked_seq = u.top FROM unnest($1::text[], $2::bigint[]) AS u(h, top)
                 WHERE hosts.host = u.h AND hosts.acked_seq < u.top",
            )
            .await?;
        tx.execute(&st, &[&hs, &tops]).await?;
    }
    Ok(names
        .iter()
        .map(|n| {
            let h = &hosts[n.as_str()];
            u64::try_from(h.top).unwrap_or(0)
        })
        .collect())
}

/// Upserts the group's hosts in name order, which locks their rows until
/// commit (whoever stores one of these hosts next, this collector or
/// another, sees what this transaction stored; two collectors' groups never
/// wait on each other in a cycle), and returns each host's row as it was.
async fn lock_hosts<'a>(
    tx: &Transaction<'_>,
    batches: &[IngestBatch],
    names: &'a [String],
) -> Result<std::collections::BTreeMap<&'a str, GroupHost>, tokio_postgres::Error> {
    // Per host: the latest reception time, the last address given, the top seq.
    let mut by_host: std::collections::BTreeMap<&str, (i64, Option<&str>, i64)> =
        std::collections::BTreeMap::new();
    for (b, name) in batches.iter().zip(names) {
        let top = b.events.iter().map(|e| i64_of(e.seq)).max().unwrap_or(0);
        let slot = by_host
            .entry(name.as_str())
            .or_insert((b.received_at, None, 0));
        slot.0 = slot.0.max(b.received_at);
        if b.address.is_some() {
            slot.1 = b.address.as_deref();
        }
        slot.2 = slot.2.max(top);
    }
    let hs: Vec<&str> = by_host.keys().copied().collect();
    let times: Vec<i64> = by_host.values().map(|v| v.0).collect();
    let addrs: Vec<Option<&str>> = by_host.values().map(|v| v.1).collect();
    let st = tx
        .prepare_cached(
            "INSERT INTO hosts (host, first_seen, last_seen, address)
             SELECT h, t, t, a FROM unnest($1::text[], $2::bigint[], $3::text[]) AS u(h, t, a)
             ORDER BY h
             ON CONFLICT (host) DO UPDATE SET last_seen = greatest(hosts.last_seen, excluded.last_seen),
                                              address = coalesce(excluded.address, hosts.address)
             RETURNING host, acked_seq, pruned_seq",
        )
        .await?;
    let rows = tx.query(&st, &[&hs, &times, &addrs]).await?;
    let mut out = std::collections::BTreeMap::new();
    for r in rows {
        let host: String = r.get(0);
        if let Some((&name, v)) = by_host.get_key_value(host.as_str()) {
            let acked: i64 = r.get(1);
            out.insert(
                name,
                GroupHost {
                    acked,
                    pruned: r.get(2),
                    top: v.2.max(acked),
                },
            );
        }
    }
    // The upsert returns one row per host given (inserted or updated), so
    // every host has its entry; this only keeps the lookups total.
    for &name in by_host.keys() {
        out.entry(name).or_insert(GroupHost {
            acked: 0,
            pruned: 0,
            top: 0,
        });
    }
    Ok(out)
}

/// Of the group's resent events (seq at or below the host's acked one,
/// above its pruned one: rare, after a lost acknowledgement), those
/// already stored.
async fn stored_resends(
    tx: &Transaction<'_>,
    batches: &[IngestBatch],
    names: &[String],
    hosts: &std::collections::BTreeMap<&str, GroupHost>,
) -> Result<HashSet<(String, i64)>, tokio_postgres::Error> {
    let mut hs: Vec<&str> = Vec::new();
    let mut seqs: Vec<i64> = Vec::new();
    for (b, name) in batches.iter().zip(names) {
        // Present: `lock_hosts` has an entry for every name.
        let h = &hosts[name.as_str()];
        for e in &b.events {
            let s = i64_of(e.seq);
            if s > h.pruned && s <= h.acked {
                hs.push(name);
                seqs.push(s);
            }
        }
    }
    if hs.is_empty() {
        return Ok(HashSet::new());
    }
    let st = tx
        .prepare_cached(
            "SELECT e.host, e.seq FROM events e
               JOIN unnest($1::text[], $2::bigint[]) AS u(h, s) ON e.host = u.h AND e.seq = u.s",
        )
        .await?;
    Ok(tx
        .query(&st, &[&hs, &seqs])
        .await?
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect())
}

/// Inserts the new events of a group, one statement.
async fn insert_events(
    tx: &Transaction<'_>,
    new: &[(&str, i64, &Event)],
    received: &[i64],
) -> Result<(), tokio_postgres::Error> {
    if new.is_empty() {
        return Ok(());
    }
    let hosts: Vec<&str> = new.iter().map(|n| n.0).collect();
    let seqs: Vec<i64> = new.iter().map(|n| n.1).collect();
    let kinds: Vec<&str> = new.iter().map(|n| n.2.body.kind()).collect();
    let sevs: Vec<&str> = new.iter().map(|n| n.2.severity.name()).collect();
    let ranks: Vec<i16> = new
        .iter()
        .map(|n| i16::from(severity_rank(n.2.severity)))
        .collect();
    let times: Vec<i64> = new
        .iter()
        .zip(received)
        .map(|(n, &r)| event_time(n.2).unwrap_or(r))
        .collect();
    let bodies: Vec<String> = new
        .iter()
        .map(|n| serde_json::to_string(n.2).unwrap_or_else(|_| "{}".into()))
        .collect();
    let (verdicts, tops): (Vec<Option<&str>>, Vec<Option<String>>) =
        new.iter().map(|n| fim_class(n.2)).unzip();
    let st = tx
        .prepare_cached(
            "INSERT INTO events (host, seq, kind, severity, sev_rank, time, received_at, body,
                                 fim_verdict, fim_top)
             SELECT h, s, k, sv, r, t, ra, bd, fv, ft
               FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::smallint[],
                           $6::bigint[], $7::bigint[], $8::text[], $9::text[], $10::text[])
                    AS u(h, s, k, sv, r, t, ra, bd, fv, ft)",
        )
        .await?;
    tx.execute(
        &st,
        &[
            &hosts, &seqs, &kinds, &sevs, &ranks, &times, &received, &bodies, &verdicts, &tops,
        ],
    )
    .await?;
    Ok(())
}

/// The rule statuses the group's `check_changed` events set, one statement:
/// per (host, rule) the highest seq only (one statement cannot update a row
/// twice), an older event never overwriting newer state. Snapshots are
/// applied after this: their seq guards give the same result as applying
/// every event in seq order.
async fn upsert_checks(
    tx: &Transaction<'_>,
    new: &[(&str, i64, &Event)],
    received: &[i64],
) -> Result<(), tokio_postgres::Error> {
    let mut latest: std::collections::HashMap<(&str, &str), usize> =
        std::collections::HashMap::new();
    for (i, (host, seq, e)) in new.iter().enumerate() {
        if let EventBody::CheckChanged(c) = &e.body {
            let slot = latest.entry((host, c.rule.as_str())).or_insert(i);
            if new[*slot].1 < *seq {
                *slot = i;
            }
        }
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut picked: Vec<usize> = latest.into_values().collect();
    picked.sort_unstable();
    let mut hosts = Vec::with_capacity(picked.len());
    let mut rules = Vec::with_capacity(picked.len());
    let mut statuses = Vec::with_capacity(picked.len());
    let mut sevs = Vec::with_capacity(picked.len());
    let mut domains = Vec::with_capacity(picked.len());
    let mut titles = Vec::with_capacity(picked.len());
    let mut seqs = Vec::with_capacity(picked.len());
    let mut at = Vec::with_capacity(picked.len());
    for i in picked {
        let (host, seq, e) = new[i];
        let EventBody::CheckChanged(c) = &e.body else {
            continue;
        };
        hosts.push(host);
        rules.push(c.rule.as_str());
        statuses.push(c.status.name());
        sevs.push(e.severity.name());
        domains.push(domains_json(&c.domains));
        titles.push(c.title.as_str());
        seqs.push(seq);
        at.push(received[i]);
    }
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO rule_status (host, rule, status, severity, domains, title, seq, updated_at)
             SELECT h, r, st, sv, d, ti, s, t
               FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                           $7::bigint[], $8::bigint[]) AS u(h, r, st, sv, d, ti, s, t)
             ORDER BY h, r
             {UPSERT_RULE}"
        ))
        .await?;
    tx.execute(
        &st,
        &[
            &hosts, &rules, &statuses, &sevs, &domains, &titles, &seqs, &at,
        ],
    )
    .await?;
    Ok(())
}

/// Host and rule state derived from a newly stored event, guarded by seq as
/// in the SQLite backend: an older event arriving late never overwrites
/// newer state.
async fn apply_state(
    tx: &Transaction<'_>,
    host: &str,
    seq: i64,
    e: &Event,
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    match &e.body {
        EventBody::Snapshot(s) => apply_snapshot(tx, host, seq, e, s, now).await,
        EventBody::Agent(a) => apply_agent(tx, host, e, a, now).await,
        // Rule statuses of `check_changed` are set for a whole group by
        // `upsert_checks`.
        EventBody::CheckChanged(_)
        | EventBody::FimChange(_)
        | EventBody::FimTamper { .. }
        | EventBody::Remediation(_) => Ok(()),
    }
}

/// A snapshot newer than the host's last: the host's row, the day's score
/// sample, and the rule statuses it carries (older ones dropped).
async fn apply_snapshot(
    tx: &Transaction<'_>,
    host: &str,
    seq: i64,
    e: &Event,
    s: &plumb_core::event::Snapshot,
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    let st = tx
        .prepare_cached(
            "UPDATE hosts SET agent_version = $3, baseline_id = $4, baseline_version = $5,
                fim_digest = $6, score = $7, os = $8, kernel = $9, last_snapshot_seq = $2
             WHERE host = $1 AND last_snapshot_seq < $2",
        )
        .await?;
    let updated = tx
        .execute(
            &st,
            &[
                &host,
                &seq,
                &s.agent_version,
                &s.baseline.as_ref().map(|b| b.id.clone()),
                &s.baseline.as_ref().map(|b| i64_of(b.version)),
                &s.fim_digest,
                &s.summary.score,
                &s.facts.os,
                &s.facts.kernel,
            ],
        )
        .await?;
    if updated == 0 {
        return Ok(());
    }
    let day = crate::storage::event_time(e)
        .unwrap_or(now)
        .div_euclid(86_400);
    let st = tx
        .prepare_cached(
            "INSERT INTO score_daily (day, score_sum, samples) VALUES ($1, $2, 1)
             ON CONFLICT (day) DO UPDATE SET score_sum = score_daily.score_sum + excluded.score_sum,
                samples = score_daily.samples + 1",
        )
        .await?;
    tx.execute(&st, &[&day, &s.summary.score]).await?;
    let st = tx
        .prepare_cached("DELETE FROM rule_status WHERE host = $1 AND seq < $2")
        .await?;
    tx.execute(&st, &[&host, &seq]).await?;
    // The first of a repeated rule id wins, as in the SQLite backend.
    let mut seen = HashSet::new();
    let rules: Vec<_> = s.rules.iter().filter(|r| seen.insert(&r.id)).collect();
    let ids: Vec<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    let statuses: Vec<&str> = rules.iter().map(|r| r.status.name()).collect();
    let sevs: Vec<&str> = rules.iter().map(|r| r.severity.name()).collect();
    let domains: Vec<String> = rules.iter().map(|r| domains_json(&r.domains)).collect();
    let titles: Vec<&str> = rules.iter().map(|r| r.title.as_str()).collect();
    let st = tx
        .prepare_cached(&format!(
            "INSERT INTO rule_status (host, rule, status, severity, domains, title, seq, updated_at)
             SELECT $1, r, st, sv, d, ti, $7, $8
               FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[])
                    AS u(r, st, sv, d, ti)
             {UPSERT_RULE}"
        ))
        .await?;
    tx.execute(
        &st,
        &[&host, &ids, &statuses, &sevs, &domains, &titles, &seq, &now],
    )
    .await?;
    Ok(())
}

/// An agent event: version and baseline in force, the last refusal.
async fn apply_agent(
    tx: &Transaction<'_>,
    host: &str,
    e: &Event,
    a: &plumb_core::event::AgentEvent,
    now: i64,
) -> Result<(), tokio_postgres::Error> {
    if !a.agent_version.is_empty() {
        tx.execute(
            "UPDATE hosts SET agent_version = $2 WHERE host = $1",
            &[&host, &a.agent_version],
        )
        .await?;
    }
    if let Some(b) = &a.baseline {
        tx.execute(
            "UPDATE hosts SET baseline_id = $2, baseline_version = $3 WHERE host = $1",
            &[&host, &b.id, &i64_of(b.version)],
        )
        .await?;
    }
    // A host's last refusal stands until it applies a bundle.
    match a.what {
        AgentEventKind::BaselineRefused => {
            tx.execute(
                "INSERT INTO baseline_refusals (host, time, message) VALUES ($1, $2, $3)
                 ON CONFLICT (host) DO UPDATE SET time = excluded.time, message = excluded.message",
                &[&host, &event_time(e).unwrap_or(now), &a.message],
            )
            .await?;
        }
        AgentEventKind::BaselineApplied => {
            tx.execute("DELETE FROM baseline_refusals WHERE host = $1", &[&host])
                .await?;
        }
        _ => {}
    }
    Ok(())
}

const UPSERT_RULE: &str = "ON CONFLICT (host, rule) DO UPDATE SET status = excluded.status,
    severity = excluded.severity, domains = excluded.domains, title = excluded.title,
    seq = excluded.seq, updated_at = excluded.updated_at
    WHERE excluded.seq > rule_status.seq";

fn domains_json(d: &[u8]) -> String {
    serde_json::to_string(d).unwrap_or_else(|_| "[]".into())
}

/// A connection of its own, outside any pool, driven on the caller's
/// runtime: what a session advisory lock that must live exactly as long as
/// its connection needs (`crate::forward::lease`). Returns the client and
/// the database's description for messages.
pub(crate) async fn dedicated_connection(
    cfg: &PostgresSection,
) -> Result<(tokio_postgres::Client, String), StorageError> {
    let pc = connection_config(cfg)?;
    let at = describe(&pc);
    let fail = pg(format!("{at}: connecting"));
    let client = match &cfg.ca {
        Some(ca) => {
            let mut pc = pc;
            pc.ssl_mode(tokio_postgres::config::SslMode::Require);
            let tls = tokio_postgres_rustls::MakeRustlsConnect::new(tls_config(ca)?);
            let (client, conn) = pc.connect(tls).await.map_err(fail)?;
            tokio::spawn(conn);
            client
        }
        None => {
            let (client, conn) = pc.connect(tokio_postgres::NoTls).await.map_err(fail)?;
            tokio::spawn(conn);
            client
        }
    };
    Ok((client, at))
}

impl Cursors for Postgres {
    fn pending(&mut self, consumer: &str, limit: usize) -> Result<Pending, StorageError> {
        let at = self.at.clone();
        self.block_on(async {
            let fail = || pg(format!("{at}: events to forward"));
            let mut c = client(&self.pool, &at).await?;
            // One snapshot: the hosts' acked seqs and their events agree.
            let tx = c
                .build_transaction()
                .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await
                .map_err(fail())?;
            let hosts = tx
                .query(
                    "SELECT h.host, coalesce(c.seq, 0), h.acked_seq FROM hosts h
                     LEFT JOIN forward_cursors c ON c.consumer = $1 AND c.host = h.host
                     WHERE h.acked_seq > coalesce(c.seq, 0)
                     ORDER BY coalesce(c.updated_at, 0), h.host",
                    &[&consumer],
                )
                .await
                .map_err(fail())?;
            let share = i64::try_from(per_host_share(limit, hosts.len())).unwrap_or(i64::MAX);
            let st = tx
                .prepare(
                    "SELECT host, seq, kind, severity, time, received_at, body FROM events
                     WHERE host = $1 AND seq > $2 ORDER BY seq LIMIT $3",
                )
                .await
                .map_err(fail())?;
            let mut out = Pending::default();
            for h in &hosts {
                if out.events.len() >= limit {
                    break;
                }
                let host: &str = h.get(0);
                let from: i64 = h.get(1);
                let acked: i64 = h.get(2);
                let rows = tx
                    .query(&st, &[&host, &from, &share])
                    .await
                    .map_err(fail())?;
                if rows.is_empty() {
                    out.gone.push((host.to_string(), acked.max(0) as u64));
                }
                out.events.extend(rows.iter().map(event_row));
            }
            tx.commit().await.map_err(fail())?;
            Ok(out)
        })
    }

    fn advance(
        &mut self,
        consumer: &str,
        to: &[(String, u64)],
        now: i64,
    ) -> Result<(), StorageError> {
        let at = self.at.clone();
        self.block_on(async {
            let fail = || pg(format!("{at}: advancing the cursor of {consumer}"));
            let mut c = client(&self.pool, &at).await?;
            let tx = c.transaction().await.map_err(fail())?;
            let st = tx
                .prepare(
                    "INSERT INTO forward_cursors (consumer, host, seq, updated_at)
                     VALUES ($1, $2, $3, $4)
                     ON CONFLICT (consumer, host) DO UPDATE
                     SET seq = GREATEST(forward_cursors.seq, excluded.seq),
                         updated_at = excluded.updated_at",
                )
                .await
                .map_err(fail())?;
            for (host, seq) in to {
                tx.execute(&st, &[&consumer, host, &i64_of(*seq), &now])
                    .await
                    .map_err(fail())?;
            }
            tx.commit().await.map_err(fail())
        })
    }
}

/// An [`EventRow`] from `SELECT host, seq, kind, severity, time,
/// received_at, body`; a body that is not JSON (edited by hand) reads as null.
fn event_row(r: &tokio_postgres::Row) -> EventRow {
    EventRow {
        host: r.get(0),
        seq: r.get::<_, i64>(1).max(0) as u64,
        kind: r.get(2),
        severity: r.get(3),
        time: r.get(4),
        received_at: r.get(5),
        body: serde_json::from_str(r.get::<_, &str>(6)).unwrap_or(serde_json::Value::Null),
    }
}

impl Storage for Postgres {
    fn ingest(&mut self, batches: &[IngestBatch]) -> Result<Vec<u64>, StorageError> {
        if let Some(latest) = batches.iter().map(|b| b.received_at).max() {
            if latest + DAY >= self.partitions_until {
                if let Err(e) = self.ensure_partitions(latest) {
                    // Events still land (in the default partition).
                    tracing::warn!("creating day partitions: {e}");
                }
            }
        }
        let at = &self.at;
        self.block_on(async {
            let mut c = client(&self.pool, at).await?;
            let tx = c.transaction().await.map_err(pg(format!("{at}: begin")))?;
            let out = ingest_group(&tx, batches).await.map_err(pg(format!(
                "{at}: storing a group of {} batch(es), {} events",
                batches.len(),
                batches.iter().map(|b| b.events.len()).sum::<usize>()
            )))?;
            tx.commit().await.map_err(pg(format!("{at}: commit")))?;
            Ok(out)
        })
    }

    fn prune(&mut self, cutoff: i64) -> Result<u64, StorageError> {
        // Also the hourly chance to create the coming days' partitions.
        self.ensure_partitions(now())?;
        self.prune_now(cutoff)
    }

    fn publish_baseline(&mut self, b: &NewBaseline) -> Result<PublishOutcome, StorageError> {
        let version = i64::try_from(b.version).map_err(|_| StorageError::OutOfRange {
            what: "baseline version",
            value: b.version,
        })?;
        let fail = pg(format!("{}: publishing {} v{}", self.at, b.id, b.version));
        self.block_on(async {
            let c = self.client().await?;
            let publish = async {
                let n = c
                    .execute(
                        "INSERT INTO baselines (id, version, key_id, hosts, bytes, sha256, published_at)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id, version) DO NOTHING",
                        &[&b.id, &version, &b.key_id, &b.hosts, &b.bytes, &b.sha256, &b.published_at],
                    )
                    .await?;
                if n == 1 {
                    return Ok(PublishOutcome::Published);
                }
                let row = c
                    .query_one(
                        "SELECT sha256, hosts FROM baselines WHERE id = $1 AND version = $2",
                        &[&b.id, &version],
                    )
                    .await?;
                Ok(publish_conflict(b, row.get(0), row.get(1)))
            };
            publish.await.map_err(fail)
        })
    }

    fn record_revocation(&mut self, r: &Revocation) -> Result<bool, StorageError> {
        let fail = pg(format!(
            "{}: recording the revocation of {}",
            self.at, r.serial
        ));
        self.block_on(async {
            let c = self.client().await?;
            c.execute(
                "INSERT INTO revocations (serial, subject, revoked_at) VALUES ($1, $2, $3)
                 ON CONFLICT (serial) DO NOTHING",
                &[&r.serial, &r.subject, &r.revoked_at],
            )
            .await
            .map(|n| n == 1)
            .map_err(fail)
        })
    }
}

fn parse_status(s: &str) -> Option<Status> {
    [Status::Pass, Status::Fail, Status::Error, Status::Skipped]
        .into_iter()
        .find(|st| st.name() == s)
}

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

/// A host row from the columns `hosts` selects (see `Postgres::host_rows`),
/// its drift not counted.
fn host_row(r: &tokio_postgres::Row) -> HostRow {
    HostRow {
        host: r.get(0),
        first_seen: r.get(1),
        last_seen: r.get(2),
        address: r.get(3),
        agent_version: r.get(4),
        baseline_id: r.get(5),
        baseline_version: r.get::<_, Option<i64>>(6).map(|v| v.max(0) as u64),
        fim_digest: r.get(7),
        acked_seq: r.get::<_, i64>(8).max(0) as u64,
        pass: count(r, 9),
        fail: count(r, 10),
        error: count(r, 11),
        skipped: count(r, 12),
        drift_recent: 0,
    }
}

fn count(r: &tokio_postgres::Row, i: usize) -> u32 {
    u32::try_from(r.get::<_, i64>(i)).unwrap_or(u32::MAX)
}

impl Queries for Postgres {
    fn hosts(&self, drift_since: i64) -> Result<Vec<HostRow>, StorageError> {
        self.host_rows(drift_since, None)
    }

    fn host(&self, host: &str, drift_since: i64) -> Result<Option<HostRow>, StorageError> {
        Ok(self.host_rows(drift_since, Some(host))?.pop())
    }

    fn drift(&self, f: &DriftFilter) -> Result<Vec<EventRow>, StorageError> {
        let kinds = DRIFT_KINDS.map(|k| format!("'{k}'")).join(",");
        let sql = format!(
            "SELECT host, seq, kind, severity, time, received_at, body FROM events
             WHERE kind IN ({kinds})
               AND ($1::text IS NULL OR host = lower($1::text))
               AND ($2::bigint IS NULL OR time >= $2::bigint)
               AND ($3::smallint IS NULL OR sev_rank >= $3::smallint)
             ORDER BY time DESC, received_at DESC, seq DESC
             LIMIT $4"
        );
        let limit = i64::try_from(f.limit).unwrap_or(i64::MAX);
        let sev = f.min_severity.map(i16::from);
        let fail = pg(format!("{}: drift", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(&sql, &[&f.host, &f.since, &sev, &limit])
                .await
                .map_err(fail)?;
            Ok(rows.iter().map(event_row).collect())
        })
    }

    fn baseline_refusals(&self) -> Result<Vec<RefusalRow>, StorageError> {
        let fail = pg(format!("{}: baseline refusals", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT host, time, message FROM baseline_refusals ORDER BY time DESC, host",
                    &[],
                )
                .await
                .map_err(fail)?;
            Ok(rows
                .iter()
                .map(|r| RefusalRow {
                    host: r.get(0),
                    time: r.get(1),
                    message: r.get(2),
                })
                .collect())
        })
    }

    fn score_history(&self, since_day: i64) -> Result<Vec<DailyScore>, StorageError> {
        let fail = pg(format!("{}: score history", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT day, score_sum / samples, samples FROM score_daily
                     WHERE day >= $1 AND samples > 0 ORDER BY day",
                    &[&since_day],
                )
                .await
                .map_err(fail)?;
            Ok(rows
                .iter()
                .map(|r| DailyScore {
                    day: r.get(0),
                    score: r.get(1),
                    samples: r.get(2),
                })
                .collect())
        })
    }

    fn host_events(&self, host: &str, limit: usize) -> Result<Vec<EventRow>, StorageError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let fail = pg(format!("{}: host events", self.at));
        self.block_on(async {
            let c = self.client().await?;
            // events_host_seq answers it backwards.
            let rows = c
                .query(
                    "SELECT host, seq, kind, severity, time, received_at, body FROM events
                     WHERE host = lower($1::text) ORDER BY seq DESC LIMIT $2",
                    &[&host, &limit],
                )
                .await
                .map_err(fail)?;
            Ok(rows.iter().map(event_row).collect())
        })
    }

    fn rule_changes(&self, rule: &str, hosts: &[String]) -> Result<Vec<EventRow>, StorageError> {
        let key = super::rule_key(rule);
        let fail = pg(format!("{}: rule changes", self.at));
        self.block_on(async {
            let c = self.client().await?;
            // Each host's newest match only, read back from its highest
            // seq (`events_host_seq`) until one is found: reading every
            // rule change of 200 hosts, and their bodies, took seconds on a
            // fleet-sized store. The key (`"rule":"ID"`, quotes unescaped)
            // cannot occur inside a JSON string, so a match is the body's
            // `rule` field (which the caller checks all the same).
            let rows = c
                .query(
                    "SELECT e.host, e.seq, e.kind, e.severity, e.time, e.received_at, e.body
                       FROM unnest($1::text[]) AS u(h)
                       CROSS JOIN LATERAL (
                             SELECT host, seq, kind, severity, time, received_at, body FROM events
                              WHERE host = u.h AND kind = 'check_changed' AND strpos(body, $2) > 0
                              ORDER BY seq DESC LIMIT 1) AS e
                      ORDER BY e.host",
                    &[&hosts, &key],
                )
                .await
                .map_err(fail)?;
            Ok(rows.iter().map(event_row).collect())
        })
    }

    fn host_page(&self, q: &HostQuery) -> Result<HostPage, StorageError> {
        let kinds = host_page::drift_kinds_sql();
        let dialect = host_page::Dialect {
            // Ordered by drift: every host's count, as `hosts` reads it
            // (`drift_counts`), given as two arrays.
            drift_join: "LEFT JOIN unnest($3::text[], $4::bigint[]) AS d(host, n)
                        ON d.host = h.host"
                .into(),
            drift: "coalesce(d.n, 0)".into(),
            collate: " COLLATE \"C\"",
            round: |x| format!("floor({x} + 0.5)"),
        };
        let totals_sql = host_page::totals_sql(q);
        let rows_sql = host_page::rows_sql(q, &dialect);
        let pattern = q.glob.as_deref().map(host_page::like_pattern);
        let fail = pg(format!("{}: fleet page", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let drift = if host_page::rows_need_drift(q) {
                let c2 = self.client().await?;
                Some(self.drift_counts(&c, &c2, q.drift_since, None).await?)
            } else {
                None
            };
            let run = async {
                let t = c
                    .query_one(&totals_sql, &[&pattern, &q.stale_before])
                    .await?;
                let n = |i: usize| u64::try_from(t.get::<_, i64>(i)).unwrap_or(0);
                if let Some(drift) = &drift {
                    let (hosts, counts): (Vec<&str>, Vec<i64>) = drift
                        .iter()
                        .map(|(h, &n)| (h.as_str(), i64::from(n)))
                        .unzip();
                    let rows = c
                        .query(&rows_sql, &[&pattern, &q.stale_before, &hosts, &counts])
                        .await?;
                    return Ok(HostPage {
                        rows: rows
                            .iter()
                            .map(|r| {
                                let h = host_row(r);
                                HostRow {
                                    drift_recent: drift.get(&h.host).copied().unwrap_or(0),
                                    ..h
                                }
                            })
                            .collect(),
                        matched: n(0),
                        stale: n(1),
                        failing: n(2),
                    });
                }
                let rows = c.query(&rows_sql, &[&pattern, &q.stale_before]).await?;
                let mut rows: Vec<HostRow> = rows.iter().map(host_row).collect();
                // The page's drift only (events_drift_host).
                let names: Vec<&str> = rows.iter().map(|h| h.host.as_str()).collect();
                let counts = c
                    .query(
                        &format!(
                            "SELECT host, count(*) FROM events
                              WHERE host = ANY($1) AND kind IN ({kinds}) AND time >= $2
                              GROUP BY host"
                        ),
                        &[&names, &q.drift_since],
                    )
                    .await?;
                let by_host: std::collections::HashMap<String, u32> =
                    counts.iter().map(|r| (r.get(0), count(r, 1))).collect();
                for h in &mut rows {
                    h.drift_recent = by_host.get(&h.host).copied().unwrap_or(0);
                }
                Ok::<_, tokio_postgres::Error>(HostPage {
                    rows,
                    matched: n(0),
                    stale: n(1),
                    failing: n(2),
                })
            };
            run.await.map_err(fail)
        })
    }

    fn rule_host_statuses(&self, rule: &str) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::Rule(rule))
    }

    fn file_changes(&self, since: i64) -> Result<Vec<FimCount>, StorageError> {
        // Whole days from `fim_ring` (migration 7), one row per host,
        // verdict and top directory; the days a ring does not hold from
        // `fim_daily`; the part of a day before the first whole one, if
        // `since` is not a midnight (the report's is), from the events
        // (`events_fim` covers it).
        let first_day = since.div_euclid(DAY) + i64::from(since.rem_euclid(DAY) != 0);
        let first_day_at = first_day.saturating_mul(DAY);
        let fail = pg(format!("{}: file changes", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let run = async {
                let rings = c
                    .query(
                        "SELECT host, verdict, top, head, counts FROM fim_ring WHERE head >= $1",
                        &[&first_day],
                    )
                    .await?;
                let mut sums: std::collections::BTreeMap<(&str, &str, &str), i64> =
                    std::collections::BTreeMap::new();
                // Keys whose ring starts after `first_day`: all their days
                // from `fim_daily` instead.
                let mut beyond: HashSet<(&str, &str, &str)> = HashSet::new();
                for r in &rings {
                    let key = (r.get(0), r.get(1), r.get(2));
                    let head: i64 = r.get(3);
                    if head - (FIM_RING_DAYS - 1) > first_day {
                        beyond.insert(key);
                        continue;
                    }
                    let counts: Vec<i64> = r.get(4);
                    *sums.entry(key).or_default() +=
                        ring_since(head, &counts, first_day, FIM_RING_DAYS);
                }
                let daily;
                if !beyond.is_empty() {
                    let hosts: Vec<&str> = beyond
                        .iter()
                        .map(|k| k.0)
                        .collect::<std::collections::BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    daily = c
                        .query(
                            "SELECT host, verdict, top, n FROM fim_daily
                              WHERE day >= $1 AND host = ANY($2) AND n <> 0",
                            &[&first_day, &hosts],
                        )
                        .await?;
                    for r in &daily {
                        let key = (r.get(0), r.get(1), r.get(2));
                        if beyond.contains(&key) {
                            *sums.entry(key).or_default() += r.get::<_, i64>(3);
                        }
                    }
                }
                let partial;
                if since < first_day_at {
                    partial = c
                        .query(
                            "SELECT host, coalesce(fim_verdict, ''), coalesce(fim_top, ''), count(*)
                               FROM events WHERE kind = 'fim_change' AND time >= $1 AND time < $2
                              GROUP BY 1, 2, 3",
                            &[&since, &first_day_at],
                        )
                        .await?;
                    for r in &partial {
                        *sums.entry((r.get(0), r.get(1), r.get(2))).or_default() +=
                            r.get::<_, i64>(3);
                    }
                }
                let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
                Ok::<_, tokio_postgres::Error>(
                    sums.into_iter()
                        .filter(|&(_, n)| n > 0)
                        .map(|((host, verdict, top), n)| FimCount {
                            host: host.to_string(),
                            verdict: some(verdict),
                            top: some(top),
                            changes: u64::try_from(n).unwrap_or(0),
                        })
                        .collect(),
                )
            };
            run.await.map_err(fail)
        })
    }

    fn compliance(&self) -> Result<Compliance, StorageError> {
        let fail = || pg(format!("{}: compliance", self.at));
        self.block_on(async {
            // Two chains of statements at once, on two connections.
            let (c, c2) = tokio::try_join!(self.client(), self.client())?;
            let per_host = async {
                let totals = c
                    .query_one(
                        "SELECT count(*) FILTER (WHERE pass + fail + error + skipped > 0),
                                count(*) FILTER (WHERE fail > 0)
                           FROM rule_counts",
                        &[],
                    )
                    .await?;
                // Per host, its domains by its worst status there (kept by
                // triggers): counted here, one row a host.
                let hosts = c
                    .query("SELECT failing, erring, passing FROM host_domains", &[])
                    .await?;
                Ok::<_, tokio_postgres::Error>((totals, hosts))
            };
            let worst = async {
                // Failing rules by (rule, domains) (`rule_status_failing`),
                // then the severity and title of each group's first
                // failing host by name.
                let groups = c2
                    .query(
                        "SELECT rule, domains, count(*), min(host COLLATE \"C\") FROM rule_status
                          WHERE status = 'fail' GROUP BY rule, domains",
                        &[],
                    )
                    .await?;
                let (rules, firsts): (Vec<&str>, Vec<&str>) = groups
                    .iter()
                    .map(|r| (r.get::<_, &str>(0), r.get::<_, &str>(3)))
                    .unzip();
                let described = c2
                    .query(
                        "SELECT u.r, u.h, s.severity, s.title
                           FROM unnest($1::text[], $2::text[]) AS u(r, h)
                           JOIN rule_status s ON s.host = u.h AND s.rule = u.r",
                        &[&rules, &firsts],
                    )
                    .await?;
                let described: std::collections::HashMap<(&str, &str), (Severity, &str)> =
                    described
                        .iter()
                        .map(|r| ((r.get(0), r.get(1)), (parse_severity(r.get(2)), r.get(3))))
                        .collect();
                let mut candidates: std::collections::BTreeMap<(u8, &str), WorstCandidate> =
                    std::collections::BTreeMap::new();
                for r in &groups {
                    let rule: &str = r.get(0);
                    let n = usize::try_from(r.get::<_, i64>(2)).unwrap_or(0);
                    let first: &str = r.get(3);
                    let (severity, title) = described
                        .get(&(rule, first))
                        .copied()
                        .unwrap_or((Severity::Info, ""));
                    for d in parse_domains(r.get(1)) {
                        candidates
                            .entry((d, rule))
                            .and_modify(|w| w.add(n, first, severity, title))
                            .or_insert_with(|| WorstCandidate {
                                domain: d,
                                rule: rule.to_string(),
                                hosts_failing: n,
                                first_host: first.to_string(),
                                severity,
                                title: title.to_string(),
                            });
                    }
                }
                let mut worst = pick_worst(candidates.into_values());
                // The failing hosts of the rules listed only.
                let listed: Vec<String> = worst
                    .values()
                    .flatten()
                    .map(|w| w.rule.clone())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect();
                let failing = c2
                    .query(
                        "SELECT rule, domains, host FROM rule_status
                          WHERE status = 'fail' AND rule = ANY($1)",
                        &[&listed],
                    )
                    .await?;
                for r in &failing {
                    let rule: &str = r.get(0);
                    for d in parse_domains(r.get(1)) {
                        if let Some(w) = worst
                            .get_mut(&d)
                            .and_then(|l| l.iter_mut().find(|w| w.rule == rule))
                        {
                            w.hosts.push(r.get(2));
                        }
                    }
                }
                for w in worst.values_mut().flatten() {
                    w.hosts
                        .sort_unstable_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
                }
                Ok(worst)
            };
            let ((totals, hosts), mut worst) = tokio::try_join!(per_host, worst).map_err(fail())?;
            let mut tally: std::collections::BTreeMap<u8, [usize; 3]> =
                std::collections::BTreeMap::new();
            for r in &hosts {
                for class in 0..3 {
                    let domains: Vec<i16> = r.get(class);
                    for d in domains {
                        if let Ok(d) = u8::try_from(d) {
                            tally.entry(d).or_default()[class] += 1;
                        }
                    }
                }
            }
            let n = |v: i64| usize::try_from(v).unwrap_or(0);
            Ok(Compliance {
                hosts: n(totals.get(0)),
                hosts_failing: n(totals.get(1)),
                domains: tally
                    .into_iter()
                    .map(|(domain, [failing, erring, passing])| DomainCompliance {
                        domain,
                        hosts_passing: passing,
                        hosts_failing: failing,
                        hosts_error: erring,
                        worst: worst.remove(&domain).unwrap_or_default(),
                    })
                    .collect(),
            })
        })
    }

    fn rule_statuses(&self) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::All)
    }

    fn host_rule_statuses(&self, host: &str) -> Result<Vec<RuleStatusRow>, StorageError> {
        self.rule_rows(RuleScope::Host(host))
    }

    fn baselines(&self) -> Result<Vec<BaselineRow>, StorageError> {
        let fail = pg(format!("{}: baselines", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query(
                    "SELECT id, version, key_id, hosts, sha256, published_at FROM baselines
                     ORDER BY version DESC, published_at DESC, id",
                    &[],
                )
                .await
                .map_err(fail)?;
            Ok(rows
                .iter()
                .map(|r| BaselineRow {
                    id: r.get(0),
                    version: r.get::<_, i64>(1).max(0) as u64,
                    key_id: r.get(2),
                    hosts: r.get(3),
                    sha256: r.get(4),
                    published_at: r.get(5),
                })
                .collect())
        })
    }

    fn fleet_summary(&self, stale_before: i64) -> Result<FleetSummary, StorageError> {
        let fail = pg(format!("{}: fleet summary", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let mut s = FleetSummary::default();
            let hosts = c
                .query_one(FLEET_HOSTS_SQL, &[&stale_before])
                .await
                .map_err(pg(format!("{}: fleet summary", self.at)))?;
            s.hosts = u64::try_from(hosts.get::<_, i64>(0)).unwrap_or(0);
            s.stale = u64::try_from(hosts.get::<_, i64>(1)).unwrap_or(0);
            let rules = c
                .query(FLEET_RULES_SQL, &[])
                .await
                .map_err(pg(format!("{}: fleet summary", self.at)))?;
            for r in &rules {
                s.add_rules(r.get(0), r.get(1), r.get(2));
            }
            let baselines = c.query(FLEET_BASELINES_SQL, &[]).await.map_err(fail)?;
            for r in &baselines {
                let version: Option<i64> = r.get(1);
                s.baselines.push((
                    r.get(0),
                    version.map(|v| u64::try_from(v).unwrap_or(0)),
                    u64::try_from(r.get::<_, i64>(2)).unwrap_or(0),
                ));
            }
            Ok(s)
        })
    }

    fn baseline_bytes(&self, id: &str, version: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let version = i64_of(version);
        let fail = pg(format!("{}: baseline bytes", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let row = c
                .query_opt(
                    "SELECT bytes FROM baselines WHERE id = $1 AND version = $2",
                    &[&id, &version],
                )
                .await
                .map_err(fail)?;
            Ok(row.map(|r| r.get(0)))
        })
    }

    fn revoked_serials(&self) -> Result<Option<HashSet<String>>, StorageError> {
        let fail = pg(format!("{}: revocations", self.at));
        self.block_on(async {
            let c = self.client().await?;
            let rows = c
                .query("SELECT serial FROM revocations", &[])
                .await
                .map_err(fail)?;
            Ok(Some(rows.iter().map(|r| r.get(0)).collect()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ring_counts_the_hours_it_holds_from_the_one_asked() {
        // Head at hour 100 (slot 0); hour h in slot h mod 25.
        let mut counts = vec![0i32; 25];
        counts[0] = 2; // hour 100
        counts[15] = 1; // hour 90
        counts[1] = 7; // hour 76, the ring's oldest
        assert_eq!(ring_since(100, &counts, 0, RING_HOURS), 10);
        assert_eq!(ring_since(100, &counts, 76, RING_HOURS), 10);
        assert_eq!(ring_since(100, &counts, 77, RING_HOURS), 3);
        assert_eq!(ring_since(100, &counts, 91, RING_HOURS), 2);
        assert_eq!(ring_since(100, &counts, 101, RING_HOURS), 0);
        // Negative hours (times before 1970) use the same slots.
        let mut neg = vec![0i32; 25];
        neg[24] = 4; // hour -1
        assert_eq!(ring_since(-1, &neg, -1, RING_HOURS), 4);
        assert_eq!(ring_since(-1, &neg, 0, RING_HOURS), 0);
        // A short array (edited by hand) counts what it has.
        assert_eq!(ring_since(100, &[5], 90, RING_HOURS), 5);
    }

    #[test]
    fn partition_names_round_trip() {
        let day = 1_796_000_000i64.div_euclid(DAY);
        let name = partition_name(day);
        assert_eq!(name.len(), "events_p20261201".len());
        assert_eq!(partition_day(&name), Some(day));
        assert_eq!(partition_day("events_default"), None);
        assert_eq!(partition_day("events_p2026x201"), None);
    }
}
