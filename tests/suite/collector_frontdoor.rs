//! The collector's front door under attack: each test performs an attack
//! against the real `plumb-collector serve` on loopback (revocation on open
//! connections, slow heads, slot exhaustion, seq and host-name edges, stale
//! CRLs, certificates without clientAuth) and checks that it fails.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use plumb_collector::pki::{self, Role};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// Waits until the collector's log contains `what` (panics after 10 s).
fn wait_for_log(server: &Collector, what: &str) {
    let start = Instant::now();
    while !server.log().contains(what) {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "no {what:?} in the log:\n{}",
            server.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn run(cmd: &mut std::process::Command) -> (i32, String, String) {
    let o = cmd.output().unwrap();
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// Point 1: an agent holding a keep-alive connection opened before
/// `pki revoke` + SIGHUP cannot post on it afterwards.
#[test]
fn a_revoked_agent_loses_its_open_connection_at_the_reload() {
    let f = Fleet::new();
    let (cert, _) = f.agent("mallory");
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let mut c = connect(f.client_config(Some("mallory")), server.addr)
            .await
            .unwrap();
        let r = c
            .request("POST", "/v1/events", &batch("mallory", [1]))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        pki::revoke(&f.pki, &cert).unwrap();
        server.signal("HUP");
        wait_for_log(&server, "TLS certificates and CRLs reloaded");
        let r = c
            .request("POST", "/v1/events", &batch("mallory", [2]))
            .await;
        assert!(r.is_err(), "the revoked agent was answered: {r:?}");
    });
    assert_eq!(stored_seqs(&f.db(), "mallory"), vec![1]);
    // Logged as the connection closes; the log is read through a pipe.
    wait_for_log(&server, "now revoked");
}

/// Point 1: no identity lives forever on one handshake.
#[test]
fn connections_end_at_max_connection_lifetime() {
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "max_connection_lifetime_secs = 2", "");
    let server = Collector::start(&cfg);
    rt().block_on(async {
        let mut c = connect(f.client_config(Some("web-1")), server.addr)
            .await
            .unwrap();
        let r = c
            .request("POST", "/v1/events", &batch("web-1", [1]))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = c.request("POST", "/v1/events", &batch("web-1", [2])).await;
        assert!(r.is_err(), "the connection outlived its lifetime: {r:?}");
        // A new connection (a new handshake, a new certificate check) is fine.
        let r = one_request(
            f.client_config(Some("web-1")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("web-1", [2]),
        )
        .await
        .unwrap();
        assert_eq!(r.json()["acked_seq"], 2);
    });
}

/// Point 2: a head trickled one byte at a time is cut at
/// `request_timeout_secs`, not held for `idle_timeout_secs`; an idle
/// keep-alive connection still lasts the idle timeout.
#[test]
fn a_slow_head_is_cut_at_the_request_timeout() {
    let f = Fleet::new();
    let cfg = f.config(
        "127.0.0.1:0",
        "request_timeout_secs = 2\nidle_timeout_secs = 600",
        "",
    );
    let server = Collector::start(&cfg);
    rt().block_on(async {
        let mut c = connect(f.client_config(Some("web-1")), server.addr)
            .await
            .unwrap();
        let r = c.request("GET", "/v1/health", b"").await.unwrap();
        assert_eq!(r.status, 200);
        // Idle longer than the request timeout: still open.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let r = c.request("GET", "/v1/health", b"").await.unwrap();
        assert_eq!(r.status, 200);

        let start = Instant::now();
        c.write_raw(b"POST /v1/events HTTP/1.1\r\n").await.unwrap();
        let cut = loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            if c.write_raw(b"x").await.is_err() {
                break start.elapsed();
            }
            if start.elapsed() > Duration::from_secs(20) {
                panic!("a head trickled for 20 s was still being read");
            }
        };
        assert!(cut < Duration::from_secs(8), "cut after {cut:?}");
    });
}

/// A TCP connection to `to` from `from` (a loopback address other than
/// 127.0.0.1: a handshake cap counts per source address).
async fn tcp_from(from: &str, to: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let s = tokio::net::TcpSocket::new_v4()?;
    s.bind(format!("{from}:0").parse().unwrap())?;
    s.connect(to).await
}

/// Keeps `n` silent TCP connections open (no TLS ClientHello) from
/// `from`, reopening each one the collector closes, until `stop`.
fn silent_peers(n: usize, from: &'static str, to: SocketAddr, stop: Arc<AtomicBool>) {
    for _ in 0..n {
        let stop = stop.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tcp_from(from, to).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let mut buf = [0u8; 64];
                // Until the collector closes it.
                let _ = tokio::time::timeout(Duration::from_secs(30), s.read(&mut buf)).await;
            }
        });
    }
}

