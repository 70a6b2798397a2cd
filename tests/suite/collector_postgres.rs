//! The collector on PostgreSQL: a real throwaway server (common::postgres),
//! the real `plumb-collector` binaries, several of them on one database.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use crate::common::postgres::Postgres;
use plumb_core::bundle::{Bundle, SigningKey};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::process::Output;
use std::time::{Duration, Instant};

fn now_rfc3339(offset_secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() + time::Duration::seconds(offset_secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// One event set: snapshots, a check change, FIM changes (one with a path
/// that is not UTF-8), on three hosts.
pub(super) fn event_set() -> Vec<(&'static str, Value)> {
    let rule = |id: &str, status: &str, domains: Value| json!({"id": id, "status": status, "severity": "high", "domains": domains, "title": format!("title of {id}")});
    let snapshot = |seq: u64, rules: Vec<Value>| {
        json!({"seq": seq, "time": now_rfc3339(-600), "severity": "info", "kind": "snapshot",
               "agent_version": "0.1.0", "baseline": {"id": "issp-linux-server", "version": 7},
               "facts": {"hostname": "x", "os": "Debian 12", "kernel": "6.1", "uptime_s": 1, "cpus": 2, "memory_bytes": 1},
               "fim_digest": "f00d", "summary": {"pass": 0, "fail": 0, "error": 0, "skipped": 0, "score": 0.0},
               "rules": rules})
    };
    let web = json!({"schema": 1, "host": "web-12", "events": [
        snapshot(1, vec![rule("ssh.permit-root-login", "pass", json!([13])), rule("sysctl.ip-forward", "pass", json!([20, 21]))]),
        {"seq": 2, "time": now_rfc3339(-300), "severity": "high", "kind": "check_changed",
         "rule": "ssh.permit-root-login", "title": "SSH does not allow root to log in", "previous": "pass", "status": "fail",
         "domains": [13], "criteria": ["C", "T"], "evidence": ["PermitRootLogin yes (/etc/ssh/sshd_config:32)"],
         "baseline": {"id": "issp-linux-server", "version": 7}},
        {"seq": 3, "time": now_rfc3339(-200), "severity": "medium", "kind": "fim_change",
         "path": "/etc/passwd", "change": "modified", "fields": ["sha256", "size"],
         "old": {"sha256": "3f2a".repeat(16), "size": 1200}, "new": {"sha256": "8c1d".repeat(16), "size": 1234},
         "domains": [20, 25]},
        {"seq": 4, "time": now_rfc3339(-100), "severity": "medium", "kind": "fim_change",
         "path": {"hex": "2f6574632f62ff", "lossy": "/etc/b\u{fffd}"}, "change": "added",
         "domains": [25]},
    ]});
    let db = json!({"schema": 1, "host": "db-01", "events": [
        snapshot(1, vec![rule("ssh.permit-root-login", "pass", json!([13])), rule("sysctl.ip-forward", "fail", json!([20, 21]))]),
        {"seq": 2, "time": now_rfc3339(-50), "severity": "critical", "kind": "fim_tamper",
         "detail": ["database seal mismatch"]},
    ]});
    let mail = json!({"schema": 1, "host": "mail-3", "events": [
        snapshot(5, vec![rule("ssh.permit-root-login", "fail", json!([13]))]),
        snapshot(9, vec![rule("ssh.permit-root-login", "pass", json!([13])), rule("pkg.telnet", "error", json!([17]))]),
    ]});
    vec![("web-12", web), ("db-01", db), ("mail-3", mail)]
}

pub(super) fn post(
    f: &Fleet,
    addr: SocketAddr,
    host: &str,
    body: &[u8],
) -> std::io::Result<HttpResponse> {
    rt().block_on(one_request(
        f.client_config(Some(host)),
        addr,
        "POST",
        "/v1/events",
        body,
    ))
}

pub(super) fn run(args: &[&str], config: &std::path::Path) -> (i32, String, String) {
    let o: Output = collector()
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The JSON of a query with the reception times (which differ between the
/// two stores by the time it took to load them) taken out.
pub(super) fn query_json(args: &[&str], config: &std::path::Path) -> (i32, Value) {
    let mut all = args.to_vec();
    all.extend(["--format", "json"]);
    let (code, out, err) = run(&all, config);
    assert!(code == 0 || code == 1, "{args:?}: {err}");
    let mut v: Value = serde_json::from_str(&out).unwrap();
    strip(&mut v);
    (code, v)
}

fn strip(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for k in [
                "received_at",
                "first_seen",
                "last_seen",
                "age_secs",
                "generated_at",
            ] {
                m.remove(k);
            }
            m.values_mut().for_each(strip);
        }
        Value::Array(a) => a.iter_mut().for_each(strip),
        _ => {}
    }
}

/// Posts [`event_set`] to each collector, every batch answered 200.
fn post_event_set(f: &Fleet, addrs: &[SocketAddr]) {
    for (host, b) in event_set() {
        let body = serde_json::to_vec(&b).unwrap();
        for &addr in addrs {
            let r = post(f, addr, host, &body).unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
}

/// A throwaway PostgreSQL with a `plumb` database, a fleet PKI, and the
/// configs of a SQLite collector and of a PostgreSQL one (not started).
fn stores() -> (Postgres, Fleet, std::path::PathBuf, std::path::PathBuf) {
    let pg = Postgres::start();
    pg.database("plumb");
    let storage = pg.storage_toml("plumb");
    let f = Fleet::new();
    let lite_cfg = f.config("127.0.0.1:0", "", "");
    let pg_cfg = f.config_named("pg.toml", "127.0.0.1:0", "", &storage);
    (pg, f, lite_cfg, pg_cfg)
}

/// One collector on SQLite and one on a throwaway PostgreSQL, same fleet PKI.
struct SideBySide {
    pg: Postgres,
    f: Fleet,
    lite_cfg: std::path::PathBuf,
    pg_cfg: std::path::PathBuf,
    lite: Collector,
    pgc: Collector,
}

impl SideBySide {
    fn start() -> SideBySide {
        let (pg, f, lite_cfg, pg_cfg) = stores();
        let lite = Collector::start(&lite_cfg);
        let pgc = Collector::start(&pg_cfg);
        SideBySide {
            pg,
            f,
            lite_cfg,
            pg_cfg,
            lite,
            pgc,
        }
    }
}

/// Asserts that each query answers the same JSON (after `normalize`) and
/// exit code on both stores.
fn assert_same_answers(
    queries: &[&[&str]],
    lite_cfg: &std::path::Path,
    pg_cfg: &std::path::Path,
    normalize: impl Fn(Value) -> Value,
) {
    for &args in queries {
        let (lc, lv) = query_json(args, lite_cfg);
        let (pc, pv) = query_json(args, pg_cfg);
        assert_eq!(
            normalize(lv),
            normalize(pv),
            "{args:?} differs between SQLite and PostgreSQL"
        );
        assert_eq!(lc, pc, "{args:?} exit codes");
    }
}

/// How many of the counts migrations 6 and 7 keep (daily file changes and
/// their rings, drift rings, per-domain rule tallies and each host's
/// domains by status) differ from a recount of the events and rule states
/// they come from: `0|0|0` when all are true.
pub(super) const TALLIES_OFF: &str = "
    WITH kept AS (SELECT day, host, verdict, top, n FROM fim_daily WHERE n <> 0),
         real AS (SELECT plumb_div(time, 86400) AS day, host, coalesce(fim_verdict, '') AS verdict,
                         coalesce(fim_top, '') AS top, count(*) AS n
                    FROM events WHERE kind = 'fim_change' GROUP BY 1, 2, 3, 4),
         e AS (SELECT host, plumb_div(time, 3600) AS hour, count(*) AS n FROM events
                WHERE kind IN ('check_changed', 'fim_change', 'fim_tamper') GROUP BY 1, 2),
         rd AS (SELECT host, domain, pass, fail, error FROM rule_domains
                 WHERE pass <> 0 OR fail <> 0 OR error <> 0),
         rr AS (SELECT r.host, d.domain, count(*) FILTER (WHERE status = 'pass') AS pass,
                       count(*) FILTER (WHERE status = 'fail') AS fail,
                       count(*) FILTER (WHERE status = 'error') AS error
                  FROM rule_status r, unnest(plumb_domains(r.domains)) AS d(domain)
                 WHERE status IN ('pass', 'fail', 'error') GROUP BY 1, 2),
         hd AS (SELECT host, failing, erring, passing FROM host_domains
                 WHERE cardinality(failing) + cardinality(erring) + cardinality(passing) > 0),
         hr AS (SELECT host,
                       coalesce(array_agg(domain ORDER BY domain) FILTER (WHERE fail > 0), '{}'),
                       coalesce(array_agg(domain ORDER BY domain)
                                FILTER (WHERE fail = 0 AND error > 0), '{}'),
                       coalesce(array_agg(domain ORDER BY domain)
                                FILTER (WHERE fail = 0 AND error = 0), '{}')
                  FROM rr GROUP BY host)
    SELECT (SELECT count(*) FROM (TABLE kept EXCEPT TABLE real) a)
           + (SELECT count(*) FROM (TABLE real EXCEPT TABLE kept) b)
           + (SELECT count(*) FROM real LEFT JOIN fim_ring r USING (host, verdict, top)
               WHERE r.head IS NULL OR real.day > r.head)
           + (SELECT count(*) FROM fim_ring r
                CROSS JOIN generate_series(r.head - 8, r.head) AS g(day)
                LEFT JOIN real ON (real.host, real.verdict, real.top, real.day)
                                  = (r.host, r.verdict, r.top, g.day)
               WHERE r.counts[1 + mod(mod(g.day, 9) + 9, 9)] <> coalesce(real.n, 0)),
           (SELECT count(*) FROM e LEFT JOIN drift_ring r USING (host)
             WHERE r.head IS NULL OR e.hour > r.head)
           + (SELECT count(*) FROM drift_ring r
                CROSS JOIN generate_series(r.head - 24, r.head) AS g(hr)
                LEFT JOIN e ON e.host = r.host AND e.hour = g.hr
               WHERE drift_ring_at(r.head, r.counts, g.hr) <> coalesce(e.n, 0)),
           (SELECT count(*) FROM (TABLE rd EXCEPT TABLE rr) c)
           + (SELECT count(*) FROM (TABLE rr EXCEPT TABLE rd) d)
           + (SELECT count(*) FROM (TABLE hd EXCEPT TABLE hr) f)
           + (SELECT count(*) FROM (TABLE hr EXCEPT TABLE hd) g)";

/// Takes a schema-7 database back to schema 6 (what it held kept).
pub(super) const UNDO_MIGRATION_7: &str = "
    DROP FUNCTION events_tally_sql();
    ALTER FUNCTION events_tally_sql_6() RENAME TO events_tally_sql;
    DROP TABLE fim_ring;
    DROP FUNCTION plumb_ring_merge(bigint, bigint[], bigint, bigint[], integer);
    DROP FUNCTION plumb_ring_of(bigint[], bigint[], integer);
    DELETE FROM plumb_schema WHERE version = 7;";

/// Takes a schema-6 database back to schema 5 (what it held kept).
pub(super) const UNDO_MIGRATION_6: &str = "
    DROP INDEX rule_status_failing;
    DROP FUNCTION rule_domains_apply() CASCADE; DROP FUNCTION rule_domains_sql();
    DROP FUNCTION host_domains_sql(); DROP TABLE host_domains;
    DROP FUNCTION plumb_domains(text); DROP TABLE rule_domains;
    DROP FUNCTION events_tally_apply() CASCADE; DROP FUNCTION events_tally(regclass, integer);
    DROP FUNCTION events_tally_sql(); DROP TABLE fim_daily; DROP TABLE drift_ring;
    DROP FUNCTION drift_ring_merge(bigint, integer[], bigint, integer[]);
    DROP FUNCTION drift_ring_of(bigint[], integer[]);
    DROP FUNCTION drift_ring_at(bigint, integer[], bigint); DROP FUNCTION plumb_div(bigint, bigint);
    DELETE FROM plumb_schema WHERE version = 6;";

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn hosts_drift_and_report_answer_the_same_on_both_backends() {
    let SideBySide {
        pg,
        f,
        lite_cfg,
        pg_cfg,
        lite,
        pgc,
    } = SideBySide::start();
    for (host, b) in event_set() {
        let body = serde_json::to_vec(&b).unwrap();
        for addr in [lite.addr, pgc.addr] {
            let r = post(&f, addr, host, &body).unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            // Resent as an agent does after a lost answer: same ack, no copy.
            let again = post(&f, addr, host, &body).unwrap();
            assert_eq!(again.body, r.body);
        }
    }
    assert_same_answers(
        &[
            &["hosts"],
            &["drift"],
            &["drift", "--host", "web-12"],
            &["drift", "--severity", "high"],
            &["drift", "--since", "4m", "--limit", "2"],
            &["report"],
            &["baseline", "list"],
        ],
        &lite_cfg,
        &pg_cfg,
        |v| v,
    );
    let (_, hosts) = query_json(&["hosts"], &pg_cfg);
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 3, "{hosts}");
    let (_, drift) = query_json(&["drift"], &pg_cfg);
    assert_eq!(drift["events"].as_array().unwrap().len(), 4, "{drift}");
    // Host names are stored lowercase on PostgreSQL: any case finds them.
    let (_, drift) = query_json(&["drift", "--host", "WEB-12"], &pg_cfg);
    assert_eq!(drift["events"].as_array().unwrap().len(), 3, "{drift}");
    // Nothing stored twice, in today's partition.
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), count(DISTINCT (host, seq)) FROM events"
        ),
        "8|8"
    );
    let today = time::OffsetDateTime::now_utc().date();
    let part = format!(
        "events_p{:04}{:02}{:02}",
        today.year(),
        u8::from(today.month()),
        today.day()
    );
    assert_eq!(
        pg.psql("plumb", &format!("SELECT count(*) FROM {part}")),
        "8"
    );
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");
}

