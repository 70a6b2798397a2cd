//! `kind = "mount"`.

use super::{Ctx, Outcome};
use plumb_core::check::MountCheck;

/// Evaluates a `mount` check.
pub fn evaluate(_spec: &MountCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
