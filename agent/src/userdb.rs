//! The checked root's account databases (`/etc/passwd`, `/etc/group`,
//! `/etc/shadow`). Names are always resolved here, never through the NSS
//! of the host running the check: an image's uid 1000 is not the host's.

use crate::rootfs::{ReadError, RootFs};

/// One `/etc/passwd` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    /// login name
    pub name: String,
    /// password field (`x` when in shadow)
    pub password: String,
    /// user id
    pub uid: u32,
    /// primary group id
    pub gid: u32,
    /// login shell
    pub shell: String,
    /// line in /etc/passwd
    pub line: usize,
}

/// One `/etc/group` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    /// group name
    pub name: String,
    /// group id
    pub gid: u32,
    /// line in /etc/group
    pub line: usize,
}

/// One `/etc/shadow` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowEntry {
    /// login name
    pub name: String,
    /// hashed password, `!`/`*` locked, empty: no password
    pub password: String,
    /// maximum password age in days, if set
    pub max_days: Option<i64>,
    /// line in /etc/shadow
    pub line: usize,
}

/// The checked root's users and groups.
#[derive(Debug, Clone, Default)]
pub struct UserDb {
    /// passwd entries in file order
    pub users: Vec<PasswdEntry>,
    /// group entries in file order
    pub groups: Vec<GroupEntry>,
}

impl UserDb {
    /// Reads passwd and group of the root; a missing file is an empty database.
    pub fn load(fs: &RootFs) -> Result<UserDb, ReadError> {
        let users = match fs.read_text("/etc/passwd") {
            Ok(t) => t
                .numbered()
                .filter_map(|(n, l)| parse_passwd(l, n))
                .collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        let groups = match fs.read_text("/etc/group") {
            Ok(t) => t
                .numbered()
                .filter_map(|(n, l)| parse_group(l, n))
                .collect(),
            Err(e) if e.is_not_found() => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(UserDb { users, groups })
    }

    /// Name of a uid (the first entry wins, as getpwuid does).
    pub fn user_name(&self, uid: u32) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.uid == uid)
            .map(|u| u.name.as_str())
    }

    /// Name of a gid.
    pub fn group_name(&self, gid: u32) -> Option<&str> {
        self.groups
            .iter()
            .find(|g| g.gid == gid)
            .map(|g| g.name.as_str())
    }

    /// uid of a user name, or a numeric string taken as a uid.
    pub fn uid_of(&self, name: &str) -> Option<u32> {
        self.users
            .iter()
            .find(|u| u.name == name)
            .map(|u| u.uid)
            .or_else(|| name.parse().ok())
    }

    /// gid of a group name, or a numeric string taken as a gid.
    pub fn gid_of(&self, name: &str) -> Option<u32> {
        self.groups
            .iter()
            .find(|g| g.name == name)
            .map(|g| g.gid)
            .or_else(|| name.parse().ok())
    }

    /// `name(uid)` or the bare number, for evidence.
    pub fn show_uid(&self, uid: u32) -> String {
        self.user_name(uid)
            .map_or_else(|| uid.to_string(), |n| format!("{n}({uid})"))
    }

    /// `name(gid)` or the bare number, for evidence.
    pub fn show_gid(&self, gid: u32) -> String {
        self.group_name(gid)
            .map_or_else(|| gid.to_string(), |n| format!("{n}({gid})"))
    }
}

fn data_line(line: &str) -> Option<&str> {
    let l = line.trim_end_matches('\r');
    // NIS compat lines (+/-) carry no local account.
    if l.trim().is_empty() || l.starts_with('#') || l.starts_with('+') || l.starts_with('-') {
        None
    } else {
        Some(l)
    }
}

/// A data line of an account file, checked strictly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked<T> {
    /// The entry as the C library would read it, if it can be read at all.
    pub entry: Option<T>,
    /// Why the line does not have the documented form, if it does not.
    pub problem: Option<String>,
}

impl<T> Checked<T> {
    fn ok(entry: T) -> Checked<T> {
        Checked {
            entry: Some(entry),
            problem: None,
        }
    }
    fn bad(entry: Option<T>, why: String) -> Checked<T> {
        Checked {
            entry,
            problem: Some(why),
        }
    }
}

/// Escapes control characters and backslashes so that odd bytes in an
/// account file show in evidence without breaking it.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out
}