/// Keeps `n` authenticated connections of agent `who` trickling a request
/// head (a byte every 300 ms), reopening each one that is cut, until `stop`.
fn head_tricklers(n: usize, cfg: Arc<rustls::ClientConfig>, to: SocketAddr, stop: Arc<AtomicBool>) {
    for _ in 0..n {
        let (cfg, stop) = (cfg.clone(), stop.clone());
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut c) = connect(cfg.clone(), to).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                if c.write_raw(b"POST /v1/events HTTP/1.1\r\n").await.is_err() {
                    continue;
                }
                while !stop.load(Ordering::Relaxed) && c.write_raw(b"x").await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                // Cut: again soon (not in a tight loop: the test machine's
                // two cores also run the collector and the real agent).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        });
    }
}

/// A legitimate agent posts `rounds` batches, each on a new connection,
/// each answered within 3 s.
async fn agent_is_served(f: &Fleet, addr: SocketAddr, host: &str, rounds: u64) {
    for seq in 1..=rounds {
        let t = Instant::now();
        let r = tokio::time::timeout(
            Duration::from_secs(3),
            one_request(
                f.client_config(Some(host)),
                addr,
                "POST",
                "/v1/events",
                &batch(host, [seq]),
            ),
        )
        .await;
        match r {
            Ok(Ok(r)) => assert_eq!(r.status, 200, "round {seq}"),
            Ok(Err(e)) => panic!("round {seq}: {e}"),
            Err(_) => panic!("round {seq}: no answer within 3 s"),
        }
        assert!(t.elapsed() < Duration::from_secs(3));
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Point 3: 40 silent unauthenticated connections, and then 20
/// authenticated header-tricklers, with `max_connections = 20`: a real
/// agent is served every time.
#[test]
fn silent_and_trickling_peers_cannot_take_an_agents_slot() {
    let f = Fleet::new();
    let cfg = f.config(
        "127.0.0.1:0",
        "max_connections = 20\nrequest_timeout_secs = 4\nhandshake_timeout_secs = 3",
        "",
    );
    let server = Collector::start(&cfg);
    let attacker = f.client_config(Some("mallory"));
    let _ = f.client_config(Some("good"));
    rt().block_on(async {
        let stop = Arc::new(AtomicBool::new(false));
        silent_peers(20, "127.0.0.2", server.addr, stop.clone());
        silent_peers(20, "127.0.0.3", server.addr, stop.clone());
        tokio::time::sleep(Duration::from_millis(500)).await;
        // Past the handshake timeout (3 s): the silent peers reconnect.
        agent_is_served(&f, server.addr, "good", 4).await;
        stop.store(true, Ordering::Relaxed);

        let stop = Arc::new(AtomicBool::new(false));
        head_tricklers(20, attacker, server.addr, stop.clone());
        tokio::time::sleep(Duration::from_millis(1500)).await;
        // Past the request timeout (4 s): the tricklers reconnect.
        for seq in 5..=8 {
            let t = Instant::now();
            let r = tokio::time::timeout(
                Duration::from_secs(3),
                one_request(
                    f.client_config(Some("good")),
                    server.addr,
                    "POST",
                    "/v1/events",
                    &batch("good", [seq]),
                ),
            )
            .await;
            assert!(
                matches!(&r, Ok(Ok(r)) if r.status == 200),
                "round {seq}: {r:?} after {:?}",
                t.elapsed()
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert_eq!(stored_seqs(&f.db(), "good"), (1..=8).collect::<Vec<_>>());
}

/// Point 3: failed handshakes are one summary line per interval, with
/// counts by reason, not a line each.
#[test]
fn failed_handshakes_are_summed_up_not_logged_one_by_one() {
    let f = Fleet::new();
    let cfg = f.config("127.0.0.1:0", "handshake_log_interval_secs = 1", "");
    let server = Collector::start(&cfg);
    let before = server.log().lines().count();
    rt().block_on(async {
        for i in 0..60 {
            if i % 2 == 0 {
                // Not TLS at all.
                let mut s = tokio::net::TcpStream::connect(server.addr).await.unwrap();
                let _ =
                    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.0\r\n\r\n").await;
                let mut buf = [0u8; 256];
                let _ = s.read(&mut buf).await;
            } else {
                // TLS without a client certificate.
                let r =
                    one_request(f.client_config(None), server.addr, "GET", "/v1/health", b"").await;
                assert!(r.is_err());
            }
        }
    });
    wait_for_log(&server, "refused connections in the last 1s");
    std::thread::sleep(Duration::from_millis(1500));
    let log = server.log();
    let new: Vec<&str> = log.lines().skip(before).collect();
    assert!(
        new.len() <= 4,
        "{} log lines for 60 refused peers:\n{log}",
        new.len()
    );
    let summed: u64 = new
        .iter()
        .filter_map(|l| l.split("refused connections in the last 1s: ").nth(1))
        .map(|rest| rest.split(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(summed, 60, "{log}");
    assert!(
        log.contains("no certificate 30") || log.contains("no certificate"),
        "{log}"
    );
}

/// Point 7: a seq beyond 2^63 - 1 is refused (it would be clamped and pin
/// `acked_seq` forever).
#[test]
fn a_seq_beyond_2_63_is_refused() {
    let f = Fleet::new();
    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let mut c = connect(f.client_config(Some("web-1")), server.addr)
            .await
            .unwrap();
        for seq in [u64::MAX, 1 << 63] {
            let r = c
                .request("POST", "/v1/events", &batch("web-1", [seq]))
                .await
                .unwrap();
            assert_eq!(r.status, 400, "seq {seq}");
            assert!(
                r.json()["error"]
                    .as_str()
                    .unwrap()
                    .contains("at most 9223372036854775807"),
                "{:?}",
                r.json()
            );
        }
        let r = c
            .request("POST", "/v1/events", &batch("web-1", [1, 2]))
            .await
            .unwrap();
        assert_eq!(r.json()["acked_seq"], 2);
    });
    assert_eq!(stored_seqs(&f.db(), "web-1"), vec![1, 2]);
}

/// Point 7: `HOST-A` and `host-a` are one host, and `pki issue` refuses
/// the second spelling.
#[test]
fn host_names_differing_in_case_are_one_host() {
    let f = Fleet::new();
    f.agent("HOST-A");
    // Another copy of the CA (a second PKI directory, an external CA
    // tool) issues `host-a`.
    let other = f.path("pki2");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    for file in ["ca.pem", "ca.key", "crl.pem"] {
        std::fs::copy(f.pki.join(file), other.join(file)).unwrap();
    }
    let lower = pki::issue(&other, Role::Agent, "host-a", 30).unwrap();
    let lower_cfg =
        plumb_collector::tls::client_config(&f.pki.ca(), Some((&lower.cert, &lower.key))).unwrap();

    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let r = one_request(
            f.client_config(Some("HOST-A")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("HOST-A", [1]),
        )
        .await
        .unwrap();
        assert_eq!(r.json()["acked_seq"], 1);
        let r = one_request(
            lower_cfg,
            server.addr,
            "POST",
            "/v1/events",
            &batch("host-a", [2]),
        )
        .await
        .unwrap();
        assert_eq!(r.json()["acked_seq"], 2, "one host, one acknowledgement");
    });
    assert_eq!(stored_seqs(&f.db(), "host-a"), vec![1, 2]);
    let (code, out, err) = run(collector()
        .args(["hosts", "--format", "json", "--db"])
        .arg(f.db()));
    assert_eq!(code, 0, "{err}");
    let hosts: serde_json::Value = serde_json::from_str(&out).unwrap();
    let names: Vec<&str> = hosts["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["host"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["host-a"]);
    // `drift --host HOST-A` finds it too.
    let (_, out, _) = run(collector()
        .args([
            "drift", "--host", "HOST-A", "--since", "3650d", "--format", "json", "--db",
        ])
        .arg(f.db()));
    let drift: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(drift["events"].as_array().unwrap().len(), 2, "{out}");

    let (code, _, err) = run(collector()
        .args(["pki", "issue", "--agent", "host-a", "--dir"])
        .arg(&f.pki.dir));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("HOST-A.pem") && err.contains("without case"),
        "{err}"
    );
    assert!(!f.pki.join("agents/host-a.pem").exists());
}

/// A collector config with these `[tls]` CRL lines.
fn config_with_crl(f: &Fleet, tls_extra: &str) -> std::path::PathBuf {
    let p = f.path("collector.toml");
    std::fs::write(
        &p,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nshutdown_timeout_secs = 3\n\n\
             [tls]\nca = \"pki/ca.pem\"\ncert = \"pki/servers/localhost.pem\"\n\
             key = \"pki/servers/localhost.key\"\n{tls_extra}\n\n\
             [storage]\npath = \"collector.db\"\n"
        ),
    )
    .unwrap();
    p
}

/// The fleet CA, to sign what `pki` would not (a stale CRL, a certificate
/// without clientAuth).
fn fleet_ca(dir: &Path) -> rcgen::Issuer<'static, rcgen::KeyPair> {
    let key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(dir.join("ca.key")).unwrap()).unwrap();
    rcgen::Issuer::from_ca_cert_pem(&std::fs::read_to_string(dir.join("ca.pem")).unwrap(), key)
        .unwrap()
}

/// Overwrites `pki/crl.pem` with an empty CRL whose nextUpdate passed a day ago.
fn write_stale_crl(f: &Fleet) {
    let now = time::OffsetDateTime::now_utc();
    let params = rcgen::CertificateRevocationListParams {
        this_update: now - time::Duration::days(8),
        next_update: now - time::Duration::days(1),
        crl_number: rcgen::SerialNumber::from(7u64),
        issuing_distribution_point: None,
        revoked_certs: vec![],
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    let crl = params.signed_by(&fleet_ca(&f.pki)).unwrap();
    std::fs::write(f.pki.join("crl.pem"), crl.pem().unwrap()).unwrap();
}

fn validate(cfg: &Path) -> (i32, String, String) {
    run(collector()
        .args(["serve", "--validate", "--config"])
        .arg(cfg))
}

/// A PostgreSQL pool too small for the queries that run statements side
/// by side is said at `--validate` (and at start), at its line.
#[test]
fn a_postgres_pool_too_small_for_the_queries_is_a_warning() {
    let f = Fleet::new();
    let storage = |n: u32| {
        format!(
            "backend = \"postgres\"\n[storage.postgres]\nurl = \"host=/nonexistent dbname=x\"\npool_size = {n}\n"
        )
    };
    let (code, _, err) = validate(&f.config("127.0.0.1:0", "", &storage(2)));
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("storage.postgres.pool_size: 2 connection(s)"),
        "{err}"
    );
    let (code, _, err) = validate(&f.config("127.0.0.1:0", "", &storage(3)));
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("pool_size"), "{err}");
}

/// Point 8: `crl = []` and a CRL past its nextUpdate are loud warnings at
/// start, on reload and in `--validate`; `require_fresh_crl` refuses them.
#[test]
fn missing_and_stale_crls_are_loud_or_refused() {
    let f = Fleet::new();
    // No CRL.
    let cfg = config_with_crl(&f, "crl = []");
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("revocation is OFF"),
        "{err}"
    );
    {
        let server = Collector::start(&cfg);
        wait_for_log(&server, "revocation is OFF");
        assert!(server.log().contains("WARN"), "{}", server.log());
    }
    let cfg = config_with_crl(&f, "crl = []\nrequire_fresh_crl = true");
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tls.crl") && err.contains("require_fresh_crl"),
        "{err}"
    );
    let (code, _, err) = run(collector().args(["serve", "--config"]).arg(&cfg));
    assert_eq!(code, 2, "{err}");

    // A fresh CRL: nothing to say. Then it goes stale and is reloaded.
    let cfg = config_with_crl(&f, "crl = [\"pki/crl.pem\"]");
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "{err}");
    {
        let server = Collector::start(&cfg);
        write_stale_crl(&f);
        server.signal("HUP");
        wait_for_log(&server, "is stale");
        assert!(
            server.log().contains("nextUpdate passed"),
            "{}",
            server.log()
        );
    }
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("warning: ") && err.contains("is stale"),
        "{err}"
    );
    {
        let server = Collector::start(&cfg);
        wait_for_log(&server, "is stale");
    }
    let cfg = config_with_crl(&f, "crl = [\"pki/crl.pem\"]\nrequire_fresh_crl = true");
    let (code, _, err) = validate(&cfg);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("tls.crl[0]") && err.contains("is stale"),
        "{err}"
    );
    let (code, _, err) = run(collector().args(["serve", "--config"]).arg(&cfg));
    assert_eq!(code, 2, "{err}");
}

