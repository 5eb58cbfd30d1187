//! `stockd-load`: load generators for stockd, the real-data demo, and baselines. See
//! `loadtests::cli` (`stockd-load --help`).

/// mimalloc, as the `stockd` binary: the generator allocates a request, its frame and its
/// answer per call for every target, and on the system allocator its malloc and free took
/// about a seventh of its CPU driving `local` single-SKU reads (docs/BENCHMARKS.md, section
/// "U"), CPU the generator then lacks to keep its rate.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // As `stockd` does: the generator's own stalls would count as the cluster's latency.
    server::memory::no_transparent_huge_pages();
    loadtests::cli::main()
}
