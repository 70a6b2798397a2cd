//! Reading one regular file safely: open relative to its verified parent
//! directory without following links and without blocking, refuse anything
//! that is not the file the walker `lstat`ed, and hash it in large chunks,
//! re-reading when it changes underneath.

use super::entry::{Entry, HashAlg, State};
use super::xattr;
use rustix::fs::{Mode, OFlags, Stat};
use rustix::io::Errno;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::FileExt;

/// Read buffer size; one buffer per worker, reused.
pub const CHUNK: usize = 256 * 1024;

/// Attempts before a file that keeps changing is recorded as unstable.
pub const ATTEMPTS: usize = 3;

/// What a worker should record for one regular file.
#[derive(Debug, Clone, Copy)]
pub struct Want {
    /// Content hash.
    pub hash: Option<HashAlg>,
    /// Extended attributes.
    pub xattrs: bool,
}

/// Opens `name` in `dir` for reading: never follows a symlink, never blocks
/// (a FIFO swapped in would not hang us), never becomes a controlling
/// terminal, and does not update the access time where the kernel lets us.
fn open(dir: &OwnedFd, name: &[u8]) -> Result<OwnedFd, Errno> {
    let base =
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, base | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME needs ownership of the file or CAP_FOWNER.
        Err(Errno::PERM) => rustix::fs::openat(dir, name, base, Mode::empty()),
        r => r,
    }
}

/// Same content generation: size, mtime and ctime unchanged.
fn same(a: &Stat, b: &Stat) -> bool {
    a.st_size == b.st_size
        && a.st_mtime == b.st_mtime
        && a.st_mtime_nsec == b.st_mtime_nsec
        && a.st_ctime == b.st_ctime
        && a.st_ctime_nsec == b.st_ctime_nsec
}

/// Called with each chunk's size before it is read (the daemon's rate cap).
pub type ReadHook<'a> = &'a (dyn Fn(usize) + Sync);

/// Hashes the whole file; returns the digest and the bytes read.
fn digest(
    file: &std::fs::File,
    alg: HashAlg,
    buf: &mut [u8],
    hook: Option<ReadHook<'_>>,
) -> std::io::Result<(Vec<u8>, u64)> {
    let mut ctx = ring::digest::Context::new(alg.ring());
    let mut off: u64 = 0;
    loop {
        if let Some(h) = hook {
            h(buf.len());
        }
        let n = match file.read_at(buf, off) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            break;
        }
        ctx.update(&buf[..n]);
        off += n as u64;
    }
    Ok((ctx.finish().as_ref().to_vec(), off))
}

