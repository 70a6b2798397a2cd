//! Differential tests with systemd itself as the oracle: seeded generators
//! lay out unit trees and sysctl.d trees in temporary roots, and the
//! `service` and `sysctl` checks must agree with what systemd computes on
//! every one of them.
//!
//! - Units: `systemctl --root=DIR is-enabled UNIT` (read-only on DIR; never
//!   run without `--root` here; `SYSTEMCTL_SKIP_SYSV=1`, as the check does
//!   not read SysV init scripts), its word mapped to the check's states as
//!   docs/check-semantics.md says.
//! - Boot-time sysctl: the host's real `systemd-sysctl`, which has no
//!   read-only mode, run as `nobody` in a chroot made of the generated root,
//!   where `proc/sys` is a plain directory of marker files; what it
//!   wrote into them is the boot-time value. The chroot's `proc` is checked
//!   not to be procfs first, so the kernel is never touched.
//!
//! Both print agreement per construct (`-- --nocapture` shows the table);
//! `PLUMB_ORACLE_TREES` and `PLUMB_ORACLE_SEED` change how many trees and
//! which seeds. Needs root (chroot) and systemd's binaries, which CI has.

use plumb_core::check::{CheckSpec, ServiceCheck, SysctlCheck, UnitState};
use plumb_core::compare::Scalar;
use plumb_core::report::Status;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

// ---------------------------------------------------------------------------
// Shared helpers

/// One check's verdict on a root, through the agent's own evaluation.
struct Verdict {
    status: Status,
    evidence: Vec<String>,
}

fn evaluate(spec: &CheckSpec, root: &Path) -> Verdict {
    let (status, evidence) = plumb_agent::evaluate_offline(root, spec);
    Verdict { status, evidence }
}

/// SplitMix64: a seed names the same tree forever, whatever crate versions.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03)
    }
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len())]
    }
}

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seeds of the trees to generate.
fn seeds() -> Vec<u64> {
    let first = env_num("PLUMB_ORACLE_SEED", 1);
    let n = env_num("PLUMB_ORACLE_TREES", 300);
    (first..first + n).collect()
}

/// Runs `f` over `0..n` on a few threads; results in order.
fn in_parallel<T: Send>(n: usize, f: impl Fn(usize) -> T + Sync) -> Vec<T> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(2, 6);
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<T>>> = (0..n).map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= n {
                        break;
                    }
                    let v = f(i);
                    *slots[i].lock().unwrap() = Some(v);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|s| s.into_inner().unwrap().expect("every slot filled"))
        .collect()
}

/// Agreement per construct: (agreeing, total).
#[derive(Default)]
struct Tally(BTreeMap<String, (usize, usize)>);

impl Tally {
    fn add<'a>(&mut self, tags: impl IntoIterator<Item = &'a str>, agree: bool) {
        for t in tags.into_iter().chain(["(all)"]) {
            let e = self.0.entry(t.to_string()).or_default();
            e.1 += 1;
            if agree {
                e.0 += 1;
            }
        }
    }
    fn all(&self) -> (usize, usize) {
        self.0.get("(all)").copied().unwrap_or_default()
    }
    fn print(&self, title: &str) {
        println!("\n{title}");
        println!("| construct | agree | total | % |");
        println!("|---|---:|---:|---:|");
        for (t, (a, n)) in &self.0 {
            println!("| {t} | {a} | {n} | {:.1} |", 100.0 * *a as f64 / *n as f64);
        }
    }
}

/// Writes a file in the root (parents created); false when something is
/// already there, so constructs never overwrite each other.
fn put(root: &Path, in_root: &str, content: &[u8]) -> bool {
    let p = root.join(in_root.trim_start_matches('/'));
    if p.symlink_metadata().is_ok() {
        return false;
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, content).unwrap();
    true
}

/// Creates a symlink in the root (parents created); false when taken.
fn link(root: &Path, target: &str, in_root: &str) -> bool {
    let p = root.join(in_root.trim_start_matches('/'));
    if p.symlink_metadata().is_ok() {
        return false;
    }
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(target, p).unwrap();
    true
}

fn exists(root: &Path, in_root: &str) -> bool {
    root.join(in_root.trim_start_matches('/'))
        .symlink_metadata()
        .is_ok()
}

fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

fn find_binary(candidates: &[&str]) -> Option<PathBuf> {
    candidates.iter().map(PathBuf::from).find(|p| p.is_file())
}

// ---------------------------------------------------------------------------
// Unit states: `systemctl --root=DIR is-enabled`

/// What the check should conclude, from systemctl's word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    Enabled,
    Disabled,
    Masked,
}

/// systemctl's answer for one name.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Word {
    Said(String),
    /// "Failed to get unit file state for X: <why>".
    Failed(String),
}

impl Word {
    fn text(&self) -> String {
        match self {
            Word::Said(w) => w.clone(),
            Word::Failed(why) if why == "No such file or directory" => "not-found".into(),
            Word::Failed(_) => "failed".into(),
        }
    }
}

#[derive(Default)]
struct UnitTree {
    /// Names asked about, with the constructs that concern each.
    queries: BTreeMap<String, BTreeSet<&'static str>>,
    /// Alias names and the unit they name (a link or a declaration).
    alias_of: BTreeMap<String, String>,
    /// Entry names of symlinks in real `*.wants`/`*.requires`/`*.upholds`
    /// directories that do not point at /dev/null: what pulls a unit in at
    /// boot even where systemctl does not call it enabled.
    boot_links: BTreeSet<String>,
}

