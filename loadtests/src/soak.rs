//! A soak: an open loop at a fixed rate for long (`stockd-load run --soak MINUTES`), with
//! statistics per window, each node's memory sampled once per window and, on stockd, the
//! nodes' own longest pause per window read from their statuses (SPEC section 4, "No
//! stalls": at most 5 ms; section 5: a 10-minute soak at half of the maximum).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::cluster::Cluster;
use crate::connect::AnyTarget;
use crate::drive::{scenario_on, Drive, DriveError, LoadSettings, RunOutcome};
use crate::report;
use crate::scenario::Kind;
use crate::stats::{RunStats, WindowStats};

/// A soak's length and the width of its windows.
#[derive(Debug, Clone, Copy)]
pub struct Soak {
    /// Measured time.
    pub duration: Duration,
    /// Width of a window.
    pub window: Duration,
}

/// The nodes' memory at one moment of a soak.
#[derive(Debug, Clone, Serialize)]
pub struct MemorySample {
    /// Seconds since the soak's command started (loading the stock included).
    pub at_s: f64,
    /// Each node's resident memory.
    pub nodes: Vec<crate::processes::NodeMemory>,
}

/// What a soak samples beside the generator's own statistics.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakSamples {
    /// The nodes' memory, once per window.
    pub memory: Vec<MemorySample>,
    /// The nodes' longest apply pause or read wait per second of their clocks, the largest
    /// of any node: second's start (ms since the Unix epoch) -> µs. Statuses are read once
    /// per window and each reports its last [`protocol::PAUSE_SECONDS_REPORTED`] seconds,
    /// so no second is missed while a window is shorter than that. Empty unless the target
    /// is stockd.
    pub node_pause_us: BTreeMap<u64, u64>,
    /// As `node_pause_us`, the CPU time of the applying thread within its longest apply of
    /// the second (`PauseSecond::apply_cpu_max_us`): the work, where the pause adds waiting.
    pub node_apply_cpu_us: BTreeMap<u64, u64>,
    /// When the measured run ended, ms since the Unix epoch: with the run's length, where
    /// its windows lie on the nodes' clocks (one host: the clocks agree).
    pub run_end_ms: u64,
}

impl SoakSamples {
    /// The nodes' longest pause in `window` of a run of `run_seconds`, µs: the seconds of
    /// the nodes' clocks that overlap it. `None` when no node reported (not stockd).
    pub fn node_pause_in(&self, window: &WindowStats, run_seconds: f64) -> Option<u64> {
        self.largest_in(&self.node_pause_us, window, run_seconds)
    }

    /// As [`SoakSamples::node_pause_in`], the CPU time of the nodes' longest apply, µs.
    pub fn node_apply_cpu_in(&self, window: &WindowStats, run_seconds: f64) -> Option<u64> {
        self.largest_in(&self.node_apply_cpu_us, window, run_seconds)
    }

    fn largest_in(
        &self,
        per_second: &BTreeMap<u64, u64>,
        window: &WindowStats,
        run_seconds: f64,
    ) -> Option<u64> {
        if per_second.is_empty() {
            return None;
        }
        let run_start_ms = self.run_end_ms as f64 - run_seconds * 1_000.0;
        let start_ms = (run_start_ms + window.start_s * 1_000.0).max(0.0) as u64;
        let end_ms = (run_start_ms + (window.start_s + window.seconds) * 1_000.0).max(0.0) as u64;
        Some(
            per_second
                .range(start_ms.saturating_sub(999)..end_ms)
                .map(|(_, &us)| us)
                .max()
                .unwrap_or(0),
        )
    }

    /// [`SoakSamples::node_pause_in`] for each window of `stats`, ms (the record's column).
    pub fn node_pause_ms_per_window(&self, stats: &RunStats) -> Vec<Option<f64>> {
        self.ms_per_window(&self.node_pause_us, stats)
    }

    /// [`SoakSamples::node_apply_cpu_in`] for each window of `stats`, ms.
    pub fn node_apply_cpu_ms_per_window(&self, stats: &RunStats) -> Vec<Option<f64>> {
        self.ms_per_window(&self.node_apply_cpu_us, stats)
    }

