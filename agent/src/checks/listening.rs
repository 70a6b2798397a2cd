//! `kind = "listening"`.

use super::{Ctx, Outcome};
use plumb_core::check::ListeningCheck;

/// Evaluates a `listening` check.
pub fn evaluate(_spec: &ListeningCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
