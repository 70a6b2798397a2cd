//! Report rendering: text for people, JSON for scripts, JUnit for CI.

pub mod json;
pub mod junit;
pub mod text;

use std::io::IsTerminal;
use std::path::Path;

/// Colour only on a terminal, and never when NO_COLOR is set.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

/// Now, RFC 3339 in UTC to the second (`2026-11-27T10:00:00Z`).
pub fn now_rfc3339() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// The checked system's host name: this host's for `/`, else the root's
/// `/etc/hostname`, else this host's.
pub fn host_name(root: &Path) -> String {
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
