//! The outbound side shared by the HTTP sinks and the alert webhooks: a
//! rustls client (ring provider) trusting a configured CA, optionally
//! presenting a client certificate, and one HTTP/1.1 POST per connection
//! through hyper (a batch is large: one handshake per batch costs little,
//! and no connection outlives a receiver's restart).

use super::ForwardError;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest answer body read (the rest is ignored): enough for a `_bulk`
/// reply about a full batch.
const MAX_ANSWER_BYTES: usize = 16 << 20;

/// The rustls client configuration of a sink or webhook: the receiver must
/// chain to `ca`; `client` is the certificate and key presented, if any.
pub(crate) fn tls_config(
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> Result<Arc<rustls::ClientConfig>, ForwardError> {
    let mut roots = rustls::RootCertStore::empty();
    // Lenient: a system bundle may hold a certificate rustls cannot use.
    let (added, _) = roots.add_parsable_certificates(crate::tls::read_certs(ca)?);
    if added == 0 {
        return Err(ForwardError::Config(format!(
            "{}: no usable CA certificate",
            ca.display()
        )));
    }
    let b = rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| ForwardError::Config(format!("TLS: {e}")))?
        .with_root_certificates(roots);
    let cfg = match client {
        Some((cert, key)) => b
            .with_client_auth_cert(crate::tls::read_certs(cert)?, crate::tls::read_key(key)?)
            .map_err(|e| ForwardError::Config(format!("{}: {e}", cert.display())))?,
        None => b.with_no_client_auth(),
    };
    Ok(Arc::new(cfg))
}

/// A byte stream to a receiver, plain or TLS.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

/// Connects to `host:port`, then TLS with `tls` (verifying `name`) when given.
pub(crate) async fn connect(
    host: &str,
    port: u16,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
) -> Result<Box<dyn Stream>, ForwardError> {
    let io = |what: &str| {
        let what = format!("{what} {host}:{port}");
        move |source| ForwardError::Io { what, source }
    };
    let tcp = TcpStream::connect((host, port))
        .await
        .map_err(io("connecting to"))?;
    let _ = tcp.set_nodelay(true);
    match tls {
        None => Ok(Box::new(tcp)),
        Some((cfg, name)) => {
            let name = ServerName::try_from(name.to_string())
                .map_err(|e| ForwardError::Config(format!("server name {name:?}: {e}")))?;
            let s = TlsConnector::from(cfg.clone())
                .connect(name, tcp)
                .await
                .map_err(io("TLS handshake with"))?;
            Ok(Box::new(s))
        }
    }
}

/// Why a sink's or webhook's URL is refused (the text is the config
/// diagnostic's).
#[derive(Debug, thiserror::Error)]
pub(crate) enum EndpointError {
    #[error("not a URL: {0}")]
    NotUrl(hyper::http::uri::InvalidUri),
    #[error("must start with https:// or http://")]
    Scheme,
    #[error("no host in the URL")]
    NoHost,
    #[error("no user or password in the URL: use token_file")]
    UserInfo,
}

/// Where an HTTP sink or webhook POSTs.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) tls: bool,
    pub(crate) host: String,
    pub(crate) port: u16,
    /// Path and query.
    pub(crate) path: String,
    /// The `Host` header.
    pub(crate) authority: String,
}

impl Endpoint {
    /// An `http://` or `https://` URL without user info.
    pub(crate) fn parse(url: &str) -> Result<Endpoint, EndpointError> {
        let uri: hyper::Uri = url.parse().map_err(EndpointError::NotUrl)?;
        let tls = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(EndpointError::Scheme),
        };
        let auth = uri.authority().ok_or(EndpointError::NoHost)?;
        if auth.as_str().contains('@') {
            return Err(EndpointError::UserInfo);
        }
        let host = auth.host().trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(EndpointError::NoHost);
        }
        Ok(Endpoint {
            tls,
            host: host.to_string(),
            port: auth.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            path: uri
                .path_and_query()
                .map_or_else(|| "/".to_string(), |p| p.as_str().to_string()),
            authority: auth.as_str().to_string(),
        })
    }
}

/// A receiver's answer.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) body: Bytes,
}

/// POSTs `body` to `ep` on a new connection, within `timeout`.
pub(crate) async fn post(
    ep: &Endpoint,
    tls: Option<(&Arc<rustls::ClientConfig>, &str)>,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<Answer, ForwardError> {
    let what = || format!("POST {}:{}{}", ep.host, ep.port, ep.path);
    let exchange = async {
        let stream = connect(&ep.host, ep.port, if ep.tls { tls } else { None }).await?;
        let http = |source: hyper::Error| ForwardError::Http {
            what: what(),
            source,
        };
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(http)?;
        let driver = tokio::spawn(conn);
        let mut req = hyper::Request::post(ep.path.as_str())
            .header(hyper::header::HOST, ep.authority.as_str())
            .header(hyper::header::CONNECTION, "close");
        for (k, v) in headers {
            req = req.header(*k, v.as_str());
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| ForwardError::Config(format!("{}: {e}", what())))?;
        let resp = sender.send_request(req).await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map(|c| c.to_bytes())
            .unwrap_or_default();
        driver.abort();
        Ok(Answer { status, body })
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(r) => r,
        Err(_) => Err(ForwardError::Timeout {
            what: what(),
            after: timeout,
        }),
    }
}
