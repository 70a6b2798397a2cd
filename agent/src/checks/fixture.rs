//! Unit-test support for the checks: a temporary root and a temporary proc.
#![allow(clippy::unwrap_used)]

use super::{Ctx, Outcome};
use plumb_core::report::Status;

/// A root and a proc directory, both temporary.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub proc: tempfile::TempDir,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture {
            root: tempfile::tempdir().unwrap(),
            proc: tempfile::tempdir().unwrap(),
        }
    }

    /// Writes a file at in-root path `in_root`, creating its directories.
    pub fn write(&self, in_root: &str, content: &str) -> &Fixture {
        write(self.root.path(), in_root, content);
        self
    }

    /// Writes `rel` below the proc directory.
    pub fn proc_file(&self, rel: &str, content: &str) -> &Fixture {
        write(self.proc.path(), rel, content);
        self
    }

    /// The context of a check on this root, with the proc directory or
    /// without one (as on an offline image).
    pub fn ctx(&self, with_proc: bool) -> Ctx {
        Ctx::new(
            self.root.path(),
            with_proc.then(|| self.proc.path().to_path_buf()),
        )
    }
}

fn write(base: &std::path::Path, rel: &str, content: &str) {
    let p = base.join(rel.trim_start_matches('/'));
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
}

pub fn assert_status(o: &Outcome, s: Status) {
    assert_eq!(o.status, s, "{:?}", o.evidence);
}