impl UnitTree {
    fn ask(&mut self, name: &str, tags: &[&'static str]) {
        self.queries
            .entry(name.to_string())
            .or_default()
            .extend(tags.iter().copied());
    }
    fn tag(&mut self, name: &str, tag: &'static str) {
        self.ask(name, &[tag]);
    }
    /// A boot link names the unit or, for a template, one of its
    /// instances that is not masked itself.
    fn has_boot_link(&self, unit: &str, words: &BTreeMap<String, Word>) -> bool {
        if let Some((prefix, suffix)) = unit.split_once("@.") {
            self.boot_links.iter().any(|e| {
                let instance = e
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_prefix('@'))
                    .and_then(|r| r.strip_suffix(suffix))
                    .and_then(|r| r.strip_suffix('.'))
                    .is_some_and(|i| !i.is_empty());
                let masked = matches!(words.get(e), Some(Word::Said(w)) if w.starts_with("masked"));
                instance && !masked
            })
        } else {
            self.boot_links.contains(unit)
        }
    }
}

const UNIT_DIRS_ALL: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
    "/run/systemd/generator",
    "/run/systemd/generator.early",
    "/run/systemd/generator.late",
    "/run/systemd/transient",
];

fn link_dir_tag(dir: &str) -> &'static str {
    match dir {
        "/etc/systemd/system" => "wants link in /etc",
        "/run/systemd/system" => "wants link in /run",
        d if d.starts_with("/run/systemd/generator") => "wants link from a generator",
        _ => "vendor wants link",
    }
}

/// Lays out one unit tree from a seed.
fn gen_unit_tree(seed: u64, root: &Path) -> UnitTree {
    let mut r = Rng::new(seed);
    let mut t = UnitTree::default();
    let merged = r.chance(30);
    if merged {
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    }
    let n = 2 + r.below(4);
    for i in 0..n {
        if r.chance(25) {
            gen_template(&mut r, &mut t, root, i);
        } else {
            gen_plain(&mut r, &mut t, root, i, n);
        }
    }
    if merged {
        for q in t.queries.values_mut() {
            q.insert("merged /usr");
        }
    }
    t.ask(&format!("nothere{seed}.service"), &["not installed"]);
    t
}

