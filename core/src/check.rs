//! The check kinds a baseline rule may use, as written in TOML
//! (`check = { kind = "...", ... }`). Evaluation lives in the agent
//! (`agent/src/checks/<kind>.rs`); this is only the contract.

use crate::compare::{Comparison, ComparisonError, Scalar};
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
    /// Every file of some packages matches the package database's MD5.
    PackageFiles(PackageFilesCheck),
    /// A tree holds no world-writable, unowned or unexpected SUID/SGID files.
    Find(FindCheck),
    /// A setting of a systemd configuration file or unit, drop-ins included.
    SystemdConf(SystemdConfCheck),
    /// What sudo computes from /etc/sudoers and the files it includes.
    Sudoers(SudoersCheck),
    /// A module in a PAM service's stack, includes followed.
    Pam(PamCheck),
    /// The nftables ruleset: configuration files and/or the kernel's.
    Nftables(NftablesCheck),
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
            CheckSpec::PackageFiles(_) => "package_files",
            CheckSpec::Find(_) => "find",
            CheckSpec::SystemdConf(_) => "systemd_conf",
            CheckSpec::Sudoers(_) => "sudoers",
            CheckSpec::Pam(_) => "pam",
            CheckSpec::Nftables(_) => "nftables",
        }
    }

    /// What a parser cannot refuse: empty or malformed values, assertions
    /// that contradict each other or assert nothing. Each kind validates
    /// its own fields; each string is one problem, starting with the field
    /// at fault where there is one.
    pub fn validate(&self) -> Vec<String> {
        let mut out = Vec::new();
        match self {
            CheckSpec::File(c) => c.validate(&mut out),
            CheckSpec::FileRegex(c) => c.validate(&mut out),
            CheckSpec::ConfigValue(c) => c.validate(&mut out),
            CheckSpec::Sshd(c) => c.validate(&mut out),
            CheckSpec::Sysctl(c) => c.validate(&mut out),
            CheckSpec::KernelModule(c) => c.validate(&mut out),
            CheckSpec::Mount(c) => c.validate(&mut out),
            CheckSpec::Service(c) => c.validate(&mut out),
            CheckSpec::Process(c) => c.validate(&mut out),
            CheckSpec::Listening(c) => c.validate(&mut out),
            CheckSpec::Accounts(c) => c.validate(&mut out),
            CheckSpec::Package(c) => c.validate(&mut out),
            CheckSpec::PackageFiles(c) => c.validate(&mut out),
            CheckSpec::Find(c) => c.validate(&mut out),
            CheckSpec::SystemdConf(c) => c.validate(&mut out),
            CheckSpec::Sudoers(c) => c.validate(&mut out),
            CheckSpec::Pam(c) => c.validate(&mut out),
            CheckSpec::Nftables(c) => c.validate(&mut out),
        }
        out
    }
}

/// `field` is an absolute path.
pub(crate) fn absolute(path: &str, field: &str, out: &mut Vec<String>) {
    if !path.starts_with('/') {
        out.push(format!("{field} \"{path}\" is not an absolute path"));
    }
}

/// `field` is an absolute path or glob.
pub(crate) fn path_glob(path: &str, field: &str, out: &mut Vec<String>) {
    absolute(path, field, out);
    if let Err(e) = crate::glob(path) {
        out.push(format!("{field}: invalid glob \"{path}\": {e}"));
    }
}

/// `field` is an octal mode.
pub(crate) fn octal(mode: &str, field: &str, out: &mut Vec<String>) {
    if u32::from_str_radix(mode, 8).map_or(true, |m| m > 0o7777) {
        out.push(format!(
            "{field} \"{mode}\" is not an octal mode such as \"0640\""
        ));
    }
}

/// `pattern` is a regex.
pub(crate) fn regex(pattern: &str, out: &mut Vec<String>) {
    if let Err(e) = regex::Regex::new(pattern) {
        out.push(format!("pattern: invalid regex: {e}"));
    }
}

/// A comparison field set that is not exactly one comparison.
fn one_comparison(c: Result<Comparison, ComparisonError>, out: &mut Vec<String>) {
    if let Err(e) = c {
        out.push(e.to_string());
    }
}

