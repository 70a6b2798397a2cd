//! `POST /v1/events`: admit, read the body within its limits, check the
//! batch against the contract, queue it for the writer and answer once it is
//! committed.

use super::api::{Peer, Resp, State, error, json_response, retry_later};
use crate::storage::writer::Job;
use crate::storage::{IngestBatch, event_time};
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use hyper::header::{CONNECTION, CONTENT_LENGTH, HeaderValue};
use plumb_core::event::{BatchAck, EVENT_SCHEMA, EventBatch};
use tokio::sync::{OwnedSemaphorePermit, oneshot};
use tokio::time::Instant;

/// Why a parsed batch is refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    /// A wire format this collector does not speak.
    #[error("schema {0} is not supported (this collector speaks schema {EVENT_SCHEMA})")]
    Schema(u32),
    /// The batch names another host than the client certificate.
    #[error("batch host {batch:?} does not match the client certificate identity {identity:?}")]
    WrongHost {
        /// the batch's host
        batch: String,
        /// the certificate's identity
        identity: String,
    },
    /// Seqs start at 1.
    #[error("event seq 0: seq starts at 1")]
    SeqZero,
    /// Seqs end at 2^63 - 1 (what every store holds as a signed 64-bit integer).
    #[error("event seq {0}: seq must be at most {MAX_SEQ}")]
    SeqTooLarge(u64),
    /// Seqs must grow.
    #[error("event seq {seq} after seq {prev}: events must be in strictly increasing seq order")]
    SeqOrder {
        /// the event's seq
        seq: u64,
        /// the seq before it
        prev: u64,
    },
    /// An event time that is not RFC 3339.
    #[error("event seq {seq}: time {time:?} is not an RFC 3339 date-time")]
    BadTime {
        /// the event's seq
        seq: u64,
        /// its time
        time: String,
    },
}

impl Refusal {
    /// The HTTP status to refuse with.
    fn status(&self) -> StatusCode {
        match self {
            Refusal::WrongHost { .. } => StatusCode::FORBIDDEN,
            _ => StatusCode::BAD_REQUEST,
        }
    }
}

/// The largest seq (2^63 - 1): stores keep seqs as signed 64-bit
/// integers, and a larger one, clamped, would pin `acked_seq` forever.
pub(crate) const MAX_SEQ: u64 = i64::MAX as u64;

/// Checks a parsed batch against the rules of the contract.
pub(crate) fn validate_batch(batch: &EventBatch, identity: &str) -> Result<(), Refusal> {
    if batch.schema != EVENT_SCHEMA {
        return Err(Refusal::Schema(batch.schema));
    }
    if !batch.host.eq_ignore_ascii_case(identity) {
        return Err(Refusal::WrongHost {
            batch: batch.host.clone(),
            identity: identity.to_string(),
        });
    }
    let mut prev = 0u64;
    for e in &batch.events {
        if e.seq == 0 {
            return Err(Refusal::SeqZero);
        }
        if e.seq > MAX_SEQ {
            return Err(Refusal::SeqTooLarge(e.seq));
        }
        if e.seq <= prev {
            return Err(Refusal::SeqOrder { seq: e.seq, prev });
        }
        prev = e.seq;
        if event_time(e).is_none() {
            return Err(Refusal::BadTime {
                seq: e.seq,
                time: e.time.clone(),
            });
        }
    }
    Ok(())
}

/// Most bytes of a refused body read and thrown away so that the answer
/// reaches the agent: closing a connection with unread data in it makes the
/// kernel reset it, and the reset destroys the answer on its way.
const DRAIN_MAX: u64 = 64 * 1024 * 1024;

