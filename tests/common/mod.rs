//! Shared by the end-to-end tests: fixture roots in temporary directories,
//! the real binaries, and (in submodules) the collector's fixtures.
#![allow(dead_code)]

pub mod collector;
pub mod http;
pub mod pki;
pub mod postgres;
mod process;
pub mod receiver;
pub mod rsyslog;

pub use process::{Agent, Port};

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A temporary root directory with helpers to lay out files in it.
pub struct Root {
    pub dir: tempfile::TempDir,
}

impl Root {
    pub fn new() -> Root {
        Root {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Host path of an in-root path.
    pub fn p(&self, in_root: &str) -> PathBuf {
        self.dir.path().join(in_root.trim_start_matches('/'))
    }

    /// Writes a file (parents created) and returns its host path.
    pub fn write(&self, in_root: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let p = self.p(in_root);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        p
    }

    pub fn mkdir(&self, in_root: &str) -> PathBuf {
        let p = self.p(in_root);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn chmod(&self, in_root: &str, mode: u32) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.p(in_root), std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn symlink(&self, target: &str, in_root: &str) {
        let p = self.p(in_root);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, p).unwrap();
    }
}

/// Fails the test unless it runs as root: for the tests marked
/// `#[ignore = "needs root …"]`, which `.ci/run` runs as root.
pub fn require_root(why: &str) {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root ({why}): run it as root, as .ci/run does"
    );
}

/// Path of the real `plumb` binary (Cargo builds it for this package's tests).
pub const PLUMB: &str = env!("CARGO_BIN_EXE_plumb");

/// Path of the real `plumb-collector` binary, beside `plumb` in the target
/// directory. It belongs to another package: `cargo test --workspace` builds
/// it (that package's stub test asks Cargo to), `cargo test -p plumb-agent`
/// alone does not, hence the message.
pub fn collector_bin() -> PathBuf {
    let p = Path::new(PLUMB).with_file_name("plumb-collector");
    assert!(
        p.is_file(),
        "{} is not built: run `cargo test --workspace`, or `cargo build -p plumb-collector` first",
        p.display()
    );
    p
}

/// The real `plumb` binary.
pub fn plumb() -> Command {
    let mut c = Command::new(PLUMB);
    c.env_remove("PLUMB_LOG").env("NO_COLOR", "1");
    c
}

/// Runs a command and returns (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("spawn");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// A baseline file with the given rules (TOML `[[rule]]` blocks) written
/// into a temporary directory outside the checked root.
pub fn baseline(dir: &Path, rules: &str) -> PathBuf {
    let p = dir.join("baseline.toml");
    std::fs::write(
        &p,
        format!("schema = 1\nid = \"test\"\nversion = 1\ntitle = \"test\"\n\n{rules}"),
    )
    .unwrap();
    p
}

/// A one-rule baseline whose check is the given inline table.
pub fn rule(id: &str, check: &str) -> String {
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"{id}\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\ncheck = {check}\n\n"
    )
}

/// Runs `plumb check --format json` on `root` with the given baseline and
/// returns (exit code, parsed report).
pub fn check_json(root: &Path, baseline: &Path, extra: &[&str]) -> (i32, serde_json::Value) {
    let (code, out, err) = run(plumb()
        .args(["check", "--format", "json", "--root"])
        .arg(root)
        .arg("--baseline")
        .arg(baseline)
        .args(extra));
    let v: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| {
        panic!("stdout is not JSON ({e}); exit {code}; stdout:\n{out}\nstderr:\n{err}")
    });
    (code, v)
}

/// The result object of rule `id` in a report.
pub fn result<'a>(report: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    report["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("no result for {id} in {report:#}"))
}

/// Status and evidence (joined by newlines) of one rule, checked on a root.
pub fn status_of(root: &Root, check: &str, extra: &[&str]) -> (String, String) {
    let dir = tempfile::tempdir().unwrap();
    let b = baseline(dir.path(), &rule("r", check));
    let (_, report) = check_json(root.path(), &b, extra);
    let r = result(&report, "r");
    let ev: Vec<String> = r["evidence"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap().to_string())
        .collect();
    (r["status"].as_str().unwrap().to_string(), ev.join("\n"))
}

/// The events of a JSON-lines file the agent is appending to: complete
/// lines only, as `tail -f` would show them (a line being written is read
/// on the next call). A complete line that does not parse fails the test.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let complete = text.rfind('\n').map_or("", |i| &text[..i]);
    complete
        .lines()
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect()
}
