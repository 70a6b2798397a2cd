//! `plumb agent`: the daemon. It evaluates checks on a schedule, watches
//! file integrity (periodic rescans and inotify), commits every event to a
//! durable outbox first, and delivers the outbox to the collector or, when
//! there is none, to a local JSON-lines file. See docs/agent.md.

pub mod config;
pub mod distribution;
pub mod facts;
pub mod failover;
pub mod integrity;
pub mod limits;
pub mod metrics;
pub mod outbox;
pub mod realtime;
pub mod remediation;
pub mod scheduler;
pub mod sender;
pub mod sink;

use crate::policy::Policy;
use config::Config;
use integrity::sealed::SealedFim;
use integrity::{Depth, Scope, Watches};
use limits::RateLimiter;
use outbox::{NewEvent, Outbox};
use plumb_core::Severity;
use plumb_core::event::{AgentEventKind, EventBody};
use plumb_core::report::BaselineRef;
use plumb_os::notify::Notifier;
use plumb_os::signals::{self, Signal};
use realtime::Realtime;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often subtrees that could not be watched in real time are re-scanned.
pub const DEGRADED_POLL: Duration = Duration::from_secs(60);

/// How long a pending rescan of whole watch roots may wait for a burst to
/// end (a quiet debounce period), so that one rescan covers the burst.
const ROOT_COALESCE: Duration = Duration::from_secs(2);

/// Changed paths compared in one realtime pass (its changes are held until
/// it commits: a few hundred bytes each).
const PASS_PATHS: usize = 4096;

/// State shared by the daemon's tasks.
pub struct Shared {
    /// Host id in events.
    pub host: String,
    /// The checked root.
    pub root: PathBuf,
    /// Its proc directory.
    pub proc: Option<PathBuf>,
    policy: RwLock<Arc<Policy>>,
    outbox: Mutex<Outbox>,
    /// The FIM backend.
    pub fim: Mutex<SealedFim>,
    /// Hashing rate cap.
    pub limiter: RateLimiter,
    /// Wakes the delivery task.
    pub delivery: tokio::sync::Notify,
    inflight: AtomicUsize,
    config: RwLock<Arc<Config>>,
    trust: RwLock<Option<Arc<crate::trust::TrustPolicy>>>,
    /// Asks the baseline poller to ask the collector now (SIGHUP).
    pub poll_now: tokio::sync::Notify,
    /// Dry-run plans already reported, per rule (not repeated every run).
    pub(crate) dry_run_seen: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// What the metrics file shows that only the daemon knows.
    pub stats: metrics::Stats,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").field("host", &self.host).finish()
    }
}

fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section leaves its data consistent (SQLite rolls back
    // an unfinished transaction), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The policy in force.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set_config(&self, c: Config) {
        let mut g = self
            .config
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Arc::new(c);
    }

    /// The trust policy in force (None without trusted keys).
    pub fn trust(&self) -> Option<Arc<crate::trust::TrustPolicy>> {
        self.trust
            .read()
            .map(|t| t.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    fn set_trust(&self, t: Option<crate::trust::TrustPolicy>) {
        let mut g = self
            .trust
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = t.map(Arc::new);
    }

    fn set_policy(&self, p: Policy) {
        let mut g = self
            .policy
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *g = Arc::new(p);
    }

    /// The state database.
    pub fn outbox(&self) -> MutexGuard<'_, Outbox> {
        lock(&self.outbox)
    }

    /// Commits events to the outbox (agent events get the baseline in
    /// force) and wakes delivery. A failed commit is logged: there is no
    /// other durable place left to report it.
    pub fn emit(&self, events: Vec<NewEvent>) {
        self.emit_each(events);
    }

    /// [`Shared::emit`] for a stream: one transaction, each event built as
    /// it is written and dropped after (a burst of file changes is never
    /// held whole as events).
    pub fn emit_each(&self, events: impl IntoIterator<Item = NewEvent>) {
        let policy = self.policy();
        let bref = policy.baselines.first().map(|b| BaselineRef {
            id: b.id.clone(),
            version: b.version,
        });
        let mut file_changes = 0usize;
        let events = events.into_iter().map(|mut e| {
            if let EventBody::Agent(a) = &mut e.body {
                if a.baseline.is_none() {
                    a.baseline.clone_from(&bref);
                }
            }
            log_event(&self.host, &e.body, &mut file_changes);
            e
        });
        let written = self.outbox().push_each(events, |_| {});
        if file_changes > MAX_LOGGED_FILE_CHANGES {
            tracing::warn!(
                event_kind = "fim_change",
                host = %self.host,
                "and {} more file changes (events in the outbox)",
                file_changes - MAX_LOGGED_FILE_CHANGES
            );
        }
        match written {
            Ok(0) => {}
            Ok(_) => self.delivery.notify_one(),
            Err(e) => tracing::error!("cannot commit events: {e}"),
        }
    }

    pub(crate) fn agent(&self, what: AgentEventKind, severity: Severity, msg: impl Into<String>) {
        self.emit(vec![NewEvent::agent(what, severity, msg)]);
    }
}

