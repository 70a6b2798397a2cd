//! Reading sshd's configuration the way sshd reads it, shared by the `sshd`
//! check and the `sshd_set` remediation so both see the same lines.
//!
//! - `/etc/ssh/sshd_config` is read; `Include` directives are followed in
//!   place, each argument a glob expanded in lexical order (dot files only
//!   when the last component asks for them), relative paths taken from
//!   `/etc/ssh`, recursively up to sshd's depth limit (16), so an include
//!   loop is an error, as in sshd. A glob that matches nothing is not an
//!   error; a matched file that cannot be read is.
//! - A `Match` block runs until the next `Match` or the end of the file it
//!   is in; without a connection only `Match all` returns to the global
//!   context. After an included file, the including file is back in the
//!   block (or global context) its `Include` was in: sshd saves and
//!   restores its Match state around each included file. A file included
//!   from an inactive block never applies, even after its own `Match all`
//!   (sshd's `SSHCFG_NEVERMATCH`).

use crate::rootfs::RootFs;

pub(crate) const SSHD_CONFIG: &str = "/etc/ssh/sshd_config";
pub(crate) const SSHD_DIR: &str = "/etc/ssh";
/// `SERVCONF_MAX_DEPTH` in servconf.c.
pub(crate) const MAX_INCLUDE_DEPTH: usize = 16;

/// One line of the configuration, met in the order sshd reads it. `Include`
/// lines are not shown: the files they name are, in their place.
#[derive(Debug)]
pub(crate) struct Line<'a> {
    /// In-root path of the file holding the line.
    pub path: &'a str,
    /// 0-based index of the line in its file.
    pub index: usize,
    /// Include depth of the file; 0 is `sshd_config` itself.
    pub depth: usize,
    /// The line's bytes as read, terminator included.
    pub raw: &'a [u8],
    /// A setting: its keyword as written and its arguments. `None` for
    /// blank lines, comments and `Match` lines.
    pub setting: Option<(String, Vec<String>)>,
    /// The line is in the global context (outside any `Match` block).
    pub active: bool,
}

impl Line<'_> {
    /// `path:line`, the evidence location of the line.
    pub fn at(&self) -> String {
        format!("{}:{}", self.path, self.index + 1)
    }
}

/// What [`walk`] reports to its visitor.
#[derive(Debug)]
pub(crate) enum Event<'a> {
    /// A line other than an `Include`.
    Line(Line<'a>),
    /// A file was read to its end; `depth` 0 is `sshd_config` itself.
    /// `opened_match`: it holds a `Match` line, whose block ends here.
    End { depth: usize, opened_match: bool },
}

/// Walks `sshd_config` and its includes, calling `visit` for each line and
/// at the end of each file. `read` gives a file's bytes (`None`: it does
/// not exist), so a remediation can see its planned writes; include globs
/// are expanded on `fs`.
pub(crate) fn walk(
    fs: &RootFs,
    read: impl Fn(&str) -> Result<Option<Vec<u8>>, String>,
    visit: impl FnMut(Event<'_>),
) -> Result<(), String> {
    Walker { fs, read, visit }.file(SSHD_CONFIG, 0, true)
}

struct Walker<'a, R, V> {
    fs: &'a RootFs,
    read: R,
    visit: V,
}

