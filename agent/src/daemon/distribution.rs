//! Signed baselines in the daemon (docs/signing.md). With `trusted_keys` in
//! the config, every baseline the agent runs came through
//! [`TrustPolicy::consider`]: the local `baselines` files (then signed
//! bundles) at start and on SIGHUP, and the bundles the collector serves,
//! one per baseline id that applies to this host (`GET /v1/baselines`, then
//! `GET /v1/baselines/{id}`; `GET /v1/baseline` from an older collector),
//! polled every `intervals.baseline_poll`. What runs is
//! the newest applied version of each baseline id, as stored by the trust
//! policy; a new one replaces the policy in force (checks and FIM watches
//! together) and the scheduled work restarts on it. Without trusted keys the
//! local files are plain TOML and are never remediated.

use super::Shared;
use super::config::{Config, ConfigFile};
use super::integrity::IntegrityError;
use super::outbox::NewEvent;
use super::sender::{Client, Fetched, Listing, SendError};
use crate::policy::{Policy, load_baselines};
use crate::trust::{Decision, TrustError, TrustPolicy, load_trusted_keys};
use anyhow::Context as _;
use plumb_core::bundle::{Bundle, MAX_BUNDLE_BYTES};
use plumb_core::event::{AgentEventKind, EventBody};
use plumb_core::{Baseline, BaselineError, Diagnostic, PublicKey, Severity};
use std::io::Read as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Why a signed baseline could not be put in force (what ran before stays).
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    /// The trust state could not be read or written.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The applied baselines do not go together.
    #[error(transparent)]
    Baselines(#[from] BaselineError),
    /// Their FIM watches cannot be installed.
    #[error(transparent)]
    Fim(#[from] IntegrityError),
}

/// A policy to install, with the events its loading produced.
#[derive(Debug)]
pub struct Loaded {
    /// The baselines to run.
    pub policy: Policy,
    /// `baseline_applied`, `baseline_refused`, warnings, errors.
    pub events: Vec<NewEvent>,
}

/// The trust policy of a config: `None` without trusted keys.
pub fn trust_for(cfg: &Config) -> anyhow::Result<Option<TrustPolicy>> {
    if cfg.trusted_keys.is_empty() {
        return Ok(None);
    }
    let keys = load_trusted_keys(&cfg.trusted_keys)?;
    Ok(Some(TrustPolicy::new(keys, &cfg.state_dir)?))
}

fn read_capped(path: &Path) -> anyhow::Result<Vec<u8>> {
    let f = plumb_os::open_trusted(path, plumb_os::FileKind::Baseline)?;
    let mut bytes = Vec::new();
    // One byte past the cap, so the parser reports an oversized bundle.
    f.into_file()
        .take(MAX_BUNDLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("{}", path.display()))?;
    Ok(bytes)
}

/// Checks the local baselines of a config as the daemon would load them
/// (`--validate`): plain TOML without trusted keys, bundles verifying with
/// the trusted `keys` otherwise (the version floor is not consulted; `None`:
/// the keys did not load, which is reported on its own). Every problem is
/// listed: a baseline's own at its lines, a file that cannot be read or
/// verified at the config line naming it.
pub fn validate(file: &ConfigFile, keys: Option<&[PublicKey]>) -> Vec<Diagnostic> {
    let cfg = &file.config;
    let mut out = Vec::new();
    let named = cfg
        .baselines
        .iter()
        .enumerate()
        .map(|(i, p)| (format!("baselines[{i}]"), p))
        .filter(|(field, _)| !file.is_faulty(field));
    if cfg.trusted_keys.is_empty() {
        let mut loaded = Vec::new();
        for (field, p) in named {
            match Baseline::load(p) {
                Ok(b) => loaded.push(b),
                Err(BaselineError::Invalid(d)) => out.extend(d),
                Err(e) => out.push(file.at(&field, e)),
            }
        }
        if let Err(BaselineError::Invalid(d)) = Baseline::check_unique(&loaded) {
            out.extend(d);
        }
        return out;
    }
    let Some(keys) = keys else {
        return out;
    };
    for (field, p) in named {
        let verified = read_capped(p).and_then(|bytes| {
            Bundle::parse(&bytes)
                .and_then(|b| b.verify(keys))
                .with_context(|| {
                    format!(
                        "{}: with trusted_keys set, baselines must be signed bundles",
                        p.display()
                    )
                })
        });
        if let Err(e) = verified {
            out.push(file.at(&field, format!("{e:#}")));
        }
    }
    out
}

/// The bundle is byte for byte the one already stored for its id: nothing
/// to decide (a restart, or the collector serving what runs).
fn already_running(trust: &TrustPolicy, bytes: &[u8]) -> bool {
    let Ok(b) = Bundle::parse(bytes) else {
        return false;
    };
    std::fs::read(trust.stored_bundle_path(b.id()))
        .map(|stored| stored == bytes)
        .unwrap_or(false)
}

/// A refused bundle that is genuine but not newer than what was applied:
/// an older local file after a newer push, not an attack worth an event.
/// A bundle that does not verify is never stale.
fn stale(trust: &TrustPolicy, bytes: &[u8]) -> bool {
    let Ok(b) = Bundle::parse(bytes) else {
        return false;
    };
    if b.verify(trust.keys()).is_err() {
        return false;
    }
    matches!(trust.applied_version(b.id()), Ok(Some(v)) if b.version() <= v)
}

fn decision_event(d: &Decision, source: &str) -> NewEvent {
    let mut ev = d.agent_event(env!("CARGO_PKG_VERSION"), None);
    ev.message = format!("{} ({source})", ev.message);
    let severity = match d {
        Decision::Applied { .. } => Severity::Info,
        Decision::Refused { .. } => Severity::High,
    };
    NewEvent {
        severity,
        body: EventBody::Agent(ev),
    }
}

/// The newest applied version of every baseline id, verified again with the
/// keys trusted now; the second list says why a stored one cannot run (a
/// key since removed, a damaged file).
fn applied_baselines(trust: &TrustPolicy) -> Result<(Vec<Baseline>, Vec<String>), AdoptError> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for id in trust.applied_versions()?.into_keys() {
        match trust.load_applied(&id) {
            Ok(Some(v)) => out.push(v.baseline),
            Ok(None) => {}
            Err(e) => errors.push(e.to_string()),
        }
    }
    Baseline::check_unique(&out)?;
    Ok((out, errors))
}