/// A host, the drift of its last 24 hours and its file changes of the
/// report's days.
type Expected = (&'static str, u64, u64);

/// Events whose agent times are late, early or ahead of the collector's
/// clock, for `hosts`' rolling 24 hours and `report`'s 7 UTC days:
/// odd-1's clock ran fast twice (seq 6 and 7, three and twelve days
/// ahead), odd-2's events
/// arrive in an order their times do not have. Returns the batches and,
/// per host, the drift of the last 24 hours and the file changes of the
/// report's days they must count.
fn odd_times() -> (Vec<(&'static str, Value)>, [Expected; 2]) {
    let at = |offset: i64| now_rfc3339(offset);
    let fim = |seq: u64, offset: i64| {
        json!({"seq": seq, "time": at(offset), "severity": "medium", "kind": "fim_change",
               "path": format!("/srv/odd/{seq}"), "change": "modified", "fields": ["sha256"],
               "old": {"sha256": "aa"}, "new": {"sha256": "bb"}, "domains": [25]})
    };
    const H: i64 = 3_600;
    // The report counts from midnight UTC six days before today.
    let today = time::OffsetDateTime::now_utc()
        .unix_timestamp()
        .div_euclid(86_400)
        * 86_400;
    let into_today = time::OffsetDateTime::now_utc().unix_timestamp() - today;
    let odd1 = json!({"schema": 1, "host": "odd-1", "events": [
        // In the last 24 hours: 23 h ago, and 10 minutes after its start
        // (in the window's first, partial hour).
        fim(1, -23 * H),
        {"seq": 2, "time": at(-24 * H + 600), "severity": "high", "kind": "check_changed",
         "rule": "odd.rule", "title": "odd rule", "previous": "pass", "status": "fail",
         "domains": [13], "criteria": ["C"], "evidence": [],
         "baseline": {"id": "issp-linux-server", "version": 7}},
        // 25 hours ago: out of `hosts`' window, in the report's.
        fim(3, -25 * H),
        // Early in the report's first day, and the day before it.
        fim(4, -(6 * 86_400 + into_today) + 60),
        fim(5, -(6 * 86_400 + into_today) - 60),
        // Three days ahead: recent drift (it is after the window's start).
        {"seq": 6, "time": at(3 * 86_400), "severity": "critical", "kind": "fim_tamper",
         "detail": ["seal mismatch"]},
        // Twelve days ahead: past the end of the ring of daily file
        // changes (9 days), which then no longer holds the window's first
        // days.
        fim(7, 12 * 86_400),
    ]});
    let odd2_first = json!({"schema": 1, "host": "odd-2", "events": [fim(1, -H)]});
    // Later seqs, older times: 20 h ago (in the window and the ring), 30 h
    // ago (out of both).
    let odd2_late =
        json!({"schema": 1, "host": "odd-2", "events": [fim(2, -20 * H), fim(3, -30 * H)]});
    (
        vec![("odd-1", odd1), ("odd-2", odd2_first), ("odd-2", odd2_late)],
        [("odd-1", 4, 4), ("odd-2", 2, 3)],
    )
}

/// Drift and file changes with agent times late, early or ahead of the
/// collector's clock, sent twice (a resend after a lost answer): `hosts`
/// and `report` count on PostgreSQL (from the counts kept at ingestion)
/// what SQLite counts from the events, and what the events say. Then the
/// database goes back to schema 6, then 5, and the collector's migrations
/// 7, then 6 and 7, count what is stored: the same answers again.
#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn odd_agent_times_resends_and_migration_6_count_the_same_drift_and_file_changes() {
    let SideBySide {
        pg,
        f,
        lite_cfg,
        pg_cfg,
        lite,
        pgc,
    } = SideBySide::start();
    for h in ["odd-1", "odd-2"] {
        f.pki.agent(h);
    }
    let (batches, expected) = odd_times();
    post_event_set(&f, &[lite.addr, pgc.addr]);
    for (host, b) in &batches {
        let body = serde_json::to_vec(b).unwrap();
        for addr in [lite.addr, pgc.addr] {
            for _ in 0..2 {
                let r = post(&f, addr, host, &body).unwrap();
                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
            }
        }
    }
    let check = |when: &str| {
        assert_same_answers(
            &[&["hosts"], &["report"], &["drift", "--limit", "1000"]],
            &lite_cfg,
            &pg_cfg,
            |v| v,
        );
        let (_, hosts) = query_json(&["hosts"], &pg_cfg);
        let (_, report) = query_json(&["report"], &pg_cfg);
        for (host, drift, changes) in expected {
            let h = hosts["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["host"] == host)
                .unwrap();
            assert_eq!(h["drift_24h"], json!(drift), "{when}: {host}: {h}");
            let files = report["file_changes"]["hosts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|h| h["host"] == host)
                .unwrap();
            assert_eq!(
                files["counts"]["changes"],
                json!(changes),
                "{when}: {host}: {files}"
            );
        }
        assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0", "{when}");
    };
    check("as ingested");
    drop(pgc);
    pg.psql("plumb", UNDO_MIGRATION_7);
    drop(Collector::start(&pg_cfg));
    check("after migration 7");
    pg.psql("plumb", UNDO_MIGRATION_7);
    pg.psql("plumb", UNDO_MIGRATION_6);
    drop(Collector::start(&pg_cfg));
    assert_eq!(
        pg.psql("plumb", "SELECT max(version) FROM plumb_schema"),
        "7"
    );
    check("after migration 6");
}

/// Batch `n` (1-based, 10 events) of host `host` in the concurrent test:
/// rule changes that flip three rules back and forth (each twice in some
/// batches), file changes, and a snapshot opening batch 4 that lists two of
/// the rules (the third is dropped from the host's state until a later
/// change sets it).
fn group_batch(host: &str, n: u64) -> Value {
    let events: Vec<Value> = (1..=10)
        .map(|i| {
            let seq = (n - 1) * 10 + i;
            if n == 4 && i == 1 {
                let rules: Vec<Value> = (0..2)
                    .map(|r| json!({"id": format!("grp.rule-{r}"), "status": "pass", "severity": "high", "domains": [13], "title": format!("rule {r}")}))
                    .collect();
                json!({"seq": seq, "time": now_rfc3339(-900 + seq as i64), "severity": "info", "kind": "snapshot",
                       "agent_version": "0.1.0", "baseline": {"id": "issp-linux-server", "version": 7},
                       "facts": {"hostname": host, "os": "Debian 12", "kernel": "6.1", "uptime_s": 1, "cpus": 2, "memory_bytes": 1},
                       "fim_digest": "f00d", "summary": {"pass": 3, "fail": 0, "error": 0, "skipped": 0, "score": 100.0},
                       "rules": rules})
            } else if seq % 2 == 0 {
                let status = if (seq / 2 + n) % 3 == 0 { "pass" } else { "fail" };
                json!({"seq": seq, "time": now_rfc3339(-900 + seq as i64), "severity": "high", "kind": "check_changed",
                       "rule": format!("grp.rule-{}", seq % 3), "title": format!("rule {}", seq % 3),
                       "previous": null, "status": status, "domains": [13, 20], "criteria": ["I"],
                       "evidence": [format!("seen at {seq}")], "baseline": {"id": "issp-linux-server", "version": 7}})
            } else {
                json!({"seq": seq, "time": now_rfc3339(-900 + seq as i64), "severity": "medium", "kind": "fim_change",
                       "path": format!("/etc/grp/{seq}"), "change": "added", "domains": [25]})
            }
        })
        .collect();
    json!({"schema": 1, "host": host, "events": events})
}

/// Many agents posting at once, so the collector stores several batches in
/// one transaction (its group commit), with the same host twice in a group
/// (each batch sent twice at once, as an agent resending after a lost
/// answer): PostgreSQL, which stores a
/// group with a few set-based statements, ends with exactly the state
/// SQLite (one batch after the other) has, every event once.
#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn concurrent_group_commits_store_every_event_once_and_agree_with_sqlite() {
    const HOSTS: usize = 12;
    const BATCHES: u64 = 8;
    let SideBySide {
        pg,
        f,
        lite_cfg,
        pg_cfg,
        lite,
        pgc,
    } = SideBySide::start();
    let hosts: Vec<String> = (0..HOSTS).map(|i| format!("grp-{i:02}")).collect();
    for h in &hosts {
        f.pki.agent(h);
    }
    // Made once: both collectors, and a resend, get the very same bodies.
    let bodies: Vec<Vec<Vec<u8>>> = hosts
        .iter()
        .map(|h| {
            (1..=BATCHES)
                .map(|n| serde_json::to_vec(&group_batch(h, n)).unwrap())
                .collect()
        })
        .collect();
    for addr in [lite.addr, pgc.addr] {
        std::thread::scope(|s| {
            for (h, batches) in hosts.iter().zip(&bodies) {
                let f = &f;
                s.spawn(move || {
                    // Each batch is sent twice at once, on two connections
                    // (an agent resending after a lost answer), so a group
                    // may hold it twice.
                    for body in batches {
                        std::thread::scope(|s2| {
                            s2.spawn(move || {
                                let r = post(f, addr, h, body).unwrap();
                                assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                            });
                            let r = post(f, addr, h, body).unwrap();
                            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
                        });
                    }
                });
            }
        });
    }
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), count(DISTINCT (host, seq)), max(seq) FROM events"
        ),
        format!(
            "{}|{}|{}",
            HOSTS as u64 * BATCHES * 10,
            HOSTS as u64 * BATCHES * 10,
            BATCHES * 10
        )
    );
    assert_eq!(
        pg.psql("plumb", "SELECT count(*) FROM hosts WHERE acked_seq = 80"),
        HOSTS.to_string()
    );
    // The hosts' events carry the same times (sent at once), and `drift`
    // orders by time only: compare its events in (host, seq) order.
    let by_host_seq = |mut v: Value| {
        if let Some(a) = v["events"].as_array_mut() {
            a.sort_by_key(|e| {
                (
                    e["host"].as_str().unwrap_or("").to_string(),
                    e["seq"].as_u64(),
                )
            });
        }
        v
    };
    assert_same_answers(
        &[
            &["hosts"],
            &["drift", "--limit", "2000"],
            &["drift", "--host", "grp-07", "--limit", "2000"],
            &["report"],
        ],
        &lite_cfg,
        &pg_cfg,
        by_host_seq,
    );
    // The snapshot of batch 4 dropped rule 2; later changes (seq 32..80)
    // set every rule again, the last change of each winning.
    let rows = pg.psql(
        "plumb",
        "SELECT rule, status, seq FROM rule_status WHERE host = 'grp-07' ORDER BY rule",
    );
    let want: Vec<String> = (0..3u64)
        .map(|r| {
            let seq = (31..=80u64)
                .filter(|s| s % 2 == 0 && s % 3 == r)
                .max()
                .unwrap();
            let n = (seq - 1) / 10 + 1;
            let status = if (seq / 2 + n) % 3 == 0 {
                "pass"
            } else {
                "fail"
            };
            format!("grp.rule-{r}|{status}|{seq}")
        })
        .collect();
    assert_eq!(rows, want.join("\n"));
    // Each group's statements kept the counts true.
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");
}

