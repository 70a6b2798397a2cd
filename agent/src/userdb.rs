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

/// Parses a passwd line; malformed lines are ignored (accounts checks
/// report them separately).
pub fn parse_passwd(line: &str, n: usize) -> Option<PasswdEntry> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 7 {
        return None;
    }
    Some(PasswdEntry {
        name: f[0].to_string(),
        password: f[1].to_string(),
        uid: f[2].parse().ok()?,
        gid: f[3].parse().ok()?,
        shell: f[6].to_string(),
        line: n,
    })
}

/// Parses a group line.
pub fn parse_group(line: &str, n: usize) -> Option<GroupEntry> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 3 {
        return None;
    }
    Some(GroupEntry {
        name: f[0].to_string(),
        gid: f[2].parse().ok()?,
        line: n,
    })
}

/// Parses a shadow line.
pub fn parse_shadow(line: &str, n: usize) -> Option<ShadowEntry> {
    let f: Vec<&str> = data_line(line)?.split(':').collect();
    if f.len() < 2 {
        return None;
    }
    Some(ShadowEntry {
        name: f[0].to_string(),
        password: f[1].to_string(),
        max_days: f.get(4).and_then(|v| v.trim().parse().ok()),
        line: n,
    })
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
