//! `collector.toml`: strict (unknown fields are errors), every setting with a
//! documented default (see `collector.example.toml`). Parsing first, then
//! the checks a parser cannot make, then (for `serve`) the files it names;
//! every problem is a `plumb_core::Diagnostic` naming file, line, column
//! and field.

use plumb_core::{Diagnostic, Diagnostics, Document};
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod console;
pub use console::ConsoleSection;

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
    /// Prometheus metrics (`/metrics`).
    #[serde(default)]
    pub metrics: MetricsSection,
    /// `[[forward]]`: SIEM sinks the stored events are forwarded to.
    #[serde(default)]
    pub forward: Vec<crate::forward::SinkConfig>,
    /// `[[alert]]`: webhook alerts.
    #[serde(default)]
    pub alert: Vec<crate::alert::AlertRule>,
    /// The ops console (`[console]`); absent: none.
    #[serde(default)]
    pub console: Option<ConsoleSection>,
}

/// `[metrics]`: who may scrape `/metrics` on the agents' mTLS listener,
/// and an optional plain-HTTP listener for a local Prometheus.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsSection {
    /// Client certificate identities (CN, as `pki issue --agent NAME`
    /// makes them) allowed to scrape `/metrics` over mTLS. They may do
    /// nothing else (no events, no baselines). Empty: nobody.
    #[serde(default)]
    pub scrapers: Vec<String>,
    /// Plain HTTP listener serving `/metrics` only (no TLS, no
    /// authentication). Unset: none.
    #[serde(default)]
    pub listen: Option<SocketAddr>,
    /// Lets `listen` be a non-loopback address (anyone reaching it reads
    /// the fleet's figures).
    #[serde(default)]
    pub allow_non_loopback: bool,
    /// The fleet figures (hosts, stale, failing, score, baselines) are read
    /// from the database at most once per this many seconds, however many
    /// scrapes arrive. 0: at every scrape (still one read at a time).
    #[serde(default = "default_fleet_cache")]
    pub fleet_cache_secs: u64,
}

impl Default for MetricsSection {
    fn default() -> Self {
        MetricsSection {
            scrapers: Vec::new(),
            listen: None,
            allow_non_loopback: false,
            fleet_cache_secs: default_fleet_cache(),
        }
    }
}

fn default_fleet_cache() -> u64 {
    15
}

impl MetricsSection {
    fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        if let Some(addr) = self.listen {
            if !addr.ip().is_loopback() && !self.allow_non_loopback {
                out.push(doc.at(
                    "metrics.listen",
                    format!(
                        "{addr} is not a loopback address: this listener has no TLS and no \
                         authentication; bind 127.0.0.1 or ::1, or set allow_non_loopback = true"
                    ),
                ));
            }
        }
        for (i, name) in self.scrapers.iter().enumerate() {
            if name.trim().is_empty() {
                out.push(doc.at(&format!("metrics.scrapers[{i}]"), "must not be empty"));
            }
        }
    }

    /// Whether the certificate identity `identity` (canonical) may scrape.
    pub fn is_scraper(&self, identity: &str) -> bool {
        self.scrapers
            .iter()
            .any(|s| s.eq_ignore_ascii_case(identity))
    }
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
    /// Authenticated connections held at once; beyond, a new one is closed
    /// after its handshake.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Authenticated connections of one agent (certificate identity) at
    /// once; a newer one closes its oldest.
    #[serde(default = "default_max_connections_per_agent")]
    pub max_connections_per_agent: usize,
    /// TLS handshakes in progress at once; beyond, a new connection is closed.
    #[serde(default = "default_max_handshakes")]
    pub max_handshakes: usize,
    /// TLS handshakes in progress at once from one source address (IPv4, or
    /// IPv6 /64); beyond, a new connection from it is closed.
    #[serde(default = "default_max_handshakes_per_address")]
    pub max_handshakes_per_address: usize,
    /// Failed and refused handshakes are logged as one summary line per
    /// this many seconds (counts by reason).
    #[serde(default = "default_handshake_log_interval")]
    pub handshake_log_interval_secs: u64,
    /// An authenticated connection is closed after this many seconds (after
    /// the request in flight), so no identity lives on one handshake forever.
    #[serde(default = "default_max_connection_lifetime")]
    pub max_connection_lifetime_secs: u64,
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
    /// Refuse a CRL past its `nextUpdate` and an empty `crl` (otherwise
    /// both are loud warnings).
    #[serde(default)]
    pub require_fresh_crl: bool,
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
    /// `sqlite` (embedded, the default) or `postgres` (several collectors
    /// sharing one database).
    #[serde(default = "default_backend")]
    pub backend: String,
    /// SQLite database file.
    #[serde(default = "default_db_path")]
    pub path: PathBuf,
    /// PostgreSQL: how to connect.
    #[serde(default)]
    pub postgres: PostgresSection,
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

