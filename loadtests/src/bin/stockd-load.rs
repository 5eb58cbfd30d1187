//! `stockd-load`: load generators for stockd, the real-data demo, and baselines. See
//! `loadtests::cli` (`stockd-load --help`).

fn main() -> std::process::ExitCode {
    loadtests::cli::main()
}
