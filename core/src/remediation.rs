//! Remediation actions a rule may declare (`remediation = { kind = ... }`).
//! Only typed actions exist: a baseline can never carry a shell command.
//! Applying them is the agent's job (`agent/src/remediate/`).

use crate::compare::Scalar;
use serde::{Deserialize, Serialize};

/// One typed remediation action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum RemediationSpec {
    /// Set a kernel parameter at runtime and in a Plumbline-owned sysctl.d file.
    SysctlSet {
        /// dotted key
        key: String,
        /// value to set
        value: Scalar,
    },
    /// chmod
    FileMode {
        /// path inside the root
        path: String,
        /// octal mode ("0600")
        mode: String,
    },
    /// chown
    FileOwner {
        /// path inside the root
        path: String,
        /// owner name or uid
        owner: Option<String>,
        /// group name or gid
        group: Option<String>,
    },
    /// Set a key in a key/value file.
    ConfigSet {
        /// path inside the root
        path: String,
        /// key
        key: String,
        /// value
        value: Scalar,
        /// separator written between key and value (default one space)
        separator: Option<String>,
    },
    /// Set the effective sshd keyword.
    SshdSet {
        /// keyword
        key: String,
        /// value
        value: Scalar,
    },
    /// Disable a kernel module in a Plumbline-owned modprobe.d file.
    KernelModuleDisable {
        /// module name
        name: String,
    },
    /// Disable a systemd unit.
    ServiceDisable {
        /// unit name
        unit: String,
    },
    /// Mask a systemd unit.
    ServiceMask {
        /// unit name
        unit: String,
    },
    /// Remove (comment out) lines matching a pattern.
    LineAbsent {
        /// path inside the root
        path: String,
        /// regex
        pattern: String,
    },
}

impl RemediationSpec {
    /// The `kind` string.
    pub fn kind(&self) -> &'static str {
        match self {
            RemediationSpec::SysctlSet { .. } => "sysctl_set",
            RemediationSpec::FileMode { .. } => "file_mode",
            RemediationSpec::FileOwner { .. } => "file_owner",
            RemediationSpec::ConfigSet { .. } => "config_set",
            RemediationSpec::SshdSet { .. } => "sshd_set",
            RemediationSpec::KernelModuleDisable { .. } => "kernel_module_disable",
            RemediationSpec::ServiceDisable { .. } => "service_disable",
            RemediationSpec::ServiceMask { .. } => "service_mask",
            RemediationSpec::LineAbsent { .. } => "line_absent",
        }
    }

    /// The check kinds this action can make pass.
    pub fn fixes(&self) -> &'static [&'static str] {
        match self {
            RemediationSpec::SysctlSet { .. } => &["sysctl"],
            RemediationSpec::FileMode { .. } | RemediationSpec::FileOwner { .. } => &["file"],
            RemediationSpec::ConfigSet { .. } => &["config_value", "systemd_conf", "pam"],
            RemediationSpec::SshdSet { .. } => &["sshd"],
            RemediationSpec::KernelModuleDisable { .. } => &["kernel_module"],
            RemediationSpec::ServiceDisable { .. } | RemediationSpec::ServiceMask { .. } => {
                &["service"]
            }
            RemediationSpec::LineAbsent { .. } => &["file_regex", "config_value"],
        }
    }

    /// What a parser cannot refuse (a relative path, a malformed mode or
    /// regex); each string is one problem.
    pub fn validate(&self) -> Vec<String> {
        use crate::check::{absolute, octal, regex};
        let mut out = Vec::new();
        match self {
            RemediationSpec::FileMode { path, mode } => {
                absolute(path, "path", &mut out);
                octal(mode, "mode", &mut out);
            }
            RemediationSpec::FileOwner { path, owner, group } => {
                absolute(path, "path", &mut out);
                if owner.is_none() && group.is_none() {
                    out.push("file_owner needs owner and/or group".into());
                }
            }
            RemediationSpec::ConfigSet { path, .. } => absolute(path, "path", &mut out),
            RemediationSpec::LineAbsent { path, pattern } => {
                absolute(path, "path", &mut out);
                regex(pattern, &mut out);
            }
            RemediationSpec::SysctlSet { .. }
            | RemediationSpec::SshdSet { .. }
            | RemediationSpec::KernelModuleDisable { .. }
            | RemediationSpec::ServiceDisable { .. }
            | RemediationSpec::ServiceMask { .. } => {}
        }
        out
    }
}