/// File changes logged one by one per commit; beyond, one line says how
/// many more (a package upgrade must not flood the journal).
const MAX_LOGGED_FILE_CHANGES: usize = 100;

/// Logs an event being committed, with structured fields (journald:
/// `PLUMB_EVENT_KIND`, `PLUMB_HOST`, `PLUMB_RULE`, `PLUMB_PATH`,
/// `PLUMB_SEVERITY`). A rule's first evaluation is logged only when it
/// fails or errs; `file_changes` counts the file changes seen.
pub(crate) fn log_event(host: &str, body: &EventBody, file_changes: &mut usize) {
    use plumb_core::report::Status;
    let kind = body.kind();
    match body {
        EventBody::Agent(a) => {
            let what = serde_json::to_value(a.what)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default();
            match a.what {
                AgentEventKind::Error => {
                    tracing::error!(
                        event_kind = kind,
                        host,
                        what = what.as_str(),
                        "{}",
                        a.message
                    );
                }
                AgentEventKind::Warning
                | AgentEventKind::BaselineRefused
                | AgentEventKind::EventsDropped => {
                    tracing::warn!(
                        event_kind = kind,
                        host,
                        what = what.as_str(),
                        "{}",
                        a.message
                    );
                }
                _ => tracing::info!(
                    event_kind = kind,
                    host,
                    what = what.as_str(),
                    "{}",
                    a.message
                ),
            }
        }
        EventBody::CheckChanged(c) => {
            let bad = matches!(c.status, Status::Fail | Status::Error);
            if c.previous.is_none() && !bad {
                return;
            }
            let was = c.previous.map_or("new", |p| p.name());
            let line = format!(
                "rule {}: {was} -> {}",
                plumb_core::printable(&c.rule),
                c.status.name()
            );
            if bad {
                tracing::warn!(event_kind = kind, host, rule = %c.rule, status = c.status.name(), "{line}");
            } else {
                tracing::info!(event_kind = kind, host, rule = %c.rule, status = c.status.name(), "{line}");
            }
        }
        EventBody::FimChange(f) => {
            *file_changes += 1;
            if *file_changes <= MAX_LOGGED_FILE_CHANGES {
                let path = f.path.display();
                tracing::warn!(event_kind = kind, host, path = %path, change = %f.change, "file {}: {path}", f.change);
            }
        }
        EventBody::FimTamper { detail } => {
            tracing::error!(
                event_kind = kind,
                host,
                "FIM database failed its seal (tampered?): {}",
                plumb_core::printable(&detail.join("; "))
            );
        }
        EventBody::Snapshot(_) | EventBody::Remediation(_) => {}
    }
}

