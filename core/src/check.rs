//! The check kinds a baseline rule may use, as written in TOML
//! (`check = { kind = "...", ... }`). Evaluation lives in the agent
//! (`agent/src/checks/<kind>.rs`); this is only the contract.

use crate::compare::{Comparison, Scalar};
use serde::{Deserialize, Serialize};

/// One rule's check. The `kind` field selects the variant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CheckSpec {
    /// Existence, type, mode and ownership of a path or glob.
    File(FileCheck),
    /// A regex matches, or does not, in a file.
    FileRegex(FileRegexCheck),
    /// The value of a key in a key/value file.
    ConfigValue(ConfigValueCheck),
    /// The effective sshd setting.
    Sshd(SshdCheck),
    /// A kernel parameter.
    Sysctl(SysctlCheck),
    /// A kernel module is not loaded / disabled.
    KernelModule(KernelModuleCheck),
    /// A mount point and its options.
    Mount(MountCheck),
    /// A systemd unit's state.
    Service(ServiceCheck),
    /// A process is running or not.
    Process(ProcessCheck),
    /// Listening sockets.
    Listening(ListeningCheck),
    /// Account database invariants.
    Accounts(AccountsCheck),
    /// A package is installed or absent.
    Package(PackageCheck),
    /// A tree holds no world-writable, unowned or unexpected SUID/SGID files.
    Find(FindCheck),
}

impl CheckSpec {
    /// The `kind` string, as written in TOML.
    pub fn kind(&self) -> &'static str {
        match self {
            CheckSpec::File(_) => "file",
            CheckSpec::FileRegex(_) => "file_regex",
            CheckSpec::ConfigValue(_) => "config_value",
            CheckSpec::Sshd(_) => "sshd",
            CheckSpec::Sysctl(_) => "sysctl",
            CheckSpec::KernelModule(_) => "kernel_module",
            CheckSpec::Mount(_) => "mount",
            CheckSpec::Service(_) => "service",
            CheckSpec::Process(_) => "process",
            CheckSpec::Listening(_) => "listening",
            CheckSpec::Accounts(_) => "accounts",
            CheckSpec::Package(_) => "package",
            CheckSpec::Find(_) => "find",
        }
    }
}

/// File types as a `file` check names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    /// regular file
    File,
    /// directory
    #[serde(alias = "dir")]
    Directory,
    /// symbolic link
    Symlink,
    /// named pipe
    Fifo,
    /// UNIX socket
    Socket,
    /// block device
    BlockDevice,
    /// character device
    CharDevice,
}

impl FileKind {
    /// The name used in evidence.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::File => "file",
            FileKind::Directory => "directory",
            FileKind::Symlink => "symlink",
            FileKind::Fifo => "fifo",
            FileKind::Socket => "socket",
            FileKind::BlockDevice => "block_device",
            FileKind::CharDevice => "char_device",
        }
    }
}

/// `kind = "file"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileCheck {
    /// Absolute path inside the root; may be a glob (`/etc/cron.d/*`).
    pub path: String,
    /// `true`: must exist (default when any other assertion is given);
    /// `false`: must not exist.
    pub exists: Option<bool>,
    /// Expected file type (not following a final symlink).
    #[serde(rename = "type")]
    pub file_type: Option<FileKind>,
    /// No permission bit beyond these, in octal ("0640").
    pub mode_max: Option<String>,
    /// Owner name (resolved in the checked root's passwd) or numeric uid.
    pub owner: Option<String>,
    /// Group name (resolved in the checked root's group) or numeric gid.
    pub group: Option<String>,
}

/// `expect` of a `file_regex` check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum RegexExpect {
    /// At least one line matches (default).
    #[default]
    Match,
    /// No line matches.
    NoMatch,
}

/// `kind = "file_regex"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRegexCheck {
    /// Absolute path inside the root; may be a glob (all matching files are read).
    pub path: String,
    /// A Rust `regex` pattern, matched line by line.
    pub pattern: String,
    /// `match` (default) or `no_match`.
    #[serde(default)]
    pub expect: RegexExpect,
    /// Ignore lines whose first non-blank character is `#` (default true).
    #[serde(default = "default_true")]
    pub skip_comments: bool,
}

/// `kind = "config_value"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigValueCheck {
    /// Absolute path inside the root; may be a glob (files read in name order).
    pub path: String,
    /// The key (compared case-sensitively).
    pub key: String,
    /// Separator between key and value; default: `=` or white space.
    pub separator: Option<String>,
    /// `true`: the first occurrence wins; default `false`: the last one does.
    #[serde(default)]
    pub first_wins: bool,
    /// Comparison: equals.
    pub equals: Option<Scalar>,
    /// Comparison: one of.
    pub one_of: Option<Vec<Scalar>>,
    /// Comparison: integer at least.
    pub min: Option<i64>,
    /// Comparison: integer at most.
    pub max: Option<i64>,
    /// Comparison: not set (true) / set (false).
    pub absent: Option<bool>,
    /// Comparison: a list value holds none of these items.
    pub excludes: Option<Vec<Scalar>>,
}

