//! The keywords of sshd 9.2p1 as Debian builds it (PAM, Kerberos, GSSAPI
//! key exchange, `DebianBanner`), from `keywords[]` and
//! `process_server_config_line_depth` in servconf.c: where each may appear,
//! what values it accepts, how repeated lines combine, and how `sshd -T`
//! prints the result. Values are kept in `sshd -T`'s form, so that the
//! `sshd` check compares what sshd really uses and the differential test
//! (`tests/suite/sshd_oracle.rs`) can compare text with text.

use super::Refusal;
use super::builds::{self, Build};

/// Where a keyword may appear (`SSHCFG_GLOBAL` / `SSHCFG_ALL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scope {
    /// Only outside Match blocks (or in an active `Match all`).
    Global,
    /// Also inside Match blocks.
    Any,
}

/// The value a keyword takes, as servconf.c parses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    /// `yes`/`no`, any case.
    Flag,
    /// One of fixed words, any case; `sshd -T` prints the first word of the
    /// table with the same meaning.
    Words(&'static [(&'static str, u8)]),
    /// An integer from 0 to 2^31-1 (`atoi_err`).
    Int,
    /// A time (`convtime`): `90`, `1m30s`; printed in seconds.
    Time,
    /// A time or `none` (printed `none`).
    TimeOrNone,
    LogLevel,
    Facility,
    /// A digest name (`FingerprintHash`).
    Digest,
    /// A file name, made absolute (`derelativise_path`).
    Path,
    /// A file name with `~` expanded only (`tilde_expand_filename`).
    TildePath,
    /// One word, kept as written.
    Word,
    /// The rest of the line (`ForceCommand`, `VersionAddendum`).
    Rest,
    /// The rest of the line: an absolute command or `none`.
    Command,
    Ciphers,
    Macs,
    Kex,
    /// Key or signature algorithms (wildcards allowed).
    KeyAlgorithms {
        ca: bool,
    },
    GssKex,
    /// `AllowUsers`/`DenyUsers` patterns (`user@host` checked).
    UserPatterns,
    /// `AllowGroups`/`DenyGroups` patterns.
    Groups,
    /// `AcceptEnv` names.
    EnvNames,
    /// `SetEnv NAME=VALUE`.
    SetEnv,
    /// `AuthorizedKeysFile` names.
    KeyFiles,
    Port,
    ListenAddress,
    MaxStartups,
    PerSourceMaxStartups,
    NetBlockSize,
    PermitUserEnvironment,
    PermitTunnel,
    PubkeyAuthOptions,
    RekeyLimit,
    IpQos,
    AuthenticationMethods,
    /// An octal mode up to 0777.
    Mask,
    PermitOpen {
        listen: bool,
    },
    ChannelTimeout,
    LogVerbose,
    Subsystem,
    /// `RDomain`: sshd on Linux refuses it.
    Unsupported,
    /// Deprecated or unsupported keywords sshd accepts and ignores.
    Ignored,
}

/// How several lines setting the same keyword combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Merge {
    /// The first line wins.
    First,
    /// Every line overrides the previous one.
    Last,
    /// Every line adds its items.
    Append,
    /// The items of the first line.
    FirstLine,
    /// `MaxStartups`: `A:B:C` sets all three, `A` sets the first and last.
    Startups,
    /// `RekeyLimit`: first limit, first interval.
    Rekey,
    /// `UnusedConnectionTimeout`: `none` always wins, a time only first.
    TimeoutOrNone,
    /// Nothing is kept.
    Nothing,
}

/// What sshd uses when no line sets the keyword.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DefaultValue {
    /// As `sshd -T` prints it.
    Text(&'static str),
    /// The build's default algorithm list.
    Algorithms,
    /// Nothing: `sshd -T` prints no line.
    Unset,
}

/// One keyword of sshd.
#[derive(Debug)]
pub(crate) struct Keyword {
    /// Lower case, as `sshd -T` prints it.
    pub name: &'static str,
    /// As sshd_config(5) writes it.
    pub display: &'static str,
    pub scope: Scope,
    pub syntax: Syntax,
    pub merge: Merge,
    /// Settable per connection: a matching Match block (`Match all` when
    /// there is no connection) overrides the global value
    /// (`copy_set_server_options`).
    pub per_connection: bool,
    pub default: DefaultValue,
}

const YES_NO: &[(&str, u8)] = &[("yes", 1), ("no", 0)];
const PERMIT_ROOT: &[(&str, u8)] = &[
    ("without-password", 2),
    ("prohibit-password", 2),
    ("forced-commands-only", 3),
    ("yes", 1),
    ("no", 0),
];
const IGNORE_RHOSTS: &[(&str, u8)] = &[("yes", 1), ("no", 0), ("shosts-only", 2)];
const ADDRESS_FAMILY: &[(&str, u8)] = &[("inet", 4), ("inet6", 6), ("any", 0)];
const COMPRESSION: &[(&str, u8)] = &[("yes", 2), ("delayed", 2), ("no", 0)];
const GATEWAY_PORTS: &[(&str, u8)] = &[("clientspecified", 2), ("yes", 1), ("no", 0)];
const FORWARDING: &[(&str, u8)] = &[
    ("yes", 3),
    ("all", 3),
    ("no", 0),
    ("remote", 2),
    ("local", 1),
];
/// `log_levels[]` of log.c: `sshd -T` prints the first name of a level.
const LOG_LEVELS: &[(&str, u8)] = &[
    ("SILENT", 0),
    ("QUIET", 0),
    ("FATAL", 1),
    ("ERROR", 2),
    ("INFO", 3),
    ("VERBOSE", 4),
    ("DEBUG", 5),
    ("DEBUG1", 5),
    ("DEBUG2", 6),
    ("DEBUG3", 7),
];
const FACILITIES: &[&str] = &[
    "DAEMON", "USER", "AUTH", "AUTHPRIV", "LOCAL0", "LOCAL1", "LOCAL2", "LOCAL3", "LOCAL4",
    "LOCAL5", "LOCAL6", "LOCAL7",
];
const DIGESTS: &[&str] = &["MD5", "SHA1", "SHA256", "SHA384", "SHA512"];
/// `ipqos[]` of misc.c (`none` is INT_MAX there).
const IPQOS: &[(&str, u32)] = &[
    ("none", u32::MAX),
    ("af11", 0x28),
    ("af12", 0x30),
    ("af13", 0x38),
    ("af21", 0x48),
    ("af22", 0x50),
    ("af23", 0x58),
    ("af31", 0x68),
    ("af32", 0x70),
    ("af33", 0x78),
    ("af41", 0x88),
    ("af42", 0x90),
    ("af43", 0x98),
    ("cs0", 0x00),
    ("cs1", 0x20),
    ("cs2", 0x40),
    ("cs3", 0x60),
    ("cs4", 0x80),
    ("cs5", 0xa0),
    ("cs6", 0xc0),
    ("cs7", 0xe0),
    ("ef", 0xb8),
    ("le", 0x04),
    ("lowdelay", 0x10),
    ("throughput", 0x08),
    ("reliability", 0x04),
];
/// `authmethods[]` of auth2.c.
const AUTH_METHODS: &[&str] = &[
    "none",
    "publickey",
    "gssapi-keyex",
    "gssapi-with-mic",
    "password",
    "keyboard-interactive",
    "hostbased",
];
/// Most `Port` and `Subsystem` lines (`MAX_PORTS`, `MAX_SUBSYSTEMS`).
pub(crate) const MAX_PORTS: usize = 256;

use DefaultValue::{Algorithms as Algs, Text, Unset};
use Merge::{Append, First, FirstLine, Last};
use Scope::{Any, Global};
use Syntax::*;

const fn k(
    name: &'static str,
    display: &'static str,
    scope: Scope,
    syntax: Syntax,
    merge: Merge,
    per_connection: bool,
    default: DefaultValue,
) -> Keyword {
    Keyword {
        name,
        display,
        scope,
        syntax,
        merge,
        per_connection,
        default,
    }
}

