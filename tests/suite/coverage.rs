//! `plumb baseline coverage`: how much of a framework (CIS Debian 12 Level 1
//! server, ANSSI BP-028 intermediary) baselines cover, from the reference
//! lists shipped with plumb and the rules' `references`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::*;
use serde_json::Value;
use std::path::Path;

const SHIPPED: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../baselines/issp-linux-server.toml"
);

fn coverage_json(args: &[&str]) -> Value {
    let (code, out, err) = run(plumb()
        .args(["baseline", "coverage", "--format", "json"])
        .args(args));
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

fn item<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["id"] == id)
        .unwrap_or_else(|| panic!("no item {id}"))
}

fn rules_of(item: &Value) -> Vec<&str> {
    item["rules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect()
}

fn one_rule(id: &str, references: &[&str]) -> String {
    let refs: Vec<String> = references.iter().map(|r| format!("{r:?}")).collect();
    format!(
        "[[rule]]\nid = \"{id}\"\ntitle = \"{id}\"\nseverity = \"low\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         references = [{}]\ncheck = {{ kind = \"file\", path = \"/etc/motd\", exists = false }}\n\n",
        refs.join(", ")
    )
}

#[test]
fn shipped_baseline_covers_the_cis_level_1_server_items() {
    let r = coverage_json(&[SHIPPED, "--framework", "cis-debian12-l1-server"]);
    assert_eq!(r["schema"], 1);
    assert_eq!(r["framework"]["id"], "cis-debian12-l1-server");
    assert_eq!(r["baselines"][0]["id"], "issp-linux-server");
    // Every CIS reference of the shipped baseline names a v1.1.0 item.
    assert_eq!(
        r["unknown_references"],
        serde_json::json!([]),
        "{:#}",
        r["unknown_references"]
    );
    let s = &r["summary"];
    assert_eq!(s["automated"], 230);
    let counted = ["covered", "not_applicable", "partly", "not_covered"]
        .iter()
        .map(|k| s[*k].as_u64().unwrap())
        .sum::<u64>();
    assert_eq!(counted, 230, "{s:#}");
    // The figure docs/baseline.md and README quote; only more rules raise it.
    let percent = s["percent"].as_f64().unwrap();
    assert!(percent >= 85.0, "{s:#}");
    // A few items, one per way of being covered.
    let root = item(&r, "5.1.20");
    assert_eq!(root["status"], "covered");
    assert_eq!(rules_of(root), ["ssh.permit-root-login"]);
    let ufw = item(&r, "4.2.1");
    assert_eq!(ufw["status"], "not_applicable");
    assert!(
        ufw["reason"]
            .as_str()
            .unwrap()
            .contains("pkg.no-ufw: nftables is the firewall"),
        "{ufw:#}"
    );
    let grub = item(&r, "1.4.1");
    assert_eq!(grub["status"], "covered");
    assert_eq!(
        rules_of(grub),
        ["boot.grub-superuser", "boot.grub-password"]
    );
    let access = item(&r, "5.1.4");
    assert_eq!(access["status"], "partly");
    assert!(
        access["reason"].as_str().unwrap().contains("AllowGroups"),
        "{access:#}"
    );
    // Level 2 items referred to are listed apart, not counted.
    let others: Vec<&str> = r["other_levels"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert!(others.contains(&"6.2.1.1"), "{others:?}");
    assert!(
        r["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["level"] == "1")
    );
}

#[test]
fn shipped_baseline_is_tagged_with_anssi_recommendations() {
    let r = coverage_json(&[SHIPPED, "--framework", "anssi-bp028-intermediary"]);
    assert_eq!(
        r["unknown_references"],
        serde_json::json!([]),
        "{:#}",
        r["unknown_references"]
    );
    assert_eq!(r["framework"]["profile"], "intermediary");
    let ids: Vec<&str> = r["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 40, "minimal and intermediary items: {ids:?}");
    assert!(!ids.contains(&"R1"), "R1 is of the enhanced level");
    let boot = item(&r, "R5");
    assert_eq!(boot["status"], "covered");
    let secure_boot = item(&r, "R3");
    assert_eq!(secure_boot["assessment"], "manual");
    assert!(
        secure_boot["reason"]
            .as_str()
            .unwrap()
            .starts_with("cannot be judged from the host: "),
        "{secure_boot:#}"
    );
    // ANSSI's recommendations are broad (R12 is some twenty IPv4 settings):
    // most are checked in part. The figures docs/baseline.md quotes.
    let s = &r["summary"];
    assert!(s["covered"].as_u64().unwrap() >= 6, "{s:#}");
    assert!(s["percent_with_partly"].as_f64().unwrap() >= 80.0, "{s:#}");
}

#[test]
fn statuses_come_from_the_references_and_the_list() {
    let dir = tempfile::tempdir().unwrap();
    let cis = "CIS Debian Linux 12 Benchmark";
    let rules = [
        one_rule("a", &[&format!("{cis} 1.1.1.1"), "ANSSI BP-028 R10"]),
        one_rule(
            "b",
            &[&format!("{cis} 1.1.1.2 (partly: only the modprobe.d part)")],
        ),
        one_rule(
            "c",
            &[&format!(
                "{cis} 4.2.1 (not applicable: nftables is the firewall)"
            )],
        ),
        // A Level 2 item: listed apart.
        one_rule("d", &[&format!("{cis} 1.1.1.6")]),
        // Items the list does not know, and a reference off the grammar.
        one_rule(
            "e",
            &[&format!("{cis} 1.5.4"), &format!("{cis} 1.1.1.3 maybe")],
        ),
        // Another framework's reference is not this one's business.
        one_rule("f", &["NIST 800-53 AC-2"]),
    ]
    .concat();
    let b = baseline(dir.path(), &rules);
    let b = b.to_str().unwrap();
    let r = coverage_json(&[b, "--framework", "cis-debian12-l1-server"]);
    assert_eq!(item(&r, "1.1.1.1")["status"], "covered");
    assert_eq!(rules_of(item(&r, "1.1.1.1")), ["a"]);
    let b2 = item(&r, "1.1.1.2");
    assert_eq!(b2["status"], "partly");
    assert_eq!(b2["reason"], "b: only the modprobe.d part");
    assert_eq!(item(&r, "4.2.1")["status"], "not_applicable");
    let none = item(&r, "1.1.1.3");
    assert_eq!(none["status"], "not_covered");
    assert_eq!(none["reason"], "no rule refers to it");
    assert_eq!(r["other_levels"][0]["id"], "1.1.1.6");
    assert_eq!(r["other_levels"][0]["rules"][0], "d");
    let unknown: Vec<(&str, &str)> = r["unknown_references"]
        .as_array()
        .unwrap()
        .iter()
        .map(|u| {
            (
                u["reference"].as_str().unwrap(),
                u["problem"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(unknown.len(), 2, "{unknown:?}");
    assert!(unknown[0].1.contains("has no item 1.5.4"), "{unknown:?}");
    assert!(unknown[1].1.contains("unexpected \"maybe\""), "{unknown:?}");
    let s = &r["summary"];
    assert_eq!(
        (
            s["covered"].as_u64(),
            s["partly"].as_u64(),
            s["not_applicable"].as_u64()
        ),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(s["percent"], 0.9, "2 of 230 items, one decimal");
    assert_eq!(s["percent_with_partly"], 1.3);

    // The same in text, for people.
    let (code, out, err) = run(plumb().args([
        "baseline",
        "coverage",
        b,
        "--framework",
        "cis-debian12-l1-server",
    ]));
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("CIS Debian Linux 12 Benchmark v1.1.0, Level 1 - Server (cis-debian12-l1-server)\nbaseline: test v1\n"), "{out}");
    assert!(
        out.contains("\n1.1.1.2     partly      freevxfs kernel module is not available\n"),
        "{out}"
    );
    assert!(out.contains("rules: b\n"), "{out}");
    assert!(out.contains("why: b: only the modprobe.d part\n"), "{out}");
    assert!(out.contains("\nmanual items (not counted):\n"), "{out}");
    assert!(
        out.contains("e: \"CIS Debian Linux 12 Benchmark 1.5.4\""),
        "{out}"
    );
    assert!(
        out.ends_with("230 automated items: 1 covered, 1 not applicable (site choices), 1 partly, 227 not covered\n\
                       coverage: 0.9% (1.3% counting the partly covered); 19 manual items, 0 with rules\n"),
        "{out}"
    );
}

#[test]
fn without_a_file_the_built_in_baseline_is_measured() {
    let builtin = coverage_json(&["--framework", "cis-debian12-l1-server"]);
    let shipped = coverage_json(&[SHIPPED, "--framework", "cis-debian12-l1-server"]);
    assert_eq!(builtin["summary"], shipped["summary"]);
}

#[test]
fn a_bad_framework_or_baseline_is_a_usage_error() {
    let (code, _, err) =
        run(plumb().args(["baseline", "coverage", SHIPPED, "--framework", "cis-rhel9"]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("cis-debian12-l1-server") && err.contains("anssi-bp028-intermediary"),
        "{err}"
    );
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope.toml");
    let (code, out, err) = run(plumb()
        .args([
            "baseline",
            "coverage",
            "--framework",
            "cis-debian12-l1-server",
        ])
        .arg(&missing));
    assert_eq!(code, 2, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains(&missing.display().to_string()), "{err}");
    let broken = dir.path().join("broken.toml");
    std::fs::write(&broken, "schema = 1\nid = \n").unwrap();
    let (code, _, err) = run(plumb()
        .args([
            "baseline",
            "coverage",
            "--framework",
            "anssi-bp028-intermediary",
        ])
        .arg(Path::new(&broken)));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("broken.toml:2"), "{err}");
}
