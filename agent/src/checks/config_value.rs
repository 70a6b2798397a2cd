//! `kind = "config_value"`.

use super::{Ctx, Outcome};
use plumb_core::check::ConfigValueCheck;

/// Evaluates a `config_value` check.
pub fn evaluate(_spec: &ConfigValueCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
