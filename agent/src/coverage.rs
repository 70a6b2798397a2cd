//! How much of a published framework (the CIS Debian 12 benchmark, ANSSI
//! BP-028) a set of baselines covers: the reference lists shipped with
//! Plumbline (`baselines/frameworks/*.toml`, compiled in) and the
//! computation behind `plumb baseline coverage`. A rule covers an item by
//! naming it in its `references` ("CIS Debian Linux 12 Benchmark 5.1.20",
//! "ANSSI BP-028 R12"), optionally qualified: `(partly: why)` when it checks
//! only part of the item, `(not applicable: why)` when it establishes a site
//! choice under which the item does not apply (nftables as the firewall makes
//! the ufw items moot). The grammar and the statuses are documented in
//! docs/baseline.md, "Coverage of a framework".

use plumb_core::Baseline;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The reference lists compiled into `plumb`: (framework id, TOML text).
const LISTS: &[(&str, &str)] = &[
    (
        "cis-debian12-l1-server",
        include_str!("../../baselines/frameworks/cis-debian12-l1-server.toml"),
    ),
    (
        "anssi-bp028-intermediary",
        include_str!("../../baselines/frameworks/anssi-bp028-intermediary.toml"),
    ),
];

/// Schema of the coverage JSON document (docs/reference/report.md).
pub const COVERAGE_SCHEMA: u32 = 1;

/// The ids `--framework` accepts.
pub fn framework_ids() -> Vec<&'static str> {
    LISTS.iter().map(|(id, _)| *id).collect()
}

/// A framework's reference list could not be used. The lists are compiled
/// in and checked by the unit tests, so this means a broken build.
#[derive(Debug, thiserror::Error)]
pub enum ListError {
    /// No list has this id.
    #[error("no reference list named {0:?} (known: {known})", known = framework_ids().join(", "))]
    Unknown(String),
    /// The list's TOML does not parse into the format.
    #[error("reference list {id}: {cause}")]
    Parse {
        /// framework id
        id: String,
        /// what the TOML parser said
        cause: toml::de::Error,
    },
    /// The list parses but contradicts itself.
    #[error("reference list {id}: {problems}")]
    Invalid {
        /// framework id
        id: String,
        /// every problem, "; "-separated
        problems: String,
    },
}

/// How the benchmark says an item is assessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assessment {
    /// A program can run the audit: counted in the coverage figure.
    Automated,
    /// The audit needs a person: listed, not counted.
    Manual,
}

/// How much of an item the host itself can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Judged {
    /// All of it.
    #[default]
    Yes,
    /// Part of it: a rule covers it partly at best.
    Partly,
    /// None of it: nothing on the host decides it.
    No,
}

/// One item of a framework.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// "5.1.20", "R12".
    pub id: String,
    /// One of the list's `levels`.
    pub level: String,
    /// The framework's automated/manual status.
    pub assessment: Assessment,
    /// What the item asks, shortened.
    pub title: String,
    /// How much the host can show (default: all).
    #[serde(default)]
    pub judged: Judged,
    /// Why it cannot be judged fully, or how it is judged.
    #[serde(default)]
    pub note: Option<String>,
}

/// A framework's reference list.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrameworkList {
    /// Format version of the list.
    pub schema: u32,
    /// The `--framework` id.
    pub id: String,
    /// Framework, version and profile.
    pub title: String,
    /// What a rule's reference starts with ("CIS Debian Linux 12 Benchmark").
    pub reference: String,
    /// The framework's levels, lowest first.
    pub levels: Vec<String>,
    /// The level counted: items of this level and the ones before it.
    pub profile: String,
    /// Every item, in the framework's order.
    pub items: Vec<Item>,
}

impl FrameworkList {
    /// The compiled-in list with this id.
    pub fn builtin(id: &str) -> Result<FrameworkList, ListError> {
        let text = LISTS
            .iter()
            .find(|(name, _)| *name == id)
            .map(|(_, text)| *text)
            .ok_or_else(|| ListError::Unknown(id.to_owned()))?;
        let list: FrameworkList = toml::from_str(text).map_err(|cause| ListError::Parse {
            id: id.to_owned(),
            cause,
        })?;
        let problems = list.problems();
        if problems.is_empty() && list.id == id {
            Ok(list)
        } else if list.id != id {
            Err(ListError::Invalid {
                id: id.to_owned(),
                problems: format!("its id is {:?}", list.id),
            })
        } else {
            Err(ListError::Invalid {
                id: id.to_owned(),
                problems: problems.join("; "),
            })
        }
    }