/// Counts blocking work in flight so SIGTERM can wait for it.
struct Inflight(Arc<Shared>);
impl Inflight {
    fn new(s: &Arc<Shared>) -> Inflight {
        s.inflight.fetch_add(1, Ordering::SeqCst);
        Inflight(s.clone())
    }
}
impl Drop for Inflight {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Runs `f` on the blocking pool unless the previous run of the same job
/// (`busy`) is still going; reports a run longer than `limit` as an error
/// event without waiting for it (a hung file system stalls only that job).
async fn job<F, E>(
    shared: &Arc<Shared>,
    name: &'static str,
    busy: &Arc<AtomicBool>,
    limit: Duration,
    f: F,
) where
    F: FnOnce(&Shared) -> Result<(), E> + Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    if busy.swap(true, Ordering::SeqCst) {
        tracing::warn!("{name}: the previous run is still going; skipping this one");
        return;
    }
    let s = shared.clone();
    let b = busy.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let _g = Inflight::new(&s);
        let started = Instant::now();
        let r = f(&s);
        s.stats.job_done(name, started.elapsed());
        write_metrics(&s);
        limits::release_free_memory();
        b.store(false, Ordering::SeqCst);
        r
    });
    match tokio::time::timeout(limit, handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => shared.agent(
            AgentEventKind::Error,
            Severity::Medium,
            format!("{name}: {e}"),
        ),
        Ok(Err(e)) => shared.agent(
            AgentEventKind::Error,
            Severity::High,
            format!("{name}: task failed: {e}"),
        ),
        Err(_) => shared.agent(
            AgentEventKind::Error,
            Severity::High,
            format!(
                "{name}: still running after {limit:?} (a hung file system?); other work carries on"
            ),
        ),
    }
}

/// Rewrites the metrics file, when the config names one (after every job).
fn write_metrics(shared: &Shared) {
    if let Some(path) = &shared.config().metrics_file {
        if let Err(e) = metrics::write(shared, path) {
            tracing::warn!("{e}");
        }
    }
}

/// The scheduled tasks, restarted on reload.
struct Workers {
    tasks: Vec<JoinHandle<()>>,
    busy: Busy,
    fim_timeout: Duration,
}

/// One flag per kind of job: a run is skipped while the previous one of
/// the same kind is still going.
#[derive(Clone, Default)]
struct Busy {
    fim: Arc<AtomicBool>,
    checks: Arc<AtomicBool>,
    snapshot: Arc<AtomicBool>,
}

impl Workers {
    fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    fn spawn(shared: &Arc<Shared>, cfg: &Config) -> Workers {
        let busy = Busy::default();
        let l = &cfg.limits;
        let rt = start_realtime(shared, cfg);
        let mut tasks = vec![tokio::spawn(schedule(
            shared.clone(),
            rt.clone(),
            busy.clone(),
            cfg.intervals.clone(),
            l.fim_timeout,
        ))];
        if let Some(rt) = rt {
            let debounce = Duration::from_millis(l.realtime_debounce_ms);
            tasks.push(tokio::spawn(flusher(
                shared.clone(),
                rt,
                debounce,
                l.fim_timeout,
            )));
        }
        Workers {
            tasks,
            busy,
            fim_timeout: l.fim_timeout,
        }
    }

    /// A snapshot now, as its own task (skipped while one is running).
    fn snapshot_now(&self, shared: &Arc<Shared>) {
        let (s, b, limit) = (shared.clone(), self.busy.snapshot.clone(), self.fim_timeout);
        tokio::spawn(async move { job(&s, "snapshot", &b, limit, scheduler::snapshot).await });
    }
}

