//! The agent's own config file (`/etc/plumb/agent.toml`): local operation,
//! not policy. Parsing is strict (unknown fields are errors); semantic
//! checks run after parsing. Every problem is a `plumb_core::Diagnostic`
//! (file, line, column, field). `agent/agent.example.toml` is
//! the documentation of record for every field and default.

use hyper::Uri;
use plumb_core::{Diagnostic, Diagnostics, Document};
use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Largest config file accepted.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A validated agent config.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Host identity in events; default: this host's name.
    #[serde(default)]
    pub host_id: Option<String>,
    /// Root directory that checks and FIM look at.
    #[serde(default = "default_root")]
    pub root: PathBuf,
    /// proc directory; default `/proc` when `root` is `/`, none otherwise.
    #[serde(default)]
    pub proc: Option<PathBuf>,
    /// Where the agent keeps its state database and FIM database.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Baseline files; empty means the built-in ISSP Linux server baseline.
    #[serde(default)]
    pub baselines: Vec<PathBuf>,
    /// JSON-lines file events go to when no collector is configured.
    #[serde(default = "default_events_file")]
    pub events_file: PathBuf,
    /// Prometheus metrics for node_exporter's textfile collector, rewritten
    /// after every job (`*.prom`); absent: none (docs/integrations.md).
    #[serde(default)]
    pub metrics_file: Option<PathBuf>,
    /// Whether remediation may run (used by the remediation engine).
    #[serde(default)]
    pub remediation: RemediationMode,
    /// Rule ids the agent may remediate (exact ids). Empty with no
    /// `remediation_min_severity`: nothing is allowed.
    #[serde(default)]
    pub remediation_allow: Vec<String>,
    /// Rules at least this severe may be remediated too (in addition to
    /// `remediation_allow`). Default: none.
    #[serde(default)]
    pub remediation_min_severity: Option<plumb_core::Severity>,
    /// Public keys (.pub files) trusted to sign baselines.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
    /// How often each piece of work runs.
    #[serde(default)]
    pub intervals: Intervals,
    /// Where events are sent; absent: standalone (events go to `events_file`).
    #[serde(default)]
    pub collector: Option<Collector>,
    /// Resource limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where the config was loaded from (not a field of the file).
    #[serde(skip)]
    pub origin: PathBuf,
}

/// `remediation = "off" | "dry-run" | "enforce"`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RemediationMode {
    /// Never remediate.
    #[default]
    Off,
    /// Report what would be changed.
    DryRun,
    /// Apply the remediations the baseline allows.
    Enforce,
}

impl RemediationMode {
    /// The config spelling: `off`, `dry-run`, `enforce`.
    pub fn name(self) -> &'static str {
        match self {
            RemediationMode::Off => "off",
            RemediationMode::DryRun => "dry-run",
            RemediationMode::Enforce => "enforce",
        }
    }
}

/// `[intervals]`: durations such as `"30s"`, `"5m"`, `"1h"`, `"1d"`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intervals {
    /// Check evaluation.
    #[serde(default = "default_checks", with = "dur")]
    pub checks: Duration,
    /// FIM metadata rescan (re-hash only what changed in metadata).
    #[serde(default = "default_fim_rescan", with = "dur")]
    pub fim_rescan: Duration,
    /// FIM full verify (re-hash everything).
    #[serde(default = "default_fim_verify", with = "dur")]
    pub fim_verify: Duration,
    /// Snapshot of every rule's status, FIM digest and host facts.
    #[serde(default = "default_snapshot", with = "dur")]
    pub snapshot: Duration,
    /// How often the agent asks the collector for a newer signed baseline
    /// (with a collector and trusted keys only; SIGHUP asks at once).
    #[serde(default = "default_baseline_poll", with = "dur")]
    pub baseline_poll: Duration,
}

impl Default for Intervals {
    fn default() -> Self {
        Intervals {
            checks: default_checks(),
            fim_rescan: default_fim_rescan(),
            fim_verify: default_fim_verify(),
            snapshot: default_snapshot(),
            baseline_poll: default_baseline_poll(),
        }
    }
}

