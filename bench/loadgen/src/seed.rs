//! `plumb-loadgen seed`: fills a collector store with a synthetic fleet for
//! the query benchmarks, fast, through the collector's own schema (its
//! migrations run first) and bulk paths (`COPY` on PostgreSQL, one
//! prepared statement per table in large transactions on SQLite).
//!
//! Per host: seqs 1..=N contiguous, received over the last `days` days in
//! seq order; one event in 24 a snapshot (every rule, facts), about one in
//! five a rule change, the rest FIM changes with paths; the last event a
//! snapshot. Rule states: `rules` per host, a failing mix that varies by
//! host (most pass; a few fail, error or are skipped).

use anyhow::{Context, Result, bail};
use plumb_collector::config::PostgresSection;
use plumb_collector::storage::bulk::{self, EventRecord, HostRecord, RuleRecord, Target};
use plumb_core::Severity;
use plumb_core::event::{
    CheckChanged, Event, EventBody, FimChangeEvent, HostFacts, RuleStatus, Snapshot,
};
use plumb_core::fim::ReportPath;
use plumb_core::report::{BaselineRef, Status, Summary};
use std::path::PathBuf;
use std::time::Instant;

/// `plumb-loadgen seed` arguments.
#[derive(clap::Args)]
pub struct SeedArgs {
    /// `sqlite:PATH`, or a PostgreSQL URL / libpq keywords.
    #[arg(long)]
    backend: String,
    /// PostgreSQL password file (else `PGPASSWORD`).
    #[arg(long)]
    password_file: Option<PathBuf>,
    /// Hosts.
    #[arg(long, default_value_t = 10_000)]
    hosts: u64,
    /// Events in all (split evenly between the hosts).
    #[arg(long, default_value_t = 10_000_000)]
    events: u64,
    /// Rules per host.
    #[arg(long, default_value_t = 40)]
    rules: u32,
    /// Days of reception the events spread over, ending now.
    #[arg(long, default_value_t = 35)]
    days: u32,
    /// Events per load (one transaction each).
    #[arg(long, default_value_t = 200_000)]
    chunk: usize,
}

/// Host `h`'s status of rule `r`: mostly pass; a few percent fail, fewer
/// error or skipped, more on some hosts than others.
fn status(h: u64, r: u32) -> Status {
    let x = (h.wrapping_mul(2_654_435_761) ^ u64::from(r).wrapping_mul(40_503)) % 100;
    let failing = 5 + h % 15;
    if x < failing {
        Status::Fail
    } else if x < failing + 2 {
        Status::Error
    } else if x < failing + 5 {
        Status::Skipped
    } else {
        Status::Pass
    }
}

fn rule_id(r: u32) -> String {
    format!("seed.rule-{r:03}")
}

fn severity_of(r: u32) -> Severity {
    [
        Severity::Low,
        Severity::Medium,
        Severity::High,
        Severity::Critical,
    ][(r % 4) as usize]
}

