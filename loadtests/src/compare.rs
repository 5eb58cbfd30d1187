//! The `compare` command: every scenario against every target in turn, in [`Phase`]s, then a
//! side-by-side table, the record and the charts.

use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde_json::json;

use crate::cluster::Cluster;
use crate::connect::{connect_target, AnyTarget, TargetKind};
use crate::drive::{batch_stats, describe_outcome, scenario_on, Drive, LoadSettings, RunOutcome};
use crate::outputs::{self, NamedRun};
use crate::report::{self, Table};
use crate::scenario::Kind;
use crate::stats::LatencySummary;

/// One measurement of a scenario on every target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The maximum throughput (a search).
    Max,
    /// An open loop at a fixed rate right after the maximum, for the sustain time: half of
    /// the first target's maximum, unless given.
    Rate,
    /// An open loop at [`LOW_LOAD_PER_S`] checkouts per second (one hold per frame only).
    #[serde(rename = "low-load")]
    LowLoad,
    /// A flash sale's burst.
    Burst,
}

/// Checkouts per second of the low-load phase (SPEC section 5: reservation p99 < 1 ms there).
pub const LOW_LOAD_PER_S: f64 = 1_000.0;

impl Phase {
    /// The phase's name in labels, file names and the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Max => "max",
            Phase::Rate => "rate",
            Phase::LowLoad => "low-load",
            Phase::Burst => "burst",
        }
    }

    /// A scenario's phases, in order.
    pub fn of(scenario: Kind) -> &'static [Phase] {
        match scenario {
            Kind::Checkout => &[Phase::Max, Phase::Rate, Phase::LowLoad],
            Kind::FlashSale => &[Phase::Burst],
            Kind::StoreReads => &[Phase::Max],
        }
    }

    /// How the phase drives its scenario; `None` for a fixed rate that is not known yet.
    fn drive(self, rate: Option<f64>) -> Option<Drive> {
        match self {
            Phase::Max | Phase::Burst => Some(Drive::Max),
            Phase::Rate => rate.map(Drive::Open),
            Phase::LowLoad => Some(Drive::Open(LOW_LOAD_PER_S)),
        }
    }
}

/// One target's result in a phase.
#[derive(Debug, Clone)]
pub struct TargetRun {
    /// The target.
    pub target: TargetKind,
    /// What it produced.
    pub outcome: RunOutcome,
    /// The nodes' own longest pause during the run (stockd's fixed-rate phase only; `None`
    /// elsewhere, or when no node answered).
    pub node_pause: Option<NodePause>,
}

/// One phase of one scenario, on every target that ran it.
#[derive(Debug, Clone)]
pub struct PhaseResult {
    /// The scenario.
    pub scenario: Kind,
    /// The phase.
    pub phase: Phase,
    /// Each target's result, in the order of `--targets`.
    pub runs: Vec<TargetRun>,
}

/// What the `compare` command runs.
#[derive(Debug, Clone)]
pub struct CompareRequest {
    /// Scenarios, in order.
    pub scenarios: Vec<Kind>,
    /// Targets, in order (the first is the reference of the ratios).
    pub targets: Vec<TargetKind>,
    /// Fixed rate of the checkout's open-loop phase (`None`: half of the first target's
    /// maximum).
    pub rate: Option<f64>,
    /// Measured time of that phase.
    pub sustain: Duration,
}

/// The connected targets; those that fail to connect are skipped with a message.
async fn connect_all(
    kinds: &[TargetKind],
    load: &LoadSettings,
    cluster: Option<&Cluster>,
) -> Vec<(TargetKind, AnyTarget)> {
    let mut targets = Vec::new();
    for &kind in kinds {
        match connect_target(kind, &load.targets, cluster).await {
            Ok(t) => targets.push((kind, t)),
            Err(e) => eprintln!("stockd-load: skipping {}: {e}", kind.as_str()),
        }
    }
    targets
}

/// Every phase of every scenario on every target; the fixed rate found along the way; and
/// whether anything failed.
struct Measured {
    results: Vec<PhaseResult>,
    rate: Option<f64>,
    failed: bool,
}

