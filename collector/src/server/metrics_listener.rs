//! `GET /metrics`: the answer (for the scrapers on the mTLS listener, see
//! `api.rs`), and the optional plain-HTTP listener of `[metrics] listen`,
//! which serves that one path and nothing else, to a few connections at a
//! time.

use super::api::{Resp, error};
use crate::metrics::{CONTENT_TYPE, Exporter};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderValue};
use hyper::{Method, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

/// The scrape, as an HTTP answer.
pub(super) async fn answer(exporter: &Exporter) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(exporter.scrape().await)));
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
    r
}

/// Connections served at once on the plain listener; more wait in the
/// kernel's backlog. A scraper needs one.
const MAX_CONNECTIONS: usize = 8;

/// Binds `addr` (checked by the config: loopback unless allowed) and serves
/// `/metrics` until the task is aborted (which closes its connections).
pub(super) async fn spawn(
    addr: SocketAddr,
    exporter: Arc<Exporter>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        // Dropped with the task: aborting it closes every connection.
        let mut conns = JoinSet::new();
        loop {
            while conns.try_join_next().is_some() {}
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("metrics listener: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let exporter = exporter.clone();
            conns.spawn(async move {
                let svc = hyper::service::service_fn(move |req| {
                    let exporter = exporter.clone();
                    async move {
                        let resp = match (req.method(), req.uri().path()) {
                            (&Method::GET, "/metrics") => answer(&exporter).await,
                            (_, "/metrics") => error(
                                StatusCode::METHOD_NOT_ALLOWED,
                                "only GET is allowed on /metrics",
                            ),
                            (_, p) => error(
                                StatusCode::NOT_FOUND,
                                format!("no such path: {p} (this listener serves /metrics only)"),
                            ),
                        };
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(10))
                    .serve_connection(TokioIo::new(tcp), svc);
                // A whole connection lives at most a minute.
                let _ = tokio::time::timeout(Duration::from_secs(60), conn).await;
                drop(slot);
            });
        }
    });
    Ok((local, task))
}