/// Migration 4 (per-host rule counts) on a store made by schema 3: it
/// counts the rule states already stored, `hosts` answers as SQLite does,
/// and its trigger keeps the counts true through later changes.
#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn rule_counts_migration_fills_existing_rows_and_the_trigger_keeps_them() {
    let (pg, f, lite_cfg, pg_cfg) = stores();
    {
        let lite = Collector::start(&lite_cfg);
        let pgc = Collector::start(&pg_cfg);
        post_event_set(&f, &[lite.addr, pgc.addr]);
    }
    // Back to schema 3 (migrations 6 and 5 undone first), rule states kept.
    pg.psql("plumb", UNDO_MIGRATION_7);
    pg.psql("plumb", UNDO_MIGRATION_6);
    pg.psql(
        "plumb",
        "DROP INDEX events_fim; DROP INDEX rule_status_rule;
         ALTER TABLE events DROP COLUMN fim_verdict, DROP COLUMN fim_top;
         DROP TRIGGER rule_counts_sync ON rule_status; DROP FUNCTION rule_counts_apply();
         DROP TABLE rule_counts; DELETE FROM plumb_schema WHERE version IN (4, 5)",
    );
    assert_eq!(
        pg.psql("plumb", "SELECT max(version) FROM plumb_schema"),
        "3"
    );
    // The collector migrates at start; the CLI only reads.
    drop(Collector::start(&pg_cfg));
    let states = pg.psql("plumb", "SELECT count(*) FROM rule_status");
    assert_ne!(states, "0", "the event set stores rule states");
    let (lc, lv) = query_json(&["hosts"], &lite_cfg);
    let (pc, pv) = query_json(&["hosts"], &pg_cfg);
    assert_eq!((lc, &lv), (pc, &pv), "hosts after migration 4");
    assert_eq!(
        pg.psql("plumb", "SELECT max(version) FROM plumb_schema"),
        "7"
    );
    let counted = "SELECT sum(pass + fail + error + skipped) FROM rule_counts";
    assert_eq!(pg.psql("plumb", counted), states);
    pg.psql("plumb", "UPDATE rule_status SET status = 'fail'");
    assert_eq!(
        pg.psql("plumb", "SELECT sum(fail) FROM rule_counts"),
        states
    );
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");
    pg.psql("plumb", "DELETE FROM rule_status");
    assert_eq!(pg.psql("plumb", counted), "0");
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");
}

