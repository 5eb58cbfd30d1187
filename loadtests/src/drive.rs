//! One scenario against one target, driven one way: an open loop at a rate, a closed loop at
//! a concurrency, or a search for the maximum throughput ([`MaxSearch`]); and the `run`
//! command built on it.

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Serialize, Serializer};
use serde_json::json;

use crate::cluster::Cluster;
use crate::connect::{connect_target, AnyTarget, TargetKind, TargetSettings};
use crate::outputs::{self, NamedRun};
use crate::report;
use crate::run::{self, Mode, RunConfig};
use crate::scenario::{self, FlashSaleReport, Kind, ScenarioConfig, Workload};
pub use crate::soak::Soak;
use crate::soak::{describe_soak, soak_on, SoakSamples};
use crate::stats::RunStats;
use crate::target::{OpError, Target};

/// How every scenario of a command is loaded and measured (from `stockd-load`'s flags).
#[derive(Debug, Clone)]
pub struct LoadSettings {
    /// Measured time (per step when searching for the maximum).
    pub duration: Duration,
    /// Unmeasured time before each measurement.
    pub warmup: Duration,
    /// Holds per frame in `checkout`, as given (1: a hold per request).
    pub frame: usize,
    /// Open loop: requests outstanding beyond which new ones are dropped (and counted).
    pub max_in_flight: u64,
    /// No progress bars or step reports.
    pub quiet: bool,
    /// The workload's settings; each run gets its own tag.
    pub scenario: ScenarioConfig,
    /// How to connect to the targets.
    pub targets: TargetSettings,
    /// Where reports go (`None`: `target/stockd-load/<name>-<time>`).
    pub out: Option<PathBuf>,
    /// Keep statistics per window of this width too (a soak); `None`: only per run.
    pub window: Option<Duration>,
}

impl LoadSettings {
    /// Holds per frame, at least 1 (for rates and table names).
    pub fn frame(&self) -> usize {
        self.frame.max(1)
    }
}

/// How the `run` command drives its scenario, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
pub enum DriveMode {
    /// A fixed arrival rate (`--rate`), latency from the intended send time.
    Open,
    /// A fixed number of outstanding requests (`--concurrency`).
    Closed,
    /// Closed loop at each of a ladder of concurrencies; the best one's run.
    Max,
}

/// How a scenario is driven.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Drive {
    /// Open loop at this many requests per second.
    Open(f64),
    /// Closed loop with this many requests outstanding.
    Closed(usize),
    /// A search for the maximum throughput ([`ladder`]).
    Max,
}

/// One step of a search for the maximum. Serialised as `[concurrency, throughput]`, the
/// record's JSON format.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MaxStep {
    /// Outstanding requests.
    pub concurrency: usize,
    /// Requests per second of the primary operation.
    pub throughput: f64,
}

impl Serialize for MaxStep {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        (self.concurrency, self.throughput).serialize(s)
    }
}

/// A search for the maximum: every step, and the best step's run.
#[derive(Debug, Clone, Serialize)]
pub struct MaxSearch {
    /// Each step, in the order run.
    pub steps: Vec<MaxStep>,
    /// Outstanding requests of the best step.
    pub concurrency: usize,
    /// The best step's statistics.
    pub stats: RunStats,
}

/// What one scenario against one target produced.
#[derive(Debug, Clone, Serialize)]
pub enum RunOutcome {
    /// An open- or closed-loop run.
    Load {
        /// How it was driven, in words.
        mode: String,
        /// Its statistics.
        stats: RunStats,
    },
    /// A search for the maximum.
    Max(MaxSearch),
    /// A flash sale.
    Flash(Box<FlashSaleReport>),
}

impl RunOutcome {
    /// The run's statistics (the best step's for a search).
    pub fn stats(&self) -> &RunStats {
        match self {
            RunOutcome::Load { stats, .. } | RunOutcome::Max(MaxSearch { stats, .. }) => stats,
            RunOutcome::Flash(f) => &f.stats,
        }
    }

