//! The remote side of `plumb-collector hosts|drift|report|baseline list
//! --url https://collector:PORT`: one GET to a console's `/api/v1/…` with an
//! operator certificate (docs/console.md), over TLS 1.3 with the same rustls
//! setup as everything else (`crate::tls::client_config`).

use crate::tls::{TlsError, client_config, server_name};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where and as whom.
#[derive(Debug, Clone)]
pub struct Remote {
    /// `https://HOST[:PORT][/prefix]`.
    pub url: String,
    /// Operator certificate (PEM).
    pub cert: PathBuf,
    /// Its key (PEM, 0600).
    pub key: PathBuf,
    /// The CA the console's certificate chains to.
    pub ca: PathBuf,
}

/// A remote query failure.
#[derive(Debug, thiserror::Error)]
pub enum RemoteError {
    /// The URL is not `https://HOST[:PORT][/prefix]`.
    #[error("--url {0:?}: expected https://HOST[:PORT]")]
    Url(String),
    /// Certificates or keys.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Connecting, the handshake, or the exchange.
    #[error("{url}: {reason}")]
    Io {
        /// the console
        url: String,
        /// why
        reason: String,
    },
    /// The console answered with an error.
    #[error("{url}: {status}: {reason}")]
    Refused {
        /// the console
        url: String,
        /// HTTP status
        status: u16,
        /// its `error`, or the body
        reason: String,
    },
}

/// A successful answer: its body and the console's result headers.
#[derive(Debug)]
pub struct Answer {
    /// The body, as the local command prints it.
    pub body: Vec<u8>,
    /// `Plumb-Count` (drift: events listed).
    pub count: Option<usize>,
    /// `Plumb-Failing` (report: some host fails a rule).
    pub failing: Option<bool>,
}

/// The console's host, port and path prefix.
fn split_url(url: &str) -> Result<(String, u16, String), RemoteError> {
    let bad = || RemoteError::Url(url.to_string());
    let rest = url.strip_prefix("https://").ok_or_else(bad)?;
    let (authority, prefix) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6.split_once(']').ok_or_else(bad)?;
        (h, after.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(p) => p.parse::<u16>().map_err(|_| bad())?,
        None => 443,
    };
    Ok((host.to_string(), port, prefix.to_string()))
}

/// The CA a remote query trusts when `--ca` is not given: `ca.pem` of the
/// PKI directory the certificate was issued in (`DIR/operators/NAME.pem`).
pub fn default_ca(cert: &Path) -> PathBuf {
    cert.parent()
        .and_then(Path::parent)
        .unwrap_or(Path::new("."))
        .join("ca.pem")
}

/// GET `route` (`hosts?format=json`, …) under the console's `/api/v1/`.
pub fn get(remote: &Remote, route: &str) -> Result<Answer, RemoteError> {
    let (host, port, prefix) = split_url(&remote.url)?;
    let cfg = client_config(&remote.ca, Some((&remote.cert, &remote.key)))?;
    let name = server_name(&host)?;
    let io = |e: &dyn std::fmt::Display| RemoteError::Io {
        url: remote.url.clone(),
        reason: e.to_string(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| io(&e))?;
    let path = format!("{prefix}/api/v1/{route}");
    let authority = if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    };
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| io(&e))?;
        let tls = tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| io(&format!("TLS: {e}")))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
            .await
            .map_err(|e| io(&e))?;
        tokio::spawn(conn);
        let req = hyper::Request::get(path.as_str())
            .header(hyper::header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())
            .map_err(|e| io(&e))?;
        let resp = send.send_request(req).await.map_err(|e| {
            io(&format!(
                "{e} (is the certificate an operator's, and not revoked?)"
            ))
        })?;
        let status = resp.status();
        let header = |n: &str| {
            resp.headers()
                .get(n)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let count = header("plumb-count").and_then(|v| v.parse().ok());
        let failing = header("plumb-failing").and_then(|v| v.parse().ok());
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| io(&e))?
            .to_bytes()
            .to_vec();
        if !status.is_success() {
            let reason = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).trim().to_string());
            return Err(RemoteError::Refused {
                url: remote.url.clone(),
                status: status.as_u16(),
                reason,
            });
        }
        Ok(Answer {
            body,
            count,
            failing,
        })
    };
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), exchange)
            .await
            .unwrap_or_else(|_| Err(io(&"no answer within 60 s")))
    })
}

/// `key=value` pairs as a query string (values percent-encoded).
pub fn query(pairs: &[(&str, Option<String>)]) -> String {
    pairs
        .iter()
        .filter_map(|(k, v)| {
            v.as_ref()
                .map(|v| format!("{k}={}", crate::console::escape::query_value(v)))
        })
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            split_url("https://collector.example:8443").unwrap(),
            ("collector.example".into(), 8443, String::new())
        );
        assert_eq!(
            split_url("https://[::1]:9/console/").unwrap(),
            ("::1".into(), 9, "/console".into())
        );
        assert_eq!(split_url("https://c").unwrap().1, 443);
        assert!(split_url("http://c:1").is_err());
        assert!(split_url("https://c:x").is_err());
    }
}