fn gen_plain(r: &mut Rng, t: &mut UnitTree, root: &Path, i: usize, n: usize) {
    let ty = if r.chance(20) { "socket" } else { "service" };
    let name = format!("u{i}.{ty}");
    let alias = format!("a{i}.{ty}");
    let section = if ty == "socket" {
        "[Socket]\nListenStream=/run/u.sock\n"
    } else {
        "[Service]\nExecStart=/bin/true\n"
    };
    let other = format!("u{}.{ty}", (i + 1) % n);
    let installs: [(String, &'static str); 9] = [
        (String::new(), "static unit"),
        (
            "[Install]\nWantedBy=multi-user.target\n".into(),
            "WantedBy=",
        ),
        (
            "[Install]\nRequiredBy=multi-user.target\n".into(),
            "RequiredBy=/UpheldBy=",
        ),
        (
            "[Install]\nUpheldBy=multi-user.target\n".into(),
            "RequiredBy=/UpheldBy=",
        ),
        (format!("[Install]\nAlias={alias}\n"), "Alias="),
        (
            format!("[Install]\nWantedBy=multi-user.target\nAlias={alias}\n"),
            "Alias=",
        ),
        (format!("[Install]\nAlso={other}\n"), "Also="),
        (
            "[Install]\n# comment\nWantedBy=multi-user.target\nWantedBy=\n".into(),
            "emptied list",
        ),
        (
            "[Install]\nWantedBy=multi-user.target \\\n  graphical.target\n".into(),
            "WantedBy=",
        ),
    ];
    let (install, itag) = r.pick(&installs).clone();
    t.tag(&name, itag);
    let body = format!("[Unit]\nDescription={name}\n\n{section}\n{install}");

    // Masks first: they decide which paths are left for unit files.
    if r.chance(30) {
        let (path, target, tag): (String, &str, &'static str) = match r.below(8) {
            0 => (
                format!("/etc/systemd/system/{name}"),
                "/dev/null",
                "mask in /etc",
            ),
            1 => (
                format!("/run/systemd/system/{name}"),
                "/dev/null",
                "mask in /run",
            ),
            2 => (
                format!("/lib/systemd/system/{name}"),
                "/dev/null",
                "vendor mask",
            ),
            3 => (
                format!("/usr/lib/systemd/system/{name}"),
                "/dev/null",
                "vendor mask",
            ),
            4 => {
                link(root, "/dev/null", &format!("/opt/masks/{name}"));
                (
                    format!("/etc/systemd/system/{name}"),
                    "/opt/masks/placeholder",
                    "mask through a chain of links",
                )
            }
            5 => (
                format!("/etc/systemd/system/{name}"),
                "../../../dev/null",
                "mask in /etc",
            ),
            6 => (
                format!(
                    "/run/systemd/{}/{name}",
                    r.pick(&["generator", "generator.late"])
                ),
                "/dev/null",
                "mask from a generator",
            ),
            _ => {
                let dir = r.pick(&["/etc/systemd/system", "/lib/systemd/system"]);
                put(root, &format!("{dir}/{name}"), b"");
                t.tag(&name, "empty unit file");
                (String::new(), "", "")
            }
        };
        if !path.is_empty() {
            let target = target.replace("placeholder", &name);
            if link(root, &target, &path) {
                t.tag(&name, tag);
            }
        }
    }

    // Where the unit file is; whether a unit file in the tree declares
    // the Alias= (a file left outside the search path does not).
    let vendor = *r.pick(&["/lib/systemd/system", "/usr/lib/systemd/system"]);
    let mut file = format!("{vendor}/{name}");
    let declares = match r.below(12) {
        0..=3 => {
            t.tag(&name, "vendor unit file");
            put(root, &file, body.as_bytes())
        }
        4 => {
            file = format!("/usr/local/lib/systemd/system/{name}");
            t.tag(&name, "unit file in /usr/local");
            put(root, &file, body.as_bytes())
        }
        5 => {
            file = format!("/etc/systemd/system/{name}");
            t.tag(&name, "unit file in /etc");
            put(root, &file, body.as_bytes())
        }
        6 => {
            let vendor_placed = put(root, &file, body.as_bytes());
            let over = format!("[Unit]\nDescription=local\n\n{section}\n");
            let keep = r.chance(50);
            let over = if keep {
                format!("{over}{install}")
            } else {
                over
            };
            let over_placed = put(
                root,
                &format!("/etc/systemd/system/{name}"),
                over.as_bytes(),
            );
            t.tag(&name, "unit file in /etc overrides vendor");
            vendor_placed || (over_placed && keep)
        }
        7 => {
            file = format!("/run/systemd/system/{name}");
            t.tag(&name, "unit file in /run");
            put(root, &file, body.as_bytes())
        }
        8 => {
            let g = r.pick(&["generator", "generator.early", "generator.late"]);
            file = format!("/run/systemd/{g}/{name}");
            t.tag(&name, "generated unit");
            put(root, &file, body.as_bytes())
        }
        9 => {
            file = format!("/run/systemd/transient/{name}");
            t.tag(&name, "transient unit");
            put(root, &file, body.as_bytes())
        }
        10 => {
            file = format!("/opt/units/{name}");
            put(root, &file, body.as_bytes());
            let linked = link(root, &file, &format!("/etc/systemd/system/{name}"));
            if linked {
                t.tag(&name, "linked unit file");
            }
            linked
        }
        _ => {
            t.tag(&name, "not installed");
            false
        }
    };
    if install.contains("Alias=") {
        if declares {
            t.alias_of.insert(alias.clone(), name.clone());
        }
        t.ask(&alias, &["Alias=", "alias name"]);
    }
    t.tag(&name, "unit");

    // Drop-ins.
    if r.chance(15) {
        let (text, tag) = if r.chance(50) {
            (
                "[Install]\nWantedBy=multi-user.target\n".to_string(),
                "drop-in [Install]",
            )
        } else {
            let b = format!("b{i}.{ty}");
            t.alias_of.insert(b.clone(), name.clone());
            t.ask(&b, &["drop-in alias", "alias name"]);
            (format!("[Install]\nAlias={b}\n"), "drop-in alias")
        };
        let dir = r.pick(&["/etc/systemd/system", "/usr/lib/systemd/system"]);
        put(root, &format!("{dir}/{name}.d/50-x.conf"), text.as_bytes());
        t.tag(&name, tag);
    }

    // Aliases made by links.
    if install.contains("Alias=") && r.chance(60) {
        let (path, target, tag) = if r.chance(60) {
            (
                format!("/etc/systemd/system/{alias}"),
                file.clone(),
                "enabled through its Alias= link",
            )
        } else {
            (
                format!("/lib/systemd/system/{alias}"),
                name.clone(),
                "vendor alias link",
            )
        };
        if link(root, &target, &path) {
            t.alias_of.insert(alias.clone(), name.clone());
            t.tag(&name, tag);
            t.tag(&alias, tag);
        }
    }
    if r.chance(10) {
        let v = format!("v{i}.{ty}");
        if link(root, &name, &format!("/lib/systemd/system/{v}")) {
            t.alias_of.insert(v.clone(), name.clone());
            t.ask(&v, &["vendor alias link", "alias name"]);
        }
    }

    // Enablement links.
    for _ in 0..r.below(4) {
        let dir = *r.pick(UNIT_DIRS_ALL);
        let sub = *r.pick(&[
            "multi-user.target.wants",
            "sockets.target.wants",
            "multi-user.target.requires",
            "graphical.target.upholds",
            "other.target.wants",
        ]);
        let mut dtag = link_dir_tag(dir);
        if sub.ends_with(".requires") || sub.ends_with(".upholds") {
            t.tag(&name, "RequiredBy=/UpheldBy=");
        }
        // Sometimes the *.wants directory is itself a symlink.
        let real_dir = if r.chance(10) && !exists(root, &format!("{dir}/{sub}")) {
            let shared = format!("{dir}/shared-{i}");
            std::fs::create_dir_all(root.join(shared.trim_start_matches('/'))).unwrap();
            link(root, &format!("shared-{i}"), &format!("{dir}/{sub}"));
            dtag = "symlinked .wants directory";
            false
        } else {
            !exists(root, &format!("{dir}/{sub}"))
                || root
                    .join(format!("{dir}/{sub}").trim_start_matches('/'))
                    .symlink_metadata()
                    .unwrap()
                    .is_dir()
        };
        let entry = format!("{dir}/{sub}/{name}");
        let (made, boot, etag) = match r.below(7) {
            0 | 1 => (link(root, &file, &entry), true, dtag),
            2 => (link(root, &format!("../{name}"), &entry), true, dtag),
            3 => (
                link(root, &format!("/nonexistent/{name}"), &entry),
                true,
                "dangling wants link",
            ),
            4 => (
                put(root, &entry, b"[Unit]\n"),
                false,
                "regular file in .wants",
            ),
            5 => (
                link(root, "/dev/null", &entry),
                false,
                "wants link to /dev/null",
            ),
            _ => (link(root, &file, &entry), true, dtag),
        };
        if made {
            t.tag(&name, dtag);
            t.tag(&name, etag);
            if boot && real_dir {
                t.boot_links.insert(name.clone());
            }
        }
    }
}

fn gen_template(r: &mut Rng, t: &mut UnitTree, root: &Path, i: usize) {
    let tpl = format!("t{i}@.service");
    let inst = |x: &str| format!("t{i}@{x}.service");
    let default_instance = r.chance(30);
    let install = if default_instance {
        "[Install]\nWantedBy=getty.target\nDefaultInstance=x\n"
    } else if r.chance(80) {
        "[Install]\nWantedBy=getty.target\n"
    } else {
        ""
    };
    let file = format!("/lib/systemd/system/{tpl}");
    put(
        root,
        &file,
        format!("[Unit]\nDescription=%i\n\n[Service]\nExecStart=/bin/true %i\n\n{install}")
            .as_bytes(),
    );
    let mut tags: Vec<&'static str> = vec!["template or instance"];
    if default_instance {
        tags.push("DefaultInstance=");
    }
    if r.chance(60) {
        let e = format!("/etc/systemd/system/getty.target.wants/{}", inst("x"));
        link(root, &file, &e);
        t.boot_links.insert(inst("x"));
        tags.push("instance link");
    }
    if r.chance(30) {
        let e = format!("/lib/systemd/system/getty.target.wants/{}", inst("y"));
        link(root, &format!("../{tpl}"), &e);
        t.boot_links.insert(inst("y"));
        tags.push("vendor wants link");
    }
    if r.chance(20) {
        link(root, "/dev/null", &format!("/etc/systemd/system/{tpl}"));
        tags.push("masked template with a leftover link");
    }
    if r.chance(20) {
        link(
            root,
            "/dev/null",
            &format!("/etc/systemd/system/{}", inst("x")),
        );
        tags.push("masked instance with a leftover link");
    }
    if r.chance(15) {
        put(
            root,
            &format!("/etc/systemd/system/{}", inst("z")),
            b"[Unit]\n[Service]\nExecStart=/bin/true\n",
        );
        tags.push("instance unit file");
    }
    for q in [tpl.clone(), inst("x"), inst("y"), inst("z")] {
        t.ask(&q, &tags);
    }
}

/// systemctl's word for each name. `is-enabled` stops at the first name it
/// cannot look up, so the rest are asked again.
fn systemctl_words(systemctl: &Path, root: &Path, names: &[String]) -> BTreeMap<String, Word> {
    let mut out = BTreeMap::new();
    let mut rest: Vec<&String> = names.iter().collect();
    while !rest.is_empty() {
        let o = Command::new(systemctl)
            .arg(format!("--root={}", root.display()))
            .arg("is-enabled")
            .args(&rest)
            .env_clear()
            .env("SYSTEMD_LOG_LEVEL", "err")
            // The unit-file state alone: no SysV init-script compatibility
            // pass (which also fails on links to generated units).
            .env("SYSTEMCTL_SKIP_SYSV", "1")
            .output()
            .expect("run systemctl");
        let stdout = String::from_utf8_lossy(&o.stdout);
        let stderr = String::from_utf8_lossy(&o.stderr);
        let words: Vec<&str> = stdout.lines().collect();
        for (n, w) in rest.iter().zip(&words) {
            out.insert((*n).clone(), Word::Said(w.trim().to_string()));
        }
        let done = words.len();
        if done >= rest.len() {
            break;
        }
        // "Failed to get unit file state for X: <why>" (or "Failed to look
        // up unit file state: <why>") about the next name.
        let failed = rest[done];
        let why = stderr
            .lines()
            .rev()
            .find_map(|l| l.strip_prefix("Failed to ")?.rsplit_once(": "))
            .unwrap_or_else(|| panic!("systemctl on {}: {stderr}", root.display()))
            .1;
        out.insert(failed.clone(), Word::Failed(why.trim().to_string()));
        rest.drain(..=done);
    }
    out
}

/// The check's three verdicts for a name: enabled, disabled, masked.
fn unit_verdicts(ctx: &Path, name: &str) -> ([Status; 3], Vec<String>) {
    let mut ev = Vec::new();
    let mut st = [Status::Skipped; 3];
    for (k, state) in [UnitState::Enabled, UnitState::Disabled, UnitState::Masked]
        .into_iter()
        .enumerate()
    {
        let o = evaluate(
            &CheckSpec::Service(ServiceCheck {
                unit: name.to_string(),
                state,
            }),
            ctx,
        );
        st[k] = o.status;
        if k == 0 {
            ev = o.evidence;
        }
    }
    (st, ev)
}

fn want_statuses(w: Want) -> [Status; 3] {
    match w {
        Want::Enabled => [Status::Pass, Status::Fail, Status::Fail],
        Want::Disabled => [Status::Fail, Status::Pass, Status::Fail],
        Want::Masked => [Status::Fail, Status::Pass, Status::Pass],
    }
}

/// The documented mapping: enabled and enabled-runtime are enabled, masked
/// and masked-runtime are masked, an alias is judged as the unit it names,
/// a name nothing installs is not enabled (a name some unit declares in
/// `Alias=` is judged as that unit); every other word is enabled only when
/// a symlink in a `*.wants`/`*.requires`/`*.upholds` directory starts the
/// unit (for a template, an instance that is not masked) at boot anyway (a
/// vendor or generator link), disabled otherwise.
fn expected(t: &UnitTree, words: &BTreeMap<String, Word>, name: &str, depth: usize) -> Want {
    assert!(depth < 8, "alias loop in the generator at {name}");
    let w = &words[name];
    match w {
        Word::Said(s) if s == "enabled" || s == "enabled-runtime" => Want::Enabled,
        Word::Said(s) if s == "masked" || s == "masked-runtime" => Want::Masked,
        Word::Said(s) if s == "alias" => {
            let target = t.alias_of.get(name).expect("alias made by the generator");
            expected(t, words, target, depth + 1)
        }
        Word::Failed(_) => match t.alias_of.get(name) {
            Some(target) if words.contains_key(target) => expected(t, words, target, depth + 1),
            _ => Want::Disabled,
        },
        Word::Said(_) if t.has_boot_link(name, words) => Want::Enabled,
        Word::Said(_) => Want::Disabled,
    }
}

/// The word the check reports for `name` in its evidence, if it says one.
fn reported_word(evidence: &[String], name: &str) -> Option<String> {
    let prefix = format!("systemctl is-enabled {name}: ");
    evidence.iter().find_map(|e| {
        e.strip_prefix(&prefix)
            .map(|w| w.split([' ', ',']).next().unwrap_or_default().to_string())
    })
}

#[test]
#[ignore = "needs systemctl (systemd): .ci/run installs it and runs the ignored tests"]
fn unit_states_agree_with_systemctl() {
    let systemctl = find_binary(&["/usr/bin/systemctl", "/bin/systemctl"])
        .expect("needs systemctl (systemd is installed on CI's Debian machines)");
    let base = tempfile::tempdir().unwrap();
    let seeds = seeds();
    struct Row {
        seed: u64,
        name: String,
        tags: BTreeSet<&'static str>,
        agree: bool,
        word_agree: bool,
        detail: String,
    }
    let rows: Vec<Vec<Row>> = in_parallel(seeds.len(), |k| {
        let seed = seeds[k];
        let root = base.path().join(format!("t{seed}"));
        std::fs::create_dir_all(&root).unwrap();
        let tree = gen_unit_tree(seed, &root);
        // systemctl stops at the first name it cannot look up: the name
        // nothing installs goes last, so most trees take one call.
        let mut names: Vec<String> = tree.queries.keys().cloned().collect();
        names.sort_by_key(|n| n.starts_with("nothere"));
        let words = systemctl_words(&systemctl, &root, &names);
        let ctx = root.clone();
        let mut rows = Vec::new();
        for (name, tags) in &tree.queries {
            let want = want_statuses(expected(&tree, &words, name, 0));
            let (got, ev) = unit_verdicts(&ctx, name);
            let word = words[name].text();
            let said = reported_word(&ev, name);
            let word_agree = said.as_deref() == Some(word.as_str());
            rows.push(Row {
                seed,
                name: name.clone(),
                tags: tags.clone(),
                agree: got == want,
                word_agree,
                detail: format!(
                    "systemctl: {word}; check says {said:?}; want {want:?}, got {got:?}; evidence {ev:#?}"
                ),
            });
        }
        if rows.iter().all(|r| r.agree && r.word_agree) {
            let _ = std::fs::remove_dir_all(&root);
        }
        rows
    });
    let mut tally = Tally::default();
    let mut words = Tally::default();
    let mut bad = Vec::new();
    for r in rows.iter().flatten() {
        tally.add(r.tags.iter().copied(), r.agree);
        words.add(r.tags.iter().copied(), r.word_agree);
        if !(r.agree && r.word_agree) {
            bad.push(format!("seed {} {}: {}", r.seed, r.name, r.detail));
        }
    }
    tally.print(&format!(
        "service check vs systemctl is-enabled, {} trees: verdicts",
        seeds.len()
    ));
    words.print("service check vs systemctl is-enabled: the word in evidence");
    let (a, n) = tally.all();
    let (wa, _) = words.all();
    for b in bad.iter().take(15) {
        println!("DIFF {b}");
    }
    assert!(seeds.len() < 300 || n >= 300, "too few names asked ({n})");
    assert_eq!(
        (a, wa),
        (n, n),
        "{} of {n} names disagree with systemctl; first: {:#?}; trees kept under {}",
        bad.len(),
        bad.first(),
        base.keep().display()
    );
}

// ---------------------------------------------------------------------------
// Boot-time sysctl: the real systemd-sysctl in a chroot

/// Kernel parameters present in every tree's fake `proc/sys` (slash form).
const KEYS: &[&str] = &[
    "kernel/kptr_restrict",
    "kernel/dmesg_restrict",
    "kernel/yama/ptrace_scope",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/rp_filter",
    "net/ipv4/conf/default/rp_filter",
    "net/ipv4/conf/eth0/rp_filter",
    "net/ipv4/conf/eth0.100/rp_filter",
    "net/ipv4/conf/all/accept_redirects",
    "fs/suid_dumpable",
];

/// The dotted spelling of a slash-form key (dots in a component become
/// slashes, as sysctl.d(5) writes `eth0.100` as `eth0/100`).
fn dotted(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '/' => '.',
            '.' => '/',
            c => c,
        })
        .collect()
}