impl FileCheck {
    fn validate(&self, out: &mut Vec<String>) {
        path_glob(&self.path, "path", out);
        if let Some(m) = &self.mode_max {
            octal(m, "mode_max", out);
        }
        let asserts = self.file_type.is_some()
            || self.mode_max.is_some()
            || self.owner.is_some()
            || self.group.is_some();
        if self.exists == Some(false) && asserts {
            out.push(
                "exists = false cannot be combined with type, mode_max, owner or group".into(),
            );
        }
        if self.exists.is_none() && !asserts {
            out.push("asserts nothing: give exists, type, mode_max, owner or group".into());
        }
    }
}

impl FileRegexCheck {
    fn validate(&self, out: &mut Vec<String>) {
        path_glob(&self.path, "path", out);
        regex(&self.pattern, out);
    }
}

impl ConfigValueCheck {
    fn validate(&self, out: &mut Vec<String>) {
        path_glob(&self.path, "path", out);
        if self.key.trim().is_empty() {
            out.push("key is empty".into());
        }
        if self.separator.as_deref() == Some("") {
            out.push("separator is empty".into());
        }
        one_comparison(self.comparison(), out);
    }
}

impl SshdCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.valid.is_some() {
            let compares = self.equals.is_some()
                || self.one_of.is_some()
                || self.min.is_some()
                || self.max.is_some()
                || self.absent.is_some()
                || self.excludes.is_some();
            if !self.key.is_empty() || compares {
                out.push("valid takes no key and no comparison".into());
            }
            return;
        }
        if self.key.trim().is_empty() || self.key.contains(char::is_whitespace) {
            out.push(format!("key \"{}\" is not an sshd keyword", self.key));
        }
        one_comparison(self.comparison(), out);
    }
}

impl SysctlCheck {
    fn validate(&self, out: &mut Vec<String>) {
        let ok = !self.key.is_empty()
            && self.key.split(['.', '/']).all(|p| {
                !p.is_empty()
                    && p != ".."
                    && p.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'*'))
            });
        if !ok {
            out.push(format!(
                "key \"{}\" is not a sysctl key such as net.ipv4.ip_forward",
                self.key
            ));
        }
        one_comparison(self.comparison(), out);
    }
}

impl KernelModuleCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.name.is_empty()
            || !self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'))
        {
            out.push(format!(
                "name \"{}\" is not a kernel module name",
                self.name
            ));
        }
        if self.loaded.is_none() && self.disabled.is_none() {
            out.push("asserts nothing: give loaded and/or disabled".into());
        }
    }
}

impl MountCheck {
    fn validate(&self, out: &mut Vec<String>) {
        absolute(&self.path, "path", out);
        if !self.separate && !self.options_include.is_empty() {
            out.push("options_include needs separate = true".into());
        }
    }
}

impl ServiceCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.unit.is_empty() || self.unit.contains('/') {
            out.push(format!("unit \"{}\" is not a unit name", self.unit));
        }
    }
}

impl ProcessCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.name.is_empty() || self.name.len() > 15 {
            out.push(format!(
                "name \"{}\" must be 1 to 15 bytes, as the kernel keeps it",
                self.name
            ));
        }
    }
}

impl ListeningCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.forbidden_ports.is_empty() && self.allowed_ports.is_none() {
            out.push("asserts nothing: give forbidden_ports and/or allowed_ports".into());
        }
    }
}

impl AccountsCheck {
    fn validate(&self, out: &mut Vec<String>) {
        let any = self.uid0_only
            || self.no_empty_passwords
            || self.no_duplicate_uids
            || self.no_duplicate_names
            || self.system_shell_nologin
            || self.primary_groups_exist
            || self.no_duplicate_gids
            || self.no_login_shell_locked
            || self.pass_max_days_max.is_some();
        if !any {
            out.push("asserts nothing: set at least one invariant".into());
        }
    }
}

impl PackageCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.name.is_empty() || self.name.contains(char::is_whitespace) {
            out.push(format!("name \"{}\" is not a package name", self.name));
        }
    }
}

