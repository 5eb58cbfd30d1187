//! The `compare` command: every scenario against every target in turn, in [`Phase`]s, then a
//! side-by-side table, the record and the charts.

use std::process::ExitCode;

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
    /// An open loop at a fixed rate: half of the first target's maximum, unless given.
    Rate,
    /// A flash sale's burst.
    Burst,
}

impl Phase {
    /// The phase's name in labels, file names and the record.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Max => "max",
            Phase::Rate => "rate",
            Phase::Burst => "burst",
        }
    }

    /// A scenario's phases, in order.
    pub fn of(scenario: Kind) -> &'static [Phase] {
        match scenario {
            Kind::Checkout => &[Phase::Max, Phase::Rate],
            Kind::FlashSale => &[Phase::Burst],
            Kind::StoreReads => &[Phase::Max],
        }
    }

    /// How the phase drives its scenario; `None` for a fixed rate that is not known yet.
    fn drive(self, rate: Option<f64>) -> Option<Drive> {
        match self {
            Phase::Max | Phase::Burst => Some(Drive::Max),
            Phase::Rate => rate.map(Drive::Open),
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
            let mut runs = Vec::new();
            for (kind, target) in targets {
                let Some(drive) = phase.drive(m.rate) else {
                    continue;
                };
                let label = format!("{}-{}-{}", kind.as_str(), scenario.as_str(), phase.as_str());
                match scenario_on(target, scenario, load, drive, &label).await {
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
    write_reports(&names, &m, &table, &summary, load);
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
) {
    let dir = outputs::out_dir(load.out.as_deref(), "compare");
    let record = json!({
        "command": std::env::args().collect::<Vec<_>>(),
        "machine": outputs::machine(),
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

/// The side-by-side table: throughput and latency percentiles per phase, flash sales' grants.
pub fn compare_table(names: &[String], results: &[PhaseResult], frame: usize) -> Table {
    let mut t = Table::new(names.to_vec());
    for r in results {
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
        if r.scenario == Kind::FlashSale {
            let granted = column(names, r, |o| match o {
                RunOutcome::Flash(f) => Some(f.granted as f64),
                _ => None,
            });
            t.row(&format!("{name} granted"), "holds", true, granted);
        }
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
        assert_eq!(Phase::of(Kind::Checkout), &[Phase::Max, Phase::Rate]);
        assert_eq!(Phase::of(Kind::FlashSale), &[Phase::Burst]);
        assert_eq!(Phase::Rate.drive(None), None, "no rate yet: skipped");
        assert_eq!(Phase::Rate.drive(Some(5.0)), Some(Drive::Open(5.0)));
        assert_eq!(Phase::Burst.drive(None), Some(Drive::Max));
        let json = serde_json::to_value([Phase::Max, Phase::Rate, Phase::Burst]).expect("json");
        assert_eq!(json, serde_json::json!(["max", "rate", "burst"]));
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
}