/// `[storage.postgres]`: the database shared by the collectors.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSection {
    /// Connection string: libpq keywords (`host=db.example user=plumb
    /// dbname=plumb`) or a URL (`postgres://plumb@db.example/plumb`). A
    /// host starting with `/` is a Unix socket directory. No password here:
    /// see `password_file`.
    #[serde(default)]
    pub url: String,
    /// File holding the password (first line; mode 0600, owned by root or
    /// the collector). When unset, the `PGPASSWORD` environment variable is
    /// used, if set. The password never appears in the logs.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// CA certificate(s) (PEM) the database server's certificate must chain
    /// to. When set, every TCP connection uses TLS (rustls) and the server
    /// name is verified against the certificate (libpq's `verify-full`).
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// Connections per pool (the collector has one for its writer and one
    /// for its reads).
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
    /// Seconds to wait for a connection (connect or pool) before the request
    /// is answered 503 with Retry-After.
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How often (seconds) the collector reads the revocations recorded in
    /// the database: a revoked agent is refused within this time by every
    /// collector.
    #[serde(default = "default_revocation_poll")]
    pub revocation_poll_secs: u64,
}

impl Default for PostgresSection {
    fn default() -> Self {
        PostgresSection {
            url: String::new(),
            password_file: None,
            ca: None,
            pool_size: default_pool_size(),
            connect_timeout_secs: default_connect_timeout(),
            revocation_poll_secs: default_revocation_poll(),
        }
    }
}

/// Connections a query runs statements on at once (`report`: the
/// compliance's two chains and the file changes), which a pool smaller
/// than this cannot serve.
const MIN_PARALLEL_CONNECTIONS: usize = 3;

