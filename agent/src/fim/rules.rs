//! The `[[fim]]` watches of a baseline, prepared for a scan: the most
//! specific watch governs each path (its attributes, severity and excludes).

use super::entry::HashAlg;
use anyhow::{Context, bail};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use plumb_core::baseline::normalize_fim_path;
use plumb_core::{FimAttribute, FimRule, Severity};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// A set of [`FimAttribute`]s.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attrs(u16);

impl Attrs {
    fn bit(a: FimAttribute) -> u16 {
        1 << (a as u16)
    }

    /// The set of these attributes.
    pub fn of(list: &[FimAttribute]) -> Attrs {
        Attrs(list.iter().fold(0, |acc, &a| acc | Attrs::bit(a)))
    }

    /// Whether `a` is in the set.
    pub fn has(self, a: FimAttribute) -> bool {
        self.0 & Attrs::bit(a) != 0
    }

    /// The content hash asked for, if any.
    pub fn hash(self) -> Option<HashAlg> {
        if self.has(FimAttribute::Sha512) {
            Some(HashAlg::Sha512)
        } else if self.has(FimAttribute::Sha256) {
            Some(HashAlg::Sha256)
        } else {
            None
        }
    }
}

/// One watch, ready to match paths.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Normalized in-root path as bytes (`/` or `/a/b`).
    pub path: Vec<u8>,
    /// The same, as the rule's name in reports and in the database.
    pub name: Arc<str>,
    excludes: GlobSet,
    /// Attributes recorded and compared.
    pub attrs: Attrs,
    /// Severity of a change.
    pub severity: Severity,
    /// Severity of a change the package database verifies.
    pub verified_severity: Severity,
    /// Descend into other filesystems.
    pub cross_devices: bool,
}

impl Watch {
    /// Whether this watch excludes the in-root path `p`.
    pub fn excludes(&self, p: &[u8]) -> bool {
        // Globs match text; a path that is not UTF-8 is matched in its lossy
        // form, which keeps every ASCII component intact.
        match std::str::from_utf8(p) {
            Ok(s) => self.excludes.is_match(s),
            Err(_) => self.excludes.is_match(String::from_utf8_lossy(p).as_ref()),
        }
    }
}

/// All watches of a scan.
#[derive(Debug)]
pub struct Plan {
    /// Watches in baseline order.
    pub watches: Vec<Watch>,
    /// In-root paths never recorded (the database and key files when they lie inside the root).
    pub skip: Vec<Vec<u8>>,
    /// Indexes of `watches` sorted by path: a targeted pass over a burst
    /// has one watch per changed path (tens of thousands), and the walker
    /// looks them up for every entry.
    sorted: Vec<usize>,
    /// First watch of each name.
    names: HashMap<Arc<str>, usize>,
}

/// Whether `inner` lies strictly below `outer`.
pub fn below(outer: &[u8], inner: &[u8]) -> bool {
    inner.len() > outer.len()
        && inner.starts_with(outer)
        && (outer == b"/" || inner[outer.len()] == b'/')
}

impl Plan {
    /// Prepares the watches of a validated baseline.
    pub fn new(rules: &[FimRule]) -> anyhow::Result<Plan> {
        if rules.is_empty() {
            bail!("the baseline has no [[fim]] watch");
        }
        let mut watches: Vec<Watch> = Vec::with_capacity(rules.len());
        for r in rules {
            let norm = normalize_fim_path(&r.path);
            if watches.iter().any(|w| w.name.as_ref() == norm) {
                bail!("two [[fim]] watches of {norm} (line {})", r.line);
            }
            let mut b = GlobSetBuilder::new();
            for g in &r.exclude {
                b.add(
                    GlobBuilder::new(g)
                        .literal_separator(true)
                        .backslash_escape(true)
                        .build()
                        .with_context(|| format!("[[fim]] {norm}: exclude \"{g}\""))?,
                );
            }
            watches.push(Watch {
                path: norm.as_bytes().to_vec(),
                name: Arc::from(norm.as_str()),
                excludes: b.build().context("building exclude globs")?,
                attrs: Attrs::of(&r.attributes),
                severity: r.severity,
                verified_severity: r.verified_severity,
                cross_devices: r.cross_devices,
            });
        }
        Ok(Plan::indexed(watches, Vec::new()))
    }