/// Loads the policy a config asks for. Without trusted keys: the local TOML
/// files (or the built-in baseline). With them: each local bundle goes
/// through the trust policy, then every applied baseline runs; when none
/// is applied and no local file is named, the built-in baseline runs
/// (unsigned, never remediated) until a signed one arrives. An `Err` means
/// nothing can run; the caller keeps what it had.
pub fn load(cfg: &Config, trust: Option<&TrustPolicy>) -> anyhow::Result<Loaded> {
    let Some(trust) = trust else {
        return Ok(Loaded {
            policy: Policy {
                baselines: load_baselines(&cfg.baselines)?,
                signed: false,
            },
            events: Vec::new(),
        });
    };
    let mut events = Vec::new();
    let mut refusals = Vec::new();
    for path in &cfg.baselines {
        let source = format!("local file {}", path.display());
        let bytes = match read_capped(path) {
            Ok(b) => b,
            Err(e) => {
                refusals.push(format!("{e:#}"));
                continue;
            }
        };
        if already_running(trust, &bytes) {
            continue;
        }
        let d = trust.consider(&bytes)?;
        if let Decision::Refused { reason, .. } = &d {
            if stale(trust, &bytes) {
                tracing::debug!("{source}: {reason}; the newer applied version runs");
                continue;
            }
            refusals.push(format!("{}: {reason}", path.display()));
        }
        events.push(decision_event(&d, &source));
    }
    let (baselines, errors) = applied_baselines(trust)?;
    for e in &errors {
        events.push(NewEvent::agent(
            AgentEventKind::Error,
            Severity::High,
            format!("stored signed baseline not run: {e}"),
        ));
    }
    if !baselines.is_empty() {
        return Ok(Loaded {
            policy: Policy {
                baselines,
                signed: true,
            },
            events,
        });
    }
    if cfg.baselines.is_empty() {
        events.push(NewEvent::agent(
            AgentEventKind::Warning,
            Severity::Medium,
            "no signed baseline applied yet: running the built-in baseline (unsigned, never remediated) until one arrives",
        ));
        return Ok(Loaded {
            policy: Policy {
                baselines: load_baselines(&[])?,
                signed: false,
            },
            events,
        });
    }
    let mut why = refusals;
    why.extend(errors);
    anyhow::bail!("no signed baseline can be run: {}", why.join("; "))
}