/// Point 8: a certificate from the fleet CA without the clientAuth EKU is
/// refused at the handshake.
#[test]
fn an_agent_certificate_without_client_auth_is_refused() {
    let f = Fleet::new();
    let dir = f.path("rogue");
    std::fs::create_dir(&dir).unwrap();
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["no-eku".to_string()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "no-eku");
    let cert = params.signed_by(&key, &fleet_ca(&f.pki)).unwrap();
    let (cert_path, key_path) = (dir.join("no-eku.pem"), dir.join("no-eku.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    std::fs::set_permissions(
        &key_path,
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .unwrap();
    let cfg =
        plumb_collector::tls::client_config(&f.pki.ca(), Some((&cert_path, &key_path))).unwrap();

    let server = Collector::start(&f.config("127.0.0.1:0", "", ""));
    rt().block_on(async {
        let r = one_request(
            cfg,
            server.addr,
            "POST",
            "/v1/events",
            &batch("no-eku", [1]),
        )
        .await;
        match r {
            Ok(r) => panic!("answered {}", r.status),
            Err(e) => assert!(e.to_string().contains("UnsupportedCertificate"), "{e}"),
        }
        let r = one_request(
            f.client_config(Some("with-eku")),
            server.addr,
            "POST",
            "/v1/events",
            &batch("with-eku", [1]),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
    });
    assert!(stored_seqs(&f.db(), "no-eku").is_empty());
}
