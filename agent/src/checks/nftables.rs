//! `kind = "nftables"`: the host firewall's ruleset, read from the files
//! `nftables.service` loads at boot (`/etc/nftables.conf` and what it
//! `include`s, globs expanded in name order, relative names against the
//! including file's directory) and, on a live host (root `/` with a proc
//! directory and `nft` installed), from the kernel with `nft list ruleset`
//! (read-only). The kernel's ruleset is read in nft's own text syntax
//! rather than `-j` JSON so that one parser serves both sources and a
//! verdict cannot differ between them because of the reader.
//!
//! What is understood: `table FAMILY NAME { chain NAME { ... } }` blocks
//! and the `add table` / `add chain ... { ... }` / `add rule` command
//! forms; in a chain, `type filter hook HOOK priority P;` makes it a base
//! chain and `policy drop;` its policy; every other statement is a rule.
//! `#` starts a comment outside quotes.
//!
//! - `table`: a table of family `inet`, `ip` or `ip6` exists;
//! - `base_chains` (+ `policy`): each hook has a filter base chain (with
//!   that policy);
//! - `loopback`: an input base chain accepts `iif lo` (or `iifname lo`)
//!   and drops `ip saddr 127.0.0.0/8` and `ip6 saddr ::1`;
//! - `established`: an input base chain accepts `ct state` ... `established`.

use super::{Ctx, Outcome};
use plumb_core::check::{NftSource, NftablesCheck};

const MAX_DEPTH: usize = 16;

#[derive(Debug, Default, Clone)]
struct Chain {
    family: String,
    table: String,
    name: String,
    hook: Option<String>,
    ty: Option<String>,
    policy: Option<String>,
    rules: Vec<(String, String)>,
    at: String,
}

#[derive(Debug, Default)]
pub(crate) struct Ruleset {
    tables: Vec<(String, String, String)>,
    chains: Vec<Chain>,
}

impl Ruleset {
    fn chain_mut(&mut self, family: &str, table: &str, name: &str, at: &str) -> &mut Chain {
        let i = match self
            .chains
            .iter()
            .position(|c| c.family == family && c.table == table && c.name == name)
        {
            Some(i) => i,
            None => {
                self.chains.push(Chain {
                    family: family.into(),
                    table: table.into(),
                    name: name.into(),
                    at: at.into(),
                    ..Chain::default()
                });
                self.chains.len() - 1
            }
        };
        &mut self.chains[i]
    }

    fn add_table(&mut self, family: &str, name: &str, at: &str) {
        if !self.tables.iter().any(|(f, n, _)| f == family && n == name) {
            self.tables.push((family.into(), name.into(), at.into()));
        }
    }
}

/// A token with the location of the line it starts on.
#[derive(Debug, Clone)]
struct Tok {
    text: String,
    at: String,
}

/// Splits nft source into words, `{`, `}`, and `;` (newlines become `;`).
fn tokenize(lines: &[(String, String)]) -> Vec<Tok> {
    let mut out = Vec::new();
    for (line, at) in lines {
        let mut cur = String::new();
        let mut quoted = false;
        let push = |cur: &mut String, out: &mut Vec<Tok>| {
            if !cur.is_empty() {
                out.push(Tok {
                    text: std::mem::take(cur),
                    at: at.clone(),
                });
            }
        };
        let mut continued = false;
        let trimmed = line.trim_end();
        let body = match trimmed.strip_suffix('\\') {
            Some(b) => {
                continued = true;
                b
            }
            None => trimmed,
        };
        for c in body.chars() {
            match c {
                '"' => {
                    quoted = !quoted;
                }
                '#' if !quoted => break,
                '{' | '}' | ';' if !quoted => {
                    push(&mut cur, &mut out);
                    out.push(Tok {
                        text: c.to_string(),
                        at: at.clone(),
                    });
                }
                c if c.is_whitespace() && !quoted => push(&mut cur, &mut out),
                c => cur.push(c),
            }
        }
        push(&mut cur, &mut out);
        if !continued {
            out.push(Tok {
                text: ";".into(),
                at: at.clone(),
            });
        }
    }
    out
}

