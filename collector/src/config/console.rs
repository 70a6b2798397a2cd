//! `[console]`: the ops console and its API (docs/console.md). Absent: no
//! console listener. The console reuses the collector's `[tls]` setup
//! (its certificate, the fleet CA, the CRLs and the database revocations):
//! operators hold certificates of the fleet CA marked with the operator
//! role (`pki issue --operator`), which only the console accepts.

use plumb_core::{Diagnostic, Document};
use serde::Deserialize;
use std::net::SocketAddr;

/// `[console]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Address and port of the console's HTTPS listener (required).
    pub listen: SocketAddr,
    /// Authenticated console connections held at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Connections of one operator at once (a browser opens several); a
    /// newer one closes the oldest.
    #[serde(default = "default_per_operator")]
    pub max_connections_per_operator: usize,
    /// The identity (certificate CN) of a trusted reverse proxy, itself
    /// holding an operator certificate: only its requests may name the
    /// user in `proxy_user_header`. Absent: no proxy is trusted.
    #[serde(default)]
    pub proxy_identity: Option<String>,
    /// The header the trusted proxy names the user in.
    #[serde(default = "default_user_header")]
    pub proxy_user_header: String,
    /// Rows per page of the lists (fleet, drift); `?limit=` may ask up to
    /// ten times this.
    #[serde(default = "default_page_size")]
    pub page_size: usize,
}

fn default_max_connections() -> usize {
    64
}
fn default_per_operator() -> usize {
    16
}
fn default_user_header() -> String {
    "x-remote-user".into()
}
fn default_page_size() -> usize {
    100
}

impl ConsoleSection {
    pub(super) fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        if self.max_connections == 0 {
            out.push(doc.at("console.max_connections", "must be at least 1"));
        }
        if self.max_connections_per_operator == 0 {
            out.push(doc.at("console.max_connections_per_operator", "must be at least 1"));
        }
        if self.page_size == 0 || self.page_size > 10_000 {
            out.push(doc.at("console.page_size", "must be between 1 and 10000"));
        }
        if hyper::header::HeaderName::from_bytes(self.proxy_user_header.as_bytes()).is_err() {
            out.push(doc.at("console.proxy_user_header", "not a valid HTTP header name"));
        }
        if matches!(&self.proxy_identity, Some(p) if p.trim().is_empty()) {
            out.push(doc.at("console.proxy_identity", "must not be empty"));
        }
    }
}
