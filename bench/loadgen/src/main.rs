//! `plumb-loadgen`: N simulated agents, each with its own client certificate,
//! hold one mTLS connection each to a collector on loopback and send batches
//! of realistic events in a loop for a fixed time. Reports acknowledged
//! events per second and batch latency percentiles.

use anyhow::{Context, Result, bail};
use clap::Parser;
use plumb_collector::client::Conn;
use plumb_collector::pki::{self, Role};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "plumb-loadgen",
    about = "Load generator for plumb-collector (loopback only)"
)]
struct Cli {
    /// Collector address (must be a loopback address).
    #[arg(long)]
    addr: SocketAddr,
    /// Name in the collector's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PKI directory made by `plumb-collector pki init`; agent certificates
    /// load-0 .. load-(N-1) are issued there when missing.
    #[arg(long)]
    pki: PathBuf,
    /// Concurrent agents (one connection each, all held open).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Seconds of sending, after every connection is up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
}

/// A mix of what agents send: mostly FIM changes and rule changes.
fn event(seq: u64, host: &str) -> serde_json::Value {
    let time = "2026-11-27T10:00:00Z";
    if seq % 4 == 0 {
        serde_json::json!({
            "seq": seq, "time": time, "severity": "high", "kind": "check_changed",
            "rule": format!("ssh.rule-{}", seq % 40), "title": "SSH does not allow root to log in with a password",
            "previous": "pass", "status": "fail", "domains": [13], "criteria": ["C", "T"],
            "evidence": [format!("PermitRootLogin yes (/etc/ssh/sshd_config:{})", seq % 90)],
            "baseline": {"id": "issp-linux-server", "version": 7}
        })
    } else {
        serde_json::json!({
            "seq": seq, "time": time, "severity": "medium", "kind": "fim_change",
            "path": format!("/usr/lib/{host}/module-{seq}.so"), "change": "modified",
            "fields": ["sha256", "size", "mtime"],
            "old": {"sha256": "3f2a9c0e5b7d41a8c6f2e9b0d3a7c5e1f4b8a2d6c0e9f3b7a1d5c8e2f6b0a4d9", "size": 120_331, "mtime": 1_795_000_000},
            "new": {"sha256": "8c1d07e4b2a9f6c3d0e7b4a1f8c5d2e9b6a3f0c7d4e1b8a5f2c9d6e3b0a7f4c1", "size": 120_587, "mtime": 1_795_773_600},
            "domains": [18, 25]
        })
    }
}

#[derive(Default)]
struct Stats {
    acked: u64,
    latencies_us: Vec<u32>,
    throttled: u64,
    errors: u64,
}

async fn agent(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    name: String,
    host: String,
    batch: usize,
    start: Arc<tokio::sync::Barrier>,
    deadline: Arc<std::sync::OnceLock<Instant>>,
) -> Stats {
    let mut st = Stats::default();
    let mut conn = loop {
        match Conn::connect(cfg.clone(), addr, &name).await {
            Ok(c) => break Some(c),
            Err(_) if st.errors < 20 => {
                st.errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(_) => break None,
        }
    };
    start.wait().await;
    let Some(end) = deadline.get().copied() else {
        return st;
    };
    let mut acked = 0u64;
    while Instant::now() < end {
        let Some(c) = conn.as_mut() else {
            match Conn::connect(cfg.clone(), addr, &name).await {
                Ok(c) => conn = Some(c),
                Err(_) => {
                    st.errors += 1;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
            continue;
        };
        let events: Vec<_> = (acked + 1..=acked + batch as u64)
            .map(|s| event(s, &host))
            .collect();
        let body =
            serde_json::to_vec(&serde_json::json!({"schema": 1, "host": host, "events": events}))
                .unwrap_or_default();
        let t0 = Instant::now();
        match c.request("POST", "/v1/events", &body).await {
            Ok(r) if r.status == 200 => {
                st.latencies_us
                    .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                let a = r.json()["acked_seq"].as_u64().unwrap_or(acked);
                st.acked += a.saturating_sub(acked);
                acked = a.max(acked);
            }
            Ok(r) if r.status == 429 || r.status == 503 => {
                st.throttled += 1;
                // As an agent does: wait Retry-After, then resend the same events.
                let secs = r
                    .header("retry-after")
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1);
                tokio::time::sleep(Duration::from_secs(secs.min(10))).await;
            }
            Ok(_) | Err(_) => {
                st.errors += 1;
                conn = None;
            }
        }
    }
    st
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    f64::from(sorted[i.min(sorted.len() - 1)]) / 1000.0
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    if !cli.addr.ip().is_loopback() {
        bail!(
            "{}: plumb-loadgen only targets loopback addresses",
            cli.addr
        );
    }
    let ca = cli.pki.join("ca.pem");
    let t = Instant::now();
    let mut configs = Vec::with_capacity(cli.agents);
    for i in 0..cli.agents {
        let host = format!("load-{i}");
        let cert = cli.pki.join("agents").join(format!("{host}.pem"));
        let key = cli.pki.join("agents").join(format!("{host}.key"));
        if !cert.exists() {
            pki::issue(&cli.pki, Role::Agent, &host, 2)
                .with_context(|| format!("issuing {host}"))?;
        }
        configs.push((
            host,
            plumb_collector::tls::client_config(&ca, Some((&cert, &key)))?,
        ));
    }
    eprintln!(
        "{} agent certificates ready in {:.1?}",
        cli.agents,
        t.elapsed()
    );

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stats, elapsed) = rt.block_on(async {
        let start = Arc::new(tokio::sync::Barrier::new(cli.agents + 1));
        let deadline = Arc::new(std::sync::OnceLock::new());
        let mut tasks = Vec::with_capacity(cli.agents);
        for (host, cfg) in configs {
            tasks.push(tokio::spawn(agent(
                cfg,
                cli.addr,
                cli.server_name.clone(),
                host,
                cli.batch,
                start.clone(),
                deadline.clone(),
            )));
        }
        let t = Instant::now();
        // Every agent connects first; the clock starts when all are up.
        let began = Instant::now() + Duration::from_millis(10);
        let _ = deadline.set(began + Duration::from_secs(cli.duration));
        start.wait().await;
        eprintln!(
            "{} connections open in {:.1?}; sending for {}s",
            cli.agents,
            t.elapsed(),
            cli.duration
        );
        let mut all = Stats::default();
        for task in tasks {
            if let Ok(s) = task.await {
                all.acked += s.acked;
                all.throttled += s.throttled;
                all.errors += s.errors;
                all.latencies_us.extend(s.latencies_us);
            }
        }
        (all, began.elapsed())
    });
    let mut lat = stats.latencies_us;
    lat.sort_unstable();
    let rate = stats.acked as f64 / elapsed.as_secs_f64();
    eprintln!(
        "{} agents: {} events acknowledged in {:.1}s = {:.0} events/s; {} batches, p50 {:.1} ms, p99 {:.1} ms; {} throttled (429/503), {} errors",
        cli.agents,
        stats.acked,
        elapsed.as_secs_f64(),
        rate,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        stats.throttled,
        stats.errors
    );
    println!(
        "RESULT agents={} events={} events_per_s={:.0} batches={} p50_ms={:.1} p99_ms={:.1} throttled={} errors={}",
        cli.agents,
        stats.acked,
        rate,
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        stats.throttled,
        stats.errors
    );
    Ok(())
}
