//! Report rendering: text for people, JSON for scripts, JUnit for CI.

pub mod coverage;
pub mod json;
pub mod junit;
pub mod text;

use std::io::IsTerminal;

/// Colour only on a terminal, and never when NO_COLOR is set.
pub fn use_colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}