/// Reads `path` and its includes into `(line, file:line)` pairs.
fn read_lines(
    ctx: &Ctx,
    path: &str,
    depth: usize,
    out: &mut Vec<(String, String)>,
    notes: &mut Vec<String>,
) -> Result<(), Outcome> {
    if depth > MAX_DEPTH {
        notes.push(format!("{path}: includes nested too deep, not read"));
        return Ok(());
    }
    let text = ctx
        .fs
        .read_text(path)
        .map_err(|e| Outcome::read_error(&e))?;
    for (n, line) in text.numbered() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("include") {
            let target = rest.trim().trim_end_matches(';').trim().trim_matches('"');
            if !target.is_empty() && rest.starts_with(char::is_whitespace) {
                let full = if target.starts_with('/') {
                    target.to_string()
                } else {
                    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
                    format!("{dir}/{target}")
                };
                let files = ctx
                    .fs
                    .glob(&full)
                    .map_err(|e| Outcome::error(format!("cannot list {full}: {e}")))?;
                if files.is_empty() && !crate::rootfs::has_glob_chars(&full) {
                    notes.push(format!(
                        "{full} (included at {}) does not exist",
                        text.at(n)
                    ));
                }
                for f in files {
                    read_lines(ctx, &f, depth + 1, out, notes)?;
                }
                continue;
            }
        }
        out.push((line.to_string(), text.at(n)));
    }
    Ok(())
}

/// Statements of a token stream, each `(words, location, opens_block)`.
fn parse(toks: &[Tok]) -> Ruleset {
    let mut rs = Ruleset::default();
    // Context stack: ("table", family, name) or ("chain", ...).
    let mut ctx_stack: Vec<(String, String, String)> = Vec::new();
    let mut words: Vec<&Tok> = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let t = &toks[i];
        i += 1;
        match t.text.as_str() {
            "{" => {
                let w: Vec<&str> = words.iter().map(|t| t.text.as_str()).collect();
                let at = words.first().map_or(t.at.clone(), |t| t.at.clone());
                let w: &[&str] = match w.first() {
                    Some(&"add" | &"create") => &w[1..],
                    _ => &w[..],
                };
                match w {
                    ["table", family, name] => {
                        rs.add_table(family, name, &at);
                        ctx_stack.push(("table".into(), family.to_string(), name.to_string()));
                    }
                    ["table", name] => {
                        rs.add_table("ip", name, &at);
                        ctx_stack.push(("table".into(), "ip".into(), name.to_string()));
                    }
                    ["chain", name] => {
                        let (f, tb) = ctx_stack
                            .last()
                            .map(|(_, f, n)| (f.clone(), n.clone()))
                            .unwrap_or_default();
                        rs.chain_mut(&f, &tb, name, &at);
                        ctx_stack.push(("chain".into(), format!("{f} {tb}"), name.to_string()));
                    }
                    ["chain", family, table, name] => {
                        rs.chain_mut(family, table, name, &at);
                        ctx_stack.push((
                            "chain".into(),
                            format!("{family} {table}"),
                            name.to_string(),
                        ));
                    }
                    ["chain", table, name] => {
                        rs.chain_mut("ip", table, name, &at);
                        ctx_stack.push(("chain".into(), format!("ip {table}"), name.to_string()));
                    }
                    _ => ctx_stack.push(("other".into(), String::new(), String::new())),
                }
                words.clear();
            }
            ";" | "}" => {
                if !words.is_empty() {
                    statement(&mut rs, &ctx_stack, &words);
                    words.clear();
                }
                if t.text == "}" {
                    ctx_stack.pop();
                }
            }
            _ => words.push(t),
        }
    }
    rs
}