fn rank(s: Severity) -> i16 {
    match s {
        Severity::Info => 0,
        Severity::Low => 1,
        Severity::Medium => 2,
        Severity::High => 3,
        Severity::Critical => 4,
    }
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// Event `seq` of host `h` (named `host`), produced at `t`.
fn event(h: u64, host: &str, seq: u64, last: bool, rules: u32, t: i64) -> Event {
    let baseline = BaselineRef {
        id: "issp-linux-server".into(),
        version: 7,
    };
    let (severity, body) = if last || seq % 24 == 0 {
        let list: Vec<RuleStatus> = (0..rules)
            .map(|r| RuleStatus {
                id: rule_id(r),
                status: status(h, r),
                severity: severity_of(r),
                domains: vec![(r % 28) as u8 + 1],
                title: format!("rule {r}"),
            })
            .collect();
        (
            Severity::Info,
            EventBody::Snapshot(Box::new(Snapshot {
                agent_version: "0.1.0".into(),
                baseline: Some(baseline),
                facts: HostFacts {
                    hostname: host.into(),
                    os: "Debian GNU/Linux 12 (bookworm)".into(),
                    kernel: "6.1.0-28-amd64".into(),
                    uptime_s: 86_400,
                    cpus: 16,
                    memory_bytes: 68_719_476_736,
                },
                fim_digest: Some(format!("{:064x}", h * 1_000_003 + seq)),
                summary: Summary::default(),
                rules: list,
            })),
        )
    } else if seq % 24 < 6 {
        let r = ((seq / 24 + h) % u64::from(rules.max(1))) as u32;
        let st = if seq % 2 == 0 {
            Status::Fail
        } else {
            Status::Pass
        };
        (
            severity_of(r),
            EventBody::CheckChanged(CheckChanged {
                rule: rule_id(r),
                title: format!("rule {r}"),
                previous: Some(if st == Status::Fail {
                    Status::Pass
                } else {
                    Status::Fail
                }),
                status: st,
                domains: vec![(r % 28) as u8 + 1],
                criteria: vec![plumb_core::Criterion::C, plumb_core::Criterion::I],
                evidence: vec![format!(
                    "PermitRootLogin yes (/etc/ssh/sshd_config:{})",
                    seq % 90
                )],
                baseline,
            }),
        )
    } else {
        (
            if seq % 7 == 0 {
                Severity::High
            } else {
                Severity::Medium
            },
            EventBody::FimChange(FimChangeEvent {
                path: ReportPath::Text(format!("/etc/app-{}/conf.d/{}.conf", h % 50, seq % 400)),
                change: "modified".into(),
                fields: vec!["sha256".into(), "size".into(), "mtime".into()],
                old: serde_json::json!({"sha256": format!("{:064x}", seq), "size": 1_200 + seq % 100}),
                new: serde_json::json!({"sha256": format!("{:064x}", seq + 1), "size": 1_230 + seq % 100}),
                domains: vec![25],
                package: None,
            }),
        )
    };
    Event {
        seq,
        time: rfc3339(t),
        severity,
        body,
    }
}

/// Runs `seed`: prints what it loaded and how fast on stdout.
pub fn run(a: &SeedArgs) -> Result<()> {
    if a.hosts == 0 || a.events < a.hosts {
        bail!("--events must be at least --hosts (one event per host)");
    }
    let target = match a.backend.strip_prefix("sqlite:") {
        Some(p) => Target::Sqlite(PathBuf::from(p)),
        None => Target::Postgres(PostgresSection {
            url: a.backend.clone(),
            password_file: a.password_file.clone(),
            pool_size: 1,
            ..PostgresSection::default()
        }),
    };
    let started = Instant::now();
    let mut store = bulk::open_target(&target).context("opening the store")?;
    let clock = Clock {
        now: time::OffsetDateTime::now_utc().unix_timestamp(),
        span: i64::from(a.days.max(1)) * 86_400,
        per: a.events / a.hosts,
    };
    let loaded = load_events(a, store.as_mut(), &clock, started)?;
    let t_events = started.elapsed();
    load_states(a, store.as_mut(), &clock)?;
    let total = started.elapsed();
    println!(
        "SEED backend={} hosts={} events={} rules_per_host={} days={} events_s={:.1} total_s={:.1} events_per_s={:.0}",
        match target {
            Target::Sqlite(_) => "sqlite",
            Target::Postgres(_) => "postgres",
        },
        a.hosts,
        loaded,
        a.rules,
        a.days,
        t_events.as_secs_f64(),
        total.as_secs_f64(),
        loaded as f64 / t_events.as_secs_f64()
    );
    Ok(())
}

/// The seeded history's time frame.
struct Clock {
    /// Unix time of the run.
    now: i64,
    /// Seconds of history (`--days`).
    span: i64,
    /// Events per host.
    per: u64,
}

/// Every host's events, spread over the span, in chunks of `--chunk`;
/// how many the store took.
fn load_events(
    a: &SeedArgs,
    store: &mut dyn bulk::BulkLoad,
    c: &Clock,
    started: Instant,
) -> Result<u64> {
    let (now, span, per) = (c.now, c.span, c.per);
    let mut events: Vec<EventRecord> = Vec::with_capacity(a.chunk);
    let mut loaded = 0u64;
    for h in 0..a.hosts {
        let host = format!("seed-{h:05}");
        // Each host's clock is offset a little, so receptions interleave.
        let offset = (h % 3_600) as i64;
        let at = |seq: u64| now - span + offset + (seq as i64 * (span - 3_600)) / per as i64;
        for seq in 1..=per {
            let t = at(seq);
            let e = event(h, &host, seq, seq == per, a.rules, t - 5);
            events.push(EventRecord {
                host: host.clone(),
                seq: seq as i64,
                kind: e.body.kind().to_string(),
                severity: e.severity.name().to_string(),
                sev_rank: rank(e.severity),
                time: t - 5,
                received_at: t,
                body: serde_json::to_string(&e)?,
            });
            if events.len() >= a.chunk {
                loaded += store.load_events(&events)?;
                events.clear();
                eprintln!(
                    "{loaded} events in {:.0?} ({:.0}/s)",
                    started.elapsed(),
                    loaded as f64 / started.elapsed().as_secs_f64()
                );
            }
        }
    }
    loaded += store.load_events(&events)?;
    Ok(loaded)
}

/// Rule states and hosts, as the last snapshot left them.
fn load_states(a: &SeedArgs, store: &mut dyn bulk::BulkLoad, c: &Clock) -> Result<()> {
    let mut rules = Vec::new();
    let mut hosts = Vec::new();
    for h in 0..a.hosts {
        let host = format!("seed-{h:05}");
        let last_t = c.now - 3_600 + (h % 3_600) as i64;
        let (mut pass, mut fail, mut error) = (0u32, 0u32, 0u32);
        for r in 0..a.rules {
            let st = status(h, r);
            match st {
                Status::Pass => pass += 1,
                Status::Fail => fail += 1,
                Status::Error => error += 1,
                Status::Skipped => {}
            }
            rules.push(RuleRecord {
                host: host.clone(),
                rule: rule_id(r),
                status: st.name().into(),
                severity: severity_of(r).name().into(),
                domains: format!("[{}]", r % 28 + 1),
                title: format!("rule {r}"),
                seq: c.per as i64,
                updated_at: last_t,
            });
        }
        let applicable = pass + fail + error;
        let score = if applicable == 0 {
            100.0
        } else {
            (1000.0 * f64::from(pass) / f64::from(applicable)).round() / 10.0
        };
        hosts.push(host_record(h, host, c, last_t, score));
        if rules.len() >= a.chunk {
            store.load_rules(&rules)?;
            rules.clear();
        }
    }
    store.load_rules(&rules)?;
    for chunk in hosts.chunks(a.chunk.max(1)) {
        store.load_hosts(chunk)?;
    }
    Ok(())
}

/// Host `h`'s row: seen last at `last_t`, its last snapshot the last event.
fn host_record(h: u64, host: String, c: &Clock, last_t: i64, score: f64) -> HostRecord {
    HostRecord {
        host,
        first_seen: c.now - c.span + (h % 3_600) as i64,
        last_seen: last_t,
        address: Some(format!(
            "10.{}.{}.{}",
            h / 65_536 % 256,
            h / 256 % 256,
            h % 256
        )),
        agent_version: Some("0.1.0".into()),
        baseline_id: Some("issp-linux-server".into()),
        baseline_version: Some(7),
        fim_digest: Some(format!("{:064x}", h * 1_000_003 + c.per)),
        score: Some(score),
        os: Some("Debian GNU/Linux 12 (bookworm)".into()),
        kernel: Some("6.1.0-28-amd64".into()),
        last_snapshot_seq: c.per as i64,
        acked_seq: c.per as i64,
        pruned_seq: 0,
    }
}
