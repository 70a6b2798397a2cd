//! `plumb agent`: the daemon. It evaluates checks on a schedule, watches
//! file integrity (periodic rescans and inotify), commits every event to a
//! durable outbox first, and delivers the outbox to the collector or, when
//! there is none, to a local JSON-lines file. See docs/agent.md.

pub mod config;
pub mod distribution;
pub mod facts;
pub mod integrity;
pub mod limits;
pub mod outbox;
pub mod realtime;
pub mod remediation;
pub mod scheduler;
pub mod sender;
pub mod sink;

use config::Config;
use integrity::{Depth, Integrity, Scope, Watches};
use limits::RateLimiter;
use outbox::{NewEvent, Outbox};
use plumb_core::event::{AgentEventKind, EventBody};
use plumb_core::report::BaselineRef;
use plumb_core::{Baseline, Severity};
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

/// The policy in force: the baselines.
#[derive(Debug)]
pub struct Policy {
    /// Loaded baselines (checks and FIM watches).
    pub baselines: Vec<Baseline>,
    /// Every baseline came through the trust policy (signed by a trusted
    /// key); only then may the agent remediate.
    pub signed: bool,
}

impl Policy {
    /// Every `[[fim]]` watch of the baselines.
    pub fn fim_rules(&self) -> Vec<plumb_core::FimRule> {
        self.baselines
            .iter()
            .flat_map(|b| b.fim.iter().cloned())
            .collect()
    }
}

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
    pub fim: Mutex<Box<dyn Integrity>>,
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
    pub fn emit(&self, mut events: Vec<NewEvent>) {
        if events.is_empty() {
            return;
        }
        let policy = self.policy();
        let bref = policy.baselines.first().map(|b| BaselineRef {
            id: b.id.clone(),
            version: b.version,
        });
        for e in &mut events {
            if let EventBody::Agent(a) = &mut e.body {
                if a.baseline.is_none() {
                    a.baseline.clone_from(&bref);
                }
                match a.what {
                    AgentEventKind::Error => tracing::error!("{}", a.message),
                    AgentEventKind::Warning
                    | AgentEventKind::BaselineRefused
                    | AgentEventKind::EventsDropped => tracing::warn!("{}", a.message),
                    _ => tracing::info!("{}", a.message),
                }
            }
        }
        if let Err(e) = self.outbox().push(events) {
            tracing::error!("cannot commit events: {e}");
        }
        self.delivery.notify_one();
    }

    pub(crate) fn agent(&self, what: AgentEventKind, severity: Severity, msg: impl Into<String>) {
        self.emit(vec![NewEvent::agent(what, severity, msg)]);
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
async fn job<F>(
    shared: &Arc<Shared>,
    name: &'static str,
    busy: &Arc<AtomicBool>,
    limit: Duration,
    f: F,
) where
    F: FnOnce(&Shared) -> Result<(), String> + Send + 'static,
{
    if busy.swap(true, Ordering::SeqCst) {
        tracing::warn!("{name}: the previous run is still going; skipping this one");
        return;
    }
    let s = shared.clone();
    let b = busy.clone();
    let handle = tokio::task::spawn_blocking(move || {
        let _g = Inflight::new(&s);
        let r = f(&s);
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

/// The scheduled tasks, restarted on reload.
struct Workers {
    tasks: Vec<JoinHandle<()>>,
}

impl Workers {
    fn abort(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
    }

    fn spawn(shared: &Arc<Shared>, cfg: &Config, first_start: bool) -> Workers {
        let mut tasks = Vec::new();
        let fim_busy = Arc::new(AtomicBool::new(false));
        let checks_busy = Arc::new(AtomicBool::new(false));
        let snap_busy = Arc::new(AtomicBool::new(false));
        let policy = shared.policy();
        let watches = Watches::new(&policy.fim_rules()).unwrap_or_default();
        let l = cfg.limits.clone();
        let iv = cfg.intervals.clone();
        let rt = Realtime::new(&shared.root, watches, l.realtime_max_dirty, l.max_watches);
        let rt = match rt {
            Ok(rt) => Some(Arc::new(Mutex::new(rt))),
            Err(e) => {
                shared.agent(
                    AgentEventKind::Warning,
                    Severity::High,
                    format!("{e}; file integrity relies on periodic rescans only"),
                );
                None
            }
        };
        let s = shared.clone();
        let rt2 = rt.clone();
        let (fb, cb, sb) = (fim_busy.clone(), checks_busy.clone(), snap_busy.clone());
        let fim_timeout = l.fim_timeout;
        let debounce = Duration::from_millis(l.realtime_debounce_ms);
        tasks.push(tokio::spawn(async move {
            // Start-up: watches first (so nothing written meanwhile is
            // missed), then a FIM pass, the checks, and a snapshot.
            if let Some(rt) = &rt2 {
                let rt = rt.clone();
                let warnings = tokio::task::spawn_blocking(move || {
                    let mut rt = lock(&rt);
                    let mut w = Vec::new();
                    for root in rt.roots() {
                        w.extend(rt.add_tree(&root));
                    }
                    w
                })
                .await
                .unwrap_or_default();
                for w in warnings {
                    s.agent(AgentEventKind::Warning, Severity::Medium, w);
                }
            }
            let _ = first_start;
            job(&s, "FIM rescan", &fb, fim_timeout, |sh| {
                scheduler::fim_pass(sh, &Scope::All, Depth::Metadata).map(drop)
            })
            .await;
            job(&s, "checks", &cb, fim_timeout, remediation::checks_then_remediate).await;
            job(&s, "snapshot", &sb, fim_timeout, scheduler::snapshot).await;

            let start = tokio::time::Instant::now();
            let mut checks = tokio::time::interval_at(start + iv.checks, iv.checks);
            let mut rescan = tokio::time::interval_at(start + iv.fim_rescan, iv.fim_rescan);
            let mut verify = tokio::time::interval_at(start + iv.fim_verify, iv.fim_verify);
            let mut snap = tokio::time::interval_at(start + iv.snapshot, iv.snapshot);
            for t in [&mut checks, &mut rescan, &mut verify, &mut snap] {
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            }
            loop {
                // Each job runs in its own task so a slow one never delays
                // the others.
                tokio::select! {
                    _ = checks.tick() => {
                        let (s, b) = (s.clone(), cb.clone());
                        tokio::spawn(async move {
                            job(&s, "checks", &b, fim_timeout, remediation::checks_then_remediate).await;
                        });
                    }
                    _ = rescan.tick() => {
                        let (s, b) = (s.clone(), fb.clone());
                        tokio::spawn(async move {
                            job(&s, "FIM rescan", &b, fim_timeout, |sh| {
                                scheduler::fim_pass(sh, &Scope::All, Depth::Metadata).map(drop)
                            }).await;
                        });
                    }
                    _ = verify.tick() => {
                        let (s, b) = (s.clone(), fb.clone());
                        tokio::spawn(async move {
                            job(&s, "FIM verify", &b, fim_timeout, |sh| {
                                scheduler::fim_pass(sh, &Scope::All, Depth::Full).map(drop)
                            }).await;
                        });
                    }
                    _ = snap.tick() => {
                        let (s, b) = (s.clone(), sb.clone());
                        tokio::spawn(async move {
                            job(&s, "snapshot", &b, fim_timeout, scheduler::snapshot).await;
                        });
                    }
                }
            }
        }));
        if let Some(rt) = rt {
            let s = shared.clone();
            tasks.push(tokio::spawn(flusher(s, rt, debounce, fim_timeout)));
        }
        Workers { tasks }
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
        loop {
            let (first, last) = rts.timing();
            let (Some(first), Some(last)) = (first, last) else {
                break;
            };
            let due = (last + debounce).min(first + debounce * 4);
            let now = Instant::now();
            if now >= due {
                break;
            }
            tokio::time::sleep(due - now).await;
        }
        let dirty = rts.take();
        if dirty.is_empty() {
            continue;
        }
        for w in dirty.warnings {
            shared.agent(AgentEventKind::Warning, Severity::Medium, w);
        }
        let roots: Vec<Vec<u8>> = dirty.roots.into_iter().collect();
        let paths: Vec<Vec<u8>> = dirty
            .paths
            .into_iter()
            .filter(|p| !roots.iter().any(|r| integrity::below(r, p)))
            .collect();
        let rt2 = rt.clone();
        job(&shared, "realtime", &busy, limit, move |sh| {
            let mut all = roots.clone();
            all.extend(paths.iter().cloned());
            let warnings = lock(&rt2).refresh(&all);
            for w in warnings {
                sh.agent(AgentEventKind::Warning, Severity::Medium, w);
            }
            if !roots.is_empty() {
                scheduler::fim_pass(sh, &Scope::Paths(roots), Depth::Metadata)?;
            }
            if !paths.is_empty() {
                // Full: the file's times may not have moved within the
                // kernel's timestamp granularity.
                scheduler::fim_pass(sh, &Scope::Paths(paths), Depth::Full)?;
            }
            Ok(())
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

fn open_state(
    cfg: &Config,
    rules: &[plumb_core::FimRule],
) -> anyhow::Result<(Outbox, Box<dyn Integrity>)> {
    // Private: created 0700, tightened when group/other may read it,
    // refused when they may write it (docs/agent.md).
    plumb_os::private::ensure_private_dir(&cfg.state_dir)?;
    // A new state directory: the FIM database is expected to be missing.
    // It is created before the outbox, so no interrupted first start
    // leaves an outbox without it.
    let first_start = !cfg.state_dir.join("state.db").exists();
    let fim = integrity::sealed::SealedFim::open(&cfg.state_dir, &cfg.root, rules, first_start)
        .map_err(anyhow::Error::msg)?;
    let outbox = Outbox::open(
        &cfg.state_dir.join("state.db"),
        cfg.limits.outbox_max_events,
    )?;
    Ok((outbox, Box::new(fim)))
}

async fn main_loop(config_path: PathBuf, cfg: Config) -> anyhow::Result<u8> {
    let trust = distribution::trust_for(&cfg)?;
    let loaded = distribution::load(&cfg, trust.as_ref())?;
    let (outbox, fim) = open_state(&cfg, &loaded.policy.fim_rules())?;
    let mut signals = signals::stream()?;
    let notifier = Notifier::from_env();
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
    let delivery = match &cfg.collector {
        Some(c) => sender::spawn(shared.clone(), c.clone())?,
        None => sink::spawn(shared.clone(), &cfg.events_file)?,
    };
    // New signed baselines from the collector (only with trusted keys; the
    // poller asks nothing while there are none).
    let (changed_tx, mut changed_rx) = tokio::sync::mpsc::channel::<()>(4);
    let poller = match &cfg.collector {
        Some(c) => Some(tokio::spawn(distribution::poller(
            shared.clone(),
            sender::Client::new(c)?,
            changed_tx,
        ))),
        None => None,
    };
    let mut workers = Workers::spawn(&shared, &cfg, true);
    let mut cfg = cfg;
    notifier.ready();
    let mut watchdog = notifier
        .watchdog_interval()
        .map(|d| tokio::time::interval(d.max(Duration::from_millis(100))));
    loop {
        let sig = tokio::select! {
            s = signals.recv() => s,
            Some(()) = changed_rx.recv() => {
                // A new signed baseline is in force: restart the scheduled
                // work on it (watches, a FIM pass, checks, a snapshot).
                workers.abort();
                workers = Workers::spawn(&shared, &cfg, false);
                continue;
            }
            _ = async { match &mut watchdog { Some(w) => { w.tick().await; } None => std::future::pending().await } } => {
                notifier.watchdog();
                continue;
            }
        };
        match sig {
            Some(Signal::Reload) => {
                notifier.status("reloading");
                if let Some(new) = reload(&shared, &config_path, &cfg).await {
                    workers.abort();
                    cfg = new;
                    shared.outbox().set_cap(cfg.limits.outbox_max_events);
                    workers = Workers::spawn(&shared, &cfg, false);
                }
                shared.poll_now.notify_one();
                notifier.status("running");
            }
            Some(Signal::Stop) | None => break,
        }
    }
    // Drain: stop scheduling, wait for work in flight up to the deadline;
    // a second signal exits at once.
    notifier.stopping();
    workers.abort();
    if let Some(p) = poller {
        p.abort();
    }
    let deadline = tokio::time::Instant::now() + cfg.limits.shutdown_grace;
    loop {
        if shared.inflight.load(Ordering::SeqCst) == 0 {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep_until(deadline) => {
                tracing::warn!("shutdown: work still in flight after {:?}; exiting anyway", cfg.limits.shutdown_grace);
                break;
            }
            s = signals.recv() => if s == Some(Signal::Stop) {
                tracing::warn!("second stop signal: exiting at once");
                return Ok(crate::EXIT_OK);
            },
            _ = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
    }
    shared.agent(
        AgentEventKind::Stopped,
        Severity::Info,
        "plumb agent stopped",
    );
    let final_flush = delivery.finish(shared.clone());
    tokio::select! {
        _ = tokio::time::sleep_until(deadline + Duration::from_secs(2)) => {
            tracing::warn!("shutdown: final delivery did not finish in time; events stay in the outbox");
        }
        _ = final_flush => {}
        s = signals.recv() => if s == Some(Signal::Stop) {
            tracing::warn!("second stop signal: exiting at once");
        },
    }
    Ok(crate::EXIT_OK)
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
    let running = shared
        .policy()
        .baselines
        .iter()
        .map(|b| format!("{} v{}", b.id, b.version))
        .collect::<Vec<_>>()
        .join(", ");
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
    if let Ok(Err(e)) | Err(e) = installed.map_err(|e| e.to_string()) {
        refused(e);
        return None;
    }
    shared.set_trust(trust);
    shared.set_config(new.clone());
    distribution::remediation_notice(shared);
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
    let now = shared
        .policy()
        .baselines
        .iter()
        .map(|b| format!("{} v{}", b.id, b.version))
        .collect::<Vec<_>>()
        .join(", ");
    let mut msg = format!("reloaded: baseline {now}");
    if !restart.is_empty() {
        msg.push_str(&format!(
            "; changes to {} take effect at the next restart",
            restart.join(", ")
        ));
    }
    shared.agent(AgentEventKind::Reloaded, Severity::Info, msg);
    Some(new)
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