const VALUES: &[&str] = &["0", "1", "2", "3", "4 4 1 7", "1  2", "-1", "x y"];

/// Glob patterns and the keys of [`KEYS`] each matches.
const GLOBS: &[(&str, &[&str])] = &[
    (
        "net.ipv4.conf.*.rp_filter",
        &[
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/default/rp_filter",
            "net/ipv4/conf/eth0/rp_filter",
            "net/ipv4/conf/eth0.100/rp_filter",
        ],
    ),
    (
        "kernel.*_restrict",
        &["kernel/kptr_restrict", "kernel/dmesg_restrict"],
    ),
    (
        "net.ipv4.conf.eth?.rp_filter",
        &["net/ipv4/conf/eth0/rp_filter"],
    ),
    (
        "net.ipv4.conf.[ad]*.rp_filter",
        &[
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/default/rp_filter",
        ],
    ),
    (
        "net/ipv4/conf/*/accept_redirects",
        &["net/ipv4/conf/all/accept_redirects"],
    ),
    ("kernel.yama.*", &["kernel/yama/ptrace_scope"]),
    (
        "net.ipv4.conf.all.*",
        &[
            "net/ipv4/conf/all/rp_filter",
            "net/ipv4/conf/all/accept_redirects",
        ],
    ),
];