fn default_pool_size() -> usize {
    8
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_revocation_poll() -> u64 {
    5
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
fn default_max_connections_per_agent() -> usize {
    4
}
fn default_max_handshakes() -> usize {
    1024
}
fn default_max_handshakes_per_address() -> usize {
    32
}
fn default_handshake_log_interval() -> u64 {
    60
}
fn default_max_connection_lifetime() -> u64 {
    3600
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
            max_connections_per_agent: default_max_connections_per_agent(),
            max_handshakes: default_max_handshakes(),
            max_handshakes_per_address: default_max_handshakes_per_address(),
            handshake_log_interval_secs: default_handshake_log_interval(),
            max_connection_lifetime_secs: default_max_connection_lifetime(),
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
            postgres: PostgresSection::default(),
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

/// Why a config was refused: every problem found, one per line, each
/// `file:line:column: field: message`.
pub type ConfigError = Diagnostics;

/// A config as parsed, where each field is written, and the problems a
/// parser cannot see.
struct Parsed {
    config: Config,
    doc: Document,
    problems: Vec<Diagnostic>,
}

impl Config {
    /// Reads, parses and checks a config file, not the files it names:
    /// what the query commands need. Refuses one writable by others.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::read(path)?.valid()
    }

    /// [`Config::load`], then every file the config names: present,
    /// trusted, parseable, the TLS files going together. What `serve`
    /// needs; every problem is listed, each at the line naming the file.
    /// With the config, the warnings it deserves (a stale or missing CRL
    /// without `require_fresh_crl`), each at its line too.
    pub fn load_checked(path: &Path) -> Result<(Config, Vec<Diagnostic>), ConfigError> {
        let mut parsed = Self::read(path)?;
        let (problems, warnings) = parsed.config.check_files(&parsed.doc);
        parsed.problems.extend(problems);
        Ok((parsed.valid()?, warnings))
    }

    /// Parses and checks config text; `path` is for messages and relative paths.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        Self::parse_text(path, text.to_string())?.valid()
    }

    /// The config file's text, read through the trust rule
    /// (`plumb_os::trusted`) from the descriptor that was judged. Every read
    /// of the config goes through here.
    fn read(path: &Path) -> Result<Parsed, ConfigError> {
        let shown = path.display().to_string();
        let refuse = |m: String| Diagnostics(vec![Diagnostic::file(&shown, "", m)]);
        let bytes = plumb_os::read_trusted(path, plumb_os::FileKind::Config, MAX_CONFIG_BYTES)
            .map_err(|e| refuse(e.problem.to_string()))?;
        let text = String::from_utf8(bytes).map_err(|e| refuse(format!("not UTF-8 text: {e}")))?;
        Self::parse_text(path, text)
    }

    /// Parsing (stops at the first syntax or type error), the checks a
    /// parser cannot make (all of them), and relative paths made relative
    /// to the config file rather than the working directory.
    fn parse_text(path: &Path, text: String) -> Result<Parsed, ConfigError> {
        let (mut config, doc) = Document::parse::<Config>(text, &path.display().to_string())
            .map_err(|d| Diagnostics(vec![d]))?;
        let mut problems = Vec::new();
        config.server.check(&doc, &mut problems);
        config.storage.check(&doc, &mut problems);
        config.hosts.check(&doc, &mut problems);
        config.metrics.check(&doc, &mut problems);
        check_forward(&config.forward, &doc, &mut problems);
        check_alerts(&config.alert, &doc, &mut problems);
        if let Some(c) = &config.console {
            c.check(&doc, &mut problems);
        }
        config.rebase(path.parent().unwrap_or(Path::new(".")));
        Ok(Parsed {
            config,
            doc,
            problems,
        })
    }

    fn rebase(&mut self, base: &Path) {
        let rebase = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        rebase(&mut self.tls.ca);
        rebase(&mut self.tls.cert);
        rebase(&mut self.tls.key);
        self.tls.crl.iter_mut().for_each(rebase);
        rebase(&mut self.storage.path);
        if let Some(p) = &mut self.storage.postgres.password_file {
            rebase(p);
        }
        if let Some(p) = &mut self.storage.postgres.ca {
            rebase(p);
        }
        self.baselines.trusted_keys.iter_mut().for_each(rebase);
        for s in &mut self.forward {
            let files = [
                &mut s.ca,
                &mut s.client_cert,
                &mut s.client_key,
                &mut s.token_file,
            ];
            files.into_iter().flatten().for_each(rebase);
        }
        for a in &mut self.alert {
            [&mut a.ca, &mut a.secret_file]
                .into_iter()
                .flatten()
                .for_each(rebase);
        }
    }

    /// Each file the config names that is missing, untrusted or does not
    /// parse, at the line naming it. The TLS files are loaded together
    /// only when each of them passed on its own, so a problem is said once.
    fn check_files(&self, doc: &Document) -> (Vec<Diagnostic>, Vec<Diagnostic>) {
        use plumb_os::FileKind::{Certificate, PrivateKey, PublicKey};
        let mut out = Vec::new();
        let mut warnings = Vec::new();
        let crl_field = |w: &crate::tls::CrlWarning| match w.index {
            Some(i) => format!("tls.crl[{i}]"),
            None => "tls.crl".to_string(),
        };
        let mut tls_ok = passes(doc, "tls.ca", &self.tls.ca, Certificate, &mut out);
        tls_ok &= passes(doc, "tls.cert", &self.tls.cert, Certificate, &mut out);
        for (i, p) in self.tls.crl.iter().enumerate() {
            tls_ok &= passes(doc, &format!("tls.crl[{i}]"), p, Certificate, &mut out);
        }
        tls_ok &= passes(doc, "tls.key", &self.tls.key, PrivateKey, &mut out);
        if tls_ok {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let view = crate::revocation::Revocations::new();
            match crate::tls::load(&self.tls_files(), view, now) {
                Ok(setup) => {
                    for w in &setup.warnings {
                        warnings.push(doc.at(&crl_field(w), &w.message));
                    }
                }
                Err(crate::tls::TlsError::CrlPolicy(w)) => {
                    out.push(doc.at(&crl_field(&w), &w.message));
                }
                Err(e) => out.push(doc.at("tls", e.to_string())),
            }
        }
        if self.storage.backend == "postgres" {
            let pg = &self.storage.postgres;
            if pg.pool_size < MIN_PARALLEL_CONNECTIONS {
                warnings.push(doc.at(
                    "storage.postgres.pool_size",
                    format!(
                        "{} connection(s): `hosts`, `report` and the console run up to \
                         {MIN_PARALLEL_CONNECTIONS} statements at once and, short of connections, \
                         fail after connect_timeout_secs",
                        pg.pool_size
                    ),
                ));
            }
            if let Some(p) = &pg.password_file {
                passes(
                    doc,
                    "storage.postgres.password_file",
                    p,
                    PrivateKey,
                    &mut out,
                );
            }
            if let Some(p) = &pg.ca {
                passes(doc, "storage.postgres.ca", p, Certificate, &mut out);
            }
        }
        for (i, p) in self.baselines.trusted_keys.iter().enumerate() {
            let field = format!("baselines.trusted_keys[{i}]");
            if passes(doc, &field, p, PublicKey, &mut out) {
                if let Err(e) = plumb_core::bundle::PublicKey::load(p) {
                    out.push(doc.at(&field, e.to_string()));
                }
            }
        }
        check_forward_files(&self.forward, doc, &mut out);
        check_alert_files(&self.alert, doc, &mut out);
        (out, warnings)
    }

    /// The TLS files for [`crate::tls::load`].
    pub fn tls_files(&self) -> crate::tls::ServerFiles {
        crate::tls::ServerFiles {
            ca: self.tls.ca.clone(),
            cert: self.tls.cert.clone(),
            key: self.tls.key.clone(),
            crls: self.tls.crl.clone(),
            require_fresh_crl: self.tls.require_fresh_crl,
        }
    }
}

impl Parsed {
    fn valid(mut self) -> Result<Config, ConfigError> {
        if self.problems.is_empty() {
            Ok(self.config)
        } else {
            // In the order of the file, as an editor shows them.
            self.problems.sort_by_key(|d| (d.line, d.column));
            Err(Diagnostics(self.problems))
        }
    }
}

/// Whether the file `field` names passes `check`; when it does not, the
/// problem, at the line naming it.
fn passes(
    doc: &Document,
    field: &str,
    path: &Path,
    kind: plumb_os::FileKind,
    out: &mut Vec<Diagnostic>,
) -> bool {
    match plumb_os::open_trusted(path, kind) {
        Ok(_) => true,
        Err(e) => {
            out.push(doc.at(field, e.to_string()));
            false
        }
    }
}

/// `field` (of `doc`) must be at least 1.
fn at_least_one(doc: &Document, field: &str, value: u64, out: &mut Vec<Diagnostic>) {
    if value == 0 {
        out.push(doc.at(field, "must be at least 1"));
    }
}

/// `[[forward]]`: each sink's own checks, and names unique.
fn check_forward(sinks: &[crate::forward::SinkConfig], doc: &Document, out: &mut Vec<Diagnostic>) {
    for (i, s) in sinks.iter().enumerate() {
        s.check(i, doc, out);
        if sinks[..i].iter().any(|o| o.name == s.name) {
            out.push(doc.at(&format!("forward[{i}].name"), "another sink has this name"));
        }
    }
}

/// The files `[[forward]]` sinks name: present, trusted, parseable.
fn check_forward_files(
    sinks: &[crate::forward::SinkConfig],
    doc: &Document,
    out: &mut Vec<Diagnostic>,
) {
    use plumb_os::FileKind::{Certificate, PrivateKey};
    for (i, s) in sinks.iter().enumerate() {
        let f = |field: &str| format!("forward[{i}].{field}");
        for (field, path, kind) in [
            ("ca", &s.ca, Certificate),
            ("client_cert", &s.client_cert, Certificate),
            ("client_key", &s.client_key, PrivateKey),
            ("token_file", &s.token_file, PrivateKey),
        ] {
            if let Some(p) = path {
                passes(doc, &f(field), p, kind, out);
            }
        }
        if let Some(ca) = &s.ca {
            if let Err(e) = crate::tls::read_certs(ca) {
                out.push(doc.at(&f("ca"), e.to_string()));
            }
        }
    }
}

/// `[[alert]]`: each rule's own checks, and names unique.
fn check_alerts(rules: &[crate::alert::AlertRule], doc: &Document, out: &mut Vec<Diagnostic>) {
    for (i, r) in rules.iter().enumerate() {
        r.check(i, doc, out);
        if rules[..i].iter().any(|o| o.name == r.name) {
            out.push(doc.at(&format!("alert[{i}].name"), "another alert has this name"));
        }
    }
}

/// The files `[[alert]]` rules name: present, trusted, parseable.
fn check_alert_files(rules: &[crate::alert::AlertRule], doc: &Document, out: &mut Vec<Diagnostic>) {
    use plumb_os::FileKind::{Certificate, PrivateKey};
    for (i, r) in rules.iter().enumerate() {
        if let Some(ca) = &r.ca {
            let field = format!("alert[{i}].ca");
            if passes(doc, &field, ca, Certificate, out) {
                if let Err(e) = crate::tls::read_certs(ca) {
                    out.push(doc.at(&field, e.to_string()));
                }
            }
        }
        if let Some(s) = &r.secret_file {
            passes(doc, &format!("alert[{i}].secret_file"), s, PrivateKey, out);
        }
    }
}

impl ServerSection {
    fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        at_least_one(
            doc,
            "server.request_timeout_secs",
            self.request_timeout_secs,
            out,
        );
        at_least_one(
            doc,
            "server.max_connections",
            self.max_connections as u64,
            out,
        );
        if self.max_body_bytes < 1024 {
            out.push(doc.at("server.max_body_bytes", "must be at least 1024"));
        }
        at_least_one(
            doc,
            "server.handshake_timeout_secs",
            self.handshake_timeout_secs,
            out,
        );
        at_least_one(doc, "server.idle_timeout_secs", self.idle_timeout_secs, out);
        at_least_one(
            doc,
            "server.max_connections_per_agent",
            self.max_connections_per_agent as u64,
            out,
        );
        at_least_one(
            doc,
            "server.max_handshakes",
            self.max_handshakes as u64,
            out,
        );
        at_least_one(
            doc,
            "server.max_handshakes_per_address",
            self.max_handshakes_per_address as u64,
            out,
        );
        at_least_one(
            doc,
            "server.handshake_log_interval_secs",
            self.handshake_log_interval_secs,
            out,
        );
        at_least_one(
            doc,
            "server.max_connection_lifetime_secs",
            self.max_connection_lifetime_secs,
            out,
        );
    }
}

