//! End-to-end tests of signed baselines: `plumb keygen`, `plumb baseline
//! sign|verify` run as the real binary, and the agent's trust policy as the
//! daemon will call it, fed with bundles the binary produced.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common;

use common::{plumb, run};
use plumb_agent::trust::{Decision, TrustPolicy, load_trusted_keys};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

fn keygen(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = dir.join(name);
    let (code, out, err) = run(plumb()
        .args(["keygen", "-o"])
        .arg(&key)
        .args(["--comment", "security team"]));
    assert_eq!(code, 0, "{err}");
    (key, out.trim().to_string())
}

fn pubkey(key: &Path) -> PathBuf {
    let mut s = key.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

fn write_baseline(dir: &Path, id: &str, version: u64) -> PathBuf {
    let p = dir.join(format!("{id}-{version}.toml"));
    std::fs::write(
        &p,
        format!(
            "schema = 1\nid = \"{id}\"\nversion = {version}\ntitle = \"t\"\n\n{}",
            common::rule(
                "ssh.root",
                "{ kind = \"sshd\", key = \"PermitRootLogin\", one_of = [\"no\"] }"
            )
        ),
    )
    .unwrap();
    p
}

fn sign(key: &Path, baseline: &Path, out: &Path) -> (i32, String, String) {
    run(plumb()
        .args(["baseline", "sign", "--key"])
        .arg(key)
        .arg(baseline)
        .arg("-o")
        .arg(out))
}

fn signed(dir: &Path, key: &Path, id: &str, version: u64) -> PathBuf {
    let out = dir.join(format!(
        "{id}-{version}-{}.bundle",
        key.file_name().unwrap().to_string_lossy()
    ));
    let (code, _, err) = sign(key, &write_baseline(dir, id, version), &out);
    assert_eq!(code, 0, "{err}");
    out
}

fn verify(pubs: &[&Path], bundle: &Path) -> (i32, String, String) {
    let mut c = plumb();
    c.args(["baseline", "verify"]);
    for p in pubs {
        c.arg("--pubkey").arg(p);
    }
    run(c.arg(bundle))
}

#[test]
fn keygen_writes_private_key_0600_and_public_key() {
    let d = tempfile::tempdir().unwrap();
    let (key, id) = keygen(d.path(), "signing.key");
    assert_eq!(id.len(), 16, "stdout is the key id: {id:?}");
    let meta = std::fs::metadata(&key).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let pem = std::fs::read_to_string(&key).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"), "{pem}");
    assert!(pem.ends_with("-----END PRIVATE KEY-----\n"), "{pem}");
    let pubtext = std::fs::read_to_string(pubkey(&key)).unwrap();
    assert!(
        pubtext.starts_with(&format!("plumb-ed25519 {id} ")),
        "{pubtext}"
    );
    assert!(pubtext.ends_with(" security team\n"), "{pubtext}");
    // No temporary files left beside the key.
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 2);
}

#[test]
fn keygen_refuses_to_overwrite_without_force() {
    let d = tempfile::tempdir().unwrap();
    let (key, id) = keygen(d.path(), "k");
    let before = std::fs::read(&key).unwrap();
    let (code, _, err) = run(plumb().args(["keygen", "-o"]).arg(&key));
    assert_eq!(code, 2);
    assert!(
        err.contains("already exists") && err.contains("--force"),
        "{err}"
    );
    assert_eq!(std::fs::read(&key).unwrap(), before);
    // Only the .pub existing also blocks, so a key and its .pub never mismatch.
    let lone = d.path().join("lone");
    std::fs::write(pubkey(&lone), "x").unwrap();
    let (code, _, _) = run(plumb().args(["keygen", "-o"]).arg(&lone));
    assert_eq!(code, 2);
    assert!(!lone.exists());

    let (code, out, err) = run(plumb().args(["keygen", "--force", "-o"]).arg(&key));
    assert_eq!(code, 0, "{err}");
    assert_ne!(out.trim(), id);
    assert_ne!(std::fs::read(&key).unwrap(), before);
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

#[test]
fn sign_and_verify_round_trip() {
    let d = tempfile::tempdir().unwrap();
    let (key, id) = keygen(d.path(), "k");
    let baseline = write_baseline(d.path(), "issp-linux-server", 7);
    let out = d.path().join("b.bundle");
    let (code, stdout, err) = sign(&key, &baseline, &out);
    assert_eq!(code, 0, "{err}");
    assert!(stdout.contains(&id), "{stdout}");
    // The exact baseline bytes travel inside the bundle.
    let bundle = std::fs::read(&out).unwrap();
    assert!(bundle.ends_with(&std::fs::read(&baseline).unwrap()));
    let (code, stdout, err) = verify(&[&pubkey(&key)], &out);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stdout, format!("ok: issp-linux-server v7 signed by {id}\n"));
}

