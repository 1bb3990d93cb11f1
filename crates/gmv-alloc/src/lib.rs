//! The process allocator of every gmv-stream binary (and of the engine
//! benchmark, so that it measures what ships): jemalloc, asked to back its
//! memory with transparent huge pages.
//!
//! Why: the engine's per-event work is two random probes into large tables
//! (the dedup set: hundreds of MB on a busy day; the merchant map). With 4 KiB
//! pages nearly every probe also misses the TLB and walks page tables; with
//! 2 MiB pages it mostly does not. Many Linux hosts only give huge pages to
//! memory that asks for them (`transparent_hugepage/enabled = madvise`), and
//! glibc's allocator does not ask, so this one does (`thp:always`, which makes
//! jemalloc `madvise(MADV_HUGEPAGE)` its mappings). Measured on the criterion
//! `decode_aggregate` benchmark; figures in the README.
//!
//! Link it from a binary with `use gmv_alloc as _;`. The setting can be
//! overridden at run time with the `_RJEM_MALLOC_CONF` environment variable
//! (e.g. `_RJEM_MALLOC_CONF=thp:default` to leave pages to the kernel's policy).
#![deny(missing_docs)]

#[cfg(all(unix, not(target_env = "musl")))]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's start-up options (its `malloc_conf`, under the `_rjem_` prefix
/// that tikv-jemallocator builds it with): a NUL-terminated C string.
#[cfg(all(unix, not(target_env = "musl")))]
#[allow(non_upper_case_globals)]
#[export_name = "_rjem_malloc_conf"]
pub static malloc_conf: &[u8; 11] = b"thp:always\0";

#[cfg(all(test, target_os = "linux", not(target_env = "musl")))]
mod tests {
    /// Bytes of anonymous memory backed by huge pages in this process.
    fn anon_huge_bytes() -> u64 {
        let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
        rollup
            .lines()
            .find_map(|line| line.strip_prefix("AnonHugePages:"))
            .and_then(|kb| kb.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kb| kb * 1024)
    }

    #[test]
    fn large_allocations_get_huge_pages() {
        let policy = std::fs::read_to_string("/sys/kernel/mm/transparent_hugepage/enabled")
            .unwrap_or_default();
        if policy.is_empty() || policy.contains("[never]") {
            eprintln!("skipped: this kernel gives no transparent huge pages ({policy:?})");
            return;
        }
        let before = anon_huge_bytes();
        // 64 MiB, every page touched (as a growing dedup table would be).
        let table = vec![1u8; 64 << 20];
        let after = anon_huge_bytes();
        assert_eq!(table.iter().map(|&b| u64::from(b)).sum::<u64>(), 64 << 20);
        assert!(
            after >= before + (16 << 20),
            "expected at least 16 MiB more of huge pages after touching 64 MiB \
             (before {before}, after {after}): is the malloc_conf symbol read?"
        );
    }
}