/// One generated line: its text and the keys it concerns, with a tag.
struct Line {
    text: Vec<u8>,
    keys: Vec<&'static str>,
    tag: &'static str,
}

fn gen_line(r: &mut Rng) -> Line {
    let k = *r.pick(KEYS);
    let d = dotted(k);
    let v = *r.pick(VALUES);
    let one = |text: String, tag| Line {
        text: text.into_bytes(),
        keys: vec![k],
        tag,
    };
    match r.below(30) {
        0..=5 => one(format!("{d} = {v}"), "assignment"),
        6 => one(
            format!(
                "{}{d}{}={}{v}{}",
                r.pick(&["", "  ", "\t"]),
                r.pick(&["", " ", "\t "]),
                r.pick(&["", " ", "\t"]),
                r.pick(&["", " ", "\t "])
            ),
            "spacing and tabs",
        ),
        7 => one(format!("{k}={v}"), "slash spelling"),
        8 => {
            if r.chance(50) {
                one(format!("/{k} = {v}"), "leading slash")
            } else {
                one(format!("/{d} = {v}"), "leading slash")
            }
        }
        9 => {
            let doubled = if r.chance(50) {
                d.replacen('.', "..", 1)
            } else {
                format!("{d}.")
            };
            one(format!("{doubled} = {v}"), "doubled separators")
        }
        10 => one(format!("-{d} = {v}"), "leading - with a value"),
        11 | 12 => one(format!("-{d}"), "bare -key"),
        13..=17 => {
            let (g, keys) = *r.pick(GLOBS);
            let neg = r.chance(15);
            Line {
                text: if neg {
                    format!("-{g}").into_bytes()
                } else {
                    format!("{g} = {v}").into_bytes()
                },
                keys: keys.to_vec(),
                tag: if neg { "bare -glob" } else { "glob" },
            }
        }
        18 => {
            if r.chance(50) {
                Line {
                    text: format!("kernel.{{kptr,dmesg}}_restrict = {v}").into_bytes(),
                    keys: vec!["kernel/kptr_restrict", "kernel/dmesg_restrict"],
                    tag: "braces",
                }
            } else {
                Line {
                    text: format!("net.ipv4.conf.{{all,default}}.rp_filte[r] = {v}").into_bytes(),
                    keys: vec![
                        "net/ipv4/conf/all/rp_filter",
                        "net/ipv4/conf/default/rp_filter",
                    ],
                    tag: "braces",
                }
            }
        }
        19 => one(
            format!("{}{d} = 9", r.pick(&["#", ";", "  # ", "\t;"])),
            "comments",
        ),
        20 => one(format!("{d} ={}", r.pick(&["", "  ", "\t"])), "empty value"),
        21 => one(
            format!("{d} = {}{v}{}", r.pick(&["\"", "'"]), r.pick(&["\"", "'"])),
            "quotes",
        ),
        22 => one(format!("{d} {v}"), "line without ="),
        23 => one(format!("{d} = {v}={v}"), "= in the value"),
        24 => Line {
            text: format!("net/ipv4/./ip_forward = {v}").into_bytes(),
            keys: vec!["net/ipv4/ip_forward"],
            tag: "dot components",
        },
        25 => Line {
            text: format!("net/ipv4/conf/../ip_forward = {v}").into_bytes(),
            keys: vec!["net/ipv4/ip_forward"],
            tag: "dot components",
        },
        26 => {
            let mut text = format!("{d} = {v}").into_bytes();
            text.extend_from_slice(b"\0junk");
            Line {
                text,
                keys: vec![k],
                tag: "NUL byte",
            }
        }
        27 => one(d.to_uppercase() + " = 1", "upper case"),
        28 => Line {
            text: r.pick(&["", "   ", "\t"]).as_bytes().to_vec(),
            keys: vec![],
            tag: "blank lines",
        },
        _ => one(format!("{d}={v}"), "assignment"),
    }
}

