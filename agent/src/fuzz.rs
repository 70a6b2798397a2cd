//! Entry points for the cargo-fuzz targets in `fuzz/` (cargo feature
//! `fuzzing`, off in every shipped build; docs/fuzzing.md). Each takes the
//! fuzzer's bytes as one input the agent reads from a file it does not
//! control — a baseline, its config, the checked root's sshd_config, dpkg
//! database and account files, the kernel's proc tables, a FIM database
//! row — and runs the agent's own code on it, down to the verdict,
//! evidence or report it produces. The parsers stay private; only these
//! functions are public, hidden from the docs.
//!
//! Files are written to a temporary root made for each input and removed
//! after it, so the checks read them the way they read a real root.
//! Inputs made of several files separate them with [`SEPARATOR`]. A panic
//! anywhere below is a bug, and so is a failed `assert!` here: each states
//! an invariant the agent relies on.

use crate::checks::{self, Ctx, Outcome};
use crate::daemon::config::{CollectorUrl, Config, parse_duration};
use crate::fim::db::{self, Key};
use crate::fim::diff;
use crate::fim::rules::{Attrs, Plan as FimPlan};
use crate::remediate::plan::View;
use crate::rootfs::RootFs;
use crate::sshd_config::{self, keywords};
use crate::userdb;
use plumb_core::check::{
    AccountsCheck, CheckSpec, FindCheck, ListeningCheck, MountCheck, PackageCheck,
};
use plumb_core::fim::ReportPath;
use plumb_core::{Baseline, FimAttribute};
use rusqlite::types::Value;
use std::path::Path;
use std::sync::OnceLock;

/// Separates the files of a multi-file input (`sshd_config`, `proc_net`,
/// `accounts`): a line of its own that no real file of these kinds holds.
pub const SEPARATOR: &[u8] = b"\n%%%\n";

/// The input cut at [`SEPARATOR`] into at most `n` files (the last takes
/// the rest); missing ones are `None`.
fn files(data: &[u8], n: usize) -> Vec<Option<&[u8]>> {
    let mut out = Vec::with_capacity(n);
    let mut rest = Some(data);
    for i in 0..n {
        let Some(r) = rest else {
            out.push(None);
            continue;
        };
        if i + 1 == n {
            out.push(Some(r));
            rest = None;
            continue;
        }
        match r.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
            Some(at) => {
                out.push(Some(&r[..at]));
                rest = Some(&r[at + SEPARATOR.len()..]);
            }
            None => {
                out.push(Some(r));
                rest = None;
            }
        }
    }
    out
}

/// A temporary root for one input, removed when dropped.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        Fixture {
            // A fuzz target that cannot make a temporary directory cannot
            // run at all: stopping is right.
            #[allow(clippy::expect_used)]
            dir: tempfile::tempdir().expect("a temporary directory for the fuzz input"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `bytes` at the in-root path `at` (parents created).
    fn write(&self, at: &str, bytes: &[u8]) {
        let p = self.dir.path().join(at.trim_start_matches('/'));
        if let Some(parent) = p.parent() {
            let _ = std::fs::create_dir_all(parent);
        }
        let _ = std::fs::write(p, bytes);
    }
}

/// Everything an [`Outcome`] says, as `plumb check` would print it.
fn show(o: &Outcome) -> usize {
    o.evidence.iter().map(String::len).sum::<usize>() + format!("{:?}", o.status).len()
}

