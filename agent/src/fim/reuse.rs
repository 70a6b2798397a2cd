//! Metadata verify: the stored hash and xattrs of files whose metadata did
//! not change. The walker asks in key order, so the stored rows are read
//! sequentially in chunks rather than looked up one by one. Rows are not
//! MAC-checked here: the comparison verifies every row anyway, and a forged
//! row is reported as tampering whatever was reused from it.

use super::db::Db;
use super::entry::{Entry, HashAlg, Kind, path_key};
use super::hash::Want;
use super::walk::Reused;
use std::collections::VecDeque;

const CHUNK: i64 = 2048;

struct Meta {
    key: Vec<u8>,
    kind: Option<Kind>,
    size: i64,
    mtime_ns: i64,
    ctime_ns: i64,
    inode: i64,
    ok: bool,
    hash: Option<(HashAlg, Vec<u8>)>,
    xattrs: Option<Vec<u8>>,
}

/// A sequential reader of stored rows for metadata verify.
pub struct Lookahead {
    db: Db,
    buf: VecDeque<Meta>,
    done: bool,
}

impl Lookahead {
    /// Reads from `db` (which should hold a read snapshot).
    pub fn new(db: Db) -> Lookahead {
        Lookahead {
            db,
            buf: VecDeque::new(),
            done: false,
        }
    }

    fn refill(&mut self, from: &[u8]) -> rusqlite::Result<()> {
        let mut st = self.db.conn().prepare_cached(
            "SELECT path, kind, size, mtime_ns, ctime_ns, inode, state, hash_alg, hash, xattrs \
             FROM entries WHERE path >= ?1 ORDER BY path LIMIT ?2",
        )?;
        let rows = st.query_map(rusqlite::params![from, CHUNK], |r| {
            let alg: Option<String> = r.get(7).ok().flatten();
            let hash: Option<Vec<u8>> = r.get(8).ok().flatten();
            Ok(Meta {
                key: r.get(0).unwrap_or_default(),
                kind: r.get::<_, String>(1).ok().and_then(|k| Kind::from_name(&k)),
                size: r.get(2).unwrap_or(-1),
                mtime_ns: r.get(3).unwrap_or(-1),
                ctime_ns: r.get(4).unwrap_or(-1),
                inode: r.get(5).unwrap_or(-1),
                ok: r.get::<_, String>(6).is_ok_and(|s| s == "ok"),
                hash: match (alg.as_deref().and_then(HashAlg::from_name), hash) {
                    (Some(a), Some(h)) => Some((a, h)),
                    _ => None,
                },
                xattrs: r.get(9).ok().flatten(),
            })
        })?;
        for m in rows {
            self.buf.push_back(m?);
        }
        if self.buf.is_empty() {
            self.done = true;
        }
        Ok(())
    }

    fn find(&mut self, key: &[u8]) -> Option<Meta> {
        loop {
            while self.buf.front().is_some_and(|m| m.key.as_slice() < key) {
                self.buf.pop_front();
            }
            if let Some(m) = self.buf.front() {
                return if m.key == key {
                    self.buf.pop_front()
                } else {
                    None
                };
            }
            if self.done || self.refill(key).is_err() {
                return None;
            }
        }
    }

    /// The stored content of `e` when its size, mtime, ctime, inode and type
    /// are unchanged and the stored row has what `want` asks for.
    pub fn reuse(&mut self, e: &Entry, want: Want) -> Option<Reused> {
        let m = self.find(&path_key(&e.path))?;
        let same = m.ok
            && m.kind == Some(e.kind)
            && m.size as u64 == e.size
            && m.mtime_ns == e.mtime_ns
            && m.ctime_ns == e.ctime_ns
            && m.inode as u64 == e.inode
            && m.hash.as_ref().map(|(a, _)| *a) == want.hash
            && m.xattrs.is_some() == want.xattrs;
        same.then_some(Reused {
            hash: m.hash,
            xattrs: m.xattrs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fim::db::Key;
    use crate::fim::{Options, init};
    use plumb_core::Baseline;
    use rustix::fs::AtFlags;
    use std::sync::Arc;

    #[test]
    fn stored_hash_is_reused_only_for_unchanged_metadata() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        for n in ["a", "b", "c"] {
            std::fs::write(root.join("etc").join(n), n).unwrap();
        }
        let b = Baseline::from_str(
            "schema = 1\nid = \"t\"\nversion = 1\n[[fim]]\npath = \"/etc\"\n",
            "t",
        )
        .unwrap();
        let opts = Options {
            root: root.clone(),
            db: d.path().join("db"),
            key: d.path().join("db.key"),
        };
        init(&b.fim, &opts, false).unwrap();
        std::fs::write(root.join("etc/b"), "changed").unwrap();
        let db = Db::open(&opts.db, Key::load(&opts.key).unwrap()).unwrap();
        db.begin_read().unwrap();
        let mut ahead = Lookahead::new(db);
        let want = Want {
            hash: Some(HashAlg::Sha256),
            xattrs: true,
        };
        let entry = |n: &str| {
            let st = rustix::fs::statat(
                rustix::fs::CWD,
                root.join("etc").join(n),
                AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
            Entry::from_stat(format!("/etc/{n}").into_bytes(), Arc::from("/etc"), &st)
        };
        let a = ahead.reuse(&entry("a"), want).unwrap();
        let sha_a = ring::digest::digest(&ring::digest::SHA256, b"a");
        assert_eq!(a.hash.unwrap().1, sha_a.as_ref());
        assert!(
            ahead.reuse(&entry("b"), want).is_none(),
            "size and mtime changed"
        );
        assert!(
            ahead
                .reuse(
                    &entry("c"),
                    Want {
                        hash: Some(HashAlg::Sha512),
                        xattrs: true
                    }
                )
                .is_none()
        );
        // Asked out of order (never by the walker): no answer or the right one.
        if let Some(r) = ahead.reuse(&entry("a"), want) {
            assert_eq!(r.hash.unwrap().1, sha_a.as_ref());
        }
    }
}
