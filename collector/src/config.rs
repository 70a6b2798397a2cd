//! `collector.toml`: strict (unknown fields are errors), every setting with a
//! documented default (see `collector.example.toml`). Parsing first, then a
//! semantic check; both name the file and line.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The whole config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Listening socket and HTTP limits.
    #[serde(default)]
    pub server: ServerSection,
    /// Certificates.
    pub tls: TlsSection,
    /// Database.
    #[serde(default)]
    pub storage: StorageSection,
    /// How the queries judge hosts.
    #[serde(default)]
    pub hosts: HostsSection,
    /// Signed baselines this collector publishes.
    #[serde(default)]
    pub baselines: BaselinesSection,
}

/// `[baselines]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselinesSection {
    /// Public keys (`.pub` files, as written by `plumb keygen`) whose
    /// bundles `baseline publish` accepts. Empty: nothing can be published.
    #[serde(default)]
    pub trusted_keys: Vec<PathBuf>,
}

/// `[server]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address and port to listen on.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// Connections held at once; more wait in the kernel's backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Largest request body accepted (bytes); larger gets 413.
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// A TLS handshake must finish within this many seconds.
    #[serde(default = "default_handshake_timeout")]
    pub handshake_timeout_secs: u64,
    /// An idle keep-alive connection is closed after this many seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_secs: u64,
    /// A request (headers and body) must arrive within this many seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// On SIGTERM, connections get this long to finish before the collector exits.
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout_secs: u64,
}

/// `[tls]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSection {
    /// Fleet CA certificate(s) (PEM) that agent certificates must chain to.
    pub ca: PathBuf,
    /// The collector's certificate chain (PEM).
    pub cert: PathBuf,
    /// The collector's private key (PEM, mode 0600).
    pub key: PathBuf,
    /// CRL files (PEM); revoked agents are refused at the handshake.
    #[serde(default)]
    pub crl: Vec<PathBuf>,
}

/// SQLite `synchronous` level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Synchronous {
    /// fsync at every commit: an acknowledged event survives power loss.
    Full,
    /// WAL fsync at checkpoints only: survives a crash of the process, not of the machine.
    Normal,
}

/// `[storage]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// Only `sqlite` in this version.
    #[serde(default = "default_backend")]
    pub backend: String,
    /// SQLite database file.
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
    /// Durability of each commit.
    #[serde(default = "default_synchronous")]
    pub synchronous: Synchronous,
    /// Events older than this (by reception time) are deleted, except each
    /// host's latest snapshot. 0 keeps everything.
    #[serde(default = "default_retention_days")]
    pub retention_days: u32,
    /// Batches admitted at once (read, parsed, queued for the writer); beyond
    /// this, requests get 429. Bounds memory: at most this many bodies.
    #[serde(default = "default_queue_batches")]
    pub queue_batches: usize,
    /// How long a request waits for room in the queue before 429.
    #[serde(default = "default_queue_wait_ms")]
    pub queue_wait_ms: u64,
    /// `Retry-After` sent with 429 and 503.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u64,
    /// Most events committed in one transaction (group commit).
    #[serde(default = "default_max_group_events")]
    pub max_group_events: usize,
}

/// `[hosts]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsSection {
    /// The agents' snapshot interval, seconds.
    #[serde(default = "default_interval")]
    pub interval_secs: u64,
    /// A host not heard from for this many intervals is marked stale.
    #[serde(default = "default_stale_intervals")]
    pub stale_after_intervals: u32,
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([0, 0, 0, 0], 8443))
}
fn default_max_connections() -> usize {
    10_000
}
fn default_max_body_bytes() -> usize {
    4 * 1024 * 1024
}
fn default_handshake_timeout() -> u64 {
    10
}
fn default_idle_timeout() -> u64 {
    600
}
fn default_request_timeout() -> u64 {
    30
}
fn default_shutdown_timeout() -> u64 {
    10
}
fn default_backend() -> String {
    "sqlite".into()
}
fn default_db_path() -> PathBuf {
    PathBuf::from("/var/lib/plumb-collector/collector.db")
}
fn default_synchronous() -> Synchronous {
    Synchronous::Full
}
fn default_retention_days() -> u32 {
    90
}
fn default_queue_batches() -> usize {
    256
}
fn default_queue_wait_ms() -> u64 {
    200
}
fn default_retry_after() -> u64 {
    2
}
fn default_max_group_events() -> usize {
    50_000
}
fn default_interval() -> u64 {
    300
}
fn default_stale_intervals() -> u32 {
    3
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            max_connections: default_max_connections(),
            max_body_bytes: default_max_body_bytes(),
            handshake_timeout_secs: default_handshake_timeout(),
            idle_timeout_secs: default_idle_timeout(),
            request_timeout_secs: default_request_timeout(),
            shutdown_timeout_secs: default_shutdown_timeout(),
        }
    }
}

