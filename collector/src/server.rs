//! `plumb-collector serve`: HTTPS over mutual TLS (tokio-rustls + hyper),
//! the `/v1` API, and the lifecycle (READY=1, SIGHUP reload, graceful stop).

use crate::config::Config;
use crate::storage::writer::{self, Job};
use crate::storage::{IngestBatch, Storage};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, RETRY_AFTER};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use plumb_core::event::{BatchAck, EVENT_SCHEMA, EventBatch};
use plumb_os::notify::Notifier;
use plumb_os::signals::Signal;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{Semaphore, mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

/// A failure that stops the server.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Socket or thread setup.
    #[error("{context}: {source}")]
    Io {
        /// what was being done
        context: String,
        /// the error
        source: std::io::Error,
    },
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// Database.
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
}

/// A signed baseline bundle as served by `GET /v1/baseline`.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// The bundle bytes, served as they are.
    pub bytes: Bytes,
    /// Its ETag (quoted).
    pub etag: String,
}

/// The answer of a [`BaselineStore`].
#[derive(Debug, Clone)]
pub enum Served {
    /// Nothing published applies to this host.
    Nothing,
    /// The agent already has it (its `If-None-Match` names this ETag).
    NotModified(String),
    /// The bundle to send.
    Bundle(Bundle),
}

/// Where `GET /v1/baseline` looks.
pub trait BaselineStore: Send + Sync {
    /// The newest bundle for `host`; `NotModified` when its ETag is one of
    /// `if_none_match`. An `Err` is a storage failure (503).
    fn latest(&self, host: &str, if_none_match: Option<&str>) -> Result<Served, String>;
}

/// A baseline store with nothing published.
#[derive(Debug, Default)]
pub struct NoBaselines;

impl BaselineStore for NoBaselines {
    fn latest(&self, _host: &str, _inm: Option<&str>) -> Result<Served, String> {
        Ok(Served::Nothing)
    }
}