impl PackageFilesCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.packages.is_empty() {
            out.push("packages is empty: name packages (globs allowed) or \"*\" for all".into());
        }
        for p in &self.packages {
            if p.is_empty() || p.contains(char::is_whitespace) || p.contains('/') {
                out.push(format!("packages: \"{p}\" is not a package name or glob"));
            } else if let Err(e) = crate::glob(p) {
                out.push(format!("packages: invalid glob \"{p}\": {e}"));
            }
        }
        for g in &self.exclude {
            path_glob(g, "exclude", out);
        }
    }
}

impl FindCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.paths.is_empty() {
            out.push("paths is empty".into());
        }
        for p in &self.paths {
            absolute(p, "paths", out);
        }
        for g in &self.allow {
            if let Err(e) = crate::glob(g) {
                out.push(format!("allow: invalid glob \"{g}\": {e}"));
            }
        }
        if !(self.world_writable || self.unowned || self.setid) {
            out.push("asserts nothing: set world_writable, unowned and/or setid".into());
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
    /// `true`: keys and values compare case-insensitively, for programs
    /// that read them so (auditd.conf); default `false`.
    #[serde(default)]
    pub ignore_case: bool,
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
    /// Every account's primary GID (passwd's fourth field) is a group of
    /// /etc/group.
    #[serde(default)]
    pub primary_groups_exist: bool,
    /// No two groups of /etc/group share a GID.
    #[serde(default)]
    pub no_duplicate_gids: bool,
    /// Every account other than root whose shell is not a login shell
    /// (listed in /etc/shells and not nologin) has a locked password
    /// (`!` or `*` in shadow, as `passwd -S` reports `L`).
    #[serde(default)]
    pub no_login_shell_locked: bool,
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

/// How a `package_files` check counts configuration files that differ from
/// what their package shipped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConffilePolicy {
    /// Listed in evidence, separately; the rule does not fail for them (default:
    /// editing a configuration file is what it is for).
    #[default]
    Report,
    /// A changed configuration file fails the rule like any other file.
    Fail,
    /// Not looked at.
    Ignore,
}