/// File changes with package verdicts (verified, not matching its
/// package) for web-12, after [`event_set`]'s.
fn packaged_changes() -> Value {
    let change = |seq: u64, path: &str, verified: bool| {
        json!({"seq": seq, "time": now_rfc3339(-60), "severity": "medium", "kind": "fim_change",
               "path": path, "change": "modified", "fields": ["sha256"],
               "old": {"sha256": "aa"}, "new": {"sha256": "bb"}, "domains": [25],
               "package": {"name": "coreutils", "version": "9.1-1", "verified": verified}})
    };
    json!({"schema": 1, "host": "web-12", "events": [
        change(5, "/usr/bin/ls", true),
        change(6, "/usr/bin/cat", true),
        change(7, "/usr/sbin/sshd", false),
    ]})
}

/// Migration 5 (each file change's package verdict and top directory as
/// columns) on a store made by schema 4: it derives them from the stored
/// bodies, and `report` counts the same as SQLite (whose writer fills
/// them) and as the report always did.
#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn report_file_changes_counted_from_verdict_columns_filled_by_migration_5() {
    let (pg, f, lite_cfg, pg_cfg) = stores();
    {
        let lite = Collector::start(&lite_cfg);
        let pgc = Collector::start(&pg_cfg);
        post_event_set(&f, &[lite.addr, pgc.addr]);
        let body = serde_json::to_vec(&packaged_changes()).unwrap();
        for addr in [lite.addr, pgc.addr] {
            assert_eq!(post(&f, addr, "web-12", &body).unwrap().status, 200);
        }
    }
    // web-12: /etc/passwd and the non-UTF-8 /etc/b… (no package), two
    // verified, /usr/sbin/sshd not matching its package.
    let expected = json!([{"host": "web-12",
        "counts": {"changes": 5, "verified": 2, "unverified": 1, "unexplained": {"/etc": 2, "/usr": 1}}}]);
    let check = |when: &str| {
        let (_, lv) = query_json(&["report"], &lite_cfg);
        let (_, pv) = query_json(&["report"], &pg_cfg);
        assert_eq!(lv, pv, "report {when}");
        let mut files = lv["file_changes"]["hosts"].clone();
        for h in files.as_array_mut().unwrap() {
            h.as_object_mut().unwrap().remove("text");
        }
        assert_eq!(files, expected, "report {when}: {lv}");
    };
    check("as ingested");
    // Back to schema 4, the events kept.
    pg.psql("plumb", UNDO_MIGRATION_7);
    pg.psql("plumb", UNDO_MIGRATION_6);
    pg.psql(
        "plumb",
        "DROP INDEX events_fim; DROP INDEX rule_status_rule; ALTER TABLE events DROP COLUMN fim_verdict, DROP COLUMN fim_top;
         DELETE FROM plumb_schema WHERE version = 5",
    );
    assert_eq!(
        pg.psql("plumb", "SELECT max(version) FROM plumb_schema"),
        "4"
    );
    drop(Collector::start(&pg_cfg));
    assert_eq!(
        pg.psql("plumb", "SELECT max(version) FROM plumb_schema"),
        "7"
    );
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*) FROM events WHERE kind = 'fim_change' AND fim_top IS NULL"
        ),
        "2",
        "only the verified changes have no directory"
    );
    check("after migration 5");
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");
}

