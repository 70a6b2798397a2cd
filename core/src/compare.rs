//! The one comparison a value-reading check makes: `equals`, `one_of`,
//! `min`/`max` (a numeric range; both may be given), `absent`, or
//! `excludes` (a list value holds none of the given items).

use serde::{Deserialize, Serialize};
use std::fmt;

/// A scalar as written in a baseline: strings, integers and booleans are all
/// compared as text, so `equals = 1` and `equals = "1"` mean the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// `"text"`
    Str(String),
    /// `42`
    Int(i64),
    /// `true`
    Bool(bool),
}

impl Scalar {
    /// The value as compared against configuration text.
    pub fn as_text(&self) -> String {
        match self {
            Scalar::Str(s) => s.clone(),
            Scalar::Int(i) => i.to_string(),
            Scalar::Bool(b) => if *b { "yes" } else { "no" }.to_string(),
        }
    }
}

/// The comparison fields every value-reading check shares. Check structs
/// repeat them (serde cannot flatten under `deny_unknown_fields`) and build
/// one with [`Comparison::from_fields`].
#[derive(Debug, Clone, PartialEq)]
pub enum Comparison {
    /// The value equals this one.
    Equals(String),
    /// The value is one of these.
    OneOf(Vec<String>),
    /// The value is an integer within these bounds (inclusive).
    Range {
        /// lower bound
        min: Option<i64>,
        /// upper bound
        max: Option<i64>,
    },
    /// `true`: the key is not set at all; `false`: it is set to anything.
    Absent(bool),
    /// A list value (items separated by commas or white space) holds none
    /// of these items; an unset key holds none. For cipher lists and the like.
    Excludes(Vec<String>),
}

/// Why a check's comparison fields do not make one comparison (the text is
/// the baseline diagnostic's, after the field path).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ComparisonError {
    /// No comparison field is set.
    #[error("needs one comparison: equals, one_of, min, max, absent or excludes")]
    None,
    /// Several are (their names, joined with " and ").
    #[error("takes one comparison, found {0}")]
    Several(String),
    /// `min` > `max`.
    #[error("min ({min}) is greater than max ({max})")]
    EmptyRange {
        /// lower bound
        min: i64,
        /// upper bound
        max: i64,
    },
    /// `one_of = []`.
    #[error("one_of is empty")]
    EmptyOneOf,
    /// `excludes = []`.
    #[error("excludes is empty")]
    EmptyExcludes,
}

impl Comparison {
    /// Builds the comparison from a check's fields, refusing none or several.
    pub fn from_fields(
        equals: &Option<Scalar>,
        one_of: &Option<Vec<Scalar>>,
        min: &Option<i64>,
        max: &Option<i64>,
        absent: &Option<bool>,
        excludes: &Option<Vec<Scalar>>,
    ) -> Result<Comparison, ComparisonError> {
        let mut given = Vec::new();
        if equals.is_some() {
            given.push("equals");
        }
        if one_of.is_some() {
            given.push("one_of");
        }
        if min.is_some() || max.is_some() {
            given.push("min/max");
        }
        if absent.is_some() {
            given.push("absent");
        }
        if excludes.is_some() {
            given.push("excludes");
        }
        match given.len() {
            0 => return Err(ComparisonError::None),
            1 => {}
            _ => return Err(ComparisonError::Several(given.join(" and "))),
        }
        if let (Some(lo), Some(hi)) = (min, max) {
            if lo > hi {
                return Err(ComparisonError::EmptyRange { min: *lo, max: *hi });
            }
        }
        Ok(if let Some(v) = equals {
            Comparison::Equals(v.as_text())
        } else if let Some(vs) = one_of {
            if vs.is_empty() {
                return Err(ComparisonError::EmptyOneOf);
            }
            Comparison::OneOf(vs.iter().map(Scalar::as_text).collect())
        } else if let Some(xs) = excludes {
            if xs.is_empty() {
                return Err(ComparisonError::EmptyExcludes);
            }
            Comparison::Excludes(xs.iter().map(Scalar::as_text).collect())
        } else if let Some(a) = absent {
            Comparison::Absent(*a)
        } else {
            Comparison::Range {
                min: *min,
                max: *max,
            }
        })
    }