    /// Whether a check failed (a flash sale that granted other than exactly its units).
    pub fn failed(&self) -> bool {
        matches!(self, RunOutcome::Flash(f) if !f.exact)
    }
}

/// Why a scenario could not run.
#[derive(Debug)]
pub enum DriveError {
    /// The target could not forget an earlier run.
    Reset {
        /// The target's name.
        target: String,
        /// What went wrong.
        error: OpError,
    },
    /// The target could not load the opening stock.
    LoadStock {
        /// The target's name.
        target: String,
        /// What went wrong.
        error: OpError,
    },
    /// A search for the maximum had no step to run.
    NoStep,
}

impl fmt::Display for DriveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DriveError::Reset { target, error } => write!(f, "{target}: reset: {error}"),
            DriveError::LoadStock { target, error } => {
                write!(f, "{target}: loading stock: {error}")
            }
            DriveError::NoStep => write!(f, "no step ran"),
        }
    }
}

impl std::error::Error for DriveError {}

/// A tag unique to this run: names never collide with an earlier run on the same cluster.
pub fn run_tag(scenario: Kind) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let short = match scenario {
        Kind::Checkout => "c",
        Kind::FlashSale => "f",
        Kind::StoreReads => "s",
    };
    format!("{short}{:x}:", ms % (1 << 40))
}

/// Outstanding requests tried when searching for the maximum throughput (frames of many
/// holds saturate a target at far fewer outstanding requests).
pub fn ladder(frame: usize) -> &'static [usize] {
    if frame > 1 {
        &[1, 2, 4, 8, 16]
    } else {
        &[16, 64, 256, 1_024, 4_096]
    }
}

/// Runs `kind` on `target` as `drive` says; `label` names progress bars and reports.
pub async fn scenario_on(
    target: &AnyTarget,
    kind: Kind,
    load: &LoadSettings,
    drive: Drive,
    label: &str,
) -> Result<RunOutcome, DriveError> {
    match target {
        AnyTarget::Stockd(t) => scenario_generic(t, kind, load, drive, label).await,
        AnyTarget::StockdHttp(t) => scenario_generic(t, kind, load, drive, label).await,
        #[cfg(feature = "baselines")]
        AnyTarget::Redis(t) => scenario_generic(t, kind, load, drive, label).await,
        #[cfg(feature = "baselines")]
        AnyTarget::Postgres(t) => scenario_generic(t, kind, load, drive, label).await,
    }
}

/// Resets the target and loads the workload's opening stock.
async fn prepare<T: Target>(
    target: &T,
    kind: Kind,
    load: &LoadSettings,
    label: &str,
) -> Result<Arc<Workload>, DriveError> {
    let config = ScenarioConfig {
        tag: run_tag(kind),
        ..load.scenario.clone()
    };
    let workload = Arc::new(Workload::new(kind, config));
    target.reset().await.map_err(|error| DriveError::Reset {
        target: target.name(),
        error,
    })?;
    let loading = Instant::now();
    target
        .load_stock(workload.stock())
        .await
        .map_err(|error| DriveError::LoadStock {
            target: target.name(),
            error,
        })?;
    if !load.quiet {
        eprintln!(
            "{label}: loaded {} balances in {:.1} s",
            workload.stock().len(),
            loading.elapsed().as_secs_f64()
        );
    }
    Ok(workload)
}