/// Sends `n` batches of `per` events for `host`, from seq 1, to whichever
/// collector of `addrs` answers (the preferred one first; the next on a
/// failure), resending from the acknowledged seq as the agent does.
fn stream(f: &Fleet, addrs: &[SocketAddr], host: &str, n: u64, per: u64) -> Vec<u16> {
    let rt = rt();
    let cfg = f.client_config(Some(host));
    let mut next = 1u64;
    let mut which = 0usize;
    let mut statuses = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(90);
    while next <= n * per {
        assert!(Instant::now() < deadline, "{host}: stuck at seq {next}");
        let body = batch(host, next..(next + per).min(n * per + 1));
        let r = rt.block_on(one_request(
            cfg.clone(),
            addrs[which],
            "POST",
            "/v1/events",
            &body,
        ));
        match r {
            Ok(r) if r.status == 200 => {
                let ack: Value = serde_json::from_slice(&r.body).unwrap();
                next = ack["acked_seq"].as_u64().unwrap() + 1;
                statuses.push(200);
            }
            Ok(r) => {
                statuses.push(r.status);
                assert!(r.status == 503 || r.status == 429, "{host}: {}", r.status);
                assert!(r.header("retry-after").is_some());
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(_) => {
                which = (which + 1) % addrs.len();
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    statuses
}

pub(super) fn key(dir: &std::path::Path) -> (SigningKey, std::path::PathBuf) {
    let g = SigningKey::generate("team").unwrap();
    let pub_path = dir.join("team.pub");
    std::fs::write(&pub_path, g.public.to_text()).unwrap();
    (
        SigningKey::from_pem(&g.private_pem, "team").unwrap(),
        pub_path,
    )
}

fn get_baseline(f: &Fleet, addr: SocketAddr, host: &str) -> HttpResponse {
    rt().block_on(async {
        let mut c = connect(f.client_config(Some(host)), addr).await.unwrap();
        c.write_raw(b"GET /v1/baseline HTTP/1.1\r\nhost: collector\r\n\r\n")
            .await
            .unwrap();
        c.read_response().await.unwrap()
    })
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn two_collectors_one_database_kill_9_revocation_and_baselines() {
    let pg = Postgres::start();
    let url = pg.database("fleet");
    let f = Fleet::new();
    let (k, kp) = key(f.tmp.path());
    let storage = format!(
        "{}\n[baselines]\ntrusted_keys = [\"{}\"]\n",
        pg.storage_toml("fleet").trim_end(),
        kp.display()
    );
    assert!(storage.contains(&url));
    let cfg_a = f.config_named("a.toml", "127.0.0.1:0", "", &storage);
    let cfg_b = f.config_named("b.toml", "127.0.0.1:0", "", &storage);
    // Started together: the migration lock lets one migrate.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Collector::start(&cfg_a));
        let b = s.spawn(|| Collector::start(&cfg_b));
        (a.join().unwrap(), b.join().unwrap())
    });
    let mut a = a;
    // Each migration recorded once, the last one this build knows.
    assert_eq!(
        pg.psql(
            "fleet",
            "SELECT count(*) = count(DISTINCT version) AND count(*) = max(version) FROM plumb_schema"
        ),
        "t"
    );

    // Three agents preferring A, B, A; A killed with kill -9 mid-stream.
    let hosts = ["web-1", "web-2", "web-3"];
    let (n, per) = (40u64, 25u64);
    std::thread::scope(|s| {
        let f = &f;
        let (aa, ba) = (a.addr, b.addr);
        let t: Vec<_> = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                let order = if i == 1 { vec![ba, aa] } else { vec![aa, ba] };
                s.spawn(move || stream(f, &order, h, n, per))
            })
            .collect();
        std::thread::sleep(Duration::from_millis(700));
        a.child.kill().unwrap(); // SIGKILL
        a.child.wait().unwrap();
        for t in t {
            t.join().unwrap();
        }
    });
    for h in hosts {
        let row = pg.psql(
            "fleet",
            &format!(
                "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events WHERE host = '{h}'"
            ),
        );
        let total = n * per;
        assert_eq!(row, format!("{total}|{total}|1|{total}"), "{h}");
        assert_eq!(
            pg.psql(
                "fleet",
                &format!("SELECT acked_seq FROM hosts WHERE host = '{h}'")
            ),
            total.to_string()
        );
    }
    let a = Collector::start(&cfg_a);

    // A baseline published through A's config is served by B, same ETag.
    let bundle = f.path("v1.bundle");
    let text = "schema = 1\nid = \"fleet\"\nversion = 1\ntitle = \"fleet\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n";
    std::fs::write(
        &bundle,
        Bundle::sign(text.as_bytes(), "b.toml", &k)
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let (code, out, err) = run(&["baseline", "publish", bundle.to_str().unwrap()], &cfg_a);
    assert_eq!(code, 0, "{out}{err}");
    let ra = get_baseline(&f, a.addr, "web-1");
    let rb = get_baseline(&f, b.addr, "web-1");
    assert_eq!((ra.status, rb.status), (200, 200));
    assert_eq!(rb.body, std::fs::read(&bundle).unwrap());
    assert_eq!(ra.header("etag"), rb.header("etag"));

    // web-2 revoked through A's config: B refuses it within the poll
    // interval (1 s here; bounded, no SIGHUP), web-1 still gets in.
    let (cert, _) = f.agent("web-2");
    let o = collector()
        .args(["pki", "revoke", "--dir"])
        .arg(f.path("pki"))
        .arg("--config")
        .arg(&cfg_a)
        .arg(&cert)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    assert!(String::from_utf8_lossy(&o.stdout).contains("recorded in the database"));
    // Each collector refuses it within the bound, on a new connection
    // (403 on the request, or the connection closed).
    for addr in [b.addr, a.addr] {
        let start = Instant::now();
        let mut seq = n * per;
        loop {
            seq += 1;
            match post(&f, addr, "web-2", &batch("web-2", [seq])) {
                Ok(r) if r.status == 200 => {}
                Ok(r) => {
                    assert_eq!(r.status, 403);
                    break;
                }
                Err(_) => break,
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "{addr} still accepts a revoked agent"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let r = post(&f, addr, "web-1", &batch("web-1", [n * per + 1])).unwrap();
        assert_eq!(r.status, 200, "{addr}: web-1 is not revoked");
    }
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn database_restart_mid_stream_503_then_recovery_nothing_acked_lost() {
    let pg = Postgres::start();
    pg.database("plumb");
    let f = Fleet::new();
    let cfg = f.config_named(
        "pg.toml",
        "127.0.0.1:0",
        "",
        &format!(
            "retry_after_secs = 1\n{}connect_timeout_secs = 2\n",
            pg.storage_toml("plumb")
        ),
    );
    let c = Collector::start(&cfg);
    let r = post(&f, c.addr, "web-1", &batch("web-1", 1..=10)).unwrap();
    assert_eq!(r.status, 200);
    pg.stop();
    let r = post(&f, c.addr, "web-1", &batch("web-1", 11..=20)).unwrap();
    assert_eq!(r.status, 503, "{}", String::from_utf8_lossy(&r.body));
    assert_eq!(r.header("retry-after"), Some("1"));
    let restarter = std::thread::spawn({
        move || {
            std::thread::sleep(Duration::from_secs(2));
            pg.restart();
            pg
        }
    });
    // The agent keeps sending; the collector recovers by itself.
    let statuses = stream(&f, &[c.addr], "web-1", 8, 10);
    assert!(statuses.contains(&503), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&200));
    let pg = restarter.join().unwrap();
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), count(DISTINCT seq), min(seq), max(seq) FROM events"
        ),
        "80|80|1|80"
    );
}

/// `events_pYYYYMMDD` of the day `days_ago` days before today (UTC), and
/// a unix time at noon that day.
fn day_partition(days_ago: i64) -> (String, i64) {
    let t = time::OffsetDateTime::now_utc() - time::Duration::days(days_ago);
    let d = t.date();
    let noon = d.midnight().assume_utc().unix_timestamp() + 43_200;
    (
        format!(
            "events_p{:04}{:02}{:02}",
            d.year(),
            u8::from(d.month()),
            d.day()
        ),
        noon,
    )
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn retention_drops_whole_day_partitions_older_than_retention_and_nothing_else() {
    let pg = Postgres::start();
    pg.database("plumb");
    let f = Fleet::new();
    let storage = pg.storage_toml("plumb");
    let keep_cfg = f.config_named("keep.toml", "127.0.0.1:0", "", &storage);
    let prune_cfg = f.config_named(
        "prune.toml",
        "127.0.0.1:0",
        "",
        &format!("retention_days = 30\n{storage}"),
    );
    // Today's events through a collector that keeps everything.
    let c = Collector::start(&keep_cfg);
    for host in ["web-1", "db-01"] {
        let r = post(&f, c.addr, host, &batch(host, 100..=109)).unwrap();
        assert_eq!(r.status, 200);
    }
    drop(c);
    // Older days, as a collector would have stored them: 60 days ago (web-1
    // 1..=5, its latest snapshot being seq 3; db-01 1..=2), 10 days ago
    // (web-1 6..=8), and 50 days ago outside any day partition (db-01 3).
    let (old, old_t) = day_partition(60);
    let (recent, recent_t) = day_partition(10);
    let (_, default_t) = day_partition(50);
    let row = |host: &str, seq: u64, kind: &str, t: i64| {
        format!("('{host}', {seq}, '{kind}', 'high', 3, {t}, {t}, '{{}}')")
    };
    // web-1's seq 4, received 60 days ago, carries a time a day ahead
    // (its clock ran fast): in `hosts`' last 24 hours until retention
    // drops its day.
    let ahead = time::OffsetDateTime::now_utc().unix_timestamp() + 86_400;
    let mut old_rows: Vec<String> = (1..=5)
        .map(|s| {
            let kind = if s == 3 { "snapshot" } else { "fim_change" };
            if s == 4 {
                return format!("('web-1', 4, '{kind}', 'high', 3, {ahead}, {old_t}, '{{}}')");
            }
            row("web-1", s, kind, old_t)
        })
        .collect();
    old_rows.extend((1..=2).map(|s| row("db-01", s, "fim_change", old_t)));
    let recent_rows: Vec<String> = (6..=8)
        .map(|s| row("web-1", s, "fim_change", recent_t))
        .collect();
    let cols = "(host, seq, kind, severity, sev_rank, time, received_at, body)";
    pg.psql(
        "plumb",
        &format!(
            "CREATE TABLE {old} PARTITION OF events FOR VALUES FROM ({a}) TO ({b});
             CREATE TABLE {recent} PARTITION OF events FOR VALUES FROM ({c}) TO ({d});
             INSERT INTO events {cols} VALUES {};
             INSERT INTO events {cols} VALUES {};
             INSERT INTO events_default {cols} VALUES {};
             UPDATE hosts SET last_snapshot_seq = 3 WHERE host = 'web-1';
             INSERT INTO rule_status VALUES ('web-1', 'r1', 'fail', 'high', '[13]', 't', 3, {old_t});",
            old_rows.join(","),
            recent_rows.join(","),
            row("db-01", 3, "fim_change", default_t),
            a = old_t - 43_200,
            b = old_t + 43_200,
            c = recent_t - 43_200,
            d = recent_t + 43_200,
        ),
    );
    let count = |sql: &str| pg.psql("plumb", sql);
    assert_eq!(count("SELECT count(*) FROM events"), "31");
    assert_eq!(count(TALLIES_OFF), "0|0|0");
    let drift_24h = |host: &str| {
        let (_, v) = query_json(&["hosts"], &keep_cfg);
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["host"] == host)
            .map(|h| h["drift_24h"].clone())
    };
    assert_eq!(
        drift_24h("web-1"),
        Some(json!(1)),
        "the event from a fast clock"
    );

    // Retention runs when the collector starts (then hourly).
    let c = Collector::start(&prune_cfg);
    let end = Instant::now() + Duration::from_secs(30);
    while count(&format!("SELECT to_regclass('{old}') IS NULL")) != "t" {
        assert!(Instant::now() < end, "{old} not dropped:\n{}", c.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    let end = Instant::now() + Duration::from_secs(10);
    while count("SELECT count(*) FROM events_default WHERE kind <> 'snapshot'") != "0" {
        assert!(Instant::now() < end, "the default partition is not pruned");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The old day is gone but web-1's latest snapshot, kept in the default
    // partition; the 10-day-old partition and today's are whole.
    assert_eq!(
        count(
            "SELECT string_agg(host || ':' || seq, ',' ORDER BY host, seq) FROM events WHERE seq < 100"
        ),
        "web-1:3,web-1:6,web-1:7,web-1:8"
    );
    assert_eq!(count("SELECT count(*) FROM events_default"), "1");
    assert_eq!(count(&format!("SELECT count(*) FROM {recent}")), "3");
    assert_eq!(count("SELECT count(*) FROM events WHERE seq >= 100"), "20");
    // Hosts and rule states untouched but for the pruned seqs.
    assert_eq!(
        count(
            "SELECT string_agg(host || ':' || acked_seq || ':' || pruned_seq || ':' || last_snapshot_seq, ',' ORDER BY host) FROM hosts"
        ),
        "db-01:109:3:0,web-1:109:5:3"
    );
    assert_eq!(count("SELECT count(*) FROM rule_status"), "1");
    // A resend of a pruned event is acknowledged, not stored again.
    let r = post(&f, c.addr, "db-01", &batch("db-01", 1..=2)).unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        count("SELECT count(*) FROM events WHERE host = 'db-01' AND seq < 100"),
        "0"
    );
    assert!(
        c.log().contains("retention dropped a partition"),
        "{}",
        c.log()
    );
    // What retention dropped left the counts kept from it: the fast
    // clock's event no longer counts as recent drift.
    assert_eq!(count(TALLIES_OFF), "0|0|0");
    assert_eq!(drift_24h("web-1"), Some(json!(0)));
    assert_eq!(
        count("SELECT count(*) FROM fim_daily WHERE n = 0"),
        "0",
        "days whose file changes are all gone leave no row"
    );
}

/// The fleet figures of `/metrics` (hosts, stale, failing, rule statuses,
/// score, hosts per baseline) come from the store: the same on both.
#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn metrics_fleet_figures_are_the_same_on_both_backends() {
    let pg = Postgres::start();
    pg.database("plumb");
    let metrics = "\n[metrics]\nscrapers = [\"prometheus\"]\nfleet_cache_secs = 0\n";
    let f = Fleet::new();
    let lite_cfg = f.config("127.0.0.1:0", "", metrics);
    let pg_cfg = f.config_named(
        "pg.toml",
        "127.0.0.1:0",
        "",
        &format!("{}{metrics}", pg.storage_toml("plumb")),
    );
    let lite = Collector::start(&lite_cfg);
    let pgc = Collector::start(&pg_cfg);
    post_event_set(&f, &[lite.addr, pgc.addr]);
    let fleet = |addr| {
        let r = rt()
            .block_on(one_request(
                f.client_config(Some("prometheus")),
                addr,
                "GET",
                "/metrics",
                b"",
            ))
            .unwrap();
        assert_eq!(r.status, 200);
        let text = String::from_utf8(r.body).unwrap();
        let lines: Vec<String> = text
            .lines()
            .filter(|l| {
                ["hosts", "rules", "fleet_score_ratio"]
                    .iter()
                    .any(|p| l.starts_with(&format!("plumb_collector_{p}")))
            })
            .map(str::to_string)
            .collect();
        lines
    };
    let (l, p) = (fleet(lite.addr), fleet(pgc.addr));
    assert_eq!(l, p, "SQLite and PostgreSQL disagree");
    let text = l.join("\n");
    use crate::suite::metrics::value;
    assert_eq!(value(&text, "plumb_collector_hosts"), 3.0);
    assert_eq!(value(&text, "plumb_collector_hosts_stale"), 0.0);
    // db-01 fails sysctl.ip-forward, web-12 ssh.permit-root-login.
    assert_eq!(value(&text, "plumb_collector_hosts_failing"), 2.0);
    assert_eq!(value(&text, "plumb_collector_rules{status=\"error\"}"), 1.0);
    assert_eq!(
        value(
            &text,
            "plumb_collector_hosts_by_baseline{baseline=\"issp-linux-server\",version=\"7\"}"
        ),
        3.0
    );
}
