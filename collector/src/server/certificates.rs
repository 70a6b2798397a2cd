//! The TLS setup in force: loaded at start, replaced at SIGHUP (a bad new
//! set is refused and the running one kept), its CRLs feeding the
//! revocation view, their freshness watched while the collector runs.

use crate::revocation::{CRL_FILES, Revocations};
use crate::tls::{LoadedCrl, ServerFiles, TlsError, TlsSetup, crl_warnings};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// The acceptor for new connections and the CRLs behind it.
pub(super) struct Certificates {
    files: ServerFiles,
    revocations: Arc<Revocations>,
    acceptor: RwLock<TlsAcceptor>,
    crls: Mutex<Vec<LoadedCrl>>,
}

impl Certificates {
    /// Loads the files (a stale or missing CRL is logged loudly, or refused
    /// under `require_fresh_crl`) and feeds the CRLs to `revocations`.
    pub(super) fn load(
        files: ServerFiles,
        revocations: Arc<Revocations>,
    ) -> Result<Certificates, TlsError> {
        let setup = crate::tls::load(&files, revocations.clone(), now())?;
        let acceptor = RwLock::new(TlsAcceptor::from(setup.config.clone()));
        let certs = Certificates {
            files,
            revocations,
            acceptor,
            crls: Mutex::new(Vec::new()),
        };
        certs.install(setup);
        Ok(certs)
    }

    fn install(&self, setup: TlsSetup) {
        for w in &setup.warnings {
            tracing::warn!("{w}");
        }
        let revoked = setup.revoked.len();
        self.revocations.replace(CRL_FILES, setup.revoked);
        *self.crls.lock().unwrap_or_else(PoisonError::into_inner) = setup.crls;
        *self
            .acceptor
            .write()
            .unwrap_or_else(PoisonError::into_inner) = TlsAcceptor::from(setup.config);
        tracing::debug!("{revoked} certificates revoked by the CRLs");
    }

    /// The acceptor for a new connection.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SIGHUP: reload certificates and CRLs; keep the current ones if the
    /// new are bad. Open connections whose certificate the new CRLs revoke
    /// close (they watch the revocation view).
    pub(super) fn reload(&self) {
        match crate::tls::load(&self.files, self.revocations.clone(), now()) {
            Ok(setup) => {
                self.install(setup);
                tracing::info!("TLS certificates and CRLs reloaded");
            }
            Err(e) => tracing::error!("reload refused, keeping the current TLS setup: {e}"),
        }
    }

    /// Every `every`, a loud warning for each CRL in force that went stale
    /// while the collector runs (with `require_fresh_crl`, handshakes are
    /// refused meanwhile).
    pub(super) fn spawn_freshness_watch(self: &Arc<Self>, every: Duration) -> JoinHandle<()> {
        let certs = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // The first tick is now: `load` has just said it.
            tick.tick().await;
            loop {
                tick.tick().await;
                let crls = certs
                    .crls
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                if crls.is_empty() {
                    continue;
                }
                for w in crl_warnings(&crls, now()) {
                    if certs.files.require_fresh_crl {
                        tracing::error!("{w}; agents are refused until it is replaced");
                    } else {
                        tracing::warn!("{w}");
                    }
                }
            }
        })
    }
}
