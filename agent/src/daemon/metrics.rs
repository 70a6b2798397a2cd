//! The agent's metrics file for node_exporter's textfile collector
//! (`metrics_file` in agent.toml; names in docs/reference/metrics.md).
//!
//! The daemon rewrites it after every job, atomically (plumb-os: temporary
//! file, fsync, rename), so node_exporter never reads half a file. Mode
//! 0644: node_exporter runs as its own user, and the file holds counts and
//! times only (no path, no rule id, no evidence).
//!
//! The values are read where they live: the outbox (waiting events, the
//! oldest one's time, events dropped), the stored check results and the
//! policy (failing rules by severity, FIM watch rules, baselines in force);
//! the few the daemon alone knows (when the last check run and FIM scan
//! ended and took, the last successful delivery, the inotify watches) are
//! kept in [`Stats`] as they happen.

use crate::daemon::Shared;
use crate::daemon::outbox::{OutboxError, OutboxStats, StoredCheck};
use crate::policy::Policy;
use plumb_core::Severity;
use plumb_core::report::Status;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::path::Path;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

/// Why the metrics file was not written.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// Reading the outbox or the stored results.
    #[error("metrics file: {0}")]
    Outbox(#[from] OutboxError),
    /// Writing the file.
    #[error("metrics file {path}: {source}")]
    Write {
        /// the file
        path: String,
        /// the error
        source: std::io::Error,
    },
}

/// One finished run of a job: when it ended (unix time) and how long it took.
#[derive(Debug, Clone, Copy)]
struct Run {
    ended: f64,
    took: f64,
}

/// What the daemon alone knows, recorded as it happens.
#[derive(Debug, Default)]
pub struct Stats {
    checks: Mutex<Option<Run>>,
    fim: Mutex<Option<Run>>,
    /// Unix time (ms) of the last batch the collector or the events file took; 0: none yet.
    delivered_ms: AtomicI64,
    /// Directories under inotify watch now.
    realtime_watches: AtomicU64,
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl Stats {
    /// A job named `name` (as `daemon::job` names them) ended after `took`.
    pub fn job_done(&self, name: &str, took: Duration) {
        let run = Some(Run {
            ended: unix_now(),
            took: took.as_secs_f64(),
        });
        let slot = match name {
            "checks" => &self.checks,
            "FIM rescan" | "FIM verify" => &self.fim,
            _ => return,
        };
        *slot.lock().unwrap_or_else(PoisonError::into_inner) = run;
    }

    /// Events were delivered (acknowledged by the collector, or written to the events file).
    pub fn delivered(&self) {
        self.delivered_ms
            .store((unix_now() * 1000.0) as i64, Ordering::Relaxed);
    }

    /// Directories under inotify watch now.
    pub fn set_realtime_watches(&self, n: usize) {
        self.realtime_watches.store(n as u64, Ordering::Relaxed);
    }
}

/// Writes the metrics file at `path` from the state of `shared` now.
pub fn write(shared: &Shared, path: &Path) -> Result<(), MetricsError> {
    let text = render(shared)?;
    plumb_os::atomic::write_atomic(path, text.as_bytes(), 0o644, true).map_err(|source| {
        MetricsError::Write {
            path: path.display().to_string(),
            source,
        }
    })
}

/// A family of values with their labels.
type Values = Vec<(Vec<(&'static str, String)>, f64)>;

/// Every figure of one rendering, computed before encoding.
#[derive(Debug)]
struct Figures(Vec<Family>);

impl Collector for Figures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, values) in &self.0 {
            let mut metric = encoder.encode_descriptor(name, help, None, *kind)?;
            for (labels, v) in values {
                let e = metric.encode_family(labels)?;
                match kind {
                    MetricType::Counter => ConstCounter::new(*v).encode(e)?,
                    _ => ConstGauge::new(*v).encode(e)?,
                }
            }
        }
        Ok(())
    }
}

const SEVERITIES: [(Severity, &str); 5] = [
    (Severity::Info, "info"),
    (Severity::Low, "low"),
    (Severity::Medium, "medium"),
    (Severity::High, "high"),
    (Severity::Critical, "critical"),
];

/// One family: name, help, type and values.
type Family = (&'static str, &'static str, MetricType, Values);

/// A family of one unlabelled value.
fn one(v: f64) -> Values {
    vec![(Vec::new(), v)]
}

