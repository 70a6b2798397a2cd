//! Revocation: the one answer to "is this agent certificate revoked now?",
//! which the server asks at every handshake, at every request, and for every
//! open connection whenever the answer may have changed.
//!
//! The answer is the union of named sources, each a set of revoked
//! certificates that its owner replaces as a whole: today the CRL files of
//! `[tls] crl` (source [`CRL_FILES`], replaced at start and at each SIGHUP);
//! another source (revocations kept in a database and polled, say) calls
//! [`Revocations::replace`] with its own name. Every replacement wakes the
//! subscribers ([`Revocations::subscribe`]): each open connection then checks
//! its own certificate and closes if it is now revoked.
//!
//! A certificate is named by its issuer and serial number ([`CertId`]), as a
//! CRL names it, so a CRL only ever revokes certificates of its own issuer.
//! The CRL files are trusted configuration (read through `open_trusted`,
//! like the CA file); rustls checks their signatures again at the handshake.

use rustls_pki_types::CertificateRevocationListDer;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, PoisonError, RwLock};
use tokio::sync::watch;
use x509_parser::prelude::FromDer;

/// The source name of the `[tls] crl` files.
pub const CRL_FILES: &str = "crl";
/// The source name of the revocations kept in the database (PostgreSQL),
/// which every collector of the fleet polls.
pub const DATABASE: &str = "database";

/// Why a certificate, a CRL or the database's list of serials cannot be
/// read as revocations.
#[derive(Debug, thiserror::Error)]
pub enum RevocationError {
    /// A DER certificate that does not parse.
    #[error("{0}")]
    Certificate(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A DER CRL that does not parse.
    #[error("unparsable CRL: {0}")]
    Crl(x509_parser::nom::Err<x509_parser::error::X509Error>),
    /// A serial recorded by `pki revoke` that is not hex.
    #[error("not a hex serial: {0:?}")]
    NotHex(String),
}

/// A certificate as revocation names it: its issuer's DER-encoded name and
/// its serial number (leading zero bytes of the encoding removed).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CertId {
    issuer: Box<[u8]>,
    serial: Box<[u8]>,
}

impl CertId {
    /// From the issuer's DER name and the serial number's big-endian bytes.
    pub fn new(issuer_der: &[u8], serial: &[u8]) -> CertId {
        let start = serial.iter().position(|&b| b != 0).unwrap_or(serial.len());
        CertId {
            issuer: issuer_der.into(),
            serial: serial[start..].into(),
        }
    }

    /// The issuer and serial of a DER certificate.
    pub fn of_certificate(der: &[u8]) -> Result<CertId, RevocationError> {
        let (_, x) =
            x509_parser::parse_x509_certificate(der).map_err(RevocationError::Certificate)?;
        Ok(CertId::of_parsed(&x))
    }

    pub(crate) fn of_parsed(x: &x509_parser::certificate::X509Certificate<'_>) -> CertId {
        CertId::new(x.issuer().as_raw(), x.raw_serial())
    }

    /// The serial number, hex, for messages.
    pub fn serial_hex(&self) -> String {
        self.serial.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// The certificates one source says are revoked.
#[derive(Debug, Clone, Default)]
pub struct RevokedSet {
    certs: HashSet<CertId>,
    /// Serials revoked whatever the issuer: the database's record, written
    /// by `pki revoke` of the fleet CA, the one CA the server trusts for
    /// agents (leading zero bytes removed, as in [`CertId`]).
    serials: HashSet<Box<[u8]>>,
}

impl RevokedSet {
    /// An empty set.
    pub fn new() -> RevokedSet {
        RevokedSet::default()
    }

    /// Adds a revoked certificate.
    pub fn insert(&mut self, id: CertId) {
        self.certs.insert(id);
    }

    /// The serials `pki revoke` recorded in the database (hex, as
    /// `pki issue` prints them).
    pub fn from_serials_hex<'a>(
        serials: impl IntoIterator<Item = &'a str>,
    ) -> Result<RevokedSet, RevocationError> {
        let mut set = RevokedSet::new();
        for hex in serials {
            let bytes = hex_bytes(hex).ok_or_else(|| RevocationError::NotHex(hex.to_owned()))?;
            let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
            set.serials.insert(bytes[start..].into());
        }
        Ok(set)
    }

    /// Whether `id` is in the set.
    pub fn contains(&self, id: &CertId) -> bool {
        self.certs.contains(id) || self.serials.contains(&id.serial)
    }

    /// How many certificates it revokes.
    pub fn len(&self) -> usize {
        self.certs.len() + self.serials.len()
    }

    /// Whether it revokes nothing.
    pub fn is_empty(&self) -> bool {
        self.certs.is_empty() && self.serials.is_empty()
    }

    /// Every certificate the CRLs list, each under its CRL's issuer.
    pub fn from_crls(
        crls: &[CertificateRevocationListDer<'_>],
    ) -> Result<RevokedSet, RevocationError> {
        let mut set = RevokedSet::new();
        for der in crls {
            let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
                .map_err(RevocationError::Crl)?;
            let issuer = crl.issuer().as_raw();
            for r in crl.iter_revoked_certificates() {
                set.insert(CertId::new(issuer, r.raw_serial()));
            }
        }
        Ok(set)
    }
}

/// `"0a1b"` → `[0x0a, 0x1b]`; `None` for an odd length or a non-hex digit.
fn hex_bytes(hex: &str) -> Option<Vec<u8>> {
    let hex = hex.trim();
    if hex.is_empty() || hex.len() % 2 != 0 {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect()
}

/// The live view: every source's set, and a signal when one changes.
pub struct Revocations {
    sources: RwLock<BTreeMap<String, Arc<RevokedSet>>>,
    changed: watch::Sender<u64>,
}

impl std::fmt::Debug for Revocations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Revocations").finish_non_exhaustive()
    }
}

impl Revocations {
    /// A view with no source: nothing is revoked.
    pub fn new() -> Arc<Revocations> {
        Arc::new(Revocations {
            sources: RwLock::new(BTreeMap::new()),
            changed: watch::Sender::new(0),
        })
    }