const fn flag(
    name: &'static str,
    display: &'static str,
    scope: Scope,
    per_connection: bool,
    default: &'static str,
) -> Keyword {
    k(
        name,
        display,
        scope,
        Flag,
        First,
        per_connection,
        Text(default),
    )
}

const fn ignored(name: &'static str, scope: Scope) -> Keyword {
    k(name, name, scope, Ignored, Merge::Nothing, false, Unset)
}

/// Every keyword, under the name `sshd -T` prints (aliases below), as
/// servconf.c's `keywords[]`: `k(name, display, where, syntax, merge,
/// per connection, default)`; `flag` is a yes/no keyword with its default.
/// One line per keyword, as a table is read.
#[rustfmt::skip]
const KEYWORDS: &[Keyword] = &[
    flag("usepam", "UsePAM", Global, false, "no"),
    k("port", "Port", Global, Port, Append, false, Text("22")),
    k("hostkey", "HostKey", Global, Path, Append, false, Text("/etc/ssh/ssh_host_rsa_key /etc/ssh/ssh_host_ecdsa_key /etc/ssh/ssh_host_ed25519_key")),
    k("hostkeyagent", "HostKeyAgent", Global, Path, First, false, Text("none")),
    k("pidfile", "PidFile", Global, Path, First, false, Text("/run/sshd.pid")),
    k("modulifile", "ModuliFile", Global, Path, First, false, Text("/etc/ssh/moduli")),
    k("logingracetime", "LoginGraceTime", Global, Time, First, false, Text("120")),
    k("permitrootlogin", "PermitRootLogin", Any, Words(PERMIT_ROOT), First, true, Text("without-password")),
    k("syslogfacility", "SyslogFacility", Global, Facility, First, false, Text("AUTH")),
    k("loglevel", "LogLevel", Any, LogLevel, First, true, Text("INFO")),
    k("logverbose", "LogVerbose", Any, LogVerbose, FirstLine, true, Unset),
    flag("hostbasedauthentication", "HostbasedAuthentication", Any, true, "no"),
    flag("hostbasedusesnamefrompacketonly", "HostbasedUsesNameFromPacketOnly", Any, true, "no"),
    k("hostbasedacceptedalgorithms", "HostbasedAcceptedAlgorithms", Any, KeyAlgorithms { ca: false }, First, true, Algs),
    k("hostkeyalgorithms", "HostKeyAlgorithms", Global, KeyAlgorithms { ca: false }, First, false, Algs),
    flag("pubkeyauthentication", "PubkeyAuthentication", Any, true, "yes"),
    k("pubkeyacceptedalgorithms", "PubkeyAcceptedAlgorithms", Any, KeyAlgorithms { ca: false }, First, true, Algs),
    k("pubkeyauthoptions", "PubkeyAuthOptions", Any, PubkeyAuthOptions, First, true, Text("none")),
    flag("kerberosauthentication", "KerberosAuthentication", Any, true, "no"),
    flag("kerberosorlocalpasswd", "KerberosOrLocalPasswd", Global, false, "yes"),
    flag("kerberosticketcleanup", "KerberosTicketCleanup", Global, false, "yes"),
    flag("gssapiauthentication", "GSSAPIAuthentication", Any, true, "no"),
    flag("gssapicleanupcredentials", "GSSAPICleanupCredentials", Global, false, "yes"),
    flag("gssapistrictacceptorcheck", "GSSAPIStrictAcceptorCheck", Global, false, "yes"),
    flag("gssapikeyexchange", "GSSAPIKeyExchange", Global, false, "no"),
    flag("gssapistorecredentialsonrekey", "GSSAPIStoreCredentialsOnRekey", Global, false, "no"),
    k("gssapikexalgorithms", "GSSAPIKexAlgorithms", Global, GssKex, First, false, Text("gss-group14-sha256-,gss-group16-sha512-,gss-nistp256-sha256-,gss-curve25519-sha256-,gss-group14-sha1-,gss-gex-sha1-")),
    flag("passwordauthentication", "PasswordAuthentication", Any, true, "yes"),
    flag("kbdinteractiveauthentication", "KbdInteractiveAuthentication", Any, true, "yes"),
    k("listenaddress", "ListenAddress", Global, ListenAddress, Append, false, Unset),
    k("addressfamily", "AddressFamily", Global, Words(ADDRESS_FAMILY), First, false, Text("any")),
    flag("printmotd", "PrintMotd", Global, false, "yes"),
    flag("printlastlog", "PrintLastLog", Global, false, "yes"),
    k("ignorerhosts", "IgnoreRhosts", Any, Words(IGNORE_RHOSTS), First, true, Text("yes")),
    flag("ignoreuserknownhosts", "IgnoreUserKnownHosts", Global, false, "no"),
    flag("x11forwarding", "X11Forwarding", Any, true, "no"),
    k("x11displayoffset", "X11DisplayOffset", Any, Int, First, true, Text("10")),
    flag("x11uselocalhost", "X11UseLocalhost", Any, true, "yes"),
    k("xauthlocation", "XAuthLocation", Global, Path, First, false, Text("/usr/bin/xauth")),
    flag("strictmodes", "StrictModes", Global, false, "yes"),
    flag("permitemptypasswords", "PermitEmptyPasswords", Any, true, "no"),
    k("permituserenvironment", "PermitUserEnvironment", Global, PermitUserEnvironment, First, false, Text("no")),
    k("compression", "Compression", Global, Words(COMPRESSION), First, false, Text("yes")),
    k("rekeylimit", "RekeyLimit", Any, RekeyLimit, Merge::Rekey, true, Text("0 0")),
    flag("tcpkeepalive", "TCPKeepAlive", Global, false, "yes"),
    k("allowtcpforwarding", "AllowTcpForwarding", Any, Words(FORWARDING), First, true, Text("yes")),
    flag("allowagentforwarding", "AllowAgentForwarding", Any, true, "yes"),
    k("allowusers", "AllowUsers", Any, UserPatterns, Append, true, Unset),
    k("denyusers", "DenyUsers", Any, UserPatterns, Append, true, Unset),
    k("allowgroups", "AllowGroups", Any, Groups, Append, true, Unset),
    k("denygroups", "DenyGroups", Any, Groups, Append, true, Unset),
    k("ciphers", "Ciphers", Global, Ciphers, First, false, Algs),
    k("macs", "MACs", Global, Macs, First, false, Algs),
    ignored("protocol", Global),
    k("gatewayports", "GatewayPorts", Any, Words(GATEWAY_PORTS), First, true, Text("no")),
    k("subsystem", "Subsystem", Global, Subsystem, Append, false, Unset),
    k("maxstartups", "MaxStartups", Global, MaxStartups, Merge::Startups, false, Text("10:30:100")),
    k("persourcemaxstartups", "PerSourceMaxStartups", Global, PerSourceMaxStartups, Last, false, Text("none")),
    k("persourcenetblocksize", "PerSourceNetBlockSize", Global, NetBlockSize, Last, false, Text("32:128")),
    k("maxauthtries", "MaxAuthTries", Any, Int, First, true, Text("6")),
    k("maxsessions", "MaxSessions", Any, Int, First, true, Text("10")),
    k("banner", "Banner", Any, Path, First, true, Text("none")),
    flag("usedns", "UseDNS", Global, false, "no"),
    k("clientaliveinterval", "ClientAliveInterval", Any, Time, First, true, Text("0")),
    k("clientalivecountmax", "ClientAliveCountMax", Any, Int, First, true, Text("3")),
    k("authorizedkeysfile", "AuthorizedKeysFile", Any, KeyFiles, FirstLine, true, Text(".ssh/authorized_keys .ssh/authorized_keys2")),
    k("acceptenv", "AcceptEnv", Any, EnvNames, Append, true, Unset),
    k("setenv", "SetEnv", Any, SetEnv, FirstLine, true, Unset),
    k("permittunnel", "PermitTunnel", Any, PermitTunnel, First, true, Text("no")),
    flag("permittty", "PermitTTY", Any, true, "yes"),
    flag("permituserrc", "PermitUserRC", Any, true, "yes"),
    k("permitopen", "PermitOpen", Any, PermitOpen { listen: false }, FirstLine, true, Text("any")),
    k("permitlisten", "PermitListen", Any, PermitOpen { listen: true }, FirstLine, true, Text("any")),
    k("forcecommand", "ForceCommand", Any, Rest, First, true, Text("none")),
    k("chrootdirectory", "ChrootDirectory", Any, Word, First, true, Text("none")),
    k("hostcertificate", "HostCertificate", Global, Path, Append, false, Unset),
    k("revokedkeys", "RevokedKeys", Any, Path, First, true, Text("none")),
    k("trustedusercakeys", "TrustedUserCAKeys", Any, Path, First, true, Text("none")),
    k("authorizedprincipalsfile", "AuthorizedPrincipalsFile", Any, TildePath, First, true, Text("none")),
    k("kexalgorithms", "KexAlgorithms", Global, Kex, First, false, Algs),
    k("ipqos", "IPQoS", Any, IpQos, Last, true, Text("lowdelay throughput")),
    k("authorizedkeyscommand", "AuthorizedKeysCommand", Any, Command, First, true, Text("none")),
    k("authorizedkeyscommanduser", "AuthorizedKeysCommandUser", Any, Word, First, true, Text("none")),
    k("authorizedprincipalscommand", "AuthorizedPrincipalsCommand", Any, Command, First, true, Text("none")),
    k("authorizedprincipalscommanduser", "AuthorizedPrincipalsCommandUser", Any, Word, First, true, Text("none")),
    k("versionaddendum", "VersionAddendum", Global, Rest, First, false, Text("none")),
    k("authenticationmethods", "AuthenticationMethods", Any, AuthenticationMethods, FirstLine, true, Text("any")),
    k("streamlocalbindmask", "StreamLocalBindMask", Any, Mask, Last, true, Text("0177")),
    flag("streamlocalbindunlink", "StreamLocalBindUnlink", Any, true, "no"),
    k("allowstreamlocalforwarding", "AllowStreamLocalForwarding", Any, Words(FORWARDING), First, true, Text("yes")),
    k("fingerprinthash", "FingerprintHash", Global, Digest, Last, false, Text("SHA256")),
    flag("disableforwarding", "DisableForwarding", Any, true, "no"),
    flag("exposeauthinfo", "ExposeAuthInfo", Any, true, "no"),
    k("rdomain", "RDomain", Any, Unsupported, Merge::Nothing, false, Unset),
    k("casignaturealgorithms", "CASignatureAlgorithms", Any, KeyAlgorithms { ca: true }, First, true, Algs),
    k("securitykeyprovider", "SecurityKeyProvider", Global, Path, First, false, Text("internal")),
    k("requiredrsasize", "RequiredRSASize", Any, Int, First, true, Text("1024")),
    k("channeltimeout", "ChannelTimeout", Any, ChannelTimeout, FirstLine, true, Unset),
    k("unusedconnectiontimeout", "UnusedConnectionTimeout", Any, TimeOrNone, Merge::TimeoutOrNone, true, Text("none")),
    flag("debianbanner", "DebianBanner", Global, false, "yes"),
    // Accepted and ignored: deprecated, or not built into Debian's sshd.
    ignored("pamauthenticationviakbdint", Global),
    ignored("serverkeybits", Global),
    ignored("keyregenerationinterval", Global),
    ignored("rhostsauthentication", Global),
    ignored("rhostsrsaauthentication", Any),
    ignored("rsaauthentication", Any),
    ignored("kerberosgetafstoken", Global),
    ignored("kerberostgtpassing", Global),
    ignored("afstokenpassing", Global),
    ignored("gssusesessionccache", Global),
    ignored("gssapiusesessioncredcache", Global),
    ignored("checkmail", Global),
    ignored("permitblacklistedkeys", Global),
    ignored("uselogin", Global),
    ignored("verifyreversemapping", Global),
    ignored("reversemappingcheck", Global),
    ignored("authorizedkeysfile2", Any),
    ignored("useprivilegeseparation", Global),
];

