//! Forwarding and alert metrics as prometheus-client families. The
//! collector's registry takes them through [`ForwardMetrics::register`].

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::{Registry, Unit};
use std::sync::atomic::AtomicU64;

/// The `sink` label.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SinkLabel {
    /// The sink's name.
    pub sink: String,
}

/// The labels of an alert outcome.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AlertLabels {
    /// The `[[alert]]` name.
    pub alert: String,
    /// `sent`, `failed` (every retry failed) or `deduplicated`.
    pub outcome: String,
}

/// Every forwarding and alert metric.
#[derive(Debug, Default)]
pub struct ForwardMetrics {
    /// Events acknowledged by each sink.
    pub forwarded: Family<SinkLabel, Counter>,
    /// Events passed over by each sink's filter (its cursor moves past them).
    pub filtered: Family<SinkLabel, Counter>,
    /// Failed delivery attempts per sink (each retried after a backoff).
    pub failures: Family<SinkLabel, Counter>,
    /// Age of the oldest event not yet acknowledged by each sink (0 when
    /// it is caught up), from its reception by the collector.
    pub lag: Family<SinkLabel, Gauge<f64, AtomicU64>>,
    /// Alerts by outcome.
    pub alerts: Family<AlertLabels, Counter>,
}

impl ForwardMetrics {
    /// Registers every family in `registry` (the collector's, prefixed `plumb_collector_`):
    /// `plumb_collector_forward_events_total{sink}`, `plumb_collector_forward_filtered_events_total{sink}`,
    /// `plumb_collector_forward_failures_total{sink}`, `plumb_collector_forward_lag_seconds{sink}`,
    /// `plumb_collector_alerts_total{alert,outcome}`.
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "forward_events",
            "Events acknowledged by each forwarding sink",
            self.forwarded.clone(),
        );
        registry.register(
            "forward_filtered_events",
            "Events each forwarding sink's filter passed over",
            self.filtered.clone(),
        );
        registry.register(
            "forward_failures",
            "Failed delivery attempts per forwarding sink (retried with backoff)",
            self.failures.clone(),
        );
        registry.register_with_unit(
            "forward_lag",
            "Age of the oldest event not yet acknowledged by each sink (0 when caught up)",
            Unit::Seconds,
            self.lag.clone(),
        );
        registry.register(
            "alerts",
            "Alerts by outcome: sent, failed (every retry failed), deduplicated",
            self.alerts.clone(),
        );
    }

    pub(crate) fn sink(name: &str) -> SinkLabel {
        SinkLabel {
            sink: name.to_string(),
        }
    }

    /// Counts one alert outcome.
    pub(crate) fn alert(&self, alert: &str, outcome: &str) {
        self.alerts
            .get_or_create(&AlertLabels {
                alert: alert.to_string(),
                outcome: outcome.to_string(),
            })
            .inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_follow_the_naming_conventions() {
        let m = ForwardMetrics::default();
        m.forwarded
            .get_or_create(&ForwardMetrics::sink("siem"))
            .inc_by(3);
        m.lag.get_or_create(&ForwardMetrics::sink("siem")).set(1.5);
        m.alert("tamper", "sent");
        let mut r = Registry::with_prefix("plumb_collector");
        m.register(&mut r);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &r).unwrap();
        assert!(
            text.contains("plumb_collector_forward_events_total{sink=\"siem\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("# UNIT plumb_collector_forward_lag_seconds seconds"),
            "{text}"
        );
        assert!(
            text.contains("plumb_collector_forward_lag_seconds{sink=\"siem\"} 1.5"),
            "{text}"
        );
        assert!(
            text.contains("plumb_collector_alerts_total{alert=\"tamper\",outcome=\"sent\"} 1"),
            "{text}"
        );
    }
}
