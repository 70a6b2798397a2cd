//! `plumb-collector serve`: HTTPS over mutual TLS (tokio-rustls + hyper),
//! the `/v1` API, and the lifecycle (READY=1, SIGHUP reload, graceful stop).
//! Connections: `admission` (handshake and connection caps), `connection`
//! (one connection's life), `deadlines` (idle, request, send), `counters`
//! (refusals by reason, a summary per interval), `certificates` (the TLS
//! setup in force and its CRLs).

mod admission;
mod api;
mod baseline;
mod baselines;
mod certificates;
mod connection;
mod counters;
mod deadlines;
mod events;
mod metrics_listener;

/// The batch checks, for the fuzz entry points (`crate::fuzz`).
#[cfg(feature = "fuzzing")]
pub(crate) use events::validate_batch;

use crate::config::Config;
use crate::metrics;
use crate::revocation::{DATABASE, Revocations, RevokedSet};
use crate::storage::writer::{self, Job};
use crate::storage::{self, Queries};
use admission::{Admission, Caps};
use api::State;
use certificates::Certificates;
use connection::{Shared, Timeouts};
use counters::ConnectionCounters;
use plumb_os::notify::Notifier;
use plumb_os::signals::Signal;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{mpsc, watch};
use tokio::task::{JoinHandle, JoinSet};

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
    /// A `[[forward]]` sink or `[[alert]]` rule that cannot be set up.
    #[error(transparent)]
    Forward(#[from] crate::forward::ForwardError),
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
    let revocations = Revocations::new();
    let certs = Arc::new(Certificates::load(cfg.tls_files(), revocations.clone())?);
    let (store, baselines) = open_stores(&cfg).await?;
    // +1: room for a retention job beside a full set of admitted batches.
    let (queue, rx) = mpsc::channel(cfg.storage.queue_batches + 1);
    let telemetry = Telemetry::register(&cfg, &queue, &baselines);
    let writer = writer::spawn(
        store,
        rx,
        cfg.storage.max_group_events,
        telemetry.ingest.commit_seconds.clone(),
    )
    .map_err(|source| ServeError::Io {
        context: "starting the writer".into(),
        source,
    })?;
    let listener = bind(cfg.server.listen)?;
    let local = listener.local_addr().map_err(|source| ServeError::Io {
        context: "local address".into(),
        source,
    })?;
    tracing::info!("listening on {local}");
    let plain_metrics = plain_metrics(&cfg, &telemetry.exporter).await?;

    let Telemetry {
        counters,
        ingest,
        exporter,
        forward: forward_metrics,
    } = telemetry;
    let state = Arc::new(State::new(&cfg, queue.clone(), baselines, ingest, exporter));
    let shared = shared(&cfg, state, counters.clone(), revocations);
    let s = &cfg.server;
    let background = [
        spawn_pruner(cfg.storage.retention_days, queue),
        Some(counters::spawn_summary(
            counters,
            Duration::from_secs(s.handshake_log_interval_secs),
        )),
        Some(certs.spawn_freshness_watch(CRL_CHECK_INTERVAL)),
        Some(spawn_database_revocations(
            shared.state.baselines.clone(),
            shared.revocations.clone(),
            Duration::from_secs(cfg.storage.postgres.revocation_poll_secs),
        )),
        plain_metrics,
    ];
    let mut consumers = crate::forward::spawn(&cfg, forward_metrics.clone()).await?;
    consumers.extend(crate::alert::spawn(&cfg, forward_metrics.clone()).await?);
    let background = background.into_iter().flatten().chain(consumers);
    let console = console_listener(&cfg, &shared)?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let notifier = Notifier::from_env();
    let watchdog = notifier.spawn_watchdog();
    let listeners = Listeners {
        agents: (&listener, &shared),
        console: console.as_ref().map(|(l, s)| (l, s)),
    };
    let conns = accept_until_stopped(listeners, &certs, &stop_rx, &notifier).await;
    if let Some(w) = watchdog {
        w.abort();
    }
    let conns = conns?;

    tracing::info!("stopping: finishing requests in flight");
    notifier.stopping();
    drop(listener);
    drop(console);
    let _ = stop_tx.send(true);
    finish_connections(conns, Duration::from_secs(cfg.server.shutdown_timeout_secs)).await;
    for task in background {
        task.abort();
        let _ = task.await;
    }
    // Every sender is gone now: the writer commits what is queued and stops.
    drop(shared);
    let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    tracing::info!("stopped");
    Ok(())
}

