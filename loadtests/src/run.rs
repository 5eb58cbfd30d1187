//! The drivers: open loop at a fixed arrival rate ([`crate::pacing`]) and closed loop with a
//! fixed number of outstanding requests (the maximum throughput), with a progress bar.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::pacing::{self, Schedule};
use crate::scenario::Workload;
use crate::stats::{Recorder, RunStats};
use crate::target::Target;

/// How requests are issued.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Mode {
    /// A fixed arrival rate (requests per second; a request is a frame of holds when
    /// `frame` > 1), latency from the intended send time.
    Open {
        /// Requests per second.
        rate: f64,
    },
    /// `concurrency` requests outstanding at all times, latency from the actual send.
    Closed {
        /// Outstanding requests.
        concurrency: usize,
    },
}

/// A run's settings.
#[derive(Debug, Clone, Serialize)]
pub struct RunConfig {
    /// Open or closed loop.
    pub mode: Mode,
    /// Measured time.
    pub duration: Duration,
    /// Unmeasured time before it (connections warm, caches filled).
    pub warmup: Duration,
    /// Open loop: requests outstanding beyond which the generator drops (and counts) new
    /// ones instead of queueing without bound.
    pub max_in_flight: u64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Label of the progress bar.
    pub label: String,
    /// Keep statistics per window of this width too (a soak); `None`: only the whole run's.
    pub window: Option<Duration>,
}

impl Default for RunConfig {
    fn default() -> Self {
        RunConfig {
            mode: Mode::Closed { concurrency: 256 },
            duration: Duration::from_secs(10),
            warmup: Duration::from_secs(1),
            max_in_flight: 100_000,
            progress: false,
            label: String::new(),
            window: None,
        }
    }
}

/// Runs `workload` against `target` as `config` says; request indices start at `first` (so a
/// warm-up and the measured run never reuse a hold id). Returns the statistics and the next
/// free index.
pub async fn run<T: Target>(
    target: &T,
    workload: &Arc<Workload>,
    config: &RunConfig,
    first: u64,
) -> (RunStats, u64) {
    let mut next = first;
    if !config.warmup.is_zero() {
        let warm = RunConfig {
            duration: config.warmup,
            warmup: Duration::ZERO,
            progress: false,
            ..config.clone()
        };
        let (_, n) = measure(target, workload, &warm, next).await;
        next = n;
    }
    measure(target, workload, config, next).await
}

fn progress_bar(config: &RunConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(config.duration.as_millis() as u64);
    let style = ProgressStyle::with_template("{prefix:>24} [{bar:30}] {elapsed:>3} {msg}")
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_prefix(config.label.clone());
    bar
}

async fn measure<T: Target>(
    target: &T,
    workload: &Arc<Workload>,
    config: &RunConfig,
    first: u64,
) -> (RunStats, u64) {
    let start = Instant::now() + Duration::from_millis(10);
    let rec = Arc::new(match config.window {
        Some(width) => Recorder::with_windows(start, workload.primary(), width),
        None => Recorder::new(start, workload.primary()),
    });
    let issued = Arc::new(AtomicU64::new(0));
    let bar = progress_bar(config);
    let ticker = {
        let (bar, rec, duration) = (bar.clone(), rec.clone(), config.duration);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(200)).await;
                let elapsed = start.elapsed();
                bar.set_position(elapsed.min(duration).as_millis() as u64);
                let done = rec.primary_done();
                let secs = elapsed.as_secs_f64().max(1e-3);
                bar.set_message(format!(
                    "{done} {}  {:.0}/s",
                    rec.primary(),
                    done as f64 / secs
                ));
            }
        })
    };
    let end = match config.mode {
        Mode::Open { rate } => {
            open_loop(target, workload, config, rate, start, first, &rec, &issued).await
        }
        Mode::Closed { concurrency } => {
            closed_loop(
                target,
                workload,
                config,
                concurrency,
                start,
                first,
                &rec,
                &issued,
            )
            .await
        }
    };
    ticker.abort();
    bar.finish_and_clear();
    let elapsed = end.saturating_duration_since(start).max(config.duration);
    let mut stats = rec.finish(elapsed);
    if let Mode::Closed { .. } = config.mode {
        stats.lateness = None;
    }
    (stats, first + issued.load(Ordering::Relaxed))
}

#[allow(clippy::too_many_arguments)]
async fn open_loop<T: Target>(
    target: &T,
    workload: &Arc<Workload>,
    config: &RunConfig,
    rate: f64,
    start: Instant,
    first: u64,
    rec: &Arc<Recorder>,
    issued: &Arc<AtomicU64>,
) -> Instant {
    let schedule = Schedule::new(rate);
    let total = schedule.count(config.duration);
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stop = Arc::new(AtomicBool::new(false));
    let pacer = match pacing::spawn(schedule, total, start, tx, stop.clone()) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("stockd-load: cannot start the pacer thread: {e}");
            return Instant::now();
        }
    };
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    while let Some(tick) = rx.recv().await {
        issued.fetch_add(1, Ordering::Relaxed);
        if in_flight.load(Ordering::Relaxed) >= config.max_in_flight {
            rec.record_dropped();
            continue;
        }
        in_flight.fetch_add(1, Ordering::Relaxed);
        let (t, w, rec, in_flight) = (
            target.clone(),
            workload.clone(),
            rec.clone(),
            in_flight.clone(),
        );
        tasks.spawn(async move {
            rec.record_lateness(tick.intended.elapsed());
            w.run_one(&t, first + tick.index, tick.intended, &rec).await;
            in_flight.fetch_sub(1, Ordering::Relaxed);
        });
        // Reap finished tasks as we go (the set would otherwise keep every handle).
        while tasks.try_join_next().is_some() {}
    }
    stop.store(true, Ordering::Relaxed);
    let _ = pacer.join();
    drain(&mut tasks, Duration::from_secs(30)).await;
    Instant::now()
}

#[allow(clippy::too_many_arguments)]
async fn closed_loop<T: Target>(
    target: &T,
    workload: &Arc<Workload>,
    config: &RunConfig,
    concurrency: usize,
    start: Instant,
    first: u64,
    rec: &Arc<Recorder>,
    issued: &Arc<AtomicU64>,
) -> Instant {
    let deadline = start + config.duration;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency.max(1) {
        let (t, w, rec, issued) = (
            target.clone(),
            workload.clone(),
            rec.clone(),
            issued.clone(),
        );
        tasks.spawn(async move {
            tokio::time::sleep_until(start.into()).await;
            loop {
                let sent = Instant::now();
                if sent >= deadline {
                    return;
                }
                let i = issued.fetch_add(1, Ordering::Relaxed);
                w.run_one(&t, first + i, sent, &rec).await;
            }
        });
    }
    drain(&mut tasks, config.duration + Duration::from_secs(30)).await;
    Instant::now()
}

async fn drain(tasks: &mut tokio::task::JoinSet<()>, limit: Duration) {
    let waited = tokio::time::timeout(limit, async { while tasks.join_next().await.is_some() {} });
    if waited.await.is_err() {
        eprintln!(
            "stockd-load: {} requests still unanswered after {limit:?}; abandoned",
            tasks.len()
        );
        tasks.abort_all();
    }
}