/// Rules whose checks and remediations the file targets run, parsed once.
/// The baseline is valid by construction: a failure to parse it is a bug
/// in this module.
fn rules() -> &'static Baseline {
    static RULES: OnceLock<Baseline> = OnceLock::new();
    RULES.get_or_init(|| {
        let text = r#"
schema = 1
id = "fuzz"
version = 1
title = "rules the fuzz targets evaluate"

[[rule]]
id = "sshd-valid"
title = "sshd accepts its configuration"
severity = "high"
domains = [20]
criteria = ["I"]
check = { kind = "sshd", valid = true }

[[rule]]
id = "sshd-root"
title = "no root login"
severity = "high"
domains = [20]
criteria = ["I"]
check = { kind = "sshd", key = "PermitRootLogin", equals = "no" }
remediation = { kind = "sshd_set", key = "PermitRootLogin", value = "no" }

[[rule]]
id = "sshd-startups"
title = "MaxStartups"
severity = "low"
domains = [20]
criteria = ["A"]
check = { kind = "sshd", key = "MaxStartups", equals = "10:30:60" }
remediation = { kind = "sshd_set", key = "MaxStartups", value = "10:30:60" }

[[rule]]
id = "sshd-tries"
title = "MaxAuthTries"
severity = "low"
domains = [20]
criteria = ["A"]
check = { kind = "sshd", key = "MaxAuthTries", max = 4 }
remediation = { kind = "sshd_set", key = "MaxAuthTries", value = 4 }

[[rule]]
id = "sshd-users"
title = "AllowUsers"
severity = "low"
domains = [20]
criteria = ["A"]
check = { kind = "sshd", key = "AllowUsers", excludes = ["root"] }

[[rule]]
id = "sshd-ciphers"
title = "Ciphers"
severity = "low"
domains = [20]
criteria = ["C"]
check = { kind = "sshd", key = "Ciphers", excludes = ["3des-cbc"] }

[[rule]]
id = "sshd-alive"
title = "ClientAliveInterval"
severity = "low"
domains = [20]
criteria = ["A"]
check = { kind = "sshd", key = "ClientAliveInterval", min = 1, max = 300 }
remediation = { kind = "sshd_set", key = "ClientAliveInterval", value = 300 }
"#;
        #[allow(clippy::expect_used)]
        Baseline::from_str(text, "fuzz-rules.toml").expect("the fuzz rules are a valid baseline")
    })
}

/// Evaluates every rule of [`rules`] on `ctx` and plans each remediation
/// (planning reads the same files; nothing is written).
fn run_rules(ctx: &Ctx) {
    for r in &rules().rules {
        let _ = show(&checks::evaluate(&r.check, ctx));
        if let Some(spec) = &r.remediation {
            plan(spec, &r.check, ctx);
        }
    }
}

