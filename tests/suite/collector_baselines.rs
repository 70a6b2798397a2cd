//! `plumb-collector baseline publish`, `GET /v1/baseline` and `GET /v1/baselines[/{id}]`: the real
//! binary, bundles signed in the test, the mTLS client of common::http.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use crate::common::collector::*;
use plumb_core::bundle::{Bundle, SigningKey};
use std::path::{Path, PathBuf};

/// A signing key; its `.pub` is written to `dir/NAME.pub`.
fn key(dir: &Path, name: &str) -> (SigningKey, PathBuf) {
    let g = SigningKey::generate(name).unwrap();
    let pub_path = dir.join(format!("{name}.pub"));
    std::fs::write(&pub_path, g.public.to_text()).unwrap();
    (
        SigningKey::from_pem(&g.private_pem, name).unwrap(),
        pub_path,
    )
}

fn baseline(version: u64) -> String {
    format!(
        "schema = 1\nid = \"fleet\"\nversion = {version}\ntitle = \"fleet\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = {{ kind = \"file\", path = \"/etc/flag\", exists = true }}\n"
    )
}

fn bundle(dir: &Path, k: &SigningKey, version: u64, name: &str) -> PathBuf {
    let b = Bundle::sign(baseline(version).as_bytes(), "b.toml", k).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, b.to_bytes()).unwrap();
    p
}

fn publish(f: &Fleet, bundle: &Path, hosts: &str, pubs: &[&Path]) -> std::process::Output {
    let mut c = collector();
    c.args(["baseline", "publish"])
        .arg(bundle)
        .args(["--hosts", hosts, "--db"])
        .arg(f.db());
    for p in pubs {
        c.arg("--trusted-key").arg(p);
    }
    c.output().unwrap()
}

#[test]
fn publish_verifies_the_bundle_and_keeps_every_version() {
    let f = Fleet::new();
    let d = f.tmp.path();
    let (k, kp) = key(d, "team");
    let (other, _) = key(d, "other");
    let v1 = bundle(d, &k, 1, "v1.bundle");
    let out = publish(&f, &v1, "*", &[&kp]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("published fleet v1"));
    // Same bytes again: nothing to do, exit 0.
    assert_eq!(publish(&f, &v1, "*", &[&kp]).status.code(), Some(0));

    // One flipped byte in the baseline text: refused, exit 2, nothing stored.
    let mut bytes = std::fs::read(bundle(d, &k, 2, "v2.bundle")).unwrap();
    let last = bytes.len() - 2;
    bytes[last] ^= 0x01;
    let flipped = d.join("flipped.bundle");
    std::fs::write(&flipped, &bytes).unwrap();
    let out = publish(&f, &flipped, "*", &[&kp]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("refused"));

    // Signed by a key the collector does not trust.
    let foreign = bundle(d, &other, 3, "foreign.bundle");
    let out = publish(&f, &foreign, "*", &[&kp]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown key"),
        "{out:?}"
    );

    // Not a bundle at all.
    let toml = d.join("plain.toml");
    std::fs::write(&toml, baseline(4)).unwrap();
    assert_eq!(publish(&f, &toml, "*", &[&kp]).status.code(), Some(2));

    // The same id and version with other bytes (another signature).
    let other_v1 = {
        let b = Bundle::sign(format!("{}# changed\n", baseline(1)).as_bytes(), "b", &k).unwrap();
        let p = d.join("v1b.bundle");
        std::fs::write(&p, b.to_bytes()).unwrap();
        p
    };
    let out = publish(&f, &other_v1, "*", &[&kp]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("different bytes"),
        "{out:?}"
    );

    // A bad hosts pattern.
    assert_eq!(publish(&f, &v1, "web 1", &[&kp]).status.code(), Some(2));

    let v2 = bundle(d, &k, 2, "v2.bundle");
    assert_eq!(publish(&f, &v2, "web-*", &[&kp]).status.code(), Some(0));
    let out = collector()
        .args(["baseline", "list", "--format", "json", "--db"])
        .arg(f.db())
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows: Vec<(u64, String)> = v["baselines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["version"].as_u64().unwrap(),
                r["hosts"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(rows, [(2, "web-*".to_string()), (1, "*".to_string())]);
}

#[test]
fn publish_with_the_config_uses_its_trusted_keys() {
    let f = Fleet::new();
    let d = f.tmp.path();
    let (k, _) = key(d, "team");
    let (_, other_pub) = key(d, "other");
    let cfg = f.config("127.0.0.1:0", "", "");
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str("[baselines]\ntrusted_keys = [\"other.pub\"]\n");
    std::fs::write(&cfg, text).unwrap();
    let _ = other_pub;
    let v1 = bundle(d, &k, 1, "v1.bundle");
    let out = collector()
        .args(["baseline", "publish"])
        .arg(&v1)
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown key"));
}

fn get(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    s: &Collector,
    host: &str,
    inm: Option<&str>,
) -> HttpResponse {
    request(rt, f, s, host, "GET /v1/baseline", inm)
}

/// `method_path` ("GET /v1/baselines") as agent `host`.
fn request(
    rt: &tokio::runtime::Runtime,
    f: &Fleet,
    s: &Collector,
    host: &str,
    method_path: &str,
    inm: Option<&str>,
) -> HttpResponse {
    rt.block_on(async {
        let mut c = connect(f.client_config(Some(host)), s.addr).await.unwrap();
        let extra = inm
            .map(|e| format!("if-none-match: {e}\r\n"))
            .unwrap_or_default();
        c.write_raw(format!("{method_path} HTTP/1.1\r\nhost: collector\r\n{extra}\r\n").as_bytes())
            .await
            .unwrap();
        c.read_response().await.unwrap()
    })
}

#[test]
fn get_baseline_serves_the_newest_matching_bundle_with_etag_and_304() {
    let f = Fleet::new();
    let d = f.tmp.path();
    let (k, kp) = key(d, "team");
    let cfg = f.config("127.0.0.1:0", "", "");
    let s = Collector::start(&cfg);
    let rt = rt();
    // Nothing published: 404.
    assert_eq!(get(&rt, &f, &s, "web-1", None).status, 404);
    let v1 = bundle(d, &k, 1, "v1.bundle");
    let v2 = bundle(d, &k, 2, "v2.bundle");
    assert_eq!(publish(&f, &v1, "*", &[&kp]).status.code(), Some(0));
    assert_eq!(publish(&f, &v2, "db-*", &[&kp]).status.code(), Some(0));
    // web-1 gets v1 (v2 is for db-*), byte for byte.
    let r = get(&rt, &f, &s, "web-1", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&v1).unwrap());
    let etag = r.header("etag").unwrap().to_string();
    assert!(
        etag.starts_with("\"sha256:") && etag.ends_with('"'),
        "{etag}"
    );
    let r = get(&rt, &f, &s, "db-7", None);
    assert_eq!(r.body, std::fs::read(&v2).unwrap());
    assert_ne!(r.header("etag").unwrap(), etag);
    // If-None-Match with the current ETag: 304, no body.
    let r = get(&rt, &f, &s, "web-1", Some(&etag));
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    // A newer version for everyone replaces it.
    let v3 = bundle(d, &k, 3, "v3.bundle");
    assert_eq!(publish(&f, &v3, "*", &[&kp]).status.code(), Some(0));
    let r = get(&rt, &f, &s, "web-1", Some(&etag));
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&v3).unwrap());
}

