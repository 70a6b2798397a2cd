//! `kind = "sshd"`: the effective setting of one sshd keyword, computed the
//! way sshd computes it for its global (connection-independent) context.
//!
//! - `/etc/ssh/sshd_config` is read; `Include` directives are followed in
//!   place, each glob expanded in lexical order, relative paths taken from
//!   `/etc/ssh`, recursively up to sshd's depth limit (16). A glob that
//!   matches nothing is not an error (as in sshd). This walk is
//!   `crate::sshd_config`'s, shared with the `sshd_set` remediation.
//! - The first value obtained wins; keywords and their aliases are matched
//!   case-insensitively; list keywords (`AllowUsers`, `AcceptEnv`, ...)
//!   accumulate every line instead.
//! - `Match` blocks are not applied: a block runs until the next `Match` or
//!   the end of the file it is in (an `Include` inside a `Match` is part of
//!   it), and only `Match all` returns to the global context.
//! - An unset keyword takes the compiled-in default of **OpenSSH 9.2p1**
//!   (Debian 12), from `fill_default_server_options` in `servconf.c` and
//!   `myproposal.h`. Debian's packaged sshd_config sets some of them
//!   (`UsePAM yes`, `KbdInteractiveAuthentication no`...); those settings are
//!   read from the file like any other.
//! - `Ciphers`, `MACs` and `KexAlgorithms` values beginning with `+`, `-` or
//!   `^` are resolved against the default list (append, remove matching
//!   patterns, prepend), so `excludes` sees the effective list.

use super::{Ctx, Outcome};
use crate::sshd_config::{self, Event, SSHD_CONFIG, SSHD_DIR};
use plumb_core::check::SshdCheck;
use plumb_core::compare::Comparison;

/// The OpenSSH release whose compiled-in defaults are encoded here.
pub const OPENSSH_DEFAULTS_VERSION: &str = "9.2";

/// `KEX_SERVER_ENCRYPT` in OpenSSH 9.2's myproposal.h.
const DEFAULT_CIPHERS: &str = "chacha20-poly1305@openssh.com,aes128-ctr,aes192-ctr,aes256-ctr,aes128-gcm@openssh.com,aes256-gcm@openssh.com";
/// `KEX_SERVER_MAC` in OpenSSH 9.2's myproposal.h.
const DEFAULT_MACS: &str = "umac-64-etm@openssh.com,umac-128-etm@openssh.com,hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha1-etm@openssh.com,umac-64@openssh.com,umac-128@openssh.com,hmac-sha2-256,hmac-sha2-512,hmac-sha1";
/// `KEX_SERVER_KEX` in OpenSSH 9.2's myproposal.h.
const DEFAULT_KEX: &str = "sntrup761x25519-sha512@openssh.com,curve25519-sha256,curve25519-sha256@libssh.org,ecdh-sha2-nistp256,ecdh-sha2-nistp384,ecdh-sha2-nistp521,diffie-hellman-group-exchange-sha256,diffie-hellman-group16-sha512,diffie-hellman-group18-sha512,diffie-hellman-group14-sha256";

/// How a keyword's value is interpreted and compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// yes/no and other enumerations: compared case-insensitively.
    Enum,
    /// A number, compared as written.
    Int,
    /// A time (`2m`, `1h30m`): compared in seconds, as `sshd -T` shows it.
    Time,
    /// Free text such as a path: compared case-sensitively.
    Text,
    /// An algorithm list with `+`/`-`/`^` forms, resolved against a default.
    Algorithms(&'static str),
    /// Every line adds to the value (`AllowUsers`, `AcceptEnv`, ...).
    Accumulate,
}

/// A keyword: lower-case name, display name, OpenSSH 9.2 default, kind.
struct Keyword {
    name: &'static str,
    display: &'static str,
    default: Option<&'static str>,
    kind: Kind,
}