/// Other spellings: (alias, keyword, where the alias may appear).
const ALIASES: &[(&str, &str, Scope)] = &[
    ("hostdsakey", "hostkey", Global),
    (
        "hostbasedacceptedkeytypes",
        "hostbasedacceptedalgorithms",
        Any,
    ),
    ("pubkeyacceptedkeytypes", "pubkeyacceptedalgorithms", Any),
    ("dsaauthentication", "pubkeyauthentication", Global),
    ("gssapicleanupcreds", "gssapicleanupcredentials", Global),
    (
        "challengeresponseauthentication",
        "kbdinteractiveauthentication",
        Any,
    ),
    ("skeyauthentication", "kbdinteractiveauthentication", Any),
    ("keepalive", "tcpkeepalive", Global),
];

/// The keyword a spelling names (any case) and where that spelling may
/// appear; `None` for a keyword sshd does not know.
pub(crate) fn lookup(spelling: &str) -> Option<(&'static Keyword, Scope)> {
    let s = spelling.to_ascii_lowercase();
    if let Some(k) = KEYWORDS.iter().find(|k| k.name == s) {
        return Some((k, k.scope));
    }
    let (_, target, scope) = ALIASES.iter().find(|(a, _, _)| *a == s)?;
    KEYWORDS
        .iter()
        .find(|k| k.name == *target)
        .map(|k| (k, *scope))
}

/// The keyword named (or aliased) by `spelling`.
pub(crate) fn keyword(spelling: &str) -> Option<&'static Keyword> {
    lookup(spelling).map(|(k, _)| k)
}

/// Every keyword, for validating the whole configuration.
pub(crate) fn all() -> &'static [Keyword] {
    KEYWORDS
}

/// What one line contributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// A scalar, as `sshd -T` prints it (an algorithm list as written:
    /// it is assembled against the build's lists when printed).
    One(String),
    /// List items.
    Items(Vec<String>),
    /// `MaxStartups`: start, rate (when given), full.
    Startups(i64, Option<i64>, i64),
    /// `RekeyLimit`: limit, interval when given.
    Rekey(i64, Option<i64>),
    /// `UnusedConnectionTimeout none`.
    NoTimeout,
    /// Accepted, sets nothing.
    Nothing,
}

/// What the checked root tells about names in values (`getservbyname`).
pub(crate) trait Names {
    /// The TCP port of a service name in /etc/services.
    fn service_port(&self, name: &str) -> Option<u16>;
}

/// Parses one line's arguments for keyword `k` as servconf.c does. `rest`
/// is the line after the keyword (for keywords that take the whole rest).
pub(crate) fn parse(
    k: &Keyword,
    spelling: &str,
    args: &[String],
    rest: &str,
    names: &dyn Names,
    build: &Build,
) -> Result<Parsed, Refusal> {
    let mut it = Args {
        args,
        next: 0,
        spelling,
    };
    let parsed = parse_args(k, &mut it, rest, names, build)?;
    if it.next < args.len() {
        return Err(Refusal(format!(
            "keyword {spelling} extra arguments at end of line"
        )));
    }
    Ok(parsed)
}

struct Args<'a> {
    args: &'a [String],
    next: usize,
    spelling: &'a str,
}

impl Args<'_> {
    fn next(&mut self) -> Option<&str> {
        let a = self.args.get(self.next)?;
        self.next += 1;
        Some(a)
    }
    /// The next argument, which must be there and not empty.
    fn required(&mut self) -> Result<&str, Refusal> {
        let spelling = self.spelling;
        match self.next() {
            Some(a) if !a.is_empty() => Ok(a),
            _ => Err(Refusal(format!("{spelling} missing argument"))),
        }
    }
    fn consume(&mut self) {
        self.next = self.args.len();
    }
}

