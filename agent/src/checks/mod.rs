//! Check evaluation: one module per check kind, each with
//! `pub fn evaluate(spec, ctx) -> Outcome`. Every check reads the checked
//! root through [`Ctx`]; runtime state comes only from `ctx.proc`, and a
//! check that needs it when there is none is `skipped`.

pub mod accounts;
pub mod config_value;
pub mod file;
pub mod file_regex;
pub mod find;
#[cfg(test)]
mod fixture;
pub mod kernel_module;
pub mod listening;
pub mod mount;
pub mod nftables;
pub mod package;
pub mod package_files;
pub mod pam;
pub mod process;
pub mod service;
pub mod sshd;
pub mod sudoers;
pub mod sysctl;
pub mod systemd_conf;

use crate::rootfs::{ReadError, RootFs};
use crate::userdb::UserDb;
use plumb_core::Rule;
use plumb_core::check::CheckSpec;
use plumb_core::report::{RuleResult, Status};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

/// The root's account database could not be read; every rule that needs
/// it says so.
#[derive(Debug, Clone, thiserror::Error)]
#[error("cannot read account database: {0}")]
pub struct UsersError(Arc<ReadError>);

/// Where and how checks run.
#[derive(Debug)]
pub struct Ctx {
    /// The checked root.
    pub fs: RootFs,
    /// The proc directory describing the root's running system, if any.
    pub proc: Option<PathBuf>,
    users: OnceLock<Result<UserDb, UsersError>>,
    /// Results of tree walks shared by `find` rules over the same paths,
    /// so several rules cost one walk. Keyed by the walked in-root path.
    pub walks: Mutex<HashMap<String, Arc<find::Walk>>>,
    /// The root's dpkg database, read once for all package rules.
    dpkg: OnceLock<Result<package::Db, Outcome>>,
    /// The dpkg database as `package_files` rules read it (conffiles,
    /// md5sums lists), read once for all of them.
    dpkg_files: OnceLock<Result<crate::dpkg::Database, crate::dpkg::DpkgError>>,
    /// Unit names declared with `Alias=`, read once for all service rules.
    unit_aliases: OnceLock<
        Result<crate::systemd_units::DeclaredAliases, Arc<crate::systemd_units::LookupError>>,
    >,
    /// sysctl.d as systemd-sysctl reads it, loaded once for all sysctl
    /// rules; [`Ctx::forget_files`] drops it when a remediation changes
    /// files.
    sysctl_d: Mutex<Option<Arc<Result<crate::sysctl_d::Config, String>>>>,
    /// The listening sockets of `proc`, read once for all listening rules.
    sockets: OnceLock<Result<listening::Tables, Outcome>>,
    /// Listings of the unit search path, shared by all service rules;
    /// [`Ctx::forget_files`] drops them.
    unit_dirs: crate::systemd_units::UnitDirs,
    /// The processes of `proc` (pid and comm), read once for all process
    /// rules.
    processes: OnceLock<Result<process::Processes, Outcome>>,
    /// The kernel's nftables ruleset (`nft list ruleset`), run once for
    /// all nftables rules; `None` when not a live host with nft.
    nft_kernel: OnceLock<Option<Result<nftables::Ruleset, String>>>,
    /// Module names (normalized) the root's kernels ship, read once for all
    /// kernel_module rules; `None` when some kernel lacks a modules.dep.
    modules: OnceLock<Option<std::collections::HashSet<String>>>,
}

impl Ctx {
    /// A context for `root` with an optional proc directory.
    pub fn new(root: impl Into<PathBuf>, proc: Option<PathBuf>) -> Ctx {
        Ctx {
            fs: RootFs::new(root),
            proc,
            users: OnceLock::new(),
            walks: Mutex::new(HashMap::new()),
            dpkg: OnceLock::new(),
            dpkg_files: OnceLock::new(),
            unit_aliases: OnceLock::new(),
            modules: OnceLock::new(),
            nft_kernel: OnceLock::new(),
            sysctl_d: Mutex::new(None),
            sockets: OnceLock::new(),
            unit_dirs: Default::default(),
            processes: OnceLock::new(),
        }
    }

