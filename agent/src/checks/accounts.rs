//! `kind = "accounts"`: invariants of the checked root's account database
//! (`/etc/passwd`, `/etc/shadow`, `/etc/group`, `/etc/login.defs`), read
//! from the root itself, never through the NSS of the host running the check.
//!
//! A malformed line is a finding (`fail`) reported with `file:line`: the
//! invariants cannot be said to hold over lines nobody can read, and an
//! account that the C library still reads from such a line is checked too.

use super::{Ctx, Outcome};
use crate::rootfs::{ReadError, TextFile};
use crate::userdb::{
    Checked, GroupEntry, PasswdEntry, ShadowEntry, check_group, check_passwd, check_shadow, escape,
};
use plumb_core::check::AccountsCheck;
use plumb_core::report::Status;
use std::collections::{BTreeMap, HashMap};

const PASSWD: &str = "/etc/passwd";
const SHADOW: &str = "/etc/shadow";
const GROUP: &str = "/etc/group";
const LOGIN_DEFS: &str = "/etc/login.defs";
const SHELLS: &str = "/etc/shells";

/// What glibc's getusershell() answers when /etc/shells does not exist.
const DEFAULT_SHELLS: [&str; 2] = ["/bin/sh", "/bin/csh"];

/// UID_MIN when login.defs does not set it (shadow-utils' default).
const DEFAULT_UID_MIN: u32 = 1000;

/// System accounts that legitimately have a real shell.
const SHELL_EXEMPT: [&str; 4] = ["root", "sync", "shutdown", "halt"];

/// Shells that refuse an interactive login.
const NOLOGIN_SHELLS: [&str; 4] = [
    "/usr/sbin/nologin",
    "/sbin/nologin",
    "/bin/false",
    "/usr/bin/false",
];

/// What one evaluation observed.
#[derive(Default)]
struct Findings {
    violations: Vec<String>,
    errors: Vec<String>,
    notes: Vec<String>,
}

impl Findings {
    fn outcome(self) -> Outcome {
        let status = if !self.violations.is_empty() {
            // A violation found is a fact even if another part could not be
            // evaluated; the reasons are kept in the evidence.
            Status::Fail
        } else if !self.errors.is_empty() {
            Status::Error
        } else {
            Status::Pass
        };
        let mut evidence = self.violations;
        evidence.extend(self.errors);
        evidence.extend(self.notes);
        Outcome { status, evidence }
    }
}

/// An account file, parsed strictly; `None` when the file does not exist.
fn load<T>(
    ctx: &Ctx,
    path: &str,
    check: fn(&str, usize) -> Option<Checked<T>>,
    f: &mut Findings,
) -> Result<Option<Vec<T>>, ReadError> {
    let text = match ctx.fs.read_text(path) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for (n, line) in text.numbered() {
        let Some(c) = check(line, n) else { continue };
        if let Some(why) = c.problem {
            f.violations
                .push(format!("malformed line: {why} ({})", text.at(n)));
        }
        out.extend(c.entry);
    }
    Ok(Some(out))
}

/// `KEY -> (value, line)` of login.defs; the last assignment wins, as in
/// shadow-utils.
struct LoginDefs {
    text: Option<TextFile>,
    values: HashMap<String, (String, usize)>,
}

impl LoginDefs {
    fn load(ctx: &Ctx, f: &mut Findings) -> Result<LoginDefs, ReadError> {
        let text = match ctx.fs.read_text(LOGIN_DEFS) {
            Ok(t) => t,
            Err(e) if e.is_not_found() => {
                return Ok(LoginDefs {
                    text: None,
                    values: HashMap::new(),
                });
            }
            Err(e) => return Err(e),
        };
        let mut values = HashMap::new();
        for (n, line) in text.numbered() {
            let l = line.trim();
            if l.is_empty() || l.starts_with('#') {
                continue;
            }
            let mut parts = l.splitn(2, char::is_whitespace);
            let key = parts.next().unwrap_or_default();
            let value = parts.next().unwrap_or_default().trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .unwrap_or(value);
            if value.is_empty() {
                f.notes.push(format!(
                    "{} has no value, ignored ({})",
                    escape(key),
                    text.at(n)
                ));
                continue;
            }
            values.insert(key.to_string(), (value.to_string(), n));
        }
        Ok(LoginDefs {
            text: Some(text),
            values,
        })
    }

    fn at(&self, line: usize) -> String {
        self.text
            .as_ref()
            .map_or_else(|| LOGIN_DEFS.to_string(), |t| t.at(line))
    }

    /// The raw value of `key` and where it is set.
    fn get(&self, key: &str) -> Option<(&str, String)> {
        self.values.get(key).map(|(v, n)| (v.as_str(), self.at(*n)))
    }
}

