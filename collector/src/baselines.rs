//! Publishing signed baselines: a bundle is verified with the collector's
//! own trusted keys before it is stored (a mistake is caught at publication;
//! the agents verify again, they do not trust the collector).

use crate::storage::NewBaseline;
use plumb_core::bundle::{Bundle, BundleError, PublicKey};

/// Why a bundle is not published.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The `--hosts` glob has characters a host name cannot.
    #[error("hosts {0:?}: a host name glob of letters, digits, '.', '-', '_', '*' and '?'")]
    HostsPattern(String),
    /// Nothing to verify the signature with.
    #[error(
        "no trusted baseline keys: set [baselines] trusted_keys in the config (or give --trusted-key)"
    )]
    NoTrustedKeys,
    /// The bundle is malformed, forged, or signed by an unknown key.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks a `--hosts` glob: letters, digits, `.`, `-`, `_`, `*`, `?`.
fn check_hosts_pattern(hosts: &str) -> Result<(), PublishError> {
    if hosts.is_empty()
        || hosts.len() > 253
        || !hosts
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"*?.-_".contains(&b))
    {
        return Err(PublishError::HostsPattern(hosts.to_string()));
    }
    Ok(())
}

/// Verifies `bytes` as a bundle signed by one of `keys` and prepares the row
/// to store: the canonical bundle bytes, their SHA-256, the signer.
pub fn prepare(
    bytes: &[u8],
    keys: &[PublicKey],
    hosts: &str,
    now: i64,
) -> Result<NewBaseline, PublishError> {
    check_hosts_pattern(hosts)?;
    if keys.is_empty() {
        return Err(PublishError::NoTrustedKeys);
    }
    let verified = Bundle::parse(bytes).and_then(|b| b.verify(keys))?;
    // The encoding is canonical, so these are the bytes given.
    let bytes = verified.bundle.to_bytes();
    let sha256 = hex(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref());
    Ok(NewBaseline {
        id: verified.baseline.id.clone(),
        version: verified.baseline.version,
        key_id: verified.key_id,
        hosts: hosts.to_string(),
        bytes,
        sha256,
        published_at: now,
    })
}
