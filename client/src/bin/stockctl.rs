//! `stockctl`: the operators' CLI for stockd.
//!
//! `stockctl case FILE...` runs scenario cases (`../shared/cases/FORMAT.md`) against an
//! in-process engine and prints `PASS name` or `FAIL name: line N: expected X, got Y` per case;
//! it exits with status 1 if any case fails, 2 if a file cannot be read.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::case::{run_case, EngineTarget, RunOptions};

#[derive(Parser)]
#[command(name = "stockctl", version, about = "Operate a stockd ledger")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run scenario case files against an in-process engine.
    Case {
        /// `.case` files (see ../shared/cases/FORMAT.md).
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Case { files } => run_cases(&files),
    }
}

fn run_cases(files: &[PathBuf]) -> ExitCode {
    let mut failed = false;
    for file in files {
        let text = match std::fs::read_to_string(file) {
            Ok(text) => text,
            Err(e) => {
                eprintln!("stockctl: cannot read {}: {e}", file.display());
                return ExitCode::from(2);
            }
        };
        let name = file.file_stem().map_or_else(
            || file.display().to_string(),
            |s| s.to_string_lossy().into_owned(),
        );
        let report = run_case(
            &name,
            &text,
            &mut EngineTarget::default(),
            &RunOptions::default(),
        );
        failed |= report.failure.is_some();
        println!("{report}");
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}