/// Evaluates an `accounts` check.
pub fn evaluate(spec: &AccountsCheck, ctx: &Ctx) -> Outcome {
    let mut f = Findings::default();
    let users = match load(ctx, PASSWD, check_passwd, &mut f) {
        Ok(Some(u)) => u,
        Ok(None) => return Outcome::error(format!("cannot read {PASSWD}: not found")),
        Err(e) => return Outcome::read_error(&e),
    };
    f.notes
        .push(format!("{} accounts in {PASSWD}", users.len()));

    if spec.uid0_only {
        uid0_only(&users, &mut f);
    }
    if spec.no_duplicate_uids {
        duplicate_uids(&users, &mut f);
    }
    let groups = if spec.no_duplicate_names || spec.primary_groups_exist || spec.no_duplicate_gids {
        load_groups(ctx, &mut f)
    } else {
        Groups::Unread
    };
    if spec.no_duplicate_names {
        duplicate_names(&users, &groups, &mut f);
    }
    if spec.primary_groups_exist {
        primary_groups(&users, &groups, &mut f);
    }
    if spec.no_duplicate_gids {
        duplicate_gids(&groups, &mut f);
    }
    let defs = if spec.system_shell_nologin || spec.pass_max_days_max.is_some() {
        match LoginDefs::load(ctx, &mut f) {
            Ok(d) => Some(d),
            Err(e) => {
                f.errors.push(format!("cannot read {e}"));
                None
            }
        }
    } else {
        None
    };
    if spec.system_shell_nologin {
        match &defs {
            Some(d) => shells(d, &users, &mut f),
            None => f
                .errors
                .push("system_shell_nologin: UID_MIN unknown, not evaluated".into()),
        }
    }
    if spec.no_empty_passwords || spec.pass_max_days_max.is_some() || spec.no_login_shell_locked {
        let shadow = load_shadow(ctx, &users, &mut f);
        if spec.no_empty_passwords {
            empty_passwords(&users, shadow.as_deref(), &mut f);
        }
        if let Some(max) = spec.pass_max_days_max {
            pass_max_days(max, defs.as_ref(), &users, shadow.as_deref(), &mut f);
        }
        if spec.no_login_shell_locked {
            match shadow.as_deref() {
                Some(shadow) => nologin_locked(ctx, &users, shadow, &mut f),
                None => f
                    .errors
                    .push("no_login_shell_locked: shadow unknown, not evaluated".into()),
            }
        }
    }
    f.outcome()
}

/// Whether passwd says the password is kept in shadow (as pam_unix decides).
fn shadowed(u: &PasswdEntry) -> bool {
    u.password == "x" || u.password.strip_prefix("##") == Some(u.name.as_str())
}

/// Shadow entries, or `None` (with the reason in `f`) when shadow cannot
/// be read. A missing shadow is an empty one when no account refers to it.
fn load_shadow(ctx: &Ctx, users: &[PasswdEntry], f: &mut Findings) -> Option<Vec<ShadowEntry>> {
    let referring = users.iter().filter(|u| shadowed(u)).count();
    let why = match load(ctx, SHADOW, check_shadow, f) {
        Ok(Some(s)) => return Some(s),
        Ok(None) if referring == 0 => return Some(Vec::new()),
        Ok(None) => format!("{SHADOW}: not found"),
        Err(e) => e.to_string(),
    };
    f.errors.push(format!(
        "cannot read {why}, but {referring} account(s) in {PASSWD} keep their password there"
    ));
    None
}

fn uid0_only(users: &[PasswdEntry], f: &mut Findings) {
    let mut bad = 0;
    for u in users.iter().filter(|u| u.uid == 0 && u.name != "root") {
        bad += 1;
        f.violations.push(format!(
            "{} has UID 0 ({PASSWD}:{})",
            escape(&u.name),
            u.line
        ));
    }
    if bad == 0 {
        f.notes.push("uid0_only: only root has UID 0".into());
    }
}

/// Reports every key shared by more than one item, listing all of them.
fn duplicates<'a, K: Ord, T>(
    items: impl Iterator<Item = &'a T>,
    key: impl Fn(&T) -> K,
    what: impl Fn(&K, &[&T]) -> String,
    f: &mut Findings,
) -> usize
where
    T: 'a,
{
    let mut by: BTreeMap<K, Vec<&T>> = BTreeMap::new();
    for i in items {
        by.entry(key(i)).or_default().push(i);
    }
    let mut n = 0;
    for (k, v) in by.iter().filter(|(_, v)| v.len() > 1) {
        n += 1;
        f.violations.push(what(k, v));
    }
    n
}