/// Issue 13.5: a fleet-wide id with a higher version does not hide an id
/// published for a few hosts. `GET /v1/baselines` lists each id on its own
/// newest matching version, `GET /v1/baselines/{id}` serves it (ETag, 304),
/// and a host cannot fetch an id not published for it.
#[test]
fn every_baseline_id_that_applies_is_listed_and_served_on_its_own() {
    let f = Fleet::new();
    let d = f.tmp.path();
    let (k, kp) = key(d, "team");
    let s = Collector::start(&f.config("127.0.0.1:0", "", ""));
    let rt = rt();
    let list = |host: &str| -> Vec<(String, u64, String)> {
        let r = request(&rt, &f, &s, host, "GET /v1/baselines", None);
        assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
        r.json()["baselines"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| {
                (
                    b["id"].as_str().unwrap().to_string(),
                    b["version"].as_u64().unwrap(),
                    b["etag"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    assert!(list("host-b").is_empty());

    let secret = d.join("secret-b.bundle");
    let text = baseline(1).replace("id = \"fleet\"", "id = \"secret-b\"");
    std::fs::write(
        &secret,
        Bundle::sign(text.as_bytes(), "s.toml", &k)
            .unwrap()
            .to_bytes(),
    )
    .unwrap();
    let v5 = bundle(d, &k, 5, "v5.bundle");
    assert_eq!(
        publish(&f, &bundle(d, &k, 1, "v1.bundle"), "*", &[&kp])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        publish(&f, &secret, "host-b", &[&kp]).status.code(),
        Some(0)
    );
    assert_eq!(publish(&f, &v5, "*", &[&kp]).status.code(), Some(0));

    let b = list("host-b");
    let ids: Vec<(&str, u64)> = b.iter().map(|(i, v, _)| (i.as_str(), *v)).collect();
    assert_eq!(ids, [("fleet", 5), ("secret-b", 1)]);
    let a = list("host-a");
    assert_eq!(a.len(), 1);
    assert_eq!((a[0].0.as_str(), a[0].1), ("fleet", 5));

    let r = request(&rt, &f, &s, "host-b", "GET /v1/baselines/secret-b", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.body, std::fs::read(&secret).unwrap());
    assert_eq!(r.header("etag"), Some(b[1].2.as_str()));
    let r = request(
        &rt,
        &f,
        &s,
        "host-b",
        "GET /v1/baselines/secret-b",
        Some(&b[1].2),
    );
    assert_eq!(r.status, 304);
    assert!(r.body.is_empty());
    let r = request(&rt, &f, &s, "host-b", "GET /v1/baselines/fleet", None);
    assert_eq!(r.body, std::fs::read(&v5).unwrap());
    // Not published for host-a, and unknown: 404 alike.
    for (host, id) in [("host-a", "secret-b"), ("host-b", "nope")] {
        let r = request(&rt, &f, &s, host, &format!("GET /v1/baselines/{id}"), None);
        assert_eq!(r.status, 404, "{host} {id}");
    }
    // Older agents still get one bundle: the highest version across ids.
    assert_eq!(
        get(&rt, &f, &s, "host-b", None).body,
        std::fs::read(&v5).unwrap()
    );
    let r = request(&rt, &f, &s, "host-b", "DELETE /v1/baselines/fleet", None);
    assert_eq!(r.status, 405);
}
