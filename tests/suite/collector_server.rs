//! End-to-end tests of `plumb-collector serve`: the real binary on loopback,
//! certificates from the built-in PKI, a small mTLS client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::Port;
use crate::common::collector::*;
use plumb_collector::pki::{self, Role};
use std::time::Duration;

#[test]
fn batches_are_acked_after_storage_and_resends_deduplicated() {
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "", "");
    let server = Collector::start(&cfg);
    let rt = rt();
    rt.block_on(async {
        let mut c = connect(f.client_config(Some("web-12")), server.addr)
            .await
            .unwrap();
        let r = c
            .request("POST", "/v1/events", &batch("web-12", 1..=3))
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        assert_eq!(r.json()["acked_seq"], 3);
        // The same batch again, on the same kept-alive connection: harmless.
        let r = c
            .request("POST", "/v1/events", &batch("web-12", 1..=3))
            .await
            .unwrap();
        assert_eq!(r.json()["acked_seq"], 3);
        // Overlapping batch: only the new events are added.
        let r = c
            .request("POST", "/v1/events", &batch("web-12", 2..=5))
            .await
            .unwrap();
        assert_eq!(r.json()["acked_seq"], 5);
        // Empty batch tells where the agent stands.
        let r = c
            .request("POST", "/v1/events", &batch("web-12", []))
            .await
            .unwrap();
        assert_eq!(r.json()["acked_seq"], 5);
        let r = c.request("GET", "/v1/health", b"").await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ok");
        let r = c.request("GET", "/v1/baseline", b"").await.unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"], "no baseline published");
        let r = c.request("GET", "/v1/events", b"").await.unwrap();
        assert_eq!(r.status, 405);
        let r = c.request("GET", "/nope", b"").await.unwrap();
        assert_eq!(r.status, 404);
    });
    assert_eq!(stored_seqs(&f.db(), "web-12"), vec![1, 2, 3, 4, 5]);
}

/// Each refused peer fails in TLS, before any HTTP; the server keeps serving.
#[test]
fn bad_client_certificates_are_refused_at_the_handshake() {
    let f = Fleet::new();
    // Expired: valid from 60 to 30 days ago.
    let now = time::OffsetDateTime::now_utc();
    pki::issue_between(
        &f.pki,
        Role::Agent,
        "expired",
        now - time::Duration::days(60),
        now - time::Duration::days(30),
    )
    .unwrap();
    // Revoked, before the server starts (it loads the CRL at start).
    let (revoked_cert, _) = f.agent("revoked");
    pki::revoke(&f.pki, &revoked_cert).unwrap();
    // Another CA's agent.
    let other = f.path("other");
    pki::init(&other, "Other CA", 30).unwrap();
    let o = pki::issue(&other, Role::Agent, "web-12", 30).unwrap();
    let other_cfg =
        plumb_collector::tls::client_config(&f.pki.join("ca.pem"), Some((&o.cert, &o.key)))
            .unwrap();

    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    let rt = rt();
    rt.block_on(async {
        let cases = [
            (
                "no certificate",
                f.client_config(None),
                "CertificateRequired",
            ),
            ("another CA", other_cfg, "UnknownCA"),
            (
                "expired",
                f.client_config(Some("expired")),
                "CertificateExpired",
            ),
            (
                "revoked",
                f.client_config(Some("revoked")),
                "CertificateRevoked",
            ),
        ];
        for (what, cfg, alert) in cases {
            let host = if what == "another CA" { "web-12" } else { what };
            let r = one_request(cfg, server.addr, "POST", "/v1/events", &batch(host, [1])).await;
            match r {
                Ok(resp) => panic!("{what}: got an HTTP answer {}", resp.status),
                Err(e) => assert!(
                    e.to_string().contains(alert),
                    "{what}: expected alert {alert}, got {e}"
                ),
            }
        }
        let ok = one_request(
            f.client_config(Some("good")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("good", [1]),
        )
        .await
        .unwrap();
        assert_eq!(ok.status, 200);
    });
    assert!(stored_seqs(&f.db(), "revoked").is_empty());
    assert!(stored_seqs(&f.db(), "web-12").is_empty());
}

#[test]
fn an_agent_cannot_write_as_another_host() {
    let f = Fleet::new();
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let r = one_request(
            f.client_config(Some("a")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("b", [1]),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 403);
        let reason = r.json()["error"].as_str().unwrap().to_string();
        assert!(
            reason.contains("\"b\"") && reason.contains("\"a\""),
            "{reason}"
        );
    });
    assert!(stored_seqs(&f.db(), "b").is_empty());
    assert!(stored_seqs(&f.db(), "a").is_empty());
}