const fn kw(
    name: &'static str,
    display: &'static str,
    default: Option<&'static str>,
    kind: Kind,
) -> Keyword {
    Keyword {
        name,
        display,
        default,
        kind,
    }
}

/// Keywords with known semantics. Defaults from OpenSSH 9.2p1 servconf.c
/// (`fill_default_server_options`), shown as `sshd -T` prints them.
const KEYWORDS: &[Keyword] = &[
    kw(
        "permitrootlogin",
        "PermitRootLogin",
        Some("prohibit-password"),
        Kind::Enum,
    ),
    kw(
        "passwordauthentication",
        "PasswordAuthentication",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "permitemptypasswords",
        "PermitEmptyPasswords",
        Some("no"),
        Kind::Enum,
    ),
    kw(
        "pubkeyauthentication",
        "PubkeyAuthentication",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "hostbasedauthentication",
        "HostbasedAuthentication",
        Some("no"),
        Kind::Enum,
    ),
    kw("ignorerhosts", "IgnoreRhosts", Some("yes"), Kind::Enum),
    kw(
        "ignoreuserknownhosts",
        "IgnoreUserKnownHosts",
        Some("no"),
        Kind::Enum,
    ),
    kw("x11forwarding", "X11Forwarding", Some("no"), Kind::Enum),
    kw(
        "x11uselocalhost",
        "X11UseLocalhost",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "x11displayoffset",
        "X11DisplayOffset",
        Some("10"),
        Kind::Int,
    ),
    kw(
        "allowtcpforwarding",
        "AllowTcpForwarding",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "allowstreamlocalforwarding",
        "AllowStreamLocalForwarding",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "allowagentforwarding",
        "AllowAgentForwarding",
        Some("yes"),
        Kind::Enum,
    ),
    kw(
        "disableforwarding",
        "DisableForwarding",
        Some("no"),
        Kind::Enum,
    ),
    kw("gatewayports", "GatewayPorts", Some("no"), Kind::Enum),
    kw("permittunnel", "PermitTunnel", Some("no"), Kind::Enum),
    kw("permittty", "PermitTTY", Some("yes"), Kind::Enum),
    kw("permituserrc", "PermitUserRC", Some("yes"), Kind::Enum),
    kw("maxauthtries", "MaxAuthTries", Some("6"), Kind::Int),
    kw("maxsessions", "MaxSessions", Some("10"), Kind::Int),
    kw("maxstartups", "MaxStartups", Some("10:30:100"), Kind::Text),
    kw("logingracetime", "LoginGraceTime", Some("120"), Kind::Time),
    kw(
        "clientaliveinterval",
        "ClientAliveInterval",
        Some("0"),
        Kind::Time,
    ),
    kw(
        "clientalivecountmax",
        "ClientAliveCountMax",
        Some("3"),
        Kind::Int,
    ),
    kw("loglevel", "LogLevel", Some("INFO"), Kind::Enum),
    kw("syslogfacility", "SyslogFacility", Some("AUTH"), Kind::Enum),
    kw(
        "permituserenvironment",
        "PermitUserEnvironment",
        Some("no"),
        Kind::Enum,
    ),
    kw("usepam", "UsePAM", Some("no"), Kind::Enum),
    kw("banner", "Banner", Some("none"), Kind::Text),
    kw(
        "gssapiauthentication",
        "GSSAPIAuthentication",
        Some("no"),
        Kind::Enum,
    ),
    kw(
        "kerberosauthentication",
        "KerberosAuthentication",
        Some("no"),
        Kind::Enum,
    ),
    kw(
        "kbdinteractiveauthentication",
        "KbdInteractiveAuthentication",
        Some("yes"),
        Kind::Enum,
    ),
    kw("strictmodes", "StrictModes", Some("yes"), Kind::Enum),
    kw("usedns", "UseDNS", Some("no"), Kind::Enum),
    kw("printmotd", "PrintMotd", Some("yes"), Kind::Enum),
    kw("printlastlog", "PrintLastLog", Some("yes"), Kind::Enum),
    kw("tcpkeepalive", "TCPKeepAlive", Some("yes"), Kind::Enum),
    kw("compression", "Compression", Some("yes"), Kind::Enum),
    kw("exposeauthinfo", "ExposeAuthInfo", Some("no"), Kind::Enum),
    kw(
        "fingerprinthash",
        "FingerprintHash",
        Some("SHA256"),
        Kind::Enum,
    ),
    kw("addressfamily", "AddressFamily", Some("any"), Kind::Enum),
    kw(
        "authorizedkeysfile",
        "AuthorizedKeysFile",
        Some(".ssh/authorized_keys .ssh/authorized_keys2"),
        Kind::Text,
    ),
    kw(
        "ciphers",
        "Ciphers",
        None,
        Kind::Algorithms(DEFAULT_CIPHERS),
    ),
    kw("macs", "MACs", None, Kind::Algorithms(DEFAULT_MACS)),
    kw(
        "kexalgorithms",
        "KexAlgorithms",
        None,
        Kind::Algorithms(DEFAULT_KEX),
    ),
    kw("allowusers", "AllowUsers", None, Kind::Accumulate),
    kw("denyusers", "DenyUsers", None, Kind::Accumulate),
    kw("allowgroups", "AllowGroups", None, Kind::Accumulate),
    kw("denygroups", "DenyGroups", None, Kind::Accumulate),
    kw("acceptenv", "AcceptEnv", None, Kind::Accumulate),
    kw("listenaddress", "ListenAddress", None, Kind::Accumulate),
    kw("hostkey", "HostKey", None, Kind::Accumulate),
    kw("port", "Port", Some("22"), Kind::Accumulate),
];

