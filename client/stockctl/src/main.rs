//! `stockctl`: the operators' CLI for stockd (see `stockctl::cli` for the commands, exit
//! statuses and units).

fn main() -> std::process::ExitCode {
    stockctl::cli::main()
}
