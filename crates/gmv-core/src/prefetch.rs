//! A cache prefetch hint, for batches that know a few events ahead which
//! memory they will probe (see `Worker::process_each`).

/// Asks the CPU to start loading the cache line at `ptr`. Only a hint: it
/// reads nothing architecturally, never faults (a stale or dangling address
/// is fine), and is a no-op on targets without one.
#[inline(always)]
pub(crate) fn prefetch<T>(ptr: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: PREFETCHT0 performs no architectural memory access and cannot
    // fault, whatever the address (Intel SDM, "PREFETCHh"); SSE, which it
    // needs, is part of the x86_64 baseline.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(ptr.cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = ptr;
}
