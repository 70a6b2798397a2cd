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
/// absolute in-root path, `*` not crossing `/`, `**` crossing any depth.
pub fn glob(pattern: &str) -> Result<globset::GlobMatcher, globset::Error> {
    Ok(globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()?
        .compile_matcher())
}