/// Plans one remediation and renders it as `plumb remediate --dry-run` does.
fn plan(spec: &plumb_core::remediation::RemediationSpec, check: &CheckSpec, ctx: &Ctx) {
    match crate::remediate::plan_action(spec, check, &View::new(ctx)) {
        Ok(p) => {
            for op in &p.ops {
                let _ = op.describe();
                let _ = op.diff();
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
}

/// `/etc/plumb/agent.toml`: parsing, every check the config gets, and the
/// values the daemon derives from it; the collector URL and duration
/// parsers also take the whole input.
pub fn agent_config(data: &[u8]) {
    // The daemon refuses a config that is not UTF-8 before parsing it.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = CollectorUrl::parse(text).map(|u| (u.authority(), u.prefix().len()));
    let _ = parse_duration(text);
    match Config::from_str(text, "agent.toml") {
        Ok(c) => {
            let _ = c.host();
            let _ = c.proc_dir();
            let _ = c.trusted_files();
            for r in &rules().rules {
                let _ = c.remediation_allows(r);
            }
        }
        Err(d) => {
            assert!(!d.0.is_empty(), "a refused config names a problem");
            let _ = d.to_string();
        }
    }
}

/// A baseline (`plumb baseline lint`, the daemon's policy): parsing and
/// validation; for a valid one, its FIM watches as a scan plan, and every
/// rule's check and remediation plan on an empty root (the baseline
/// chooses patterns, globs and paths the check engine then uses).
pub fn baseline(data: &[u8]) {
    let b = match Baseline::from_bytes(data, "fuzz.toml") {
        Ok(b) => b,
        Err(e) => {
            let _ = e.to_string();
            return;
        }
    };
    // Two copies of a baseline with rules share their rule ids.
    let twice = Baseline::check_unique(&[b.clone(), b.clone()]);
    assert!(
        b.rules.is_empty() || twice.is_err(),
        "repeated rule ids are refused"
    );
    if let Ok(plan) = FimPlan::new(&b.fim) {
        for w in &plan.watches {
            let _ = plan.governing(&w.path);
            let _ = w.excludes(&w.path);
            let _ = plan.records(&w.path);
            let _ = plan.next_components(&w.path);
        }
    }
    let root = Fixture::new();
    let ctx = Ctx::new(root.path(), None);
    for r in &b.rules {
        let _ = show(&checks::evaluate(&r.check, &ctx));
        if let Some(spec) = &r.remediation {
            plan(spec, &r.check, &ctx);
        }
    }
}

/// A Debian 12 openssh-server, so that the sshd reading applies.
const DPKG_SSHD: &[u8] = b"Package: openssh-server\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1:9.2p1-2+deb12u3\n\n";

/// sshd's configuration: `sshd_config`, two drop-ins it may include
/// (`sshd_config.d/10-a.conf`, `20-b.conf`), `/etc/ssh/extra.conf` and
/// `/etc/services` (port names), in that order, separated by
/// [`SEPARATOR`]. Runs the reading both the `sshd` check and the
/// `sshd_set` remediation use, every keyword's effective value, and the
/// check and remediation rules of [`rules`].
pub fn sshd_config(data: &[u8]) {
    let parts = files(data, 5);
    let root = Fixture::new();
    let names = [
        "/etc/ssh/sshd_config",
        "/etc/ssh/sshd_config.d/10-a.conf",
        "/etc/ssh/sshd_config.d/20-b.conf",
        "/etc/ssh/extra.conf",
        "/etc/services",
    ];
    for (name, part) in names.iter().zip(&parts) {
        if let Some(bytes) = part {
            root.write(name, bytes);
        }
    }
    root.write("/var/lib/dpkg/status", DPKG_SSHD);
    let fs = RootFs::new(root.path());
    let Ok(build) = sshd_config::build_of("1:9.2p1-2+deb12u3") else {
        unreachable!("Debian 12's first security update is a known sshd build")
    };
    let read = |path: &str| match fs.read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(format!("cannot read {e}")),
    };
    match sshd_config::load(&fs, read, build) {
        Ok(settings) => {
            for k in keywords::all() {
                match settings.effective(k) {
                    Ok(e) => {
                        let _ = e.deciding(k).map(|s| s.at());
                        let _ = e.is_set();
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    run_rules(&Ctx::new(root.path(), None));
}

/// `/var/lib/dpkg/status`: the `package` check for the packages the file
/// names (and some it may not), and the sshd build it implies.
pub fn dpkg_status(data: &[u8]) {
    let root = Fixture::new();
    root.write("/var/lib/dpkg/status", data);
    root.write("/etc/ssh/sshd_config", b"PermitRootLogin no\n");
    let ctx = Ctx::new(root.path(), None);
    let text = String::from_utf8_lossy(data);
    let mut names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("Package:"))
        .map(|n| n.trim().to_string())
        .take(8)
        .collect();
    names.extend(["openssh-server".to_string(), "libc6:amd64".to_string()]);
    for name in names {
        for installed in [true, false] {
            let spec = CheckSpec::Package(PackageCheck {
                name: name.clone(),
                installed,
            });
            let _ = show(&checks::evaluate(&spec, &ctx));
        }
        let _ = checks::package::installed_version(&ctx, &name);
    }
    run_rules(&ctx);
}

/// The kernel's socket tables `PROC/net/{tcp,tcp6,udp,udp6}`, in that
/// order, separated by [`SEPARATOR`]: the `listening` check.
pub fn proc_net(data: &[u8]) {
    let parts = files(data, 4);
    let root = Fixture::new();
    let proc = Fixture::new();
    for (name, part) in ["tcp", "tcp6", "udp", "udp6"].iter().zip(&parts) {
        if let Some(bytes) = part {
            proc.write(&format!("/net/{name}"), bytes);
        }
    }
    let ctx = Ctx::new(root.path(), Some(proc.path().to_path_buf()));
    for spec in [
        ListeningCheck {
            forbidden_ports: vec![0, 22, 23, 65535],
            allowed_ports: None,
        },
        ListeningCheck {
            forbidden_ports: Vec::new(),
            allowed_ports: Some(vec![22, 80, 443]),
        },
    ] {
        let _ = show(&checks::evaluate(&CheckSpec::Listening(spec), &ctx));
    }
}

/// `PROC/1/mounts`: the `mount` check, for a few usual mount points and
/// for the ones the table names.
pub fn proc_mounts(data: &[u8]) {
    let root = Fixture::new();
    let proc = Fixture::new();
    proc.write("/1/mounts", data);
    let ctx = Ctx::new(root.path(), Some(proc.path().to_path_buf()));
    let text = String::from_utf8_lossy(data);
    let mut points: Vec<String> = text
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(str::to_string)
        .take(8)
        .collect();
    points.extend(["/", "/tmp", "/dev/shm", "/var/tmp/"].map(String::from));
    for path in points {
        for (separate, options) in [
            (
                true,
                vec!["nodev".to_string(), "nosuid".into(), "noexec".into()],
            ),
            (false, Vec::new()),
        ] {
            let spec = CheckSpec::Mount(MountCheck {
                path: path.clone(),
                separate,
                options_include: options,
            });
            let _ = show(&checks::evaluate(&spec, &ctx));
        }
    }
}

/// The account files `/etc/passwd`, `/etc/shadow`, `/etc/group` and
/// `/etc/login.defs`, in that order, separated by [`SEPARATOR`]: each line
/// checked as the `accounts` check does, the user database the other
/// checks resolve names with, every `accounts` invariant, and a `find`
/// for unowned files.
pub fn accounts(data: &[u8]) {
    let parts = files(data, 4);
    let root = Fixture::new();
    for (name, part) in [
        "/etc/passwd",
        "/etc/shadow",
        "/etc/group",
        "/etc/login.defs",
    ]
    .iter()
    .zip(&parts)
    {
        if let Some(bytes) = part {
            root.write(name, bytes);
        }
    }
    for (i, part) in parts.iter().take(3).enumerate() {
        let Some(bytes) = part else { continue };
        for (n, line) in String::from_utf8_lossy(bytes).lines().enumerate() {
            match i {
                0 => {
                    let _ = userdb::check_passwd(line, n + 1);
                }
                1 => {
                    let _ = userdb::check_shadow(line, n + 1);
                }
                _ => {
                    let _ = userdb::check_group(line, n + 1);
                }
            }
        }
    }
    let fs = RootFs::new(root.path());
    if let Ok(db) = userdb::UserDb::load(&fs) {
        for u in db.users.iter().take(16) {
            let _ = (db.show_uid(u.uid), db.show_gid(u.gid), db.uid_of(&u.name));
        }
    }
    let ctx = Ctx::new(root.path(), None);
    let all = AccountsCheck {
        uid0_only: true,
        no_empty_passwords: true,
        no_duplicate_uids: true,
        no_duplicate_names: true,
        system_shell_nologin: true,
        primary_groups_exist: true,
        no_duplicate_gids: true,
        no_login_shell_locked: true,
        pass_max_days_max: Some(90),
    };
    let _ = show(&checks::evaluate(&CheckSpec::Accounts(all), &ctx));
    let find = FindCheck {
        paths: vec!["/etc".into()],
        world_writable: false,
        unowned: true,
        setid: false,
        allow: Vec::new(),
    };
    let _ = show(&checks::evaluate(&CheckSpec::Find(find), &ctx));
}

/// Reads SQLite values from the fuzzer's bytes: per value a tag byte
/// (modulo 5: null, integer, real, text, blob), then 8 bytes for a
/// number, or a length byte and that many bytes for text (lossy UTF-8)
/// and blobs. Missing bytes read as zero.
struct Values<'a>(&'a [u8]);

impl Values<'_> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }

    fn eight(&mut self) -> [u8; 8] {
        let mut b = [0u8; 8];
        for (i, v) in self.bytes(8).into_iter().enumerate() {
            b[i] = v;
        }
        b
    }

    fn value(&mut self) -> Value {
        match self.byte() % 5 {
            0 => Value::Null,
            1 => Value::Integer(i64::from_le_bytes(self.eight())),
            2 => Value::Real(f64::from_le_bytes(self.eight())),
            3 => {
                let n = usize::from(self.byte());
                Value::Text(String::from_utf8_lossy(&self.bytes(n)).into_owned())
            }
            _ => {
                let n = usize::from(self.byte());
                Value::Blob(self.bytes(n))
            }
        }
    }
}

/// Every attribute a watch may record.
const ALL_ATTRIBUTES: [FimAttribute; 13] = [
    FimAttribute::Sha256,
    FimAttribute::Sha512,
    FimAttribute::Mode,
    FimAttribute::Uid,
    FimAttribute::Gid,
    FimAttribute::Size,
    FimAttribute::Mtime,
    FimAttribute::Ctime,
    FimAttribute::Inode,
    FimAttribute::Nlink,
    FimAttribute::Type,
    FimAttribute::LinkTarget,
    FimAttribute::Xattrs,
];

/// A row of the FIM database's `entries` table (18 values, see
/// [`Values`]) and then its `seal` row (6 values), as someone with write
/// access to `fim.db` but not its key may have left them: decoded,
/// verified, and for a row that decodes, reported as a removed or changed
/// path would be. The rows are then re-sealed with the key, as the agent
/// seals what it writes, and must verify.
pub fn fim_row(data: &[u8]) {
    let key = Key::from_raw(&[7u8; 32]);
    let mut values = Values(data);
    let mut row: Vec<Value> = (0..18).map(|_| values.value()).collect();
    let seal: Vec<Value> = (0..6).map(|_| values.value()).collect();

    let stored = db::stored(&key, &row);
    let _ = ReportPath::from_bytes(&stored.key);
    if let Ok(entry) = &stored.entry {
        let attrs = Attrs::of(&ALL_ATTRIBUTES);
        let _ = serde_json::to_string(&diff::all_values(entry, attrs));
        assert!(
            diff::fields(entry, entry, attrs).is_empty(),
            "an entry differs from itself"
        );
        let _ = serde_json::to_string(&ReportPath::from_bytes(&entry.path));
        // The agent's own MAC of the same entry: verifies when the stored
        // key is the one the path gives (a key holding `/` is not).
        row[17] = Value::Blob(key.row_mac(entry).to_vec());
        let resealed = db::stored(&key, &row);
        assert_eq!(
            resealed.intact,
            entry.key() == stored.key,
            "a row sealed with the key verifies exactly when its key is its path's"
        );
    } else {
        assert!(!stored.intact, "a row that does not decode is not intact");
    }

    let [a, b, c, d, e, f] = [&seal[0], &seal[1], &seal[2], &seal[3], &seal[4], &seal[5]];
    match db::seal_of(&key, [a, b, c, d, e, f]) {
        db::Seal::Broken(why) => {
            let _ = why.len();
        }
        db::Seal::Valid { digest } => {
            let _ = digest.hex();
        }
    }
    if let Some(mac) = key.seal_mac_of([a, b, c, d, e, f]) {
        let f = Value::Blob(mac.to_vec());
        assert!(
            matches!(
                db::seal_of(&key, [a, b, c, d, e, &f]),
                db::Seal::Valid { .. }
            ),
            "a seal row sealed with the key verifies"
        );
    }
}
