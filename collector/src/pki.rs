//! A small certificate authority for fleets that have none: the CA, agent and
//! server certificates, and a CRL the collector loads.
//!
//! Layout of a PKI directory (created 0700; an existing one open to group or
//! others is tightened, or refused when they may write it: see
//! `plumb_os::private`):
//!
//! ```text
//! ca.pem  ca.key (0600)  crl.pem  revoked.tsv
//! agents/HOST.pem   agents/HOST.key (0600)
//! servers/NAME.pem  servers/NAME.key (0600)
//! operators/NAME.pem  operators/NAME.key (0600)  operators/NAME.p12 (0600)
//! ```
//!
//! An operator certificate (the ops console's users, docs/console.md) is an
//! agent-like clientAuth certificate that also carries the URI
//! subjectAltName [`OPERATOR_URI`]: the console accepts only certificates
//! that carry it, the agent listener refuses every one that does.
//!
//! Keys are ECDSA P-256 (fast handshakes, supported by every TLS 1.3 stack).

use plumb_os::atomic::write_atomic;
use plumb_os::private::ensure_private_dir;
use plumb_os::{FileKind, TrustError, read_trusted};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose, RevocationReason,
    RevokedCertParams, SanType, SerialNumber,
};
use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// Default validity of the CA certificate.
pub const CA_DAYS: u32 = 3650;
/// Default validity of agent and server certificates.
pub const LEAF_DAYS: u32 = 397;
/// How long a CRL we write says it is good for (`nextUpdate`).
const CRL_DAYS: i64 = 365;

/// A PKI failure, naming the file involved.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// the file
        path: PathBuf,
        /// the error
        source: std::io::Error,
    },
    /// Certificate or key generation or parsing failed.
    #[error("{what}: {source}")]
    Cert {
        /// what was being done
        what: String,
        /// the error
        source: rcgen::Error,
    },
    /// A PKI file or directory failed the trust rule (owner, mode).
    #[error(transparent)]
    Untrusted(#[from] TrustError),
    /// Refused input (bad name, existing CA, foreign certificate...).
    #[error("{0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |source| PkiError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn cert_err(what: impl Into<String>) -> impl FnOnce(rcgen::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Cert { what, source }
}

/// The URI subjectAltName that marks an operator certificate (the console's
/// role mark; an agent certificate never carries it).
pub const OPERATOR_URI: &str = "urn:plumbline:role:operator";

/// What a leaf certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// An agent: clientAuth, host in CN and DNS SAN.
    Agent,
    /// A collector: serverAuth, DNS (or IP) SAN.
    Server,
    /// An operator of the console: clientAuth, name in CN, the URI SAN
    /// [`OPERATOR_URI`].
    Operator,
}

impl Role {
    fn subdir(self) -> &'static str {
        match self {
            Role::Agent => "agents",
            Role::Server => "servers",
            Role::Operator => "operators",
        }
    }
}

/// Paths of an issued certificate and its key.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Certificate (PEM).
    pub cert: PathBuf,
    /// Private key (PKCS#8 PEM, 0600).
    pub key: PathBuf,
    /// Serial number, hex.
    pub serial: String,
}

/// Checks a host name for a certificate: an IP address, or DNS labels of
/// letters, digits and hyphens (also safe as a file name).
fn check_name(name: &str) -> Result<(), PkiError> {
    if name.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let ok = !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(PkiError::Invalid(format!(
            "{name:?} is not a valid host name (letters, digits, '-', '_' in dot-separated labels) or IP address"
        )))
    }
}

fn random_serial() -> Result<SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Invalid("the system random generator failed".into()))?;
    // A positive INTEGER: clear the top bit; never zero.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(SerialNumber::from_slice(&bytes))
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// The CA's files in a PKI directory.
pub fn ca_paths(dir: &Path) -> (PathBuf, PathBuf) {
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// `pki init`: a new CA (refuses to overwrite one) and an empty CRL.
pub fn init(dir: &Path, common_name: &str, days: u32) -> Result<(), PkiError> {
    init_at(dir, common_name, OffsetDateTime::now_utc(), days)
}

fn init_at(dir: &Path, common_name: &str, now: OffsetDateTime, days: u32) -> Result<(), PkiError> {
    let (cert_path, key_path) = ca_paths(dir);
    if cert_path.exists() || key_path.exists() {
        return Err(PkiError::Invalid(format!(
            "{}: a CA already exists here; refusing to overwrite it",
            dir.display()
        )));
    }
    ensure_private_dir(dir)?;
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(cert_err("generating the CA key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Plumbline fleet");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::minutes(5);
    params.not_after = now + Duration::days(i64::from(days));
    params.serial_number = Some(random_serial()?);
    params.key_identifier_method = KeyIdMethod::Sha256;
    let cert = params
        .self_signed(&key)
        .map_err(cert_err("signing the CA certificate"))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    write_public(&cert_path, cert.pem().as_bytes())?;
    write_crl(dir, now)
}

/// The CA, loaded for signing.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    der: Vec<u8>,
}

/// A new key file: 0600, and never over an existing file.
fn write_private(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, data, 0o600, false).map_err(io(path))
}

