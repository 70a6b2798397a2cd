//! The ops console (docs/console.md): the fleet in a browser and the same
//! answers as JSON, on the `[console]` listener. Who may look (operator
//! certificates, the trusted proxy's user header), what may be asked (GET
//! and HEAD only), the `/api/v1/…` routes (the very output of
//! `plumb-collector hosts|drift|report|baseline list`, one implementation:
//! [`crate::queries`]), the pages ([`pages`]) and the response headers every
//! answer carries (strict CSP, no caching of data, `Server-Timing`).

pub mod escape;
mod pages;

use crate::config::ConsoleSection;
use crate::queries::{self, Format};
use crate::storage::{self, DriftFilter, Queries, StorageError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use std::sync::Arc;
use std::time::Instant;

/// The console's response type.
pub type Resp = Response<Full<Bytes>>;

/// Every answer's Content-Security-Policy: nothing but the console's own
/// stylesheet and script, no inline script or style, no framing.
pub const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; \
     img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; \
     frame-ancestors 'none'";

/// What the console needs to answer.
pub struct Console {
    queries: Arc<dyn Queries>,
    stale_after: u64,
    proxy_identity: Option<String>,
    user_header: HeaderName,
    page_size: usize,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl Console {
    /// From `[console]`, the hosts' staleness (`[hosts]`) and the store.
    pub fn new(cfg: &ConsoleSection, stale_after: u64, queries: Arc<dyn Queries>) -> Console {
        Console {
            queries,
            stale_after,
            proxy_identity: cfg.proxy_identity.as_deref().map(storage::canonical_host),
            // Checked at load (`ConsoleSection::check`); a default never fails.
            user_header: HeaderName::from_bytes(cfg.proxy_user_header.as_bytes())
                .unwrap_or(HeaderName::from_static("x-remote-user")),
            page_size: cfg.page_size,
        }
    }
}

/// The authenticated peer of a console connection.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Certificate identity (canonical).
    pub identity: Arc<str>,
    /// Whether the certificate carries the operator role mark.
    pub operator: bool,
}

/// Who is looking: the operator, or the user a trusted proxy names.
#[derive(Debug, Clone)]
pub(crate) struct User {
    pub(crate) name: String,
    /// The proxy's identity when a proxy named the user.
    pub(crate) via: Option<String>,
}

/// An answer before the common headers.
#[derive(Debug)]
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) content_type: &'static str,
    pub(crate) body: Vec<u8>,
    pub(crate) headers: Vec<(HeaderName, String)>,
}

impl Reply {
    pub(crate) fn new(content_type: &'static str, body: impl Into<Vec<u8>>) -> Reply {
        Reply {
            status: StatusCode::OK,
            content_type,
            body: body.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn json(body: String) -> Reply {
        Reply::new("application/json", body)
    }

    pub(crate) fn error(status: StatusCode, api: bool, reason: &str) -> Reply {
        let mut r = if api {
            Reply::json(serde_json::json!({ "error": reason }).to_string())
        } else {
            Reply::new("text/plain; charset=utf-8", format!("{reason}\n"))
        };
        r.status = status;
        r
    }
}

/// A request's query parameters, decoded (`+` is a space).
#[derive(Debug, Default)]
pub(crate) struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: Option<&str>) -> Params {
        let decode = |s: &str| {
            let s = s.replace('+', " ");
            percent_encoding::percent_decode_str(&s)
                .decode_utf8_lossy()
                .into_owned()
        };
        Params(
            query
                .unwrap_or("")
                .split('&')
                .filter(|p| !p.is_empty())
                .map(|p| match p.split_once('=') {
                    Some((k, v)) => (decode(k), decode(v)),
                    None => (decode(p), String::new()),
                })
                .collect(),
        )
    }

    /// The first value of `name`, when not empty.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// Answers one request of a console connection.
pub async fn handle<B>(console: Arc<Console>, caller: Caller, req: Request<B>) -> Resp {
    let started = Instant::now();
    let path = req.uri().path().to_string();
    let api = path.starts_with("/api/");
    let reply = match admit(&console, &caller, &req) {
        Err(r) => r,
        Ok(user) => {
            let params = Params::parse(req.uri().query());
            tracing::debug!(user = %user.name, via = ?user.via, %path, "console request");
            let c = console.clone();
            match tokio::task::spawn_blocking(move || route(&c, &user, &path, &params)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => {
                    tracing::warn!("console: {e}");
                    Reply::error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        api,
                        "the store could not answer",
                    )
                }
                Err(_) => Reply::error(StatusCode::INTERNAL_SERVER_ERROR, api, "internal error"),
            }
        }
    };
    finish(reply, started)
}

