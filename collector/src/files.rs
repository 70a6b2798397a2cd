//! File helpers: atomic writes with explicit modes, and the checks on files
//! the collector trusts (config, keys).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Creates a directory (and parents) with mode 0700 when it does not exist.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = parent.join(format!(".{}.tmp", name.to_string_lossy()));
    let _ = fs::remove_file(&tmp);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        // The umask may have narrowed the mode further; make it exact.
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    fs::rename(&tmp, path)?;
    if let Ok(d) = fs::File::open(parent) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// Writes a secret (private key) atomically with mode 0600.
pub fn write_private(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, 0o600)
}

/// Writes a public file (certificate, CRL) atomically with mode 0644.
pub fn write_public(path: &Path, data: &[u8]) -> io::Result<()> {
    write_atomic(path, data, 0o644)
}

fn refuse(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::PermissionDenied,
        format!("refusing {}: {why}", path.display()),
    )
}

/// A file the collector trusts (config, certificate, CRL) must not be
/// writable by group or others, nor sit in a directory anyone may write
/// to without the sticky bit.
pub fn check_trusted(path: &Path) -> io::Result<()> {
    let meta = fs::metadata(path)?;
    let mode = meta.mode();
    if mode & 0o022 != 0 {
        return Err(refuse(
            path,
            format!(
                "it is writable by group or others (mode {:04o})",
                mode & 0o7777
            ),
        ));
    }
    let parent_mode = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .and_then(|p| fs::metadata(p).ok().map(|m| (p, m.mode())));
    if let Some((parent, pm)) = parent_mode {
        if pm & 0o002 != 0 && pm & 0o1000 == 0 {
            return Err(refuse(
                path,
                format!(
                    "its directory {} is writable by anyone (mode {:04o})",
                    parent.display(),
                    pm & 0o7777
                ),
            ));
        }
    }
    Ok(())
}

/// A private key must pass [`check_trusted`] and not be readable by others.
pub fn check_private_key(path: &Path) -> io::Result<()> {
    check_trusted(path)?;
    let mode = fs::metadata(path)?.mode();
    if mode & 0o007 != 0 {
        return Err(refuse(
            path,
            format!(
                "this private key is accessible to others (mode {:04o}); chmod 0600 it",
                mode & 0o7777
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_and_refusals() {
        let tmp = tempfile::tempdir().unwrap();
        let k = tmp.path().join("k");
        write_private(&k, b"secret").unwrap();
        assert_eq!(fs::metadata(&k).unwrap().mode() & 0o777, 0o600);
        check_private_key(&k).unwrap();
        fs::set_permissions(&k, fs::Permissions::from_mode(0o604)).unwrap();
        let e = check_private_key(&k).unwrap_err().to_string();
        assert!(e.contains("accessible to others"), "{e}");
        fs::set_permissions(&k, fs::Permissions::from_mode(0o666)).unwrap();
        let e = check_trusted(&k).unwrap_err().to_string();
        assert!(e.contains("writable by group or others"), "{e}");
    }
}
