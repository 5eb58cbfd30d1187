//! `stockctl`: the operators' CLI for stockd (see `client::cli` for the commands, exit statuses
//! and units).

fn main() -> std::process::ExitCode {
    client::cli::main()
}
