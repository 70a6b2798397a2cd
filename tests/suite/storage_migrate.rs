//! `plumb-collector storage migrate`: a SQLite store filled by a real
//! collector (a real agent, mTLS batches, a published baseline) copied into
//! a throwaway PostgreSQL (common::postgres); then the PostgreSQL store
//! answers as the SQLite one did (commands and console: score history,
//! refused bundles), a re-run copies nothing twice, a run killed mid-way
//! completes when run again, and a SIEM sink resumes on PostgreSQL where it
//! stopped on SQLite.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::collector_postgres::{TALLIES_OFF, event_set, key, post, query_json};
use crate::common::collector::*;
use crate::common::postgres::Postgres;
use crate::common::receiver::{Behaviour, Receiver, Request};
use crate::common::{Agent, Port};
use plumb_collector::pki::{self, Role};
use plumb_core::bundle::Bundle;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn migrate(from: &Path, to: &str, extra: &[&str]) -> (i32, String, String) {
    let o = collector()
        .args(["storage", "migrate", "--from"])
        .arg(format!("sqlite:{}", from.display()))
        .args(["--to", to])
        .args(extra)
        .output()
        .unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn migrate_json(from: &Path, to: &str) -> Value {
    let (code, out, err) = migrate(from, to, &["--format", "json"]);
    assert_eq!(code, 0, "{out}{err}");
    serde_json::from_str(&out).unwrap()
}

fn sqlite_count(db: &Path, sql: &str) -> u64 {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .unwrap();
    c.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap() as u64
}

/// A real agent (`plumb agent`) reporting web-1 to `port`, with FIM on /etc.
fn start_agent(f: &Fleet, port: u16) -> Agent {
    f.agent("web-1");
    let d = f.tmp.path();
    let root = d.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(d.join("proc")).unwrap();
    std::fs::write(root.join("etc/flag"), "1").unwrap();
    std::fs::write(
        d.join("baseline.toml"),
        "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n\
         [[rule]]\nid = \"nologin\"\ntitle = \"nologin absent\"\nseverity = \"medium\"\ndomains = [13]\ncriteria = [\"C\"]\n\
         check = { kind = \"file\", path = \"/etc/nologin\", exists = false }\n\
         [[fim]]\npath = \"/etc\"\nrealtime = true\nseverity = \"high\"\ndomains = [25]\n",
    )
    .unwrap();
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "host_id = \"web-1\"\nroot = \"{root}\"\nproc = \"{d}/proc\"\nstate_dir = \"{d}/state\"\n\
             baselines = [\"{d}/baseline.toml\"]\nevents_file = \"{d}/events.jsonl\"\n\
             [intervals]\nchecks = \"1s\"\n\
             [collector]\nurl = \"https://localhost:{port}\"\n\
             ca = \"{d}/pki/ca.pem\"\ncert = \"{d}/pki/agents/web-1.pem\"\nkey = \"{d}/pki/agents/web-1.key\"\n\
             max_backoff = \"1s\"\ntimeout = \"5s\"\n",
            root = root.display(),
            d = d.display(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o600)).unwrap();
    Agent(
        Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["agent", "--config"])
            .arg(&cfg)
            .env("PLUMB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(d.join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let end = Instant::now() + Duration::from_secs(40);
    while !done() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The console listener of a collector started with `[console]` (its
/// `console on ADDR` log line).
fn console_addr(c: &Collector) -> SocketAddr {
    let mut found = None;
    wait_for("the console address", || {
        found = c
            .log()
            .lines()
            .find_map(|l| l.split("console on ").nth(1))
            .and_then(|a| a.trim().parse().ok());
        found.is_some()
    });
    found.unwrap()
}

/// A console page as operator `op` sees it.
fn page(op: &Arc<rustls::ClientConfig>, addr: SocketAddr, path: &str) -> String {
    let r = rt()
        .block_on(one_request(op.clone(), addr, "GET", path, b""))
        .unwrap();
    assert_eq!(r.status, 200, "{path}");
    String::from_utf8_lossy(&r.body).into_owned()
}

/// The part of `page` from `start` to the first `end` after it.
fn fragment<'a>(page: &'a str, start: &str, end: &str) -> &'a str {
    let from = page
        .find(start)
        .unwrap_or_else(|| panic!("no {start}: {page}"));
    let len = page[from..]
        .find(end)
        .unwrap_or_else(|| panic!("no {end}: {page}"));
    &page[from..from + len + end.len()]
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn a_sqlite_store_migrated_answers_the_same_on_postgresql_and_a_rerun_copies_nothing() {
    let pg = Postgres::start();
    let url = pg.database("plumb");
    let f = Fleet::new();
    let (k, kp) = key(f.tmp.path());
    let trusted = format!("\n[baselines]\ntrusted_keys = [\"{}\"]\n", kp.display());
    let lite_cfg = f.config("127.0.0.1:0", "", &trusted);
    let pg_cfg = f.config_named(
        "pg.toml",
        "127.0.0.1:0",
        "",
        &format!("{}{trusted}", pg.storage_toml("plumb")),
    );
    for cfg in [&lite_cfg, &pg_cfg] {
        let mut text = std::fs::read_to_string(cfg).unwrap();
        text.push_str("\n[console]\nlisten = \"127.0.0.1:0\"\n");
        std::fs::write(cfg, text).unwrap();
    }
    let db = f.db();
    let lite = Collector::start(&lite_cfg);

    // A real agent: snapshot, then a failing rule and FIM changes.
    let mut agent = start_agent(&f, lite.addr.port());
    wait_for("web-1's snapshot", || !stored_seqs(&db, "web-1").is_empty());
    std::fs::write(f.path("root/etc/nologin"), "x").unwrap();
    std::fs::write(f.path("root/etc/motd"), "hello").unwrap();
    wait_for("web-1's drift", || {
        sqlite_count(
            &db,
            "SELECT count(*) FROM events WHERE host = 'web-1' AND kind IN ('check_changed', 'fim_change')",
        ) >= 2
    });
    agent.stop();
    // Three more hosts through mTLS batches, and a published baseline.
    let mut acks = Vec::new();
    for (host, b) in event_set() {
        let body = serde_json::to_vec(&b).unwrap();
        let r = post(&f, lite.addr, host, &body).unwrap();
        assert_eq!(r.status, 200);
        acks.push((host, body, r.body));
    }
    // A host standing on a refused bundle (the console's baselines page).
    let refusal = json!({"schema": 1, "host": "db-7", "events": [
        {"seq": 1, "time": "2026-11-27T10:00:00Z", "severity": "high", "kind": "agent",
         "what": "baseline_refused", "message": "fleet v9: signed by an unknown key",
         "agent_version": "0.1.0"}]});
    let body = serde_json::to_vec(&refusal).unwrap();
    let r = post(&f, lite.addr, "db-7", &body).unwrap();
    assert_eq!(r.status, 200);
    acks.push(("db-7", body, r.body));
    let bundle = f.path("fleet.bundle");
    let text = "schema = 1\nid = \"fleet\"\nversion = 3\ntitle = \"fleet\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n";
    std::fs::write(
        &bundle,
        Bundle::sign(text.as_bytes(), "fleet.toml", &k)
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let o = collector()
        .args(["baseline", "publish", "--hosts", "web-*", "--config"])
        .arg(&lite_cfg)
        .arg(&bundle)
        .output()
        .unwrap();
    assert!(o.status.success(), "{o:?}");
    drop(lite);

    let events = sqlite_count(&db, "SELECT count(*) FROM events");
    let rules = sqlite_count(&db, "SELECT count(*) FROM rule_status");
    let days = sqlite_count(&db, "SELECT count(*) FROM score_daily");
    assert!(days >= 1, "the snapshots made no daily score");
    let report = migrate_json(&db, &url);
    let count = |t: &str| -> (u64, u64, u64) {
        let c = &report[t];
        (
            c["source"].as_u64().unwrap(),
            c["copied"].as_u64().unwrap(),
            c["unchanged"].as_u64().unwrap(),
        )
    };
    assert_eq!(count("hosts"), (5, 5, 0), "{report}");
    assert_eq!(count("events"), (events, events, 0), "{report}");
    assert_eq!(count("rule_status"), (rules, rules, 0), "{report}");
    assert_eq!(count("baselines"), (1, 1, 0), "{report}");
    assert_eq!(count("score_daily"), (days, days, 0), "{report}");
    assert_eq!(count("baseline_refusals"), (1, 1, 0), "{report}");
    assert_eq!(count("forward_cursors"), (0, 0, 0), "{report}");

    for args in [
        &["hosts"][..],
        &["drift"],
        &["drift", "--host", "web-1"],
        &["drift", "--host", "web-12"],
        &["drift", "--severity", "high"],
        &["report"],
        &["baseline", "list"],
    ] {
        let (lc, lv) = query_json(args, &lite_cfg);
        let (pc, pv) = query_json(args, &pg_cfg);
        assert_eq!(lv, pv, "{args:?} differs after the migration");
        assert_eq!(lc, pc, "{args:?} exit codes");
    }
    let (_, hosts) = query_json(&["hosts"], &pg_cfg);
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 5, "{hosts}");

    // Run again: same source counts, nothing copied, nothing doubled.
    let again = migrate_json(&db, &url);
    for t in [
        "hosts",
        "events",
        "rule_status",
        "baselines",
        "score_daily",
        "baseline_refusals",
        "forward_cursors",
    ] {
        let c = &again[t];
        assert_eq!(c["source"], report[t]["source"], "{again}");
        assert_eq!(c["copied"], 0, "{t}: {again}");
        assert_eq!(c["unchanged"], report[t]["source"], "{again}");
    }
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), count(DISTINCT (host, seq)) FROM events"
        ),
        format!("{events}|{events}")
    );
    // What `hosts` and `report` read on PostgreSQL, kept by triggers
    // through the migration's COPY and upserts, twice: true.
    assert_eq!(pg.psql("plumb", TALLIES_OFF), "0|0|0");

    // The console's compliance chart (score per day) and refused bundles
    // read the same on both stores.
    let lite = Collector::start(&lite_cfg);
    let pgc = Collector::start(&pg_cfg);
    let i = pki::issue(&f.pki, Role::Operator, "alice", 30).unwrap();
    let op = plumb_collector::tls::client_config(&f.pki.ca(), Some((&i.cert, &i.key))).unwrap();
    let (lc, pc) = (console_addr(&lite), console_addr(&pgc));
    let chart = |addr| {
        let p = page(&op, addr, "/compliance");
        fragment(&p, "<svg class=\"chart\" id=\"score-history\"", "</svg>").to_string()
    };
    let refused = |addr| {
        let p = page(&op, addr, "/baselines");
        fragment(&p, "<h2>Bundles refused by hosts</h2>", "</table>").to_string()
    };
    let lite_chart = chart(lc);
    assert!(lite_chart.contains("<circle class=\"dot\""), "{lite_chart}");
    assert_eq!(chart(pc), lite_chart);
    let lite_refused = refused(lc);
    assert!(
        lite_refused.contains("signed by an unknown key") && lite_refused.contains("db-7"),
        "{lite_refused}"
    );
    assert_eq!(refused(pc), lite_refused);
    drop(lite);

    // A collector on PostgreSQL takes over: a resent batch gets the ack the
    // SQLite collector gave, and is not stored twice; the baseline is served.
    for (host, body, ack) in acks {
        let r = post(&f, pgc.addr, host, &body).unwrap();
        assert_eq!((r.status, r.body), (200, ack), "{host}");
    }
    assert_eq!(
        pg.psql("plumb", "SELECT count(*) FROM events"),
        events.to_string()
    );
    let (_, list) = query_json(&["baseline", "list"], &pg_cfg);
    assert!(list.to_string().contains("\"fleet\""), "{list}");
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn a_migration_killed_mid_way_completes_when_run_again() {
    let pg = Postgres::start();
    let url = pg.database("plumb");
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "", "");
    let c = Collector::start(&cfg);
    let (hosts, per_host) = (20u64, 2_000u64);
    for h in 0..hosts {
        let host = format!("host-{h:02}");
        for start in (1..=per_host).step_by(500) {
            let r = post(&f, c.addr, &host, &batch(&host, start..start + 500)).unwrap();
            assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        }
    }
    drop(c);
    let db = f.db();
    let total = hosts * per_host;
    assert_eq!(sqlite_count(&db, "SELECT count(*) FROM events"), total);

    // Small transactions, so that the kill lands between two of them.
    let mut child = collector()
        .args(["storage", "migrate", "--batch-rows", "200", "--from"])
        .arg(format!("sqlite:{}", db.display()))
        .args(["--to", &url])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The schema first (the migration creates it), then the first events.
    wait_for("the schema in PostgreSQL", || {
        pg.psql("plumb", "SELECT to_regclass('public.events') IS NOT NULL") == "t"
    });
    wait_for("the first events in PostgreSQL", || {
        pg.psql("plumb", "SELECT count(*) FROM events") != "0"
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let copied: u64 = pg
        .psql("plumb", "SELECT count(*) FROM events")
        .parse()
        .unwrap();
    assert!(copied < total, "the migration ended before it was killed");
    // No host row yet for a host whose events are not all in.
    let rerun = migrate_json(&db, &url);
    assert_eq!(rerun["events"]["source"], total, "{rerun}");
    assert_eq!(rerun["events"]["copied"], total - copied, "{rerun}");
    assert_eq!(rerun["events"]["unchanged"], copied, "{rerun}");
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), count(DISTINCT (host, seq)), min(seq), max(seq) FROM events"
        ),
        format!("{total}|{total}|1|{per_host}")
    );
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT count(*), min(acked_seq), max(acked_seq) FROM hosts"
        ),
        format!("{hosts}|{per_host}|{per_host}")
    );
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn migrate_refuses_what_it_cannot_copy_naming_it() {
    let pg = Postgres::start();
    let url = pg.database("plumb");
    let tmp = tempfile::tempdir().unwrap();
    // No such store.
    let missing = tmp.path().join("none.db");
    let (code, _, err) = migrate(&missing, &url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains(&missing.display().to_string()) && err.contains("no such database"),
        "{err}"
    );
    // A schema version this build does not know.
    let newer = tmp.path().join("newer.db");
    let c = rusqlite::Connection::open(&newer).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let (code, _, err) = migrate(&newer, &url, &[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("schema version 99") && err.contains("newer plumb-collector"),
        "{err}"
    );
    // Not a sqlite: source; an unreachable database.
    let o = collector()
        .args([
            "storage",
            "migrate",
            "--from",
            "/var/lib/x.db",
            "--to",
            &url,
        ])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("sqlite:PATH"));
    let empty = tmp.path().join("empty.db");
    rusqlite::Connection::open(&empty)
        .unwrap()
        // The SQLite schema version this build writes: an empty, current store.
        .pragma_update(None, "user_version", 7)
        .unwrap();
    let (code, _, err) = migrate(
        &empty,
        &format!(
            "host=127.0.0.1 port={} user=plumb dbname=plumb connect_timeout=2",
            Port::reserve().port
        ),
        &[],
    );
    assert_eq!(code, 2);
    assert!(err.contains("postgres 127.0.0.1"), "{err}");
}

