//! The one escaping of untrusted text for a terminal or a log line, used by
//! every text output of `plumb` and `plumb-collector` (JSON output is exact
//! and never goes through here).
//!
//! Text shown to an admin comes from places an attacker may write: a host
//! file quoted as evidence, a rule id or path an agent posts, a certificate
//! name. Printed raw, an ESC sequence drives the terminal (colours, cursor
//! moves, window titles, worse on some emulators) and a newline forges a
//! whole line — another host's drift, under a `--host` filter for this one.
//! [`printable`] keeps every character visible and every value on its line:
//!
//! - `\n` and `\r` are written as those two characters;
//! - a tab stays a tab (harmless, and what the file holds);
//! - every other C0 control and DEL as `\xHH` (ESC is `\x1b`);
//! - C1 controls (U+0080..U+009F: U+009B is a one-byte CSI for some
//!   terminals), the bidirectional overrides and isolates that reorder what
//!   is shown ("Trojan Source"), and the Unicode line and paragraph
//!   separators as `\u{XXXX}`.
//!
//! A backslash is left as it is: the escaping keeps the terminal safe and the
//! lines unforgeable; it does not claim to be reversible (the JSON output is
//! the exact form).

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` is written escaped.
fn hazardous(c: char) -> bool {
    (c.is_control() && c != '\t')
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// `s` with every control character (but the tab) and every character that
/// reorders or breaks the displayed line escaped visibly; borrowed when
/// nothing needed escaping.
pub fn printable(s: &str) -> Cow<'_, str> {
    if !s.chars().any(hazardous) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !hazardous(c) {
            out.push(c);
            continue;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x80 => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => {
                let _ = write!(out, "\\u{{{:04x}}}", c as u32);
            }
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::printable;

    #[test]
    fn controls_are_escaped_visibly_and_a_tab_stays_a_tab() {
        assert_eq!(printable("PermitRootLogin\tyes"), "PermitRootLogin\tyes");
        assert!(matches!(printable("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(
            printable("a\x1b[2J\x1b]0;pwned\x07b"),
            "a\\x1b[2J\\x1b]0;pwned\\x07b"
        );
        assert_eq!(printable("one\ntwo\r\n"), "one\\ntwo\\r\\n");
        assert_eq!(printable("\0\x7f"), "\\x00\\x7f");
        assert_eq!(printable("\u{9b}31m"), "\\u{009b}31m");
        assert_eq!(printable("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(printable("x\u{2028}y"), "x\\u{2028}y");
        // Everything else, backslashes and non-ASCII text included, as is.
        assert_eq!(printable("C:\\n é ✓"), "C:\\n é ✓");
    }

    #[test]
    fn nothing_escaped_contains_a_line_break_or_escape() {
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        let out = printable(&all);
        assert!(!out.contains(['\n', '\r', '\x1b', '\u{9b}', '\u{2028}', '\u{202e}']));
        assert!(out.contains('\t'));
    }
}
