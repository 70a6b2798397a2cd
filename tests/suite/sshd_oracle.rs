//! Differential test: the effective sshd settings Plumbline computes (the
//! `sshd` check's own code path) against the real `sshd -T` of Debian's
//! openssh-server on the same files, over seeded generated configurations:
//! Includes (globs, relative paths, dot files, nesting), Match blocks
//! (`Match all` and later Includes), aliases, quoting, `key=value`, CRLF,
//! `+`/`-`/`^` algorithm lists, time values, MaxStartups, and invalid
//! variants sshd refuses. Where sshd refuses a configuration, Plumbline must
//! say `error`; where it accepts it, every compared keyword must have the
//! value `sshd -T` prints. The assertion is 100% agreement.
//!
//! sshd is never installed nor started as a service: `scripts/test-oracles.sh`
//! extracts the package, and each batch of cases runs `sshd -T` in a private
//! mount namespace (`unshare -m`) with a tmpfs on /run (for /run/sshd), a
//! passwd copy holding an `sshd` user bind-mounted over /etc/passwd, and the
//! case's etc/ssh bind-mounted over /etc/ssh. Needs root, `unshare` and
//! `ssh-keygen`.
//!
//!   eval "$(scripts/test-oracles.sh)"   # exports PLUMB_TEST_SSHD
//!   cargo test --workspace -- --ignored sshd_oracle --nocapture
//!
//! (`PLUMB_SSHD_VERSION=1:9.2p1-2+deb12u7 scripts/test-oracles.sh` fetches
//! another build of Debian 12's sshd.)
//!
//! PLUMB_SSHD_ORACLE_CASES (default 300) and PLUMB_SSHD_ORACLE_SEED (default
//! 19) choose the run; the per-keyword table is printed on stderr.
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const DEFAULT_CASES: usize = 300;
const DEFAULT_SEED: u64 = 19;

// ---------------------------------------------------------------------------
// A small deterministic generator (SplitMix64): the same seed gives the same
// configurations whatever the version of any crate.
// ---------------------------------------------------------------------------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True with probability `pct` percent.
    fn chance(&mut self, pct: u64) -> bool {
        self.next() % 100 < pct
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

// ---------------------------------------------------------------------------
// The keywords exercised: those of the shipped baseline's SSH rules and
// others, each with values sshd accepts and values it refuses.
// ---------------------------------------------------------------------------

const CIPHERS: &[&str] = &[
    "3des-cbc",
    "aes128-cbc",
    "aes192-cbc",
    "aes256-cbc",
    "aes128-ctr",
    "aes192-ctr",
    "aes256-ctr",
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
];
const BAD_CIPHERS: &[&str] = &[
    "arcfour",
    "blowfish-cbc",
    "aes512-ctr",
    "none",
    "AES128-CTR",
];
const MACS: &[&str] = &[
    "hmac-sha1",
    "hmac-sha1-96",
    "hmac-sha2-256",
    "hmac-sha2-512",
    "hmac-md5",
    "hmac-md5-96",
    "umac-64@openssh.com",
    "umac-128@openssh.com",
    "hmac-sha1-etm@openssh.com",
    "hmac-sha1-96-etm@openssh.com",
    "hmac-sha2-256-etm@openssh.com",
    "hmac-sha2-512-etm@openssh.com",
    "hmac-md5-etm@openssh.com",
    "hmac-md5-96-etm@openssh.com",
    "umac-64-etm@openssh.com",
    "umac-128-etm@openssh.com",
];
const BAD_MACS: &[&str] = &["hmac-ripemd160", "umac-32@openssh.com", "hmac-sha3-256"];
const KEX: &[&str] = &[
    "diffie-hellman-group1-sha1",
    "diffie-hellman-group14-sha1",
    "diffie-hellman-group14-sha256",
    "diffie-hellman-group16-sha512",
    "diffie-hellman-group18-sha512",
    "diffie-hellman-group-exchange-sha1",
    "diffie-hellman-group-exchange-sha256",
    "ecdh-sha2-nistp256",
    "ecdh-sha2-nistp384",
    "ecdh-sha2-nistp521",
    "curve25519-sha256",
    "curve25519-sha256@libssh.org",
    "sntrup761x25519-sha512",
    "sntrup761x25519-sha512@openssh.com",
];
const BAD_KEX: &[&str] = &[
    "diffie-hellman-group15-sha512",
    "mlkem768x25519-sha256",
    "curve448-sha512",
];
/// Removal patterns (`-` lists may use wildcards and negations).
const KEX_PATTERNS: &[&str] = &["*sha1*", "diffie-hellman-*", "ecdh-*", "sntrup*", "!curve*"];
const CIPHER_PATTERNS: &[&str] = &["*-cbc", "aes*", "*gcm*", "chacha*", "aes1?8-ctr"];
const MAC_PATTERNS: &[&str] = &["*sha1*", "umac-64*", "*-etm@openssh.com", "hmac-md5*"];

#[derive(Clone, Copy)]
enum Values {
    /// yes / no
    Flag,
    /// Fixed words, compared by sshd case-insensitively unless said.
    Words(&'static [&'static str], &'static [&'static str]),
    Int,
    Time,
    MaxStartups,
    Algorithms(
        &'static [&'static str],
        &'static [&'static str],
        &'static [&'static str],
    ),
    /// Whole lines of arguments, valid and invalid.
    Args(&'static [&'static str], &'static [&'static str]),
}