async fn scenario_generic<T: Target>(
    target: &T,
    kind: Kind,
    load: &LoadSettings,
    drive: Drive,
    label: &str,
) -> Result<RunOutcome, DriveError> {
    let workload = prepare(target, kind, load, label).await?;
    if kind == Kind::FlashSale {
        let report = scenario::flash_sale(target, &workload).await;
        return Ok(RunOutcome::Flash(Box::new(report)));
    }
    let base = RunConfig {
        mode: Mode::Closed { concurrency: 1 },
        duration: load.duration,
        warmup: load.warmup,
        max_in_flight: load.max_in_flight,
        progress: !load.quiet,
        label: label.to_owned(),
        window: load.window,
    };
    let (mode, description) = match drive {
        Drive::Open(rate) => (
            Mode::Open { rate },
            format!("open loop at {} requests/s", report::thousands(rate)),
        ),
        Drive::Closed(concurrency) => (
            Mode::Closed { concurrency },
            format!("closed loop, {concurrency} outstanding"),
        ),
        Drive::Max => {
            let search = max_search(target, &workload, load, &base).await?;
            return Ok(RunOutcome::Max(search));
        }
    };
    let (stats, _) = run::run(target, &workload, &RunConfig { mode, ..base }, 0).await;
    Ok(RunOutcome::Load {
        mode: description,
        stats,
    })
}

/// Closed loop at each concurrency of the [`ladder`]; the best step wins.
async fn max_search<T: Target>(
    target: &T,
    workload: &Arc<Workload>,
    load: &LoadSettings,
    base: &RunConfig,
) -> Result<MaxSearch, DriveError> {
    let mut steps = Vec::new();
    let mut best: Option<(usize, RunStats)> = None;
    let mut next = 0;
    for &c in ladder(load.frame) {
        let config = RunConfig {
            mode: Mode::Closed { concurrency: c },
            label: format!("{} x{c}", base.label),
            ..base.clone()
        };
        let (stats, n) = run::run(target, workload, &config, next).await;
        next = n;
        let throughput = stats.throughput;
        steps.push(MaxStep {
            concurrency: c,
            throughput,
        });
        if !load.quiet {
            eprintln!(
                "{}: {c} outstanding: {} {}/s",
                base.label,
                report::thousands(throughput),
                stats.primary
            );
        }
        // Every step runs: on a noisy machine one flat step says little.
        if best.as_ref().is_none_or(|(_, b)| throughput > b.throughput) {
            best = Some((c, stats));
        }
    }
    let (concurrency, stats) = best.ok_or(DriveError::NoStep)?;
    Ok(MaxSearch {
        steps,
        concurrency,
        stats,
    })
}

/// A run's summary for the terminal and `summary.txt`.
pub fn describe_outcome(target: &str, kind: Kind, o: &RunOutcome) -> String {
    match o {
        RunOutcome::Load { mode, stats } => {
            report::render_run(&format!("{target} {} ({mode})", kind.as_str()), stats)
        }
        RunOutcome::Max(search) => {
            let ladder: Vec<String> = search
                .steps
                .iter()
                .map(|s| format!("{}: {}", s.concurrency, report::thousands(s.throughput)))
                .collect();
            let title = format!(
                "{target} {} (maximum: closed loop, best at {} outstanding)",
                kind.as_str(),
                search.concurrency
            );
            format!(
                "{}  search (outstanding: per second): {}\n",
                report::render_run(&title, &search.stats).trim_end(),
                ladder.join(", ")
            )
        }
        RunOutcome::Flash(f) => format!(
            "{}  flash sale: {} contenders for {} units: granted {}  answers {:?}  after: reserved {} on_hand {} available {}  exact: {}\n",
            report::render_run(&format!("{target} flash-sale"), &f.stats).trim_end(),
            f.contenders,
            f.units,
            f.granted,
            f.outcomes,
            f.reserved_after,
            f.on_hand_after,
            f.available_after,
            if f.exact { "yes" } else { "NO" }
        ),
    }
}

/// The leader's batching counters (Raft entries, writes, most writes per entry), for stockd.
pub async fn batch_stats(target: &AnyTarget) -> Option<String> {
    let reports = target.stockd_client()?.status().await;
    let leader = reports.iter().find_map(|r| {
        r.status
            .as_ref()
            .ok()
            .filter(|s| s.role == protocol::Role::Leader)
    })?;
    let b = &leader.batches;
    Some(format!(
        "leader batching since start: {} writes in {} Raft entries ({:.1} per entry, at most {}), {} shed as busy, {} deadline ticks",
        b.writes,
        b.entries,
        b.writes as f64 / (b.entries.max(1)) as f64,
        b.writes_max,
        b.shed,
        b.ticks
    ))
}

