//! TLS material and configurations: rustls 0.23 with the ring provider,
//! TLS 1.3 only, client certificates required and checked against the fleet
//! CA and its CRLs.

use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer, ServerName};
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
    /// A client certificate that does not parse.
    #[error("unparsable client certificate: {0}")]
    PeerCertificate(String),
    /// A client certificate that names no host.
    #[error("the client certificate has neither a subject CN nor a DNS name")]
    NoPeerIdentity,
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

/// The host identity of a client certificate: its subject CN, or its first
/// DNS subjectAltName when it has no CN.
pub(crate) fn identity_of(der: &[u8]) -> Result<String, TlsError> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::PeerCertificate(e.to_string()))?;
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

/// The serial number of a certificate, lowercase hex without separators (as
/// `pki issue` prints it and the revocations table stores it).
pub(crate) fn serial_of(der: &[u8]) -> Result<String, TlsError> {
    let (_, x) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| TlsError::PeerCertificate(e.to_string()))?;
    Ok(x.raw_serial().iter().map(|b| format!("{b:02x}")).collect())
}

/// Files for the server side.
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
}

/// The collector's TLS configuration: TLS 1.3 only, client certificate
/// required, verified against the CA and CRLs.
pub fn server_config(files: &ServerFiles) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = provider();
    let mut roots = RootCertStore::empty();
    for c in read_certs(&files.ca)? {
        roots
            .add(c)
            .map_err(|e| file_err(&files.ca, format!("unusable CA certificate: {e}")))?;
    }
    let mut crls = Vec::new();
    for p in &files.crls {
        crls.extend(read_crls(p)?);
    }
    let mut builder =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone());
    if !crls.is_empty() {
        // The CA chain itself is configuration; the CRL speaks for the leaves.
        builder = builder.with_crls(crls).only_check_end_entity_revocation();
    }
    let verifier = builder
        .build()
        .map_err(|e| TlsError::Config(format!("client verifier: {e}")))?;
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
    // Resumption tickets are not needed: agents keep one connection open.
    cfg.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
    Ok(Arc::new(cfg))
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