/// Records a regular file: `e` holds the walker's lstat; `lst` is that lstat.
/// Returns the bytes read (for progress). `hook`, when given, is called
/// before each chunk is read.
pub fn record_file(
    dir: &OwnedFd,
    name: &[u8],
    lst: &Stat,
    want: Want,
    e: &mut Entry,
    buf: &mut [u8],
    hook: Option<ReadHook<'_>>,
) -> u64 {
    let fd = match open(dir, name) {
        Ok(fd) => fd,
        Err(Errno::NOENT) => {
            e.state = State::Error("vanished during the scan".into());
            return 0;
        }
        Err(Errno::LOOP) => {
            e.state = State::Error("replaced by a symlink during the scan; not followed".into());
            return 0;
        }
        Err(err) => {
            e.state = State::Error(format!("cannot open: {err}"));
            return 0;
        }
    };
    let mut st = match rustix::fs::fstat(&fd) {
        Ok(st) => st,
        Err(err) => {
            e.state = State::Error(format!("fstat: {err}"));
            return 0;
        }
    };
    if st.st_dev != lst.st_dev
        || st.st_ino != lst.st_ino
        || super::entry::Kind::of_mode(st.st_mode) != super::entry::Kind::File
    {
        e.state = State::Error(
            "replaced during the scan (not the file that was listed); not read".into(),
        );
        return 0;
    }
    let file = std::fs::File::from(fd);
    let mut read_total = 0u64;
    if let Some(alg) = want.hash {
        let mut done = false;
        for _ in 0..ATTEMPTS {
            let (h, n) = match digest(&file, alg, buf, hook) {
                Ok(x) => x,
                Err(err) => {
                    e.set_stat(&st);
                    e.state = State::Error(format!("read: {err}"));
                    return read_total;
                }
            };
            read_total += n;
            let after = match rustix::fs::fstat(file.as_fd()) {
                Ok(a) => a,
                Err(err) => {
                    e.state = State::Error(format!("fstat: {err}"));
                    return read_total;
                }
            };
            let stable = same(&st, &after) && u64::try_from(after.st_size).ok() == Some(n);
            st = after;
            if stable {
                e.hash = Some((alg, h));
                done = true;
                break;
            }
        }
        e.set_stat(&st);
        if !done {
            e.state = State::Unstable;
            e.hash = None;
        }
    } else {
        e.set_stat(&st);
    }
    if want.xattrs {
        match xattr::of_fd(file.as_fd()) {
            Ok(x) => e.xattrs = Some(x),
            Err(err) => {
                if e.state == State::Ok {
                    e.state = State::Error(err.to_string());
                }
            }
        }
    }
    read_total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fs::AtFlags;
    use std::sync::Arc;

    fn rec(dir: &std::path::Path, name: &str, want: Want) -> Entry {
        let dfd = rustix::fs::open(dir, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let st = rustix::fs::statat(&dfd, name, AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let mut e = Entry::from_stat(format!("/{name}").into_bytes(), Arc::from("/"), &st);
        let mut buf = vec![0u8; CHUNK];
        record_file(&dfd, name.as_bytes(), &st, want, &mut e, &mut buf, None);
        e
    }

    const SHA: Want = Want {
        hash: Some(HashAlg::Sha256),
        xattrs: false,
    };

    #[test]
    fn hashes_match_known_values() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("empty"), "").unwrap();
        std::fs::write(d.path().join("abc"), "abc").unwrap();
        let e = rec(d.path(), "empty", SHA);
        assert_eq!(
            plumb_core::fim::hex(&e.hash.unwrap().1),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let e = rec(d.path(), "abc", SHA);
        assert_eq!(
            plumb_core::fim::hex(&e.hash.unwrap().1),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let e = rec(
            d.path(),
            "abc",
            Want {
                hash: Some(HashAlg::Sha512),
                xattrs: false,
            },
        );
        assert_eq!(e.hash.unwrap().1.len(), 64);
    }

    #[test]
    fn large_files_span_many_chunks() {
        let d = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..(CHUNK * 3 + 17)).map(|i| (i % 251) as u8).collect();
        std::fs::write(d.path().join("big"), &data).unwrap();
        let e = rec(d.path(), "big", SHA);
        let want = ring::digest::digest(&ring::digest::SHA256, &data);
        assert_eq!(e.hash.unwrap().1, want.as_ref());
        assert_eq!(e.size, data.len() as u64);
    }

    #[test]
    fn the_read_hook_sees_every_chunk() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("big"), vec![1u8; CHUNK * 2 + 5]).unwrap();
        let dfd =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let st = rustix::fs::statat(&dfd, "big", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        let mut e = Entry::from_stat(b"/big".to_vec(), Arc::from("/"), &st);
        let mut buf = vec![0u8; CHUNK];
        let calls = AtomicUsize::new(0);
        let hook = |n: usize| {
            assert_eq!(n, CHUNK);
            calls.fetch_add(1, Ordering::Relaxed);
        };
        record_file(&dfd, b"big", &st, SHA, &mut e, &mut buf, Some(&hook));
        assert!(e.hash.is_some());
        // Three chunks of data and the read that finds the end.
        assert_eq!(calls.load(Ordering::Relaxed), 4);
    }

    #[test]
    fn a_file_that_keeps_changing_is_unstable_never_half_hashed() {
        use std::io::Write;
        use std::sync::atomic::{AtomicBool, Ordering};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        std::fs::write(&p, vec![b'x'; 16 << 20]).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = stop.clone();
        let p2 = p.clone();
        let writer = std::thread::spawn(move || {
            let mut f = std::fs::OpenOptions::new().append(true).open(p2).unwrap();
            while !s2.load(Ordering::Relaxed) {
                f.write_all(b"y").unwrap();
            }
        });
        let e = rec(d.path(), "log", SHA);
        stop.store(true, Ordering::Relaxed);
        writer.join().unwrap();
        assert_eq!(e.state, State::Unstable, "{e:?}");
        assert!(e.hash.is_none());
    }

    #[test]
    fn a_file_swapped_after_lstat_is_refused() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), "one").unwrap();
        let dfd =
            rustix::fs::open(d.path(), OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let st = rustix::fs::statat(&dfd, "f", AtFlags::SYMLINK_NOFOLLOW).unwrap();
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::os::unix::net::UnixDatagram::bind(d.path().join("f")).unwrap();
        let mut e = Entry::from_stat(b"/f".to_vec(), Arc::from("/"), &st);
        let mut buf = vec![0u8; CHUNK];
        record_file(&dfd, b"f", &st, SHA, &mut e, &mut buf, None);
        assert!(matches!(e.state, State::Error(_)), "{e:?}");
        assert!(e.hash.is_none());
        // A symlink swapped in is not followed.
        std::fs::remove_file(d.path().join("f")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", d.path().join("f")).unwrap();
        let mut e = Entry::from_stat(b"/f".to_vec(), Arc::from("/"), &st);
        record_file(&dfd, b"f", &st, SHA, &mut e, &mut buf, None);
        assert!(
            matches!(&e.state, State::Error(m) if m.contains("symlink")),
            "{e:?}"
        );
    }
}
