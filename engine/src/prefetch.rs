//! Loading ahead: read memory a loop will need a few steps later, several objects at once, so
//! that their cache misses overlap instead of following one another.
//!
//! The workspace forbids `unsafe`, so this is no prefetch instruction but a plain read whose
//! value is kept ([`std::hint::black_box`]): the CPU issues the reads of a round together and
//! waits about one miss for all of them. It never changes what the program computes.

/// Reads `value` from memory now (see the module doc).
#[inline(always)]
pub(crate) fn touch<T: Copy>(value: &T) {
    std::hint::black_box(*value);
}
