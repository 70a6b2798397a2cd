//! `kind = "package"`.

use super::{Ctx, Outcome};
use plumb_core::check::PackageCheck;

/// Evaluates a `package` check.
pub fn evaluate(_spec: &PackageCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
