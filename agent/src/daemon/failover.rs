//! Which collector the agent talks to. `[collector] url` lists one or more
//! collectors in order of preference; each name may resolve to several
//! addresses. One connection is kept (HTTP/1.1 keep-alive) to the endpoint
//! that last answered. A request that meets a connection failure (refused,
//! reset, TLS, timeout) or a `5xx` moves on at once: to the name's next
//! address, then to the next URL, wrapping around, each endpoint at most
//! once per request. Only when every endpoint failed does the request fail
//! (the sender then backs off). Once the agent has been away from the
//! first URL for `failback_after`, the next request tries the first URL
//! again, and stays there if it answers.
//!
//! Moving is safe: the sender deletes only what a collector acknowledged,
//! and a batch sent again (to another collector sharing the store, or to
//! the same one) is deduplicated on (host, seq). With collectors that keep
//! separate stores, each event is stored at least once overall and at most
//! once per store (docs/agent.md).

use super::config::{Collector, CollectorUrl};
use super::sender::SendError;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::Mutex as AsyncMutex;

type Conn = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One request, as it is made again for each collector tried: the `Host`
/// header and the path prefix are each URL's own.
#[derive(Debug, Clone)]
pub struct Call {
    /// Method.
    pub method: hyper::Method,
    /// Path below the URL's prefix (`/v1/events`).
    pub path: String,
    /// Extra headers.
    pub headers: Vec<(hyper::header::HeaderName, String)>,
    /// Body (cheap to clone).
    pub body: Bytes,
    /// Largest reply body read.
    pub max_reply: usize,
}

/// A reply that is not a `5xx`.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: hyper::HeaderMap,
    /// The whole body (at most `Call::max_reply` bytes).
    pub body: Bytes,
}

/// One URL of the list, ready to connect to.
#[derive(Debug)]
struct Target {
    url: CollectorUrl,
    server_name: ServerName<'static>,
}

/// One address of one URL: what a connection goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Endpoint {
    target: usize,
    addr: SocketAddr,
}

/// Where requests go, and the connection kept there.
#[derive(Default)]
struct Route {
    /// The connection kept to the endpoint that last answered.
    kept: Option<(Endpoint, Conn)>,
    /// The URL a request starts at (the one that last answered).
    current: usize,
    /// When the agent left the first URL; `None` while it is there.
    away_since: Option<Instant>,
    /// The endpoint that last answered, to tell a move.
    last: Option<Endpoint>,
}

/// The collectors of `[collector] url` and the route to one of them.
pub struct Failover {
    tls: tokio_rustls::TlsConnector,
    targets: Vec<Target>,
    timeout: Duration,
    failback_after: Duration,
    route: AsyncMutex<Route>,
    /// Set when a request was answered by another endpoint than the one
    /// before (the daemon then sends a snapshot: that collector may not
    /// have the host's full state).
    moved: AtomicBool,
}

impl std::fmt::Debug for Failover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Failover")
            .field("targets", &self.targets)
            .finish()
    }
}

/// Why one endpoint did not answer, for the message of a request that
/// failed everywhere.
struct Miss {
    at: String,
    error: SendError,
}

/// How an attempt on a connection failed.
enum Fault {
    /// The connection broke (closed while idle, reset): says nothing about
    /// the collector behind it.
    Broken(SendError),
    /// No reply within the timeout, or a `5xx`: the endpoint's own answer.
    Answered(SendError),
}

impl Fault {
    fn into_error(self) -> SendError {
        match self {
            Fault::Broken(e) | Fault::Answered(e) => e,
        }
    }
}

