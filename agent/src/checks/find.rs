//! `kind = "find"`.

use super::{Ctx, Outcome};
use plumb_core::check::FindCheck;

/// Evaluates a `find` check.
pub fn evaluate(_spec: &FindCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}

/// The interesting files found by one walk of a tree.
#[derive(Debug, Default)]
pub struct Walk;