#[test]
fn garbage_truncated_and_oversized_bodies_get_4xx_and_the_server_keeps_serving() {
    let f = Fleet::new();
    let server = Collector::start(&f.config(
        "127.0.0.1:0",
        "max_body_bytes = 4096\nrequest_timeout_secs = 2",
        "",
    ));
    rt().block_on(async {
        let agent = f.client_config(Some("a"));
        let mut c = connect(agent.clone(), server.addr).await.unwrap();
        let cases: Vec<(Vec<u8>, u16, &str)> = vec![
            (b"\x00\xffnot json".to_vec(), 400, "invalid event batch"),
            (br#"{"schema":1,"host":"a"}"#.to_vec(), 400, "missing field `events`"),
            (br#"{"schema":1,"host":"a","events":[],"extra":1}"#.to_vec(), 400, "unknown field `extra`"),
            (br#"{"schema":9,"host":"a","events":[]}"#.to_vec(), 400, "schema 9"),
            (batch("a", [2, 1]), 400, "strictly increasing"),
            (batch("a", [0]), 400, "seq 0"),
            (
                br#"{"schema":1,"host":"a","events":[{"seq":1,"time":"yesterday","severity":"low","kind":"fim_tamper","detail":[]}]}"#.to_vec(),
                400,
                "RFC 3339",
            ),
            (
                br#"{"schema":1,"host":"a","events":[{"seq":1,"time":"2026-11-27T10:00:00Z","severity":"low","kind":"bogus"}]}"#.to_vec(),
                400,
                "bogus",
            ),
            (batch("a", 1..=100), 413, "larger than 4096"),
        ];
        for (body, status, reason) in cases {
            let r = c.request("POST", "/v1/events", &body).await.unwrap();
            assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
            let got = r.json()["error"].as_str().unwrap_or_default().to_string();
            assert!(got.contains(reason), "expected {reason:?} in {got:?}");
        }
        // The refused bodies were read to their end: the connection serves on.
        let r = c.request("POST", "/v1/events", &batch("a", [1])).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        // Oversized without Content-Length (chunked): caught while reading.
        let mut c = connect(agent.clone(), server.addr).await.unwrap();
        let chunk = vec![b' '; 3000];
        let mut req = b"POST /v1/events HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..3 {
            req.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
            req.extend_from_slice(&chunk);
            req.extend_from_slice(b"\r\n");
        }
        req.extend_from_slice(b"0\r\n\r\n");
        c.write_raw(&req).await.unwrap();
        assert_eq!(c.read_response().await.unwrap().status, 413);
        let r = c.request("POST", "/v1/events", &batch("a", [2])).await.unwrap();
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));

        // Truncated: announces 1000 bytes, sends 10, and stalls.
        let mut c = connect(agent.clone(), server.addr).await.unwrap();
        c.write_raw(b"POST /v1/events HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n{\"schema\":")
            .await
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(10), c.read_response()).await.unwrap();
        if let Ok(r) = r {
            assert!((400..500).contains(&r.status), "{}", r.status);
        }
        // Not HTTP at all.
        let mut c = connect(agent.clone(), server.addr).await.unwrap();
        c.write_raw(b"\x16\x03garbage garbage\r\n\r\n").await.unwrap();
        if let Ok(r) = c.read_response().await {
            assert_eq!(r.status, 400);
        }
        // Still serving.
        let r = one_request(agent, server.addr, "POST", "/v1/events", &batch("a", [3])).await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["acked_seq"], 3);
    });
}

