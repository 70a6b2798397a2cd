//! `plumb-collector serve`: HTTPS over mutual TLS (tokio-rustls + hyper),
//! the `/v1` API, and the lifecycle (READY=1, SIGHUP reload, graceful stop).

mod api;
mod baseline;
mod events;

/// The batch checks, for the fuzz entry points (`crate::fuzz`).
#[cfg(feature = "fuzzing")]
pub(crate) use events::validate_batch;

use crate::config::Config;
use crate::storage::writer::{self, Job};
use crate::storage::{self, Queries};
use api::{Peer, State};
use hyper_util::rt::{TokioIo, TokioTimer};
use plumb_os::notify::Notifier;
use plumb_os::signals::Signal;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};
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

/// Binds the listening socket (SO_REUSEADDR, a backlog fit for thousands of agents).
fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
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

/// Runs the collector until SIGTERM or SIGINT: ingestion, the baselines
/// published in its database, SIGHUP reloads of the TLS files.
pub async fn serve(cfg: Config) -> Result<(), ServeError> {
    let tls_files = cfg.tls_files();
    let acceptor = Arc::new(RwLock::new(TlsAcceptor::from(crate::tls::server_config(
        &tls_files,
    )?)));
    // The writer's store opens (and migrates) first, so the read-only one
    // sees the current schema.
    let store = storage::open(&cfg.storage)?;
    let baselines: Arc<dyn Queries> = Arc::from(storage::open_read_only(&cfg.storage)?);
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

    let state = Arc::new(State::new(&cfg, queue.clone(), baselines));
    let pruner = spawn_pruner(cfg.storage.retention_days, queue);
    let (stop_tx, stop_rx) = watch::channel(false);
    let notifier = Notifier::from_env();
    let watchdog = notifier.spawn_watchdog();
    let conns = accept_until_stopped(&cfg, &listener, &acceptor, &state, &stop_rx, &notifier).await;
    if let Some(w) = watchdog {
        w.abort();
    }
    let conns = conns?;

    tracing::info!("stopping: finishing requests in flight");
    notifier.stopping();
    drop(listener);
    let _ = stop_tx.send(true);
    finish_connections(conns, Duration::from_secs(cfg.server.shutdown_timeout_secs)).await;
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

/// Retention, hourly (and now) through the writer, so it never races
/// ingestion. `None` when everything is kept. Holds `queue` only if it runs.
fn spawn_pruner(retention_days: u32, queue: mpsc::Sender<Job>) -> Option<JoinHandle<()>> {
    if retention_days == 0 {
        return None;
    }
    let keep = i64::from(retention_days) * 86_400;
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(3600));
        loop {
            tick.tick().await;
            let cutoff = time::OffsetDateTime::now_utc().unix_timestamp() - keep;
            if queue.send(Job::Prune(cutoff)).await.is_err() {
                break;
            }
        }
    }))
}

/// Per-connection timeouts.
#[derive(Debug, Clone, Copy)]
struct Timeouts {
    handshake: Duration,
    idle: Duration,
}

/// Accepts connections, at most `max_connections` at once, until SIGTERM or
/// SIGINT; SIGHUP reloads the TLS files. Returns the connections still open.
async fn accept_until_stopped(
    cfg: &Config,
    listener: &TcpListener,
    acceptor: &RwLock<TlsAcceptor>,
    state: &Arc<State>,
    stop_rx: &watch::Receiver<bool>,
    notifier: &Notifier,
) -> Result<JoinSet<()>, ServeError> {
    let tls_files = cfg.tls_files();
    let limit = Arc::new(Semaphore::new(cfg.server.max_connections));
    let mut conns = JoinSet::new();
    let timeouts = Timeouts {
        handshake: Duration::from_secs(cfg.server.handshake_timeout_secs),
        idle: Duration::from_secs(cfg.server.idle_timeout_secs),
    };

    let mut signals = plumb_os::signals::stream().map_err(|source| ServeError::Io {
        context: "installing a signal handler".into(),
        source,
    })?;
    notifier.ready();

    loop {
        while conns.try_join_next().is_some() {}
        let permit = tokio::select! {
            p = limit.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            s = signals.recv() => match s {
                Some(Signal::Reload) => { reload(acceptor, &tls_files); continue; }
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
                Some(Signal::Reload) => { reload(acceptor, &tls_files); continue; }
                Some(Signal::Stop) | None => break,
            },
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = match acceptor.read() {
            Ok(a) => a.clone(),
            Err(p) => p.into_inner().clone(),
        };
        let state = state.clone();
        let stop = stop_rx.clone();
        conns.spawn(async move {
            let _permit = permit;
            serve_connection(acceptor, tcp, addr, state, stop, timeouts).await;
        });
    }
    Ok(conns)
}

/// One connection: TLS handshake, the peer's identity from its
/// certificate, then HTTP/1.1 until it closes or the collector stops.
async fn serve_connection(
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    state: Arc<State>,
    mut stop: watch::Receiver<bool>,
    timeouts: Timeouts,
) {
    let tls = match tokio::time::timeout(timeouts.handshake, acceptor.accept(tcp)).await {
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
    let svc = hyper::service::service_fn(move |req| api::handle(state.clone(), peer.clone(), req));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // hyper starts this timer whenever it waits for a request
        // head, so it is also the keep-alive idle timeout.
        .header_read_timeout(timeouts.idle)
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
}

/// Waits for the open connections to finish, at most `deadline`; then
/// closes the rest.
async fn finish_connections(mut conns: JoinSet<()>, deadline: Duration) {
    let drained = tokio::time::timeout(deadline, async {
        while conns.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!("connections still open after {deadline:?}; closing them");
        conns.shutdown().await;
    }
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