/// Who may look, and how: an operator certificate (its proxy's named user,
/// when it is the trusted proxy), GET or HEAD.
fn admit<B>(console: &Console, caller: &Caller, req: &Request<B>) -> Result<User, Reply> {
    let api = req.uri().path().starts_with("/api/");
    if !caller.operator {
        return Err(Reply::error(
            StatusCode::FORBIDDEN,
            api,
            "this certificate is not an operator's (plumb-collector pki issue --operator NAME)",
        ));
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        let mut r = Reply::error(
            StatusCode::METHOD_NOT_ALLOWED,
            api,
            "the console is read-only: GET and HEAD only",
        );
        r.headers.push((header::ALLOW, "GET, HEAD".into()));
        return Err(r);
    }
    let is_proxy = console.proxy_identity.as_deref() == Some(&*caller.identity);
    if !is_proxy {
        // A user header from anyone but the trusted proxy is ignored.
        return Ok(User {
            name: caller.identity.to_string(),
            via: None,
        });
    }
    let named = req
        .headers()
        .get(&console.user_header)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 256);
    match named {
        Some(u) => Ok(User {
            name: u.to_string(),
            via: Some(caller.identity.to_string()),
        }),
        None => Err(Reply::error(
            StatusCode::FORBIDDEN,
            api,
            &format!(
                "the trusted proxy named no user in {}",
                console.user_header.as_str()
            ),
        )),
    }
}

/// The common headers: security, caching, `Server-Timing`.
fn finish(r: Reply, started: Instant) -> Resp {
    let mut resp = Response::new(Full::new(Bytes::from(r.body)));
    *resp.status_mut() = r.status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(r.content_type),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        HeaderName::from_static("cross-origin-opener-policy"),
        HeaderValue::from_static("same-origin"),
    );
    let static_asset =
        r.content_type.starts_with("text/css") || r.content_type.starts_with("text/javascript");
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if static_asset {
            "private, max-age=3600"
        } else {
            "no-store"
        }),
    );
    for (name, value) in r.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    // The time spent producing the answer, for benchmarks and browsers'
    // developer tools (docs/console.md).
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Ok(v) = HeaderValue::from_str(&format!("app;dur={ms:.1}")) {
        h.insert(HeaderName::from_static("server-timing"), v);
    }
    resp
}

/// The page or API answer for a path (blocking: reads the store).
fn route(c: &Console, user: &User, path: &str, p: &Params) -> Result<Reply, StorageError> {
    if let Some(rest) = path.strip_prefix("/api/v1/") {
        return api(c, rest, p);
    }
    pages::route(c, user, path, p)
}

/// The `/api/v1/…` routes: what the commands print, byte for byte.
fn api(c: &Console, route: &str, p: &Params) -> Result<Reply, StorageError> {
    let format = match p.get("format") {
        None | Some("json") => Format::Json,
        Some("text") => Format::Text,
        Some(other) => {
            return Ok(Reply::error(
                StatusCode::BAD_REQUEST,
                true,
                &format!("format {other:?}: expected json or text"),
            ));
        }
    };
    let kind = match format {
        Format::Json => "application/json",
        Format::Text => "text/plain; charset=utf-8",
    };
    let bad =
        |e: &dyn std::fmt::Display| Reply::error(StatusCode::BAD_REQUEST, true, &e.to_string());
    let q = c.queries.as_ref();
    let now = now();
    Ok(match route {
        "hosts" => {
            let stale = match p.get("stale_after").map(|s| queries::parse_since(s, now)) {
                Some(Ok(t)) => u64::try_from(now - t).unwrap_or(0),
                Some(Err(e)) => return Ok(bad(&e)),
                None => c.stale_after,
            };
            Reply::new(kind, queries::hosts(q, now, stale, format)?)
        }
        "drift" => {
            let since = match p.get("since").map(|s| queries::parse_since(s, now)) {
                Some(Ok(t)) => Some(t),
                Some(Err(e)) => return Ok(bad(&e)),
                None => None,
            };
            let min_severity = match p.get("severity") {
                None => None,
                Some(s) => match severity_rank(s) {
                    Some(r) => Some(r),
                    None => {
                        return Ok(bad(&format!(
                            "severity {s:?}: expected info, low, medium, high or critical"
                        )));
                    }
                },
            };
            let limit = match p.get("limit").map(str::parse::<usize>) {
                None => 100,
                Some(Ok(n)) => n,
                Some(Err(_)) => return Ok(bad(&"limit: expected a number")),
            };
            let filter = DriftFilter {
                host: p.get("host").map(storage::canonical_host),
                since,
                min_severity,
                limit,
            };
            let (out, n) = queries::drift(q, &filter, format)?;
            let mut r = Reply::new(kind, out);
            r.headers
                .push((HeaderName::from_static("plumb-count"), n.to_string()));
            r
        }
        "report" => {
            let (out, failing) = queries::report(q, format)?;
            let mut r = Reply::new(kind, out);
            r.headers.push((
                HeaderName::from_static("plumb-failing"),
                failing.to_string(),
            ));
            r
        }
        "baselines" => Reply::new(kind, queries::baselines(q, format)?),
        "health" => Reply::json(
            serde_json::json!({"status": "ok", "version": env!("CARGO_PKG_VERSION")}).to_string(),
        ),
        _ => Reply::error(StatusCode::NOT_FOUND, true, "no such API route"),
    })
}

/// `info` .. `critical` as the drift filter ranks them.
pub(crate) fn severity_rank(s: &str) -> Option<u8> {
    Some(match s {
        "info" => 0,
        "low" => 1,
        "medium" => 2,
        "high" => 3,
        "critical" => 4,
        _ => return None,
    })
}
