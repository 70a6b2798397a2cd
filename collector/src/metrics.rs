//! Prometheus metrics of the collector (docs/reference/metrics.md), in the
//! Prometheus text format written by `prometheus-client`.
//!
//! One [`Registry`], prefixed `plumb_collector_`; each module that has
//! something to count registers its own families with a
//! `register(&mut Registry, …)` function of its own (ingestion and the fleet
//! here, connections in `server/counters.rs`), so a new module adds its
//! metrics without touching the others. [`Exporter`] holds the registry and
//! renders it for a scrape, on the agents' mTLS listener (scraper
//! certificates only) and on the optional plain listener
//! (`server/metrics_listener.rs`).
//!
//! Values are read where they already live: connection gauges and refusals
//! from `ConnectionCounters`, the writer's queue from its channel, the fleet
//! from the store ([`crate::storage::Queries::fleet_summary`], a few
//! aggregate rows) at most once per `fleet_cache_secs` however many scrapes
//! arrive, one read at a time.

use crate::storage::writer::Job;
use crate::storage::{FleetSummary, Queries};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Every metric name starts with this (and `_`).
pub const PREFIX: &str = "plumb_collector";

/// `Content-Type` of a scrape answer (Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// A label set: (name, value) pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A new, empty registry with the collector's prefix.
pub fn registry() -> Registry {
    let mut r = Registry::with_prefix(PREFIX);
    // `Info` adds the `_info` suffix: plumb_collector_build_info.
    r.register(
        "build",
        "The running plumb-collector's version (always 1)",
        prometheus_client::metrics::info::Info::new(vec![(
            "version",
            env!("CARGO_PKG_VERSION").to_string(),
        )]),
    );
    r
}

/// The registry, ready to be scraped.
pub struct Exporter {
    registry: Registry,
    fleet: Option<Arc<Fleet>>,
}

impl std::fmt::Debug for Exporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Exporter").finish_non_exhaustive()
    }
}

impl Exporter {
    /// `fleet`: refreshed (when its cache is old) before each rendering.
    pub fn new(registry: Registry, fleet: Option<Arc<Fleet>>) -> Exporter {
        Exporter { registry, fleet }
    }

    /// The text of a scrape.
    pub async fn scrape(&self) -> String {
        if let Some(f) = &self.fleet {
            f.refresh().await;
        }
        let mut out = String::new();
        // Writing into a String cannot fail; an encoder error would be a
        // bug in a metric's encoding: say so rather than serve half a page.
        if let Err(e) =
            prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
        {
            tracing::error!("encoding the metrics: {e}");
            out.clear();
        }
        out
    }
}

/// Event kinds counted from the start (zeros included, so `rate()` sees
/// the first event of a kind).
const KINDS: [&str; 6] = [
    "check_changed",
    "fim_change",
    "fim_tamper",
    "snapshot",
    "remediation",
    "agent",
];

/// Ingestion: events by kind, batches by answer, latencies.
#[derive(Clone, Debug)]
pub struct Ingest {
    events: Family<Labels, Counter>,
    batches: Family<Labels, Counter>,
    batch_seconds: Histogram,
    /// Time of each group commit of the writer (one transaction).
    pub commit_seconds: Histogram,
}

impl Ingest {
    /// Registers the ingestion families.
    pub fn register(r: &mut Registry) -> Ingest {
        let i = Ingest {
            events: Family::default(),
            batches: Family::default(),
            // 1 ms .. ~16 s.
            batch_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            commit_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
        };
        for k in KINDS {
            let _ = i.events.get_or_create(&vec![("kind", k.to_string())]);
        }
        let _ = i
            .batches
            .get_or_create(&vec![("status", "200".to_string())]);
        r.register(
            "events_ingested",
            "Events stored from accepted batches, by kind (resent duplicates included)",
            i.events.clone(),
        );
        r.register(
            "batches",
            "POST /v1/events requests answered, by HTTP status",
            i.batches.clone(),
        );
        r.register(
            "batch_duration_seconds",
            "Time from a POST /v1/events request's routing to its answer",
            i.batch_seconds.clone(),
        );
        r.register(
            "storage_commit_duration_seconds",
            "Time of each group commit of the writer (one transaction, many batches)",
            i.commit_seconds.clone(),
        );
        i
    }

    /// `n` events of `kind` stored.
    pub fn events(&self, kind: &str, n: u64) {
        self.events
            .get_or_create(&vec![("kind", kind.to_string())])
            .inc_by(n);
    }

    /// One batch answered with `status` after `took`.
    pub fn batch(&self, status: u16, took: Duration) {
        self.batches
            .get_or_create(&vec![("status", status.to_string())])
            .inc();
        self.batch_seconds.observe(took.as_secs_f64());
    }
}

/// Writes one gauge or counter family computed at scrape time.
pub fn encode_family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    values: &[(Labels, f64)],
) -> Result<(), std::fmt::Error> {
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    for (labels, v) in values {
        let e = metric.encode_family(labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(*v).encode(e)?,
            _ => ConstGauge::new(*v).encode(e)?,
        }
    }
    Ok(())
}

/// The writer's queue depth, read from its channel at scrape time. Holds a
/// weak sender: the metrics never keep the writer running at shutdown.
#[derive(Debug)]
struct Queue(mpsc::WeakSender<Job>);

impl Collector for Queue {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let depth = self
            .0
            .upgrade()
            .map(|q| q.max_capacity() - q.capacity())
            .unwrap_or(0);
        encode_family(
            &mut encoder,
            "writer_queue_batches",
            "Jobs (batches, retention) queued for the writer and not yet taken",
            MetricType::Gauge,
            &[(Vec::new(), depth as f64)],
        )
    }
}

