//! The files a `run`, `compare` or `streams` command leaves behind: where they go, the
//! machine they ran on, `summary.txt`, `record.json`, the `.hgrm` histograms and the charts.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::report::{self, Series};
use crate::stats::RunStats;

/// One run's statistics under the name its files take.
#[derive(Debug, Clone, Copy)]
pub struct NamedRun<'a> {
    /// The name (a file prefix, or a chart's series label).
    pub name: &'a str,
    /// The statistics.
    pub stats: &'a RunStats,
}

/// Where a command's reports go: `out`, else `target/stockd-load/<name>-<unix time>`.
pub fn out_dir(out: Option<&Path>, name: &str) -> PathBuf {
    out.map(Path::to_path_buf).unwrap_or_else(|| {
        let s = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        PathBuf::from(format!("target/stockd-load/{name}-{s}"))
    })
}

/// The machine the numbers come from (for the JSON record).
pub fn machine() -> serde_json::Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "os": std::env::consts::OS,
    })
}

/// Writes `summary.txt`, `record.json` and one `.hgrm` per run and operation.
pub fn write_outputs(dir: &Path, summary: &str, record: &serde_json::Value, runs: &[NamedRun<'_>]) {
    report::write_file(dir, "summary.txt", summary);
    match serde_json::to_string_pretty(record) {
        Ok(text) => {
            report::write_file(dir, "record.json", &text);
        }
        Err(e) => eprintln!("stockd-load: json: {e}"),
    }
    for run in runs {
        for (op, h) in &run.stats.histograms {
            report::write_file(
                dir,
                &format!("{}-{op}.hgrm", run.name),
                &crate::stats::hgrm(h),
            );
        }
    }
}

/// Writes `<name>-latency.svg` and `<name>-throughput.svg` of the runs' primary operations.
pub fn charts(dir: &Path, name: &str, title: &str, runs: &[NamedRun<'_>]) {
    let series: Vec<Series<'_>> = runs
        .iter()
        .filter_map(|run| {
            let s = run.stats;
            s.op(&s.primary).map(|op| Series {
                label: run.name.to_owned(),
                curve: &op.curve,
                timeline: &s.timeline,
                bucket_ms: s.timeline_bucket_ms,
            })
        })
        .collect();
    if series.is_empty() {
        return;
    }
    report::write_file(
        dir,
        &format!("{name}-latency.svg"),
        &report::latency_svg(&format!("{title}: latency by percentile"), &series),
    );
    report::write_file(
        dir,
        &format!("{name}-throughput.svg"),
        &report::throughput_svg(&format!("{title}: throughput"), &series),
    );
}
