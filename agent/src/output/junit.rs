//! `--format junit`: one testcase per rule, so a CI pipeline that checks an
//! image shows failing rules natively.

use plumb_core::report::{CheckReport, Status};
use std::io::Write;

/// Escapes text for XML, dropping characters XML 1.0 cannot carry.
fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            '\t' | '\n' | '\r' => o.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => o.push('\u{fffd}'),
            c => o.push(c),
        }
    }
    o
}

/// Writes a JUnit XML report.
pub fn write_check<W: Write>(out: &mut W, r: &CheckReport) -> std::io::Result<()> {
    let s = &r.summary;
    let total = r.results.len();
    let secs = r.duration_ms as f64 / 1000.0;
    let suite = format!("{} v{}", r.baseline.id, r.baseline.version);
    writeln!(out, r#"<?xml version="1.0" encoding="UTF-8"?>"#)?;
    writeln!(
        out,
        r#"<testsuites name="plumb check" tests="{total}" failures="{}" errors="{}" skipped="{}" time="{secs:.3}">"#,
        s.fail, s.error, s.skipped
    )?;
    writeln!(
        out,
        r#"  <testsuite name="{}" hostname="{}" timestamp="{}" tests="{total}" failures="{}" errors="{}" skipped="{}" time="{secs:.3}">"#,
        esc(&suite),
        esc(&r.host),
        esc(&r.started_at),
        s.fail,
        s.error,
        s.skipped
    )?;
    for x in &r.results {
        let class = x
            .domains
            .first()
            .map_or_else(|| "issp".to_string(), |d| format!("issp.domain{d:02}"));
        let name = format!("{}: {}", x.id, x.title);
        let body = esc(&x.evidence.join("\n"));
        let first = esc(x.evidence.first().map_or("", String::as_str));
        write!(
            out,
            r#"    <testcase classname="{}" name="{}" time="0">"#,
            esc(&class),
            esc(&name)
        )?;
        match x.status {
            Status::Pass => {}
            Status::Fail => write!(
                out,
                r#"<failure type="{}" message="{first}">{body}</failure>"#,
                x.severity.name()
            )?,
            Status::Error => write!(out, r#"<error message="{first}">{body}</error>"#)?,
            Status::Skipped => write!(out, r#"<skipped message="{first}"/>"#)?,
        }
        writeln!(out, "</testcase>")?;
    }
    writeln!(out, "  </testsuite>")?;
    writeln!(out, "</testsuites>")
}