/// `[collector]`: mutual TLS to the collector.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Collector {
    /// `https://host[:port][/prefix]` of the collector, or a list of them
    /// in order of preference (failover, docs/agent.md).
    pub url: CollectorUrls,
    /// CA certificate(s) (PEM) that signed the collector's certificate.
    pub ca: PathBuf,
    /// This agent's client certificate chain (PEM).
    pub cert: PathBuf,
    /// This agent's private key (PEM, PKCS#8 or SEC1 or RSA).
    pub key: PathBuf,
    /// Most events in one `POST /v1/events`.
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Longest wait between retries after failures.
    #[serde(default = "default_max_backoff", with = "dur")]
    pub max_backoff: Duration,
    /// Timeout of one request.
    #[serde(default = "default_request_timeout", with = "dur")]
    pub timeout: Duration,
    /// After this long away from the first URL (failed over to another),
    /// the next request tries the first one again.
    #[serde(default = "default_failback_after", with = "dur")]
    pub failback_after: Duration,
}

/// `[limits]`: never harm the host.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// File hashing rate cap in MB/s (0: no cap).
    #[serde(default = "default_hash_mb_per_s")]
    pub hash_mb_per_s: u64,
    /// CPU niceness of the agent process (0..=19).
    #[serde(default = "default_nice")]
    pub nice: i32,
    /// Put the agent's I/O in the idle class (see docs/agent.md).
    #[serde(default = "default_true")]
    pub io_idle: bool,
    /// Most events kept in the outbox; past it the oldest low-severity ones go first.
    #[serde(default = "default_outbox_max_events")]
    pub outbox_max_events: u64,
    /// Most distinct dirty paths remembered between two realtime flushes;
    /// past it the affected watch roots are rescanned instead.
    #[serde(default = "default_realtime_max_dirty")]
    pub realtime_max_dirty: usize,
    /// Most inotify watches (directories) the agent adds; past it the rest is
    /// covered by periodic rescans and a warning event.
    #[serde(default = "default_max_watches")]
    pub max_watches: usize,
    /// Quiet time after a change before it is re-hashed, in milliseconds.
    #[serde(default = "default_debounce_ms")]
    pub realtime_debounce_ms: u64,
    /// Longest one FIM scan may run before it is reported as hung.
    #[serde(default = "default_fim_timeout", with = "dur")]
    pub fim_timeout: Duration,
    /// How long SIGTERM waits for in-flight work before exiting anyway.
    #[serde(default = "default_shutdown_grace", with = "dur")]
    pub shutdown_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            hash_mb_per_s: default_hash_mb_per_s(),
            nice: default_nice(),
            io_idle: default_true(),
            outbox_max_events: default_outbox_max_events(),
            realtime_max_dirty: default_realtime_max_dirty(),
            max_watches: default_max_watches(),
            realtime_debounce_ms: default_debounce_ms(),
            fim_timeout: default_fim_timeout(),
            shutdown_grace: default_shutdown_grace(),
        }
    }
}