async fn measure(
    req: &CompareRequest,
    targets: &[(TargetKind, AnyTarget)],
    load: &LoadSettings,
) -> Measured {
    let mut m = Measured {
        results: Vec::new(),
        rate: req.rate,
        failed: false,
    };
    for &scenario in &req.scenarios {
        for &phase in Phase::of(scenario) {
            // Low load means a hold per request: frames of many make it another measurement.
            if phase == Phase::LowLoad && load.frame() > 1 {
                continue;
            }
            let phase_load = match phase {
                Phase::Rate => LoadSettings {
                    duration: req.sustain,
                    ..load.clone()
                },
                _ => load.clone(),
            };
            let mut runs = Vec::new();
            for (kind, target) in targets {
                let Some(drive) = phase.drive(m.rate) else {
                    continue;
                };
                let label = format!("{}-{}-{}", kind.as_str(), scenario.as_str(), phase.as_str());
                match scenario_on(target, scenario, &phase_load, drive, &label).await {
                    Ok(outcome) => {
                        print!("{}", describe_outcome(kind.as_str(), scenario, &outcome));
                        m.failed |= outcome.failed();
                        let node_pause = match phase {
                            Phase::Rate => read_node_pause(target, &outcome).await,
                            _ => None,
                        };
                        runs.push(TargetRun {
                            target: *kind,
                            outcome,
                            node_pause,
                        });
                    }
                    Err(e) => {
                        eprintln!("stockd-load: {label}: {e}");
                        m.failed = true;
                    }
                }
            }
            // The fixed rate: half of the first target's (stockd's) maximum.
            if scenario == Kind::Checkout && phase == Phase::Max && m.rate.is_none() {
                m.rate = runs
                    .first()
                    .map(|r| r.outcome.stats().throughput / 2.0 / load.frame() as f64);
            }
            m.results.push(PhaseResult {
                scenario,
                phase,
                runs,
            });
        }
    }
    m
}