fn parse_args(
    k: &Keyword,
    it: &mut Args<'_>,
    rest: &str,
    names: &dyn Names,
    build: &Build,
) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    Ok(match k.syntax {
        Flag => Parsed::One(word(it.required()?, YES_NO, kw)?),
        Words(table) => Parsed::One(word(it.required()?, table, kw)?),
        Int => int(it)?,
        Time => Parsed::One(time(it.next().unwrap_or(""))?.to_string()),
        TimeOrNone => {
            let a = it.required()?;
            if a.eq_ignore_ascii_case("none") {
                Parsed::NoTimeout
            } else {
                Parsed::One(time(a)?.to_string())
            }
        }
        LogLevel => log_level(it)?,
        Facility => facility(it)?,
        Digest => digest(it)?,
        Path => path(k, it)?,
        TildePath => Parsed::One(tilde(it.required()?)?),
        Word => Parsed::One(it.required()?.to_string()),
        Rest | Command => rest_of_line(k, it, rest)?,
        Ciphers | Macs | Kex => algorithms(k, it, build)?,
        KeyAlgorithms { .. } => key_algorithms(it)?,
        GssKex => gss_kex(it)?,
        UserPatterns => user_patterns(it)?,
        Groups => groups(it)?,
        EnvNames => env_names(it)?,
        SetEnv => set_env(it)?,
        KeyFiles => key_files(it)?,
        Port => one_port(it, names)?,
        ListenAddress => listen(it, names)?,
        MaxStartups => max_startups(it)?,
        PerSourceMaxStartups => per_source_max_startups(it)?,
        NetBlockSize => net_block_size(it)?,
        PermitUserEnvironment => {
            let a = it.required()?;
            Parsed::One(a.to_string())
        }
        PermitTunnel => permit_tunnel(it)?,
        PubkeyAuthOptions => pubkey_auth_options(it)?,
        RekeyLimit => rekey_limit(it)?,
        IpQos => ip_qos(it)?,
        AuthenticationMethods => authentication_methods(it)?,
        Mask => umask(it)?,
        PermitOpen { listen } => permit_open(it, listen, names)?,
        ChannelTimeout => channel_timeout(it)?,
        LogVerbose => log_verbose(it)?,
        Subsystem => subsystem(it)?,
        Unsupported => {
            return Err(Refusal(format!(
                "setting {} not supported on this platform.",
                k.display
            )));
        }
        Ignored => {
            it.consume();
            Parsed::Nothing
        }
    })
}

/// `Int` arguments.
fn int(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.next().unwrap_or("");
    match atoi(a) {
        Ok(n) => Ok(Parsed::One(n.to_string())),
        Err(e) => Err(Refusal(format!("{kw} integer value {e}"))),
    }
}

/// `LogLevel`.
fn log_level(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.next().unwrap_or("");
    Ok(Parsed::One(
        word(a, LOG_LEVELS, kw).map_err(|_| format!("unsupported log level '{a}'"))?,
    ))
}

/// `SyslogFacility`.
fn facility(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let a = it.next().unwrap_or("");
    match FACILITIES.iter().find(|f| f.eq_ignore_ascii_case(a)) {
        Some(f) => Ok(Parsed::One((*f).to_string())),
        None => Err(Refusal(format!("unsupported log facility '{a}'"))),
    }
}

/// `FingerprintHash`.
fn digest(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    match DIGESTS.iter().find(|d| d.eq_ignore_ascii_case(a)) {
        Some(d) => Ok(Parsed::One((*d).to_string())),
        None => Err(Refusal(format!("Invalid {kw} algorithm \"{a}\""))),
    }
}

/// `Port`: one port per line.
fn one_port(it: &mut Args<'_>, names: &dyn Names) -> Result<Parsed, Refusal> {
    let a = it.required()?;
    match port(a, names) {
        Some(p) if p > 0 => Ok(Parsed::Items(vec![p.to_string()])),
        _ => Err("Badly formatted port number.".into()),
    }
}

/// `PermitTunnel`.
fn permit_tunnel(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    if !["no", "point-to-point", "ethernet", "yes"].contains(&a) {
        return Err(Refusal(format!("bad {kw} argument {a}")));
    }
    Ok(Parsed::One(a.to_string()))
}

/// `Path` arguments.
fn path(k: &Keyword, it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let a = it.required()?;
    let special = match k.name {
        "hostkeyagent" => a == "SSH_AUTH_SOCK",
        "securitykeyprovider" => a.eq_ignore_ascii_case("internal"),
        _ => false,
    };
    Ok(Parsed::One(if special {
        a.to_string()
    } else {
        derelativise(a)?
    }))
}

/// `Rest` and `Command`: the rest of the line, as one value.
fn rest_of_line(k: &Keyword, it: &mut Args<'_>, rest: &str) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let text = rest.trim_start_matches([' ', '\t', '\r', '\n']);
    if text.is_empty() {
        return Err(Refusal(format!("{kw} missing argument")));
    }
    it.consume();
    if k.syntax == Command && !text.starts_with('/') && !text.eq_ignore_ascii_case("none") {
        return Err(Refusal(format!("{kw} must be an absolute path")));
    }
    if k.name == "versionaddendum" {
        if text.contains('\r') {
            return Err(Refusal(format!("Invalid {kw} argument")));
        }
        // The addendum ends at a `#`, trailing white space dropped.
        let text = text.split('#').next().unwrap_or("").trim_end();
        let text = if text.eq_ignore_ascii_case("none") || text.is_empty() {
            "none"
        } else {
            text
        };
        return Ok(Parsed::One(text.to_string()));
    }
    Ok(Parsed::One(text.to_string()))
}

/// `Ciphers`, `MACs`, `KexAlgorithms`: a list checked against the build.
fn algorithms(k: &Keyword, it: &mut Args<'_>, build: &Build) -> Result<Parsed, Refusal> {
    let a = it.required()?;
    if !a.starts_with('-') {
        let names = a.strip_prefix(['+', '^']).unwrap_or(a);
        let ok = match k.syntax {
            Ciphers => names_valid(names, |n| has(builds::CIPHERS_ALL, n)),
            Macs => names_valid(names, |n| has(builds::MACS_ALL, n)),
            _ => names_valid(names, |n| {
                has(build.kex_all, n) || builds::GSS_KEX_PREFIXES.iter().any(|p| n.starts_with(p))
            }),
        };
        if !ok {
            return Err(Refusal(match k.syntax {
                Ciphers => format!("Bad SSH2 cipher spec '{a}'"),
                Macs => format!("Bad SSH2 mac spec '{a}'"),
                _ => format!("Bad SSH2 KexAlgorithms '{a}'"),
            }));
        }
    }
    Ok(Parsed::One(a.to_string()))
}

/// `KeyAlgorithms`: a list of key types.
fn key_algorithms(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let a = it.required()?;
    if !a.starts_with('-') {
        let names = a.strip_prefix(['+', '^']).unwrap_or(a);
        let ok = names_valid(names, |n| {
            key_type_known(n) || builds::KEYS_ALL.split(',').any(|t| pattern_list(t, n) != 0)
        });
        if !ok {
            return Err(Refusal(format!("Bad key types '{a}'")));
        }
    }
    Ok(Parsed::One(a.to_string()))
}

/// `GssKex` arguments.
fn gss_kex(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let a = it.required()?;
    let ok = a.split(',').all(|n| {
        n.starts_with("gss-") && builds::GSS_KEX_PREFIXES.iter().any(|p| n.starts_with(p))
    });
    if !ok {
        return Err(Refusal(format!("Bad GSSAPI KexAlgorithms '{a}'")));
    }
    Ok(Parsed::One(a.to_string()))
}

/// `UserPatterns` arguments.
fn user_patterns(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items = Vec::new();
    while let Some(a) = it.next() {
        let bad = a.is_empty()
            || a.split_once('@')
                .is_some_and(|(_, host)| address_list_invalid(host));
        if bad {
            return Err(Refusal(format!("invalid {kw} pattern: \"{a}\"")));
        }
        items.push(a.to_string());
    }
    Ok(Parsed::Items(items))
}

/// `Groups` arguments.
fn groups(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items = Vec::new();
    while let Some(a) = it.next() {
        if a.is_empty() {
            return Err(Refusal(format!("empty {kw} pattern")));
        }
        items.push(a.to_string());
    }
    Ok(Parsed::Items(items))
}