/// The inotify watcher for the `realtime` watches of the policy in force;
/// `None` (with a warning event) when it cannot be set up.
fn start_realtime(shared: &Arc<Shared>, cfg: &Config) -> Option<Arc<Mutex<Realtime>>> {
    let policy = shared.policy();
    let watches = Watches::new(&policy.fim_rules()).unwrap_or_default();
    let l = &cfg.limits;
    match Realtime::new(&shared.root, watches, l.realtime_max_dirty, l.max_watches) {
        Ok(rt) => Some(Arc::new(Mutex::new(rt))),
        Err(e) => {
            shared.agent(
                AgentEventKind::Warning,
                Severity::High,
                format!("{e}; file integrity relies on periodic rescans only"),
            );
            None
        }
    }
}

/// Adds the inotify watches of every realtime root, reporting what could
/// not be watched.
async fn add_watches(shared: &Arc<Shared>, rt: Arc<Mutex<Realtime>>) {
    let warnings = tokio::task::spawn_blocking(move || {
        let mut rt = lock(&rt);
        let mut w = Vec::new();
        for root in rt.roots() {
            w.extend(rt.add_tree(&root));
        }
        (w, rt.watched_count())
    })
    .await
    .unwrap_or_default();
    let (warnings, watched) = warnings;
    shared.stats.set_realtime_watches(watched);
    for w in warnings {
        shared.agent(AgentEventKind::Warning, Severity::Medium, w);
    }
}

/// The scheduled work: at start, watches first (so nothing written
/// meanwhile is missed), then a FIM pass, the checks and a snapshot; then
/// each on its interval, each run in its own task so a slow one never
/// delays the others.
async fn schedule(
    s: Arc<Shared>,
    rt: Option<Arc<Mutex<Realtime>>>,
    busy: Busy,
    iv: config::Intervals,
    limit: Duration,
) {
    if let Some(rt) = rt {
        add_watches(&s, rt).await;
    }
    job(&s, "FIM rescan", &busy.fim, limit, |sh| {
        scheduler::fim_pass(sh, &Scope::All, Depth::Metadata).map(drop)
    })
    .await;
    job(
        &s,
        "checks",
        &busy.checks,
        limit,
        remediation::checks_then_remediate,
    )
    .await;
    job(&s, "snapshot", &busy.snapshot, limit, scheduler::snapshot).await;

    let start = tokio::time::Instant::now();
    let mut checks = tokio::time::interval_at(start + iv.checks, iv.checks);
    let mut rescan = tokio::time::interval_at(start + iv.fim_rescan, iv.fim_rescan);
    let mut verify = tokio::time::interval_at(start + iv.fim_verify, iv.fim_verify);
    let mut snap = tokio::time::interval_at(start + iv.snapshot, iv.snapshot);
    for t in [&mut checks, &mut rescan, &mut verify, &mut snap] {
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    }
    loop {
        let s = s.clone();
        let busy = busy.clone();
        tokio::select! {
            _ = checks.tick() => {
                tokio::spawn(async move {
                    job(&s, "checks", &busy.checks, limit, remediation::checks_then_remediate).await;
                });
            }
            _ = rescan.tick() => {
                tokio::spawn(async move {
                    job(&s, "FIM rescan", &busy.fim, limit, |sh| {
                        scheduler::fim_pass(sh, &Scope::All, Depth::Metadata).map(drop)
                    }).await;
                });
            }
            _ = verify.tick() => {
                tokio::spawn(async move {
                    job(&s, "FIM verify", &busy.fim, limit, |sh| {
                        scheduler::fim_pass(sh, &Scope::All, Depth::Full).map(drop)
                    }).await;
                });
            }
            _ = snap.tick() => {
                tokio::spawn(async move {
                    job(&s, "snapshot", &busy.snapshot, limit, scheduler::snapshot).await;
                });
            }
        }
    }
}

