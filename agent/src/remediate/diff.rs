//! Unified diffs of planned file edits, for `--dry-run`.

/// A unified diff (3 lines of context) of `old` → `new`, headed with the
/// in-root path. Bytes that are not UTF-8 are shown replaced; the file
/// itself is written byte for byte.
pub fn unified(path: &str, old: &[u8], new: &[u8]) -> String {
    let old = String::from_utf8_lossy(old);
    let new = String::from_utf8_lossy(new);
    let diff = similar::TextDiff::from_lines(old.as_ref(), new.as_ref());
    diff.unified_diff()
        .context_radius(3)
        .header(path, &format!("{path} (after plumb remediate)"))
        .to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn shows_the_changed_line_with_context() {
        let d = super::unified("/etc/x", b"a\nb\nc\n", b"a\nB\nc\n");
        assert!(
            d.starts_with("--- /etc/x\n+++ /etc/x (after plumb remediate)\n"),
            "{d}"
        );
        assert!(d.contains("-b\n+B\n"), "{d}");
        assert!(d.contains(" a\n"), "{d}");
    }
}
