//! End-to-end: the real `plumb` binary — exit codes, report formats, lint.

mod common;
use common::*;

#[test]
fn version_and_usage_errors() {
    let (code, out, _) = run(plumb().arg("--version"));
    assert_eq!(code, 0);
    assert!(out.starts_with("plumb "));
    let (code, _, err) = run(plumb().args(["check", "--format", "yaml"]));
    assert_eq!(code, 2, "{err}");
}
