//! Entry points for the cargo-fuzz targets in `fuzz/` (cargo feature
//! `fuzzing`, off in every shipped build; docs/fuzzing.md): the
//! collector's reading of what agents send and of its own config, through
//! its own code. A panic below is a bug, and so is a failed `assert!`
//! here: each states an invariant the collector relies on.

use crate::config::Config;
use crate::server::validate_batch;
use crate::storage::event_time;
use plumb_core::event::{Event, EventBatch};
use std::path::Path;

/// A `POST /v1/events` body, as the collector reads it once the client
/// certificate is verified: parsing, the contract's checks (the
/// certificate naming the batch's own host, then another one), and for an
/// accepted batch what the storage takes from each event.
pub fn event_batch(data: &[u8]) {
    let Ok(batch) = serde_json::from_slice::<EventBatch>(data) else {
        return;
    };
    let identity = batch.host.to_ascii_lowercase();
    if let Err(refusal) = validate_batch(&batch, "another-host.invalid") {
        let _ = refusal.to_string();
    }
    match validate_batch(&batch, &identity) {
        Err(refusal) => {
            let _ = refusal.to_string();
        }
        Ok(()) => {
            let mut prev = 0;
            for e in &batch.events {
                assert!(e.seq > prev, "accepted seqs increase");
                prev = e.seq;
                assert!(event_time(e).is_some(), "accepted times parse");
                let _ = e.body.kind();
                // What the store keeps is what was sent: the body it writes
                // reads back as the same event.
                let stored = serde_json::to_string(e).unwrap_or_default();
                let back: Result<Event, _> = serde_json::from_str(&stored);
                assert!(
                    back.as_ref().is_ok_and(|b| b == e),
                    "a stored event reads back as sent: {stored}"
                );
            }
        }
    }
}

/// `/etc/plumb/collector.toml`: parsing and every check of its values
/// (the files it names are not read).
pub fn collector_config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::parse(Path::new("/etc/plumb/collector.toml"), text) {
        Ok(c) => {
            let _ = c.hosts.stale_after_secs();
            let _ = c.tls_files();
        }
        Err(d) => {
            assert!(!d.0.is_empty(), "a refused config names a problem");
            let _ = d.to_string();
        }
    }
}
