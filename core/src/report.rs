//! The `plumb check` report (docs/reference/report.md), shared with the
//! collector, which stores and aggregates it.

use crate::baseline::Severity;
use crate::issp::Criterion;
use serde::{Deserialize, Serialize};

/// Report format version.
pub const REPORT_SCHEMA: u32 = 1;

/// Outcome of one rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The rule holds.
    Pass,
    /// The rule does not hold.
    Fail,
    /// Could not be evaluated (evidence says why).
    Error,
    /// Not applicable here (evidence says why).
    Skipped,
}

impl Status {
    /// Name as in JSON.
    pub fn name(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Error => "error",
            Status::Skipped => "skipped",
        }
    }
}

/// One rule's result.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RuleResult {
    /// Rule id.
    pub id: String,
    /// Outcome.
    pub status: Status,
    /// Rule severity.
    pub severity: Severity,
    /// ISSP domains.
    pub domains: Vec<u8>,
    /// ISSP criteria.
    pub criteria: Vec<Criterion>,
    /// Rule title.
    pub title: String,
    /// What was observed, with file and line where there is one.
    pub evidence: Vec<String>,
}

/// Counts and score.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// rules passing
    pub pass: u32,
    /// rules failing
    pub fail: u32,
    /// rules that could not be evaluated
    pub error: u32,
    /// rules not applicable
    pub skipped: u32,
    /// `100 * pass / (pass + fail + error)`, one decimal; 100 when nothing applies.
    pub score: f64,
}

impl Summary {
    /// Counts the results and computes the score.
    pub fn of(results: &[RuleResult]) -> Summary {
        let mut s = Summary::default();
        for r in results {
            match r.status {
                Status::Pass => s.pass += 1,
                Status::Fail => s.fail += 1,
                Status::Error => s.error += 1,
                Status::Skipped => s.skipped += 1,
            }
        }
        let counted = s.pass + s.fail + s.error;
        s.score = if counted == 0 {
            100.0
        } else {
            (1000.0 * f64::from(s.pass) / f64::from(counted)).round() / 10.0
        };
        s
    }
}

/// Baseline identity in a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaselineRef {
    /// id
    pub id: String,
    /// version
    pub version: u64,
}

/// `plumb check --format json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Always [`REPORT_SCHEMA`].
    pub schema: u32,
    /// Host name.
    pub host: String,
    /// Checked root.
    pub root: String,
    /// The baseline (the first one when several were given).
    pub baseline: BaselineRef,
    /// Every baseline used, when more than one was given.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub baselines: Vec<BaselineRef>,
    /// RFC 3339 UTC.
    pub started_at: String,
    /// Wall time of the run.
    pub duration_ms: u64,
    /// Counts and score.
    pub summary: Summary,
    /// One per rule, in baseline order.
    pub results: Vec<RuleResult>,
}