/// The `compare` command.
pub async fn compare_command(
    req: &CompareRequest,
    load: &LoadSettings,
    cluster: Option<&Cluster>,
) -> ExitCode {
    let targets = connect_all(&req.targets, load, cluster).await;
    if targets.is_empty() {
        eprintln!("stockd-load: no target to compare");
        return ExitCode::from(2);
    }
    let names: Vec<String> = targets.iter().map(|(k, _)| k.as_str().to_owned()).collect();
    let m = measure(req, &targets, load).await;
    let table = compare_table(&names, &m.results, load.frame());
    let memory = cluster.map(Cluster::memory).unwrap_or_default();
    let mut summary = String::new();
    for r in &m.results {
        for run in &r.runs {
            let who = format!("{} [{}]", run.target.as_str(), r.phase.as_str());
            summary.push_str(&describe_outcome(&who, r.scenario, &run.outcome));
            if let Some(p) = run.node_pause {
                summary.push_str(&format!(
                    "{who}: longest pause {:.2} {}\n",
                    p.pause_us as f64 / 1_000.0,
                    p.source.unit()
                ));
            }
        }
    }
    for (kind, target) in &targets {
        if let Some(b) = batch_stats(target).await {
            summary.push_str(&format!("{}: {b}\n", kind.as_str()));
        }
    }
    summary.push('\n');
    summary.push_str(&table.render());
    println!();
    print!("{}", table.render());
    let context = json!({
        "cluster": cluster.map(Cluster::info),
        "memory_at_end": memory,
    });
    write_reports(&names, &m, &table, &summary, load, context);
    if m.failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A phase's chart title.
fn title(r: &PhaseResult, rate: Option<f64>, frame: usize) -> String {
    match (r.scenario, r.phase) {
        (Kind::Checkout, Phase::Max) => "checkout at maximum throughput".to_owned(),
        (Kind::Checkout, Phase::LowLoad) => format!(
            "checkout at {} checkouts/s (low load)",
            report::thousands(LOW_LOAD_PER_S)
        ),
        (Kind::Checkout, _) => format!(
            "checkout at {} reservations/s",
            report::thousands(rate.unwrap_or(0.0) * frame as f64)
        ),
        (Kind::FlashSale, _) => "flash sale".to_owned(),
        (Kind::StoreReads, _) => "store reads (50 SKUs each) at maximum throughput".to_owned(),
    }
}

/// `record.json`, `summary.txt`, the histograms and a pair of charts per phase.
fn write_reports(
    names: &[String],
    m: &Measured,
    table: &Table,
    summary: &str,
    load: &LoadSettings,
    context: serde_json::Value,
) {
    let dir = outputs::out_dir(load.out.as_deref(), "compare");
    let record = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": outputs::machine(),
        "cluster": context["cluster"],
        "memory_at_end": context["memory_at_end"],
        "targets": names,
        "results": m.results.iter().map(|r| json!({
            "scenario": r.scenario, "phase": r.phase,
            "runs": r.runs.iter().map(|run| json!({
                "target": run.target, "result": run.outcome,
                "node_pause_us": run.node_pause.map(|p| p.pause_us),
                "node_pause_source": run.node_pause.map(|p| p.source.unit()),
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "table": table,
    });
    // File names: `<scenario>-<phase>-<target>`; chart series: the target.
    let mut files: Vec<(String, &RunOutcome)> = Vec::new();
    for r in &m.results {
        let name = format!("{}-{}", r.scenario.as_str(), r.phase.as_str());
        let group: Vec<NamedRun<'_>> = r
            .runs
            .iter()
            .map(|run| NamedRun {
                name: run.target.as_str(),
                stats: run.outcome.stats(),
            })
            .collect();
        outputs::charts(&dir, &name, &title(r, m.rate, load.frame()), &group);
        for run in &r.runs {
            files.push((format!("{name}-{}", run.target.as_str()), &run.outcome));
        }
    }
    let runs: Vec<NamedRun<'_>> = files
        .iter()
        .map(|(name, o)| NamedRun {
            name,
            stats: o.stats(),
        })
        .collect();
    outputs::write_outputs(&dir, summary, &record, &runs);
    eprintln!("reports in {}", dir.display());
}

/// The table row group's name of a phase.
fn row_name(r: &PhaseResult, frame: usize) -> String {
    match (r.scenario, r.phase) {
        (Kind::Checkout, Phase::Max) if frame > 1 => format!("checkout max, {frame}/frame"),
        (Kind::Checkout, Phase::Max) => "checkout max".to_owned(),
        (Kind::Checkout, Phase::LowLoad) => "checkout low-load".to_owned(),
        (Kind::Checkout, _) => "checkout fixed rate".to_owned(),
        (Kind::FlashSale, _) => "flash-sale".to_owned(),
        (Kind::StoreReads, _) => "store-reads max".to_owned(),
    }
}

/// One value per target column (in `names` order) from a phase's runs.
fn column(
    names: &[String],
    r: &PhaseResult,
    f: impl Fn(&RunOutcome) -> Option<f64>,
) -> Vec<Option<f64>> {
    names
        .iter()
        .map(|n| {
            r.runs
                .iter()
                .find(|run| run.target.as_str() == n)
                .and_then(|run| f(&run.outcome))
        })
        .collect()
}

/// A latency row of the table: its label and the percentile it shows.
struct PercentileRow {
    label: &'static str,
    of: fn(&LatencySummary) -> f64,
}

/// The latency rows under each throughput row.
const PERCENTILE_ROWS: [PercentileRow; 3] = [
    PercentileRow {
        label: "p50",
        of: |l| l.p50_us,
    },
    PercentileRow {
        label: "p99",
        of: |l| l.p99_us,
    },
    PercentileRow {
        label: "p99.9",
        of: |l| l.p999_us,
    },
];

/// A percentile of the primary operation's latency, ms.
fn percentile_ms(o: &RunOutcome, q: fn(&LatencySummary) -> f64) -> Option<f64> {
    let s = o.stats();
    s.op(&s.primary).map(|op| q(&op.latency) / 1_000.0)
}

/// What a `longest pause` figure measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PauseSource {
    /// The longest gap between two consecutive completions the generator saw during the
    /// fixed-rate phase: a pause of the target, but also of the generator or the network.
    GeneratorGap,
    /// The longest time any node's ledger was write-locked (apply pause) or a read waited for
    /// it, as the nodes report per second (`NodeStatus::pauses.recent`), over the seconds that
    /// overlap the fixed-rate phase's measured time.
    Node,
    /// As [`PauseSource::Node`], but since the nodes started: the phase was longer than the
    /// seconds a node reports ([`protocol::PAUSE_SECONDS_REPORTED`]), so the maximum phase
    /// before it counts too.
    NodeSinceStart,
}

impl PauseSource {
    /// The row's unit, saying what was measured.
    pub fn unit(self) -> &'static str {
        match self {
            PauseSource::GeneratorGap => {
                "ms; the generator's longest gap between completions, fixed-rate phase"
            }
            PauseSource::Node => {
                "ms; stockd: the nodes' longest apply pause or read wait, fixed-rate phase; \
                 others: the generator's longest gap between completions"
            }
            PauseSource::NodeSinceStart => {
                "ms; stockd: the nodes' longest apply pause or read wait SINCE THEY STARTED \
                 (the fixed-rate phase outlasted their per-second report); others: the \
                 generator's longest gap between completions"
            }
        }
    }
}

/// The nodes' longest pause over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodePause {
    /// The longest apply pause or read wait, µs.
    pub pause_us: u64,
    /// Over the window's seconds ([`PauseSource::Node`]) or since the nodes started
    /// ([`PauseSource::NodeSinceStart`]).
    pub source: PauseSource,
}

/// A span of wall-clock time, ms since the Unix epoch (the nodes' clocks are taken to agree
/// with the generator's: true of a local cluster).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PauseWindow {
    /// When the measured run began.
    pub start_ms: u64,
    /// When the statuses were read (after the run).
    pub end_ms: u64,
}

/// The longest apply pause or read wait of any node in the seconds that overlap `window`
/// (`recent`); when the window is longer than the seconds a node reports (less the oldest,
/// partial one), the maximum since the nodes started instead. `pauses`: each node's
/// `NodeStatus::pauses`, read at `window.end_ms`. `None` without any.
pub fn node_pause(pauses: &[protocol::PauseStats], window: PauseWindow) -> Option<NodePause> {
    if pauses.is_empty() {
        return None;
    }
    let reported_ms = (protocol::PAUSE_SECONDS_REPORTED as u64).saturating_sub(1) * 1_000;
    if window.end_ms.saturating_sub(window.start_ms) > reported_ms {
        let pause_us = pauses
            .iter()
            .map(|p| p.apply_pause_max_us.max(p.read_wait_max_us))
            .max()
            .unwrap_or(0);
        return Some(NodePause {
            pause_us,
            source: PauseSource::NodeSinceStart,
        });
    }
    let pause_us = pauses
        .iter()
        .flat_map(|p| &p.recent)
        .filter(|second| {
            second.start_ms + 1_000 > window.start_ms && second.start_ms < window.end_ms
        })
        .map(|second| second.apply_pause_max_us.max(second.read_wait_max_us))
        .max()
        .unwrap_or(0);
    Some(NodePause {
        pause_us,
        source: PauseSource::Node,
    })
}

/// Now, ms since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Right after a run on stockd: every node's status, and their longest pause over the run's
/// measured time (which ended just now). `None` for another target or if no node answered.
async fn read_node_pause(target: &AnyTarget, outcome: &RunOutcome) -> Option<NodePause> {
    let client = target.stockd_client()?;
    let ran_ms = (outcome.stats().seconds.max(0.0) * 1_000.0).ceil() as u64;
    let start_ms = now_ms().saturating_sub(ran_ms);
    let pauses: Vec<protocol::PauseStats> = client
        .status()
        .await
        .into_iter()
        .filter_map(|r| r.status.ok().map(|s| s.pauses))
        .collect();
    let window = PauseWindow {
        start_ms,
        end_ms: now_ms(),
    };
    node_pause(&pauses, window)
}

/// The longest pause of a target during a fixed-rate run, ms, and what measures it: the
/// nodes' own figure when they gave one (stockd), else the generator's longest gap between
/// completions (Redis, Postgres), which is then the column to compare with.
pub fn longest_pause(run: &TargetRun) -> (f64, PauseSource) {
    match run.node_pause {
        Some(p) => (p.pause_us as f64 / 1_000.0, p.source),
        None => (
            run.outcome.stats().longest_gap_us / 1_000.0,
            PauseSource::GeneratorGap,
        ),
    }
}

/// Rows of one phase: throughput, then the latency percentiles.
fn phase_rows(t: &mut Table, names: &[String], r: &PhaseResult, frame: usize) {
    let name = row_name(r, frame);
    let unit = if r.scenario == Kind::StoreReads {
        "reads/s"
    } else {
        "reservations/s"
    };
    t.row(
        &name,
        unit,
        true,
        column(names, r, |o| Some(o.stats().throughput)),
    );
    for p in PERCENTILE_ROWS {
        let values = column(names, r, |o| percentile_ms(o, p.of));
        t.row(&format!("{name} {}", p.label), "ms", false, values);
    }
}

/// The side-by-side table: throughput and latency percentiles per phase, flash sales' grants;
/// then the rows added later, so the earlier rows keep their places: the low-load phase and
/// the `longest pause` of the fixed-rate phase.
pub fn compare_table(names: &[String], results: &[PhaseResult], frame: usize) -> Table {
    let mut t = Table::new(names.to_vec());
    for r in results.iter().filter(|r| r.phase != Phase::LowLoad) {
        phase_rows(&mut t, names, r, frame);
        if r.scenario == Kind::FlashSale {
            let granted = column(names, r, |o| match o {
                RunOutcome::Flash(f) => Some(f.granted as f64),
                _ => None,
            });
            t.row(
                &format!("{} granted", row_name(r, frame)),
                "holds",
                true,
                granted,
            );
        }
    }
    for r in results.iter().filter(|r| r.phase == Phase::LowLoad) {
        phase_rows(&mut t, names, r, frame);
    }
    let rate = results
        .iter()
        .find(|r| r.scenario == Kind::Checkout && r.phase == Phase::Rate);
    if let Some(r) = rate {
        let source = r.runs.first().map(|run| longest_pause(run).1);
        let values = names
            .iter()
            .map(|n| {
                r.runs
                    .iter()
                    .find(|run| run.target.as_str() == n)
                    .map(|run| longest_pause(run).0)
            })
            .collect();
        let unit = source.unwrap_or(PauseSource::GeneratorGap).unit();
        t.row("longest pause", unit, false, values);
    }
    t
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::drive::{MaxSearch, MaxStep};
    use crate::stats::{OpStats, RunStats};

    fn stats(throughput: f64, p50_us: f64) -> RunStats {
        RunStats {
            seconds: 1.0,
            primary: "reserve".to_owned(),
            throughput,
            ops: vec![OpStats {
                op: "reserve".to_owned(),
                latency: LatencySummary {
                    p50_us,
                    p99_us: 2.0 * p50_us,
                    p999_us: 3.0 * p50_us,
                    ..LatencySummary::default()
                },
                per_second: throughput,
                outcomes: BTreeMap::new(),
                curve: Vec::new(),
            }],
            lateness: None,
            dropped: 0,
            timeline_bucket_ms: 100,
            timeline: Vec::new(),
            histograms: BTreeMap::new(),
            longest_gap_us: 0.0,
            windows: Vec::new(),
        }
    }

    fn max(target: TargetKind, throughput: f64, p50_us: f64) -> TargetRun {
        TargetRun {
            target,
            outcome: RunOutcome::Max(MaxSearch {
                steps: vec![MaxStep {
                    concurrency: 16,
                    throughput,
                }],
                concurrency: 16,
                stats: stats(throughput, p50_us),
            }),
            node_pause: None,
        }
    }

    #[test]
    fn phases_are_named_and_ordered_per_scenario() {
        assert_eq!(
            Phase::of(Kind::Checkout),
            &[Phase::Max, Phase::Rate, Phase::LowLoad]
        );
        assert_eq!(Phase::LowLoad.drive(None), Some(Drive::Open(1_000.0)));
        assert_eq!(Phase::of(Kind::FlashSale), &[Phase::Burst]);
        assert_eq!(Phase::Rate.drive(None), None, "no rate yet: skipped");
        assert_eq!(Phase::Rate.drive(Some(5.0)), Some(Drive::Open(5.0)));
        assert_eq!(Phase::Burst.drive(None), Some(Drive::Max));
        let phases = [Phase::Max, Phase::Rate, Phase::LowLoad, Phase::Burst];
        let json = serde_json::to_value(phases).expect("json");
        assert_eq!(
            json,
            serde_json::json!(["max", "rate", "low-load", "burst"])
        );
    }

    #[test]
    fn the_table_has_a_throughput_and_three_latency_rows_per_phase_in_column_order() {
        let names = vec!["stockd".to_owned(), "redis".to_owned()];
        // Runs listed out of column order, and postgres (no column) ignored.
        let results = vec![PhaseResult {
            scenario: Kind::Checkout,
            phase: Phase::Max,
            runs: vec![
                max(TargetKind::Redis, 100.0, 4_000.0),
                max(TargetKind::Postgres, 50.0, 9_000.0),
                max(TargetKind::Stockd, 400.0, 1_000.0),
            ],
        }];
        let t = compare_table(&names, &results, 4);
        let labels: Vec<&str> = t.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "checkout max, 4/frame",
                "checkout max, 4/frame p50",
                "checkout max, 4/frame p99",
                "checkout max, 4/frame p99.9"
            ]
        );
        let values = |row: usize| -> Vec<Option<f64>> {
            t.rows[row].cells.iter().map(|c| c.value).collect()
        };
        assert_eq!(values(0), [Some(400.0), Some(100.0)]);
        assert_eq!(values(1), [Some(1.0), Some(4.0)]);
        assert_eq!(values(3), [Some(3.0), Some(12.0)]);
    }

    fn open(target: TargetKind, throughput: f64, p50_us: f64, gap_us: f64) -> TargetRun {
        TargetRun {
            target,
            outcome: RunOutcome::Load {
                mode: "open loop".to_owned(),
                stats: RunStats {
                    longest_gap_us: gap_us,
                    ..stats(throughput, p50_us)
                },
            },
            node_pause: None,
        }
    }

    #[test]
    fn low_load_and_longest_pause_rows_come_after_the_earlier_rows() {
        let names = vec!["stockd".to_owned(), "redis".to_owned()];
        let phase = |phase, runs| PhaseResult {
            scenario: Kind::Checkout,
            phase,
            runs,
        };
        let results = vec![
            phase(Phase::Max, vec![max(TargetKind::Stockd, 400.0, 1_000.0)]),
            phase(
                Phase::Rate,
                vec![
                    open(TargetKind::Stockd, 200.0, 500.0, 7_500.0),
                    open(TargetKind::Redis, 200.0, 250.0, 1_250.0),
                ],
            ),
            phase(
                Phase::LowLoad,
                vec![
                    open(TargetKind::Stockd, 1_000.0, 400.0, 0.0),
                    open(TargetKind::Redis, 1_000.0, 200.0, 0.0),
                ],
            ),
        ];
        let t = compare_table(&names, &results, 1);
        let labels: Vec<&str> = t.rows.iter().map(|r| r.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "checkout max",
                "checkout max p50",
                "checkout max p99",
                "checkout max p99.9",
                "checkout fixed rate",
                "checkout fixed rate p50",
                "checkout fixed rate p99",
                "checkout fixed rate p99.9",
                "checkout low-load",
                "checkout low-load p50",
                "checkout low-load p99",
                "checkout low-load p99.9",
                "longest pause",
            ]
        );
        let values = |row: usize| -> Vec<Option<f64>> {
            t.rows[row].cells.iter().map(|c| c.value).collect()
        };
        assert_eq!(values(10), [Some(0.8), Some(0.4)], "low-load p99, ms");
        assert_eq!(values(12), [Some(7.5), Some(1.25)], "longest gap, ms");
        assert_eq!(t.rows[12].unit, PauseSource::GeneratorGap.unit());
        assert!(t.rows[12].unit.contains("generator"));
    }

    fn second(start_ms: u64, apply_us: u64, read_us: u64) -> protocol::PauseSecond {
        protocol::PauseSecond {
            start_ms,
            apply_pause_max_us: apply_us,
            read_wait_max_us: read_us,
            apply_cpu_max_us: 0,
        }
    }

    /// Two nodes; the maximum phase's big pause (second 100) is before the window.
    fn two_nodes() -> Vec<protocol::PauseStats> {
        vec![
            protocol::PauseStats {
                apply_pause_max_us: 90_000,
                read_wait_max_us: 500,
                apply_cpu_max_us: 0,
                recent: vec![
                    second(100_000, 90_000, 0),
                    second(110_000, 2_000, 300),
                    second(115_000, 1_000, 3_500),
                ],
            },
            protocol::PauseStats {
                apply_pause_max_us: 4_000,
                read_wait_max_us: 4_000,
                apply_cpu_max_us: 0,
                recent: vec![second(112_000, 2_500, 0), second(130_000, 4_000, 4_000)],
            },
        ]
    }

    #[test]
    fn the_node_pause_is_the_largest_apply_pause_or_read_wait_in_the_window() {
        let window = PauseWindow {
            start_ms: 100_500,
            end_ms: 120_000,
        };
        let p = node_pause(&two_nodes(), window).expect("statuses");
        // Second 100 overlaps the window's start (its last half) and counts.
        assert_eq!(p.pause_us, 90_000);
        assert_eq!(p.source, PauseSource::Node);
        let later = PauseWindow {
            start_ms: 101_000,
            end_ms: 120_000,
        };
        let p = node_pause(&two_nodes(), later).expect("statuses");
        assert_eq!(p.pause_us, 3_500, "a read wait, node 1, second 115");
        let none_inside = PauseWindow {
            start_ms: 116_000,
            end_ms: 129_999,
        };
        let p = node_pause(&two_nodes(), none_inside).expect("statuses");
        assert_eq!(p.pause_us, 0, "no second in the window: no pause");
        assert_eq!(node_pause(&[], later), None);
    }

    #[test]
    fn a_window_longer_than_the_reported_seconds_falls_back_to_since_start() {
        let reported = (protocol::PAUSE_SECONDS_REPORTED as u64 - 1) * 1_000;
        let at_limit = PauseWindow {
            start_ms: 200_000 - reported,
            end_ms: 200_000,
        };
        let p = node_pause(&two_nodes(), at_limit).expect("statuses");
        assert_eq!(p.source, PauseSource::Node);
        let longer = PauseWindow {
            start_ms: at_limit.start_ms - 1,
            ..at_limit
        };
        let p = node_pause(&two_nodes(), longer).expect("statuses");
        assert_eq!(p.source, PauseSource::NodeSinceStart);
        assert_eq!(p.pause_us, 90_000);
        assert!(p.source.unit().contains("SINCE THEY STARTED"));
    }

    #[test]
    fn stockds_longest_pause_row_is_the_nodes_figure_and_redis_keeps_the_gap() {
        let names = vec!["stockd".to_owned(), "redis".to_owned()];
        let mut stockd = open(TargetKind::Stockd, 200.0, 500.0, 7_500.0);
        stockd.node_pause = Some(NodePause {
            pause_us: 2_250,
            source: PauseSource::Node,
        });
        let results = vec![PhaseResult {
            scenario: Kind::Checkout,
            phase: Phase::Rate,
            runs: vec![stockd, open(TargetKind::Redis, 200.0, 250.0, 1_250.0)],
        }];
        let t = compare_table(&names, &results, 1);
        let row = t.rows.last().expect("rows");
        assert_eq!(row.label, "longest pause");
        let values: Vec<Option<f64>> = row.cells.iter().map(|c| c.value).collect();
        assert_eq!(values, [Some(2.25), Some(1.25)]);
        assert_eq!(row.unit, PauseSource::Node.unit());
        assert!(row.unit.contains("apply pause") && row.unit.contains("generator"));
    }
}
