//! `plumb-loadgen`: N simulated agents, each with its own client certificate,
//! hold one mTLS connection each to a collector on loopback and send batches
//! of realistic events in a loop for a fixed time. Each agent is the agent's
//! own delivery client (`plumb_agent::delivery`: the TLS setup, request and
//! reply handling that ship), so the figures are those of real agents.
//! Reports acknowledged events per second and batch latency percentiles.

use anyhow::{Context, Result, bail};
use clap::Parser;
use plumb_agent::delivery::{Client, Collector, SendError};
use plumb_collector::pki::{self, Role};
use plumb_core::Severity;
use plumb_core::event::{CheckChanged, Event, EventBody, FimChangeEvent};
use plumb_core::fim::ReportPath;
use plumb_core::report::{BaselineRef, Status};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod seed;

#[derive(Parser)]
#[command(
    name = "plumb-loadgen",
    about = "Load generator for plumb-collector (loopback only)",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    /// Collector address (must be a loopback address).
    #[arg(long, required = true)]
    addr: Option<SocketAddr>,
    /// Name in the collector's certificate. The agents are configured with
    /// `url = "https://NAME:PORT"` (PORT from --addr), as real ones are, so
    /// NAME must resolve to loopback addresses only.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    /// PKI directory made by `plumb-collector pki init`; agent certificates
    /// load-0 .. load-(N-1) are issued there when missing.
    #[arg(long, required = true)]
    pki: Option<PathBuf>,
    /// Concurrent agents (one connection each, all held open).
    #[arg(long, default_value_t = 100)]
    agents: usize,
    /// Seconds of sending, after every connection is up.
    #[arg(long, default_value_t = 20)]
    duration: u64,
    /// Events per batch.
    #[arg(long, default_value_t = 100)]
    batch: usize,
    /// Number of the first agent (`load-FIRST` ..): several load
    /// generators, one per collector, then send as distinct hosts.
    #[arg(long, default_value_t = 0)]
    first: usize,
}

#[derive(clap::Subcommand)]
enum Cmd {
    /// Fill a store with a synthetic fleet (hosts, rule states, events over
    /// weeks) through the collector's schema, for the query benchmarks.
    Seed(seed::SeedArgs),
}

/// A mix of what agents send: mostly FIM changes and rule changes.
fn event(seq: u64, host: &str) -> Event {
    let time = "2026-11-27T10:00:00Z".to_string();
    if seq % 4 == 0 {
        Event {
            seq,
            time,
            severity: Severity::High,
            body: EventBody::CheckChanged(CheckChanged {
                rule: format!("ssh.rule-{}", seq % 40),
                title: "SSH does not allow root to log in with a password".into(),
                previous: Some(Status::Pass),
                status: Status::Fail,
                domains: vec![13],
                criteria: vec![plumb_core::Criterion::C, plumb_core::Criterion::T],
                evidence: vec![format!(
                    "PermitRootLogin yes (/etc/ssh/sshd_config:{})",
                    seq % 90
                )],
                baseline: BaselineRef {
                    id: "issp-linux-server".into(),
                    version: 7,
                },
            }),
        }
    } else {
        Event {
            seq,
            time,
            severity: Severity::Medium,
            body: EventBody::FimChange(FimChangeEvent {
                path: ReportPath::Text(format!("/usr/lib/{host}/module-{seq}.so")),
                change: "modified".into(),
                fields: vec!["sha256".into(), "size".into(), "mtime".into()],
                old: serde_json::json!({"sha256": "3f2a9c0e5b7d41a8c6f2e9b0d3a7c5e1f4b8a2d6c0e9f3b7a1d5c8e2f6b0a4d9", "size": 120_331, "mtime": 1_795_000_000}),
                new: serde_json::json!({"sha256": "8c1d07e4b2a9f6c3d0e7b4a1f8c5d2e9b6a3f0c7d4e1b8a5f2c9d6e3b0a7f4c1", "size": 120_587, "mtime": 1_795_773_600}),
                domains: vec![18, 25],
                package: None,
            }),
        }
    }
}

/// The events after `acked`, one batch.
fn batch(acked: u64, n: usize, host: &str) -> Vec<Event> {
    (acked + 1..=acked + n as u64)
        .map(|s| event(s, host))
        .collect()
}

/// An agent's `[collector]` section, as it would be in its config file.
fn collector(url: &str, ca: &Path, cert: &Path, key: &Path) -> Result<Collector> {
    let mut t = toml::Table::new();
    t.insert("url".into(), url.into());
    for (k, p) in [("ca", ca), ("cert", cert), ("key", key)] {
        t.insert(k.into(), p.display().to_string().into());
    }
    toml::Value::Table(t)
        .try_into()
        .context("the [collector] section")
}

#[derive(Default)]
struct Stats {
    acked: u64,
    latencies_us: Vec<u32>,
    throttled: u64,
    errors: u64,
    /// The first error met, for the log.
    first_error: Option<String>,
}

impl Stats {
    fn error(&mut self, e: &SendError) {
        self.errors += 1;
        self.first_error.get_or_insert_with(|| e.to_string());
    }
}