#[test]
fn sign_refuses_invalid_baseline_with_lint_messages() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = keygen(d.path(), "k");
    let bad = d.path().join("bad.toml");
    std::fs::write(
        &bad,
        "schema = 1\nid = \"x\"\nversion = 1\ntitel = \"typo\"\n",
    )
    .unwrap();
    let out = d.path().join("b.bundle");
    let (code, _, err) = sign(&key, &bad, &out);
    assert_eq!(code, 2);
    assert!(err.contains("bad.toml:4") && err.contains("titel"), "{err}");
    assert!(!out.exists());
}

#[test]
fn sign_refuses_a_key_others_can_read() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = keygen(d.path(), "k");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let (code, _, err) = sign(&key, &write_baseline(d.path(), "x", 1), &d.path().join("o"));
    assert_eq!(code, 2);
    assert!(err.contains("chmod 600"), "{err}");
    // Group access alone is refused too, naming the file and the mode.
    for mode in [0o640, 0o604, 0o660] {
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(mode)).unwrap();
        let (code, _, err) = sign(&key, &write_baseline(d.path(), "x", 1), &d.path().join("o"));
        assert_eq!(code, 2);
        assert!(
            err.contains(&format!(
                "{}: mode {mode:04o} gives group/other access to a private key",
                key.display()
            )),
            "{err}"
        );
        assert!(!d.path().join("o").exists());
    }
}

/// Flips one byte in the region starting at `needle` and verifies.
fn flipped(bundle: &Path, needle: &str, offset: usize, pubkey: &Path) -> (i32, String) {
    let mut bytes = std::fs::read(bundle).unwrap();
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let at = text.find(needle).unwrap() + needle.len() + offset;
    bytes[at] ^= 0x01;
    let p = bundle.with_extension("tampered");
    std::fs::write(&p, &bytes).unwrap();
    let (code, _, err) = verify(&[pubkey], &p);
    (code, err)
}

#[test]
fn one_flipped_byte_in_any_region_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = keygen(d.path(), "k");
    let b = signed(d.path(), &key, "issp", 17);
    let pk = pubkey(&key);
    // header value: version 17 -> 07 is non-canonical, 17 -> 16 breaks the signature
    let (code, err) = flipped(&b, "version: ", 1, &pk);
    assert_eq!(code, 2);
    assert!(err.contains("bad signature"), "{err}");
    let (code, err) = flipped(&b, "id: ", 0, &pk);
    assert_eq!(code, 2);
    assert!(err.contains("bad signature"), "{err}");
    // signature: swap one base64 digit for another, so the text still
    // decodes and only the signature check can catch it
    let mut bytes = std::fs::read(&b).unwrap();
    let at =
        String::from_utf8_lossy(&bytes).find("signature: ").unwrap() + "signature: ".len() + 10;
    bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
    let p = b.with_extension("sigswap");
    std::fs::write(&p, &bytes).unwrap();
    let (code, _, err) = verify(&[pk.as_path()], &p);
    assert_eq!(code, 2);
    assert!(err.contains("bad signature"), "{err}");
    // payload
    let (code, err) = flipped(&b, "PermitRootLogin", 0, &pk);
    assert_eq!(code, 2);
    assert!(err.contains("bad signature"), "{err}");
}

#[test]
fn header_id_or_version_altered_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = keygen(d.path(), "k");
    let b = signed(d.path(), &key, "issp", 7);
    let text = std::fs::read_to_string(&b).unwrap();
    for (from, to) in [
        ("version: 7\n", "version: 8\n"),
        ("id: issp\n", "id: other\n"),
    ] {
        let p = d.path().join("altered.bundle");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
        let (code, _, err) = verify(&[&pubkey(&key)], &p);
        assert_eq!(code, 2, "{to}");
        assert!(err.contains("refused: bad signature"), "{err}");
    }
}

#[test]
fn bundle_from_an_unknown_key_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let (trusted, trusted_id) = keygen(d.path(), "trusted");
    let (rogue, rogue_id) = keygen(d.path(), "rogue");
    let b = signed(d.path(), &rogue, "issp", 99);
    let (code, _, err) = verify(&[&pubkey(&trusted)], &b);
    assert_eq!(code, 2);
    assert!(
        err.contains(&format!(
            "signed by unknown key {rogue_id} (trusted: {trusted_id})"
        )),
        "{err}"
    );
}