    /// Contradictions within the list.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.schema != 1 {
            out.push(format!("schema {} (this build reads 1)", self.schema));
        }
        if !self.levels.contains(&self.profile) {
            out.push(format!(
                "profile {:?} is not one of the levels",
                self.profile
            ));
        }
        let mut seen = BTreeMap::new();
        for (i, item) in self.items.iter().enumerate() {
            if let Some(first) = seen.insert(item.id.as_str(), i) {
                out.push(format!("item {} listed twice (#{first} and #{i})", item.id));
            }
            if item.id.is_empty() || item.id.contains(char::is_whitespace) {
                out.push(format!("item #{i}: id {:?} is not a single word", item.id));
            }
            if !self.levels.contains(&item.level) {
                out.push(format!(
                    "item {}: level {:?} is not one of the levels",
                    item.id, item.level
                ));
            }
            if item.judged != Judged::Yes && item.note.is_none() {
                out.push(format!(
                    "item {}: judged only in part, without a note saying why",
                    item.id
                ));
            }
        }
        out
    }

    /// Whether the item is in the counted profile.
    fn in_profile(&self, item: &Item) -> bool {
        let rank = |l: &str| self.levels.iter().position(|x| x == l);
        matches!((rank(&item.level), rank(&self.profile)), (Some(a), Some(b)) if a <= b)
    }
}

/// What a reference says about the item it names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Claim {
    /// The rule checks the item.
    Full,
    /// The rule checks part of it (why, when given).
    Partly(Option<String>),
    /// The rule establishes a site choice under which the item does not apply.
    NotApplicable(String),
}

/// Why a reference to the framework does not follow the grammar; the text is
/// the `problem` of an [`UnknownReference`] (the coverage JSON).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum ReferenceError {
    #[error("no item after the framework's name")]
    NoItem,
    #[error(
        "unexpected {0:?} after the item (expected \"(partly: why)\" or \"(not applicable: why)\")"
    )]
    Unexpected(String),
    #[error("\"not applicable\" needs a reason")]
    NoReason,
    #[error("unknown qualifier ({0}) (expected \"partly\" or \"not applicable: why\")")]
    UnknownQualifier(String),
}

/// Splits `PREFIX ITEM [(partly[: why]) | (not applicable: why)]`. `None`:
/// the reference is not to this framework; `Some(Err(_))`: it starts with the
/// prefix but does not follow the grammar.
fn parse_reference<'a>(
    reference: &'a str,
    prefix: &str,
) -> Option<Result<(&'a str, Claim), ReferenceError>> {
    let rest = reference.strip_prefix(prefix)?.strip_prefix(' ')?;
    let (item, qualifier) = match rest.split_once(' ') {
        Some((item, q)) => (item, Some(q.trim())),
        None => (rest, None),
    };
    if item.is_empty() {
        return Some(Err(ReferenceError::NoItem));
    }
    let Some(q) = qualifier else {
        return Some(Ok((item, Claim::Full)));
    };
    let Some(inner) = q.strip_prefix('(').and_then(|q| q.strip_suffix(')')) else {
        return Some(Err(ReferenceError::Unexpected(q.to_owned())));
    };
    let inner = inner.trim();
    let why = |s: &str| s.trim().to_owned();
    if inner == "partly" {
        return Some(Ok((item, Claim::Partly(None))));
    }
    if let Some(w) = inner.strip_prefix("partly:") {
        return Some(Ok((
            item,
            Claim::Partly(Some(why(w)).filter(|w| !w.is_empty())),
        )));
    }
    if let Some(w) = inner.strip_prefix("not applicable:") {
        let w = why(w);
        if w.is_empty() {
            return Some(Err(ReferenceError::NoReason));
        }
        return Some(Ok((item, Claim::NotApplicable(w))));
    }
    Some(Err(ReferenceError::UnknownQualifier(inner.to_owned())))
}

/// An item's coverage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Rules check it.
    Covered,
    /// The baseline makes a site choice under which it does not apply.
    NotApplicable,
    /// Rules check part of it.
    Partly,
    /// No rule refers to it.
    NotCovered,
}

impl Status {
    /// The word text output uses.
    pub fn word(self) -> &'static str {
        match self {
            Status::Covered => "covered",
            Status::NotApplicable => "n/a",
            Status::Partly => "partly",
            Status::NotCovered => "not covered",
        }
    }
}

/// One item of the report.
#[derive(Debug, Clone, Serialize)]
pub struct ItemCoverage {
    /// Item id.
    pub id: String,
    /// Item title (from the list).
    pub title: String,
    /// Item level.
    pub level: String,
    /// `automated` or `manual`.
    pub assessment: Assessment,
    /// The verdict.
    pub status: Status,
    /// Rules referring to the item, in baseline order.
    pub rules: Vec<String>,
    /// Why the status is what it is; empty for a plain "covered".
    pub reason: String,
}