/// Default `root`: `/`.
pub fn default_root() -> PathBuf {
    PathBuf::from("/")
}
/// Default `state_dir`: `/var/lib/plumb`.
pub fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/plumb")
}
/// Default `events_file`: `/var/log/plumb/events.jsonl`.
pub fn default_events_file() -> PathBuf {
    PathBuf::from("/var/log/plumb/events.jsonl")
}
/// Default `intervals.checks`: 5 minutes.
pub fn default_checks() -> Duration {
    Duration::from_secs(300)
}
/// Default `intervals.fim_rescan`: 1 hour.
pub fn default_fim_rescan() -> Duration {
    Duration::from_secs(3600)
}
/// Default `intervals.fim_verify`: 1 day.
pub fn default_fim_verify() -> Duration {
    Duration::from_secs(86_400)
}
/// Default `intervals.snapshot`: 1 hour.
pub fn default_snapshot() -> Duration {
    Duration::from_secs(3600)
}
/// Default `intervals.baseline_poll`: 5 minutes.
pub fn default_baseline_poll() -> Duration {
    Duration::from_secs(300)
}
/// Default `collector.batch_size`: 500 events.
pub fn default_batch_size() -> usize {
    500
}
/// Default `collector.max_backoff`: 5 minutes.
pub fn default_max_backoff() -> Duration {
    Duration::from_secs(300)
}
/// Default `collector.timeout`: 30 seconds.
pub fn default_request_timeout() -> Duration {
    Duration::from_secs(30)
}
/// Default `collector.failback_after`: 10 minutes.
pub fn default_failback_after() -> Duration {
    Duration::from_secs(600)
}
/// Default `limits.hash_mb_per_s`: 50 MB/s.
pub fn default_hash_mb_per_s() -> u64 {
    50
}
/// Default `limits.nice`: 10.
pub fn default_nice() -> i32 {
    10
}
fn default_true() -> bool {
    true
}
/// Default `limits.outbox_max_events`: 100,000.
pub fn default_outbox_max_events() -> u64 {
    100_000
}
/// Default `limits.realtime_max_dirty`: 65,536 paths (a package upgrade
/// or a burst of that many files is still compared path by path; about
/// 100 bytes each).
pub fn default_realtime_max_dirty() -> usize {
    65_536
}
/// Default `limits.max_watches`: 65,536 directories.
pub fn default_max_watches() -> usize {
    65_536
}
/// Default `limits.realtime_debounce_ms`: 200 ms.
pub fn default_debounce_ms() -> u64 {
    200
}
/// Default `limits.fim_timeout`: 1 hour.
pub fn default_fim_timeout() -> Duration {
    Duration::from_secs(3600)
}
/// Default `limits.shutdown_grace`: 10 seconds.
pub fn default_shutdown_grace() -> Duration {
    Duration::from_secs(10)
}

/// Why a `[collector] url` is refused (the text is the config diagnostic's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("{url:?} is not https://host[:port][/path]: {why}")]
    Malformed { url: String, why: UrlProblem },
    #[error("{0:?} must start with https:// (mutual TLS is mandatory)")]
    NotHttps(String),
}

/// What is wrong in a URL that does not have the expected shape.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlProblem {
    /// The URI parser's own message.
    #[error("{0}")]
    Syntax(String),
    #[error("no host")]
    NoHost,
    #[error("user information is not allowed")]
    UserInfo,
    #[error("the port must be a number in 0..=65535")]
    Port,
    #[error("a query is not allowed")]
    Query,
}

/// `[collector] url`: `https://host[:port][/prefix]`, parsed once when the
/// config is read. Mutual TLS is mandatory, so only `https` is accepted;
/// the port defaults to 443; a path is a prefix put before `/v1/...`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct CollectorUrl {
    /// As written in the config (for messages).
    text: String,
    /// Host name or IP address, without the brackets of an IPv6 address.
    host: String,
    port: u16,
    /// `""` or `/prefix`, without a trailing slash.
    prefix: String,
}

