//! `plumb-collector baseline list`: every published baseline version,
//! newest first.

use super::{Format, fit};
use crate::storage::{Queries, StorageError};
use std::fmt::Write as _;

/// `plumb-collector baseline list`.
pub fn baselines(q: &dyn Queries, format: Format) -> Result<String, StorageError> {
    let rows = q.baselines()?;
    let mut out = String::new();
    match format {
        Format::Json => {
            let doc = serde_json::json!({ "baselines": rows });
            let _ = writeln!(
                out,
                "{}",
                serde_json::to_string(&doc).unwrap_or_else(|_| "{}".into())
            );
        }
        Format::Text => {
            let _ = writeln!(
                out,
                "{:<28} {:>8}  {:<16}  {:<20}  SHA256",
                "ID", "VERSION", "KEY", "HOSTS"
            );
            for r in rows {
                // No width limit: the full id, hosts and digest are wanted.
                let line = format!(
                    "{:<28} {:>8}  {:<16}  {:<20}  {}",
                    r.id, r.version, r.key_id, r.hosts, r.sha256
                );
                let _ = writeln!(out, "{}", fit(&line, usize::MAX));
            }
        }
    }
    Ok(out)
}