/// Registers the writer's queue depth.
pub(crate) fn register_queue(r: &mut Registry, queue: &mpsc::Sender<Job>) {
    r.register_collector(Box::new(Queue(queue.downgrade())));
}

/// The fleet figures, read from the store at most once per `max_age`.
pub struct Fleet {
    store: Arc<dyn Queries>,
    stale_after: u64,
    max_age: Duration,
    last: Mutex<Option<(Instant, FleetSummary)>>,
    /// One refresh at a time: a scrape storm waits for the read in flight.
    refreshing: tokio::sync::Mutex<()>,
    failures: Counter,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

impl Fleet {
    /// Registers the fleet figures read from `store`; a host unseen for
    /// `stale_after` seconds is stale.
    pub fn register(
        r: &mut Registry,
        store: Arc<dyn Queries>,
        stale_after: u64,
        max_age: Duration,
    ) -> Arc<Fleet> {
        let fleet = Arc::new(Fleet {
            store,
            stale_after,
            max_age,
            last: Mutex::new(None),
            refreshing: tokio::sync::Mutex::new(()),
            failures: Counter::default(),
        });
        r.register(
            "fleet_read_failures",
            "Reads of the fleet figures from the database that failed (the last figures are kept)",
            fleet.failures.clone(),
        );
        r.register_collector(Box::new(FleetFigures(fleet.clone())));
        fleet
    }

    fn current(&self) -> Option<(Instant, FleetSummary)> {
        self.last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Reads the figures again unless they are younger than `max_age`.
    async fn refresh(&self) {
        let _one = self.refreshing.lock().await;
        if let Some((at, _)) = self.current() {
            if at.elapsed() < self.max_age {
                return;
            }
        }
        let store = self.store.clone();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let stale_before = now - i64::try_from(self.stale_after).unwrap_or(i64::MAX / 2);
        match tokio::task::spawn_blocking(move || store.fleet_summary(stale_before)).await {
            Ok(Ok(s)) => {
                *self.last.lock().unwrap_or_else(PoisonError::into_inner) =
                    Some((Instant::now(), s));
            }
            Ok(Err(e)) => {
                self.failures.inc();
                tracing::warn!("metrics: reading the fleet figures: {e}");
            }
            Err(e) => {
                self.failures.inc();
                tracing::warn!("metrics: reading the fleet figures: {e}");
            }
        }
    }
}

/// The [`Collector`] that writes the last fleet figures.
#[derive(Debug)]
struct FleetFigures(Arc<Fleet>);

impl Collector for FleetFigures {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some((_, s)) = self.0.current() else {
            // Never read yet (the database was unavailable): no figures
            // rather than false zeros.
            return Ok(());
        };
        let one = |v: u64| vec![(Vec::new(), v as f64)];
        encode_family(
            &mut encoder,
            "hosts",
            "Hosts that ever reported",
            MetricType::Gauge,
            &one(s.hosts),
        )?;
        encode_family(
            &mut encoder,
            "hosts_stale",
            "Hosts not heard from for [hosts] interval_secs x stale_after_intervals",
            MetricType::Gauge,
            &one(s.stale),
        )?;
        encode_family(
            &mut encoder,
            "hosts_failing",
            "Hosts with at least one failing rule now",
            MetricType::Gauge,
            &one(s.failing),
        )?;
        let rules: Vec<(Labels, f64)> = [("pass", s.pass), ("fail", s.fail), ("error", s.error)]
            .into_iter()
            .map(|(st, n)| (vec![("status", st.to_string())], n as f64))
            .collect();
        encode_family(
            &mut encoder,
            "rules",
            "Rule statuses over every host now, by status (skipped rules not counted)",
            MetricType::Gauge,
            &rules,
        )?;
        let counted = s.pass + s.fail + s.error;
        if counted > 0 {
            encode_family(
                &mut encoder,
                "fleet_score_ratio",
                "Passing rules over passing, failing and in-error rules of every host (0..1; x100 is the score `hosts` shows)",
                MetricType::Gauge,
                &[(Vec::new(), s.pass as f64 / counted as f64)],
            )?;
        }
        let baselines: Vec<(Labels, f64)> = s
            .baselines
            .iter()
            .map(|(id, version, n)| {
                (
                    vec![
                        ("baseline", id.clone().unwrap_or_default()),
                        (
                            "version",
                            version.map(|v| v.to_string()).unwrap_or_default(),
                        ),
                    ],
                    *n as f64,
                )
            })
            .collect();
        encode_family(
            &mut encoder,
            "hosts_by_baseline",
            "Hosts per baseline id and version in force (empty labels: not reported yet)",
            MetricType::Gauge,
            &baselines,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_prefix_and_units() {
        let mut r = registry();
        let i = Ingest::register(&mut r);
        i.events("fim_change", 3);
        i.batch(200, Duration::from_millis(5));
        i.batch(429, Duration::from_millis(1));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &r).unwrap();
        assert!(
            out.contains("plumb_collector_events_ingested_total{kind=\"fim_change\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("plumb_collector_events_ingested_total{kind=\"snapshot\"} 0\n"));
        assert!(out.contains("plumb_collector_batches_total{status=\"429\"} 1\n"));
        assert!(out.contains("plumb_collector_batch_duration_seconds_count 2\n"));
        assert!(out.contains("# TYPE plumb_collector_storage_commit_duration_seconds histogram"));
        assert!(out.contains("plumb_collector_build_info{version="));
    }
}
