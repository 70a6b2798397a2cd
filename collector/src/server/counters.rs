//! Connection counters: how many connections are handshaking and
//! authenticated now, and how many were refused, by reason, since the start.
//! The server updates them; a summary line is logged once per interval
//! (never one line per refused peer: a flood of half-open handshakes must
//! not become a flood of log lines); a metrics endpoint reads the same
//! numbers ([`ConnectionCounters::snapshot`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why a connection did not become (or stay) an authenticated one before
/// any request: handshakes that failed, and connections turned away by a cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// The handshake did not finish within `handshake_timeout_secs`.
    Timeout,
    /// The peer closed or reset the connection during the handshake.
    Closed,
    /// Not TLS 1.3, or not TLS at all.
    Protocol,
    /// The peer ended the handshake with an alert (it refused us).
    PeerAlert,
    /// No client certificate.
    NoCertificate,
    /// A certificate from another CA.
    UnknownCa,
    /// Expired or not yet valid.
    Expired,
    /// Revoked (a CRL, or another revocation source).
    Revoked,
    /// Its revocation status is unknown to the CRLs (another issuer).
    RevocationUnknown,
    /// A CRL past its `nextUpdate` under `require_fresh_crl`.
    StaleCrl,
    /// Without the clientAuth extended key usage.
    NotClientAuth,
    /// Any other certificate problem.
    BadCertificate,
    /// A certificate that names no host.
    NoIdentity,
    /// Any other TLS failure.
    Other,
    /// `max_handshakes_per_address` handshakes from that address already.
    AddressCap,
    /// `max_handshakes` handshakes in progress already.
    HandshakeCap,
    /// `max_connections` authenticated connections already.
    ConnectionLimit,
}

impl Refused {
    const ALL: [Refused; 17] = [
        Refused::Timeout,
        Refused::Closed,
        Refused::Protocol,
        Refused::PeerAlert,
        Refused::NoCertificate,
        Refused::UnknownCa,
        Refused::Expired,
        Refused::Revoked,
        Refused::RevocationUnknown,
        Refused::StaleCrl,
        Refused::NotClientAuth,
        Refused::BadCertificate,
        Refused::NoIdentity,
        Refused::Other,
        Refused::AddressCap,
        Refused::HandshakeCap,
        Refused::ConnectionLimit,
    ];

    /// The reason as the log and metrics name it.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Refused::Timeout => "timeout",
            Refused::Closed => "closed by peer",
            Refused::Protocol => "not TLS 1.3",
            Refused::PeerAlert => "alert from peer",
            Refused::NoCertificate => "no certificate",
            Refused::UnknownCa => "unknown CA",
            Refused::Expired => "expired",
            Refused::Revoked => "revoked",
            Refused::RevocationUnknown => "revocation status unknown",
            Refused::StaleCrl => "stale CRL",
            Refused::NotClientAuth => "no clientAuth EKU",
            Refused::BadCertificate => "bad certificate",
            Refused::NoIdentity => "no host identity",
            Refused::Other => "other TLS error",
            Refused::AddressCap => "per-address handshake cap",
            Refused::HandshakeCap => "handshake cap",
            Refused::ConnectionLimit => "connection limit",
        }
    }

    /// The reason as a metric label value (`reason="unknown_ca"`).
    pub(crate) fn key(self) -> &'static str {
        match self {
            Refused::Timeout => "timeout",
            Refused::Closed => "closed_by_peer",
            Refused::Protocol => "not_tls13",
            Refused::PeerAlert => "alert_from_peer",
            Refused::NoCertificate => "no_certificate",
            Refused::UnknownCa => "unknown_ca",
            Refused::Expired => "expired",
            Refused::Revoked => "revoked",
            Refused::RevocationUnknown => "revocation_unknown",
            Refused::StaleCrl => "stale_crl",
            Refused::NotClientAuth => "no_client_auth_eku",
            Refused::BadCertificate => "bad_certificate",
            Refused::NoIdentity => "no_host_identity",
            Refused::Other => "other_tls_error",
            Refused::AddressCap => "per_address_handshake_cap",
            Refused::HandshakeCap => "handshake_cap",
            Refused::ConnectionLimit => "connection_limit",
        }
    }

    fn index(self) -> usize {
        Refused::ALL.iter().position(|&r| r == self).unwrap_or(0)
    }

    /// The reason of a failed TLS handshake (as tokio-rustls reports it).
    pub(crate) fn of_handshake_error(e: &std::io::Error) -> Refused {
        use rustls::{CertificateError as C, Error as E};
        let Some(tls) = e.get_ref().and_then(|i| i.downcast_ref::<E>()) else {
            return match e.kind() {
                std::io::ErrorKind::UnexpectedEof
                | std::io::ErrorKind::ConnectionReset
                | std::io::ErrorKind::ConnectionAborted
                | std::io::ErrorKind::BrokenPipe => Refused::Closed,
                std::io::ErrorKind::InvalidData => Refused::Protocol,
                _ => Refused::Other,
            };
        };
        match tls {
            E::NoCertificatesPresented => Refused::NoCertificate,
            E::InvalidCertificate(c) => match c {
                C::UnknownIssuer | C::BadSignature => Refused::UnknownCa,
                C::Expired
                | C::ExpiredContext { .. }
                | C::NotValidYet
                | C::NotValidYetContext { .. } => Refused::Expired,
                C::Revoked => Refused::Revoked,
                C::UnknownRevocationStatus => Refused::RevocationUnknown,
                C::ExpiredRevocationList | C::ExpiredRevocationListContext { .. } => {
                    Refused::StaleCrl
                }
                C::InvalidPurpose | C::InvalidPurposeContext { .. } => Refused::NotClientAuth,
                _ => Refused::BadCertificate,
            },
            E::InappropriateMessage { .. }
            | E::InappropriateHandshakeMessage { .. }
            | E::InvalidMessage(_)
            | E::PeerIncompatible(_)
            | E::PeerMisbehaved(_)
            | E::PeerSentOversizedRecord
            | E::NoApplicationProtocol => Refused::Protocol,
            E::AlertReceived(_) => Refused::PeerAlert,
            _ => Refused::Other,
        }
    }
}