/// Opens the writer's store and the read-only one. The writer's opens (and
/// migrates) first, so the read-only one sees the current schema. Opening
/// may block (SQLite file, PostgreSQL connections on the store's own
/// runtime): off the async workers.
async fn open_stores(
    cfg: &Config,
) -> Result<(Box<dyn storage::Storage>, Arc<dyn Queries>), ServeError> {
    let storage_cfg = cfg.storage.clone();
    let (store, reads) = tokio::task::spawn_blocking(move || {
        let store = storage::open(&storage_cfg)?;
        let reads = storage::open_read_only(&storage_cfg)?;
        Ok::<_, storage::StorageError>((store, reads))
    })
    .await
    .map_err(|e| ServeError::Io {
        context: "opening the store".into(),
        source: std::io::Error::other(e),
    })??;
    Ok((store, Arc::from(reads)))
}

/// The metric families of the server: each module registers its own.
struct Telemetry {
    counters: Arc<ConnectionCounters>,
    ingest: metrics::Ingest,
    exporter: Arc<metrics::Exporter>,
    /// Forwarding and alerts count into their own families.
    forward: Arc<crate::forward::ForwardMetrics>,
}

impl Telemetry {
    fn register(
        cfg: &Config,
        queue: &mpsc::Sender<Job>,
        baselines: &Arc<dyn Queries>,
    ) -> Telemetry {
        let counters = Arc::new(ConnectionCounters::default());
        let mut registry = metrics::registry();
        let ingest = metrics::Ingest::register(&mut registry);
        counters::register(&mut registry, counters.clone());
        metrics::register_queue(&mut registry, queue);
        let fleet = metrics::Fleet::register(
            &mut registry,
            baselines.clone(),
            cfg.hosts.stale_after_secs(),
            Duration::from_secs(cfg.metrics.fleet_cache_secs),
        );
        let forward = Arc::new(crate::forward::ForwardMetrics::default());
        forward.register(&mut registry);
        let exporter = Arc::new(metrics::Exporter::new(registry, Some(fleet)));
        Telemetry {
            counters,
            ingest,
            exporter,
            forward,
        }
    }
}

/// The plain-HTTP metrics listener (`[metrics] listen`), when configured.
async fn plain_metrics(
    cfg: &Config,
    exporter: &Arc<metrics::Exporter>,
) -> Result<Option<JoinHandle<()>>, ServeError> {
    let Some(addr) = cfg.metrics.listen else {
        return Ok(None);
    };
    let (at, task) = metrics_listener::spawn(addr, exporter.clone())
        .await
        .map_err(|source| ServeError::Io {
            context: format!("metrics listener on {addr}"),
            source,
        })?;
    tracing::info!("metrics served on http://{at}/metrics");
    Ok(Some(task))
}

/// What every agent connection shares: the API state, admission caps,
/// counters, revocations and deadlines from `[server]`.
fn shared(
    cfg: &Config,
    state: Arc<State>,
    counters: Arc<ConnectionCounters>,
    revocations: Arc<Revocations>,
) -> Arc<Shared> {
    let s = &cfg.server;
    Arc::new(Shared {
        console: None,
        state,
        admission: Admission::new(
            Caps {
                handshakes: s.max_handshakes,
                handshakes_per_address: s.max_handshakes_per_address,
                connections: s.max_connections,
                connections_per_agent: s.max_connections_per_agent,
            },
            counters.clone(),
        ),
        counters,
        revocations,
        timeouts: Timeouts {
            handshake: Duration::from_secs(s.handshake_timeout_secs),
            idle: Duration::from_secs(s.idle_timeout_secs),
            request: Duration::from_secs(s.request_timeout_secs),
            lifetime: Duration::from_secs(s.max_connection_lifetime_secs),
        },
    })
}

