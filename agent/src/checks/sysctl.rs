//! `kind = "sysctl"`.

use super::{Ctx, Outcome};
use plumb_core::check::SysctlCheck;

/// Evaluates a `sysctl` check.
pub fn evaluate(_spec: &SysctlCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
