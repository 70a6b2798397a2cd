//! The agent's own config file (`/etc/plumb/agent.toml`): local operation,
//! not policy. Parsing is strict (unknown fields are errors, with file and
//! line); semantic checks run after parsing. `agent/agent.example.toml` is
//! the documentation of record for every field and default.

use serde::Deserialize;
use std::fmt;
use std::os::unix::fs::MetadataExt;
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
    /// `https://host:port` of the collector.
    pub url: String,
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
/// Default `limits.realtime_max_dirty`: 10,000 paths.
pub fn default_realtime_max_dirty() -> usize {
    10_000
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

/// Why a config (or a file it names) was refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is writable by someone other than root or the agent's user.
    #[error("{path}: {why}; refusing it (chmod go-w, chown root)")]
    Insecure {
        /// The file.
        path: String,
        /// What is wrong.
        why: String,
    },
    /// The file is invalid.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
}

/// One problem in a config file, with file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file.
    pub origin: String,
    /// 1-based line (0 when it concerns the file as a whole).
    pub line: usize,
    /// The field at fault (dotted) or empty.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.origin, self.line)?;
        } else {
            write!(f, "{}: ", self.origin)?;
        }
        if !self.field.is_empty() {
            write!(f, "{}: ", self.field)?;
        }
        f.write_str(&self.message)
    }
}

/// Refuses a file that anyone but root (or the running user) could have
/// written: a group/other write bit, or another owner. Symlinks are
/// followed (the target is what gets read).
pub fn check_trusted_file(path: &Path) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let shown = || path.display().to_string();
    if !meta.is_file() {
        return Err(ConfigError::Insecure {
            path: shown(),
            why: "not a regular file".into(),
        });
    }
    let uid = nix::unistd::geteuid().as_raw();
    if meta.uid() != 0 && meta.uid() != uid {
        return Err(ConfigError::Insecure {
            path: shown(),
            why: format!("owned by uid {}, not root or uid {uid}", meta.uid()),
        });
    }
    if meta.mode() & 0o022 != 0 {
        return Err(ConfigError::Insecure {
            path: shown(),
            why: format!(
                "mode {:04o} is writable by group or others",
                meta.mode() & 0o7777
            ),
        });
    }
    Ok(())
}

/// Parses a duration: an integer with a unit `ms`, `s`, `m`, `h` or `d`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid duration {s:?}: expected e.g. \"30s\", \"5m\", \"1h\""))?;
    let mult_ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => {
            return Err(format!(
                "invalid duration {s:?}: the unit must be ms, s, m, h or d"
            ));
        }
    };
    n.checked_mul(mult_ms)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("duration {s:?} is too large"))
}

mod dur {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        super::parse_duration(&s).map_err(serde::de::Error::custom)
    }
}

/// Line of the first `key =` assignment in `text` (best effort, for messages).
fn line_of(text: &str, section: Option<&str>, key: &str) -> usize {
    let mut in_section = section.is_none();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = section.is_some_and(|s| t.trim_matches(|c| c == '[' || c == ']') == s);
            continue;
        }
        if in_section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return i + 1;
                }
            }
        }
    }
    0
}

