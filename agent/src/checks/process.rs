//! `kind = "process"`: is a process with this name running, from
//! `PROC/[pid]/comm`. Also holds the bounded proc-file readers that the
//! other runtime checks of this family (mount, listening) share.

use super::{Ctx, Outcome};
use plumb_core::check::ProcessCheck;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

/// The kernel keeps this many bytes of a process name (TASK_COMM_LEN - 1).
const COMM_LEN: usize = 15;

/// Most pids listed in evidence.
const MAX_PIDS_SHOWN: usize = 10;

/// Opens a file of the proc directory for reading: never blocking, never
/// anything but a regular file (a fake proc tree could hold a FIFO or a
/// device). Symlinks are followed: `/proc/mounts` and `/proc/net` are links
/// into `/proc/self`, and the proc tree is not part of the checked root.
pub(crate) fn open_proc(path: &Path) -> io::Result<File> {
    let before = std::fs::metadata(path)?;
    if !before.file_type().is_file() {
        return Err(io::Error::other(format!(
            "is a {}, not a regular file",
            crate::rootfs::kind_name(&before)
        )));
    }
    let file = File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.file_type().is_file() || meta.ino() != before.ino() || meta.dev() != before.dev() {
        return Err(io::Error::other("file changed while being opened"));
    }
    Ok(file)
}

/// Reads at most `max` bytes of a small proc file (`comm`, ...). Longer
/// content is cut, which is what the caller wants for one-line files.
pub(crate) fn read_proc_small(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_proc(path)?.take(max).read_to_end(&mut buf)?;
    Ok(buf)
}

/// Calls `each(line_number, line)` for every line of a proc file, streaming
/// it so that a large socket table is never held whole in memory. Bytes that
/// are not UTF-8 are replaced. Fails, rather than silently stopping, when the
/// file is longer than `max_bytes`: a cut table would be a guess.
pub(crate) fn for_each_proc_line(
    path: &Path,
    max_bytes: u64,
    mut each: impl FnMut(usize, &str),
) -> io::Result<()> {
    let mut reader = BufReader::new(open_proc(path)?.take(max_bytes.saturating_add(1)));
    let mut buf = Vec::new();
    let mut total: u64 = 0;
    let mut n = 0;
    loop {
        buf.clear();
        let got = reader.read_until(b'\n', &mut buf)?;
        if got == 0 {
            return Ok(());
        }
        total += got as u64;
        if total > max_bytes {
            return Err(io::Error::other(format!(
                "longer than the {max_bytes}-byte limit for proc files a check reads"
            )));
        }
        n += 1;
        let line = String::from_utf8_lossy(&buf);
        each(n, line.trim_end_matches(['\n', '\r']));
    }
}

/// A pid directory name: all ASCII digits.
pub(crate) fn pid_of(name: &std::ffi::OsStr) -> Option<u32> {
    let s = name.to_str()?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Whether an I/O error means "the process went away" (its directory
/// vanished between listing and reading), which is not an error.
pub(crate) fn vanished(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH)
}

/// The name as the kernel would show it in `comm`: cut to 15 bytes.
fn comm_form(name: &str) -> &[u8] {
    let b = name.as_bytes();
    &b[..b.len().min(COMM_LEN)]
}

/// The processes of a proc directory: each pid's `comm`.
#[derive(Debug)]
pub(crate) struct Processes {
    /// `(pid, comm)` without the newline, in directory order.
    comms: Vec<(u32, Vec<u8>)>,
    /// Processes whose `comm` was read.
    scanned: usize,
    /// `comm` files that could not be read, with why.
    unreadable: Vec<String>,
}

/// Reads the `comm` of every process in `proc`.
fn scan(proc: &std::path::Path) -> Result<Processes, Outcome> {
    let entries = match std::fs::read_dir(proc) {
        Ok(e) => e,
        Err(e) => {
            return Err(Outcome::error(format!(
                "cannot list {}: {e}",
                proc.display()
            )));
        }
    };
    let mut out = Processes {
        comms: Vec::new(),
        scanned: 0,
        unreadable: Vec::new(),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                return Err(Outcome::error(format!(
                    "cannot list {}: {e}",
                    proc.display()
                )));
            }
        };
        let Some(pid) = pid_of(&entry.file_name()) else {
            continue;
        };
        let comm_path = entry.path().join("comm");
        match read_proc_small(&comm_path, 64) {
            Ok(bytes) => {
                out.scanned += 1;
                let comm = bytes.strip_suffix(b"\n").unwrap_or(&bytes);
                out.comms.push((pid, comm.to_vec()));
            }
            Err(e) if vanished(&e) => {}
            Err(e) => out.unreadable.push(format!("{}: {e}", comm_path.display())),
        }
    }
    Ok(out)
}

