//! The real-data commands: `replay` (the orders through an in-process engine, from the
//! `retail` crate) and `demo` (the same orders through a live cluster, checked against it).

use std::fmt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use retail::{describe, Batch, Dataset, PlanConfig};

use crate::cluster::{Cluster, ClusterChoice};
use crate::cluster_replay::{self, ClusterReplayError, ClusterReplayReport, ReplayOptions};
use crate::stockd::RuntimeKind;

/// What the `replay` command runs.
#[derive(Debug, Clone)]
pub struct EngineReplayRequest {
    /// The CSV file (gzipped if it ends in .gz).
    pub data: PathBuf,
    /// Print the summary as JSON instead of text.
    pub json: bool,
    /// Print every batch, request and outcome to stderr.
    pub trace: bool,
    /// The planner's settings.
    pub config: PlanConfig,
}

/// Prints a batch and its outcomes to stderr (`replay --trace`).
fn trace_batch(batch: &Batch, outcomes: &[engine::Outcome]) {
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
}

/// The `replay` command: the exit code says whether the replay ended clean.
pub fn engine_replay(req: EngineReplayRequest) -> ExitCode {
    let trace = req.trace;
    let tracer = |batch: &Batch, outcomes: &[engine::Outcome]| {
        if trace {
            trace_batch(batch, outcomes);
        }
    };
    let replay = match retail::replay_file(&req.data, req.config, tracer) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("stockd-load: {}: {e}", req.data.display());
            return ExitCode::from(2);
        }
    };
    let summary = &replay.summary;
    if req.json {
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

/// What the `demo` command runs.
#[derive(Debug, Clone)]
pub struct DemoRequest {
    /// The CSV file (gzipped if it ends in .gz).
    pub data: PathBuf,
    /// Data seconds per second (`None`: as fast as the cluster answers).
    pub speed: Option<f64>,
    /// Print the summary as JSON too.
    pub json: bool,
    /// No progress bar.
    pub quiet: bool,
    /// The cluster to replay through.
    pub cluster: ClusterChoice,
}

/// Why the demo's replay did not finish.
#[derive(Debug)]
pub enum DemoError {
    /// The client did not connect.
    Connect(client::ClientError),
    /// Ctrl-C.
    Interrupted,
    /// The replay stopped.
    Replay(ClusterReplayError),
}

impl fmt::Display for DemoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DemoError::Connect(e) => write!(f, "connecting: {e}"),
            DemoError::Interrupted => write!(f, "interrupted"),
            DemoError::Replay(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for DemoError {}

/// Reads and groups the data, saying how long it took.
fn load(data: &Path) -> Option<Dataset> {
    let t0 = Instant::now();
    eprintln!("reading {} ...", data.display());
    let dataset = match retail::input::open(data).and_then(retail::read_lines) {
        Ok(lines) => retail::build(lines),
        Err(e) => {
            eprintln!("stockd-load: {}: {e}", data.display());
            return None;
        }
    };
    let s = &dataset.stats;
    eprintln!(
        "{} order lines, {} invoices, {} SKUs, {} .. {} ({:.1} s)",
        s.lines_used,
        s.invoices_read,
        s.skus,
        s.first_event,
        s.last_event,
        t0.elapsed().as_secs_f64()
    );
    Some(dataset)
}

/// Connects to the cluster and replays; Ctrl-C stops the replay cleanly, so a local cluster
/// still stops and removes its data.
async fn replay_on(
    config: client::ClientConfig,
    input: &str,
    dataset: Dataset,
    options: &ReplayOptions,
) -> Result<ClusterReplayReport, DemoError> {
    let client = client::Client::connect(config)
        .await
        .map_err(DemoError::Connect)?;
    let report = tokio::select! {
        r = cluster_replay::replay(&client, input, dataset, PlanConfig::default(), options) => {
            r.map_err(DemoError::Replay)
        }
        _ = tokio::signal::ctrl_c() => Err(DemoError::Interrupted),
    };
    client.close();
    report
}

/// The `demo` command: the exit code says whether the cluster ended consistent.
pub fn demo(req: DemoRequest) -> ExitCode {
    let t0 = Instant::now();
    let Some(dataset) = load(&req.data) else {
        return ExitCode::from(2);
    };
    let (cluster, runtime) =
        match Cluster::open_with_runtime(req.cluster.clone(), RuntimeKind::Current) {
            Ok(opened) => opened,
            Err(code) => return code,
        };
    let input = req.data.display().to_string();
    let options = ReplayOptions {
        speed: req.speed,
        progress: !req.quiet,
    };
    eprintln!("replaying the orders through the cluster (the catalogue and opening stock load as SKUs first sell) ...");
    let config = cluster.config.clone();
    let result = runtime.block_on(replay_on(config, &input, dataset, &options));
    drop(runtime);
    cluster.stop();
    match result {
        Ok(report) => print_report(&report, t0, req.json),
        Err(e) => {
            eprintln!("stockd-load: replay: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_report(report: &ClusterReplayReport, t0: Instant, json: bool) -> ExitCode {
    println!();
    print!("{}", cluster_replay::render(report));
    println!("total        {:.1} s", t0.elapsed().as_secs_f64());
    if json {
        match serde_json::to_string_pretty(report) {
            Ok(text) => println!("{text}"),
            Err(e) => eprintln!("stockd-load: json: {e}"),
        }
    }
    if report.is_consistent() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