impl Config {
    /// Reads, parses and validates a config file, refusing an insecure one.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        check_trusted_file(path)?;
        let shown = path.display().to_string();
        let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid(vec![Problem {
                origin: shown,
                line: 0,
                field: String::new(),
                message: format!("larger than the {MAX_CONFIG_BYTES}-byte limit"),
            }]));
        }
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        let mut cfg = Config::from_str(&text, &shown)?;
        cfg.origin = path.to_path_buf();
        Ok(cfg)
    }

    /// Parses and validates config text; `origin` names it in messages.
    pub fn from_str(text: &str, origin: &str) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| {
                text[..s.start.min(text.len())].matches('\n').count() + 1
            });
            ConfigError::Invalid(vec![Problem {
                origin: origin.to_string(),
                line,
                field: String::new(),
                message: e.message().trim().to_string(),
            }])
        })?;
        let problems = cfg.check(text, origin);
        if problems.is_empty() {
            Ok(cfg)
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }

    /// Semantic checks after parsing.
    fn check(&self, text: &str, origin: &str) -> Vec<Problem> {
        let mut out = Vec::new();
        let mut bad = |section: Option<&str>, key: &str, message: String| {
            let field = match section {
                Some(s) => format!("{s}.{key}"),
                None => key.to_string(),
            };
            out.push(Problem {
                origin: origin.to_string(),
                line: line_of(text, section, key),
                field,
                message,
            });
        };
        if let Some(h) = &self.host_id {
            if h.is_empty()
                || h.len() > 253
                || !h
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            {
                bad(
                    None,
                    "host_id",
                    format!("{h:?} is not a host name ([A-Za-z0-9._-], 1 to 253 characters)"),
                );
            }
        }
        for (key, p) in [("root", &self.root), ("state_dir", &self.state_dir)] {
            if !p.is_absolute() {
                bad(
                    None,
                    key,
                    format!("{} is not an absolute path", p.display()),
                );
            }
        }
        if let Some(p) = &self.proc {
            if !p.is_absolute() {
                bad(
                    None,
                    "proc",
                    format!("{} is not an absolute path", p.display()),
                );
            }
        }
        if !self.events_file.is_absolute() {
            bad(
                None,
                "events_file",
                format!("{} is not an absolute path", self.events_file.display()),
            );
        }
        for p in self.baselines.iter().chain(&self.trusted_keys) {
            if !p.is_absolute() {
                let key = if self.baselines.contains(p) {
                    "baselines"
                } else {
                    "trusted_keys"
                };
                bad(
                    None,
                    key,
                    format!("{} is not an absolute path", p.display()),
                );
            }
        }
        let i = &self.intervals;
        for (key, d) in [
            ("checks", i.checks),
            ("fim_rescan", i.fim_rescan),
            ("fim_verify", i.fim_verify),
            ("snapshot", i.snapshot),
            ("baseline_poll", i.baseline_poll),
        ] {
            if d < Duration::from_secs(1) {
                bad(Some("intervals"), key, "must be at least 1s".to_string());
            }
        }
        if let Some(c) = &self.collector {
            if !c.url.starts_with("https://") {
                bad(
                    Some("collector"),
                    "url",
                    format!(
                        "{:?} must start with https:// (mutual TLS is mandatory)",
                        c.url
                    ),
                );
            } else if crate::daemon::sender::split_url(&c.url).is_err() {
                bad(
                    Some("collector"),
                    "url",
                    format!("{:?} is not https://host[:port][/path]", c.url),
                );
            }
            for (key, p) in [("ca", &c.ca), ("cert", &c.cert), ("key", &c.key)] {
                if !p.is_absolute() {
                    bad(
                        Some("collector"),
                        key,
                        format!("{} is not an absolute path", p.display()),
                    );
                }
            }
            if c.batch_size == 0 || c.batch_size > 10_000 {
                bad(
                    Some("collector"),
                    "batch_size",
                    "must be between 1 and 10000".into(),
                );
            }
        }
        for id in &self.remediation_allow {
            if id.is_empty()
                || !id
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
            {
                bad(
                    None,
                    "remediation_allow",
                    format!("{id:?} is not a rule id ([a-z0-9._-]+)"),
                );
            }
        }
        let l = &self.limits;
        if !(0..=19).contains(&l.nice) {
            bad(
                Some("limits"),
                "nice",
                format!("{} is not in 0..=19", l.nice),
            );
        }
        if l.outbox_max_events < 100 {
            bad(
                Some("limits"),
                "outbox_max_events",
                "must be at least 100".into(),
            );
        }
        if l.realtime_max_dirty == 0 {
            bad(
                Some("limits"),
                "realtime_max_dirty",
                "must be at least 1".into(),
            );
        }
        if l.realtime_debounce_ms > 60_000 {
            bad(
                Some("limits"),
                "realtime_debounce_ms",
                "must be at most 60000".into(),
            );
        }
        out
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

    /// Files the config names that must be as trusted as the config itself:
    /// keys, certificates' private key, baselines.
    pub fn trusted_files(&self) -> Vec<&Path> {
        let mut v: Vec<&Path> = self.trusted_keys.iter().map(PathBuf::as_path).collect();
        v.extend(self.baselines.iter().map(PathBuf::as_path));
        if let Some(c) = &self.collector {
            v.push(&c.key);
            v.push(&c.ca);
        }
        v
    }

    /// Whether the local config allows remediating `rule` (by id or by
    /// `remediation_min_severity`). Says nothing about the mode.
    pub fn remediation_allows(&self, rule: &plumb_core::Rule) -> bool {
        self.remediation_allow.contains(&rule.id)
            || self
                .remediation_min_severity
                .is_some_and(|min| rule.severity >= min)
    }

    /// Checks every file the config names that the agent must trust.
    pub fn check_files(&self) -> Result<(), ConfigError> {
        for p in self.trusted_files() {
            check_trusted_file(p)?;
        }
        Ok(())
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
        assert!(e.contains("a.toml:2: state_dir:"), "{e}");
        assert!(
            e.contains("a.toml:4: intervals.checks: must be at least 1s"),
            "{e}"
        );
        assert!(e.contains("a.toml:6: limits.nice:"), "{e}");
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
    fn shipped_example_is_valid() {
        let text = include_str!("../../agent.example.toml");
        Config::from_str(text, "agent.example.toml").unwrap();
    }
}