/// Makes `policy` the one in force: FIM watches first (a failure leaves
/// everything as it was), then the checks, in one swap.
pub fn install(shared: &Shared, policy: Policy) -> Result<(), IntegrityError> {
    shared
        .fim
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .set_rules(&policy.fim_rules())?;
    shared.set_policy(policy);
    Ok(())
}

/// Says, once per policy change, why a remediation mode will not act.
pub fn remediation_notice(shared: &Shared) {
    use super::config::RemediationMode;
    let cfg = shared.config();
    if cfg.remediation == RemediationMode::Off {
        return;
    }
    let policy = shared.policy();
    if !policy.signed {
        shared.agent(
            AgentEventKind::Warning,
            Severity::Medium,
            format!(
                "remediation = \"{}\" but the baseline in force is not signed ({}): the agent remediates only from a baseline accepted through trusted_keys; not remediating",
                cfg.remediation.name(),
                if cfg.trusted_keys.is_empty() {
                    "no trusted_keys configured"
                } else {
                    "no signed baseline applied yet"
                }
            ),
        );
        return;
    }
    let allowed = policy
        .baselines
        .iter()
        .flat_map(|b| &b.rules)
        .filter(|r| r.remediation.is_some() && cfg.remediation_allows(r))
        .count();
    if allowed == 0 {
        shared.agent(
            AgentEventKind::Warning,
            Severity::Low,
            format!(
                "remediation = \"{}\" but no rule of the baseline in force is allowed by remediation_allow / remediation_min_severity; not remediating",
                cfg.remediation.name()
            ),
        );
    }
}

/// Bundles received from the collector, each decided on its own (its own
/// id's anti-rollback floor), then the policy installed once when any was
/// applied. Returns whether the policy changed (the scheduled work must
/// restart on it). An `Err` is local (trust state, FIM): what was decided
/// before it stays decided, nothing is installed.
fn adopt(shared: &Shared, trust: &TrustPolicy, bundles: &[&[u8]]) -> Result<bool, AdoptError> {
    const SOURCE: &str = "from the collector";
    let mut decisions = Vec::new();
    for bytes in bundles {
        if already_running(trust, bytes) {
            continue;
        }
        decisions.push(trust.consider(bytes)?);
    }
    let applied = decisions
        .iter()
        .any(|d| matches!(d, Decision::Applied { .. }));
    if applied {
        let (baselines, errors) = applied_baselines(trust)?;
        for e in errors {
            shared.agent(
                AgentEventKind::Error,
                Severity::High,
                format!("stored signed baseline not run: {e}"),
            );
        }
        install(
            shared,
            Policy {
                baselines,
                signed: true,
            },
        )?;
    }
    // Even a genuine older version is reported: a collector serving one is
    // rolling back (the ETag keeps it to one event per bundle).
    shared.emit(
        decisions
            .iter()
            .map(|d| decision_event(d, SOURCE))
            .collect(),
    );
    if applied {
        remediation_notice(shared);
    }
    Ok(applied)
}

/// The ETags of the bundles decided on (applied or refused), so that the
/// same bytes are not judged twice: per baseline id from a collector that
/// lists them, and the one bundle of an older collector.
#[derive(Debug, Default)]
struct Decided {
    by_id: std::collections::BTreeMap<String, String>,
    legacy: Option<String>,
}