struct Kw {
    /// As written in configurations (and the `sshd` check's key).
    name: &'static str,
    /// Other spellings sshd accepts for it.
    aliases: &'static [&'static str],
    /// Allowed inside a Match block.
    in_match: bool,
    values: Values,
}

const fn kw(name: &'static str, in_match: bool, values: Values) -> Kw {
    Kw {
        name,
        aliases: &[],
        in_match,
        values,
    }
}

const KEYWORDS: &[Kw] = &[
    // The shipped baseline's SSH rules.
    kw(
        "Ciphers",
        false,
        Values::Algorithms(CIPHERS, BAD_CIPHERS, CIPHER_PATTERNS),
    ),
    kw("ClientAliveCountMax", true, Values::Int),
    kw("ClientAliveInterval", true, Values::Time),
    kw("DisableForwarding", true, Values::Flag),
    kw("GSSAPIAuthentication", true, Values::Flag),
    kw("HostbasedAuthentication", true, Values::Flag),
    kw(
        "IgnoreRhosts",
        true,
        Values::Words(&["yes", "no", "shosts-only"], &["sometimes"]),
    ),
    kw(
        "KexAlgorithms",
        false,
        Values::Algorithms(KEX, BAD_KEX, KEX_PATTERNS),
    ),
    kw(
        "LogLevel",
        true,
        Values::Words(
            &[
                "QUIET", "FATAL", "ERROR", "INFO", "VERBOSE", "DEBUG", "DEBUG1", "DEBUG2",
                "DEBUG3", "SILENT",
            ],
            &["LOUD", "DEBUG4", "warn"],
        ),
    ),
    kw("LoginGraceTime", false, Values::Time),
    kw(
        "MACs",
        false,
        Values::Algorithms(MACS, BAD_MACS, MAC_PATTERNS),
    ),
    kw("MaxAuthTries", true, Values::Int),
    kw("MaxSessions", true, Values::Int),
    kw("MaxStartups", false, Values::MaxStartups),
    kw("PermitEmptyPasswords", true, Values::Flag),
    kw(
        "PermitRootLogin",
        true,
        Values::Words(
            &[
                "yes",
                "no",
                "prohibit-password",
                "without-password",
                "forced-commands-only",
            ],
            &["nope", "prohibit_password"],
        ),
    ),
    // Case-sensitive yes/no; anything else is a pattern list.
    kw(
        "PermitUserEnvironment",
        false,
        Values::Args(&["yes", "no", "Yes", "LANG,LC_*", "\"\""], &[]),
    ),
    kw("UsePAM", false, Values::Flag),
    // Others.
    kw("PasswordAuthentication", true, Values::Flag),
    kw("PubkeyAuthentication", true, Values::Flag),
    Kw {
        name: "KbdInteractiveAuthentication",
        aliases: &["ChallengeResponseAuthentication", "SKeyAuthentication"],
        in_match: true,
        values: Values::Flag,
    },
    kw("X11Forwarding", true, Values::Flag),
    kw("X11DisplayOffset", true, Values::Int),
    kw(
        "AllowTcpForwarding",
        true,
        Values::Words(&["yes", "all", "no", "local", "remote"], &["both"]),
    ),
    kw(
        "AllowStreamLocalForwarding",
        true,
        Values::Words(&["yes", "all", "no", "local", "remote"], &["some"]),
    ),
    kw("AllowAgentForwarding", true, Values::Flag),
    kw(
        "GatewayPorts",
        true,
        Values::Words(&["yes", "no", "clientspecified"], &["clients"]),
    ),
    // Compared case-sensitively by sshd: "Yes" is refused.
    kw(
        "PermitTunnel",
        true,
        Values::Args(
            &["yes", "no", "point-to-point", "ethernet"],
            &["Yes", "NO", "tun"],
        ),
    ),
    kw(
        "Compression",
        false,
        Values::Words(&["yes", "no", "delayed"], &["zlib"]),
    ),
    Kw {
        name: "TCPKeepAlive",
        aliases: &["KeepAlive"],
        in_match: false,
        values: Values::Flag,
    },
    kw(
        "SyslogFacility",
        false,
        Values::Words(
            &["AUTH", "AUTHPRIV", "DAEMON", "USER", "LOCAL0", "LOCAL7"],
            &["KERN", "LOCAL8"],
        ),
    ),
    kw(
        "FingerprintHash",
        false,
        Values::Words(&["sha256", "md5", "SHA1", "sha512"], &["sha3", "crc32"]),
    ),
    kw("StrictModes", false, Values::Flag),
    kw("PermitTTY", true, Values::Flag),
    kw(
        "Banner",
        true,
        Values::Args(
            &[
                "none",
                "/etc/issue.net",
                "\"/etc/my banner\"",
                "'/etc/ssh/banner'",
            ],
            &["/etc/a /etc/b"],
        ),
    ),
    kw(
        "AllowUsers",
        true,
        Values::Args(
            &[
                "alice",
                "bob carol",
                "dave@10.0.0.0/8",
                "*",
                "root@192.0.2.1",
            ],
            &["eve@10.0.0.0/33", "mallory@10.0.0.1/8"],
        ),
    ),
    kw(
        "DenyUsers",
        true,
        Values::Args(&["root", "guest* nobody", "x@::1"], &["y@10.1.0.0/12"]),
    ),
    kw(
        "AllowGroups",
        true,
        Values::Args(&["ssh-users", "admins wheel"], &[]),
    ),
    kw(
        "AcceptEnv",
        true,
        Values::Args(&["LANG LC_*", "XMODIFIERS", "\"COLORTERM\""], &["A=B"]),
    ),
    kw(
        "AuthorizedKeysFile",
        true,
        Values::Args(
            &[
                ".ssh/authorized_keys",
                "/etc/ssh/keys/%u .ssh/authorized_keys",
                "none",
            ],
            &[],
        ),
    ),
    kw(
        "Port",
        false,
        Values::Args(&["22", "2222", "65535"], &["0", "70000", "twenty"]),
    ),
];

