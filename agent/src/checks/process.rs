//! `kind = "process"`.

use super::{Ctx, Outcome};
use plumb_core::check::ProcessCheck;

/// Evaluates a `process` check.
pub fn evaluate(_spec: &ProcessCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