/// Polls the collector every `intervals.baseline_poll` and whenever
/// `shared.poll_now` is notified (SIGHUP, which may have changed the
/// trusted keys: everything is asked for again). Each poll lists the ids
/// that apply to this host (`GET /v1/baselines`) and fetches the ones whose
/// ETag has not been decided on (`GET /v1/baselines/{id}`); from a
/// collector without the listing, the one bundle of `GET /v1/baseline`.
/// Sends on `changed` when a new policy was installed.
pub async fn poller(shared: Arc<Shared>, client: Client, changed: tokio::sync::mpsc::Sender<()>) {
    let mut decided = Decided::default();
    loop {
        let wait = poll_once(&shared, &client, &mut decided, &changed).await;
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shared.poll_now.notified() => decided = Decided::default(),
        }
    }
}

/// A bundle fetched, with where its ETag is remembered.
struct Candidate {
    /// The listed id (`None`: the legacy endpoint).
    id: Option<String>,
    etag: Option<String>,
    bytes: Vec<u8>,
}

/// Fetches what has not been decided on. `Err`: ask again at the next poll.
async fn fetch_new(client: &Client, decided: &Decided) -> Result<Vec<Candidate>, SendError> {
    let mut out = Vec::new();
    match client.list_baselines().await? {
        Listing::Ids(ids) => {
            for l in ids {
                let known = decided.by_id.get(&l.id);
                if known == Some(&l.etag) {
                    continue;
                }
                match client
                    .fetch_baseline(Some(&l.id), known.map(String::as_str))
                    .await?
                {
                    Fetched::Bundle { bytes, etag } => out.push(Candidate {
                        id: Some(l.id),
                        etag,
                        bytes,
                    }),
                    // Withdrawn since the listing, or what was decided.
                    Fetched::NothingPublished | Fetched::NotModified => {}
                }
            }
        }
        Listing::Unsupported => {
            if let Fetched::Bundle { bytes, etag } = client
                .fetch_baseline(None, decided.legacy.as_deref())
                .await?
            {
                out.push(Candidate {
                    id: None,
                    etag,
                    bytes,
                });
            }
        }
    }
    Ok(out)
}