    fn ms_per_window(&self, per_second: &BTreeMap<u64, u64>, stats: &RunStats) -> Vec<Option<f64>> {
        stats
            .windows
            .iter()
            .map(|w| {
                self.largest_in(per_second, w, stats.seconds)
                    .map(|us| us as f64 / 1_000.0)
            })
            .collect()
    }

    /// Adds statuses' per-second pauses, keeping each second's largest.
    fn note_pauses(&mut self, pauses: &[protocol::PauseStats]) {
        for second in pauses.iter().flat_map(|p| &p.recent) {
            let us = second.apply_pause_max_us.max(second.read_wait_max_us);
            let slot = self.node_pause_us.entry(second.start_ms).or_insert(0);
            *slot = (*slot).max(us);
            let cpu = self.node_apply_cpu_us.entry(second.start_ms).or_insert(0);
            *cpu = (*cpu).max(second.apply_cpu_max_us);
        }
    }
}

/// Now, ms since the Unix epoch.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Every node's pause statistics now (none for a target other than stockd).
async fn read_pauses(target: &AnyTarget) -> Vec<protocol::PauseStats> {
    match target.stockd_client() {
        Some(client) => client
            .status()
            .await
            .into_iter()
            .filter_map(|r| r.status.ok().map(|s| s.pauses))
            .collect(),
        None => Vec::new(),
    }
}

/// Runs `kind` on `target` as a soak, sampling the cluster's memory and the nodes' pauses
/// once per window meanwhile.
pub async fn soak_on(
    target: &AnyTarget,
    kind: Kind,
    load: &LoadSettings,
    rate: f64,
    soak: Soak,
    cluster: Option<&Cluster>,
    label: &str,
) -> (Result<RunOutcome, DriveError>, SoakSamples) {
    let load = LoadSettings {
        duration: soak.duration,
        window: Some(soak.window),
        ..load.clone()
    };
    let (done, mut finished) = tokio::sync::oneshot::channel::<u64>();
    let run = async {
        let outcome = scenario_on(target, kind, &load, Drive::Open(rate), label).await;
        let _ = done.send(now_ms());
        outcome
    };
    let started = Instant::now();
    let memory = || MemorySample {
        at_s: started.elapsed().as_secs_f64(),
        nodes: cluster.map(Cluster::memory).unwrap_or_default(),
    };
    let sampler = async {
        let mut samples = SoakSamples {
            memory: vec![memory()],
            ..SoakSamples::default()
        };
        loop {
            tokio::select! {
                _ = tokio::time::sleep(soak.window) => {
                    samples.memory.push(memory());
                    samples.note_pauses(&read_pauses(target).await);
                }
                end = &mut finished => {
                    samples.run_end_ms = end.unwrap_or_else(|_| now_ms());
                    break;
                }
            }
        }
        samples.memory.push(memory());
        samples.note_pauses(&read_pauses(target).await);
        samples
    };
    tokio::join!(run, sampler)
}

