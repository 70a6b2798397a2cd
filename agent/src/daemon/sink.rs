//! Standalone delivery: events go to a local JSON-lines file.
//!
//! A batch is appended and fsynced, and only then deleted from the outbox.
//! A crash between the two would write the batch again; to keep that from
//! duplicating lines, the sink reads the last complete line of the file when
//! it opens it and skips every seq up to it. A torn last line (a crash in
//! the middle of a write) is cut off: its event is still in the outbox and
//! is written again whole.

use crate::daemon::outbox::OutboxError;
use crate::daemon::{Delivery, LastFlush, Shared};
use plumb_core::event::Event;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// How much of the file's end is read to find the last line.
const TAIL_BYTES: u64 = 1 << 20;

/// The events file, open for appending.
#[derive(Debug)]
pub struct Sink {
    path: PathBuf,
    file: File,
    /// Highest seq already in the file.
    written: u64,
}

impl Sink {
    /// Opens (creating, mode 0640) the events file and finds the last seq in it.
    pub fn open(path: &Path) -> std::io::Result<Sink> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o640)
            .open(path)?;
        let written = repair_tail(&mut file)?;
        Ok(Sink {
            path: path.to_path_buf(),
            file,
            written,
        })
    }

    /// Highest seq known to be in the file.
    #[cfg(test)]
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Appends events not yet in the file and fsyncs; returns the highest
    /// seq now safely in the file (the caller deletes up to it).
    pub fn write(&mut self, events: &[Event]) -> std::io::Result<u64> {
        let mut buf = Vec::new();
        let mut top = self.written;
        for e in events.iter().filter(|e| e.seq > self.written) {
            serde_json::to_writer(&mut buf, e).map_err(std::io::Error::other)?;
            buf.push(b'\n');
            top = top.max(e.seq);
        }
        if !buf.is_empty() {
            self.reopen_if_rotated()?;
            self.file.write_all(&buf)?;
            self.file.sync_data()?;
        }
        self.written = top.max(events.iter().map(|e| e.seq).max().unwrap_or(0));
        Ok(self.written)
    }

    /// logrotate may have moved the file away: write to a new one at the path.
    fn reopen_if_rotated(&mut self) -> std::io::Result<()> {
        use std::os::unix::fs::MetadataExt;
        let cur = self.file.metadata()?;
        let same = std::fs::metadata(&self.path)
            .map(|m| m.ino() == cur.ino() && m.dev() == cur.dev())
            .unwrap_or(false);
        if !same {
            self.file = OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .mode(0o640)
                .open(&self.path)?;
        }
        Ok(())
    }
}

/// Cuts a torn last line and returns the seq of the last complete one (0 when none).
fn repair_tail(file: &mut File) -> std::io::Result<u64> {
    let len = file.metadata()?.len();
    if len == 0 {
        return Ok(0);
    }
    let start = len.saturating_sub(TAIL_BYTES);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    Read::by_ref(file).take(TAIL_BYTES).read_to_end(&mut tail)?;
    let complete = match tail.iter().rposition(|&b| b == b'\n') {
        Some(i) => i + 1,
        None if start == 0 => 0,
        // One line longer than the tail window: leave the file alone.
        None => return Ok(0),
    };
    if complete < tail.len() {
        let keep = start + complete as u64;
        tracing::warn!(
            "events file: cutting a torn last line ({} bytes) left by a crash",
            len - keep
        );
        file.set_len(keep)?;
        file.sync_data()?;
    }
    let lines = &tail[..complete];
    let last = lines
        .split(|&b| b == b'\n')
        .rev()
        .find(|l| !l.is_empty())
        .unwrap_or(&[]);
    #[derive(serde::Deserialize)]
    struct SeqOnly {
        seq: u64,
    }
    Ok(serde_json::from_slice::<SeqOnly>(last).map_or(0, |s| s.seq))
}

/// Starts the delivery task that moves the outbox into the events file.
pub fn spawn(shared: Arc<Shared>, path: &Path) -> std::io::Result<Delivery> {
    let sink = Arc::new(Mutex::new(Sink::open(path).map_err(|e| {
        std::io::Error::new(e.kind(), format!("events_file {}: {e}", path.display()))
    })?));
    let s2 = sink.clone();
    let task = tokio::spawn(async move {
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shared.delivery.notified() => {}
                _ = tokio::time::sleep(std::time::Duration::from_secs(if failing { 5 } else { 1 })) => {}
            }
            let (sh, sk) = (shared.clone(), s2.clone());
            match tokio::task::spawn_blocking(move || flush(&sh, &sk)).await {
                Ok(Ok(())) => failing = false,
                Ok(Err(e)) => {
                    if !failing {
                        tracing::error!("events file: {e}; events stay in the outbox");
                    }
                    failing = true;
                }
                Err(e) => tracing::error!("events file task: {e}"),
            }
        }
    });
    Ok(Delivery {
        task,
        last: LastFlush::Sink(sink),
    })
}

/// Moves everything in the outbox to the file, batch by batch: append and
/// fsync, then delete what is safely written.
pub fn flush(shared: &Shared, sink: &Mutex<Sink>) -> Result<(), SinkError> {
    let mut sink = sink
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    loop {
        let batch = shared.outbox().peek(1000)?;
        if batch.is_empty() {
            return Ok(());
        }
        let top = sink.write(&batch).map_err(|error| SinkError::Write {
            path: sink.path.clone(),
            error,
        })?;
        shared.outbox().ack(top)?;
        shared.stats.delivered();
    }
}

/// Why a flush to the events file stopped (what is not written stays in
/// the outbox).
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// The outbox could not be read or updated.
    #[error(transparent)]
    Outbox(#[from] OutboxError),
    /// The events file could not be appended to.
    #[error("writing {}: {error}", path.display())]
    Write {
        /// The events file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Severity;
    use plumb_core::event::EventBody;

    fn ev(seq: u64) -> Event {
        Event {
            seq,
            time: "2026-01-01T00:00:00Z".into(),
            severity: Severity::Info,
            body: EventBody::FimTamper { detail: vec![] },
        }
    }

    fn seqs(p: &Path) -> Vec<u64> {
        std::fs::read_to_string(p)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<Event>(l).unwrap().seq)
            .collect()
    }

    #[test]
    fn rewriting_a_batch_after_a_crash_does_not_duplicate() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("log/events.jsonl");
        let mut s = Sink::open(&p).unwrap();
        assert_eq!(s.write(&[ev(1), ev(2)]).unwrap(), 2);
        drop(s);
        // The outbox still held 1..=3 when the agent died.
        let mut s = Sink::open(&p).unwrap();
        assert_eq!(s.written(), 2);
        s.write(&[ev(1), ev(2), ev(3)]).unwrap();
        assert_eq!(seqs(&p), [1, 2, 3]);
    }

    #[test]
    fn a_torn_last_line_is_cut_and_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("events.jsonl");
        let mut s = Sink::open(&p).unwrap();
        s.write(&[ev(1)]).unwrap();
        drop(s);
        let mut f = OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"{\"seq\":2,\"ti").unwrap();
        drop(f);
        let mut s = Sink::open(&p).unwrap();
        assert_eq!(s.written(), 1);
        s.write(&[ev(2)]).unwrap();
        assert_eq!(seqs(&p), [1, 2]);
    }
}
