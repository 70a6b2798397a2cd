//! `kind = "kernel_module"`.

use super::{Ctx, Outcome};
use plumb_core::check::KernelModuleCheck;

/// Evaluates a `kernel_module` check.
pub fn evaluate(_spec: &KernelModuleCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