    /// Replaces what `source` says is revoked, and tells the subscribers.
    pub fn replace(&self, source: &str, set: RevokedSet) {
        {
            let mut sources = self.sources.write().unwrap_or_else(PoisonError::into_inner);
            sources.insert(source.to_string(), Arc::new(set));
        }
        self.changed.send_modify(|generation| *generation += 1);
    }

    /// Whether any source says `id` is revoked.
    pub fn is_revoked(&self, id: &CertId) -> bool {
        let sources = self.sources.read().unwrap_or_else(PoisonError::into_inner);
        sources.values().any(|s| s.contains(id))
    }

    /// Changes after this call: the receiver sees a new value at each
    /// [`Revocations::replace`].
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }
}

/// What a CRL says about itself: who issued it and until when it is current.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlValidity {
    /// The issuer, for messages (`CN=…, O=…`).
    pub issuer: String,
    /// Unix time of `nextUpdate`; `None` when the CRL has none.
    pub next_update: Option<i64>,
}

/// The issuer and `nextUpdate` of a DER CRL.
pub fn crl_validity(der: &[u8]) -> Result<CrlValidity, RevocationError> {
    let (_, crl) = x509_parser::revocation_list::CertificateRevocationList::from_der(der)
        .map_err(RevocationError::Crl)?;
    Ok(CrlValidity {
        issuer: crl.issuer().to_string(),
        next_update: crl.next_update().map(|t| t.timestamp()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_serials_revoke_whatever_the_issuer_and_bad_hex_is_refused() {
        // As `pki issue` prints them: a leading 00 byte keeps DER positive.
        let set = RevokedSet::from_serials_hex(["008102", "0a"]).unwrap();
        assert_eq!(set.len(), 2);
        assert!(set.contains(&CertId::new(b"fleet CA", &[0x81, 2])));
        assert!(set.contains(&CertId::new(b"other", &[0, 0x0a])));
        assert!(!set.contains(&CertId::new(b"fleet CA", &[0x81, 3])));
        let e = RevokedSet::from_serials_hex(["81z2"]).unwrap_err();
        assert!(e.to_string().contains("81z2"), "{e}");
        assert!(RevokedSet::from_serials_hex(["abc"]).is_err());
        assert!(RevokedSet::from_serials_hex([""]).is_err());
        let v = Revocations::new();
        v.replace(DATABASE, set);
        assert!(v.is_revoked(&CertId::new(b"x", &[0x81, 2])));
        v.replace(DATABASE, RevokedSet::new());
        assert!(!v.is_revoked(&CertId::new(b"x", &[0x81, 2])));
    }

    #[test]
    fn serials_compare_by_value_and_sources_are_replaced_whole() {
        let a = CertId::new(b"issuer", &[0, 0x81, 2]);
        assert_eq!(a, CertId::new(b"issuer", &[0x81, 2]));
        assert_eq!(a.serial_hex(), "8102");
        assert_ne!(a, CertId::new(b"other issuer", &[0x81, 2]));

        let view = Revocations::new();
        let mut changes = view.subscribe();
        assert!(!view.is_revoked(&a));
        let mut set = RevokedSet::new();
        set.insert(a.clone());
        view.replace(CRL_FILES, set);
        assert!(changes.has_changed().unwrap());
        changes.mark_unchanged();
        assert!(view.is_revoked(&a));
        // Another source does not hide the first.
        view.replace("database", RevokedSet::new());
        assert!(view.is_revoked(&a));
        // The CRL source replaced without it: no longer revoked.
        view.replace(CRL_FILES, RevokedSet::new());
        assert!(!view.is_revoked(&a));
        assert!(changes.has_changed().unwrap());
    }
}