// ---------------------------------------------------------------------------
// Generating configurations
// ---------------------------------------------------------------------------

/// One generated configuration: files under etc/ssh (relative paths).
#[derive(Default, Clone)]
struct Case {
    files: BTreeMap<String, Vec<u8>>,
}

fn spell(rng: &mut Rng, word: &str) -> String {
    match rng.below(6) {
        0 => word.to_ascii_lowercase(),
        1 => word.to_ascii_uppercase(),
        _ => word.to_string(),
    }
}

fn quote(rng: &mut Rng, v: &str) -> String {
    if v.contains(char::is_whitespace) || v.contains('"') || v.contains('\'') {
        return v.to_string();
    }
    match rng.below(10) {
        0 => format!("\"{v}\""),
        1 => format!("'{v}'"),
        _ => v.to_string(),
    }
}

fn number(rng: &mut Rng) -> String {
    match rng.below(10) {
        0 => format!("+{}", rng.below(12)),
        1 => format!("0{}", rng.below(9)),
        _ => rng.below(12).to_string(),
    }
}

fn time(rng: &mut Rng) -> String {
    match rng.below(8) {
        0 => format!("{}m", rng.below(5)),
        1 => format!("{}M{}s", rng.below(3), rng.below(60)),
        2 => format!("{}h", rng.below(2)),
        3 => "1h30m".into(),
        4 => format!("{}S", rng.below(300)),
        5 => "0".into(),
        _ => rng.below(1000).to_string(),
    }
}

