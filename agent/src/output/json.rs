//! `--format json`: one JSON document on stdout.

use serde::Serialize;
use std::io::Write;

/// Writes `value` as one pretty JSON document followed by a newline.
pub fn write<W: Write, T: Serialize>(out: &mut W, value: &T) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)
}