/// A soak's per-window table: the rate achieved, the primary operation's latency, the
/// generator's longest gap between two completions (any stall on the way: network,
/// replication, log, apply), the nodes' own longest pause (apply or read wait; stockd
/// only), then the nodes' memory over time.
pub fn describe_soak(stats: &RunStats, samples: &SoakSamples) -> String {
    let ms = |us: f64| us / 1_000.0;
    let mut o = format!(
        "  {:>8} {:>12} {:>9} {:>9} {:>9} {:>15} {:>14} {:>13}\n",
        "t (s)",
        format!("{}/s", stats.primary),
        "p50 ms",
        "p99 ms",
        "max ms",
        "longest gap ms",
        "node pause ms",
        "apply cpu ms"
    );
    let shown =
        |us: Option<u64>| us.map_or_else(|| "-".to_owned(), |us| format!("{:.3}", ms(us as f64)));
    for w in &stats.windows {
        o.push_str(&format!(
            "  {:>8.0} {:>12} {:>9.3} {:>9.3} {:>9.3} {:>15.3} {:>14} {:>13}\n",
            w.start_s,
            report::thousands(w.throughput),
            ms(w.latency.p50_us),
            ms(w.latency.p99_us),
            ms(w.latency.max_us),
            ms(w.longest_gap_us),
            shown(samples.node_pause_in(w, stats.seconds)),
            shown(samples.node_apply_cpu_in(w, stats.seconds)),
        ));
    }
    o.push_str(
        "  (longest gap: the generator's longest wait between two completions in the window;\n   node pause: the nodes' longest apply pause or read wait in it, from their statuses;\n   apply cpu: the applying thread's CPU time in the longest apply, the rest of a pause is waiting)\n",
    );
    o.push_str("  memory (VmRSS, MiB; t = seconds since the soak's command started):\n");
    for m in &samples.memory {
        let nodes: Vec<String> = m
            .nodes
            .iter()
            .map(|n| match n.rss_bytes {
                Some(b) => format!("n{} {:.1}", n.node, b as f64 / f64::from(1u32 << 20)),
                None => format!("n{} -", n.node),
            })
            .collect();
        o.push_str(&format!("  {:>8.0}  {}\n", m.at_s, nodes.join("  ")));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::LatencySummary;

    fn window(start_s: f64, seconds: f64) -> WindowStats {
        WindowStats {
            start_s,
            seconds,
            throughput: 0.0,
            latency: LatencySummary::default(),
            longest_gap_us: 0.0,
        }
    }

    fn pauses(seconds: &[(u64, u64, u64)]) -> protocol::PauseStats {
        protocol::PauseStats {
            recent: seconds
                .iter()
                .map(|&(start_ms, apply, read)| protocol::PauseSecond {
                    start_ms,
                    apply_pause_max_us: apply,
                    read_wait_max_us: read,
                    // Half of the pause worked, half waited.
                    apply_cpu_max_us: apply / 2,
                })
                .collect(),
            ..protocol::PauseStats::default()
        }
    }

    #[test]
    fn each_window_gets_the_largest_pause_of_any_node_in_its_seconds() {
        // A 30-s run ending at t = 100 s: windows [70, 80), [80, 90), [90, 100).
        let mut samples = SoakSamples {
            run_end_ms: 100_000,
            ..SoakSamples::default()
        };
        samples.note_pauses(&[
            pauses(&[(71_000, 900, 0), (85_000, 2_000, 7_000)]),
            pauses(&[(71_000, 3_000, 0), (95_000, 0, 0)]),
        ]);
        // A later status repeats a second with a smaller figure: the larger is kept.
        samples.note_pauses(&[pauses(&[(71_000, 100, 0)])]);
        assert_eq!(samples.node_pause_in(&window(0.0, 10.0), 30.0), Some(3_000));
        assert_eq!(
            samples.node_pause_in(&window(10.0, 10.0), 30.0),
            Some(7_000)
        );
        assert_eq!(samples.node_pause_in(&window(20.0, 10.0), 30.0), Some(0));
        // A second that straddles a window's start counts in it.
        samples.note_pauses(&[pauses(&[(79_500, 4_000, 0)])]);
        assert_eq!(
            samples.node_pause_in(&window(10.0, 10.0), 30.0),
            Some(7_000)
        );
        assert_eq!(samples.node_pause_in(&window(0.0, 10.0), 30.0), Some(4_000));
        // The CPU column is each window's own largest apply CPU: in [80, 90) that of the
        // straddling second (2,000), not that of the window's largest pause (a read wait).
        assert_eq!(
            samples.node_apply_cpu_in(&window(0.0, 10.0), 30.0),
            Some(2_000)
        );
        assert_eq!(
            samples.node_apply_cpu_in(&window(10.0, 10.0), 30.0),
            Some(2_000)
        );
        assert_eq!(
            samples.node_apply_cpu_in(&window(20.0, 10.0), 30.0),
            Some(0)
        );
    }

    #[test]
    fn without_node_statuses_the_column_is_empty() {
        let samples = SoakSamples::default();
        assert_eq!(samples.node_pause_in(&window(0.0, 10.0), 30.0), None);
        assert_eq!(samples.node_apply_cpu_in(&window(0.0, 10.0), 30.0), None);
    }
}
