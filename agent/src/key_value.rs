//! Key/value configuration files such as `/etc/login.defs` or
//! `/etc/default/*`, read the same way by the `config_value` check and the
//! `config_set` remediation, so both see the same key on the same line.
//! Full-line `#` comments are skipped; by default the key ends at the first
//! `=` or white space and the value is the rest, trimmed, with one pair of
//! surrounding quotes removed.

/// Splits a line into key and value; `None` for blank, comment or keyless lines.
pub(crate) fn split_line<'a>(line: &'a str, separator: Option<&str>) -> Option<(&'a str, &'a str)> {
    let l = line.trim();
    if l.is_empty() || l.starts_with('#') {
        return None;
    }
    let (k, v) = match separator {
        Some(sep) => l.split_once(sep)?,
        None => {
            let end = l
                .find(|c: char| c == '=' || c.is_whitespace())
                .unwrap_or(l.len());
            let (k, rest) = l.split_at(end);
            (k, rest.trim_start().strip_prefix('=').unwrap_or(rest))
        }
    };
    Some((k.trim(), unquote(v.trim())))
}

fn unquote(v: &str) -> &str {
    for q in ['"', '\''] {
        if v.len() >= 2 && v.starts_with(q) && v.ends_with(q) {
            return &v[1..v.len() - 1];
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_lines() {
        assert_eq!(
            split_line("PASS_MAX_DAYS\t90", None),
            Some(("PASS_MAX_DAYS", "90"))
        );
        assert_eq!(split_line("  UMASK = 027 ", None), Some(("UMASK", "027")));
        assert_eq!(split_line("KEY=\"a b\"", None), Some(("KEY", "a b")));
        assert_eq!(split_line("# KEY 1", None), None);
        assert_eq!(split_line("a: b", Some(":")), Some(("a", "b")));
        assert_eq!(split_line("no separator", Some(":")), None);
    }
}
