//! The single writer: one thread owns the database connection, drains a
//! bounded queue, and commits many batches per transaction (group commit).
//! Each request is answered only after its transaction committed, so an
//! acknowledgement means "stored".

use super::{IngestBatch, Storage, StorageError};
use prometheus_client::metrics::histogram::Histogram;
use tokio::sync::{mpsc, oneshot};

/// Where the writer answers one batch: the host's acknowledged seq, or why
/// storing it failed.
pub(crate) type Reply = oneshot::Sender<Result<u64, StorageError>>;

/// Work for the writer.
#[derive(Debug)]
pub(crate) enum Job {
    /// Store a batch; reply once it is committed (or failed).
    Ingest(IngestBatch, Reply),
    /// Apply retention: delete events received before this unix time.
    Prune(i64),
}

/// Starts the writer thread. It stops when every sender is dropped and the
/// queue is empty, so shutdown drains what was accepted. `commit_seconds`
/// observes each group commit's time (the metric
/// `plumb_collector_storage_commit_duration_seconds`).
pub(crate) fn spawn(
    mut store: Box<dyn Storage>,
    mut rx: mpsc::Receiver<Job>,
    max_group_events: usize,
    commit_seconds: Histogram,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name("db-writer".into())
        .spawn(move || {
            let mut batches: Vec<IngestBatch> = Vec::new();
            let mut replies: Vec<Reply> = Vec::new();
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
                if !batches.is_empty() {
                    let started = std::time::Instant::now();
                    commit(store.as_mut(), &mut batches, &mut replies);
                    commit_seconds.observe(started.elapsed().as_secs_f64());
                }
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

fn commit(store: &mut dyn Storage, batches: &mut Vec<IngestBatch>, replies: &mut Vec<Reply>) {
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
                    .map(|a| a.first().copied().unwrap_or(0));
                if let Err(e) = &r {
                    tracing::error!(host = %b.host, "storing a batch failed: {e}");
                }
                let _ = reply.send(r);
            }
        }
        Err(e) => {
            // One batch (the group of several is handled above): one reply.
            tracing::error!("storing a batch failed: {e}");
            if let Some(reply) = replies.pop() {
                let _ = reply.send(Err(e));
            }
            replies.clear();
        }
    }
    batches.clear();
}
