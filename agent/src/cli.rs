//! The command line: a contract scripts rely on (docs/reference/cli.md).

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "plumb",
    version,
    about = "Plumbline host hardening and integrity agent"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug); PLUMB_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check this host (or a root directory) against baselines.
    Check(CheckArgs),
    /// Work with baseline files.
    #[command(subcommand)]
    Baseline(BaselineCommand),
    /// Generate an Ed25519 baseline signing key (PKCS#8, PEM) and KEY.pub.
    Keygen(KeygenArgs),
    /// Put failing rules back as the baseline declares: preview (default),
    /// apply with a journal, list runs, or roll one back.
    Remediate(RemediateArgs),
    /// Print a shell completion script (packages install them).
    #[command(hide = true)]
    Completions {
        /// bash, zsh, fish, elvish or powershell
        shell: clap_complete::Shell,
    },
    /// Run the agent daemon (checks, file integrity, drift events).
    Agent(AgentArgs),
    /// File integrity: record the watched files, then verify them.
    #[command(subcommand)]
    Fim(FimCommand),
}

#[derive(Debug, Subcommand)]
pub enum FimCommand {
    /// Scan the watched files and write a new sealed database.
    Init(FimInitArgs),
    /// Scan again and report what changed since the database was written.
    Check(FimCheckArgs),
}

/// Arguments shared by `fim init` and `fim check`.
#[derive(Debug, Args, Clone)]
pub struct FimInitArgs {
    /// Baseline whose [[fim]] watches are scanned.
    #[arg(long, value_name = "FILE")]
    pub baseline: PathBuf,
    /// Root directory; watch paths are inside it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// Database file.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Key file sealing the database (default: DB.key beside the database).
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FimFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FimVerify {
    /// Re-hash every regular file.
    Full,
    /// Re-hash only files whose size, mtime, ctime, inode or type changed.
    Metadata,
}

#[derive(Debug, Args)]
pub struct FimCheckArgs {
    #[command(flatten)]
    pub common: FimInitArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = FimFormat::Text)]
    pub format: FimFormat,
    /// After reporting, write the new state into the database.
    #[arg(long)]
    pub update: bool,
    /// How content is verified.
    #[arg(long, value_enum, default_value_t = FimVerify::Full)]
    pub verify: FimVerify,
}

/// `plumb agent`.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Agent config file.
    #[arg(long, value_name = "FILE", default_value = "/etc/plumb/agent.toml")]
    pub config: PathBuf,
    /// Check the config (and the baselines, keys and certificates it names),
    /// then exit: 0 valid, 2 invalid.
    #[arg(long)]
    pub validate: bool,
}

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// Private key file to create (mode 0600); the public key goes to KEY.pub.
    #[arg(short = 'o', long = "output", value_name = "KEY")]
    pub output: PathBuf,
    /// Replace KEY and KEY.pub if they exist.
    #[arg(long)]
    pub force: bool,
    /// Comment stored in KEY.pub (who owns the key).
    #[arg(long, value_name = "TEXT", default_value = "")]
    pub comment: String,
}

/// Where checks look: a root directory and the proc directory of its
/// running system.
#[derive(Debug, Args, Clone)]
pub struct RootArgs {
    /// Root directory to check; baseline paths are inside it.
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
    /// proc directory for runtime checks (default: /proc when --root is /, none otherwise).
    #[arg(long, value_name = "DIR")]
    pub proc: Option<PathBuf>,
}

impl RootArgs {
    /// The proc directory in effect.
    pub fn proc_dir(&self) -> Option<PathBuf> {
        match &self.proc {
            Some(p) => Some(p.clone()),
            None if self.root == std::path::Path::new("/") => Some(PathBuf::from("/proc")),
            None => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckFormat {
    Text,
    Json,
    Junit,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Baseline file (repeatable); default: the built-in ISSP Linux server baseline.
    #[arg(long, value_name = "FILE")]
    pub baseline: Vec<PathBuf>,
    #[command(flatten)]
    pub root: RootArgs,
    /// Only these rule ids (repeatable).
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = CheckFormat::Text)]
    pub format: CheckFormat,
}

#[derive(Debug, Subcommand)]
pub enum BaselineCommand {
    /// Validate a baseline; exit 0 when valid, 2 with every problem listed otherwise.
    Lint {
        /// Baseline files.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Lint a baseline and sign it into a bundle agents will accept.
    Sign {
        /// Private signing key (from `plumb keygen`).
        #[arg(long, value_name = "KEY")]
        key: PathBuf,
        /// Baseline file to sign.
        file: PathBuf,
        /// Bundle file to write.
        #[arg(short = 'o', long = "output", value_name = "BUNDLE")]
        output: PathBuf,
    },
    /// How much of a framework (CIS, ANSSI) the baselines cover, item by
    /// item, from the reference list shipped with plumb.
    Coverage {
        /// Baseline files, measured together; default: the built-in one.
        files: Vec<PathBuf>,
        /// The framework and profile measured against.
        #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(crate::coverage::framework_ids()))]
        framework: String,
        /// Output format.
        #[arg(long, value_enum, default_value_t = CoverageFormat::Text)]
        format: CoverageFormat,
    },
    /// Verify a bundle as an agent would: exit 0 when a trusted key signed it.
    Verify {
        /// Trusted public key file (repeatable).
        #[arg(long = "pubkey", value_name = "PUB", required = true)]
        pubkeys: Vec<PathBuf>,
        /// Bundle file.
        bundle: PathBuf,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoverageFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum RemediateFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").args(["dry_run", "apply", "rollback", "list"])))]
pub struct RemediateArgs {
    /// Show what would change, change nothing (the default).
    #[arg(long)]
    pub dry_run: bool,
    /// Make the changes, journaled so that --rollback can undo them.
    #[arg(long)]
    pub apply: bool,
    /// Undo run ID: every file put back byte for byte, metadata too.
    #[arg(long, value_name = "ID")]
    pub rollback: Option<String>,
    /// List the runs in the journal.
    #[arg(long)]
    pub list: bool,
    /// Baseline file (repeatable).
    #[arg(long, value_name = "FILE", required_unless_present_any = ["rollback", "list"])]
    pub baseline: Vec<PathBuf>,
    #[command(flatten)]
    pub root: RootArgs,
    /// Only these rule ids (repeatable).
    #[arg(long = "rule", value_name = "ID")]
    pub rules: Vec<String>,
    /// State directory; the journal is STATE/remediation/.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/plumb")]
    pub state_dir: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = RemediateFormat::Text)]
    pub format: RemediateFormat,
}