/// `EnvNames` arguments.
fn env_names(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let mut items = Vec::new();
    while let Some(a) = it.next() {
        if a.is_empty() || a.contains('=') {
            return Err("Invalid environment name.".into());
        }
        items.push(a.to_string());
    }
    Ok(Parsed::Items(items))
}

/// `SetEnv` arguments.
fn set_env(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let mut items: Vec<String> = Vec::new();
    while let Some(a) = it.next() {
        if a.is_empty() || !a.contains('=') {
            return Err("Invalid environment.".into());
        }
        // A name given twice keeps its first value.
        let name = a.split('=').next().unwrap_or("");
        if !items.iter().any(|i| i.split('=').next() == Some(name)) {
            items.push(a.to_string());
        }
    }
    Ok(Parsed::Items(items))
}

/// `KeyFiles` arguments.
fn key_files(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items = Vec::new();
    while let Some(a) = it.next() {
        if a.is_empty() {
            return Err(Refusal(format!("keyword {kw} empty argument")));
        }
        items.push(tilde(a)?);
    }
    Ok(Parsed::Items(items))
}

/// `ListenAddress` arguments.
fn listen(it: &mut Args<'_>, names: &dyn Names) -> Result<Parsed, Refusal> {
    let a = it.required()?.to_string();
    listen_address(&a, names)?;
    if let Some(r) = it.next() {
        // Routing domains are not supported on Linux.
        return Err(if r == "rdomain" && it.next().is_some() {
            "bad routing domain".into()
        } else {
            "bad ListenAddress syntax".into()
        });
    }
    Ok(Parsed::Items(vec![a]))
}

/// `MaxStartups` arguments.
fn max_startups(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    let invalid = || format!("Invalid {kw} spec.");
    let (begin, rate, full) = match scan_ints(a) {
        (3, [b, r, f]) => {
            if b > f || !(1..=100).contains(&r) {
                return Err(invalid().into());
            }
            (b, Some(r), f)
        }
        (1, [b, _, _]) => (b, None, b),
        _ => return Err(invalid().into()),
    };
    if full <= 0 || begin <= 0 {
        return Err(invalid().into());
    }
    Ok(Parsed::Startups(begin, rate, full))
}

/// `PerSourceMaxStartups` arguments.
fn per_source_max_startups(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    Ok(if a == "none" {
        Parsed::One("none".into())
    } else {
        match atoi(a) {
            Ok(n) => Parsed::One(n.to_string()),
            Err(e) => return Err(Refusal(format!("{kw} integer value {e}"))),
        }
    })
}

/// `NetBlockSize` arguments.
fn net_block_size(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    let invalid = || format!("Invalid {kw} spec.");
    Ok(match scan_ints(a) {
        (1, [v4, _, _]) if (0..=32).contains(&v4) => {
            // sshd then takes the IPv6 length from an uninitialised
            // variable: it cannot be known.
            Parsed::One(format!("{v4}:?"))
        }
        (n, [v4, v6, _]) if n >= 2 && (0..=32).contains(&v4) && (0..=128).contains(&v6) => {
            Parsed::One(format!("{v4}:{v6}"))
        }
        _ => return Err(invalid().into()),
    })
}

/// `PubkeyAuthOptions` arguments.
fn pubkey_auth_options(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let (mut touch, mut verify) = (false, false);
    while let Some(a) = it.next() {
        if a.eq_ignore_ascii_case("none") {
            continue;
        } else if a.eq_ignore_ascii_case("touch-required") {
            touch = true;
        } else if a.eq_ignore_ascii_case("verify-required") {
            verify = true;
        } else {
            return Err(Refusal(format!("unsupported {kw} option {a}")));
        }
    }
    let mut out = Vec::new();
    if touch {
        out.push("touch-required");
    }
    if verify {
        out.push("verify-required");
    }
    if out.is_empty() {
        out.push("none");
    }
    Ok(Parsed::One(out.join(" ")))
}

/// `RekeyLimit` arguments.
fn rekey_limit(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    let limit = if a == "default" {
        0
    } else {
        match scan_scaled(a) {
            Some(v) if v == 0 || v >= 16 => v,
            Some(_) => return Err(Refusal(format!("{kw} too small"))),
            None => return Err(Refusal(format!("Bad {kw} number '{a}'"))),
        }
    };
    let interval = match it.next() {
        None | Some("none") => None,
        Some(t) => Some(time(t)?),
    };
    Ok(Parsed::Rekey(limit, interval))
}

/// `IpQos` arguments.
fn ip_qos(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    let first = ipqos(a).ok_or_else(|| format!("Bad {kw} value: {a}"))?;
    let second = match it.next() {
        None => first,
        Some(b) => ipqos(b).ok_or_else(|| format!("Bad {kw} value: {b}"))?,
    };
    Ok(Parsed::One(format!(
        "{} {}",
        iptos_name(first),
        iptos_name(second)
    )))
}

/// `AuthenticationMethods` arguments.
fn authentication_methods(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items: Vec<String> = Vec::new();
    let mut any = false;
    while let Some(a) = it.next() {
        if a == "any" {
            if !items.is_empty() {
                return Err(Refusal(format!("\"any\" must appear alone in {kw}")));
            }
            any = true;
        } else if any {
            return Err(Refusal(format!("\"any\" must appear alone in {kw}")));
        } else if !methods_valid(a) {
            return Err(Refusal(format!("invalid {kw} method list.")));
        }
        items.push(a.to_string());
    }
    if items.is_empty() {
        return Err(Refusal(format!("no {kw} specified")));
    }
    Ok(Parsed::Items(items))
}

/// `Mask` arguments.
fn umask(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let a = it.required()?;
    let (v, rest) = strtol(a, 8);
    Ok(match v {
        Some(v) if rest.len() < a.len() && (0..=0o777).contains(&v) => {
            Parsed::One(format!("0{v:o}"))
        }
        _ => return Err(Refusal(format!("Invalid {kw}."))),
    })
}

/// `PermitOpen`/`PermitListen`: host:port entries.
fn permit_open(it: &mut Args<'_>, listen: bool, names: &dyn Names) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let first = it.required()?.to_string();
    if first == "any" || first == "none" {
        return Ok(Parsed::Items(vec![first]));
    }
    let mut items = Vec::new();
    let mut arg = Some(first);
    while let Some(a) = arg.filter(|a| !a.is_empty()) {
        let entry = if listen && !a.contains(':') {
            if permitopen_port(&a, names).is_none() {
                return Err(Refusal(format!("{kw} bad port number")));
            }
            format!("*:{a}")
        } else {
            match hpdelim(&a) {
                None => return Err(Refusal(format!("{kw} missing host"))),
                Some((_, None)) => return Err(Refusal(format!("{kw} bad port number"))),
                Some((_, Some(p))) => {
                    if permitopen_port(p, names).is_none() {
                        return Err(Refusal(format!("{kw} bad port number")));
                    }
                }
            }
            a.clone()
        };
        items.push(entry);
        arg = it.next().map(str::to_string);
    }
    Ok(Parsed::Items(items))
}

/// `ChannelTimeout` arguments.
fn channel_timeout(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items = Vec::new();
    let n = it.args.len() - it.next;
    for i in 0..n {
        let a = it.next().unwrap_or("");
        if a.eq_ignore_ascii_case("none") {
            if i > 0 || n > 1 {
                return Err(Refusal(format!(
                    "keyword {kw} \"none\" argument must appear alone."
                )));
            }
        } else {
            let ok = a
                .split_once('=')
                .is_some_and(|(t, v)| !t.is_empty() && time(v).is_ok());
            if !ok {
                return Err(Refusal(format!("invalid channel timeout {a}")));
            }
        }
        items.push(a.to_string());
    }
    Ok(Parsed::Items(items))
}

/// `LogVerbose` arguments.
fn log_verbose(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let kw = it.spelling;
    let mut items = Vec::new();
    let n = it.args.len() - it.next;
    for i in 0..n {
        let a = it.next().unwrap_or("");
        if a.is_empty() {
            return Err(Refusal(format!("keyword {kw} empty argument")));
        }
        if a.eq_ignore_ascii_case("none") && (i > 0 || n > 1) {
            return Err(Refusal(format!(
                "keyword {kw} \"none\" argument must appear alone."
            )));
        }
        items.push(a.to_string());
    }
    Ok(Parsed::Items(items))
}

