//! Prefetch hints: ask the CPU to start loading memory a loop will read a few steps later, so
//! that the cache misses of independent objects overlap instead of following one another.
//!
//! Only a hint: it reads nothing, never faults and never changes what the program computes (the
//! tests run the same with or without it). The instruction comes from `safe_arch` (the workspace
//! forbids `unsafe`); on targets without it, [`prefetch`] does nothing.

/// Starts loading the cache line that holds the start of `value`, without waiting for it. Only
/// the address is used: `value` itself is not read.
#[inline(always)]
pub(crate) fn prefetch<T>(value: &T) {
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    ))]
    safe_arch::prefetch_t0(value);
    #[cfg(not(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "sse"
    )))]
    let _ = value;
}