impl Default for StorageSection {
    fn default() -> Self {
        StorageSection {
            backend: default_backend(),
            path: default_db_path(),
            synchronous: default_synchronous(),
            retention_days: default_retention_days(),
            queue_batches: default_queue_batches(),
            queue_wait_ms: default_queue_wait_ms(),
            retry_after_secs: default_retry_after(),
            max_group_events: default_max_group_events(),
        }
    }
}

impl Default for HostsSection {
    fn default() -> Self {
        HostsSection {
            interval_secs: default_interval(),
            stale_after_intervals: default_stale_intervals(),
        }
    }
}

impl HostsSection {
    /// Seconds after which a host is stale.
    pub fn stale_after_secs(&self) -> u64 {
        self.interval_secs
            .saturating_mul(u64::from(self.stale_after_intervals))
    }
}

/// Largest config file read.
const MAX_CONFIG_BYTES: u64 = 1 << 20;

/// A config error, as `file:line: message`.
#[derive(Debug, thiserror::Error)]
#[error("{}{}: {message}", path.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ConfigError {
    /// The config file.
    pub path: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub message: String,
}

fn line_of_offset(text: &str, offset: usize) -> usize {
    text.get(..offset.min(text.len()))
        .map(|s| s.bytes().filter(|&b| b == b'\n').count() + 1)
        .unwrap_or(1)
}