/// Reads the rest of `body` and throws it away (nothing is kept), for at
/// most [`DRAIN_MAX`] bytes and until `deadline`. Returns whether the body ended.
async fn discard(body: &mut Incoming, deadline: Instant) -> bool {
    let drain = async {
        let mut seen = 0u64;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(d) = frame.data_ref() {
                seen += d.len() as u64;
                if seen > DRAIN_MAX {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout_at(deadline, drain)
        .await
        .unwrap_or(false)
}

/// `resp`, closing the connection after it unless the request body was read
/// to its end (hyper cannot reuse the connection otherwise).
fn after_body(mut resp: Resp, drained: bool) -> Resp {
    if !drained {
        resp.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// Why a body was not read whole.
enum BodyError {
    TooLarge,
    Timeout,
    Read(hyper::Error),
}

/// Reads a body of at most `max` bytes, until `deadline`.
async fn read_capped(
    body: &mut Incoming,
    max: usize,
    deadline: Instant,
) -> Result<Bytes, BodyError> {
    let read = async {
        let mut buf = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(BodyError::Read)?;
            if let Some(d) = frame.data_ref() {
                if buf.len() + d.len() > max {
                    return Err(BodyError::TooLarge);
                }
                buf.extend_from_slice(d);
            }
        }
        Ok(buf.freeze())
    };
    tokio::time::timeout_at(deadline, read)
        .await
        .unwrap_or(Err(BodyError::Timeout))
}

fn too_large(state: &State) -> Resp {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("body larger than {} bytes; split the batch", state.max_body),
    )
}

fn shutting_down(state: &State) -> Resp {
    retry_later(
        StatusCode::SERVICE_UNAVAILABLE,
        "shutting down",
        state.retry_after,
    )
}

fn overloaded(state: &State) -> Resp {
    retry_later(
        StatusCode::TOO_MANY_REQUESTS,
        "the collector is overloaded; retry later",
        state.retry_after,
    )
}

/// `deadline`: when the whole request must have arrived.
pub(super) async fn post(
    state: &State,
    peer: &Peer,
    req: hyper::Request<Incoming>,
    deadline: Instant,
) -> Resp {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let mut body = req.into_body();
    if declared.is_some_and(|n| n > state.max_body as u64) {
        let drained =
            declared.is_some_and(|n| n <= DRAIN_MAX) && discard(&mut body, deadline).await;
        return after_body(too_large(state), drained);
    }
    let _admitted = match admit(state, &mut body, deadline).await {
        Ok(permit) => permit,
        Err(refused) => return refused,
    };
    let bytes = match read_body(state, &mut body, deadline).await {
        Ok(b) => b,
        Err(refused) => return refused,
    };
    let batch: EventBatch = match serde_json::from_slice(&bytes) {
        Ok(b) => b,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("invalid event batch: {e}")),
    };
    drop(bytes);
    if let Err(refusal) = validate_batch(&batch, &peer.identity) {
        if matches!(refusal, Refusal::WrongHost { .. }) {
            tracing::warn!(host = %peer.identity, address = %peer.address, "{refusal}");
        }
        return error(refusal.status(), refusal.to_string());
    }
    store(state, peer, batch).await
}

/// Admission, before the body is read: an overloaded collector answers
/// without holding the body in memory. The permit is held until the batch
/// is answered.
async fn admit(
    state: &State,
    body: &mut Incoming,
    deadline: Instant,
) -> Result<OwnedSemaphorePermit, Resp> {
    let admitted =
        tokio::time::timeout(state.queue_wait, state.admitted.clone().acquire_owned()).await;
    match admitted {
        Ok(Ok(p)) => Ok(p),
        refused => {
            // Read and drop the body (nothing kept) so the agent sees the
            // answer and keeps its connection.
            let drained = discard(body, deadline).await;
            let resp = match refused {
                Ok(_) => shutting_down(state),
                Err(_) => overloaded(state),
            };
            Err(after_body(resp, drained))
        }
    }
}

/// The whole body, or the answer that refuses it.
async fn read_body(state: &State, body: &mut Incoming, deadline: Instant) -> Result<Bytes, Resp> {
    match read_capped(body, state.max_body, deadline).await {
        Ok(b) => Ok(b),
        Err(BodyError::TooLarge) => {
            let drained = discard(body, deadline).await;
            Err(after_body(too_large(state), drained))
        }
        Err(BodyError::Timeout) => Err(after_body(
            error(
                StatusCode::REQUEST_TIMEOUT,
                "the body did not arrive in time",
            ),
            false,
        )),
        Err(BodyError::Read(e)) => Err(after_body(
            error(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
            false,
        )),
    }
}

/// Queues a checked batch for the writer and answers with the host's
/// acknowledged seq once it is committed.
async fn store(state: &State, peer: &Peer, batch: EventBatch) -> Resp {
    let permit = match tokio::time::timeout(state.queue_wait, state.queue.reserve()).await {
        Ok(Ok(p)) => p,
        Ok(Err(_)) => return shutting_down(state),
        Err(_) => return overloaded(state),
    };
    // Counted once stored: by kind, from the batch being moved to the writer.
    let mut kinds: Vec<(&'static str, u64)> = Vec::new();
    for e in &batch.events {
        let k = e.body.kind();
        match kinds.iter_mut().find(|(n, _)| *n == k) {
            Some((_, c)) => *c += 1,
            None => kinds.push((k, 1)),
        }
    }
    let (tx, rx) = oneshot::channel();
    permit.send(Job::Ingest(
        IngestBatch {
            host: peer.identity.to_string(),
            address: Some(peer.address.to_string()),
            received_at: time::OffsetDateTime::now_utc().unix_timestamp(),
            events: batch.events,
        },
        tx,
    ));
    match rx.await {
        Ok(Ok(acked_seq)) => {
            for (kind, n) in kinds {
                state.ingest.events(kind, n);
            }
            json_response(StatusCode::OK, &BatchAck { acked_seq })
        }
        Ok(Err(e)) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("storage failed: {e}"),
            state.retry_after,
        ),
        Err(_) => retry_later(
            StatusCode::SERVICE_UNAVAILABLE,
            "storage stopped",
            state.retry_after,
        ),
    }
}