impl<R, V> Walker<'_, R, V>
where
    R: Fn(&str) -> Result<Option<Vec<u8>>, String>,
    V: FnMut(Event<'_>),
{
    /// Reads one file. `active`: it starts in the global context; when it
    /// does not, it was included from an inactive `Match` block.
    fn file(&mut self, path: &str, depth: usize, active: bool) -> Result<(), String> {
        if depth > MAX_INCLUDE_DEPTH {
            return Err(format!(
                "{path}: too many nested Include levels (more than {MAX_INCLUDE_DEPTH}), sshd refuses this configuration"
            ));
        }
        // sshd exits when a file it includes cannot be opened.
        let bytes = (self.read)(path)?.ok_or_else(|| format!("cannot read {path}: not found"))?;
        let never_match = !active;
        let mut active = active;
        let mut opened_match = false;
        for (index, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
            // split_line trims the terminator with the other white space.
            let mut setting = split_line(&String::from_utf8_lossy(raw));
            if let Some((keyword, args)) = &setting {
                if keyword.eq_ignore_ascii_case("include") {
                    let at = format!("{path}:{}", index + 1);
                    for arg in args {
                        self.include(arg, depth, active, &at)?;
                    }
                    continue;
                }
                if keyword.eq_ignore_ascii_case("match") {
                    // Without a connection only `Match all` matches.
                    active = !never_match && args.len() == 1 && args[0].eq_ignore_ascii_case("all");
                    opened_match = true;
                    setting = None;
                }
            }
            (self.visit)(Event::Line(Line {
                path,
                index,
                depth,
                raw,
                setting,
                active,
            }));
        }
        (self.visit)(Event::End {
            depth,
            opened_match,
        });
        Ok(())
    }

    fn include(&mut self, arg: &str, depth: usize, active: bool, at: &str) -> Result<(), String> {
        let pattern = if arg.starts_with('/') {
            arg.to_string()
        } else {
            format!("{SSHD_DIR}/{arg}")
        };
        let files = self
            .fs
            .glob(&pattern)
            .map_err(|e| format!("Include {arg} ({at}): cannot expand: {e}"))?;
        let hidden_ok = pattern
            .rsplit('/')
            .next()
            .is_some_and(|last| last.starts_with('.'));
        for f in files {
            // glob(3) does not match dot files unless the pattern says so.
            let name = f.rsplit('/').next().unwrap_or_default();
            if name.starts_with('.') && !hidden_ok {
                continue;
            }
            self.file(&f, depth + 1, active)?;
        }
        Ok(())
    }
}

/// Splits a line the way sshd does: a keyword, then `=` or white space,
/// then arguments (quotes honoured); `#` at the start of an argument ends
/// the line. `None` for blank and comment lines.
pub(crate) fn split_line(line: &str) -> Option<(String, Vec<String>)> {
    let line = line.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\x0c');
    let end = line
        .find(|c: char| c.is_ascii_whitespace() || c == '=')
        .unwrap_or(line.len());
    let keyword = &line[..end];
    if keyword.is_empty() || keyword.starts_with('#') {
        return None;
    }
    let mut rest = line[end..].trim_start_matches(|c: char| c.is_ascii_whitespace());
    if let Some(r) = rest.strip_prefix('=') {
        rest = r;
    }
    Some((keyword.to_string(), argv_split(rest)))
}

/// sshd's `argv_split`: white-space separated words with `"`/`'` quoting
/// and backslash escapes of quotes, backslash and space; a word beginning
/// with `#` starts a comment.
fn argv_split(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_ascii_whitespace()) {
            chars.next();
        }
        match chars.peek() {
            None | Some('#') => break,
            _ => {}
        }
        let mut word = String::new();
        let mut quote: Option<char> = None;
        while let Some(&c) = chars.peek() {
            if quote.is_none() && c.is_ascii_whitespace() {
                break;
            }
            chars.next();
            match c {
                '\\' => match chars.peek() {
                    Some(&n) if matches!(n, '\'' | '"' | '\\') || (n == ' ' && quote.is_none()) => {
                        word.push(n);
                        chars.next();
                    }
                    _ => word.push('\\'),
                },
                '"' | '\'' if quote.is_none() => quote = Some(c),
                c if Some(c) == quote => quote = None,
                c => word.push(c),
            }
        }
        out.push(word);
    }
    out
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A root holding `files` (in-root path, content); shared with `sshd_set`'s tests.
    pub(crate) fn root(files: &[(&str, &str)]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let p = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, c).unwrap();
        }
        t
    }

    fn disk(fs: &RootFs) -> impl Fn(&str) -> Result<Option<Vec<u8>>, String> {
        |p| match fs.read(p) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(format!("cannot read {e}")),
        }
    }

    /// Every event as text: `at keyword args [inactive]` for settings,
    /// `end DEPTH [match]` for ends of files.
    fn events(t: &tempfile::TempDir) -> Result<Vec<String>, String> {
        let fs = RootFs::new(t.path());
        let mut out = Vec::new();
        walk(&fs, disk(&fs), |e| match e {
            Event::Line(l) => {
                if let Some((k, args)) = &l.setting {
                    let scope = if l.active { "" } else { " inactive" };
                    out.push(format!("{} {k} {}{scope}", l.at(), args.join(",")));
                }
            }
            Event::End {
                depth,
                opened_match,
            } => out.push(format!(
                "end {depth}{}",
                if opened_match { " match" } else { "" }
            )),
        })?;
        Ok(out)
    }

    #[test]
    fn nested_relative_includes_in_place_and_in_lexical_order() {
        let t = root(&[
            (SSHD_CONFIG, "Include sshd_config.d/*.conf\nA 1\n"),
            ("/etc/ssh/sshd_config.d/20-b.conf", "B 2"),
            (
                "/etc/ssh/sshd_config.d/10-a.conf",
                "Include inner/x.conf\r\nC 3\r\n",
            ),
            // Relative to /etc/ssh, not to the including file.
            ("/etc/ssh/inner/x.conf", "D 4\n"),
            ("/etc/ssh/sshd_config.d/inner/x.conf", "Wrong 1\n"),
            ("/etc/ssh/sshd_config.d/.00-hidden.conf", "Hidden 1\n"),
            ("/etc/ssh/sshd_config.d/05-x.txt", "Txt 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            [
                "/etc/ssh/inner/x.conf:1 D 4",
                "end 2",
                "/etc/ssh/sshd_config.d/10-a.conf:2 C 3",
                "end 1",
                "/etc/ssh/sshd_config.d/20-b.conf:1 B 2",
                "end 1",
                "/etc/ssh/sshd_config:2 A 1",
                "end 0",
            ]
        );
    }

    #[test]
    fn dot_files_only_when_the_pattern_names_them() {
        let t = root(&[
            (SSHD_CONFIG, "Include /etc/ssh/d/.*.conf\n"),
            ("/etc/ssh/d/.h.conf", "H 1\n"),
            ("/etc/ssh/d/v.conf", "V 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            ["/etc/ssh/d/.h.conf:1 H 1", "end 1", "end 0"]
        );
    }

    #[test]
    fn match_scope_ends_with_its_file_and_never_match_is_inherited() {
        let t = root(&[
            (
                SSHD_CONFIG,
                "Include a.conf\nA 1\nMatch User bob\nInclude b.conf\nB 1\nMATCH All\nC 1\n",
            ),
            ("/etc/ssh/a.conf", "Match Address 10.0.0.0/8\nX 1\n"),
            ("/etc/ssh/b.conf", "Match all\nY 1\n"),
        ]);
        assert_eq!(
            events(&t).unwrap(),
            [
                "/etc/ssh/a.conf:2 X 1 inactive",
                "end 1 match",
                "/etc/ssh/sshd_config:2 A 1",
                // Included from an inactive block: its own `Match all` cannot apply.
                "/etc/ssh/b.conf:2 Y 1 inactive",
                "end 1 match",
                "/etc/ssh/sshd_config:5 B 1 inactive",
                "/etc/ssh/sshd_config:7 C 1",
                "end 0 match",
            ]
        );
    }

    #[test]
    fn depth_limit_allows_sixteen_levels_and_stops_loops() {
        let mut files = vec![(SSHD_CONFIG.to_string(), "Include l1.conf\n".to_string())];
        for n in 1..=MAX_INCLUDE_DEPTH {
            files.push((
                format!("/etc/ssh/l{n}.conf"),
                format!("Include l{}.conf\n", n + 1),
            ));
        }
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        // l17.conf does not exist: sixteen levels, then a glob that matches nothing.
        assert!(events(&root(&refs)).is_ok());
        files.push(("/etc/ssh/l17.conf".into(), "Deep 1\n".into()));
        let refs: Vec<(&str, &str)> = files
            .iter()
            .map(|(p, c)| (p.as_str(), c.as_str()))
            .collect();
        let e = events(&root(&refs)).unwrap_err();
        assert_eq!(
            e,
            "/etc/ssh/l17.conf: too many nested Include levels (more than 16), sshd refuses this configuration"
        );

        let e = events(&root(&[(SSHD_CONFIG, "Include /etc/ssh/sshd_config\n")])).unwrap_err();
        assert!(e.contains("too many nested Include levels"), "{e}");
    }

    #[test]
    fn missing_includes_unreadable_files_and_bad_globs() {
        // A glob or a path that matches nothing is skipped, as in sshd.
        let t = root(&[(
            SSHD_CONFIG,
            "Include /etc/ssh/nothing.d/*.conf absent.conf\nA 1\n",
        )]);
        assert_eq!(events(&t).unwrap(), ["/etc/ssh/sshd_config:2 A 1", "end 0"]);

        // A matched file that cannot be read is an error (sshd exits).
        let t = root(&[(SSHD_CONFIG, "Include gone.conf\n")]);
        std::os::unix::fs::symlink("/etc/ssh/nowhere", t.path().join("etc/ssh/gone.conf")).unwrap();
        assert_eq!(
            events(&t).unwrap_err(),
            "cannot read /etc/ssh/gone.conf: not found"
        );

        let t = root(&[(SSHD_CONFIG, "# x\nInclude [x\n")]);
        let e = events(&t).unwrap_err();
        assert!(
            e.starts_with("Include [x (/etc/ssh/sshd_config:2): cannot expand: "),
            "{e}"
        );

        let t = tempfile::tempdir().unwrap();
        assert_eq!(
            events(&t).unwrap_err(),
            "cannot read /etc/ssh/sshd_config: not found"
        );
    }

    #[test]
    fn files_are_read_through_the_callers_reader() {
        let t = root(&[
            (SSHD_CONFIG, "Include a.conf\n"),
            ("/etc/ssh/a.conf", "A 1\n"),
        ]);
        let fs = RootFs::new(t.path());
        let disk = disk(&fs);
        let mut seen = Vec::new();
        walk(
            &fs,
            |p| match p {
                "/etc/ssh/a.conf" => Ok(Some(b"  A  2\n# c\n".to_vec())),
                _ => disk(p),
            },
            |e| {
                if let Event::Line(l) = e {
                    seen.push((l.index, l.raw.to_vec(), l.setting));
                }
            },
        )
        .unwrap();
        assert_eq!(
            seen,
            [
                (
                    0,
                    b"  A  2\n".to_vec(),
                    Some(("A".into(), vec!["2".into()]))
                ),
                (1, b"# c\n".to_vec(), None),
            ]
        );
    }
}
