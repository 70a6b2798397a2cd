//! `kind = "service"`.

use super::{Ctx, Outcome};
use plumb_core::check::ServiceCheck;

/// Evaluates a `service` check.
pub fn evaluate(_spec: &ServiceCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
