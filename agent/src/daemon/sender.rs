//! Delivery to the collector: outbox batches over mutual TLS (TLS 1.3 only,
//! rustls with the ring provider) as `POST /v1/events`, to the first of the
//! configured collectors that answers (`failover.rs`). Only what the
//! collector acknowledges (`BatchAck.acked_seq`) leaves the outbox. Failures
//! back off exponentially with full jitter; `429`/`503` with `Retry-After`
//! are honoured; after a period of failures, or once delivery moved to
//! another collector, the first success is reported as "reconnected" to the
//! daemon, which follows it with a fresh snapshot so the collector catches
//! up on the full state. The same client asks for signed baselines
//! (`GET /v1/baselines`, `GET /v1/baselines/{id}`, and `GET /v1/baseline`
//! of older collectors).

use crate::daemon::config::Collector;
use crate::daemon::failover::{Call, Failover, Reply};
use crate::daemon::{Delivery, LastFlush, Shared};
use hyper::StatusCode;
use hyper::body::Bytes;
use plumb_core::event::{BatchAck, EVENT_SCHEMA, Event, EventBatch};
use rand::Rng;
use std::sync::Arc;
use std::time::Duration;

/// Largest reply body read from the collector.
const MAX_REPLY: usize = 64 * 1024;
/// Largest baseline reply read: a bundle's own cap (8 MiB + 4 KiB) and one
/// byte more, so an oversized one is refused by the bundle parser.
const MAX_BUNDLE_REPLY: usize = plumb_core::bundle::MAX_BUNDLE_BYTES as usize + 1;

/// The answer to `GET /v1/baseline` or `GET /v1/baselines/{id}`.
#[derive(Debug)]
pub enum Fetched {
    /// The collector has nothing for this host: keep what runs.
    NothingPublished,
    /// Same as the ETag sent.
    NotModified,
    /// A candidate bundle (not verified yet).
    Bundle {
        /// The bytes as received.
        bytes: Vec<u8>,
        /// Its ETag, for the next request.
        etag: Option<String>,
    },
}

/// Why a send did not go through.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The collector asked us to wait.
    #[error("collector busy (HTTP {status}), retry after {after:?}")]
    RetryAfter {
        /// The status.
        status: u16,
        /// How long.
        after: Duration,
    },
    /// 413: the batch is too large; send fewer events at once.
    #[error("collector refused the batch as too large (HTTP 413)")]
    TooLarge,
    /// 400: the collector will never accept this batch as it is.
    #[error("collector refused the batch (HTTP 400): {0}")]
    Rejected(String),
    /// Anything else: connection, TLS, HTTP status, bad reply.
    #[error("{0}")]
    Failed(String),
}

/// A connection to the collectors, re-established on demand, moving from
/// one to the next as [`Failover`] says.
pub struct Client {
    route: Failover,
    batch_size: usize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("route", &self.route)
            .finish()
    }
}

/// One entry of `GET /v1/baselines`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct Listed {
    /// Baseline id.
    pub id: String,
    /// Its newest version for this host.
    pub version: u64,
    /// The ETag `GET /v1/baselines/{id}` answers with.
    pub etag: String,
}

/// The answer to `GET /v1/baselines`.
#[derive(Debug)]
pub enum Listing {
    /// Every baseline id that applies to this host.
    Ids(Vec<Listed>),
    /// A collector older than the listing (`404`): only
    /// `GET /v1/baseline` is there.
    Unsupported,
}

impl Client {
    /// Builds the TLS client from the `[collector]` section.
    pub fn new(c: &Collector) -> anyhow::Result<Client> {
        use anyhow::Context;
        let mut roots = rustls::RootCertStore::empty();
        for cert in plumb_os::pem::load_certs(&c.ca)? {
            roots
                .add(cert)
                .with_context(|| format!("{}: not a usable CA certificate", c.ca.display()))?;
        }
        let certs = plumb_os::pem::load_certs(&c.cert)?;
        let key = plumb_os::pem::load_private_key(&c.key)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .context("TLS 1.3 with the ring provider")?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .with_context(|| {
                format!(
                    "{} / {}: certificate and key do not go together",
                    c.cert.display(),
                    c.key.display()
                )
            })?;
        Ok(Client {
            route: Failover::new(c, Arc::new(cfg))?,
            batch_size: c.batch_size,
        })
    }