/// One statement outside a block opener.
fn statement(rs: &mut Ruleset, stack: &[(String, String, String)], words: &[&Tok]) {
    let at = words[0].at.clone();
    let w: Vec<&str> = words.iter().map(|t| t.text.as_str()).collect();
    if let Some((kind, ft, name)) = stack.last().filter(|(k, _, _)| k == "chain") {
        let _ = kind;
        let (f, tb) = ft.split_once(' ').unwrap_or(("ip", ft));
        let c = rs.chain_mut(f, tb, name, &at);
        match w.as_slice() {
            ["type", ty, "hook", hook, ..] => {
                c.ty = Some(ty.to_string());
                c.hook = Some(hook.to_string());
            }
            ["policy", p] => c.policy = Some(p.to_string()),
            _ => c.rules.push((w.join(" "), at)),
        }
        return;
    }
    let w: &[&str] = match w.first() {
        Some(&"add" | &"create" | &"insert") => &w[1..],
        _ => &w[..],
    };
    match w {
        ["table", family, name] => rs.add_table(family, name, &at),
        ["rule", family, table, chain, rest @ ..] if !rest.is_empty() => {
            rs.chain_mut(family, table, chain, &at)
                .rules
                .push((rest.join(" "), at.clone()));
        }
        _ => {}
    }
}

/// A test on one rule's text.
type RulePredicate<'a> = dyn Fn(&str) -> bool + 'a;

/// What the check asserts, judged on one ruleset.
fn judge(spec: &NftablesCheck, rs: &Ruleset, source: &str, ev: &mut Vec<String>) -> bool {
    let mut ok = true;
    let fams = ["inet", "ip", "ip6"];
    if spec.table {
        match rs
            .tables
            .iter()
            .find(|(f, _, _)| fams.contains(&f.as_str()))
        {
            Some((f, n, at)) => ev.push(format!("{source}: table {f} {n} ({at})")),
            None => {
                ok = false;
                ev.push(format!("{source}: no inet, ip or ip6 table"));
            }
        }
    }
    let base = |hook: &str| -> Vec<&Chain> {
        rs.chains
            .iter()
            .filter(|c| {
                c.hook.as_deref() == Some(hook)
                    && c.ty.as_deref() == Some("filter")
                    && fams.contains(&c.family.as_str())
            })
            .collect()
    };
    for hook in &spec.base_chains {
        let hook = hook.name();
        let chains = base(hook);
        if chains.is_empty() {
            ok = false;
            ev.push(format!("{source}: no filter base chain on hook {hook}"));
            continue;
        }
        for c in &chains {
            let p = c.policy.as_deref().unwrap_or("accept");
            ev.push(format!(
                "{source}: chain {} {} {} hook {hook} policy {p} ({})",
                c.family, c.table, c.name, c.at
            ));
        }
        if let Some(want) = &spec.policy {
            if !chains
                .iter()
                .any(|c| c.policy.as_deref().unwrap_or("accept") == want)
            {
                ok = false;
                ev.push(format!("{source}: no {hook} base chain has policy {want}"));
            }
        }
    }
    let input = base("input");
    let find = |pred: &dyn Fn(&str) -> bool| -> Option<String> {
        input
            .iter()
            .flat_map(|c| c.rules.iter())
            .find(|(r, _)| pred(&r.replace('"', "")))
            .map(|(r, at)| format!("{r} ({at})"))
    };
    let has = |r: &str, words: &[&str]| {
        let w: Vec<&str> = r.split_whitespace().collect();
        words.iter().all(|x| w.contains(x))
    };
    if spec.loopback {
        let checks: [(&str, &RulePredicate); 3] = [
            ("iif lo accept", &|r: &str| {
                (r.contains("iif lo ") || r.contains("iifname lo ")) && has(r, &["accept"])
            }),
            ("ip saddr 127.0.0.0/8 drop", &|r: &str| {
                r.contains("ip saddr 127.0.0.0/8") && has(r, &["drop"])
            }),
            ("ip6 saddr ::1 drop", &|r: &str| {
                r.contains("ip6 saddr ::1") && has(r, &["drop"])
            }),
        ];
        for (what, pred) in checks {
            match find(pred) {
                Some(r) => ev.push(format!("{source}: {r}")),
                None => {
                    ok = false;
                    ev.push(format!("{source}: no input rule \"{what}\""));
                }
            }
        }
    }
    if spec.established {
        match find(&|r: &str| {
            r.contains("ct state") && r.contains("established") && has(r, &["accept"])
        }) {
            Some(r) => ev.push(format!("{source}: {r}")),
            None => {
                ok = false;
                ev.push(format!(
                    "{source}: no input rule accepting ct state established"
                ));
            }
        }
    }
    ok
}