impl CollectorUrl {
    /// Parses `https://host[:port][/prefix]`.
    pub fn parse(text: &str) -> Result<CollectorUrl, UrlError> {
        let bad = |why: UrlProblem| UrlError::Malformed {
            url: text.to_owned(),
            why,
        };
        let uri: Uri = text
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(UrlProblem::Syntax(e.to_string())))?;
        if uri.scheme_str() != Some("https") {
            return Err(UrlError::NotHttps(text.to_owned()));
        }
        let authority = uri.authority().ok_or_else(|| bad(UrlProblem::NoHost))?;
        if authority.as_str().contains('@') {
            return Err(bad(UrlProblem::UserInfo));
        }
        let host = authority.host();
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() {
            return Err(bad(UrlProblem::NoHost));
        }
        let port = match authority.port() {
            Some(p) => p.as_u16(),
            // Something after the host that is not a port number.
            None if authority.as_str() != authority.host() => {
                return Err(bad(UrlProblem::Port));
            }
            None => 443,
        };
        if uri.query().is_some() {
            return Err(bad(UrlProblem::Query));
        }
        Ok(CollectorUrl {
            text: text.to_string(),
            host: host.to_string(),
            port,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// Host name or IP address to connect to and verify the certificate of.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Path prefix of every request: `""` or `/prefix`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The `Host` header: host (IPv6 in brackets) and the port unless 443.
    pub fn authority(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        if self.port == 443 {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }
}

/// `[collector] url`: one URL, or a non-empty list of them in order of
/// preference (`url = ["https://c1:8443", "https://c2:8443"]`). A single
/// string stays valid: it is a list of one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectorUrls(Vec<CollectorUrl>);

impl CollectorUrls {
    /// The URLs, first (preferred) first.
    pub fn all(&self) -> &[CollectorUrl] {
        &self.0
    }
}

impl<'de> Deserialize<'de> for CollectorUrls {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = CollectorUrls;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an https:// URL or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CollectorUrls, E> {
                CollectorUrl::parse(v)
                    .map(|u| CollectorUrls(vec![u]))
                    .map_err(E::custom)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CollectorUrls, A::Error> {
                let mut urls = Vec::new();
                while let Some(u) = seq.next_element::<CollectorUrl>()? {
                    urls.push(u);
                }
                Ok(CollectorUrls(urls))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl fmt::Display for CollectorUrls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, u) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{u}")?;
        }
        Ok(())
    }
}

impl TryFrom<String> for CollectorUrl {
    type Error = UrlError;
    fn try_from(text: String) -> Result<Self, UrlError> {
        CollectorUrl::parse(&text)
    }
}

impl fmt::Display for CollectorUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// The text of the config file, read through the trust rule
/// (`plumb_os::trusted`) from the descriptor that was judged. Every read of
/// the config goes through here.
fn read_config(path: &Path) -> Result<String, Diagnostic> {
    let shown = path.display().to_string();
    let fail = |e: String| Diagnostic::file(&shown, "", e);
    let file = plumb_os::open_trusted(path, plumb_os::FileKind::Config)
        .map_err(|e| fail(e.to_string()))?;
    if file.size() > MAX_CONFIG_BYTES {
        return Err(fail(format!(
            "larger than the {MAX_CONFIG_BYTES}-byte limit"
        )));
    }
    let bytes = file
        .read_capped(MAX_CONFIG_BYTES)
        .map_err(|e| fail(e.to_string()))?;
    String::from_utf8(bytes).map_err(|e| fail(format!("cannot read: {e}")))
}

/// Why a duration is refused (the text is the config diagnostic's).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: expected e.g. \"30s\", \"5m\", \"1h\"")]
    Number(String),
    #[error("invalid duration {0:?}: the unit must be ms, s, m, h or d")]
    Unit(String),
    #[error("duration {0:?} is too large")]
    TooLarge(String),
}

/// Parses a duration: an integer with a unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, DurationError> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| DurationError::Number(s.to_owned()))?;
    let mult_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(DurationError::Unit(s.to_owned())),
    };
    n.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| DurationError::TooLarge(s.to_owned()))
}

mod dur {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// A config file as read: the config, every problem found in it and in
/// the trust of the files it names, and where each field is written, so
/// that what is found wrong later with a file it names (a baseline that
/// does not verify, a key that does not load) names the line too.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    /// The config as parsed (valid only when `problems` is empty).
    pub config: Config,
    /// Every problem found, in file order of the checks.
    pub problems: Vec<Diagnostic>,
    doc: Document,
}

impl ConfigFile {
    /// A problem with what `field` (`baselines[0]`, `collector`) names,
    /// at the line that writes it.
    pub fn at(&self, field: &str, message: impl fmt::Display) -> Diagnostic {
        self.doc.at(field, message.to_string())
    }

    /// Whether a problem was already found with `field`: the file it names
    /// need not be examined further.
    pub fn is_faulty(&self, field: &str) -> bool {
        self.problems.iter().any(|p| p.field == field)
    }
}

impl Config {
    /// Reads, parses and validates a config file and checks that every file
    /// it names is trusted: a config the daemon can start (or reload) with.
    /// Every problem is listed.
    pub fn load(path: &Path) -> Result<Config, Diagnostics> {
        let file = Config::read(path)?;
        if file.problems.is_empty() {
            Ok(file.config)
        } else {
            Err(Diagnostics(file.problems))
        }
    }