    fn indexed(watches: Vec<Watch>, skip: Vec<Vec<u8>>) -> Plan {
        let mut sorted: Vec<usize> = (0..watches.len()).collect();
        sorted.sort_by(|&a, &b| watches[a].path.cmp(&watches[b].path));
        let mut names = HashMap::new();
        for (i, w) in watches.iter().enumerate() {
            names.entry(w.name.clone()).or_insert(i);
        }
        Plan {
            watches,
            skip,
            sorted,
            names,
        }
    }

    /// The positions in `sorted` of the watches whose path starts with `prefix`.
    fn prefixed(&self, prefix: &[u8]) -> std::ops::Range<usize> {
        let start = self
            .sorted
            .partition_point(|&i| self.watches[i].path.as_slice() < prefix);
        let len =
            self.sorted[start..].partition_point(|&i| self.watches[i].path.starts_with(prefix));
        start..start + len
    }

    /// The watch rooted exactly at `p`.
    pub fn rooted_at(&self, p: &[u8]) -> Option<usize> {
        let at = self
            .sorted
            .partition_point(|&i| self.watches[i].path.as_slice() < p);
        self.sorted
            .get(at)
            .copied()
            .filter(|&i| self.watches[i].path == p)
    }

    /// Whether some watch is rooted strictly below `p`.
    pub fn has_roots_below(&self, p: &[u8]) -> bool {
        self.roots_below(p).next().is_some()
    }