    /// Whether requests moved to another collector since the last call.
    pub(crate) fn take_moved(&self) -> bool {
        self.route.take_moved()
    }

    /// Sends one batch; returns the acknowledged seq.
    pub async fn send(&self, host: &str, events: &[Event]) -> Result<u64, SendError> {
        let batch = EventBatch {
            schema: EVENT_SCHEMA,
            host: host.to_string(),
            events: events.to_vec(),
        };
        let body = serde_json::to_vec(&batch).map_err(|e| SendError::Failed(e.to_string()))?;
        let reply = self
            .route
            .exchange(&Call {
                method: hyper::Method::POST,
                path: "/v1/events".into(),
                headers: vec![(hyper::header::CONTENT_TYPE, "application/json".to_string())],
                body: Bytes::from(body),
                max_reply: MAX_REPLY,
            })
            .await?;
        let Reply {
            status,
            headers,
            body,
        } = reply;
        match status {
            StatusCode::TOO_MANY_REQUESTS => Err(busy(status, &headers)),
            StatusCode::PAYLOAD_TOO_LARGE => Err(SendError::TooLarge),
            StatusCode::BAD_REQUEST => Err(SendError::Rejected(excerpt(&body))),
            s if !s.is_success() => Err(SendError::Failed(format!(
                "collector replied {status}: {}",
                excerpt(&body)
            ))),
            _ => serde_json::from_slice::<BatchAck>(&body)
                .map(|ack| ack.acked_seq)
                .map_err(|e| SendError::Failed(format!("collector reply is not a BatchAck: {e}"))),
        }
    }

    /// `GET /v1/baselines`: the baseline ids that apply to this host.
    pub(crate) async fn list_baselines(&self) -> Result<Listing, SendError> {
        let reply = self
            .route
            .exchange(&get("/v1/baselines".into(), None, MAX_REPLY))
            .await?;
        match reply.status {
            StatusCode::OK => {
                #[derive(serde::Deserialize)]
                struct Doc {
                    baselines: Vec<Listed>,
                }
                serde_json::from_slice::<Doc>(&reply.body)
                    .map(|d| Listing::Ids(d.baselines))
                    .map_err(|e| {
                        SendError::Failed(format!("GET /v1/baselines: not a listing: {e}"))
                    })
            }
            StatusCode::NOT_FOUND => Ok(Listing::Unsupported),
            status => Err(unexpected("GET /v1/baselines", status, &reply)),
        }
    }

    /// `GET /v1/baseline` (`id` None: the one bundle older collectors
    /// serve) or `GET /v1/baselines/{id}`, with `If-None-Match: etag` when
    /// given.
    pub(crate) async fn fetch_baseline(
        &self,
        id: Option<&str>,
        etag: Option<&str>,
    ) -> Result<Fetched, SendError> {
        let path = match id {
            Some(id) => format!("/v1/baselines/{id}"),
            None => "/v1/baseline".to_string(),
        };
        // Over the bundle size cap: not a bundle; the reader refuses it
        // without holding more.
        let reply = self
            .route
            .exchange(&get(path.clone(), etag, MAX_BUNDLE_REPLY))
            .await?;
        match reply.status {
            StatusCode::OK => Ok(Fetched::Bundle {
                etag: reply
                    .headers
                    .get(hyper::header::ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string),
                bytes: reply.body.to_vec(),
            }),
            StatusCode::NOT_MODIFIED => Ok(Fetched::NotModified),
            StatusCode::NOT_FOUND => Ok(Fetched::NothingPublished),
            status => Err(unexpected(&format!("GET {path}"), status, &reply)),
        }
    }

