//! The console's one escaping module: every string an agent sent (rule ids,
//! evidence, paths, facts) is hostile until it passes through here, for the
//! context it lands in. HTML text and attribute values, path segments of
//! links, link targets (only http(s) or relative), and CSV cells (against
//! formula injection when a spreadsheet opens an export).

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use std::fmt::Write as _;

/// Text for an HTML element's content or a double-quoted attribute value:
/// control characters shown as escapes (`\n`, `\x1b`: visible, lossless,
/// [`plumb_core::printable`]), then `& < > " '` as entities.
pub fn html(s: &str) -> String {
    let s = plumb_core::printable(s);
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Characters kept as they are in a path segment: letters, digits, `-._~`.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// One path segment of a console link (`/hosts/{segment}`): everything but
/// letters, digits and `-._~` percent-encoded, so it can neither leave the
/// segment nor the attribute. A segment of dots only is encoded whole.
pub fn segment(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b == b'.') {
        return s.bytes().fold(String::new(), |mut o, _| {
            o.push_str("%2E");
            o
        });
    }
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A query value (`?host={value}`), encoded as a segment is.
pub fn query_value(s: &str) -> String {
    utf8_percent_encode(s, SEGMENT).to_string()
}

/// A link target for an `href`: an absolute http(s) URL, or a path relative
/// to the console (starting with one `/`); anything else (`javascript:`,
/// `data:`, `//host`) becomes `#`. Escaped for the attribute.
pub fn href(url: &str) -> String {
    let lower = url.trim_start().to_ascii_lowercase();
    let ok = lower.starts_with("https://")
        || lower.starts_with("http://")
        || (url.starts_with('/') && !url.starts_with("//") && !url.starts_with("/\\"));
    if ok && !url.chars().any(char::is_control) {
        html(url)
    } else {
        "#".into()
    }
}

/// A CSV cell (RFC 4180): a value a spreadsheet would take for a formula
/// (starting with `=`, `+`, `-`, `@`, tab or CR) gets a leading `'`; every
/// cell is quoted, its quotes doubled.
pub fn csv_cell(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 3);
    out.push('"');
    if matches!(s.chars().next(), Some('=' | '+' | '-' | '@' | '\t' | '\r')) {
        out.push('\'');
    }
    for c in s.chars() {
        if c == '"' {
            out.push('"');
        }
        out.push(c);
    }
    out.push('"');
    out
}

/// A CSV document: a header row and rows, CRLF line ends (RFC 4180).
pub fn csv(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let cells: Vec<String> = cells.map(csv_cell).collect();
        let _ = write!(out, "{}\r\n", cells.join(","));
    };
    line(&mut out, &mut header.iter().copied());
    for r in rows {
        line(&mut out, &mut r.iter().map(String::as_str));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn html_and_attributes() {
        assert_eq!(
            html("<script>alert('x')</script>&\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&quot;"
        );
        assert_eq!(html("a\nb\u{1b}[1m"), "a\\nb\\x1b[1m");
    }

    #[test]
    fn links_are_http_or_relative() {
        assert_eq!(href("javascript:alert(1)"), "#");
        assert_eq!(href(" JavaScript:alert(1)"), "#");
        assert_eq!(href("data:text/html,x"), "#");
        assert_eq!(href("//evil.example/"), "#");
        assert_eq!(href("/hosts/web-1?x=\"y\""), "/hosts/web-1?x=&quot;y&quot;");
        assert_eq!(href("https://example.org/a"), "https://example.org/a");
        assert_eq!(segment("a/b\"<c> d"), "a%2Fb%22%3Cc%3E%20d");
        assert_eq!(segment(".."), "%2E%2E");
        assert_eq!(segment("web-1.example"), "web-1.example");
    }

    #[test]
    fn csv_cells_cannot_be_formulas() {
        assert_eq!(csv_cell("=cmd|' /C calc'!A0"), "\"'=cmd|' /C calc'!A0\"");
        for p in ["+1", "-1", "@SUM(A1)", "\tx", "\rx"] {
            assert!(csv_cell(p).starts_with("\"'"), "{p}");
        }
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv(&["a"], &[vec!["1".into()]]), "\"a\"\r\n\"1\"\r\n");
    }
}