fn algorithms(rng: &mut Rng, names: &[&str], patterns: &[&str]) -> String {
    let mut list: Vec<&str> = Vec::new();
    for _ in 0..1 + rng.below(4) {
        let n = *rng.pick(names);
        if !list.contains(&n) || rng.chance(10) {
            list.push(n);
        }
    }
    match rng.below(8) {
        0 | 1 => format!("+{}", list.join(",")),
        2 | 3 => {
            let mut p: Vec<&str> = Vec::new();
            for _ in 0..1 + rng.below(2) {
                p.push(*rng.pick(patterns));
            }
            if rng.chance(30) {
                p.push(*rng.pick(names));
            }
            format!("-{}", p.join(","))
        }
        4 => format!("^{}", list.join(",")),
        _ => list.join(","),
    }
}

/// A value sshd accepts (mostly: `Args` lists may hold refused spellings).
fn valid_value(rng: &mut Rng, k: &Kw) -> String {
    match k.values {
        Values::Flag => {
            let w = rng_word(rng, &["yes", "no"]);
            spell(rng, w)
        }
        Values::Words(ok, _) => {
            let w = *rng.pick(ok);
            spell(rng, w)
        }
        Values::Int => number(rng),
        Values::Time => time(rng),
        Values::MaxStartups => match rng.below(5) {
            0 => format!("+{}", 1 + rng.below(20)),
            1 => "10:30:60".into(),
            2 => format!(
                "{}:{}:{}",
                1 + rng.below(10),
                1 + rng.below(100),
                10 + rng.below(90)
            ),
            3 => "10:30:100".into(),
            _ => format!("{}", 1 + rng.below(30)),
        },
        Values::Algorithms(names, _, patterns) => algorithms(rng, names, patterns),
        Values::Args(ok, _) => rng.pick(ok).to_string(),
    }
}

fn rng_word<'a>(rng: &mut Rng, words: &[&'a str]) -> &'a str {
    words[rng.below(words.len())]
}

/// A value sshd refuses, or `None` when the keyword has none listed.
fn invalid_value(rng: &mut Rng, k: &Kw) -> Option<String> {
    Some(match k.values {
        Values::Flag => rng_word(rng, &["maybe", "1", "true", "on"]).to_string(),
        Values::Words(_, bad) | Values::Args(_, bad) => {
            if bad.is_empty() {
                return None;
            }
            rng.pick(bad).to_string()
        }
        Values::Int => rng_word(rng, &["-1", "4x", "0x10", "99999999999", "1.5"]).to_string(),
        Values::Time => {
            rng_word(rng, &["5x", "m", "-5", "1.5m", "1d2y", "99999999999"]).to_string()
        }
        Values::MaxStartups => rng_word(
            rng,
            &["10:30", "20:30:10", "0", "10:0:20", "10:101:20", "a", "-3"],
        )
        .to_string(),
        Values::Algorithms(names, bad, _) => {
            let good = *rng.pick(names);
            let wrong = match rng.below(3) {
                0 => rng.pick(bad).to_string(),
                // Wildcards only work in `-` lists.
                1 => format!("{}*", &good[..good.len().min(4)]),
                _ => format!("!{good}"),
            };
            let prefix = rng_word(rng, &["", "+", "^"]);
            if rng.chance(50) {
                format!("{prefix}{good},{wrong}")
            } else {
                format!("{prefix}{wrong}")
            }
        }
    })
}

const NEWLINES: &[&str] = &["\n", "\n", "\n", "\r\n"];

/// One directive line as people write them.
fn directive(rng: &mut Rng, k: &Kw, value: &str) -> String {
    let name = if !k.aliases.is_empty() && rng.chance(30) {
        rng.pick(k.aliases)
    } else {
        k.name
    };
    let name = spell(rng, name);
    let sep = *rng.pick(&[" ", " ", "\t", "=", " = ", "  "]);
    let lead = *rng.pick(&["", "", "", "  ", "\t"]);
    let value = if value.contains(' ') {
        value.to_string()
    } else {
        quote(rng, value)
    };
    let tail = *rng.pick(&["", "", "", " # set by ops", "  "]);
    format!("{lead}{name}{sep}{value}{tail}")
}