impl Failover {
    /// The collectors of `c`, with the TLS client configuration `tls`.
    pub fn new(c: &Collector, tls: Arc<rustls::ClientConfig>) -> anyhow::Result<Failover> {
        use anyhow::Context as _;
        let targets = c
            .url
            .all()
            .iter()
            .map(|url| {
                let server_name = ServerName::try_from(url.host().to_string())
                    .with_context(|| format!("{url}: bad host name"))?;
                Ok(Target {
                    url: url.clone(),
                    server_name,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        anyhow::ensure!(!targets.is_empty(), "[collector] url names no collector");
        Ok(Failover {
            tls: tokio_rustls::TlsConnector::from(tls),
            targets,
            timeout: c.timeout,
            failback_after: c.failback_after,
            route: AsyncMutex::new(Route::default()),
            moved: AtomicBool::new(false),
        })
    }

    /// Whether requests moved to another endpoint since the last call.
    pub fn take_moved(&self) -> bool {
        self.moved.swap(false, Ordering::SeqCst)
    }

    /// Makes `call` on the kept connection, else on each endpoint in turn
    /// (see the module's documentation). A `5xx` from every endpoint is
    /// returned as the error of the last one, except that a `503` with
    /// `Retry-After` wins (the shortest), so the sender waits as asked.
    pub async fn exchange(&self, call: &Call) -> Result<Reply, SendError> {
        let mut route = self.route.lock().await;
        if route
            .away_since
            .is_some_and(|t| t.elapsed() >= self.failback_after)
        {
            tracing::info!(
                "{} away from {}: trying it again",
                humantime(self.failback_after),
                self.targets[0].url
            );
            route.kept = None;
            route.current = 0;
            route.away_since = None;
        }
        let mut misses: Vec<Miss> = Vec::new();
        let mut tried: Vec<Endpoint> = Vec::new();
        if let Some((at, conn)) = route.kept.take() {
            match self.attempt(at, conn, call).await {
                Ok((conn, reply)) => {
                    route.kept = Some((at, conn));
                    return Ok(reply);
                }
                // The collector closed an idle connection, or the
                // connection broke: a fresh one to the same endpoint first.
                Err(Fault::Broken(e)) => {
                    tracing::debug!("kept connection to {}: {e}", self.shown(at));
                }
                Err(Fault::Answered(e)) => {
                    tried.push(at);
                    misses.push(Miss {
                        at: self.shown(at),
                        error: e,
                    });
                }
            }
        }
        let n = self.targets.len();
        for k in 0..n {
            let target = (route.current + k) % n;
            let addrs = match self.resolve(target).await {
                Ok(a) => a,
                Err(e) => {
                    misses.push(Miss {
                        at: self.targets[target].url.authority(),
                        error: e,
                    });
                    continue;
                }
            };
            for addr in addrs {
                let at = Endpoint { target, addr };
                if tried.contains(&at) {
                    continue;
                }
                tried.push(at);
                let answered = match self.connect(at).await {
                    Ok(conn) => self
                        .attempt(at, conn, call)
                        .await
                        .map_err(Fault::into_error),
                    Err(e) => Err(e),
                };
                match answered {
                    Ok((conn, reply)) => {
                        self.arrived(&mut route, at, &misses);
                        route.kept = Some((at, conn));
                        return Ok(reply);
                    }
                    Err(e) => misses.push(Miss {
                        at: self.shown(at),
                        error: e,
                    }),
                }
            }
        }
        Err(self.failure(misses))
    }

    /// The request answered at `at`: note a move, and whether the agent is
    /// now away from its first URL.
    fn arrived(&self, route: &mut Route, at: Endpoint, misses: &[Miss]) {
        if route.last.is_some_and(|l| l != at) {
            let why: Vec<String> = misses
                .iter()
                .map(|m| format!("{}: {}", m.at, m.error))
                .collect();
            tracing::warn!(
                "now sending to {} ({})",
                self.shown(at),
                if why.is_empty() {
                    "back to the first collector".to_string()
                } else {
                    why.join("; ")
                }
            );
            self.moved.store(true, Ordering::SeqCst);
        }
        route.last = Some(at);
        route.current = at.target;
        if at.target == 0 {
            route.away_since = None;
        } else if route.away_since.is_none() {
            route.away_since = Some(Instant::now());
        }
    }

    /// The error of a request that no endpoint answered.
    fn failure(&self, misses: Vec<Miss>) -> SendError {
        let wait = misses
            .iter()
            .filter_map(|m| match &m.error {
                SendError::RetryAfter { status, after } => Some((*status, *after)),
                _ => None,
            })
            .min_by_key(|(_, after)| *after);
        if let Some((status, after)) = wait {
            return SendError::RetryAfter { status, after };
        }
        if misses.len() == 1 {
            if let Some(m) = misses.into_iter().next() {
                return m.error;
            }
            return SendError::Failed("no collector to send to".into());
        }
        let all: Vec<String> = misses
            .iter()
            .map(|m| format!("{}: {}", m.at, m.error))
            .collect();
        SendError::Failed(format!("no collector answered: {}", all.join("; ")))
    }

    /// `authority (address)` for messages.
    fn shown(&self, at: Endpoint) -> String {
        let auth = self.targets[at.target].url.authority();
        if auth.parse::<SocketAddr>().is_ok_and(|a| a == at.addr) {
            auth
        } else {
            format!("{auth} ({})", at.addr)
        }
    }

    /// The addresses of a URL's host, in the resolver's order, each once.
    async fn resolve(&self, target: usize) -> Result<Vec<SocketAddr>, SendError> {
        let url = &self.targets[target].url;
        let found = tokio::time::timeout(
            self.timeout,
            tokio::net::lookup_host((url.host(), url.port())),
        )
        .await;
        let mut out: Vec<SocketAddr> = match found {
            Ok(Ok(addrs)) => addrs.collect(),
            Ok(Err(e)) => {
                return Err(SendError::Failed(format!("resolving {}: {e}", url.host())));
            }
            Err(_) => {
                return Err(SendError::Failed(format!(
                    "resolving {}: {TIMED_OUT}",
                    url.host()
                )));
            }
        };
        let mut seen = Vec::with_capacity(out.len());
        out.retain(|a| {
            let new = !seen.contains(a);
            seen.push(*a);
            new
        });
        if out.is_empty() {
            return Err(SendError::Failed(format!(
                "resolving {}: no address",
                url.host()
            )));
        }
        Ok(out)
    }

    /// A new connection to `at`: TCP, TLS (the URL's host name verified),
    /// HTTP/1.1; within the timeout.
    async fn connect(&self, at: Endpoint) -> Result<Conn, SendError> {
        let target = &self.targets[at.target];
        let fail =
            |what: &str, e: &dyn std::fmt::Display| SendError::Failed(format!("{what}: {e}"));
        let steps = async {
            let tcp = TcpStream::connect(at.addr)
                .await
                .map_err(|e| fail("connect", &e))?;
            let _ = tcp.set_nodelay(true);
            let tls = self
                .tls
                .connect(target.server_name.clone(), tcp)
                .await
                .map_err(|e| fail("TLS handshake", &e))?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|e| fail("HTTP handshake", &e))?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(send)
        };
        match tokio::time::timeout(self.timeout, steps).await {
            Ok(r) => r,
            Err(_) => Err(SendError::Failed(format!("connect: {TIMED_OUT}"))),
        }
    }

    /// One request and its whole reply on `conn`, within the timeout. The
    /// connection comes back with a reply that is not a `5xx`; a `5xx`
    /// is an error (a `503` with its `Retry-After`).
    async fn attempt(
        &self,
        at: Endpoint,
        mut conn: Conn,
        call: &Call,
    ) -> Result<(Conn, Reply), Fault> {
        let target = &self.targets[at.target];
        let mut req = Request::builder()
            .method(call.method.clone())
            .uri(format!("{}{}", target.url.prefix(), call.path))
            .header(hyper::header::HOST, target.url.authority());
        for (k, v) in &call.headers {
            req = req.header(k, v);
        }
        let req = req
            .body(Full::new(call.body.clone()))
            .map_err(|e| Fault::Answered(SendError::Failed(e.to_string())))?;
        let steps = async {
            conn.ready()
                .await
                .map_err(|e| SendError::Failed(format!("connection: {e}")))?;
            let resp = conn
                .send_request(req)
                .await
                .map_err(|e| SendError::Failed(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = Limited::new(body, call.max_reply)
                .collect()
                .await
                .map_err(|e| SendError::Failed(format!("reading the reply: {e}")))?
                .to_bytes();
            Ok::<_, SendError>((parts, body))
        };
        let (parts, body) = match tokio::time::timeout(self.timeout, steps).await {
            Ok(r) => r.map_err(Fault::Broken)?,
            Err(_) => {
                return Err(Fault::Answered(SendError::Failed(format!(
                    "no reply within {:?}",
                    self.timeout
                ))));
            }
        };
        if parts.status.is_server_error() {
            return Err(Fault::Answered(super::sender::server_error(
                parts.status,
                &parts.headers,
                &body,
            )));
        }
        Ok((
            conn,
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            },
        ))
    }
}

/// The end of a timeout's message.
const TIMED_OUT: &str = "timed out";

/// "10m", "90s" for a log line.
fn humantime(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}