/// Evaluates a `process` check.
pub fn evaluate(spec: &ProcessCheck, ctx: &Ctx) -> Outcome {
    let proc = match ctx.proc_dir() {
        Ok(p) => p,
        Err(skip) => return skip,
    };
    let want = comm_form(&spec.name);
    // One scan of /proc for all process rules of the run.
    let procs = match ctx.processes.get_or_init(|| scan(proc)) {
        Ok(p) => p,
        Err(e) => return e.clone(),
    };
    let (scanned, unreadable) = (procs.scanned, &procs.unreadable);
    let mut pids: Vec<u32> = procs
        .comms
        .iter()
        .filter(|(_, comm)| comm.as_slice() == want)
        .map(|(pid, _)| *pid)
        .collect();
    pids.sort_unstable();
    let name = &spec.name;
    let cut = if want.len() < name.len() {
        format!(
            " (compared as \"{}\", the 15 bytes the kernel keeps)",
            String::from_utf8_lossy(want)
        )
    } else {
        String::new()
    };
    if !pids.is_empty() {
        let shown: Vec<String> = pids
            .iter()
            .take(MAX_PIDS_SHOWN)
            .map(u32::to_string)
            .collect();
        let more = match pids.len().saturating_sub(MAX_PIDS_SHOWN) {
            0 => String::new(),
            n => format!(" and {n} more"),
        };
        let ev = format!(
            "{name} running: pid {}{more}{cut} ({})",
            shown.join(", "),
            proc.display()
        );
        return Outcome::verdict(spec.running, vec![ev]);
    }
    // Nothing matched: only a complete scan can say "not running".
    if !unreadable.is_empty() {
        let mut ev = vec![format!(
            "no readable process named {name}{cut}, but {} process name(s) could not be read",
            unreadable.len()
        )];
        ev.extend(unreadable.iter().take(MAX_PIDS_SHOWN).cloned());
        return Outcome {
            status: plumb_core::report::Status::Error,
            evidence: ev,
        };
    }
    Outcome::verdict(
        !spec.running,
        vec![format!(
            "no process named {name}{cut} ({scanned} processes in {})",
            proc.display()
        )],
    )
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use plumb_core::report::Status;
    use std::path::PathBuf;

    /// Adds a process with this `comm` to a fake proc tree.
    pub(crate) fn fake_process(proc: &Path, pid: u32, comm: &str) {
        let d = proc.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(d.join("comm"), format!("{comm}\n")).unwrap();
    }

    fn check(name: &str, running: bool) -> ProcessCheck {
        ProcessCheck {
            name: name.into(),
            running,
        }
    }

    fn ctx(proc: &Path) -> Ctx {
        let root = tempfile::tempdir().unwrap();
        Ctx::new(root.path().to_path_buf(), Some(proc.to_path_buf()))
    }

    #[test]
    fn finds_running_processes_and_lists_pids() {
        let t = tempfile::tempdir().unwrap();
        fake_process(t.path(), 1, "systemd");
        fake_process(t.path(), 812, "sshd");
        fake_process(t.path(), 90, "sshd");
        fake_process(t.path(), 91, "sshd-session");
        // Not pid directories.
        std::fs::create_dir_all(t.path().join("self")).unwrap();
        std::fs::write(t.path().join("uptime"), "1 1\n").unwrap();
        let c = ctx(t.path());
        let out = evaluate(&check("sshd", true), &c);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].contains("pid 90, 812"), "{out:?}");
        assert_eq!(evaluate(&check("sshd", false), &c).status, Status::Fail);
        let out = evaluate(&check("telnetd", false), &c);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].contains("no process named telnetd (4 processes"));
        assert_eq!(evaluate(&check("telnetd", true), &c).status, Status::Fail);
    }

    #[test]
    fn long_names_compare_as_the_kernel_cuts_them() {
        let t = tempfile::tempdir().unwrap();
        fake_process(t.path(), 300, "systemd-journal");
        let c = ctx(t.path());
        let out = evaluate(&check("systemd-journald", true), &c);
        assert_eq!(out.status, Status::Pass, "{out:?}");
        assert!(out.evidence[0].contains("15 bytes"), "{out:?}");
        // A prefix is not a match.
        assert_eq!(evaluate(&check("systemd", true), &c).status, Status::Fail);
    }

    #[test]
    fn many_pids_are_bounded_in_evidence() {
        let t = tempfile::tempdir().unwrap();
        for pid in 100..130 {
            fake_process(t.path(), pid, "worker");
        }
        let out = evaluate(&check("worker", true), &ctx(t.path()));
        assert!(out.evidence[0].contains("and 20 more"), "{out:?}");
    }

    #[test]
    fn vanished_pid_directories_are_not_errors() {
        let t = tempfile::tempdir().unwrap();
        fake_process(t.path(), 5, "cron");
        // A pid directory whose comm is gone, as when a process exits mid-scan.
        std::fs::create_dir_all(t.path().join("6")).unwrap();
        let out = evaluate(&check("cron", true), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
        let out = evaluate(&check("atd", false), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
    }

    #[test]
    fn unreadable_comm_makes_absence_an_error_not_a_pass() {
        let t = tempfile::tempdir().unwrap();
        fake_process(t.path(), 5, "cron");
        // A comm that is a directory cannot be read (root bypasses modes).
        std::fs::create_dir_all(t.path().join("7/comm")).unwrap();
        let out = evaluate(&check("telnetd", false), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
        // A match is still a match.
        assert_eq!(
            evaluate(&check("cron", true), &ctx(t.path())).status,
            Status::Pass
        );
    }

    #[test]
    fn fifo_comm_is_never_opened() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("9")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("9/comm"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let out = evaluate(&check("x", false), &ctx(t.path()));
        assert_eq!(out.status, Status::Error, "{out:?}");
        assert!(out.evidence[1].contains("fifo"), "{out:?}");
    }

    #[test]
    fn odd_bytes_in_comm_do_not_panic() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("4")).unwrap();
        std::fs::write(t.path().join("4/comm"), b"\xff\xfe\n").unwrap();
        let out = evaluate(&check("x", false), &ctx(t.path()));
        assert_eq!(out.status, Status::Pass, "{out:?}");
    }

    #[test]
    fn no_proc_is_skipped() {
        let root = tempfile::tempdir().unwrap();
        let c = Ctx::new(root.path().to_path_buf(), None);
        assert_eq!(evaluate(&check("sshd", true), &c).status, Status::Skipped);
        let c = Ctx::new(
            root.path().to_path_buf(),
            Some(PathBuf::from("/nonexistent-proc")),
        );
        assert_eq!(evaluate(&check("sshd", true), &c).status, Status::Error);
    }
}
