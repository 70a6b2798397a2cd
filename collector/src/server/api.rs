//! The `/v1` API: what a request handler shares, the routing, and the JSON
//! answers every endpoint gives.

use crate::config::Config;
use crate::storage::Queries;
use crate::storage::writer::Job;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};

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
    pub(super) request_timeout: Duration,
    pub(super) retry_after: u64,
    /// Where `GET /v1/baseline` looks.
    pub(super) baselines: Arc<dyn Queries>,
    /// Serials revoked in the store (PostgreSQL), refreshed by a poller;
    /// empty with SQLite, whose revocations are the CRL files checked at the
    /// handshake.
    pub(super) revoked: RwLock<HashSet<String>>,
}

impl State {
    pub(super) fn new(
        cfg: &Config,
        queue: mpsc::Sender<Job>,
        baselines: Arc<dyn Queries>,
    ) -> State {
        State {
            queue,
            admitted: Arc::new(Semaphore::new(cfg.storage.queue_batches)),
            max_body: cfg.server.max_body_bytes,
            queue_wait: Duration::from_millis(cfg.storage.queue_wait_ms),
            request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
            retry_after: cfg.storage.retry_after_secs,
            baselines,
            revoked: RwLock::new(HashSet::new()),
        }
    }

    /// Whether the store lists this certificate serial as revoked.
    pub(super) fn is_revoked(&self, serial: &str) -> bool {
        match self.revoked.read() {
            Ok(set) => set.contains(serial),
            Err(p) => p.into_inner().contains(serial),
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
    /// Client certificate serial (lowercase hex).
    pub(super) serial: Arc<str>,
}

pub(super) type Resp = Response<Full<Bytes>>;

/// Routes one request.
pub(super) async fn handle(
    state: Arc<State>,
    peer: Peer,
    req: Request<Incoming>,
) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    // Revocations recorded in the database reach every collector by
    // polling; an open keep-alive connection is refused from then on too.
    if state.is_revoked(&peer.serial) {
        tracing::warn!(identity = %peer.identity, serial = %peer.serial, "certificate revoked; refused");
        let mut resp = error(StatusCode::FORBIDDEN, "this certificate is revoked");
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        return Ok(resp);
    }
    let resp = match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/events") => super::events::post(&state, &peer, req).await,
        (&Method::GET, "/v1/baseline") => super::baseline::get(&state, &peer, &req).await,
        (&Method::GET, "/v1/health") => json_response(
            StatusCode::OK,
            &serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}),
        ),
        (_, "/v1/events" | "/v1/baseline" | "/v1/health") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{} is not allowed on {path}", req.method()),
        ),
        _ => error(StatusCode::NOT_FOUND, format!("no such path: {path}")),
    };
    Ok(resp)
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
