//! SIEM forwarding with real receivers: the real `plumb-collector` forwards
//! what agents posted to a test HTTPS receiver (failing, hanging) and to a
//! real rsyslog started by the test; the collector is SIGKILLed
//! mid-forwarding and restarted, and nothing is lost.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use crate::common::receiver::{Behaviour, Receiver, Request};
use crate::common::rsyslog::Rsyslog;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

fn post(f: &Fleet, addr: SocketAddr, host: &str, body: &[u8]) {
    let r = rt()
        .block_on(one_request(
            f.client_config(Some(host)),
            addr,
            "POST",
            "/v1/events",
            body,
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
}

/// A private file (0600) in the fleet's directory.
fn secret(f: &Fleet, name: &str, text: &str) -> PathBuf {
    let p = f.path(name);
    std::fs::write(&p, text).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
    p
}

/// (host, seq) of every event in a JSON-lines body.
fn jsonl_events(body: &[u8]) -> Vec<(String, u64)> {
    body.split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let v: Value = serde_json::from_slice(l).unwrap();
            (
                v["host"].as_str().unwrap().to_string(),
                v["seq"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn acknowledged_events(reqs: &[Request]) -> Vec<(String, u64)> {
    reqs.iter()
        .filter(|r| r.acknowledged())
        .flat_map(|r| jsonl_events(&r.body))
        .collect()
}

#[test]
fn http_sink_retries_and_survives_sigkill_mid_delivery_losing_nothing() {
    let f = Fleet::new();
    secret(&f, "siem.token", "s3cret-token\n");
    // Requests 0 and 1 fail (503), 2 and 3 are acknowledged, 4 hangs: the
    // collector is killed while waiting for its answer.
    let recv = Receiver::start(
        f.pki.server_config(),
        Behaviour {
            fail_first: 2,
            hang_from: Some(4),
            answer: "{}".into(),
        },
    );
    let sink = format!(
        "\n[[forward]]\nname = \"siem\"\ntype = \"http\"\nurl = \"https://localhost:{}/ingest?x=1\"\n\
         ca = \"pki/ca.pem\"\ntoken_file = \"siem.token\"\nbatch_events = 40\n\
         max_backoff_secs = 1\npoll_interval_ms = 100\ntimeout_secs = 60\n",
        recv.addr.port()
    );
    let cfg = f.config("127.0.0.1:0", "", &sink);
    let mut expected = Vec::new();
    {
        let mut c = Collector::start(&cfg);
        for host in ["web-1", "web-2", "db-1"] {
            post(&f, c.addr, host, &batch(host, 1..=60));
            post(&f, c.addr, host, &batch(host, 61..=100));
            expected.extend((1..=100).map(|s| (host.to_string(), s)));
        }
        recv.wait_for(Duration::from_secs(30), "a request left hanging", |r| {
            r.len() >= 5
        });
        c.signal("KILL");
        c.wait(Duration::from_secs(5)).expect("collector killed");
        let log = c.log();
        assert!(log.contains("not delivered (attempt 1)"), "{log}");
        assert!(log.contains("503"), "{log}");
    }
    recv.behaviour.lock().unwrap().hang_from = None;
    let c = Collector::start(&cfg);
    post(&f, c.addr, "web-1", &batch("web-1", 101..=120));
    expected.extend((101..=120).map(|s| ("web-1".to_string(), s)));
    let total = expected.len();
    recv.wait_for(Duration::from_secs(60), "every event acknowledged", |r| {
        acknowledged_events(r).len() >= total
    });
    drop(c);
    let reqs = recv.requests();
    // Retries send the same batch until it is acknowledged.
    assert_eq!(reqs[0].status, Some(503));
    assert_eq!(reqs[1].status, Some(503));
    assert_eq!(reqs[0].body, reqs[1].body);
    assert_eq!(reqs[1].body, reqs[2].body);
    assert!(reqs[2].acknowledged());
    assert_eq!(reqs[4].status, None, "the request the collector died in");
    for r in &reqs {
        assert_eq!(r.path, "/ingest?x=1");
        assert_eq!(r.header("authorization"), Some("Bearer s3cret-token"));
        assert_eq!(r.header("content-type"), Some("application/x-ndjson"));
    }
    // Every event acknowledged exactly once: duplicates only in requests
    // that were not acknowledged (the 503s and the one left hanging).
    let acked = acknowledged_events(&reqs);
    let mut counts: BTreeMap<(String, u64), usize> = BTreeMap::new();
    for e in &acked {
        *counts.entry(e.clone()).or_default() += 1;
    }
    let dups: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dups.is_empty(), "acknowledged twice: {dups:?}");
    let mut want = expected.clone();
    want.sort();
    assert_eq!(counts.keys().cloned().collect::<Vec<_>>(), want);
    // The hanging request's events came again after the restart.
    let hung = jsonl_events(&reqs[4].body);
    assert!(!hung.is_empty());
    // In order per host, in the order the receiver acknowledged them.
    let mut last: HashMap<String, u64> = HashMap::new();
    for (host, seq) in acked {
        let prev = last.insert(host.clone(), seq).unwrap_or(0);
        assert!(seq > prev, "{host}: seq {seq} after {prev}");
    }
}

/// One RFC 5424 message as rsyslog wrote it (`%rawmsg%`).
#[derive(Debug)]
struct Syslog {
    pri: u16,
    host: String,
    app: String,
    msgid: String,
    sd_id: String,
    params: BTreeMap<String, String>,
    msg: String,
}

/// Parses `<PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD-ID (NAME="VALUE")*] MSG`,
/// undoing the §6.3.3 escapes.
fn parse_5424(line: &str) -> Syslog {
    let rest = line.strip_prefix('<').unwrap();
    let (pri, rest) = rest.split_once(">1 ").unwrap();
    let mut head = rest.splitn(6, ' ');
    let _time = head.next().unwrap();
    let host = head.next().unwrap().to_string();
    let app = head.next().unwrap().to_string();
    let _procid = head.next().unwrap();
    let msgid = head.next().unwrap().to_string();
    let sd = head.next().unwrap();
    let sd = sd.strip_prefix('[').unwrap();
    let (sd_id, mut rest) = sd.split_once(' ').unwrap();
    let mut params = BTreeMap::new();
    loop {
        if let Some(r) = rest.strip_prefix("] ") {
            rest = r;
            break;
        }
        let (name, r) = rest.trim_start().split_once("=\"").unwrap();
        let mut value = String::new();
        let mut chars = r.char_indices();
        let end = loop {
            let (i, c) = chars.next().unwrap();
            match c {
                '\\' => value.push(chars.next().unwrap().1),
                '"' => break i,
                c => value.push(c),
            }
        };
        params.insert(name.to_string(), value);
        rest = &r[end + 1..];
    }
    Syslog {
        pri: pri.parse().unwrap(),
        host,
        app,
        msgid,
        sd_id: sd_id.to_string(),
        params,
        msg: rest.trim_start_matches('\u{feff}').to_string(),
    }
}

/// `peer`: rsyslog requires the collector's client certificate naming it.
fn syslog_to_real_rsyslog(driver: &str, peer: Option<&str>) {
    let f = Fleet::new();
    let rs = Rsyslog::start(
        driver,
        &f.pki.ca(),
        &f.pki.join("servers/localhost.pem"),
        &f.pki.join("servers/localhost.key"),
        peer,
    );
    let client = match peer {
        Some(p) => {
            f.pki.agent(p);
            format!("client_cert = \"pki/agents/{p}.pem\"\nclient_key = \"pki/agents/{p}.key\"\n")
        }
        None => String::new(),
    };
    let sink = format!(
        "\n[[forward]]\nname = \"rsyslog\"\ntype = \"syslog\"\naddress = \"127.0.0.1:{}\"\n\
         server_name = \"localhost\"\nca = \"pki/ca.pem\"\nhosts = \"web-*\"\nmin_severity = \"low\"\n\
         batch_events = 7\nmax_backoff_secs = 1\npoll_interval_ms = 100\n{client}",
        rs.port
    );
    let cfg = f.config("127.0.0.1:0", "", &sink);
    let c = Collector::start(&cfg);
    let title = r#"Root "login" [sshd] \ denied"#;
    let changed = |seq: u64, severity: &str| {
        json!({"seq": seq, "time": "2026-11-27T10:00:00Z", "severity": severity, "kind": "check_changed",
               "rule": "ssh.permit-root-login", "title": title, "previous": "pass", "status": "fail",
               "domains": [13], "criteria": ["C"], "evidence": ["PermitRootLogin yes"],
               "baseline": {"id": "issp", "version": 7}})
    };
    let web = |host: &str| {
        let mut events: Vec<Value> = (1..=20).map(fim_event).collect();
        events.push(changed(21, "high"));
        events.push(changed(22, "info")); // below min_severity
        serde_json::to_vec(&json!({"schema": 1, "host": host, "events": events})).unwrap()
    };
    post(&f, c.addr, "web-1", &web("web-1"));
    post(&f, c.addr, "web-2", &web("web-2"));
    post(&f, c.addr, "db-1", &batch("db-1", 1..=5)); // not web-*
    let want = 2 * 21;
    let distinct = |msgs: &[Syslog]| {
        let mut seen = std::collections::BTreeSet::new();
        msgs.iter()
            .filter(|m| seen.insert((m.host.clone(), m.params["seq"].clone())))
            .count()
    };
    let start = std::time::Instant::now();
    while distinct(
        &rs.messages()
            .iter()
            .map(|l| parse_5424(l))
            .collect::<Vec<_>>(),
    ) < want
        && start.elapsed() < Duration::from_secs(30)
    {
        std::thread::sleep(Duration::from_millis(100));
    }
    // Give a wrongly forwarded event time to show up.
    std::thread::sleep(Duration::from_millis(500));
    let all: Vec<Syslog> = rs.messages().iter().map(|l| parse_5424(l)).collect();
    // A batch is sent again only when its delivery failed (at least once):
    // then, and only then, messages may repeat.
    let retried = c.log().contains("not delivered");
    if !retried {
        assert_eq!(all.len(), want, "{}", c.log());
    }
    let mut seen = std::collections::BTreeSet::new();
    let msgs: Vec<&Syslog> = all
        .iter()
        .filter(|m| seen.insert((m.host.clone(), m.params["seq"].clone())))
        .collect();
    assert_eq!(msgs.len(), want, "{}", c.log());
    let mut last: HashMap<String, u64> = HashMap::new();
    for m in msgs {
        assert_eq!(m.app, "plumbline");
        assert_eq!(m.sd_id, "plumb@32473");
        assert!(m.host.starts_with("web-"), "{m:?}");
        assert_eq!(m.params["host"], m.host);
        let seq: u64 = m.params["seq"].parse().unwrap();
        let prev = last.insert(m.host.clone(), seq).unwrap_or(0);
        assert!(seq > prev, "{}: {seq} after {prev}", m.host);
        match seq {
            21 => {
                // facility 13 (log audit) * 8 + err (high)
                assert_eq!(m.pri, 13 * 8 + 3);
                assert_eq!(m.msgid, "check_changed");
                assert_eq!(m.params["title"], title);
                assert_eq!(m.params["rule"], "ssh.permit-root-login");
                assert_eq!(m.params["domains"], "[13]");
                assert_eq!(m.params["baseline"], r#"{"id":"issp","version":7}"#);
                assert!(
                    m.msg.contains("rule ssh.permit-root-login is fail"),
                    "{m:?}"
                );
            }
            s => {
                assert_eq!(m.msgid, "fim_change");
                assert_eq!(m.params["path"], format!("/etc/file{s}"));
                assert_eq!(m.params["change"], "modified");
                assert_eq!(m.params["severity"], "high");
                assert_eq!(m.msg, format!("{}: /etc/file{s} modified", m.host));
            }
        }
    }
    assert_eq!(last.get("web-1"), Some(&21));
    assert_eq!(last.get("web-2"), Some(&21));
}

#[test]
#[ignore = "needs rsyslogd (apt install rsyslog rsyslog-gnutls rsyslog-openssl)"]
fn syslog_sink_to_real_rsyslog_gnutls_with_client_certificate() {
    // gtls with authMode "anon" offers no TLS 1.3 cipher suite and refuses
    // a rustls client ("No supported cipher suites"): x509/name, as a SIEM
    // accepting only the collector should be set up anyway.
    syslog_to_real_rsyslog("gtls", Some("collector"));
}

#[test]
#[ignore = "needs rsyslogd (apt install rsyslog rsyslog-gnutls rsyslog-openssl)"]
fn syslog_sink_to_real_rsyslog_openssl() {
    syslog_to_real_rsyslog("ossl", None);
}

#[test]
fn validate_lists_every_forward_problem_at_its_line() {
    let f = Fleet::new();
    let sink = "\n[[forward]]\nname = \"a b\"\ntype = \"syslog\"\naddress = \"nope\"\nkinds = [\"fim_change\", \"bogus\"]\n\
                \n[[forward]]\nname = \"dup\"\ntype = \"http\"\nurl = \"https://siem.example/x\"\n\
                \n[[forward]]\nname = \"dup\"\ntype = \"http\"\nurl = \"http://127.0.0.1:9/x\"\ntoken_file = \"missing.token\"\n";
    let cfg = f.config("127.0.0.1:0", "", sink);
    let o = collector()
        .args(["serve", "--validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    for want in [
        "forward[0].name: must be 1 to 64 characters",
        "forward[0].address: must be HOST:PORT",
        "forward[0].type: a syslog sink needs ca",
        "forward[0].kinds[1]: unknown event kind",
        "forward[1].url: an https url needs ca",
        "forward[2].name: another sink has this name",
        "forward[2].token_file: ",
    ] {
        assert!(err.contains(want), "missing {want:?} in:\n{err}");
    }
}

fn hmac_hex(key: &[u8], body: &[u8]) -> String {
    let tag = ring::hmac::sign(&ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key), body);
    tag.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn alerts_fire_once_per_window_signed_with_hmac() {
    let f = Fleet::new();
    secret(&f, "alert.key", "hook-secret\n");
    // The first call fails (503): alerts are retried.
    let hook = Receiver::start(
        f.pki.server_config(),
        Behaviour {
            fail_first: 1,
            hang_from: None,
            answer: "ok".into(),
        },
    );
    let url = format!("https://localhost:{}/hook", hook.addr.port());
    let common = format!("webhook = \"{url}\"\nca = \"pki/ca.pem\"\nsecret_file = \"alert.key\"\n");
    let rules = format!(
        "\n[[alert]]\nname = \"tamper\"\non = \"fim_tamper\"\n{common}\
         \n[[alert]]\nname = \"failing\"\non = \"rule_fail\"\nmin_severity = \"high\"\n{common}\
         template = '{{\"text\": \"{{{{summary}}}}\", \"host\": \"{{{{host}}}}\", \"rule\": \"{{{{rule}}}}\"}}'\n\
         \n[[alert]]\nname = \"refused\"\non = \"baseline_refused\"\n{common}\
         \n[[alert]]\nname = \"stale\"\non = \"host_stale\"\nstale_after_secs = 2\nhosts = \"web-*\"\n{common}"
    );
    let cfg = f.config("127.0.0.1:0", "", &rules);
    let c = Collector::start(&cfg);
    let t = "2026-11-27T10:00:00Z";
    let changed = |seq: u64, rule: &str, severity: &str| {
        json!({"seq": seq, "time": t, "severity": severity, "kind": "check_changed",
               "rule": rule, "title": format!("rule \"{rule}\" [x]"), "previous": "pass", "status": "fail",
               "domains": [13], "criteria": ["C"], "evidence": [], "baseline": {"id": "issp", "version": 7}})
    };
    let tamper = |seq: u64| json!({"seq": seq, "time": t, "severity": "critical", "kind": "fim_tamper", "detail": ["seal mismatch"]});
    let web = json!({"schema": 1, "host": "web-1", "events": [
        changed(1, "ssh.root", "high"),
        changed(2, "ssh.root", "high"),    // same rule again: within the window
        changed(3, "sysctl.fwd", "critical"),
        changed(4, "pkg.telnet", "low"),   // below min_severity
        {"seq": 5, "time": t, "severity": "high", "kind": "agent", "what": "baseline_refused",
         "message": "signature by an unknown key", "agent_version": "0.1.0"},
    ]});
    let db = json!({"schema": 1, "host": "db-1", "events": [tamper(1), tamper(2)]});
    post(&f, c.addr, "web-1", &serde_json::to_vec(&web).unwrap());
    post(&f, c.addr, "db-1", &serde_json::to_vec(&db).unwrap());
    // tamper db-1, failing ssh.root and sysctl.fwd, refused web-1, stale web-1.
    let sent = |r: &[Request]| r.iter().filter(|r| r.acknowledged()).count();
    hook.wait_for(Duration::from_secs(30), "5 alerts", |r| sent(r) >= 5);
    // A few more stale checks and windows' worth of waiting: nothing more.
    std::thread::sleep(Duration::from_secs(3));
    let reqs = hook.requests();
    assert_eq!(sent(&reqs), 5, "{reqs:#?}\n{}", c.log());
    assert_eq!(reqs.iter().filter(|r| r.status == Some(503)).count(), 1);
    let mut seen = Vec::new();
    for r in &reqs {
        let sig = r.header("x-plumb-signature").unwrap();
        assert_eq!(sig, format!("sha256={}", hmac_hex(b"hook-secret", &r.body)));
        assert_eq!(r.header("content-type"), Some("application/json"));
        if !r.acknowledged() {
            continue;
        }
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        if let Some(text) = v.get("text") {
            // The template, its values JSON-escaped.
            assert_eq!(v["host"], "web-1");
            let rule = v["rule"].as_str().unwrap();
            assert!(
                text.as_str()
                    .unwrap()
                    .contains(&format!("rule \"{rule}\" [x]")),
                "{v}"
            );
            seen.push(format!("failing {rule}"));
        } else {
            assert!(v["time"].as_str().unwrap().ends_with('Z'), "{v}");
            seen.push(format!(
                "{} {} {}",
                v["alert"].as_str().unwrap(),
                v["on"].as_str().unwrap(),
                v["host"].as_str().unwrap()
            ));
            if v["alert"] == "tamper" {
                assert_eq!(v["event"]["seq"], 1, "{v}");
                assert_eq!(v["severity"], "critical");
                assert!(v["summary"].as_str().unwrap().contains("seal mismatch"));
            }
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            "failing ssh.root",
            "failing sysctl.fwd",
            "refused baseline_refused web-1",
            "stale host_stale web-1",
            "tamper fim_tamper db-1",
        ]
    );
    let log = c.log();
    assert!(
        log.contains("alert tamper sent (2 attempts)") || log.contains("(2 attempts)"),
        "{log}"
    );
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn one_forwarder_per_sink_across_collectors_and_takeover_when_it_dies() {
    use crate::common::postgres::Postgres;
    let pg = Postgres::start();
    pg.database("plumb");
    let f = Fleet::new();
    let recv = Receiver::start(
        f.pki.server_config(),
        Behaviour {
            answer: "{}".into(),
            ..Behaviour::default()
        },
    );
    let storage = format!(
        "{}\n[[forward]]\nname = \"siem\"\ntype = \"http\"\nurl = \"https://localhost:{}/in\"\n\
         ca = \"pki/ca.pem\"\nbatch_events = 25\npoll_interval_ms = 100\nmax_backoff_secs = 1\n",
        pg.storage_toml("plumb"),
        recv.addr.port()
    );
    let a_cfg = f.config_named("a.toml", "127.0.0.1:0", "", &storage);
    let b_cfg = f.config_named("b.toml", "127.0.0.1:0", "", &storage);
    let mut a = Collector::start(&a_cfg);
    // b starts once a holds the lock, so which one forwards is known.
    let start = std::time::Instant::now();
    while !a.log().contains("forward:siem: this collector runs it") {
        assert!(start.elapsed() < Duration::from_secs(20), "{}", a.log());
        std::thread::sleep(Duration::from_millis(50));
    }
    let b = Collector::start(&b_cfg);
    // Both ingest; only a forwards.
    post(&f, a.addr, "web-1", &batch("web-1", 1..=100));
    post(&f, b.addr, "web-2", &batch("web-2", 1..=100));
    recv.wait_for(Duration::from_secs(30), "200 events", |r| {
        acknowledged_events(r).len() >= 200
    });
    assert!(
        !b.log().contains("forward:siem: this collector runs it"),
        "{}",
        b.log()
    );
    assert!(
        b.log().contains("forward:siem: another collector runs it"),
        "{}",
        b.log()
    );
    // a dies: b takes over and forwards what arrives next.
    a.signal("KILL");
    a.wait(Duration::from_secs(5)).expect("killed");
    post(&f, b.addr, "web-1", &batch("web-1", 101..=150));
    recv.wait_for(Duration::from_secs(30), "250 events", |r| {
        acknowledged_events(r).len() >= 250
    });
    assert!(
        b.log().contains("forward:siem: this collector runs it"),
        "{}",
        b.log()
    );
    std::thread::sleep(Duration::from_millis(500));
    let acked = acknowledged_events(&recv.requests());
    let mut sorted = acked.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), acked.len(), "an event forwarded twice");
    assert_eq!(acked.len(), 250);
}