/// Why the kernel's ruleset cannot be read (the text is the rule's error).
#[derive(Debug, thiserror::Error)]
enum KernelError {
    #[error("cannot run {nft}: {source}")]
    Spawn {
        nft: &'static str,
        source: std::io::Error,
    },
    #[error("{nft} list ruleset failed: {stderr}")]
    Failed { nft: &'static str, stderr: String },
}

/// The kernel's ruleset, when it can be read on this host: `nft` runs
/// once per check run, whatever the number of rules. The error is kept as
/// its text, the rule's error, shared by every rule.
fn kernel(ctx: &Ctx) -> Option<Result<&Ruleset, String>> {
    ctx.nft_kernel
        .get_or_init(|| read_kernel(ctx).map(|r| r.map_err(|e| e.to_string())))
        .as_ref()
        .map(|r| r.as_ref().map_err(Clone::clone))
}

/// `nft list ruleset`, parsed.
fn read_kernel(ctx: &Ctx) -> Option<Result<Ruleset, KernelError>> {
    if ctx.fs.root() != std::path::Path::new("/") || ctx.proc.is_none() {
        return None;
    }
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| std::path::Path::new(p).is_file())?;
    let out = match std::process::Command::new(nft)
        .args(["list", "ruleset"])
        .stdin(std::process::Stdio::null())
        .output()
    {
        Ok(o) => o,
        Err(source) => return Some(Err(KernelError::Spawn { nft, source })),
    };
    if !out.status.success() {
        return Some(Err(KernelError::Failed {
            nft,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        }));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<(String, String)> = text
        .lines()
        .enumerate()
        .map(|(i, l)| (l.to_string(), format!("nft list ruleset:{}", i + 1)))
        .collect();
    Some(Ok(parse(&tokenize(&lines))))
}

/// Evaluates an `nftables` check.
pub fn evaluate(spec: &NftablesCheck, ctx: &Ctx) -> Outcome {
    let mut ev = Vec::new();
    let mut ok = true;
    let mut judged = false;
    if spec.source != NftSource::Kernel {
        if ctx.fs.lstat(&spec.path).is_err() {
            if spec.source == NftSource::Config {
                return Outcome::fail(vec![format!(
                    "{} does not exist: no permanent ruleset",
                    spec.path
                )]);
            }
            ok = false;
            ev.push(format!(
                "{} does not exist: no permanent ruleset",
                spec.path
            ));
        } else {
            let mut lines = Vec::new();
            let mut notes = Vec::new();
            if let Err(o) = read_lines(ctx, &spec.path, 0, &mut lines, &mut notes) {
                return o;
            }
            let rs = parse(&tokenize(&lines));
            ok &= judge(spec, &rs, "config", &mut ev);
            ev.extend(notes);
        }
        judged = true;
    }
    if spec.source != NftSource::Config {
        match kernel(ctx) {
            Some(Ok(rs)) => {
                ok &= judge(spec, rs, "kernel", &mut ev);
                judged = true;
            }
            Some(Err(e)) => return Outcome::error(e),
            None if spec.source == NftSource::Kernel => {
                return Outcome::skipped(
                    "the kernel's ruleset is read only on a live host (root /, proc, nft installed)",
                );
            }
            None => ev.push("kernel ruleset not checked (not a live host with nft)".into()),
        }
    }
    if !judged {
        return Outcome::error("nothing to judge");
    }
    Outcome::verdict(ok, ev)
}

#[cfg(test)]
mod tests {
    use super::*;
    use plumb_core::check::NftHook;
    use plumb_core::report::Status;
    use std::fs;
    use std::path::Path;