/// Alternative spellings sshd accepts for the same option (servconf.c).
const ALIASES: &[(&str, &str)] = &[
    (
        "challengeresponseauthentication",
        "kbdinteractiveauthentication",
    ),
    ("skeyauthentication", "kbdinteractiveauthentication"),
    ("dsaauthentication", "pubkeyauthentication"),
    ("keepalive", "tcpkeepalive"),
    ("hostdsakey", "hostkey"),
    ("pubkeyacceptedkeytypes", "pubkeyacceptedalgorithms"),
    ("hostbasedacceptedkeytypes", "hostbasedacceptedalgorithms"),
];

/// The option a keyword sets, lower-cased with aliases resolved.
pub(crate) fn canonical(keyword: &str) -> String {
    let k = keyword.to_ascii_lowercase();
    ALIASES
        .iter()
        .find(|(alias, _)| *alias == k)
        .map_or(k, |(_, target)| (*target).to_string())
}

fn keyword_info(canon: &str) -> Option<&'static Keyword> {
    KEYWORDS.iter().find(|k| k.name == canon)
}

/// One line of configuration that set the checked option.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Hit {
    /// The value as written (arguments joined by one space).
    value: String,
    /// `path:line`
    at: String,
}

/// The lines of sshd_config and its includes that set option `want` in the
/// global context: the first one, or every one for an accumulating option.
fn find_hits(ctx: &Ctx, want: &str, accumulate: bool) -> Result<Vec<Hit>, String> {
    let read = |path: &str| match ctx.fs.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("cannot read {e}")),
    };
    let mut hits = Vec::new();
    sshd_config::walk(&ctx.fs, read, |event| {
        let Event::Line(line) = event else { return };
        match &line.setting {
            Some((keyword, args))
                if line.active && (accumulate || hits.is_empty()) && canonical(keyword) == want =>
            {
                hits.push(Hit {
                    value: args.join(" "),
                    at: line.at(),
                });
            }
            _ => {}
        }
    })?;
    Ok(hits)
}