    /// Reads a config file and lists its problems. `Err` when it cannot be
    /// read or parsed at all (nothing more can be said); otherwise every
    /// problem found is in [`ConfigFile::problems`].
    pub fn read(path: &Path) -> Result<ConfigFile, Diagnostics> {
        let shown = path.display().to_string();
        let text = read_config(path).map_err(|d| Diagnostics(vec![d]))?;
        let mut file = Config::parse(text, &shown)?;
        file.config.origin = path.to_path_buf();
        let trust = file.config.check_files(&file.doc);
        file.problems.extend(trust);
        // In the order of the file, as an editor shows them.
        file.problems.sort_by_key(|d| (d.line, d.column));
        Ok(file)
    }

    /// Parses and validates config text (reads no file); `origin` names it
    /// in messages.
    #[cfg(any(test, feature = "fuzzing"))]
    pub fn from_str(text: &str, origin: &str) -> Result<Config, Diagnostics> {
        let file = Config::parse(text.to_string(), origin)?;
        if file.problems.is_empty() {
            Ok(file.config)
        } else {
            Err(Diagnostics(file.problems))
        }
    }

    /// Parsing (stops at the first syntax or type error), then the checks a
    /// parser cannot make, every problem listed.
    fn parse(text: String, origin: &str) -> Result<ConfigFile, Diagnostics> {
        let (config, doc) =
            Document::parse::<Config>(text, origin).map_err(|d| Diagnostics(vec![d]))?;
        let mut problems = Vec::new();
        config.check_paths(&doc, &mut problems);
        config.check_intervals(&doc, &mut problems);
        config.check_collector(&doc, &mut problems);
        config.check_remediation(&doc, &mut problems);
        config.limits.check(&doc, &mut problems);
        Ok(ConfigFile {
            config,
            problems,
            doc,
        })
    }

