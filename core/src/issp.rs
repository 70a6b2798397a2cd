//! The 28 ISSP implementation domains and the five security criteria.
//!
//! The domain table is compiled in from `issp-domains.toml` (a copy of the
//! policy's own file) so reports can name a domain without any file at run time.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Number of ISSP implementation domains; valid domain numbers are `1..=DOMAIN_COUNT`.
pub const DOMAIN_COUNT: u8 = 28;

const DOMAINS_TOML: &str = include_str!("issp-domains.toml");

/// Name of an ISSP domain, or `None` outside `1..=28`.
pub fn domain_name(number: u8) -> Option<&'static str> {
    // Parsing a 2 KB table on each call is cheaper than a lazy static and
    // keeps this free of global state; reports call it once per domain.
    DOMAINS_TOML
        .split("[[domain]]")
        .filter_map(|block| {
            let mut num = None;
            let mut name = None;
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("number = ") {
                    num = v.trim().parse::<u8>().ok();
                } else if let Some(v) = line.strip_prefix("name = ") {
                    name = Some(v.trim().trim_matches('"'));
                }
            }
            Some((num?, name?))
        })
        .find(|(n, _)| *n == number)
        .map(|(_, name)| name)
}

/// ISSP security criteria.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Criterion {
    /// Availability
    A,
    /// Integrity
    I,
    /// Confidentiality
    C,
    /// Traceability
    T,
    /// Privacy
    P,
}

impl fmt::Display for Criterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Criterion::A => "A",
            Criterion::I => "I",
            Criterion::C => "C",
            Criterion::T => "T",
            Criterion::P => "P",
        };
        f.write_str(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_domain_has_a_name() {
        for n in 1..=DOMAIN_COUNT {
            assert!(domain_name(n).is_some(), "domain {n}");
        }
        assert_eq!(
            domain_name(13),
            Some("Identity, authentication and access management")
        );
        assert_eq!(domain_name(0), None);
        assert_eq!(domain_name(29), None);
    }
}