impl StorageSection {
    fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        match self.backend.as_str() {
            "sqlite" => {}
            "postgres" => {
                if self.postgres.url.trim().is_empty() {
                    out.push(doc.at(
                        "storage.backend",
                        "backend \"postgres\" needs [storage.postgres] url",
                    ));
                } else if let Err(e) = self.postgres.url.parse::<tokio_postgres::Config>() {
                    out.push(doc.at(
                        "storage.postgres.url",
                        format!("not a PostgreSQL connection string: {e}"),
                    ));
                } else if self.postgres.url.contains("password") {
                    out.push(doc.at(
                        "storage.postgres.url",
                        "no password in the connection string: use password_file or PGPASSWORD",
                    ));
                }
                at_least_one(
                    doc,
                    "storage.postgres.pool_size",
                    self.postgres.pool_size as u64,
                    out,
                );
                at_least_one(
                    doc,
                    "storage.postgres.connect_timeout_secs",
                    self.postgres.connect_timeout_secs,
                    out,
                );
                at_least_one(
                    doc,
                    "storage.postgres.revocation_poll_secs",
                    self.postgres.revocation_poll_secs,
                    out,
                );
            }
            _ => out.push(doc.at("storage.backend", "must be \"sqlite\" or \"postgres\"")),
        }
        at_least_one(doc, "storage.queue_batches", self.queue_batches as u64, out);
        at_least_one(
            doc,
            "storage.max_group_events",
            self.max_group_events as u64,
            out,
        );
    }
}

