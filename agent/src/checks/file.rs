//! `kind = "file"`.

use super::{Ctx, Outcome};
use plumb_core::check::FileCheck;

/// Evaluates a `file` check.
pub fn evaluate(_spec: &FileCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