/// The counters. Cheap to update from every connection (relaxed atomics).
#[derive(Debug, Default)]
pub(crate) struct ConnectionCounters {
    handshaking: AtomicU64,
    authenticated: AtomicU64,
    refused: [AtomicU64; Refused::ALL.len()],
}

/// The counters at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    /// Connections in their TLS handshake now.
    pub(crate) handshaking: u64,
    /// Authenticated connections open now.
    pub(crate) authenticated: u64,
    /// Connections refused since the start, by reason (every reason, in a
    /// fixed order, zeros included).
    pub(crate) refused: Vec<(&'static str, u64)>,
}

impl ConnectionCounters {
    /// One more connection refused for `why`.
    pub(crate) fn count(&self, why: Refused) {
        self.refused[why.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a connection as handshaking while the guard lives.
    pub(crate) fn handshaking(self: &Arc<Self>) -> Gauge {
        Gauge::new(self.clone(), |c| &c.handshaking)
    }

    /// Counts a connection as authenticated while the guard lives.
    pub(crate) fn authenticated(self: &Arc<Self>) -> Gauge {
        Gauge::new(self.clone(), |c| &c.authenticated)
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> Snapshot {
        Snapshot {
            handshaking: self.handshaking.load(Ordering::Relaxed),
            authenticated: self.authenticated.load(Ordering::Relaxed),
            refused: Refused::ALL
                .iter()
                .map(|r| (r.label(), self.refused[r.index()].load(Ordering::Relaxed)))
                .collect(),
        }
    }
}

/// The counters as metrics, read from [`ConnectionCounters::snapshot`] at
/// each scrape.
#[derive(Debug)]
struct Metrics(Arc<ConnectionCounters>);

impl prometheus_client::collector::Collector for Metrics {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder,
    ) -> Result<(), std::fmt::Error> {
        use crate::metrics::encode_family;
        use prometheus_client::metrics::MetricType;
        let s = self.0.snapshot();
        encode_family(
            &mut encoder,
            "connections",
            "Connections open now: in their TLS handshake, or authenticated",
            MetricType::Gauge,
            &[
                (vec![("state", "handshaking".into())], s.handshaking as f64),
                (
                    vec![("state", "authenticated".into())],
                    s.authenticated as f64,
                ),
            ],
        )?;
        // `snapshot` lists every reason in the order of `Refused::ALL`.
        let refused: Vec<_> = Refused::ALL
            .iter()
            .zip(&s.refused)
            .map(|(r, &(_, n))| (vec![("reason", r.key().to_string())], n as f64))
            .collect();
        encode_family(
            &mut encoder,
            "connections_refused",
            "Connections that failed their TLS handshake or were turned away by a cap, by reason",
            MetricType::Counter,
            &refused,
        )
    }
}

/// Registers the connection gauges and refusals.
pub(crate) fn register(r: &mut prometheus_client::registry::Registry, c: Arc<ConnectionCounters>) {
    r.register_collector(Box::new(Metrics(c)));
}

/// One connection counted in a gauge until dropped.
pub(crate) struct Gauge {
    counters: Arc<ConnectionCounters>,
    which: fn(&ConnectionCounters) -> &AtomicU64,
}

impl Gauge {
    fn new(
        counters: Arc<ConnectionCounters>,
        which: fn(&ConnectionCounters) -> &AtomicU64,
    ) -> Gauge {
        which(&counters).fetch_add(1, Ordering::Relaxed);
        Gauge { counters, which }
    }
}

impl Drop for Gauge {
    fn drop(&mut self) {
        (self.which)(&self.counters).fetch_sub(1, Ordering::Relaxed);
    }
}

/// The summary line for what was refused between two snapshots; `None`
/// when nothing was.
pub(crate) fn summary(before: &Snapshot, now: &Snapshot, every: Duration) -> Option<String> {
    let deltas: Vec<(&str, u64)> = now
        .refused
        .iter()
        .zip(&before.refused)
        .map(|(&(label, n), &(_, b))| (label, n.saturating_sub(b)))
        .filter(|&(_, d)| d > 0)
        .collect();
    let total: u64 = deltas.iter().map(|&(_, d)| d).sum();
    if total == 0 {
        return None;
    }
    let reasons: Vec<String> = deltas.iter().map(|(l, d)| format!("{l} {d}")).collect();
    Some(format!(
        "refused connections in the last {}s: {total} ({}); now {} handshaking, {} authenticated",
        every.as_secs(),
        reasons.join(", "),
        now.handshaking,
        now.authenticated
    ))
}

/// Logs [`summary`] once per `every`, while the task runs.
pub(crate) fn spawn_summary(counters: Arc<ConnectionCounters>, every: Duration) -> JoinHandle<()> {
    // Now, not when the task first runs: connections accepted meanwhile
    // must be in the first summary.
    let mut before = counters.snapshot();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tick.tick().await;
            let now = counters.snapshot();
            if let Some(line) = summary(&before, &now, every) {
                tracing::warn!("{line}");
            }
            before = now;
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_counts_each_reason_in_the_interval() {
        let c = Arc::new(ConnectionCounters::default());
        let before = c.snapshot();
        assert_eq!(
            summary(&before, &c.snapshot(), Duration::from_secs(60)),
            None
        );
        for _ in 0..480 {
            c.count(Refused::Timeout);
        }
        for _ in 0..20 {
            c.count(Refused::NoCertificate);
        }
        c.count(Refused::AddressCap);
        let _h = c.handshaking();
        let line = summary(&before, &c.snapshot(), Duration::from_secs(60)).unwrap();
        assert_eq!(
            line,
            "refused connections in the last 60s: 501 (timeout 480, no certificate 20, \
             per-address handshake cap 1); now 1 handshaking, 0 authenticated"
        );
        drop(_h);
        assert_eq!(c.snapshot().handshaking, 0);
    }

    #[test]
    fn handshake_errors_are_sorted_by_reason() {
        let tls = |e: rustls::Error| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        let cert = |e| tls(rustls::Error::InvalidCertificate(e));
        use rustls::CertificateError as C;
        assert_eq!(
            Refused::of_handshake_error(&tls(rustls::Error::NoCertificatesPresented)),
            Refused::NoCertificate
        );
        assert_eq!(
            Refused::of_handshake_error(&cert(C::Revoked)),
            Refused::Revoked
        );
        assert_eq!(
            Refused::of_handshake_error(&cert(C::InvalidPurpose)),
            Refused::NotClientAuth
        );
        assert_eq!(
            Refused::of_handshake_error(&cert(C::UnknownIssuer)),
            Refused::UnknownCa
        );
        let eof = std::io::Error::from(std::io::ErrorKind::UnexpectedEof);
        assert_eq!(Refused::of_handshake_error(&eof), Refused::Closed);
    }
}
