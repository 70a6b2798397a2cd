//! `kind = "accounts"`.

use super::{Ctx, Outcome};
use plumb_core::check::AccountsCheck;

/// Evaluates a `accounts` check.
pub fn evaluate(_spec: &AccountsCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