/// The console's listener (`[console]`, docs/console.md), when configured:
/// the same TLS setup, revocations, deadlines and counters as the agents'
/// listener, its own connection pool (operators' browsers open several
/// connections), its requests routed to [`crate::console`].
fn console_listener(
    cfg: &Config,
    agents: &Arc<Shared>,
) -> Result<Option<(TcpListener, Arc<Shared>)>, ServeError> {
    let Some(c) = &cfg.console else {
        return Ok(None);
    };
    let listener = bind(c.listen)?;
    let local = listener.local_addr().map_err(|source| ServeError::Io {
        context: "console local address".into(),
        source,
    })?;
    tracing::info!("console on {local}");
    let s = &cfg.server;
    let shared = Arc::new(Shared {
        state: agents.state.clone(),
        console: Some(Arc::new(crate::console::Console::new(
            c,
            cfg.hosts.stale_after_secs(),
            agents.state.baselines.clone(),
        ))),
        admission: Admission::new(
            Caps {
                handshakes: s.max_handshakes,
                handshakes_per_address: s.max_handshakes_per_address,
                connections: c.max_connections,
                connections_per_agent: c.max_connections_per_operator,
            },
            agents.counters.clone(),
        ),
        counters: agents.counters.clone(),
        revocations: agents.revocations.clone(),
        timeouts: agents.timeouts,
    });
    Ok(Some((listener, shared)))
}

/// The listeners accepted on, each with what its connections share.
struct Listeners<'a> {
    agents: (&'a TcpListener, &'a Arc<Shared>),
    console: Option<(&'a TcpListener, &'a Arc<Shared>)>,
}

/// How often the CRLs in force are checked for staleness while running.
const CRL_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

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

/// Feeds the revocations the store records (PostgreSQL: `pki revoke`
/// through any collector of the fleet) into the view every handshake,
/// request and open connection consults, re-read every `every`. Stops at
/// once for a store that keeps none (SQLite: the CRL files are the record).
/// A failed read keeps the last list.
fn spawn_database_revocations(
    store: Arc<dyn Queries>,
    revocations: Arc<Revocations>,
    every: Duration,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last = None;
        loop {
            tick.tick().await;
            let reader = store.clone();
            match tokio::task::spawn_blocking(move || reader.revoked_serials()).await {
                Ok(Ok(Some(serials))) => {
                    // Only a change wakes the open connections.
                    if last.as_ref() == Some(&serials) {
                        continue;
                    }
                    match RevokedSet::from_serials_hex(serials.iter().map(String::as_str)) {
                        Ok(set) => revocations.replace(DATABASE, set),
                        Err(e) => tracing::warn!("revocations in the database: {e}"),
                    }
                    last = Some(serials);
                }
                Ok(Ok(None)) | Err(_) => break,
                Ok(Err(e)) => tracing::warn!("reading revocations (keeping the last list): {e}"),
            }
        }
    })
}

/// Accepts connections until SIGTERM or SIGINT; SIGHUP reloads the TLS
/// files. A connection gets a handshake slot or is closed at once (see
/// `admission`). Returns the connections still open.
async fn accept_until_stopped(
    listeners: Listeners<'_>,
    certs: &Certificates,
    stop_rx: &watch::Receiver<bool>,
    notifier: &Notifier,
) -> Result<JoinSet<()>, ServeError> {
    let (listener, agents) = listeners.agents;
    let mut conns = JoinSet::new();
    let mut signals = plumb_os::signals::stream().map_err(|source| ServeError::Io {
        context: "installing a signal handler".into(),
        source,
    })?;
    notifier.ready();

    loop {
        while conns.try_join_next().is_some() {}
        let (accepted, shared) = tokio::select! {
            a = listener.accept() => (a, agents),
            a = accept_console(listeners.console) => a,
            s = signals.recv() => match s {
                Some(Signal::Reload) => { certs.reload(); continue; }
                Some(Signal::Stop) | None => break,
            },
        };
        let (tcp, addr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Over a handshake cap: closed before any TLS (counted).
        let Ok(slot) = shared.admission.begin_handshake(addr.ip()) else {
            continue;
        };
        let _ = tcp.set_nodelay(true);
        conns.spawn(connection::serve(
            shared.clone(),
            certs.acceptor(),
            tcp,
            addr,
            slot,
            stop_rx.clone(),
        ));
    }
    Ok(conns)
}

/// The next connection on the console's listener; never, without one.
async fn accept_console<'a>(
    console: Option<(&TcpListener, &'a Arc<Shared>)>,
) -> (
    std::io::Result<(tokio::net::TcpStream, SocketAddr)>,
    &'a Arc<Shared>,
) {
    match console {
        Some((l, shared)) => (l.accept().await, shared),
        None => std::future::pending().await,
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