const MATCHES: &[&str] = &[
    "Match User bob",
    "Match Group admins",
    "Match Address 10.0.0.0/8",
    "Match Host *.example.com",
    "Match LocalAddress 192.0.2.1",
    "Match User alice Address 192.168.0.0/16",
    "Match User !root,*",
];
const BAD_MATCHES: &[&str] = &[
    "Match Bogus x",
    "Match User",
    "Match all User x",
    "Match Address 10.0.0.1/8",
    "Match",
];

/// Files that may be included, by where they are included from. Main file:
/// any pattern of `MAIN_INCLUDES`; drop-ins may include `extra/`; nothing
/// else includes, so there is no loop.
const MAIN_INCLUDES: &[&str] = &[
    "sshd_config.d/*.conf",
    "/etc/ssh/sshd_config.d/*.conf",
    "sshd_config.d/[12]*.conf",
    "nested.conf",
    "/etc/ssh/nothing.d/*.conf",
    "extra/inc.conf sshd_config.d/.*.conf",
];
const DROP_INS: &[&str] = &[
    "sshd_config.d/10-a.conf",
    "sshd_config.d/20-b.conf",
    "sshd_config.d/50-cloud-init.conf",
    "sshd_config.d/.hidden.conf",
    "sshd_config.d/readme.txt",
];

struct Gen<'a> {
    rng: &'a mut Rng,
    /// Values already set, for "an invalid value behind a valid one".
    set: Vec<&'static Kw>,
}

impl Gen<'_> {
    /// Lines of one file: directives, comments, Includes (when `includes`
    /// has patterns) and Match blocks.
    fn lines(&mut self, count: usize, includes: &[&str]) -> Vec<String> {
        let mut out = Vec::new();
        let mut in_match = false;
        for _ in 0..count {
            let roll = self.rng.below(100);
            if roll < 6 {
                out.push(
                    self.rng
                        .pick(&["", "# comment", "#PermitRootLogin yes", "   "])
                        .to_string(),
                );
            } else if roll < 14 && !includes.is_empty() {
                let inc = self.rng.pick(includes);
                let kwd = spell(self.rng, "Include");
                out.push(format!("{kwd} {inc}"));
            } else if roll < 22 {
                let m = if self.rng.chance(45) {
                    spell(self.rng, "Match all").replace("MATCH ALL", "Match ALL")
                } else {
                    self.rng.pick(MATCHES).to_string()
                };
                in_match = !m.eq_ignore_ascii_case("match all");
                out.push(m);
            } else {
                let k = self.rng.pick(KEYWORDS);
                if in_match && !k.in_match {
                    continue;
                }
                let v = valid_value(self.rng, k);
                self.set.push(k);
                out.push(directive(self.rng, k, &v));
            }
        }
        out
    }

    /// An invalid line of one of the kinds sshd refuses.
    fn invalid(&mut self) -> Vec<String> {
        match self.rng.below(9) {
            0 => {
                let k = self.rng.pick(KEYWORDS);
                let v = valid_value(self.rng, k);
                let mut name: Vec<char> = k.name.chars().collect();
                let i = 1 + self.rng.below(name.len() - 2);
                name.remove(i);
                vec![format!("{} {v}", name.iter().collect::<String>())]
            }
            1 => {
                // A global-only keyword inside a Match block.
                let globals: Vec<&Kw> = KEYWORDS.iter().filter(|k| !k.in_match).collect();
                let k = *self.rng.pick(&globals);
                let v = valid_value(self.rng, k);
                vec![
                    self.rng.pick(MATCHES).to_string(),
                    directive(self.rng, k, &v),
                ]
            }
            2 => {
                // An invalid value behind a valid one.
                let k = if self.set.is_empty() {
                    self.rng.pick(KEYWORDS)
                } else {
                    *self.rng.pick(&self.set)
                };
                match invalid_value(self.rng, k) {
                    Some(v) => vec![directive(self.rng, k, &v)],
                    None => vec![format!("{} {} extra", k.name, valid_value(self.rng, k))],
                }
            }
            3 => vec![self.rng.pick(BAD_MATCHES).to_string()],
            4 => {
                let k = self.rng.pick(KEYWORDS);
                let v = valid_value(self.rng, k);
                vec![format!("{} \"{v}", k.name)]
            }
            5 => {
                // Missing or extra arguments.
                let k = self.rng.pick(KEYWORDS);
                if self.rng.chance(50) {
                    vec![k.name.to_string()]
                } else {
                    let v = valid_value(self.rng, k);
                    vec![format!("{} {v} {v}", k.name)]
                }
            }
            _ => {
                let k = self.rng.pick(KEYWORDS);
                match invalid_value(self.rng, k) {
                    Some(v) => vec![directive(self.rng, k, &v)],
                    None => vec![format!("{} \"unterminated", k.name)],
                }
            }
        }
    }
}