impl HostsSection {
    fn check(&self, doc: &Document, out: &mut Vec<Diagnostic>) {
        at_least_one(doc, "hosts.interval_secs", self.interval_secs, out);
        at_least_one(
            doc,
            "hosts.stale_after_intervals",
            self.stale_after_intervals.into(),
            out,
        );
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
            e.starts_with("c.toml:7:1: storage.retention_dayz: unknown field `retention_dayz`"),
            "{e}"
        );
    }

    #[test]
    fn semantic_error_names_line() {
        let text = format!("{MIN}[storage]\nqueue_batches = 0\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(e, "c.toml:6:17: storage.queue_batches: must be at least 1");
    }

    #[test]
    fn every_semantic_error_is_listed_in_file_order() {
        let text = format!(
            "{MIN}[server]\nmax_body_bytes = 10\n[storage]\nbackend = \"pg\"\nqueue_batches = 0\n"
        );
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "c.toml:6:18: server.max_body_bytes: must be at least 1024\n\
             c.toml:8:11: storage.backend: must be \"sqlite\" or \"postgres\"\n\
             c.toml:9:17: storage.queue_batches: must be at least 1"
        );
    }

    #[test]
    fn metrics_listener_is_loopback_unless_allowed() {
        let text = format!("{MIN}[metrics]\nlisten = \"0.0.0.0:9464\"\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("c.toml:6:10: metrics.listen: 0.0.0.0:9464 is not a loopback address"),
            "{e}"
        );
        let text = format!("{text}allow_non_loopback = true\nscrapers = [\"Prometheus\"]\n");
        let c = Config::parse(Path::new("c.toml"), &text).unwrap();
        assert!(c.metrics.is_scraper("prometheus"));
        assert!(!c.metrics.is_scraper("web-12"));
        let d = Config::parse(Path::new("c.toml"), MIN).unwrap();
        assert_eq!((d.metrics.listen, d.metrics.fleet_cache_secs), (None, 15));
    }

    #[test]
    fn wrong_type_names_line() {
        let text = format!("{MIN}[server]\nlisten = 8443\n");
        let e = Config::parse(Path::new("c.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("c.toml:6:10: server.listen: "), "{e}");
    }
}
