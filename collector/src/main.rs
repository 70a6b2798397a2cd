//! `plumb-collector`: flags in, calls into the library, output and exit code
//! out. Exit codes: 0 ok, 1 drift or failures found (drift, report), 2 usage,
//! config or input error.

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};
use plumb_collector::config::{Config, HostsSection, StorageSection};
use plumb_collector::queries::{self, Format};
use plumb_collector::storage::{self, DriftFilter, PublishOutcome, Queries};
use plumb_collector::{pki, server};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "plumb-collector",
    version,
    about = "Plumbline collector: mTLS ingestion, fleet PKI, storage and queries"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the collector.
    Serve {
        /// Config file (see collector.example.toml).
        #[arg(long)]
        config: PathBuf,
        /// Check the config and the files it names, then exit 0 (valid) or 2.
        #[arg(long)]
        validate: bool,
    },
    /// A certificate authority for fleets without one.
    Pki {
        #[command(subcommand)]
        cmd: PkiCmd,
    },
    /// Every host: last seen, stale marker, score, failing rules, drift, versions.
    Hosts {
        #[command(flatten)]
        src: Source,
        /// A host unseen for longer is stale (e.g. 15m, 1h); default from the config, else 15m.
        #[arg(long)]
        stale_after: Option<String>,
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
    /// Drift events, newest first (exit 1 when any is listed).
    Drift {
        #[command(flatten)]
        src: Source,
        /// Only this host.
        #[arg(long)]
        host: Option<String>,
        /// Only since this time: RFC 3339 or a duration back from now (30m, 24h, 7d).
        #[arg(long)]
        since: Option<String>,
        /// Only at least this severe.
        #[arg(long, value_enum)]
        severity: Option<Sev>,
        /// At most this many events.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
    /// Fleet compliance per ISSP domain (exit 1 when any host fails a rule).
    Report {
        #[command(flatten)]
        src: Source,
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
    /// Signed baselines served to the agents.
    Baseline {
        #[command(subcommand)]
        cmd: BaselineCmd,
    },
    /// Moving a store between backends.
    Storage {
        #[command(subcommand)]
        cmd: StorageCmd,
    },
    /// Print a shell completion script (packages install them).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
}

#[derive(Subcommand)]
enum PkiCmd {
    /// Create a CA (key 0600, certificate, empty CRL) in DIR.
    Init {
        #[arg(long)]
        dir: PathBuf,
        /// CA common name.
        #[arg(long, default_value = "Plumbline fleet CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = pki::CA_DAYS)]
        days: u32,
    },
    /// Issue an agent (clientAuth), server (serverAuth) or console operator certificate.
    Issue {
        #[arg(long)]
        dir: PathBuf,
        /// Agent host name: CN and DNS SAN, the identity the collector sees.
        #[arg(long, conflicts_with_all = ["server", "operator"], required_unless_present_any = ["server", "operator"])]
        agent: Option<String>,
        /// Collector DNS name or IP address (SAN).
        #[arg(long, conflicts_with = "operator")]
        server: Option<String>,
        /// Console operator name (CN), marked with the operator role: opens
        /// the console, never the agent API (docs/console.md).
        #[arg(long)]
        operator: Option<String>,
        /// With --operator: also write NAME.p12 for a browser, encrypted
        /// under the password in this file (first line). The environment
        /// variable PLUMB_P12_PASSWORD is read when this is not given.
        #[arg(long, requires = "operator")]
        p12_password_file: Option<PathBuf>,
        /// Validity in days.
        #[arg(long, default_value_t = pki::LEAF_DAYS)]
        days: u32,
    },
    /// Revoke a certificate: its serial goes into DIR/crl.pem (send SIGHUP to
    /// reload) and, with --config naming a PostgreSQL store, into the
    /// database, which every collector of the fleet reads within
    /// `revocation_poll_secs`.
    Revoke {
        #[arg(long)]
        dir: PathBuf,
        /// The collector's config: record the revocation in its PostgreSQL store.
        #[arg(long)]
        config: Option<PathBuf>,
        /// The certificate (PEM) to revoke.
        cert: PathBuf,
    },
}

#[derive(Subcommand)]
enum BaselineCmd {
    /// Verify a signed bundle with the trusted keys and publish it (exit 2 if refused).
    Publish {
        /// The bundle (`plumb baseline sign -o BUNDLE`).
        bundle: PathBuf,
        /// Host names it is for: a glob with `*` and `?` (case-insensitive).
        #[arg(long, default_value = "*")]
        hosts: String,
        /// The collector's config: its database and `[baselines] trusted_keys`.
        #[arg(long, conflicts_with = "db", required_unless_present = "db")]
        config: Option<PathBuf>,
        /// The collector's database file (with --trusted-key).
        #[arg(long, requires = "trusted_key")]
        db: Option<PathBuf>,
        /// A trusted public key file (repeatable; with --db).
        #[arg(long = "trusted-key", requires = "db")]
        trusted_key: Vec<PathBuf>,
    },
    /// Every published baseline version, newest first.
    List {
        #[command(flatten)]
        src: Source,
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
}

#[derive(Subcommand)]
enum StorageCmd {
    /// Copy a SQLite store into PostgreSQL: baselines, events (seqs kept),
    /// rule states, hosts. Idempotent: re-run it after an interruption.
    /// Stop the SQLite collector first; start collectors on PostgreSQL after.
    Migrate {
        /// The SQLite store: `sqlite:PATH`.
        #[arg(long)]
        from: String,
        /// The PostgreSQL database: a URL (`postgres://plumb@db/plumb`) or
        /// libpq keywords (`host=/run/postgresql dbname=plumb`), no password.
        #[arg(long)]
        to: String,
        /// File holding the database password (first line, mode 0600);
        /// else `PGPASSWORD`, if set.
        #[arg(long)]
        password_file: Option<PathBuf>,
        /// CA certificate(s) the database server must chain to (TLS,
        /// verify-full), as `[storage.postgres] ca`.
        #[arg(long)]
        ca: Option<PathBuf>,
        /// Rows per transaction: what a re-run after an interruption redoes at most.
        #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..))]
        batch_rows: u32,
        #[arg(long, value_enum, default_value = "text")]
        format: Fmt,
    },
}

#[derive(Args)]
struct Source {
    /// The collector's database file.
    #[arg(long, conflicts_with_all = ["config", "url"])]
    db: Option<PathBuf>,
    /// The collector's config (its storage path and host settings).
    #[arg(long, conflicts_with = "url")]
    config: Option<PathBuf>,
    /// A remote collector's console (https://HOST:PORT), queried with an
    /// operator certificate: the same output as on the collector host.
    #[arg(long, requires_all = ["cert", "key"])]
    url: Option<String>,
    /// With --url: the operator certificate (PEM).
    #[arg(long, requires = "url")]
    cert: Option<PathBuf>,
    /// With --url: its key (PEM, mode 0600).
    #[arg(long, requires = "url")]
    key: Option<PathBuf>,
    /// With --url: the CA of the console's certificate (default: ca.pem of
    /// the PKI directory the certificate was issued in).
    #[arg(long, requires = "url")]
    ca: Option<PathBuf>,
}

impl Source {
    /// The remote console, with --url.
    fn remote(&self) -> Option<plumb_collector::remote::Remote> {
        let url = self.url.clone()?;
        let cert = self.cert.clone()?;
        let key = self.key.clone()?;
        let ca = self
            .ca
            .clone()
            .unwrap_or_else(|| plumb_collector::remote::default_ca(&cert));
        Some(plumb_collector::remote::Remote { url, cert, key, ca })
    }
}

/// What a remote console answered, printed as the local command prints it.
fn remote_get(
    remote: &plumb_collector::remote::Remote,
    route: &str,
    pairs: &[(&str, Option<String>)],
    format: Fmt,
) -> Result<plumb_collector::remote::Answer> {
    let mut pairs = pairs.to_vec();
    pairs.push((
        "format",
        Some(match format {
            Fmt::Text => "text".into(),
            Fmt::Json => "json".into(),
        }),
    ));
    let answer = plumb_collector::remote::get(
        remote,
        &format!("{route}?{}", plumb_collector::remote::query(&pairs)),
    )?;
    std::io::Write::write_all(&mut std::io::stdout(), &answer.body)?;
    Ok(answer)
}

/// A password from the first line of a file (trailing newline dropped).
fn read_password(path: &Path) -> Result<String> {
    let bytes = plumb_os::read_trusted(path, plumb_os::FileKind::PrivateKey, 4096)
        .with_context(|| format!("{}: reading the .p12 password", path.display()))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("{}: the password is not UTF-8", path.display()))?;
    let line = text.lines().next().unwrap_or("").to_string();
    if line.is_empty() {
        anyhow::bail!("{}: the password is empty", path.display());
    }
    Ok(line)
}

#[derive(Clone, Copy, ValueEnum)]
enum Fmt {
    Text,
    Json,
}

#[derive(Clone, Copy, ValueEnum)]
enum Sev {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<Fmt> for Format {
    fn from(f: Fmt) -> Format {
        match f {
            Fmt::Text => Format::Text,
            Fmt::Json => Format::Json,
        }
    }
}

fn main() -> ExitCode {
    plumb_os::log::init(plumb_os::log::Setup {
        default_filter: "info",
        show_target: true,
    });
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("plumb-collector: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// The storage section of `--db FILE` (SQLite, defaults otherwise).
fn db_file(path: &Path) -> StorageSection {
    StorageSection {
        path: path.to_path_buf(),
        ..StorageSection::default()
    }
}

fn open_source(src: &Source) -> Result<(Box<dyn Queries>, HostsSection)> {
    let (storage, hosts) = match (&src.db, &src.config) {
        (Some(db), _) => (db_file(db), HostsSection::default()),
        (None, Some(cfg)) => {
            let c = Config::load(cfg)?;
            (c.storage, c.hosts)
        }
        (None, None) => anyhow::bail!("give --db FILE or --config FILE"),
    };
    Ok((storage::open_read_only(&storage)?, hosts))
}

fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn run(cli: Cli) -> Result<u8> {
    match cli.cmd {
        Cmd::Serve { config, validate } => serve_cmd(&config, validate),
        Cmd::Pki { cmd } => pki_cmd(cmd),
        Cmd::Baseline { cmd } => baseline_cmd(cmd),
        Cmd::Storage { cmd } => storage_cmd(cmd),
        Cmd::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            // Into a buffer first: clap_complete panics on a closed stdout.
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut cmd, "plumb-collector", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
            Ok(0)
        }
        Cmd::Hosts {
            src,
            stale_after,
            format,
        } => hosts_cmd(&src, stale_after, format),
        Cmd::Drift {
            src,
            host,
            since,
            severity,
            limit,
            format,
        } => drift_cmd(&src, host, since, severity, limit, format),
        Cmd::Report { src, format } => {
            if let Some(remote) = src.remote() {
                let a = remote_get(&remote, "report", &[], format)?;
                return Ok(u8::from(a.failing.unwrap_or(false)));
            }
            let (db, _) = open_source(&src)?;
            let (out, failing) = queries::report(db.as_ref(), format.into())?;
            print!("{out}");
            Ok(u8::from(failing))
        }
    }
}

/// `serve [--validate]`: exit 2 on a config problem (every one listed).
fn serve_cmd(config: &std::path::Path, validate: bool) -> Result<u8> {
    let (cfg, warnings) = match Config::load_checked(config) {
        Ok(c) => c,
        Err(problems) => {
            eprintln!("{problems}");
            return Ok(2);
        }
    };
    if validate {
        // `serve` logs the same warnings itself when it starts.
        for w in &warnings {
            eprintln!("warning: {w}");
        }
        println!("{}: ok", config.display());
        return Ok(0);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(server::serve(cfg))?;
    Ok(0)
}

/// `hosts`, from the store or a remote collector.
fn hosts_cmd(src: &Source, stale_after: Option<String>, format: Fmt) -> Result<u8> {
    if let Some(remote) = src.remote() {
        remote_get(&remote, "hosts", &[("stale_after", stale_after)], format)?;
        return Ok(0);
    }
    let (db, hosts) = open_source(src)?;
    let now = now();
    let stale = match stale_after {
        Some(s) => u64::try_from(now - queries::parse_since(&s, now)?).unwrap_or(0),
        None => hosts.stale_after_secs(),
    };
    print!(
        "{}",
        queries::hosts(db.as_ref(), now, stale, format.into())?
    );
    Ok(0)
}

/// `drift`, from the store or a remote collector: exit 1 when any event
/// is listed.
fn drift_cmd(
    src: &Source,
    host: Option<String>,
    since: Option<String>,
    severity: Option<Sev>,
    limit: usize,
    format: Fmt,
) -> Result<u8> {
    if let Some(remote) = src.remote() {
        let sev =
            severity.map(|s| ["info", "low", "medium", "high", "critical"][s as usize].to_string());
        let a = remote_get(
            &remote,
            "drift",
            &[
                ("host", host),
                ("since", since),
                ("severity", sev),
                ("limit", Some(limit.to_string())),
            ],
            format,
        )?;
        return Ok(u8::from(a.count.unwrap_or(0) > 0));
    }
    let (db, _) = open_source(src)?;
    let since = since.map(|s| queries::parse_since(&s, now())).transpose()?;
    let filter = DriftFilter {
        host: host.as_deref().map(storage::canonical_host),
        since,
        min_severity: severity.map(|s| s as u8),
        limit,
    };
    let (out, n) = queries::drift(db.as_ref(), &filter, format.into())?;
    print!("{out}");
    Ok(u8::from(n > 0))
}

fn storage_cmd(cmd: StorageCmd) -> Result<u8> {
    use plumb_collector::config::PostgresSection;
    use plumb_collector::storage::bulk::{self, TableCount, Target};
    let StorageCmd::Migrate {
        from,
        to,
        password_file,
        ca,
        batch_rows,
        format,
    } = cmd;
    let Some(path) = from.strip_prefix("sqlite:") else {
        anyhow::bail!("--from {from:?}: give the SQLite store as sqlite:PATH");
    };
    if to.starts_with("sqlite:") {
        anyhow::bail!("--to {to:?}: the target is a PostgreSQL database (URL or libpq keywords)");
    }
    let target = Target::Postgres(PostgresSection {
        url: to,
        password_file,
        ca,
        // One connection: the loads run one after the other.
        pool_size: 1,
        ..PostgresSection::default()
    });
    let mut last = std::time::Instant::now();
    let mut progress = |table: &str, c: &TableCount| {
        if last.elapsed() >= std::time::Duration::from_secs(5) {
            last = std::time::Instant::now();
            tracing::info!(table, read = c.source, copied = c.copied, "migrating");
        }
    };
    let report = bulk::migrate_sqlite(Path::new(path), &target, batch_rows as usize, &mut progress)
        .with_context(|| format!("migrating {from}"))?;
    match format {
        Fmt::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        Fmt::Text => {
            println!(
                "{:<17} {:>12} {:>12} {:>12}",
                "table", "source", "copied", "unchanged"
            );
            for (name, c) in [
                ("baselines", &report.baselines),
                ("events", &report.events),
                ("rule_status", &report.rule_status),
                ("score_daily", &report.score_daily),
                ("baseline_refusals", &report.baseline_refusals),
                ("forward_cursors", &report.forward_cursors),
                ("hosts", &report.hosts),
            ] {
                println!(
                    "{name:<17} {:>12} {:>12} {:>12}",
                    c.source, c.copied, c.unchanged
                );
            }
            if report.forward_cursors.source > 0 {
                println!(
                    "forwarding: each [[forward]] sink (same name) and the alerts resume at the \
                     host and seq they had reached on SQLite"
                );
            }
        }
    }
    Ok(0)
}

fn baseline_cmd(cmd: BaselineCmd) -> Result<u8> {
    use plumb_core::bundle::PublicKey;
    match cmd {
        BaselineCmd::Publish {
            bundle,
            hosts,
            config,
            db,
            trusted_key,
        } => {
            let (storage_cfg, key_files) = match (config, db) {
                (Some(c), _) => {
                    let c = Config::load(&c)?;
                    (c.storage, c.baselines.trusted_keys)
                }
                (None, Some(db)) => (db_file(&db), trusted_key),
                (None, None) => {
                    anyhow::bail!("give --config FILE, or --db FILE with --trusted-key PUB")
                }
            };
            if key_files.is_empty() {
                anyhow::bail!(
                    "no trusted baseline keys: set [baselines] trusted_keys in the config (or give --trusted-key)"
                );
            }
            let keys = key_files
                .iter()
                .map(|p| PublicKey::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            let bytes = plumb_os::read_trusted(
                &bundle,
                plumb_os::FileKind::Baseline,
                plumb_core::bundle::MAX_BUNDLE_BYTES,
            )?;
            let new = plumb_collector::baselines::prepare(&bytes, &keys, &hosts, now())
                .map_err(|e| anyhow::anyhow!("{}: refused: {e}", bundle.display()))?;
            let mut store = storage::open(&storage_cfg)?;
            let what = format!(
                "{} v{} signed by {} for hosts {hosts:?} (sha256 {})",
                new.id, new.version, new.key_id, new.sha256
            );
            match store.publish_baseline(&new)? {
                PublishOutcome::Published => println!("published {what}"),
                PublishOutcome::AlreadyPublished => println!("already published: {what}"),
                PublishOutcome::Conflict(why) => anyhow::bail!("refused: {why}"),
            }
            Ok(0)
        }
        BaselineCmd::List { src, format } => {
            if let Some(remote) = src.remote() {
                remote_get(&remote, "baselines", &[], format)?;
                return Ok(0);
            }
            let (db, _) = open_source(&src)?;
            print!("{}", queries::baselines(db.as_ref(), format.into())?);
            Ok(0)
        }
    }
}

fn pki_cmd(cmd: PkiCmd) -> Result<u8> {
    match cmd {
        PkiCmd::Init { dir, name, days } => {
            pki::init(&dir, &name, days)?;
            let (cert, key) = pki::ca_paths(&dir);
            println!("CA certificate: {}", cert.display());
            println!("CA key (keep it offline if you can): {}", key.display());
            println!("CRL: {}", dir.join("crl.pem").display());
        }
        PkiCmd::Issue {
            dir,
            agent,
            server,
            operator,
            p12_password_file,
            days,
        } => {
            let (role, name) = match (agent, server, operator) {
                (Some(a), None, None) => (pki::Role::Agent, a),
                (None, Some(s), None) => (pki::Role::Server, s),
                (None, None, Some(o)) => (pki::Role::Operator, o),
                _ => anyhow::bail!(
                    "give exactly one of --agent HOST, --server NAME or --operator NAME"
                ),
            };
            // Read before issuing: a bad password file issues nothing.
            let password = match (role, p12_password_file) {
                (pki::Role::Operator, Some(f)) => Some(read_password(&f)?),
                (pki::Role::Operator, None) => std::env::var("PLUMB_P12_PASSWORD")
                    .ok()
                    .filter(|p| !p.is_empty()),
                _ => None,
            };
            let issued = pki::issue(&dir, role, &name, days)?;
            println!("certificate: {}", issued.cert.display());
            println!("key: {}", issued.key.display());
            println!("serial: {}", issued.serial);
            if role == pki::Role::Operator {
                match password {
                    Some(p) => {
                        let p12 = pki::write_p12(&dir, &issued, &p)?;
                        println!("browser bundle (.p12): {}", p12.display());
                    }
                    None => eprintln!(
                        "no .p12 written (give --p12-password-file FILE or PLUMB_P12_PASSWORD for a browser bundle)"
                    ),
                }
            }
        }
        PkiCmd::Revoke { dir, cert, config } => {
            let r = pki::revoke(&dir, &cert)?;
            println!("revoked serial {} ({})", r.serial, r.subject);
            if let Some(config) = config {
                let c = Config::load(&config)?;
                if c.storage.backend == "sqlite" {
                    anyhow::bail!(
                        "{}: the sqlite store keeps no revocations; the CRL is the record (SIGHUP the collector)",
                        config.display()
                    );
                }
                let rec = storage::Revocation {
                    serial: r.serial.clone(),
                    subject: r.subject.clone(),
                    revoked_at: r.at,
                };
                let fresh = storage::open(&c.storage)?.record_revocation(&rec)?;
                println!(
                    "{} in the database: every collector refuses it within {} s",
                    if fresh {
                        "recorded"
                    } else {
                        "already recorded"
                    },
                    c.storage.postgres.revocation_poll_secs
                );
                return Ok(0);
            }
            println!(
                "CRL updated: {}; reload the collector (SIGHUP) to apply it",
                Path::new(&dir).join("crl.pem").display()
            );
        }
    }
    Ok(0)
}
