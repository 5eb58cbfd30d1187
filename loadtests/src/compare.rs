//! The `compare` command: every scenario against every target in turn, in [`Phase`]s, then a
//! side-by-side table, the record and the charts.

use std::process::ExitCode;
use std::time::Duration;

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
                        runs.push(TargetRun {
                            target: *kind,
                            outcome,
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
            "runs": r.runs.iter().map(|run| json!({"target": run.target, "result": run.outcome})).collect::<Vec<_>>(),
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
}

impl PauseSource {
    /// The row's unit, saying what was measured.
    pub fn unit(self) -> &'static str {
        match self {
            PauseSource::GeneratorGap => {
                "ms; the generator's longest gap between completions, fixed-rate phase"
            }
        }
    }
}

/// The longest pause of a target during a fixed-rate run, ms, and what measures it.
///
/// This is the seam for the node's own figure: once `NodeStatus` reports the longest apply
/// pause and read wait (issue 10, item 1: `NodeStatus::pauses`, `PauseStats::apply_pause_max_us`
/// and `read_wait_max_us`, branch `snapshot-offpath`), stockd's value is the largest of every
/// node's, read after the phase (a `PauseSource::Node`, and the statuses passed in here); Redis
/// keeps the generator's gap, which is then the column to compare with.
pub fn longest_pause(o: &RunOutcome) -> (f64, PauseSource) {
    (
        o.stats().longest_gap_us / 1_000.0,
        PauseSource::GeneratorGap,
    )
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
        let source = r.runs.first().map(|run| longest_pause(&run.outcome).1);
        let values = column(names, r, |o| Some(longest_pause(o).0));
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
}