    /// The host id, and every path absolute.
    fn check_paths(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        if let Some(h) = &self.host_id {
            if h.is_empty()
                || h.len() > 253
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                out.push(doc.at(
                    "host_id",
                    format!("{h:?} is not a host name ([A-Za-z0-9._-], 1 to 253 characters)"),
                ));
            }
        }
        let mut absolute = |field: String, p: &Path| {
            if !p.is_absolute() {
                out.push(doc.at(&field, format!("{} is not an absolute path", p.display())));
            }
        };
        absolute("root".into(), &self.root);
        absolute("state_dir".into(), &self.state_dir);
        if let Some(p) = &self.proc {
            absolute("proc".into(), p);
        }
        absolute("events_file".into(), &self.events_file);
        if let Some(p) = &self.metrics_file {
            absolute("metrics_file".into(), p);
        }
        for (i, p) in self.baselines.iter().enumerate() {
            absolute(format!("baselines[{i}]"), p);
        }
        for (i, p) in self.trusted_keys.iter().enumerate() {
            absolute(format!("trusted_keys[{i}]"), p);
        }
        if let Some(p) = &self.metrics_file {
            // node_exporter reads `*.prom` only and skips a file being written.
            if p.extension().is_none_or(|e| e != "prom") {
                out.push(doc.at(
                    "metrics_file",
                    format!(
                        "{} must end in .prom (node_exporter's textfile collector reads only those)",
                        p.display()
                    ),
                ));
            }
        }
    }

    fn check_intervals(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        let i = &self.intervals;
        for (key, d) in [
            ("checks", i.checks),
            ("fim_rescan", i.fim_rescan),
            ("fim_verify", i.fim_verify),
            ("snapshot", i.snapshot),
            ("baseline_poll", i.baseline_poll),
        ] {
            if d < Duration::from_secs(1) {
                out.push(doc.at(&format!("intervals.{key}"), "must be at least 1s"));
            }
        }
    }

    /// Each URL is checked as it is parsed; here, the list as a whole, the
    /// files and the batch size.
    fn check_collector(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        let Some(c) = &self.collector else {
            return;
        };
        let urls = c.url.all();
        if urls.is_empty() {
            out.push(doc.at("collector.url", "the list names no collector"));
        }
        for (i, u) in urls.iter().enumerate() {
            if urls[..i].iter().any(|v| v == u) {
                out.push(doc.at(
                    &format!("collector.url[{i}]"),
                    format!("{u} is listed twice"),
                ));
            }
        }
        for (key, p) in [("ca", &c.ca), ("cert", &c.cert), ("key", &c.key)] {
            if !p.is_absolute() {
                out.push(doc.at(
                    &format!("collector.{key}"),
                    format!("{} is not an absolute path", p.display()),
                ));
            }
        }
        if c.failback_after < Duration::from_secs(1) {
            out.push(doc.at("collector.failback_after", "must be at least 1s"));
        }
        if c.batch_size == 0 || c.batch_size > 10_000 {
            out.push(doc.at("collector.batch_size", "must be between 1 and 10000"));
        }
    }

    fn check_remediation(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        for (i, id) in self.remediation_allow.iter().enumerate() {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            {
                out.push(doc.at(
                    &format!("remediation_allow[{i}]"),
                    format!("{id:?} is not a rule id ([a-z0-9._-]+)"),
                ));
            }
        }
    }

    /// Every file the config names that must be as trusted as the config
    /// itself (keys, baselines, the collector's private key and CA), with
    /// the field that names it.
    pub fn trusted_files(&self) -> Vec<(String, &Path, plumb_os::FileKind)> {
        use plumb_os::FileKind;
        let mut v: Vec<(String, &Path, FileKind)> = Vec::new();
        for (i, p) in self.trusted_keys.iter().enumerate() {
            v.push((format!("trusted_keys[{i}]"), p, FileKind::PublicKey));
        }
        for (i, p) in self.baselines.iter().enumerate() {
            v.push((format!("baselines[{i}]"), p, FileKind::Baseline));
        }
        if let Some(c) = &self.collector {
            v.push(("collector.key".into(), &c.key, FileKind::PrivateKey));
            v.push(("collector.cert".into(), &c.cert, FileKind::Certificate));
            v.push(("collector.ca".into(), &c.ca, FileKind::Certificate));
        }
        v
    }

    /// Each trusted file that cannot be read or could have been written by
    /// someone else, at the line that names it.
    fn check_files(&self, doc: &Document) -> Vec<Diagnostic> {
        self.trusted_files()
            .into_iter()
            .filter_map(|(field, p, kind)| {
                let e = plumb_os::open_trusted(p, kind).err()?;
                Some(doc.at(&field, e.to_string()))
            })
            .collect()
    }

    /// The host id in force.
    pub fn host(&self) -> String {
        match &self.host_id {
            Some(h) => h.clone(),
            None => crate::host::host_name(Path::new("/")),
        }
    }

    /// The proc directory in force.
    pub fn proc_dir(&self) -> Option<PathBuf> {
        match &self.proc {
            Some(p) => Some(p.clone()),
            None if self.root == Path::new("/") => Some(PathBuf::from("/proc")),
            None => None,
        }
    }

    /// Whether the local config allows remediating `rule` (by id or by
    /// `remediation_min_severity`). Says nothing about the mode.
    pub fn remediation_allows(&self, rule: &plumb_core::Rule) -> bool {
        self.remediation_allow.contains(&rule.id)
            || self
                .remediation_min_severity
                .is_some_and(|min| rule.severity >= min)
    }
}