#[test]
fn overload_is_answered_429_with_retry_after() {
    let f = Fleet::new();
    let server = Collector::start(&f.config(
        "127.0.0.1:0",
        "max_body_bytes = 8388608",
        "queue_batches = 1\nqueue_wait_ms = 1\nretry_after_secs = 7\nmax_group_events = 1",
    ));
    let rt = rt();
    let statuses = rt.block_on(async {
        let mut tasks = Vec::new();
        for i in 0..24 {
            let cfg = f.client_config(Some(&format!("h{i}")));
            let addr = server.addr;
            tasks.push(tokio::spawn(async move {
                let host = format!("h{i}");
                let mut c = connect(cfg.clone(), addr).await.unwrap();
                let mut out = Vec::new();
                for round in 0..4u64 {
                    let b = batch(&host, round * 3000 + 1..=round * 3000 + 3000);
                    let r = c.request("POST", "/v1/events", &b).await.unwrap();
                    out.push((r.status, r.header("retry-after").map(str::to_string)));
                    if r.status == 429 {
                        // Refused before its body was read: the server may close.
                        c = connect(cfg.clone(), addr).await.unwrap();
                    }
                }
                out
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await.unwrap());
        }
        all
    });
    let throttled: Vec<_> = statuses.iter().filter(|(s, _)| *s == 429).collect();
    assert!(!throttled.is_empty(), "no 429 among {statuses:?}");
    assert!(throttled.iter().all(|(_, ra)| ra.as_deref() == Some("7")));
    assert!(
        statuses.iter().all(|(s, _)| *s == 200 || *s == 429),
        "{statuses:?}"
    );
    // And it recovers.
    rt.block_on(async {
        let r = one_request(
            f.client_config(Some("after")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("after", [1]),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    });
}

/// An agent with an outbox keeps sending while the collector is killed
/// (SIGKILL) and restarted: every acknowledged event is stored exactly once,
/// and in the end every event is.
#[test]
fn kill_9_and_restart_lose_no_acknowledged_event() {
    let f = Fleet::new();
    // Held for the whole test: the restarted collector binds the same address.
    let port = Port::reserve();
    let first = Collector::start(&f.config(&port.addr().to_string(), "", ""));
    let addr = first.addr;
    let cfg_path = f.config(&addr.to_string(), "", "");
    let total: u64 = 3000;
    let rt = rt();
    let agent = f.client_config(Some("web-1"));
    let mut server = Some(first);
    let mut acked = 0u64;
    let mut max_acked_before_kill = 0;
    let mut killed = false;
    let mut rounds = 0;
    while acked < total {
        rounds += 1;
        assert!(rounds < 2000, "no progress");
        if !killed && acked >= 600 {
            // SIGKILL while a request is in flight on another connection.
            let inflight = {
                let agent = agent.clone();
                let body = batch("web-1", acked + 1..=acked + 200);
                std::thread::spawn(move || {
                    crate::common::collector::rt().block_on(async move {
                        let _ = one_request(agent, addr, "POST", "/v1/events", &body).await;
                    })
                })
            };
            std::thread::sleep(Duration::from_millis(5));
            let mut s = server.take().unwrap();
            s.child.kill().unwrap();
            s.child.wait().unwrap();
            let _ = inflight.join();
            max_acked_before_kill = acked;
            killed = true;
            // Stored now must include everything acked.
            let stored = stored_seqs(&f.db(), "web-1");
            assert!(stored.len() as u64 >= acked);
            server = Some(Collector::start(&cfg_path));
            continue;
        }
        let from = acked + 1;
        let to = (acked + 100).min(total);
        let r = rt.block_on(one_request(
            agent.clone(),
            addr,
            "POST",
            "/v1/events",
            &batch("web-1", from..=to),
        ));
        match r {
            Ok(r) if r.status == 200 => {
                let a = r.json()["acked_seq"].as_u64().unwrap();
                assert!(a >= acked, "ack went back from {acked} to {a}");
                acked = a;
            }
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    assert!(killed && max_acked_before_kill >= 600);
    drop(server);
    let stored = stored_seqs(&f.db(), "web-1");
    assert_eq!(
        stored,
        (1..=total).collect::<Vec<_>>(),
        "every event exactly once"
    );
}

#[test]
fn sigterm_stops_gracefully() {
    let f = Fleet::new();
    let mut server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let r = one_request(
            f.client_config(Some("a")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("a", 1..=10),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    });
    server.signal("TERM");
    let status = server.wait(Duration::from_secs(15)).expect("did not stop");
    assert!(status.success(), "{status:?}");
    assert!(server.log().contains("stopped"), "{}", server.log());
    assert_eq!(stored_seqs(&f.db(), "a").len(), 10);
}

#[test]
fn sighup_reloads_the_crl() {
    let f = Fleet::new();
    let (cert, _) = f.agent("soon-revoked");
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    let rt = rt();
    let post = || {
        rt.block_on(one_request(
            f.client_config(Some("soon-revoked")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("soon-revoked", [1]),
        ))
    };
    assert_eq!(post().unwrap().status, 200);
    pki::revoke(&f.pki, &cert).unwrap();
    server.signal("HUP");
    let start = std::time::Instant::now();
    loop {
        match post() {
            Err(e) if e.to_string().contains("CertificateRevoked") => break,
            _ if start.elapsed() > Duration::from_secs(10) => {
                panic!("CRL not reloaded: {}", server.log())
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}
