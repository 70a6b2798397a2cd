//! `kind = "sshd"`: the effective setting of one sshd keyword, computed the
//! way the installed sshd computes it without a connection (what `sshd -T`
//! prints), or (`valid = true`) whether sshd accepts the configuration.
//!
//! The reading is `crate::sshd_config`'s, shared with the `sshd_set`
//! remediation: Includes, Match scoping, first-wins and last-wins keywords,
//! `Match all` applied over the global values, and every refusal of sshd.
//!
//! - The sshd build is the root's installed openssh-server, from its dpkg
//!   database; its compiled-in defaults and accepted algorithms come from a
//!   table per known build. An unknown build is `error`, not a guess.
//! - A configuration sshd refuses makes every `sshd` rule `error`
//!   ("sshd refuses this configuration: FILE:LINE: reason"); a
//!   `valid = true` rule fails with the same evidence.
//! - Values are compared in `sshd -T`'s spelling, and the baseline's
//!   expected values are put in that spelling too, so equivalent spellings
//!   compare equal (`prohibit-password` = `without-password`, `all` = `yes`
//!   for forwarding, `DEBUG1` = `DEBUG`, `QUIET` = `SILENT`, `10` =
//!   `10:30:10` for MaxStartups); times are compared in seconds.

use super::{Ctx, Outcome, package};
use crate::sshd_config::keywords::{self, Keyword};
use crate::sshd_config::{self, Effective, SSHD_CONFIG, SSHD_DIR, Settings};
use plumb_core::check::SshdCheck;
use plumb_core::compare::Comparison;

/// The package whose version decides the sshd build.
const PACKAGE: &str = "openssh-server";

/// The checked root's sshd configuration, loaded for its installed build.
struct Loaded {
    settings: Settings,
    /// `openssh-server VERSION`, for evidence.
    package: String,
}

/// Why there is nothing to compare: `skipped` or `error`.
fn load(ctx: &Ctx) -> Result<Loaded, Outcome> {
    match ctx.fs.lstat(SSHD_CONFIG) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ctx.fs.lstat("/usr/sbin/sshd").is_ok() {
                return Err(Outcome::error(format!(
                    "{SSHD_CONFIG}: not found, but /usr/sbin/sshd is installed (sshd refuses to start without it)"
                )));
            }
            return Err(if ctx.fs.lstat(SSHD_DIR).is_err() {
                Outcome::skipped("sshd not installed in this root (no /etc/ssh)")
            } else {
                Outcome::skipped(format!(
                    "sshd not installed in this root (no {SSHD_CONFIG} nor /usr/sbin/sshd)"
                ))
            });
        }
        Err(e) => return Err(Outcome::error(format!("cannot read {SSHD_CONFIG}: {e}"))),
    }
    let unknown = |why: String| {
        Outcome::error(format!(
            "the sshd build is unknown: {why}; its defaults and accepted values are not guessed"
        ))
    };
    let version = match package::installed_version(ctx, PACKAGE) {
        Ok(Some((version, _at))) => version,
        Ok(None) if ctx.fs.lstat("/usr/sbin/sshd").is_err() => {
            return Err(Outcome::skipped(format!(
                "sshd not installed in this root ({PACKAGE} is not installed, no /usr/sbin/sshd)"
            )));
        }
        Ok(None) => {
            return Err(unknown(format!(
                "/usr/sbin/sshd is not from an installed {PACKAGE} package"
            )));
        }
        Err(out) => {
            let why = out.evidence.join("; ");
            return Err(unknown(why));
        }
    };
    let build = sshd_config::build_of(&version).map_err(|e| Outcome::error(e.0))?;
    let read = |path: &str| match ctx.fs.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("cannot read {e}")),
    };
    match sshd_config::load(&ctx.fs, read, build) {
        Ok(settings) => Ok(Loaded {
            settings,
            package: format!("{PACKAGE} {version}"),
        }),
        Err(e) => Err(Outcome::error(e.to_string())),
    }
}