/// A referenced item outside the counted profile.
#[derive(Debug, Clone, Serialize)]
pub struct OtherLevel {
    /// Item id.
    pub id: String,
    /// Its level.
    pub level: String,
    /// Rules referring to it.
    pub rules: Vec<String>,
}

/// A reference to the framework that names no item of the list, or does not
/// follow the grammar.
#[derive(Debug, Clone, Serialize)]
pub struct UnknownReference {
    /// The rule carrying it.
    pub rule: String,
    /// The reference as written.
    pub reference: String,
    /// What is wrong with it.
    pub problem: String,
}

/// Counts over the automated items of the profile.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageSummary {
    /// Automated items of the profile (the denominator).
    pub automated: usize,
    /// Covered by rules.
    pub covered: usize,
    /// Not applicable under the baseline's site choices.
    pub not_applicable: usize,
    /// Covered in part.
    pub partly: usize,
    /// Not covered.
    pub not_covered: usize,
    /// `100 * (covered + not_applicable) / automated`, one decimal.
    pub percent: f64,
    /// The same, counting the partly covered items too.
    pub percent_with_partly: f64,
    /// Manual items of the profile (listed, not counted).
    pub manual: usize,
    /// Manual items that some rule refers to.
    pub manual_with_rules: usize,
}

/// Framework identity in the report.
#[derive(Debug, Clone, Serialize)]
pub struct FrameworkRef {
    /// `--framework` id.
    pub id: String,
    /// Framework, version and profile.
    pub title: String,
    /// The prefix of references to it.
    pub reference: String,
    /// The counted profile.
    pub profile: String,
}

/// Baseline identity in the report.
#[derive(Debug, Clone, Serialize)]
pub struct BaselineId {
    /// Baseline id.
    pub id: String,
    /// Baseline version.
    pub version: u64,
}

/// `plumb baseline coverage`'s result.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    /// [`COVERAGE_SCHEMA`].
    pub schema: u32,
    /// The framework measured against.
    pub framework: FrameworkRef,
    /// The baselines measured, in order.
    pub baselines: Vec<BaselineId>,
    /// The figures.
    pub summary: CoverageSummary,
    /// Every item of the profile, automated and manual, in the framework's order.
    pub items: Vec<ItemCoverage>,
    /// Referenced items of levels outside the profile.
    pub other_levels: Vec<OtherLevel>,
    /// References to the framework that the list does not know.
    pub unknown_references: Vec<UnknownReference>,
}

/// The claims of every rule on each item: item id → (rule id, claim).
type Claims = BTreeMap<String, Vec<(String, Claim)>>;

/// Measures `baselines` against `list`.
pub fn measure(list: &FrameworkList, baselines: &[Baseline]) -> CoverageReport {
    let (claims, unknown) = gather(list, baselines);
    let (items, other_levels) = assess(list, &claims);
    CoverageReport {
        schema: COVERAGE_SCHEMA,
        framework: FrameworkRef {
            id: list.id.clone(),
            title: list.title.clone(),
            reference: list.reference.clone(),
            profile: list.profile.clone(),
        },
        baselines: baselines
            .iter()
            .map(|b| BaselineId {
                id: b.id.clone(),
                version: b.version,
            })
            .collect(),
        summary: summarize(&items),
        items,
        other_levels,
        unknown_references: unknown,
    }
}

/// The claims of the baselines' rules on the list's items, and the
/// references to the framework that are malformed or name no item.
fn gather(list: &FrameworkList, baselines: &[Baseline]) -> (Claims, Vec<UnknownReference>) {
    let mut claims: Claims = BTreeMap::new();
    let mut unknown = Vec::new();
    for rule in baselines.iter().flat_map(|b| &b.rules) {
        for reference in &rule.references {
            match parse_reference(reference, &list.reference) {
                None => {}
                Some(Err(problem)) => unknown.push(UnknownReference {
                    rule: rule.id.clone(),
                    reference: reference.clone(),
                    problem: problem.to_string(),
                }),
                Some(Ok((item, claim))) => {
                    if list.items.iter().any(|i| i.id == item) {
                        claims
                            .entry(item.to_owned())
                            .or_default()
                            .push((rule.id.clone(), claim));
                    } else {
                        unknown.push(UnknownReference {
                            rule: rule.id.clone(),
                            reference: reference.clone(),
                            problem: format!("{} has no item {item}", list.title),
                        });
                    }
                }
            }
        }
    }
    (claims, unknown)
}

