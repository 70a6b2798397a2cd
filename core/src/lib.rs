//! What the Plumbline agent and collector must agree on: the baseline model
//! and its validation, check kinds, reports and events. No I/O beyond
//! reading baseline, bundle and key files, which goes through
//! `plumb_os::open_trusted` (the one crate below this one): a baseline or a
//! key is policy, so every program reading one applies the same rule to
//! the file (owner, mode, no symlink; no group/other access to a private key).

pub mod baseline;
pub mod bundle;
pub mod check;
pub mod compare;
pub mod diagnostic;
pub mod event;
pub mod fim;
pub mod issp;
pub mod printable;
pub mod remediation;
pub mod report;

pub use baseline::{Baseline, BaselineError, FimAttribute, FimRule, Rule, Severity};
pub use bundle::{Bundle, BundleError, KeyError, PublicKey, SigningKey, VerifiedBaseline};
pub use check::CheckSpec;
pub use diagnostic::{Diagnostic, Diagnostics, Document};
pub use issp::Criterion;
pub use printable::printable;

/// Compiles a path glob the way every Plumbline glob is matched: against an
/// absolute in-root path, `*` not crossing `/`, `**` crossing any depth,
/// and an empty alternative matching nothing, as in the shell
/// (`opasswd{,.old}` is `opasswd` or `opasswd.old`; globset drops empty
/// alternatives unless told).
pub fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .empty_alternates(true)
        .build()?
        .compile_matcher())
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_empty_alternative_matches_as_in_the_shell() {
        let m = super::glob("/etc/security/opasswd{,.old}").unwrap();
        assert!(m.is_match("/etc/security/opasswd"));
        assert!(m.is_match("/etc/security/opasswd.old"));
        assert!(!m.is_match("/etc/security/opasswd.new"));
        let m = super::glob("/etc/{a,b}/*.conf").unwrap();
        assert!(m.is_match("/etc/a/x.conf") && !m.is_match("/etc/a/b/x.conf"));
    }
}