const SYSCTL_DIRS: &[&str] = &[
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
];
const CONF_NAMES: &[&str] = &[
    "10-a.conf",
    "50-default.conf",
    "50-default.conf",
    "60-x.conf",
    "99-z.conf",
    "Z-upper.conf",
    "a.conf",
    "zz-late.conf",
];

#[derive(Default)]
struct SysctlTree {
    tags: BTreeMap<&'static str, BTreeSet<&'static str>>,
}

impl SysctlTree {
    fn tag_keys(&mut self, keys: &[&'static str], tags: &[&'static str]) {
        for k in keys {
            self.tags.entry(k).or_default().extend(tags.iter().copied());
        }
    }
}

/// A file's bytes from lines, with the tree's line-ending habits.
fn file_bytes(r: &mut Rng, lines: &[Line], tags: &mut Vec<&'static str>) -> Vec<u8> {
    let (eol, tag): (&[u8], &'static str) = match r.below(20) {
        0 | 1 => (b"\r\n", "CRLF"),
        2 => (b"\r", "CR line ends"),
        _ => (b"\n", ""),
    };
    if !tag.is_empty() {
        tags.push(tag);
    }
    let mut out = Vec::new();
    if r.chance(3) {
        out.extend_from_slice("\u{feff}".as_bytes());
        tags.push("byte order mark");
    }
    for l in lines {
        out.extend_from_slice(&l.text);
        out.extend_from_slice(eol);
    }
    if r.chance(10) && !out.is_empty() {
        out.truncate(out.len() - eol.len());
        tags.push("no final newline");
    }
    out
}

