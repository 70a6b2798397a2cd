//! A change a comparison found, held compactly until it is reported.
//!
//! A burst or patch day yields tens of thousands of changes in one pass, all
//! held until the pass is committed. Each keeps the entries it was found
//! from (boxed, without their path) and the attribute sets as bit masks;
//! the report form (`FimChange`, its values as JSON) is built one change at
//! a time when it is written out, so a pass holds a few hundred bytes per
//! change rather than a map of JSON values.

use super::diff;
use super::entry::Entry;
use super::rules::Attrs;
use plumb_core::Severity;
use plumb_core::fim::{ChangeKind, FimChange, PackageVerdict, ReportPath};
use std::sync::Arc;

/// One changed path.
#[derive(Debug, Clone)]
pub struct Change {
    /// In-root path, raw bytes.
    pub path: Vec<u8>,
    /// Added, removed or modified.
    pub kind: ChangeKind,
    /// The governing watch (its path).
    pub rule: Arc<str>,
    /// Severity to report (the watch's, then the package verdict's).
    pub severity: Severity,
    /// The attributes that differ (modified).
    fields: Attrs,
    /// The attributes the watch records (added, removed: every one with a value).
    watched: Attrs,
    old: Option<Box<Entry>>,
    new: Option<Box<Entry>>,
    /// The package verdict (docs/fim.md), once judged.
    pub package: Option<Box<PackageVerdict>>,
}

/// An entry kept for its attributes: its path is the change's.
fn boxed(mut e: Entry) -> Box<Entry> {
    e.path = Vec::new();
    Box::new(e)
}

impl Change {
    /// `path` appeared, as `new`.
    pub fn added(new: Entry, watched: Attrs, severity: Severity) -> Change {
        Change::of(
            ChangeKind::Added,
            None,
            Some(new),
            Attrs::default(),
            watched,
            severity,
        )
    }

    /// `old`'s path is gone.
    pub fn removed(old: Entry, watched: Attrs, severity: Severity) -> Change {
        Change::of(
            ChangeKind::Removed,
            Some(old),
            None,
            Attrs::default(),
            watched,
            severity,
        )
    }

    /// `old` became `new`, differing in `fields` (not empty).
    pub fn modified(old: Entry, new: Entry, fields: Attrs, severity: Severity) -> Change {
        Change::of(
            ChangeKind::Modified,
            Some(old),
            Some(new),
            fields,
            fields,
            severity,
        )
    }

    /// The path and rule are the new entry's, else the old one's.
    fn of(
        kind: ChangeKind,
        mut old: Option<Entry>,
        mut new: Option<Entry>,
        fields: Attrs,
        watched: Attrs,
        severity: Severity,
    ) -> Change {
        let (path, rule) = match new.as_mut().or(old.as_mut()) {
            Some(e) => (std::mem::take(&mut e.path), e.rule.clone()),
            None => (Vec::new(), Arc::from("")),
        };
        Change {
            path,
            kind,
            rule,
            severity,
            fields,
            watched,
            old: old.map(boxed),
            new: new.map(boxed),
            package: None,
        }
    }

    /// The attributes that differ, in report order (empty unless modified).
    pub fn field_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        diff::listed(self.fields).map(|a| a.name())
    }

    /// The content digest the report gives for the new content, when it
    /// gives one: `(algorithm, hex)`.
    pub fn new_digest(&self) -> Option<(&'static str, String)> {
        let new = self.new.as_deref()?;
        let shown = match self.kind {
            ChangeKind::Modified => self.fields,
            _ => self.watched,
        };
        diff::hash_value(new, shown)
    }

    /// The report form, with its values.
    pub fn into_report(self) -> FimChange {
        let (old, new) = match self.kind {
            ChangeKind::Modified => {
                let list: Vec<_> = diff::listed(self.fields).collect();
                (
                    self.old.map(|e| diff::values(&e, &list)),
                    self.new.map(|e| diff::values(&e, &list)),
                )
            }
            _ => (
                self.old.map(|e| diff::all_values(&e, self.watched)),
                self.new.map(|e| diff::all_values(&e, self.watched)),
            ),
        };
        FimChange {
            path: ReportPath::from_bytes(&self.path),
            change: self.kind,
            rule: self.rule.to_string(),
            severity: self.severity,
            fields: diff::listed(self.fields)
                .map(|a| a.name().to_string())
                .collect(),
            old,
            new,
            package: self.package.map(|p| *p),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::FimAttribute as A;
    use serde_json::json;

    fn e(path: &[u8], hash: u8) -> Entry {
        crate::fim::entry::sample(path, hash)
    }

    #[test]
    fn the_report_form_is_what_the_comparison_reported_before() {
        let all = Attrs::of(A::DEFAULT);
        let (old, mut new) = (e(b"/etc/a b", 1), e(b"/etc/a b", 2));
        new.mode = 0o100600;
        let fields = diff::fields(&old, &new, all);
        let m = Change::modified(old.clone(), new, Attrs::of(&fields), Severity::High);
        assert_eq!(m.new_digest(), Some(("sha256", "02".repeat(32))));
        let r = m.into_report();
        assert_eq!(r.path, ReportPath::Text("/etc/a b".into()));
        assert_eq!(r.fields, ["sha256", "mode"]);
        assert_eq!(r.old, Some(diff::values(&old, &fields)));
        assert_eq!(
            r.new.as_ref().and_then(|n| n.get("mode")),
            Some(&json!("0600"))
        );
        assert_eq!(r.rule, "/etc");

        let a = Change::added(e(b"/etc/\xff", 3), all, Severity::Medium);
        assert_eq!(a.path, b"/etc/\xff");
        let r = a.into_report();
        assert_eq!(r.change, ChangeKind::Added);
        assert!(r.fields.is_empty() && r.old.is_none());
        assert_eq!(r.new, Some(diff::all_values(&e(b"/x", 3), all)));
        assert_eq!(r.path, ReportPath::from_bytes(b"/etc/\xff"));

        // Only the mode differs: no digest is shown, none is compared.
        let (old, mut new) = (e(b"/etc/m", 1), e(b"/etc/m", 1));
        new.mode = 0o100600;
        let m = Change::modified(old.clone(), new, Attrs::of(&[A::Mode]), Severity::High);
        assert_eq!(m.new_digest(), None);
        let r = Change::removed(old, all, Severity::Low).into_report();
        assert_eq!(r.old, Some(diff::all_values(&e(b"/y", 1), all)));
        assert!(r.new.is_none());
    }
}
