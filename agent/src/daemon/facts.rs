//! Host facts for snapshots, from `sysinfo`.

use plumb_core::event::HostFacts;
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

/// Collects this host's facts; `hostname` is the agent's host id.
pub fn collect(hostname: &str) -> HostFacts {
    let sys = System::new_with_specifics(
        RefreshKind::nothing()
            .with_memory(MemoryRefreshKind::nothing().with_ram())
            .with_cpu(CpuRefreshKind::nothing()),
    );
    let os = System::long_os_version()
        .or_else(System::name)
        .unwrap_or_else(|| "unknown".into());
    HostFacts {
        hostname: hostname.to_string(),
        os,
        kernel: System::kernel_version().unwrap_or_else(|| "unknown".into()),
        uptime_s: System::uptime(),
        cpus: u32::try_from(sys.cpus().len()).unwrap_or(u32::MAX),
        memory_bytes: sys.total_memory(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn facts_describe_this_host() {
        let f = super::collect("h1");
        assert_eq!(f.hostname, "h1");
        assert!(f.cpus >= 1);
        assert!(f.memory_bytes > 0);
        assert!(!f.kernel.is_empty());
    }
}
