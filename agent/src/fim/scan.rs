//! The scan pipeline: one walker thread, a fixed pool of hashing workers
//! (one per available core) fed by a bounded channel, and the caller's
//! thread consuming items in key order. At most `WINDOW` items are in flight
//! between the walker and the consumer, so memory does not grow with the
//! number of files, whatever their sizes.

use super::entry::Entry;
use super::hash::{self, CHUNK, ReadHook};
use super::progress::Counters;
use super::rules::Plan;
use super::walk::{Item, Job, Out, ReuseFn, Reused, Walk};
use crate::fim::hash::Want;
use crossbeam_channel::{Receiver, Sender, bounded, unbounded};
use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::Ordering;

/// Items allowed between the walker and the consumer (a few MB at most).
/// While one worker hashes a large file, the consumer waits for it in order
/// and the other workers go on with the files behind it: the window must
/// hold enough small files to keep them busy meanwhile. Only the jobs in
/// the (small) job channel hold a directory descriptor.
pub const WINDOW: usize = 16_384;

enum Slot {
    Ready(Item),
    Pending(u64),
}

/// Number of hashing workers: the available parallelism.
pub fn workers() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZeroUsize::get)
}

/// Scans `plan` inside `root`, calling `consume` with every item in key
/// order. `reuse` (metadata verify) may supply a file's stored content
/// instead of reading it; it runs on the walker thread. Stops at the first
/// error of `consume` and returns it. `hook` is called by the hashing
/// workers before each chunk they read (a rate cap).
pub fn scan<R, C>(
    plan: &Plan,
    root: &Path,
    reuse: Option<R>,
    counters: &Counters,
    hook: Option<ReadHook<'_>>,
    mut consume: C,
) -> anyhow::Result<()>
where
    R: FnMut(&Entry, Want) -> Option<Reused> + Send,
    C: FnMut(Item) -> anyhow::Result<()>,
{
    let n = workers();
    std::thread::scope(|s| {
        let (ord_tx, ord_rx) = bounded::<Slot>(WINDOW);
        let (job_tx, job_rx) = bounded::<(u64, Box<Job>)>(n * 4);
        let (res_tx, res_rx) = unbounded::<(u64, Entry)>();
        for i in 0..n {
            let (job_rx, res_tx) = (job_rx.clone(), res_tx.clone());
            std::thread::Builder::new()
                .name(format!("fim-hash-{i}"))
                .spawn_scoped(s, move || hasher(&job_rx, &res_tx, counters, hook))?;
        }
        drop(job_rx);
        drop(res_tx);
        let walker = std::thread::Builder::new()
            .name("fim-walk".into())
            .spawn_scoped(s, move || walker(plan, root, reuse, &ord_tx, &job_tx))?;
        let result = in_order(&ord_rx, &res_rx, counters, &mut consume);
        // Closing our ends stops the walker and the workers.
        drop(ord_rx);
        drop(res_rx);
        let walked = match walker.join() {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("the walker thread panicked")),
        };
        result?;
        walked
    })
}

/// A hashing worker: hashes the files it is given until the walker stops.
fn hasher(
    jobs: &Receiver<(u64, Box<Job>)>,
    results: &Sender<(u64, Entry)>,
    counters: &Counters,
    hook: Option<ReadHook<'_>>,
) {
    let mut buf = vec![0u8; CHUNK];
    for (seq, job) in jobs {
        let mut job = *job;
        let read = hash::record_file(
            &job.dir,
            &job.name,
            &job.lst,
            job.want,
            &mut job.entry,
            &mut buf,
            hook,
        );
        counters.bytes.fetch_add(read, Ordering::Relaxed);
        if results.send((seq, job.entry)).is_err() {
            break;
        }
    }
}

/// The walker thread: items in key order into `order`, files to hash
/// also to `jobs` (their place in `order` held by a `Pending` slot).
fn walker<R>(
    plan: &Plan,
    root: &Path,
    mut reuse: Option<R>,
    order: &Sender<Slot>,
    jobs: &Sender<(u64, Box<Job>)>,
) -> anyhow::Result<()>
where
    R: FnMut(&Entry, Want) -> Option<Reused> + Send,
{
    let mut seq = 0u64;
    let mut emit = |o: Out| match o {
        Out::Ready(item) => order.send(Slot::Ready(item)).is_ok(),
        Out::Job(job) => {
            let k = seq;
            seq += 1;
            order.send(Slot::Pending(k)).is_ok() && jobs.send((k, job)).is_ok()
        }
    };
    let mut reuse_fn = reuse.as_mut().map(|r| move |e: &Entry, w: Want| r(e, w));
    let reuse_dyn: Option<&mut ReuseFn<'_>> = reuse_fn.as_mut().map(|f| f as &mut ReuseFn<'_>);
    Walk::new(plan, root, reuse_dyn, &mut emit).run()
}

/// Hands the items to `consume` in key order, waiting for each hashed
/// file in its turn (results arriving early wait in a stash).
fn in_order<C>(
    order: &Receiver<Slot>,
    results: &Receiver<(u64, Entry)>,
    counters: &Counters,
    consume: &mut C,
) -> anyhow::Result<()>
where
    C: FnMut(Item) -> anyhow::Result<()>,
{
    let mut stash: HashMap<u64, Entry> = HashMap::new();
    for slot in order {
        let item = match slot {
            Slot::Ready(item) => item,
            Slot::Pending(k) => loop {
                if let Some(e) = stash.remove(&k) {
                    break Item::Entry(e);
                }
                match results.recv() {
                    Ok((j, e)) if j == k => break Item::Entry(e),
                    Ok((j, e)) => {
                        stash.insert(j, e);
                    }
                    Err(_) => anyhow::bail!("a hashing worker stopped unexpectedly"),
                }
            },
        };
        if matches!(item, Item::Entry(_)) {
            counters.files.fetch_add(1, Ordering::Relaxed);
        }
        consume(item)?;
    }
    Ok(())
}