fn list_users(v: &[&PasswdEntry]) -> String {
    v.iter()
        .map(|u| format!("{} ({PASSWD}:{})", escape(&u.name), u.line))
        .collect::<Vec<_>>()
        .join(", ")
}

fn duplicate_uids(users: &[PasswdEntry], f: &mut Findings) {
    let n = duplicates(
        users.iter(),
        |u| u.uid,
        |uid, v| format!("UID {uid} is shared by {}", list_users(v)),
        f,
    );
    if n == 0 {
        f.notes
            .push("no_duplicate_uids: every UID belongs to one account".into());
    }
}

/// /etc/group as read for the invariants that need it.
enum Groups {
    /// No invariant asked for it.
    Unread,
    Read(Vec<GroupEntry>),
    Missing,
    /// Unreadable; the reason is already in the findings' errors.
    Failed,
}

fn load_groups(ctx: &Ctx, f: &mut Findings) -> Groups {
    match load(ctx, GROUP, check_group, f) {
        Ok(Some(groups)) => Groups::Read(groups),
        Ok(None) => Groups::Missing,
        Err(e) => {
            f.errors.push(format!("cannot read {e}"));
            Groups::Failed
        }
    }
}

fn list_groups(v: &[&GroupEntry]) -> String {
    v.iter()
        .map(|g| format!("{} ({GROUP}:{})", escape(&g.name), g.line))
        .collect::<Vec<_>>()
        .join(", ")
}

fn duplicate_names(users: &[PasswdEntry], groups: &Groups, f: &mut Findings) {
    let mut n = duplicates(
        users.iter(),
        |u| u.name.clone(),
        |name, v| {
            format!(
                "user name {} appears {} times: {}",
                escape(name),
                v.len(),
                list_users(v)
            )
        },
        f,
    );
    match groups {
        Groups::Read(groups) => {
            n += duplicates(
                groups.iter(),
                |g: &GroupEntry| g.name.clone(),
                |name, v| {
                    let at: Vec<String> = v.iter().map(|g| format!("{GROUP}:{}", g.line)).collect();
                    format!(
                        "group name {} appears {} times ({})",
                        escape(name),
                        v.len(),
                        at.join(", ")
                    )
                },
                f,
            );
        }
        Groups::Missing => f
            .notes
            .push(format!("{GROUP}: not found, no group names to compare")),
        Groups::Unread | Groups::Failed => return,
    }
    if n == 0 {
        f.notes
            .push("no_duplicate_names: user and group names are unique".into());
    }
}

fn primary_groups(users: &[PasswdEntry], groups: &Groups, f: &mut Findings) {
    let known: std::collections::HashSet<u32> = match groups {
        Groups::Read(groups) => groups.iter().map(|g| g.gid).collect(),
        Groups::Missing => std::collections::HashSet::new(),
        Groups::Unread | Groups::Failed => {
            f.errors
                .push("primary_groups_exist: groups unknown, not evaluated".into());
            return;
        }
    };
    let mut bad = 0;
    for u in users.iter().filter(|u| !known.contains(&u.gid)) {
        bad += 1;
        f.violations.push(format!(
            "{} has primary GID {}, which is no group of {GROUP} ({PASSWD}:{})",
            escape(&u.name),
            u.gid,
            u.line
        ));
    }
    if bad == 0 {
        f.notes.push(format!(
            "primary_groups_exist: every primary GID is a group of {GROUP}"
        ));
    }
}

fn duplicate_gids(groups: &Groups, f: &mut Findings) {
    let groups = match groups {
        Groups::Read(groups) => groups,
        Groups::Missing => {
            f.notes
                .push(format!("{GROUP}: not found, no GIDs to compare"));
            return;
        }
        Groups::Unread | Groups::Failed => return,
    };
    let n = duplicates(
        groups.iter(),
        |g: &GroupEntry| g.gid,
        |gid, v| format!("GID {gid} is shared by {}", list_groups(v)),
        f,
    );
    if n == 0 {
        f.notes
            .push("no_duplicate_gids: every GID belongs to one group".into());
    }
}

/// The login shells of /etc/shells: absolute paths whose last component is
/// not `nologin` (the list CIS builds); glibc's default list when the file
/// does not exist.
fn login_shells(ctx: &Ctx, f: &mut Findings) -> Option<Vec<String>> {
    let text = match ctx.fs.read_text(SHELLS) {
        Ok(t) => t,
        Err(e) if e.is_not_found() => {
            f.notes.push(format!(
                "{SHELLS}: not found, the login shells are glibc's default: {}",
                DEFAULT_SHELLS.join(", ")
            ));
            return Some(DEFAULT_SHELLS.iter().map(|s| s.to_string()).collect());
        }
        Err(e) => {
            f.errors.push(format!("cannot read {e}"));
            return None;
        }
    };
    Some(
        text.numbered()
            .map(|(_, l)| l.trim())
            .filter(|l| l.starts_with('/') && l.rsplit('/').next() != Some("nologin"))
            .map(str::to_string)
            .collect(),
    )
}

