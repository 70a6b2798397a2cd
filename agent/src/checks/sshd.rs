//! `kind = "sshd"`.

use super::{Ctx, Outcome};
use plumb_core::check::SshdCheck;

/// Evaluates a `sshd` check.
pub fn evaluate(_spec: &SshdCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
