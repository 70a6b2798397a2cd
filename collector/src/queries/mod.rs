//! The ops team's queries: `hosts`, `drift`, `report`, `baseline list`.
//! Each reads through [`crate::storage::Queries`], computes, and renders
//! text (80 columns) or one JSON document.

mod baselines;
mod drift;
mod hosts;
mod report;

pub use baselines::baselines;
/// For the console's pages, which show what the commands show.
pub(crate) use drift::details;
pub use drift::drift;
pub use hosts::hosts;
pub(crate) use hosts::score;
pub use report::report;

use serde::Serialize;

/// Terminal width the text output is laid out for.
const WIDTH: usize = 80;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Aligned text.
    Text,
    /// One JSON document.
    Json,
}

/// RFC 3339 UTC of a unix time.
pub(crate) fn rfc3339(t: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(t)
        .ok()
        .and_then(|d| {
            d.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}

pub(crate) fn short_time(t: i64) -> String {
    // "2026-11-27 10:00:03" (UTC): RFC 3339 without the T and Z, for columns.
    let s = rfc3339(t);
    s.get(..19).map(|x| x.replace('T', " ")).unwrap_or(s)
}

/// "42s", "5m", "3h", "12d".
pub(crate) fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// A `--since` (or `--stale-after`) value that is neither a time nor a duration.
#[derive(Debug, thiserror::Error)]
#[error(
    "--since {0:?}: expected an RFC 3339 time (2026-11-27T10:00:00Z) or a duration such as 30m, 24h, 7d"
)]
pub struct SinceError(String);

/// Parses `--since`: RFC 3339, or a duration back from now (`30m`, `24h`, `7d`).
pub fn parse_since(s: &str, now: i64) -> Result<i64, SinceError> {
    if let Ok(t) = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(t.unix_timestamp());
    }
    let (num, unit) = s.split_at(s.len().saturating_sub(1));
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => 0,
    };
    match num.parse::<i64>() {
        Ok(n) if mult > 0 && n >= 0 => Ok(now - n.saturating_mul(mult)),
        _ => Err(SinceError(s.to_string())),
    }
}

/// A cell or line of the text output: `s` with its control characters
/// escaped ([`plumb_core::printable`]: what agents post is untrusted, and an
/// ESC sequence or a newline must neither drive the terminal nor forge a
/// line, such as another host's under `drift --host`), then cut to `max`
/// characters, the cut marked with '…'. Every piece of text output goes
/// through here.
fn fit(s: &str, max: usize) -> String {
    let s = plumb_core::printable(s);
    if s.chars().count() <= max {
        return s.into_owned();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn to_json(v: &impl Serialize) -> String {
    let mut s = serde_json::to_string_pretty(v).unwrap_or_else(|_| "{}".into());
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_and_fit() {
        assert_eq!(parse_since("24h", 100_000).unwrap(), 100_000 - 86_400);
        assert_eq!(
            parse_since("2026-11-27T10:00:00Z", 0).unwrap(),
            1_795_773_600
        );
        assert!(parse_since("yesterday", 0).is_err());
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("a\nb\x1b[1m", 80), "a\\nb\\x1b[1m");
        assert_eq!(age(3700), "1h");
    }
}
