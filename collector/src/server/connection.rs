//! One connection, from its handshake to its close: the TLS handshake under
//! its slot and budget ([`super::admission`]), the peer's identity, an
//! authenticated slot, then HTTP/1.1 under the connection's deadlines
//! ([`super::deadlines`]) until it closes, is replaced by a newer connection
//! of the same agent, its certificate is revoked, its lifetime ends, or the
//! collector stops.
//!
//! Revocation bites on open connections twice over: every request checks
//! the peer's certificate against the revocation view in force (a revoked
//! peer gets no answer: the connection closes), and every change of the
//! view wakes each connection, which closes at once if its peer is now
//! revoked, idle or not.

use super::admission::{Admission, ConnectionSlot, HandshakeSlot};
use super::api::{self, Peer, State};
use super::counters::{ConnectionCounters, Refused};
use super::deadlines::{Clock, Timed, Watchdog};
use crate::revocation::Revocations;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

/// Per-connection budgets.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    pub(super) handshake: Duration,
    pub(super) idle: Duration,
    pub(super) request: Duration,
    pub(super) lifetime: Duration,
}

/// What every connection shares.
pub(super) struct Shared {
    pub(super) state: Arc<State>,
    /// Set on the console's listener: its requests go to the console.
    pub(super) console: Option<Arc<crate::console::Console>>,
    pub(super) admission: Arc<Admission>,
    pub(super) counters: Arc<ConnectionCounters>,
    pub(super) revocations: Arc<Revocations>,
    pub(super) timeouts: Timeouts,
}

/// The service's error: hyper closes the connection without an answer.
#[derive(Debug, thiserror::Error)]
#[error("the client certificate is revoked")]
struct RevokedPeer;

/// Serves one accepted TCP connection that holds a handshake slot.
pub(super) async fn serve(
    shared: Arc<Shared>,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    handshake: HandshakeSlot,
    mut stop: watch::Receiver<bool>,
) {
    let Some((tls, cert, slot)) = accept(&shared, acceptor, tcp, addr, handshake).await else {
        return;
    };
    let peer = Peer {
        identity: cert.identity.as_str().into(),
        address: addr.ip().to_string().into(),
        operator: cert.operator,
    };

    let clock = Clock::new(shared.timeouts.idle, shared.timeouts.request);
    let svc = service(&shared, &clock, cert.id.clone(), peer);
    let conn = hyper::server::conn::http1::Builder::new()
        // Our deadlines replace hyper's: its header timer also runs while
        // the connection is idle.
        .header_read_timeout(None)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(Timed::new(tls, clock.clone())), svc);
    tokio::pin!(conn);
    let mut watchdog = Watchdog::new(clock.clone());
    let mut revocation = shared.revocations.subscribe();
    let lifetime = tokio::time::sleep(shared.timeouts.lifetime);
    tokio::pin!(lifetime);
    let identity = cert.identity.as_str();
    if *stop.borrow() {
        return;
    }
    let mut closing = false;
    loop {
        tokio::select! {
            // The connection first: its reads and writes move the clock the
            // watchdog reads after it.
            biased;
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%addr, identity, "connection: {e}");
                }
                return;
            }
            Ok(()) = revocation.changed() => {
                if shared.revocations.is_revoked(&cert.id) {
                    tracing::info!(
                        %addr, host = identity, serial = %cert.id.serial_hex(),
                        "the client certificate is now revoked: connection closed"
                    );
                    return;
                }
            }
            why = std::future::poll_fn(|cx| watchdog.poll_expired(cx)) => {
                tracing::debug!(%addr, identity, "connection closed: {}", why.describe());
                return;
            }
            _ = stop.changed(), if !closing => {
                // At once unless a request is being handled: an idle
                // connection, or one trickling a head, has nothing to
                // finish and must give its slot back now.
                if !clock.busy() {
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = slot.replaced(), if !closing => {
                tracing::debug!(%addr, identity, "a newer connection of this agent replaces this one");
                // As for a stop.
                if !clock.busy() {
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = &mut lifetime, if !closing => {
                tracing::debug!(%addr, identity, "max_connection_lifetime_secs reached");
                // As for a stop.
                if !clock.busy() {
                    return;
                }
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// The connection's request handler: each request holds the clock busy
/// until answered; a peer revoked since the handshake gets no answer.
fn service(
    shared: &Arc<Shared>,
    clock: &Arc<Clock>,
    id: crate::revocation::CertId,
    peer: Peer,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = api::Resp,
    Error = RevokedPeer,
    Future: Send,
> + Send
+ 'static {
    let shared = shared.clone();
    let clock = clock.clone();
    hyper::service::service_fn(move |req| {
        let request = clock.begin_request();
        let revoked = shared.revocations.is_revoked(&id);
        let state = shared.state.clone();
        let console = shared.console.clone();
        let peer = peer.clone();
        async move {
            if revoked {
                return Err(RevokedPeer);
            }
            let resp = respond(state, console, peer, req, request.deadline()).await;
            drop(request);
            Ok(resp)
        }
    })
}

/// The TLS handshake within its deadline, then the client certificate's
/// identity and a connection slot for it; `None` when refused (counted,
/// logged at debug level only).
async fn accept(
    shared: &Shared,
    acceptor: TlsAcceptor,
    tcp: TcpStream,
    addr: SocketAddr,
    handshake: HandshakeSlot,
) -> Option<(
    tokio_rustls::server::TlsStream<TcpStream>,
    crate::tls::PeerCert,
    ConnectionSlot,
)> {
    let refuse = |why: Refused, detail: &dyn std::fmt::Display| {
        shared.counters.count(why);
        // Counted, and summed up in one line per interval: a line per
        // refused peer would let anyone flood the log.
        tracing::debug!(%addr, "connection refused ({}): {detail}", why.label());
    };
    let tls = match tokio::time::timeout(shared.timeouts.handshake, acceptor.accept(tcp)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            refuse(Refused::of_handshake_error(&e), &e);
            return None;
        }
        Err(_) => {
            refuse(Refused::Timeout, &"TLS handshake timed out");
            return None;
        }
    };
    drop(handshake);
    let Some(cert) = tls.get_ref().1.peer_certificates().and_then(|c| c.first()) else {
        refuse(Refused::NoCertificate, &"no client certificate");
        return None;
    };
    let cert = match crate::tls::peer_of(cert) {
        Ok(c) => c,
        Err(e) => {
            refuse(Refused::NoIdentity, &e);
            return None;
        }
    };
    let Ok(slot) = shared.admission.authenticate(&cert.identity) else {
        // Counted by `authenticate`.
        tracing::debug!(%addr, identity = %cert.identity, "connection refused: max_connections reached");
        return None;
    };
    Some((tls, cert, slot))
}

/// One request's answer: the console's on the console's listener, the
/// agents' API otherwise.
async fn respond(
    state: Arc<State>,
    console: Option<Arc<crate::console::Console>>,
    peer: Peer,
    req: hyper::Request<hyper::body::Incoming>,
    deadline: tokio::time::Instant,
) -> api::Resp {
    match console {
        Some(c) => {
            let caller = crate::console::Caller {
                identity: peer.identity.clone(),
                operator: peer.operator,
            };
            crate::console::handle(c, caller, req).await
        }
        None => api::handle(state, peer, req, deadline).await,
    }
}