/// The strong ETag of a bundle whose SHA-256 (hex) is `sha256`.
pub fn etag_of(sha256: &str) -> String {
    format!("\"sha256:{sha256}\"")
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`).
/// Weak validators (`W/"..."`) compare by their opaque tag, as RFC 9110
/// prescribes for `If-None-Match`.
pub fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// The published baselines in the collector's SQLite database. Each request
/// reads the row index (small) and only fetches the bytes when the agent
/// does not have them already.
pub struct SqliteBaselines {
    conn: std::sync::Mutex<crate::storage::sqlite::Sqlite>,
}

impl std::fmt::Debug for SqliteBaselines {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteBaselines").finish_non_exhaustive()
    }
}

impl SqliteBaselines {
    /// Opens the database (already migrated by the writer) read-only.
    pub fn open(path: &std::path::Path) -> Result<SqliteBaselines, crate::storage::StorageError> {
        Ok(SqliteBaselines {
            conn: std::sync::Mutex::new(crate::storage::sqlite::Sqlite::open_read_only(path)?),
        })
    }
}

impl BaselineStore for SqliteBaselines {
    fn latest(&self, host: &str, if_none_match: Option<&str>) -> Result<Served, String> {
        // A poisoned lock only means a reader panicked; the connection holds
        // no state between queries.
        let db = self
            .conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Some(row) = db.baseline_for(host).map_err(|e| e.to_string())? else {
            return Ok(Served::Nothing);
        };
        let etag = etag_of(&row.sha256);
        if if_none_match.is_some_and(|h| none_match(h, &etag)) {
            return Ok(Served::NotModified(etag));
        }
        match db
            .baseline_bytes(&row.id, row.version)
            .map_err(|e| e.to_string())?
        {
            Some(bytes) => Ok(Served::Bundle(Bundle {
                bytes: Bytes::from(bytes),
                etag,
            })),
            // Deleted between the two reads.
            None => Ok(Served::Nothing),
        }
    }
}

/// What the request handlers share.
struct State {
    queue: mpsc::Sender<Job>,
    /// Batches admitted (being read, parsed, queued or stored). Taken before
    /// the body is read, so memory stays bounded by
    /// `queue_batches * max_body_bytes` whatever the number of connections.
    admitted: Arc<Semaphore>,
    max_body: usize,
    queue_wait: Duration,
    request_timeout: Duration,
    retry_after: u64,
    baselines: Arc<dyn BaselineStore>,
}

/// The authenticated peer of a connection.
#[derive(Debug, Clone)]
struct Peer {
    identity: Arc<str>,
    address: Arc<str>,
}

type Resp = Response<Full<Bytes>>;

fn json_response(status: StatusCode, body: &impl serde::Serialize) -> Resp {
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    let mut r = Response::new(Full::new(Bytes::from(bytes)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn error(status: StatusCode, reason: impl Into<String>) -> Resp {
    json_response(status, &serde_json::json!({ "error": reason.into() }))
}

fn retry_later(status: StatusCode, reason: &str, secs: u64) -> Resp {
    let mut r = error(status, reason);
    r.headers_mut().insert(RETRY_AFTER, HeaderValue::from(secs));
    r
}

/// Checks a parsed batch against the rules of the contract. Returns the
/// status and reason to refuse it with.
pub fn validate_batch(batch: &EventBatch, identity: &str) -> Result<(), (StatusCode, String)> {
    if batch.schema != EVENT_SCHEMA {
        return Err((
            StatusCode::BAD_REQUEST,
            format!(
                "schema {} is not supported (this collector speaks schema {EVENT_SCHEMA})",
                batch.schema
            ),
        ));
    }
    if !batch.host.eq_ignore_ascii_case(identity) {
        return Err((
            StatusCode::FORBIDDEN,
            format!(
                "batch host {:?} does not match the client certificate identity {:?}",
                batch.host, identity
            ),
        ));
    }
    let mut prev = 0u64;
    for e in &batch.events {
        if e.seq == 0 {
            return Err((
                StatusCode::BAD_REQUEST,
                "event seq 0: seq starts at 1".into(),
            ));
        }
        if e.seq <= prev {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "event seq {} after seq {prev}: events must be in strictly increasing seq order",
                    e.seq
                ),
            ));
        }
        prev = e.seq;
        if crate::storage::sqlite::event_time(e).is_none() {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "event seq {}: time {:?} is not an RFC 3339 date-time",
                    e.seq, e.time
                ),
            ));
        }
    }
    Ok(())
}

async fn handle(state: Arc<State>, peer: Peer, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let path = req.uri().path().to_string();
    let resp = match (req.method(), path.as_str()) {
        (&Method::POST, "/v1/events") => post_events(&state, &peer, req).await,
        (&Method::GET, "/v1/baseline") => get_baseline(&state, &peer, &req).await,
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

async fn get_baseline(state: &State, peer: &Peer, req: &Request<Incoming>) -> Resp {
    let inm = req
        .headers()
        .get(hyper::header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let store = state.baselines.clone();
    let host = peer.identity.to_string();
    let answer = tokio::task::spawn_blocking(move || store.latest(&host, inm.as_deref())).await;
    let with_etag = |mut r: Resp, etag: &str| {
        if let Ok(v) = HeaderValue::from_str(etag) {
            r.headers_mut().insert(hyper::header::ETAG, v);
        }
        r
    };
    match answer {
        Ok(Ok(Served::Bundle(b))) => {
            let mut r = Response::new(Full::new(b.bytes));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.plumb.baseline-bundle"),
            );
            with_etag(r, &b.etag)
        }
        Ok(Ok(Served::NotModified(etag))) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            with_etag(r, &etag)
        }
        Ok(Ok(Served::Nothing)) => error(StatusCode::NOT_FOUND, "no baseline published"),
        Ok(Err(e)) => {
            tracing::error!("baseline store: {e}");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("baseline store failed: {e}"),
                state.retry_after,
            )
        }
        Err(e) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("baseline store failed: {e}"),
            state.retry_after,
        ),
    }
}

/// Most bytes of a refused body read and thrown away so that the answer
/// reaches the agent: closing a connection with unread data in it makes the
/// kernel reset it, and the reset destroys the answer on its way.
const DRAIN_MAX: u64 = 64 * 1024 * 1024;

/// Reads the rest of `body` and throws it away (nothing is kept), for at
/// most [`DRAIN_MAX`] bytes and `within`. Returns whether the body ended.
async fn discard(body: &mut Incoming, within: Duration) -> bool {
    let drain = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(d) = frame.data_ref() {
                seen += d.len() as u64;
                if seen > DRAIN_MAX {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout(within, drain).await.unwrap_or(false)
}

/// `resp`, closing the connection after it unless the request body was read
/// to its end (hyper cannot reuse the connection otherwise).
fn after_body(mut resp: Resp, drained: bool) -> Resp {
    if !drained {
        resp.headers_mut()
            .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Why a body was not read whole.
enum BodyError {
    TooLarge,
    Timeout,
    Read(hyper::Error),
}

/// Reads a body of at most `max` bytes, within `within`.
async fn read_capped(
    body: &mut Incoming,
    max: usize,
    within: Duration,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Read)?;
            if let Some(d) = frame.data_ref() {
                if buf.len() + d.len() > max {
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(d);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout(within, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

async fn post_events(state: &State, peer: &Peer, req: Request<Incoming>) -> Resp {
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {} bytes; split the batch", state.max_body),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > state.max_body as u64) {
        let drained = declared.is_some_and(|n| n <= DRAIN_MAX)
            && discard(&mut body, state.request_timeout).await;
        return after_body(too_large(), drained);
    }
    // Admission first: an overloaded collector answers without holding the
    // body in memory.
    let admitted =
        tokio::time::timeout(state.queue_wait, state.admitted.clone().acquire_owned()).await;
    let _admitted = match admitted {
        Ok(Ok(p)) => p,
        refused => {
            // Read and drop the body (nothing kept) so the agent sees the
            // answer and keeps its connection.
            let drained = discard(&mut body, state.request_timeout).await;
            let resp = match refused {
                Ok(_) => retry_later(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "shutting down",
                    state.retry_after,
                ),
                Err(_) => retry_later(
                    StatusCode::TOO_MANY_REQUESTS,
                    "the collector is overloaded; retry later",
                    state.retry_after,
                ),
            };
            return after_body(resp, drained);
        }
    };
    let bytes = match read_capped(&mut body, state.max_body, state.request_timeout).await {
        Ok(b) => b,
        Err(BodyError::TooLarge) => {
            let drained = discard(&mut body, state.request_timeout).await;
            return after_body(too_large(), drained);
        }
        Err(BodyError::Timeout) => {
            return after_body(
                error(
                    StatusCode::REQUEST_TIMEOUT,
                    "the body did not arrive in time",
                ),
                false,
            );
        }
        Err(BodyError::Read(e)) => {
            return after_body(
                error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
                false,
            );
        }
    };
    let batch: EventBatch = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid event batch: {e}")),
    };
    drop(bytes);
    if let Err((status, reason)) = validate_batch(&batch, &peer.identity) {
        if status == StatusCode::FORBIDDEN {
            tracing::warn!(identity = %peer.identity, address = %peer.address, "{reason}");
        }
        return error(status, reason);
    }
    let permit = match tokio::time::timeout(state.queue_wait, state.queue.reserve()).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => {
            return retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting down",
                state.retry_after,
            );
        }
        Err(_) => {
            return retry_later(
                StatusCode::TOO_MANY_REQUESTS,
                "the collector is overloaded; retry later",
                state.retry_after,
            );
        }
    };
    let (tx, rx) = oneshot::channel();
    permit.send(Job::Ingest(
        IngestBatch {
            host: peer.identity.to_string(),
            address: Some(peer.address.to_string()),
            received_at: time::OffsetDateTime::now_utc().unix_timestamp(),
            events: batch.events,
        },
        tx,
    ));
    match rx.await {
        Ok(Ok(acked_seq)) => json_response(StatusCode::OK, &BatchAck { acked_seq }),
        Ok(Err(e)) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("storage failed: {e}"),
            state.retry_after,
        ),
        Err(_) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage stopped",
            state.retry_after,
        ),
    }
}

/// Binds the listening socket (SO_REUSEADDR, a backlog fit for thousands of agents).
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    let io = |source| ServeError::Io {
        context: format!("listening on {addr}"),
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io)?;
    socket.set_reuseaddr(true).map_err(io)?;
    socket.set_nodelay(true).map_err(io)?;
    socket.bind(addr).map_err(io)?;
    socket.listen(4096).map_err(io)
}

/// Runs the collector until SIGTERM or SIGINT, serving the baselines
/// published in its database.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    // Migrate first (the writer would too), so the read-only baseline
    // connection sees the current schema.
    drop(crate::storage::sqlite::Sqlite::open(
        &cfg.storage.path,
        cfg.storage.synchronous,
    )?);
    let store = SqliteBaselines::open(&cfg.storage.path)?;
    serve_with(cfg, Arc::new(store)).await
}

/// [`serve`] with a given baseline store.
pub async fn serve_with(cfg: Config, baselines: Arc<dyn BaselineStore>) -> Result<(), ServeError> {
    let tls_files = cfg.tls_files();
    let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(crate::tls::server_config(
        &tls_files,
    )?)));
    let store: Box<dyn Storage> = Box::new(crate::storage::sqlite::Sqlite::open(
        &cfg.storage.path,
        cfg.storage.synchronous,
    )?);
    // +1: room for a retention job beside a full set of admitted batches.
    let (queue, rx) = mpsc::channel(cfg.storage.queue_batches + 1);
    let writer = writer::spawn(store, rx, cfg.storage.max_group_events).map_err(|source| {
        ServeError::Io {
            context: "starting the writer".into(),
            source,
        }
    })?;
    let listener = bind(cfg.server.listen)?;
    let local = listener.local_addr().map_err(|source| ServeError::Io {
        context: "local address".into(),
        source,
    })?;
    tracing::info!("listening on {local}");

    let state = Arc::new(State {
        queue: queue.clone(),
        admitted: Arc::new(Semaphore::new(cfg.storage.queue_batches)),
        max_body: cfg.server.max_body_bytes,
        queue_wait: Duration::from_millis(cfg.storage.queue_wait_ms),
        request_timeout: Duration::from_secs(cfg.server.request_timeout_secs),
        retry_after: cfg.storage.retry_after_secs,
        baselines,
    });
    // Retention runs hourly through the writer, so it never races ingestion.
    let mut pruner = None;
    if cfg.storage.retention_days > 0 {
        let q = queue.clone();
        let keep = i64::from(cfg.storage.retention_days) * 86_400;
        pruner = Some(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(3600));
            loop {
                tick.tick().await;
                let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - keep;
                if q.send(Job::Prune(cutoff)).await.is_err() {
                    break;
                }
            }
        }));
    }
    drop(queue);

    let (stop_tx, stop_rx) = watch::channel(false);
    let limit = Arc::new(Semaphore::new(cfg.server.max_connections));
    let mut conns = JoinSet::new();
    let handshake_timeout = Duration::from_secs(cfg.server.handshake_timeout_secs);
    let idle_timeout = Duration::from_secs(cfg.server.idle_timeout_secs);

    let mut signals = plumb_os::signals::stream().map_err(|source| ServeError::Io {
        context: "installing a signal handler".into(),
        source,
    })?;
    let notifier = Notifier::from_env();
    notifier.ready();
    let watchdog = notifier.spawn_watchdog();

    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            s = signals.recv() => match s {
                Some(Signal::Reload) => { reload(&acceptor, &tls_files); continue; }
                Some(Signal::Stop) | None => break,
            },
        };
        let (tcp, addr) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            s = signals.recv() => match s {
                Some(Signal::Reload) => { reload(&acceptor, &tls_files); continue; }
                Some(Signal::Stop) | None => break,
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = match acceptor.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let state = state.clone();
        let mut stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            let tls = match tokio::time::timeout(handshake_timeout, acceptor.accept(tcp)).await {
                Ok(Ok(s)) => s,
                Ok(Err(e)) => {
                    tracing::info!(%addr, "TLS handshake refused: {e}");
                    return;
                }
                Err(_) => {
                    tracing::info!(%addr, "TLS handshake timed out");
                    return;
                }
            };
            let identity = match tls.get_ref().1.peer_certificates().and_then(|c| c.first()) {
                Some(cert) => match crate::tls::identity_of(cert) {
                    Ok(id) => id,
                    Err(e) => {
                        tracing::warn!(%addr, "{e}");
                        return;
                    }
                },
                None => return,
            };
            let peer = Peer {
                identity: identity.into(),
                address: addr.ip().to_string().into(),
            };
            let svc = hyper::service::service_fn(move |req| handle(state.clone(), peer.clone(), req));
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                // hyper starts this timer whenever it waits for a request
                // head, so it is also the keep-alive idle timeout.
                .header_read_timeout(idle_timeout)
                .max_buf_size(64 * 1024)
                .serve_connection(TokioIo::new(tls), svc);
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => { if let Err(e) = r { tracing::debug!(%addr, "connection: {e}"); } }
                _ = stop.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }

    tracing::info!("stopping: finishing requests in flight");
    notifier.stopping();
    if let Some(w) = watchdog {
        w.abort();
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let deadline = Duration::from_secs(cfg.server.shutdown_timeout_secs);
    let drained = tokio::time::timeout(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {deadline:?}; closing them");
        conns.shutdown().await;
    }
    if let Some(p) = pruner {
        p.abort();
        let _ = p.await;
    }
    // Every sender is gone now: the writer commits what is queued and stops.
    drop(state);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP: reload certificates and CRLs; keep the old ones if the new are bad.
fn reload(acceptor: &RwLock<TlsAcceptor>, files: &crate::tls::ServerFiles) {
    match crate::tls::server_config(files) {
        Ok(cfg) => {
            match acceptor.write() {
                Ok(mut a) => *a = TlsAcceptor::from(cfg),
                Err(p) => *p.into_inner() = TlsAcceptor::from(cfg),
            }
            tracing::info!("TLS certificates and CRLs reloaded");
        }
        Err(e) => tracing::error!("reload refused, keeping the current TLS setup: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let e = etag_of("ab");
        assert_eq!(e, "\"sha256:ab\"");
        assert!(none_match(&e, &e));
        assert!(none_match("\"x\", \"sha256:ab\"", &e));
        assert!(none_match("W/\"sha256:ab\"", &e));
        assert!(none_match("*", &e));
        assert!(!none_match("\"sha256:ac\"", &e));
        assert!(!none_match("", &e));
    }
}