fn nologin_locked(ctx: &Ctx, users: &[PasswdEntry], shadow: &[ShadowEntry], f: &mut Findings) {
    let Some(login) = login_shells(ctx, f) else {
        f.errors
            .push("no_login_shell_locked: login shells unknown, not evaluated".into());
        return;
    };
    let by_name: HashMap<&str, &ShadowEntry> =
        shadow.iter().map(|s| (s.name.as_str(), s)).collect();
    let mut bad = 0;
    for u in users.iter().filter(|u| u.name != "root") {
        // An empty shell field means /bin/sh to login(1).
        let shell = match u.shell.trim() {
            "" => "/bin/sh",
            s => s,
        };
        if login.iter().any(|l| l == shell) {
            continue;
        }
        let (password, at) = if shadowed(u) {
            match by_name.get(u.name.as_str()) {
                Some(s) => (s.password.as_str(), format!("{SHADOW}:{}", s.line)),
                // pam_unix refuses an account shadow does not know.
                None => continue,
            }
        } else {
            (u.password.as_str(), format!("{PASSWD}:{}", u.line))
        };
        if password.starts_with('!') || password.starts_with('*') {
            continue;
        }
        bad += 1;
        f.violations.push(format!(
            "{} has shell {} (not a login shell) but its password is not locked ({at})",
            escape(&u.name),
            escape(shell)
        ));
    }
    if bad == 0 {
        f.notes
            .push("no_login_shell_locked: every account without a login shell is locked".into());
    }
}

fn shells(defs: &LoginDefs, users: &[PasswdEntry], f: &mut Findings) {
    let uid_min = match defs.get("UID_MIN") {
        Some((v, at)) => match v.parse::<u32>() {
            Ok(n) => {
                f.notes.push(format!("UID_MIN {n} ({at})"));
                n
            }
            Err(_) => {
                // shadow-utils falls back to its default on a bad value.
                f.notes.push(format!(
                    "UID_MIN \"{}\" is not a number, using the default {DEFAULT_UID_MIN} ({at})",
                    escape(v)
                ));
                DEFAULT_UID_MIN
            }
        },
        None => {
            f.notes.push(format!(
                "UID_MIN not set in {LOGIN_DEFS}, using the default {DEFAULT_UID_MIN}"
            ));
            DEFAULT_UID_MIN
        }
    };
    let mut bad = 0;
    for u in users
        .iter()
        .filter(|u| u.uid < uid_min && !SHELL_EXEMPT.contains(&u.name.as_str()))
    {
        let shell = u.shell.trim();
        if NOLOGIN_SHELLS.contains(&shell) {
            continue;
        }
        bad += 1;
        let what = if shell.is_empty() {
            "an empty shell (login uses /bin/sh)".to_string()
        } else {
            format!("shell {}", escape(shell))
        };
        f.violations.push(format!(
            "system account {} (UID {}) has {what} ({PASSWD}:{})",
            escape(&u.name),
            u.uid,
            u.line
        ));
    }
    if bad == 0 {
        f.notes.push(format!(
            "system_shell_nologin: every account below UID {uid_min} has a non-login shell"
        ));
    }
}

fn empty_passwords(users: &[PasswdEntry], shadow: Option<&[ShadowEntry]>, f: &mut Findings) {
    let mut bad = 0;
    // pam_unix uses the passwd field itself unless it is `x`: an empty one
    // means no password whatever shadow holds.
    for u in users.iter().filter(|u| u.password.is_empty()) {
        bad += 1;
        f.violations.push(format!(
            "{} has an empty password field in {PASSWD} ({PASSWD}:{})",
            escape(&u.name),
            u.line
        ));
    }
    let Some(shadow) = shadow else { return };
    for s in shadow.iter().filter(|s| s.password.is_empty()) {
        bad += 1;
        f.violations.push(format!(
            "{} has an empty password ({SHADOW}:{})",
            escape(&s.name),
            s.line
        ));
    }
    if bad == 0 {
        f.notes
            .push("no_empty_passwords: no account has an empty password".into());
    }
}

/// A password that can be used to log in: not empty, not locked.
fn usable(password: &str) -> bool {
    !password.is_empty() && !password.starts_with('!') && !password.starts_with('*')
}