    fn put(root: &Path, path: &str, text: &str) {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    fn spec() -> NftablesCheck {
        NftablesCheck {
            source: NftSource::Config,
            path: "/etc/nftables.conf".into(),
            table: false,
            base_chains: vec![],
            policy: None,
            loopback: false,
            established: false,
        }
    }

    const GOOD: &str = r#"table inet filter {
    chain input {
        type filter hook input priority filter; policy drop;
        iif "lo" accept  # loopback
        ip saddr 127.0.0.0/8 counter drop
        ip6 saddr ::1 counter drop
        ct state established,related accept
        tcp dport 22 accept
    }
    chain forward { type filter hook forward priority 0; policy drop; }
}
"#;

    #[test]
    fn includes_are_followed_and_base_chains_judged() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        put(
            r,
            "/etc/nftables.conf",
            "#!/usr/sbin/nft -f\nflush ruleset\ninclude \"/etc/nftables.d/*.nft\"\n",
        );
        put(r, "/etc/nftables.d/10-filter.nft", GOOD);
        put(
            r,
            "/etc/nftables.d/20-out.nft",
            "add chain inet filter output { type filter hook output priority 0 ; policy accept ; }\n",
        );
        let ctx = Ctx::new(r, None);
        let s = NftablesCheck {
            table: true,
            loopback: true,
            established: true,
            ..spec()
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Pass, "{:?}", out.evidence);
        assert_eq!(
            out.evidence[0],
            "config: table inet filter (/etc/nftables.d/10-filter.nft:1)"
        );
        assert_eq!(
            out.evidence[1],
            "config: iif lo accept (/etc/nftables.d/10-filter.nft:4)"
        );
        let s = NftablesCheck {
            base_chains: vec![NftHook::Input, NftHook::Forward, NftHook::Output],
            policy: Some("drop".into()),
            ..spec()
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence.last().unwrap(),
            "config: no output base chain has policy drop"
        );
        put(
            r,
            "/etc/nftables.d/20-out.nft",
            "add chain inet filter output { type filter hook output priority 0 ; policy drop ; }\n",
        );
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
    }

    #[test]
    fn missing_rules_and_files_fail() {
        let t = tempfile::tempdir().unwrap();
        let r = t.path();
        let ctx = Ctx::new(r, None);
        let s = NftablesCheck {
            table: true,
            ..spec()
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert_eq!(
            out.evidence,
            vec!["/etc/nftables.conf does not exist: no permanent ruleset"]
        );
        // Debian's default: a table whose chains accept, no loopback rules.
        put(
            r,
            "/etc/nftables.conf",
            "flush ruleset\ntable inet filter {\n\tchain input {\n\t\ttype filter hook input priority filter;\n\t}\n}\n",
        );
        assert_eq!(evaluate(&s, &ctx).status, Status::Pass);
        let s = NftablesCheck {
            loopback: true,
            base_chains: vec![NftHook::Input],
            policy: Some("drop".into()),
            ..spec()
        };
        let out = evaluate(&s, &ctx);
        assert_eq!(out.status, Status::Fail);
        assert!(
            out.evidence
                .contains(&"config: no input base chain has policy drop".to_string())
        );
        assert!(
            out.evidence
                .contains(&"config: no input rule \"iif lo accept\"".to_string())
        );
        // Kernel source on a non-live root is skipped.
        let s = NftablesCheck {
            source: NftSource::Kernel,
            table: true,
            ..spec()
        };
        assert_eq!(evaluate(&s, &ctx).status, Status::Skipped);
    }
}