    /// Sends everything in the outbox, batch by batch, until it is empty or
    /// a send fails. A 413 halves the batch (for the rest of this drain); a
    /// 400 is narrowed down to the one event the collector refuses. Such an
    /// event, or a single one still too large, is replaced under its seq by
    /// an `agent` error notice saying why, with the start of the original:
    /// never dropped silently, and the collector sees no gap. A notice
    /// refused in turn stops the drain with an error (kept, retried later).
    pub(crate) async fn send_pending(&self, shared: &Shared) -> Result<usize, SendError> {
        let failed = |e: crate::daemon::outbox::OutboxError| SendError::Failed(e.to_string());
        let mut sent = 0;
        let mut size = self.batch_size;
        // After a 400: one event at a time until the refused one is found.
        let mut narrowing = false;
        loop {
            let n = if narrowing { 1 } else { size };
            let batch = shared.outbox().peek(n).map_err(failed)?;
            let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
                return Ok(sent);
            };
            let (first, last) = (first.seq, last.seq);
            let acked = match self.send(&shared.host, &batch).await {
                Ok(a) => a,
                Err(SendError::TooLarge) if batch.len() > 1 => {
                    size = batch.len().div_ceil(2);
                    continue;
                }
                Err(SendError::Rejected(_)) if batch.len() > 1 => {
                    narrowing = true;
                    continue;
                }
                Err(e @ (SendError::Rejected(_) | SendError::TooLarge)) => {
                    let why = match e {
                        SendError::Rejected(why) => format!("the collector refuses it: {why}"),
                        _ => "it is larger than the collector accepts".to_string(),
                    };
                    let ev = &batch[0];
                    let notice = matches!(&ev.body,
                        plumb_core::event::EventBody::Agent(a) if a.message.starts_with(crate::daemon::outbox::UNDELIVERABLE));
                    if notice {
                        // A collector that refuses even this is misconfigured
                        // or speaks another protocol: replacing event after
                        // event would destroy the outbox. Keep everything.
                        return Err(SendError::Failed(format!(
                            "the collector refuses even the notice at seq {first} ({why}); delivery stops until it accepts it"
                        )));
                    }
                    tracing::error!(
                        "event seq {first} ({}) cannot be delivered: {why}",
                        ev.body.kind()
                    );
                    let original = serde_json::to_string(ev).unwrap_or_default();
                    let message = format!(
                        "event seq {first} ({}): {why}; it began: {}",
                        ev.body.kind(),
                        crate::daemon::outbox::excerpt(&original)
                    );
                    shared.outbox().replace(first, &message).map_err(failed)?;
                    narrowing = false;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if acked < first {
                return Err(SendError::Failed(format!(
                    "collector acknowledged seq {acked}, below the batch {first}..={last}"
                )));
            }
            // Never delete past what this batch carried.
            let upto = acked.min(last);
            shared.outbox().ack(upto).map_err(failed)?;
            shared.stats.delivered();
            sent += batch.iter().filter(|e| e.seq <= upto).count();
        }
    }
}

/// Exponential backoff with full jitter: a random wait in [0, min(cap, 1s·2^n)].
#[derive(Debug)]
pub struct Backoff {
    failures: u32,
    cap: Duration,
}

impl Backoff {
    /// A backoff capped at `cap`.
    pub fn new(cap: Duration) -> Backoff {
        Backoff { failures: 0, cap }
    }
    /// The next wait after a failure.
    pub fn next_wait(&mut self) -> Duration {
        let ceil = Duration::from_secs(1)
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.cap);
        self.failures = self.failures.saturating_add(1);
        let ms = u64::try_from(ceil.as_millis()).unwrap_or(u64::MAX).max(100);
        Duration::from_millis(rand::rng().random_range(100..=ms))
    }
    /// After a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
    /// Whether the last attempt failed.
    pub fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// Starts the delivery task that sends the outbox to the collector. After
/// a period of failures, or a move to another collector, the first success
/// is said on `reconnected` (a full channel: the daemon has not acted on
/// the last one yet).
pub fn spawn(
    shared: Arc<Shared>,
    c: Collector,
    reconnected: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Delivery> {
    let client = Arc::new(Client::new(&c)?);
    let cl = client.clone();
    let task = tokio::spawn(async move {
        let mut backoff = Backoff::new(c.max_backoff);
        loop {
            match cl.send_pending(&shared).await {
                Ok(_) => {
                    let moved = cl.take_moved();
                    if backoff.failing() || moved {
                        backoff.reset();
                        let _ = reconnected.try_send(());
                    }
                    tokio::select! {
                        _ = shared.delivery.notified() => {}
                        _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                    }
                }
                Err(SendError::RetryAfter { status, after }) => {
                    let wait = after_retry_after(after);
                    tracing::warn!(
                        "collector busy (HTTP {status}, Retry-After {}s); retrying in {wait:?}",
                        after.as_secs()
                    );
                    backoff.failures = backoff.failures.max(1);
                    tokio::time::sleep(wait).await;
                }
                Err(e) => {
                    let wait = backoff.next_wait();
                    tracing::warn!("sending events: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
            }
        }
    });
    Ok(Delivery {
        task,
        last: LastFlush::Sender(client),
    })
}

/// The wait after a `Retry-After`: never shorter than asked, plus up to a
/// fifth more at random so that a fleet turned away at once does not come
/// back at once; an hour at most.
fn after_retry_after(after: Duration) -> Duration {
    let after = after.min(Duration::from_secs(3600));
    let spread = u64::try_from(after.as_millis() / 5).unwrap_or(0);
    after + Duration::from_millis(rand::rng().random_range(0..=spread))
}

/// A `GET` of `path`.
fn get(path: String, etag: Option<&str>, max_reply: usize) -> Call {
    Call {
        method: hyper::Method::GET,
        path,
        headers: etag
            .map(|e| vec![(hyper::header::IF_NONE_MATCH, e.to_string())])
            .unwrap_or_default(),
        body: Bytes::new(),
        max_reply,
    }
}

/// A reply no request of the agent expects.
fn unexpected(what: &str, status: StatusCode, reply: &Reply) -> SendError {
    if status == StatusCode::TOO_MANY_REQUESTS {
        return busy(status, &reply.headers);
    }
    SendError::Failed(format!(
        "{what}: collector replied {status}: {}",
        excerpt(&reply.body)
    ))
}

/// A `5xx`: a `503` waits as `Retry-After` says (5 s without one); any
/// other is a failure. Either way [`Failover`] tries the next collector
/// first.
pub(crate) fn server_error(
    status: StatusCode,
    headers: &hyper::HeaderMap,
    body: &[u8],
) -> SendError {
    if status == StatusCode::SERVICE_UNAVAILABLE {
        return busy(status, headers);
    }
    SendError::Failed(format!("collector replied {status}: {}", excerpt(body)))
}

/// A 429 or 503: wait as `Retry-After` says (5 s without one).
fn busy(status: StatusCode, headers: &hyper::HeaderMap) -> SendError {
    SendError::RetryAfter {
        status: status.as_u16(),
        after: retry_after(headers).unwrap_or(Duration::from_secs(5)),
    }
}

/// The start of a reply's body, for a message (and the log: escaped, so a
/// reply cannot forge log lines).
fn excerpt(body: &[u8]) -> String {
    plumb_core::printable(&String::from_utf8_lossy(&body[..body.len().min(300)])).into_owned()
}

/// `Retry-After` in seconds (the collector never sends the date form).
fn retry_after(headers: &hyper::HeaderMap) -> Option<Duration> {
    headers
        .get(hyper::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_in_seconds() {
        let mut h = hyper::HeaderMap::new();
        assert_eq!(retry_after(&h), None);
        h.insert(hyper::header::RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
        h.insert(hyper::header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    #[test]
    fn a_retry_after_is_waited_in_full_with_some_spread() {
        for _ in 0..50 {
            let w = after_retry_after(Duration::from_secs(10));
            assert!(
                w >= Duration::from_secs(10) && w <= Duration::from_secs(12),
                "{w:?}"
            );
        }
        assert!(after_retry_after(Duration::from_secs(1 << 30)) <= Duration::from_secs(4320));
    }

    #[test]
    fn backoff_grows_to_the_cap_with_jitter() {
        let mut b = Backoff::new(Duration::from_secs(8));
        for _ in 0..10 {
            assert!(b.next_wait() <= Duration::from_secs(8));
        }
        assert!(b.failing());
        b.reset();
        assert!(b.next_wait() <= Duration::from_secs(1));
    }
}
