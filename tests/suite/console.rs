//! The ops console (docs/console.md) end to end: the real collector with a
//! `[console]` listener, operator certificates issued by its own `pki`,
//! events posted through real agent certificates. Who may look (and every
//! refusal), the API and the remote CLI against the local commands byte for
//! byte, and pages and exports fed hostile agent data.

use crate::common::collector::{Collector, Fleet, HttpResponse, connect, one_request, rt};
use plumb_collector::pki::{self, Role};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A collector with a console listener, and the console's address (its
/// `console on ADDR` log line).
fn start(f: &Fleet, console_extra: &str) -> (Collector, SocketAddr) {
    start_with(&f.config("127.0.0.1:0", "", ""), console_extra)
}

/// A collector of config `cfg` with its console on loopback.
fn start_with(cfg: &Path, console_extra: &str) -> (Collector, SocketAddr) {
    let cfg = cfg.to_path_buf();
    let mut text = std::fs::read_to_string(&cfg).unwrap();
    text.push_str(&format!(
        "\n[console]\nlisten = \"127.0.0.1:0\"\n{console_extra}\n"
    ));
    std::fs::write(&cfg, text).unwrap();
    let c = Collector::start(&cfg);
    let start = Instant::now();
    loop {
        let log = c.log();
        if let Some(a) = log
            .lines()
            .find_map(|l| l.split("console on ").nth(1))
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        {
            return (c, a);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "no console address in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Operator `name`'s certificate and key, issued by the fleet CA.
fn operator(f: &Fleet, name: &str) -> (PathBuf, PathBuf) {
    let i = pki::issue(&f.pki, Role::Operator, name, 30).unwrap();
    (i.cert, i.key)
}

fn client(f: &Fleet, id: Option<(&Path, &Path)>) -> Arc<rustls::ClientConfig> {
    plumb_collector::tls::client_config(&f.pki.ca(), id).unwrap()
}

/// One request with extra header lines; Err when the TLS session is refused.
fn request(
    cfg: Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &str,
) -> std::io::Result<HttpResponse> {
    rt().block_on(async {
        let mut c = connect(cfg, addr).await?;
        c.write_raw(
            format!(
                "{method} {path} HTTP/1.1\r\nhost: localhost\r\ncontent-length: 0\r\n{headers}\r\n"
            )
            .as_bytes(),
        )
        .await?;
        c.read_response().await
    })
}

fn body(r: &HttpResponse) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn now_rfc3339(back_secs: i64) -> String {
    let t = time::OffsetDateTime::now_utc() - time::Duration::seconds(back_secs);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Posts `events` as agent `host` through its own certificate.
fn post(f: &Fleet, addr: SocketAddr, host: &str, events: Vec<Value>) {
    let batch = serde_json::to_vec(&json!({"schema": 1, "host": host, "events": events})).unwrap();
    let r = rt()
        .block_on(one_request(
            f.client_config(Some(host)),
            addr,
            "POST",
            "/v1/events",
            &batch,
        ))
        .unwrap();
    assert_eq!(r.status, 200, "{}", body(&r));
}

#[test]
fn only_operators_look_only_agents_post_and_the_proxy_alone_names_users() {
    let f = Fleet::new();
    let (alice_cert, alice_key) = operator(&f, "alice");
    let (proxy_cert, proxy_key) = operator(&f, "sso-proxy");
    let (c, console) = start(
        &f,
        "proxy_identity = \"sso-proxy\"\nproxy_user_header = \"X-Remote-User\"",
    );
    let alice = client(&f, Some((&alice_cert, &alice_key)));

    // An operator reads the fleet page, with the security headers.
    let r = request(alice.clone(), console, "GET", "/fleet", "").unwrap();
    assert_eq!(r.status, 200, "{}", body(&r));
    assert!(body(&r).contains("signed in as alice"), "{}", body(&r));
    let csp = r.header("content-security-policy").unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(r.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert!(r.header("server-timing").unwrap().starts_with("app;dur="));

    // A user header from an operator who is not the proxy is ignored.
    let r = request(
        alice.clone(),
        console,
        "GET",
        "/fleet",
        "X-Remote-User: mallory\r\n",
    )
    .unwrap();
    assert!(body(&r).contains("signed in as alice<"), "{}", body(&r));
    assert!(!body(&r).contains("mallory"));

    // The proxy names the user; without a user it is refused.
    let proxy = client(&f, Some((&proxy_cert, &proxy_key)));
    let r = request(
        proxy.clone(),
        console,
        "GET",
        "/fleet",
        "X-Remote-User: bob\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        body(&r).contains("signed in as bob (via sso-proxy)"),
        "{}",
        body(&r)
    );
    let r = request(proxy, console, "GET", "/fleet", "").unwrap();
    assert_eq!(r.status, 403, "{}", body(&r));

    // Read-only: anything but GET and HEAD is 405.
    for m in ["POST", "PUT", "DELETE"] {
        let r = request(alice.clone(), console, m, "/api/v1/hosts", "").unwrap();
        assert_eq!(r.status, 405, "{m}");
        assert_eq!(r.header("allow"), Some("GET, HEAD"));
    }

    // An agent certificate cannot open the console, even with the header.
    let agent = f.client_config(Some("web-1"));
    let r = request(
        agent.clone(),
        console,
        "GET",
        "/fleet",
        "X-Remote-User: bob\r\n",
    )
    .unwrap();
    assert_eq!(r.status, 403, "{}", body(&r));
    let r = request(agent, console, "GET", "/api/v1/hosts", "").unwrap();
    assert_eq!(r.status, 403);
    assert!(r.json()["error"].as_str().unwrap().contains("operator"));
    // No certificate: no session at all.
    assert!(request(client(&f, None), console, "GET", "/fleet", "").is_err());

    // An operator certificate can neither post events nor fetch baselines.
    let batch = crate::common::collector::batch("alice", [1]);
    let r = rt()
        .block_on(one_request(
            alice.clone(),
            c.addr,
            "POST",
            "/v1/events",
            &batch,
        ))
        .unwrap();
    assert_eq!(r.status, 403, "{}", body(&r));
    for path in ["/v1/baselines", "/v1/baseline"] {
        let r = request(alice.clone(), c.addr, "GET", path, "").unwrap();
        assert_eq!(r.status, 403, "{path}");
    }
    assert!(crate::common::collector::stored_seqs(&f.db(), "alice").is_empty());

    // Revoked (CRL, SIGHUP): the operator is refused.
    pki::revoke(&f.pki, &alice_cert).unwrap();
    c.signal("HUP");
    let start = Instant::now();
    loop {
        match request(alice.clone(), console, "GET", "/fleet", "") {
            Err(_) => break,
            Ok(_) if start.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(r) => panic!("a revoked operator still reads the console: {}", r.status),
        }
    }
}

#[test]
fn operator_certificates_come_with_a_browser_bundle_and_are_refused_as_agents() {
    let f = Fleet::new();
    let pw = f.path("p12.pw");
    std::fs::write(&pw, "correct horse\n").unwrap();
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = crate::common::collector::collector()
        .args(["pki", "issue", "--operator", "carol", "--dir"])
        .arg(&*f.pki)
        .arg("--p12-password-file")
        .arg(&pw)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p12 = f.pki.join("operators/carol.p12");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains(&p12.display().to_string()), "{stdout}");
    let meta = std::fs::metadata(&p12).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    // A DER SEQUENCE (PFX), and not the key in clear.
    let bytes = std::fs::read(&p12).unwrap();
    assert_eq!(bytes[0], 0x30);
    let key = std::fs::read_to_string(f.pki.join("operators/carol.key")).unwrap();
    assert!(!String::from_utf8_lossy(&bytes).contains("PRIVATE KEY"));
    assert!(key.contains("PRIVATE KEY"));
    // The role mark is in the certificate: the collector's own parser sees it.
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(f.pki.join("operators/carol.pem")).unwrap()
    };
    let peer = plumb_collector::tls::peer_of(&der).unwrap();
    assert!(peer.operator);
    assert_eq!(peer.identity, "carol");
    let (agent_cert, _) = f.agent("web-1");
    let der = {
        use rustls_pki_types::pem::PemObject;
        rustls_pki_types::CertificateDer::from_pem_file(agent_cert).unwrap()
    };
    assert!(!plumb_collector::tls::peer_of(&der).unwrap().operator);
    // Two roles at once are refused.
    let out = crate::common::collector::collector()
        .args([
            "pki",
            "issue",
            "--operator",
            "dave",
            "--agent",
            "dave",
            "--dir",
        ])
        .arg(&*f.pki)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

/// A rule id, title, evidence, path and facts an attacker controlling an
/// agent would send.
const RULE: &str = "<script>window.pwned=1</script>\"'";
const TITLE: &str = "@SUM(A1) <i>t</i>";

fn hostile_events() -> Vec<Value> {
    let t = now_rfc3339(60);
    vec![
        json!({"seq": 1, "time": t, "severity": "info", "kind": "snapshot",
        "agent_version": "0.1.0", "baseline": {"id": "base", "version": 3},
        "facts": {"hostname": "<script>window.pwnedFacts=1</script>", "os": "Debian \"12\" <b>",
                  "kernel": "6.1\u{1b}[31m", "uptime_s": 5, "cpus": 2, "memory_bytes": 1024},
        "fim_digest": "abcd",
        "summary": {"pass": 1, "fail": 1, "error": 0, "skipped": 0, "score": 50.0},
        "rules": [
            {"id": RULE, "status": "fail", "severity": "high", "domains": [13], "title": TITLE},
            {"id": "ssh.ok", "status": "pass", "severity": "low", "domains": [13], "title": "fine"}
        ]}),
        json!({"seq": 2, "time": t, "severity": "high", "kind": "check_changed",
            "rule": RULE, "title": TITLE, "previous": "pass", "status": "fail",
            "domains": [13], "criteria": [],
            "evidence": ["=cmd|' /C calc'!A0", "javascript:alert(1)",
                         "\"'><img src=x onerror=alert(1)>", "line\u{1b}[31mred\nforged"],
            "baseline": {"id": "base", "version": 3}}),
        json!({"seq": 3, "time": t, "severity": "medium", "kind": "fim_change",
            "path": "/etc/<script>x</script>\u{7}", "change": "modified", "fields": ["sha256"],
            "old": {"sha256": "=cmd|' /C calc'!A0"}, "new": {"sha256": "javascript:alert(1)"},
            "domains": [20]}),
        json!({"seq": 4, "time": t, "severity": "info", "kind": "remediation",
            "rollback_id": "rb-<7>", "rule": RULE, "action": "set", "result": "fixed",
            "changes": ["<b>x</b>"]}),
    ]
}

#[test]
fn pages_and_exports_escape_hostile_agent_data() {
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let (c, console) = start(&f, "");
    post(&f, c.addr, "evil-1", hostile_events());
    let op = client(&f, Some((&cert, &key)));
    let get = |path: &str| {
        let r = request(op.clone(), console, "GET", path, "").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", body(&r));
        r
    };

    let page = body(&get("/hosts/evil-1"));
    // Only the console's own script; the agent's markup is text.
    assert_eq!(page.matches("<script").count(), 1, "{page}");
    assert!(page.contains("<script src=\"/assets/console.js\" defer></script>"));
    assert!(
        !page.contains("<img") && !page.contains("<b>") && !page.contains("<i>"),
        "{page}"
    );
    assert!(
        !page.to_ascii_lowercase().contains("href=\"javascript:"),
        "{page}"
    );
    assert!(
        page.contains(
            "<a href=\"/rules/%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E%22%27\">\
         &lt;script&gt;window.pwned=1&lt;/script&gt;&quot;&#39;</a>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<li>&quot;&#39;&gt;&lt;img src=x onerror=alert(1)&gt;</li>"),
        "{page}"
    );
    assert!(
        page.contains("<li>line\\x1b[31mred\\nforged</li>"),
        "{page}"
    );
    assert!(page.contains("<li>javascript:alert(1)</li>"), "{page}");
    assert!(
        page.contains("&lt;script&gt;window.pwnedFacts=1&lt;/script&gt;"),
        "{page}"
    );
    assert!(page.contains("Debian &quot;12&quot; &lt;b&gt;"), "{page}");
    assert!(
        page.contains("/etc/&lt;script&gt;x&lt;/script&gt;\\x07 modified"),
        "{page}"
    );
    assert!(page.contains("<code>rb-&lt;7&gt;</code>"), "{page}");
    assert!(page.contains("<li>&lt;b&gt;x&lt;/b&gt;</li>"), "{page}");
    // Passing rules are listed too, grouped under their domain.
    assert!(
        page.contains("<a href=\"/rules/ssh.ok\">ssh.ok</a></td><td>pass</td>"),
        "{page}"
    );

    // CSV: no cell a spreadsheet takes for a formula; quotes doubled.
    let csv = body(&get("/hosts/evil-1?format=csv"));
    assert!(
        csv.starts_with("\"rule\",\"status\",\"severity\",\"domains\",\"title\",\"evidence\"\r\n"),
        "{csv}"
    );
    assert!(csv.contains(
        "\"<script>window.pwned=1</script>\"\"'\",\"fail\",\"high\",\"13\",\"'@SUM(A1) <i>t</i>\",\
         \"'=cmd|' /C calc'!A0\njavascript:alert(1)\n\"\"'><img src=x onerror=alert(1)>\n\
         line\u{1b}[31mred\nforged\"\r\n"
    ), "{csv:?}");
    let r = get("/hosts/evil-1?format=csv");
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    assert!(
        r.header("content-disposition")
            .unwrap()
            .starts_with("attachment")
    );

    // JSON exports carry the strings as they were sent.
    let j = get("/hosts/evil-1?format=json").json();
    assert_eq!(j["rules"][0]["rule"], RULE, "{j}");
    assert_eq!(j["rules"][0]["evidence"][0], "=cmd|' /C calc'!A0");

    // Every other page escapes as well, and links hosts and rules.
    for path in [
        "/fleet",
        "/drift",
        "/compliance",
        "/baselines",
        "/rules/%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E%22%27",
    ] {
        let p = body(&get(path));
        assert_eq!(p.matches("<script").count(), 1, "{path}: {p}");
        assert!(!p.contains("<img") && !p.contains("<i>"), "{path}: {p}");
    }
    let drift = body(&get("/drift?host=evil-*&kind=check_changed"));
    assert!(
        drift.contains("<a href=\"/hosts/evil-1\">evil-1</a>"),
        "{drift}"
    );
    assert!(!drift.contains("fim_change</td>"), "{drift}");
    let rule = body(&get(
        "/rules/%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E%22%27",
    ));
    assert!(rule.contains("failing on 1 hosts"), "{rule}");
    assert!(
        rule.contains("<li>=cmd|&#39; /C calc&#39;!A0</li>"),
        "{rule}"
    );
    let drift_csv = body(&get("/drift?format=csv"));
    assert!(
        drift_csv.contains("\"sha256: =cmd|' /C calc'!A0 → javascript:alert(1)\""),
        "{drift_csv}"
    );
    let fleet = get("/fleet?format=json").json();
    assert_eq!(fleet["hosts"][0]["host"], "evil-1", "{fleet}");
    let filtered = body(&get("/fleet?q=web-*"));
    assert!(!filtered.contains("evil-1"), "{filtered}");
    // The assets, under the same headers.
    let css = get("/assets/console.css");
    assert!(css.header("content-type").unwrap().starts_with("text/css"));
    assert!(body(&css).contains("@media print"));
    assert!(body(&get("/assets/console.js")).contains("data-autosubmit"));
    let r = request(op, console, "GET", "/hosts/nobody", "").unwrap();
    assert_eq!(r.status, 404);
}

fn run(args: &[&str], extra: &[&std::ffi::OsStr]) -> Output {
    crate::common::collector::collector()
        .args(args)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn the_remote_cli_prints_what_the_local_commands_print() {
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let (c, console) = start(&f, "");
    post(&f, c.addr, "evil-1", hostile_events());
    post(
        &f,
        c.addr,
        "web-2",
        vec![crate::common::collector::fim_event(1)],
    );
    let url = format!("https://localhost:{}", console.port());
    let db = f.db();
    let local = |args: &[&str]| run(args, &["--db".as_ref(), db.as_os_str()]);
    let remote = |args: &[&str]| {
        run(
            args,
            &[
                "--url".as_ref(),
                url.as_ref(),
                "--cert".as_ref(),
                cert.as_os_str(),
                "--key".as_ref(),
                key.as_os_str(),
            ],
        )
    };
    for args in [
        &["drift", "--format", "json"][..],
        &["drift", "--format", "text"],
        &[
            "drift",
            "--host",
            "EVIL-1",
            "--severity",
            "high",
            "--since",
            "1h",
            "--format",
            "json",
        ],
        &["drift", "--host", "nobody", "--format", "json"],
        &["report", "--format", "json"],
        &["report", "--format", "text"],
        &["baseline", "list", "--format", "json"],
    ] {
        let (l, r) = (local(args), remote(args));
        assert!(!l.stdout.is_empty(), "{args:?}");
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&l.stdout),
            "{args:?}: {}",
            String::from_utf8_lossy(&r.stderr)
        );
        assert_eq!(r.status.code(), l.status.code(), "{args:?}");
    }
    // `hosts` says when it was generated: compare within one second.
    let mut same = false;
    for _ in 0..10 {
        let a = local(&["hosts", "--format", "json", "--stale-after", "1h"]);
        let r = remote(&["hosts", "--format", "json", "--stale-after", "1h"]);
        let b = local(&["hosts", "--format", "json", "--stale-after", "1h"]);
        if a.stdout == b.stdout {
            assert_eq!(
                String::from_utf8_lossy(&r.stdout),
                String::from_utf8_lossy(&a.stdout)
            );
            same = true;
            break;
        }
    }
    assert!(same, "the local output kept changing");
    // The API answers the same JSON directly.
    let op = client(&f, Some((&cert, &key)));
    let r = request(op, console, "GET", "/api/v1/report", "").unwrap();
    assert_eq!(r.header("plumb-failing"), Some("true"));
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        String::from_utf8_lossy(&local(&["report", "--format", "json"]).stdout)
    );
    // An agent certificate is refused remotely, with the console's reason.
    let (acert, akey) = f.agent("web-2");
    let out = run(
        &["report"],
        &[
            "--url".as_ref(),
            url.as_ref(),
            "--cert".as_ref(),
            acert.as_os_str(),
            "--key".as_ref(),
            akey.as_os_str(),
            "--ca".as_ref(),
            f.pki.ca().as_os_str(),
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The console in Debian's Chromium (tests/browser/console.test.mjs): fed
/// by a real agent and by hostile events, browsed with the operator's
/// certificate. Screenshots land in target/console-screenshots/.
#[test]
#[ignore = "needs chromium and node_modules (npm ci in tests/browser)"]
fn the_console_in_a_real_browser() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let browser = repo.join("tests/browser");
    assert!(
        browser.join("node_modules/playwright-core").is_dir()
            && Path::new("/usr/bin/chromium").exists(),
        "needs /usr/bin/chromium and `npm ci --prefix tests/browser`"
    );
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let (c, console) = start(&f, "");
    post(&f, c.addr, "evil-1", hostile_events());

    // A real agent reports to the collector.
    f.agent("web-real");
    let d = f.tmp.path();
    let root = d.join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::create_dir_all(d.join("proc")).unwrap();
    std::fs::write(root.join("etc/flag"), "1").unwrap();
    std::fs::write(
        d.join("baseline.toml"),
        "schema = 1\nid = \"t\"\nversion = 1\ntitle = \"t\"\n\
         [[rule]]\nid = \"flag\"\ntitle = \"flag exists\"\nseverity = \"high\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = { kind = \"file\", path = \"/etc/flag\", exists = true }\n\
         [[rule]]\nid = \"noflag\"\ntitle = \"no other flag\"\nseverity = \"medium\"\ndomains = [20]\ncriteria = [\"I\"]\n\
         check = { kind = \"file\", path = \"/etc/flag\", exists = false }\n",
    )
    .unwrap();
    let cfg = d.join("agent.toml");
    std::fs::write(
        &cfg,
        format!(
            "host_id = \"web-real\"\nroot = \"{root}\"\nproc = \"{d}/proc\"\nstate_dir = \"{d}/state\"\n\
             baselines = [\"{d}/baseline.toml\"]\nevents_file = \"{d}/events.jsonl\"\n\
             [intervals]\nchecks = \"1s\"\n\
             [collector]\nurl = \"https://localhost:{port}\"\nca = \"{d}/pki/ca.pem\"\n\
             cert = \"{d}/pki/agents/web-real.pem\"\nkey = \"{d}/pki/agents/web-real.key\"\nmax_backoff = \"2s\"\n",
            root = root.display(),
            d = d.display(),
            port = c.addr.port(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let _agent = crate::common::Agent(
        std::process::Command::new(env!("CARGO_BIN_EXE_plumb"))
            .args(["agent", "--config"])
            .arg(&cfg)
            .env("PLUMB_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(d.join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );
    let start = Instant::now();
    while crate::common::collector::stored_seqs(&f.db(), "web-real").len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the agent reported nothing; its log:\n{}",
            std::fs::read_to_string(d.join("agent.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    let shots = repo.join("target/console-screenshots");
    let out = std::process::Command::new("node")
        .arg(browser.join("console.test.mjs"))
        .env(
            "CONSOLE_URL",
            format!("https://localhost:{}", console.port()),
        )
        .env("OPERATOR_CERT", &cert)
        .env("OPERATOR_KEY", &key)
        .env("SCREENSHOTS", &shots)
        .env("USER_DATA_DIR", d.join("chromium-profile"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "browser test failed:\n{}\n{}\ncollector log:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        c.log()
    );
    assert!(shots.join("fleet.png").exists());
}

/// What a hostile agent's refusal and a second snapshot add: a standing
/// refusal on the baselines page, and today's score in the chart.
fn refusal_events() -> Vec<Value> {
    let t = now_rfc3339(30);
    vec![
        json!({"seq": 5, "time": t, "severity": "high", "kind": "agent",
        "what": "baseline_refused", "message": "<script>window.pwned=2</script> signed by an unknown key",
        "agent_version": "0.1.0"}),
    ]
}

fn check_history_and_refusals(op: &Arc<rustls::ClientConfig>, console: SocketAddr) {
    let get = |path: &str| {
        let r = request(op.clone(), console, "GET", path, "").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", body(&r));
        body(&r)
    };
    let page = get("/compliance");
    assert!(
        page.contains("<svg class=\"chart\" id=\"score-history\""),
        "{page}"
    );
    // One day with snapshots: one dot, its mean score (50.0) in its title.
    assert_eq!(page.matches("<circle class=\"dot\"").count(), 1, "{page}");
    assert!(page.contains(": 50.0 (1 snapshots)</title>"), "{page}");
    let page = get("/baselines");
    assert!(
        page.contains(
            "<td>&lt;script&gt;window.pwned=2&lt;/script&gt; signed by an unknown key</td>"
        ),
        "{page}"
    );
    assert!(
        page.contains("<a href=\"/hosts/evil-1\">evil-1</a>"),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");
}

#[test]
fn the_compliance_chart_and_refused_bundles() {
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let (c, console) = start(&f, "");
    post(&f, c.addr, "evil-1", hostile_events());
    post(&f, c.addr, "evil-1", refusal_events());
    let op = client(&f, Some((&cert, &key)));
    check_history_and_refusals(&op, console);
    check_refusals_export(&op, console);
    // Applying a bundle ends the refusal.
    post(
        &f,
        c.addr,
        "evil-1",
        vec![
            json!({"seq": 6, "time": now_rfc3339(20), "severity": "info", "kind": "agent",
            "what": "baseline_applied", "message": "base v4", "agent_version": "0.1.0",
            "baseline": {"id": "base", "version": 4}}),
        ],
    );
    let r = request(op.clone(), console, "GET", "/baselines", "").unwrap();
    assert!(
        body(&r).contains("No host stands on a refusal."),
        "{}",
        body(&r)
    );
    // A reason that is a spreadsheet formula stays text in the CSV.
    post(
        &f,
        c.addr,
        "evil-2",
        vec![
            json!({"seq": 1, "time": now_rfc3339(10), "severity": "high", "kind": "agent",
            "what": "baseline_refused", "message": "=cmd|' /C calc'!A0", "agent_version": "0.1.0"}),
        ],
    );
    let csv = body(
        &request(
            op.clone(),
            console,
            "GET",
            "/baselines?list=refusals&format=csv",
            "",
        )
        .unwrap(),
    );
    assert!(csv.contains(",\"'=cmd|' /C calc'!A0\"\r\n"), "{csv}");
}

/// The same pages and exports from a collector on PostgreSQL as from one on
/// SQLite, fed the same events.
/// Two rules failing on one host (set by their changes, no snapshot), one's
/// id beginning the other's, one changed twice: the rule pages' evidence
/// is each rule's newest.
fn flip_events() -> Vec<Value> {
    let t = now_rfc3339(60);
    let change = |seq: u64, rule: &str, evidence: &str| {
        json!({"seq": seq, "time": t, "severity": "high", "kind": "check_changed",
            "rule": rule, "title": rule, "previous": "pass", "status": "fail",
            "domains": [13], "criteria": [], "evidence": [evidence],
            "baseline": {"id": "base", "version": 3}})
    };
    vec![
        change(1, "flip.rule", "older"),
        change(2, "flip.rule", "newest"),
        change(3, "flip.rule.x", "other rule"),
    ]
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn the_console_answers_the_same_on_postgresql() {
    let pg = crate::common::postgres::Postgres::start();
    pg.database("plumb");
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let op = client(&f, Some((&cert, &key)));
    let (lite, lite_console) = start(&f, "");
    let pg_cfg = f.config_named("pg.toml", "127.0.0.1:0", "", &pg.storage_toml("plumb"));
    let mut text = std::fs::read_to_string(&pg_cfg).unwrap();
    text.push_str("\n[console]\nlisten = \"127.0.0.1:0\"\n");
    std::fs::write(&pg_cfg, text).unwrap();
    let pgc = Collector::start(&pg_cfg);
    let start = Instant::now();
    let pg_console = loop {
        if let Some(a) = pgc
            .log()
            .lines()
            .find_map(|l| l.split("console on ").nth(1))
            .and_then(|a| a.trim().parse::<SocketAddr>().ok())
        {
            break a;
        }
        assert!(start.elapsed() < Duration::from_secs(20), "{}", pgc.log());
        std::thread::sleep(Duration::from_millis(50));
    };
    // Built once: both stores get the same times.
    let (hostile, refusals, flips) = (hostile_events(), refusal_events(), flip_events());
    for addr in [lite.addr, pgc.addr] {
        post(&f, addr, "evil-1", hostile.clone());
        post(&f, addr, "evil-1", refusals.clone());
        post(
            &f,
            addr,
            "web-2",
            vec![crate::common::collector::fim_event(1)],
        );
        post(&f, addr, "flip-1", flips.clone());
    }
    for path in [
        "/rules/flip.rule?format=json",
        "/rules/flip.rule.x?format=json",
        "/hosts/evil-1?format=csv",
        "/hosts/evil-1?format=json",
        "/drift?format=csv",
        "/drift?host=evil-*&kind=fim_change&format=csv",
        "/compliance?format=json",
        "/rules/%3Cscript%3Ewindow.pwned%3D1%3C%2Fscript%3E%22%27?format=csv",
        "/baselines?format=csv",
        "/api/v1/report",
    ] {
        let a = request(op.clone(), lite_console, "GET", path, "").unwrap();
        let b = request(op.clone(), pg_console, "GET", path, "").unwrap();
        assert_eq!(a.status, 200, "{path}");
        assert_eq!(body(&b), body(&a), "{path}");
    }
    // A rule page shows each failing host's newest evidence of that rule,
    // not an older one nor another rule's whose id it begins.
    let rule = |id: &str| {
        let r = request(
            op.clone(),
            pg_console,
            "GET",
            &format!("/rules/{id}?format=json"),
            "",
        );
        serde_json::from_str::<Value>(&body(&r.unwrap())).unwrap()
    };
    assert_eq!(rule("flip.rule")["hosts"][0]["evidence"], json!(["newest"]));
    assert_eq!(
        rule("flip.rule.x")["hosts"][0]["evidence"],
        json!(["other rule"])
    );
    check_history_and_refusals(&op, pg_console);
    check_refusals_export(&op, pg_console);
    let page = body(&request(op.clone(), pg_console, "GET", "/hosts/evil-1", "").unwrap());
    assert!(
        page.contains("<li>line\\x1b[31mred\\nforged</li>"),
        "{page}"
    );
    assert_eq!(page.matches("<script").count(), 1, "{page}");
}

/// A snapshot with `pass` passing and `fail` failing rules.
fn scored_snapshot(seq: u64, pass: usize, fail: usize) -> Value {
    let rule = |i: usize, status: &str| json!({"id": format!("r{i}"), "status": status, "severity": "low", "domains": [13], "title": "t"});
    let rules: Vec<Value> = (0..pass)
        .map(|i| rule(i, "pass"))
        .chain((pass..pass + fail).map(|i| rule(i, "fail")))
        .collect();
    json!({"seq": seq, "time": now_rfc3339(60), "severity": "info", "kind": "snapshot",
        "agent_version": "0.1.0", "baseline": {"id": "base", "version": 3},
        "facts": {"hostname": "h", "os": "Debian 12", "kernel": "6.1", "uptime_s": 5, "cpus": 2, "memory_bytes": 1024},
        "fim_digest": "abcd",
        "summary": {"pass": pass, "fail": fail, "error": 0, "skipped": 0, "score": 0.0},
        "rules": rules})
}

/// Five hosts: scores 100 (web-1), 50 and 2 drift events (web-2), 33.3 and
/// 1 drift event (web-3), none and 1 drift event (web-10), 75 (db-1).
fn post_small_fleet(f: &Fleet, addr: SocketAddr) {
    // A file change of a minute ago (inside the 24 h drift window).
    let fim_event = |seq: u64| {
        let mut e = crate::common::collector::fim_event(seq);
        e["time"] = json!(now_rfc3339(60));
        e
    };
    post(f, addr, "web-1", vec![scored_snapshot(1, 2, 0)]);
    post(
        f,
        addr,
        "web-2",
        vec![scored_snapshot(1, 1, 1), fim_event(2), fim_event(3)],
    );
    post(
        f,
        addr,
        "web-3",
        vec![scored_snapshot(1, 1, 2), fim_event(2)],
    );
    post(f, addr, "web-10", vec![fim_event(1)]);
    post(f, addr, "db-1", vec![scored_snapshot(1, 3, 1)]);
}

/// The fleet page filtered, sorted and paged by the store (page size 2),
/// the same on both backends.
fn check_fleet_paging(op: &Arc<rustls::ClientConfig>, console: SocketAddr) {
    let get = |path: &str| {
        let r = request(op.clone(), console, "GET", path, "").unwrap();
        assert_eq!(r.status, 200, "{path}: {}", body(&r));
        body(&r)
    };
    let order = |query: &str| -> Vec<String> {
        let v: Value = serde_json::from_str(&get(&format!("/fleet?{query}&format=json"))).unwrap();
        v["hosts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["host"].as_str().unwrap().to_string())
            .collect()
    };
    for (query, expected) in [
        ("", &["db-1", "web-1", "web-10", "web-2", "web-3"][..]),
        ("sort=score", &["web-10", "web-3", "web-2", "db-1", "web-1"]),
        (
            "sort=score&dir=desc",
            &["web-1", "db-1", "web-2", "web-3", "web-10"],
        ),
        (
            "sort=drift&dir=desc",
            &["web-2", "web-3", "web-10", "web-1", "db-1"],
        ),
        ("sort=fail", &["web-1", "web-10", "db-1", "web-2", "web-3"]),
        ("status=failing", &["db-1", "web-2", "web-3"]),
        ("status=passing", &["web-1"]),
        ("status=stale", &[]),
        ("q=WEB-%3F", &["web-1", "web-2", "web-3"]),
        ("q=web-1*&sort=host&dir=desc", &["web-10", "web-1"]),
        ("q=%25", &[]),
    ] {
        assert_eq!(order(query), expected, "/fleet?{query}");
    }
    let v: Value = serde_json::from_str(&get("/fleet?q=web-2&format=json")).unwrap();
    assert_eq!(v["hosts"][0]["drift_24h"], 2, "{v}");
    // Page 2 of 3 by score: web-2 and db-1 only, the totals of all five.
    let page = get("/fleet?sort=score&page=2");
    assert!(page.contains("Page 2 of 3"), "{page}");
    assert!(page.contains("5 hosts, 0 stale"), "{page}");
    assert!(page.contains("3 failing a rule."), "{page}");
    let hosts: Vec<&str> = page
        .split("<a href=\"/hosts/")
        .skip(1)
        .filter_map(|s| s.split('"').next())
        .collect();
    assert_eq!(hosts, ["web-2", "db-1"], "{page}");
    assert!(
        page.contains("href=\"/fleet?sort=score&amp;dir=asc&amp;page=3\">next</a>"),
        "{page}"
    );
    // Past the end: the last page.
    let page = get("/fleet?sort=score&page=99");
    assert!(page.contains("Page 3 of 3"), "{page}");
    assert!(page.contains("<a href=\"/hosts/web-1\">"), "{page}");
    let page = get("/fleet?status=failing&q=web-*");
    assert!(page.contains("2 hosts, 0 stale"), "{page}");
    assert!(page.contains("Page 1 of 1"), "{page}");
}

#[test]
fn the_fleet_page_filters_sorts_and_pages_in_the_store() {
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let (c, console) = start(&f, "page_size = 2");
    post_small_fleet(&f, c.addr);
    check_fleet_paging(&client(&f, Some((&cert, &key))), console);
}

#[test]
#[ignore = "needs PostgreSQL (initdb: apt install postgresql-15)"]
fn the_fleet_page_filters_sorts_and_pages_in_postgresql() {
    let pg = crate::common::postgres::Postgres::start();
    pg.database("plumb");
    let f = Fleet::new();
    let (cert, key) = operator(&f, "alice");
    let pg_cfg = f.config_named("pg.toml", "127.0.0.1:0", "", &pg.storage_toml("plumb"));
    let (c, console) = start_with(&pg_cfg, "page_size = 2");
    post_small_fleet(&f, c.addr);
    check_fleet_paging(&client(&f, Some((&cert, &key))), console);
}

/// The standing refusals export as CSV and JSON, escaped as every export.
fn check_refusals_export(op: &Arc<rustls::ClientConfig>, console: SocketAddr) {
    let r = request(
        op.clone(),
        console,
        "GET",
        "/baselines?list=refusals&format=csv",
        "",
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.headers
            .iter()
            .any(|(k, v)| k == "content-disposition" && v.contains("baseline-refusals.csv")),
        "{:?}",
        r.headers
    );
    let csv = body(&r);
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some("\"host\",\"time\",\"reason\""));
    let row = lines.next().unwrap();
    assert!(row.starts_with("\"evil-1\","), "{csv}");
    assert!(
        row.ends_with(",\"<script>window.pwned=2</script> signed by an unknown key\""),
        "{csv}"
    );
    let r = request(
        op.clone(),
        console,
        "GET",
        "/baselines?list=refusals&format=json",
        "",
    )
    .unwrap();
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(v["refusals"][0]["host"], "evil-1", "{v}");
    assert_eq!(
        v["refusals"][0]["reason"],
        "<script>window.pwned=2</script> signed by an unknown key"
    );
    let page = body(&request(op.clone(), console, "GET", "/baselines", "").unwrap());
    assert!(
        page.contains("href=\"/baselines?list=refusals&amp;format=csv\""),
        "{page}"
    );
}