/// Waits for dirty paths, lets them settle for the debounce, then re-hashes
/// exactly those (and rescans roots that overflowed).
async fn flusher(
    shared: Arc<Shared>,
    rt: Arc<Mutex<Realtime>>,
    debounce: Duration,
    limit: Duration,
) {
    let rts = lock(&rt).shared.clone();
    let mut degraded = tokio::time::interval(DEGRADED_POLL);
    degraded.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let busy = Arc::new(AtomicBool::new(false));
    loop {
        let mut poll = false;
        tokio::select! {
            _ = rts.wake.notified() => {}
            _ = degraded.tick() => poll = true,
        }
        if poll {
            let unwatched: Vec<Vec<u8>> = lock(&rt).unwatched.iter().cloned().collect();
            if !unwatched.is_empty() {
                job(&shared, "FIM degraded poll", &busy, limit, move |sh| {
                    scheduler::fim_pass(sh, &Scope::Paths(unwatched), Depth::Metadata).map(drop)
                })
                .await;
            }
            continue;
        }
        // Debounce: wait for a quiet period, but never more than 4x it
        // after the first change, so a steady stream is still reported.
        // A pending rescan of whole roots (a burst overflowed) waits for
        // the burst to end, up to ROOT_COALESCE, so that one rescan covers
        // it rather than one per debounce period.
        loop {
            let (first, last, rescan) = rts.timing();
            let (Some(first), Some(last)) = (first, last) else {
                break;
            };
            let cap = if rescan {
                ROOT_COALESCE.max(debounce * 4)
            } else {
                debounce * 4
            };
            let due = (last + debounce).min(first + cap);
            let now = Instant::now();
            if now >= due {
                break;
            }
            tokio::time::sleep(due - now).await;
        }
        // dpkg unpacking: judge once its database settles (docs/fim.md),
        // so an upgrade in progress is compared in its final state.
        let fs = crate::rootfs::RootFs::new(shared.root.clone());
        let waiting = Instant::now();
        while crate::dpkg::busy(&fs).is_some()
            && waiting.elapsed() < crate::fim::package::SETTLE_WAIT
        {
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let dirty = rts.take();
        if dirty.is_empty() {
            continue;
        }
        for w in dirty.warnings {
            shared.agent(AgentEventKind::Warning, Severity::Medium, w);
        }
        // Sorted: a subtree follows the root that covers it.
        let mut roots: Vec<Vec<u8>> = Vec::new();
        for r in dirty.roots {
            if !roots.last().is_some_and(|l| integrity::below(l, &r)) {
                roots.push(r);
            }
        }
        let paths: Vec<Vec<u8>> = dirty
            .paths
            .into_iter()
            .filter(|p| !roots.iter().any(|r| integrity::below(r, p)))
            .collect();
        let rt2 = rt.clone();
        job(&shared, "realtime", &busy, limit, move |sh| {
            // Only the changed paths are looked at before the pass; whole
            // roots are not walked for new directories here: the rescan
            // reports them added (or replaced), and they are watched after it.
            let warnings = {
                let mut rt = lock(&rt2);
                let w = rt.refresh(&paths);
                sh.stats.set_realtime_watches(rt.watched_count());
                w
            };
            for w in warnings {
                sh.agent(AgentEventKind::Warning, Severity::Medium, w);
            }
            if !roots.is_empty() {
                let changed = scheduler::fim_pass(sh, &Scope::Paths(roots), Depth::Metadata)?;
                let (fresh, warnings) = {
                    let mut rt = lock(&rt2);
                    let r = rt.watch_changed(&changed);
                    sh.stats.set_realtime_watches(rt.watched_count());
                    r
                };
                for w in warnings {
                    sh.agent(AgentEventKind::Warning, Severity::Medium, w);
                }
                // Written to between the rescan and its watch: looked at again.
                lock(&rt2).shared.requeue(fresh);
            }
            // Full: the file's times may not have moved within the
            // kernel's timestamp granularity. In passes of at most
            // PASS_PATHS, so what a pass holds stays bounded however
            // fast a burst is written.
            for chunk in paths.chunks(PASS_PATHS) {
                scheduler::fim_pass(sh, &Scope::Paths(chunk.to_vec()), Depth::Full)?;
            }
            Ok::<(), integrity::IntegrityError>(())
        })
        .await;
    }
}

/// The daemon's entry point: builds the runtime and runs until stopped.
/// `config_path` is re-read on SIGHUP.
pub fn run(config_path: PathBuf, cfg: Config) -> anyhow::Result<u8> {
    limits::limit_heap_arenas();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .thread_name("plumb-agent")
        .enable_all()
        .build()?;
    let code = rt.block_on(main_loop(config_path, cfg));
    // Blocking work stuck on a hung file system must not keep us alive.
    rt.shutdown_timeout(Duration::from_secs(1));
    code
}

fn open_state(cfg: &Config, rules: &[plumb_core::FimRule]) -> anyhow::Result<(Outbox, SealedFim)> {
    // Private: created 0700, tightened when group/other may read it,
    // refused when they may write it (docs/agent.md).
    plumb_os::private::ensure_private_dir(&cfg.state_dir)?;
    // A new state directory: the FIM database is expected to be missing.
    // It is created before the outbox, so no interrupted first start
    // leaves an outbox without it.
    let first_start = !cfg.state_dir.join("state.db").exists();
    let fim = SealedFim::open(&cfg.state_dir, &cfg.root, rules, first_start)?;
    let outbox = Outbox::open(
        &cfg.state_dir.join("state.db"),
        cfg.limits.outbox_max_events,
    )?;
    Ok((outbox, fim))
}

/// The running daemon: its shared state and the tasks it started.
struct Daemon {
    shared: Arc<Shared>,
    /// The config in force (replaced on a successful reload).
    cfg: Config,
    notifier: Notifier,
    delivery: Delivery,
    /// Polls the collector for signed baselines.
    poller: Option<JoinHandle<()>>,
    workers: Workers,
}

/// What the main loop waits for, besides signals.
struct Inbox {
    /// A new signed baseline is in force.
    changed: tokio::sync::mpsc::Receiver<()>,
    /// The collector is reachable again after failures.
    reconnected: tokio::sync::mpsc::Receiver<()>,
}

async fn main_loop(config_path: PathBuf, cfg: Config) -> anyhow::Result<u8> {
    let mut signals = signals::stream()?;
    let (mut daemon, mut inbox) = start(cfg)?;
    daemon.notifier.ready();
    let mut watchdog = daemon
        .notifier
        .watchdog_interval()
        .map(|d| tokio::time::interval(d.max(Duration::from_millis(100))));
    loop {
        let sig = tokio::select! {
            s = signals.recv() => s,
            Some(()) = inbox.changed.recv() => {
                // A new signed baseline is in force: restart the scheduled
                // work on it (watches, a FIM pass, checks, a snapshot).
                daemon.restart_workers();
                continue;
            }
            Some(()) = inbox.reconnected.recv() => {
                // The collector missed events while it was away: a snapshot
                // brings it up to date with the full state.
                tracing::info!("collector reachable again; sending a snapshot");
                daemon.workers.snapshot_now(&daemon.shared);
                continue;
            }
            _ = async { match &mut watchdog { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                daemon.notifier.watchdog();
                continue;
            }
        };
        match sig {
            Some(Signal::Reload) => daemon.reload(&config_path).await,
            Some(Signal::Stop) | None => break,
        }
    }
    daemon.stop(&mut signals).await;
    Ok(crate::EXIT_OK)
}

/// Opens the state, loads the policy, reports the start and starts
/// delivery, the baseline poller and the scheduled work.
fn start(cfg: Config) -> anyhow::Result<(Daemon, Inbox)> {
    let trust = distribution::trust_for(&cfg)?;
    let loaded = distribution::load(&cfg, trust.as_ref())?;
    let (outbox, fim) = open_state(&cfg, &loaded.policy.fim_rules())?;
    let shared = Arc::new(Shared {
        host: cfg.host(),
        root: cfg.root.clone(),
        proc: cfg.proc_dir(),
        policy: RwLock::new(Arc::new(loaded.policy)),
        outbox: Mutex::new(outbox),
        fim: Mutex::new(fim),
        limiter: RateLimiter::new(cfg.limits.hash_mb_per_s),
        delivery: tokio::sync::Notify::new(),
        inflight: AtomicUsize::new(0),
        config: RwLock::new(Arc::new(cfg.clone())),
        trust: RwLock::new(trust.map(Arc::new)),
        poll_now: tokio::sync::Notify::new(),
        dry_run_seen: Mutex::new(std::collections::HashMap::new()),
        stats: metrics::Stats::default(),
    });
    for p in limits::lower_priority(cfg.limits.nice, cfg.limits.io_idle) {
        shared.agent(AgentEventKind::Warning, Severity::Low, p);
    }
    let mode = match &cfg.collector {
        Some(c) => format!("sending to {}", c.url),
        None => format!("standalone, events to {}", cfg.events_file.display()),
    };
    shared.agent(
        AgentEventKind::Started,
        Severity::Info,
        format!(
            "plumb agent {} started on {} (root {}, {mode})",
            env!("CARGO_PKG_VERSION"),
            shared.host,
            cfg.root.display()
        ),
    );
    shared.emit(loaded.events);
    distribution::remediation_notice(&shared);
    let (reconnected_tx, reconnected) = tokio::sync::mpsc::channel::<()>(1);
    let delivery = match &cfg.collector {
        Some(c) => sender::spawn(shared.clone(), c.clone(), reconnected_tx)?,
        None => sink::spawn(shared.clone(), &cfg.events_file)?,
    };
    // New signed baselines from the collector (only with trusted keys; the
    // poller asks nothing while there are none).
    let (changed_tx, changed) = tokio::sync::mpsc::channel::<()>(4);
    let poller = match &cfg.collector {
        Some(c) => Some(tokio::spawn(distribution::poller(
            shared.clone(),
            sender::Client::new(c)?,
            changed_tx,
        ))),
        None => None,
    };
    let workers = Workers::spawn(&shared, &cfg);
    let daemon = Daemon {
        shared,
        cfg,
        notifier: Notifier::from_env(),
        delivery,
        poller,
        workers,
    };
    Ok((
        daemon,
        Inbox {
            changed,
            reconnected,
        },
    ))
}

impl Daemon {
    fn restart_workers(&mut self) {
        self.workers.abort();
        self.workers = Workers::spawn(&self.shared, &self.cfg);
    }

    /// SIGHUP: the config and baselines again; the old ones stay in force
    /// when the new ones cannot be loaded.
    async fn reload(&mut self, config_path: &std::path::Path) {
        self.notifier.status("reloading");
        if let Some(new) = reload(&self.shared, config_path, &self.cfg).await {
            self.cfg = new;
            self.shared
                .outbox()
                .set_cap(self.cfg.limits.outbox_max_events);
            self.restart_workers();
        }
        self.shared.poll_now.notify_one();
        self.notifier.status("running");
    }

    /// Drains: stops scheduling, waits for work in flight up to the
    /// deadline, reports the stop and delivers what is left; a second stop
    /// signal exits at once.
    async fn stop(mut self, signals: &mut tokio::sync::mpsc::Receiver<Signal>) {
        self.notifier.stopping();
        self.workers.abort();
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        let grace = self.cfg.limits.shutdown_grace;
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.inflight.load(Ordering::SeqCst) > 0 {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    tracing::warn!("shutdown: work still in flight after {grace:?}; exiting anyway");
                    break;
                }
                s = signals.recv() => if s == Some(Signal::Stop) {
                    tracing::warn!("second stop signal: exiting at once");
                    return;
                },
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
        self.shared.agent(
            AgentEventKind::Stopped,
            Severity::Info,
            "plumb agent stopped",
        );
        let final_flush = self.delivery.finish(self.shared.clone());
        tokio::select! {
            _ = tokio::time::sleep_until(deadline + Duration::from_secs(2)) => {
                tracing::warn!("shutdown: final delivery did not finish in time; events stay in the outbox");
            }
            _ = final_flush => {}
            s = signals.recv() => if s == Some(Signal::Stop) {
                tracing::warn!("second stop signal: exiting at once");
            },
        }
    }
}

/// Re-reads the config and baselines; on any error reports the refusal and
/// returns None (the old ones stay in force).
async fn reload(shared: &Arc<Shared>, path: &std::path::Path, old: &Config) -> Option<Config> {
    let new = match Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            shared.agent(
                AgentEventKind::Error,
                Severity::High,
                format!("reload refused, the running config stays in force: {e}"),
            );
            return None;
        }
    };
    let running = in_force(shared);
    let refused = |e: String| {
        shared.agent(
            AgentEventKind::BaselineRefused,
            Severity::High,
            format!("reload refused, baseline {running} stays in force: {e}"),
        );
    };
    let n2 = new.clone();
    let loaded = tokio::task::spawn_blocking(move || {
        let trust = distribution::trust_for(&n2)?;
        let loaded = distribution::load(&n2, trust.as_ref())?;
        anyhow::Ok((trust, loaded))
    })
    .await;
    let (trust, loaded) = match loaded {
        Ok(Ok(l)) => l,
        Ok(Err(e)) => {
            refused(format!("{e:#}"));
            return None;
        }
        Err(e) => {
            refused(e.to_string());
            return None;
        }
    };
    shared.emit(loaded.events);
    let s = shared.clone();
    let policy = loaded.policy;
    let installed = tokio::task::spawn_blocking(move || distribution::install(&s, policy)).await;
    match installed {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            refused(e.to_string());
            return None;
        }
        Err(e) => {
            refused(e.to_string());
            return None;
        }
    }
    shared.set_trust(trust);
    shared.set_config(new.clone());
    distribution::remediation_notice(shared);
    let restart = needs_restart(old, &new);
    let mut msg = format!("reloaded: baseline {}", in_force(shared));
    if !restart.is_empty() {
        msg.push_str(&format!(
            "; changes to {} take effect at the next restart",
            restart.join(", ")
        ));
    }
    shared.agent(AgentEventKind::Reloaded, Severity::Info, msg);
    Some(new)
}

