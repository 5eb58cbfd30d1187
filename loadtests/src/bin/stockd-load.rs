//! `stockd-load`: load generators for stockd.
//!
//! `stockd-load replay [--data FILE] [--json] [--trace]` replays the Online Retail II order
//! lines through an in-process engine and prints a summary (see `loadtests::retail`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use loadtests::retail::{self, describe, PlanConfig};

/// Default location of the data, relative to the repository root.
const DEFAULT_DATA: &str = "../shared/data/online-retail/online_retail_II_2009-12_2010-11.csv.gz";

#[derive(Parser)]
#[command(name = "stockd-load", about = "Load generators for stockd", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay the Online Retail II order lines through an in-process engine.
    Replay {
        /// The CSV file (gzipped if it ends in .gz).
        #[arg(long, default_value = DEFAULT_DATA)]
        data: PathBuf,
        /// Print the summary as JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Print every batch, request and outcome to stderr (large: ~260,000 lines).
        #[arg(long)]
        trace: bool,
        /// Replenishment target: days of recent average demand (default: the mapping's).
        #[arg(long)]
        cover_days: Option<i64>,
        /// Opening stock: days of the first 28 days' average demand.
        #[arg(long)]
        opening_cover_days: Option<i64>,
        /// Store stock above safety stock: percent of a week of UK demand.
        #[arg(long)]
        store_share_percent: Option<i64>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Replay {
            data,
            json,
            trace,
            cover_days,
            opening_cover_days,
            store_share_percent,
        } => {
            let mut config = PlanConfig::default();
            if let Some(days) = cover_days {
                config.cover_days = days.max(0);
            }
            if let Some(days) = opening_cover_days {
                config.opening_cover_days = days.max(0);
            }
            if let Some(percent) = store_share_percent {
                config.store_share_percent = percent.max(0);
            }
            let tracer = |batch: &retail::Batch, outcomes: &[engine::Outcome]| {
                if !trace {
                    return;
                }
                eprintln!(
                    "batch t={} ({})",
                    batch.timestamp_ms,
                    retail::input::format_datetime_ms(batch.timestamp_ms)
                );
                for (request, outcome) in batch.requests.iter().zip(outcomes) {
                    eprintln!(
                        "  {} -> {}",
                        describe::request(request),
                        describe::outcome(outcome)
                    );
                }
            };
            let replay = match retail::replay_file(&data, config, tracer) {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("stockd-load: {}: {e}", data.display());
                    return ExitCode::from(2);
                }
            };
            let summary = &replay.summary;
            if json {
                match serde_json::to_string_pretty(summary) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("stockd-load: json: {e}");
                        return ExitCode::from(2);
                    }
                }
            } else {
                print!("{}", retail::render(summary));
            }
            for m in &replay.mismatch_samples {
                eprintln!("mismatch: {m}");
            }
            if summary.is_clean() {
                ExitCode::SUCCESS
            } else {
                eprintln!("stockd-load: the replay did not end clean (see checks)");
                ExitCode::FAILURE
            }
        }
    }
}
