//! The machine the agent runs on: its clock and its name, as they appear in
//! reports, events, the FIM database and the remediation journal.

use std::path::Path;

/// Now, RFC 3339 in UTC to the second (`2026-11-27T10:00:00Z`).
pub(crate) fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The checked system's host name: this host's for `/`, else the root's
/// `/etc/hostname`, else this host's.
pub(crate) fn host_name(root: &Path) -> String {
    if root != Path::new("/") {
        if let Ok(s) = std::fs::read_to_string(root.join("etc/hostname")) {
            let s = s.trim();
            if !s.is_empty() && s.len() < 256 {
                return s.to_string();
            }
        }
    }
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "unknown".into())
}