/// The value sshd uses for `key` in the checked root, as `sshd -T` prints
/// it (list items joined by one space; `None`: unset, no default), through
/// the same code as the check. `Err` when the check would say `error` or
/// `skipped`, with its reason. The differential test compares this with the
/// real `sshd -T`.
pub fn effective_value(ctx: &Ctx, key: &str) -> Result<Option<String>, String> {
    let kw = keyword(key).map_err(|o| o.evidence.join("; "))?;
    let loaded = load(ctx).map_err(|o| o.evidence.join("; "))?;
    loaded
        .settings
        .effective(kw)
        .map(|e| e.value)
        .map_err(|e| e.to_string())
}

fn keyword(key: &str) -> Result<&'static Keyword, Outcome> {
    keywords::keyword(key.trim()).ok_or_else(|| {
        Outcome::error(format!(
            "{} is not an sshd keyword (sshd would refuse it)",
            key.trim()
        ))
    })
}

/// Evaluates a `sshd` check.
pub fn evaluate(spec: &SshdCheck, ctx: &Ctx) -> Outcome {
    if let Some(valid) = spec.valid {
        return validity(valid, ctx);
    }
    let cmp = match spec.comparison() {
        Ok(c) => c,
        Err(e) => return Outcome::error(format!("invalid check: {e}")),
    };
    let kw = match keyword(&spec.key) {
        Ok(k) => k,
        Err(out) => return out,
    };
    let loaded = match load(ctx) {
        Ok(l) => l,
        Err(out) => return out,
    };
    let eff = match loaded.settings.effective(kw) {
        Ok(e) => e,
        Err(e) => return Outcome::error(e.to_string()),
    };
    let mut evidence = describe(kw, &eff, &loaded.package);
    let ignore_case = keywords::ignore_case(kw);
    let ok = match normalised(&cmp, kw) {
        // `absent` is about the configuration files, not the default.
        Comparison::Absent(want_absent) => want_absent != eff.is_set(),
        cmp => cmp.holds(eff.value.as_deref(), ignore_case),
    };
    if !ok {
        evidence.push(cmp.to_string());
    }
    Outcome::verdict(ok, evidence)
}

/// `valid = true`: sshd accepts the configuration; `false`: it refuses it.
fn validity(want_valid: bool, ctx: &Ctx) -> Outcome {
    match load(ctx) {
        Ok(loaded) => Outcome::verdict(
            want_valid,
            vec![format!(
                "sshd ({}) accepts {SSHD_CONFIG} and its includes ({} settings)",
                loaded.package,
                loaded.settings.lines.len()
            )],
        ),
        Err(out) => {
            let refused = out
                .evidence
                .first()
                .is_some_and(|e| e.starts_with("sshd refuses this configuration"));
            if refused {
                Outcome::verdict(!want_valid, out.evidence)
            } else {
                out
            }
        }
    }
}

/// The comparison with its expected values in `sshd -T`'s spelling.
fn normalised(cmp: &Comparison, kw: &Keyword) -> Comparison {
    match cmp {
        Comparison::Equals(v) => Comparison::Equals(keywords::normalise(kw, v)),
        Comparison::OneOf(vs) => {
            Comparison::OneOf(vs.iter().map(|v| keywords::normalise(kw, v)).collect())
        }
        other => other.clone(),
    }
}

/// Evidence: the lines that give the value (with what sshd makes of them),
/// or the default of the build.
fn describe(kw: &Keyword, eff: &Effective<'_>, package: &str) -> Vec<String> {
    let display = kw.display;
    let value = eff.value.as_deref().unwrap_or("");
    let mut out = Vec::new();
    if !eff.is_set() {
        out.push(match &eff.value {
            Some(v) => format!("{display} not set: default {v} ({package})"),
            None => format!("{display} not set"),
        });
        return out;
    }
    let deciding = if eff.matched.is_empty() {
        &eff.global
    } else {
        &eff.matched
    };
    let single = deciding.len() == 1;
    for s in deciding {
        let mut line = format!("{} {} ({})", kw.display, s.written, s.at());
        if s.scope == sshd_config::Scope::MatchAll && !eff.matched.is_empty() {
            line.push_str(", in a Match all block");
        }
        if single {
            line.push_str(&note(kw, &s.written, value));
        }
        out.push(line);
    }
    if !single {
        out.push(format!("effective {display} {value}"));
    }
    if !eff.matched.is_empty() {
        for g in &eff.global {
            out.push(format!(
                "overrides {} {} ({})",
                kw.display,
                g.written,
                g.at()
            ));
        }
    }
    out
}

