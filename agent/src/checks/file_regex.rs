//! `kind = "file_regex"`: a regex is matched line by line against a file,
//! or every file a glob matches. Comment lines (first non-blank `#`) are
//! skipped unless `skip_comments = false`.

use super::{Ctx, Outcome};
use crate::rootfs::has_glob_chars;
use plumb_core::check::{FileRegexCheck, RegexExpect};

/// Most matching lines quoted in evidence.
const MAX_QUOTED: usize = 10;

/// Evaluates a `file_regex` check.
pub fn evaluate(spec: &FileRegexCheck, ctx: &Ctx) -> Outcome {
    let re = match regex::Regex::new(&spec.pattern) {
        Ok(r) => r,
        Err(e) => return Outcome::error(format!("invalid pattern: {e}")),
    };
    let paths = match ctx.fs.glob(&spec.path) {
        Ok(p) => p,
        Err(e) => return Outcome::error(format!("cannot list {}: {e}", spec.path)),
    };
    if paths.is_empty() {
        let what = if has_glob_chars(&spec.path) {
            "no file matches"
        } else {
            "does not exist"
        };
        let ev = vec![format!("{}: {what}", spec.path)];
        return match spec.expect {
            RegexExpect::Match => Outcome::fail(ev),
            RegexExpect::NoMatch => Outcome::pass(ev),
        };
    }
    let mut hits = Vec::new();
    let mut total = 0usize;
    for path in &paths {
        let file = match ctx.fs.read_text(path) {
            Ok(f) => f,
            // A glob may match a directory or a vanished file: only a named file must be readable.
            Err(e)
                if has_glob_chars(&spec.path)
                    && !matches!(e, crate::rootfs::ReadError::Io { .. }) =>
            {
                continue;
            }
            Err(e) => return Outcome::read_error(&e),
        };
        for (n, line) in file.numbered() {
            if spec.skip_comments && line.trim_start().starts_with('#') {
                continue;
            }
            if re.is_match(line) {
                total += 1;
                if hits.len() < MAX_QUOTED {
                    hits.push(format!("{} ({})", line.trim(), file.at(n)));
                }
            }
        }
    }
    if total > hits.len() {
        hits.push(format!("… and {} more matching lines", total - hits.len()));
    }
    let files = paths.join(", ");
    match (spec.expect, total > 0) {
        (RegexExpect::Match, true) => Outcome::pass(hits),
        (RegexExpect::Match, false) => Outcome::fail(vec![format!(
            "no line matches /{}/ in {files}",
            spec.pattern
        )]),
        (RegexExpect::NoMatch, false) => Outcome::pass(vec![format!(
            "no line matches /{}/ in {files}",
            spec.pattern
        )]),
        (RegexExpect::NoMatch, true) => Outcome::fail(hits),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::report::Status;

    fn spec(path: &str, pattern: &str, expect: RegexExpect) -> FileRegexCheck {
        FileRegexCheck {
            path: path.into(),
            pattern: pattern.into(),
            expect,
            skip_comments: true,
        }
    }

    #[test]
    fn matches_with_line_numbers_and_skips_comments() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc/pam.d")).unwrap();
        std::fs::write(
            t.path().join("etc/pam.d/common-auth"),
            b"# auth nullok\nauth required pam_unix.so nullok\n\xff\xfe odd\n",
        )
        .unwrap();
        let ctx = Ctx::new(t.path(), None);
        let out = evaluate(
            &spec(
                "/etc/pam.d/common-auth",
                r"\bnullok\b",
                RegexExpect::NoMatch,
            ),
            &ctx,
        );
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec!["auth required pam_unix.so nullok (/etc/pam.d/common-auth:2)"]
        );
        let mut s = spec("/etc/pam.d/*", "odd$", RegexExpect::Match);
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        s.pattern = "^# auth".into();
        assert_eq!(evaluate(&s, &ctx).status, Status::Fail);
        s.skip_comments = false;
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }

    #[test]
    fn missing_files() {
        let t = tempfile::tempdir().unwrap();
        let ctx = Ctx::new(t.path(), None);
        assert_eq!(
            evaluate(&spec("/etc/issue", "x", RegexExpect::Match), &ctx).status,
            Status::Fail
        );
        assert_eq!(
            evaluate(&spec("/etc/issue", "x", RegexExpect::NoMatch), &ctx).status,
            Status::Pass
        );
        std::fs::create_dir_all(t.path().join("etc/issue")).unwrap();
        assert_eq!(
            evaluate(&spec("/etc/issue", "x", RegexExpect::Match), &ctx).status,
            Status::Error
        );
    }
}