    /// Names the root's unit files declare with `Alias=`, read once.
    pub(crate) fn unit_aliases(
        &self,
    ) -> Result<&crate::systemd_units::DeclaredAliases, Arc<crate::systemd_units::LookupError>>
    {
        self.unit_aliases
            .get_or_init(|| crate::systemd_units::DeclaredAliases::read(&self.fs).map_err(Arc::new))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The root's dpkg database for `package_files` rules, read once.
    pub(crate) fn dpkg_database(&self) -> Result<&crate::dpkg::Database, &crate::dpkg::DpkgError> {
        self.dpkg_files
            .get_or_init(|| crate::dpkg::Database::open(&self.fs))
            .as_ref()
    }

    /// The root's sysctl.d configuration, loaded on first use and kept
    /// until [`Ctx::forget_files`].
    pub(crate) fn sysctl_d(&self) -> Arc<Result<crate::sysctl_d::Config, String>> {
        let mut slot = self
            .sysctl_d
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        slot.get_or_insert_with(|| {
            Arc::new(crate::sysctl_d::Config::load(&self.fs, &[]).map_err(|e| e.to_string()))
        })
        .clone()
    }

    /// Drops what was read from configuration files a remediation can
    /// change, so that rules evaluated after a change see it.
    pub(crate) fn forget_files(&self) {
        *self
            .sysctl_d
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = None;
        self.unit_dirs.forget();
    }

    /// The root's users and groups, read once.
    pub fn users(&self) -> Result<&UserDb, UsersError> {
        self.users
            .get_or_init(|| UserDb::load(&self.fs).map_err(|e| UsersError(Arc::new(e))))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// The proc directory, or the reason a runtime check is skipped.
    pub fn proc_dir(&self) -> Result<&PathBuf, Outcome> {
        self.proc.as_ref().ok_or_else(|| {
            Outcome::skipped(
                "runtime state not available: no proc directory for this root (give --proc DIR)",
            )
        })
    }
}

/// What a check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// pass / fail / error / skipped
    pub status: Status,
    /// What was observed, with `file:line` where there is one.
    pub evidence: Vec<String>,
}

impl Outcome {
    /// The rule holds.
    pub fn pass(evidence: Vec<String>) -> Outcome {
        Outcome {
            status: Status::Pass,
            evidence,
        }
    }
    /// The rule does not hold.
    pub fn fail(evidence: Vec<String>) -> Outcome {
        Outcome {
            status: Status::Fail,
            evidence,
        }
    }
    /// Pass when `ok`, fail otherwise, with the same evidence.
    pub fn verdict(ok: bool, evidence: Vec<String>) -> Outcome {
        if ok {
            Outcome::pass(evidence)
        } else {
            Outcome::fail(evidence)
        }
    }
    /// Could not be evaluated.
    pub fn error(why: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Error,
            evidence: vec![why.into()],
        }
    }
    /// Not applicable here.
    pub fn skipped(why: impl Into<String>) -> Outcome {
        Outcome {
            status: Status::Skipped,
            evidence: vec![why.into()],
        }
    }
    /// A read failure as an outcome: `error` with the reason.
    pub fn read_error(e: &ReadError) -> Outcome {
        Outcome::error(format!("cannot read {e}"))
    }
}

/// Evaluates one check.
pub fn evaluate(spec: &CheckSpec, ctx: &Ctx) -> Outcome {
    match spec {
        CheckSpec::File(c) => file::evaluate(c, ctx),
        CheckSpec::FileRegex(c) => file_regex::evaluate(c, ctx),
        CheckSpec::ConfigValue(c) => config_value::evaluate(c, ctx),
        CheckSpec::Sshd(c) => sshd::evaluate(c, ctx),
        CheckSpec::Sysctl(c) => sysctl::evaluate(c, ctx),
        CheckSpec::KernelModule(c) => kernel_module::evaluate(c, ctx),
        CheckSpec::Mount(c) => mount::evaluate(c, ctx),
        CheckSpec::Service(c) => service::evaluate(c, ctx),
        CheckSpec::Process(c) => process::evaluate(c, ctx),
        CheckSpec::Listening(c) => listening::evaluate(c, ctx),
        CheckSpec::Accounts(c) => accounts::evaluate(c, ctx),
        CheckSpec::Package(c) => package::evaluate(c, ctx),
        CheckSpec::PackageFiles(c) => package_files::evaluate(c, ctx),
        CheckSpec::Find(c) => find::evaluate(c, ctx),
        CheckSpec::SystemdConf(c) => systemd_conf::evaluate(c, ctx),
        CheckSpec::Sudoers(c) => sudoers::evaluate(c, ctx),
        CheckSpec::Pam(c) => pam::evaluate(c, ctx),
        CheckSpec::Nftables(c) => nftables::evaluate(c, ctx),
    }
}

/// `skipped` when the rule's `if_installed` / `unless_installed` package
/// conditions rule it out: a rule about a program that is not installed
/// (`ssh.config-perms` without openssh-server) says so instead of failing.
/// Without a dpkg database the conditions cannot be judged and the rule runs.
fn not_applicable(rule: &Rule, ctx: &Ctx) -> Option<Outcome> {
    let installed = |name: &str| {
        package::installed_version(ctx, name)
            .ok()
            .map(|v| v.is_some())
    };
    if !rule.if_installed.is_empty() {
        let mut any = false;
        for name in &rule.if_installed {
            match installed(name) {
                None => return None,
                Some(true) => any = true,
                Some(false) => {}
            }
        }
        if !any {
            return Some(Outcome::skipped(format!(
                "not applicable: {} not installed",
                rule.if_installed.join(" or ")
            )));
        }
    }
    for name in &rule.unless_installed {
        if installed(name) == Some(true) {
            return Some(Outcome::skipped(format!(
                "not applicable: {name} is installed"
            )));
        }
    }
    None
}

/// Evaluates rules and returns their results in the given order. Rules run
/// on a few threads: most are a file read, `find` rules walk trees.
pub fn run(rules: &[&Rule], ctx: &Ctx) -> Vec<RuleResult> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 4);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<Outcome>>> = rules.iter().map(|_| Mutex::new(None)).collect();
    // Slow rules (tree walks) first, so they overlap with everything else.
    let mut order: Vec<usize> = (0..rules.len()).collect();
    order.sort_by_key(|&i| {
        !matches!(
            rules[i].check,
            CheckSpec::Find(_) | CheckSpec::PackageFiles(_)
        )
    });
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let k = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some(&i) = order.get(k) else { break };
                    let out = match not_applicable(rules[i], ctx) {
                        Some(skip) => skip,
                        None => evaluate(&rules[i].check, ctx),
                    };
                    if let Ok(mut slot) = slots[i].lock() {
                        *slot = Some(out);
                    }
                }
            });
        }
    });
    rules
        .iter()
        .zip(slots)
        .map(|(rule, slot)| {
            let out = slot
                .into_inner()
                .ok()
                .flatten()
                .unwrap_or_else(|| Outcome::error("evaluation did not complete"));
            RuleResult {
                id: rule.id.clone(),
                status: out.status,
                severity: rule.severity,
                domains: rule.domains.clone(),
                criteria: rule.criteria.clone(),
                title: rule.title.clone(),
                evidence: out.evidence,
            }
        })
        .collect()
}