/// Lays out one sysctl.d tree; returns the constructs per key.
fn gen_sysctl_tree(seed: u64, root: &Path) -> SysctlTree {
    let mut r = Rng::new(seed);
    let mut t = SysctlTree::default();
    let merged = r.chance(25);
    if merged {
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
    }
    if r.chance(10) {
        std::fs::create_dir_all(root.join("srv/sysctl")).unwrap();
        std::fs::create_dir_all(root.join("run")).unwrap();
        std::os::unix::fs::symlink("../srv/sysctl", root.join("run/sysctl.d")).unwrap();
    }
    // (path, keys it concerns)
    let mut files: Vec<(String, Vec<&'static str>)> = Vec::new();
    let write_lines =
        |r: &mut Rng, t: &mut SysctlTree, path: &str, lines: Vec<Line>, tags: &[&'static str]| {
            let mut ftags: Vec<&'static str> = tags.to_vec();
            let bytes = file_bytes(r, &lines, &mut ftags);
            let mut keys = Vec::new();
            if put(root, path, &bytes) {
                for l in &lines {
                    let mut all = ftags.clone();
                    all.push(l.tag);
                    t.tag_keys(&l.keys, &all);
                    keys.extend(l.keys.iter().copied());
                }
            }
            keys
        };
    for _ in 0..2 + r.below(5) {
        let dir = *r.pick(SYSCTL_DIRS);
        let name = *r.pick(CONF_NAMES);
        let lines: Vec<Line> = (0..1 + r.below(6)).map(|_| gen_line(&mut r)).collect();
        let mut tags = vec!["cross-directory order"];
        if dir == "/lib/sysctl.d" {
            tags.push("/lib/sysctl.d");
        }
        if merged {
            tags.push("merged /usr");
        }
        let path = format!("{dir}/{name}");
        let keys = write_lines(&mut r, &mut t, &path, lines, &tags);
        files.push((path, keys));
    }
    // The same glob twice with the same value, another one in between.
    if r.chance(20) {
        let (g, keys) = GLOBS[0];
        let v = *r.pick(VALUES);
        let w = *r.pick(VALUES);
        let tags = ["glob re-assigned the same value"];
        for (path, text) in [
            ("/etc/sysctl.d/20-a.conf", format!("{g} = {v}")),
            (
                "/etc/sysctl.d/21-b.conf",
                format!("net.ipv4.conf.[ad]*.rp_filter = {w}"),
            ),
            ("/usr/lib/sysctl.d/22-c.conf", format!("{g} = {v}")),
        ] {
            let line = Line {
                text: text.into_bytes(),
                keys: keys.to_vec(),
                tag: tags[0],
            };
            write_lines(&mut r, &mut t, path, vec![line], &tags);
        }
    }
    // Entries that take a name from a lower directory.
    let lower: Vec<(String, Vec<&'static str>)> = files
        .iter()
        .filter(|(p, _)| !p.starts_with("/etc/"))
        .cloned()
        .collect();
    if let Some((p, keys)) = (!lower.is_empty()).then(|| r.pick(&lower).clone()) {
        let name = p.rsplit('/').next().unwrap().to_string();
        let at = format!("/etc/sysctl.d/{name}");
        let tag = match r.below(5) {
            0 => link(root, "/dev/null", &at).then_some("/dev/null mask"),
            1 => link(root, "/nonexistent/x.conf", &at).then_some("dangling link"),
            2 => (!exists(root, &at)
                && std::fs::create_dir_all(root.join(at.trim_start_matches('/'))).is_ok())
            .then_some("directory named *.conf"),
            _ => None,
        };
        if let Some(tag) = tag {
            t.tag_keys(&keys, &[tag]);
        }
    }
    if r.chance(15) {
        let lines = vec![gen_line(&mut r), gen_line(&mut r)];
        write_lines(
            &mut r,
            &mut t,
            "/etc/sysctl.d/.hidden.conf",
            lines,
            &["hidden file"],
        );
    }
    if r.chance(10) {
        let lines = vec![gen_line(&mut r)];
        let p = *r.pick(&["/etc/sysctl.d/70-x.conf.disabled", "/run/sysctl.d/README"]);
        write_lines(&mut r, &mut t, p, lines, &["not *.conf"]);
    }
    if r.chance(10) {
        let lines = vec![gen_line(&mut r), gen_line(&mut r)];
        let keys = write_lines(
            &mut r,
            &mut t,
            "/opt/sysctl/linked.conf",
            lines,
            &["symlinked file"],
        );
        if link(
            root,
            "/opt/sysctl/linked.conf",
            "/etc/sysctl.d/70-linked.conf",
        ) {
            t.tag_keys(&keys, &["symlinked file"]);
        }
    }
    // Debian's /etc/sysctl.conf, read only through 99-sysctl.conf.
    if r.chance(40) {
        let lines: Vec<Line> = (0..1 + r.below(3)).map(|_| gen_line(&mut r)).collect();
        let keys = write_lines(
            &mut r,
            &mut t,
            "/etc/sysctl.conf",
            lines,
            &["/etc/sysctl.conf"],
        );
        if r.chance(60) && link(root, "../sysctl.conf", "/etc/sysctl.d/99-sysctl.conf") {
            t.tag_keys(&keys, &["99-sysctl.conf link"]);
        }
        if r.chance(30) {
            let lines = vec![gen_line(&mut r)];
            write_lines(
                &mut r,
                &mut t,
                "/etc/sysctl.d/zz-after.conf",
                lines,
                &["/etc/sysctl.conf"],
            );
        }
    }
    t
}

/// What a marker holds until systemd-sysctl writes it. Not empty: it
/// reads the file first and suppresses a write that changes nothing, so an
/// empty value would not show on an empty marker.
const UNTOUCHED: &[u8] = b"plumb:untouched\n";

/// The host's systemd-sysctl and the libraries it loads, copied once.
struct Sysctl {
    /// Files to hard-link into each chroot's `/oracle`.
    files: Vec<PathBuf>,
    loader: String,
}

impl Sysctl {
    fn prepare(dir: &Path) -> Sysctl {
        let bin = find_binary(&[
            "/lib/systemd/systemd-sysctl",
            "/usr/lib/systemd/systemd-sysctl",
        ])
        .expect("needs systemd-sysctl (systemd is installed on CI's Debian machines)");
        let o = Command::new("ldd").arg(&bin).output().expect("run ldd");
        assert!(o.status.success(), "ldd {}", bin.display());
        let mut libs: Vec<PathBuf> = String::from_utf8_lossy(&o.stdout)
            .split_whitespace()
            .filter(|w| w.starts_with('/'))
            .map(PathBuf::from)
            .collect();
        let loader = libs
            .iter()
            .find(|p| p.to_string_lossy().contains("/ld-linux"))
            .expect("dynamic loader in ldd output")
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        libs.push(bin);
        std::fs::create_dir_all(dir).unwrap();
        let files = libs
            .iter()
            .map(|l| {
                let to = dir.join(l.file_name().unwrap());
                std::fs::copy(l, &to).unwrap();
                to
            })
            .collect();
        Sysctl { files, loader }
    }

    /// Runs systemd-sysctl as nobody with `root` as `/`, and returns what it
    /// wrote into each key's marker (`None`: untouched).
    fn run(&self, root: &Path) -> BTreeMap<&'static str, Option<String>> {
        let sys = root.join("proc/sys");
        for k in KEYS {
            let p = sys.join(k);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(&p, UNTOUCHED).unwrap();
            std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o666))
                .unwrap();
        }
        // Never the kernel: the chroot's proc must be our plain directory.
        const PROC_SUPER_MAGIC: nix::sys::statfs::FsType = nix::sys::statfs::FsType(0x9fa0);
        for p in [root.join("proc"), sys.clone()] {
            let fs = nix::sys::statfs::statfs(&p).unwrap();
            assert_ne!(
                fs.filesystem_type(),
                PROC_SUPER_MAGIC,
                "{} is procfs",
                p.display()
            );
            use std::os::unix::fs::MetadataExt;
            assert_eq!(
                std::fs::metadata(&p).unwrap().dev(),
                std::fs::metadata(root).unwrap().dev(),
                "{} is a mount point",
                p.display()
            );
        }
        let oracle = root.join("oracle");
        std::fs::create_dir_all(&oracle).unwrap();
        for f in &self.files {
            std::fs::hard_link(f, oracle.join(f.file_name().unwrap())).unwrap();
        }
        let chroot = find_binary(&["/usr/sbin/chroot", "/sbin/chroot", "/usr/bin/chroot"])
            .expect("needs chroot (coreutils)");
        let o = Command::new(chroot)
            .arg("--userspec=nobody:nogroup")
            .arg(root)
            .arg(format!("/oracle/{}", self.loader))
            .args(["--library-path", "/oracle", "/oracle/systemd-sysctl"])
            .env_clear()
            .env("SYSTEMD_LOG_TARGET", "console")
            .output()
            .expect("run chroot");
        // It fails on keys that have no marker; it must have started.
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            !err.contains("chroot:") && !err.contains("error while loading"),
            "systemd-sysctl did not run in {}: {err}",
            root.display()
        );
        KEYS.iter()
            .map(|k| {
                let b = std::fs::read(sys.join(k)).unwrap();
                // A write puts "VALUE\n" at offset 0 (no truncation).
                let v = (b != UNTOUCHED).then(|| {
                    let line = b.split(|&c| c == b'\n').next().unwrap_or_default();
                    String::from_utf8_lossy(line).into_owned()
                });
                (*k, v)
            })
            .collect()
    }
}

