//! Prometheus metrics: the collector's `/metrics` on its mTLS listener
//! (scraper certificates only) and on its plain loopback listener, values
//! checked after known events; `promtool check metrics` on the output. The
//! agent's metrics file is tested with the agent (`agent_daemon`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use serde_json::json;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The value of the sample `series` (name and labels exactly as written,
/// e.g. `plumb_collector_batches_total{status="200"}`), if present.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// [`sample`], which must be there.
pub fn value(text: &str, series: &str) -> f64 {
    sample(text, series).unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// `promtool check metrics` (Prometheus's own linter) on `text`: it must
/// find nothing to say.
pub fn promtool_check(text: &str) {
    let bin = std::env::var("PLUMB_PROMTOOL").unwrap_or_else(|_| "promtool".into());
    let mut child = std::process::Command::new(&bin)
        .args(["check", "metrics"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("needs promtool (Debian's prometheus package, or PLUMB_PROMTOOL): {bin}: {e}")
        });
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && said.trim().is_empty(),
        "promtool check metrics: {said}\non:\n{text}"
    );
}

/// A collector with `prometheus` as scraper and the plain listener on a
/// free loopback port (fleet figures read at every scrape).
fn start(f: &Fleet) -> (Collector, SocketAddr) {
    let cfg = f.config(
        "127.0.0.1:0",
        "",
        "\n[metrics]\nscrapers = [\"prometheus\"]\nlisten = \"127.0.0.1:0\"\nfleet_cache_secs = 0\n",
    );
    let c = Collector::start(&cfg);
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = c.log();
        if let Some(a) = log
            .split("metrics served on http://")
            .nth(1)
            .and_then(|r| r.split("/metrics").next())
            .and_then(|a| a.parse::<SocketAddr>().ok())
        {
            return (c, a);
        }
        assert!(Instant::now() < end, "no metrics listener in:\n{log}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One plain HTTP/1.1 request (the listener speaks no TLS).
fn plain_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (status, body.to_string())
}

fn scrape(f: &Fleet, addr: SocketAddr) -> HttpResponse {
    rt().block_on(one_request(
        f.client_config(Some("prometheus")),
        addr,
        "GET",
        "/metrics",
        b"",
    ))
    .unwrap()
}

fn post(f: &Fleet, addr: SocketAddr, cert: &str, body: serde_json::Value) -> u16 {
    let body = serde_json::to_vec(&body).unwrap();
    rt().block_on(one_request(
        f.client_config(Some(cert)),
        addr,
        "POST",
        "/v1/events",
        &body,
    ))
    .unwrap()
    .status
}

fn snapshot(seq: u64, rules: &[(&str, &str)]) -> serde_json::Value {
    let rules: Vec<_> = rules
        .iter()
        .map(|(id, st)| json!({"id": id, "status": st, "severity": "high", "domains": [13], "title": id}))
        .collect();
    event(
        seq,
        json!({"kind": "snapshot", "agent_version": "0.1.0",
               "baseline": {"id": "issp-linux-server", "version": 7},
               "facts": {"hostname": "x", "os": "Debian 12", "kernel": "6.1", "uptime_s": 1, "cpus": 2, "memory_bytes": 1},
               "fim_digest": "f00d", "summary": {"pass": 0, "fail": 0, "error": 0, "skipped": 0, "score": 0.0},
               "rules": rules}),
    )
}

/// Known traffic: web-12 (a snapshot with one failing rule of two, two
/// file changes), db-01 (a passing snapshot, a tamper), one batch refused
/// (403: another host's name), one connection without a certificate.
fn known_traffic(f: &Fleet, addr: SocketAddr) {
    let web = json!({"schema": 1, "host": "web-12", "events": [
        snapshot(1, &[("ssh.permit-root-login", "fail"), ("sysctl.ip-forward", "pass")]),
        fim_event(2), fim_event(3)]});
    assert_eq!(post(f, addr, "web-12", web), 200);
    let db = json!({"schema": 1, "host": "db-01", "events": [
        snapshot(1, &[("ssh.permit-root-login", "pass")]),
        event(2, json!({"kind": "fim_tamper", "detail": ["seal mismatch"]}))]});
    assert_eq!(post(f, addr, "db-01", db), 200);
    let other = json!({"schema": 1, "host": "db-01", "events": [fim_event(9)]});
    assert_eq!(post(f, addr, "web-12", other), 403);
    let refused = rt().block_on(one_request(
        f.client_config(None),
        addr,
        "GET",
        "/v1/health",
        b"",
    ));
    assert!(refused.is_err(), "a peer without a certificate is refused");
}

#[test]
fn collector_metrics_count_what_was_received_and_only_scrapers_read_them() {
    let f = Fleet::new();
    let (c, plain) = start(&f);
    known_traffic(&f, c.addr);

    // An agent's certificate may not read the metrics; a scraper's may do
    // nothing else.
    let r = rt()
        .block_on(one_request(
            f.client_config(Some("web-12")),
            c.addr,
            "GET",
            "/metrics",
            b"",
        ))
        .unwrap();
    assert_eq!(r.status, 403, "{}", String::from_utf8_lossy(&r.body));
    let body = json!({"schema": 1, "host": "prometheus", "events": [fim_event(1)]});
    assert_eq!(post(&f, c.addr, "prometheus", body), 403);

    let r = scrape(&f, c.addr);
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let m = String::from_utf8(r.body).unwrap();
    let v = |s: &str| value(&m, s);
    assert_eq!(
        v("plumb_collector_events_ingested_total{kind=\"fim_change\"}"),
        2.0
    );
    assert_eq!(
        v("plumb_collector_events_ingested_total{kind=\"snapshot\"}"),
        2.0
    );
    assert_eq!(
        v("plumb_collector_events_ingested_total{kind=\"fim_tamper\"}"),
        1.0
    );
    assert_eq!(
        v("plumb_collector_events_ingested_total{kind=\"check_changed\"}"),
        0.0
    );
    assert_eq!(v("plumb_collector_batches_total{status=\"200\"}"), 2.0);
    assert_eq!(v("plumb_collector_batches_total{status=\"403\"}"), 1.0);
    assert_eq!(v("plumb_collector_batch_duration_seconds_count"), 3.0);
    assert!(v("plumb_collector_storage_commit_duration_seconds_count") >= 1.0);
    assert_eq!(v("plumb_collector_writer_queue_batches"), 0.0);
    // This scrape's own connection.
    assert!(v("plumb_collector_connections{state=\"authenticated\"}") >= 1.0);
    assert_eq!(
        v("plumb_collector_connections_refused_total{reason=\"no_certificate\"}"),
        1.0
    );
    assert_eq!(
        v("plumb_collector_connections_refused_total{reason=\"revoked\"}"),
        0.0
    );
    // The fleet, from the store.
    assert_eq!(v("plumb_collector_hosts"), 2.0);
    assert_eq!(v("plumb_collector_hosts_stale"), 0.0);
    assert_eq!(v("plumb_collector_hosts_failing"), 1.0);
    assert_eq!(v("plumb_collector_rules{status=\"fail\"}"), 1.0);
    assert_eq!(v("plumb_collector_rules{status=\"pass\"}"), 2.0);
    assert!((v("plumb_collector_fleet_score_ratio") - 2.0 / 3.0).abs() < 1e-9);
    assert_eq!(
        v("plumb_collector_hosts_by_baseline{baseline=\"issp-linux-server\",version=\"7\"}"),
        2.0
    );

    // The plain listener serves the same figures, and nothing else.
    let (status, text) = plain_get(plain, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(
        value(
            &text,
            "plumb_collector_events_ingested_total{kind=\"fim_change\"}"
        ),
        2.0
    );
    assert_eq!(plain_get(plain, "/v1/health").0, 404);
}

#[test]
fn a_metrics_listener_off_loopback_is_refused_unless_allowed() {
    let f = Fleet::new();
    let cfg = f.config(
        "127.0.0.1:0",
        "",
        "\n[metrics]\nlisten = \"0.0.0.0:9464\"\n",
    );
    let out = collector()
        .args(["serve", "--validate", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("metrics.listen: 0.0.0.0:9464 is not a loopback address"),
        "{err}"
    );
}

#[test]
#[ignore = "needs promtool (Debian's prometheus package)"]
fn promtool_accepts_the_collectors_metrics() {
    let f = Fleet::new();
    let (c, _) = start(&f);
    known_traffic(&f, c.addr);
    let r = scrape(&f, c.addr);
    promtool_check(&String::from_utf8(r.body).unwrap());
}