fn file_text(rng: &mut Rng, lines: &[String]) -> Vec<u8> {
    let nl = *rng.pick(NEWLINES);
    let mut s = lines.join(nl);
    if !rng.chance(10) {
        s.push_str(nl);
    }
    s.into_bytes()
}

fn generate(rng: &mut Rng) -> Case {
    let mut g = Gen {
        rng,
        set: Vec::new(),
    };
    let mut files: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let n = 3 + g.rng.below(14);
    files.insert("sshd_config".into(), g.lines(n, MAIN_INCLUDES));
    for d in DROP_INS {
        if g.rng.chance(50) {
            let n = 1 + g.rng.below(6);
            files.insert(
                (*d).into(),
                g.lines(n, &["extra/*.conf", "/etc/ssh/extra/inc.conf"]),
            );
        }
    }
    for f in ["nested.conf", "extra/inc.conf", "extra/z.conf"] {
        if g.rng.chance(50) {
            let n = 1 + g.rng.below(5);
            let inc: &[&str] = if f == "nested.conf" {
                &["extra/*.conf"]
            } else {
                &[]
            };
            files.insert(f.into(), g.lines(n, inc));
        }
    }
    // About one configuration in three carries something sshd refuses.
    if g.rng.chance(33) {
        let bad = g.invalid();
        let names: Vec<String> = files.keys().cloned().collect();
        let target = g.rng.pick(&names).clone();
        let lines = files.get_mut(&target).unwrap();
        let at = g.rng.below(lines.len() + 1);
        for (i, l) in bad.into_iter().enumerate() {
            lines.insert(at + i, l);
        }
    }
    let mut case = Case::default();
    for (name, lines) in files {
        let bytes = file_text(g.rng, &lines);
        case.files.insert(name, bytes);
    }
    case
}

// ---------------------------------------------------------------------------
// Running sshd -T
// ---------------------------------------------------------------------------

/// What `sshd -T` said about one case: its settings, or why it refused.
#[derive(Debug)]
enum Oracle {
    Settings(BTreeMap<String, String>),
    Refused(String),
}