/// The file's text (Prometheus text format, by `prometheus-client`).
fn render(shared: &Shared) -> Result<String, MetricsError> {
    let now = unix_now();
    let stats = &shared.stats;
    let outbox = shared.outbox().stats()?;
    let stored = shared.outbox().checks()?;
    let policy = shared.policy();

    let mut f = Vec::new();
    delivery(&outbox, stats, now, &mut f);
    runs(stats, &mut f);
    in_force(&policy, &stored, stats, &mut f);

    let mut registry = Registry::with_prefix("plumb_agent");
    registry.register_collector(Box::new(Figures(f)));
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    Ok(out)
}

/// The outbox and the last delivery.
fn delivery(outbox: &OutboxStats, stats: &Stats, now: f64, f: &mut Vec<Family>) {
    f.push((
        "outbox_events",
        "Events in the outbox not yet delivered",
        MetricType::Gauge,
        one(outbox.waiting as f64),
    ));
    let oldest_age = outbox
        .oldest_time
        .as_deref()
        .and_then(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).ok()
        })
        .map(|t| (now - t.unix_timestamp() as f64).max(0.0))
        .unwrap_or(0.0);
    f.push((
        "outbox_oldest_event_age_seconds",
        "Age of the oldest undelivered event (0 when the outbox is empty)",
        MetricType::Gauge,
        one(oldest_age),
    ));
    f.push((
        "events_dropped",
        "Events dropped because the outbox was full (limits.outbox_max_events), since the state was created",
        MetricType::Counter,
        one(outbox.dropped as f64),
    ));
    let delivered = stats.delivered_ms.load(Ordering::Relaxed);
    if delivered > 0 {
        f.push((
            "last_delivery_timestamp_seconds",
            "When events were last delivered (collector acknowledgement or events file), since this agent started",
            MetricType::Gauge,
            one(delivered as f64 / 1000.0),
        ));
    }
}

/// The last check run and the last periodic FIM scan.
fn runs(stats: &Stats, f: &mut Vec<Family>) {
    let lock = |m: &Mutex<Option<Run>>| *m.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(r) = lock(&stats.checks) {
        f.push((
            "last_check_run_timestamp_seconds",
            "When the last check run ended",
            MetricType::Gauge,
            one(r.ended),
        ));
        f.push((
            "last_check_run_duration_seconds",
            "How long the last check run took",
            MetricType::Gauge,
            one(r.took),
        ));
    }
    if let Some(r) = lock(&stats.fim) {
        f.push((
            "last_fim_scan_timestamp_seconds",
            "When the last periodic FIM scan (rescan or verify) ended",
            MetricType::Gauge,
            one(r.ended),
        ));
        f.push((
            "last_fim_scan_duration_seconds",
            "How long the last periodic FIM scan took",
            MetricType::Gauge,
            one(r.took),
        ));
    }
}

/// The policy in force: failing rules, FIM watches, baselines, version.
fn in_force(policy: &Policy, stored: &[(String, StoredCheck)], stats: &Stats, f: &mut Vec<Family>) {
    // Failing rules of the policy in force, by the rule's severity.
    let failing: std::collections::HashSet<&str> = stored
        .iter()
        .filter(|(_, c)| c.status == Status::Fail)
        .map(|(id, _)| id.as_str())
        .collect();
    let mut by_severity = [0u64; 5];
    for r in policy.baselines.iter().flat_map(|b| &b.rules) {
        if failing.contains(r.id.as_str()) {
            if let Some(i) = SEVERITIES.iter().position(|(s, _)| *s == r.severity) {
                by_severity[i] += 1;
            }
        }
    }
    f.push((
        "failing_rules",
        "Rules failing at the last check run, by the rule's severity",
        MetricType::Gauge,
        SEVERITIES
            .iter()
            .zip(by_severity)
            .map(|((_, name), n)| (vec![("severity", (*name).to_string())], n as f64))
            .collect(),
    ));
    f.push((
        "fim_watch_rules",
        "FIM watches ([[fim]] entries) of the baselines in force",
        MetricType::Gauge,
        one(policy.fim_rules().len() as f64),
    ));
    f.push((
        "fim_realtime_watched_directories",
        "Directories under inotify watch for realtime FIM",
        MetricType::Gauge,
        one(stats.realtime_watches.load(Ordering::Relaxed) as f64),
    ));
    f.push((
        "baseline_info",
        "The baselines in force (always 1; id and version as labels)",
        MetricType::Gauge,
        policy
            .baselines
            .iter()
            .map(|b| {
                (
                    vec![
                        ("baseline", b.id.clone()),
                        ("version", b.version.to_string()),
                    ],
                    1.0,
                )
            })
            .collect(),
    ));
    f.push((
        "build_info",
        "The running agent's version (always 1)",
        MetricType::Gauge,
        vec![(
            vec![("version", env!("CARGO_PKG_VERSION").to_string())],
            1.0,
        )],
    ));
}