async fn poll_once(
    shared: &Arc<Shared>,
    client: &Client,
    decided: &mut Decided,
    changed: &tokio::sync::mpsc::Sender<()>,
) -> Duration {
    let every = shared.config().intervals.baseline_poll;
    let Some(trust) = shared.trust() else {
        return every;
    };
    let candidates = match fetch_new(client, decided).await {
        Ok(c) => c,
        Err(SendError::RetryAfter { after, .. }) => return after.min(every),
        Err(e) => {
            tracing::warn!("asking the collector for baselines: {e}");
            return every;
        }
    };
    if candidates.is_empty() {
        return every;
    }
    let s = shared.clone();
    let bundles: Vec<Vec<u8>> = candidates.iter().map(|c| c.bytes.clone()).collect();
    let r = tokio::task::spawn_blocking(move || {
        let refs: Vec<&[u8]> = bundles.iter().map(Vec::as_slice).collect();
        adopt(&s, &trust, &refs)
    })
    .await;
    match r {
        Ok(Ok(policy_changed)) => {
            for c in candidates {
                match (c.id, c.etag) {
                    (Some(id), Some(etag)) => {
                        decided.by_id.insert(id, etag);
                    }
                    (None, etag) => decided.legacy = etag,
                    (Some(_), None) => {}
                }
            }
            if policy_changed {
                let _ = changed.send(()).await;
            }
        }
        // A local failure (state unreadable, disk full): say so and try
        // the same bundles again next time.
        Ok(Err(e)) => shared.agent(
            AgentEventKind::Error,
            Severity::High,
            format!("baseline from the collector not applied: {e}"),
        ),
        Err(e) => shared.agent(
            AgentEventKind::Error,
            Severity::High,
            format!("baseline from the collector: task failed: {e}"),
        ),
    }
    every
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::bundle::SigningKey;

    fn text(version: u64) -> String {
        format!("schema = 1\nid = \"fleet\"\nversion = {version}\ntitle = \"t\"\n")
    }

    struct T {
        dir: tempfile::TempDir,
        key: SigningKey,
    }

    impl T {
        fn new() -> T {
            let dir = tempfile::tempdir().unwrap();
            let g = SigningKey::generate("t").unwrap();
            std::fs::write(dir.path().join("k.pub"), g.public.to_text()).unwrap();
            let key = SigningKey::from_pem(&g.private_pem, "t").unwrap();
            T { dir, key }
        }
        fn bundle(&self, version: u64) -> Vec<u8> {
            Bundle::sign(text(version).as_bytes(), "t", &self.key)
                .unwrap()
                .to_bytes()
        }
        fn config(&self, local: Option<&[u8]>, keys: bool) -> Config {
            let d = self.dir.path();
            let mut s = format!("state_dir = \"{}/state\"\n", d.display());
            if let Some(b) = local {
                std::fs::write(d.join("local"), b).unwrap();
                s.push_str(&format!("baselines = [\"{}/local\"]\n", d.display()));
            }
            if keys {
                s.push_str(&format!("trusted_keys = [\"{}/k.pub\"]\n", d.display()));
            }
            Config::from_str(&s, "a.toml").unwrap()
        }
        /// `cfg` as read from a file, as `--validate` sees it.
        fn config_file(&self, cfg: &Config) -> ConfigFile {
            let p = self.dir.path().join("agent.toml");
            let mut s = format!("state_dir = \"{}\"\n", cfg.state_dir.display());
            s.push_str(&format!("baselines = {:?}\n", cfg.baselines));
            s.push_str(&format!("trusted_keys = {:?}\n", cfg.trusted_keys));
            std::fs::write(&p, s).unwrap();
            Config::read(&p).unwrap()
        }
    }

    fn whats(l: &Loaded) -> Vec<String> {
        l.events
            .iter()
            .map(|e| match &e.body {
                EventBody::Agent(a) => format!("{:?}: {}", a.what, a.message),
                _ => String::new(),
            })
            .collect()
    }

    #[test]
    fn a_local_bundle_is_applied_once_and_an_older_one_is_not_reported() {
        let t = T::new();
        let cfg = t.config(Some(&t.bundle(2)), true);
        let trust = trust_for(&cfg).unwrap().unwrap();
        let l = load(&cfg, Some(&trust)).unwrap();
        assert!(l.policy.signed);
        assert_eq!(l.policy.baselines[0].version, 2);
        assert_eq!(whats(&l).len(), 1);
        assert!(
            whats(&l)[0].starts_with("BaselineApplied"),
            "{:?}",
            whats(&l)
        );
        // Restart: the same file, nothing to say.
        let l = load(&cfg, Some(&trust)).unwrap();
        assert!(whats(&l).is_empty(), "{:?}", whats(&l));
        // An older genuine file: the applied v2 runs, silently.
        let cfg = t.config(Some(&t.bundle(1)), true);
        let l = load(&cfg, Some(&trust)).unwrap();
        assert_eq!(l.policy.baselines[0].version, 2);
        assert!(whats(&l).is_empty(), "{:?}", whats(&l));
    }

    #[test]
    fn with_trusted_keys_a_plain_toml_file_is_refused() {
        let t = T::new();
        let cfg = t.config(Some(text(1).as_bytes()), true);
        let trust = trust_for(&cfg).unwrap().unwrap();
        let e = load(&cfg, Some(&trust)).unwrap_err().to_string();
        assert!(e.contains("not a baseline bundle"), "{e}");
        let keys = load_trusted_keys(&cfg.trusted_keys).unwrap();
        let problems = validate(&t.config_file(&cfg), Some(&keys));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert_eq!(problems[0].field, "baselines[0]");
        assert!(
            problems[0].message.contains("not a baseline bundle"),
            "{problems:?}"
        );
        // Without keys the same file is a plain, unsigned baseline.
        let cfg = t.config(Some(text(1).as_bytes()), false);
        let l = load(&cfg, None).unwrap();
        assert!(!l.policy.signed);
        assert_eq!(validate(&t.config_file(&cfg), None), vec![]);
    }

    #[test]
    fn nothing_signed_yet_runs_the_built_in_baseline_unsigned() {
        let t = T::new();
        let cfg = t.config(None, true);
        let trust = trust_for(&cfg).unwrap().unwrap();
        let l = load(&cfg, Some(&trust)).unwrap();
        assert!(!l.policy.signed);
        assert!(!l.policy.baselines.is_empty());
        assert!(whats(&l)[0].contains("built-in"), "{:?}", whats(&l));
    }
}