/// The boot-time value the check reports for `key` (`None`: not set), and
/// whether its verdict agrees with `want`.
fn sysctl_verdict(
    ctx: &Path,
    key: &str,
    want: &Option<String>,
) -> (bool, Option<String>, Vec<String>) {
    let spec = SysctlCheck {
        key: key.to_string(),
        persistent: true,
        equals: want.clone().map(Scalar::Str),
        one_of: None,
        min: None,
        max: None,
        absent: want.is_none().then_some(true),
        excludes: None,
    };
    let o = evaluate(&CheckSpec::Sysctl(spec), ctx);
    // Evidence: "KEY = VALUE (where)" for the boot-time value.
    let value = o
        .evidence
        .iter()
        .filter(|e| !e.contains("(runtime") && !e.starts_with("expected"))
        .find_map(|e| {
            let (left, _) = e.rsplit_once(" (")?;
            let (_, v) = left.split_once(" = ")?;
            Some(v.to_string())
        });
    (o.status == Status::Pass, value, o.evidence)
}

#[test]
#[ignore = "needs root and systemd-sysctl: .ci/run runs the ignored tests as root"]
fn boot_sysctl_agrees_with_systemd_sysctl() {
    assert!(
        is_root(),
        "needs root: systemd-sysctl runs in a chroot (CI runs the tests as root)"
    );
    let base = tempfile::tempdir().unwrap();
    let sysctl = Sysctl::prepare(&base.path().join("oracle-files"));
    let seeds = seeds();
    let rows = in_parallel(seeds.len(), |i| {
        let seed = seeds[i];
        let root = base.path().join(format!("t{seed}"));
        std::fs::create_dir_all(&root).unwrap();
        std::fs::set_permissions(&root, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let tree = gen_sysctl_tree(seed, &root);
        let truth = sysctl.run(&root);
        let ctx = root.clone();
        let mut out = Vec::new();
        for k in KEYS {
            let want = &truth[k];
            let (pass, got, ev) = sysctl_verdict(&ctx, k, want);
            let agree = pass && (got == *want);
            let tags: BTreeSet<&'static str> = tree.tags.get(k).cloned().unwrap_or_default();
            out.push((
                seed,
                *k,
                tags,
                agree,
                format!("want {want:?}, got {got:?}: {ev:?}"),
            ));
        }
        if out.iter().all(|o| o.3) {
            let _ = std::fs::remove_dir_all(&root);
        }
        out
    });
    let mut tally = Tally::default();
    let mut bad = Vec::new();
    for (seed, k, tags, agree, detail) in rows.iter().flatten() {
        tally.add(tags.iter().copied(), *agree);
        if !agree {
            bad.push(format!("seed {seed} {k}: {detail}"));
        }
    }
    tally.print(&format!(
        "sysctl persistent value vs systemd-sysctl, {} trees x {} keys",
        seeds.len(),
        KEYS.len()
    ));
    for b in bad.iter().take(15) {
        println!("DIFF {b}");
    }
    let (a, n) = tally.all();
    assert_eq!(
        a,
        n,
        "{} of {n} root/key pairs disagree with systemd-sysctl; first: {:#?}; trees kept under {}",
        bad.len(),
        bad.first(),
        base.keep().display()
    );
}
