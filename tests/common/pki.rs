//! The one certificate helper: a throwaway fleet PKI made by the collector's
//! own `pki` module (what `plumb-collector pki init|issue` run), and rustls
//! configurations built from its PEM files for the tests' own clients and
//! servers.

use plumb_collector::pki::{self, Role};
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// A fleet PKI in a directory: CA (`ca.pem`, `crl.pem`), a server
/// certificate for `localhost` (`servers/localhost.{pem,key}`), agent
/// certificates (`agents/HOST.{pem,key}`) issued on first use. Derefs to its
/// directory, so it can be passed where a path is wanted.
pub struct Pki {
    pub dir: PathBuf,
}

impl std::ops::Deref for Pki {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.dir
    }
}

impl Pki {
    /// Creates the CA and the `localhost` server certificate in `dir`.
    pub fn new(dir: &Path) -> Pki {
        pki::init(dir, "Test fleet CA", 30).unwrap();
        pki::issue(dir, Role::Server, "localhost", 30).unwrap();
        Pki {
            dir: dir.to_path_buf(),
        }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The certificate and key of agent `host`, issued on first use.
    pub fn agent(&self, host: &str) -> (PathBuf, PathBuf) {
        let cert = self.dir.join("agents").join(format!("{host}.pem"));
        if !cert.exists() {
            pki::issue(&self.dir, Role::Agent, host, 30).unwrap();
        }
        (cert, self.dir.join("agents").join(format!("{host}.key")))
    }

    /// A TLS 1.3 client trusting the CA, presenting agent `host`'s
    /// certificate when given (as an agent's sender does).
    pub fn client_config(&self, host: Option<&str>) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        for c in certs(&self.ca()) {
            roots.add(c).unwrap();
        }
        let b = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots);
        let mut cfg = match host {
            Some(h) => {
                let (cert, key) = self.agent(h);
                b.with_client_auth_cert(certs(&cert), private_key(&key))
                    .unwrap()
            }
            None => b.with_no_client_auth(),
        };
        cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(cfg)
    }

    /// A TLS 1.3 server with the `localhost` certificate that asks for no
    /// client certificate (a test's stand-in for a collector).
    pub fn server_config(&self) -> Arc<ServerConfig> {
        let cfg = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                certs(&self.dir.join("servers/localhost.pem")),
                private_key(&self.dir.join("servers/localhost.key")),
            )
            .unwrap();
        Arc::new(cfg)
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn certs(path: &Path) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_file_iter(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn private_key(path: &Path) -> PrivateKeyDer<'static> {
    PrivateKeyDer::from_pem_file(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