/// Each item of the profile judged, and the items of other levels that
/// rules name.
fn assess(list: &FrameworkList, claims: &Claims) -> (Vec<ItemCoverage>, Vec<OtherLevel>) {
    let mut items = Vec::new();
    let mut other_levels = Vec::new();
    for item in &list.items {
        let mine = claims.get(&item.id).map(Vec::as_slice).unwrap_or(&[]);
        let mut rules: Vec<String> = Vec::new();
        for (r, _) in mine {
            if !rules.contains(r) {
                rules.push(r.clone());
            }
        }
        if !list.in_profile(item) {
            if !rules.is_empty() {
                other_levels.push(OtherLevel {
                    id: item.id.clone(),
                    level: item.level.clone(),
                    rules,
                });
            }
            continue;
        }
        let (status, reason) = judge(item, mine);
        items.push(ItemCoverage {
            id: item.id.clone(),
            title: item.title.clone(),
            level: item.level.clone(),
            assessment: item.assessment,
            status,
            rules,
            reason,
        });
    }
    (items, other_levels)
}

/// The counts and percentages over the automated items.
fn summarize(items: &[ItemCoverage]) -> CoverageSummary {
    let automated: Vec<&ItemCoverage> = items
        .iter()
        .filter(|i| i.assessment == Assessment::Automated)
        .collect();
    let count = |s: Status| automated.iter().filter(|i| i.status == s).count();
    let (covered, not_applicable, partly, not_covered) = (
        count(Status::Covered),
        count(Status::NotApplicable),
        count(Status::Partly),
        count(Status::NotCovered),
    );
    let percent = |n: usize| {
        if automated.is_empty() {
            100.0
        } else {
            // Counts are far below 2^52: exact as f64.
            #[allow(clippy::cast_precision_loss)]
            let p = 100.0 * n as f64 / automated.len() as f64;
            (p * 10.0).round() / 10.0
        }
    };
    let manual: Vec<&ItemCoverage> = items
        .iter()
        .filter(|i| i.assessment == Assessment::Manual)
        .collect();
    CoverageSummary {
        automated: automated.len(),
        covered,
        not_applicable,
        partly,
        not_covered,
        percent: percent(covered + not_applicable),
        percent_with_partly: percent(covered + not_applicable + partly),
        manual: manual.len(),
        manual_with_rules: manual.iter().filter(|i| !i.rules.is_empty()).count(),
    }
}