/// A certificate, CRL or list anyone may read: 0644, replacing the old one.
fn write_public(path: &Path, data: &[u8]) -> Result<(), PkiError> {
    write_atomic(path, data, 0o644, true).map_err(io(path))
}

/// A PEM file of the PKI as text, read once through the trust rule.
fn read_pem(path: &Path, kind: FileKind) -> Result<String, PkiError> {
    let bytes = read_trusted(path, kind, plumb_os::pem::MAX_PEM_BYTES)?;
    String::from_utf8(bytes)
        .map_err(|_| PkiError::Invalid(format!("{}: not PEM text", path.display())))
}

fn load_ca(dir: &Path) -> Result<Ca, PkiError> {
    ensure_private_dir(dir)?;
    let (cert_path, key_path) = ca_paths(dir);
    let pem = read_pem(&cert_path, FileKind::Certificate)?;
    let key_pem = read_pem(&key_path, FileKind::PrivateKey)?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_err(format!(
        "{}: reading the CA key",
        key_path.display()
    )))?;
    let der = {
        use rustls_pki_types::pem::PemObject as _;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map_err(|e| {
                PkiError::Invalid(format!("{}: no certificate: {e}", cert_path.display()))
            })?
            .to_vec()
    };
    let issuer = Issuer::from_ca_cert_pem(&pem, key).map_err(cert_err(format!(
        "{}: reading the CA certificate",
        cert_path.display()
    )))?;
    Ok(Ca { issuer, der })
}

/// `pki issue`: a certificate for an agent (clientAuth) or a server (serverAuth).
pub fn issue(dir: &Path, role: Role, name: &str, days: u32) -> Result<Issued, PkiError> {
    let now = OffsetDateTime::now_utc();
    issue_between(
        dir,
        role,
        name,
        now - Duration::minutes(5),
        now + Duration::days(i64::from(days)),
    )
}