/// The baselines in force, for messages: `id vN, id vN`.
fn in_force(shared: &Shared) -> String {
    shared
        .policy()
        .baselines
        .iter()
        .map(|b| format!("{} v{}", b.id, b.version))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The settings changed by a reload that only a restart applies.
fn needs_restart(old: &Config, new: &Config) -> Vec<&'static str> {
    let mut restart = Vec::new();
    if new.root != old.root || new.proc != old.proc {
        restart.push("root/proc");
    }
    if new.state_dir != old.state_dir {
        restart.push("state_dir");
    }
    if new.collector != old.collector || new.events_file != old.events_file {
        restart.push("collector/events_file");
    }
    if new.limits.hash_mb_per_s != old.limits.hash_mb_per_s
        || new.limits.nice != old.limits.nice
        || new.limits.io_idle != old.limits.io_idle
    {
        restart.push("limits.hash_mb_per_s/nice/io_idle");
    }
    restart
}

/// The delivery task (sink or sender), and its last flush at shutdown.
pub struct Delivery {
    task: JoinHandle<()>,
    last: LastFlush,
}

enum LastFlush {
    Sink(Arc<Mutex<sink::Sink>>),
    Sender(Arc<sender::Client>),
}

impl Delivery {
    /// Stops the task and delivers what is left, once.
    async fn finish(self, shared: Arc<Shared>) {
        self.task.abort();
        match self.last {
            LastFlush::Sink(sink) => {
                let _ = tokio::task::spawn_blocking(move || sink::flush(&shared, &sink)).await;
            }
            LastFlush::Sender(client) => {
                let _ = client.send_pending(&shared).await;
            }
        }
    }
}