/// `convtime` from OpenSSH misc.c: `90`, `2m`, `1h30m`, in seconds.
fn convtime(s: &str) -> Option<i64> {
    if s.is_empty() {
        return None;
    }
    let mut total: i64 = 0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() {
            num.push(c);
            if chars.peek().is_some() {
                continue;
            }
        }
        let mult = if c.is_ascii_digit() {
            1
        } else {
            match c.to_ascii_lowercase() {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86400,
                'w' => 604_800,
                _ => return None,
            }
        };
        let n: i64 = num.parse().ok()?;
        num.clear();
        total = total.checked_add(n.checked_mul(mult)?)?;
    }
    if total > i64::from(i32::MAX) {
        return None;
    }
    Some(total)
}

/// `match_pattern` from OpenSSH match.c: `*` and `?` wildcards. Greedy
/// with one backtrack point, so hostile patterns cannot take exponential time.
fn wildcard(s: &[u8], p: &[u8]) -> bool {
    let (mut si, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// `match_filter_denylist`: drops items matching a positive pattern of the
/// list unless a negated (`!`) pattern matches them too.
fn deny_filter<'a>(list: &'a str, patterns: &str) -> Vec<&'a str> {
    list.split(',')
        .filter(|item| !item.is_empty())
        .filter(|item| {
            let mut positive = false;
            for p in patterns.split(',').filter(|p| !p.is_empty()) {
                match p.strip_prefix('!') {
                    Some(neg) if wildcard(item.as_bytes(), neg.as_bytes()) => return true,
                    Some(_) => {}
                    None if wildcard(item.as_bytes(), p.as_bytes()) => positive = true,
                    None => {}
                }
            }
            !positive
        })
        .collect()
}

/// `kex_assemble_names` for a configured value against the default list.
fn assemble(value: &str, default: &str) -> String {
    let cat = |a: &str, b: &str| {
        let mut out: Vec<&str> = Vec::new();
        for item in a.split(',').chain(b.split(',')) {
            if !item.is_empty() && !out.contains(&item) {
                out.push(item);
            }
        }
        out.join(",")
    };
    if let Some(extra) = value.strip_prefix('+') {
        cat(default, extra)
    } else if let Some(removed) = value.strip_prefix('-') {
        deny_filter(default, removed).join(",")
    } else if let Some(first) = value.strip_prefix('^') {
        cat(first, default)
    } else {
        cat(value, "")
    }
}

/// The value as sshd understands it, for comparison; `Err` when sshd would
/// refuse it.
fn effective(kind: Option<Kind>, display: &str, raw: &str) -> Result<String, String> {
    Ok(match kind {
        Some(Kind::Time) => match convtime(raw) {
            Some(secs) => secs.to_string(),
            None => return Err(format!("{display} \"{raw}\" is not a valid time")),
        },
        Some(Kind::Algorithms(default)) => assemble(raw, default),
        Some(Kind::Enum) => match (display, raw.to_ascii_lowercase().as_str()) {
            // Spellings `sshd -T` prints under another name.
            ("PermitRootLogin", "without-password") => "prohibit-password".into(),
            ("Compression", "delayed") => "yes".into(),
            _ => raw.to_string(),
        },
        _ => raw.to_string(),
    })
}

