//! `GET /v1/baseline`: the newest published bundle whose hosts glob matches
//! the client's identity, with a strong ETag so a polling agent that already
//! has it gets `304` without the bytes. One bundle whatever the number of
//! ids: what agents before `GET /v1/baselines` (`baselines.rs`) ask for.
//! The lookup and the answer are shared with `GET /v1/baselines/{id}`.

use super::api::{Peer, Resp, State, error, retry_later};
use crate::storage::{BaselineRow, Queries, StorageError};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, ETAG, HeaderValue, IF_NONE_MATCH};
use hyper::{Request, Response, StatusCode};

/// What to answer a host.
#[derive(Debug)]
pub(super) enum Served {
    /// Nothing published applies to this host.
    Nothing,
    /// The agent already has it (its `If-None-Match` names this ETag).
    NotModified(String),
    /// The bundle bytes to send, and their ETag.
    Bundle(Bytes, String),
}

/// The strong ETag of a bundle whose SHA-256 (hex) is `sha256`.
pub(super) fn etag_of(sha256: &str) -> String {
    format!("\"sha256:{sha256}\"")
}

/// Whether an `If-None-Match` header value names `etag` (or is `*`).
/// Weak validators (`W/"..."`) compare by their opaque tag, as RFC 9110
/// prescribes for `If-None-Match`.
fn none_match(header: &str, etag: &str) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || t.strip_prefix("W/").unwrap_or(t) == etag)
}

/// What to serve for `row` (the bundle chosen for the host, if any): the
/// row index (small) was read first, and the bytes are fetched only when
/// the agent does not have them already. Blocks.
pub(super) fn serve(
    q: &dyn Queries,
    row: Option<BaselineRow>,
    if_none_match: Option<&str>,
) -> Result<Served, StorageError> {
    let Some(row) = row else {
        return Ok(Served::Nothing);
    };
    let etag = etag_of(&row.sha256);
    if if_none_match.is_some_and(|h| none_match(h, &etag)) {
        return Ok(Served::NotModified(etag));
    }
    Ok(match q.baseline_bytes(&row.id, row.version)? {
        Some(bytes) => Served::Bundle(Bytes::from(bytes), etag),
        // Deleted between the two reads.
        None => Served::Nothing,
    })
}

fn with_etag(mut r: Resp, etag: &str) -> Resp {
    if let Ok(v) = HeaderValue::from_str(etag) {
        r.headers_mut().insert(ETAG, v);
    }
    r
}

pub(super) async fn get(state: &State, peer: &Peer, req: &Request<Incoming>) -> Resp {
    let inm = if_none_match(req);
    let store = state.baselines.clone();
    let host = peer.identity.clone();
    let answer = tokio::task::spawn_blocking(move || {
        let row = store.baseline_for(&host)?;
        serve(store.as_ref(), row, inm.as_deref())
    })
    .await;
    respond(state, answer)
}

/// The request's `If-None-Match`, when it is text.
pub(super) fn if_none_match(req: &Request<Incoming>) -> Option<String> {
    req.headers()
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The answer for what [`serve`] found (run on the blocking pool).
pub(super) fn respond(
    state: &State,
    answer: Result<Result<Served, StorageError>, tokio::task::JoinError>,
) -> Resp {
    match answer {
        Ok(Ok(Served::Bundle(bytes, etag))) => {
            let mut r = Response::new(Full::new(bytes));
            r.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("application/vnd.plumb.baseline-bundle"),
            );
            with_etag(r, &etag)
        }
        Ok(Ok(Served::NotModified(etag))) => {
            let mut r = Response::new(Full::new(Bytes::new()));
            *r.status_mut() = StatusCode::NOT_MODIFIED;
            with_etag(r, &etag)
        }
        Ok(Ok(Served::Nothing)) => error(StatusCode::NOT_FOUND, "no baseline published"),
        Ok(Err(e)) => {
            tracing::error!("baseline store: {e}");
            retry_later(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("baseline store failed: {e}"),
                state.retry_after,
            )
        }
        Err(e) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("baseline store failed: {e}"),
            state.retry_after,
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_none_match_lists_and_wildcards() {
        let e = etag_of("ab");
        assert_eq!(e, "\"sha256:ab\"");
        assert!(none_match(&e, &e));
        assert!(none_match("\"x\", \"sha256:ab\"", &e));
        assert!(none_match("W/\"sha256:ab\"", &e));
        assert!(none_match("*", &e));
        assert!(!none_match("\"sha256:ac\"", &e));
        assert!(!none_match("", &e));
    }
}