/// An item's status and reason from the rules' claims on it.
fn judge(item: &Item, claims: &[(String, Claim)]) -> (Status, String) {
    let note = item.note.clone().unwrap_or_default();
    let full = claims.iter().any(|(_, c)| *c == Claim::Full);
    if claims.is_empty() {
        let reason = match (item.judged, note.is_empty()) {
            (Judged::No, _) => format!("cannot be judged from the host: {note}"),
            (_, true) => "no rule refers to it".to_owned(),
            (_, false) => format!("no rule refers to it ({note})"),
        };
        return (Status::NotCovered, reason);
    }
    if full {
        return match item.judged {
            Judged::Yes => (Status::Covered, note),
            Judged::Partly | Judged::No => (
                Status::Partly,
                format!("only part of it shows on the host: {note}"),
            ),
        };
    }
    let not_applicable: Vec<String> = claims
        .iter()
        .filter_map(|(r, c)| match c {
            Claim::NotApplicable(why) => Some(format!("{r}: {why}")),
            _ => None,
        })
        .collect();
    if !not_applicable.is_empty() {
        return (Status::NotApplicable, not_applicable.join("; "));
    }
    let mut why: Vec<String> = claims
        .iter()
        .filter_map(|(r, c)| match c {
            Claim::Partly(Some(w)) => Some(format!("{r}: {w}")),
            Claim::Partly(None) => Some(format!("{r} checks part of it")),
            _ => None,
        })
        .collect();
    if item.judged != Judged::Yes && !note.is_empty() {
        why.push(format!("only part of it shows on the host: {note}"));
    }
    (Status::Partly, why.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_list_loads_and_is_consistent() {
        for id in framework_ids() {
            let list = FrameworkList::builtin(id).unwrap_or_else(|e| panic!("{e}"));
            assert!(!list.items.is_empty(), "{id}");
        }
    }

    #[test]
    fn the_cis_list_has_the_benchmarks_230_automated_level_1_items() {
        let list = FrameworkList::builtin("cis-debian12-l1-server").unwrap();
        let l1: Vec<&Item> = list.items.iter().filter(|i| list.in_profile(i)).collect();
        let automated = l1
            .iter()
            .filter(|i| i.assessment == Assessment::Automated)
            .count();
        assert_eq!(automated, 230);
        assert_eq!(l1.len() - automated, 19, "manual Level 1 items");
        // v1.1.0 numbering: prelink and apport (1.5.4, 1.5.5 in 1.0.x) are gone.
        assert!(
            !list
                .items
                .iter()
                .any(|i| i.id == "1.5.4" || i.id == "1.5.5")
        );
    }

    #[test]
    fn the_anssi_list_has_r1_to_r80_and_40_at_the_intermediary_level() {
        let list = FrameworkList::builtin("anssi-bp028-intermediary").unwrap();
        let ids: Vec<String> = list.items.iter().map(|i| i.id.clone()).collect();
        let expected: Vec<String> = (1..=80).map(|n| format!("R{n}")).collect();
        assert_eq!(ids, expected);
        assert_eq!(list.items.iter().filter(|i| list.in_profile(i)).count(), 40);
    }

    #[test]
    fn unknown_framework_names_the_known_ones() {
        let e = FrameworkList::builtin("cis-rhel9").unwrap_err().to_string();
        assert!(e.contains("cis-debian12-l1-server"), "{e}");
    }

    #[test]
    fn references_follow_the_grammar() {
        let p = "CIS Debian Linux 12 Benchmark";
        assert_eq!(parse_reference("ANSSI BP-028 R12", p), None);
        assert_eq!(
            parse_reference("CIS Debian Linux 12 Benchmarks 1.1", p),
            None
        );
        assert_eq!(
            parse_reference("CIS Debian Linux 12 Benchmark 5.1.20", p),
            Some(Ok(("5.1.20", Claim::Full)))
        );
        assert_eq!(
            parse_reference("CIS Debian Linux 12 Benchmark 7.2.10 (partly)", p),
            Some(Ok(("7.2.10", Claim::Partly(None))))
        );
        assert_eq!(
            parse_reference(
                "CIS Debian Linux 12 Benchmark 7.2.10 (partly: dot files only)",
                p
            ),
            Some(Ok(("7.2.10", Claim::Partly(Some("dot files only".into())))))
        );
        assert_eq!(
            parse_reference(
                "CIS Debian Linux 12 Benchmark 4.2.1 (not applicable: nftables is the firewall)",
                p
            ),
            Some(Ok((
                "4.2.1",
                Claim::NotApplicable("nftables is the firewall".into())
            )))
        );
        for bad in [
            "CIS Debian Linux 12 Benchmark 4.2.1 (not applicable)",
            "CIS Debian Linux 12 Benchmark 4.2.1 partly",
            "CIS Debian Linux 12 Benchmark 4.2.1 (maybe)",
            "CIS Debian Linux 12 Benchmark ",
        ] {
            assert!(matches!(parse_reference(bad, p), Some(Err(_))), "{bad}");
        }
    }

    fn item(id: &str, judged: Judged, note: Option<&str>) -> Item {
        Item {
            id: id.into(),
            level: "1".into(),
            assessment: Assessment::Automated,
            title: "t".into(),
            judged,
            note: note.map(Into::into),
        }
    }

    #[test]
    fn status_from_claims() {
        let plain = item("1", Judged::Yes, None);
        let r = |c: Claim| vec![("r".to_owned(), c)];
        assert_eq!(judge(&plain, &[]).0, Status::NotCovered);
        assert_eq!(
            judge(&plain, &r(Claim::Full)),
            (Status::Covered, String::new())
        );
        assert_eq!(
            judge(&plain, &r(Claim::Partly(Some("half".into())))),
            (Status::Partly, "r: half".into())
        );
        assert_eq!(
            judge(&plain, &r(Claim::NotApplicable("site".into()))),
            (Status::NotApplicable, "r: site".into())
        );
        // A full claim wins over the others.
        let mixed = vec![
            ("a".to_owned(), Claim::Partly(None)),
            ("b".to_owned(), Claim::Full),
        ];
        assert_eq!(judge(&plain, &mixed).0, Status::Covered);
        // An item the host shows only in part is partly covered at best.
        let half = item("2", Judged::Partly, Some("site policy"));
        let (s, why) = judge(&half, &r(Claim::Full));
        assert_eq!(s, Status::Partly);
        assert!(why.contains("site policy"), "{why}");
        let none = item("3", Judged::No, Some("organisational"));
        assert!(
            judge(&none, &[])
                .1
                .contains("cannot be judged from the host: organisational")
        );
    }
}
