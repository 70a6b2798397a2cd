//! The agent's baseline acceptance policy ("trust is explicit",
//! docs/signing.md). A baseline can turn on remediation, so the agent applies one
//! only when a key in its own trusted list signed it, and never one whose
//! version is not newer than the highest it has applied for that baseline
//! id: a compromised collector or a network attacker can neither forge,
//! alter, nor roll back (or replay) a baseline.
//!
//! The daemon calls [`load_trusted_keys`] with the public key files named in
//! its config, builds a [`TrustPolicy`] on its state directory, and passes
//! every candidate bundle to [`TrustPolicy::consider`]. The highest applied
//! version of each id lives in `STATE_DIR/baseline-trust.json` (written
//! atomically, so a restart does not reset it) and the accepted bundle in
//! `STATE_DIR/baselines/<id>.bundle`.

use nix::fcntl::{Flock, FlockArg};
use plumb_core::Baseline;
use plumb_core::bundle::{Bundle, KeyError, PublicKey, VerifiedBaseline};
use plumb_core::event::{AgentEvent, AgentEventKind};
use plumb_core::report::BaselineRef;
use plumb_os::atomic::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};

/// Name of the state file in the state directory.
pub(crate) const STATE_FILE: &str = "baseline-trust.json";
/// Directory (in the state directory) holding the accepted bundles.
pub(crate) const BUNDLE_DIR: &str = "baselines";
const LOCK_FILE: &str = "baseline-trust.lock";
const STATE_SCHEMA: u32 = 1;
const MAX_STATE_BYTES: u64 = 1024 * 1024;

/// A local failure of the policy itself (not a refused bundle): the daemon
/// must not apply anything and should report it as an `agent` error.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    /// A trusted key file is unreadable or malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The config names no trusted key: nothing could ever be accepted.
    #[error("no trusted baseline keys are configured")]
    NoTrustedKeys,
    /// Two trusted key files hold keys with the same id.
    #[error(
        "{first} and {second} both hold key id {key_id}; each trusted key must have its own id"
    )]
    DuplicateKeyId {
        /// key id
        key_id: String,
        /// first file
        first: String,
        /// second file
        second: String,
    },
    /// The state file exists but cannot be trusted; it is never read as
    /// "nothing applied", which would reopen the door to rollbacks.
    #[error(
        "{path}: corrupted baseline trust state: {reason}; refusing every baseline until it is repaired"
    )]
    CorruptState {
        /// file
        path: String,
        /// what is wrong
        reason: String,
    },
    /// The stored bundle of an applied baseline no longer verifies or is
    /// older than the recorded version.
    #[error("{path}: stored baseline cannot be used: {reason}")]
    StoredBundle {
        /// file
        path: String,
        /// what is wrong
        reason: String,
    },
    /// The state directory failed the private-directory rule.
    #[error(transparent)]
    StateDir(#[from] plumb_os::TrustError),
    /// Reading or writing the state directory failed.
    #[error("{path}: cannot {action}: {source}")]
    Io {
        /// file or directory
        path: String,
        /// what was attempted
        action: &'static str,
        /// cause
        source: std::io::Error,
    },
}

fn io_err(path: &Path, action: &'static str) -> impl FnOnce(std::io::Error) -> TrustError {
    let path = path.display().to_string();
    move |source| TrustError::Io {
        path,
        action,
        source,
    }
}

/// Loads the trusted public keys from the files named in the agent's
/// config. Every file must hold a valid key; an empty list or two files with
/// the same key id are errors.
pub fn load_trusted_keys<P: AsRef<Path>>(paths: &[P]) -> Result<Vec<PublicKey>, TrustError> {
    if paths.is_empty() {
        return Err(TrustError::NoTrustedKeys);
    }
    let mut keys: Vec<(PublicKey, String)> = Vec::new();
    for p in paths {
        let p = p.as_ref();
        let key = PublicKey::load(p)?;
        let shown = p.display().to_string();
        if let Some((prev, first)) = keys.iter().find(|(k, _)| k.key_id() == key.key_id()) {
            if *prev == key {
                continue; // the same key named twice
            }
            return Err(TrustError::DuplicateKeyId {
                key_id: key.key_id().to_string(),
                first: first.clone(),
                second: shown,
            });
        }
        keys.push((key, shown));
    }
    Ok(keys.into_iter().map(|(k, _)| k).collect())
}