/// (host, seq) of every event a receiver acknowledged, counted.
fn acknowledged(reqs: &[Request]) -> BTreeMap<(String, u64), usize> {
    let mut out = BTreeMap::new();
    for r in reqs.iter().filter(|r| r.acknowledged()) {
        for l in r.body.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let v: Value = serde_json::from_slice(l).unwrap();
            let key = (
                v["host"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            );
            *out.entry(key).or_default() += 1;
        }
    }
    out
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn a_siem_sink_resumes_after_the_migration_where_it_stopped_on_sqlite() {
    let pg = Postgres::start();
    let url = pg.database("plumb");
    let f = Fleet::new();
    let recv = Receiver::start(
        f.pki.server_config(),
        Behaviour {
            answer: "{}".into(),
            ..Behaviour::default()
        },
    );
    let sink = format!(
        "\n[[forward]]\nname = \"siem\"\ntype = \"http\"\nurl = \"https://localhost:{}/in\"\n\
         ca = \"pki/ca.pem\"\nbatch_events = 40\nmax_backoff_secs = 1\npoll_interval_ms = 100\n",
        recv.addr.port()
    );
    let lite_cfg = f.config("127.0.0.1:0", "", &sink);
    let pg_cfg = f.config_named(
        "pg.toml",
        "127.0.0.1:0",
        "",
        &format!("{}{sink}", pg.storage_toml("plumb")),
    );
    let db = f.db();
    let cursor = |host: &str| {
        sqlite_count(
            &db,
            &format!(
                "SELECT coalesce(max(seq), 0) FROM forward_cursors
                 WHERE consumer = 'forward:siem' AND host = '{host}'"
            ),
        )
    };
    let lite = Collector::start(&lite_cfg);
    for host in ["web-1", "web-2"] {
        assert_eq!(
            200,
            post(&f, lite.addr, host, &batch(host, 1..=100))
                .unwrap()
                .status
        );
    }
    // Everything forwarded, and the cursors saying so.
    wait_for("200 events forwarded", || {
        cursor("web-1") == 100 && cursor("web-2") == 100
    });
    // The SIEM goes down: web-1's next 30 events stay behind the cursor.
    recv.behaviour.lock().unwrap().fail_first = usize::MAX;
    assert_eq!(
        200,
        post(&f, lite.addr, "web-1", &batch("web-1", 101..=130))
            .unwrap()
            .status
    );
    recv.wait_for(Duration::from_secs(40), "a refused delivery", |r| {
        r.iter().any(|r| r.status == Some(503))
    });
    drop(lite);
    assert_eq!((cursor("web-1"), cursor("web-2")), (100, 100));

    let cursors = sqlite_count(&db, "SELECT count(*) FROM forward_cursors");
    let report = migrate_json(&db, &url);
    assert_eq!(report["forward_cursors"]["source"], cursors, "{report}");
    assert_eq!(report["forward_cursors"]["copied"], cursors, "{report}");
    assert_eq!(
        pg.psql(
            "plumb",
            "SELECT host, seq FROM forward_cursors WHERE consumer = 'forward:siem' ORDER BY host"
        ),
        "web-1|100\nweb-2|100"
    );
    let again = migrate_json(&db, &url);
    assert_eq!(again["forward_cursors"]["copied"], 0, "{again}");
    assert_eq!(again["forward_cursors"]["unchanged"], cursors, "{again}");

    // The SIEM is back and the sink now runs on PostgreSQL: it sends what
    // SQLite had not delivered and what arrives next, not the first 200.
    recv.behaviour.lock().unwrap().fail_first = 0;
    let pgc = Collector::start(&pg_cfg);
    assert_eq!(
        200,
        post(&f, pgc.addr, "web-2", &batch("web-2", 101..=110))
            .unwrap()
            .status
    );
    let want: Vec<(String, u64)> = (1..=130)
        .map(|s| ("web-1".to_string(), s))
        .chain((1..=110).map(|s| ("web-2".to_string(), s)))
        .collect();
    recv.wait_for(Duration::from_secs(40), "every event acknowledged", |r| {
        acknowledged(r).len() >= want.len()
    });
    drop(pgc);
    let acked = acknowledged(&recv.requests());
    let twice: Vec<_> = acked.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "sent twice: {twice:?}");
    assert_eq!(acked.into_keys().collect::<Vec<_>>(), want);
}
