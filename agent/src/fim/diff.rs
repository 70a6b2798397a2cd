//! Comparing a stored entry with a scanned one, attribute by attribute, and
//! the report form of attribute values.

use super::entry::{Entry, HashAlg, State};
use super::rules::Attrs;
use super::xattr;
use plumb_core::FimAttribute as A;
use plumb_core::fim::{ReportPath, hex};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Attributes in report order.
const ORDER: &[A] = &[
    A::Sha256,
    A::Sha512,
    A::Type,
    A::Mode,
    A::Uid,
    A::Gid,
    A::Size,
    A::Mtime,
    A::Ctime,
    A::Inode,
    A::Nlink,
    A::LinkTarget,
    A::Xattrs,
];

fn readable(s: &State) -> bool {
    *s == State::Ok
}

/// Every watched attribute that differs between `old` and `new`. The content
/// hash is compared only when the new scan read the file completely (a file
/// that could not be read or kept changing is reported under errors or
/// unstable instead); xattrs likewise.
pub fn fields(old: &Entry, new: &Entry, attrs: Attrs) -> Vec<A> {
    ORDER
        .iter()
        .copied()
        .filter(|&a| attrs.has(a))
        .filter(|&a| match a {
            A::Sha256 | A::Sha512 => {
                if attrs.hash().map(|h| h.name()) != Some(a.name()) {
                    return false;
                }
                let content_now = new.kind == super::entry::Kind::File && !readable(&new.state);
                !content_now && old.hash != new.hash
            }
            A::Type => old.kind != new.kind,
            A::Mode => old.mode & 0o7777 != new.mode & 0o7777,
            A::Uid => old.uid != new.uid,
            A::Gid => old.gid != new.gid,
            A::Size => old.size != new.size,
            A::Mtime => old.mtime_ns != new.mtime_ns,
            A::Ctime => old.ctime_ns != new.ctime_ns,
            A::Inode => old.inode != new.inode,
            A::Nlink => old.nlink != new.nlink,
            A::LinkTarget => old.link_target != new.link_target,
            A::Xattrs => readable(&new.state) && old.xattrs != new.xattrs,
        })
        .collect()
}

fn time(ns: i64) -> Value {
    match time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ns)) {
        Ok(t) => t
            .format(&time::format_description::well_known::Rfc3339)
            .map_or(Value::from(ns), Value::from),
        Err(_) => Value::from(ns),
    }
}

/// The report value of one attribute of `e`.
pub fn value(e: &Entry, a: A) -> Value {
    match a {
        A::Sha256 | A::Sha512 => match &e.hash {
            Some((alg, h)) if alg.name() == a.name() => Value::from(hex(h)),
            _ => Value::Null,
        },
        A::Type => Value::from(e.kind.name()),
        A::Mode => Value::from(format!("{:04o}", e.mode & 0o7777)),
        A::Uid => Value::from(e.uid),
        A::Gid => Value::from(e.gid),
        A::Size => Value::from(e.size),
        A::Mtime => time(e.mtime_ns),
        A::Ctime => time(e.ctime_ns),
        A::Inode => Value::from(e.inode),
        A::Nlink => Value::from(e.nlink),
        A::LinkTarget => match &e.link_target {
            Some(t) => serde_json::to_value(ReportPath::from_bytes(t)).unwrap_or(Value::Null),
            None => Value::Null,
        },
        A::Xattrs => match &e.xattrs {
            Some(x) => {
                let m: serde_json::Map<String, Value> = xattr::parse(x)
                    .into_iter()
                    .map(|(n, h)| (String::from_utf8_lossy(n).into_owned(), json!(hex(h))))
                    .collect();
                Value::Object(m)
            }
            None => Value::Null,
        },
    }
}

/// The named attributes of `e`.
pub fn values(e: &Entry, list: &[A]) -> BTreeMap<String, Value> {
    list.iter()
        .map(|&a| (a.name().to_string(), value(e, a)))
        .collect()
}

/// The attributes of `set`, in report order.
pub fn listed(set: Attrs) -> impl Iterator<Item = A> {
    ORDER.iter().copied().filter(move |&a| set.has(a))
}

/// The content digest among the attributes `shown` (as the report gives
/// it: the watch's hash only): `(algorithm, hex)`.
pub fn hash_value(e: &Entry, shown: Attrs) -> Option<(&'static str, String)> {
    let a = match shown.hash()? {
        HashAlg::Sha256 => A::Sha256,
        HashAlg::Sha512 => A::Sha512,
    };
    match value(e, a) {
        Value::String(h) if shown.has(a) => Some((a.name(), h)),
        _ => None,
    }
}

/// Every watched attribute of `e` that has a value (for added and removed paths).
pub fn all_values(e: &Entry, attrs: Attrs) -> BTreeMap<String, Value> {
    let list: Vec<A> = ORDER
        .iter()
        .copied()
        .filter(|&a| attrs.has(a))
        .filter(|&a| {
            !matches!(a, A::Sha256 | A::Sha512) || attrs.hash().map(|h| h.name()) == Some(a.name())
        })
        .collect();
    values(e, &list)
        .into_iter()
        .filter(|(_, v)| !v.is_null())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fim::entry::HashAlg;

    fn e() -> Entry {
        crate::fim::entry::sample(b"/etc/passwd", 1)
    }

    #[test]
    fn lists_every_differing_watched_field() {
        let all = Attrs::of(plumb_core::FimAttribute::DEFAULT);
        let (a, mut b) = (e(), e());
        assert!(fields(&a, &b, all).is_empty());
        b.hash = Some((HashAlg::Sha256, vec![2; 32]));
        b.size = 1234;
        b.mode = 0o100600;
        let f: Vec<&str> = fields(&a, &b, all).iter().map(|x| x.name()).collect();
        assert_eq!(f, ["sha256", "mode", "size"]);
        let only_mode = Attrs::of(&[A::Mode]);
        assert_eq!(fields(&a, &b, only_mode), [A::Mode]);
        assert_eq!(value(&a, A::Mode), json!("0644"));
        assert_eq!(value(&a, A::Mtime), json!("1970-01-01T00:00:01Z"));
        // An unreadable file's hash is not compared (reported as an error instead).
        b.state = State::Error("cannot open".into());
        b.hash = None;
        let f: Vec<&str> = fields(&a, &b, all).iter().map(|x| x.name()).collect();
        assert_eq!(f, ["mode", "size"]);
    }
}