/// `kind = "package_files"` (debsums-grade).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackageFilesCheck {
    /// dpkg package names or globs (`libpam*`); `"*"` is every installed
    /// package. An architecture qualifier (`:amd64`) is ignored.
    pub packages: Vec<String>,
    /// Globs of in-root paths not verified (`/usr/share/doc/**`).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Changed configuration files: `report` (default), `fail` or `ignore`.
    #[serde(default)]
    pub conffiles: ConffilePolicy,
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
            pub fn comparison(&self) -> Result<Comparison, ComparisonError> {
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
comparison_of!(
    ConfigValueCheck,
    SshdCheck,
    SysctlCheck,
    SystemdConfCheck,
    SudoersCheck,
    PamCheck
);

/// Whether any comparison field is set.
macro_rules! compares {
    ($c:expr) => {
        $c.equals.is_some()
            || $c.one_of.is_some()
            || $c.min.is_some()
            || $c.max.is_some()
            || $c.absent.is_some()
            || $c.excludes.is_some()
    };
}

/// `kind = "systemd_conf"`: one setting of a systemd configuration file
/// (`/etc/systemd/journald.conf`...) or unit, as the program reads it:
/// the main file, then drop-ins (`X.conf.d/*.conf`, `UNIT.d/*.conf`) from
/// every directory systemd searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SystemdConfCheck {
    /// The main configuration file, under `/etc/` (`/etc/systemd/journald.conf`).
    pub path: Option<String>,
    /// Instead of `path`: a unit name (`tmp.mount`, `getty@.service`).
    pub unit: Option<String>,
    /// The `[Section]` the key belongs to (`Journal`), compared exactly.
    pub section: String,
    /// The key (`Storage`), compared exactly as systemd does.
    pub key: String,
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

impl SystemdConfCheck {
    fn validate(&self, out: &mut Vec<String>) {
        match (&self.path, &self.unit) {
            (Some(p), None) => {
                absolute(p, "path", out);
                if !p.starts_with("/etc/") || p.ends_with('/') || p.contains("/../") {
                    out.push(format!(
                        "path \"{p}\" is not a configuration file under /etc/ (such as /etc/systemd/journald.conf)"
                    ));
                } else if crate::glob(p).is_ok() && p.contains(['*', '?', '[', '{']) {
                    out.push(format!("path \"{p}\" is one file, not a glob"));
                }
            }
            (None, Some(u)) => {
                if u.is_empty() || u.contains('/') || !u.contains('.') {
                    out.push(format!(
                        "unit \"{u}\" is not a unit name with its suffix (tmp.mount)"
                    ));
                }
            }
            _ => out.push("give either path or unit".into()),
        }
        if self.section.is_empty() || self.section.contains([']', '[', '\n']) {
            out.push(format!(
                "section \"{}\" is not a section name",
                self.section
            ));
        }
        if self.key.trim().is_empty() || self.key.contains(['=', '\n']) {
            out.push(format!("key \"{}\" is not a key", self.key));
        }
        one_comparison(self.comparison(), out);
    }
}

/// `kind = "sudoers"`: what sudo computes from `/etc/sudoers` and what it
/// includes. Either a `Defaults` setting with one comparison, or an
/// assertion on the user specifications.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SudoersCheck {
    /// A `Defaults` parameter (`use_pty`, `logfile`, `timestamp_timeout`,
    /// `authenticate`); flags are `yes`/`no`. Needs one comparison.
    pub defaults: Option<String>,
    /// `false`: no user specification lets a command run without a
    /// password (a `NOPASSWD` tag); `true`: at least one does.
    pub nopasswd: Option<bool>,
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

impl SudoersCheck {
    fn validate(&self, out: &mut Vec<String>) {
        match (&self.defaults, self.nopasswd) {
            (Some(d), None) => {
                if d.is_empty() || !d.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                    out.push(format!("defaults \"{d}\" is not a sudoers parameter name"));
                }
                one_comparison(self.comparison(), out);
            }
            (None, Some(_)) => {
                if compares!(self) {
                    out.push("nopasswd takes no comparison".into());
                }
            }
            _ => out.push("give either defaults (with a comparison) or nopasswd".into()),
        }
    }
}

/// A PAM management group (the first word of a line in `/etc/pam.d/*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PamType {
    /// authentication
    Auth,
    /// account management
    Account,
    /// password changes
    Password,
    /// session setup
    Session,
}

impl PamType {
    /// The name as written in PAM files.
    pub fn name(self) -> &'static str {
        match self {
            PamType::Auth => "auth",
            PamType::Account => "account",
            PamType::Password => "password",
            PamType::Session => "session",
        }
    }
}

/// `kind = "pam"`: a module in one stack of a PAM service, with `include`,
/// `substack` and `@include` followed as Linux-PAM does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PamCheck {
    /// The service: a file name in `/etc/pam.d` (`common-auth`, `su`, `sshd`).
    pub service: String,
    /// The stack: `auth`, `account`, `password` or `session`.
    #[serde(rename = "type")]
    pub stack: PamType,
    /// The module (`pam_faillock` or `pam_faillock.so`; a path's file name counts).
    pub module: String,
    /// `true` (the default when nothing else is asserted): the module is in
    /// the stack; `false`: it is not.
    pub present: Option<bool>,
    /// Every entry of the module has one of these controls (`required`,
    /// `requisite`, or a bracketed control written as in the file).
    pub control: Option<Vec<String>>,
    /// The module's first entry comes before the first entry of this one.
    pub before: Option<String>,
    /// Every entry carries these arguments (`use_authtok`, `remember=24`).
    #[serde(default)]
    pub args_include: Vec<String>,
    /// No entry carries these arguments (`nullok`; `remember` also refuses `remember=N`).
    #[serde(default)]
    pub args_exclude: Vec<String>,
    /// An option of the module, compared on every entry: its argument, else
    /// the module's own configuration file, else its built-in default.
    pub option: Option<String>,
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

