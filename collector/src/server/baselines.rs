//! `GET /v1/baselines` and `GET /v1/baselines/{id}`: every baseline id that
//! applies to the client, each on its own newest version, so that an id
//! published for a few hosts is not shadowed by a fleet-wide one with a
//! higher version (which is all `GET /v1/baseline` can serve). The listing
//! gives each id's version and ETag; the agent fetches only the ids whose
//! ETag it has not decided on yet.

use super::api::{Peer, Resp, State, json_response, retry_later};
use super::baseline::{etag_of, if_none_match, respond, serve};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

/// Path prefix of one id's bundle.
pub(super) const PREFIX: &str = "/v1/baselines/";

/// One entry of the listing.
#[derive(Debug, Serialize)]
struct Entry {
    id: String,
    version: u64,
    /// The ETag `GET /v1/baselines/{id}` answers with for this version.
    etag: String,
}

/// `GET /v1/baselines`: `{"baselines": [{"id", "version", "etag"}]}`, by
/// id; an empty list when nothing applies to this host.
pub(super) async fn list(state: &State, peer: &Peer) -> Resp {
    let store = state.baselines.clone();
    let host = peer.identity.clone();
    let rows = tokio::task::spawn_blocking(move || store.baselines_for(&host)).await;
    let rows = match rows {
        Ok(Ok(rows)) => rows,
        Ok(Err(e)) => return unavailable(state, &e),
        Err(e) => return unavailable(state, &e),
    };
    let entries: Vec<Entry> = rows
        .into_iter()
        .map(|r| Entry {
            etag: etag_of(&r.sha256),
            id: r.id,
            version: r.version,
        })
        .collect();
    json_response(StatusCode::OK, &serde_json::json!({ "baselines": entries }))
}

/// `GET /v1/baselines/{id}`: the bundle of that id's newest version for
/// this host, as `GET /v1/baseline` answers (ETag, `304` on
/// `If-None-Match`); `404` when no version of `id` applies to this host.
pub(super) async fn get(state: &State, peer: &Peer, req: &Request<Incoming>, id: &str) -> Resp {
    let inm = if_none_match(req);
    let store = state.baselines.clone();
    let host = peer.identity.clone();
    let id = id.to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let row = store.baselines_for(&host)?.into_iter().find(|r| r.id == id);
        serve(store.as_ref(), row, inm.as_deref())
    })
    .await;
    respond(state, answer)
}

fn unavailable(state: &State, e: &dyn std::fmt::Display) -> Resp {
    tracing::error!("baseline store: {e}");
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        &format!("baseline store failed: {e}"),
        state.retry_after,
    )
}