/// A UID or GID field that is not a number (the line's problem, reported
/// by the `accounts` checks).
#[derive(Debug, thiserror::Error)]
#[error("{what} \"{}\" is not a number", escape(field))]
struct NotANumber {
    what: &'static str,
    field: String,
}

fn number(field: &str, what: &'static str) -> Result<u32, NotANumber> {
    field.parse().map_err(|_| NotANumber {
        what,
        field: field.to_string(),
    })
}

/// Checks a passwd line: `None` for blank, comment and NIS lines. A line
/// with extra fields still yields its account (glibc reads it), flagged.
pub fn check_passwd(line: &str, n: usize) -> Option<Checked<PasswdEntry>> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 7 {
        return Some(Checked::bad(
            None,
            format!("{} fields, expected 7", f.len()),
        ));
    }
    let (uid, gid) = match (number(f[2], "UID"), number(f[3], "GID")) {
        (Ok(u), Ok(g)) => (u, g),
        (Err(e), _) | (_, Err(e)) => return Some(Checked::bad(None, e.to_string())),
    };
    let entry = PasswdEntry {
        name: f[0].to_string(),
        password: f[1].to_string(),
        uid,
        gid,
        // glibc takes the rest of the line as the shell.
        shell: f[6..].join(":"),
        line: n,
    };
    Some(if f[0].is_empty() {
        Checked::bad(Some(entry), "empty user name".into())
    } else if f.len() > 7 {
        Checked::bad(Some(entry), format!("{} fields, expected 7", f.len()))
    } else {
        Checked::ok(entry)
    })
}

/// Checks a group line (`name:password:GID:members`).
pub fn check_group(line: &str, n: usize) -> Option<Checked<GroupEntry>> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 3 {
        return Some(Checked::bad(
            None,
            format!("{} fields, expected 4", f.len()),
        ));
    }
    let gid = match number(f[2], "GID") {
        Ok(g) => g,
        Err(e) => return Some(Checked::bad(None, e.to_string())),
    };
    let entry = GroupEntry {
        name: f[0].to_string(),
        gid,
        line: n,
    };
    Some(if f[0].is_empty() {
        Checked::bad(Some(entry), "empty group name".into())
    } else if f.len() != 4 {
        Checked::bad(Some(entry), format!("{} fields, expected 4", f.len()))
    } else {
        Checked::ok(entry)
    })
}

/// Checks a shadow line (9 fields; field 5, the maximum age, empty or a
/// number).
pub fn check_shadow(line: &str, n: usize) -> Option<Checked<ShadowEntry>> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 2 {
        return Some(Checked::bad(
            None,
            format!("{} fields, expected 9", f.len()),
        ));
    }
    let max_raw = f.get(4).map_or("", |v| v.trim());
    let max_days = max_raw.parse::<i64>().ok();
    let entry = ShadowEntry {
        name: f[0].to_string(),
        password: f[1].to_string(),
        max_days,
        line: n,
    };
    Some(if f[0].is_empty() {
        Checked::bad(Some(entry), "empty user name".into())
    } else if f.len() != 9 {
        Checked::bad(Some(entry), format!("{} fields, expected 9", f.len()))
    } else if !max_raw.is_empty() && max_days.is_none() {
        Checked::bad(
            Some(entry),
            format!("maximum age \"{}\" is not a number", escape(max_raw)),
        )
    } else {
        Checked::ok(entry)
    })
}

/// Parses a passwd line; malformed lines without a readable account are
/// ignored here (`accounts` checks report them, see [`check_passwd`]).
pub fn parse_passwd(line: &str, n: usize) -> Option<PasswdEntry> {
    check_passwd(line, n)?.entry
}

/// Parses a group line.
pub fn parse_group(line: &str, n: usize) -> Option<GroupEntry> {
    check_group(line, n)?.entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_resolves_in_the_checked_root() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("etc")).unwrap();
        std::fs::write(t.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\n# c\nbroken line\nimg:x:4242:4243::/home/img:/bin/sh\n").unwrap();
        std::fs::write(t.path().join("etc/group"), "root:x:0:\nimg:x:4243:\n").unwrap();
        let db = UserDb::load(&RootFs::new(t.path())).unwrap();
        assert_eq!(db.users.len(), 2);
        assert_eq!(db.uid_of("img"), Some(4242));
        assert_eq!(db.users[1].line, 4);
        assert_eq!(db.show_gid(4243), "img(4243)");
        assert_eq!(db.show_uid(7), "7");
        assert_eq!(db.uid_of("12"), Some(12));
    }
}