/// What sshd makes of a value written differently.
fn note(kw: &Keyword, written: &str, value: &str) -> String {
    use keywords::Syntax;
    let same = if keywords::ignore_case(kw) {
        written.eq_ignore_ascii_case(value)
    } else {
        written == value
    };
    if same {
        return String::new();
    }
    match kw.syntax {
        Syntax::Time => format!(" = {value} seconds"),
        Syntax::Ciphers | Syntax::Macs | Syntax::Kex | Syntax::KeyAlgorithms { .. } => {
            format!(", effective list {value}")
        }
        _ => format!(" (sshd -T: {value})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sshd_config::tests::{TEST_VERSION, root};
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        /// A root with openssh-server installed (the test build).
        fn new() -> Fixture {
            Fixture { dir: root(&[]) }
        }
        fn write(&self, in_root: &str, content: impl AsRef<[u8]>) -> &Fixture {
            let p = self.dir.path().join(in_root.trim_start_matches('/'));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, content).unwrap();
            self
        }
        fn config(&self, content: &str) -> &Fixture {
            self.write(SSHD_CONFIG, content)
        }
        fn spec(&self, key: &str, cmp: Cmp) -> SshdCheck {
            let mut spec = SshdCheck {
                key: key.into(),
                valid: None,
                equals: None,
                one_of: None,
                min: None,
                max: None,
                absent: None,
                excludes: None,
            };
            match cmp {
                Cmp::Eq(v) => spec.equals = Some(Scalar::Str(v.into())),
                Cmp::OneOf(vs) => {
                    spec.one_of = Some(vs.iter().map(|v| Scalar::Str((*v).into())).collect());
                }
                Cmp::Max(n) => spec.max = Some(n),
                Cmp::Excludes(v) => spec.excludes = Some(vec![Scalar::Str(v.into())]),
                Cmp::Absent(a) => spec.absent = Some(a),
                Cmp::Valid(v) => {
                    spec.key.clear();
                    spec.valid = Some(v);
                }
            }
            spec
        }
        fn check(&self, key: &str, cmp: Cmp) -> Outcome {
            evaluate(&self.spec(key, cmp), &Ctx::new(self.dir.path(), None))
        }
    }

    enum Cmp {
        Eq(&'static str),
        OneOf(&'static [&'static str]),
        Max(i64),
        Excludes(&'static str),
        Absent(bool),
        Valid(bool),
    }
    use Cmp::*;

    fn assert_status(o: &Outcome, s: Status) {
        assert_eq!(o.status, s, "{:?}", o.evidence);
    }

    #[test]
    fn first_value_wins_with_evidence_and_expectation() {
        let f = Fixture::new();
        f.config("# comment\nPermitRootLogin yes\nPermitRootLogin no\n");
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Fail);
        assert_eq!(
            o.evidence,
            vec![
                "PermitRootLogin yes (/etc/ssh/sshd_config:2)".to_string(),
                "expected \"no\"".to_string()
            ]
        );
    }

    #[test]
    fn include_at_the_top_wins_over_a_later_main_file_line() {
        let f = Fixture::new();
        f.config("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin yes\n")
            .write(
                "/etc/ssh/sshd_config.d/50-hard.conf",
                "PermitRootLogin no\n",
            );
        let o = f.check("permitrootlogin", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["PermitRootLogin no (/etc/ssh/sshd_config.d/50-hard.conf:1)"]
        );
        // An Include after the setting comes too late.
        f.config("PermitRootLogin yes\nInclude /etc/ssh/sshd_config.d/*.conf\n");
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Fail);
    }

    #[test]
    fn include_glob_is_lexical_and_relative_to_etc_ssh() {
        let f = Fixture::new();
        f.config("Include sshd_config.d/*.conf\n")
            .write("/etc/ssh/sshd_config.d/20-b.conf", "MaxAuthTries 3\n")
            .write("/etc/ssh/sshd_config.d/10-a.conf", "MaxAuthTries 10\n")
            .write("/etc/ssh/sshd_config.d/05-x.txt", "MaxAuthTries 1\n")
            .write("/etc/ssh/sshd_config.d/.00-hidden.conf", "MaxAuthTries 2\n");
        let o = f.check("MaxAuthTries", Max(4));
        assert_status(&o, Status::Fail);
        assert_eq!(
            o.evidence[0],
            "MaxAuthTries 10 (/etc/ssh/sshd_config.d/10-a.conf:1)"
        );
    }

    #[test]
    fn missing_include_is_not_an_error() {
        let f = Fixture::new();
        f.config(
            "Include /etc/ssh/nothing.d/*.conf\nInclude /etc/ssh/absent.conf\nX11Forwarding no\n",
        );
        assert_status(&f.check("X11Forwarding", Eq("no")), Status::Pass);
    }

    #[test]
    fn match_blocks_do_not_apply_globally() {
        let f = Fixture::new();
        f.config(
            "Match User bob\n  PermitRootLogin yes\n  Include /etc/ssh/inc.conf\nMatch all\nPasswordAuthentication no\n",
        )
        .write("/etc/ssh/inc.conf", "Match all\nX11Forwarding yes\n");
        let o = f.check("PermitRootLogin", Eq("prohibit-password"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec![format!(
                "PermitRootLogin not set: default without-password (openssh-server {TEST_VERSION})"
            )]
        );
        // `Match all` returns to global scope.
        assert_status(&f.check("PasswordAuthentication", Eq("no")), Status::Pass);
        // A file included from an inactive Match never applies, even after its own `Match all`.
        assert_status(&f.check("X11Forwarding", Eq("no")), Status::Pass);
    }

    #[test]
    fn a_later_match_all_line_overrides_the_global_one() {
        let f = Fixture::new();
        f.config("PermitRootLogin yes\nAllowUsers alice\nMatch all\nInclude /etc/ssh/late.conf\n")
            .write(
                "/etc/ssh/late.conf",
                "PermitRootLogin no\nAllowUsers bob carol\n",
            );
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec![
                "PermitRootLogin no (/etc/ssh/late.conf:1), in a Match all block",
                "overrides PermitRootLogin yes (/etc/ssh/sshd_config:1)",
            ]
        );
        // A list set there replaces the global list.
        assert_status(&f.check("AllowUsers", Eq("bob carol")), Status::Pass);
    }

    #[test]
    fn match_block_inside_included_file_ends_with_that_file() {
        let f = Fixture::new();
        f.config("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
            .write(
                "/etc/ssh/sshd_config.d/a.conf",
                "Match Address 10.0.0.0/8\nPermitRootLogin yes\n",
            );
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["PermitRootLogin no (/etc/ssh/sshd_config:2)"]
        );
    }

    #[test]
    fn keywords_and_enum_values_are_case_insensitive() {
        let f = Fixture::new();
        f.config("  permitEMPTYpasswords\tNO\nPASSWORDAUTHENTICATION=No\nbanner=/etc/Issue.net\n");
        assert_status(&f.check("PermitEmptyPasswords", Eq("no")), Status::Pass);
        let o = f.check("PasswordAuthentication", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["PasswordAuthentication No (/etc/ssh/sshd_config:2)"]
        );
        // Paths are not enumerations.
        assert_status(&f.check("Banner", Eq("/etc/issue.net")), Status::Fail);
        assert_status(&f.check("Banner", Eq("/etc/Issue.net")), Status::Pass);
    }

    #[test]
    fn aliases_and_equivalent_spellings() {
        let f = Fixture::new();
        f.config("ChallengeResponseAuthentication no\nPermitRootLogin without-password\nLoginGraceTime 1m\nAllowTcpForwarding all\nLogLevel DEBUG1\n");
        assert_status(
            &f.check("KbdInteractiveAuthentication", Eq("no")),
            Status::Pass,
        );
        // Either spelling on either side.
        assert_status(
            &f.check("PermitRootLogin", Eq("prohibit-password")),
            Status::Pass,
        );
        assert_status(
            &f.check("PermitRootLogin", Eq("without-password")),
            Status::Pass,
        );
        assert_status(&f.check("AllowTcpForwarding", Eq("yes")), Status::Pass);
        assert_status(&f.check("LogLevel", Eq("DEBUG")), Status::Pass);
        assert_status(
            &f.check("LogLevel", OneOf(&["INFO", "DEBUG1"])),
            Status::Pass,
        );
        let o = f.check("LoginGraceTime", Max(60));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["LoginGraceTime 1m (/etc/ssh/sshd_config:3) = 60 seconds"]
        );
        f.config("PermitRootLogin prohibit-password\nLogLevel QUIET\n");
        assert_status(
            &f.check("PermitRootLogin", Eq("without-password")),
            Status::Pass,
        );
        let o = f.check("LogLevel", Eq("SILENT"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["LogLevel QUIET (/etc/ssh/sshd_config:2) (sshd -T: SILENT)"]
        );
    }

    #[test]
    fn max_startups_last_value_and_short_form() {
        let f = Fixture::new();
        f.config("Include /etc/ssh/sshd_config.d/*.conf\nMaxStartups 10\n")
            .write("/etc/ssh/sshd_config.d/a.conf", "MaxStartups 10:30:60\n");
        let o = f.check("MaxStartups", Eq("10:30:60"));
        assert_status(&o, Status::Fail);
        assert_eq!(
            o.evidence,
            vec![
                "MaxStartups 10 (/etc/ssh/sshd_config:2) (sshd -T: 10:30:10)",
                "expected \"10:30:60\"",
            ]
        );
        assert_status(&f.check("MaxStartups", Eq("10")), Status::Pass);
    }

    #[test]
    fn defaults_of_the_installed_build() {
        let f = Fixture::new();
        f.config("\n");
        for (k, v) in [
            ("PasswordAuthentication", "yes"),
            ("PermitEmptyPasswords", "no"),
            ("PubkeyAuthentication", "yes"),
            ("HostbasedAuthentication", "no"),
            ("IgnoreRhosts", "yes"),
            ("X11Forwarding", "no"),
            ("AllowTcpForwarding", "yes"),
            ("MaxAuthTries", "6"),
            ("MaxSessions", "10"),
            ("MaxStartups", "10:30:100"),
            ("LoginGraceTime", "120"),
            ("ClientAliveInterval", "0"),
            ("ClientAliveCountMax", "3"),
            ("LogLevel", "INFO"),
            ("PermitUserEnvironment", "no"),
            ("UsePAM", "no"),
            ("Banner", "none"),
            ("GSSAPIAuthentication", "no"),
            ("KbdInteractiveAuthentication", "yes"),
            ("DisableForwarding", "no"),
            ("AllowAgentForwarding", "yes"),
            ("Compression", "yes"),
        ] {
            let o = f.check(k, Eq(v));
            assert_status(&o, Status::Pass);
            assert_eq!(
                o.evidence,
                vec![format!(
                    "{k} not set: default {v} (openssh-server {TEST_VERSION})"
                )]
            );
        }
        assert_status(&f.check("Ciphers", Excludes("3des-cbc")), Status::Pass);
        assert_status(&f.check("MACs", Excludes("hmac-sha1")), Status::Fail);
        let o = f.check("KexAlgorithms", Eq("x"));
        assert!(
            o.evidence[0].starts_with("KexAlgorithms not set: default sntrup761x25519-sha512,sntrup761x25519-sha512@openssh.com,"),
            "{:?}",
            o.evidence
        );
        assert_status(&f.check("Banner", Absent(true)), Status::Pass);
        // Not an sshd keyword.
        assert_status(&f.check("FrobnicateLevel", Eq("1")), Status::Error);
    }

    #[test]
    fn the_build_comes_from_the_package_database() {
        let f = Fixture::new();
        f.config("\n");
        f.write(
            "/var/lib/dpkg/status",
            "Package: openssh-server\nStatus: install ok installed\nVersion: 1:9.2p1-2+deb12u3\n",
        );
        let o = f.check("KexAlgorithms", Excludes("x"));
        assert!(
            o.evidence[0].contains("default sntrup761x25519-sha512@openssh.com,curve25519-sha256,"),
            "{:?}",
            o.evidence
        );
        f.write(
            "/var/lib/dpkg/status",
            "Package: openssh-server\nStatus: install ok installed\nVersion: 1:8.9p1-3ubuntu0.10\n",
        );
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(
            o.evidence[0].contains("1:8.9p1-3ubuntu0.10: this sshd build is not known"),
            "{:?}",
            o.evidence
        );
        // Removed, configuration left behind: sshd is not installed.
        f.write(
            "/var/lib/dpkg/status",
            "Package: openssh-server\nStatus: deinstall ok config-files\nVersion: 1:9.2p1-2+deb12u3\n",
        );
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Skipped);
        // An sshd that no package installed: unknown.
        f.write("/usr/sbin/sshd", "");
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Error);
        std::fs::remove_file(f.dir.path().join("var/lib/dpkg/status")).unwrap();
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(
            o.evidence[0].contains("no dpkg database"),
            "{:?}",
            o.evidence
        );
    }

    #[test]
    fn algorithm_list_forms() {
        let f = Fixture::new();
        f.config("Ciphers +3des-cbc\n");
        let o = f.check("Ciphers", Excludes("3des-cbc"));
        assert_status(&o, Status::Fail);
        assert!(
            o.evidence[0].contains("effective list chacha20-poly1305@openssh.com,"),
            "{:?}",
            o.evidence
        );
        assert!(o.evidence[0].ends_with(",aes256-gcm@openssh.com,3des-cbc"));
        f.config("MACs -hmac-sha1*,umac-64*\n");
        let o = f.check("MACs", Eq("umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512"));
        assert_status(&o, Status::Pass);
        f.config("KexAlgorithms ^diffie-hellman-group1-sha1\n");
        let o = f.check("KexAlgorithms", Excludes("diffie-hellman-group1-sha1"));
        assert_status(&o, Status::Fail);
        assert!(o.evidence[0].contains("effective list diffie-hellman-group1-sha1,sntrup761"));
        f.config("Ciphers aes256-gcm@openssh.com,aes256-ctr\n");
        assert_status(&f.check("Ciphers", Excludes("3des-cbc")), Status::Pass);
    }

    #[test]
    fn accumulating_keywords_collect_every_line() {
        let f = Fixture::new();
        f.config("AllowUsers alice\nAllowUsers bob carol\n");
        let o = f.check("AllowUsers", Eq("alice bob carol"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec![
                "AllowUsers alice (/etc/ssh/sshd_config:1)",
                "AllowUsers bob carol (/etc/ssh/sshd_config:2)",
                "effective AllowUsers alice bob carol",
            ]
        );
        assert_status(&f.check("DenyUsers", Absent(true)), Status::Pass);
    }

    #[test]
    fn comments_quotes_and_odd_bytes() {
        let f = Fixture::new();
        f.write(
            SSHD_CONFIG,
            b"# \xff\xfe comment \x00 junk\nPermitRootLogin yes\nBanner \"/etc/my banner\" # trailing\r\nPermitRootLogin no # why\n#PermitRootLogin yes\n",
        );
        assert_status(&f.check("Banner", Eq("/etc/my banner")), Status::Pass);
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["PermitRootLogin no (/etc/ssh/sshd_config:4)"]
        );
        // Text before a NUL byte runs into the next line.
        f.write(
            SSHD_CONFIG,
            b"\xff\xfe garbage \x00 line\nPermitRootLogin no\n",
        );
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(
            o.evidence[0].contains("Bad configuration option"),
            "{:?}",
            o.evidence
        );
    }

    #[test]
    fn refused_configurations_are_errors_and_fail_validity() {
        let f = Fixture::new();
        for (config, at) in [
            (
                "PermitRootLogn no\n",
                ":1: Bad configuration option: PermitRootLogn",
            ),
            (
                "Match User x\n  Ciphers aes128-ctr\n",
                ":2: Directive 'Ciphers' is not allowed within a Match block",
            ),
            (
                "PermitRootLogin no\nPermitRootLogin maybe\n",
                ":2: unsupported option \"maybe\"",
            ),
            ("KexAlgorithms +curve*\n", ":1: Bad SSH2 KexAlgorithms"),
            ("Banner \"/etc/x\n", ":1: invalid quotes"),
            (
                "PermitRootLogin no yes\n",
                ":1: keyword PermitRootLogin extra arguments",
            ),
        ] {
            f.config(config);
            let o = f.check("PermitRootLogin", Eq("no"));
            assert_status(&o, Status::Error);
            assert!(
                o.evidence[0].starts_with("sshd refuses this configuration: /etc/ssh/sshd_config")
                    && o.evidence[0].contains(at),
                "{config:?}: {:?}",
                o.evidence
            );
            let v = f.check("", Valid(true));
            assert_status(&v, Status::Fail);
            assert_eq!(v.evidence, o.evidence);
            assert_status(&f.check("", Valid(false)), Status::Pass);
        }
        f.config("Include /etc/ssh/sshd_config.d/*.conf\nPermitRootLogin no\n")
            .write("/etc/ssh/sshd_config.d/a.conf", "X11Forwarding no\n");
        let v = f.check("", Valid(true));
        assert_status(&v, Status::Pass);
        assert_eq!(
            v.evidence,
            vec![format!(
                "sshd (openssh-server {TEST_VERSION}) accepts /etc/ssh/sshd_config and its includes (2 settings)"
            )]
        );
    }

    #[test]
    fn unreadable_or_missing_configs() {
        let f = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Skipped);
        let f = Fixture::new();
        std::fs::create_dir_all(f.dir.path().join("etc/ssh/sshd_config")).unwrap();
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(o.evidence[0].contains("directory"), "{:?}", o.evidence);

        let g = Fixture::new();
        g.config("Include /etc/ssh/fifo.conf\n");
        nix::unistd::mkfifo(
            &g.dir.path().join("etc/ssh/fifo.conf"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let o = g.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(o.evidence[0].contains("fifo"), "{:?}", o.evidence);

        let h = Fixture {
            dir: tempfile::tempdir().unwrap(),
        };
        h.write("/usr/sbin/sshd", "");
        h.write("/etc/ssh/ssh_config", "");
        assert_status(&h.check("PermitRootLogin", Eq("no")), Status::Error);
    }

    #[test]
    fn include_loops_stop_at_the_depth_limit() {
        let f = Fixture::new();
        f.config("Include /etc/ssh/sshd_config\n");
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Error);
        assert!(o.evidence[0].contains("too many nested Include"));
    }

    #[test]
    fn value_missing_or_invalid_is_an_error() {
        let f = Fixture::new();
        f.config("PermitRootLogin\n");
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Error);
        f.config("LoginGraceTime 2x\n");
        assert_status(&f.check("LoginGraceTime", Max(60)), Status::Error);
    }

    #[test]
    fn effective_value_is_what_sshd_t_prints() {
        let f = Fixture::new();
        f.config("PermitRootLogin prohibit-password\nAcceptEnv LANG\nAcceptEnv LC_*\n");
        let ctx = Ctx::new(f.dir.path(), None);
        assert_eq!(
            effective_value(&ctx, "PermitRootLogin"),
            Ok(Some("without-password".into()))
        );
        assert_eq!(
            effective_value(&ctx, "acceptenv"),
            Ok(Some("LANG LC_*".into()))
        );
        assert_eq!(effective_value(&ctx, "AllowUsers"), Ok(None));
        assert!(effective_value(&ctx, "Bogus").is_err());
    }
}