fn pass_max_days(
    max: u32,
    defs: Option<&LoginDefs>,
    users: &[PasswdEntry],
    shadow: Option<&[ShadowEntry]>,
    f: &mut Findings,
) {
    let max = i64::from(max);
    let mut bad = 0;
    match defs.map(|d| d.get("PASS_MAX_DAYS")) {
        None => f
            .errors
            .push("pass_max_days_max: PASS_MAX_DAYS unknown, not evaluated".into()),
        Some(None) => {
            bad += 1;
            f.violations.push(format!(
                "PASS_MAX_DAYS not set in {LOGIN_DEFS} (the default is 99999), more than {max}"
            ));
        }
        Some(Some((v, at))) => match v.parse::<i64>() {
            Ok(n) if (0..=max).contains(&n) => f.notes.push(format!("PASS_MAX_DAYS {n} ({at})")),
            Ok(n) => {
                bad += 1;
                f.violations
                    .push(format!("PASS_MAX_DAYS {n} ({at}), more than {max}"));
            }
            Err(_) => {
                bad += 1;
                f.violations.push(format!(
                    "PASS_MAX_DAYS \"{}\" is not a number ({at})",
                    escape(v)
                ));
            }
        },
    }
    // A hash kept in passwd itself has no ageing at all.
    for u in users.iter().filter(|u| !shadowed(u) && usable(&u.password)) {
        bad += 1;
        f.violations.push(format!(
            "{} keeps its password in {PASSWD}, which has no maximum age ({PASSWD}:{})",
            escape(&u.name),
            u.line
        ));
    }
    let Some(shadow) = shadow else { return };
    for s in shadow.iter().filter(|s| usable(&s.password)) {
        let at = format!("{SHADOW}:{}", s.line);
        match s.max_days {
            Some(d) if (0..=max).contains(&d) => {}
            Some(d) if d >= 0 => {
                bad += 1;
                f.violations.push(format!(
                    "{} has a maximum password age of {d} days, more than {max} ({at})",
                    escape(&s.name)
                ));
            }
            _ => {
                bad += 1;
                f.violations.push(format!(
                    "{} has no maximum password age ({at})",
                    escape(&s.name)
                ));
            }
        }
    }
    if bad == 0 {
        f.notes.push(format!(
            "pass_max_days_max: every password expires within {max} days"
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const PASSWD_OK: &str = "root:x:0:0:root:/root:/bin/bash\n\
        daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n\
        sync:x:4:65534:sync:/bin:/bin/sync\n\
        alice:x:1000:1000::/home/alice:/bin/bash\n";
    const SHADOW_OK: &str = "root:*:19000:0:99999:7:::\n\
        daemon:*:19000:0:99999:7:::\n\
        sync:*:19000:0:99999:7:::\n\
        alice:$6$salt$hash:19000:0:90:7:::\n";
    const GROUP_OK: &str = "root:x:0:\ndaemon:x:1:\nalice:x:1000:\nnogroup:x:65534:\n";
    const SHELLS_OK: &str = "# /etc/shells\n/bin/sh\n/bin/bash\n/usr/bin/bash\n";
    const DEFS_OK: &str =
        "# login.defs\nPASS_MAX_DAYS\t90\n  # PASS_MAX_DAYS 99999\nUID_MIN 1000\n";

    fn root(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let t = tempfile::tempdir().unwrap();
        for (p, c) in files {
            let h = t.path().join(p.trim_start_matches('/'));
            std::fs::create_dir_all(h.parent().unwrap()).unwrap();
            std::fs::write(h, c).unwrap();
        }
        t
    }

    fn good(over: &[(&str, &[u8])]) -> tempfile::TempDir {
        let mut files: Vec<(&str, &[u8])> = vec![
            (PASSWD, PASSWD_OK.as_bytes()),
            (SHADOW, SHADOW_OK.as_bytes()),
            (GROUP, GROUP_OK.as_bytes()),
            (LOGIN_DEFS, DEFS_OK.as_bytes()),
            (SHELLS, SHELLS_OK.as_bytes()),
        ];
        for (p, c) in over {
            files.retain(|(q, _)| q != p);
            files.push((p, c));
        }
        root(&files)
    }

    fn all() -> AccountsCheck {
        AccountsCheck {
            uid0_only: true,
            no_empty_passwords: true,
            no_duplicate_uids: true,
            no_duplicate_names: true,
            system_shell_nologin: true,
            primary_groups_exist: true,
            no_duplicate_gids: true,
            no_login_shell_locked: true,
            pass_max_days_max: Some(90),
        }
    }

    fn none() -> AccountsCheck {
        AccountsCheck {
            uid0_only: false,
            no_empty_passwords: false,
            no_duplicate_uids: false,
            no_duplicate_names: false,
            system_shell_nologin: false,
            primary_groups_exist: false,
            no_duplicate_gids: false,
            no_login_shell_locked: false,
            pass_max_days_max: None,
        }
    }

    fn eval(r: &Path, spec: &AccountsCheck) -> Outcome {
        evaluate(spec, &Ctx::new(r, None))
    }

    fn has(o: &Outcome, s: &str) -> bool {
        o.evidence.iter().any(|e| e.contains(s))
    }

    #[test]
    fn a_clean_database_passes_every_invariant() {
        let t = good(&[]);
        let o = eval(t.path(), &all());
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(has(&o, "PASS_MAX_DAYS 90 (/etc/login.defs:2)"), "{o:?}");
        assert!(has(&o, "only root has UID 0"));
    }

    #[test]
    fn uid0_only() {
        let t = good(&[(
            PASSWD,
            b"root:x:0:0::/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n",
        )]);
        let spec = AccountsCheck {
            uid0_only: true,
            ..none()
        };
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.evidence[0], "toor has UID 0 (/etc/passwd:2)");
        assert_eq!(eval(good(&[]).path(), &spec).status, Status::Pass);
    }

    #[test]
    fn empty_passwords_in_shadow_and_passwd() {
        let spec = AccountsCheck {
            no_empty_passwords: true,
            ..none()
        };
        let t = good(&[(SHADOW, b"root:*:1:0:99999:7:::\nalice::19000:0:90:7:::\n")]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert!(
            has(&o, "alice has an empty password (/etc/shadow:2)"),
            "{o:?}"
        );
        // An empty passwd field means no password, shadow entry or not.
        let t = good(&[(
            PASSWD,
            b"root:x:0:0::/root:/bin/bash\nbob::1001:1001::/:/bin/sh\n",
        )]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert!(has(
            &o,
            "bob has an empty password field in /etc/passwd (/etc/passwd:2)"
        ));
        // Locked and hashed passwords are not empty.
        assert_eq!(eval(good(&[]).path(), &spec).status, Status::Pass);
    }

    #[test]
    fn missing_shadow_is_an_error_when_passwd_refers_to_it() {
        let t = root(&[(PASSWD, PASSWD_OK.as_bytes())]);
        let spec = AccountsCheck {
            no_empty_passwords: true,
            ..none()
        };
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Error, "{o:?}");
        assert!(
            has(&o, "cannot read /etc/shadow: not found, but 4 account(s)"),
            "{o:?}"
        );
        // No account uses shadow: it is not needed.
        let t = root(&[(PASSWD, b"root:*:0:0::/root:/bin/bash\n")]);
        assert_eq!(eval(t.path(), &spec).status, Status::Pass);
        // A violation found in passwd still fails.
        let t = root(&[(
            PASSWD,
            b"root:x:0:0::/root:/bin/bash\nbob::5:5::/:/bin/sh\n",
        )]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert!(has(&o, "cannot read /etc/shadow"));
    }

    #[test]
    fn unreadable_shadow_is_an_error() {
        // A directory cannot be read as a file, even by root.
        let t = good(&[]);
        std::fs::remove_file(t.path().join("etc/shadow")).unwrap();
        std::fs::create_dir(t.path().join("etc/shadow")).unwrap();
        let o = eval(t.path(), &all());
        assert_eq!(o.status, Status::Error, "{o:?}");
        assert!(has(&o, "/etc/shadow: is a directory"), "{o:?}");
    }

    #[test]
    fn duplicate_uids_and_names() {
        let t = good(&[
            (
                PASSWD,
                b"root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/:/bin/sh\nbob:x:1000:1000::/:/bin/sh\nalice:x:1001:1000::/:/bin/sh\n",
            ),
            (GROUP, b"root:x:0:\nstaff:x:50:\nstaff:x:51:\n"),
        ]);
        let o = eval(
            t.path(),
            &AccountsCheck {
                no_duplicate_uids: true,
                ..none()
            },
        );
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.evidence[0],
            "UID 1000 is shared by alice (/etc/passwd:2), bob (/etc/passwd:3)"
        );
        let o = eval(
            t.path(),
            &AccountsCheck {
                no_duplicate_names: true,
                ..none()
            },
        );
        assert_eq!(o.status, Status::Fail);
        assert!(has(
            &o,
            "user name alice appears 2 times: alice (/etc/passwd:2), alice (/etc/passwd:4)"
        ));
        assert!(
            has(
                &o,
                "group name staff appears 2 times (/etc/group:2, /etc/group:3)"
            ),
            "{o:?}"
        );
        let ok = good(&[]);
        for spec in [
            AccountsCheck {
                no_duplicate_uids: true,
                ..none()
            },
            AccountsCheck {
                no_duplicate_names: true,
                ..none()
            },
        ] {
            assert_eq!(eval(ok.path(), &spec).status, Status::Pass);
        }
    }

    #[test]
    fn system_shells() {
        let spec = AccountsCheck {
            system_shell_nologin: true,
            ..none()
        };
        let t = good(&[(
            PASSWD,
            b"root:x:0:0::/root:/bin/bash\nsync:x:4:4::/:/bin/sync\nhalt:x:7:0::/:/sbin/halt\n\
              www:x:33:33::/:/bin/bash\nnews:x:9:9::/:\nfalse:x:10:10::/:/bin/false\n\
              svc:x:1500:1500::/:/bin/bash\n",
        )]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.evidence[..2],
            [
                "system account www (UID 33) has shell /bin/bash (/etc/passwd:4)",
                "system account news (UID 9) has an empty shell (login uses /bin/sh) (/etc/passwd:5)"
            ]
        );
        assert!(has(&o, "UID_MIN 1000 (/etc/login.defs:4)"));
        // UID_MIN from login.defs moves the boundary: svc becomes a system account.
        let t2 = good(&[
            (
                PASSWD,
                b"root:x:0:0::/root:/bin/bash\nsvc:x:1500:1500::/:/bin/bash\n",
            ),
            (LOGIN_DEFS, b"UID_MIN  \"2000\"\n"),
        ]);
        let o = eval(t2.path(), &spec);
        assert_eq!(o.status, Status::Fail, "{o:?}");
        assert!(has(&o, "svc (UID 1500)"));
        // Without login.defs the default 1000 applies.
        std::fs::remove_file(t2.path().join("etc/login.defs")).unwrap();
        let o = eval(t2.path(), &spec);
        assert_eq!(o.status, Status::Pass, "{o:?}");
        assert!(has(
            &o,
            "UID_MIN not set in /etc/login.defs, using the default 1000"
        ));
        assert_eq!(eval(good(&[]).path(), &spec).status, Status::Pass);
    }

    #[test]
    fn pass_max_days() {
        let spec = AccountsCheck {
            pass_max_days_max: Some(90),
            ..none()
        };
        assert_eq!(eval(good(&[]).path(), &spec).status, Status::Pass);
        // Only a commented-out value: unset, and the default is 99999.
        let t = good(&[(LOGIN_DEFS, b"#PASS_MAX_DAYS 30\n")]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert!(has(
            &o,
            "PASS_MAX_DAYS not set in /etc/login.defs (the default is 99999)"
        ));
        // The last assignment wins.
        let t = good(&[(LOGIN_DEFS, b"PASS_MAX_DAYS 30\nPASS_MAX_DAYS 99999\n")]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert!(has(
            &o,
            "PASS_MAX_DAYS 99999 (/etc/login.defs:2), more than 90"
        ));
        // Per account: too long, empty field 5; locked accounts do not count.
        let t = good(&[(
            SHADOW,
            b"root:*:1:0:99999:7:::\nalice:$6$x:1:0:365:7:::\nbob:$6$y:1:0::7:::\ncarol:!$6$z:1:0::7:::\n",
        )]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.evidence[..2],
            [
                "alice has a maximum password age of 365 days, more than 90 (/etc/shadow:2)",
                "bob has no maximum password age (/etc/shadow:3)"
            ]
        );
        assert!(!has(&o, "carol"));
    }

    #[test]
    fn malformed_lines_and_odd_bytes_are_reported_not_fatal() {
        let t = good(&[
            (
                PASSWD,
                b"root:x:0:0::/root:/bin/bash\nbroken line\nx\xff\x01y:x:12:12::/:/bin/sh\nevil:x:0:0::/:/bin/sh:extra\nnum:x:abc:1::/:/bin/sh\n",
            ),
            (SHADOW, b"root:*:1:0:90:7:::\nshort:$6$x\nodd:$6$x:1:0:ninety:7:::\n"),
        ]);
        let o = eval(t.path(), &all());
        assert_eq!(o.status, Status::Fail);
        assert!(
            has(&o, "malformed line: 1 fields, expected 7 (/etc/passwd:2)"),
            "{o:?}"
        );
        assert!(has(
            &o,
            "malformed line: 8 fields, expected 7 (/etc/passwd:4)"
        ));
        assert!(has(
            &o,
            "malformed line: UID \"abc\" is not a number (/etc/passwd:5)"
        ));
        assert!(has(
            &o,
            "malformed line: 2 fields, expected 9 (/etc/shadow:2)"
        ));
        assert!(has(
            &o,
            "maximum age \"ninety\" is not a number (/etc/shadow:3)"
        ));
        // The extra-field line still holds a UID 0 account, and it is reported.
        assert!(has(&o, "evil has UID 0 (/etc/passwd:4)"));
        // Odd bytes are escaped, not dropped.
        assert!(has(&o, "system account x\u{fffd}\\u{1}y (UID 12)"), "{o:?}");
    }

    #[test]
    fn missing_passwd_is_an_error() {
        let t = root(&[]);
        let o = eval(t.path(), &all());
        assert_eq!(o.status, Status::Error);
        assert_eq!(o.evidence, ["cannot read /etc/passwd: not found"]);
    }

    #[test]
    fn reads_the_checked_root_not_the_host() {
        // The host has root at UID 0 and no `toor`; this root differs.
        let t = good(&[(PASSWD, b"toor:x:0:0::/root:/bin/bash\n")]);
        let o = eval(
            t.path(),
            &AccountsCheck {
                uid0_only: true,
                ..none()
            },
        );
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.evidence[0], "toor has UID 0 (/etc/passwd:1)");
    }

    #[test]
    fn primary_groups_and_duplicate_gids() {
        let t = good(&[
            (
                PASSWD,
                b"root:x:0:0::/root:/bin/bash\nalice:x:1000:1000::/:/bin/sh\nbob:x:1001:4242::/:/bin/sh\n",
            ),
            (GROUP, b"root:x:0:\nalice:x:1000:\nstaff:x:50:\nwheel:x:50:\n"),
        ]);
        let groups = AccountsCheck {
            primary_groups_exist: true,
            ..none()
        };
        let o = eval(t.path(), &groups);
        assert_eq!(o.status, Status::Fail, "{o:?}");
        assert_eq!(
            o.evidence[0],
            "bob has primary GID 4242, which is no group of /etc/group (/etc/passwd:3)"
        );
        assert_eq!(o.evidence.len(), 2, "{o:?}");
        let gids = AccountsCheck {
            no_duplicate_gids: true,
            ..none()
        };
        let o = eval(t.path(), &gids);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(
            o.evidence[0],
            "GID 50 is shared by staff (/etc/group:3), wheel (/etc/group:4)"
        );
        // No /etc/group: every primary group is missing, no GID is shared.
        let t = root(&[(PASSWD, PASSWD_OK.as_bytes())]);
        let o = eval(t.path(), &groups);
        assert_eq!(o.status, Status::Fail);
        assert_eq!(o.evidence.len(), 5, "{o:?}");
        assert_eq!(eval(t.path(), &gids).status, Status::Pass);
        // An unreadable /etc/group is an error, not a pass.
        let t = good(&[]);
        std::fs::remove_file(t.path().join("etc/group")).unwrap();
        std::fs::create_dir(t.path().join("etc/group")).unwrap();
        for spec in [&groups, &gids] {
            assert_eq!(eval(t.path(), spec).status, Status::Error);
        }
        let ok = good(&[]);
        assert_eq!(eval(ok.path(), &groups).status, Status::Pass);
        assert_eq!(eval(ok.path(), &gids).status, Status::Pass);
    }

    #[test]
    fn accounts_without_a_login_shell_are_locked() {
        let spec = AccountsCheck {
            no_login_shell_locked: true,
            ..none()
        };
        let t = good(&[
            (
                PASSWD,
                b"root:x:0:0::/root:/usr/sbin/nologin\n\
                  daemon:x:1:1::/:/usr/sbin/nologin\n\
                  svc:x:2:2::/:/usr/sbin/nologin\n\
                  old:$6$inpasswd:3:3::/:/bin/false\n\
                  ghost:x:4:4::/:/bin/false\n\
                  alice:x:1000:1000::/:/bin/bash\n\
                  empty:x:1001:1001::/:\n",
            ),
            (
                SHADOW,
                b"root:$6$r:1::::::\ndaemon:*:1::::::\nsvc:$6$h:1::::::\nalice:$6$a:1::::::\nempty:$6$e:1::::::\n",
            ),
        ]);
        let o = eval(t.path(), &spec);
        assert_eq!(o.status, Status::Fail, "{o:?}");
        assert_eq!(
            o.evidence[..2],
            [
                "svc has shell /usr/sbin/nologin (not a login shell) but its password is not locked (/etc/shadow:3)",
                "old has shell /bin/false (not a login shell) but its password is not locked (/etc/passwd:4)",
            ],
            "root is exempt, ghost has no shadow entry, an empty shell is /bin/sh"
        );
        // Without /etc/shells the login shells are glibc's: /bin/bash is not one.
        std::fs::remove_file(t.path().join("etc/shells")).unwrap();
        let o = eval(t.path(), &spec);
        assert!(
            has(&o, "alice has shell /bin/bash (not a login shell)"),
            "{o:?}"
        );
        assert!(!has(&o, "empty has shell"), "{o:?}");
        assert!(has(&o, "glibc's default"), "{o:?}");
        assert_eq!(eval(good(&[]).path(), &spec).status, Status::Pass);
    }
}
