//! Certificates, private keys and CRLs from PEM files, read through
//! [`open_trusted`](crate::trusted::open_trusted) and decoded by
//! `rustls-pki-types` (`PemObject`). Every error names the file.

use crate::trusted::{FileKind, TrustError, read_trusted};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use std::path::{Path, PathBuf};

/// Largest PEM file read: far above any certificate chain or CRL a fleet
/// CA produces, far below what could hurt memory.
pub const MAX_PEM_BYTES: u64 = 16 * 1024 * 1024;

/// Why a PEM file was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    /// The file was refused or could not be read.
    #[error(transparent)]
    File(#[from] TrustError),
    /// The content is not what was expected.
    #[error("{}: {reason}", .path.display())]
    Content {
        /// the file
        path: PathBuf,
        /// what is wrong
        reason: String,
    },
}

fn content(path: &Path, reason: impl Into<String>) -> PemError {
    PemError::Content {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Every certificate in a PEM file (at least one): a chain or a CA bundle.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, PemError> {
    let data = read_trusted(path, FileKind::Certificate, MAX_PEM_BYTES)?;
    let certs = CertificateDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not a PEM certificate file: {e}")))?;
    if certs.is_empty() {
        return Err(content(path, "no CERTIFICATE block found"));
    }
    Ok(certs)
}

/// Every CRL in a PEM file (at least one).
pub fn load_crls(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, PemError> {
    let data = read_trusted(path, FileKind::Certificate, MAX_PEM_BYTES)?;
    let crls = CertificateRevocationListDer::pem_slice_iter(&data)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| content(path, format!("not a PEM CRL file: {e}")))?;
    if crls.is_empty() {
        return Err(content(path, "no X509 CRL block found"));
    }
    Ok(crls)
}

/// The private key in a PEM file (PKCS#8, SEC1 or PKCS#1), which must be
/// accessible to its owner only.
pub fn load_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, PemError> {
    let data = read_trusted(path, FileKind::PrivateKey, MAX_PEM_BYTES)?;
    PrivateKeyDer::from_pem_slice(&data).map_err(|e| content(path, format!("no private key: {e}")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    // A throwaway self-signed P-256 certificate and its key (test data only).
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBfjCCASOgAwIBAgIUTZh0XXlLKA5eRtEjOXaxaqA/a8QwCgYIKoZIzj0EAwIw
FDESMBAGA1UEAwwJbG9jYWxob3N0MB4XDTI2MTEyOTE2NDA0NVoXDTM2MTEyNjE2
NDA0NVowFDESMBAGA1UEAwwJbG9jYWxob3N0MFkwEwYHKoZIzj0CAQYIKoZIzj0D
AQcDQgAEOZLxXeNwU4faWk3qnTRNlqqwFzqj+uppB9RVBGfLCO/MDdoAG2wdSK/W
soojg95CgDhLLRYCh0c9MgSnO8errqNTMFEwHQYDVR0OBBYEFMaB1C4AAkQeKDZG
UzgGIaD/0X+vMB8GA1UdIwQYMBaAFMaB1C4AAkQeKDZGUzgGIaD/0X+vMA8GA1Ud
EwEB/wQFMAMBAf8wCgYIKoZIzj0EAwIDSQAwRgIhAKRbiVdHFvBbxXJQ7LIaMhdh
rMKroq+xcdpB0Eb0KTnJAiEAg5llIAY4fTCGzxWwT14JdezTPynrvAXpr0pKhPbi
M5E=
-----END CERTIFICATE-----
";
    const KEY: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg+qQvwvoFoh/43Nca
PQCs2u06qM7lPETCFpBWxaOdJxmhRANCAAQ5kvFd43BTh9paTeqdNE2WqrAXOqP6
6mkH1FUEZ8sI78wN2gAbbB1Ir9ayiiOD3kKAOEstFgKHRz0yBKc7x6uu
-----END PRIVATE KEY-----
";

    fn write(dir: &Path, name: &str, text: &str, mode: u32) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    }

    #[test]
    fn certificates_keys_and_their_errors() {
        let d = tempfile::tempdir().unwrap();
        let cert = write(d.path(), "c.pem", &format!("{CERT}{CERT}"), 0o644);
        assert_eq!(load_certs(&cert).unwrap().len(), 2);
        let key = write(d.path(), "k.pem", KEY, 0o600);
        assert!(matches!(
            load_private_key(&key).unwrap(),
            PrivateKeyDer::Pkcs8(_)
        ));
        // A key others can read is refused before it is decoded.
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = load_private_key(&key).unwrap_err().to_string();
        assert!(e.contains("mode 0644 gives group/other access"), "{e}");

        let empty = write(d.path(), "e.pem", "hello\n", 0o644);
        let e = load_certs(&empty).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("{}: no CERTIFICATE block found", empty.display())
        );
        let e = load_crls(&empty).unwrap_err().to_string();
        assert!(e.ends_with("no X509 CRL block found"), "{e}");
        let k = write(d.path(), "nokey.pem", CERT, 0o600);
        let e = load_private_key(&k).unwrap_err().to_string();
        assert!(
            e.starts_with(&format!("{}: no private key", k.display())),
            "{e}"
        );
        let broken = write(
            d.path(),
            "broken.pem",
            "-----BEGIN CERTIFICATE-----\nAAAA\n",
            0o644,
        );
        let e = load_certs(&broken).unwrap_err().to_string();
        assert!(e.contains("broken.pem: not a PEM certificate file"), "{e}");
    }
}
