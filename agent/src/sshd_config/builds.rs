//! The sshd builds Plumbline knows: which package version in the checked
//! root's dpkg database gives which compiled-in algorithm lists. Everything
//! else about the keywords (names, defaults, syntax) is the same for every
//! build listed here (OpenSSH 9.2p1 with Debian's patches), and lives in
//! `keywords`.
//!
//! A build that is not listed is not guessed: the `sshd` check says
//! `error`, naming the package version. To add one, fetch it with
//! `PLUMB_SSHD_VERSION=VERSION scripts/test-oracles.sh`, compare `sshd -T` on an empty
//! configuration with an existing build and run the differential test
//! (`tests/suite/sshd_oracle.rs`) against it.

/// One build of sshd.
#[derive(Debug)]
pub(crate) struct Build {
    /// `KEX_SERVER_KEX` of this build's myproposal.h, before filtering.
    pub kex_default: &'static str,
    /// Every key exchange this build implements (`kex_alg_list`), in its order.
    pub kex_all: &'static str,
}

/// Every cipher of OpenSSH 9.2p1 built with OpenSSL (`cipher_alg_list`).
pub(crate) const CIPHERS_ALL: &str = "3des-cbc,aes128-cbc,aes192-cbc,aes256-cbc,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com";
/// `KEX_SERVER_ENCRYPT`.
pub(crate) const CIPHERS_DEFAULT: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
/// Every MAC (`mac_alg_list`).
pub(crate) const MACS_ALL: &str = "hmac-sha1,hmac-sha1-96,hmac-sha2-256,hmac-sha2-512,hmac-md5,hmac-md5-96,umac-64@openssh.com,umac-128@openssh.com,hmac-sha1-etm@openssh.com,hmac-sha1-96-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-md5-etm@openssh.com,hmac-md5-96-etm@openssh.com,umac-64-etm@openssh.com,umac-128-etm@openssh.com";
/// `KEX_SERVER_MAC`.
pub(crate) const MACS_DEFAULT: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
/// Every key and signature algorithm (`sshkey_alg_list(0, 0, 1)`).
pub(crate) const KEYS_ALL: &str = "ssh-ed25519,ssh-ed25519-cert-v01@openssh.com,sk-ssh-ed25519@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,ssh-dss,ssh-dss-cert-v01@openssh.com,ssh-rsa,ssh-rsa-cert-v01@openssh.com,rsa-sha2-256,rsa-sha2-256-cert-v01@openssh.com,rsa-sha2-512,rsa-sha2-512-cert-v01@openssh.com";
/// `KEX_DEFAULT_PK_ALG`.
pub(crate) const KEYS_DEFAULT: &str = "ssh-ed25519-cert-v01@openssh.com,ecdsa-sha2-nistp256-cert-v01@openssh.com,ecdsa-sha2-nistp384-cert-v01@openssh.com,ecdsa-sha2-nistp521-cert-v01@openssh.com,sk-ssh-ed25519-cert-v01@openssh.com,sk-ecdsa-sha2-nistp256-cert-v01@openssh.com,rsa-sha2-512-cert-v01@openssh.com,rsa-sha2-256-cert-v01@openssh.com,ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256";
/// Every signature algorithm of plain keys (`sshkey_alg_list(0, 1, 1)`).
pub(crate) const SIGS_ALL: &str = "ssh-ed25519,sk-ssh-ed25519@openssh.com,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ecdsa-sha2-nistp256@openssh.com,webauthn-sk-ecdsa-sha2-nistp256@openssh.com,ssh-dss,ssh-rsa,rsa-sha2-256,rsa-sha2-512";
/// `SSH_ALLOWED_CA_SIGALGS`.
pub(crate) const SIGS_DEFAULT: &str = "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,sk-ssh-ed25519@openssh.com,sk-ecdsa-sha2-nistp256@openssh.com,rsa-sha2-512,rsa-sha2-256";
/// Key type names accepted besides the algorithm names
/// (`sshkey_type_from_name`: short names of plain key types, any case).
pub(crate) const KEY_SHORT_NAMES: &[&str] = &[
    "DSA",
    "ECDSA-SK",
    "ECDSA",
    "ED25519-SK",
    "ED25519",
    "RSA",
    "null",
];
/// Prefixes of the GSSAPI key exchanges (`gss_kexalgs`), valid in
/// `KexAlgorithms` (never offered there) and `GSSAPIKexAlgorithms`.
pub(crate) const GSS_KEX_PREFIXES: &[&str] = &[
    "gss-gex-sha1-",
    "gss-group1-sha1-",
    "gss-group14-sha1-",
    "gss-group14-sha256-",
    "gss-group16-sha512-",
    "gss-nistp256-sha256-",
    "gss-curve25519-sha256-",
];

/// Upstream 9.2p1's key exchanges.
const KEX_ALL_9_2: &str = "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha1,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512@openssh.com";
const KEX_DEFAULT_9_2: &str = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";
/// Debian's sntrup761x25519-sha512.patch (1:9.2p1-2+deb12u4): the
/// algorithm under its IANA name too, first in the default list.
const KEX_ALL_DEB12U4: &str = "diffie-hellman-group1-sha1,diffie-hellman-group14-sha1,diffie-hellman-group14-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group-exchange-sha1,diffie-hellman-group-exchange-sha256,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,curve25519-sha256,curve25519-sha256@libssh.org,sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com";
const KEX_DEFAULT_DEB12U4: &str = "sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";

const DEBIAN_12: Build = Build {
    kex_default: KEX_DEFAULT_9_2,
    kex_all: KEX_ALL_9_2,
};
const DEBIAN_12_U4: Build = Build {
    kex_default: KEX_DEFAULT_DEB12U4,
    kex_all: KEX_ALL_DEB12U4,
};

/// openssh-server versions and their builds. Debian 12's point and
/// security updates of 9.2p1-2 up to the last one verified.
const BUILDS: &[(&str, &Build)] = &[
    ("1:9.2p1-2", &DEBIAN_12),
    ("1:9.2p1-2+deb12u1", &DEBIAN_12),
    ("1:9.2p1-2+deb12u2", &DEBIAN_12),
    ("1:9.2p1-2+deb12u3", &DEBIAN_12),
    ("1:9.2p1-2+deb12u4", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u5", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u6", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u7", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u8", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u9", &DEBIAN_12_U4),
    ("1:9.2p1-2+deb12u10", &DEBIAN_12_U4),
];

/// The build of an installed openssh-server version, if known.
pub(crate) fn by_version(version: &str) -> Option<&'static Build> {
    BUILDS
        .iter()
        .find(|(v, _)| *v == version.trim())
        .map(|(_, b)| *b)
}

/// The supported versions, for error messages and docs.
pub(crate) fn supported() -> String {
    let first = BUILDS.first().map_or("", |(v, _)| v);
    let last = BUILDS.last().map_or("", |(v, _)| v);
    format!("Debian 12 openssh-server {first} to {last}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_their_key_exchange_lists() {
        assert!(
            by_version("1:9.2p1-2+deb12u3")
                .unwrap()
                .kex_default
                .starts_with("sntrup761x25519-sha512@openssh.com,")
        );
        assert!(
            by_version("1:9.2p1-2+deb12u10")
                .unwrap()
                .kex_default
                .starts_with("sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,")
        );
        assert!(by_version("1:9.2p1-2+deb12u11").is_none());
        assert!(by_version("1:8.9p1-3ubuntu0.10").is_none());
        assert_eq!(
            supported(),
            "Debian 12 openssh-server 1:9.2p1-2 to 1:9.2p1-2+deb12u10"
        );
    }
}