impl PamCheck {
    fn validate(&self, out: &mut Vec<String>) {
        if self.service.is_empty() || self.service.contains('/') || self.service.starts_with('.') {
            out.push(format!(
                "service \"{}\" is not a file name in /etc/pam.d",
                self.service
            ));
        }
        let module_ok = |m: &str| !m.is_empty() && !m.contains(char::is_whitespace);
        if !module_ok(&self.module) {
            out.push(format!("module \"{}\" is not a module name", self.module));
        }
        if let Some(b) = &self.before {
            if !module_ok(b) {
                out.push(format!("before \"{b}\" is not a module name"));
            }
        }
        if self.control.as_ref().is_some_and(Vec::is_empty) {
            out.push("control is empty".into());
        }
        for a in self.args_include.iter().chain(&self.args_exclude) {
            if a.is_empty() || a.contains(char::is_whitespace) {
                out.push(format!("argument \"{a}\" is not one PAM argument"));
            }
        }
        let asserts = self.control.is_some()
            || self.before.is_some()
            || !self.args_include.is_empty()
            || !self.args_exclude.is_empty()
            || self.option.is_some();
        if self.present == Some(false) && asserts {
            out.push(
                "present = false cannot be combined with control, before, args_include, args_exclude or option"
                    .into(),
            );
        }
        if self.present.is_none() && !asserts {
            out.push(
                "asserts nothing: give present, control, before, args_include, args_exclude or option"
                    .into(),
            );
        }
        match &self.option {
            Some(o) => {
                if o.is_empty() || o.contains(['=', ' ']) {
                    out.push(format!("option \"{o}\" is not an option name"));
                }
                one_comparison(self.comparison(), out);
            }
            None if compares!(self) => out.push("a comparison needs option".into()),
            None => {}
        }
    }
}

/// Where an `nftables` check reads the ruleset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NftSource {
    /// The configuration that loads at boot (`/etc/nftables.conf` and its
    /// includes) and, on a live host, the kernel's ruleset too (default).
    #[default]
    Both,
    /// The configuration files only.
    Config,
    /// The kernel's ruleset only (`nft -j list ruleset`, live host only).
    Kernel,
}

/// A netfilter hook a base chain attaches to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NftHook {
    /// packets for this host
    Input,
    /// packets routed through this host
    Forward,
    /// packets from this host
    Output,
}

impl NftHook {
    /// The hook's name in nft syntax.
    pub fn name(self) -> &'static str {
        match self {
            NftHook::Input => "input",
            NftHook::Forward => "forward",
            NftHook::Output => "output",
        }
    }
}

/// `kind = "nftables"`: the host firewall's ruleset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NftablesCheck {
    /// `both` (default), `config` or `kernel`.
    #[serde(default)]
    pub source: NftSource,
    /// The configuration file nftables.service loads (default `/etc/nftables.conf`).
    #[serde(default = "default_nftables_conf")]
    pub path: String,
    /// At least one table of family `inet`, `ip` or `ip6` exists.
    #[serde(default)]
    pub table: bool,
    /// A filter base chain exists on each of these hooks.
    #[serde(default)]
    pub base_chains: Vec<NftHook>,
    /// With `base_chains`: on each hook, a filter base chain has this
    /// policy (`drop`).
    pub policy: Option<String>,
    /// An input base chain accepts loopback traffic (`iif lo accept`) and
    /// drops 127.0.0.0/8 (and ::1) arriving on another interface.
    #[serde(default)]
    pub loopback: bool,
    /// An input base chain accepts established connections (`ct state established ... accept`).
    #[serde(default)]
    pub established: bool,
}

fn default_nftables_conf() -> String {
    "/etc/nftables.conf".into()
}

impl NftablesCheck {
    fn validate(&self, out: &mut Vec<String>) {
        absolute(&self.path, "path", out);
        if let Some(p) = &self.policy {
            if !matches!(p.as_str(), "drop" | "accept") {
                out.push(format!("policy \"{p}\" is not drop or accept"));
            }
            if self.base_chains.is_empty() {
                out.push("policy needs base_chains".into());
            }
        }
        if !self.table && self.base_chains.is_empty() && !self.loopback && !self.established {
            out.push(
                "asserts nothing: give table, base_chains, loopback and/or established".into(),
            );
        }
    }
}