/// `kind = "sshd"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshdCheck {
    /// sshd keyword (case-insensitive); empty with `valid`.
    #[serde(default)]
    pub key: String,
    /// Instead of a keyword: sshd accepts (true) / refuses (false) the
    /// whole configuration.
    pub valid: Option<bool>,
    /// Comparison: equals.
    pub equals: Option<Scalar>,
    /// Comparison: one of.
    pub one_of: Option<Vec<Scalar>>,
    /// Comparison: integer at least.
    pub min: Option<i64>,
    /// Comparison: integer at most.
    pub max: Option<i64>,
    /// Comparison: not set (true) / set (false).
    pub absent: Option<bool>,
    /// Comparison: a list value holds none of these items.
    pub excludes: Option<Vec<Scalar>>,
}

/// `kind = "sysctl"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlCheck {
    /// Dotted key (`net.ipv4.ip_forward`); `/` is accepted too.
    pub key: String,
    /// Also check what sysctl.conf / sysctl.d set at boot (default false).
    #[serde(default)]
    pub persistent: bool,
    /// Comparison: equals.
    pub equals: Option<Scalar>,
    /// Comparison: one of.
    pub one_of: Option<Vec<Scalar>>,
    /// Comparison: integer at least.
    pub min: Option<i64>,
    /// Comparison: integer at most.
    pub max: Option<i64>,
    /// Comparison: not set (true) / set (false).
    pub absent: Option<bool>,
    /// Comparison: a list value holds none of these items.
    pub excludes: Option<Vec<Scalar>>,
}

/// `kind = "kernel_module"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KernelModuleCheck {
    /// Module name (`-` and `_` are the same).
    pub name: String,
    /// Expected loaded state (needs proc).
    pub loaded: Option<bool>,
    /// Expected disabled state in modprobe.d.
    pub disabled: Option<bool>,
}

/// `kind = "mount"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountCheck {
    /// Mount point.
    pub path: String,
    /// The path is its own mount point (default true).
    #[serde(default = "default_true")]
    pub separate: bool,
    /// Options that must all be present (`nodev`, `nosuid`, `noexec`...).
    #[serde(default)]
    pub options_include: Vec<String>,
}

/// Expected state of a systemd unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnitState {
    /// Enabled (wanted by a target).
    Enabled,
    /// Not enabled (a unit that is not installed is not enabled).
    Disabled,
    /// Linked to /dev/null.
    Masked,
}

/// `kind = "service"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceCheck {
    /// Unit name; `.service` is added when there is no suffix.
    pub unit: String,
    /// Expected state.
    pub state: UnitState,
}

/// `kind = "process"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessCheck {
    /// Process name as in `/proc/PID/comm`.
    pub name: String,
    /// Expected: running (true) or not (false).
    pub running: bool,
}

/// `kind = "listening"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListeningCheck {
    /// Ports that nothing may listen on.
    #[serde(default)]
    pub forbidden_ports: Vec<u16>,
    /// If given, the only ports anything may listen on.
    pub allowed_ports: Option<Vec<u16>>,
}

/// `kind = "accounts"`: each invariant that is set is asserted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountsCheck {
    /// Only `root` has UID 0.
    #[serde(default)]
    pub uid0_only: bool,
    /// No account in shadow (or passwd) has an empty password field.
    #[serde(default)]
    pub no_empty_passwords: bool,
    /// No two accounts share a UID.
    #[serde(default)]
    pub no_duplicate_uids: bool,
    /// No two accounts, nor two groups, share a name.
    #[serde(default)]
    pub no_duplicate_names: bool,
    /// System accounts (UID < UID_MIN, except root, sync, shutdown, halt)
    /// have a non-login shell.
    #[serde(default)]
    pub system_shell_nologin: bool,
    /// PASS_MAX_DAYS in login.defs and each password account's max age in
    /// shadow is at most this.
    pub pass_max_days_max: Option<u32>,
}

/// `kind = "package"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageCheck {
    /// Package name (dpkg; an architecture qualifier `:amd64` is ignored).
    pub name: String,
    /// Expected: installed (true) or absent (false).
    pub installed: bool,
}

/// `kind = "find"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FindCheck {
    /// Trees to walk (absolute, inside the root); each stays on its filesystem.
    pub paths: Vec<String>,
    /// Report world-writable files (directories with the sticky bit excepted).
    #[serde(default)]
    pub world_writable: bool,
    /// Report files whose uid or gid has no name in the root's passwd/group.
    #[serde(default)]
    pub unowned: bool,
    /// Report SUID/SGID files not matched by `allow`.
    #[serde(default)]
    pub setid: bool,
    /// Globs of paths that may be SUID/SGID (or world-writable).
    #[serde(default)]
    pub allow: Vec<String>,
}

fn default_true() -> bool {
    true
}

macro_rules! comparison_of {
    ($($t:ty),*) => {$(
        impl $t {
            /// The check's single comparison.
            pub fn comparison(&self) -> Result<Comparison, String> {
                Comparison::from_fields(
                    &self.equals,
                    &self.one_of,
                    &self.min,
                    &self.max,
                    &self.absent,
                    &self.excludes,
                )
            }
        }
    )*};
}
comparison_of!(ConfigValueCheck, SshdCheck, SysctlCheck);