/// Line of `key =` inside `[section]`, for semantic errors.
fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut in_section = false;
    for (n, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            in_section = t.trim_start_matches('[').trim_end_matches(']').trim() == section;
            continue;
        }
        if in_section {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

impl Config {
    /// Reads, parses and checks a config file. Refuses one writable by others.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let err = |line, message: String| ConfigError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let bytes = plumb_os::read_trusted(path, plumb_os::FileKind::Config, MAX_CONFIG_BYTES)
            .map_err(|e| err(None, e.problem.to_string()))?;
        let text =
            String::from_utf8(bytes).map_err(|e| err(None, format!("not UTF-8 text: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses and checks config text; `path` is for messages and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let err = |line, message: String| ConfigError {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let line = e.span().map(|s| line_of_offset(text, s.start));
            err(line, e.message().trim().to_string())
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        let checks: [(bool, &str, &str, &str); 10] = [
            (
                cfg.server.request_timeout_secs == 0,
                "server",
                "request_timeout_secs",
                "must be at least 1",
            ),
            (
                cfg.storage.backend != "sqlite",
                "storage",
                "backend",
                "only \"sqlite\" is supported in this version",
            ),
            (
                cfg.server.max_connections == 0,
                "server",
                "max_connections",
                "must be at least 1",
            ),
            (
                cfg.server.max_body_bytes < 1024,
                "server",
                "max_body_bytes",
                "must be at least 1024",
            ),
            (
                cfg.server.handshake_timeout_secs == 0,
                "server",
                "handshake_timeout_secs",
                "must be at least 1",
            ),
            (
                cfg.server.idle_timeout_secs == 0,
                "server",
                "idle_timeout_secs",
                "must be at least 1",
            ),
            (
                cfg.storage.queue_batches == 0,
                "storage",
                "queue_batches",
                "must be at least 1",
            ),
            (
                cfg.storage.max_group_events == 0,
                "storage",
                "max_group_events",
                "must be at least 1",
            ),
            (
                cfg.hosts.interval_secs == 0,
                "hosts",
                "interval_secs",
                "must be at least 1",
            ),
            (
                cfg.hosts.stale_after_intervals == 0,
                "hosts",
                "stale_after_intervals",
                "must be at least 1",
            ),
        ];
        for (bad, section, key, why) in checks {
            if bad {
                return Err(err(
                    line_of_key(text, section, key),
                    format!("[{section}] {key}: {why}"),
                ));
            }
        }
        // Relative paths are relative to the config file, not the working directory.
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut cfg.tls.ca);
        rebase(&mut cfg.tls.cert);
        rebase(&mut cfg.tls.key);
        cfg.tls.crl.iter_mut().for_each(rebase);
        rebase(&mut cfg.storage.path);
        cfg.baselines.trusted_keys.iter_mut().for_each(rebase);
        Ok(cfg)
    }

    /// Checks the files the config names: present, trusted, parseable.
    /// Each is read through `plumb_os::open_trusted`, with the private-key
    /// rule for `tls.key`.
    pub fn check_files(&self) -> Result<(), String> {
        crate::tls::server_config(&self.tls_files()).map_err(|e| e.to_string())?;
        for p in &self.baselines.trusted_keys {
            plumb_core::bundle::PublicKey::load(p).map_err(|e| e.to_string())?;
        }
        Ok(())
    }

    /// The TLS files for [`crate::tls::server_config`].
    pub fn tls_files(&self) -> crate::tls::ServerFiles {
        crate::tls::ServerFiles {
            ca: self.tls.ca.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
            crls: self.tls.crl.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: &str = "[tls]\nca = \"ca.pem\"\ncert = \"s.pem\"\nkey = \"s.key\"\n";

    #[test]
    fn defaults_and_relative_paths() {
        let c = Config::parse(Path::new("/etc/pc/collector.toml"), MIN).unwrap();
        assert_eq!(c.tls.ca, Path::new("/etc/pc/ca.pem"));
        assert_eq!(c.server.max_body_bytes, 4 * 1024 * 1024);
        assert_eq!(c.storage.synchronous, Synchronous::Full);
        assert_eq!(c.hosts.stale_after_secs(), 900);
    }

    #[test]
    fn the_example_config_parses_with_the_documented_defaults() {
        let text = include_str!("../collector.example.toml");
        let c = Config::parse(Path::new("/etc/plumb-collector/collector.toml"), text).unwrap();
        let d = Config::parse(Path::new("/etc/plumb-collector/collector.toml"), MIN).unwrap();
        assert_eq!(c.storage.queue_batches, d.storage.queue_batches);
        assert_eq!(c.server.max_body_bytes, d.server.max_body_bytes);
        assert_eq!(c.storage.retention_days, d.storage.retention_days);
        assert_eq!(c.server.idle_timeout_secs, d.server.idle_timeout_secs);
        assert_eq!(c.baselines.trusted_keys, d.baselines.trusted_keys);
    }

    #[test]
    fn baseline_keys_are_relative_to_the_config() {
        let text = format!("{MIN}[baselines]\ntrusted_keys = [\"k/team.pub\"]\n");
        let c = Config::parse(Path::new("/etc/pc/collector.toml"), &text).unwrap();
        assert_eq!(
            c.baselines.trusted_keys,
            vec![PathBuf::from("/etc/pc/k/team.pub")]
        );
    }

    #[test]
    fn unknown_field_names_line() {
        let text = format!("{MIN}\n[storage]\nretention_dayz = 3\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:7: unknown field `retention_dayz`"),
            "{e}"
        );
    }

    #[test]
    fn semantic_error_names_line() {
        let text = format!("{MIN}[storage]\nqueue_batches = 0\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "c.toml:6: [storage] queue_batches: must be at least 1");
    }

    #[test]
    fn wrong_type_names_line() {
        let text = format!("{MIN}[server]\nlisten = 8443\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:6: "), "{e}");
    }
}