/// Runs `sshd -T` for every case directory, several namespaces at a time,
/// each handling a batch of cases one after another.
fn run_oracle(sshd: &Path, work: &Path, cases: &[PathBuf]) -> Vec<Oracle> {
    let passwd = work.join("passwd");
    let mut pw = std::fs::read_to_string("/etc/passwd").unwrap();
    if !pw.lines().any(|l| l.starts_with("sshd:")) {
        pw.push_str("sshd:x:64999:65534:privilege separation:/run/sshd:/usr/sbin/nologin\n");
    }
    std::fs::write(&passwd, pw).unwrap();
    assert!(
        Path::new("/etc/ssh").is_dir(),
        "/etc/ssh must exist on this host as a mount point for the cases' etc/ssh"
    );
    // In the new namespace only: /run is a tmpfs, passwd and etc/ssh are
    // bind mounts. `set -e` stops at the first failing mount.
    let script = r#"set -e
mount -t tmpfs -o mode=0755 plumb-oracle /run
mkdir -m 0755 /run/sshd
mount --bind "$1" /etc/passwd
sshd=$2
shift 2
for c in "$@"; do
  mount --bind "$c/etc/ssh" /etc/ssh
  rc=0
  "$sshd" -T -f /etc/ssh/sshd_config >"$c/sshd.out" 2>"$c/sshd.err" || rc=$?
  echo "$rc" >"$c/sshd.rc"
  umount /etc/ssh
done
"#;
    let batches = std::thread::available_parallelism().map_or(2, |n| n.get()) * 2;
    let per = cases.len().div_ceil(batches).max(1);
    std::thread::scope(|s| {
        for chunk in cases.chunks(per) {
            let passwd = &passwd;
            s.spawn(move || {
                let out = Command::new("unshare")
                    .args([
                        "--mount",
                        "--propagation",
                        "private",
                        "sh",
                        "-c",
                        script,
                        "sh",
                    ])
                    .arg(passwd)
                    .arg(sshd)
                    .args(chunk)
                    .output()
                    .expect("cannot run unshare");
                assert!(
                    out.status.success(),
                    "the sshd -T namespace failed (root needed): {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            });
        }
    });
    cases
        .iter()
        .map(|c| {
            let rc = std::fs::read_to_string(c.join("sshd.rc")).unwrap();
            let err = std::fs::read_to_string(c.join("sshd.err")).unwrap();
            if rc.trim() != "0" {
                return Oracle::Refused(err.trim().to_string());
            }
            let mut settings: BTreeMap<String, String> = BTreeMap::new();
            for line in std::fs::read_to_string(c.join("sshd.out")).unwrap().lines() {
                let (k, v) = line.split_once(' ').unwrap_or((line, ""));
                settings
                    .entry(k.to_string())
                    .and_modify(|old| {
                        old.push(' ');
                        old.push_str(v);
                    })
                    .or_insert_with(|| v.to_string());
            }
            Oracle::Settings(settings)
        })
        .collect()
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{name}={v} is not a number")),
        Err(_) => default,
    }
}

/// The package version of the sshd under test: beside it (test-oracles.sh
/// writes it) or from PLUMB_TEST_SSHD_VERSION.
fn sshd_version(sshd: &Path) -> String {
    if let Ok(v) = std::env::var("PLUMB_TEST_SSHD_VERSION") {
        return v;
    }
    let file = sshd.with_file_name("openssh-server.version");
    std::fs::read_to_string(&file)
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}; set PLUMB_TEST_SSHD_VERSION to the openssh-server package version of {}",
                file.display(),
                sshd.display()
            )
        })
}

fn host_key(work: &Path) -> (Vec<u8>, Vec<u8>) {
    let key = work.join("host_ed25519");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "plumb-oracle", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen is needed to make the cases' host key");
    assert!(st.success(), "ssh-keygen failed");
    (
        std::fs::read(&key).unwrap(),
        std::fs::read(key.with_extension("pub")).unwrap(),
    )
}

/// sshd -T's name of a keyword (its first spelling in sshd's table).
fn dump_name(k: &Kw) -> String {
    k.name.to_ascii_lowercase()
}

/// Values agree: the same text, except that the words of enumerations are
/// compared without regard to case, as the `sshd` check compares them.
fn same(k: &Kw, sshd: Option<&String>, plumb: Option<&String>) -> bool {
    match (sshd, plumb) {
        (Some(a), Some(b)) if matches!(k.values, Values::Flag | Values::Words(..)) => {
            a.eq_ignore_ascii_case(b)
        }
        (a, b) => a == b,
    }
}

/// Agreement counts of one keyword over the configurations sshd accepted
/// and over those it refused.
#[derive(Default)]
struct Tally {
    accepted: (usize, usize),
    refused: (usize, usize),
}

fn pct((agree, total): (usize, usize)) -> String {
    if total == 0 {
        return "-".into();
    }
    format!(
        "{agree}/{total} ({:.1}%)",
        100.0 * agree as f64 / total as f64
    )
}

