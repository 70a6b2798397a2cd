//! TLS material and configurations: rustls 0.23 with the ring provider,
//! TLS 1.3 only, client certificates required and checked against the fleet
//! CA, its CRLs, the clientAuth EKU and the live revocation view
//! (`crate::revocation`); the CRLs' freshness.

use crate::revocation::{CertId, CrlValidity, Revocations, RevokedSet, crl_validity};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore,
    ServerConfig, SignatureScheme,
};
use rustls_pki_types::{
    CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName, UnixTime,
};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A TLS setup failure, naming the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read or parsed.
    #[error("{path}: {reason}")]
    File {
        /// the file
        path: PathBuf,
        /// why
        reason: String,
    },
    /// A PEM file was refused, unreadable or malformed.
    #[error(transparent)]
    Pem(#[from] plumb_os::pem::PemError),
    /// rustls refused the combination.
    #[error("{0}")]
    Config(String),
    /// The CRLs cannot be read as revocations.
    #[error(transparent)]
    Revocation(#[from] crate::revocation::RevocationError),
    /// A client certificate that does not parse.
    #[error("unparsable client certificate: {0}")]
    PeerCertificate(String),
    /// A client certificate that names no host.
    #[error("the client certificate has neither a subject CN nor a DNS name")]
    NoPeerIdentity,
    /// A stale or missing CRL under `require_fresh_crl`.
    #[error("{0}")]
    CrlPolicy(CrlWarning),
}

fn file_err(path: &Path, reason: impl ToString) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// The crypto provider every Plumbline TLS endpoint uses.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM file (at least one), read as a trusted file.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    Ok(plumb_os::pem::load_certs(path)?)
}

/// Every CRL in a PEM file (at least one), read as a trusted file.
pub fn read_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    Ok(plumb_os::pem::load_crls(path)?)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1); refused when
/// group or others have any access to it.
pub fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    Ok(plumb_os::pem::load_private_key(path)?)
}

/// An authenticated agent, as its certificate names it.
#[derive(Debug, Clone)]
pub struct PeerCert {
    /// The host identity, in its canonical form (ASCII lowercase): the
    /// subject CN, or the first DNS subjectAltName when there is no CN.
    pub identity: String,
    /// Issuer and serial, for revocation.
    pub id: CertId,
    /// Whether it carries the operator role mark
    /// ([`crate::pki::OPERATOR_URI`]): the console's users, never an agent.
    pub operator: bool,
}

/// The host identity and revocation name of a client certificate.
pub fn peer_of(der: &[u8]) -> Result<PeerCert, TlsError> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::PeerCertificate(e.to_string()))?;
    Ok(PeerCert {
        identity: crate::storage::canonical_host(&identity(&x)?),
        id: CertId::of_parsed(&x),
        operator: is_operator(&x),
    })
}

/// Whether a certificate carries the operator URI subjectAltName.
fn is_operator(x: &x509_parser::certificate::X509Certificate<'_>) -> bool {
    let Ok(Some(san)) = x.subject_alternative_name() else {
        return false;
    };
    san.value.general_names.iter().any(|n| {
        matches!(n, x509_parser::extensions::GeneralName::URI(u) if *u == crate::pki::OPERATOR_URI)
    })
}

/// The subject CN, or the first DNS subjectAltName when there is no CN.
fn identity(x: &x509_parser::certificate::X509Certificate<'_>) -> Result<String, TlsError> {
    if let Some(cn) = x
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .filter(|s| !s.is_empty())
    {
        return Ok(cn.to_string());
    }
    if let Ok(Some(san)) = x.subject_alternative_name() {
        for name in &san.value.general_names {
            if let x509_parser::extensions::GeneralName::DNSName(d) = name {
                if !d.is_empty() {
                    return Ok((*d).to_string());
                }
            }
        }
    }
    Err(TlsError::NoPeerIdentity)
}

/// Files (and the CRL policy) for the server side.
#[derive(Debug, Clone)]
pub struct ServerFiles {
    /// Fleet CA certificate(s) that issue agent certificates.
    pub ca: PathBuf,
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CRL files.
    pub crls: Vec<PathBuf>,
    /// Refuse a CRL past its `nextUpdate`, and running without a CRL.
    pub require_fresh_crl: bool,
}

/// A CRL problem: a loud warning, or with `require_fresh_crl` a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlWarning {
    /// Which `[tls] crl` entry; `None` for the list itself (empty).
    pub index: Option<usize>,
    /// In words, naming the file.
    pub message: String,
}

impl std::fmt::Display for CrlWarning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "tls.crl[{i}]: {}", self.message),
            None => write!(f, "tls.crl: {}", self.message),
        }
    }
}

/// One CRL loaded from a `[tls] crl` file: where, and until when it is current.
#[derive(Debug, Clone)]
pub struct LoadedCrl {
    /// Index in `[tls] crl`.
    pub index: usize,
    /// The file.
    pub path: PathBuf,
    /// Issuer and `nextUpdate`.
    pub validity: CrlValidity,
}

fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

