//! `plumb-collector storage migrate`: a SQLite store filled by a real
//! collector (a real agent, mTLS batches, a published baseline) copied into
//! a throwaway PostgreSQL (common::postgres); then the PostgreSQL store
//! answers as the SQLite one did, a re-run copies nothing twice, and a run
//! killed mid-way completes when run again.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::collector_postgres::{event_set, key, post, query_json};
use crate::common::collector::*;
use crate::common::postgres::Postgres;
use crate::common::{Agent, Port};
use plumb_core::bundle::Bundle;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
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
    let report = migrate_json(&db, &url);
    let count = |t: &str| -> (u64, u64, u64) {
        let c = &report[t];
        (
            c["source"].as_u64().unwrap(),
            c["copied"].as_u64().unwrap(),
            c["unchanged"].as_u64().unwrap(),
        )
    };
    assert_eq!(count("hosts"), (4, 4, 0), "{report}");
    assert_eq!(count("events"), (events, events, 0), "{report}");
    assert_eq!(count("rule_status"), (rules, rules, 0), "{report}");
    assert_eq!(count("baselines"), (1, 1, 0), "{report}");

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
    assert_eq!(hosts["hosts"].as_array().unwrap().len(), 4, "{hosts}");

    // Run again: same source counts, nothing copied, nothing doubled.
    let again = migrate_json(&db, &url);
    for t in ["hosts", "events", "rule_status", "baselines"] {
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

    // A collector on PostgreSQL takes over: a resent batch gets the ack the
    // SQLite collector gave, and is not stored twice; the baseline is served.
    let pgc = Collector::start(&pg_cfg);
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