#[test]
#[ignore = "needs sshd: set PLUMB_TEST_SSHD (scripts/test-oracles.sh)"]
fn plumb_agrees_with_sshd_t() {
    let sshd = PathBuf::from(std::env::var_os("PLUMB_TEST_SSHD").unwrap_or_else(|| {
        panic!(
            "PLUMB_TEST_SSHD is not set: run eval \"$(scripts/test-oracles.sh)\", then \
             cargo test --workspace -- --ignored sshd_oracle"
        )
    }));
    assert!(
        sshd.is_file(),
        "PLUMB_TEST_SSHD={} is not a file",
        sshd.display()
    );
    let version = sshd_version(&sshd);
    let count: usize = env_or("PLUMB_SSHD_ORACLE_CASES", DEFAULT_CASES);
    let seed: u64 = env_or("PLUMB_SSHD_ORACLE_SEED", DEFAULT_SEED);

    let work = tempfile::tempdir().unwrap();
    let (key, key_pub) = host_key(work.path());
    let status = format!(
        "Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: {version}\n\n"
    );
    let mut rng = Rng(seed);
    let mut cases = Vec::new();
    let mut dirs = Vec::new();
    for i in 0..count {
        let case = generate(&mut rng);
        let dir = work.path().join(format!("case-{i:04}"));
        for (name, bytes) in &case.files {
            let p = dir.join("etc/ssh").join(name);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, bytes).unwrap();
        }
        let key_path = dir.join("etc/ssh/ssh_host_ed25519_key");
        std::fs::write(&key_path, &key).unwrap();
        std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(dir.join("etc/ssh/ssh_host_ed25519_key.pub"), &key_pub).unwrap();
        std::fs::create_dir_all(dir.join("var/lib/dpkg")).unwrap();
        std::fs::write(dir.join("var/lib/dpkg/status"), &status).unwrap();
        cases.push(case);
        dirs.push(dir);
    }
    let oracle = run_oracle(&sshd, work.path(), &dirs);

    let mut tally: BTreeMap<&str, Tally> = BTreeMap::new();
    let refused = oracle
        .iter()
        .filter(|o| matches!(o, Oracle::Refused(_)))
        .count();
    let mut failures = Vec::new();
    for ((case, dir), said) in cases.iter().zip(&dirs).zip(&oracle) {
        let mut bad = String::new();
        for k in KEYWORDS {
            let plumb = plumb_agent::sshd_effective_value(dir, k.name);
            let ok = match (said, &plumb) {
                (Oracle::Refused(_), Err(_)) => true,
                (Oracle::Settings(s), Ok(v)) => same(k, s.get(&dump_name(k)), v.as_ref()),
                _ => false,
            };
            let t = tally.entry(k.name).or_default();
            let slot = match said {
                Oracle::Refused(_) => &mut t.refused,
                Oracle::Settings(_) => &mut t.accepted,
            };
            slot.1 += 1;
            if ok {
                slot.0 += 1;
            } else {
                let sshd_said = match said {
                    Oracle::Refused(why) => format!("refused: {why}"),
                    Oracle::Settings(s) => format!("{:?}", s.get(&dump_name(k))),
                };
                let _ = writeln!(bad, "  {}: sshd {sshd_said}; plumb {plumb:?}", k.name);
            }
        }
        if !bad.is_empty() {
            let mut text = format!("{}:\n{bad}", dir.display());
            for (name, bytes) in &case.files {
                let _ = writeln!(
                    text,
                    "  --- {name}\n{}",
                    String::from_utf8_lossy(bytes)
                        .lines()
                        .map(|l| format!("    {l:?}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                );
            }
            failures.push(text);
        }
    }
    let mut table = format!(
        "sshd -T ({version}) vs plumb, seed {seed}: {count} configurations, {} accepted by sshd, {refused} refused\n  {:<30} {:>20} {:>20}\n",
        count - refused,
        "keyword",
        "accepted configs",
        "refused configs"
    );
    let mut all = Tally::default();
    for (k, t) in &tally {
        all.accepted.0 += t.accepted.0;
        all.accepted.1 += t.accepted.1;
        all.refused.0 += t.refused.0;
        all.refused.1 += t.refused.1;
        let _ = writeln!(
            table,
            "  {k:<30} {:>20} {:>20}",
            pct(t.accepted),
            pct(t.refused)
        );
    }
    let _ = writeln!(
        table,
        "  {:<30} {:>20} {:>20}\n  all pairs: {}",
        "all keywords",
        pct(all.accepted),
        pct(all.refused),
        pct((
            all.accepted.0 + all.refused.0,
            all.accepted.1 + all.refused.1
        ))
    );
    eprintln!("{table}");
    assert!(
        failures.is_empty(),
        "{} of {count} configurations disagree (first ones below)\n{}",
        failures.len(),
        failures
            .iter()
            .take(8)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Both kinds of configuration were exercised.
    assert!(
        refused > count / 10 && count - refused > count / 2,
        "{table}"
    );
}