#[test]
fn truncated_and_garbage_bundles_get_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let (key, _) = keygen(d.path(), "k");
    let b = signed(d.path(), &key, "issp", 1);
    let bytes = std::fs::read(&b).unwrap();
    let pk = pubkey(&key);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (Vec::new(), "truncated"),
        (bytes[..30].to_vec(), "truncated"),
        (bytes[..bytes.len() - 5].to_vec(), "only"),
        ([bytes.as_slice(), b"\n#evil"].concat(), "trailing data"),
        (
            b"\x7fELF\x02\x01\x01\0\0\0garbage\xff\xfe".to_vec(),
            "not a baseline bundle",
        ),
        (
            String::from_utf8(bytes.clone())
                .unwrap()
                .replacen("signature: ", "signature: @", 1)
                .into_bytes(),
            "not valid base64",
        ),
    ];
    for (i, (content, want)) in cases.into_iter().enumerate() {
        let p = d.path().join(format!("bad{i}.bundle"));
        std::fs::write(&p, content).unwrap();
        let (code, _, err) = verify(&[&pk], &p);
        assert_eq!(code, 2, "case {i}: {err}");
        assert!(err.contains(want), "case {i}: want {want:?} in {err:?}");
        assert!(!err.contains("panicked"), "{err}");
    }
    let (code, _, err) = verify(&[&pk], &d.path().join("missing.bundle"));
    assert_eq!(code, 2);
    assert!(err.contains("missing.bundle: cannot read bundle"), "{err}");
}

#[test]
fn trust_policy_applies_newer_and_refuses_equal_and_older_across_restarts() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let (key, id) = keygen(d.path(), "k");
    let keys = load_trusted_keys(&[pubkey(&key)]).unwrap();
    let bundle = |v| std::fs::read(signed(d.path(), &key, "issp", v)).unwrap();

    let policy = TrustPolicy::new(keys.clone(), &state).unwrap();
    match policy.consider(&bundle(7)).unwrap() {
        Decision::Applied {
            id: bid,
            version,
            key_id,
            ..
        } => assert_eq!(
            (bid.as_str(), version, key_id.as_str()),
            ("issp", 7, id.as_str())
        ),
        other => panic!("{other:?}"),
    }
    for v in [6, 7] {
        let d = policy.consider(&bundle(v)).unwrap();
        assert_eq!(
            d.event_message(),
            format!("baseline_refused: version {v} is not newer than applied version 7")
        );
    }
    drop(policy);
    // A restarted agent still refuses the rollback and applies a newer one.
    let policy = TrustPolicy::new(keys, &state).unwrap();
    assert!(matches!(
        policy.consider(&bundle(6)).unwrap(),
        Decision::Refused { .. }
    ));
    assert!(matches!(
        policy.consider(&bundle(8)).unwrap(),
        Decision::Applied { version: 8, .. }
    ));
    let running = policy.load_applied("issp").unwrap().unwrap();
    assert_eq!(running.baseline.version, 8);
    assert_eq!(running.baseline.rules[0].id, "ssh.root");
}

#[test]
fn key_rotation_both_keys_then_old_key_removed() {
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state");
    let (old, _) = keygen(d.path(), "old");
    let (new, _) = keygen(d.path(), "new");
    let read = |p: PathBuf| std::fs::read(p).unwrap();

    // CLI: verify accepts either key when both are trusted.
    for k in [&old, &new] {
        let (code, _, err) = verify(
            &[&pubkey(&old), &pubkey(&new)],
            &signed(d.path(), k, "issp", 1),
        );
        assert_eq!(code, 0, "{err}");
    }

    let both = load_trusted_keys(&[pubkey(&old), pubkey(&new)]).unwrap();
    let policy = TrustPolicy::new(both, &state).unwrap();
    assert!(matches!(
        policy
            .consider(&read(signed(d.path(), &old, "issp", 1)))
            .unwrap(),
        Decision::Applied { version: 1, .. }
    ));
    assert!(matches!(
        policy
            .consider(&read(signed(d.path(), &new, "issp", 2)))
            .unwrap(),
        Decision::Applied { version: 2, .. }
    ));

    // The old key is retired from the agent's config.
    let only_new = load_trusted_keys(&[pubkey(&new)]).unwrap();
    let policy = TrustPolicy::new(only_new, &state).unwrap();
    let d3 = policy
        .consider(&read(signed(d.path(), &old, "issp", 3)))
        .unwrap();
    assert!(d3.event_message().contains("unknown key"), "{d3:?}");
    assert!(matches!(
        policy
            .consider(&read(signed(d.path(), &new, "issp", 4)))
            .unwrap(),
        Decision::Applied { version: 4, .. }
    ));
    let (code, _, err) = verify(&[&pubkey(&new)], &signed(d.path(), &old, "issp", 5));
    assert_eq!(code, 2);
    assert!(err.contains("unknown key"), "{err}");
}