/// `Subsystem` arguments.
fn subsystem(it: &mut Args<'_>) -> Result<Parsed, Refusal> {
    let name = it.required()?.to_string();
    let command = it.required()?.to_string();
    let mut args = vec![command];
    while let Some(a) = it.next() {
        args.push(a.to_string());
    }
    Ok(Parsed::Items(vec![format!("{name} {}", args.join(" "))]))
}

/// A word of `table`, any case, in the spelling `sshd -T` prints.
fn word(a: &str, table: &[(&str, u8)], kw: &str) -> Result<String, Refusal> {
    let value = table
        .iter()
        .find(|(w, _)| w.eq_ignore_ascii_case(a))
        .map(|(_, v)| *v)
        .ok_or_else(|| format!("unsupported option \"{a}\" for {kw}"))?;
    let printed = table
        .iter()
        .find(|(_, v)| *v == value)
        .map_or(a, |(w, _)| w);
    Ok(printed.to_string())
}

/// The value a comparison expects, in `sshd -T`'s spelling when it is one
/// of the keyword's words (`prohibit-password` is printed
/// `without-password`, `DEBUG1` is `DEBUG`); otherwise unchanged.
pub(crate) fn normalise(k: &Keyword, want: &str) -> String {
    let table = match k.syntax {
        Flag => YES_NO,
        Words(t) => t,
        LogLevel => LOG_LEVELS,
        Facility | Digest => {
            let list = if k.syntax == Facility {
                FACILITIES
            } else {
                DIGESTS
            };
            return list
                .iter()
                .find(|w| w.eq_ignore_ascii_case(want))
                .map_or_else(|| want.to_string(), |w| (*w).to_string());
        }
        Time => return time(want).map_or_else(|_| want.to_string(), |t| t.to_string()),
        MaxStartups => {
            return match scan_ints(want) {
                (3, [b, r, f]) => format!("{b}:{r}:{f}"),
                (1, [b, _, _]) => format!("{b}:30:{b}"),
                _ => want.to_string(),
            };
        }
        _ => return want.to_string(),
    };
    word(want.trim(), table, "").unwrap_or_else(|_| want.to_string())
}

/// Compared without regard to case (enumerations).
pub(crate) fn ignore_case(k: &Keyword) -> bool {
    matches!(k.syntax, Flag | Words(_) | LogLevel | Facility | Digest)
}

/// `atoi_err`: a decimal integer from 0 to 2^31-1 (`strtonum`).
fn atoi(a: &str) -> Result<i64, &'static str> {
    if a.is_empty() {
        return Err("missing");
    }
    let (v, rest) = strtol(a, 10);
    match v {
        Some(_) if !rest.is_empty() => Err("invalid"),
        None => Err("invalid"),
        Some(v) if v < 0 => Err("too small"),
        Some(v) if v > i64::from(i32::MAX) => Err("too large"),
        Some(v) => Ok(v),
    }
}

/// `strtol`: optional white space and sign, then digits of `radix`. The
/// value (saturated; `None` when there are no digits) and what follows.
fn strtol(s: &str, radix: u32) -> (Option<i64>, &str) {
    let t = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, t) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let digits = t.chars().take_while(|c| c.is_digit(radix)).count();
    if digits == 0 {
        return (None, s);
    }
    let mut v: i64 = 0;
    for c in t[..digits].chars() {
        let d = i64::from(c.to_digit(radix).unwrap_or(0));
        v = v.saturating_mul(i64::from(radix)).saturating_add(d);
    }
    (Some(if neg { -v } else { v }), &t[digits..])
}

/// `sscanf(s, "%d:%d:%d")`: how many numbers matched, and their values
/// (stored as C `int`s).
fn scan_ints(s: &str) -> (usize, [i64; 3]) {
    let mut out = [0i64; 3];
    let mut rest = s;
    for (i, slot) in out.iter_mut().enumerate() {
        if i > 0 {
            match rest.strip_prefix(':') {
                Some(r) => rest = r,
                None => return (i, out),
            }
        }
        let (v, r) = strtol(rest, 10);
        match v {
            Some(v) => {
                // glibc stores the long it read into the int, truncating.
                *slot = i64::from(v as i32);
                rest = r;
            }
            None => return (i, out),
        }
    }
    (3, out)
}

/// `convtime` of misc.c: `90`, `2m`, `1h30m`, in seconds.
pub(crate) fn time(s: &str) -> Result<i64, Refusal> {
    let bad = || "invalid time value.".to_string();
    if s.is_empty() {
        return Err(bad().into());
    }
    let max = i64::from(i32::MAX);
    let mut total: i64 = 0;
    let mut p = s;
    while !p.is_empty() {
        let (v, rest) = strtol(p, 10);
        let secs = match v {
            Some(v) if v >= 0 => v,
            _ => return Err(bad().into()),
        };
        let (mult, rest) = match rest.chars().next() {
            None => (1, rest),
            Some(c) => {
                let m = match c {
                    's' | 'S' => 1,
                    'm' | 'M' => 60,
                    'h' | 'H' => 3600,
                    'd' | 'D' => 86400,
                    'w' | 'W' => 604_800,
                    _ => return Err(bad().into()),
                };
                (m, &rest[c.len_utf8()..])
            }
        };
        if secs > max / mult {
            return Err(bad().into());
        }
        let secs = secs * mult;
        if total > max - secs {
            return Err(bad().into());
        }
        total += secs;
        p = rest;
    }
    Ok(total)
}