/// Evaluates a `sshd` check.
pub fn evaluate(spec: &SshdCheck, ctx: &Ctx) -> Outcome {
    let cmp = match spec.comparison() {
        Ok(c) => c,
        Err(e) => return Outcome::error(format!("invalid check: {e}")),
    };
    match ctx.fs.lstat(SSHD_CONFIG) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if ctx.fs.lstat("/usr/sbin/sshd").is_ok() {
                return Outcome::error(format!(
                    "{SSHD_CONFIG}: not found, but /usr/sbin/sshd is installed (sshd refuses to start without it)"
                ));
            }
            return if ctx.fs.lstat(SSHD_DIR).is_err() {
                Outcome::skipped("sshd not installed in this root (no /etc/ssh)")
            } else {
                Outcome::skipped(format!(
                    "sshd not installed in this root (no {SSHD_CONFIG} nor /usr/sbin/sshd)"
                ))
            };
        }
        Err(e) => return Outcome::error(format!("cannot read {SSHD_CONFIG}: {e}")),
    }
    let want = canonical(spec.key.trim());
    let info = keyword_info(&want);
    let kind = info.map(|k| k.kind);
    let display = info.map_or(spec.key.trim(), |k| k.display);
    let hits = match find_hits(ctx, &want, kind == Some(Kind::Accumulate)) {
        Ok(h) => h,
        Err(e) => return Outcome::error(e),
    };
    let ignore_case = kind == Some(Kind::Enum);
    let mut evidence = Vec::new();
    let observed: Option<String> = if hits.is_empty() {
        match (info.and_then(|k| k.default), kind) {
            (Some(d), _) => {
                evidence.push(format!(
                    "{display} not set: OpenSSH {OPENSSH_DEFAULTS_VERSION} default {d}"
                ));
                Some(d.to_string())
            }
            (None, Some(Kind::Algorithms(d))) => {
                evidence.push(format!(
                    "{display} not set: OpenSSH {OPENSSH_DEFAULTS_VERSION} default {d}"
                ));
                Some(d.to_string())
            }
            (None, Some(Kind::Accumulate)) => {
                evidence.push(format!("{display} not set"));
                None
            }
            _ => {
                // An unknown keyword's default is not guessed.
                if !matches!(cmp, Comparison::Absent(_)) {
                    return Outcome::error(format!(
                        "{display} not set in {SSHD_CONFIG} or its includes, and its OpenSSH {OPENSSH_DEFAULTS_VERSION} default is not known to Plumbline"
                    ));
                }
                evidence.push(format!(
                    "{display} not set in {SSHD_CONFIG} or its includes"
                ));
                None
            }
        }
    } else {
        let mut values = Vec::new();
        for hit in &hits {
            if hit.value.is_empty() {
                return Outcome::error(format!(
                    "{display} without a value ({}): sshd refuses this configuration",
                    hit.at
                ));
            }
            match effective(kind, display, &hit.value) {
                Ok(v) => {
                    let note = if v == hit.value {
                        String::new()
                    } else if matches!(kind, Some(Kind::Time)) {
                        format!(" = {v} seconds")
                    } else if matches!(kind, Some(Kind::Algorithms(_))) {
                        format!(", effective list {v}")
                    } else {
                        format!(" (same as {v})")
                    };
                    evidence.push(format!("{display} {} ({}){note}", hit.value, hit.at));
                    values.push(v);
                }
                Err(e) => {
                    return Outcome::error(format!(
                        "{e} ({}): sshd refuses this configuration",
                        hit.at
                    ));
                }
            }
        }
        Some(values.join(" "))
    };
    // `absent` is about the configuration files, not the default.
    let ok = match cmp {
        Comparison::Absent(want_absent) => want_absent == hits.is_empty(),
        _ => cmp.holds(observed.as_deref(), ignore_case),
    };
    if !ok {
        evidence.push(cmp.to_string());
    }
    Outcome::verdict(ok, evidence)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::compare::Scalar;
    use plumb_core::report::Status;

    struct Fixture {
        dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Fixture {
            Fixture {
                dir: tempfile::tempdir().unwrap(),
            }
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
        fn check(&self, key: &str, cmp: Cmp) -> Outcome {
            let mut spec = SshdCheck {
                key: key.into(),
                equals: None,
                one_of: None,
                min: None,
                max: None,
                absent: None,
                excludes: None,
            };
            match cmp {
                Cmp::Eq(v) => spec.equals = Some(Scalar::Str(v.into())),
                Cmp::Max(n) => spec.max = Some(n),
                Cmp::Excludes(v) => spec.excludes = Some(vec![Scalar::Str(v.into())]),
                Cmp::Absent(a) => spec.absent = Some(a),
            }
            evaluate(&spec, &Ctx::new(self.dir.path(), None))
        }
    }

    enum Cmp {
        Eq(&'static str),
        Max(i64),
        Excludes(&'static str),
        Absent(bool),
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
            vec!["PermitRootLogin not set: OpenSSH 9.2 default prohibit-password"]
        );
        // `Match all` returns to global scope.
        assert_status(&f.check("PasswordAuthentication", Eq("no")), Status::Pass);
        // A file included from an inactive Match never applies, even after its own `Match all`.
        assert_status(&f.check("X11Forwarding", Eq("no")), Status::Pass);
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
        f.config("ChallengeResponseAuthentication no\nPermitRootLogin without-password\nLoginGraceTime 1m\n");
        assert_status(
            &f.check("KbdInteractiveAuthentication", Eq("no")),
            Status::Pass,
        );
        let o = f.check("PermitRootLogin", Eq("prohibit-password"));
        assert_status(&o, Status::Pass);
        let o = f.check("LoginGraceTime", Max(60));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["LoginGraceTime 1m (/etc/ssh/sshd_config:3) = 60 seconds"]
        );
    }

    #[test]
    fn defaults_of_openssh_9_2() {
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
                vec![format!("{k} not set: OpenSSH 9.2 default {v}")]
            );
        }
        assert_status(&f.check("Ciphers", Excludes("3des-cbc")), Status::Pass);
        assert_status(&f.check("MACs", Excludes("hmac-sha1")), Status::Fail);
        assert_status(&f.check("Banner", Absent(true)), Status::Pass);
        // Unknown keyword: its default is not guessed.
        assert_status(&f.check("FrobnicateLevel", Eq("1")), Status::Error);
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
        assert_eq!(
            assemble("-aes*,!aes256-ctr", "aes128-ctr,aes256-ctr,x"),
            "aes256-ctr,x"
        );
    }

    #[test]
    fn accumulating_keywords_collect_every_line() {
        let f = Fixture::new();
        f.config("AllowUsers alice\nAllowUsers bob carol\n");
        let o = f.check("AllowUsers", Eq("alice bob carol"));
        assert_status(&o, Status::Pass);
        assert_eq!(o.evidence.len(), 2);
    }

    #[test]
    fn comments_quotes_and_odd_bytes() {
        let f = Fixture::new();
        f.write(
            SSHD_CONFIG,
            b"\xff\xfe garbage \x00 line\nBanner \"/etc/my banner\" # trailing\r\nPermitRootLogin no # why\n#PermitRootLogin yes\n",
        );
        assert_status(&f.check("Banner", Eq("/etc/my banner")), Status::Pass);
        let o = f.check("PermitRootLogin", Eq("no"));
        assert_status(&o, Status::Pass);
        assert_eq!(
            o.evidence,
            vec!["PermitRootLogin no (/etc/ssh/sshd_config:3)"]
        );
    }

    #[test]
    fn unreadable_or_missing_configs() {
        let f = Fixture::new();
        assert_status(&f.check("PermitRootLogin", Eq("no")), Status::Skipped);
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

        let h = Fixture::new();
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
    fn wildcards() {
        assert!(wildcard(b"hmac-sha1-etm@openssh.com", b"hmac-sha1*"));
        assert!(wildcard(b"abc", b"a?c"));
        assert!(!wildcard(b"abc", b"a?d"));
        assert!(wildcard(b"", b"*"));
        assert!(!wildcard(
            b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab",
            b"*a*a*a*a*a*a*a*a*a*a*a*a*c"
        ));
    }

    #[test]
    fn time_parsing() {
        assert_eq!(convtime("90"), Some(90));
        assert_eq!(convtime("1h30m"), Some(5400));
        assert_eq!(convtime("2M"), Some(120));
        assert_eq!(convtime("m"), None);
        assert_eq!(convtime("99999999999999999999"), None);
    }
}