/// What the CRLs in force deserve at `now` (unix time): a warning for each
/// one past its `nextUpdate` (or without one), and one when there is none.
pub fn crl_warnings(crls: &[LoadedCrl], now: i64) -> Vec<CrlWarning> {
    if crls.is_empty() {
        return vec![CrlWarning {
            index: None,
            message: "no CRL is configured: revocation is OFF, a revoked agent certificate is \
                      accepted; give your CA's CRL (and set [tls] require_fresh_crl = true to \
                      refuse running without one)"
                .into(),
        }];
    }
    let mut out = Vec::new();
    for c in crls {
        let stale = match c.validity.next_update {
            Some(t) if t < now => Some(format!("its nextUpdate passed on {}", rfc3339(t))),
            Some(_) => None,
            None => Some("it has no nextUpdate".to_string()),
        };
        if let Some(why) = stale {
            out.push(CrlWarning {
                index: Some(c.index),
                message: format!(
                    "{}: the CRL of {} is stale ({why}): a certificate revoked since it was \
                     issued is accepted; publish a fresh CRL and reload (SIGHUP), or set \
                     [tls] require_fresh_crl = true to refuse a stale CRL",
                    c.path.display(),
                    c.validity.issuer
                ),
            });
        }
    }
    out
}

/// The server's TLS setup, loaded from its files.
#[derive(Debug)]
pub struct TlsSetup {
    /// For the acceptor.
    pub config: Arc<ServerConfig>,
    /// What the CRL files revoke (source [`crate::revocation::CRL_FILES`]).
    pub revoked: RevokedSet,
    /// Every CRL loaded, for the freshness checks while running.
    pub crls: Vec<LoadedCrl>,
    /// What deserves a loud warning now ([`crl_warnings`]).
    pub warnings: Vec<CrlWarning>,
}

/// Loads the collector's TLS configuration: TLS 1.3 only, a client
/// certificate required, verified against the CA and CRLs, carrying the
/// clientAuth EKU and not revoked in `revocations` (the live view, consulted
/// at each handshake). `now` (unix time) judges the CRLs' freshness; with
/// `require_fresh_crl` a stale or missing CRL is an error.
pub fn load(
    files: &ServerFiles,
    revocations: Arc<Revocations>,
    now: i64,
) -> Result<TlsSetup, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for c in read_certs(&files.ca)? {
        roots
            .add(c)
            .map_err(|e| file_err(&files.ca, format!("unusable CA certificate: {e}")))?;
    }
    let mut crls = Vec::new();
    let mut loaded = Vec::new();
    for (index, p) in files.crls.iter().enumerate() {
        for der in read_crls(p)? {
            let validity = crl_validity(&der).map_err(|e| file_err(p, e))?;
            loaded.push(LoadedCrl {
                index,
                path: p.clone(),
                validity,
            });
            crls.push(der);
        }
    }
    let warnings = crl_warnings(&loaded, now);
    if files.require_fresh_crl {
        if let Some(w) = warnings.first() {
            return Err(TlsError::CrlPolicy(CrlWarning {
                index: w.index,
                message: format!("refused (require_fresh_crl = true): {}", w.message),
            }));
        }
    }
    let revoked = RevokedSet::from_crls(&crls)?;
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        // The CA chain itself is configuration; the CRL speaks for the leaves.
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
        if files.require_fresh_crl {
            // A CRL that goes stale while the collector runs: handshakes fail closed.
            builder = builder.enforce_revocation_expiration();
        }
    }
    let inner = builder
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
    let verifier = Arc::new(AgentVerifier { inner, revocations });
    let chain = read_certs(&files.cert)?;
    let key = read_key(&files.key)?;
    let mut cfg = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| {
            file_err(
                &files.key,
                format!("does not match {}: {e}", files.cert.display()),
            )
        })?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    // No resumption: agents keep one connection open, and a resumed session
    // would skip the client certificate checks.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    cfg.send_tls13_tickets = 0;
    Ok(TlsSetup {
        config: Arc::new(cfg),
        revoked,
        crls: loaded,
        warnings,
    })
}

/// The client-certificate check: webpki's (chain to the fleet CA, validity,
/// the CRLs), then what webpki allows but an agent certificate must not
/// lack: the clientAuth extended key usage (webpki accepts a certificate
/// with no EKU at all), and no revocation in the live view (which may know
/// of revocations the CRLs loaded at start do not).
#[derive(Debug)]
struct AgentVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revocations: Arc<Revocations>,
}

impl ClientCertVerifier for AgentVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let bad = rustls::Error::InvalidCertificate;
        let (_, x) = x509_parser::parse_x509_certificate(end_entity)
            .map_err(|_| bad(CertificateError::BadEncoding))?;
        if !matches!(x.extended_key_usage(), Ok(Some(eku)) if eku.value.client_auth) {
            return Err(bad(CertificateError::InvalidPurpose));
        }
        if self.revocations.is_revoked(&CertId::of_parsed(&x)) {
            return Err(bad(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// A client configuration (tests, the load generator, and the model for an
/// agent's sender): trusts `ca`, presents `cert`+`key` when given.
pub fn client_config(
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    for c in read_certs(ca)? {
        roots
            .add(c)
            .map_err(|e| file_err(ca, format!("unusable CA certificate: {e}")))?;
    }
    let b = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut cfg = match identity {
        Some((cert, key)) => b
            .with_client_auth_cert(read_certs(cert)?, read_key(key)?)
            .map_err(|e| file_err(key, e))?,
        None => b.with_no_client_auth(),
    };
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// A server name for a client connection (DNS name or IP address).
pub fn server_name(name: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(name.to_string())
        .map_err(|e| TlsError::Config(format!("server name {name:?}: {e}")))
}