    /// Whether `observed` (`None`: the key is not set) satisfies the
    /// comparison. Text is compared after folding runs of white space, and
    /// case-insensitively when `ignore_case` (sshd's yes/no, for instance).
    pub fn holds(&self, observed: Option<&str>, ignore_case: bool) -> bool {
        let norm = |s: &str| {
            let folded = s.split_whitespace().collect::<Vec<_>>().join(" ");
            if ignore_case {
                folded.to_ascii_lowercase()
            } else {
                folded
            }
        };
        match (self, observed) {
            (Comparison::Absent(want_absent), v) => *want_absent == v.is_none(),
            (Comparison::Excludes(_), None) => true,
            (Comparison::Excludes(bad), Some(v)) => {
                !list_items(v).any(|item| bad.iter().any(|b| norm(b) == norm(item)))
            }
            (_, None) => false,
            (Comparison::Equals(want), Some(v)) => norm(want) == norm(v),
            (Comparison::OneOf(wants), Some(v)) => wants.iter().any(|w| norm(w) == norm(v)),
            (Comparison::Range { min, max }, Some(v)) => match parse_int(v) {
                Some(n) => min.is_none_or(|lo| n >= lo) && max.is_none_or(|hi| n <= hi),
                None => false,
            },
        }
    }
}

/// Items of a list value: separated by commas and/or white space.
pub fn list_items(v: &str) -> impl Iterator<Item = &str> {
    v.split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
}

/// Parses an integer as configuration files write them (decimal, optional sign).
pub fn parse_int(s: &str) -> Option<i64> {
    s.trim().parse::<i64>().ok()
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Comparison::Equals(v) => write!(f, "expected \"{v}\""),
            Comparison::OneOf(vs) => {
                let list: Vec<String> = vs.iter().map(|v| format!("\"{v}\"")).collect();
                write!(f, "expected one of {}", list.join(", "))
            }
            Comparison::Range {
                min: Some(lo),
                max: Some(hi),
            } => {
                write!(f, "expected a number from {lo} to {hi}")
            }
            Comparison::Range {
                min: Some(lo),
                max: None,
            } => write!(f, "expected at least {lo}"),
            Comparison::Range {
                min: None,
                max: Some(hi),
            } => write!(f, "expected at most {hi}"),
            Comparison::Range {
                min: None,
                max: None,
            } => write!(f, "expected a number"),
            Comparison::Absent(true) => write!(f, "expected not set"),
            Comparison::Absent(false) => write!(f, "expected set"),
            Comparison::Excludes(vs) => write!(f, "expected none of {}", vs.join(", ")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_comparison_only() {
        let e = Comparison::from_fields(&None, &None, &None, &None, &None, &None).unwrap_err();
        assert!(e.to_string().contains("needs one comparison"));
        let e =
            Comparison::from_fields(&Some(Scalar::Int(1)), &None, &Some(1), &None, &None, &None)
                .unwrap_err();
        assert!(e.to_string().contains("equals and min/max"), "{e}");
        assert!(Comparison::from_fields(&None, &None, &Some(5), &Some(1), &None, &None).is_err());
    }

    #[test]
    fn semantics() {
        let eq = Comparison::Equals("no".into());
        assert!(eq.holds(Some("No"), true));
        assert!(!eq.holds(Some("No"), false));
        assert!(!eq.holds(None, true));
        let r = Comparison::Range {
            min: Some(1),
            max: Some(90),
        };
        assert!(r.holds(Some(" 90 "), false));
        assert!(!r.holds(Some("99999"), false));
        assert!(!r.holds(Some("abc"), false));
        assert!(Comparison::Absent(true).holds(None, false));
        assert!(!Comparison::Absent(true).holds(Some("x"), false));
        let x = Comparison::Excludes(vec!["3des-cbc".into(), "hmac-md5".into()]);
        assert!(x.holds(
            Some("aes256-gcm@openssh.com,chacha20-poly1305@openssh.com"),
            true
        ));
        assert!(!x.holds(Some("aes128-ctr,3des-cbc"), true));
        assert!(x.holds(None, true));
        assert!(Comparison::Equals("4 4 1 7".into()).holds(Some("4\t4 1  7"), false));
    }
}
