//! `kind = "file_regex"`.

use super::{Ctx, Outcome};
use plumb_core::check::FileRegexCheck;

/// Evaluates a `file_regex` check.
pub fn evaluate(_spec: &FileRegexCheck, _ctx: &Ctx) -> Outcome {
    Outcome::error("not implemented yet")
}
