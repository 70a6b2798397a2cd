//! The single writer: one thread owns the database connection, drains a
//! bounded queue, and commits many batches per transaction (group commit).
//! Each request is answered only after its transaction committed, so an
//! acknowledgement means "stored".

use super::{IngestBatch, Storage};
use tokio::sync::{mpsc, oneshot};

/// Work for the writer.
#[derive(Debug)]
pub enum Job {
    /// Store a batch; reply with the host's acknowledged seq, or why it failed.
    Ingest(IngestBatch, oneshot::Sender<Result<u64, String>>),
    /// Apply retention: delete events received before this unix time.
    Prune(i64),
}

/// Starts the writer thread. It stops when every sender is dropped and the
/// queue is empty, so shutdown drains what was accepted.
pub fn spawn(
    mut store: Box<dyn Storage>,
    mut rx: mpsc::Receiver<Job>,
    max_group_events: usize,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || {
            let mut batches: Vec<IngestBatch> = Vec::new();
            let mut replies: Vec<oneshot::Sender<Result<u64, String>>> = Vec::new();
            let mut prunes: Vec<i64> = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                let mut events = 0usize;
                take(first, &mut events, &mut batches, &mut replies, &mut prunes);
                while events < max_group_events {
                    match rx.try_recv() {
                        Ok(job) => take(job, &mut events, &mut batches, &mut replies, &mut prunes),
                        Err(_) => break,
                    }
                }
                commit(store.as_mut(), &mut batches, &mut replies);
                for cutoff in prunes.drain(..) {
                    match store.prune(cutoff) {
                        Ok(n) => tracing::info!(deleted = n, "retention applied"),
                        Err(e) => tracing::error!("retention failed: {e}"),
                    }
                }
            }
            tracing::debug!("writer stopped: queue closed and drained");
        })
}

type Reply = oneshot::Sender<Result<u64, String>>;

fn take(
    job: Job,
    events: &mut usize,
    batches: &mut Vec<IngestBatch>,
    replies: &mut Vec<Reply>,
    prunes: &mut Vec<i64>,
) {
    match job {
        Job::Ingest(b, r) => {
            *events += b.events.len().max(1);
            batches.push(b);
            replies.push(r);
        }
        Job::Prune(c) => prunes.push(c),
    }
}

fn commit(
    store: &mut dyn Storage,
    batches: &mut Vec<IngestBatch>,
    replies: &mut Vec<oneshot::Sender<Result<u64, String>>>,
) {
    if batches.is_empty() {
        return;
    }
    match store.ingest(batches) {
        Ok(acks) => {
            for (reply, ack) in replies.drain(..).zip(acks) {
                // The requester may have gone (client hung up): nothing to do.
                let _ = reply.send(Ok(ack));
            }
        }
        Err(e) if batches.len() > 1 => {
            // One batch must not sink the others: retry them one by one.
            tracing::warn!("group commit failed ({e}); retrying batches one by one");
            for (b, reply) in batches.iter().zip(replies.drain(..)) {
                let r = store
                    .ingest(std::slice::from_ref(b))
                    .map(|a| a.first().copied().unwrap_or(0))
                    .map_err(|e| e.to_string());
                if let Err(e) = &r {
                    tracing::error!(host = %b.host, "storing a batch failed: {e}");
                }
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            tracing::error!("storing a batch failed: {e}");
            for reply in replies.drain(..) {
                let _ = reply.send(Err(e.to_string()));
            }
        }
    }
    batches.clear();
}