    /// Watch roots strictly below `p`, in path order.
    pub fn roots_below<'a>(&'a self, p: &'a [u8]) -> impl Iterator<Item = &'a Watch> + 'a {
        let mut prefix = p.to_vec();
        if p != b"/" {
            prefix.push(b'/');
        }
        self.sorted[self.prefixed(&prefix)]
            .iter()
            .map(|&i| &self.watches[i])
            .filter(move |w| below(p, &w.path))
    }

    /// Sorted, distinct next path components from `dir` towards the watch
    /// roots below it.
    pub fn next_components(&self, dir: &[u8]) -> Vec<Vec<u8>> {
        let start = if dir == b"/" { 1 } else { dir.len() + 1 };
        let mut out: Vec<Vec<u8>> = self
            .roots_below(dir)
            .filter_map(|w| {
                let rest = w.path.get(start..)?;
                let end = rest.iter().position(|&b| b == b'/').unwrap_or(rest.len());
                Some(rest[..end].to_vec())
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The most specific watch governing `p`, if any: the watch rooted at
    /// `p` or at its nearest ancestor.
    pub fn governing(&self, p: &[u8]) -> Option<&Watch> {
        let mut at = p;
        loop {
            if let Some(i) = self.rooted_at(at) {
                return Some(&self.watches[i]);
            }
            if at == b"/" || at.is_empty() {
                return None;
            }
            let cut = at.iter().rposition(|&b| b == b'/')?;
            at = &at[..cut.max(1)];
        }
    }

    /// The watch named `name`.
    pub fn by_name(&self, name: &str) -> Option<&Watch> {
        self.names.get(name).map(|&i| &self.watches[i])
    }

    /// Whether the walk of the whole plan records `p`: governed by a watch
    /// that excludes neither `p` nor any directory between its root and `p`,
    /// and not one of our own files.
    pub fn records(&self, p: &[u8]) -> bool {
        if self.skip.iter().any(|s| s == p) {
            return false;
        }
        let Some(w) = self.governing(p) else {
            return false;
        };
        let mut at = p;
        while at.len() > w.path.len() {
            if w.excludes(at) {
                return false;
            }
            let cut = at.iter().rposition(|&b| b == b'/').unwrap_or(0);
            at = &at[..cut.max(1)];
        }
        true
    }

    /// A plan that walks only `roots` (in-root paths) and what lies below
    /// them, recording exactly what the whole plan records there: each root
    /// becomes a watch with the name, attributes and excludes of the watch
    /// governing it, and the watches rooted below a root are kept. Roots
    /// nothing is recorded at or below are dropped. Also returns the
    /// minimal set of subtrees the new plan covers (for reading rows).
    pub fn restrict(&self, roots: &[Vec<u8>]) -> (Plan, Vec<Vec<u8>>) {
        let mut watches: Vec<Watch> = Vec::new();
        for r in roots {
            if self.records(r) {
                if let Some(w) = self.governing(r) {
                    let mut v = w.clone();
                    v.path = r.clone();
                    watches.push(v);
                }
            }
            for w in self.roots_below(r) {
                watches.push(w.clone());
            }
        }
        watches.sort_by(|a, b| a.path.cmp(&b.path));
        watches.dedup_by(|a, b| a.path == b.path);
        // A watch is covered when one at an ancestor is: shortest first, so
        // every ancestor is settled before what lies below it.
        let mut by_len: Vec<&[u8]> = watches.iter().map(|w| w.path.as_slice()).collect();
        by_len.sort_by_key(|p| p.len());
        let mut covered_set: HashSet<&[u8]> = HashSet::new();
        for p in by_len {
            let mut at = p;
            let mut inside = false;
            while let Some(cut) = at.iter().rposition(|&b| b == b'/') {
                if at == b"/" {
                    break;
                }
                at = &at[..cut.max(1)];
                if covered_set.contains(at) {
                    inside = true;
                    break;
                }
            }
            if !inside {
                covered_set.insert(p);
            }
        }
        let covered: Vec<Vec<u8>> = watches
            .iter()
            .filter(|w| covered_set.contains(w.path.as_slice()))
            .map(|w| w.path.clone())
            .collect();
        (Plan::indexed(watches, self.skip.clone()), covered)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::Baseline;

    fn plan(fims: &str) -> Plan {
        let b = Baseline::from_str(&format!("schema = 1\nid = \"t\"\nversion = 1\n{fims}"), "t")
            .unwrap();
        Plan::new(&b.fim).unwrap()
    }

    #[test]
    fn indexed_lookups_agree_with_the_definitions() {
        let p = plan(
            "[[fim]]\npath = \"/etc\"\n[[fim]]\npath = \"/etc-x\"\n[[fim]]\npath = \"/etc/a\"\n\
             [[fim]]\npath = \"/etc/a/b\"\n[[fim]]\npath = \"/etcb\"\n[[fim]]\npath = \"/\"\n",
        );
        let probes: [&[u8]; 10] = [
            b"/",
            b"/etc",
            b"/etc/a",
            b"/etc/a/b/c",
            b"/etc/ab",
            b"/etc-x/y",
            b"/etcb",
            b"/usr",
            b"/etc/a-b",
            b"/et",
        ];
        for q in probes {
            let linear = p
                .watches
                .iter()
                .filter(|w| w.path == q || below(&w.path, q))
                .max_by_key(|w| w.path.len())
                .map(|w| w.path.clone());
            assert_eq!(p.governing(q).map(|w| w.path.clone()), linear, "{q:?}");
            let mut below_linear: Vec<&[u8]> = p
                .watches
                .iter()
                .filter(|w| below(q, &w.path))
                .map(|w| w.path.as_slice())
                .collect();
            below_linear.sort();
            let indexed: Vec<&[u8]> = p.roots_below(q).map(|w| w.path.as_slice()).collect();
            assert_eq!(indexed, below_linear, "{q:?}");
            assert_eq!(
                p.rooted_at(q),
                p.watches.iter().position(|w| w.path == q),
                "{q:?}"
            );
        }
        // A restricted plan covers each root once, whatever the order.
        let (r, covered) = p.restrict(&[
            b"/etc/a/b/c".to_vec(),
            b"/etc/a".to_vec(),
            b"/etc-x/y".to_vec(),
        ]);
        assert_eq!(covered, [b"/etc-x/y".to_vec(), b"/etc/a".to_vec()]);
        assert_eq!(
            r.by_name("/etc/a").map(|w| w.path.clone()),
            Some(b"/etc/a".to_vec())
        );
    }

    #[test]
    fn most_specific_governs() {
        let p = plan(
            "[[fim]]\npath = \"/etc\"\nseverity = \"low\"\n[[fim]]\npath = \"/etc/ssh\"\nseverity = \"critical\"\n",
        );
        assert_eq!(p.governing(b"/etc/passwd").unwrap().name.as_ref(), "/etc");
        assert_eq!(
            p.governing(b"/etc/ssh/x").unwrap().name.as_ref(),
            "/etc/ssh"
        );
        assert_eq!(p.governing(b"/etc/ssh").unwrap().name.as_ref(), "/etc/ssh");
        assert_eq!(p.governing(b"/etc/sshd").unwrap().name.as_ref(), "/etc");
        assert!(p.governing(b"/usr").is_none());
        assert_eq!(p.next_components(b"/"), vec![b"etc".to_vec()]);
        assert_eq!(p.next_components(b"/etc"), vec![b"ssh".to_vec()]);
        assert!(p.next_components(b"/etc/ssh").is_empty());
    }

    #[test]
    fn a_restricted_plan_keeps_the_governing_watch_and_nested_ones() {
        let p = plan(
            "[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/skip\"]\nseverity = \"low\"\n[[fim]]\npath = \"/etc/ssh\"\nseverity = \"critical\"\n",
        );
        let (r, covered) = p.restrict(&[
            b"/etc/a".to_vec(),
            b"/etc/a/b".to_vec(),
            b"/etc/skip".to_vec(),
            b"/etc/skip/x/y".to_vec(),
            b"/usr".to_vec(),
            b"/".to_vec(),
        ]);
        let names: Vec<(&[u8], &str)> = r
            .watches
            .iter()
            .map(|w| (w.path.as_slice(), w.name.as_ref()))
            .collect();
        // "/" is not recorded but holds every watch; "/etc/skip" and below
        // are excluded, "/usr" is not watched.
        assert_eq!(
            names,
            vec![
                (&b"/etc"[..], "/etc"),
                (&b"/etc/a"[..], "/etc"),
                (&b"/etc/a/b"[..], "/etc"),
                (&b"/etc/ssh"[..], "/etc/ssh"),
            ]
        );
        assert_eq!(covered, vec![b"/etc".to_vec()]);
        let (r, covered) = p.restrict(&[b"/etc/ssh/x".to_vec(), b"/etc/a".to_vec()]);
        assert_eq!(r.watches[1].severity, Severity::Critical);
        assert_eq!(r.watches[1].name.as_ref(), "/etc/ssh");
        assert_eq!(covered, vec![b"/etc/a".to_vec(), b"/etc/ssh/x".to_vec()]);
        assert!(!p.records(b"/etc/skip/z"));
        assert!(p.records(b"/etc/skipped"));
        assert!(p.records(b"/etc/ssh/x"));
    }

    #[test]
    fn excludes_match_in_root_paths() {
        let p = plan("[[fim]]\npath = \"/etc\"\nexclude = [\"/etc/mtab\", \"**/*.swp\"]\n");
        let w = &p.watches[0];
        assert!(w.excludes(b"/etc/mtab"));
        assert!(w.excludes(b"/etc/a/b.swp"));
        assert!(w.excludes(b"/etc/b.swp"));
        assert!(w.excludes(b"/etc/\xff.swp"));
        assert!(!w.excludes(b"/etc/passwd"));
        assert!(!w.excludes(b"/etc/mtab2"));
    }

    #[test]
    fn default_attributes_hash_sha256_and_sha512_on_request() {
        let p = plan(
            "[[fim]]\npath = \"/a\"\n[[fim]]\npath = \"/b\"\nattributes = [\"sha512\"]\n[[fim]]\npath = \"/c\"\nattributes = [\"mode\"]\n",
        );
        assert_eq!(p.watches[0].attrs.hash(), Some(HashAlg::Sha256));
        assert_eq!(p.watches[1].attrs.hash(), Some(HashAlg::Sha512));
        assert_eq!(p.watches[2].attrs.hash(), None);
        assert!(p.watches[0].attrs.has(FimAttribute::Xattrs));
    }
}