/// What the policy decided about a candidate bundle.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Verified, newer than anything applied for its id, stored and recorded.
    Applied {
        /// baseline id
        id: String,
        /// baseline version
        version: u64,
        /// the trusted key that signed it
        key_id: String,
        /// the validated baseline, ready to run
        baseline: Box<Baseline>,
    },
    /// Not applied; nothing on disk changed.
    Refused {
        /// Why, worded for an `agent` event
        /// (`version 6 is not newer than applied version 7`).
        reason: String,
        /// The id and version the bundle claims, when it could be parsed
        /// (unverified: for logs only).
        candidate: Option<BaselineRef>,
    },
}

impl Decision {
    /// One line for logs and the `agent` event message:
    /// `baseline_applied: issp v8 signed by <key id>` or
    /// `baseline_refused: <reason>`.
    pub fn event_message(&self) -> String {
        match self {
            Decision::Applied {
                id,
                version,
                key_id,
                ..
            } => format!("baseline_applied: {id} v{version} signed by {key_id}"),
            Decision::Refused { reason, .. } => format!("baseline_refused: {reason}"),
        }
    }

    /// The `agent` event reporting this decision. For a refusal, `in_force`
    /// is the baseline the agent keeps running.
    pub(crate) fn agent_event(
        &self,
        agent_version: &str,
        in_force: Option<BaselineRef>,
    ) -> AgentEvent {
        let (what, baseline) = match self {
            Decision::Applied { id, version, .. } => (
                AgentEventKind::BaselineApplied,
                Some(BaselineRef {
                    id: id.clone(),
                    version: *version,
                }),
            ),
            Decision::Refused { .. } => (AgentEventKind::BaselineRefused, in_force),
        };
        AgentEvent {
            what,
            message: self.event_message(),
            agent_version: agent_version.to_string(),
            baseline,
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    schema: u32,
    applied: BTreeMap<String, Applied>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Applied {
    version: u64,
    key_id: String,
}

/// The acceptance policy over one state directory.
#[derive(Debug)]
pub struct TrustPolicy {
    keys: Vec<PublicKey>,
    state_dir: PathBuf,
}

impl TrustPolicy {
    /// A policy trusting `keys`, persisting in `state_dir` (created 0700 if
    /// missing). Reads the state once so a corrupted file is reported at
    /// startup, not at the first push.
    pub fn new(
        keys: Vec<PublicKey>,
        state_dir: impl Into<PathBuf>,
    ) -> Result<TrustPolicy, TrustError> {
        if keys.is_empty() {
            return Err(TrustError::NoTrustedKeys);
        }
        let state_dir = state_dir.into();
        // Private: created 0700, tightened, or refused when others may write.
        for dir in [state_dir.clone(), state_dir.join(BUNDLE_DIR)] {
            plumb_os::private::ensure_private_dir(&dir)?;
        }
        let policy = TrustPolicy { keys, state_dir };
        policy.read_state()?;
        Ok(policy)
    }

    /// The trusted keys.
    pub(crate) fn keys(&self) -> &[PublicKey] {
        &self.keys
    }

    /// Where the accepted bundle of baseline `id` is stored. Ids are
    /// `[a-z0-9._-]+` and get a suffix, so the name never leaves the directory.
    pub(crate) fn stored_bundle_path(&self, id: &str) -> PathBuf {
        self.state_dir.join(BUNDLE_DIR).join(format!("{id}.bundle"))
    }

    fn state_path(&self) -> PathBuf {
        self.state_dir.join(STATE_FILE)
    }

    /// The highest applied version of each baseline id.
    pub(crate) fn applied_versions(&self) -> Result<BTreeMap<String, u64>, TrustError> {
        Ok(self
            .read_state()?
            .applied
            .into_iter()
            .map(|(id, a)| (id, a.version))
            .collect())
    }

    /// The highest applied version of baseline `id`, if any was applied.
    pub(crate) fn applied_version(&self, id: &str) -> Result<Option<u64>, TrustError> {
        Ok(self.read_state()?.applied.get(id).map(|a| a.version))
    }

    /// The stored bundle of baseline `id`, verified again with the keys
    /// trusted now (so a baseline signed by a key since removed is no longer
    /// run). This is what the daemon runs after a restart. `None` when no
    /// version of `id` was ever applied.
    pub fn load_applied(&self, id: &str) -> Result<Option<VerifiedBaseline>, TrustError> {
        let state = self.read_state()?;
        let Some(recorded) = state.applied.get(id) else {
            return Ok(None);
        };
        let path = self.stored_bundle_path(id);
        let stored = |reason: String| TrustError::StoredBundle {
            path: path.display().to_string(),
            reason,
        };
        let verified = Bundle::load(&path)
            .and_then(|b| b.verify(&self.keys))
            .map_err(|e| stored(e.to_string()))?;
        if verified.baseline.id != id {
            return Err(stored(format!(
                "it holds baseline {:?}",
                verified.baseline.id
            )));
        }
        // Bundle written but state not yet updated (a crash between the two
        // writes) leaves a newer bundle: fine. An older one is a rollback.
        if verified.baseline.version < recorded.version {
            return Err(stored(format!(
                "it is version {} but version {} was applied",
                verified.baseline.version, recorded.version
            )));
        }
        Ok(Some(verified))
    }

    /// Decides on a candidate bundle (the bytes as received). Verification
    /// and version failures are a [`Decision::Refused`] and change nothing;
    /// an `Err` is a local failure (corrupted state, disk error) and nothing
    /// was applied.
    pub fn consider(&self, candidate: &[u8]) -> Result<Decision, TrustError> {
        let _lock = self.lock()?;
        let mut state = self.read_state()?;
        let bundle = match Bundle::parse(candidate) {
            Ok(b) => b,
            Err(e) => {
                return Ok(Decision::Refused {
                    reason: e.to_string(),
                    candidate: None,
                });
            }
        };
        let claimed = BaselineRef {
            id: bundle.id().to_string(),
            version: bundle.version(),
        };
        let verified = match bundle.verify(&self.keys) {
            Ok(v) => v,
            Err(e) => {
                return Ok(Decision::Refused {
                    reason: e.to_string(),
                    candidate: Some(claimed),
                });
            }
        };
        let id = verified.baseline.id.clone();
        let version = verified.baseline.version;
        if let Some(applied) = state.applied.get(&id) {
            if version <= applied.version {
                return Ok(Decision::Refused {
                    reason: format!(
                        "version {version} is not newer than applied version {}",
                        applied.version
                    ),
                    candidate: Some(claimed),
                });
            }
        }
        // Bundle first, then the version: a crash in between leaves the old
        // floor and a newer stored bundle, and the same bundle is accepted
        // again when it is delivered again.
        let path = self.stored_bundle_path(&id);
        write_atomic(&path, &verified.bundle.to_bytes(), 0o600, true)
            .map_err(io_err(&path, "store the accepted bundle"))?;
        state.schema = STATE_SCHEMA;
        state.applied.insert(
            id.clone(),
            Applied {
                version,
                key_id: verified.key_id.clone(),
            },
        );
        self.write_state(&state)?;
        Ok(Decision::Applied {
            id,
            version,
            key_id: verified.key_id,
            baseline: Box::new(verified.baseline),
        })
    }

    /// Serialises `consider` between processes (a daemon and a hand-run
    /// command) so two cannot both pass the version check.
    fn lock(&self) -> Result<Flock<std::fs::File>, TrustError> {
        let path = self.state_dir.join(LOCK_FILE);
        // 0600 whatever the umask, like every file in the state directory.
        let file =
            plumb_os::private::open_private(&path).map_err(io_err(&path, "open the lock file"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| TrustError::Io {
            path: path.display().to_string(),
            action: "lock the state",
            source: std::io::Error::from(errno),
        })
    }

    fn read_state(&self) -> Result<State, TrustError> {
        let path = self.state_path();
        let corrupt = |reason: String| TrustError::CorruptState {
            path: path.display().to_string(),
            reason,
        };
        let file = match std::fs::File::open(&path) {
            Ok(f) => f,
            // Only a missing file means "nothing applied yet".
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::default()),
            Err(e) => return Err(io_err(&path, "read the trust state")(e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(io_err(&path, "read the trust state"))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(corrupt(format!("larger than {MAX_STATE_BYTES} bytes")));
        }
        let state: State = serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        if state.schema != STATE_SCHEMA {
            return Err(corrupt(format!(
                "schema {} (this build reads {STATE_SCHEMA})",
                state.schema
            )));
        }
        Ok(state)
    }

    fn write_state(&self, state: &State) -> Result<(), TrustError> {
        let path = self.state_path();
        let mut json = serde_json::to_vec_pretty(state).map_err(|e| TrustError::Io {
            path: path.display().to_string(),
            action: "encode the trust state",
            source: std::io::Error::other(e),
        })?;
        json.push(b'\n');
        // write_atomic fsyncs the file and then the directory.
        write_atomic(&path, &json, 0o600, true).map_err(io_err(&path, "write the trust state"))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use plumb_core::bundle::SigningKey;

    fn key() -> SigningKey {
        let g = SigningKey::generate("t").unwrap();
        SigningKey::from_pem(&g.private_pem, "t").unwrap()
    }

    fn bundle(k: &SigningKey, id: &str, version: u64) -> Vec<u8> {
        let b = format!("schema = 1\nid = \"{id}\"\nversion = {version}\ntitle = \"t\"\n");
        Bundle::sign(b.as_bytes(), "b.toml", k).unwrap().to_bytes()
    }

    fn refused(d: Decision) -> String {
        match d {
            Decision::Refused { reason, .. } => reason,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    fn applied(d: Decision) -> (String, u64, String) {
        match d {
            Decision::Applied {
                id,
                version,
                key_id,
                ..
            } => (id, version, key_id),
            other => panic!("expected applied, got {other:?}"),
        }
    }

    #[test]
    fn newer_applied_equal_and_older_refused() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        let p = TrustPolicy::new(vec![k.public_key().clone()], d.path()).unwrap();
        let dec = p.consider(&bundle(&k, "issp", 7)).unwrap();
        assert_eq!(
            dec.event_message(),
            format!("baseline_applied: issp v7 signed by {}", k.key_id())
        );
        assert_eq!(applied(dec), ("issp".into(), 7, k.key_id().into()));
        let dec = p.consider(&bundle(&k, "issp", 6)).unwrap();
        assert_eq!(
            dec.event_message(),
            "baseline_refused: version 6 is not newer than applied version 7"
        );
        let ev = dec.agent_event(
            "0.1.0",
            Some(BaselineRef {
                id: "issp".into(),
                version: 7,
            }),
        );
        assert_eq!(ev.what, AgentEventKind::BaselineRefused);
        assert_eq!(ev.baseline.unwrap().version, 7);
        // Replaying the applied bundle is refused too.
        let r = refused(p.consider(&bundle(&k, "issp", 7)).unwrap());
        assert_eq!(r, "version 7 is not newer than applied version 7");
        assert_eq!(applied(p.consider(&bundle(&k, "issp", 8)).unwrap()).1, 8);
        // Ids are tracked separately.
        assert_eq!(applied(p.consider(&bundle(&k, "other", 1)).unwrap()).1, 1);
        assert_eq!(p.applied_version("issp").unwrap(), Some(8));
        assert_eq!(p.applied_version("nope").unwrap(), None);
        assert_eq!(p.load_applied("issp").unwrap().unwrap().baseline.version, 8);
    }

    #[test]
    fn applied_version_survives_restart() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        {
            let p = TrustPolicy::new(vec![k.public_key().clone()], d.path()).unwrap();
            applied(p.consider(&bundle(&k, "issp", 5)).unwrap());
        }
        let p = TrustPolicy::new(vec![k.public_key().clone()], d.path()).unwrap();
        let r = refused(p.consider(&bundle(&k, "issp", 4)).unwrap());
        assert_eq!(r, "version 4 is not newer than applied version 5");
        assert_eq!(p.load_applied("issp").unwrap().unwrap().baseline.version, 5);
    }

    #[test]
    fn corrupted_state_is_an_error_not_version_zero() {
        let k = key();
        for content in [
            "",
            "{",
            "garbage",
            "{\"schema\":2,\"applied\":{}}",
            "{\"schema\":1}",
        ] {
            let d = tempfile::tempdir().unwrap();
            let keys = vec![k.public_key().clone()];
            let p = TrustPolicy::new(keys.clone(), d.path()).unwrap();
            applied(p.consider(&bundle(&k, "issp", 5)).unwrap());
            std::fs::write(d.path().join(STATE_FILE), content).unwrap();
            let e = p.consider(&bundle(&k, "issp", 1)).unwrap_err();
            assert!(
                matches!(e, TrustError::CorruptState { .. }),
                "{content:?}: {e}"
            );
            assert!(
                e.to_string().contains("corrupted baseline trust state"),
                "{e}"
            );
            let e = TrustPolicy::new(keys, d.path()).unwrap_err();
            assert!(matches!(e, TrustError::CorruptState { .. }), "{e}");
            // Nothing was applied.
            assert_eq!(
                std::fs::read_to_string(d.path().join(STATE_FILE)).unwrap(),
                content
            );
        }
    }

    #[test]
    fn forged_and_garbage_bundles_refused_without_change() {
        let d = tempfile::tempdir().unwrap();
        let (k, stranger) = (key(), key());
        let p = TrustPolicy::new(vec![k.public_key().clone()], d.path()).unwrap();
        let r = refused(p.consider(&bundle(&stranger, "issp", 9)).unwrap());
        assert!(r.contains("unknown key"), "{r}");
        let mut tampered = bundle(&k, "issp", 9);
        let last = tampered.len() - 1;
        tampered[last] ^= 0x20;
        let r = refused(p.consider(&tampered).unwrap());
        assert!(r.contains("bad signature"), "{r}");
        let r = refused(p.consider(b"<html>not found</html>").unwrap());
        assert!(r.contains("not a baseline bundle"), "{r}");
        assert!(!d.path().join(STATE_FILE).exists());
        assert_eq!(
            std::fs::read_dir(d.path().join(BUNDLE_DIR))
                .unwrap()
                .count(),
            0
        );
    }

    #[test]
    fn key_rotation() {
        let d = tempfile::tempdir().unwrap();
        let (old, new) = (key(), key());
        let both = vec![old.public_key().clone(), new.public_key().clone()];
        let p = TrustPolicy::new(both, d.path()).unwrap();
        assert_eq!(
            applied(p.consider(&bundle(&old, "issp", 1)).unwrap()).2,
            old.key_id()
        );
        assert_eq!(
            applied(p.consider(&bundle(&new, "issp", 2)).unwrap()).2,
            new.key_id()
        );
        let p = TrustPolicy::new(vec![new.public_key().clone()], d.path()).unwrap();
        let r = refused(p.consider(&bundle(&old, "issp", 3)).unwrap());
        assert!(r.contains(&format!("unknown key {}", old.key_id())), "{r}");
        applied(p.consider(&bundle(&new, "issp", 4)).unwrap());
    }

    #[test]
    fn stored_bundle_of_a_removed_key_is_not_run() {
        let d = tempfile::tempdir().unwrap();
        let (old, new) = (key(), key());
        let p = TrustPolicy::new(vec![old.public_key().clone()], d.path()).unwrap();
        applied(p.consider(&bundle(&old, "issp", 1)).unwrap());
        let p = TrustPolicy::new(vec![new.public_key().clone()], d.path()).unwrap();
        let e = p.load_applied("issp").unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
    }

    #[test]
    fn stored_bundle_rolled_back_on_disk_is_detected() {
        let d = tempfile::tempdir().unwrap();
        let k = key();
        let p = TrustPolicy::new(vec![k.public_key().clone()], d.path()).unwrap();
        let v1 = bundle(&k, "issp", 1);
        applied(p.consider(&v1).unwrap());
        applied(p.consider(&bundle(&k, "issp", 2)).unwrap());
        std::fs::write(p.stored_bundle_path("issp"), &v1).unwrap();
        let e = p.load_applied("issp").unwrap_err();
        assert!(
            e.to_string()
                .contains("version 1 but version 2 was applied"),
            "{e}"
        );
    }

    #[test]
    fn trusted_key_files() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (key(), key());
        let pa = d.path().join("a.pub");
        let pb = d.path().join("b.pub");
        std::fs::write(&pa, a.public_key().to_text()).unwrap();
        std::fs::write(&pb, b.public_key().to_text()).unwrap();
        let keys = load_trusted_keys(&[&pa, &pb, &pa]).unwrap();
        assert_eq!(keys.len(), 2);
        assert!(matches!(
            load_trusted_keys::<&Path>(&[]),
            Err(TrustError::NoTrustedKeys)
        ));
        let bad = d.path().join("bad.pub");
        std::fs::write(&bad, "ssh-ed25519 AAAA\n").unwrap();
        let e = load_trusted_keys(&[&pa, &bad]).unwrap_err().to_string();
        assert!(e.contains("bad.pub:1"), "{e}");
        let e = load_trusted_keys(&[d.path().join("missing.pub")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.pub: cannot read key"), "{e}");
        assert!(TrustPolicy::new(Vec::new(), d.path()).is_err());
    }
}