async fn agent(
    client: Client,
    host: String,
    n: usize,
    start: Arc<tokio::sync::Barrier>,
    deadline: Arc<std::sync::OnceLock<Instant>>,
) -> Stats {
    let mut st = Stats::default();
    // Connect before the clock starts: the client connects on its first
    // request, so each agent sends a first batch (not counted).
    let mut acked = 0u64;
    for _ in 0..100 {
        match client.send(&host, &batch(acked, n, &host)).await {
            Ok(a) => {
                acked = a;
                break;
            }
            // Many agents connecting at once: the collector admits their
            // first batches as it can.
            Err(SendError::RetryAfter { after, .. }) => {
                tokio::time::sleep(after.min(Duration::from_secs(10))).await;
            }
            Err(e) => {
                st.error(&e);
                if st.errors >= 20 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    // Twice: once all are connected, then once the deadline is set.
    start.wait().await;
    start.wait().await;
    let Some(end) = deadline.get().copied() else {
        return st;
    };
    while Instant::now() < end {
        let events = batch(acked, n, &host);
        let t0 = Instant::now();
        match client.send(&host, &events).await {
            Ok(a) => {
                st.latencies_us
                    .push(u32::try_from(t0.elapsed().as_micros()).unwrap_or(u32::MAX));
                st.acked += a.saturating_sub(acked);
                acked = a.max(acked);
            }
            Err(SendError::RetryAfter { after, .. }) => {
                st.throttled += 1;
                // As an agent does: wait Retry-After, then resend the same events.
                tokio::time::sleep(after.min(Duration::from_secs(10))).await;
            }
            Err(e) => {
                // The client reconnects on the next request.
                st.error(&e);
                tokio::time::sleep(Duration::from_millis(200)).await;
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
    if let Some(Cmd::Seed(a)) = &cli.cmd {
        return seed::run(a);
    }
    // clap requires --addr and --pki when no subcommand is given.
    let (Some(addr), Some(pki_dir)) = (cli.addr, cli.pki.clone()) else {
        bail!("--addr and --pki are required");
    };
    let url = loopback_url(&cli, addr)?;
    let clients = clients(&cli, &pki_dir, &url)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let (stats, elapsed) = rt.block_on(drive(&cli, clients));
    print_result(&cli, stats, elapsed);
    Ok(())
}

/// The collector's URL, once `addr` and the server name are known to be
/// loopback: the load generator never targets another machine.
fn loopback_url(cli: &Cli, addr: SocketAddr) -> Result<String> {
    if !addr.ip().is_loopback() {
        bail!("{addr}: plumb-loadgen only targets loopback addresses");
    }
    let resolved: Vec<SocketAddr> = (cli.server_name.as_str(), addr.port())
        .to_socket_addrs()
        .with_context(|| format!("resolving {}", cli.server_name))?
        .collect();
    if resolved.is_empty() || !resolved.iter().all(|a| a.ip().is_loopback()) {
        bail!(
            "{}: resolves to {resolved:?}; plumb-loadgen only targets loopback addresses",
            cli.server_name
        );
    }
    Ok(format!("https://{}:{}", cli.server_name, addr.port()))
}

/// One client per simulated agent, its certificate issued when missing.
fn clients(cli: &Cli, pki_dir: &Path, url: &str) -> Result<Vec<(String, Client)>> {
    let ca = pki_dir.join("ca.pem");
    let t = Instant::now();
    let mut clients = Vec::with_capacity(cli.agents);
    for i in cli.first..cli.first + cli.agents {
        let host = format!("load-{i}");
        let cert = pki_dir.join("agents").join(format!("{host}.pem"));
        let key = pki_dir.join("agents").join(format!("{host}.key"));
        if !cert.exists() {
            pki::issue(pki_dir, Role::Agent, &host, 2)
                .with_context(|| format!("issuing {host}"))?;
        }
        let client = Client::new(&collector(url, &ca, &cert, &key)?)
            .with_context(|| format!("agent {host}"))?;
        clients.push((host, client));
    }
    eprintln!(
        "{} agent certificates ready in {:.1?}",
        cli.agents,
        t.elapsed()
    );
    Ok(clients)
}

/// Every agent connects, then all send for `--duration` seconds: their
/// summed figures and the time they sent for.
async fn drive(cli: &Cli, clients: Vec<(String, Client)>) -> (Stats, Duration) {
    let start = Arc::new(tokio::sync::Barrier::new(cli.agents + 1));
    let deadline = Arc::new(std::sync::OnceLock::new());
    let mut tasks = Vec::with_capacity(cli.agents);
    for (host, client) in clients {
        tasks.push(tokio::spawn(agent(
            client,
            host,
            cli.batch,
            start.clone(),
            deadline.clone(),
        )));
    }
    let t = Instant::now();
    // Every agent connects first; the clock starts when all are up.
    start.wait().await;
    let began = Instant::now();
    let _ = deadline.set(began + Duration::from_secs(cli.duration));
    start.wait().await;
    eprintln!(
        "{} connections open in {:.1?}; sending for {}s",
        cli.agents,
        t.elapsed(),
        cli.duration
    );
    let mut all = Stats::default();
    let mut errors = std::collections::BTreeSet::new();
    for task in tasks {
        if let Ok(s) = task.await {
            all.acked += s.acked;
            all.throttled += s.throttled;
            all.errors += s.errors;
            all.latencies_us.extend(s.latencies_us);
            errors.extend(s.first_error);
        }
    }
    for e in errors.iter().take(5) {
        eprintln!("error: {e}");
    }
    (all, began.elapsed())
}

/// The summary on stderr and the `RESULT` line bench scripts read.
fn print_result(cli: &Cli, stats: Stats, elapsed: Duration) {
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
}
