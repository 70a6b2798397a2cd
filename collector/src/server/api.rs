//! The `/v1` API: what a request handler shares, the routing, and the JSON
//! answers every endpoint gives.

use crate::config::{Config, MetricsSection};
use crate::metrics::{Exporter, Ingest};
use crate::storage::Queries;
use crate::storage::writer::Job;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;

/// What the request handlers share.
pub(super) struct State {
    /// The writer's queue.
    pub(super) queue: mpsc::Sender<Job>,
    /// Batches admitted (being read, parsed, queued or stored). Taken before
    /// the body is read, so memory stays bounded by
    /// `queue_batches * max_body_bytes` whatever the number of connections.
    pub(super) admitted: Arc<Semaphore>,
    pub(super) max_body: usize,
    pub(super) queue_wait: Duration,
    pub(super) retry_after: u64,
    /// Where `GET /v1/baseline` and `GET /v1/baselines[/{id}]` look.
    pub(super) baselines: Arc<dyn Queries>,
    /// Ingestion metrics.
    pub(super) ingest: Ingest,
    /// `GET /metrics`, for the identities in `[metrics] scrapers`.
    pub(super) exporter: Arc<Exporter>,
    pub(super) metrics: MetricsSection,
}

impl State {
    pub(super) fn new(
        cfg: &Config,
        queue: mpsc::Sender<Job>,
        baselines: Arc<dyn Queries>,
        ingest: Ingest,
        exporter: Arc<Exporter>,
    ) -> State {
        State {
            queue,
            admitted: Arc::new(Semaphore::new(cfg.storage.queue_batches)),
            max_body: cfg.server.max_body_bytes,
            queue_wait: Duration::from_millis(cfg.storage.queue_wait_ms),
            retry_after: cfg.storage.retry_after_secs,
            baselines,
            ingest,
            exporter,
            metrics: cfg.metrics.clone(),
        }
    }
}

/// The authenticated peer of a connection.
#[derive(Debug, Clone)]
pub(super) struct Peer {
    /// Host identity from the client certificate.
    pub(super) identity: Arc<str>,
    /// IP address.
    pub(super) address: Arc<str>,
    /// An operator certificate (the console's), which this API refuses.
    pub(super) operator: bool,
}

pub(super) type Resp = Response<Full<Bytes>>;

/// Routes one request. `deadline`: when the whole request, head and body,
/// must have arrived (`request_timeout_secs` from its first byte).
pub(super) async fn handle(
    state: Arc<State>,
    peer: Peer,
    req: Request<Incoming>,
    deadline: Instant,
) -> Resp {
    let path = req.uri().path().to_string();
    if peer.operator {
        // Role separation: an operator certificate opens the console only.
        return error(
            StatusCode::FORBIDDEN,
            "an operator certificate cannot use the agent API (it opens the console)",
        );
    }
    // A scraper's certificate reads the metrics and does nothing else (it
    // is no host); an agent's may not read them.
    let scraper = state.metrics.is_scraper(&peer.identity);
    match (req.method(), path.as_str()) {
        (&Method::GET, "/metrics") if scraper => {
            super::metrics_listener::answer(&state.exporter).await
        }
        (&Method::GET, "/metrics") => error(
            StatusCode::FORBIDDEN,
            format!(
                "{:?} may not read /metrics (not in [metrics] scrapers)",
                peer.identity
            ),
        ),
        (_, "/metrics") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ if scraper => error(
            StatusCode::FORBIDDEN,
            format!(
                "{:?} is a metrics scraper: it may only GET /metrics",
                peer.identity
            ),
        ),
        (&Method::POST, "/v1/events") => {
            let started = Instant::now();
            let resp = super::events::post(&state, &peer, req, deadline).await;
            state
                .ingest
                .batch(resp.status().as_u16(), started.elapsed());
            resp
        }
        (&Method::GET, "/v1/baseline") => super::baseline::get(&state, &peer, &req).await,
        (&Method::GET, "/v1/baselines") => super::baselines::list(&state, &peer).await,
        (&Method::GET, p) if p.starts_with(super::baselines::PREFIX) => {
            let id = &p[super::baselines::PREFIX.len()..];
            super::baselines::get(&state, &peer, &req, id).await
        }
        (&Method::GET, "/v1/health") => json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
        ),
        (_, "/v1/events" | "/v1/baseline" | "/v1/baselines" | "/v1/health") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        (_, p) if p.starts_with(super::baselines::PREFIX) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    }
}

pub(super) fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

/// `{"error": reason}` with `status`.
pub(super) fn error(status: StatusCode, reason: impl Into<String>) -> Resp {
    json_response(status, &serde_json::json!({ "error": reason.into() }))
}

/// An error the agent should retry after `secs` (429, 503).
pub(super) fn retry_later(status: StatusCode, reason: &str, secs: u64) -> Resp {
    let mut r = error(status, reason);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}
