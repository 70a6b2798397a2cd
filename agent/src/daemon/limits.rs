//! Never harm the host: a hashing rate cap shared by every FIM reader, and
//! the process's CPU and I/O priority.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A token bucket over bytes read for hashing. Readers call [`take`] with
/// each chunk's size and sleep when they run ahead of the rate. Shared by
/// all hashing threads, so the cap holds for the agent as a whole.
///
/// [`take`]: RateLimiter::take
#[derive(Debug)]
pub struct RateLimiter {
    /// Bytes per second; 0 means no cap.
    rate: u64,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    /// Bytes that may be read now without waiting (negative: owed).
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A cap of `mb_per_s` megabytes (10^6 bytes) per second; 0: unlimited.
    pub fn new(mb_per_s: u64) -> RateLimiter {
        RateLimiter::bytes_per_s(mb_per_s.saturating_mul(1_000_000))
    }

    /// A cap in bytes per second; 0: unlimited.
    pub fn bytes_per_s(rate: u64) -> RateLimiter {
        RateLimiter {
            rate,
            state: Mutex::new(Bucket {
                tokens: 0.0,
                at: Instant::now(),
            }),
        }
    }

    /// The cap in bytes per second (0: none).
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// Accounts for `bytes` about to be read; blocks until the rate allows it.
    pub fn take(&self, bytes: u64) {
        if let Some(wait) = self.reserve(bytes) {
            std::thread::sleep(wait);
        }
    }

    /// Reserves `bytes` and returns how long the caller must wait first.
    fn reserve(&self, bytes: u64) -> Option<Duration> {
        if self.rate == 0 || bytes == 0 {
            return None;
        }
        let rate = self.rate as f64;
        let Ok(mut b) = self.state.lock() else {
            // A poisoned lock means a hashing thread panicked; keep
            // limiting conservatively by charging the full time.
            return Some(Duration::from_secs_f64(bytes as f64 / rate));
        };
        let now = Instant::now();
        // At most a quarter second of burst.
        let burst = rate / 4.0;
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(burst);
        b.at = now;
        b.tokens -= bytes as f64;
        if b.tokens >= 0.0 {
            None
        } else {
            Some(Duration::from_secs_f64(-b.tokens / rate))
        }
    }
}

/// Lowers the process's CPU priority to `nice` and, when `io_idle`, puts its
/// I/O in the idle class. Failures are returned as messages (the agent warns
/// and carries on: systemd's `Nice=` and `IOSchedulingClass=idle` in the
/// shipped unit do the same job).
pub fn lower_priority(nice: i32, io_idle: bool) -> Vec<String> {
    let mut problems = Vec::new();
    if nice != 0 {
        if let Err(e) = sys::set_nice(nice) {
            problems.push(format!("cannot set CPU nice {nice}: {e}"));
        }
    }
    if io_idle {
        if let Err(e) = sys::set_io_idle() {
            problems.push(format!("cannot set the idle I/O class: {e}"));
        }
    }
    problems
}

/// The only unsafe code in the agent: two syscalls nix does not wrap.
/// Keeps the heap small for a process that runs for years: glibc gives each
/// thread that allocates its own arena (up to eight per core), and memory
/// freed in one is kept for reuse there. Call before any thread starts.
pub fn limit_heap_arenas() {
    sys::limit_arenas(2);
}

/// Returns the heap's free memory to the kernel: after a pass hashing
/// thousands of files, glibc keeps its peak otherwise, and the agent would
/// idle at that size.
pub fn release_free_memory() {
    sys::trim();
}

#[allow(unsafe_code)]
mod sys {
    /// mallopt(M_ARENA_MAX, n); only glibc has it.
    pub fn limit_arenas(n: i32) {
        #[cfg(target_env = "gnu")]
        // SAFETY: mallopt takes integers only; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, n);
        }
        #[cfg(not(target_env = "gnu"))]
        let _ = n;
    }

    /// malloc_trim(0); only glibc has it.
    pub fn trim() {
        #[cfg(target_env = "gnu")]
        // SAFETY: malloc_trim takes an integer and only releases free pages.
        unsafe {
            libc::malloc_trim(0);
        }
    }

    /// setpriority(PRIO_PROCESS, 0, nice) for the whole process.
    pub fn set_nice(nice: i32) -> std::io::Result<()> {
        // SAFETY: setpriority takes integers only and touches no memory of ours.
        let r = unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, nice) };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }

    /// ioprio_set(IOPRIO_WHO_PROCESS, 0, IOPRIO_CLASS_IDLE): the kernel ABI
    /// (linux/ioprio.h) has no libc wrapper.
    pub fn set_io_idle() -> std::io::Result<()> {
        const IOPRIO_WHO_PROCESS: libc::c_long = 1;
        const IOPRIO_CLASS_IDLE: libc::c_long = 3;
        const IOPRIO_CLASS_SHIFT: libc::c_long = 13;
        // SAFETY: ioprio_set takes integers only and touches no memory of ours.
        let r = unsafe {
            libc::syscall(
                libc::SYS_ioprio_set,
                IOPRIO_WHO_PROCESS,
                0 as libc::c_long,
                IOPRIO_CLASS_IDLE << IOPRIO_CLASS_SHIFT,
            )
        };
        if r == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlimited_never_waits() {
        let r = RateLimiter::new(0);
        assert_eq!(r.reserve(u64::MAX), None);
    }

    #[test]
    fn the_rate_cap_holds() {
        // 4 MB/s: reading 2 MB in 64 KiB chunks takes about half a second.
        let r = RateLimiter::bytes_per_s(4_000_000);
        let start = Instant::now();
        let mut done = 0u64;
        while done < 2_000_000 {
            r.take(65_536);
            done += 65_536;
        }
        let t = start.elapsed().as_secs_f64();
        assert!(t >= 0.45, "2 MB at 4 MB/s took {t}s");
        assert!(t < 1.5, "{t}s");
    }

    #[test]
    fn the_cap_is_shared_by_threads() {
        let r = std::sync::Arc::new(RateLimiter::bytes_per_s(4_000_000));
        let start = Instant::now();
        let hs: Vec<_> = (0..4)
            .map(|_| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for _ in 0..8 {
                        r.take(65_536);
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        // 2 MiB over 4 threads, still about half a second in all.
        assert!(start.elapsed().as_secs_f64() >= 0.25);
    }
}
