//! A consumer's durable cursor, from the async side: the store's
//! [`Cursors`] (blocking) run on the blocking pool, and what a handled
//! batch moves the cursor to.

use crate::storage::{Cursors, Pending, StorageError};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

/// One consumer's view of the cursors (its own store connection).
#[derive(Clone)]
pub(crate) struct Cursor {
    store: Arc<Mutex<Box<dyn Cursors>>>,
    /// The consumer's key in the store: `forward:NAME` or `alerts`.
    pub(crate) consumer: String,
}

impl Cursor {
    pub(crate) fn new(store: Box<dyn Cursors>, consumer: String) -> Cursor {
        Cursor {
            store: Arc::new(Mutex::new(store)),
            consumer,
        }
    }

    async fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Cursors, &str) -> Result<T, StorageError> + Send + 'static,
    ) -> Result<T, StorageError> {
        let store = self.store.clone();
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || {
            let mut s = store.lock().unwrap_or_else(PoisonError::into_inner);
            f(s.as_mut(), &consumer)
        })
        .await
        .map_err(|e| StorageError::Backend {
            context: "cursor task".into(),
            source: Box::new(e),
        })?
    }

    /// The events past the cursor (about `limit`).
    pub(crate) async fn pending(&self, limit: usize) -> Result<Pending, StorageError> {
        self.run(move |s, c| s.pending(c, limit)).await
    }

    /// Moves the cursor past everything in `p` (acknowledged, filtered out
    /// or gone).
    pub(crate) async fn advance_past(&self, p: &Pending) -> Result<(), StorageError> {
        let marks = high_marks(p);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        self.run(move |s, c| s.advance(c, &marks, now)).await
    }
}

/// Per host, the highest seq of `p`.
pub(crate) fn high_marks(p: &Pending) -> Vec<(String, u64)> {
    let mut m: BTreeMap<&str, u64> = BTreeMap::new();
    for e in &p.events {
        let v = m.entry(e.host.as_str()).or_default();
        *v = (*v).max(e.seq);
    }
    for (h, seq) in &p.gone {
        let v = m.entry(h.as_str()).or_default();
        *v = (*v).max(*seq);
    }
    m.into_iter().map(|(h, s)| (h.to_string(), s)).collect()
}