/// `scan_scaled`: a number with an optional fraction and a B/K/M/G/T/P/E
/// suffix.
fn scan_scaled(s: &str) -> Option<i64> {
    let s = s.trim_start();
    let (neg, s) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let end = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(s.len());
    let (num, suffix) = s.split_at(end);
    if num.matches('.').count() > 1 {
        return None;
    }
    let (whole, fract) = num.split_once('.').unwrap_or((num, ""));
    let whole: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let whole = if neg { -whole } else { whole };
    let mut chars = suffix.chars();
    let Some(unit) = chars.next() else {
        return Some(whole);
    };
    if chars.next().is_some_and(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let scale: i64 = match unit.to_ascii_uppercase() {
        'B' => 1,
        'K' => 1 << 10,
        'M' => 1 << 20,
        'G' => 1 << 30,
        'T' => 1 << 40,
        'P' => 1 << 50,
        'E' => 1 << 60,
        _ => return None,
    };
    let mut v = whole.checked_mul(scale)?;
    if !fract.is_empty() {
        let digits = &fract[..fract.len().min(18)];
        let f: i64 = digits.parse().ok()?;
        let div = 10i64.checked_pow(u32::try_from(digits.len()).ok()?)?;
        let part = i128::from(f) * i128::from(scale) / i128::from(div);
        let part = i64::try_from(part).ok()?;
        v = if neg { v - part } else { v + part };
    }
    Some(v)
}

/// `parse_ipqos`: a name or a number from 0 to 255.
fn ipqos(a: &str) -> Option<u32> {
    if let Some((_, v)) = IPQOS.iter().find(|(n, _)| n.eq_ignore_ascii_case(a)) {
        return Some(*v);
    }
    let (v, rest) = if let Some(hex) = a.strip_prefix("0x").or_else(|| a.strip_prefix("0X")) {
        strtol(hex, 16)
    } else if a.len() > 1 && a.starts_with('0') {
        strtol(a, 8)
    } else {
        strtol(a, 10)
    };
    match v {
        Some(v) if rest.is_empty() && (0..=255).contains(&v) => u32::try_from(v).ok(),
        _ => None,
    }
}

fn iptos_name(v: u32) -> String {
    IPQOS
        .iter()
        .find(|(_, x)| *x == v)
        .map_or_else(|| format!("0x{v:02x}"), |(n, _)| (*n).to_string())
}

/// `derelativise_path`: `none` stays, `~` is refused here (see
/// [`tilde`]), a relative path is taken from sshd's working directory,
/// `/` when it runs as a service.
fn derelativise(a: &str) -> Result<String, Refusal> {
    if a.eq_ignore_ascii_case("none") {
        return Ok("none".into());
    }
    let p = tilde(a)?;
    Ok(if p.starts_with('/') {
        p
    } else {
        format!("//{p}")
    })
}

/// `tilde_expand_filename`: home directories are not looked up by
/// Plumbline, so a path starting with `~` is an error rather than a guess.
fn tilde(a: &str) -> Result<String, Refusal> {
    if a.starts_with('~') {
        return Err(Refusal(format!(
            "\"{a}\": Plumbline does not expand ~ in sshd paths (not a refusal by sshd)"
        )));
    }
    Ok(a.to_string())
}

/// `a2port`: a number from 0 to 65535, or a service name.
fn port(a: &str, names: &dyn Names) -> Option<u16> {
    match atoi(a) {
        Ok(n) => u16::try_from(n).ok(),
        Err(_) => names.service_port(a),
    }
}

/// `permitopen_port`: `*` or a port above 0.
fn permitopen_port(a: &str, names: &dyn Names) -> Option<u16> {
    if a == "*" {
        return Some(0);
    }
    port(a, names).filter(|p| *p > 0)
}

/// `hpdelim`: `host:port`, `[v6]:port`, `host/port`; `None` when malformed.
fn hpdelim(a: &str) -> Option<(&str, Option<&str>)> {
    let split = if a.starts_with('[') {
        a.find(']')? + 1
    } else {
        a.find([':', '/']).unwrap_or(a.len())
    };
    let (host, tail) = a.split_at(split);
    match tail.chars().next() {
        None => Some((host, None)),
        Some(':' | '/') => Some((host, Some(&tail[1..]))),
        Some(_) => None,
    }
}

/// `ListenAddress` syntax (names are resolved by sshd at start-up, which
/// Plumbline does not do).
fn listen_address(a: &str, names: &dyn Names) -> Result<(), Refusal> {
    let colons = a.matches(':').count();
    if !a.contains('[') && colons >= 2 {
        return Ok(());
    }
    match hpdelim(a) {
        None => Err("bad address:port usage".into()),
        Some((_, None)) => Ok(()),
        Some((_, Some(p))) => match port(p, names) {
            Some(p) if p > 0 => Ok(()),
            _ => Err("bad port number".into()),
        },
    }
}

/// Whether a comma-separated address list has an entry sshd refuses
/// (`addr_match_list` returning -2): an empty entry, or a CIDR network
/// with a mask too long for its family or host bits set.
pub(crate) fn address_list_invalid(list: &str) -> bool {
    list.split(',').any(|entry| {
        let e = entry.strip_prefix('!').unwrap_or(entry);
        e.is_empty() || cidr_inconsistent(e)
    })
}

fn cidr_inconsistent(e: &str) -> bool {
    if e.len() >= 64 {
        return false;
    }
    let (addr, mask) = match e.split_once('/') {
        Some((a, m)) => {
            if !m.starts_with(|c: char| c.is_ascii_digit())
                || !m.chars().all(|c| c.is_ascii_digit())
            {
                return false;
            }
            match m.parse::<u32>() {
                Ok(n) if n <= 128 => (a, Some(n)),
                _ => return false,
            }
        }
        None => (e, None),
    };
    let (bits, value): (u32, u128) = if let Ok(v4) = addr.parse::<std::net::Ipv4Addr>() {
        (32, u128::from(u32::from(v4)))
    } else if let Ok(v6) = addr.parse::<std::net::Ipv6Addr>() {
        (128, u128::from(v6))
    } else {
        return false;
    };
    let mask = mask.unwrap_or(bits);
    if mask > bits {
        return true;
    }
    let host_bits = bits - mask;
    let host_mask = if host_bits == 0 {
        0
    } else if host_bits >= 128 {
        u128::MAX
    } else {
        (1u128 << host_bits) - 1
    };
    value & host_mask != 0
}

fn methods_valid(list: &str) -> bool {
    !list.is_empty()
        && list.split(',').all(|m| {
            let name = m.split(':').next().unwrap_or("");
            AUTH_METHODS.contains(&name)
        })
}

/// The methods of an `AuthenticationMethods` list that are not enabled,
/// given whether each method's keyword is enabled.
pub(crate) fn disabled_methods(list: &str, enabled: impl Fn(&str) -> bool) -> Vec<String> {
    list.split(',')
        .map(|m| m.split(':').next().unwrap_or("").to_string())
        .filter(|m| !enabled(m))
        .collect()
}

/// `*_names_valid`: every name of the comma list is known, up to the
/// first empty name (sshd stops looking there).
fn names_valid(names: &str, known: impl Fn(&str) -> bool) -> bool {
    if names.is_empty() {
        return false;
    }
    names.split(',').take_while(|n| !n.is_empty()).all(known)
}

fn has(list: &str, name: &str) -> bool {
    list.split(',').any(|n| n == name)
}

fn key_type_known(n: &str) -> bool {
    has(builds::KEYS_ALL, n)
        || builds::KEY_SHORT_NAMES
            .iter()
            .any(|s| s.eq_ignore_ascii_case(n))
}

/// `match_pattern`: `*` and `?` wildcards, without exponential backtracking.
pub(crate) fn wildcard(s: &[u8], p: &[u8]) -> bool {
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

/// `match_pattern_list`: 1 when a positive pattern matches, -1 when a
/// negated one does (whatever else matches), 0 otherwise.
pub(crate) fn pattern_list(s: &str, patterns: &str) -> i32 {
    let mut positive = 0;
    for p in patterns.split(',') {
        match p.strip_prefix('!') {
            Some(neg) if wildcard(s.as_bytes(), neg.as_bytes()) => return -1,
            Some(_) => {}
            None if wildcard(s.as_bytes(), p.as_bytes()) => positive = 1,
            None => {}
        }
    }
    positive
}

/// `kex_names_cat`: `a`, then the names of `b` not in it, up to the first
/// empty name of `b`.
fn names_cat(a: &str, b: &str) -> String {
    if a.is_empty() {
        return b.to_string();
    }
    if b.is_empty() {
        return a.to_string();
    }
    let mut out = a.to_string();
    let mut have: Vec<String> = a.split(',').map(str::to_string).collect();
    for n in b.split(',').take_while(|n| !n.is_empty()) {
        if !have.iter().any(|h| h == n) {
            out.push(',');
            out.push_str(n);
            have.push(n.to_string());
        }
    }
    out
}

/// `kex_assemble_names`: a configured list (`+`, `-`, `^` or explicit)
/// against the default and every supported name, as sshd offers it.
pub(crate) fn assemble(spec: Option<&str>, default: &str, all: &str) -> Result<String, Refusal> {
    let Some(list) = spec.filter(|s| !s.is_empty()) else {
        return Ok(default.to_string());
    };
    let list = if let Some(extra) = list.strip_prefix('+') {
        names_cat(default, extra)
    } else if let Some(removed) = list.strip_prefix('-') {
        let kept: Vec<&str> = default
            .split(',')
            .filter(|n| pattern_list(n, removed) != 1)
            .collect();
        return Ok(kept.join(","));
    } else if let Some(first) = list.strip_prefix('^') {
        names_cat(first, default)
    } else {
        list.to_string()
    };
    let mut out = String::new();
    for pattern in list.split(',') {
        if pattern.starts_with('!') {
            return Err(Refusal(format!(
                "negated algorithm \"{pattern}\" outside a \"-\" list"
            )));
        }
        let matching: Vec<&str> = all
            .split(',')
            .filter(|n| pattern_list(n, pattern) == 1)
            .collect();
        out = names_cat(&out, &matching.join(","));
    }
    if out.is_empty() {
        return Err(Refusal(format!("no supported algorithm in \"{list}\"")));
    }
    Ok(out)
}

/// The default and the full list of an algorithm keyword for a build.
pub(crate) fn algorithm_lists(k: &Keyword, build: &Build) -> Option<(String, &'static str)> {
    // Defaults hold only what the build supports (`match_filter_allowlist`).
    let filtered = |def: &str, all: &str| {
        def.split(',')
            .filter(|n| has(all, n))
            .collect::<Vec<_>>()
            .join(",")
    };
    Some(match k.syntax {
        Ciphers => (
            filtered(builds::CIPHERS_DEFAULT, builds::CIPHERS_ALL),
            builds::CIPHERS_ALL,
        ),
        Macs => (
            filtered(builds::MACS_DEFAULT, builds::MACS_ALL),
            builds::MACS_ALL,
        ),
        Kex => (filtered(build.kex_default, build.kex_all), build.kex_all),
        KeyAlgorithms { ca: false } => (
            filtered(builds::KEYS_DEFAULT, builds::KEYS_ALL),
            builds::KEYS_ALL,
        ),
        KeyAlgorithms { ca: true } => (
            filtered(builds::SIGS_DEFAULT, builds::SIGS_ALL),
            builds::SIGS_ALL,
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    struct NoNames;
    impl Names for NoNames {
        fn service_port(&self, name: &str) -> Option<u16> {
            (name == "ssh").then_some(22)
        }
    }

    fn p(name: &str, args: &[&str]) -> Result<Parsed, Refusal> {
        let args: Vec<String> = args.iter().map(|s| (*s).to_string()).collect();
        let k = keyword(name).unwrap();
        let build = builds::by_version("1:9.2p1-2+deb12u10").unwrap();
        parse(k, name, &args, &args.join(" "), &NoNames, build)
    }

    fn one(s: &str) -> Result<Parsed, Refusal> {
        Ok(Parsed::One(s.into()))
    }

    #[test]
    fn words_print_as_sshd_t_does() {
        assert_eq!(
            p("PermitRootLogin", &["Prohibit-Password"]),
            one("without-password")
        );
        assert_eq!(p("AllowTcpForwarding", &["ALL"]), one("yes"));
        assert_eq!(p("Compression", &["delayed"]), one("yes"));
        assert_eq!(p("LogLevel", &["debug1"]), one("DEBUG"));
        assert_eq!(p("LogLevel", &["quiet"]), one("SILENT"));
        assert_eq!(p("SyslogFacility", &["local7"]), one("LOCAL7"));
        assert_eq!(p("FingerprintHash", &["md5"]), one("MD5"));
        assert!(p("PermitRootLogin", &["maybe"]).is_err());
        assert!(
            p("PermitRootLogin", &["no", "yes"])
                .unwrap_err()
                .0
                .contains("extra arguments")
        );
        assert!(p("PermitRootLogin", &[]).is_err());
        // Case-sensitive ones.
        assert!(p("PermitTunnel", &["Yes"]).is_err());
        assert_eq!(p("PermitUserEnvironment", &["Yes"]), one("Yes"));
    }

    #[test]
    fn numbers_and_times() {
        assert_eq!(p("MaxAuthTries", &["+4"]), one("4"));
        assert_eq!(p("MaxAuthTries", &["007"]), one("7"));
        for bad in ["-1", "4x", "0x10", "99999999999", ""] {
            assert!(p("MaxAuthTries", &[bad]).is_err(), "{bad}");
        }
        assert_eq!(p("LoginGraceTime", &["1m30"]), one("90"));
        assert_eq!(p("LoginGraceTime", &["2M"]), one("120"));
        assert_eq!(p("LoginGraceTime", &["1h30m"]), one("5400"));
        for bad in ["5x", "m", "-5", "1.5m", "99999999999"] {
            assert!(p("LoginGraceTime", &[bad]).is_err(), "{bad}");
        }
        assert_eq!(time("1w"), Ok(604_800));
    }

    #[test]
    fn max_startups_as_sscanf_reads_it() {
        assert_eq!(
            p("MaxStartups", &["10"]),
            Ok(Parsed::Startups(10, None, 10))
        );
        assert_eq!(
            p("MaxStartups", &["10abc"]),
            Ok(Parsed::Startups(10, None, 10))
        );
        assert_eq!(
            p("MaxStartups", &["10:30:60"]),
            Ok(Parsed::Startups(10, Some(30), 60))
        );
        for bad in ["10:30", "20:30:10", "0", "10:0:20", "10:101:20", "a", "-3"] {
            assert!(p("MaxStartups", &[bad]).is_err(), "{bad}");
        }
        let k = keyword("maxstartups").unwrap();
        assert_eq!(normalise(k, "10"), "10:30:10");
    }

    #[test]
    fn algorithm_lists_are_validated_and_assembled() {
        assert!(p("Ciphers", &["aes128-ctr,aes*"]).is_err());
        assert!(p("Ciphers", &["+arcfour"]).is_err());
        assert!(p("Ciphers", &["^!aes128-ctr"]).is_err());
        assert!(p("Ciphers", &["-aes*,!aes256-ctr"]).is_ok());
        // sshd stops checking at an empty name.
        assert!(p("Ciphers", &["aes128-ctr,,bogus"]).is_ok());
        assert_eq!(
            assemble(Some("aes128-ctr,,bogus"), "x", builds::CIPHERS_ALL),
            Ok("aes128-ctr".into())
        );
        assert_eq!(
            assemble(Some("-aes*,!aes256-ctr"), "aes128-ctr,aes256-ctr,x", "z"),
            Ok("aes256-ctr,x".into())
        );
        assert_eq!(assemble(Some("^b,a"), "a,c", "a,b,c"), Ok("b,a,c".into()));
        assert_eq!(assemble(Some("+c,a"), "a,b", "a,b,c"), Ok("a,b,c".into()));
        assert!(assemble(Some("RSA"), "a", builds::KEYS_ALL).is_err());
        assert!(p("HostKeyAlgorithms", &["ssh-ed*"]).is_ok());
        assert!(p("HostKeyAlgorithms", &["ssh-ed*,-rsa*"]).is_err());
    }

    #[test]
    fn patterns_and_addresses() {
        assert!(p("AllowUsers", &["alice", "bob@10.0.0.0/8"]).is_ok());
        assert!(p("AllowUsers", &["eve@10.0.0.0/33"]).is_err());
        assert!(p("AllowUsers", &["eve@10.0.0.1/8"]).is_err());
        assert!(p("AllowUsers", &["eve@10.0.0.0/x"]).is_ok());
        assert!(p("AcceptEnv", &["A=B"]).is_err());
        assert_eq!(p("AllowUsers", &[]), Ok(Parsed::Items(vec![])));
        assert!(address_list_invalid("10.0.0.0/8,"));
        assert!(!address_list_invalid("*.example.com,!192.0.2.1"));
    }

    #[test]
    fn other_syntaxes() {
        assert_eq!(p("Port", &["ssh"]), Ok(Parsed::Items(vec!["22".into()])));
        assert!(p("Port", &["0"]).is_err());
        assert!(p("Port", &["70000"]).is_err());
        assert_eq!(p("IPQoS", &["reliability", "0x3"]), one("le 0x03"));
        assert_eq!(p("StreamLocalBindMask", &["0"]), one("00"));
        assert_eq!(
            p("RekeyLimit", &["1.5G", "1h"]),
            Ok(Parsed::Rekey(1_610_612_736, Some(3600)))
        );
        assert!(p("RDomain", &["none"]).is_err());
        assert_eq!(p("Protocol", &["1"]), Ok(Parsed::Nothing));
        assert_eq!(p("Banner", &["issue.net"]), one("//issue.net"));
        assert!(p("Banner", &["~/x"]).is_err());
        assert_eq!(
            p("PermitListen", &["8080"]),
            Ok(Parsed::Items(vec!["*:8080".into()]))
        );
        assert!(p("PermitOpen", &["any", "x:1"]).is_err());
        assert!(p("AuthenticationMethods", &["publickey,password", "any"]).is_err());
        assert!(p("AuthenticationMethods", &["publickey,bogus"]).is_err());
        assert!(p("Subsystem", &["sftp"]).is_err());
    }
}