impl Limits {
    fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        if !(0..=19).contains(&self.nice) {
            out.push(doc.at("limits.nice", format!("{} is not in 0..=19", self.nice)));
        }
        if self.outbox_max_events < 100 {
            out.push(doc.at("limits.outbox_max_events", "must be at least 100"));
        }
        if self.realtime_max_dirty == 0 {
            out.push(doc.at("limits.realtime_max_dirty", "must be at least 1"));
        }
        if self.realtime_debounce_ms > 60_000 {
            out.push(doc.at("limits.realtime_debounce_ms", "must be at most 60000"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn empty_config_takes_documented_defaults() {
        let c = Config::from_str("", "a.toml").unwrap();
        assert_eq!(c.root, PathBuf::from("/"));
        assert_eq!(c.proc_dir(), Some(PathBuf::from("/proc")));
        assert_eq!(c.state_dir, PathBuf::from("/var/lib/plumb"));
        assert_eq!(c.events_file, PathBuf::from("/var/log/plumb/events.jsonl"));
        assert_eq!(c.remediation, RemediationMode::Off);
        assert_eq!(c.intervals.checks, Duration::from_secs(300));
        assert!(c.collector.is_none());
        assert_eq!(c.limits, Limits::default());
    }

    #[test]
    fn proc_defaults_to_none_for_another_root() {
        let c = Config::from_str("root = \"/srv/img\"", "a.toml").unwrap();
        assert_eq!(c.proc_dir(), None);
    }

    #[test]
    fn unknown_field_names_file_line_and_field() {
        let e = Config::from_str("root = \"/\"\n\n[limits]\nnice = 5\nfoo = 1\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("a.toml:5:"), "{e}");
        assert!(e.contains("foo"), "{e}");
    }

    #[test]
    fn semantic_errors_are_all_listed_with_lines() {
        let text = "remediation = \"dry-run\"\nstate_dir = \"rel\"\n[intervals]\nchecks = \"0s\"\n[limits]\nnice = 40\n";
        let e = Config::from_str(text, "a.toml").unwrap_err().to_string();
        assert!(e.contains("a.toml:2:13: state_dir:"), "{e}");
        assert!(
            e.contains("a.toml:4:10: intervals.checks: must be at least 1s"),
            "{e}"
        );
        assert!(e.contains("a.toml:6:8: limits.nice:"), "{e}");
    }

    #[test]
    fn list_elements_are_named_by_index() {
        let text =
            "baselines = [\"/etc/a.toml\", \"rel.toml\"]\nremediation_allow = [\"Bad Id\"]\n";
        let e = Config::from_str(text, "a.toml").unwrap_err().to_string();
        assert!(
            e.contains("a.toml:1:29: baselines[1]: rel.toml is not an absolute path"),
            "{e}"
        );
        assert!(
            e.contains("a.toml:2:22: remediation_allow[0]: \"Bad Id\""),
            "{e}"
        );
    }

    #[test]
    fn a_bad_collector_url_names_line_column_and_field() {
        let text =
            "[collector]\nurl = \"http://c.example\"\nca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"\n";
        let e = Config::from_str(text, "a.toml").unwrap_err().to_string();
        assert!(
            e.starts_with(
                "a.toml:2:7: collector.url: \"http://c.example\" must start with https://"
            ),
            "{e}"
        );
    }

    #[test]
    fn collector_urls_parse_once_into_host_port_and_prefix() {
        let u = CollectorUrl::parse("https://c.example:8443").unwrap();
        assert_eq!((u.host(), u.port(), u.prefix()), ("c.example", 8443, ""));
        assert_eq!(u.authority(), "c.example:8443");
        let u = CollectorUrl::parse("https://c.example/plumb/").unwrap();
        assert_eq!(
            (u.host(), u.port(), u.prefix()),
            ("c.example", 443, "/plumb")
        );
        assert_eq!(u.authority(), "c.example");
        assert_eq!(u.to_string(), "https://c.example/plumb/");
        let u = CollectorUrl::parse("https://[::1]:9000").unwrap();
        assert_eq!((u.host(), u.port(), u.prefix()), ("::1", 9000, ""));
        assert_eq!(u.authority(), "[::1]:9000");
        let u = CollectorUrl::parse("https://127.0.0.1:8443/").unwrap();
        assert_eq!((u.host(), u.port(), u.prefix()), ("127.0.0.1", 8443, ""));
        for bad in [
            "http://x",
            "https://",
            "https://x:port",
            "https://u@x",
            "https://x:",
            "https://x:99999",
            "https://x/p?q=1",
            "x.example:8443",
            "",
        ] {
            assert!(CollectorUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn collector_url_is_one_string_or_a_list_in_order_of_preference() {
        let files = "ca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"\n";
        let one = format!("[collector]\nurl = \"https://c1:8443\"\n{files}");
        let c = Config::from_str(&one, "a.toml").unwrap().collector.unwrap();
        assert_eq!(c.url.all().len(), 1);
        assert_eq!(c.failback_after, Duration::from_secs(600));
        let two = format!(
            "[collector]\nurl = [\"https://c1:8443\", \"https://c2/p\"]\nfailback_after = \"30s\"\n{files}"
        );
        let c = Config::from_str(&two, "a.toml").unwrap().collector.unwrap();
        let hosts: Vec<&str> = c.url.all().iter().map(CollectorUrl::host).collect();
        assert_eq!(hosts, ["c1", "c2"]);
        assert_eq!(c.url.all()[1].prefix(), "/p");
        assert_eq!(c.failback_after, Duration::from_secs(30));
        assert_eq!(c.url.to_string(), "https://c1:8443, https://c2/p");

        let e = Config::from_str(&format!("[collector]\nurl = []\n{files}"), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("a.toml:2:7: collector.url: the list names no collector"),
            "{e}"
        );
        let dup = format!("[collector]\nurl = [\"https://c1\", \"https://c1\"]\n{files}");
        let e = Config::from_str(&dup, "a.toml").unwrap_err().to_string();
        assert!(
            e.contains("collector.url[1]: https://c1 is listed twice"),
            "{e}"
        );
        let bad = format!("[collector]\nurl = [\"https://c1\", \"http://c2\"]\n{files}");
        let e = Config::from_str(&bad, "a.toml").unwrap_err().to_string();
        assert!(
            e.contains("a.toml:2:") && e.contains("must start with https://"),
            "{e}"
        );
        let e = Config::from_str(&format!("[collector]\nurl = 3\n{files}"), "a.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("an https:// URL or a list of them"), "{e}");
        let fast = format!("{one}failback_after = \"0s\"\n");
        let e = Config::from_str(&fast, "a.toml").unwrap_err().to_string();
        assert!(
            e.contains("collector.failback_after: must be at least 1s"),
            "{e}"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        for text in [
            "remediation = \"always\"",
            "[intervals]\nchecks = \"5 parsecs\"",
            "[collector]\nurl = \"http://x\"\nca = \"/a\"\ncert = \"/b\"\nkey = \"/c\"",
            "[collector]\nurl = \"https://x\"",
            "host_id = \"a b\"",
        ] {
            assert!(Config::from_str(text, "a.toml").is_err(), "{text}");
        }
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(parse_duration("2d").unwrap(), Duration::from_secs(172_800));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("m").is_err());
        assert!(parse_duration("99999999999999999999d").is_err());
    }

    #[test]
    fn group_or_world_writable_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        std::fs::write(&p, "").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        Config::load(&p).unwrap();
        for mode in [0o620, 0o602, 0o666] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            let e = Config::load(&p).unwrap_err().to_string();
            assert!(e.contains("writable by group or others"), "{e}");
        }
    }

    #[test]
    fn every_untrusted_file_is_named_at_the_line_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("agent.toml");
        let open = dir.path().join("open.toml");
        std::fs::write(&open, "").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o666)).unwrap();
        let text = format!(
            "baselines = [\"{}\"]\ntrusted_keys = [\"/nonexistent/k.pub\"]\n",
            open.display()
        );
        std::fs::write(&p, text).unwrap();
        let shown = p.display().to_string();
        let e = Config::load(&p).unwrap_err().0;
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e.iter().any(|d| d.line == 1
                && d.field == "baselines[0]"
                && d.message.contains("writable")),
            "{e:?}"
        );
        assert!(
            e.iter().any(|d| d.origin == shown
                && d.line == 2
                && d.column == 17
                && d.field == "trusted_keys[0]"
                && d.message.contains("/nonexistent/k.pub: cannot open")),
            "{e:?}"
        );
    }

    #[test]
    fn shipped_example_is_valid() {
        let text = include_str!("../../agent.example.toml");
        Config::from_str(text, "agent.example.toml").unwrap();
    }
}