/// `issue` with explicit validity bounds (tests make expired certificates with it).
/// Refuses to overwrite an existing certificate of the same name.
pub fn issue_between(
    dir: &Path,
    role: Role,
    name: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<Issued, PkiError> {
    check_name(name)?;
    if not_after <= not_before {
        return Err(PkiError::Invalid(
            "validity must be at least one day".into(),
        ));
    }
    let ca = load_ca(dir)?;
    let sub = dir.join(role.subdir());
    ensure_private_dir(&sub)?;
    let cert_path = sub.join(format!("{name}.pem"));
    let key_path = sub.join(format!("{name}.key"));
    if cert_path.exists() || key_path.exists() {
        return Err(PkiError::Invalid(format!(
            "{}: already issued; revoke it and remove the files to issue again",
            cert_path.display()
        )));
    }
    if let Some(other) = same_name_other_case(&sub, name)? {
        return Err(PkiError::Invalid(format!(
            "{name:?}: {} is already issued; host names compare without case, so the \
             collector would take both for one host (revoke it and remove its files first, \
             or choose another name)",
            sub.join(format!("{other}.pem")).display()
        )));
    }
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(cert_err("generating the key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    params.subject_alt_names = vec![match (role, name.parse::<IpAddr>()) {
        (Role::Operator, _) => SanType::URI(
            OPERATOR_URI
                .to_string()
                .try_into()
                .map_err(cert_err("the operator URI"))?,
        ),
        (_, Ok(ip)) => SanType::IpAddress(ip),
        (_, Err(_)) => SanType::DnsName(
            name.to_string()
                .try_into()
                .map_err(cert_err(format!("{name}: DNS name")))?,
        ),
    }];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![match role {
        Role::Agent | Role::Operator => ExtendedKeyUsagePurpose::ClientAuth,
        Role::Server => ExtendedKeyUsagePurpose::ServerAuth,
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    let serial = random_serial()?;
    let serial_hex = hex(serial.as_ref());
    params.serial_number = Some(serial);
    let cert = params
        .signed_by(&key, &ca.issuer)
        .map_err(cert_err(format!("signing the certificate for {name}")))?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    // The chain a peer needs is just the leaf: the CA is configured on both sides.
    write_public(&cert_path, cert.pem().as_bytes())?;
    Ok(Issued {
        cert: cert_path,
        key: key_path,
        serial: serial_hex,
    })
}

/// A name issued in `dir` (a `.pem` or `.key` there) that equals `name` but
/// for ASCII case (`WEB-12` for `web-12`), if any.
fn same_name_other_case(dir: &Path, name: &str) -> Result<Option<String>, PkiError> {
    let entries = std::fs::read_dir(dir).map_err(io(dir))?;
    for entry in entries {
        let file = entry.map_err(io(dir))?.file_name();
        let Some(file) = file.to_str() else { continue };
        let stem = file
            .strip_suffix(".pem")
            .or_else(|| file.strip_suffix(".key"));
        if let Some(stem) = stem {
            if stem != name && stem.eq_ignore_ascii_case(name) {
                return Ok(Some(stem.to_string()));
            }
        }
    }
    Ok(None)
}

/// Writes `NAME.p12` beside an issued operator certificate: its key, the
/// certificate and the CA, encrypted under `password` (PBES2 with AES-256,
/// HMAC-SHA256 integrity: what current browsers import). 0600, never over
/// an existing file. Returns its path.
pub fn write_p12(dir: &Path, issued: &Issued, password: &str) -> Result<PathBuf, PkiError> {
    use p12_keystore::{Certificate, KeyStore, KeyStoreEntry, PrivateKey, PrivateKeyChain};
    use rustls_pki_types::pem::PemObject as _;
    if password.is_empty() {
        return Err(PkiError::Invalid("the .p12 password is empty".into()));
    }
    let bad = |what: &str, e: &dyn std::fmt::Display| PkiError::Invalid(format!("{what}: {e}"));
    let der_cert = |path: &Path| -> Result<Vec<u8>, PkiError> {
        let pem = read_pem(path, FileKind::Certificate)?;
        rustls_pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
            .map(|c| c.to_vec())
            .map_err(|e| bad(&path.display().to_string(), &e))
    };
    let leaf = der_cert(&issued.cert)?;
    let ca = der_cert(&ca_paths(dir).0)?;
    let key_pem = read_pem(&issued.key, FileKind::PrivateKey)?;
    let key = KeyPair::from_pem(&key_pem).map_err(cert_err(format!(
        "{}: reading the key",
        issued.key.display()
    )))?;
    let certs = [leaf.as_slice(), ca.as_slice()]
        .into_iter()
        .map(Certificate::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad("certificate for the .p12", &e))?;
    let key =
        PrivateKey::from_der(&key.serialize_der()).map_err(|e| bad("key for the .p12", &e))?;
    let local_id = ring::digest::digest(&ring::digest::SHA256, &leaf);
    let chain = PrivateKeyChain::new(local_id.as_ref().to_vec(), key, certs);
    let mut store = KeyStore::new();
    let alias = issued
        .cert
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("operator")
        .to_string();
    store.add_entry(&alias, KeyStoreEntry::PrivateKeyChain(chain));
    let bytes = store
        .writer(password)
        .write()
        .map_err(|e| bad("writing the .p12", &e))?;
    let path = issued.cert.with_extension("p12");
    write_private(&path, &bytes)?;
    Ok(path)
}

/// One revoked certificate as kept in `revoked.tsv`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    /// Serial number, hex.
    pub serial: String,
    /// Unix time of revocation.
    pub at: i64,
    /// Subject, for people.
    pub subject: String,
}

fn read_revoked(dir: &Path) -> Result<Vec<Revoked>, PkiError> {
    let path = dir.join("revoked.tsv");
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&path)(e)),
    };
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.splitn(3, '\t');
        let serial = parts.next().unwrap_or_default().to_string();
        let at = parts.next().and_then(|s| s.parse::<i64>().ok());
        let subject = parts.next().unwrap_or_default().to_string();
        match at {
            Some(at) if !serial.is_empty() && serial.bytes().all(|b| b.is_ascii_hexdigit()) => out
                .push(Revoked {
                    serial,
                    at,
                    subject,
                }),
            _ => {
                return Err(PkiError::Invalid(format!(
                    "{}:{}: expected SERIAL<TAB>UNIX_TIME<TAB>SUBJECT",
                    path.display(),
                    n + 1
                )));
            }
        }
    }
    Ok(out)
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn write_crl(dir: &Path, now: OffsetDateTime) -> Result<(), PkiError> {
    let ca = load_ca(dir)?;
    let revoked = read_revoked(dir)?;
    let mut revoked_certs = Vec::with_capacity(revoked.len());
    for r in &revoked {
        let Some(bytes) = unhex(&r.serial) else {
            return Err(PkiError::Invalid(format!("bad serial {}", r.serial)));
        };
        revoked_certs.push(RevokedCertParams {
            serial_number: SerialNumber::from_slice(&bytes),
            revocation_time: OffsetDateTime::from_unix_timestamp(r.at)
                .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            reason_code: Some(RevocationReason::Unspecified),
            invalidity_date: None,
        });
    }
    // The CRL number only has to grow: the time in seconds does.
    let number = now.unix_timestamp().max(1) as u64;
    let params = CertificateRevocationListParams {
        this_update: now - Duration::minutes(5),
        next_update: now + Duration::days(CRL_DAYS),
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let crl = params
        .signed_by(&ca.issuer)
        .map_err(cert_err("signing the CRL"))?;
    let pem = crl.pem().map_err(cert_err("encoding the CRL"))?;
    let path = dir.join("crl.pem");
    write_public(&path, pem.as_bytes())
}

/// `pki revoke`: adds the certificate's serial to the CRL (idempotent).
/// Refuses a certificate this CA did not issue.
pub fn revoke(dir: &Path, cert: &Path) -> Result<Revoked, PkiError> {
    let ca = load_ca(dir)?;
    let der = crate::tls::read_certs(cert)
        .map_err(|e| PkiError::Invalid(e.to_string()))?
        .into_iter()
        .next()
        .ok_or_else(|| PkiError::Invalid(format!("{}: no certificate", cert.display())))?;
    let (_, x509) = x509_parser::parse_x509_certificate(&der)
        .map_err(|e| PkiError::Invalid(format!("{}: {e}", cert.display())))?;
    let (_, ca_x509) = x509_parser::parse_x509_certificate(&ca.der)
        .map_err(|e| PkiError::Invalid(format!("CA certificate: {e}")))?;
    if x509.verify_signature(Some(ca_x509.public_key())).is_err() {
        return Err(PkiError::Invalid(format!(
            "{}: not issued by the CA in {}",
            cert.display(),
            dir.display()
        )));
    }
    let serial = hex(x509.raw_serial());
    let subject = x509.subject().to_string();
    let mut all = read_revoked(dir)?;
    let entry = match all.iter().find(|r| r.serial == serial) {
        Some(r) => r.clone(),
        None => {
            let r = Revoked {
                serial,
                at: OffsetDateTime::now_utc().unix_timestamp(),
                subject: subject.replace(['\t', '\n'], " "),
            };
            all.push(r.clone());
            let mut text = String::from(
                "# serial\tunix_time\tsubject (written by plumb-collector pki revoke)\n",
            );
            for r in &all {
                let _ = writeln!(text, "{}\t{}\t{}", r.serial, r.at, r.subject);
            }
            let path = dir.join("revoked.tsv");
            write_public(&path, text.as_bytes())?;
            r
        }
    };
    write_crl(dir, OffsetDateTime::now_utc())?;
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn init_issue_revoke() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("pki");
        init(&dir, "Test CA", 30).unwrap();
        assert_eq!(mode(&dir.join("ca.key")), 0o600);
        assert!(init(&dir, "Again", 30).is_err(), "must not overwrite a CA");

        let a = issue(&dir, Role::Agent, "web-12", 10).unwrap();
        assert_eq!(mode(&a.key), 0o600);
        let der = crate::tls::read_certs(&a.cert).unwrap().remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        assert_eq!(crate::tls::peer_of(&der).unwrap().identity, "web-12");

        let s = issue(&dir, Role::Server, "127.0.0.1", 10).unwrap();
        let der = crate::tls::read_certs(&s.cert).unwrap().remove(0);
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && !eku.client_auth);
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        assert!(matches!(
            san.general_names[0],
            x509_parser::extensions::GeneralName::IPAddress(_)
        ));

        assert!(
            issue(&dir, Role::Agent, "web-12", 10).is_err(),
            "no overwrite"
        );
        assert!(issue(&dir, Role::Agent, "../evil", 10).is_err());
        let e = issue(&dir, Role::Agent, "WEB-12", 10)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("web-12.pem") && e.contains("without case"),
            "{e}"
        );
        assert!(!dir.join("agents/WEB-12.pem").exists());

        let r = revoke(&dir, &a.cert).unwrap();
        assert_eq!(r.serial, a.serial);
        let again = revoke(&dir, &a.cert).unwrap();
        assert_eq!(again, r, "revoking twice is idempotent");
        let crl = crate::tls::read_crls(&dir.join("crl.pem")).unwrap();
        assert_eq!(crl.len(), 1);

        // A certificate from another CA is refused.
        let other = tmp.path().join("other");
        init(&other, "Other CA", 30).unwrap();
        let o = issue(&other, Role::Agent, "x", 10).unwrap();
        assert!(revoke(&dir, &o.cert).is_err());
    }

    #[test]
    fn names() {
        for ok in ["web-12", "db01.example.com", "10.0.0.1", "::1", "a_b"] {
            check_name(ok).unwrap();
        }
        for bad in ["", "a/b", "..", "-a", "a..b", "a b", "é"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