/// What the `run` command runs.
#[derive(Debug, Clone, Copy)]
pub struct RunRequest {
    /// The scenario.
    pub scenario: Kind,
    /// The system under test.
    pub target: TargetKind,
    /// How to drive it.
    pub mode: DriveMode,
    /// Open loop: requests per second.
    pub rate: f64,
    /// Closed loop: outstanding requests.
    pub concurrency: usize,
    /// A soak at `rate` instead of `mode`.
    pub soak: Option<Soak>,
}

/// `run`'s measurement: a soak (with its samples) or one drive of `req.mode`.
async fn drive_run(
    req: &RunRequest,
    target: &AnyTarget,
    load: &LoadSettings,
    cluster: Option<&Cluster>,
    name: &str,
) -> (Result<RunOutcome, DriveError>, SoakSamples) {
    if let Some(soak) = req.soak {
        let label = format!("{name} soak");
        return soak_on(target, req.scenario, load, req.rate, soak, cluster, &label).await;
    }
    let drive = match req.mode {
        DriveMode::Open => Drive::Open(req.rate),
        DriveMode::Closed => Drive::Closed(req.concurrency.max(1)),
        DriveMode::Max => Drive::Max,
    };
    let outcome = scenario_on(target, req.scenario, load, drive, name).await;
    (outcome, SoakSamples::default())
}

/// The `run` command: one scenario against one target, its summary, record and charts.
pub async fn run_command(
    req: RunRequest,
    load: &LoadSettings,
    cluster: Option<&Cluster>,
) -> ExitCode {
    let target = match connect_target(req.target, &load.targets, cluster).await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let name = format!("{}-{}", req.target.as_str(), req.scenario.as_str());
    let (outcome, samples) = drive_run(&req, &target, load, cluster, &name).await;
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            eprintln!("stockd-load: {e}");
            return ExitCode::from(2);
        }
    };
    let batching = batch_stats(&target).await;
    let mut summary = describe_outcome(req.target.as_str(), req.scenario, &outcome);
    if req.soak.is_some() {
        summary.push_str(&describe_soak(outcome.stats(), &samples));
    }
    if let Some(b) = &batching {
        summary.push_str(&format!("  {b}\n"));
    }
    print!("{summary}");
    let dir = outputs::out_dir(load.out.as_deref(), &name);
    let record = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": outputs::machine(),
        "cluster": cluster.map(Cluster::info),
        "scenario": req.scenario,
        "target": req.target,
        "mode": if req.soak.is_some() { json!("Soak") } else { json!(req.mode) },
        "result": outcome,
        "batching": batching,
        "memory": samples.memory,
        "node_pause_ms_per_window": samples.node_pause_ms_per_window(outcome.stats()),
        "node_apply_cpu_ms_per_window": samples.node_apply_cpu_ms_per_window(outcome.stats()),
    });
    let runs = [NamedRun {
        name: &name,
        stats: outcome.stats(),
    }];
    outputs::write_outputs(&dir, &summary, &record, &runs);
    outputs::charts(&dir, &name, &name, &runs);
    eprintln!("reports in {}", dir.display());
    if outcome.failed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_max_search_records_steps_as_pairs_as_before() {
        let step = MaxStep {
            concurrency: 64,
            throughput: 1_500.5,
        };
        assert_eq!(serde_json::to_string(&step).expect("json"), "[64,1500.5]");
    }

    #[test]
    fn the_ladder_is_shorter_for_frames() {
        assert_eq!(ladder(1), &[16, 64, 256, 1_024, 4_096]);
        assert_eq!(ladder(100), &[1, 2, 4, 8, 16]);
    }

    #[test]
    fn run_tags_name_the_scenario() {
        assert!(run_tag(Kind::Checkout).starts_with('c'));
        assert!(run_tag(Kind::FlashSale).starts_with('f'));
        assert!(run_tag(Kind::StoreReads).ends_with(':'));
    }
}
