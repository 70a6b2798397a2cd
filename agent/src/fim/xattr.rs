//! Extended attributes in canonical form: for each name, sorted by bytes,
//! the name, a NUL byte, and the SHA-256 of the value (32 bytes). Never
//! follows a symlink: `flistxattr` on a descriptor the scanner verified, or
//! `llistxattr` on a path.

use rustix::io::Errno;
use std::os::fd::AsFd;
use std::path::Path;

const TRIES: usize = 4;

enum Target<'a, F: AsFd> {
    Fd(F),
    Path(&'a Path),
}

fn list<F: AsFd>(t: &Target<'_, F>) -> Result<Vec<u8>, Errno> {
    for _ in 0..TRIES {
        let n = match t {
            Target::Fd(fd) => rustix::fs::flistxattr_query(fd),
            Target::Path(p) => rustix::fs::llistxattr_query(*p),
        }?;
        if n == 0 {
            return Ok(Vec::new());
        }
        let mut buf = vec![0u8; n];
        let got = match t {
            Target::Fd(fd) => rustix::fs::flistxattr(fd, &mut buf[..]),
            Target::Path(p) => rustix::fs::llistxattr(*p, &mut buf[..]),
        };
        match got {
            Ok(len) => {
                buf.truncate(len);
                return Ok(buf);
            }
            // The list grew between the two calls.
            Err(Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

fn value_hash<F: AsFd>(t: &Target<'_, F>, name: &[u8]) -> Result<Option<[u8; 32]>, Errno> {
    let name = std::ffi::CString::new(name).map_err(|_| Errno::INVAL)?;
    for _ in 0..TRIES {
        let n = match t {
            Target::Fd(fd) => rustix::fs::fgetxattr_query(fd, name.as_c_str()),
            Target::Path(p) => rustix::fs::lgetxattr_query(*p, name.as_c_str()),
        };
        let n = match n {
            Ok(n) => n,
            // Removed since it was listed.
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; n];
        let got = if n == 0 {
            Ok(0)
        } else {
            match t {
                Target::Fd(fd) => rustix::fs::fgetxattr(fd, name.as_c_str(), &mut buf[..]),
                Target::Path(p) => rustix::fs::lgetxattr(*p, name.as_c_str(), &mut buf[..]),
            }
        };
        match got {
            Ok(len) => {
                buf.truncate(len);
                let d = ring::digest::digest(&ring::digest::SHA256, &buf);
                let mut out = [0u8; 32];
                out.copy_from_slice(d.as_ref());
                return Ok(Some(out));
            }
            Err(Errno::RANGE) => continue,
            Err(Errno::NODATA) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
    Err(Errno::RANGE)
}

/// Why a file's extended attributes could not be read.
#[derive(Debug, thiserror::Error)]
pub enum XattrError {
    /// Listing their names failed.
    #[error("xattrs: {0}")]
    List(Errno),
    /// Reading one value failed.
    #[error("xattr {}: {error}", String::from_utf8_lossy(name).escape_debug())]
    Value {
        /// The attribute's name.
        name: Vec<u8>,
        /// Why.
        error: Errno,
    },
}

fn canonical<F: AsFd>(t: Target<'_, F>) -> Result<Vec<u8>, XattrError> {
    let names = match list(&t) {
        Ok(n) => n,
        // No xattr support on this filesystem: an empty set.
        Err(Errno::NOTSUP) => return Ok(Vec::new()),
        Err(e) => return Err(XattrError::List(e)),
    };
    let mut names: Vec<&[u8]> = names.split(|&b| b == 0).filter(|n| !n.is_empty()).collect();
    names.sort_unstable();
    names.dedup();
    let mut out = Vec::with_capacity(names.len() * 48);
    for n in names {
        match value_hash(&t, n) {
            Ok(Some(h)) => {
                out.extend_from_slice(n);
                out.push(0);
                out.extend_from_slice(&h);
            }
            Ok(None) => {}
            Err(error) => {
                return Err(XattrError::Value {
                    name: n.to_vec(),
                    error,
                });
            }
        }
    }
    Ok(out)
}

/// Canonical xattrs of an open file.
pub fn of_fd<F: AsFd>(fd: F) -> Result<Vec<u8>, XattrError> {
    canonical(Target::Fd(fd))
}

/// Canonical xattrs of a path, not following a final symlink.
pub fn of_path(p: &Path) -> Result<Vec<u8>, XattrError> {
    canonical::<std::os::fd::BorrowedFd<'_>>(Target::Path(p))
}

/// Splits a canonical blob into (name, value hash) pairs; malformed tails are ignored.
pub fn parse(blob: &[u8]) -> Vec<(&[u8], &[u8])> {
    let mut out = Vec::new();
    let mut rest = blob;
    while let Some(z) = rest.iter().position(|&b| b == 0) {
        let Some(h) = rest.get(z + 1..z + 33) else {
            break;
        };
        out.push((&rest[..z], h));
        rest = &rest[z + 33..];
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_xattrs_are_recorded_and_hashed() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("f");
        std::fs::write(&f, "x").unwrap();
        let before = of_path(&f).unwrap();
        // ext4, xfs, btrfs and tmpfs (since Linux 6.6) support them: a
        // prerequisite so common fails the test rather than ignoring it.
        if let Err(e) = rustix::fs::lsetxattr(&f, "user.b", b"2", rustix::fs::XattrFlags::empty()) {
            panic!(
                "{}: no user.* xattrs here ({e}): set TMPDIR elsewhere",
                f.display()
            );
        }
        rustix::fs::lsetxattr(&f, "user.a", b"1", rustix::fs::XattrFlags::empty()).unwrap();
        let after = of_path(&f).unwrap();
        assert_ne!(before, after);
        let pairs: Vec<&[u8]> = parse(&after).into_iter().map(|(n, _)| n).collect();
        assert!(pairs.contains(&&b"user.a"[..]) && pairs.contains(&&b"user.b"[..]));
        let file = std::fs::File::open(&f).unwrap();
        assert_eq!(of_fd(&file).unwrap(), after);
        rustix::fs::lsetxattr(&f, "user.a", b"changed", rustix::fs::XattrFlags::empty()).unwrap();
        assert_ne!(of_path(&f).unwrap(), after);
    }
}
